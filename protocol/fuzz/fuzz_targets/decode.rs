//! Decodes arbitrary bytes as a sync message and as a log record: neither may panic, and
//! whatever decodes must survive an encode/decode round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_protocol::{decode_message, decode_record, encode_message, encode_record};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = decode_message(data) {
        assert_eq!(decode_message(&encode_message(&message)), Ok(message));
    }
    if let Ok(record) = decode_record(data) {
        assert_eq!(decode_record(&encode_record(&record)), Ok(record));
    }
});

//! Golden bytes: the exact encoding of every message and of a log record.
//!
//! Postcard is not self-describing, so reordering a field or a variant silently changes the
//! format that agents in the field and central's journal depend on. If one of these tests fails,
//! the change is a wire-format change: bump `MESSAGE_VERSION`/`RECORD_VERSION` and keep decoding
//! the old form, rather than editing the expected bytes.

use tally_protocol::*;

fn sample_event() -> LoggedEvent {
    LoggedEvent {
        seq: 300,
        received_at: Timestamp::from_micros(1_764_000_000_000_000),
        event: Event {
            id: Some("scan-1".into()),
            kind: EventKind::Transfer,
            sku: "SKU-1".into(),
            qty: Qty::parse("2.5").unwrap(),
            location: Some("A1".into()),
            to_location: Some("B2".into()),
            lot: Some("L7".into()),
            reference: Some("WH/INT/00001".into()),
            reason: None,
            occurred_at: Some(Timestamp::from_micros(1_763_999_999_000_000)),
            device: Some("gun-3".into()),
            user: Some("ana".into()),
        },
    }
}

fn minimal_event() -> LoggedEvent {
    LoggedEvent {
        seq: 1,
        received_at: Timestamp::from_micros(0),
        event: Event {
            id: None,
            kind: EventKind::Adjustment,
            sku: "X".into(),
            qty: Qty::from_micros(-1),
            location: None,
            to_location: None,
            lot: None,
            reference: None,
            reason: Some("damaged".into()),
            occurred_at: None,
            device: None,
            user: None,
        },
    }
}

fn cases() -> Vec<(&'static str, Message, &'static str)> {
    vec![
        (
            "hello",
            Message::Hello(Hello {
                agent_id: "wh1-agent".into(),
                warehouse: "WH1".into(),
                log_id: LogId([0x11; 16]),
                head_seq: 1234,
                oldest_unacked_at: Some(Timestamp::from_micros(1_764_000_000_000_000)),
                token: Secret::new("tok"),
                agent_version: "0.1.0".into(),
            }),
            HELLO,
        ),
        (
            "welcome",
            Message::Welcome(Welcome {
                stored_seq: 1000,
                server_time: Timestamp::from_micros(1_764_000_000_000_000),
            }),
            WELCOME,
        ),
        (
            "reject",
            Message::Reject(Reject {
                reason: RejectReason::WarehouseMismatch,
                retryable: false,
                message: "no".into(),
            }),
            REJECT,
        ),
        (
            "batch",
            Message::Batch(Batch {
                events: vec![minimal_event(), sample_event()],
            }),
            BATCH,
        ),
        ("ack", Message::Ack(Ack { seq: u64::MAX }), ACK),
    ]
}

const HELLO: &str = "000100097768312d6167656e740357483111111111111111111111111111111111d2090180809296a896a20603746f6b05302e312e30";
const WELCOME: &str = "000101e80780809296a896a206";
const REJECT: &str = "0001020200026e6f";
const BATCH: &str = "000103020100000201580100000000010764616d61676564000000ac0280809296a896a20601067363616e2d310405534b552d31c096b102010241310102423201024c37010c57482f494e542f3030303031000180f79795a896a206010567756e2d330103616e61";
const ACK: &str = "000104ffffffffffffffffff01";
const RECORD: &str = "01ac0280809296a896a20601067363616e2d310405534b552d31c096b102010241310102423201024c37010c57482f494e542f3030303031000180f79795a896a206010567756e2d330103616e61";

#[test]
fn every_message_encodes_to_its_pinned_bytes() {
    for (name, message, expected) in cases() {
        let bytes = encode_message(&message);
        assert_eq!(hex::encode(&bytes), expected, "encoding of {name} changed");
        assert_eq!(decode_message(&bytes), Ok(message), "{name} round trip");
    }
}

#[test]
fn every_reject_reason_and_kind_is_pinned() {
    // Variant indices are the format: list them so that reordering the enums fails here.
    let reasons = [
        RejectReason::BadToken,
        RejectReason::Revoked,
        RejectReason::WarehouseMismatch,
        RejectReason::UnsupportedVersion,
        RejectReason::ProtocolError,
        RejectReason::Unavailable,
    ];
    for (index, reason) in reasons.into_iter().enumerate() {
        let bytes = encode_message(&Message::Reject(Reject {
            reason,
            retryable: true,
            message: String::new(),
        }));
        assert_eq!(bytes, [0, 1, 2, index as u8, 1, 0], "{reason:?}");
    }
    for (index, kind) in EventKind::ALL.into_iter().enumerate() {
        let mut record = minimal_event();
        record.event.kind = kind;
        // [version, seq, received_at, id: None, kind, ...]
        assert_eq!(encode_record(&record)[4], index as u8, "{kind:?}");
    }
}

#[test]
fn log_record_encodes_to_its_pinned_bytes() {
    let bytes = encode_record(&sample_event());
    assert_eq!(hex::encode(&bytes), RECORD);
    assert_eq!(decode_record(&bytes), Ok(sample_event()));
}

#[test]
fn a_record_built_from_event_bytes_is_the_same_record() {
    for record in [sample_event(), minimal_event()] {
        let built =
            encode_record_from_event(record.seq, record.received_at, &encode_event(&record.event));
        assert_eq!(built, encode_record(&record));
    }
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let hello = Hello {
        agent_id: "a".into(),
        warehouse: "w".into(),
        log_id: LogId([0; 16]),
        head_seq: 0,
        oldest_unacked_at: None,
        token: Secret::new("hunter2-very-secret"),
        agent_version: "0".into(),
    };
    assert!(!format!("{hello:?}").contains("hunter2"));
}

#[test]
fn unknown_versions_are_refused_before_decoding() {
    let mut bytes = encode_message(&Message::Ack(Ack { seq: 1 }));
    bytes[1] = 2;
    assert_eq!(
        decode_message(&bytes),
        Err(DecodeError::UnsupportedVersion {
            found: 2,
            supported: MESSAGE_VERSION
        })
    );
    let mut record = encode_record(&minimal_event());
    record[0] = 9;
    assert!(matches!(
        decode_record(&record),
        Err(DecodeError::UnsupportedVersion { found: 9, .. })
    ));
    assert_eq!(decode_message(&[]), Err(DecodeError::Truncated));
    assert_eq!(decode_record(&[]), Err(DecodeError::Truncated));
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = encode_message(&Message::Ack(Ack { seq: 1 }));
    bytes.push(0);
    assert_eq!(decode_message(&bytes), Err(DecodeError::TrailingBytes(1)));
}

//! Property tests: any message round-trips, and no input makes the decoders panic.

use proptest::prelude::*;
use tally_protocol::*;

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("\\PC{0,12}")
}

fn event() -> impl Strategy<Value = Event> {
    (
        (
            opt_text(),
            proptest::sample::select(EventKind::ALL.to_vec()),
            "\\PC{1,12}",
            any::<i64>(),
            opt_text(),
            opt_text(),
        ),
        (
            opt_text(),
            opt_text(),
            opt_text(),
            proptest::option::of(any::<i64>()),
            opt_text(),
            opt_text(),
        ),
    )
        .prop_map(
            |(
                (id, kind, sku, qty, location, to_location),
                (lot, reference, reason, at, device, user),
            )| Event {
                id,
                kind,
                sku,
                qty: Qty::from_micros(qty),
                location,
                to_location,
                lot,
                reference,
                reason,
                occurred_at: at.map(Timestamp::from_micros),
                device,
                user,
            },
        )
}

fn logged() -> impl Strategy<Value = LoggedEvent> {
    (any::<u64>(), any::<i64>(), event()).prop_map(|(seq, at, event)| LoggedEvent {
        seq,
        received_at: Timestamp::from_micros(at),
        event,
    })
}

proptest! {
    #[test]
    fn records_round_trip(record in logged()) {
        prop_assert_eq!(decode_record(&encode_record(&record)), Ok(record));
    }

    #[test]
    fn batches_round_trip(events in proptest::collection::vec(logged(), 0..8)) {
        let message = Message::Batch(Batch { events });
        prop_assert_eq!(decode_message(&encode_message(&message)), Ok(message));
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_message(&bytes);
        let _ = decode_record(&bytes);
    }

    #[test]
    fn valid_prefix_with_garbage_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut bytes = MESSAGE_VERSION.to_be_bytes().to_vec();
        bytes.extend(tail);
        let _ = decode_message(&bytes);
    }
}

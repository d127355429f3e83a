use super::*;

const NOW: Timestamp = Timestamp::from_micros(1_764_000_000_000_000);

fn parse(body: &str) -> Result<Vec<Event>, IngestError> {
    parse_body(body.as_bytes(), NOW)
}

#[test]
fn a_single_event_parses_with_every_field() {
    let events = parse(
        r#"{"id":"scan-1","type":"transfer","sku":"SKU-1","qty":"2.5","location":"WH/Stock/A1",
            "to_location":"WH/Stock/B2","lot":"L1","reference":"WH/INT/00001",
            "occurred_at":"2025-11-24T16:00:00+01:00","device":"gun-3","user":"ana"}"#,
    )
    .unwrap();
    assert_eq!(
        events,
        vec![Event {
            id: Some("scan-1".into()),
            kind: EventKind::Transfer,
            sku: "SKU-1".into(),
            qty: Qty::from_micros(2_500_000),
            location: Some("WH/Stock/A1".into()),
            to_location: Some("WH/Stock/B2".into()),
            lot: Some("L1".into()),
            reference: Some("WH/INT/00001".into()),
            reason: None,
            occurred_at: Some(Timestamp::from_micros(1_763_996_400_000_000)),
            device: Some("gun-3".into()),
            user: Some("ana".into()),
        }]
    );
}

#[test]
fn quantities_are_exact_whether_number_or_string() {
    for (raw, micros) in [
        ("0.1", 100_000),
        ("\"0.1\"", 100_000),
        ("3", 3_000_000),
        ("0.000001", 1),
        ("999999999.999999", 999_999_999_999_999),
    ] {
        let body = format!(r#"{{"type":"receipt","sku":"A","qty":{raw}}}"#);
        assert_eq!(
            parse(&body).unwrap()[0].qty,
            Qty::from_micros(micros),
            "{raw}"
        );
    }
}

#[test]
fn missing_occurred_at_stays_absent_and_null_means_absent() {
    // Absent, not "now": a retry without occurred_at must be recognised as the same event.
    let events = parse(r#"{"type":"pick","sku":"A","qty":1,"lot":null}"#).unwrap();
    assert_eq!(events[0].occurred_at, None);
    assert_eq!(events[0].lot, None);
}

#[test]
fn a_batch_keeps_its_order() {
    let events = parse(
        r#"{"events":[{"type":"count","sku":"A","qty":0},{"type":"adjustment","sku":"B","qty":-2,"reason":"broken"}]}"#,
    )
    .unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].kind, EventKind::Count);
    assert_eq!(events[1].qty, Qty::from_units(-2));
}

/// A bad body, and the status, code, index and field it must be refused with.
type Case = (
    String,
    u16,
    &'static str,
    Option<usize>,
    Option<&'static str>,
);

#[test]
fn bad_input_names_the_first_bad_event_and_field() {
    let ok = r#"{"type":"pick","sku":"A","qty":1}"#;
    let cases: Vec<Case> = vec![
        ("{".into(), 400, "malformed_json", None, None),
        ("".into(), 400, "malformed_json", None, None),
        ("[1]".into(), 422, "invalid_body", None, None),
        (
            r#"{"events":[]}"#.into(),
            422,
            "empty_batch",
            None,
            Some("events"),
        ),
        (
            r#"{"events":{}}"#.into(),
            422,
            "invalid_body",
            None,
            Some("events"),
        ),
        (
            format!(r#"{{"events":[{ok}],"x":1}}"#),
            422,
            "unknown_field",
            None,
            Some("x"),
        ),
        (
            format!(r#"{{"events":[{ok},7]}}"#),
            422,
            "invalid_body",
            Some(1),
            Some("events"),
        ),
        (
            r#"{"type":"steal","sku":"A","qty":1}"#.into(),
            422,
            "unknown_event_type",
            Some(0),
            Some("type"),
        ),
        (
            r#"{"sku":"A","qty":1}"#.into(),
            422,
            "missing_field",
            Some(0),
            Some("type"),
        ),
        (
            r#"{"type":"pick","qty":1}"#.into(),
            422,
            "missing_field",
            Some(0),
            Some("sku"),
        ),
        (
            r#"{"type":"pick","sku":"","qty":1}"#.into(),
            422,
            "invalid_field",
            Some(0),
            Some("sku"),
        ),
        (
            format!(r#"{{"type":"pick","sku":"{}","qty":1}}"#, "S".repeat(129)),
            422,
            "invalid_field",
            Some(0),
            Some("sku"),
        ),
        (
            r#"{"type":"pick","sku":"A\n","qty":1}"#.into(),
            422,
            "invalid_field",
            Some(0),
            Some("sku"),
        ),
        (
            r#"{"type":"pick","sku":"A\u202eB","qty":1}"#.into(),
            422,
            "invalid_field",
            Some(0),
            Some("sku"),
        ),
        (
            r#"{"type":"pick","sku":"A","qty":1,"location":"\u200bWH/Stock"}"#.into(),
            422,
            "invalid_field",
            Some(0),
            Some("location"),
        ),
        (
            r#"{"type":"receipt","sku":"A","qty":1000000001}"#.into(),
            422,
            "invalid_field",
            Some(0),
            Some("qty"),
        ),
        (
            r#"{"type":"pick","sku":7,"qty":1}"#.into(),
            422,
            "invalid_field",
            Some(0),
            Some("sku"),
        ),
        (
            r#"{"type":"pick","sku":"A"}"#.into(),
            422,
            "missing_field",
            Some(0),
            Some("qty"),
        ),
        (
            r#"{"type":"pick","sku":"A","qty":0}"#.into(),
            422,
            "invalid_field",
            Some(0),
            Some("qty"),
        ),
        (
            r#"{"type":"pick","sku":"A","qty":-1}"#.into(),
            422,
            "invalid_field",
            Some(0),
            Some("qty"),
        ),
        (
            r#"{"type":"receipt","sku":"A","qty":"ten"}"#.into(),
            422,
            "invalid_field",
            Some(0),
            Some("qty"),
        ),
        (
            r#"{"type":"receipt","sku":"A","qty":1e3}"#.into(),
            422,
            "invalid_field",
            Some(0),
            Some("qty"),
        ),
        (
            r#"{"type":"receipt","sku":"A","qty":true}"#.into(),
            422,
            "invalid_field",
            Some(0),
            Some("qty"),
        ),
        (
            r#"{"type":"receipt","sku":"A","qty":0.0000001}"#.into(),
            422,
            "invalid_field",
            Some(0),
            Some("qty"),
        ),
        (
            r#"{"type":"count","sku":"A","qty":-1}"#.into(),
            422,
            "invalid_field",
            Some(0),
            Some("qty"),
        ),
        (
            r#"{"type":"adjustment","sku":"A","qty":0,"reason":"x"}"#.into(),
            422,
            "invalid_field",
            Some(0),
            Some("qty"),
        ),
        (
            r#"{"type":"adjustment","sku":"A","qty":1}"#.into(),
            422,
            "missing_field",
            Some(0),
            Some("reason"),
        ),
        (
            r#"{"type":"transfer","sku":"A","qty":1,"location":"X"}"#.into(),
            422,
            "missing_field",
            Some(0),
            Some("to_location"),
        ),
        (
            r#"{"type":"transfer","sku":"A","qty":1,"to_location":"X"}"#.into(),
            422,
            "missing_field",
            Some(0),
            Some("location"),
        ),
        (
            r#"{"type":"transfer","sku":"A","qty":1,"location":"X","to_location":"X"}"#.into(),
            422,
            "invalid_field",
            Some(0),
            Some("to_location"),
        ),
        (
            r#"{"type":"pick","sku":"A","qty":1,"to_location":"X"}"#.into(),
            422,
            "invalid_field",
            Some(0),
            Some("to_location"),
        ),
        (
            r#"{"type":"pick","sku":"A","qty":1,"occurred_at":"yesterday"}"#.into(),
            422,
            "invalid_field",
            Some(0),
            Some("occurred_at"),
        ),
        (
            r#"{"type":"pick","sku":"A","qty":1,"occurred_at":"2025-11-24T16:00:00"}"#.into(),
            422,
            "invalid_field",
            Some(0),
            Some("occurred_at"),
        ),
        (
            r#"{"type":"pick","sku":"A","qty":1,"occurred_at":"1970-01-01T00:00:00Z"}"#.into(),
            422,
            "invalid_field",
            Some(0),
            Some("occurred_at"),
        ),
        (
            r#"{"type":"pick","sku":"A","qty":1,"occurred_at":"2099-01-01T00:00:00Z"}"#.into(),
            422,
            "invalid_field",
            Some(0),
            Some("occurred_at"),
        ),
        (
            r#"{"type":"pick","sku":"A","qty":1,"colour":"red"}"#.into(),
            422,
            "unknown_field",
            Some(0),
            Some("colour"),
        ),
        (
            r#"{"type":"pick","sku":"A","qty":1,"sku":"B"}"#.into(),
            422,
            "duplicate_field",
            Some(0),
            Some("sku"),
        ),
        (
            format!(r#"{{"events":[{ok},{ok},{{"type":"pick","sku":"A","qty":1,"id":""}}]}}"#),
            422,
            "invalid_field",
            Some(2),
            Some("id"),
        ),
    ];
    for (body, status, code, index, field) in cases {
        let err = parse(&body).expect_err(&body);
        assert_eq!(
            (err.status, err.code, err.index, err.field.as_deref()),
            (status, code, index, field),
            "{body}: {}",
            err.message
        );
        assert!(!err.message.is_empty());
    }
}

/// Regression: a leap second (`23:59:60`) was stored as `23:59:59` without a word, and a date
/// that does not exist was called "not an RFC 3339 timestamp".
#[test]
fn a_leap_second_and_an_impossible_date_are_refused_by_name() {
    let message = |at: &str| {
        let body = format!(r#"{{"type":"pick","sku":"A","qty":1,"occurred_at":"{at}"}}"#);
        let error = parse(&body).unwrap_err();
        assert_eq!(
            (error.code, error.field.as_deref()),
            ("invalid_field", Some("occurred_at"))
        );
        error.message
    };
    for at in ["2016-12-31T23:59:60Z", "2016-12-31T23:59:60.5+00:00"] {
        assert!(message(at).contains("leap second"), "{at}: {}", message(at));
    }
    for at in [
        "2026-13-01T09:30:00Z",
        "2026-02-30T09:30:00Z",
        "2026-11-29T24:00:00Z",
        "2026-11-29T09:61:00Z",
    ] {
        let text = message(at);
        assert!(text.contains("does not exist"), "{at}: {text}");
        assert!(!text.contains("not an RFC 3339"), "{at}: {text}");
    }
    for at in [
        "2026-11-29T09:30:00+24:00",
        "2026-11-29T09:30:00-23:60",
        "2026-11-29T09:30:00+99:00",
    ] {
        let text = message(at);
        assert!(text.contains("offset that does not exist"), "{at}: {text}");
    }
    for at in [
        "yesterday",
        "2026-11-29T09:30:00",
        "2026-11-29T09:30Z",
        "2026-11-29T09:30:00.Z",
    ] {
        assert!(
            message(at).contains("not an RFC 3339"),
            "{at}: {}",
            message(at)
        );
    }
    for at in [
        "2025-11-24T16:00:00.25z",
        "2025-11-24 16:00:00-03:30",
        "2025-11-24t16:00:00Z",
        "2025-11-24T16:00:00+23:59",
        "2025-11-24T16:00:00-23:59",
    ] {
        assert!(
            parse(&format!(
                r#"{{"type":"pick","sku":"A","qty":1,"occurred_at":"{at}"}}"#
            ))
            .is_ok(),
            "{at}"
        );
    }
}

#[test]
fn too_many_events_are_refused_whole() {
    let one = r#"{"type":"pick","sku":"A","qty":1}"#;
    let body = format!(
        r#"{{"events":[{}]}}"#,
        vec![one; MAX_EVENTS_PER_REQUEST + 1].join(",")
    );
    assert_eq!(parse(&body).unwrap_err().code, "too_many_events");
    let body = format!(
        r#"{{"events":[{}]}}"#,
        vec![one; MAX_EVENTS_PER_REQUEST].join(",")
    );
    assert_eq!(parse(&body).unwrap().len(), MAX_EVENTS_PER_REQUEST);
}

#[test]
fn stored_events_render_as_json_with_exact_quantities() {
    let record = LoggedEvent {
        seq: 7,
        received_at: NOW,
        event: parse(
            r#"{"id":"x","type":"adjustment","sku":"A","qty":"-0.25","reason":"damaged"}"#,
        )
        .unwrap()
        .remove(0),
    };
    let json = serde_json::to_value(EventJson::new(&record, None)).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "seq": 7, "id": "x", "type": "adjustment", "sku": "A", "qty": "-0.25",
            "reason": "damaged", "received_at": "2025-11-24T16:00:00Z"
        })
    );
}

/// Properties over generated input: whatever arrives is refused cleanly or parsed, and what the
/// agent exports is accepted again as the same event.
mod properties {
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    use super::*;

    /// 1..=`max` characters, no control characters, no white space at either end; not only
    /// ASCII.
    fn text(max: usize) -> impl Strategy<Value = String> {
        let edge = "[A-Za-z0-9/_.é漢-]";
        let inner = "[A-Za-z0-9 /_.é漢-]";
        proptest::string::string_regex(&format!("{edge}({inner}{{0,{}}}{edge})?", max - 2))
            .expect("a valid pattern")
    }

    fn micros_up_to_max() -> impl Strategy<Value = i64> {
        prop_oneof![1i64..=10_000_000, 1i64..=Qty::MAX_UNITS * 1_000_000]
    }

    prop_compose! {
        fn event()(
            kind in prop_oneof![
                Just(EventKind::Receipt),
                Just(EventKind::Pick),
                Just(EventKind::Adjustment),
                Just(EventKind::Count),
                Just(EventKind::Transfer),
            ],
            magnitude in micros_up_to_max(),
            negative in any::<bool>(),
            id in proptest::option::of(text(MAX_TEXT_CHARS)),
            sku in text(MAX_TEXT_CHARS),
            location in proptest::option::of(text(MAX_TEXT_CHARS)),
            second_location in text(MAX_TEXT_CHARS),
            lot in proptest::option::of(text(MAX_TEXT_CHARS)),
            reference in proptest::option::of(text(MAX_TEXT_CHARS)),
            reason in proptest::option::of(text(MAX_REASON_CHARS)),
            occurred_at in proptest::option::of(
                EARLIEST_OCCURRED_AT..=NOW.as_micros() + MAX_FUTURE_MICROS
            ),
            device in proptest::option::of(text(MAX_TEXT_CHARS)),
            user in proptest::option::of(text(MAX_TEXT_CHARS)),
        ) -> Event {
            let (qty, location, to_location, reason) = match kind {
                EventKind::Adjustment => {
                    let signed = if negative { -magnitude } else { magnitude };
                    (signed, location, None, Some(reason.unwrap_or_else(|| "damaged".into())))
                }
                EventKind::Count => (magnitude - 1, location, None, reason),
                EventKind::Transfer => {
                    let from = location.unwrap_or_else(|| "WH/Stock".into());
                    let to = if second_location == from { format!("{from}/B") } else { second_location };
                    (magnitude, Some(from), Some(to), reason)
                }
                EventKind::Receipt | EventKind::Pick => (magnitude, location, None, reason),
            };
            Event {
                id,
                kind,
                sku,
                qty: Qty::from_micros(qty),
                location,
                to_location,
                lot,
                reference,
                reason,
                occurred_at: occurred_at.map(Timestamp::from_micros),
                device,
                user,
            }
        }
    }

    /// A JSON value of any shape, small.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|n| json!(n)),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((key(), inner), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    /// Mostly the keys an event has, sometimes another.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => proptest::sample::select(vec![
                "id", "type", "sku", "qty", "location", "to_location", "lot", "reference",
                "reason", "occurred_at", "device", "user", "events",
            ])
            .prop_map(str::to_owned),
            1 => "[a-z_]{1,8}",
        ]
    }

    fn assert_clean(body: &[u8]) {
        match parse_body(body, NOW) {
            Ok(events) => assert!((1..=MAX_EVENTS_PER_REQUEST).contains(&events.len())),
            Err(error) => {
                assert!(error.status == 400 || error.status == 422, "{error:?}");
                assert!(!error.message.is_empty());
                if error.status == 400 {
                    assert_eq!(error.code, "malformed_json");
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_are_parsed_or_refused_with_400_or_422(
            body in proptest::collection::vec(any::<u8>(), 0..256)
        ) {
            assert_clean(&body);
        }

        #[test]
        fn arbitrary_json_is_parsed_or_refused_with_422(value in any_json()) {
            let body = serde_json::to_vec(&value).unwrap();
            if let Err(error) = parse_body(&body, NOW) {
                // Valid JSON is never "malformed".
                prop_assert_eq!(error.status, 422, "{:?}", error);
            }
            assert_clean(&body);
        }

        #[test]
        fn an_exported_event_posted_again_is_the_same_event(events in proptest::collection::vec(event(), 1..4)) {
            // `GET /v1/events` and `export` give each event with what the agent added (seq,
            // received_at); without those, the export is a valid request for the same events.
            let exported: Vec<Value> = events
                .iter()
                .enumerate()
                .map(|(i, event)| {
                    let record = LoggedEvent { seq: i as u64 + 1, received_at: NOW, event: event.clone() };
                    let mut value = serde_json::to_value(EventJson::new(&record, None)).unwrap();
                    let object: &mut Map<String, Value> = value.as_object_mut().unwrap();
                    object.remove("seq");
                    object.remove("received_at");
                    value
                })
                .collect();
            let body = serde_json::to_vec(&json!({ "events": exported })).unwrap();
            let parsed = parse_body(&body, NOW);
            prop_assert_eq!(parsed.as_ref(), Ok(&events), "{}", String::from_utf8_lossy(&body));
        }
    }
}

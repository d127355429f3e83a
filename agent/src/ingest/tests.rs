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

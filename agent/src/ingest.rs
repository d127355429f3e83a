//! Turning a posted JSON body into validated [`Event`]s, and events back into JSON.
//!
//! Pure functions over bytes and plain data: no I/O, no clock (the caller passes `now`).
//! This module reads the JSON's shape (types, required and unknown fields, the quantity and
//! time formats); the rules an event keeps are [`Event::validate`]'s, which central applies
//! again. Errors name the first bad event and field so a WMS integrator can fix the feed;
//! nothing of a request is stored unless every event in it is valid.
//!
//! Quantities are read from the raw JSON text (`RawValue`), never through `f64`, so `0.1`
//! is stored as exactly one tenth.

use std::fmt;

use serde::Serialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use tally_protocol::{Event, EventKind, LogId, LoggedEvent, Qty, Timestamp, check_text};

/// At most this many events in one request.
pub const MAX_EVENTS_PER_REQUEST: usize = 1000;
/// Longest accepted text field, in characters.
pub const MAX_TEXT_CHARS: usize = Event::MAX_TEXT_CHARS;
/// Longest accepted `reason`, in characters.
pub const MAX_REASON_CHARS: usize = Event::MAX_REASON_CHARS;
#[cfg(test)]
const EARLIEST_OCCURRED_AT: i64 = Event::EARLIEST_OCCURRED_AT;
#[cfg(test)]
const MAX_FUTURE_MICROS: i64 = Event::MAX_FUTURE_MICROS;

/// A rejected request: a stable machine code, a sentence for people, and where the problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestError {
    /// 400 for bodies that are not JSON, 422 for JSON that is not valid events.
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub index: Option<usize>,
    pub field: Option<String>,
}

impl IngestError {
    fn malformed(message: String) -> IngestError {
        IngestError {
            status: 400,
            code: "malformed_json",
            message,
            index: None,
            field: None,
        }
    }

    fn body(code: &'static str, message: impl Into<String>, field: Option<&str>) -> IngestError {
        IngestError {
            status: 422,
            code,
            message: message.into(),
            index: None,
            field: field.map(str::to_owned),
        }
    }

    fn event(index: usize, field: &str, code: &'static str, message: String) -> IngestError {
        IngestError {
            status: 422,
            code,
            message: format!("event {index}: {message}"),
            index: Some(index),
            field: Some(field.to_owned()),
        }
    }
}

impl fmt::Display for IngestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A JSON object's members in document order, values left unparsed. Unlike a map type it
/// keeps duplicate keys, so they can be refused instead of silently taking the last one.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(12).min(32));
                while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
                    members.push((key, value));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// Parses a request body: one event object, or `{"events": [...]}` with 1 to
/// [`MAX_EVENTS_PER_REQUEST`] events.
pub fn parse_body(body: &[u8], now: Timestamp) -> Result<Vec<Event>, IngestError> {
    // One pass over the body: a data error is JSON of the wrong shape, anything else is not
    // JSON at all.
    let members: Members<'_> = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            IngestError::body(
                "invalid_body",
                "the body must be an event object or {\"events\": [...]}",
                None,
            )
        } else {
            IngestError::malformed(format!("the body is not valid JSON: {e}"))
        }
    })?;
    let is_batch = members.0.iter().any(|(key, _)| key == "events");
    if !is_batch {
        return Ok(vec![parse_event(0, &members, now)?]);
    }
    if let Some((key, _)) = members.0.iter().find(|(key, _)| key != "events") {
        return Err(IngestError::body(
            "unknown_field",
            format!("a batch body has only the key \"events\", not {key:?}"),
            Some(key),
        ));
    }
    if members.0.len() > 1 {
        return Err(IngestError::body(
            "duplicate_field",
            "\"events\" appears more than once",
            Some("events"),
        ));
    }
    let raw_events: Vec<&RawValue> = serde_json::from_str(members.0[0].1.get()).map_err(|_| {
        IngestError::body(
            "invalid_body",
            "\"events\" must be an array of event objects",
            Some("events"),
        )
    })?;
    if raw_events.is_empty() {
        return Err(IngestError::body(
            "empty_batch",
            "\"events\" is empty",
            Some("events"),
        ));
    }
    if raw_events.len() > MAX_EVENTS_PER_REQUEST {
        return Err(IngestError::body(
            "too_many_events",
            format!(
                "{} events in one request; the limit is {MAX_EVENTS_PER_REQUEST}",
                raw_events.len()
            ),
            Some("events"),
        ));
    }
    raw_events
        .iter()
        .enumerate()
        .map(|(index, raw)| {
            let members: Members<'_> = serde_json::from_str(raw.get()).map_err(|_| {
                IngestError::event(
                    index,
                    "events",
                    "invalid_body",
                    "is not a JSON object".into(),
                )
            })?;
            parse_event(index, &members, now)
        })
        .collect()
}

/// The fields of one event, as found in the JSON.
#[derive(Default)]
struct RawEvent<'a> {
    id: Option<&'a RawValue>,
    kind: Option<&'a RawValue>,
    sku: Option<&'a RawValue>,
    qty: Option<&'a RawValue>,
    location: Option<&'a RawValue>,
    to_location: Option<&'a RawValue>,
    lot: Option<&'a RawValue>,
    reference: Option<&'a RawValue>,
    reason: Option<&'a RawValue>,
    occurred_at: Option<&'a RawValue>,
    device: Option<&'a RawValue>,
    user: Option<&'a RawValue>,
}

fn parse_event(index: usize, members: &Members<'_>, now: Timestamp) -> Result<Event, IngestError> {
    let mut raw = RawEvent::default();
    for (key, value) in &members.0 {
        let slot = match key.as_str() {
            "id" => &mut raw.id,
            "type" => &mut raw.kind,
            "sku" => &mut raw.sku,
            "qty" => &mut raw.qty,
            "location" => &mut raw.location,
            "to_location" => &mut raw.to_location,
            "lot" => &mut raw.lot,
            "reference" => &mut raw.reference,
            "reason" => &mut raw.reason,
            "occurred_at" => &mut raw.occurred_at,
            "device" => &mut raw.device,
            "user" => &mut raw.user,
            _ => {
                return Err(IngestError::event(
                    index,
                    key,
                    "unknown_field",
                    format!("unknown field {key:?}"),
                ));
            }
        };
        if slot.is_some() {
            return Err(IngestError::event(
                index,
                key,
                "duplicate_field",
                format!("field {key:?} appears more than once"),
            ));
        }
        // `null` is the same as leaving the field out.
        if value.get() != "null" {
            *slot = Some(*value);
        }
    }
    let field = |name: &str, code: &'static str, message: String| {
        IngestError::event(index, name, code, message)
    };
    let text = |name: &str, value: Option<&RawValue>| -> Result<Option<String>, IngestError> {
        value
            .map(|v| parse_text(v).map_err(|m| field(name, "invalid_field", format!("{name} {m}"))))
            .transpose()
    };
    let required = |name: &str, value: Option<String>| {
        value.ok_or_else(|| field(name, "missing_field", format!("{name} is required")))
    };

    let kind_text = required("type", text("type", raw.kind)?)?;
    check_text(&kind_text, MAX_TEXT_CHARS)
        .map_err(|m| field("type", "invalid_field", format!("type {m}")))?;
    let kind: EventKind = kind_text.parse().map_err(|()| {
        field(
            "type",
            "unknown_event_type",
            format!("type {kind_text:?} is not one of receipt, pick, adjustment, count, transfer"),
        )
    })?;
    let sku = required("sku", text("sku", raw.sku)?)?;
    let qty = parse_qty(
        raw.qty
            .ok_or_else(|| field("qty", "missing_field", "qty is required".into()))?,
    )
    .map_err(|m| field("qty", "invalid_field", format!("qty {m}")))?;
    let occurred_at = raw
        .occurred_at
        .map(parse_time)
        .transpose()
        .map_err(|m| field("occurred_at", "invalid_field", format!("occurred_at {m}")))?;
    let event = Event {
        id: text("id", raw.id)?,
        kind,
        sku,
        qty,
        location: text("location", raw.location)?,
        to_location: text("to_location", raw.to_location)?,
        lot: text("lot", raw.lot)?,
        reference: text("reference", raw.reference)?,
        reason: text("reason", raw.reason)?,
        occurred_at,
        device: text("device", raw.device)?,
        user: text("user", raw.user)?,
    };
    event.validate(now).map_err(|e| {
        let code = if e.missing {
            "missing_field"
        } else {
            "invalid_field"
        };
        field(e.field, code, e.message)
    })?;
    Ok(event)
}

/// A text field: a JSON string (its rules are [`tally_protocol::check_text`]'s, applied by
/// [`Event::validate`]).
fn parse_text(value: &RawValue) -> Result<String, String> {
    serde_json::from_str(value.get()).map_err(|_| "must be a string".to_owned())
}

/// A quantity: a JSON number or a string holding a plain decimal.
fn parse_qty(value: &RawValue) -> Result<Qty, String> {
    let raw = value.get();
    let text = if raw.starts_with('"') {
        serde_json::from_str::<String>(raw).map_err(|_| "must be a decimal number".to_owned())?
    } else if raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        raw.to_owned()
    } else {
        return Err("must be a decimal number".into());
    };
    Qty::parse(&text).map_err(|e| e.to_string())
}

/// An RFC 3339 timestamp; whether it is plausible is [`Event::validate`]'s to say.
///
/// A leap second (`23:59:60`) is refused rather than read as `23:59:59` as jiff would: two
/// different instants would otherwise be stored as one, silently. None has been inserted since
/// 2016 and none will be after 2035, so a scanner that sends one is better told.
fn parse_time(value: &RawValue) -> Result<Timestamp, String> {
    let text: String = serde_json::from_str(value.get())
        .map_err(|_| "must be an RFC 3339 string such as 2026-11-29T09:30:00Z".to_owned())?;
    let Some((second, offset_in_range)) = rfc3339_second(&text) else {
        return Err(format!(
            "{text:?} is not an RFC 3339 timestamp with an offset, such as 2026-11-29T09:30:00Z"
        ));
    };
    if !offset_in_range {
        return Err(format!(
            "{text:?} has an offset that does not exist: RFC 3339 offsets run from -23:59 to \
             +23:59 (hours 00-23, minutes 00-59)"
        ));
    }
    if second == 60 {
        return Err(format!(
            "{text:?} is a leap second, which Tally does not store (its clock, like Unix time, has \
             none): send the second before or after it"
        ));
    }
    let parsed: jiff::Timestamp = text.parse().map_err(|_| {
        format!(
            "{text:?} names a date or time that does not exist: month 01-12, a day of that month, \
             hour 00-23, minute and second 00-59"
        )
    })?;
    Ok(Timestamp::from_micros(parsed.as_microsecond()))
}

/// The seconds field of `text` if it has the shape of an RFC 3339 date-time
/// (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`), whatever its numbers, and whether its offset is
/// in range (jiff takes `+24:00`, which RFC 3339 does not have); `None` if it does not have
/// that shape. Telling the shape apart from the range lets a wrong number be named as such.
fn rfc3339_second(text: &str) -> Option<(u8, bool)> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range.clone())
            .filter(|d| d.iter().all(u8::is_ascii_digit))
            .map(|d| {
                d.iter()
                    .fold(0u8, |n, d| n.wrapping_mul(10).wrapping_add(d - b'0'))
            })
    };
    let at = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    digits(0..4)?;
    let shaped = at(4, b"-")
        && digits(5..7).is_some()
        && at(7, b"-")
        && digits(8..10).is_some()
        && at(10, b"Tt ")
        && digits(11..13).is_some()
        && at(13, b":")
        && digits(14..16).is_some()
        && at(16, b":");
    let second = digits(17..19).filter(|_| shaped)?;
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let len = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        rest = &frac[len..];
    }
    let two = |a: u8, b: u8| {
        (a.is_ascii_digit() && b.is_ascii_digit()).then(|| (a - b'0') * 10 + (b - b'0'))
    };
    match *rest {
        [b'Z' | b'z'] => Some((second, true)),
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            let (hours, minutes) = (two(h1, h2)?, two(m1, m2)?);
            Some((second, hours <= 23 && minutes <= 59))
        }
        _ => None,
    }
}

/// RFC 3339 in UTC with microseconds where they are not zero.
pub fn format_time(at: Timestamp) -> String {
    jiff::Timestamp::from_microsecond(at.as_micros())
        .map(|t| t.to_string())
        .unwrap_or_else(|_| at.as_micros().to_string())
}

/// The JSON form of a stored event (`GET /v1/events`, `tally-agent export`). Quantities are
/// strings so that no JSON reader turns them into floats.
#[derive(Debug, Serialize)]
pub struct EventJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_id: Option<String>,
    pub seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub sku: &'a str,
    pub qty: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_location: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lot: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    pub received_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
}

impl<'a> EventJson<'a> {
    pub fn new(record: &'a LoggedEvent, log_id: Option<LogId>) -> EventJson<'a> {
        let e = &record.event;
        EventJson {
            log_id: log_id.map(|id| id.to_string()),
            seq: record.seq,
            id: e.id.as_deref(),
            kind: e.kind.as_str(),
            sku: &e.sku,
            qty: e.qty.to_string(),
            location: e.location.as_deref(),
            to_location: e.to_location.as_deref(),
            lot: e.lot.as_deref(),
            reference: e.reference.as_deref(),
            reason: e.reason.as_deref(),
            occurred_at: e.occurred_at.map(format_time),
            received_at: format_time(record.received_at),
            device: e.device.as_deref(),
            user: e.user.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests;

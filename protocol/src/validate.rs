//! The rules every event keeps, in one place: the agent applies them to what a scanner posts,
//! and central applies them again to what an agent sends, because a valid token does not make
//! the events behind it valid (a modified or buggy agent must not book a receipt of −5).

use crate::event::{Event, EventKind, LoggedEvent, Qty, Timestamp};

/// Why an event breaks the rules: the field at fault, as named in the JSON of an event, and a
/// sentence that starts with that field or the event's kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EventError {
    pub field: &'static str,
    /// The field is absent where the kind needs it, rather than present with a bad value.
    pub missing: bool,
    pub message: String,
}

impl EventError {
    fn invalid(field: &'static str, message: String) -> EventError {
        EventError {
            field,
            missing: false,
            message,
        }
    }

    fn missing(field: &'static str, message: &str) -> EventError {
        EventError {
            field,
            missing: true,
            message: message.to_owned(),
        }
    }
}

impl Event {
    /// Longest text field (SKU, locations, lot, reference, id, device, user), in characters.
    pub const MAX_TEXT_CHARS: usize = 128;
    /// Longest `reason`, in characters.
    pub const MAX_REASON_CHARS: usize = 512;
    /// The earliest `occurred_at` accepted (2000-01-01T00:00:00Z), in µs since the epoch:
    /// earlier is a device with an unset clock.
    pub const EARLIEST_OCCURRED_AT: i64 = 946_684_800_000_000;
    /// How far past `now` an `occurred_at` may be, for devices whose clocks run ahead.
    pub const MAX_FUTURE_MICROS: i64 = 24 * 3600 * 1_000_000;

    /// Checks the event against every rule, in the order the fields of a scanner's JSON are
    /// usually read, and names the first it breaks. `now` bounds `occurred_at`: the agent
    /// passes its clock at ingest, central the event's `received_at` (see
    /// [`LoggedEvent::validate`]).
    pub fn validate(&self, now: Timestamp) -> Result<(), EventError> {
        let text = |field: &'static str, value: Option<&str>, max: usize| match value {
            Some(value) => check_text(value, max)
                .map_err(|rule| EventError::invalid(field, format!("{field} {rule}"))),
            None => Ok(()),
        };
        let kind = self.kind;
        text("sku", Some(&self.sku), Event::MAX_TEXT_CHARS)?;
        if self.qty.micros().unsigned_abs() > (Qty::MAX_UNITS * Qty::SCALE) as u64 {
            return Err(EventError::invalid(
                "qty",
                format!("qty is larger in magnitude than {}", Qty::MAX_UNITS),
            ));
        }
        text("location", self.location.as_deref(), Event::MAX_TEXT_CHARS)?;
        text(
            "to_location",
            self.to_location.as_deref(),
            Event::MAX_TEXT_CHARS,
        )?;
        text("reason", self.reason.as_deref(), Event::MAX_REASON_CHARS)?;

        let sign_rule = match kind {
            EventKind::Receipt | EventKind::Pick | EventKind::Transfer => {
                (self.qty.micros() <= 0).then_some("must be greater than 0")
            }
            EventKind::Adjustment => self
                .qty
                .is_zero()
                .then_some("must not be 0 (it is a signed delta)"),
            EventKind::Count => self
                .qty
                .is_negative()
                .then_some("must not be negative (it is the counted quantity)"),
        };
        if let Some(rule) = sign_rule {
            return Err(EventError::invalid(
                "qty",
                format!("qty {rule} for a {kind}"),
            ));
        }
        match (kind, &self.location, &self.to_location) {
            (EventKind::Transfer, None, _) => {
                return Err(EventError::missing(
                    "location",
                    "a transfer needs location and to_location",
                ));
            }
            (EventKind::Transfer, _, None) => {
                return Err(EventError::missing(
                    "to_location",
                    "a transfer needs location and to_location",
                ));
            }
            (EventKind::Transfer, from, to) if from == to => {
                return Err(EventError::invalid(
                    "to_location",
                    "to_location must differ from location".into(),
                ));
            }
            (EventKind::Transfer, ..) => {}
            (_, _, Some(_)) => {
                return Err(EventError::invalid(
                    "to_location",
                    format!("to_location is only valid on a transfer, not a {kind}"),
                ));
            }
            (EventKind::Adjustment, ..) if self.reason.is_none() => {
                return Err(EventError::missing(
                    "reason",
                    "an adjustment needs a reason",
                ));
            }
            _ => {}
        }
        if let Some(at) = self.occurred_at {
            if at.as_micros() < Event::EARLIEST_OCCURRED_AT {
                return Err(EventError::invalid(
                    "occurred_at",
                    "occurred_at is before 2000-01-01 (is the device's clock set?)".into(),
                ));
            }
            if at.as_micros() > now.as_micros().saturating_add(Event::MAX_FUTURE_MICROS) {
                return Err(EventError::invalid(
                    "occurred_at",
                    "occurred_at is more than a day in the future (is the device's clock set?)"
                        .into(),
                ));
            }
        }
        text("id", self.id.as_deref(), Event::MAX_TEXT_CHARS)?;
        text("lot", self.lot.as_deref(), Event::MAX_TEXT_CHARS)?;
        text(
            "reference",
            self.reference.as_deref(),
            Event::MAX_TEXT_CHARS,
        )?;
        text("device", self.device.as_deref(), Event::MAX_TEXT_CHARS)?;
        text("user", self.user.as_deref(), Event::MAX_TEXT_CHARS)?;
        Ok(())
    }
}

impl LoggedEvent {
    /// [`Event::validate`] as the agent did when it accepted the event: its `occurred_at`
    /// bounded by when the agent received it (which is no earlier than the agent's check).
    pub fn validate(&self) -> Result<(), EventError> {
        self.event.validate(self.received_at)
    }
}

/// The rules of a text field: 1..=`max` characters, no control characters, no invisible or
/// direction-changing ones (an SKU that looks like another on screen, or a location name that
/// reads backwards, must not reach Odoo), no white space at either end (a scanner's stray
/// newline must not create a second SKU). The error completes a sentence starting with the
/// field's name.
pub fn check_text(text: &str, max: usize) -> Result<(), String> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    if text.chars().count() > max {
        return Err(format!("is longer than {max} characters"));
    }
    if text.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    if let Some(c) = text.chars().find(|&c| is_invisible(c)) {
        return Err(format!(
            "must not contain the invisible or direction-changing character U+{:04X}",
            c as u32
        ));
    }
    if text.trim() != text {
        return Err("must not start or end with white space".into());
    }
    Ok(())
}

/// Zero-width characters, bidirectional controls, line and paragraph separators and the
/// byte-order mark: format characters that change how a text looks or reads without being
/// seen.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_micros(1_764_000_000_000_000);

    fn ok(kind: EventKind, qty: i64) -> Event {
        let mut event = Event::new(kind, "SKU-1", Qty::from_units(qty));
        match kind {
            EventKind::Transfer => {
                event.location = Some("WH/Stock/A".into());
                event.to_location = Some("WH/Stock/B".into());
            }
            EventKind::Adjustment => event.reason = Some("damaged".into()),
            _ => {}
        }
        event
    }

    #[test]
    fn valid_events_of_every_kind_pass() {
        for kind in EventKind::ALL {
            assert_eq!(ok(kind, 3).validate(NOW), Ok(()), "{kind}");
        }
        assert_eq!(ok(EventKind::Count, 0).validate(NOW), Ok(()));
        assert_eq!(ok(EventKind::Adjustment, -3).validate(NOW), Ok(()));
        let max = Qty::from_units(Qty::MAX_UNITS);
        let event = Event {
            qty: max,
            ..ok(EventKind::Receipt, 1)
        };
        assert_eq!(event.validate(NOW), Ok(()));
    }

    #[test]
    fn each_broken_rule_names_its_field() {
        let time = |micros| Some(Timestamp::from_micros(micros));
        let cases: Vec<(Event, &str, bool)> = vec![
            (ok(EventKind::Receipt, -5), "qty", false),
            (ok(EventKind::Pick, 0), "qty", false),
            (ok(EventKind::Transfer, 0), "qty", false),
            (ok(EventKind::Adjustment, 0), "qty", false),
            (ok(EventKind::Count, -1), "qty", false),
            (
                Event {
                    qty: Qty::from_micros(Qty::MAX_UNITS * Qty::SCALE + 1),
                    ..ok(EventKind::Receipt, 1)
                },
                "qty",
                false,
            ),
            (
                Event {
                    qty: Qty::from_micros(i64::MIN),
                    ..ok(EventKind::Adjustment, 1)
                },
                "qty",
                false,
            ),
            (
                Event {
                    reason: None,
                    ..ok(EventKind::Adjustment, 1)
                },
                "reason",
                true,
            ),
            (
                Event {
                    sku: "A\u{1b}[2J".into(),
                    ..ok(EventKind::Pick, 1)
                },
                "sku",
                false,
            ),
            (
                Event {
                    sku: String::new(),
                    ..ok(EventKind::Pick, 1)
                },
                "sku",
                false,
            ),
            (
                Event {
                    sku: "S".repeat(129),
                    ..ok(EventKind::Pick, 1)
                },
                "sku",
                false,
            ),
            (
                Event {
                    sku: " A".into(),
                    ..ok(EventKind::Pick, 1)
                },
                "sku",
                false,
            ),
            (
                Event {
                    location: None,
                    ..ok(EventKind::Transfer, 1)
                },
                "location",
                true,
            ),
            (
                Event {
                    to_location: None,
                    ..ok(EventKind::Transfer, 1)
                },
                "to_location",
                true,
            ),
            (
                Event {
                    to_location: Some("WH/Stock/A".into()),
                    ..ok(EventKind::Transfer, 1)
                },
                "to_location",
                false,
            ),
            (
                Event {
                    to_location: Some("WH/Stock/A".into()),
                    ..ok(EventKind::Pick, 1)
                },
                "to_location",
                false,
            ),
            (
                Event {
                    reason: Some("r".repeat(513)),
                    ..ok(EventKind::Adjustment, 1)
                },
                "reason",
                false,
            ),
            (
                Event {
                    occurred_at: time(Event::EARLIEST_OCCURRED_AT - 1),
                    ..ok(EventKind::Pick, 1)
                },
                "occurred_at",
                false,
            ),
            (
                Event {
                    occurred_at: time(NOW.as_micros() + Event::MAX_FUTURE_MICROS + 1),
                    ..ok(EventKind::Pick, 1)
                },
                "occurred_at",
                false,
            ),
            (
                Event {
                    id: Some(String::new()),
                    ..ok(EventKind::Pick, 1)
                },
                "id",
                false,
            ),
            (
                Event {
                    user: Some("ana\n".into()),
                    ..ok(EventKind::Pick, 1)
                },
                "user",
                false,
            ),
        ];
        for (event, field, missing) in cases {
            let error = event.validate(NOW).expect_err(&format!("{event:?}"));
            assert_eq!((error.field, error.missing), (field, missing), "{error}");
            assert!(!error.message.is_empty());
        }
    }

    /// Guards against look-alike SKUs and right-to-left overrides passing as valid text
    /// (issue 10, item 8): each invisible or direction-changing character is refused.
    #[test]
    fn invisible_and_direction_changing_characters_are_refused() {
        let invisible = ('\u{200B}'..='\u{200F}')
            .chain('\u{202A}'..='\u{202E}')
            .chain('\u{2066}'..='\u{2069}')
            .chain(['\u{2028}', '\u{2029}', '\u{2060}', '\u{FEFF}']);
        for c in invisible {
            for text in [format!("A{c}B"), format!("{c}AB"), format!("AB{c}")] {
                let error = check_text(&text, 128).expect_err(&text);
                assert!(error.contains("invisible"), "U+{:04X}: {error}", c as u32);
            }
        }
        for text in ["WH/Stock/A1", "Ümlaut-é", "漢字", "a b"] {
            assert_eq!(check_text(text, 128), Ok(()), "{text}");
        }
    }

    #[test]
    fn the_per_event_maximum_sums_exactly_as_a_float_a_few_times_over() {
        // Eight events of the maximum still reach Odoo exactly; the documented bound is what
        // central checks sums against.
        let max = Qty::MAX_UNITS * Qty::SCALE;
        assert!(8 * max <= Qty::MAX_EXACT_MICROS);
        assert!(9 * max > Qty::MAX_EXACT_MICROS);
    }
}

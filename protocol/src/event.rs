//! The stock event model.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What happened to the stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventKind {
    /// Goods came in: `qty` > 0 is added at `location`.
    Receipt,
    /// Goods went out: `qty` > 0 is removed from `location`.
    Pick,
    /// A correction: `qty` is a signed, non-zero delta, and `reason` says why.
    Adjustment,
    /// A stock count: `qty` ≥ 0 is the absolute quantity counted at `location`.
    Count,
    /// A move inside the warehouse: `qty` > 0 goes from `location` to `to_location`.
    Transfer,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::Receipt,
        EventKind::Pick,
        EventKind::Adjustment,
        EventKind::Count,
        EventKind::Transfer,
    ];

    /// The name used in JSON and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Receipt => "receipt",
            EventKind::Pick => "pick",
            EventKind::Adjustment => "adjustment",
            EventKind::Count => "count",
            EventKind::Transfer => "transfer",
        }
    }
}

impl FromStr for EventKind {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or(())
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An exact quantity, stored as an integer number of millionths (micro-units).
///
/// Quantities are never floats: a float accumulator drifts, and stock that drifts is the
/// problem Tally exists to solve. Six fractional digits cover every unit of measure Odoo ships
/// with (its default precision is 3 or fewer).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub struct Qty(i64);

/// Why a text is not a valid quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QtyError {
    #[error("is empty")]
    Empty,
    #[error("is not a decimal number (expected digits with an optional sign and '.')")]
    NotDecimal,
    #[error("has more than {} fractional digits", Qty::SCALE_DIGITS)]
    TooPrecise,
    #[error("is larger in magnitude than {}", Qty::MAX_UNITS)]
    TooLarge,
}

impl Qty {
    /// Number of fractional digits kept.
    pub const SCALE_DIGITS: u32 = 6;
    /// Micro-units per unit.
    pub const SCALE: i64 = 1_000_000;
    /// Largest magnitude accepted, in whole units. Far above any real stock figure, and far
    /// enough below `i64::MAX` micro-units that sums of many quantities cannot overflow.
    pub const MAX_UNITS: i64 = 1_000_000_000_000;
    pub const ZERO: Qty = Qty(0);

    pub const fn from_micros(micros: i64) -> Qty {
        Qty(micros)
    }

    pub const fn from_units(units: i64) -> Qty {
        Qty(units * Qty::SCALE)
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn checked_add(self, other: Qty) -> Option<Qty> {
        self.0.checked_add(other.0).map(Qty)
    }

    pub fn checked_neg(self) -> Option<Qty> {
        self.0.checked_neg().map(Qty)
    }

    /// Parses a plain decimal such as `12`, `-3.5` or `0.000001`. Exponents, `+`, spaces,
    /// and a bare `.` are refused so that what a scanner sent is what gets stored.
    pub fn parse(text: &str) -> Result<Qty, QtyError> {
        if text.is_empty() {
            return Err(QtyError::Empty);
        }
        let (negative, body) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (int_part, frac_part) = match body.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (body, None),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int_part.is_empty() || !all_digits(int_part) {
            return Err(QtyError::NotDecimal);
        }
        let frac = frac_part.unwrap_or("");
        if frac_part.is_some() && (frac.is_empty() || !all_digits(frac)) {
            return Err(QtyError::NotDecimal);
        }
        if frac.len() > Qty::SCALE_DIGITS as usize {
            return Err(QtyError::TooPrecise);
        }
        let int_trimmed = int_part.trim_start_matches('0');
        // MAX_UNITS has 13 digits; anything longer is out of range before arithmetic.
        if int_trimmed.len() > 13 {
            return Err(QtyError::TooLarge);
        }
        let units: i64 = if int_trimmed.is_empty() {
            0
        } else {
            int_trimmed.parse().map_err(|_| QtyError::NotDecimal)?
        };
        if units > Qty::MAX_UNITS {
            return Err(QtyError::TooLarge);
        }
        let mut frac_micros: i64 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| QtyError::NotDecimal)?
        };
        for _ in frac.len()..Qty::SCALE_DIGITS as usize {
            frac_micros *= 10;
        }
        let micros = units * Qty::SCALE + frac_micros;
        if micros > Qty::MAX_UNITS * Qty::SCALE {
            return Err(QtyError::TooLarge);
        }
        Ok(Qty(if negative { -micros } else { micros }))
    }
}

impl FromStr for Qty {
    type Err = QtyError;

    fn from_str(s: &str) -> Result<Self, QtyError> {
        Qty::parse(s)
    }
}

/// The shortest exact decimal: `12`, `-3.5`, `0.000001`.
impl fmt::Display for Qty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let units = abs / Qty::SCALE as u64;
        let frac = abs % Qty::SCALE as u64;
        if frac == 0 {
            return write!(f, "{sign}{units}");
        }
        let digits = format!("{frac:06}");
        write!(f, "{sign}{units}.{}", digits.trim_end_matches('0'))
    }
}

/// A point in time: microseconds since the Unix epoch, UTC.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Timestamp {
        Timestamp(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// The current wall-clock time.
    pub fn now() -> Timestamp {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
    }
}

/// The random identity of one agent's event log, created with the log.
///
/// A new `LogId` means a new sequence space: an agent whose disk was replaced starts again
/// at seq 1, and central must not mistake those events for duplicates of the old log's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LogId(pub [u8; 16]);

impl LogId {
    pub fn parse_hex(text: &str) -> Option<LogId> {
        if text.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(LogId(out))
    }
}

impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogId({self})")
    }
}

/// One stock event as a scanner or WMS reported it, after validation.
///
/// Which optional fields are present depends on `kind`; the agent's ingest enforces it
/// (`to_location` only on transfers, `reason` required on adjustments, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The client's idempotency key, if it sent one.
    pub id: Option<String>,
    pub kind: EventKind,
    pub sku: String,
    pub qty: Qty,
    pub location: Option<String>,
    pub to_location: Option<String>,
    pub lot: Option<String>,
    /// An Odoo document this event belongs to, such as `WH/OUT/00012`.
    pub reference: Option<String>,
    pub reason: Option<String>,
    /// When it happened on the floor, as the device saw it, if the device said. Order is `seq`,
    /// never this; a count is reconciled against it (absent: the time the agent received it).
    pub occurred_at: Option<Timestamp>,
    pub device: Option<String>,
    pub user: Option<String>,
}

impl Event {
    /// An event with its kind, SKU and quantity and none of the optional fields; set those with
    /// struct update syntax (`Event { reason: Some(..), ..Event::new(..) }`). Nothing is
    /// validated here: that is the agent's ingest.
    pub fn new(kind: EventKind, sku: impl Into<String>, qty: Qty) -> Event {
        Event {
            id: None,
            kind,
            sku: sku.into(),
            qty,
            location: None,
            to_location: None,
            lot: None,
            reference: None,
            reason: None,
            occurred_at: None,
            device: None,
            user: None,
        }
    }
}

/// An event as stored in an agent's log: the event plus what the agent added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedEvent {
    /// Position in the log: contiguous from 1, the only order that counts.
    pub seq: u64,
    /// When the agent accepted it.
    pub received_at: Timestamp,
    pub event: Event,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qty_parses_exact_decimals() {
        let cases = [
            ("0", 0),
            ("12", 12_000_000),
            ("-3.5", -3_500_000),
            ("0.000001", 1),
            ("007.250", 7_250_000),
            ("1000000000000", Qty::MAX_UNITS * Qty::SCALE),
            ("-1000000000000", -Qty::MAX_UNITS * Qty::SCALE),
        ];
        for (text, micros) in cases {
            assert_eq!(Qty::parse(text), Ok(Qty::from_micros(micros)), "{text}");
        }
    }

    #[test]
    fn qty_refuses_what_is_not_a_plain_decimal() {
        let cases = [
            ("", QtyError::Empty),
            ("1e3", QtyError::NotDecimal),
            ("+1", QtyError::NotDecimal),
            (".5", QtyError::NotDecimal),
            ("5.", QtyError::NotDecimal),
            (" 5", QtyError::NotDecimal),
            ("1.2.3", QtyError::NotDecimal),
            ("--1", QtyError::NotDecimal),
            ("NaN", QtyError::NotDecimal),
            ("0.0000001", QtyError::TooPrecise),
            ("1000000000000.000001", QtyError::TooLarge),
            ("99999999999999999999999", QtyError::TooLarge),
        ];
        for (text, err) in cases {
            assert_eq!(Qty::parse(text), Err(err), "{text:?}");
        }
    }

    #[test]
    fn qty_display_is_shortest_exact_form() {
        for (micros, text) in [
            (0, "0"),
            (1, "0.000001"),
            (-3_500_000, "-3.5"),
            (12_000_000, "12"),
            (-1, "-0.000001"),
        ] {
            assert_eq!(Qty::from_micros(micros).to_string(), text);
            assert_eq!(Qty::parse(text), Ok(Qty::from_micros(micros)));
        }
    }

    #[test]
    fn log_id_hex_round_trips() {
        let id = LogId([0xab; 16]);
        assert_eq!(LogId::parse_hex(&id.to_string()), Some(id));
        assert_eq!(LogId::parse_hex("zz"), None);
        assert_eq!(LogId::parse_hex(&"g".repeat(32)), None);
    }

    #[test]
    fn event_kind_names_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
        }
        assert!("Pick".parse::<EventKind>().is_err());
    }
}

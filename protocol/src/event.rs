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
    /// Largest magnitude of one event's quantity, in whole units: a billion, far above any
    /// real stock movement, and small enough that the quantity, and the sum of a few such,
    /// reaches Odoo's float fields exactly (see [`Qty::MAX_EXACT_MICROS`]).
    pub const MAX_UNITS: i64 = 1_000_000_000;
    /// Largest magnitude, in micro-units, that survives the trip through an IEEE-754 double
    /// in units (Odoo's float quantities, JSON numbers) and back exactly: 2^33 units. Below
    /// 2^33 adjacent doubles are at most 2^-20 apart, less than a micro-unit, so the double
    /// nearest to any six-decimal quantity rounds back to it. (2^53 micro-units would be exact
    /// as an integer count of micro-units, but Odoo's floats count units.) A sum of quantities
    /// beyond this is never sent to Odoo: central parks its events instead.
    pub const MAX_EXACT_MICROS: i64 = (1 << 33) * Qty::SCALE;
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

    /// The quantity in units as the nearest double, for a float field of Odoo's; `None`
    /// beyond [`Qty::MAX_EXACT_MICROS`], where that double may not round back to it. (Exact:
    /// the micro-units are an exact double there, and one division rounds once.)
    pub fn to_f64(self) -> Option<f64> {
        (self.0.unsigned_abs() <= Qty::MAX_EXACT_MICROS as u64)
            .then(|| self.0 as f64 / Qty::SCALE as f64)
    }

    /// A quantity in units read from a double (Odoo's answer), rounded to the micro-unit;
    /// `None` for NaN, infinities and magnitudes beyond [`Qty::MAX_EXACT_MICROS`].
    pub fn from_f64(value: f64) -> Option<Qty> {
        let limit = (Qty::MAX_EXACT_MICROS / Qty::SCALE) as f64;
        if !value.is_finite() || value.abs() > limit {
            return None;
        }
        // Formatting rounds the double's exact binary value to six decimals correctly;
        // multiplying by 10^6 first would round twice.
        let text = format!("{:.6}", value.abs());
        let (units, frac) = text.split_once('.')?;
        let micros = units
            .parse::<i64>()
            .ok()?
            .checked_mul(Qty::SCALE)?
            .checked_add(frac.parse::<i64>().ok()?)?;
        let micros = if value < 0.0 { -micros } else { micros };
        (micros.unsigned_abs() <= Qty::MAX_EXACT_MICROS as u64).then_some(Qty(micros))
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
        // Anything longer than MAX_UNITS in digits is out of range before arithmetic.
        if int_trimmed.len() > Qty::MAX_UNITS.ilog10() as usize + 1 {
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
/// Which optional fields are present depends on `kind`; [`Event::validate`] holds the rules
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
    /// validated here: that is [`Event::validate`].
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
            ("1000000000", Qty::MAX_UNITS * Qty::SCALE),
            ("-1000000000", -Qty::MAX_UNITS * Qty::SCALE),
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
            ("1000000000.000001", QtyError::TooLarge),
            ("1000000001", QtyError::TooLarge),
            ("10000000000", QtyError::TooLarge),
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
    fn floats_beyond_the_exact_bound_are_refused() {
        let max = Qty::from_micros(Qty::MAX_EXACT_MICROS);
        assert_eq!(Qty::from_f64(max.to_f64().unwrap()), Some(max));
        assert_eq!(Qty::from_micros(Qty::MAX_EXACT_MICROS + 1).to_f64(), None);
        assert_eq!(Qty::from_micros(i64::MIN).to_f64(), None);
        for bad in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e10,
            -1e10,
            1e300,
        ] {
            assert_eq!(Qty::from_f64(bad), None, "{bad}");
        }
        assert_eq!(Qty::from_f64(-0.0), Some(Qty::ZERO));
        assert_eq!(Qty::from_f64(2.9999999999996), Some(Qty::from_units(3)));
        // Why the bound is 2^33 units and not 2^53 micro-units: just below 2^53 micro-units a
        // six-decimal quantity has no double that rounds back to it.
        let near = (1i64 << 53) - 1;
        assert_ne!(format!("{:.6}", near as f64 / 1e6), "9007199254.740991");
    }

    proptest::proptest! {
        #[test]
        fn every_quantity_within_the_exact_bound_survives_a_float(
            micros in -Qty::MAX_EXACT_MICROS..=Qty::MAX_EXACT_MICROS
        ) {
            let qty = Qty::from_micros(micros);
            proptest::prop_assert_eq!(qty.to_f64().and_then(Qty::from_f64), Some(qty));
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

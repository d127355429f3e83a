//! The merge engine's durable state, in central's store (the tables are listed in
//! `store::schema`):
//!
//! - `merge_cursor`: (agent, log) → the highest seq whose event is resolved (applied to Odoo,
//!   or parked);
//! - `merge_plan`: (agent, log) → the plan being applied, recorded before the first call to
//!   Odoo so that a restart applies the same pickings under the same keys ([`plans`]: the
//!   recorded plan's types and their encoding);
//! - `dead_letters`: (agent, log, seq) → why that event is parked;
//! - `retry_letters`: (agent, log, seq) → a parked event an operator asked to retry, with the
//!   retry's generation (which makes the retry's picking keys new);
//! - `discarded_letters`: (agent, log, seq) → a parked event given up on, with the reason;
//! - `merge_notices`: (agent, log, seq) → something an operator should know;
//! - `merge_counters`: `retry_generation`.
//!
//! Each value is encoded here, next to the table that holds it: the engine hands over and gets
//! back types, never bytes.

mod letters;
pub mod plans;

use serde::{Deserialize, Serialize};
use tally_protocol::{LogId, Timestamp};

pub use letters::{Letters, StreamProgress};
pub use plans::{Status, StoredPhase, StoredPlan};

/// A parked event queued for another attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    pub letter: DeadLetter,
    /// Which retry request this is: part of the keys of the pickings it creates, so that a
    /// retry never meets a picking an earlier attempt left (cancelled) under the same name.
    pub generation: u64,
}

/// Something about an applied event an operator should look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub warehouse: String,
    pub sku: String,
    /// `pending-odoo-count`: someone's count in Odoo that was not applied yet.
    pub kind: String,
    pub message: String,
    pub noticed_at: i64,
}

/// A parked event and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub warehouse: String,
    pub sku: String,
    /// Odoo's exception name, or Tally's own reason (`unknown-sku`, `parked-behind`, ...).
    pub reason: String,
    pub message: String,
    pub parked_at: i64,
}

/// A dead letter an operator gave up on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discarded {
    pub letter: DeadLetter,
    pub reason: String,
    pub discarded_at: i64,
}

/// Tally's own reasons for parking an event, as stored in a [`DeadLetter`]'s `reason` (an
/// event Odoo refused carries Odoo's exception name instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkReason {
    /// No active product in Odoo has the SKU.
    UnknownSku,
    /// The product is not storable.
    NotStorable,
    /// Several products share the SKU.
    DuplicateSku,
    /// The product is tracked by lot and the event has none.
    MissingLot,
    /// The warehouse has no internal location of that name.
    UnknownLocation,
    /// The event breaks the event rules (journaled before a rule existed).
    InvalidEvent,
    /// A count's time is out of range.
    BadTime,
    /// A quantity it adds up to is more than Odoo holds exactly.
    QuantityTooLarge,
    /// Only because an earlier event of its SKU is parked.
    ParkedBehind,
}

impl ParkReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            ParkReason::UnknownSku => "unknown-sku",
            ParkReason::NotStorable => "not-storable",
            ParkReason::DuplicateSku => "duplicate-sku",
            ParkReason::MissingLot => "missing-lot",
            ParkReason::UnknownLocation => "unknown-location",
            ParkReason::InvalidEvent => "invalid-event",
            ParkReason::BadTime => "bad-time",
            ParkReason::QuantityTooLarge => "quantity-too-large",
            ParkReason::ParkedBehind => "parked-behind",
        }
    }
}

/// The reason of an event parked only because an earlier one of its SKU is.
pub const PARKED_BEHIND: &str = ParkReason::ParkedBehind.as_str();

/// Logs what a plan parked, one line per (warehouse, SKU): the events parked behind an earlier
/// parked one of their SKU were logged with it.
pub fn log_parked(agent: &str, parked: &[(u64, DeadLetter)]) {
    let mut keys: std::collections::BTreeMap<(&str, &str), Vec<&(u64, DeadLetter)>> =
        Default::default();
    for entry in parked {
        keys.entry((&entry.1.warehouse, &entry.1.sku))
            .or_default()
            .push(entry);
    }
    for ((warehouse, sku), letters) in keys {
        let cause = letters.iter().find(|(_, l)| l.reason != PARKED_BEHIND);
        // A phased run parks what waits behind as each phase starts: not in seq order.
        let first_seq = letters
            .iter()
            .map(|(seq, _)| *seq)
            .min()
            .unwrap_or_default();
        let last_seq = letters
            .iter()
            .map(|(seq, _)| *seq)
            .max()
            .unwrap_or_default();
        match cause {
            Some((seq, letter)) => tracing::warn!(
                agent, warehouse, sku, events = letters.len(), first_seq, last_seq, seq,
                reason = %letter.reason, message = %letter.message,
                "events parked: Odoo cannot take them, and later events of this SKU wait behind them (tally-central dlq list)"
            ),
            None => tracing::debug!(
                agent,
                warehouse,
                sku,
                events = letters.len(),
                first_seq,
                last_seq,
                "events parked behind earlier parked events of their SKU"
            ),
        }
    }
}

fn key(log_id: LogId) -> u128 {
    u128::from_be_bytes(log_id.0)
}

/// The current time for `parked_at`.
pub fn now_micros() -> i64 {
    Timestamp::now().as_micros()
}

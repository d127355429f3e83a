//! Turning a run of journaled events into the Odoo pickings that apply them: pure functions
//! over plain data, no I/O.
//!
//! Events are coalesced per (kind, product, location, lot): Odoo sees one move per group, not
//! one per scan. A count is ordered only against the events of its own stock (product,
//! location, lot): [`phases`] splits a run so that each count is computed after the events of
//! its stock before it and before those after it, while every other event coalesces across it.
//!
//! - `mod.rs`: the planned types, and the exact sums every planner keeps under
//!   `Qty::MAX_EXACT_MICROS` ([`Oversized`]);
//! - `phases.rs`: a run into phases; `fills.rs`: scans that fill open Odoo pickings;
//!   `pickings.rs`: moves into chunked pickings under deterministic keys; `counts.rs`: counts
//!   into adjustment lines;
//! - `tests/`: their tests, by the same topics.

mod counts;
mod fills;
mod phases;
mod pickings;

pub use counts::*;
pub use fills::*;
pub use phases::*;
pub use pickings::*;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tally_protocol::{LoggedEvent, Qty};

/// Lines per picking at most: a few seconds per Odoo call (docs/odoo.md#timings).
pub const MAX_LINES_PER_PICKING: usize = 200;

/// Where a warehouse's stock lives and which picking types move it (resolved from Odoo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warehouse {
    pub code: String,
    /// The root of the warehouse's locations: events name locations under it.
    pub view_location: i64,
    pub stock_location: i64,
    pub receipt_type: i64,
    pub delivery_type: i64,
    pub internal_type: i64,
    /// Odoo's virtual locations that stock comes from or goes to.
    pub vendors: i64,
    pub customers: i64,
    pub inventory_adjustment: i64,
}

/// A product as the plan needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: i64,
    pub uom_id: i64,
    pub lot_tracked: bool,
}

/// Which kind of Odoo picking a line goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PickingKind {
    /// Vendors → location.
    Receipt,
    /// Location → Customers.
    Delivery,
    /// Inventory adjustment ⇄ location, mixed signs in one internal picking.
    Adjustment,
    /// Location → location, internal picking.
    Transfer,
}

impl PickingKind {
    /// The letter in a picking's key.
    pub fn code(self) -> char {
        match self {
            PickingKind::Receipt => 'R',
            PickingKind::Delivery => 'D',
            PickingKind::Adjustment => 'A',
            PickingKind::Transfer => 'T',
        }
    }
}

/// One move of a planned picking: a positive quantity of a product from one location to another.
/// (Plans are persisted in `merge_plan` while they are applied: a field change needs care.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub product: i64,
    pub uom: i64,
    pub qty: Qty,
    pub from: i64,
    pub to: i64,
    pub lot: Option<String>,
    /// Whether the lot may be created in Odoo if it does not exist yet: stock of it turned up
    /// in a positive adjustment (receipts name new lots themselves; a pick or transfer of a lot
    /// Odoo does not know is refused and parked).
    #[serde(default)]
    pub create_lot: bool,
    /// The journal seqs whose events this line carries (for parking them if Odoo refuses it).
    pub seqs: Vec<u64>,
}

/// A picking to create and validate, under a deterministic name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedPicking {
    /// The picking's `name` in Odoo: unique per company, so creating it twice is impossible.
    pub key: String,
    pub kind: PickingKind,
    pub picking_type: i64,
    pub from: i64,
    pub to: i64,
    pub lines: Vec<Line>,
}

/// The events of a run resolved against Odoo: the product and locations of each event.
#[derive(Debug, Clone)]
pub struct ResolvedEvent<'a> {
    pub event: &'a LoggedEvent,
    pub product: Product,
    /// The event's location (the warehouse's stock location when the event named none).
    pub location: i64,
    /// A transfer's destination.
    pub to_location: Option<i64>,
}

/// The reason events are parked with when a quantity they add up to cannot reach Odoo exactly.
pub const QUANTITY_TOO_LARGE: &str = super::state::ParkReason::QuantityTooLarge.as_str();

/// An event left out of a plan, to be parked with [`QUANTITY_TOO_LARGE`]: a line or fill it
/// would coalesce into sums beyond `Qty::MAX_EXACT_MICROS` (Odoo would book a different
/// quantity), or a count whose delta (or Odoo's quantity it is taken against) is beyond it.
/// Every event of that product in the phase is left out with it, and the product's events in
/// later phases wait behind it (the engine holds them back), so none of them overtakes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oversized {
    pub seq: u64,
    pub message: String,
}

/// Whether a sum of micro-units, taken wide enough that it cannot wrap, can reach Odoo.
fn exact(total: i128) -> bool {
    total.unsigned_abs() <= Qty::MAX_EXACT_MICROS as u128
}

/// Micro-units as a decimal number of units, for messages (a sum may not fit a `Qty`).
fn units(micros: i128) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let (whole, frac) = (
        micros.unsigned_abs() / Qty::SCALE as u128,
        micros.unsigned_abs() % Qty::SCALE as u128,
    );
    if frac == 0 {
        format!("{sign}{whole}")
    } else {
        let frac = format!("{frac:06}");
        format!("{sign}{whole}.{}", frac.trim_end_matches('0'))
    }
}

/// Takes the events of `products` out of `events` as [`Oversized`], each product's with its
/// message.
fn leave_out<'a>(
    events: Vec<ResolvedEvent<'a>>,
    products: &BTreeMap<i64, String>,
) -> (Vec<ResolvedEvent<'a>>, Vec<Oversized>) {
    let mut oversized = Vec::new();
    let kept = events
        .into_iter()
        .filter(|r| match products.get(&r.product.id) {
            Some(message) => {
                oversized.push(Oversized {
                    seq: r.event.seq,
                    message: message.clone(),
                });
                false
            }
            None => true,
        })
        .collect();
    (kept, oversized)
}

fn too_large_message(sku: &str, what: &str, total: i128) -> String {
    format!(
        "the {what} of {sku:?} coalesces to {} units, more than Odoo's float quantities hold exactly ({} units): its events in this phase of the run are parked, none merged, and its later ones wait behind them",
        units(total),
        Qty::MAX_EXACT_MICROS / Qty::SCALE
    )
}

#[cfg(test)]
mod tests;

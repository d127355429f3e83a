//! Counts into adjustment lines, each as of its own time.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use tally_protocol::Qty;

use super::*;

/// A count as planned, before Odoo's stock is read: recorded in the plan so that a restart
/// computes it as of the same time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedCount {
    pub seq: u64,
    pub product: i64,
    pub uom: i64,
    pub location: i64,
    pub lot: Option<String>,
    /// The quantity counted.
    pub qty: Qty,
    /// When it was counted, on Odoo's clock (UTC, `YYYY-MM-DD HH:MM:SS`, as Odoo dates moves):
    /// moves dated after it are not part of what was counted.
    pub at: String,
}

/// A quant row as counts read it: what Odoo holds now of a product at a location, of a lot.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantRow {
    pub product: i64,
    pub location: i64,
    pub lot: Option<i64>,
    /// `None`: Odoo's float is beyond what it holds exactly (`Qty::from_f64`); a count of
    /// this stock is parked rather than taken against some other quantity.
    pub qty: Option<Qty>,
}

/// A done move line someone other than Tally made, as counts read it.
#[derive(Debug, Clone, PartialEq)]
pub struct MovedRow {
    pub product: i64,
    pub from: i64,
    pub to: i64,
    pub lot: Option<i64>,
    /// `None`: beyond what Odoo's floats hold exactly, as in [`QuantRow`].
    pub qty: Option<Qty>,
    /// Odoo's `date` (UTC, `YYYY-MM-DD HH:MM:SS`).
    pub date: String,
}

/// What a count's delta was computed from, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountDelta {
    pub seq: u64,
    /// Odoo's quantity as of the count: now, less what others moved there since.
    pub as_of_count: Qty,
    /// Counted less `as_of_count`.
    pub delta: i64,
}

/// The adjustment lines that bring each count's stock to what was counted, as of the count
/// (docs/odoo.md#counts): Odoo's quantity now holds every Tally event of that stock
/// before the count and none after it (the phases see to that); what it must not hold is what
/// others moved there after the count was taken (`moved`, dated by Odoo), so that is taken out
/// of it. `lots` are the ids of the counted lots Odoo has; a lot it lacks holds nothing.
///
/// Sums are taken in i128. A count whose quantity in Odoo as of the count, or whose delta, is
/// beyond `Qty::MAX_EXACT_MICROS` gets no line and no delta: it comes back as [`Oversized`]
/// (named by its SKU in `skus`), to be parked rather than booked as some other delta.
pub fn count_lines(
    warehouse: &Warehouse,
    counts: &[PlannedCount],
    lots: &HashMap<(i64, String), i64>,
    quants: &[QuantRow],
    moved: &[MovedRow],
    skus: &BTreeMap<u64, String>,
) -> (Vec<Line>, Vec<CountDelta>, Vec<Oversized>) {
    let mut lines = Vec::new();
    let mut deltas = Vec::new();
    let mut oversized = Vec::new();
    let limit = Qty::MAX_EXACT_MICROS / Qty::SCALE;
    for c in counts {
        let sku = skus.get(&c.seq).map(String::as_str).unwrap_or_default();
        let lot = match &c.lot {
            Some(name) => lots.get(&(c.product, name.clone())).map(|id| Some(*id)),
            None => Some(None),
        };
        // `None`: a row of the stock is beyond what Odoo's floats hold exactly.
        let as_of_count: Option<i128> = match lot {
            None => Some(0),
            Some(lot) => {
                let of = |row_lot: Option<i64>| lot.is_none() || row_lot == lot;
                let now: Option<i128> = quants
                    .iter()
                    .filter(|q| q.product == c.product && q.location == c.location && of(q.lot))
                    .map(|q| q.qty.map(|q| i128::from(q.micros())))
                    .sum();
                let since: Option<i128> = moved
                    .iter()
                    .filter(|m| m.product == c.product && of(m.lot) && m.date > c.at)
                    .map(|m| match (m.to == c.location, m.from == c.location) {
                        (true, false) => m.qty.map(|q| i128::from(q.micros())),
                        (false, true) => m.qty.map(|q| -i128::from(q.micros())),
                        _ => Some(0),
                    })
                    .sum();
                now.zip(since).map(|(now, since)| now - since)
            }
        };
        let Some(as_of_count) = as_of_count.filter(|q| exact(*q)) else {
            let quantity = match as_of_count {
                Some(q) => format!("{} units", units(q)),
                None => format!("a quantity of more than {limit} units"),
            };
            oversized.push(Oversized {
                seq: c.seq,
                message: format!(
                    "Odoo's quantity of {sku:?} at the count's location as of the count ({quantity}) is not a number Tally can count against exactly (at most {limit} units)"
                ),
            });
            continue;
        };
        let delta = i128::from(c.qty.micros()) - as_of_count;
        if !exact(delta) {
            oversized.push(Oversized {
                seq: c.seq,
                message: format!(
                    "the count of {sku:?} ({}) against Odoo's {} is a change of more than Odoo's float quantities hold exactly ({limit} units)",
                    c.qty,
                    units(as_of_count),
                ),
            });
            continue;
        }
        // Both within MAX_EXACT_MICROS.
        let as_of_count = Qty::from_micros(i64::try_from(as_of_count).expect("exact"));
        let delta = i64::try_from(delta).expect("exact");
        deltas.push(CountDelta {
            seq: c.seq,
            as_of_count,
            delta,
        });
        if delta == 0 {
            continue;
        }
        let (from, to) = if delta > 0 {
            (warehouse.inventory_adjustment, c.location)
        } else {
            (c.location, warehouse.inventory_adjustment)
        };
        lines.push(Line {
            product: c.product,
            uom: c.uom,
            qty: Qty::from_micros(delta.abs()),
            from,
            to,
            lot: c.lot.clone(),
            // Counted stock of a lot Odoo has never seen: the lot is created.
            create_lot: delta > 0 && c.lot.is_some(),
            seqs: vec![c.seq],
        });
    }
    (lines, deltas, oversized)
}

/// The internal pickings against Inventory adjustment that apply counts' `lines`, named
/// `{batch_key}-C{chunk}`.
pub fn count_pickings(
    batch_key: &str,
    warehouse: &Warehouse,
    lines: Vec<Line>,
) -> Vec<PlannedPicking> {
    chunked(
        &format!("{batch_key}-C"),
        warehouse,
        PickingKind::Adjustment,
        lines,
    )
}

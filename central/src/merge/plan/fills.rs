//! Filling the open Odoo pickings that scans name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tally_protocol::{EventKind, LoggedEvent, Qty};

use super::*;

/// An open Odoo picking that events may name in their `reference` (a sales order's delivery,
/// an expected receipt), with its moves still to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenPicking {
    pub id: i64,
    pub name: String,
    pub picking_type: i64,
    /// Each move not done or cancelled, in Odoo's order.
    pub moves: Vec<OpenMove>,
}

/// A move of an open picking: its product and where it goes from and to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenMove {
    pub id: i64,
    pub product: i64,
    pub from: i64,
    pub to: i64,
}

/// What to write on an open picking (docs/odoo.md#fills): the lines of its moves are
/// replaced by what was scanned, where it was scanned, picked, and the picking is validated,
/// leaving a backorder for the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedFill {
    /// Tally's key for this fill: the marker `tally:{key}@{picking_name}` in the picking's
    /// note makes it exactly-once.
    pub key: String,
    pub picking: i64,
    pub picking_name: String,
    /// One per (move, location, lot) scanned; a move appears once per place it was filled at.
    pub moves: Vec<FillMove>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillMove {
    pub move_id: i64,
    pub product: i64,
    pub qty: Qty,
    pub seqs: Vec<u64>,
    /// The move line that carries the scan. Absent in plans recorded before fills carried
    /// locations: those are applied as recorded, the quantity written on the move (where Odoo
    /// reserved).
    #[serde(default)]
    pub line: Option<FillLine>,
}

/// Where a scan that fills a move happened, as the move line Odoo gets: a pick's source is
/// the scanned location, a receipt's destination is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillLine {
    pub uom: i64,
    pub from: i64,
    pub to: i64,
    pub lot: Option<String>,
}

impl PlannedFill {
    /// The text in the picking's note that says this fill was written.
    pub fn marker(&self) -> String {
        format!("tally:{}@{}", self.key, self.picking_name)
    }

    pub fn seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.moves.iter().flat_map(|m| m.seqs.iter().copied())
    }
}

/// The fill markers (`tally:<key>@<picking>`) in a picking's `note`, each up to the end of its
/// HTML paragraph.
pub fn markers(note: &str) -> impl Iterator<Item = &str> {
    note.match_indices("tally:").map(|(at, _)| {
        let rest = &note[at..];
        let end = rest
            .find(|c: char| c == '<' || c.is_whitespace())
            .unwrap_or(rest.len());
        &rest[..end]
    })
}

/// Whether a picking's `note` says Tally filled that very picking (a marker naming it; a
/// backorder carries a copy of its original's marker, which names the original).
pub fn filled_by_tally(note: &str, picking_name: &str) -> bool {
    markers(note).any(|m| {
        m.rsplit_once('@')
            .is_some_and(|(_, name)| name == picking_name)
    })
}

/// Whether an event may fill an open picking: a pick or receipt naming a reference.
pub fn may_fill(event: &LoggedEvent) -> bool {
    let e = &event.event;
    matches!(e.kind, EventKind::Pick | EventKind::Receipt)
        && e.reference.is_some()
        && !e.qty.is_negative()
}

/// Splits off the events that fill an open picking named by their reference: a pick fills a
/// delivery of the warehouse, a receipt a receipt — the oldest such picking of the reference
/// that holds the event's product, on its first move of it. Events of one move, location and
/// lot coalesce into one line. Everything else (no such open picking, a product the picking
/// does not hold) is returned for ordinary pickings. Fills are keyed `{batch_key}-F{n}`.
/// A product whose fill would sum beyond what Odoo holds exactly fills nothing and goes to no
/// ordinary picking either: its events come back as [`Oversized`].
pub fn fill<'a>(
    batch_key: &str,
    warehouse: &Warehouse,
    events: Vec<ResolvedEvent<'a>>,
    open: &BTreeMap<String, Vec<OpenPicking>>,
) -> (Vec<PlannedFill>, Vec<ResolvedEvent<'a>>, Vec<Oversized>) {
    // Fills sum picks into one move, or receipts: a product's fills are exact when the sum of
    // all its filling events is.
    let mut sums: BTreeMap<i64, (i128, &str)> = BTreeMap::new();
    for r in &events {
        if fill_target(warehouse, r, open).is_some() {
            let entry = sums.entry(r.product.id).or_insert((0, &r.event.event.sku));
            entry.0 += i128::from(r.event.event.qty.micros());
        }
    }
    let too_large: BTreeMap<i64, String> = sums
        .into_iter()
        .filter(|(_, (total, _))| !exact(*total))
        .map(|(product, (total, sku))| (product, too_large_message(sku, "fill", total)))
        .collect();
    let (events, oversized) = leave_out(events, &too_large);

    // (move id, from, to, lot) → (product, uom, total, seqs)
    type Lines = BTreeMap<(i64, i64, i64, Option<String>), (i64, i64, i64, Vec<u64>)>;
    // (picking name, id) → its lines
    let mut filled: BTreeMap<(&str, i64), Lines> = BTreeMap::new();
    let mut rest = Vec::new();
    for r in events {
        match fill_target(warehouse, &r, open) {
            Some((picking, m)) => {
                let e = &r.event.event;
                let (from, to) = match e.kind {
                    EventKind::Pick => (r.location, m.to),
                    _ => (m.from, r.location),
                };
                let entry = filled
                    .entry(picking)
                    .or_default()
                    .entry((m.id, from, to, e.lot.clone()))
                    .or_insert((r.product.id, r.product.uom_id, 0, Vec::new()));
                // Cannot wrap: the product's filling events sum within MAX_EXACT_MICROS.
                entry.2 += e.qty.micros();
                entry.3.push(r.event.seq);
            }
            None => rest.push(r),
        }
    }
    let fills = filled
        .into_iter()
        .enumerate()
        .map(|(n, ((name, id), lines))| PlannedFill {
            key: format!("{batch_key}-F{}", n + 1),
            picking: id,
            picking_name: name.to_owned(),
            moves: lines
                .into_iter()
                .map(
                    |((move_id, from, to, lot), (product, uom, total, seqs))| FillMove {
                        move_id,
                        product,
                        qty: Qty::from_micros(total),
                        seqs,
                        line: Some(FillLine { uom, from, to, lot }),
                    },
                )
                .collect(),
        })
        .collect();
    (fills, rest, oversized)
}

/// The open picking (name, id) and move an event fills, if any.
fn fill_target<'o>(
    warehouse: &Warehouse,
    r: &ResolvedEvent<'_>,
    open: &'o BTreeMap<String, Vec<OpenPicking>>,
) -> Option<((&'o str, i64), &'o OpenMove)> {
    let e = &r.event.event;
    let wanted_type = match e.kind {
        EventKind::Pick => warehouse.delivery_type,
        _ => warehouse.receipt_type,
    };
    e.reference
        .as_deref()
        .filter(|_| may_fill(r.event))
        .and_then(|name| open.get(name))
        .into_iter()
        .flatten()
        .filter(|p| p.picking_type == wanted_type)
        .find_map(|p| {
            let m = p.moves.iter().find(|m| m.product == r.product.id)?;
            Some(((p.name.as_str(), p.id), m))
        })
}

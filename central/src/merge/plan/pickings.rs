//! Coalescing a phase's moves into chunked pickings under deterministic keys.

use std::collections::BTreeMap;

use tally_protocol::{EventKind, Qty};

use super::*;

/// Coalesces a run of non-count events into pickings named `{batch_key}-{kind}{chunk}`.
/// Adjustments that net to zero for a group produce no line. A product whose line would sum
/// beyond what Odoo holds exactly gets no line at all: its events come back as [`Oversized`].
pub fn plan(
    batch_key: &str,
    warehouse: &Warehouse,
    events: &[ResolvedEvent<'_>],
) -> (Vec<PlannedPicking>, Vec<Oversized>) {
    let (pickings, too_large) = plan_exact(batch_key, warehouse, events);
    if too_large.is_empty() {
        return (pickings, Vec::new());
    }
    let (kept, oversized) = leave_out(events.to_vec(), &too_large);
    let (pickings, again) = plan_exact(batch_key, warehouse, &kept);
    debug_assert!(
        again.is_empty(),
        "leaving a product out leaves its lines out"
    );
    (pickings, oversized)
}

/// [`plan`] without leaving anything out: the pickings without the lines that sum beyond
/// `Qty::MAX_EXACT_MICROS`, and the products of those lines (with a message).
fn plan_exact(
    batch_key: &str,
    warehouse: &Warehouse,
    events: &[ResolvedEvent<'_>],
) -> (Vec<PlannedPicking>, BTreeMap<i64, String>) {
    // (kind, product, from, to, lot) → (signed total, uom, seqs, sku); BTreeMap for a stable
    // order. Totals are i128: 5000 events of the largest quantity cannot wrap it.
    type Group = (PickingKind, i64, i64, i64, Option<String>);
    let mut groups: BTreeMap<Group, (i128, i64, Vec<u64>, &str)> = BTreeMap::new();
    let mut too_large = BTreeMap::new();
    for r in events {
        let e = &r.event.event;
        let (kind, from, to, signed) = match e.kind {
            EventKind::Receipt => (
                PickingKind::Receipt,
                warehouse.vendors,
                r.location,
                e.qty.micros(),
            ),
            EventKind::Pick => (
                PickingKind::Delivery,
                r.location,
                warehouse.customers,
                e.qty.micros(),
            ),
            // Adjustments share one group per product/location whatever the sign; the sign of
            // the total decides the direction below.
            EventKind::Adjustment => (
                PickingKind::Adjustment,
                warehouse.inventory_adjustment,
                r.location,
                e.qty.micros(),
            ),
            EventKind::Transfer => (
                PickingKind::Transfer,
                r.location,
                r.to_location.unwrap_or(r.location),
                e.qty.micros(),
            ),
            EventKind::Count => continue,
        };
        let entry = groups
            .entry((kind, r.product.id, from, to, e.lot.clone()))
            .or_insert((0, r.product.uom_id, Vec::new(), &e.sku));
        entry.0 += i128::from(signed);
        entry.2.push(r.event.seq);
    }
    let mut by_kind: BTreeMap<PickingKind, Vec<Line>> = BTreeMap::new();
    for ((kind, product, from, to, lot), (total, uom, seqs, sku)) in groups {
        if total == 0 {
            continue;
        }
        if !exact(total) {
            let what = match kind {
                PickingKind::Receipt => "receipt",
                PickingKind::Delivery => "delivery",
                PickingKind::Adjustment => "adjustment",
                PickingKind::Transfer => "transfer",
            };
            too_large
                .entry(product)
                .or_insert_with(|| too_large_message(sku, what, total));
            continue;
        }
        let total = i64::try_from(total).expect("within MAX_EXACT_MICROS");
        let (from, to) = if total < 0 { (to, from) } else { (from, to) };
        let create_lot = kind == PickingKind::Adjustment && total > 0 && lot.is_some();
        by_kind.entry(kind).or_default().push(Line {
            product,
            uom,
            qty: Qty::from_micros(total.abs()),
            from,
            to,
            lot,
            create_lot,
            seqs,
        });
    }
    let pickings = by_kind
        .into_iter()
        .flat_map(|(kind, lines)| {
            chunked(
                &format!("{batch_key}-{}", kind.code()),
                warehouse,
                kind,
                lines,
            )
        })
        .collect();
    (pickings, too_large)
}

/// `lines` of one kind in pickings of at most [`MAX_LINES_PER_PICKING`] lines, named
/// `{prefix}{chunk}`.
pub(super) fn chunked(
    prefix: &str,
    warehouse: &Warehouse,
    kind: PickingKind,
    lines: Vec<Line>,
) -> Vec<PlannedPicking> {
    let (picking_type, from, to) = match kind {
        PickingKind::Receipt => (
            warehouse.receipt_type,
            warehouse.vendors,
            warehouse.stock_location,
        ),
        PickingKind::Delivery => (
            warehouse.delivery_type,
            warehouse.stock_location,
            warehouse.customers,
        ),
        PickingKind::Adjustment => (
            warehouse.internal_type,
            warehouse.inventory_adjustment,
            warehouse.stock_location,
        ),
        PickingKind::Transfer => (
            warehouse.internal_type,
            warehouse.stock_location,
            warehouse.stock_location,
        ),
    };
    lines
        .chunks(MAX_LINES_PER_PICKING)
        .enumerate()
        .map(|(chunk, lines)| {
            // The header shows where the moves actually go when they all agree (an adjustment
            // that only removes stock reads Stock → Inventory adjustment in Odoo's UI); each
            // move carries its own locations either way.
            let common = |end: fn(&Line) -> i64, default: i64| {
                let first = end(&lines[0]);
                if lines.iter().all(|l| end(l) == first) {
                    first
                } else {
                    default
                }
            };
            PlannedPicking {
                key: format!("{prefix}{}", chunk + 1),
                kind,
                picking_type,
                from: common(|l| l.from, from),
                to: common(|l| l.to, to),
                lines: lines.to_vec(),
            }
        })
        .collect()
}

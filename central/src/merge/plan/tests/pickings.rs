use super::*;

#[test]
fn events_coalesce_into_one_line_per_product_and_kind() {
    let events = vec![
        event(1, EventKind::Pick, 1, 2),
        event(2, EventKind::Pick, 1, 3),
        event(3, EventKind::Receipt, 1, 10),
        event(4, EventKind::Pick, 2, 1),
        event(5, EventKind::Adjustment, 3, 5),
        event(6, EventKind::Adjustment, 3, -2),
        event(7, EventKind::Adjustment, 4, -4),
        event(8, EventKind::Adjustment, 5, 1),
        event(9, EventKind::Adjustment, 5, -1),
        event(10, EventKind::Transfer, 1, 6),
    ];
    let pickings = plan("K", &WH, &resolve(&events)).0;
    // (key, [(product, units, from, to, seqs)])
    type Summary = Vec<(String, Vec<(i64, i64, i64, i64, Vec<u64>)>)>;
    let summary: Summary = pickings
        .iter()
        .map(|p| {
            (
                p.key.clone(),
                p.lines
                    .iter()
                    .map(|l| {
                        (
                            l.product,
                            l.qty.micros() / 1_000_000,
                            l.from,
                            l.to,
                            l.seqs.clone(),
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("K-R1".into(), vec![(1, 10, 4, 8, vec![3])]),
            (
                "K-D1".into(),
                vec![(1, 5, 8, 5, vec![1, 2]), (2, 1, 8, 5, vec![4])]
            ),
            // +5 −2 nets to +3 in; −4 goes out; +1 −1 nets to nothing.
            (
                "K-A1".into(),
                vec![(3, 3, 14, 8, vec![5, 6]), (4, 4, 8, 14, vec![7])]
            ),
            ("K-T1".into(), vec![(1, 6, 8, 20, vec![10])]),
        ]
    );
    assert_eq!(pickings[1].picking_type, WH.delivery_type);
}

#[test]
fn picking_headers_follow_their_moves_when_they_agree() {
    let events = vec![
        event(1, EventKind::Adjustment, 3, -2),
        event(2, EventKind::Transfer, 1, 6),
    ];
    let pickings = plan("K", &WH, &resolve(&events)).0;
    // An adjustment that only removes stock, a transfer to one place.
    assert_eq!(
        (pickings[0].from, pickings[0].to),
        (WH.stock_location, WH.inventory_adjustment)
    );
    assert_eq!((pickings[1].from, pickings[1].to), (WH.stock_location, 20));
    let mixed = vec![
        event(1, EventKind::Adjustment, 3, -2),
        event(2, EventKind::Adjustment, 4, 5),
    ];
    let pickings = plan("K", &WH, &resolve(&mixed)).0;
    assert_eq!(
        (pickings[0].from, pickings[0].to),
        (WH.inventory_adjustment, WH.stock_location)
    );
}

#[test]
fn large_runs_are_chunked_under_distinct_keys() {
    let events: Vec<(LoggedEvent, Product)> = (0..(MAX_LINES_PER_PICKING as i64 * 2 + 1))
        .map(|i| event(i as u64 + 1, EventKind::Receipt, i + 1, 1))
        .collect();
    let pickings = plan("K", &WH, &resolve(&events)).0;
    let keys: Vec<&str> = pickings.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, vec!["K-R1", "K-R2", "K-R3"]);
    assert_eq!(pickings[2].lines.len(), 1);
    let total: usize = pickings.iter().map(|p| p.lines.len()).sum();
    assert_eq!(total, events.len());
}

/// The largest quantity one event may carry.
const MAX: i64 = Qty::MAX_UNITS * Qty::SCALE;

fn micros_event(seq: u64, kind: EventKind, sku_id: i64, micros: i64) -> (LoggedEvent, Product) {
    let (mut event, product) = event(seq, kind, sku_id, 0);
    event.event.qty = Qty::from_micros(micros);
    (event, product)
}

/// Guards against coalescing wrapping or exceeding what Odoo's floats hold (issue 10,
/// item 1): ten receipts of the per-event maximum once became a delivery of 8.4e12 to
/// Vendors. The product's line is not planned; every event of it in the run comes back to
/// be parked, and other products are planned as usual.
#[test]
fn a_line_beyond_the_exact_float_bound_is_left_out_with_every_event_of_its_product() {
    let mut events: Vec<_> = (1..=10)
        .map(|seq| micros_event(seq, EventKind::Receipt, 1, MAX))
        .collect();
    events.push(event(11, EventKind::Pick, 1, 3));
    events.push(event(12, EventKind::Receipt, 2, 5));
    let (pickings, oversized) = plan("K", &WH, &resolve(&events));
    let seqs: Vec<u64> = oversized.iter().map(|o| o.seq).collect();
    assert_eq!(seqs, (1..=11).collect::<Vec<_>>());
    assert!(
        oversized[0].message.contains("\"SKU-1\"")
            && oversized[0].message.contains("10000000000 units"),
        "{}",
        oversized[0].message
    );
    let lines: Vec<(i64, Qty)> = pickings
        .iter()
        .flat_map(|p| p.lines.iter().map(|l| (l.product, l.qty)))
        .collect();
    assert_eq!(lines, vec![(2, Qty::from_units(5))]);

    // Eight receipts of the maximum are within the bound: one exact line.
    let events: Vec<_> = (1..=8)
        .map(|seq| micros_event(seq, EventKind::Receipt, 1, MAX))
        .collect();
    let (pickings, oversized) = plan("K", &WH, &resolve(&events));
    assert_eq!(oversized, []);
    assert_eq!(pickings[0].lines[0].qty, Qty::from_micros(8 * MAX));
}

#[test]
fn a_fill_beyond_the_exact_float_bound_is_left_out_with_every_event_of_its_product() {
    let mut events: Vec<_> = (1..=9)
        .map(|seq| micros_event(seq, EventKind::Pick, 1, MAX))
        .collect();
    for (e, _) in &mut events {
        e.event.reference = Some("S001".into());
    }
    events.push(event(10, EventKind::Pick, 1, 1));
    let open = BTreeMap::from([(
        "S001".to_owned(),
        vec![OpenPicking {
            id: 40,
            name: "WH/OUT/00040".into(),
            picking_type: WH.delivery_type,
            moves: vec![open_move(400, 1, WH.stock_location, WH.customers)],
        }],
    )]);
    let (fills, rest, oversized) = fill("K", &WH, resolve(&events), &open);
    assert_eq!(fills, []);
    assert_eq!(rest.len(), 0);
    let seqs: Vec<u64> = oversized.iter().map(|o| o.seq).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
}

mod properties {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn any_event() -> impl Strategy<Value = (EventKind, i64, i64)> {
        let kind = prop_oneof![
            3 => Just(EventKind::Receipt),
            2 => Just(EventKind::Pick),
            2 => Just(EventKind::Adjustment),
            1 => Just(EventKind::Transfer),
        ];
        let magnitude = prop_oneof![1 => 1..=1_000_000_000i64, 3 => MAX - 1000..=MAX];
        (kind, 1..=2i64, magnitude, any::<bool>()).prop_map(|(kind, product, m, negative)| {
            // Only adjustments are signed (Event::validate).
            let m = if kind == EventKind::Adjustment && negative {
                -m
            } else {
                m
            };
            (kind, product, m)
        })
    }

    proptest! {
        /// Issue 10, item 1: whatever valid events a run holds, each planned line is the
        /// exact sum of its events (taken in i128), or its product's events are all
        /// left out to be parked — never a wrapped or inexact quantity.
        #[test]
        fn coalescing_is_the_exact_sum_or_parks(raw in proptest::collection::vec(any_event(), 0..60)) {
            let events: Vec<_> = raw
                .iter()
                .enumerate()
                .map(|(i, &(kind, product, micros))| micros_event(i as u64 + 1, kind, product, micros))
                .collect();
            let (pickings, oversized) = plan("K", &WH, &resolve(&events));

            // The exact sums, per (kind, product) (one location, no lots here).
            let mut sums: BTreeMap<(EventKind, i64), (i128, Vec<u64>)> = BTreeMap::new();
            for (seq, &(kind, product, micros)) in (1u64..).zip(&raw) {
                let entry = sums.entry((kind, product)).or_default();
                entry.0 += i128::from(micros);
                entry.1.push(seq);
            }
            let too_large: BTreeSet<i64> = sums
                .iter()
                .filter(|(_, (sum, _))| sum.unsigned_abs() > Qty::MAX_EXACT_MICROS as u128)
                .map(|((_, product), _)| *product)
                .collect();
            let expected_parked: BTreeSet<u64> = (1u64..)
                .zip(&raw)
                .filter(|(_, (_, product, _))| too_large.contains(product))
                .map(|(seq, _)| seq)
                .collect();
            let parked: BTreeSet<u64> = oversized.iter().map(|o| o.seq).collect();
            prop_assert_eq!(parked, expected_parked);

            let mut expected_lines: Vec<(i64, u128, Vec<u64>)> = sums
                .into_iter()
                .filter(|((_, product), (sum, _))| *sum != 0 && !too_large.contains(product))
                .map(|((_, product), (sum, seqs))| (product, sum.unsigned_abs(), seqs))
                .collect();
            let mut lines: Vec<(i64, u128, Vec<u64>)> = pickings
                .iter()
                .flat_map(|p| &p.lines)
                .map(|l| (l.product, l.qty.micros() as u128, l.seqs.clone()))
                .collect();
            expected_lines.sort();
            lines.sort();
            prop_assert_eq!(lines, expected_lines);
        }
    }
}

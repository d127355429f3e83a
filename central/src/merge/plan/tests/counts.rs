use super::*;

fn count(seq: u64, product: i64, lot: Option<&str>, qty: i64, at: &str) -> PlannedCount {
    PlannedCount {
        seq,
        product,
        uom: 1,
        location: STOCK,
        lot: lot.map(Into::into),
        qty: Qty::from_units(qty),
        at: at.into(),
    }
}

fn moved(product: i64, from: i64, to: i64, lot: Option<i64>, qty: i64, date: &str) -> MovedRow {
    MovedRow {
        product,
        from,
        to,
        lot,
        qty: Some(Qty::from_units(qty)),
        date: date.into(),
    }
}

#[test]
fn counts_take_out_what_others_moved_after_each_ones_own_time() {
    let quants = vec![
        QuantRow {
            product: 1,
            location: STOCK,
            lot: None,
            qty: Some(Qty::from_units(10)),
        },
        QuantRow {
            product: 1,
            location: STOCK,
            lot: None,
            qty: Some(Qty::from_units(2)),
        },
        QuantRow {
            product: 1,
            location: SHELF,
            lot: None,
            qty: Some(Qty::from_units(50)),
        },
        QuantRow {
            product: 2,
            location: STOCK,
            lot: Some(70),
            qty: Some(Qty::from_units(4)),
        },
        QuantRow {
            product: 2,
            location: STOCK,
            lot: Some(71),
            qty: Some(Qty::from_units(6)),
        },
    ];
    let others = vec![
        // +5 into STOCK at 10:00:05: after count 1 (10:00:00), not after count 2 (10:00:05).
        moved(1, WH.vendors, STOCK, None, 5, "2026-12-02 10:00:05"),
        moved(1, STOCK, WH.customers, None, 1, "2026-12-02 10:00:09"),
        // Within STOCK, and at the shelf only: nothing for STOCK.
        moved(1, STOCK, STOCK, None, 3, "2026-12-02 10:00:09"),
        moved(1, SHELF, WH.customers, None, 3, "2026-12-02 10:00:09"),
        moved(2, STOCK, WH.customers, Some(70), 2, "2026-12-02 10:00:09"),
    ];
    let counts = vec![
        count(1, 1, None, 7, "2026-12-02 10:00:00"),
        count(2, 1, None, 11, "2026-12-02 10:00:05"),
        // Lot 70 holds 4, 2 of them left after the count: 6 as of the count.
        count(3, 2, Some("L70"), 6, "2026-12-02 10:00:00"),
        count(4, 2, Some("UNKNOWN"), 3, "2026-12-02 10:00:00"),
        count(5, 2, None, 8, "2026-12-02 10:00:00"),
    ];
    let lots = HashMap::from([((2, "L70".to_owned()), 70)]);
    let (lines, deltas, oversized) =
        count_lines(&WH, &counts, &lots, &quants, &others, &BTreeMap::new());
    assert_eq!(oversized, []);
    let summary: Vec<(u64, i64, i64)> = deltas
        .iter()
        .map(|d| {
            (
                d.seq,
                d.as_of_count.micros() / 1_000_000,
                d.delta / 1_000_000,
            )
        })
        .collect();
    // 1: 12 now − (5 − 1) since = 8; 2: 12 − (−1) = 13; 3: 4 + 2 = 6; 4: nothing;
    // 5: 10 + 2 = 12.
    assert_eq!(
        summary,
        vec![(1, 8, -1), (2, 13, -2), (3, 6, 0), (4, 0, 3), (5, 12, -4)]
    );
    let lines: Vec<(Vec<u64>, i64, i64, i64, bool)> = lines
        .iter()
        .map(|l| {
            (
                l.seqs.clone(),
                l.qty.micros() / 1_000_000,
                l.from,
                l.to,
                l.create_lot,
            )
        })
        .collect();
    let adj = WH.inventory_adjustment;
    assert_eq!(
        lines,
        vec![
            (vec![1], 1, STOCK, adj, false),
            (vec![2], 2, STOCK, adj, false),
            (vec![4], 3, adj, STOCK, true),
            (vec![5], 4, STOCK, adj, false),
        ]
    );
}

/// Counts are held to the same bound as lines (issue 10, item 1): a delta, or Odoo's
/// quantity as of the count (a quant row beyond what a float holds, or the sum of what
/// others moved), beyond `Qty::MAX_EXACT_MICROS` is parked with its SKU named, never
/// booked as some other delta; the other counts of the phase are computed as usual.
#[test]
fn a_count_beyond_the_exact_float_bound_is_left_out() {
    let quant = |product, qty: Option<Qty>| QuantRow {
        product,
        location: STOCK,
        lot: None,
        qty,
    };
    let max = Qty::MAX_EXACT_MICROS;
    let quants = vec![
        // −8·10^9 units: a count of 10^9 is a change of 9·10^9, beyond 2^33.
        quant(1, Some(Qty::from_units(-8_000_000_000))),
        // Odoo's float is beyond what it holds exactly.
        quant(2, None),
        // Two rows, each exact, summing beyond the bound.
        quant(3, Some(Qty::from_micros(max))),
        quant(3, Some(Qty::from_micros(max))),
        quant(4, Some(Qty::from_units(5))),
    ];
    // Beyond the bound as moved by others since the count: Odoo's quantity as of the count
    // (now less that) is beyond it too.
    let mut others = vec![moved(
        5,
        STOCK,
        WH.customers,
        None,
        0,
        "2026-12-02 10:00:09",
    )];
    others[0].qty = Some(Qty::from_micros(max));
    others.push(others[0].clone());
    let counts: Vec<PlannedCount> = (1..=5)
        .map(|seq| count(seq, seq as i64, None, 1_000_000_000, "2026-12-02 10:00:00"))
        .collect();
    let skus: BTreeMap<u64, String> = (1..=5).map(|seq| (seq, format!("SKU-{seq}"))).collect();
    let (lines, deltas, oversized) =
        count_lines(&WH, &counts, &HashMap::new(), &quants, &others, &skus);
    let seqs: Vec<u64> = oversized.iter().map(|o| o.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 5]);
    for o in &oversized {
        assert!(
            o.message.contains(&format!("\"SKU-{}\"", o.seq)),
            "{}",
            o.message
        );
    }
    assert!(
        oversized[0].message.contains("change"),
        "{}",
        oversized[0].message
    );
    let deltas: Vec<(u64, i64)> = deltas.iter().map(|d| (d.seq, d.delta)).collect();
    assert_eq!(deltas, vec![(4, (1_000_000_000 - 5) * Qty::SCALE)]);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].seqs, vec![4]);
}

#[test]
fn counts_of_a_phase_go_into_chunked_adjustments() {
    let lines: Vec<Line> = (0..(MAX_LINES_PER_PICKING as i64 + 1))
        .map(|i| Line {
            product: i + 1,
            uom: 1,
            qty: Qty::from_units(1),
            from: STOCK,
            to: WH.inventory_adjustment,
            lot: None,
            create_lot: false,
            seqs: vec![i as u64 + 1],
        })
        .collect();
    let pickings = count_pickings("K-p2", &WH, lines);
    let keys: Vec<&str> = pickings.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, vec!["K-p2-C1", "K-p2-C2"]);
    assert!(pickings.iter().all(|p| p.kind == PickingKind::Adjustment
        && p.picking_type == WH.internal_type
        && (p.from, p.to) == (STOCK, WH.inventory_adjustment)));
}

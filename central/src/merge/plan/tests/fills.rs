use super::*;

#[test]
fn referenced_picks_fill_their_picking_and_the_rest_goes_to_ordinary_pickings() {
    let mut events = vec![
        event(1, EventKind::Pick, 1, 2),
        event(2, EventKind::Pick, 1, 1),
        event(3, EventKind::Receipt, 1, 4), // a receipt cannot fill a delivery
        event(4, EventKind::Pick, 2, 1),    // the picking has no move of product 2
        event(5, EventKind::Pick, 1, 7),    // no reference
    ];
    for (e, _) in &mut events[..4] {
        e.event.reference = Some("S001".into());
    }
    // The order's first step (an internal pick) is not a delivery: the delivery is filled.
    let open = BTreeMap::from([(
        "S001".to_owned(),
        vec![
            OpenPicking {
                id: 39,
                name: "WH/PICK/00039".into(),
                picking_type: WH.internal_type,
                moves: vec![open_move(390, 1, WH.stock_location, 30)],
            },
            OpenPicking {
                id: 40,
                name: "WH/OUT/00040".into(),
                picking_type: WH.delivery_type,
                moves: vec![
                    open_move(400, 1, WH.stock_location, WH.customers),
                    open_move(401, 3, WH.stock_location, WH.customers),
                ],
            },
        ],
    )]);
    let (fills, rest, oversized) = fill("K", &WH, resolve(&events), &open);
    assert_eq!(oversized, []);
    assert_eq!(
        fills,
        vec![PlannedFill {
            key: "K-F1".into(),
            picking: 40,
            picking_name: "WH/OUT/00040".into(),
            moves: vec![FillMove {
                move_id: 400,
                product: 1,
                qty: Qty::from_units(3),
                seqs: vec![1, 2],
                line: Some(FillLine {
                    uom: 1,
                    from: WH.stock_location,
                    to: WH.customers,
                    lot: None,
                }),
            }],
        }]
    );
    let rest: Vec<u64> = rest.iter().map(|r| r.event.seq).collect();
    assert_eq!(rest, vec![3, 4, 5]);
}

#[test]
fn a_fill_puts_each_scan_where_it_happened_one_line_per_location_and_lot() {
    const SHELF: i64 = 21;
    let mut events = vec![
        event(1, EventKind::Pick, 1, 2),
        event(2, EventKind::Pick, 1, 1),
        event(3, EventKind::Pick, 1, 1),
        event(4, EventKind::Pick, 1, 1),
        event(5, EventKind::Receipt, 2, 4),
    ];
    for (e, _) in &mut events {
        e.event.reference = Some("S001".into());
    }
    events[3].0.event.lot = Some("LOT-A".into());
    let mut resolved = resolve(&events);
    // Scans 2 and 3 at the shelf, 1 and 4 at the stock location (4 with a lot); the
    // receipt into the shelf.
    for r in [1, 2, 4] {
        resolved[r].location = SHELF;
    }
    let open = BTreeMap::from([(
        "S001".to_owned(),
        vec![
            OpenPicking {
                id: 40,
                name: "WH/OUT/00040".into(),
                picking_type: WH.delivery_type,
                moves: vec![open_move(400, 1, WH.stock_location, WH.customers)],
            },
            OpenPicking {
                id: 41,
                name: "WH/IN/00041".into(),
                picking_type: WH.receipt_type,
                moves: vec![open_move(410, 2, WH.vendors, WH.stock_location)],
            },
        ],
    )]);
    let (fills, rest, oversized) = fill("K", &WH, resolved, &open);
    assert!(oversized.is_empty());
    assert!(rest.is_empty());
    // (picking, move, qty, from, to, lot, seqs)
    type Summary = Vec<(i64, i64, i64, i64, i64, Option<String>, Vec<u64>)>;
    let summary: Summary = fills
        .iter()
        .flat_map(|f| {
            f.moves.iter().map(|m| {
                let line = m.line.clone().unwrap();
                (
                    f.picking,
                    m.move_id,
                    m.qty.micros() / 1_000_000,
                    line.from,
                    line.to,
                    line.lot,
                    m.seqs.clone(),
                )
            })
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (41, 410, 4, WH.vendors, SHELF, None, vec![5]),
            (40, 400, 2, WH.stock_location, WH.customers, None, vec![1]),
            (
                40,
                400,
                1,
                WH.stock_location,
                WH.customers,
                Some("LOT-A".into()),
                vec![4]
            ),
            (40, 400, 2, SHELF, WH.customers, None, vec![2, 3]),
        ]
    );
}

#[test]
fn a_fill_recorded_before_fills_carried_locations_still_reads() {
    let recorded = r#"{"key":"K-F1","picking":40,"picking_name":"WH/OUT/00040",
        "moves":[{"move_id":400,"product":1,"qty":3000000,"seqs":[1,2]}]}"#;
    let fill: PlannedFill = serde_json::from_str(recorded).unwrap();
    assert_eq!(fill.moves[0].line, None);
    assert_eq!(fill.moves[0].qty, Qty::from_units(3));
}

#[test]
fn tally_fills_are_told_by_a_marker_naming_the_picking() {
    let note = "<p>Handle with care</p><p>tally:K-F1@WH/OUT/0001</p>";
    assert!(filled_by_tally(note, "WH/OUT/0001"));
    assert!(!filled_by_tally(note, "WH/OUT/0002"));
    assert!(!filled_by_tally("<p>Handle with care</p>", "WH/OUT/0001"));
}

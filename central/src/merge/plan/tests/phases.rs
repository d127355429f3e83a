use super::*;

/// Event `seq` of `kind` at `location` (a transfer to `to`), `lot`, and `reference`.
fn at(
    seq: u64,
    kind: EventKind,
    product: i64,
    location: i64,
    lot: Option<&str>,
) -> (LoggedEvent, Product, i64) {
    let (mut e, p) = event(seq, kind, product, 1);
    e.event.lot = lot.map(Into::into);
    (e, p, location)
}

/// The seqs of each phase's moves and counts.
type PhaseSeqs = Vec<(Vec<u64>, Vec<u64>)>;

/// The seqs of each phase, and of the events left for the next run.
fn phase_seqs(events: &[(LoggedEvent, Product, i64)]) -> (PhaseSeqs, Vec<u64>) {
    let resolved = events
        .iter()
        .map(|(event, product, location)| ResolvedEvent {
            event,
            product: product.clone(),
            location: *location,
            to_location: (event.event.kind == EventKind::Transfer).then_some(SHELF),
        })
        .collect();
    let (phases, rest) = phases(resolved);
    let seqs = |rs: &[ResolvedEvent<'_>]| rs.iter().map(|r| r.event.seq).collect::<Vec<_>>();
    (
        phases
            .iter()
            .map(|p| (seqs(&p.moves), seqs(&p.counts)))
            .collect(),
        seqs(&rest),
    )
}

#[test]
fn a_count_is_ordered_against_its_own_stock_only() {
    use EventKind::*;
    let events = vec![
        at(1, Pick, 1, STOCK, None),
        at(2, Receipt, 2, STOCK, None),
        at(3, Count, 1, STOCK, None),
        // Another product, another location: across the count.
        at(4, Pick, 2, STOCK, None),
        at(5, Pick, 1, SHELF, None),
        // Product 1 at STOCK again: after the count.
        at(6, Receipt, 1, STOCK, None),
        at(7, Count, 2, STOCK, None),
        at(8, Count, 1, STOCK, None),
        at(9, Pick, 1, STOCK, None),
        at(10, Pick, 3, STOCK, None),
    ];
    let (phases, rest) = phase_seqs(&events);
    assert_eq!(
        phases,
        vec![
            (vec![1, 2, 4, 5, 10], vec![3, 7]),
            (vec![6], vec![8]),
            (vec![9], vec![]),
        ]
    );
    assert!(rest.is_empty());
}

#[test]
fn a_transfer_is_ordered_against_counts_at_both_ends() {
    use EventKind::*;
    let events = vec![
        at(1, Count, 1, SHELF, None),
        // STOCK → SHELF: after the shelf's count, so the stock's count waits for it.
        at(2, Transfer, 1, STOCK, None),
        at(3, Count, 1, STOCK, None),
        at(4, Count, 2, STOCK, None),
    ];
    let (phases, _) = phase_seqs(&events);
    assert_eq!(phases, vec![(vec![], vec![1, 4]), (vec![2], vec![3])]);
}

#[test]
fn a_count_without_a_lot_is_of_every_lot_and_lots_are_apart() {
    use EventKind::*;
    let events = vec![
        at(1, Pick, 5, STOCK, Some("A")),
        at(2, Count, 5, STOCK, Some("B")),
        at(3, Receipt, 5, STOCK, Some("B")),
        at(4, Count, 5, STOCK, Some("A")),
        // Of every lot: after 1, 3 and both counts.
        at(5, Count, 5, STOCK, None),
        at(6, Pick, 5, STOCK, Some("C")),
    ];
    let (phases, _) = phase_seqs(&events);
    assert_eq!(
        phases,
        vec![(vec![1], vec![2, 4]), (vec![3], vec![5]), (vec![6], vec![]),]
    );
}

#[test]
fn a_run_ends_where_a_reference_would_fill_in_a_second_phase() {
    use EventKind::*;
    let mut events = vec![
        at(1, Pick, 1, STOCK, None),
        at(2, Count, 1, STOCK, None),
        at(3, Pick, 2, STOCK, None),
        at(4, Pick, 1, STOCK, None),
        at(5, Receipt, 3, STOCK, None),
    ];
    for i in [0, 2, 3] {
        events[i].0.event.reference = Some("WH/OUT/00001".into());
    }
    let (phases, rest) = phase_seqs(&events);
    // 3 fills in the first phase like 1; 4 would fill in the second.
    assert_eq!(phases, vec![(vec![1, 3], vec![2])]);
    assert_eq!(rest, vec![4, 5]);
}

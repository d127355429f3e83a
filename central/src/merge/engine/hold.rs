//! What waits behind an event parked earlier in the run: taken out of a phase as it starts
//! (its moves) and once its moves are applied (its counts), and parked behind it.

use std::collections::HashMap;

use crate::merge::plan::PlannedPicking;
use crate::merge::state::{DeadLetter, Status, StoredPlan, now_micros};
use crate::odoo::OdooError;

/// Which pickings of a phase.
#[derive(Debug, Clone, Copy)]
pub(super) enum Pickings {
    Moves,
    Counts,
}

impl StoredPlan {
    pub(super) fn pickings(
        &mut self,
        phase: usize,
        which: Pickings,
    ) -> &mut Vec<(PlannedPicking, Status)> {
        let phase = &mut self.phases[phase];
        match which {
            Pickings::Moves => &mut phase.pickings,
            Pickings::Counts => &mut phase.adjustments,
        }
    }

    /// Parks the events `seqs` with Odoo's reason for refusing them.
    pub(super) fn park(&mut self, seqs: &[u64], error: &OdooError) {
        self.park_as(seqs, &error.name, &error.message);
    }

    pub(super) fn park_as(&mut self, seqs: &[u64], reason: &str, message: &str) {
        for &seq in seqs {
            let sku = self.skus.get(&seq).cloned().unwrap_or_default();
            self.parked.push((
                seq,
                DeadLetter {
                    warehouse: self.warehouse.clone(),
                    sku,
                    reason: reason.to_owned(),
                    message: message.to_owned(),
                    parked_at: now_micros(),
                },
            ));
        }
    }

    /// Takes out of phase `phase` what comes after an event of its SKU parked earlier in the
    /// run (refused by Odoo in an earlier phase, or at planning), and parks it behind: a line or
    /// fill of events all later than the parked one, a count later than it. The moves when
    /// the phase starts, the counts when they are computed (after the phase's own moves).
    pub(super) fn hold_back(&mut self, phase: usize, which: Pickings) {
        let mut first: HashMap<&str, u64> = HashMap::new();
        for (seq, letter) in &self.parked {
            let at = first.entry(letter.sku.as_str()).or_insert(*seq);
            *at = (*at).min(*seq);
        }
        if first.is_empty() {
            return;
        }
        let behind = |seqs: &[u64]| {
            seqs.first()
                .and_then(|s| self.skus.get(s))
                .and_then(|sku| first.get(sku.as_str()))
                .is_some_and(|parked| seqs.iter().all(|s| s > parked))
        };
        let mut held = Vec::new();
        let p = &self.phases[phase];
        let (mut pickings, mut fills, mut counts) =
            (p.pickings.clone(), p.fills.clone(), p.counts.clone());
        match which {
            Pickings::Moves => {
                for (picking, _) in &mut pickings {
                    picking.lines.retain(|l| {
                        let hold = behind(&l.seqs);
                        if hold {
                            held.extend(&l.seqs);
                        }
                        !hold
                    });
                }
                pickings.retain(|(p, _)| !p.lines.is_empty());
                for (fill, _) in &mut fills {
                    fill.moves.retain(|m| {
                        let hold = behind(&m.seqs);
                        if hold {
                            held.extend(&m.seqs);
                        }
                        !hold
                    });
                }
                fills.retain(|(f, _)| !f.moves.is_empty());
            }
            Pickings::Counts => counts.retain(|c| {
                let hold = behind(&[c.seq]);
                if hold {
                    held.push(c.seq);
                }
                !hold
            }),
        }
        if held.is_empty() {
            return;
        }
        let p = &mut self.phases[phase];
        (p.pickings, p.fills, p.counts) = (pickings, fills, counts);
        held.sort_unstable();
        for seq in held {
            let sku = self.skus.get(&seq).cloned().unwrap_or_default();
            let message = format!(
                "an earlier event of {sku:?} in {} is parked; this one waits behind it",
                self.warehouse
            );
            self.park_as(&[seq], crate::merge::state::PARKED_BEHIND, &message);
        }
    }
}

#[cfg(test)]
mod tests {
    use tally_protocol::Qty;

    use super::*;
    use crate::merge::plan::{FillMove, Line, PickingKind, PlannedCount, PlannedFill};
    use crate::merge::state::StoredPhase;

    fn line(product: i64, seqs: &[u64]) -> Line {
        Line {
            product,
            uom: 1,
            qty: Qty::from_units(1),
            from: 8,
            to: 5,
            lot: None,
            create_lot: false,
            seqs: seqs.to_vec(),
        }
    }

    fn picking(key: &str, lines: Vec<Line>) -> (PlannedPicking, Status) {
        let picking = PlannedPicking {
            key: key.into(),
            kind: PickingKind::Delivery,
            picking_type: 2,
            from: 8,
            to: 5,
            lines,
        };
        (picking, Status::Pending)
    }

    #[test]
    fn what_follows_a_parked_event_of_its_sku_waits_behind_it() {
        let letter = DeadLetter {
            warehouse: "WH".into(),
            sku: "A".into(),
            reason: "ValidationError".into(),
            message: "refused".into(),
            parked_at: 0,
        };
        let skus = [(1, "A"), (2, "B"), (3, "A"), (4, "A"), (5, "A"), (6, "A")];
        let mut plan = StoredPlan {
            warehouse: "WH".into(),
            through: 6,
            pickings: Vec::new(),
            fills: Vec::new(),
            phases: vec![StoredPhase {
                key: "K-p2".into(),
                pickings: vec![
                    // A line of events both before and after the parked one goes ahead.
                    picking("K-p2-D1", vec![line(1, &[1, 4]), line(2, &[2])]),
                    picking("K-p2-D2", vec![line(1, &[5])]),
                ],
                fills: vec![(
                    PlannedFill {
                        key: "K-p2-F1".into(),
                        picking: 40,
                        picking_name: "WH/OUT/00040".into(),
                        moves: vec![FillMove {
                            move_id: 400,
                            product: 1,
                            qty: Qty::from_units(1),
                            seqs: vec![6],
                            line: None,
                        }],
                    },
                    Status::Pending,
                )],
                counts: vec![PlannedCount {
                    seq: 4,
                    product: 1,
                    uom: 1,
                    location: 8,
                    lot: None,
                    qty: Qty::from_units(3),
                    at: "2026-12-02 10:00:00".into(),
                }],
                ..StoredPhase::default()
            }],
            parked: vec![(3, letter)],
            skus: skus.iter().map(|(s, k)| (*s, (*k).to_owned())).collect(),
            retry: None,
        };
        plan.hold_back(0, Pickings::Moves);
        let phase = &plan.phases[0];
        let keys: Vec<&str> = phase.pickings.iter().map(|(p, _)| p.key.as_str()).collect();
        assert_eq!(keys, ["K-p2-D1"]);
        assert_eq!(phase.pickings[0].0.lines.len(), 2);
        assert!(phase.fills.is_empty());
        assert_eq!(phase.counts.len(), 1, "counts wait for the phase's moves");
        plan.hold_back(0, Pickings::Counts);
        assert!(plan.phases[0].counts.is_empty());
        let parked: Vec<(u64, &str)> = plan
            .parked
            .iter()
            .map(|(seq, l)| (*seq, l.reason.as_str()))
            .collect();
        assert_eq!(
            parked,
            [
                (3, "ValidationError"),
                (5, "parked-behind"),
                (6, "parked-behind"),
                (4, "parked-behind")
            ]
        );
    }
}

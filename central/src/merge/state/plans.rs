//! The recorded plan of a run (`merge_plan`), its encoding, and the transactions that end it.
//!
//! The encoding is JSON of [`StoredPlan`]: plans recorded by older releases must still be read
//! (a restart finishes them), so a new field is `#[serde(default)]`, and `plan-recorded-*.json`
//! pins the format as this release writes it.

use std::collections::BTreeMap;

use redb::ReadableDatabase;
use serde::{Deserialize, Serialize};
use tally_protocol::LogId;

use super::{DeadLetter, key};
use crate::merge::merged::MergedInto;
use crate::merge::plan::{PlannedCount, PlannedFill, PlannedPicking};
use crate::store::schema::{CURSORS, DEAD_LETTERS, PLANS, RETRIES};
use crate::store::{ResultExt, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Pending,
    Done,
    /// Refused by Odoo as a whole: replaced by one picking per line.
    Split,
    /// Refused by Odoo for its only line: the line's events are parked.
    Parked,
}

/// A run's plan as recorded in `merge_plan` before Odoo is called.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredPlan {
    pub warehouse: String,
    /// The last seq of the run: the cursor moves here when the plan is finished.
    pub through: u64,
    /// The pickings of a plan recorded before plans had phases (a run then ended at a count,
    /// whose delta was already among them): applied as its only phase ([`StoredPlan::upgrade`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pickings: Vec<(PlannedPicking, Status)>,
    /// Open Odoo pickings such a plan fills.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fills: Vec<(PlannedFill, Status)>,
    /// Applied one after the other.
    #[serde(default)]
    pub phases: Vec<StoredPhase>,
    pub parked: Vec<(u64, DeadLetter)>,
    /// The SKU of each event of the run, for parking by line.
    pub skus: BTreeMap<u64, String>,
    /// Set when the run retries parked events (the retry's generation): finishing it takes
    /// them out of the retry queue instead of moving the cursor.
    #[serde(default)]
    pub retry: Option<u64>,
}

/// A phase of a run: its pickings and fills, then its counts, computed together once those
/// are applied.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoredPhase {
    /// Names the phase's pickings (the run's batch key, and the phase after the first).
    pub key: String,
    /// Whether what waits behind an event parked earlier in the run was taken out: once, as
    /// the phase starts, before any of its pickings reaches Odoo.
    pub started: bool,
    pub pickings: Vec<(PlannedPicking, Status)>,
    /// Open Odoo pickings the phase's referenced picks and receipts fill.
    pub fills: Vec<(PlannedFill, Status)>,
    /// The counts that close the phase.
    pub counts: Vec<PlannedCount>,
    /// Whether the counts' deltas are computed and recorded in `adjustments`: after that they
    /// are never computed again, so a restart applies the same deltas.
    pub counted: bool,
    pub adjustments: Vec<(PlannedPicking, Status)>,
}

impl StoredPlan {
    /// Where each event the plan applied went: the picking it created and validated, or the
    /// open picking it filled.
    pub fn merged_into(&self) -> Vec<(u64, MergedInto)> {
        let at = super::now_micros();
        let into = |picking: &str, state: &str| MergedInto {
            picking: picking.to_owned(),
            state: state.to_owned(),
            merged_at: at,
        };
        let mut out = Vec::new();
        for phase in &self.phases {
            for (picking, status) in phase.pickings.iter().chain(&phase.adjustments) {
                if *status == Status::Done {
                    let seqs = picking.lines.iter().flat_map(|l| &l.seqs);
                    out.extend(seqs.map(|seq| (*seq, into(&picking.key, "done"))));
                }
            }
            for (fill, status) in &phase.fills {
                if *status == Status::Done {
                    let seqs = fill.moves.iter().flat_map(|m| &m.seqs);
                    out.extend(seqs.map(|seq| (*seq, into(&fill.picking_name, "filled"))));
                }
            }
        }
        out
    }

    /// A plan recorded before phases becomes a plan of one phase, its counts (if it was a
    /// count's run) already computed.
    pub fn upgrade(&mut self) {
        if self.pickings.is_empty() && self.fills.is_empty() {
            return;
        }
        let phase = StoredPhase {
            key: String::new(),
            started: true,
            pickings: std::mem::take(&mut self.pickings),
            fills: std::mem::take(&mut self.fills),
            counts: Vec::new(),
            counted: true,
            adjustments: Vec::new(),
        };
        self.phases.insert(0, phase);
    }

    /// The plan as `merge_plan` holds it. Encoding is cheap next to the commit that stores it,
    /// and done by the caller so that the plan need not be copied to the thread that commits.
    pub fn encode(&self) -> EncodedPlan {
        EncodedPlan(serde_json::to_vec(self).expect("serialising a plain struct"))
    }

    fn decode(agent: &str, bytes: &[u8]) -> Result<StoredPlan, StoreError> {
        serde_json::from_slice(bytes)
            .map_err(|e| StoreError::Corrupt(format!("merge plan of {agent}: {e}")))
    }
}

/// A [`StoredPlan`] encoded for `merge_plan`.
#[derive(Debug, Clone)]
pub struct EncodedPlan(Vec<u8>);

/// Records `parked` as dead letters of (`agent`, `log_id`) and removes that log's plan: how
/// both a merge and a retry end, inside the caller's transaction.
fn park_and_end_plan(
    txn: &redb::WriteTransaction,
    agent: &str,
    log_id: LogId,
    parked: &[(u64, DeadLetter)],
) -> Result<(), StoreError> {
    let mut letters = txn.open_table(DEAD_LETTERS).storage()?;
    for (seq, letter) in parked {
        let bytes = serde_json::to_vec(letter).expect("serialising a plain struct");
        letters
            .insert((agent, key(log_id), *seq), bytes.as_slice())
            .storage()?;
    }
    txn.open_table(PLANS)
        .storage()?
        .remove((agent, key(log_id)))
        .storage()?;
    Ok(())
}

impl Store {
    pub fn merge_cursor(&self, agent: &str, log_id: LogId) -> Result<u64, StoreError> {
        let txn = self.db().begin_read().storage()?;
        let table = txn.open_table(CURSORS).storage()?;
        Ok(table
            .get((agent, key(log_id)))
            .storage()?
            .map_or(0, |v| v.value()))
    }

    /// The recorded plan of a stream, if one is being applied.
    pub fn merge_plan(&self, agent: &str, log_id: LogId) -> Result<Option<StoredPlan>, StoreError> {
        let txn = self.db().begin_read().storage()?;
        let table = txn.open_table(PLANS).storage()?;
        let Some(bytes) = table.get((agent, key(log_id))).storage()? else {
            return Ok(None);
        };
        StoredPlan::decode(agent, bytes.value()).map(Some)
    }

    /// Records (or updates) a stream's plan durably.
    pub fn save_merge_plan(
        &self,
        agent: &str,
        log_id: LogId,
        plan: &EncodedPlan,
    ) -> Result<(), StoreError> {
        let txn = self.db().begin_write().storage()?;
        txn.open_table(PLANS)
            .storage()?
            .insert((agent, key(log_id)), plan.0.as_slice())
            .storage()?;
        txn.commit().storage()
    }

    /// Ends a plan: the cursor moves to `through`, the parked events are recorded, and the
    /// plan is removed, in one durable transaction.
    pub fn finish_merge(
        &self,
        agent: &str,
        log_id: LogId,
        through: u64,
        parked: &[(u64, DeadLetter)],
        merged: &[(u64, MergedInto)],
    ) -> Result<(), StoreError> {
        let txn = self.db().begin_write().storage()?;
        crate::merge::merged::record(&txn, agent, log_id, merged)?;
        {
            let mut cursors = txn.open_table(CURSORS).storage()?;
            cursors.insert((agent, key(log_id)), through).storage()?;
        }
        park_and_end_plan(&txn, agent, log_id, parked)?;
        txn.commit().storage()
    }

    /// Ends a retry's plan: its events leave the retry queue, those parked again become dead
    /// letters, and the plan is removed, in one durable transaction. The cursor stays.
    pub fn finish_retry(
        &self,
        agent: &str,
        log_id: LogId,
        seqs: impl IntoIterator<Item = u64>,
        parked: &[(u64, DeadLetter)],
        merged: &[(u64, MergedInto)],
    ) -> Result<(), StoreError> {
        let txn = self.db().begin_write().storage()?;
        crate::merge::merged::record(&txn, agent, log_id, merged)?;
        {
            let mut retries = txn.open_table(RETRIES).storage()?;
            for seq in seqs {
                retries.remove((agent, key(log_id), seq)).storage()?;
            }
        }
        park_and_end_plan(&txn, agent, log_id, parked)?;
        txn.commit().storage()
    }
}

#[cfg(test)]
mod tests {
    use tally_protocol::Qty;

    use super::*;

    /// A plan as the release of 2026-12-03 recorded it, read back from its store mid-run (a
    /// receipt and a delivery applied, a fill of a sales order's delivery pending, a count
    /// closing the first phase, a receipt after it in a second phase, an unknown SKU parked).
    const RECORDED: &str = include_str!("plan-recorded-2026-12-03.json");

    #[test]
    fn a_plan_recorded_by_an_earlier_release_reads_back_and_encodes_to_the_same_bytes() {
        let plan = StoredPlan::decode("wh-agent", RECORDED.trim_end().as_bytes()).unwrap();
        assert_eq!(plan.through, 6);
        assert_eq!(plan.phases.len(), 2);
        let first = &plan.phases[0];
        assert!(first.started && !first.counted);
        let statuses: Vec<Status> = first.pickings.iter().map(|(_, s)| *s).collect();
        assert_eq!(statuses, [Status::Done, Status::Done]);
        assert_eq!(first.fills[0].0.picking_name, "WH/OUT/00001");
        assert_eq!(first.fills[0].1, Status::Pending);
        assert_eq!(first.counts[0].qty, Qty::from_units(7));
        assert_eq!(
            plan.phases[1].pickings[0].0.key,
            "tally-wh-agent-abababab-1-6-p2-R1"
        );
        assert_eq!(plan.parked[0].1.reason, "unknown-sku");
        assert_eq!(plan.skus.len(), 6);
        assert_eq!(plan.encode().0, RECORDED.trim_end().as_bytes());
    }

    #[test]
    fn a_plan_recorded_before_phases_is_applied_as_its_only_phase() {
        // As the code before phases recorded a count's run: the delta already computed.
        let recorded = r#"{"warehouse":"WH","through":7,
            "pickings":[[{"key":"tally-a-abababab-7-7-C1","kind":"Adjustment","picking_type":5,
              "from":8,"to":14,"lines":[{"product":1,"uom":1,"qty":2000000,"from":8,"to":14,
              "lot":null,"create_lot":false,"seqs":[7]}]},"Pending"]],
            "fills":[],"parked":[],"skus":{"7":"SKU-001"},"retry":null}"#;
        let mut plan = StoredPlan::decode("a", recorded.as_bytes()).unwrap();
        plan.upgrade();
        assert_eq!(plan.phases.len(), 1);
        let phase = &plan.phases[0];
        assert!(phase.started && phase.counted && phase.counts.is_empty());
        assert_eq!(phase.pickings[0].0.key, "tally-a-abababab-7-7-C1");
        assert_eq!(phase.pickings[0].0.lines[0].qty, Qty::from_units(2));
        // Recorded again, it reads the same.
        let again = StoredPlan::decode("a", &plan.encode().0).unwrap();
        assert_eq!(again.phases[0].pickings, plan.phases[0].pickings);
        assert!(again.pickings.is_empty());
    }

    #[test]
    fn a_plan_that_does_not_decode_is_corrupt_and_named() {
        let error = StoredPlan::decode("wh-agent", b"{\"warehouse\":").unwrap_err();
        assert!(matches!(error, StoreError::Corrupt(m) if m.contains("merge plan of wh-agent")));
    }
}

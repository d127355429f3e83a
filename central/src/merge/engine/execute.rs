//! A recorded plan applied phase by phase — its pickings and fills exactly once, then its
//! counts — and ended in one transaction with what it parked.

use tally_protocol::LogId;

use super::Lane;
use super::MergeError;
use super::hold::Pickings;
use crate::merge::apply::{apply_once, fill_once, resume};
use crate::merge::keys;
use crate::merge::plan::PlannedPicking;
use crate::merge::state::{Status, StoredPlan};
use crate::odoo::ErrorKind;

impl Lane {
    pub(super) async fn execute(
        &mut self,
        agent: &str,
        log_id: LogId,
        mut plan: StoredPlan,
        resumed: bool,
    ) -> Result<(), MergeError> {
        plan.upgrade();
        for p in 0..plan.phases.len() {
            if !plan.phases[p].started {
                plan.hold_back(p, Pickings::Moves);
                plan.phases[p].started = true;
                self.store
                    .save_merge_plan(agent, log_id, plan.encode())
                    .await?;
            }
            self.apply_pickings(agent, log_id, &mut plan, p, Pickings::Moves, resumed)
                .await?;
            self.apply_fills(agent, log_id, &mut plan, p).await?;
            if !plan.phases[p].counted {
                self.count(agent, log_id, &mut plan, p).await?;
            }
            self.apply_pickings(agent, log_id, &mut plan, p, Pickings::Counts, resumed)
                .await?;
        }
        crate::merge::state::log_parked(agent, &plan.parked);
        let merged = plan.merged_into();
        let touched_skus: Vec<String> = plan.skus.values().cloned().collect();
        match plan.retry {
            Some(_) => {
                let seqs = plan.skus.keys().copied().collect();
                self.store
                    .finish_retry(agent, log_id, seqs, plan.parked, merged)
                    .await?
            }
            None => {
                self.store
                    .finish_merge(agent, log_id, plan.through, plan.parked, merged)
                    .await?
            }
        }
        if let Some(touched) = &self.touched {
            touched.note(&plan.warehouse, touched_skus.iter());
        }
        Ok(())
    }

    /// Applies the pending pickings of phase `p` exactly once, splitting a refused picking per
    /// line and parking the line Odoo refuses.
    pub(super) async fn apply_pickings(
        &mut self,
        agent: &str,
        log_id: LogId,
        plan: &mut StoredPlan,
        p: usize,
        which: Pickings,
        resumed: bool,
    ) -> Result<(), MergeError> {
        let mut i = 0;
        while i < plan.pickings(p, which).len() {
            let (picking, status) = plan.pickings(p, which)[i].clone();
            if status != Status::Pending {
                i += 1;
                continue;
            }
            // A line split off a refused picking starts from a lookup, as after a restart.
            let result = if resumed || keys::is_split_key(&picking.key) {
                resume(&self.odoo, &picking, self.policy).await
            } else {
                apply_once(&self.odoo, &picking, self.policy).await
            };
            match result {
                Ok(_) => plan.pickings(p, which)[i].1 = Status::Done,
                Err(e) if e.kind == ErrorKind::Permanent => {
                    self.abandon(&picking).await?;
                    tracing::warn!(key = %picking.key, error = %e, lines = picking.lines.len(), "Odoo refused a picking");
                    if picking.lines.len() > 1 {
                        // Find the refused line(s): one picking per line, each under its own key.
                        plan.pickings(p, which)[i].1 = Status::Split;
                        let singles = picking.lines.iter().enumerate().map(|(j, line)| {
                            (
                                PlannedPicking {
                                    key: keys::split_key(&picking.key, j + 1),
                                    lines: vec![line.clone()],
                                    ..picking.clone()
                                },
                                Status::Pending,
                            )
                        });
                        plan.pickings(p, which).splice(i + 1..i + 1, singles);
                    } else {
                        plan.pickings(p, which)[i].1 = Status::Parked;
                        plan.park(&picking.lines[0].seqs, &e);
                    }
                }
                Err(e) => {
                    self.store
                        .save_merge_plan(agent, log_id, plan.encode())
                        .await?;
                    return Err(e.into());
                }
            }
            self.store
                .save_merge_plan(agent, log_id, plan.encode())
                .await?;
            i += 1;
        }
        Ok(())
    }

    /// Fills the open pickings of phase `p`, each exactly once.
    pub(super) async fn apply_fills(
        &mut self,
        agent: &str,
        log_id: LogId,
        plan: &mut StoredPlan,
        p: usize,
    ) -> Result<(), MergeError> {
        for i in 0..plan.phases[p].fills.len() {
            let (fill, status) = plan.phases[p].fills[i].clone();
            if status != Status::Pending {
                continue;
            }
            match fill_once(&self.odoo, &fill, self.policy).await {
                Ok(_) => plan.phases[p].fills[i].1 = Status::Done,
                Err(e) if e.kind == ErrorKind::Permanent => {
                    // The picking is the customer's (or the vendor's): it is never cancelled.
                    tracing::warn!(key = %fill.key, picking = %fill.picking_name, error = %e, "Odoo refused to fill a picking");
                    let seqs: Vec<u64> = fill.seqs().collect();
                    plan.phases[p].fills[i].1 = Status::Parked;
                    plan.park(&seqs, &e);
                }
                Err(e) => {
                    self.store
                        .save_merge_plan(agent, log_id, plan.encode())
                        .await?;
                    return Err(e.into());
                }
            }
            self.store
                .save_merge_plan(agent, log_id, plan.encode())
                .await?;
        }
        Ok(())
    }

    /// Cancels a refused picking if Odoo holds it open, so it leaves no reservation behind.
    pub(super) async fn abandon(&self, picking: &PlannedPicking) -> Result<(), MergeError> {
        if let Some(found) = self.odoo.find_picking(&picking.key).await?
            && !found.state.is_final()
        {
            self.odoo.cancel_picking(found.id).await?;
        }
        Ok(())
    }
}

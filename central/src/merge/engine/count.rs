//! A phase's counts, computed together once its moves are applied, recorded as deltas before
//! anything applies them.

use std::collections::HashSet;

use tally_protocol::{LogId, Qty};

use super::Lane;
use super::MergeError;
use super::hold::Pickings;
use crate::merge::keys;
use crate::merge::plan::{PlannedCount, QUANTITY_TOO_LARGE, count_lines, count_pickings};
use crate::merge::state::{Notice, Status, StoredPlan, now_micros};

impl Lane {
    /// Computes the counts that close phase `p` (docs/odoo.md#counts), all at once,
    /// and records their deltas in the plan before anything applies them: a restart applies
    /// the same deltas, never recomputed ones.
    ///
    /// Each count is as of its own time: Odoo's quantity now holds every Tally event of the
    /// count's stock before it (the earlier phases and this one's moves are applied) and none
    /// after it (those are in later phases); what it must not hold is what Odoo itself moved
    /// there after the count was taken, which is added back. Tally's own pickings are left out
    /// of that, because they carry the time they were applied, not the time of the scan. The
    /// quantities, and the moves since the earliest count of the phase, are read in one call
    /// each and picked apart per count.
    pub(super) async fn count(
        &mut self,
        agent: &str,
        log_id: LogId,
        plan: &mut StoredPlan,
        p: usize,
    ) -> Result<(), MergeError> {
        plan.hold_back(p, Pickings::Counts);
        let counts = plan.phases[p].counts.clone();
        let mut adjustments = Vec::new();
        if !counts.is_empty() {
            let warehouse = self.warehouse().await?;
            let set = |of: fn(&PlannedCount) -> i64| -> Vec<i64> {
                counts
                    .iter()
                    .map(of)
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect()
            };
            let (products, locations) = (set(|c| c.product), set(|c| c.location));
            let since = counts
                .iter()
                .map(|c| c.at.as_str())
                .min()
                .expect("counts is not empty");
            // A count of a lot counts that lot only; a lot Odoo does not know holds nothing.
            let lot_names: Vec<(i64, String)> = counts
                .iter()
                .filter_map(|c| Some((c.product, c.lot.clone()?)))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let lots = self.odoo.lots_named(&lot_names).await?;
            let (quants, moved) = self
                .odoo
                .count_stock(&products, &locations, since, keys::PREFIX)
                .await?;
            // A count someone entered in Odoo and has not applied is left alone (the picking
            // path does not touch it), but when applied it will set the quantity over
            // Tally's: report.
            let pending = self.odoo.pending_counts(&products, &locations).await?;
            for c in &counts {
                let sku = plan.skus.get(&c.seq).cloned().unwrap_or_default();
                for found in pending
                    .iter()
                    .filter(|f| f.product == c.product && f.location == c.location)
                {
                    let message = format!(
                        "{} has a count of {} pending in Odoo for {sku} at this location; Tally applied its own count of {} (seq {}). Applying the pending one in Odoo will set the quantity over it.",
                        found.user, found.counted, c.qty, c.seq
                    );
                    tracing::warn!(%sku, seq = c.seq, user = %found.user, pending = found.counted, "a count is pending in Odoo");
                    let notice = Notice {
                        warehouse: warehouse.code.clone(),
                        sku: sku.clone(),
                        kind: "pending-odoo-count".into(),
                        message,
                        noticed_at: now_micros(),
                    };
                    self.store.add_notice(agent, log_id, c.seq, notice).await?;
                }
            }
            let (mut lines, deltas, oversized) =
                count_lines(&warehouse, &counts, &lots, &quants, &moved, &plan.skus);
            if !oversized.is_empty() {
                // Parked rather than booked as some other delta; a later count of the same
                // SKU in this phase waits behind it, as later phases' events do.
                for o in &oversized {
                    plan.park_as(&[o.seq], QUANTITY_TOO_LARGE, &o.message);
                }
                let before: Vec<u64> = plan.phases[p].counts.iter().map(|c| c.seq).collect();
                plan.hold_back(p, Pickings::Counts);
                let out: HashSet<u64> = oversized
                    .iter()
                    .map(|o| o.seq)
                    .chain(
                        before
                            .into_iter()
                            .filter(|seq| !plan.phases[p].counts.iter().any(|c| c.seq == *seq)),
                    )
                    .collect();
                plan.phases[p].counts.retain(|c| !out.contains(&c.seq));
                lines.retain(|l| !l.seqs.iter().any(|seq| out.contains(seq)));
                tracing::warn!(
                    warehouse = %warehouse.code,
                    counts = oversized.len(),
                    "counts parked: their change, or Odoo's quantity they are taken against, is more than Odoo holds exactly"
                );
            }
            for d in &deltas {
                let Some(c) = plan.phases[p].counts.iter().find(|c| c.seq == d.seq) else {
                    continue;
                };
                let sku = plan
                    .skus
                    .get(&c.seq)
                    .map(String::as_str)
                    .unwrap_or_default();
                tracing::info!(%sku, seq = c.seq, counted = %c.qty, as_of_count = %d.as_of_count, delta = %Qty::from_micros(d.delta), odoo_time = %c.at, "count becomes a delta");
            }
            adjustments = count_pickings(&plan.phases[p].key, &warehouse, lines);
        }
        let phase = &mut plan.phases[p];
        phase.adjustments = adjustments
            .into_iter()
            .map(|p| (p, Status::Pending))
            .collect();
        phase.counted = true;
        self.store
            .save_merge_plan(agent, log_id, plan.encode())
            .await?;
        Ok(())
    }
}

//! Writing offers: the batch calls, the read of the orders after each write (an order placed
//! while the write was on its way was overwritten by it: its SKUs are written again at once),
//! and the recheck of SKUs written with open orders taken off.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde_json::json;

use super::offers::Value;
use super::{BATCH, RECHECK, ROUNDS, Target, Watched, WooCommerce};
use crate::channels::{ChannelError, Drift, Entry, Outcome};

impl WooCommerce {
    /// Writes `todo`, then again what orders placed meanwhile touched; returns the entries
    /// WooCommerce accepted.
    pub(super) async fn write_rounds(
        &mut self,
        todo: Vec<(Entry, Target)>,
        out: &mut Outcome,
    ) -> Result<Vec<Entry>, ChannelError> {
        let mut accepted: BTreeMap<Target, Entry> = BTreeMap::new();
        let mut round = todo;
        for _ in 0..ROUNDS {
            let values = self.values(&round).await?;
            let written = self.write(&round, &values, out).await?;
            let changed = self.orders.refresh(&self.api, out).await?;
            for ((e, t), v) in round.iter().zip(&values) {
                if !written.contains(t) {
                    continue;
                }
                accepted.entry(*t).or_insert_with(|| e.clone());
                if v.took_off {
                    let watched = Watched {
                        entry: e.clone(),
                        target: *t,
                        written: v.value,
                    };
                    self.watch.insert(e.sku.clone(), watched);
                } else {
                    self.watch.remove(&e.sku);
                }
            }
            let touched: BTreeSet<String> = changed
                .iter()
                .filter_map(|id| self.orders.orders.get(id))
                .flat_map(|o| o.line_items.iter())
                .filter_map(|l| self.line_sku(l))
                .collect();
            round.retain(|(e, t)| written.contains(t) && touched.contains(&e.sku));
            if round.is_empty() {
                return Ok(accepted.into_values().collect());
            }
            tracing::info!(
                channel = %self.config.name,
                skus = round.len(),
                "orders arrived during a write: writing their SKUs again"
            );
        }
        // Orders kept arriving: what is left is written by the next recheck, right away.
        for (e, t) in round {
            let watched = Watched {
                entry: e.clone(),
                target: t,
                written: u64::MAX,
            };
            self.watch.insert(e.sku, watched);
        }
        self.next_recheck = None;
        Ok(accepted.into_values().collect())
    }

    /// Looks again, at most every [`RECHECK`], at the SKUs written with open orders taken off,
    /// and writes those whose offer changed (an order left, or Odoo's figures hold it now).
    /// `None` when there is nothing to look at yet.
    pub async fn recheck(&mut self) -> Option<Result<Outcome, ChannelError>> {
        if self.watch.is_empty() || self.next_recheck.is_some_and(|at| Instant::now() < at) {
            return None;
        }
        self.next_recheck = Some(Instant::now() + RECHECK);
        let mut out = Outcome::default();
        Some(self.recheck_now(&mut out).await.map(|()| out))
    }

    async fn recheck_now(&mut self, out: &mut Outcome) -> Result<(), ChannelError> {
        self.fresh.clear();
        self.orders.refresh(&self.api, out).await?;
        let watched: Vec<Watched> = self.watch.values().cloned().collect();
        let round: Vec<(Entry, Target)> = watched
            .iter()
            .map(|w| (w.entry.clone(), w.target))
            .collect();
        let values = self.values(&round).await?;
        let mut todo = Vec::new();
        for (w, v) in watched.into_iter().zip(values) {
            if v.value != w.written {
                todo.push((w.entry, w.target));
            } else if !v.took_off {
                self.watch.remove(&w.entry.sku);
            }
        }
        if !todo.is_empty() {
            self.write_rounds(todo, out).await?;
        }
        for (e, code, message) in &out.dead {
            tracing::warn!(channel = %self.config.name, sku = %e.sku, %code, %message, "WooCommerce refused a SKU written again");
        }
        Ok(())
    }

    /// Writes `values`, [`BATCH`] per call and endpoint; returns the targets WooCommerce
    /// accepted. Refused items go to `out.dead`; transient ones are left for the next push.
    async fn write(
        &mut self,
        round: &[(Entry, Target)],
        values: &[Value],
        out: &mut Outcome,
    ) -> Result<BTreeSet<Target>, ChannelError> {
        let mut by_path: BTreeMap<String, Vec<(&Entry, Target, u64)>> = BTreeMap::new();
        // Already showing the value (just read): nothing to write.
        let mut written = BTreeSet::new();
        for ((e, t), v) in round.iter().zip(values) {
            if let Some(shown) = self.fresh.remove(t) {
                if shown == i64::try_from(v.value).ok() {
                    written.insert(*t);
                    continue;
                }
                out.drift.push(Drift {
                    sku: e.sku.clone(),
                    channel_showed: shown,
                    offered: v.value,
                });
            }
            by_path.entry(t.path()).or_default().push((e, *t, v.value));
        }
        for (path, items) in by_path {
            for chunk in items.chunks(BATCH) {
                let updates: Vec<serde_json::Value> = chunk
                    .iter()
                    .map(|(_, t, v)| json!({"id": t.id, "manage_stock": true, "stock_quantity": v}))
                    .collect();
                let answers = self.api.batch(&path, &updates, out).await?;
                for ((e, t, _), answer) in chunk.iter().zip(answers) {
                    match answer.error {
                        None => {
                            written.insert(*t);
                        }
                        Some(error) if error.is_transient() => {
                            tracing::warn!(channel = %self.config.name, sku = %e.sku, code = %error.code, "WooCommerce could not take a SKU now: it goes again");
                        }
                        Some(error) => {
                            out.dead.push(((*e).clone(), error.code, error.message));
                        }
                    }
                }
            }
        }
        Ok(written)
    }
}

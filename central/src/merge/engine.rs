//! The merge engine: per stream (an agent's log), strictly in seq order, cut the journal into
//! runs, resolve them against Odoo, record the plan durably, apply its pickings exactly once,
//! park what Odoo refuses, and move the stream's cursor.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tally_protocol::{EventKind, LogId, LoggedEvent, Qty};
use tokio::sync::OnceCell;

use super::apply::{RetryPolicy, apply_once, fill_once, resume};
use super::plan::{
    Oversized, PlannedFill, PlannedPicking, Product, QUANTITY_TOO_LARGE, ResolvedEvent, Warehouse,
    cut, fill, may_fill, plan,
};
use super::state::{DeadLetter, Notice, now_micros};
use crate::odoo::api::VirtualLocations;
use crate::odoo::{ErrorKind, OdooClient, OdooError};
use crate::store::{Store, StoreError};

/// Events read from the journal per run at most.
pub const MAX_RUN_EVENTS: usize = 5000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Status {
    Pending,
    Done,
    /// Refused by Odoo as a whole: replaced by one picking per line.
    Split,
    /// Refused by Odoo for its only line: the line's events are parked.
    Parked,
}

/// A run's plan as recorded in `merge_plan` before Odoo is called.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredPlan {
    warehouse: String,
    /// The last seq of the run: the cursor moves here when the plan is finished.
    through: u64,
    pickings: Vec<(PlannedPicking, Status)>,
    /// Open Odoo pickings the run's referenced picks and receipts fill.
    #[serde(default)]
    fills: Vec<(PlannedFill, Status)>,
    parked: Vec<(u64, DeadLetter)>,
    /// The SKU of each event of the run, for parking by line.
    skus: BTreeMap<u64, String>,
    /// Set when the run retries parked events (the retry's generation): finishing it takes
    /// them out of the retry queue instead of moving the cursor.
    #[serde(default)]
    retry: Option<u64>,
}

impl StoredPlan {
    /// Parks the events `seqs` with Odoo's reason for refusing them.
    fn park(&mut self, seqs: &[u64], error: &OdooError) {
        for &seq in seqs {
            let sku = self.skus.get(&seq).cloned().unwrap_or_default();
            self.parked.push((
                seq,
                DeadLetter {
                    warehouse: self.warehouse.clone(),
                    sku,
                    reason: error.name.clone(),
                    message: error.message.clone(),
                    parked_at: now_micros(),
                },
            ));
        }
    }
}

/// What went wrong in a merge pass.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Odoo(#[from] OdooError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An agent is registered for a warehouse code Odoo does not have: its lane waits.
    #[error(
        "Odoo has no warehouse with code {0:?}: its agents' events wait until the warehouse exists or the agents are registered for another"
    )]
    UnknownWarehouse(String),
}

impl MergeError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            MergeError::Odoo(e) => e.kind,
            MergeError::Store(_) => ErrorKind::Retryable,
            MergeError::UnknownWarehouse(_) => ErrorKind::Auth,
        }
    }
}

/// A product lookup's outcome, cached per SKU.
#[derive(Debug, Clone)]
enum Found {
    Product(Product),
    Refused {
        reason: &'static str,
        message: String,
    },
}

/// Applies journaled events to one Odoo database: a [`Lane`] per warehouse, the lanes at the
/// same time (their keys never overlap), each strictly in order. Calls that change data share
/// the client's write permits.
#[derive(Debug)]
pub struct Engine {
    store: Store,
    odoo: Arc<OdooClient>,
    policy: RetryPolicy,
    /// Odoo's virtual locations, read once for every lane.
    virtuals: Arc<OnceCell<VirtualLocations>>,
    lanes: HashMap<String, Lane>,
    /// Warehouses whose lane cannot run until a person fixes something (the code is not a
    /// warehouse in Odoo), with why; the other lanes keep merging.
    stuck: BTreeMap<String, String>,
}

impl Engine {
    pub fn new(store: Store, odoo: OdooClient, policy: RetryPolicy) -> Engine {
        Engine {
            store,
            odoo: Arc::new(odoo),
            policy,
            virtuals: Arc::default(),
            lanes: HashMap::new(),
            stuck: BTreeMap::new(),
        }
    }

    /// Merges everything journaled so far; returns how many events were resolved. When a lane
    /// fails, the others still finish their pass; the first error is returned.
    pub async fn merge_all(&mut self) -> Result<u64, MergeError> {
        let warehouse_of: HashMap<String, String> = self
            .store
            .list_agents()?
            .into_iter()
            .map(|a| (a.agent_id, a.warehouse))
            .collect();
        let mut streams: HashMap<String, Vec<(String, LogId)>> = HashMap::new();
        for stream in self.store.streams()? {
            if let Some(warehouse) = warehouse_of.get(&stream.agent_id) {
                streams
                    .entry(warehouse.clone())
                    .or_default()
                    .push((stream.agent_id, stream.log_id));
            }
        }
        for code in streams.keys() {
            if !self.lanes.contains_key(code) {
                let lane = Lane {
                    store: self.store.clone(),
                    odoo: self.odoo.clone(),
                    policy: self.policy,
                    code: code.clone(),
                    virtuals: self.virtuals.clone(),
                    warehouse: None,
                    products: HashMap::new(),
                    locations: HashMap::new(),
                };
                self.lanes.insert(code.clone(), lane);
            }
        }
        let passes = self.lanes.iter_mut().filter_map(|(code, lane)| {
            let streams = streams.remove(code)?;
            Some(async move { (code.clone(), lane.merge(streams).await) })
        });
        let mut total = 0;
        let mut first_error = None;
        for (code, result) in futures_util::future::join_all(passes).await {
            match result {
                Ok(merged) => {
                    total += merged;
                    self.stuck.remove(&code);
                }
                Err(e @ MergeError::UnknownWarehouse(_)) => {
                    self.stuck.insert(code, e.to_string());
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }

    /// Why some warehouses cannot merge, for the operator (empty when all can).
    pub fn stuck(&self) -> Vec<String> {
        self.stuck.values().cloned().collect()
    }
}

/// One warehouse's merge: its streams in order, with its own caches of what Odoo holds.
#[derive(Debug)]
struct Lane {
    store: Store,
    odoo: Arc<OdooClient>,
    policy: RetryPolicy,
    code: String,
    virtuals: Arc<OnceCell<VirtualLocations>>,
    warehouse: Option<Warehouse>,
    products: HashMap<String, Found>,
    /// Location name → the location, if the warehouse has it.
    locations: HashMap<String, Option<i64>>,
}

impl Lane {
    /// Queued retries of every stream first (they are older than anything new of their keys),
    /// then what is new.
    async fn merge(&mut self, streams: Vec<(String, LogId)>) -> Result<u64, MergeError> {
        let mut total = 0;
        for (agent, log_id) in &streams {
            total += self.retry_stream(agent, *log_id).await?;
        }
        for (agent, log_id) in &streams {
            total += self.merge_stream(agent, *log_id).await?;
        }
        Ok(total)
    }

    /// Finishes a plan an earlier pass recorded and did not finish, if there is one.
    async fn finish_recorded(&mut self, agent: &str, log_id: LogId) -> Result<bool, MergeError> {
        let Some(bytes) = self.store.merge_plan(agent, log_id)? else {
            return Ok(false);
        };
        let plan: StoredPlan = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("merge plan of {agent}: {e}")))?;
        self.execute(agent, log_id, plan, true).await?;
        Ok(true)
    }

    /// Applies the parked events of this stream an operator asked to retry, in seq order, as
    /// runs of their own under the retry's generation.
    async fn retry_stream(&mut self, agent: &str, log_id: LogId) -> Result<u64, MergeError> {
        let mut total = 0;
        loop {
            if self.finish_recorded(agent, log_id).await? {
                continue;
            }
            let queued: Vec<(u64, u64)> = self
                .store
                .retries()?
                .into_iter()
                .filter(|(a, l, _, _)| a == agent && *l == log_id)
                .map(|(_, _, seq, r)| (seq, r.generation))
                .take(MAX_RUN_EVENTS)
                .collect();
            let Some(&(_, generation)) = queued.first() else {
                return Ok(total);
            };
            // One generation per run: a run's keys carry it.
            let seqs: Vec<u64> = queued
                .iter()
                .take_while(|(_, g)| *g == generation)
                .map(|(seq, _)| *seq)
                .collect();
            let events = self.store.read_journal_seqs(agent, log_id, &seqs)?;
            if events.len() != seqs.len() {
                return Err(StoreError::Corrupt(format!(
                    "events queued for a retry are missing from the journal of {agent}"
                ))
                .into());
            }
            let run = &events[..cut(&events)];
            let plan = self.plan_run(agent, log_id, run, Some(generation)).await?;
            self.store.save_merge_plan(agent, log_id, &encode(&plan))?;
            total += run.len() as u64;
            self.execute(agent, log_id, plan, false).await?;
        }
    }

    async fn merge_stream(&mut self, agent: &str, log_id: LogId) -> Result<u64, MergeError> {
        let mut total = 0;
        loop {
            if self.finish_recorded(agent, log_id).await? {
                continue;
            }
            let cursor = self.store.merge_cursor(agent, log_id)?;
            let events = self
                .store
                .read_journal(agent, log_id, cursor, MAX_RUN_EVENTS)?;
            if events.is_empty() {
                return Ok(total);
            }
            let run = &events[..cut(&events)];
            let plan = self.plan_run(agent, log_id, run, None).await?;
            self.store.save_merge_plan(agent, log_id, &encode(&plan))?;
            total += run.len() as u64;
            self.execute(agent, log_id, plan, false).await?;
        }
    }

    /// The lane's warehouse as Odoo describes it (read once).
    async fn warehouse(&mut self) -> Result<Warehouse, MergeError> {
        if let Some(found) = &self.warehouse {
            return Ok(found.clone());
        }
        let code = self.code.as_str();
        let row = self
            .odoo
            .warehouses(&[code.to_owned()])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| MergeError::UnknownWarehouse(code.to_owned()))?;
        let virtuals = *self
            .virtuals
            .get_or_try_init(|| self.odoo.virtual_locations())
            .await?;
        let warehouse = Warehouse {
            code: code.to_owned(),
            view_location: row.view_location,
            stock_location: row.stock_location,
            receipt_type: row.receipt_type,
            delivery_type: row.delivery_type,
            internal_type: row.internal_type,
            vendors: virtuals.vendors,
            customers: virtuals.customers,
            inventory_adjustment: virtuals.inventory_adjustment,
        };
        self.warehouse = Some(warehouse.clone());
        Ok(warehouse)
    }

    /// Looks up, in one call each, the SKUs and location names (within `warehouse`) not cached
    /// yet.
    async fn resolve(
        &mut self,
        warehouse: &Warehouse,
        run: &[LoggedEvent],
    ) -> Result<(), MergeError> {
        let skus: Vec<String> = run
            .iter()
            .map(|e| e.event.sku.clone())
            .filter(|s| !self.products.contains_key(s))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if !skus.is_empty() {
            let rows = self.odoo.products(&skus).await?;
            for sku in skus {
                let matching: Vec<_> = rows.iter().filter(|r| r.sku == sku).collect();
                let found = match matching.as_slice() {
                    [] => Found::Refused {
                        reason: "unknown-sku",
                        message: format!(
                            "no active product in Odoo has the internal reference {sku:?}"
                        ),
                    },
                    [one] if !one.storable => Found::Refused {
                        reason: "not-storable",
                        message: format!("product {sku:?} is not a storable product in Odoo"),
                    },
                    [one] => Found::Product(Product {
                        id: one.id,
                        uom_id: one.uom_id,
                        lot_tracked: one.tracking != "none",
                    }),
                    many => Found::Refused {
                        reason: "duplicate-sku",
                        message: format!(
                            "{} products in Odoo share the internal reference {sku:?}",
                            many.len()
                        ),
                    },
                };
                self.products.insert(sku, found);
            }
        }
        let names: Vec<String> = run
            .iter()
            .flat_map(|e| [e.event.location.clone(), e.event.to_location.clone()])
            .flatten()
            .filter(|n| !self.locations.contains_key(n))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if !names.is_empty() {
            let found = self
                .odoo
                .locations_by_name(&names, warehouse.view_location)
                .await?;
            for name in names {
                let id = found.get(&name).copied();
                self.locations.insert(name, id);
            }
        }
        Ok(())
    }

    async fn plan_run(
        &mut self,
        agent: &str,
        log_id: LogId,
        run: &[LoggedEvent],
        retry: Option<u64>,
    ) -> Result<StoredPlan, MergeError> {
        let code = self.code.clone();
        let code = code.as_str();
        let (first, through) = (run[0].seq, run[run.len() - 1].seq);
        let skus: BTreeMap<u64, String> =
            run.iter().map(|e| (e.seq, e.event.sku.clone())).collect();
        let mut parked = Vec::new();
        let park = |parked: &mut Vec<(u64, DeadLetter)>,
                    e: &LoggedEvent,
                    reason: &str,
                    message: String| {
            parked.push((
                e.seq,
                DeadLetter {
                    warehouse: code.to_owned(),
                    sku: e.event.sku.clone(),
                    reason: reason.to_owned(),
                    message,
                    parked_at: now_micros(),
                },
            ));
        };
        let park_oversized = |parked: &mut Vec<(u64, DeadLetter)>, oversized: Vec<Oversized>| {
            for o in oversized {
                let e = run
                    .iter()
                    .find(|e| e.seq == o.seq)
                    .expect("the planner only returns events of the run");
                park(parked, e, QUANTITY_TOO_LARGE, o.message);
            }
        };
        let warehouse = self.warehouse().await?;
        self.resolve(&warehouse, run).await?;
        // A key with parked events, or events waiting for a retry, takes nothing new until
        // those are through; a retry run itself waits only behind what is parked.
        let mut keys = self.store.parked_keys()?;
        if retry.is_none() {
            keys.extend(self.store.retrying_keys()?);
        }
        let mut blocked: HashSet<String> = keys
            .into_iter()
            .filter(|(wh, _)| wh == code)
            .map(|(_, sku)| sku)
            .collect();
        let mut resolved = Vec::with_capacity(run.len());
        for e in run {
            let ev = &e.event;
            if blocked.contains(&ev.sku) {
                park(
                    &mut parked,
                    e,
                    super::state::PARKED_BEHIND,
                    format!(
                        "an earlier event of {:?} in {code} is parked; this one waits behind it",
                        ev.sku
                    ),
                );
                continue;
            }
            // The journal may hold events from before central checked what agents send (or
            // from a rule added since): they are parked, never merged.
            if let Err(error) = e.validate() {
                park(
                    &mut parked,
                    e,
                    "invalid-event",
                    format!("the event breaks the event rules: {error}"),
                );
                blocked.insert(ev.sku.clone());
                continue;
            }
            let location = |name: &Option<String>| match name {
                None => Ok(warehouse.stock_location),
                Some(n) => self.locations.get(n).copied().flatten().ok_or(n.clone()),
            };
            let refusal = match self.products.get(&ev.sku) {
                Some(Found::Refused { reason, message }) => Some((*reason, message.clone())),
                Some(Found::Product(p)) if p.lot_tracked && ev.lot.is_none() => Some((
                    "missing-lot",
                    format!(
                        "product {:?} is tracked by lot in Odoo and the event has no lot",
                        ev.sku
                    ),
                )),
                _ => None,
            };
            let from = location(&ev.location);
            let to = if ev.kind == EventKind::Transfer {
                location(&ev.to_location).map(Some)
            } else {
                Ok(None)
            };
            match (refusal, from, to, self.products.get(&ev.sku)) {
                (Some((reason, message)), ..) => {
                    park(&mut parked, e, reason, message);
                    blocked.insert(ev.sku.clone());
                }
                (None, Err(name), _, _) | (None, _, Err(name), _) => {
                    park(
                        &mut parked,
                        e,
                        "unknown-location",
                        format!("Odoo has no internal location named {name:?} in warehouse {code}"),
                    );
                    blocked.insert(ev.sku.clone());
                }
                (None, Ok(location), Ok(to_location), Some(Found::Product(product))) => {
                    resolved.push(ResolvedEvent {
                        event: e,
                        product: product.clone(),
                        location,
                        to_location,
                    });
                }
                _ => unreachable!("every SKU of the run was resolved"),
            }
        }
        // Refusals are not remembered: the product or location may be created in Odoo before
        // the next run (and parked events retried).
        self.products
            .retain(|_, found| matches!(found, Found::Product(_)));
        self.locations.retain(|_, id| id.is_some());
        let mut batch_key = format!(
            "tally-{agent}-{}-{first}-{through}",
            &log_id.to_string()[..8]
        );
        if let Some(generation) = retry {
            batch_key.push_str(&format!("-r{generation}"));
        }
        let (fills, planned) = match resolved.first() {
            Some(count) if count.event.event.kind == EventKind::Count => {
                let planned = match self
                    .plan_count(agent, log_id, &batch_key, &warehouse, count)
                    .await?
                {
                    Ok(picking) => picking.into_iter().collect(),
                    Err(message) => {
                        park(&mut parked, count.event, QUANTITY_TOO_LARGE, message);
                        Vec::new()
                    }
                };
                (Vec::new(), planned)
            }
            _ => {
                let references: Vec<String> = resolved
                    .iter()
                    .filter(|r| may_fill(r.event))
                    .filter_map(|r| r.event.event.reference.clone())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let open = if references.is_empty() {
                    BTreeMap::new()
                } else {
                    self.odoo.open_pickings(&references).await?
                };
                let (fills, rest, oversized) = fill(&batch_key, &warehouse, resolved, &open);
                park_oversized(&mut parked, oversized);
                let (pickings, oversized) = plan(&batch_key, &warehouse, &rest);
                park_oversized(&mut parked, oversized);
                (fills, pickings)
            }
        };
        if parked
            .iter()
            .any(|(_, letter)| letter.reason == QUANTITY_TOO_LARGE)
        {
            tracing::warn!(
                warehouse = code,
                first,
                through,
                "events parked: a quantity they add up to is more than Odoo holds exactly"
            );
        }
        Ok(StoredPlan {
            warehouse: code.to_owned(),
            through,
            pickings: planned.into_iter().map(|p| (p, Status::Pending)).collect(),
            fills: fills.into_iter().map(|f| (f, Status::Pending)).collect(),
            parked,
            skus,
            retry,
        })
    }

    /// A count as the delta that makes Odoo's quantity at the location what was counted, as of
    /// the count (CONTRACT §13.3, picking path). Odoo's quantity already holds every Tally event
    /// before the count (this stream is applied in log order) and none after it; what it must
    /// not hold is what Odoo itself moved there after the count was taken: those moves are
    /// added back. Tally's own pickings are left out of that, because they carry the time they
    /// were applied, not the time of the scan. The delta is recorded in the plan before it is
    /// applied, so a restart applies the same delta, not a recomputed one.
    ///
    /// The count's time is the agent's clock; Odoo dates moves by its own. The time is moved
    /// onto Odoo's clock by the agent's offset from central (measured when it connected) and
    /// central's from Odoo (from the `Date` of Odoo's answers).
    ///
    /// `Ok(Err(message))`: Odoo's quantity, or the delta, is beyond what a float holds exactly;
    /// the count is parked rather than booked as some other delta.
    async fn plan_count(
        &self,
        agent: &str,
        log_id: LogId,
        batch_key: &str,
        warehouse: &Warehouse,
        count: &ResolvedEvent<'_>,
    ) -> Result<Result<Option<PlannedPicking>, String>, MergeError> {
        let e = count.event;
        let agent_clock = e.event.occurred_at.unwrap_or(e.received_at).as_micros();
        let agent_behind = self
            .store
            .clock_offset(agent)?
            .map_or(0, |(offset, _)| offset);
        let odoo_ahead = self.odoo.clock_offset_micros();
        let at = agent_clock
            .saturating_add(agent_behind)
            .saturating_add(odoo_ahead);
        let after = jiff::Timestamp::from_microsecond(at)
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
            .map_err(|_| {
                OdooError::new(
                    ErrorKind::Permanent,
                    "bad-time",
                    "the count's time is out of range",
                )
            })?;
        // A count of a lot counts that lot only.
        let lot = match &e.event.lot {
            Some(name) => Some(self.odoo.lot_id(count.product.id, name).await?),
            None => None,
        };
        let (now, others_since) = match lot {
            // A lot Odoo does not know holds nothing there yet.
            Some(None) => (0.0, 0.0),
            lot => {
                let lot = lot.flatten();
                let now = self
                    .odoo
                    .quantity_at(count.product.id, count.location, lot)
                    .await?;
                let others_since = self
                    .odoo
                    .net_moved_after(count.product.id, count.location, lot, &after, "tally-")
                    .await?;
                (now, others_since)
            }
        };
        let Some(as_of_count) = crate::odoo::api::qty_from_f64(now - others_since) else {
            return Ok(Err(format!(
                "Odoo's quantity of {:?} at the count's location as of the count ({} units) is not a number Tally can count against exactly (at most {} units)",
                e.event.sku,
                now - others_since,
                Qty::MAX_EXACT_MICROS / Qty::SCALE
            )));
        };
        // A count someone entered in Odoo and has not applied is left alone (the picking path
        // does not touch it), but when applied it will set the quantity over Tally's: report.
        for (pending, user) in self
            .odoo
            .pending_counts(count.product.id, count.location)
            .await?
        {
            let message = format!(
                "{user} has a count of {pending} pending in Odoo for {} at this location; Tally applied its own count of {} (seq {}). Applying the pending one in Odoo will set the quantity over it.",
                e.event.sku, e.event.qty, e.seq
            );
            tracing::warn!(sku = %e.event.sku, seq = e.seq, %user, pending, "a count is pending in Odoo");
            let notice = Notice {
                warehouse: warehouse.code.clone(),
                sku: e.event.sku.clone(),
                kind: "pending-odoo-count".into(),
                message,
                noticed_at: now_micros(),
            };
            self.store.add_notice(agent, log_id, e.seq, &notice)?;
        }
        // Both are within MAX_EXACT_MICROS, so this cannot wrap; the delta may still be beyond
        // what Odoo holds exactly.
        let delta = i128::from(e.event.qty.micros()) - i128::from(as_of_count.micros());
        if delta == 0 {
            return Ok(Ok(None));
        }
        let Some(delta) = i64::try_from(delta)
            .ok()
            .filter(|d| d.unsigned_abs() <= Qty::MAX_EXACT_MICROS as u64)
        else {
            return Ok(Err(format!(
                "the count of {:?} ({}) against Odoo's {as_of_count} is a change of more than Odoo's float quantities hold exactly ({} units)",
                e.event.sku,
                e.event.qty,
                Qty::MAX_EXACT_MICROS / Qty::SCALE
            )));
        };
        let (from, to) = if delta > 0 {
            (warehouse.inventory_adjustment, count.location)
        } else {
            (count.location, warehouse.inventory_adjustment)
        };
        tracing::info!(sku = %e.event.sku, seq = e.seq, counted = %e.event.qty, as_of_count = %as_of_count, odoo_time = %after, agent_behind_ms = agent_behind / 1000, odoo_ahead_ms = odoo_ahead / 1000, "count becomes a delta");
        Ok(Ok(Some(PlannedPicking {
            key: format!("{batch_key}-C1"),
            kind: super::plan::PickingKind::Adjustment,
            picking_type: warehouse.internal_type,
            from,
            to,
            lines: vec![super::plan::Line {
                product: count.product.id,
                uom: count.product.uom_id,
                qty: Qty::from_micros(delta.abs()),
                from,
                to,
                lot: e.event.lot.clone(),
                // Counted stock of a lot Odoo has never seen: the lot is created.
                create_lot: delta > 0 && e.event.lot.is_some(),
                seqs: vec![e.seq],
            }],
        })))
    }

    async fn execute(
        &mut self,
        agent: &str,
        log_id: LogId,
        mut plan: StoredPlan,
        resumed: bool,
    ) -> Result<(), MergeError> {
        let mut i = 0;
        while i < plan.pickings.len() {
            let (picking, status) = &plan.pickings[i];
            if *status != Status::Pending {
                i += 1;
                continue;
            }
            let result = if resumed || picking.key.contains('.') {
                resume(&self.odoo, picking, self.policy).await
            } else {
                apply_once(&self.odoo, picking, self.policy).await
            };
            match result {
                Ok(_) => plan.pickings[i].1 = Status::Done,
                Err(e) if e.kind == ErrorKind::Permanent => {
                    let picking = picking.clone();
                    self.abandon(&picking).await?;
                    tracing::warn!(key = %picking.key, error = %e, lines = picking.lines.len(), "Odoo refused a picking");
                    if picking.lines.len() > 1 {
                        // Find the refused line(s): one picking per line, each under its own key.
                        plan.pickings[i].1 = Status::Split;
                        let singles = picking.lines.iter().enumerate().map(|(j, line)| {
                            (
                                PlannedPicking {
                                    key: format!("{}.{}", picking.key, j + 1),
                                    lines: vec![line.clone()],
                                    ..picking.clone()
                                },
                                Status::Pending,
                            )
                        });
                        plan.pickings.splice(i + 1..i + 1, singles);
                    } else {
                        plan.pickings[i].1 = Status::Parked;
                        plan.park(&picking.lines[0].seqs, &e);
                    }
                }
                Err(e) => {
                    self.store.save_merge_plan(agent, log_id, &encode(&plan))?;
                    return Err(e.into());
                }
            }
            self.store.save_merge_plan(agent, log_id, &encode(&plan))?;
            i += 1;
        }
        for i in 0..plan.fills.len() {
            let (fill, status) = &plan.fills[i];
            if *status != Status::Pending {
                continue;
            }
            match fill_once(&self.odoo, fill, self.policy).await {
                Ok(_) => plan.fills[i].1 = Status::Done,
                Err(e) if e.kind == ErrorKind::Permanent => {
                    // The picking is the customer's (or the vendor's): it is never cancelled.
                    tracing::warn!(key = %fill.key, picking = %fill.picking_name, error = %e, "Odoo refused to fill a picking");
                    let seqs: Vec<u64> = fill.seqs().collect();
                    plan.fills[i].1 = Status::Parked;
                    plan.park(&seqs, &e);
                }
                Err(e) => {
                    self.store.save_merge_plan(agent, log_id, &encode(&plan))?;
                    return Err(e.into());
                }
            }
            self.store.save_merge_plan(agent, log_id, &encode(&plan))?;
        }
        super::state::log_parked(agent, &plan.parked);
        match plan.retry {
            Some(_) => {
                self.store
                    .finish_retry(agent, log_id, plan.skus.keys().copied(), &plan.parked)?
            }
            None => self
                .store
                .finish_merge(agent, log_id, plan.through, &plan.parked)?,
        }
        Ok(())
    }

    /// Cancels a refused picking if Odoo holds it open, so it leaves no reservation behind.
    async fn abandon(&self, picking: &PlannedPicking) -> Result<(), MergeError> {
        if let Some(found) = self.odoo.find_picking(&picking.key).await?
            && found.state != "done"
            && found.state != "cancel"
        {
            self.odoo.cancel_picking(found.id).await?;
        }
        Ok(())
    }
}

fn encode(plan: &StoredPlan) -> Vec<u8> {
    serde_json::to_vec(plan).expect("serialising a plain struct")
}

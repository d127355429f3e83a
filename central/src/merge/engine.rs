//! The merge engine: per stream (an agent's log), strictly in seq order, read the journal in
//! runs, resolve them against Odoo, split each into phases (a count after the events of its
//! stock before it), record the plan durably, apply its pickings exactly once phase by phase
//! (a phase's counts computed together once its moves are applied, their deltas recorded
//! before they are applied), park what Odoo refuses, and move the stream's cursor.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use tally_protocol::{EventKind, LogId, LoggedEvent, Qty};
use tokio::sync::OnceCell;

use super::apply::{RetryPolicy, apply_once, fill_once, resume};
use super::durable::{BeforeWrite, MergeStore};
use super::plan::{
    Oversized, PlannedCount, PlannedPicking, Product, QUANTITY_TOO_LARGE, ResolvedEvent, Warehouse,
    count_lines, count_pickings, fill, may_fill, phases, plan,
};
use super::state::{DeadLetter, Notice, ParkReason, Status, StoredPhase, StoredPlan, now_micros};
use crate::odoo::api::{Tracking, VirtualLocations};
use crate::odoo::{ErrorKind, OdooClient, OdooError};
use crate::store::{Store, StoreError};

/// Events read from the journal per run at most.
pub const MAX_RUN_EVENTS: usize = 5000;

/// Which pickings of a phase.
#[derive(Debug, Clone, Copy)]
enum Pickings {
    Moves,
    Counts,
}

impl StoredPlan {
    fn pickings(&mut self, phase: usize, which: Pickings) -> &mut Vec<(PlannedPicking, Status)> {
        let phase = &mut self.phases[phase];
        match which {
            Pickings::Moves => &mut phase.pickings,
            Pickings::Counts => &mut phase.adjustments,
        }
    }

    /// Parks the events `seqs` with Odoo's reason for refusing them.
    fn park(&mut self, seqs: &[u64], error: &OdooError) {
        self.park_as(seqs, &error.name, &error.message);
    }

    fn park_as(&mut self, seqs: &[u64], reason: &str, message: &str) {
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
    fn hold_back(&mut self, phase: usize, which: Pickings) {
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
            self.park_as(&[seq], super::state::PARKED_BEHIND, &message);
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
    Refused { reason: ParkReason, message: String },
}

/// Applies journaled events to one Odoo database: a [`Lane`] per warehouse, the lanes at the
/// same time (their keys never overlap), each strictly in order. Calls that change data share
/// the client's write permits.
#[derive(Debug)]
pub struct Engine {
    store: MergeStore,
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
            store: MergeStore::new(store),
            odoo: Arc::new(odoo),
            policy,
            virtuals: Arc::default(),
            lanes: HashMap::new(),
            stuck: BTreeMap::new(),
        }
    }

    /// Runs `hook` before each durable write of the merge's state, on the blocking thread
    /// that makes it: for tests, which stand a slow commit in for it.
    #[doc(hidden)]
    pub fn with_before_write(mut self, hook: BeforeWrite) -> Engine {
        self.store = self.store.with_before_write(hook);
        self
    }

    /// Merges everything journaled so far; returns how many events were resolved. When a lane
    /// fails, the others still finish their pass; the first error is returned.
    pub async fn merge_all(&mut self) -> Result<u64, MergeError> {
        let (agents, stored_streams) = self.store.agents_and_streams().await?;
        let warehouse_of: HashMap<String, String> = agents
            .into_iter()
            .map(|a| (a.agent_id, a.warehouse))
            .collect();
        let mut streams: HashMap<String, Vec<(String, LogId)>> = HashMap::new();
        for stream in stored_streams {
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
    store: MergeStore,
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
        let Some(plan) = self.store.merge_plan(agent, log_id).await? else {
            return Ok(false);
        };
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
                .retries_of(agent, log_id, MAX_RUN_EVENTS)
                .await?
                .into_iter()
                .map(|(seq, r)| (seq, r.generation))
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
            let events = self
                .store
                .read_journal_seqs(agent, log_id, seqs.clone())
                .await?;
            if events.len() != seqs.len() {
                return Err(StoreError::Corrupt(format!(
                    "events queued for a retry are missing from the journal of {agent}"
                ))
                .into());
            }
            let (plan, taken) = self
                .plan_run(agent, log_id, &events, Some(generation))
                .await?;
            self.store
                .save_merge_plan(agent, log_id, plan.encode())
                .await?;
            total += taken as u64;
            self.execute(agent, log_id, plan, false).await?;
        }
    }

    async fn merge_stream(&mut self, agent: &str, log_id: LogId) -> Result<u64, MergeError> {
        let mut total = 0;
        loop {
            if self.finish_recorded(agent, log_id).await? {
                continue;
            }
            let cursor = self.store.merge_cursor(agent, log_id).await?;
            let events = self
                .store
                .read_journal(agent, log_id, cursor, MAX_RUN_EVENTS)
                .await?;
            if events.is_empty() {
                return Ok(total);
            }
            let (plan, taken) = self.plan_run(agent, log_id, &events, None).await?;
            self.store
                .save_merge_plan(agent, log_id, plan.encode())
                .await?;
            total += taken as u64;
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
                        reason: ParkReason::UnknownSku,
                        message: format!(
                            "no active product in Odoo has the internal reference {sku:?}"
                        ),
                    },
                    [one] if !one.storable => Found::Refused {
                        reason: ParkReason::NotStorable,
                        message: format!("product {sku:?} is not a storable product in Odoo"),
                    },
                    [one] => Found::Product(Product {
                        id: one.id,
                        uom_id: one.uom_id,
                        lot_tracked: one.tracking != Tracking::None,
                    }),
                    many => Found::Refused {
                        reason: ParkReason::DuplicateSku,
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

    /// Plans the run that starts `events`: the plan and how many of `events` it takes (all of
    /// them, unless a referenced picking would be filled in two phases).
    async fn plan_run(
        &mut self,
        agent: &str,
        log_id: LogId,
        run: &[LoggedEvent],
        retry: Option<u64>,
    ) -> Result<(StoredPlan, usize), MergeError> {
        let code = self.code.clone();
        let code = code.as_str();
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
        let mut blocked: HashSet<String> = self.store.blocked_skus(code, retry.is_some()).await?;
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
                    ParkReason::InvalidEvent.as_str(),
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
                Some(Found::Refused { reason, message }) => {
                    Some((reason.as_str(), message.clone()))
                }
                Some(Found::Product(p)) if p.lot_tracked && ev.lot.is_none() => Some((
                    ParkReason::MissingLot.as_str(),
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
                        ParkReason::UnknownLocation.as_str(),
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

        let (phased, rest) = phases(resolved);
        // Parking depends only on earlier events: what the run leaves for the next one is
        // planned there again, from scratch.
        let taken = match rest.first() {
            Some(next) => run
                .iter()
                .position(|e| e.seq == next.event.seq)
                .expect("a resolved event is one of the run's"),
            None => run.len(),
        };
        let run = &run[..taken];
        parked.retain(|(seq, _)| run.iter().any(|e| e.seq == *seq));
        let (first, through) = (run[0].seq, run[run.len() - 1].seq);
        let skus: BTreeMap<u64, String> =
            run.iter().map(|e| (e.seq, e.event.sku.clone())).collect();
        let mut batch_key = format!(
            "tally-{agent}-{}-{first}-{through}",
            &log_id.to_string()[..8]
        );
        if let Some(generation) = retry {
            batch_key.push_str(&format!("-r{generation}"));
        }
        let references: Vec<String> = phased
            .iter()
            .flat_map(|p| &p.moves)
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
        let clock = self.clock(agent).await?;
        let mut stored = Vec::with_capacity(phased.len());
        for (n, phase) in phased.into_iter().enumerate() {
            let key = match n {
                0 => batch_key.clone(),
                n => format!("{batch_key}-p{}", n + 1),
            };
            // A product whose fill or line would sum beyond what Odoo holds exactly is left
            // out of the phase and parked; its events in later phases wait behind it
            // (`hold_back`, as each phase starts).
            let (fills, rest, oversized) = fill(&key, &warehouse, phase.moves, &open);
            park_oversized(&mut parked, oversized);
            let (pickings, oversized) = plan(&key, &warehouse, &rest);
            park_oversized(&mut parked, oversized);
            let mut counts = Vec::with_capacity(phase.counts.len());
            for c in &phase.counts {
                let e = c.event;
                match clock.odoo_time(e) {
                    Some(at) => counts.push(PlannedCount {
                        seq: e.seq,
                        product: c.product.id,
                        uom: c.product.uom_id,
                        location: c.location,
                        lot: e.event.lot.clone(),
                        qty: e.event.qty,
                        at,
                    }),
                    None => park(
                        &mut parked,
                        e,
                        ParkReason::BadTime.as_str(),
                        format!("the time of count seq {} is out of range", e.seq),
                    ),
                }
            }
            stored.push(StoredPhase {
                key,
                started: false,
                pickings: pickings.into_iter().map(|p| (p, Status::Pending)).collect(),
                fills: fills.into_iter().map(|f| (f, Status::Pending)).collect(),
                counts,
                counted: false,
                adjustments: Vec::new(),
            });
        }
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
        let plan = StoredPlan {
            warehouse: code.to_owned(),
            through,
            pickings: Vec::new(),
            fills: Vec::new(),
            phases: stored,
            parked,
            skus,
            retry,
        };
        Ok((plan, taken))
    }

    /// How this agent's clock and Odoo's are off from central's, as the plan is made.
    async fn clock(&self, agent: &str) -> Result<Clocks, MergeError> {
        Ok(Clocks {
            agent_behind: self.store.clock_offset(agent).await?.unwrap_or(0),
            odoo_ahead: self.odoo.clock_offset_micros(),
        })
    }

    /// Computes the counts that close phase `p` (CONTRACT §13.3, picking path), all at once,
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
    async fn count(
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
                .count_stock(&products, &locations, since, "tally-")
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

    async fn execute(
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
        super::state::log_parked(agent, &plan.parked);
        match plan.retry {
            Some(_) => {
                let seqs = plan.skus.keys().copied().collect();
                self.store
                    .finish_retry(agent, log_id, seqs, plan.parked)
                    .await?
            }
            None => {
                self.store
                    .finish_merge(agent, log_id, plan.through, plan.parked)
                    .await?
            }
        }
        Ok(())
    }

    /// Applies the pending pickings of phase `p` exactly once, splitting a refused picking per
    /// line and parking the line Odoo refuses.
    async fn apply_pickings(
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
            let result = if resumed || picking.key.contains('.') {
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
                                    key: format!("{}.{}", picking.key, j + 1),
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
    async fn apply_fills(
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
    async fn abandon(&self, picking: &PlannedPicking) -> Result<(), MergeError> {
        if let Some(found) = self.odoo.find_picking(&picking.key).await?
            && !found.state.is_final()
        {
            self.odoo.cancel_picking(found.id).await?;
        }
        Ok(())
    }
}

/// How far the agent's clock and Odoo's are from central's, to place a count's time on Odoo's
/// clock.
#[derive(Debug, Clone, Copy)]
struct Clocks {
    /// How far the agent's clock is behind central's (µs), measured when it connected.
    agent_behind: i64,
    /// How far Odoo's clock is ahead of central's (µs), from the `Date` of Odoo's answers.
    odoo_ahead: i64,
}

impl Clocks {
    /// When a count was taken, on Odoo's clock, as Odoo dates moves (UTC, whole seconds); `None`
    /// when that is out of range.
    fn odoo_time(&self, count: &LoggedEvent) -> Option<String> {
        let agent_clock = count
            .event
            .occurred_at
            .unwrap_or(count.received_at)
            .as_micros();
        let at = agent_clock
            .saturating_add(self.agent_behind)
            .saturating_add(self.odoo_ahead);
        jiff::Timestamp::from_microsecond(at)
            .ok()
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
    }
}

#[cfg(test)]
mod tests {
    use tally_protocol::Qty;

    use super::*;
    use crate::merge::plan::{FillMove, Line, PickingKind, PlannedFill};

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

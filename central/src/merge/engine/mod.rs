//! The merge engine: per stream (an agent's log), strictly in seq order, read the journal in
//! runs, resolve them against Odoo, split each into phases (a count after the events of its
//! stock before it), record the plan durably, apply its pickings exactly once phase by phase
//! (a phase's counts computed together once its moves are applied, their deltas recorded
//! before they are applied), park what Odoo refuses, and move the stream's cursor.
//!
//! - `mod.rs`: [`Engine`] and its lanes, one per warehouse; a lane's passes over its streams;
//! - `resolve.rs`: the warehouse, products and locations a run names, looked up in Odoo;
//! - `planning.rs`: a run into its recorded plan (parking what cannot be planned);
//! - `execute.rs`: a recorded plan applied, phase by phase, and ended;
//! - `count.rs`: a phase's counts turned into recorded deltas;
//! - `hold.rs`: what waits behind an event parked earlier in the run.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tally_protocol::LogId;
use tokio::sync::OnceCell;

use super::apply::RetryPolicy;
use super::durable::{BeforeWrite, MergeStore};
use super::plan::Warehouse;
use crate::odoo::api::VirtualLocations;
use crate::odoo::{ErrorKind, OdooClient, OdooError};
use crate::store::{Store, StoreError};

mod count;
mod execute;
mod hold;
mod planning;
mod resolve;

use resolve::Found;

/// Events read from the journal per run at most.
pub const MAX_RUN_EVENTS: usize = 5000;

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
    /// Where each pass notes the SKUs it touched, for availability.
    touched: Option<Arc<crate::availability::Touched>>,
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
            touched: None,
            stuck: BTreeMap::new(),
        }
    }

    /// Notes the SKUs of every run applied in `touched` (availability re-reads them).
    pub fn with_touched(mut self, touched: Arc<crate::availability::Touched>) -> Engine {
        self.touched = Some(touched);
        self
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
                    touched: self.touched.clone(),
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
    touched: Option<Arc<crate::availability::Touched>>,
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
}

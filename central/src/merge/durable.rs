//! The merge's async boundary to central's store: every read and durable write the engine
//! makes, each run on tokio's blocking pool.
//!
//! A redb write transaction waits for the file's one write lock (held by the journal writer's
//! group commits, the registry, the admin API) and then for an fsync. Run on a tokio worker,
//! that wait would stall every task on the worker: other merge lanes, the sync listener, the
//! admin API. Here a lane awaits its store call like any other I/O, and the worker moves on.
//!
//! Architecture invariant: the merge engine reaches the store only through [`MergeStore`];
//! no code under `merge/` calls a `Store` method from an async function directly.

use std::fmt;
use std::sync::Arc;

use tally_protocol::{LogId, LoggedEvent};

use super::merged::MergedInto;
use super::state::plans::EncodedPlan;
use super::state::{DeadLetter, Notice, Retry, StoredPlan};
use crate::store::journal::StreamState;
use crate::store::registry::AgentInfo;
use crate::store::{Store, StoreError};

/// Called with the agent's id on the blocking thread, before each durable write of a stream's
/// merge state (plan, end of a plan, notice). For tests: it stands for a slow commit.
pub type BeforeWrite = Arc<dyn Fn(&str) + Send + Sync>;

/// The store as the merge engine sees it: async, one blocking-pool task per call.
#[derive(Clone)]
pub struct MergeStore {
    store: Store,
    before_write: Option<BeforeWrite>,
}

impl fmt::Debug for MergeStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MergeStore")
            .field("store", &self.store.path())
            .field("before_write", &self.before_write.is_some())
            .finish()
    }
}

impl MergeStore {
    pub fn new(store: Store) -> MergeStore {
        MergeStore {
            store,
            before_write: None,
        }
    }

    /// Runs `hook` before each durable write (see [`BeforeWrite`]).
    pub fn with_before_write(mut self, hook: BeforeWrite) -> MergeStore {
        self.before_write = Some(hook);
        self
    }

    /// Runs `work` on the blocking pool. A panic in it is the caller's panic, as it was when
    /// the call was made in place.
    async fn run<T, W>(&self, work: W) -> Result<T, StoreError>
    where
        T: Send + 'static,
        W: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || work(&store)).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(StoreError::Storage(redb::Error::Io(std::io::Error::other(
                "a store call of the merge was cancelled: the runtime is shutting down",
            )))),
        }
    }

    /// A durable write of `agent`'s merge state, after the test hook if there is one.
    async fn write<W>(&self, agent: &str, work: W) -> Result<(), StoreError>
    where
        W: FnOnce(&Store, &str) -> Result<(), StoreError> + Send + 'static,
    {
        let hook = self.before_write.clone();
        let agent = agent.to_owned();
        self.run(move |store| {
            if let Some(hook) = hook {
                hook(&agent);
            }
            work(store, &agent)
        })
        .await
    }

    pub async fn agents_and_streams(
        &self,
    ) -> Result<(Vec<AgentInfo>, Vec<StreamState>), StoreError> {
        self.run(|s| Ok((s.list_agents()?, s.streams()?))).await
    }

    /// The plan recorded for a stream, decoded on the blocking thread.
    pub async fn merge_plan(
        &self,
        agent: &str,
        log_id: LogId,
    ) -> Result<Option<StoredPlan>, StoreError> {
        let agent = agent.to_owned();
        self.run(move |s| s.merge_plan(&agent, log_id)).await
    }

    /// Records a stream's plan, encoded by the caller ([`StoredPlan::encode`]).
    pub async fn save_merge_plan(
        &self,
        agent: &str,
        log_id: LogId,
        plan: EncodedPlan,
    ) -> Result<(), StoreError> {
        self.write(agent, move |s, agent| {
            s.save_merge_plan(agent, log_id, &plan)
        })
        .await
    }

    pub async fn finish_merge(
        &self,
        agent: &str,
        log_id: LogId,
        through: u64,
        parked: Vec<(u64, DeadLetter)>,
        merged: Vec<(u64, MergedInto)>,
    ) -> Result<(), StoreError> {
        self.write(agent, move |s, agent| {
            s.finish_merge(agent, log_id, through, &parked, &merged)
        })
        .await
    }

    pub async fn finish_retry(
        &self,
        agent: &str,
        log_id: LogId,
        seqs: Vec<u64>,
        parked: Vec<(u64, DeadLetter)>,
        merged: Vec<(u64, MergedInto)>,
    ) -> Result<(), StoreError> {
        self.write(agent, move |s, agent| {
            s.finish_retry(agent, log_id, seqs, &parked, &merged)
        })
        .await
    }

    pub async fn add_notice(
        &self,
        agent: &str,
        log_id: LogId,
        seq: u64,
        notice: Notice,
    ) -> Result<(), StoreError> {
        self.write(agent, move |s, agent| {
            s.add_notice(agent, log_id, seq, &notice)
        })
        .await
    }

    pub async fn merge_cursor(&self, agent: &str, log_id: LogId) -> Result<u64, StoreError> {
        let agent = agent.to_owned();
        self.run(move |s| s.merge_cursor(&agent, log_id)).await
    }

    pub async fn read_journal(
        &self,
        agent: &str,
        log_id: LogId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<LoggedEvent>, StoreError> {
        let agent = agent.to_owned();
        self.run(move |s| s.read_journal(&agent, log_id, after, limit))
            .await
    }

    pub async fn read_journal_seqs(
        &self,
        agent: &str,
        log_id: LogId,
        seqs: Vec<u64>,
    ) -> Result<Vec<LoggedEvent>, StoreError> {
        let agent = agent.to_owned();
        self.run(move |s| s.read_journal_seqs(&agent, log_id, &seqs))
            .await
    }

    /// This stream's events queued for a retry: (seq, retry), in seq order, at most `limit`.
    pub async fn retries_of(
        &self,
        agent: &str,
        log_id: LogId,
        limit: usize,
    ) -> Result<Vec<(u64, Retry)>, StoreError> {
        let agent = agent.to_owned();
        self.run(move |s| {
            Ok(s.retries()?
                .into_iter()
                .filter(|(a, l, _, _)| *a == agent && *l == log_id)
                .map(|(_, _, seq, r)| (seq, r))
                .take(limit)
                .collect())
        })
        .await
    }

    /// The SKUs of `warehouse` new events must wait behind: those with parked events, and,
    /// unless `retrying` (a retry run waits only behind what is parked), those with events
    /// queued for a retry.
    pub async fn blocked_skus(
        &self,
        warehouse: &str,
        retrying: bool,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let warehouse = warehouse.to_owned();
        self.run(move |s| {
            let mut keys = s.parked_keys()?;
            if !retrying {
                keys.extend(s.retrying_keys()?);
            }
            Ok(keys
                .into_iter()
                .filter(|(wh, _)| *wh == warehouse)
                .map(|(_, sku)| sku)
                .collect())
        })
        .await
    }

    /// The agent's last measured clock offset (µs behind central), if ever measured.
    pub async fn clock_offset(&self, agent: &str) -> Result<Option<i64>, StoreError> {
        let agent = agent.to_owned();
        self.run(move |s| Ok(s.clock_offset(&agent)?.map(|(offset, _)| offset)))
            .await
    }
}

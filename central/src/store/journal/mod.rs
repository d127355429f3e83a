//! The journal: every agent's events, stored once per (agent, log id, seq).
//!
//! One writer thread takes batches from every sync session and commits whatever is queued in a
//! single durable transaction (group commit), moving each stream's high-water mark in the same
//! transaction. A batch is answered with the stream's stored seq only after that commit.
//!
//! The writer thread is also what systemd's watchdog watches: a probe sent into its queue is
//! reached, and `WATCHDOG=1` sent from this thread, only after the commits queued before it
//! (see [`tally_service::watchdog`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::thread;

use redb::{ReadableDatabase, ReadableTable};
use tally_protocol::{LogId, LoggedEvent, Timestamp, decode_record, encode_record};
use tally_service::watchdog::Probe;
use tokio::sync::{mpsc, oneshot};

use super::{JOURNAL, ResultExt, STREAMS, Store, StoreError};

/// The index of client event ids: (agent, event id) → (log, seq) of the event journaled last
/// under that id, written with the events. Trace looks events up by id with it.
pub(crate) const JOURNAL_IDS: redb::TableDefinition<(&str, &str), (u128, u64)> =
    redb::TableDefinition::new("journal_ids");

/// Migration of the store from format 1 to 2: indexes the client id of every journaled event
/// (in key order, so the latest log of an agent wins, as new appends do).
pub(crate) fn index_event_ids(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    let journal = txn.open_table(JOURNAL)?;
    let mut ids = txn.open_table(JOURNAL_IDS)?;
    let mut created: HashMap<(String, u128), i64> = HashMap::new();
    if let Ok(streams) = txn.open_table(STREAMS) {
        for entry in streams.iter()? {
            let (key, value) = entry?;
            let (agent, log) = key.value();
            let at = parse_stream_value(value.value())
                .map_err(|e| redb::Error::Corrupted(e.to_string()))?
                .1;
            created.insert((agent.to_owned(), log), at);
        }
    }
    // Logs in the order central first saw them, as appends would have indexed them.
    let mut logs: Vec<((String, u128), i64)> = created.into_iter().collect();
    logs.sort_by_key(|(key, at)| (key.0.clone(), *at, key.1));
    for ((agent, log), _) in logs {
        let range = journal.range((agent.as_str(), log, 0u64)..=(agent.as_str(), log, u64::MAX))?;
        for entry in range {
            let (key, value) = entry?;
            let event: LoggedEvent = decode_record(value.value())
                .map_err(|e| redb::Error::Corrupted(format!("journal record: {e}")))?;
            if let Some(id) = &event.event.id {
                ids.insert((agent.as_str(), id.as_str()), (log, key.value().2))?;
            }
        }
    }
    Ok(())
}

/// Batches committed together at most (more wait for the next transaction).
const MAX_GROUP_BATCHES: usize = 256;
/// Events committed together at most.
const MAX_GROUP_EVENTS: usize = 50_000;

#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    #[error("events are missing before seq {got}: the journal holds up to {stored}")]
    Gap { stored: u64, got: u64 },
    #[error("the batch's seqs are not contiguous")]
    NotContiguous,
    #[error("the journal could not be written: {0}")]
    Storage(Arc<StoreError>),
    #[error("central is shutting down")]
    Stopped,
}

/// One stream of events: an agent's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    pub agent_id: String,
    pub log_id: LogId,
    /// Every event with seq ≤ this is journaled.
    pub stored_seq: u64,
    /// When central first saw this log.
    pub created_at: Timestamp,
}

#[derive(Debug)]
struct Append {
    agent_id: Arc<str>,
    log_id: LogId,
    events: Vec<LoggedEvent>,
    reply: oneshot::Sender<Result<u64, JournalError>>,
}

/// What the journal writer's queue carries.
#[derive(Debug)]
enum Message {
    Append(Append),
    /// The watchdog's probe: reached after the commit of everything queued before it.
    Probe(Probe),
}

/// Where sync sessions send batches. Cheap to clone.
#[derive(Debug, Clone)]
pub struct JournalHandle {
    tx: mpsc::Sender<Message>,
    commits: tokio::sync::watch::Receiver<u64>,
}

impl JournalHandle {
    /// A counter that moves after every commit (the merge engine waits on it).
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commits.clone()
    }

    /// Journals a batch of contiguous events; returns the stream's stored seq once durable.
    /// Events at or below the stored seq are dropped as duplicates.
    pub async fn append(
        &self,
        agent_id: Arc<str>,
        log_id: LogId,
        events: Vec<LoggedEvent>,
    ) -> Result<u64, JournalError> {
        self.submit(agent_id, log_id, events).await?.await
    }

    /// Queues a batch and returns where its outcome will arrive. Batches of one stream must be
    /// submitted in order: the journal applies them in queue order.
    pub async fn submit(
        &self,
        agent_id: Arc<str>,
        log_id: LogId,
        events: Vec<LoggedEvent>,
    ) -> Result<Pending, JournalError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Message::Append(Append {
                agent_id,
                log_id,
                events,
                reply,
            }))
            .await
            .map_err(|_| JournalError::Stopped)?;
        Ok(Pending(answer))
    }

    /// Queues the watchdog's probe behind the waiting batches; `false` once the writer is gone.
    pub async fn probe(&self, probe: Probe) -> bool {
        self.tx.send(Message::Probe(probe)).await.is_ok()
    }
}

/// The outcome of a submitted batch: the stream's stored seq once the batch is durable.
#[derive(Debug)]
pub struct Pending(oneshot::Receiver<Result<u64, JournalError>>);

impl std::future::Future for Pending {
    type Output = Result<u64, JournalError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(JournalError::Stopped)))
    }
}

/// Starts the journal writer; it stops when every handle is dropped and its queue is drained.
pub fn spawn(store: Store) -> std::io::Result<(JournalHandle, thread::JoinHandle<()>)> {
    let (tx, mut rx) = mpsc::channel::<Message>(MAX_GROUP_BATCHES * 4);
    let (committed, commits) = tokio::sync::watch::channel(0u64);
    let thread = thread::Builder::new()
        .name("tally-journal".into())
        .spawn(move || {
            let mut group = Vec::new();
            let mut probes: Vec<Probe> = Vec::new();
            while let Some(first) = rx.blocking_recv() {
                let first = match first {
                    Message::Append(first) => first,
                    Message::Probe(probe) => {
                        probe.reached();
                        continue;
                    }
                };
                let mut events = first.events.len();
                group.push(first);
                while group.len() < MAX_GROUP_BATCHES && events < MAX_GROUP_EVENTS {
                    match rx.try_recv() {
                        Ok(Message::Append(next)) => {
                            events += next.events.len();
                            group.push(next);
                        }
                        // Reached once this group, queued before it, is committed.
                        Ok(Message::Probe(probe)) => probes.push(probe),
                        Err(_) => break,
                    }
                }
                match store.commit_group(&group) {
                    Ok(results) => {
                        for (append, result) in group.drain(..).zip(results) {
                            let _ = append.reply.send(result);
                        }
                        committed.send_modify(|n| *n += 1);
                    }
                    Err(error) => {
                        tracing::error!(%error, batches = group.len(), "journal commit failed; nothing in it was acknowledged");
                        let error = Arc::new(error);
                        for append in group.drain(..) {
                            let _ = append
                                .reply
                                .send(Err(JournalError::Storage(Arc::clone(&error))));
                        }
                    }
                }
                probes.drain(..).for_each(Probe::reached);
            }
        })?;
    Ok((JournalHandle { tx, commits }, thread))
}

fn stream_value(stored_seq: u64, created_at: i64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&stored_seq.to_be_bytes());
    out[8..].copy_from_slice(&created_at.to_be_bytes());
    out
}

fn parse_stream_value(bytes: &[u8]) -> Result<(u64, i64), StoreError> {
    let corrupt = || StoreError::Corrupt("stream record".into());
    let seq = bytes.get(..8).ok_or_else(corrupt)?;
    let at = bytes.get(8..16).ok_or_else(corrupt)?;
    Ok((
        u64::from_be_bytes(seq.try_into().map_err(|_| corrupt())?),
        i64::from_be_bytes(at.try_into().map_err(|_| corrupt())?),
    ))
}

fn log_key(log_id: LogId) -> u128 {
    u128::from_be_bytes(log_id.0)
}

impl Store {
    fn commit_group(&self, group: &[Append]) -> Result<Vec<Result<u64, JournalError>>, StoreError> {
        let mut txn = self.db().begin_write().storage()?;
        txn.set_durability(redb::Durability::Immediate).storage()?;
        let mut results = Vec::with_capacity(group.len());
        {
            let mut streams = txn.open_table(STREAMS).storage()?;
            let mut journal = txn.open_table(JOURNAL).storage()?;
            let mut ids = txn.open_table(JOURNAL_IDS).storage()?;
            // Streams touched by this group: stored seq and creation time.
            let mut touched: HashMap<(&str, u128), (u64, i64)> = HashMap::new();
            for append in group {
                let key = (&*append.agent_id, log_key(append.log_id));
                let (stored, created) = match touched.get(&key) {
                    Some(&state) => state,
                    None => match streams.get(key).storage()? {
                        Some(v) => parse_stream_value(v.value())?,
                        None => (0, Timestamp::now().as_micros()),
                    },
                };
                if append.events.windows(2).any(|w| w[1].seq != w[0].seq + 1) {
                    results.push(Err(JournalError::NotContiguous));
                    continue;
                }
                let fresh: &[LoggedEvent] = match append.events.iter().position(|e| e.seq > stored)
                {
                    Some(start) => &append.events[start..],
                    None => &[],
                };
                if let Some(first) = fresh.first()
                    && first.seq != stored + 1
                {
                    results.push(Err(JournalError::Gap {
                        stored,
                        got: first.seq,
                    }));
                    continue;
                }
                for event in fresh {
                    let bytes = encode_record(event);
                    journal
                        .insert((key.0, key.1, event.seq), bytes.as_slice())
                        .storage()?;
                    if let Some(id) = &event.event.id {
                        ids.insert((key.0, id.as_str()), (key.1, event.seq))
                            .storage()?;
                    }
                }
                let stored = fresh.last().map_or(stored, |e| e.seq);
                touched.insert(key, (stored, created));
                results.push(Ok(stored));
            }
            for ((agent, log), (stored, created)) in touched {
                streams
                    .insert((agent, log), stream_value(stored, created).as_slice())
                    .storage()?;
            }
        }
        txn.commit().storage()?;
        Ok(results)
    }

    /// Every stream central knows, ordered by agent then log id.
    pub fn streams(&self) -> Result<Vec<StreamState>, StoreError> {
        let txn = self.db().begin_read().storage()?;
        let table = txn.open_table(STREAMS).storage()?;
        let mut out = Vec::new();
        for entry in table.iter().storage()? {
            let (key, value) = entry.storage()?;
            let (agent, log) = key.value();
            let (stored_seq, created_at) = parse_stream_value(value.value())?;
            out.push(StreamState {
                agent_id: agent.to_owned(),
                log_id: LogId(log.to_be_bytes()),
                stored_seq,
                created_at: Timestamp::from_micros(created_at),
            });
        }
        Ok(out)
    }

    /// The stored seq of one stream (0 for a log central has never seen).
    pub fn stored_seq(&self, agent_id: &str, log_id: LogId) -> Result<u64, StoreError> {
        let txn = self.db().begin_read().storage()?;
        let table = txn.open_table(STREAMS).storage()?;
        match table.get((agent_id, log_key(log_id))).storage()? {
            Some(v) => Ok(parse_stream_value(v.value())?.0),
            None => Ok(0),
        }
    }

    /// Up to `limit` journaled events of one stream with seq > `after`.
    pub fn read_journal(
        &self,
        agent_id: &str,
        log_id: LogId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<LoggedEvent>, StoreError> {
        let txn = self.db().begin_read().storage()?;
        let table = txn.open_table(JOURNAL).storage()?;
        let log = log_key(log_id);
        let range = table
            .range((agent_id, log, after.saturating_add(1))..=(agent_id, log, u64::MAX))
            .storage()?;
        let mut out = Vec::new();
        for entry in range.take(limit) {
            let (_, value) = entry.storage()?;
            out.push(
                decode_record(value.value())
                    .map_err(|e| StoreError::Corrupt(format!("journal record: {e}")))?,
            );
        }
        Ok(out)
    }

    /// Where the event the agent sent under client id `id` was journaled: (log, seq), the
    /// latest log's when the agent used the id in more than one.
    pub fn find_event_id(
        &self,
        agent_id: &str,
        id: &str,
    ) -> Result<Option<(LogId, u64)>, StoreError> {
        let txn = self.db().begin_read().storage()?;
        let table = match txn.open_table(JOURNAL_IDS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(StoreError::Storage(e.into())),
        };
        Ok(table.get((agent_id, id)).storage()?.map(|v| {
            let (log, seq) = v.value();
            (LogId(log.to_be_bytes()), seq)
        }))
    }

    /// The journaled events `seqs` of one stream, in the order given (missing ones skipped).
    pub fn read_journal_seqs(
        &self,
        agent_id: &str,
        log_id: LogId,
        seqs: &[u64],
    ) -> Result<Vec<LoggedEvent>, StoreError> {
        let txn = self.db().begin_read().storage()?;
        let table = txn.open_table(JOURNAL).storage()?;
        let log = log_key(log_id);
        let mut out = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            if let Some(value) = table.get((agent_id, log, seq)).storage()? {
                out.push(
                    decode_record(value.value())
                        .map_err(|e| StoreError::Corrupt(format!("journal record: {e}")))?,
                );
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;

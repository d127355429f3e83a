//! Group commit: one thread owns the log's write path and gathers whatever requests are
//! waiting into a single durable transaction, so many concurrent requests share one fsync.
//!
//! A request is answered only after the transaction that holds it has committed. Requests are
//! never merged across a failure: if the commit fails, every request of the group is told so
//! and none of them is acknowledged.
//!
//! This thread is also what systemd's watchdog watches: a [`Probe`] sent into its queue is
//! reached, and `WATCHDOG=1` sent from here, only once the commits queued before it are done
//! (see [`tally_service::watchdog`]). A commit stuck on a dead disk stops the pets.

use std::sync::Arc;
use std::thread;
use std::time::Instant;

use tally_protocol::{Event, Timestamp};
use tally_service::watchdog::Probe;
use tokio::sync::{mpsc, oneshot};

use super::{LogError, LogWriter, RequestOutcome};
use crate::metrics::Metrics;

/// Bounds on one group commit.
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    /// Requests in one transaction. 1 gives the naive one-commit-per-request design.
    pub max_requests: usize,
    /// Events in one transaction (a single request larger than this still commits alone).
    pub max_events: usize,
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits {
            max_requests: 1024,
            max_events: 20_000,
        }
    }
}

/// Why an append was not acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    #[error("the disk holding the event log is full")]
    StorageFull,
    #[error("the event log could not be written: {0}")]
    Storage(Arc<LogError>),
    #[error("the agent is shutting down")]
    Stopped,
}

/// One atomic batch of events and the place to send its outcome.
#[derive(Debug)]
pub struct AppendRequest {
    pub events: Vec<Event>,
    pub reply: oneshot::Sender<Result<RequestOutcome, AppendError>>,
}

/// What the writer's queue carries.
#[derive(Debug)]
pub enum WriterMessage {
    Append(AppendRequest),
    /// The watchdog's probe: reached after the commit of everything queued before it.
    Probe(Probe),
}

/// The sending side of the writer's queue. Dropping every handle stops the writer once the
/// queue is drained.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<WriterMessage>,
}

impl WriterHandle {
    /// A handle and the queue's receiving end, for tests and benchmarks that stand in for the
    /// writer thread.
    pub fn channel(capacity: usize) -> (WriterHandle, mpsc::Receiver<WriterMessage>) {
        let (tx, rx) = mpsc::channel(capacity);
        (WriterHandle { tx }, rx)
    }

    /// Appends `events` atomically and waits until they are durable (or refused).
    pub async fn append(&self, events: Vec<Event>) -> Result<RequestOutcome, AppendError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(WriterMessage::Append(AppendRequest { events, reply }))
            .await
            .map_err(|_| AppendError::Stopped)?;
        answer.await.map_err(|_| AppendError::Stopped)?
    }

    /// Queues the watchdog's probe behind the waiting appends; `false` once the writer is gone.
    pub async fn probe(&self, probe: Probe) -> bool {
        self.tx.send(WriterMessage::Probe(probe)).await.is_ok()
    }
}

/// Starts the writer thread. It runs until every [`WriterHandle`] is dropped and the queue is
/// empty; join the returned handle to wait for the last commit.
pub fn spawn(
    writer: LogWriter,
    limits: GroupLimits,
    metrics: Arc<Metrics>,
) -> std::io::Result<(WriterHandle, thread::JoinHandle<()>)> {
    // The queue bounds memory: a full queue makes request handlers wait (backpressure).
    let (handle, rx) = WriterHandle::channel(limits.max_requests.max(1) * 4);
    let thread = thread::Builder::new()
        .name("tally-log-writer".into())
        .spawn(move || run(writer, rx, limits, &metrics))?;
    Ok((handle, thread))
}

fn run(
    mut writer: LogWriter,
    mut rx: mpsc::Receiver<WriterMessage>,
    limits: GroupLimits,
    metrics: &Metrics,
) {
    let mut group: Vec<AppendRequest> = Vec::new();
    let mut probes: Vec<Probe> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let first = match first {
            WriterMessage::Append(first) => first,
            WriterMessage::Probe(probe) => {
                probe.reached();
                continue;
            }
        };
        let mut events = first.events.len();
        group.push(first);
        while group.len() < limits.max_requests && events < limits.max_events {
            match rx.try_recv() {
                Ok(WriterMessage::Append(next)) => {
                    events += next.events.len();
                    group.push(next);
                }
                // Reached once this group, queued before it, is committed.
                Ok(WriterMessage::Probe(probe)) => probes.push(probe),
                Err(_) => break,
            }
        }
        commit(&mut writer, &mut group, metrics);
        probes.drain(..).for_each(Probe::reached);
    }
    tracing::debug!("log writer stopped: queue closed and drained");
}

fn commit(writer: &mut LogWriter, group: &mut Vec<AppendRequest>, metrics: &Metrics) {
    let batches: Vec<&[Event]> = group.iter().map(|r| r.events.as_slice()).collect();
    let started = Instant::now();
    let result = writer.append_group(&batches, Timestamp::now());
    metrics.observe_commit(
        started.elapsed(),
        group.len(),
        batches.iter().map(|b| b.len()).sum(),
    );
    match result {
        Ok(outcomes) => {
            for (request, outcome) in group.drain(..).zip(outcomes) {
                // The client may have gone away; its events are stored all the same.
                let _ = request.reply.send(Ok(outcome));
            }
        }
        Err(error) => {
            tracing::error!(%error, requests = group.len(), "group commit failed; nothing in it was acknowledged");
            let error = if error.is_storage_full() {
                AppendError::StorageFull
            } else {
                AppendError::Storage(Arc::new(error))
            };
            for request in group.drain(..) {
                let _ = request.reply.send(Err(error.clone()));
            }
        }
    }
}

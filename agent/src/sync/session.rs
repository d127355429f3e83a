//! One sync session with central, over any stream of incoming frames and sink of outgoing
//! ones (the WebSocket in production).
//!
//! Hello → Welcome{stored_seq} → stream the log from stored_seq + 1 in batches, keeping at most
//! `window` batches unacknowledged; central's cumulative acks move `acked_seq` forward. New
//! events are picked up as the log's head moves.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tally_protocol::{
    Batch, Hello, LoggedEvent, Message, RejectReason, decode_message, encode_message,
};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use super::SyncStatus;
use crate::log::Log;

/// A frame from central.
#[derive(Debug)]
pub enum Incoming {
    Binary(Vec<u8>),
    /// A ping or pong: the link is alive.
    Alive,
}

/// A frame to central.
#[derive(Debug)]
pub enum Outgoing {
    Binary(Vec<u8>),
    Ping,
}

/// Batching, flow control and liveness settings.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub batch_max_events: usize,
    pub batch_max_bytes: usize,
    /// Batches sent and not yet acknowledged.
    pub window: usize,
    pub ping_interval: Duration,
    /// With nothing heard from central for this long, the link is dead (half-open).
    pub dead_after: Duration,
    /// How long acks may go unpersisted (a lost ack only means events are sent again).
    pub ack_flush_interval: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            batch_max_events: 1000,
            batch_max_bytes: 512 << 10,
            window: 8,
            ping_interval: Duration::from_secs(10),
            dead_after: Duration::from_secs(30),
            ack_flush_interval: Duration::from_secs(1),
        }
    }
}

/// Why a session ended.
#[derive(Debug)]
pub enum End {
    Shutdown,
    /// Central refused the session.
    Rejected {
        reason: RejectReason,
        retryable: bool,
        message: String,
    },
    /// The link broke or went silent; reconnect.
    Link(String),
    /// A state retrying cannot fix (central has more of this log than the log itself).
    Fatal(String),
}

/// The rough encoded size of an event, for cutting batches by bytes.
fn approx_size(e: &LoggedEvent) -> usize {
    let text = |s: &Option<String>| s.as_ref().map_or(1, |s| s.len() + 1);
    let ev = &e.event;
    40 + ev.sku.len()
        + text(&ev.id)
        + text(&ev.location)
        + text(&ev.to_location)
        + text(&ev.lot)
        + text(&ev.reference)
        + text(&ev.reason)
        + text(&ev.device)
        + text(&ev.user)
}

async fn read_batch(
    log: &Log,
    after: u64,
    limits: &SessionLimits,
) -> Result<Vec<LoggedEvent>, String> {
    let reader = log.clone();
    let max = limits.batch_max_events;
    let mut events = tokio::task::spawn_blocking(move || reader.read_after(after, max))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let mut bytes = 0;
    let cut = events
        .iter()
        .position(|e| {
            bytes += approx_size(e);
            bytes > limits.batch_max_bytes
        })
        .unwrap_or(events.len())
        .max(1);
    events.truncate(cut);
    Ok(events)
}

async fn persist_acked(log: &Log, seq: u64) {
    let log = log.clone();
    match tokio::task::spawn_blocking(move || log.set_acked(seq)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, seq, "cannot record the acknowledged seq (events will be sent again)")
        }
        Err(error) => tracing::warn!(%error, "cannot record the acknowledged seq"),
    }
}

/// Runs one session. `hello` is sent as is; the caller builds it from the log's state.
pub async fn run<S, K, E>(
    mut stream: S,
    mut sink: K,
    log: &Log,
    hello: Hello,
    limits: SessionLimits,
    status: &SyncStatus,
    shutdown: &CancellationToken,
) -> End
where
    S: Stream<Item = Result<Incoming, E>> + Unpin,
    K: Sink<Outgoing> + Unpin,
    K::Error: std::fmt::Display,
    E: std::fmt::Display,
{
    macro_rules! send {
        ($frame:expr) => {
            if let Err(e) = sink.send($frame).await {
                return End::Link(format!("send failed: {e}"));
            }
        };
    }
    let mut head_rx = log.head();
    let log_id = hello.log_id;
    send!(Outgoing::Binary(encode_message(&Message::Hello(hello))));

    let welcome = loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => return End::Shutdown,
            next = timeout(limits.dead_after, stream.next()) => next,
        };
        let frame = match next {
            Err(_) => return End::Link("central did not answer Hello".into()),
            Ok(None) => return End::Link("central closed the connection".into()),
            Ok(Some(Err(e))) => return End::Link(e.to_string()),
            Ok(Some(Ok(Incoming::Alive))) => continue,
            Ok(Some(Ok(Incoming::Binary(bytes)))) => bytes,
        };
        match decode_message(&frame) {
            Ok(Message::Welcome(welcome)) => break welcome,
            Ok(Message::Reject(r)) => {
                return End::Rejected {
                    reason: r.reason,
                    retryable: r.retryable,
                    message: r.message,
                };
            }
            Ok(_) => return End::Link("central answered Hello with an unexpected message".into()),
            Err(e) => return End::Link(format!("undecodable answer from central: {e}")),
        }
    };
    let mut head = *head_rx.borrow_and_update();
    if welcome.stored_seq > head {
        return End::Fatal(format!(
            "central holds seq {} of log {log_id} but this log ends at {head}; was the data directory \
             restored from an old backup? Move it aside so the agent starts a new log",
            welcome.stored_seq
        ));
    }
    status.on_connected(welcome.server_time);
    let mut acked = welcome.stored_seq;
    persist_acked(log, acked).await;
    let mut acked_persisted = acked;
    let mut last_flush = Instant::now();
    let mut next = acked + 1;
    let mut in_flight: VecDeque<u64> = VecDeque::new();
    let mut last_heard = Instant::now();
    let mut ping = tokio::time::interval(limits.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let end = 'session: loop {
        while in_flight.len() < limits.window && next <= head {
            let events = match read_batch(log, next - 1, &limits).await {
                Ok(events) => events,
                Err(e) => break 'session End::Link(format!("reading the log failed: {e}")),
            };
            let Some(last) = events.last().map(|e| e.seq) else {
                break;
            };
            if events[0].seq != next {
                // Pruning never removes unacknowledged events, so this is a corrupt log.
                return End::Fatal(format!(
                    "the log has no event {next} to send (found {})",
                    events[0].seq
                ));
            }
            send!(Outgoing::Binary(encode_message(&Message::Batch(Batch {
                events
            }))));
            in_flight.push_back(last);
            next = last + 1;
        }
        if acked > acked_persisted && last_flush.elapsed() >= limits.ack_flush_interval {
            persist_acked(log, acked).await;
            acked_persisted = acked;
            last_flush = Instant::now();
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break End::Shutdown,
            changed = head_rx.changed() => {
                if changed.is_err() {
                    break End::Shutdown;
                }
                head = *head_rx.borrow_and_update();
            }
            frame = stream.next() => {
                last_heard = Instant::now();
                let bytes = match frame {
                    None => break End::Link("central closed the connection".into()),
                    Some(Err(e)) => break End::Link(e.to_string()),
                    Some(Ok(Incoming::Alive)) => continue,
                    Some(Ok(Incoming::Binary(bytes))) => bytes,
                };
                match decode_message(&bytes) {
                    Ok(Message::Ack(ack)) => {
                        if ack.seq < acked || ack.seq >= next {
                            break End::Link(format!("central acknowledged seq {} outside the sent range {acked}..{next}", ack.seq));
                        }
                        acked = ack.seq;
                        while in_flight.front().is_some_and(|&last| last <= acked) {
                            in_flight.pop_front();
                        }
                        status.set_acked(acked);
                    }
                    Ok(Message::Reject(r)) => break End::Rejected { reason: r.reason, retryable: r.retryable, message: r.message },
                    Ok(_) => break End::Link("unexpected message from central".into()),
                    Err(e) => break End::Link(format!("undecodable message from central: {e}")),
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() >= limits.dead_after {
                    break End::Link(format!("nothing heard from central for {:?}", limits.dead_after));
                }
                send!(Outgoing::Ping);
            }
        }
    };
    if acked > acked_persisted {
        persist_acked(log, acked).await;
    }
    let _ = timeout(Duration::from_secs(1), sink.close()).await;
    end
}

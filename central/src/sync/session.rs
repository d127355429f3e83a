//! One agent's sync session, as a state machine over a stream of incoming frames and a sink
//! of outgoing ones — the WebSocket in production, channels in tests.
//!
//! Hello → (authenticate) → Welcome{stored_seq} → Batches in, cumulative Acks out. Batches are
//! handed to the journal as they arrive (pipelined); acks go out in order as each batch becomes
//! durable. Anything unexpected ends the session with a `Reject` that says why, and so does a
//! batch holding an event that breaks [`tally_protocol::Event::validate`]'s rules (none of that
//! batch is journaled).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tally_protocol::{
    Ack, DecodeError, Hello, Message, Reject, RejectReason, Timestamp, Welcome, decode_message,
    encode_message,
};
use tally_service::untrusted;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use super::hub::{Hub, LiveAgent};
use crate::store::Store;
use crate::store::journal::{JournalError, JournalHandle, Pending};
use crate::store::registry::Verdict;

/// A frame from the peer.
#[derive(Debug)]
pub enum Frame {
    /// An encoded [`Message`].
    Binary(Vec<u8>),
    /// A ping or pong: the link is alive.
    Alive,
}

/// Timing and size limits of a session.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// How long the peer has to say hello.
    pub hello_timeout: Duration,
    /// A session with no frame for this long is dead (agents ping more often).
    pub idle_timeout: Duration,
    /// How long a send may block on a peer that does not read.
    pub send_timeout: Duration,
    /// Batches handed to the journal and not yet acknowledged; beyond it, reading pauses.
    pub max_in_flight: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            hello_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(30),
            max_in_flight: 32,
        }
    }
}

/// What every session shares.
#[derive(Debug, Clone)]
pub struct SessionContext {
    pub store: Store,
    pub journal: JournalHandle,
    pub hub: Hub,
    pub limits: SessionLimits,
    pub shutdown: CancellationToken,
}

/// Longest agent id, warehouse code or agent version a Hello may carry, in characters.
pub const MAX_HELLO_CHARS: usize = 128;

/// An agent clock further off than this from central's is warned about when it connects.
const CLOCK_WARNING_MICROS: u64 = 2_000_000;

/// Why a session ended (for the log line).
#[derive(Debug)]
pub enum End {
    Closed,
    Rejected(RejectReason, String),
    Transport(String),
}

/// Runs one session to its end.
/// `clock_offset`: how far the agent's clock is behind central's, measured at the handshake
/// (microseconds; `None` when the agent did not send its clock).
pub async fn run<S, K, E>(
    stream: S,
    sink: K,
    peer: SocketAddr,
    clock_offset: Option<i64>,
    ctx: Arc<SessionContext>,
    pending: super::admission::Pending,
) -> End
where
    S: Stream<Item = Result<Frame, E>> + Unpin,
    K: Sink<Vec<u8>> + Unpin,
    K::Error: std::fmt::Display,
    E: std::fmt::Display,
{
    let mut session = Session {
        stream,
        sink,
        ctx,
        peer,
        clock_offset,
        pending: Some(pending),
    };
    session.run().await
}

struct Session<S, K> {
    stream: S,
    sink: K,
    ctx: Arc<SessionContext>,
    peer: SocketAddr,
    clock_offset: Option<i64>,
    /// The unauthenticated connection's pending slot, given back once the agent is known.
    pending: Option<super::admission::Pending>,
}

impl<S, K, E> Session<S, K>
where
    S: Stream<Item = Result<Frame, E>> + Unpin,
    K: Sink<Vec<u8>> + Unpin,
    K::Error: std::fmt::Display,
    E: std::fmt::Display,
{
    async fn send(&mut self, message: &Message) -> Result<(), End> {
        match timeout(
            self.ctx.limits.send_timeout,
            self.sink.send(encode_message(message)),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(End::Transport(format!("send failed: {e}"))),
            Err(_) => Err(End::Transport("the peer stopped reading".into())),
        }
    }

    /// Sends a rejection (best effort) and ends the session with it.
    async fn reject(&mut self, reason: RejectReason, retryable: bool, message: String) -> End {
        let reject = Message::Reject(Reject {
            reason,
            retryable,
            message: message.clone(),
        });
        let _ = self.send(&reject).await;
        let _ = timeout(Duration::from_secs(1), self.sink.close()).await;
        End::Rejected(reason, message)
    }

    async fn next_binary(&mut self, deadline: Duration) -> Result<Vec<u8>, End> {
        let until = Instant::now() + deadline;
        loop {
            match timeout(
                until.saturating_duration_since(Instant::now()),
                self.stream.next(),
            )
            .await
            {
                Err(_) => return Err(End::Transport("timed out waiting for the peer".into())),
                Ok(None) => return Err(End::Closed),
                Ok(Some(Err(e))) => return Err(End::Transport(e.to_string())),
                Ok(Some(Ok(Frame::Alive))) => continue,
                Ok(Some(Ok(Frame::Binary(bytes)))) => return Ok(bytes),
            }
        }
    }

    async fn run(&mut self) -> End {
        // Under a flood of unauthenticated connections the Hello gets less time too.
        let hello_timeout = self
            .pending
            .as_ref()
            .map_or(self.ctx.limits.hello_timeout, |p| {
                p.handshake_timeout().min(self.ctx.limits.hello_timeout)
            });
        let bytes = match self.next_binary(hello_timeout).await {
            Ok(bytes) => bytes,
            Err(end) => return end,
        };
        let hello = match decode_message(&bytes) {
            Ok(Message::Hello(hello)) => hello,
            Err(DecodeError::UnsupportedVersion { found, supported }) => {
                return self
                    .reject(
                        RejectReason::UnsupportedVersion,
                        false,
                        format!("protocol version {found} is not supported; central speaks {supported}: upgrade the agent"),
                    )
                    .await;
            }
            Ok(_) => {
                return self
                    .reject(
                        RejectReason::ProtocolError,
                        false,
                        "the first message must be Hello".into(),
                    )
                    .await;
            }
            Err(e) => {
                return self
                    .reject(
                        RejectReason::ProtocolError,
                        false,
                        format!("undecodable message: {e}"),
                    )
                    .await;
            }
        };
        // Before anything reads, hashes, stores or logs them: an unauthenticated peer's
        // identifiers are short (a 4 MiB id once cost 4 MiB of log per attempt).
        for (field, text) in [
            ("agent_id", &hello.agent_id),
            ("warehouse", &hello.warehouse),
            ("agent_version", &hello.agent_version),
        ] {
            if text.chars().count() > MAX_HELLO_CHARS {
                return self
                    .reject(
                        RejectReason::ProtocolError,
                        false,
                        format!("the Hello's {field} is longer than {MAX_HELLO_CHARS} characters"),
                    )
                    .await;
            }
        }
        match self.authenticate(&hello).await {
            Ok(()) => self.pending = None,
            Err(end) => return end,
        }
        let agent_id: Arc<str> = hello.agent_id.as_str().into();
        let store = self.ctx.store.clone();
        let (id, log_id, clock_offset) = (agent_id.clone(), hello.log_id, self.clock_offset);
        let stored = match tokio::task::spawn_blocking(move || {
            if let Some(offset) = clock_offset {
                store.set_clock_offset(&id, offset)?;
            }
            store.stored_seq(&id, log_id)
        })
        .await
        {
            Ok(Ok(stored)) => stored,
            _ => {
                return self
                    .reject(
                        RejectReason::Unavailable,
                        true,
                        "central cannot read its journal".into(),
                    )
                    .await;
            }
        };
        let now = Timestamp::now();
        let (session, closed) = self.ctx.hub.register(
            &agent_id,
            LiveAgent {
                session: 0,
                connected: true,
                peer: self.peer,
                agent_version: hello.agent_version.clone(),
                log_id: hello.log_id,
                head_seq: hello.head_seq,
                stored_seq: stored,
                oldest_unsynced_at: hello.oldest_unacked_at.filter(|_| hello.head_seq > stored),
                connected_at: now,
                last_seen: now,
            },
        );
        if stored == 0 && hello.head_seq > 0 {
            tracing::info!(agent_id = %agent_id, log_id = %hello.log_id, "a new event log for this agent (first connection, or its disk was replaced)");
        }
        tracing::info!(agent_id = %agent_id, peer = %self.peer, log_id = %hello.log_id, head_seq = hello.head_seq, stored_seq = stored, "agent connected");
        match self.clock_offset {
            Some(offset) if offset.unsigned_abs() > CLOCK_WARNING_MICROS => {
                tracing::warn!(agent_id = %agent_id, behind_seconds = offset as f64 / 1e6, "the agent's clock is off; counts are placed among Odoo's moves with this correction, but fix its time sync");
            }
            Some(_) => {}
            None => {
                tracing::warn!(agent_id = %agent_id, "the agent did not send its clock; its counts are placed among Odoo's moves assuming its clock is right");
            }
        }
        let end = self
            .stream_batches(&agent_id, &hello, session, stored, closed)
            .await;
        self.ctx.hub.disconnected(&agent_id, session);
        tracing::info!(agent_id = %agent_id, peer = %self.peer, end = ?end, "agent disconnected");
        end
    }

    async fn authenticate(&mut self, hello: &Hello) -> Result<(), End> {
        let store = self.ctx.store.clone();
        let (agent_id, token) = (hello.agent_id.clone(), hello.token.clone());
        let verdict =
            tokio::task::spawn_blocking(move || store.verify_agent(&agent_id, &token)).await;
        match verdict {
            Ok(Ok(Verdict::Accepted { warehouse })) if warehouse == hello.warehouse => Ok(()),
            Ok(Ok(Verdict::Accepted { warehouse })) => Err(self
                .reject(
                    RejectReason::WarehouseMismatch,
                    false,
                    format!(
                        "agent {:?} is registered for warehouse {warehouse:?}, not \"{}\"",
                        hello.agent_id,
                        untrusted(&hello.warehouse)
                    ),
                )
                .await),
            Ok(Ok(Verdict::BadToken)) => {
                // Anyone can send a Hello: summed up per interval, not a line per attempt.
                if let Some(pending) = &self.pending {
                    pending.failure(
                        "rejected: unknown agent or bad token",
                        self.peer,
                        &format!("agent id {}", hello.agent_id),
                    );
                }
                Err(self
                    .reject(
                        RejectReason::BadToken,
                        false,
                        "unknown agent or bad token".into(),
                    )
                    .await)
            }
            Ok(Ok(Verdict::Revoked)) => Err(self
                .reject(
                    RejectReason::Revoked,
                    false,
                    format!("agent {:?} is revoked", hello.agent_id),
                )
                .await),
            _ => Err(self
                .reject(
                    RejectReason::Unavailable,
                    true,
                    "central cannot read its registry".into(),
                )
                .await),
        }
    }

    async fn stream_batches(
        &mut self,
        agent_id: &Arc<str>,
        hello: &Hello,
        session: u64,
        stored: u64,
        mut closed: tokio::sync::watch::Receiver<Option<RejectReason>>,
    ) -> End {
        let welcome = Message::Welcome(Welcome {
            stored_seq: stored,
            server_time: Timestamp::now(),
        });
        if let Err(end) = self.send(&welcome).await {
            return end;
        }
        // The next seq this session needs; a batch may repeat older ones, never skip ahead.
        let mut expected = stored + 1;
        let mut in_flight: VecDeque<(u64, Option<Timestamp>, Pending)> = VecDeque::new();
        let mut idle_deadline = Instant::now() + self.ctx.limits.idle_timeout;
        let shutdown = self.ctx.shutdown.clone();
        loop {
            let can_read = in_flight.len() < self.ctx.limits.max_in_flight;
            tokio::select! {
                biased;
                _ = closed.changed() => {
                    let reason = (*closed.borrow()).unwrap_or(RejectReason::Unavailable);
                    let message = match reason {
                        RejectReason::Revoked => "this agent was revoked".to_owned(),
                        _ => "a newer session of this agent replaced this one".to_owned(),
                    };
                    return self.reject(reason, reason != RejectReason::Revoked, message).await;
                }
                () = shutdown.cancelled() => {
                    return self.reject(RejectReason::Unavailable, true, "central is shutting down".into()).await;
                }
                done = async { (&mut in_flight.front_mut().expect("guarded by the condition").2).await }, if !in_flight.is_empty() => {
                    let (head, oldest_after, _) = in_flight.pop_front().expect("guarded");
                    match done {
                        Ok(stored) => {
                            self.ctx.hub.update(agent_id, session, |live| {
                                live.stored_seq = stored;
                                live.head_seq = live.head_seq.max(head);
                                live.oldest_unsynced_at = if stored < live.head_seq { oldest_after } else { None };
                            });
                            if let Err(end) = self.send(&Message::Ack(Ack { seq: stored })).await {
                                return end;
                            }
                        }
                        Err(JournalError::Gap { stored, got }) => {
                            return self.reject(RejectReason::ProtocolError, false, format!("seq {got} sent but central holds up to {stored}: a gap")).await;
                        }
                        Err(JournalError::NotContiguous) => {
                            return self.reject(RejectReason::ProtocolError, false, "a batch's seqs are not contiguous".into()).await;
                        }
                        Err(JournalError::Stopped) => {
                            return self.reject(RejectReason::Unavailable, true, "central is shutting down".into()).await;
                        }
                        Err(e) => {
                            tracing::error!(agent_id = %agent_id, error = %e, "journal write failed");
                            return self.reject(RejectReason::Unavailable, true, "central could not store the batch; retry".into()).await;
                        }
                    }
                }
                () = sleep_until(idle_deadline) => {
                    return End::Transport(format!("no frame for {:?}", self.ctx.limits.idle_timeout));
                }
                frame = self.stream.next(), if can_read => {
                    idle_deadline = Instant::now() + self.ctx.limits.idle_timeout;
                    let bytes = match frame {
                        None => return End::Closed,
                        Some(Err(e)) => return End::Transport(e.to_string()),
                        Some(Ok(Frame::Alive)) => {
                            self.ctx.hub.update(agent_id, session, |live| live.last_seen = Timestamp::now());
                            continue;
                        }
                        Some(Ok(Frame::Binary(bytes))) => bytes,
                    };
                    let batch = match decode_message(&bytes) {
                        Ok(Message::Batch(batch)) => batch,
                        Ok(other) => {
                            let name = match other { Message::Hello(_) => "Hello", Message::Welcome(_) => "Welcome", Message::Reject(_) => "Reject", Message::Ack(_) => "Ack", Message::Batch(_) => "Batch" };
                            return self.reject(RejectReason::ProtocolError, false, format!("unexpected {name} during the session")).await;
                        }
                        Err(e) => return self.reject(RejectReason::ProtocolError, false, format!("undecodable message: {e}")).await,
                    };
                    let (Some(first), Some(last)) = (batch.events.first(), batch.events.last()) else {
                        return self.reject(RejectReason::ProtocolError, false, "an empty batch".into()).await;
                    };
                    // A valid token does not make the events valid: a buggy or modified agent
                    // must not journal what its own ingest would have refused.
                    if let Some((seq, error)) = batch.events.iter().find_map(|e| Some((e.seq, e.validate().err()?))) {
                        return self.reject(RejectReason::ProtocolError, false, format!("event seq {seq} is invalid: {error}")).await;
                    }
                    if first.seq > expected {
                        return self.reject(RejectReason::ProtocolError, false, format!("batch starts at seq {} but seq {expected} is next: a gap", first.seq)).await;
                    }
                    let head = last.seq;
                    let oldest_after = Some(last.received_at);
                    expected = expected.max(head + 1);
                    self.ctx.hub.update(agent_id, session, |live| {
                        live.last_seen = Timestamp::now();
                        live.head_seq = live.head_seq.max(head);
                    });
                    // Submitted here, in arrival order, so the journal sees this stream's batches in seq order.
                    match self.ctx.journal.submit(agent_id.clone(), hello.log_id, batch.events).await {
                        Ok(pending) => in_flight.push_back((head, oldest_after, pending)),
                        Err(_) => return self.reject(RejectReason::Unavailable, true, "central is shutting down".into()).await,
                    }
                }
            }
        }
    }
}

//! Messages of the sync session between an agent and central.
//!
//! The session: the agent sends [`Hello`]; central answers [`Welcome`] with the highest seq it
//! has durably stored for that (agent, log), or [`Reject`]. The agent then streams [`Batch`]es
//! of contiguous events and central answers cumulative [`Ack`]s once each batch is durable.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::event::{LogId, LoggedEvent, Timestamp};

/// A secret string (an agent token). Its `Debug` never shows the value, so it cannot leak
/// into logs through `{:?}`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that must compare or send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    Hello(Hello),
    Welcome(Welcome),
    Reject(Reject),
    Batch(Batch),
    Ack(Ack),
}

/// An HTTP header of the agent's WebSocket handshake: the agent's clock (microseconds since the
/// Unix epoch, decimal) when it opened the connection. Central measures the agent's clock
/// against its own with it, which places a count's time among Odoo's moves.
pub const CLOCK_HEADER: &str = "tally-clock";

/// First message of a session, from the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub agent_id: String,
    pub warehouse: String,
    pub log_id: LogId,
    /// The highest seq in the agent's log.
    pub head_seq: u64,
    /// When the oldest event central has not acknowledged was received, if there is one.
    pub oldest_unacked_at: Option<Timestamp>,
    pub token: Secret,
    /// The agent's software version, for operators.
    pub agent_version: String,
}

/// Central's answer to an accepted [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The highest seq central has durably stored for this (agent, log); 0 for a new log.
    pub stored_seq: u64,
    /// Central's clock when it answered, so the agent can report clock skew.
    pub server_time: Timestamp,
}

/// Central refuses the session; the connection closes after this message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    pub reason: RejectReason,
    /// Whether reconnecting later, unchanged, can succeed.
    pub retryable: bool,
    /// A sentence for the operator.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    /// Unknown agent or wrong token (deliberately not told apart).
    BadToken,
    Revoked,
    WarehouseMismatch,
    UnsupportedVersion,
    /// The peer broke the protocol (a gap in seqs, an unexpected message).
    ProtocolError,
    /// Central is shutting down or at its connection limit.
    Unavailable,
}

/// Contiguous events of one log, in seq order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub events: Vec<LoggedEvent>,
}

/// Central has durably stored every event of the session's log up to and including `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub seq: u64,
}

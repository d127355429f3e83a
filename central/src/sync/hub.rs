//! Who is connected right now: one live entry per agent, the handle to close its session, and
//! the numbers `GET /v1/agents` reports.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tally_protocol::{LogId, RejectReason, Timestamp};
use tokio::sync::watch;

/// The live state of one agent's latest session.
#[derive(Debug, Clone)]
pub struct LiveAgent {
    pub session: u64,
    pub connected: bool,
    pub peer: SocketAddr,
    pub agent_version: String,
    pub log_id: LogId,
    pub head_seq: u64,
    pub stored_seq: u64,
    /// When the oldest event central does not have yet was received by the agent (a lower bound
    /// of the lag's age while a backlog drains).
    pub oldest_unsynced_at: Option<Timestamp>,
    pub connected_at: Timestamp,
    pub last_seen: Timestamp,
}

#[derive(Debug)]
struct Entry {
    live: LiveAgent,
    close: watch::Sender<Option<RejectReason>>,
}

#[derive(Debug, Clone, Default)]
pub struct Hub {
    agents: Arc<Mutex<HashMap<String, Entry>>>,
    next_session: Arc<AtomicU64>,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.agents.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a new session for `agent_id`, closing the previous one (a reconnect while central
    /// still holds a half-open connection). The session ends when the receiver says so.
    pub fn register(
        &self,
        agent_id: &str,
        mut live: LiveAgent,
    ) -> (u64, watch::Receiver<Option<RejectReason>>) {
        let session = self.next_session.fetch_add(1, Ordering::Relaxed) + 1;
        live.session = session;
        let (close, closed) = watch::channel(None);
        let previous = self
            .lock()
            .insert(agent_id.to_owned(), Entry { live, close });
        if let Some(previous) = previous {
            let _ = previous.close.send(Some(RejectReason::Unavailable));
        }
        (session, closed)
    }

    /// Updates the live entry if `session` is still the agent's current one.
    pub fn update(&self, agent_id: &str, session: u64, change: impl FnOnce(&mut LiveAgent)) {
        if let Some(entry) = self.lock().get_mut(agent_id)
            && entry.live.session == session
        {
            change(&mut entry.live);
        }
    }

    pub fn disconnected(&self, agent_id: &str, session: u64) {
        self.update(agent_id, session, |live| {
            live.connected = false;
            live.last_seen = Timestamp::now();
        });
    }

    /// Closes the agent's live session, if any, telling it why.
    pub fn close(&self, agent_id: &str, reason: RejectReason) {
        if let Some(entry) = self.lock().get(agent_id) {
            let _ = entry.close.send(Some(reason));
        }
    }

    pub fn snapshot(&self) -> HashMap<String, LiveAgent> {
        self.lock()
            .iter()
            .map(|(id, entry)| (id.clone(), entry.live.clone()))
            .collect()
    }

    /// Number of agents connected now.
    pub fn connected(&self) -> usize {
        self.lock().values().filter(|e| e.live.connected).count()
    }
}

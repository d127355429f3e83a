//! Who gets a connection slot. Every connection holds a slot of `max_connections`; one that
//! has not authenticated yet also holds a *pending* slot, and there are only half as many of
//! those, at most [`MAX_PENDING_PER_PEER`] for one address. So idle sockets from one host —
//! or from many — can take at most half the slots, never the room agents that authenticated
//! need, and one host cannot shut out the agents of another. Under pressure (over half the
//! pending slots taken) the handshake budget shrinks, so a flood's sockets turn over fast
//! and a real agent waiting to connect gets a slot soon.
//!
//! Failures of unauthenticated connections (handshakes that fail or time out, bad tokens)
//! are logged as one line per kind and interval with a count, not a line each: a flood must
//! not become a flood of log lines.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Unauthenticated connections one address may hold at once.
pub const MAX_PENDING_PER_PEER: usize = 16;
/// Time for the TLS and WebSocket handshakes and the Hello, each.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The same under pressure.
pub const HANDSHAKE_TIMEOUT_UNDER_PRESSURE: Duration = Duration::from_secs(2);
/// How often repeated failures of one kind are summed up in the log.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every slot is taken.
    Full,
    /// Half the slots are held by connections that have not authenticated.
    TooManyPending,
    /// This address holds [`MAX_PENDING_PER_PEER`] unauthenticated connections already.
    PeerLimit,
}

impl Refused {
    fn as_str(self) -> &'static str {
        match self {
            Refused::Full => "at the connection limit",
            Refused::TooManyPending => "too many connections still authenticating",
            Refused::PeerLimit => "too many connections still authenticating from this address",
        }
    }
}

#[derive(Debug)]
pub struct Admission {
    all: Arc<Semaphore>,
    pending: Arc<Semaphore>,
    pending_capacity: usize,
    per_peer: Mutex<HashMap<IpAddr, usize>>,
    failures: Mutex<HashMap<&'static str, FailureCount>>,
}

/// A connection's slot, held until it closes.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// What an unauthenticated connection holds until its agent authenticates (or it closes).
#[derive(Debug)]
pub struct Pending {
    admission: Arc<Admission>,
    ip: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Pending {
    /// The handshake budget now (see [`Admission::handshake_timeout`]).
    pub fn handshake_timeout(&self) -> Duration {
        self.admission.handshake_timeout()
    }

    /// Logs a failure of this connection, summed up per interval.
    pub fn failure(&self, kind: &'static str, peer: SocketAddr, detail: &str) {
        self.admission.failure(kind, peer, detail);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut per_peer = self.admission.lock_peers();
        if let Some(n) = per_peer.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_peer.remove(&self.ip);
            }
        }
    }
}

#[derive(Debug)]
struct FailureCount {
    /// Failures not logged yet.
    count: u64,
    last_logged: Instant,
    last: String,
}

impl Admission {
    pub fn new(max_connections: usize) -> Arc<Admission> {
        let pending_capacity = (max_connections / 2).max(1);
        Arc::new(Admission {
            all: Arc::new(Semaphore::new(max_connections)),
            pending: Arc::new(Semaphore::new(pending_capacity)),
            pending_capacity,
            per_peer: Mutex::default(),
            failures: Mutex::default(),
        })
    }

    fn lock_peers(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_peer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot and a pending slot for a new connection from `peer`, or why not.
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<(Slot, Pending), Refused> {
        let ip = peer.ip();
        let mut per_peer = self.lock_peers();
        let held = per_peer.get(&ip).copied().unwrap_or(0);
        if held >= MAX_PENDING_PER_PEER {
            return Err(Refused::PeerLimit);
        }
        let pending = Arc::clone(&self.pending)
            .try_acquire_owned()
            .map_err(|_| Refused::TooManyPending)?;
        let slot = Arc::clone(&self.all)
            .try_acquire_owned()
            .map_err(|_| Refused::Full)?;
        per_peer.insert(ip, held + 1);
        Ok((
            Slot { _permit: slot },
            Pending {
                admission: Arc::clone(self),
                ip,
                _permit: pending,
            },
        ))
    }

    /// The handshake budget now: shorter while over half the pending slots are taken.
    pub fn handshake_timeout(&self) -> Duration {
        if self.pending.available_permits() * 2 < self.pending_capacity {
            HANDSHAKE_TIMEOUT_UNDER_PRESSURE
        } else {
            HANDSHAKE_TIMEOUT
        }
    }

    /// Logs a refused connection, summed up per interval.
    pub fn refused(&self, peer: SocketAddr, why: Refused) {
        self.failure("connection refused", peer, why.as_str());
    }

    /// Logs the failure of an unauthenticated connection (`kind` is a fixed sentence,
    /// `detail` says what happened to this one): the first of its kind at once, then one line
    /// per interval with how many there were.
    pub fn failure(&self, kind: &'static str, peer: SocketAddr, detail: &str) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let entry = failures.entry(kind).or_insert_with(|| FailureCount {
            count: 0,
            // Due at once: the first failure of a kind is logged as it happens.
            last_logged: now.checked_sub(FAILURE_LOG_INTERVAL).unwrap_or(now),
            last: String::new(),
        });
        entry.count += 1;
        entry.last = format!("{peer}: {}", tally_service::untrusted(detail));
        if now.duration_since(entry.last_logged) >= FAILURE_LOG_INTERVAL {
            tracing::info!(
                count = entry.count,
                last = %entry.last,
                "{kind} (count since the last such line)"
            );
            entry.count = 0;
            entry.last_logged = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((ip, port))
    }

    #[test]
    fn one_address_takes_at_most_its_share_and_never_the_authenticated_room() {
        let admission = Admission::new(100);
        let flood: Vec<_> = (0..MAX_PENDING_PER_PEER)
            .map(|port| admission.admit(addr([10, 0, 0, 9], port as u16)).unwrap())
            .collect();
        assert_eq!(
            admission.admit(addr([10, 0, 0, 9], 999)).unwrap_err(),
            Refused::PeerLimit
        );
        // Another host still gets in, and authenticating frees its pending slot.
        let (slot, pending) = admission.admit(addr([10, 0, 0, 1], 1)).unwrap();
        drop(pending);
        drop(flood);
        // Pending slots are half the slots: many hosts together cannot take them all.
        let many: Vec<_> = (0..50)
            .map(|i| admission.admit(addr([10, 1, 0, i as u8], 1)).unwrap())
            .collect();
        assert_eq!(
            admission.admit(addr([10, 2, 0, 1], 1)).unwrap_err(),
            Refused::TooManyPending
        );
        assert_eq!(
            admission.handshake_timeout(),
            HANDSHAKE_TIMEOUT_UNDER_PRESSURE
        );
        drop(many);
        assert_eq!(admission.handshake_timeout(), HANDSHAKE_TIMEOUT);
        drop(slot);
    }

    #[test]
    fn authenticated_connections_keep_their_slots() {
        let admission = Admission::new(4);
        // Four agents authenticate: their pending slots go back, their slots stay.
        let slots: Vec<Slot> = (0..4)
            .map(|i| admission.admit(addr([10, 0, 0, i], 1)).unwrap().0)
            .collect();
        assert_eq!(
            admission.admit(addr([10, 0, 0, 9], 1)).unwrap_err(),
            Refused::Full
        );
        drop(slots);
        assert!(admission.admit(addr([10, 0, 0, 9], 1)).is_ok());
    }
}

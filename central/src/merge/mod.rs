//! The merge engine: applying each warehouse's journaled events to Odoo exactly once, in log
//! order. [`plan`] holds the pure part (cutting and coalescing runs of events into pickings);
//! [`keys`] names Tally's pickings; [`apply`] applies one planned picking exactly once.

pub mod apply;
pub mod durable;
pub mod engine;
pub mod keys;
pub mod merged;
pub mod plan;
pub mod state;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::odoo::breaker::{Breaker, CircuitState};
use crate::odoo::{OdooClient, OdooConfig};
use crate::store::Store;
use apply::RetryPolicy;
use engine::Engine;

/// How often the engine looks at the journal even when nothing new was committed (it also
/// retries parked work that failed for a retryable reason).
const IDLE_PASS: Duration = Duration::from_secs(10);
/// How long to wait after an error that needs a person (bad key, missing rights, a field this
/// Odoo does not have) before trying again.
const AUTH_PAUSE: Duration = Duration::from_secs(60);

/// How the merge paces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeSettings {
    /// How long a pass waits after the commit that woke it, gathering what else is journaled.
    pub window: Duration,
    /// Calls that change data in flight at once against the Odoo database (across warehouses).
    pub max_writes: usize,
}

impl Default for MergeSettings {
    fn default() -> Self {
        MergeSettings {
            window: Duration::from_secs(1),
            max_writes: 1,
        }
    }
}

/// The merge's state, for the admin API.
#[derive(Debug, Default)]
pub struct MergeStatus {
    inner: Mutex<MergeState>,
    /// Wakes the merge loop for work that is not a journal commit (a retry request).
    wake: tokio::sync::Notify,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct MergeState {
    pub connected: bool,
    pub odoo_version: Option<u32>,
    /// `jsonrpc` or `json2`, once connected.
    pub odoo_api: Option<crate::odoo::Transport>,
    /// Set while merging is paused on an error only a person can fix.
    pub alert: Option<String>,
    pub last_error: Option<String>,
    /// The circuit breaker in front of Odoo (`closed`, `open`, `probing`).
    pub circuit: Option<CircuitState>,
    /// While the circuit is open: seconds until the next call is let through.
    pub circuit_opens_in_s: Option<u64>,
    /// When a pass last merged or parked events.
    pub last_merge_at: Option<tally_protocol::Timestamp>,
}

impl MergeStatus {
    pub fn snapshot(&self) -> MergeState {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Asks for a merge pass now rather than at the next commit or idle tick.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn update(&self, change: impl FnOnce(&mut MergeState)) {
        change(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// Merges journaled events into Odoo until `shutdown`: a merge window after a journal commit
/// (what else is journaled meanwhile joins the same run), at once when woken for a retry, and every
/// [`IDLE_PASS`] otherwise. Retryable failures back off; failures only a person can fix (a bad
/// key, a missing right, Tally and Odoo disagreeing on a field) pause, raise an alert and are
/// logged once, leaving the events where they are.
pub async fn run(
    store: Store,
    config: OdooConfig,
    settings: MergeSettings,
    mut commits: watch::Receiver<u64>,
    status: Arc<MergeStatus>,
    touched: Option<Arc<crate::availability::Touched>>,
    shutdown: CancellationToken,
) {
    let policy = RetryPolicy::default();
    let breaker = Arc::new(Breaker::default());
    let show_circuit = |status: &MergeStatus| {
        let (circuit, open_for) = breaker.state(std::time::Instant::now());
        status.update(|s| {
            s.circuit = Some(circuit);
            s.circuit_opens_in_s = open_for.map(|d| d.as_secs());
        });
        open_for.unwrap_or_default()
    };
    let mut failures = 0u32;
    // The alert last logged: a paused merge retries every minute, and says so once.
    let mut logged_alert: Option<String> = None;
    let mut raise = |status: &MergeStatus, alert: Option<String>| {
        if let Some(alert) = &alert
            && logged_alert.as_ref() != Some(alert)
        {
            tracing::error!(%alert, "merging into Odoo is paused until a person fixes this");
        }
        logged_alert.clone_from(&alert);
        status.update(|s| s.alert = alert);
    };
    loop {
        let client = tokio::select! {
            () = shutdown.cancelled() => return,
            client = OdooClient::connect_with(&config, breaker.clone()) => client,
        };
        let client = match client {
            Ok(client) => client.with_max_writes(settings.max_writes),
            Err(error) => {
                let auth = error.kind.needs_person();
                if !auth {
                    tracing::warn!(%error, url = %config.url, "cannot connect to Odoo");
                }
                status.update(|s| {
                    s.connected = false;
                    s.last_error = Some(error.to_string());
                });
                raise(&status, auth.then(|| error.to_string()));
                let pause = if auth {
                    AUTH_PAUSE
                } else {
                    policy
                        .delay(failures, rand::random())
                        .max(show_circuit(&status))
                };
                failures = failures.saturating_add(1);
                tokio::select! { () = shutdown.cancelled() => return, () = tokio::time::sleep(pause) => continue }
            }
        };
        tracing::info!(url = %config.url, version = client.major_version(), api = %client.transport(), "connected to Odoo");
        status.update(|s| {
            s.connected = true;
            s.odoo_version = Some(client.major_version());
            s.odoo_api = Some(client.transport());
        });
        let mut engine = Engine::new(store.clone(), client, policy);
        if let Some(touched) = &touched {
            engine = engine.with_touched(Arc::clone(touched));
        }
        // Warehouses already reported as unable to merge (logged once, not every pass).
        let mut reported: Vec<String> = Vec::new();
        loop {
            let pass = tokio::select! {
                () = shutdown.cancelled() => return,
                pass = engine.merge_all() => pass,
            };
            match pass {
                Ok(resolved) => {
                    tracing::debug!(resolved, "merge pass done");
                    if resolved > 0 {
                        status.update(|s| s.last_merge_at = Some(tally_protocol::Timestamp::now()));
                    }
                    failures = 0;
                    show_circuit(&status);
                    let stuck = engine.stuck();
                    for reason in stuck.iter().filter(|r| !reported.contains(*r)) {
                        tracing::warn!(%reason, "a warehouse cannot merge");
                    }
                    reported = stuck.clone();
                    status.update(|s| s.last_error = None);
                    raise(&status, (!stuck.is_empty()).then(|| stuck.join("; ")));
                }
                Err(error) => {
                    let auth = error.kind().needs_person();
                    if !auth {
                        tracing::warn!(%error, "merge pass stopped");
                    }
                    status.update(|s| s.last_error = Some(error.to_string()));
                    raise(&status, auth.then(|| error.to_string()));
                    let pause = if auth {
                        AUTH_PAUSE
                    } else {
                        // Not before the circuit lets calls through again.
                        policy
                            .delay(failures, rand::random())
                            .max(show_circuit(&status))
                    };
                    failures = failures.saturating_add(1);
                    tokio::select! { () = shutdown.cancelled() => return, () = tokio::time::sleep(pause) => {} }
                    if auth {
                        break;
                    }
                    continue;
                }
            }
            let committed = tokio::select! {
                () = shutdown.cancelled() => return,
                _ = commits.changed() => true,
                () = status.wake.notified() => false,
                () = tokio::time::sleep(IDLE_PASS) => false,
            };
            if committed && !settings.window.is_zero() {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = status.wake.notified() => {}
                    () = tokio::time::sleep(settings.window) => {}
                }
            }
        }
        status.update(|s| s.connected = false);
    }
}

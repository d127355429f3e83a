//! The sync client: keeps one session with central alive, reconnecting with capped
//! exponential backoff, and streams the log through it ([`session`]).

pub mod connect;
pub mod session;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tally_protocol::{Hello, Secret, Timestamp};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

use crate::log::Log;
use connect::Endpoint;
use session::{End, Incoming, Outgoing, SessionLimits};

/// Everything the sync client needs to know.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub endpoint: Endpoint,
    pub agent_id: String,
    pub warehouse: String,
    pub token: Secret,
    pub limits: SessionLimits,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub connect_timeout: Duration,
}

/// The sync link's state, for `/v1/status` and metrics.
#[derive(Debug, Default)]
pub struct SyncStatus {
    connected: AtomicBool,
    acked_seq: AtomicU64,
    /// Central's clock minus ours at the last connect, in µs.
    clock_skew_micros: AtomicI64,
    last_error: Mutex<Option<String>>,
}

impl SyncStatus {
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The highest seq central acknowledged in this process's lifetime (0 before the first).
    pub fn acked_seq(&self) -> u64 {
        self.acked_seq.load(Ordering::Relaxed)
    }

    pub fn clock_skew(&self) -> Option<f64> {
        self.connected()
            .then(|| self.clock_skew_micros.load(Ordering::Relaxed) as f64 / 1e6)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn on_connected(&self, server_time: Timestamp) {
        let skew = server_time.as_micros() - Timestamp::now().as_micros();
        self.clock_skew_micros.store(skew, Ordering::Relaxed);
        self.connected.store(true, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn set_acked(&self, seq: u64) {
        self.acked_seq.fetch_max(seq, Ordering::Relaxed);
    }

    fn on_disconnected(&self, error: Option<String>) {
        self.connected.store(false, Ordering::Relaxed);
        if error.is_some() {
            *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
        }
    }
}

/// A session that lasted this long resets the backoff even if it was never welcomed.
const STABLE_SESSION: Duration = Duration::from_secs(30);

/// Runs until `shutdown`: connect, run a session, back off, again.
pub async fn run(
    log: Log,
    config: SyncConfig,
    status: std::sync::Arc<SyncStatus>,
    shutdown: CancellationToken,
) {
    let mut attempt: u32 = 0;
    loop {
        let started = Instant::now();
        // Not raced against `shutdown` here: the session watches it and records central's last
        // ack before it ends. Dropping it on the signal lost that ack, and a backup made after
        // the stop then counted acknowledged events as unacknowledged (a restore would send
        // them to central again under the new log id).
        let end = connect_and_run(&log, &config, &status, &shutdown).await;
        let error = match &end {
            End::Shutdown => {
                status.on_disconnected(None);
                return;
            }
            End::Rejected {
                reason,
                retryable,
                message,
            } => {
                tracing::error!(?reason, retryable, %message, "central refused this agent");
                format!("central refused the session ({reason:?}): {message}")
            }
            End::Link(message) => {
                tracing::warn!(%message, url = config.endpoint.url(), "link to central lost");
                message.clone()
            }
            End::Fatal(message) => {
                tracing::error!(%message, "sync stopped");
                message.clone()
            }
        };
        // A session central welcomed proves the link and the credentials work: the next
        // attempt starts from the shortest delay again.
        let welcomed = status.connected();
        status.on_disconnected(Some(error));
        if welcomed || started.elapsed() >= STABLE_SESSION {
            attempt = 0;
        }
        // A refusal that retrying cannot fix is retried slowly, so that fixing the registry or
        // the configuration on central's side brings the agent back without a restart.
        let slow = matches!(
            end,
            End::Fatal(_)
                | End::Rejected {
                    retryable: false,
                    ..
                }
        );
        let delay = if slow {
            config.backoff_max
        } else {
            tally_service::backoff::delay(
                attempt,
                config.backoff_min,
                config.backoff_max,
                rand::random(),
            )
        };
        attempt = attempt.saturating_add(1);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

async fn connect_and_run(
    log: &Log,
    config: &SyncConfig,
    status: &SyncStatus,
    shutdown: &CancellationToken,
) -> End {
    let connected = tokio::select! {
        () = shutdown.cancelled() => return End::Shutdown,
        connected = config.endpoint.connect(config.connect_timeout) => connected,
    };
    let link = match connected {
        Ok(link) => link,
        Err(e) => return End::Link(format!("{e:#}")),
    };
    let reader = log.clone();
    let state = match tokio::task::spawn_blocking(move || reader.status()).await {
        Ok(Ok(state)) => state,
        Ok(Err(e)) => return End::Fatal(format!("cannot read the log: {e}")),
        Err(e) => return End::Fatal(format!("cannot read the log: {e}")),
    };
    let hello = Hello {
        agent_id: config.agent_id.clone(),
        warehouse: config.warehouse.clone(),
        log_id: log.log_id(),
        head_seq: state.last_seq,
        oldest_unacked_at: state.oldest_pending_received_at,
        token: config.token.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let (sink, stream) = link.split();
    let sink = sink.with(|frame: Outgoing| async move {
        Ok::<_, tokio_tungstenite::tungstenite::Error>(match frame {
            Outgoing::Binary(bytes) => WsMessage::Binary(bytes.into()),
            Outgoing::Ping => WsMessage::Ping(Default::default()),
        })
    });
    let stream = stream.filter_map(|message| async move {
        match message {
            Ok(WsMessage::Binary(bytes)) => Some(Ok(Incoming::Binary(bytes.to_vec()))),
            Ok(WsMessage::Ping(_) | WsMessage::Pong(_)) => Some(Ok(Incoming::Alive)),
            Ok(WsMessage::Text(_)) => Some(Ok(Incoming::Binary(Vec::new()))),
            Ok(WsMessage::Close(_) | WsMessage::Frame(_)) => None,
            Err(e) => Some(Err(e)),
        }
    });
    tracing::info!(
        url = config.endpoint.url(),
        head_seq = state.last_seq,
        "connected to central"
    );
    session::run(
        Box::pin(stream),
        Box::pin(sink),
        log,
        hello,
        config.limits,
        status,
        shutdown,
    )
    .await
}

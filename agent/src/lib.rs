//! `tally-agent`: a warehouse's durable front door for stock events.
//!
//! Scanners and the WMS post events over local HTTP ([`http`]); each request is validated
//! ([`ingest`]), committed to the redb event log by the group-commit writer ([`log::writer`]),
//! and answered only once it is on disk.

#![forbid(unsafe_code)]

pub mod client;
pub mod config;
pub mod http;
pub mod ingest;
pub mod log;
pub mod metrics;
pub mod service;
pub mod sync;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tally_service::watchdog::{self, Watchdog};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{CentralLink, Config};
use crate::http::{AppState, TokenSet};
use crate::log::writer::{self, GroupLimits};
use crate::log::{Log, LogWriter};
use crate::metrics::Metrics;
use crate::sync::session::SessionLimits;
use crate::sync::{SyncConfig, SyncStatus};

/// How long in-flight requests may take to finish after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long the log writer may take to commit what it has after that.
const WRITER_GRACE: Duration = Duration::from_secs(5);

/// A running agent's parts, opened but not yet serving.
#[derive(Debug)]
pub struct Agent {
    state: AppState,
    writer_thread: std::thread::JoinHandle<()>,
    central: Option<CentralLink>,
    /// How long acknowledged events, and client ids, are kept.
    retention: (Duration, Duration),
    /// systemd's watchdog, petted by the log writer (see [`log::writer`]).
    watchdog: Option<Arc<Watchdog>>,
}

impl Agent {
    /// Opens (or creates) the data directory and its log and starts the log writer.
    pub fn open(config: &Config) -> anyhow::Result<Agent> {
        tally_service::create_private_dir(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;
        let log = Log::open(&config.data_dir)?;
        Agent::with_log(config, log, GroupLimits::default())
    }

    /// Starts an agent on an already opened log (tests use this with fault-injecting storage).
    pub fn with_log(config: &Config, log: Log, limits: GroupLimits) -> anyhow::Result<Agent> {
        let metrics = Arc::new(Metrics::new());
        let log_writer = LogWriter::new(log.clone(), config.max_log_bytes)?;
        let (writer, writer_thread) = writer::spawn(log_writer, limits, Arc::clone(&metrics))
            .context("cannot start the log writer thread")?;
        let state = AppState {
            writer,
            log,
            metrics,
            tokens: Arc::new(TokenSet::new(&config.scanner_tokens)),
            metrics_token: config
                .metrics_token
                .as_ref()
                .map(|t| Arc::new(TokenSet::new(std::slice::from_ref(t)))),
            agent_id: config.agent_id.as_str().into(),
            warehouse: config.warehouse.as_str().into(),
            max_log_bytes: config.max_log_bytes,
            max_body_bytes: config.max_body_bytes,
            sync: Arc::new(SyncStatus::default()),
        };
        Ok(Agent {
            state,
            writer_thread,
            central: config.central.clone(),
            retention: (config.retention, config.id_retention),
            watchdog: Watchdog::from_systemd(),
        })
    }

    /// Uses `watchdog` instead of systemd's (tests count its pets).
    pub fn with_watchdog(mut self, watchdog: Arc<Watchdog>) -> Agent {
        self.watchdog = Some(watchdog);
        self
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves the HTTP API on `listener` until `shutdown` is cancelled, then stops accepting,
    /// lets in-flight requests finish (within a grace period) and waits for the last commit.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let Agent {
            state,
            writer_thread,
            central,
            retention,
            watchdog,
        } = self;
        let tasks = tokio_util::task::TaskTracker::new();
        if let Some(watchdog) = watchdog {
            // The probes go through the writer's queue: the pet comes from the writer thread,
            // after the commits queued before it (a hung fsync stops it).
            let writer = state.writer.clone();
            tasks.spawn(watchdog::send_probes(
                watchdog,
                shutdown.clone(),
                move |probe| {
                    let writer = writer.clone();
                    async move { writer.probe(probe).await }
                },
            ));
        }
        if let Some(central) = central {
            let config = SyncConfig {
                endpoint: central.endpoint,
                agent_id: state.agent_id.to_string(),
                warehouse: state.warehouse.to_string(),
                token: central.token,
                limits: SessionLimits::default(),
                backoff_min: Duration::from_millis(200),
                backoff_max: Duration::from_secs(30),
                connect_timeout: Duration::from_secs(15),
            };
            tasks.spawn(sync::run(
                state.log.clone(),
                config,
                Arc::clone(&state.sync),
                shutdown.clone(),
            ));
        } else {
            tracing::warn!("no central_url configured: capturing events without syncing them");
        }
        tasks.spawn(maintain(state.log.clone(), retention, shutdown.clone()));
        tasks.close();
        let app = http::router(state);
        // The peer's address lets `POST /v1/backup` answer loopback callers only.
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future();
        tokio::select! {
            result = server => result.context("the HTTP server failed")?,
            () = async { shutdown.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "requests still open after the grace period; closing them");
            }
        }
        // The sync client stops at the same signal (it persists its last ack first).
        tasks.wait().await;
        // The router (and with it every writer handle) is dropped: the writer drains its queue,
        // commits, and stops. A connection still stuck after the grace period keeps a handle
        // alive, but nothing it sent was acknowledged, so exiting loses nothing.
        let join = tokio::task::spawn_blocking(move || writer_thread.join());
        match tokio::time::timeout(WRITER_GRACE, join).await {
            Ok(joined) => joined
                .context("waiting for the log writer")?
                .map_err(|_| anyhow::anyhow!("the log writer thread panicked"))?,
            Err(_) => tracing::warn!(
                "connections still open; exiting anyway (every acknowledged event is committed)"
            ),
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// The async runtime the agent's commands run on.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs the agent: opens its log, binds its listener, calls `ready` with the address once it
/// serves, and serves until `shutdown` is cancelled (by SIGTERM under systemd, by the stop
/// control as a Windows service). Call it inside the runtime.
pub async fn run(
    config: &Config,
    shutdown: CancellationToken,
    ready: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    let agent = Agent::open(config)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, agent_id = %config.agent_id, warehouse = %config.warehouse, log_id = %agent.state().log.log_id(), "tally-agent ready");
    ready(addr);
    agent.serve(listener, shutdown).await
}

/// The exit code for a failure: 65 (EX_DATAERR) for a log of a newer format, which a restart
/// would meet again, 1 for anything else.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    let data_error = error
        .chain()
        .any(|e| matches!(e.downcast_ref(), Some(log::LogError::Format(_))));
    if data_error {
        tally_service::datafile::EXIT_DATAERR
    } else {
        1
    }
}

/// How often acknowledged events and expired client ids are pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// Prunes the log now and then: events central has acknowledged once they are older than the
/// retention, client ids once older than the id retention.
async fn maintain(
    log: Log,
    (retention, id_retention): (Duration, Duration),
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(PRUNE_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = tally_protocol::Timestamp::now().as_micros();
        let before = |age: Duration| {
            tally_protocol::Timestamp::from_micros(
                now.saturating_sub(i64::try_from(age.as_micros()).unwrap_or(i64::MAX)),
            )
        };
        let (events_before, ids_before) = (before(retention), before(id_retention));
        let log = log.clone();
        match tokio::task::spawn_blocking(move || log.prune(events_before, ids_before)).await {
            Ok(Ok((0, 0))) => {}
            Ok(Ok((events, ids))) => tracing::info!(
                events,
                ids,
                "pruned acknowledged events and expired client ids"
            ),
            Ok(Err(error)) => tracing::warn!(%error, "pruning the log failed"),
            Err(error) => tracing::warn!(%error, "pruning the log failed"),
        }
    }
}

//! `tally-central`: authenticates agents, journals their events exactly once, merges them
//! into Odoo, and fans Odoo's availability out to the sales channels.

#![forbid(unsafe_code)]

pub mod admin;
pub mod availability;
pub mod breaker;
pub mod channels;
pub mod config;
pub mod merge;
pub mod odoo;
pub mod store;
pub mod sync;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tally_service::watchdog::{self, Watchdog};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Transport};
use crate::store::Store;
use crate::sync::hub::Hub;
use crate::sync::session::{SessionContext, SessionLimits};

/// How long sessions may take to say goodbye after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Central, opened and ready to serve.
#[derive(Debug)]
pub struct Central {
    config: Config,
    store: Store,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// systemd's watchdog, petted by the journal writer (see [`store::journal`]).
    watchdog: Option<Arc<Watchdog>>,
}

impl Central {
    /// Opens the data directory and database and loads the TLS material: every failure that
    /// a bad configuration can cause happens here, before anything is served. `run` binds its
    /// ports first, so that a port already taken creates nothing on disk.
    pub fn open(config: Config) -> anyhow::Result<Central> {
        tally_service::create_private_dir(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;
        let store = Store::open(&config.data_dir)?;
        let tls = match &config.transport {
            Transport::Tls { cert, key } => Some(tls::server_config(cert, key)?),
            Transport::Plaintext => None,
        };
        Ok(Central {
            config,
            store,
            tls,
            watchdog: Watchdog::from_systemd(),
        })
    }

    /// Uses `watchdog` instead of systemd's (tests count its pets).
    pub fn with_watchdog(mut self, watchdog: Arc<Watchdog>) -> Central {
        self.watchdog = Some(watchdog);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves agents on `sync` and the admin API on `admin`, and merges the journal into Odoo
    /// when Odoo is configured, until `shutdown` is cancelled.
    pub async fn serve(
        self,
        sync: TcpListener,
        admin: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let (journal, journal_thread) =
            store::journal::spawn(self.store.clone()).context("cannot start the journal writer")?;
        let hub = Hub::default();
        let ctx = Arc::new(SessionContext {
            store: self.store.clone(),
            journal,
            hub: hub.clone(),
            limits: SessionLimits::default(),
            shutdown: shutdown.clone(),
        });
        for warning in &self.config.deprecated {
            tracing::warn!("{warning}");
        }
        let tracker = TaskTracker::new();
        if let Some(watchdog) = self.watchdog.clone() {
            // Through the journal writer's queue: the pet comes from the thread every agent's
            // acknowledgement waits on, after the commits queued before it. Why this loop and
            // not the merge or the accept loop: ARCHITECTURE.md, `packaging/`.
            let journal = ctx.journal.clone();
            tracker.spawn(watchdog::send_probes(
                watchdog,
                shutdown.clone(),
                move |probe| {
                    let journal = journal.clone();
                    async move { journal.probe(probe).await }
                },
            ));
        }
        let merge_status = Arc::new(merge::MergeStatus::default());
        let channels = Arc::new(channels::Channels::new(Arc::new(
            self.config.channels.clone(),
        )));
        let reader_status = Arc::new(availability::reader::ReaderStatus::default());
        match &self.config.odoo {
            Some(odoo) => {
                let touched = Arc::new(availability::Touched::default());
                tracker.spawn(merge::run(
                    self.store.clone(),
                    odoo.clone(),
                    self.config.merge,
                    ctx.journal.commits(),
                    Arc::clone(&merge_status),
                    Some(Arc::clone(&touched)),
                    shutdown.clone(),
                ));
                let reader = availability::reader::Reader {
                    store: self.store.clone(),
                    odoo: odoo.clone(),
                    channels: Arc::clone(&channels),
                    touched: Arc::clone(&touched),
                    poll: self.config.availability_poll,
                    status: Arc::clone(&reader_status),
                };
                tracker.spawn(reader.run(shutdown.clone()));
                for channel in channels.configs.iter() {
                    tracker.spawn(channels::worker::run_with_odoo(
                        self.store.clone(),
                        channel.clone(),
                        Arc::clone(&channels),
                        Some(channels::worker::OdooSide {
                            config: odoo.clone(),
                            touched: Arc::clone(&touched),
                        }),
                        shutdown.clone(),
                    ));
                }
            }
            None => {
                tracing::warn!("no Odoo configured: journaling events without merging them");
                if !channels.configs.is_empty() {
                    tracing::warn!(
                        "channels are configured but no Odoo: nothing is pushed to them"
                    );
                }
            }
        }
        let mut admin_state = admin::AdminState::new(
            self.store.clone(),
            hub,
            &self.config.admin_token,
            self.config.token_grace,
        )
        .with_read_token(self.config.read_token.as_ref());
        admin_state.merge = self.config.odoo.is_some().then_some(merge_status);
        admin_state.channels = Some(channels);
        admin_state.availability = self.config.odoo.is_some().then_some(reader_status);
        let admin_app = admin::router(admin_state);
        let admin_server = async {
            match (&self.tls, self.config.admin_tls) {
                (Some(tls), true) => {
                    let listener = tls::TlsListener::new(admin, Arc::clone(tls))?;
                    axum::serve(listener, admin_app)
                        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                        .await
                }
                _ => {
                    axum::serve(admin, admin_app)
                        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                        .await
                }
            }
        };
        let sync_server = sync::serve(
            sync,
            self.tls.clone(),
            Arc::clone(&ctx),
            self.config.max_connections,
            tracker.clone(),
        );
        let (admin_result, ()) = tokio::join!(admin_server, sync_server);
        admin_result.context("the admin API failed")?;
        tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("sessions still open after the grace period");
        }
        drop(ctx);
        tokio::task::spawn_blocking(move || journal_thread.join())
            .await
            .context("waiting for the journal writer")?
            .map_err(|_| anyhow::anyhow!("the journal writer panicked"))?;
        tracing::info!("stopped");
        Ok(())
    }
}

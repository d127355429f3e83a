//! One task per channel: takes the outbox's most urgent rows, pushes them through the
//! channel's adapter, records what the channel accepted or refused for good, and backs off
//! (behind a circuit breaker) when the channel is down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{
    ALERT_PAUSE, ChannelConfig, ChannelError, ChannelKind, Channels, Entry, ErrorClass, Outcome,
};
use crate::availability::Touched;
use crate::breaker::Breaker;
use crate::odoo::OdooConfig;
use crate::store::Store;

/// A channel's client.
#[derive(Debug)]
pub enum Adapter {
    Shopify(Box<super::shopify::Shopify>),
    WooCommerce(Box<super::woocommerce::WooCommerce>),
    Webhook(Box<super::webhook::Webhook>),
}

impl Adapter {
    /// `store` and `odoo`: WooCommerce reads the availability's read time and asks Odoo which
    /// orders it has (ARCHITECTURE.md, "No oversell").
    pub fn new(config: &ChannelConfig, store: &Store, odoo: Option<&OdooSide>) -> Adapter {
        match &config.kind {
            ChannelKind::Shopify { .. } => {
                Adapter::Shopify(Box::new(super::shopify::Shopify::new(config)))
            }
            ChannelKind::WooCommerce { .. } => {
                Adapter::WooCommerce(Box::new(super::woocommerce::WooCommerce::new(
                    config,
                    Some(store.clone()),
                    odoo.map(|o| (o.config.clone(), Arc::clone(&o.touched))),
                )))
            }
            ChannelKind::Webhook => {
                Adapter::Webhook(Box::new(super::webhook::Webhook::new(config)))
            }
        }
    }

    /// The most rows one push takes.
    pub fn batch(&self) -> usize {
        match self {
            Adapter::Shopify(_) => super::shopify::BATCH,
            Adapter::WooCommerce(_) => super::woocommerce::PUSH,
            Adapter::Webhook(_) => super::webhook::BATCH,
        }
    }

    /// Forgets what the client cached of the channel (a resync).
    pub fn forget(&mut self) {
        match self {
            Adapter::Shopify(s) => s.forget(),
            Adapter::WooCommerce(w) => w.forget(),
            Adapter::Webhook(_) => {}
        }
    }

    /// Between pushes: what the client wants to write again on its own (WooCommerce: SKUs
    /// written with open orders taken off); `None` when nothing.
    pub async fn recheck(&mut self) -> Option<Result<Outcome, ChannelError>> {
        match self {
            Adapter::WooCommerce(w) => w.recheck().await,
            _ => None,
        }
    }

    pub async fn push(&mut self, batch: &[Entry]) -> Result<Outcome, ChannelError> {
        match self {
            Adapter::Shopify(s) => s.push(batch).await,
            Adapter::WooCommerce(w) => w.push(batch).await,
            Adapter::Webhook(w) => w.push(batch).await,
        }
    }
}

/// Capped exponential backoff with jitter: 0.5 s, 1 s, 2 s … at most 30 s
/// ([`tally_service::backoff::delay`], as the agent's reconnects; capped lower for the reason
/// given at [`breaker`]).
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    tally_service::backoff::delay(
        failures,
        Duration::from_millis(500),
        Duration::from_secs(30),
        jitter,
    )
}

/// The channel's circuit breaker: open after [`Breaker::THRESHOLD`] outage-like failures in a
/// row for 15 s, then 30 s while the channel stays down (Odoo's breaker doubles up to five
/// minutes). A channel's offers are what it sells from: while it is down they go stale, and
/// once it is back every second it is not written is a second it may sell what is gone. A
/// probe is a single push, cheap to the channel; a 30 s rhythm of them is no load.
fn breaker() -> Breaker {
    Breaker::new(Duration::from_secs(15), Duration::from_secs(30))
}

/// Drains `config`'s outbox until `shutdown`, without asking Odoo anything (a WooCommerce
/// channel then takes every open order off its offers).
pub async fn run(
    store: Store,
    config: ChannelConfig,
    channels: Arc<Channels>,
    shutdown: CancellationToken,
) {
    run_with_odoo(store, config, channels, None, shutdown).await;
}

/// What a channel may use of central's Odoo side: where a WooCommerce channel asks which of
/// its open orders Odoo has, and how it asks the availability reader for a fresh read.
#[derive(Debug, Clone)]
pub struct OdooSide {
    pub config: OdooConfig,
    pub touched: Arc<Touched>,
}

/// Drains `config`'s outbox until `shutdown`, with `odoo` (see [`OdooSide`]).
pub async fn run_with_odoo(
    store: Store,
    config: ChannelConfig,
    channels: Arc<Channels>,
    odoo: Option<OdooSide>,
    shutdown: CancellationToken,
) {
    let mut worker = Worker {
        adapter: Adapter::new(&config, &store, odoo.as_ref()),
        next_reconcile: config.reconcile.map(|every| Instant::now() + every),
        breaker: breaker(),
        failures: 0,
        store,
        config,
        channels,
    };
    let mut wake = worker.channels.outbox.subscribe();
    loop {
        worker.reconcile_if_due().await;
        if worker.channels.take_resync(&worker.config.name) {
            worker.adapter.forget();
        }
        let recheck = tokio::select! {
            () = shutdown.cancelled() => return,
            r = worker.adapter.recheck() => r,
        };
        worker.rechecked(recheck).await;
        let batch = worker.next_batch().await;
        if batch.is_empty() {
            wake.borrow_and_update();
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = wake.changed() => {}
                // Rows can also come back after a failure of this worker's own.
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            continue;
        }
        let pause = match worker.breaker.admit(Instant::now()) {
            Err(open) => Some(open.retry_in),
            Ok(()) => {
                let result = tokio::select! {
                    () = shutdown.cancelled() => return,
                    r = worker.adapter.push(&batch) => r,
                };
                worker.pushed(result).await
            }
        };
        if let Some(pause) = pause {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// One channel's worker between two steps of its loop.
struct Worker {
    store: Store,
    config: ChannelConfig,
    channels: Arc<Channels>,
    adapter: Adapter,
    breaker: Breaker,
    /// Failed pushes in a row (the backoff's exponent).
    failures: u32,
    /// When the scheduled resync (`reconcile`) is due.
    next_reconcile: Option<Instant>,
}

impl Worker {
    /// Queues every mapped SKU again when the configured `reconcile` interval is up.
    async fn reconcile_if_due(&mut self) {
        let (Some(at), Some(every)) = (self.next_reconcile, self.config.reconcile) else {
            return;
        };
        if Instant::now() < at {
            return;
        }
        self.next_reconcile = Some(Instant::now() + every);
        self.channels.request_resync(&self.config.name);
        let config = self.config.clone();
        match self
            .store
            .blocking(move |store| store.outbox_resync(&config, None))
            .await
        {
            Ok(queued) => tracing::info!(channel = %self.config.name, queued, "scheduled resync"),
            Err(error) => {
                tracing::error!(channel = %self.config.name, %error, "cannot queue the scheduled resync")
            }
        }
    }

    /// Records what the client wrote again on its own between pushes (WooCommerce): only its
    /// calls and what it found count, as the outbox has no row of it.
    async fn rechecked(&self, recheck: Option<Result<Outcome, ChannelError>>) {
        match recheck {
            Some(Ok(outcome)) => {
                let (_, _, figures) = outcome.split();
                let channel = self.config.name.clone();
                let recorded = self
                    .store
                    .blocking(move |store| store.outbox_complete_with(&channel, &[], &[], &figures))
                    .await;
                if let Err(error) = recorded {
                    tracing::error!(channel = %self.config.name, %error, "cannot count a recheck's calls in the store");
                }
            }
            Some(Err(e)) => {
                tracing::warn!(channel = %self.config.name, error = %e, "looking again at SKUs held by open orders failed")
            }
            None => {}
        }
    }

    /// The outbox's most urgent rows, as many as one push takes (none when it cannot be read).
    async fn next_batch(&self) -> Vec<Entry> {
        let (channel, limit) = (self.config.name.clone(), self.adapter.batch());
        self.store
            .blocking(move |store| store.outbox_batch(&channel, limit))
            .await
            .unwrap_or_else(|error| {
                tracing::error!(channel = %self.config.name, %error, "cannot read the channel's outbox");
                Vec::new()
            })
    }

    /// Records how a push the breaker let through ended; returns how long to wait before the
    /// next push, if at all.
    async fn pushed(&mut self, result: Result<Outcome, ChannelError>) -> Option<Duration> {
        self.breaker
            .record(result.as_ref().map(|_| ()), Instant::now());
        let circuit = self.breaker.state(Instant::now()).0;
        match result {
            Ok(outcome) => {
                self.failures = 0;
                let (done, dead) = (outcome.done.len(), outcome.dead.len());
                self.record(outcome).await;
                self.channels.update(&self.config.name, |l| {
                    l.alert = None;
                    l.circuit = Some(circuit);
                });
                tracing::debug!(channel = %self.config.name, done, dead, "pushed");
                // Nothing accepted or refused: what is left waits (a SKU not found yet, a
                // stale value re-read) rather than being retried in a tight loop.
                (done + dead == 0).then(|| backoff(0, rand::random()))
            }
            Err(error) => {
                let person = error.class != ErrorClass::Retryable;
                tracing::warn!(channel = %self.config.name, %error, "pushing to the channel failed");
                let (channel, message) = (self.config.name.clone(), error.message.clone());
                let recorded = self
                    .store
                    .blocking(move |store| store.channel_failed(&channel, &message))
                    .await;
                if let Err(e) = recorded {
                    tracing::error!(channel = %self.config.name, error = %e, "cannot count a failed push in the store");
                }
                self.channels.update(&self.config.name, |l| {
                    l.alert = person.then(|| error.message.clone());
                    l.circuit = Some(circuit);
                });
                self.failures = self.failures.saturating_add(1);
                Some(if person {
                    ALERT_PAUSE
                } else {
                    backoff(self.failures, rand::random())
                })
            }
        }
    }

    /// Records a push the channel answered: its accepted rows leave the outbox, its refused
    /// ones go to the dead letters, and its figures are added, in one transaction.
    async fn record(&self, outcome: Outcome) {
        for (e, code, message) in &outcome.dead {
            tracing::warn!(channel = %self.config.name, sku = %e.sku, %code, %message, "the channel refused a SKU: moved to its dead letters");
        }
        let channel = self.config.name.clone();
        let (done, dead, figures) = outcome.split();
        let recorded = self
            .store
            .blocking(move |store| store.outbox_complete_with(&channel, &done, &dead, &figures))
            .await;
        if let Err(error) = recorded {
            tracing::error!(channel = %self.config.name, %error, "cannot record a push in the store; it is pushed again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(2, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(30, 1.0), Duration::from_secs(30));
        assert_eq!(backoff(30, 0.0), Duration::from_secs(15));
    }
}

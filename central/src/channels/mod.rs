//! Sales channels: availability fanned out to Shopify, WooCommerce and signed webhooks.
//!
//! - [`config`]: `[[channels]]` checked into [`ChannelConfig`];
//! - [`offer`]: what a channel is offered (pure), and how a pool's stock is shared;
//! - [`pool`]: `[[pools]]` checked, each member marked with its [`pool::Pool`];
//! - [`outbox`]: the durable outbox per channel (latest value wins, drops first);
//! - [`worker`]: one task per channel draining its outbox through its adapter, with a circuit
//!   breaker and backoff;
//! - one folder per kind: [`shopify`], [`woocommerce`], [`webhook`].
//!
//! Architecture invariant: a channel is only ever sent values from the outbox, and a row
//! leaves the outbox only once the channel accepted that row's sequence number (or refused it
//! for good, into the channel's dead letters).

pub mod api;
pub mod config;
pub mod figures;
pub mod metrics;
pub mod offer;
pub mod outbox;
pub mod pool;
pub mod shopify;
pub mod webhook;
pub mod woocommerce;
pub mod worker;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use config::{Buffer, ChannelConfig, ChannelKind};
pub use outbox::{ChannelDeadLetter, Entry, OutboxStats};

/// How an outbound call to a channel failed, as the worker decides on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Down, overloaded, throttled or timed out: try again later.
    Retryable,
    /// The credentials were refused: a person must act.
    Auth,
    /// The channel and Tally disagree on the API: a person must act.
    Contract,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ChannelError {
    pub class: ErrorClass,
    pub message: String,
}

impl ChannelError {
    pub fn retryable(message: impl Into<String>) -> ChannelError {
        ChannelError {
            class: ErrorClass::Retryable,
            message: message.into(),
        }
    }

    pub fn contract(message: impl Into<String>) -> ChannelError {
        ChannelError {
            class: ErrorClass::Contract,
            message: message.into(),
        }
    }

    /// An HTTP answer that is not a success, classified.
    pub fn http(status: u16, what: &str) -> ChannelError {
        let class = match status {
            401 | 403 => ErrorClass::Auth,
            408 | 413 | 429 | 500..=599 => ErrorClass::Retryable,
            _ => ErrorClass::Contract,
        };
        ChannelError {
            class,
            message: format!("{what} answered HTTP {status}"),
        }
    }

    pub fn transport(e: reqwest::Error, what: &str) -> ChannelError {
        // Without the URL: a webhook URL may carry a token.
        ChannelError::retryable(format!("{what} could not be reached: {}", e.without_url()))
    }
}

/// The most of an answer a channel client reads (a page of 250 items is far below it).
pub const MAX_ANSWER_BYTES: usize = 16 << 20;

/// An answer's body, refused past [`MAX_ANSWER_BYTES`] instead of read whole.
pub async fn read_limited(
    mut response: reqwest::Response,
    what: &str,
) -> Result<Vec<u8>, ChannelError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ChannelError::transport(e, what))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(ChannelError::contract(format!(
                "{what} answered more than {MAX_ANSWER_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl crate::breaker::Classify for ChannelError {
    fn is_outage(&self) -> bool {
        self.class == ErrorClass::Retryable
    }
}

/// What one push of a batch came to.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Accepted by the channel.
    pub done: Vec<Entry>,
    /// Refused for good: (entry, code, message).
    pub dead: Vec<(Entry, String, String)>,
    /// Times the client waited for the channel's rate limit.
    pub throttle_waits: u64,
    /// Calls made (lookups included).
    pub calls: u64,
    /// SKUs whose value the client read from the channel and found other than the offer.
    pub drift: Vec<Drift>,
}

impl Outcome {
    /// What the channel accepted, what it refused for good, and what the push adds to the
    /// channel's totals.
    pub fn split(
        self,
    ) -> (
        Vec<Entry>,
        Vec<(Entry, String, String)>,
        figures::PushFigures,
    ) {
        let figures = figures::PushFigures {
            calls: self.calls,
            throttle_waits: self.throttle_waits,
            drift: self.drift,
        };
        (self.done, self.dead, figures)
    }
}

/// A SKU the channel showed at another value than Tally offers (found when its value was read
/// from the channel: the first push of a SKU, a resync, a stale compare-and-set).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Drift {
    pub sku: String,
    pub channel_showed: Option<i64>,
    pub offered: u64,
}

/// The most drift rows a status keeps.
pub const DRIFT_SAMPLE: usize = 50;

/// What the admin API shows of one channel (the dashboard's channel status).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChannelStatus {
    pub name: String,
    /// `shopify`, `woocommerce` or `webhook`; empty when read from a stopped central's database.
    pub kind: String,
    pub warehouses: Vec<String>,
    /// The pool the channel shares its stock with (`[[pools]]`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    #[serde(flatten)]
    pub outbox: OutboxStats,
    /// Failed pushes (totals kept in the store, across restarts).
    pub errors: u64,
    /// Waits for the channel's rate limit.
    pub throttle_waits: u64,
    /// Calls made.
    pub calls: u64,
    pub last_error: Option<String>,
    /// Set while pushes are paused on an error only a person can fix.
    pub alert: Option<String>,
    /// `closed`, `open` or `probing`.
    pub circuit: Option<crate::breaker::CircuitState>,
    /// SKUs found drifted, and the latest of them.
    pub drift_found: u64,
    pub drift: Vec<Drift>,
    /// The last resync asked for or run on schedule (RFC 3339).
    pub last_resync: Option<String>,
}

/// What only a running channel knows (its totals are in the store: [`figures`]).
#[derive(Debug, Default, Clone)]
pub struct Live {
    pub alert: Option<String>,
    pub circuit: Option<crate::breaker::CircuitState>,
    /// A resync was asked for: the worker forgets what it cached of the channel.
    pub resync: bool,
}

/// The running channels, for the admin API.
#[derive(Debug)]
pub struct Channels {
    pub configs: Arc<Vec<ChannelConfig>>,
    live: Mutex<BTreeMap<String, Live>>,
    /// Bumped whenever outbox rows were added: wakes the workers.
    pub outbox: tokio::sync::watch::Sender<u64>,
}

impl Channels {
    pub fn new(configs: Arc<Vec<ChannelConfig>>) -> Channels {
        Channels {
            configs,
            live: Mutex::default(),
            outbox: tokio::sync::watch::channel(0).0,
        }
    }

    pub fn config(&self, name: &str) -> Option<&ChannelConfig> {
        self.configs.iter().find(|c| c.name == name)
    }

    pub(crate) fn update(&self, name: &str, f: impl FnOnce(&mut Live)) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        f(live.entry(name.to_owned()).or_default());
    }

    pub fn live(&self, name: &str) -> Live {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(name).cloned().unwrap_or_default()
    }

    pub fn request_resync(&self, name: &str) {
        self.update(name, |l| l.resync = true);
    }

    pub(crate) fn take_resync(&self, name: &str) -> bool {
        let mut taken = false;
        self.update(name, |l| taken = std::mem::take(&mut l.resync));
        taken
    }

    /// Wakes the workers: new rows are in the outbox.
    pub fn wake(&self) {
        self.outbox.send_modify(|n| *n += 1);
    }

    /// Every channel's status.
    pub fn statuses(
        &self,
        store: &crate::store::Store,
    ) -> Result<Vec<ChannelStatus>, crate::store::StoreError> {
        self.configs
            .iter()
            .filter_map(|c| self.status(store, &c.name).transpose())
            .collect()
    }

    /// The status of `name`, from the store and the running worker.
    pub fn status(
        &self,
        store: &crate::store::Store,
        name: &str,
    ) -> Result<Option<ChannelStatus>, crate::store::StoreError> {
        let Some(config) = self.config(name) else {
            return Ok(None);
        };
        let live = self.live(name);
        Ok(Some(ChannelStatus {
            kind: config.kind.as_str().to_owned(),
            warehouses: config.warehouses.iter().cloned().collect(),
            pool: config.pool.as_ref().map(|p| p.name.clone()),
            alert: live.alert,
            circuit: live.circuit,
            ..ChannelStatus::stored(store, name)?
        }))
    }
}

impl ChannelStatus {
    /// What the store holds of `name`: its outbox and totals, without what only a running
    /// channel knows (kind, warehouses, pool, alert, circuit).
    pub fn stored(
        store: &crate::store::Store,
        name: &str,
    ) -> Result<ChannelStatus, crate::store::StoreError> {
        let figures = store.channel_figures(name)?;
        Ok(ChannelStatus {
            name: name.to_owned(),
            outbox: store.outbox_stats(name)?,
            errors: figures.errors,
            throttle_waits: figures.throttle_waits,
            calls: figures.calls,
            last_error: figures.last_error,
            drift_found: figures.drift_found,
            drift: figures.drift,
            last_resync: figures
                .last_resync
                .and_then(|us| jiff::Timestamp::from_microsecond(us).ok())
                .map(|t| t.to_string()),
            ..ChannelStatus::default()
        })
    }
}

/// How long a worker pauses on an error only a person can fix before trying again.
pub const ALERT_PAUSE: Duration = Duration::from_secs(60);

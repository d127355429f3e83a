//! The agent's metrics, in one place: what is counted and how it is exposed on `/metrics`.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Reason = [(&'static str, &'static str); 1];

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    accepted: Counter,
    duplicates: Counter,
    rejected: Family<Reason, Counter>,
    commit_seconds: Histogram,
    commit_requests: Histogram,
    commit_events: Histogram,
    request_events: Histogram,
    log_bytes: Gauge,
    log_budget_bytes: Gauge,
    oldest_unacked_age_seconds: Gauge,
    last_seq: Gauge,
    acked_seq: Gauge,
    central_connected: Gauge,
}

/// Figures read at scrape time rather than counted as they happen.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub log_bytes: u64,
    /// The log's byte budget (`max_log_bytes`).
    pub log_budget_bytes: u64,
    /// How long ago the oldest event central has not acknowledged was received (0: none).
    pub oldest_unacked_age_seconds: u64,
    pub last_seq: u64,
    pub acked_seq: u64,
    pub central_connected: bool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let accepted = Counter::default();
        let duplicates = Counter::default();
        let rejected = Family::<Reason, Counter>::default();
        // 50 µs .. ~3 s
        let commit_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 17));
        let commit_requests = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        let commit_events = Histogram::new(exponential_buckets(1.0, 2.0, 16));
        let request_events = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        let log_bytes = Gauge::default();
        let log_budget_bytes = Gauge::default();
        let oldest_unacked_age_seconds = Gauge::default();
        let last_seq = Gauge::default();
        let acked_seq = Gauge::default();
        let central_connected = Gauge::default();

        let mut registry = Registry::with_prefix("tally_agent");
        registry.register("events_accepted", "Events stored durably", accepted.clone());
        registry.register(
            "events_duplicate",
            "Events recognised as retries of stored events (same client id and content)",
            duplicates.clone(),
        );
        registry.register(
            "requests_rejected",
            "Requests refused, by reason",
            rejected.clone(),
        );
        registry.register(
            "commit_seconds",
            "Time to commit and fsync one group of requests",
            commit_seconds.clone(),
        );
        registry.register(
            "commit_requests",
            "Requests sharing one durable commit",
            commit_requests.clone(),
        );
        registry.register(
            "commit_events",
            "Events in one durable commit",
            commit_events.clone(),
        );
        registry.register(
            "request_events",
            "Events per accepted request (batch size)",
            request_events.clone(),
        );
        registry.register("log_bytes", "Size of the event log file", log_bytes.clone());
        registry.register(
            "log_budget_bytes",
            "The event log's byte budget (max_log_bytes): requests that would pass it are refused",
            log_budget_bytes.clone(),
        );
        registry.register(
            "oldest_unacked_age_seconds",
            "How long ago the agent received the oldest event central has not acknowledged (0 when none)",
            oldest_unacked_age_seconds.clone(),
        );
        registry.register("last_seq", "Highest seq in the event log", last_seq.clone());
        registry.register(
            "acked_seq",
            "Highest seq central has acknowledged (pending = last_seq - acked_seq)",
            acked_seq.clone(),
        );
        registry.register(
            "central_connected",
            "1 while the sync link to central is up",
            central_connected.clone(),
        );

        Metrics {
            registry,
            accepted,
            duplicates,
            rejected,
            commit_seconds,
            commit_requests,
            commit_events,
            request_events,
            log_bytes,
            log_budget_bytes,
            oldest_unacked_age_seconds,
            last_seq,
            acked_seq,
            central_connected,
        }
    }

    pub fn observe_commit(&self, elapsed: Duration, requests: usize, events: usize) {
        self.commit_seconds.observe(elapsed.as_secs_f64());
        self.commit_requests.observe(requests as f64);
        self.commit_events.observe(events as f64);
    }

    pub fn accepted(&self, stored: u64, duplicates: u64) {
        self.accepted.inc_by(stored);
        self.duplicates.inc_by(duplicates);
        self.request_events.observe((stored + duplicates) as f64);
    }

    pub fn rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&[("reason", reason)]).inc();
    }

    /// The Prometheus text exposition, with the figures read at scrape time.
    pub fn render(&self, now: Snapshot) -> String {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.log_bytes.set(gauge(now.log_bytes));
        self.log_budget_bytes.set(gauge(now.log_budget_bytes));
        self.oldest_unacked_age_seconds
            .set(gauge(now.oldest_unacked_age_seconds));
        self.last_seq.set(gauge(now.last_seq));
        self.acked_seq.set(gauge(now.acked_seq));
        self.central_connected.set(i64::from(now.central_connected));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

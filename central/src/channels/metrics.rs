//! The channels' figures on central's `/metrics`, one family per figure labelled by channel.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::ChannelStatus;

type Channel = [(&'static str, String); 1];
/// A figure: its name, its help, and how to read it off a channel's status.
type Figure = (&'static str, &'static str, fn(&ChannelStatus) -> u64);

/// Registers every channel's outbox and push figures in `registry`.
pub fn register(registry: &mut Registry, channels: &[ChannelStatus]) {
    let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let figures: [Figure; 8] = [
        (
            "channel_pending",
            "SKUs whose new offer waits to be pushed",
            |c| c.outbox.pending,
        ),
        (
            "channel_pending_risk",
            "Of those, drops (pushed first)",
            |c| c.outbox.pending_risk,
        ),
        (
            "channel_oldest_pending_seconds",
            "How long the oldest unsent offer has waited",
            |c| c.outbox.oldest_pending_age_s.unwrap_or(0),
        ),
        (
            "channel_dead_letters",
            "SKUs the channel refused for good",
            |c| c.outbox.dead_letters,
        ),
        (
            "channel_errors",
            "Failed pushes (kept across restarts)",
            |c| c.errors,
        ),
        (
            "channel_throttle_waits",
            "Waits for the channel's rate limit (kept across restarts)",
            |c| c.throttle_waits,
        ),
        (
            "channel_alert",
            "1 while pushes are paused on an error a person must fix",
            |c| u64::from(c.alert.is_some()),
        ),
        (
            "channel_circuit_open",
            "1 while calls to the channel are held back after repeated failures",
            |c| u64::from(c.circuit == Some(crate::breaker::CircuitState::Open)),
        ),
    ];
    for (name, help, value) in figures {
        let family = Family::<Channel, Gauge>::default();
        for c in channels {
            family
                .get_or_create(&[("channel", c.name.clone())])
                .set(gauge(value(c)));
        }
        registry.register(name, help, family);
    }
}

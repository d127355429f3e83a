//! The channels in the operator's views: their status in `/v1/status` and its warnings, the
//! answers of `/v1/channels…` and `/v1/availability` as types the command line reads back, and
//! their tables. A stopped central has no channel configuration loaded: its views show what
//! the store holds (outbox, pushes, dead letters, last success), without the live figures.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::render::table;
use super::status::{STALE_AFTER_SECONDS, Warning, warning};
use crate::availability::Availability;
use crate::breaker::CircuitState;
use crate::channels::{ChannelDeadLetter, ChannelStatus, Channels, offer::offer};
use crate::store::{Store, StoreError};

/// `GET /v1/channels`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelsView {
    pub channels: Vec<ChannelStatus>,
}

/// `GET /v1/channels/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelView {
    pub channel: ChannelStatus,
    pub dead_letters: Vec<ChannelDeadLetter>,
}

/// `GET /v1/availability`: a SKU per warehouse, and per channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AvailabilityView {
    pub availability: Vec<Availability>,
    /// The availability reader's state (running central with Odoo only).
    #[serde(default)]
    pub reader: Option<serde_json::Value>,
    #[serde(default)]
    pub channels: Vec<ChannelOffer>,
}

/// What one channel is offered of a SKU and what it was last sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelOffer {
    pub channel: String,
    /// What the channel is offered now from the stored availability (configured channels
    /// only; absent when the SKU is ignored for the channel or central is stopped).
    pub offered: Option<u64>,
    /// What the channel last accepted, its outbox sequence and when (RFC 3339).
    pub last_sent: Option<u64>,
    pub last_sent_seq: Option<u64>,
    pub last_sent_at: Option<String>,
}

/// The channels' status: the configured ones while central runs, or those the stopped
/// central's store holds anything of. `None` when there are none.
pub fn statuses(
    store: &Store,
    channels: Option<&Channels>,
) -> Result<Option<Vec<ChannelStatus>>, StoreError> {
    let list = match channels {
        Some(channels) => channels.statuses(store)?,
        None => store
            .channel_names()?
            .into_iter()
            .map(|name| stored_status(store, name))
            .collect::<Result<_, _>>()?,
    };
    Ok(Some(list).filter(|l: &Vec<_>| !l.is_empty()))
}

fn stored_status(store: &Store, name: String) -> Result<ChannelStatus, StoreError> {
    ChannelStatus::stored(store, &name)
}

/// One channel, from the store when central is stopped (`None`: the store knows no such
/// channel).
pub fn stored_channel(store: &Store, name: &str) -> Result<Option<ChannelView>, StoreError> {
    if !store.channel_names()?.contains(name) {
        return Ok(None);
    }
    Ok(Some(ChannelView {
        channel: stored_status(store, name.to_owned())?,
        dead_letters: store.channel_dead_letters(name)?,
    }))
}

/// A SKU's availability per warehouse and what each channel is offered and was last sent.
pub fn availability(
    store: &Store,
    sku: &str,
    warehouse: Option<&str>,
    channels: Option<&Channels>,
) -> Result<AvailabilityView, StoreError> {
    let all = store.availability(sku, None)?;
    let names: Vec<String> = match channels {
        Some(c) => c.configs.iter().map(|c| c.name.clone()).collect(),
        None => store.channel_names()?.into_iter().collect(),
    };
    let mut offers = Vec::new();
    for name in names {
        let config = channels.and_then(|c| c.config(&name));
        let offered = config
            .filter(|c| c.channel_sku(sku).is_some())
            .map(|c| offer(c, &all));
        let sent = store.channel_pushed(&name, sku)?;
        if config.is_none() && sent.is_none() {
            continue;
        }
        offers.push(ChannelOffer {
            channel: name,
            offered,
            last_sent: sent.as_ref().map(|p| p.offer),
            last_sent_seq: sent.as_ref().map(|p| p.seq),
            last_sent_at: sent.as_ref().and_then(|p| rfc3339(p.at)),
        });
    }
    let availability = all
        .into_iter()
        .filter(|r| warehouse.is_none_or(|w| r.warehouse == w))
        .collect();
    Ok(AvailabilityView {
        availability,
        reader: None,
        channels: offers,
    })
}

/// Microseconds since the epoch as RFC 3339.
pub fn rfc3339(micros: i64) -> Option<String> {
    jiff::Timestamp::from_microsecond(micros)
        .ok()
        .map(|t| t.to_string())
}

/// A channel is behind when its oldest unsent offer is older than this (the alert rule
/// `TallyChannelBehind` uses the same figure).
pub const CHANNEL_BEHIND_AFTER_SECONDS: u64 = STALE_AFTER_SECONDS as u64;

/// The warnings of the channels: behind (oldest pending too old), failing (an alert or an
/// open circuit), dead letters. The same conditions as the channel alert rules.
pub fn warnings(channels: &[ChannelStatus]) -> Vec<Warning> {
    let mut out = Vec::new();
    for c in channels {
        let name = &c.name;
        if let Some(age) = c
            .outbox
            .oldest_pending_age_s
            .filter(|a| *a > CHANNEL_BEHIND_AFTER_SECONDS)
        {
            out.push(warning(
                "channel-behind",
                "warning",
                format!(
                    "channel {name} is behind: {} SKUs wait, the oldest for {} min",
                    c.outbox.pending,
                    age / 60
                ),
            ));
        }
        if let Some(alert) = &c.alert {
            out.push(warning(
                "channel-alert",
                "critical",
                format!("pushes to channel {name} are paused: {alert}"),
            ));
        }
        if c.circuit == Some(CircuitState::Open) {
            let why = c.last_error.as_deref().unwrap_or("repeated failures");
            out.push(warning(
                "channel-circuit-open",
                "critical",
                format!("calls to channel {name} are held back: {why}"),
            ));
        }
        if c.outbox.dead_letters > 0 {
            out.push(warning(
                "channel-dead-letters",
                "warning",
                format!(
                    "channel {name} refused {} SKUs for good (tally-central channel status {name})",
                    c.outbox.dead_letters
                ),
            ));
        }
    }
    out
}

fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn circuit(c: &ChannelStatus) -> String {
    opt(c.circuit.map(CircuitState::as_str))
}

/// The channels' table.
pub fn render_channels(view: &ChannelsView) -> String {
    let rows: Vec<Vec<String>> = view
        .channels
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                opt(Some(&c.kind).filter(|k| !k.is_empty())),
                c.outbox.pending.to_string(),
                opt(c.outbox.oldest_pending_age_s.map(|s| format!("{s}s"))),
                opt(c.outbox.last_success.as_deref()),
                c.errors.to_string(),
                c.outbox.dead_letters.to_string(),
                c.drift_found.to_string(),
                circuit(c),
                opt(c.alert.as_deref()),
            ]
        })
        .collect();
    table(
        &[
            "CHANNEL",
            "KIND",
            "PENDING",
            "OLDEST",
            "LAST SUCCESS",
            "ERRORS",
            "DEAD",
            "DRIFT",
            "CIRCUIT",
            "ALERT",
        ],
        &rows,
        "no channels (none configured, or none in this database)",
    )
}

/// One channel: its line, its drift sample and its dead letters.
pub fn render_channel(view: &ChannelView) -> String {
    let c = &view.channel;
    let mut out = render_channels(&ChannelsView {
        channels: vec![c.clone()],
    });
    let _ = writeln!(
        out,
        "last error: {}   last resync: {}",
        opt(c.last_error.as_deref()),
        opt(c.last_resync.as_deref())
    );
    out.push_str("\nDRIFT\n");
    let rows: Vec<Vec<String>> = c
        .drift
        .iter()
        .map(|d| vec![d.sku.clone(), opt(d.channel_showed), d.offered.to_string()])
        .collect();
    out.push_str(&table(
        &["SKU", "CHANNEL SHOWED", "OFFERED"],
        &rows,
        "no drift found",
    ));
    out.push_str("\nDEAD LETTERS\n");
    let rows: Vec<Vec<String>> = view
        .dead_letters
        .iter()
        .map(|d| {
            vec![
                d.sku.clone(),
                d.offer.to_string(),
                d.code.clone(),
                d.message.clone(),
            ]
        })
        .collect();
    out.push_str(&table(
        &["SKU", "OFFER", "CODE", "MESSAGE"],
        &rows,
        "the channel refused nothing",
    ));
    out
}

/// A SKU per warehouse, then per channel.
pub fn render_availability(view: &AvailabilityView) -> String {
    let rows: Vec<Vec<String>> = view
        .availability
        .iter()
        .map(|a| {
            vec![
                a.sku.clone(),
                a.warehouse.clone(),
                a.on_hand.to_string(),
                a.reserved.to_string(),
                a.free.to_string(),
                a.read_at.clone(),
            ]
        })
        .collect();
    let mut out = table(
        &["SKU", "WAREHOUSE", "ON HAND", "RESERVED", "FREE", "READ AT"],
        &rows,
        "no availability of this SKU was read from Odoo",
    );
    if !view.channels.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = view
            .channels
            .iter()
            .map(|c| {
                vec![
                    c.channel.clone(),
                    opt(c.offered),
                    opt(c.last_sent),
                    opt(c.last_sent_seq),
                    opt(c.last_sent_at.as_deref()),
                ]
            })
            .collect();
        out.push_str(&table(
            &["CHANNEL", "OFFERED", "LAST SENT", "SEQ", "SENT AT"],
            &rows,
            "",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::OutboxStats;

    fn channel(age: Option<u64>, alert: Option<&str>, circuit: CircuitState) -> ChannelStatus {
        ChannelStatus {
            name: "shop".into(),
            outbox: OutboxStats {
                pending: 3,
                oldest_pending_age_s: age,
                ..OutboxStats::default()
            },
            alert: alert.map(str::to_owned),
            circuit: Some(circuit),
            ..ChannelStatus::default()
        }
    }

    fn codes(c: ChannelStatus) -> Vec<String> {
        warnings(&[c]).into_iter().map(|w| w.code).collect()
    }

    #[test]
    fn a_channel_behind_or_failing_is_warned_about() {
        let fine = channel(
            Some(CHANNEL_BEHIND_AFTER_SECONDS),
            None,
            CircuitState::Closed,
        );
        assert!(codes(fine).is_empty());
        let behind = channel(
            Some(CHANNEL_BEHIND_AFTER_SECONDS + 1),
            None,
            CircuitState::Closed,
        );
        assert_eq!(codes(behind), ["channel-behind"]);
        let failing = channel(None, Some("token refused"), CircuitState::Open);
        assert_eq!(codes(failing), ["channel-alert", "channel-circuit-open"]);
    }

    #[test]
    fn empty_answers_say_so() {
        assert!(render_channels(&ChannelsView::default()).contains("no channels"));
        assert!(render_availability(&AvailabilityView::default()).contains("no availability"));
    }
}

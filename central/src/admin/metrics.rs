//! `/metrics`: Prometheus metrics computed at scrape time from the store, the live sessions and
//! the merge (no token: the listener is on loopback, or behind TLS, and shows no secret). The
//! alert rules in `packaging/prometheus/tally-rules.yml` are written against these names.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{AdminState, blocking_error, views};

type Agent = [(&'static str, String); 1];

fn gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub async fn metrics(State(state): State<AdminState>) -> Response {
    let store = state.store.clone();
    let live = state.hub.snapshot();
    let merging = state.merge.is_some();
    let merge_state = state.merge.as_ref().map(|m| m.snapshot());
    let channels = state.channels.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let agents = views::agents(&store, &live, merging)?;
        let merge = views::merge(&store, merge_state.as_ref(), true)?;
        let statuses = match &channels {
            Some(c) => c.statuses(&store)?,
            None => Vec::new(),
        };
        Ok::<_, crate::store::StoreError>((agents, merge, statuses))
    })
    .await;
    let (agents, merge, channel_statuses) = match loaded {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return blocking_error(e),
        Err(e) => return blocking_error(e),
    };
    let mut registry = Registry::with_prefix("tally_central");
    let connected = Gauge::<i64>::default();
    let families: [(&str, &str); 6] = [
        (
            "agent_connected",
            "1 while the agent's sync session is live (0 once it was seen and left, or never connected since central started)",
        ),
        (
            "agent_stored_seq",
            "Highest seq journaled for the agent's current log",
        ),
        (
            "agent_lag_events",
            "Events the agent holds that central has not journaled yet",
        ),
        (
            "agent_unmerged_events",
            "Events journaled for the agent that the merge has not applied to Odoo or parked yet (0 without Odoo configured)",
        ),
        (
            "agent_oldest_unsynced_age_seconds",
            "How long ago the agent received the oldest event central has not journaled yet (0 when none)",
        ),
        (
            "agent_oldest_unmerged_age_seconds",
            "How long ago the agent received the oldest journaled event not merged yet (0 when none, or without Odoo)",
        ),
    ];
    let mut values: BTreeMap<&str, Family<Agent, Gauge>> = BTreeMap::new();
    let mut set = |name: &'static str, agent: &str, value: i64| {
        values
            .entry(name)
            .or_default()
            .get_or_create(&[("agent", agent.to_owned())])
            .set(value);
    };
    let mut connected_now = 0;
    for agent in agents.agents.iter().filter(|a| !a.revoked) {
        let id = agent.agent_id.as_str();
        connected_now += i64::from(agent.connected);
        set("agent_connected", id, i64::from(agent.connected));
        set(
            "agent_stored_seq",
            id,
            gauge(
                agent
                    .stored_seq
                    .unwrap_or_else(|| agent.logs.iter().map(|l| l.stored_seq).max().unwrap_or(0)),
            ),
        );
        set("agent_lag_events", id, gauge(agent.lag_events.unwrap_or(0)));
        let unmerged = if merging { agent.unmerged_events() } else { 0 };
        set("agent_unmerged_events", id, gauge(unmerged));
        let unsynced = agent.oldest_unsynced_age_seconds.unwrap_or(0.0);
        set("agent_oldest_unsynced_age_seconds", id, unsynced as i64);
        let unmerged_age = agent.oldest_unmerged_age_seconds().unwrap_or(0.0);
        set("agent_oldest_unmerged_age_seconds", id, unmerged_age as i64);
    }
    connected.set(connected_now);
    registry.register(
        "agents_connected",
        "Agents with a live sync session",
        connected,
    );
    for (name, help) in families {
        registry.register(name, help, values.remove(name).unwrap_or_default());
    }
    // The alerting metrics exist with or without Odoo, so that an alert rule on them is not
    // silently matching nothing.
    let flags: [(&str, &str, bool); 3] = [
        (
            "odoo_connected",
            "1 while central is logged in to Odoo",
            merge.connected,
        ),
        (
            "odoo_alert",
            "1 while merging is paused on an error a person must fix (see GET /v1/merge)",
            merge.alert.is_some(),
        ),
        (
            "odoo_circuit_open",
            "1 while calls to Odoo are held back after repeated failures",
            merge.circuit.as_deref() == Some("open"),
        ),
    ];
    for (name, help, on) in flags {
        let flag = Gauge::<i64>::default();
        flag.set(i64::from(on));
        registry.register(name, help, flag);
    }
    let figures = [
        (
            "merged_events",
            "Events merged into Odoo (parked ones not counted), as merged_events in GET /v1/merge",
            merge.merged_events,
        ),
        (
            "dead_letters",
            "Events parked because Odoo could not take them (see GET /v1/dead-letters)",
            merge.parked_events,
        ),
        (
            "queued_for_retry",
            "Parked events an operator asked to retry, not applied yet",
            merge.queued_for_retry,
        ),
    ];
    for (name, help, value) in figures {
        let figure = Gauge::<i64>::default();
        figure.set(gauge(value));
        registry.register(name, help, figure);
    }
    crate::channels::metrics::register(&mut registry, &channel_statuses);
    let mut text = String::new();
    let _ = encode(&mut text, &registry);
    (
        [(
            header::CONTENT_TYPE,
            tally_service::OPENMETRICS_CONTENT_TYPE,
        )],
        text,
    )
        .into_response()
}

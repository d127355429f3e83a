//! The whole picture on one screen (`GET /v1/status`, `tally-central status`, the dashboard):
//! agents, the Odoo link, parked events, notices, and the warnings an operator should act on.
//! The warnings are the conditions of the alert rules in `packaging/prometheus/tally-rules.yml`
//! that central can see itself (an agent's disk budget is the agent's own metric).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::views::{self, AgentView, DeadLetterGroup, MergeView};
use super::{AdminState, with_store};
use crate::channels::Channels;
use crate::merge::MergeState;
use crate::store::{Store, StoreError};
use crate::sync::hub::LiveAgent;

/// The oldest event not journaled, or journaled and not merged, is warned about past this age
/// (the alert rules use the same figure).
pub const STALE_AFTER_SECONDS: f64 = 15.0 * 60.0;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    /// Whether central is running (`false`: the command line read its stopped database).
    pub running: bool,
    pub version: String,
    pub agents: Vec<AgentView>,
    pub odoo: MergeView,
    pub dead_letters: DeadLetterSummary,
    /// How many notices the merge left (see `GET /v1/notices`).
    pub notices: u64,
    pub warnings: Vec<Warning>,
    /// Each channel's status, when central has channels (or, stopped, its store holds any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<crate::channels::ChannelStatus>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterSummary {
    pub total: u64,
    pub queued_for_retry: u64,
    pub groups: Vec<DeadLetterGroup>,
}

/// A condition someone should act on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    /// `agent-offline`, `unsynced-events-old`, `unmerged-events-old`, `odoo-alert`,
    /// `odoo-circuit-open`, `odoo-disconnected`, `dead-letters`, `central-stopped`,
    /// `channel-behind`, `channel-alert`, `channel-circuit-open`, `channel-dead-letters`.
    pub code: String,
    /// `critical` or `warning`.
    pub severity: String,
    pub message: String,
}

pub(crate) fn warning(code: &str, severity: &str, message: String) -> Warning {
    Warning {
        code: code.to_owned(),
        severity: severity.to_owned(),
        message,
    }
}

fn minutes(seconds: f64) -> String {
    format!("{:.0} min", (seconds / 60.0).floor())
}

/// The warnings of a picture.
pub fn warnings(status: &StatusView) -> Vec<Warning> {
    let mut out = Vec::new();
    if !status.running {
        out.push(warning(
            "central-stopped",
            "critical",
            "central is not running: nothing is journaled or merged (read from its database)"
                .to_owned(),
        ));
    }
    for agent in status.agents.iter().filter(|a| !a.revoked) {
        let id = &agent.agent_id;
        if status.running && !agent.connected {
            let since = match &agent.last_seen {
                Some(seen) => format!("last seen {seen}"),
                None => "not connected since central started".to_owned(),
            };
            out.push(warning(
                "agent-offline",
                "warning",
                format!("agent {id} is offline ({since})"),
            ));
        }
        if let Some(age) = agent
            .oldest_unsynced_age_seconds
            .filter(|a| *a > STALE_AFTER_SECONDS)
        {
            out.push(warning(
                "unsynced-events-old",
                "warning",
                format!(
                    "agent {id} holds events central has not journaled for {}",
                    minutes(age)
                ),
            ));
        }
        if let Some(age) = agent
            .oldest_unmerged_age_seconds()
            .filter(|a| *a > STALE_AFTER_SECONDS)
        {
            out.push(warning(
                "unmerged-events-old",
                "warning",
                format!(
                    "events of agent {id} have waited {} to be merged into Odoo",
                    minutes(age)
                ),
            ));
        }
    }
    let odoo = &status.odoo;
    if let Some(alert) = &odoo.alert {
        out.push(warning(
            "odoo-alert",
            "critical",
            format!("merging into Odoo is paused: {alert}"),
        ));
    }
    if odoo.circuit.as_deref() == Some("open") {
        out.push(warning(
            "odoo-circuit-open",
            "critical",
            "calls to Odoo are held back after repeated failures".to_owned(),
        ));
    }
    if odoo.enabled == Some(true) && !odoo.connected {
        let why = odoo.last_error.as_deref().unwrap_or("not connected yet");
        out.push(warning(
            "odoo-disconnected",
            "warning",
            format!("central is not connected to Odoo: {why}"),
        ));
    }
    let parked = &status.dead_letters;
    if parked.total > 0 {
        out.push(warning(
            "dead-letters",
            "warning",
            format!(
                "{} parked events of {} (warehouse, SKU): retry or discard them",
                parked.total,
                parked.groups.len()
            ),
        ));
    }
    if let Some(channels) = &status.channels {
        out.extend(super::channels::warnings(channels));
    }
    out
}

/// The picture from the store, the live sessions, the merge and the channels (`running`:
/// central serves; stopped, the channels are those its store holds anything of).
pub fn build(
    store: &Store,
    live: &std::collections::HashMap<String, LiveAgent>,
    merge: Option<&MergeState>,
    channels: Option<&Channels>,
    running: bool,
) -> Result<StatusView, StoreError> {
    let agents = views::agents(store, live, merge.is_some())?;
    let parked = views::dead_letters(store, 0)?;
    let mut status = StatusView {
        running,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        agents: agents.agents,
        odoo: views::merge(store, merge, running)?,
        dead_letters: DeadLetterSummary {
            total: parked.total,
            queued_for_retry: parked.queued_for_retry,
            groups: parked.groups,
        },
        notices: store.notices_page(0)?.1,
        warnings: Vec::new(),
        channels: super::channels::statuses(store, channels)?,
    };
    status.warnings = warnings(&status);
    Ok(status)
}

pub async fn status(State(state): State<AdminState>) -> Response {
    let live = state.hub.snapshot();
    let merge = state.merge.as_ref().map(|m| m.snapshot());
    let channels = state.channels.clone();
    let work = move |store: &Store| build(store, &live, merge.as_ref(), channels.as_deref(), true);
    with_store(&state.store, work, |view| Json(view).into_response()).await
}

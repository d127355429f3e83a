//! What the admin API answers and the command line prints: one set of types, built here from
//! the store (and, while central runs, its live sessions and merge), serialised as the API's
//! JSON, read back by the command line, and rendered as tables by [`super::render`].

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use tally_protocol::{LogId, Timestamp};

use crate::merge::MergeState;
use crate::merge::state::{PARKED_BEHIND, StreamProgress};
use crate::store::{Store, StoreError};
use crate::sync::hub::LiveAgent;

/// An RFC 3339 time for people and scripts (the microseconds as digits if out of range).
pub fn time(at: Timestamp) -> String {
    jiff::Timestamp::from_microsecond(at.as_micros())
        .map_or_else(|_| at.as_micros().to_string(), |t| t.to_string())
}

fn seconds_since(now: Timestamp, at: Timestamp) -> f64 {
    (now.as_micros() - at.as_micros()).max(0) as f64 / 1e6
}

fn is_false(value: &bool) -> bool {
    !value
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentsView {
    pub agents: Vec<AgentView>,
}

/// One agent: its registration, its live session (while central runs and the agent connected
/// since it started), and each log central has journaled from it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentView {
    pub agent_id: String,
    pub warehouse: String,
    pub created_at: String,
    pub revoked: bool,
    pub connected: bool,
    /// Central has journaled more than one log of this agent (its disk was replaced or its
    /// log restored from a backup).
    #[serde(default, skip_serializing_if = "is_false")]
    pub log_replaced: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// The log of the live session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_seq: Option<u64>,
    /// Events the agent holds that central has not journaled yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_events: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_unsynced_age_seconds: Option<f64>,
    /// Positive: the agent's clock is behind central's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_behind_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_measured_at: Option<String>,
    pub logs: Vec<LogView>,
}

/// One of an agent's logs as central journaled and merged it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogView {
    pub log_id: String,
    pub stored_seq: u64,
    pub first_seen: String,
    /// Where the merge stands: every event up to it is merged or set aside.
    pub resolved_seq: u64,
    pub merged_events: u64,
    pub parked_events: u64,
    pub queued_for_retry: u64,
    pub discarded_events: u64,
    pub unmerged_events: u64,
    /// How long ago the agent received the oldest event not merged yet (with Odoo configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_unmerged_age_seconds: Option<f64>,
}

impl AgentView {
    /// The oldest unmerged event's age over all of this agent's logs.
    pub fn oldest_unmerged_age_seconds(&self) -> Option<f64> {
        self.logs
            .iter()
            .filter_map(|l| l.oldest_unmerged_age_seconds)
            .reduce(f64::max)
    }

    pub fn unmerged_events(&self) -> u64 {
        self.logs.iter().map(|l| l.unmerged_events).sum()
    }
}

/// Every agent, from the store and the live sessions (`live` is empty while central is
/// stopped). With `merging`, each log's oldest unmerged event is looked up for its age.
pub fn agents(
    store: &Store,
    live: &HashMap<String, LiveAgent>,
    merging: bool,
) -> Result<AgentsView, StoreError> {
    let registered = store.list_agents()?;
    let streams = store.streams()?;
    let merged = store.merge_progress()?;
    let now = Timestamp::now();
    let mut out = Vec::with_capacity(registered.len());
    for agent in registered {
        let mut logs = Vec::new();
        for s in streams.iter().filter(|s| s.agent_id == agent.agent_id) {
            let progress: StreamProgress = merged
                .get(&(s.agent_id.clone(), s.log_id))
                .copied()
                .unwrap_or_default();
            let unmerged_events = s.stored_seq.saturating_sub(progress.resolved_seq);
            let oldest_unmerged_age_seconds = if merging && unmerged_events > 0 {
                store
                    .read_journal(&s.agent_id, s.log_id, progress.resolved_seq, 1)?
                    .first()
                    .map(|e| seconds_since(now, e.received_at))
            } else {
                None
            };
            logs.push(LogView {
                log_id: s.log_id.to_string(),
                stored_seq: s.stored_seq,
                first_seen: time(s.created_at),
                resolved_seq: progress.resolved_seq,
                merged_events: progress.merged(),
                parked_events: progress.parked,
                queued_for_retry: progress.queued_for_retry,
                discarded_events: progress.discarded,
                unmerged_events,
                oldest_unmerged_age_seconds,
            });
        }
        let mut view = AgentView {
            log_replaced: logs.len() > 1,
            agent_id: agent.agent_id.clone(),
            warehouse: agent.warehouse,
            created_at: time(agent.created_at),
            revoked: agent.revoked_at.is_some(),
            logs,
            ..AgentView::default()
        };
        if let Some((behind, measured_at)) = store.clock_offset(&agent.agent_id)? {
            view.clock_behind_seconds = Some(behind as f64 / 1e6);
            view.clock_measured_at = Some(time(measured_at));
        }
        if let Some(live) = live.get(&agent.agent_id) {
            let lag = live.head_seq.saturating_sub(live.stored_seq);
            view.connected = live.connected;
            view.last_seen = Some(time(live.last_seen));
            view.peer = Some(live.peer.to_string());
            view.agent_version = Some(live.agent_version.clone());
            view.log_id = Some(live.log_id.to_string());
            view.stored_seq = Some(live.stored_seq);
            view.head_seq = Some(live.head_seq);
            view.lag_events = Some(lag);
            view.oldest_unsynced_age_seconds = live
                .oldest_unsynced_at
                .filter(|_| lag > 0)
                .map(|at| seconds_since(now, at));
        }
        out.push(view);
    }
    Ok(AgentsView { agents: out })
}

/// The merge into Odoo: its live state (while central runs with Odoo configured) and the
/// events merged, parked, queued for a retry and discarded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MergeView {
    /// Whether central merges into Odoo (an Odoo URL is configured); `None` while central is
    /// stopped (the command line cannot know).
    pub enabled: Option<bool>,
    #[serde(default)]
    pub connected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odoo_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odoo_api: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// `closed`, `open` or `probing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_opens_in_s: Option<u64>,
    /// When a pass last merged or parked events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_merge_at: Option<String>,
    pub merged_events: u64,
    pub parked_events: u64,
    pub queued_for_retry: u64,
    pub discarded_events: u64,
    /// Journaled events the merge has not resolved yet.
    pub unmerged_events: u64,
}

/// `state` is the live merge (`None`: not configured), `running` whether central runs.
pub fn merge(
    store: &Store,
    state: Option<&MergeState>,
    running: bool,
) -> Result<MergeView, StoreError> {
    let progress = store.merge_progress()?;
    let streams = store.streams()?;
    let sum = |f: fn(&StreamProgress) -> u64| progress.values().map(f).sum::<u64>();
    let unmerged = streams
        .iter()
        .map(|s| {
            let resolved = progress
                .get(&(s.agent_id.clone(), s.log_id))
                .map_or(0, |p| p.resolved_seq);
            s.stored_seq.saturating_sub(resolved)
        })
        .sum();
    let mut view = MergeView {
        enabled: running.then_some(state.is_some()),
        merged_events: sum(StreamProgress::merged),
        parked_events: sum(|p| p.parked),
        queued_for_retry: sum(|p| p.queued_for_retry),
        discarded_events: sum(|p| p.discarded),
        unmerged_events: unmerged,
        ..MergeView::default()
    };
    if let Some(state) = state {
        view.connected = state.connected;
        view.odoo_version = state.odoo_version;
        view.odoo_api = state.odoo_api.map(|t| t.to_string());
        view.alert.clone_from(&state.alert);
        view.last_error.clone_from(&state.last_error);
        view.circuit = state.circuit.map(|c| c.as_str().to_owned());
        view.circuit_opens_in_s = state.circuit_opens_in_s;
        view.last_merge_at = state.last_merge_at.map(time);
    }
    Ok(view)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeadLettersView {
    /// The first `limit` parked events (agent, log and seq order).
    pub dead_letters: Vec<DeadLetterView>,
    /// How many events are parked.
    pub total: u64,
    pub queued_for_retry: u64,
    /// Every parked (warehouse, SKU), what parked it, and how many events wait.
    pub groups: Vec<DeadLetterGroup>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterView {
    pub agent_id: String,
    pub log_id: String,
    pub seq: u64,
    pub warehouse: String,
    pub sku: String,
    pub reason: String,
    pub message: String,
    pub parked_at: String,
}

/// The parked events of one (warehouse, SKU): retried or discarded together.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterGroup {
    pub warehouse: String,
    pub sku: String,
    pub events: u64,
    /// What parked the first of them (the rest may only wait behind it).
    pub reason: String,
    pub message: String,
    pub first_parked_at: String,
    /// Up to 20 of the events: `agent:seq`.
    pub sample: Vec<String>,
}

/// How many events of a group are listed by name.
const GROUP_SAMPLE: usize = 20;

pub fn dead_letters(store: &Store, limit: usize) -> Result<DeadLettersView, StoreError> {
    let (page, total) = store.dead_letters_page(limit)?;
    let letter_view =
        |(agent, log, seq, l): (String, LogId, u64, crate::merge::state::DeadLetter)| {
            DeadLetterView {
                agent_id: agent,
                log_id: log.to_string(),
                seq,
                warehouse: l.warehouse,
                sku: l.sku,
                reason: l.reason,
                message: l.message,
                parked_at: time(Timestamp::from_micros(l.parked_at)),
            }
        };
    let mut groups: BTreeMap<(String, String), (DeadLetterGroup, i64, bool)> = BTreeMap::new();
    for (agent, _, seq, l) in store.dead_letters()? {
        let key = (l.warehouse.clone(), l.sku.clone());
        let (group, first, has_cause) = groups.entry(key).or_insert_with(|| {
            (
                DeadLetterGroup {
                    warehouse: l.warehouse.clone(),
                    sku: l.sku.clone(),
                    ..DeadLetterGroup::default()
                },
                i64::MAX,
                false,
            )
        });
        group.events += 1;
        if group.sample.len() < GROUP_SAMPLE {
            group.sample.push(format!("{agent}:{seq}"));
        }
        // The reason shown is the cause, not "parked behind" it, when there is one.
        let cause = l.reason != PARKED_BEHIND;
        if (cause && !*has_cause) || (cause == *has_cause && l.parked_at < *first) {
            group.reason.clone_from(&l.reason);
            group.message.clone_from(&l.message);
            *has_cause |= cause;
        }
        *first = (*first).min(l.parked_at);
    }
    Ok(DeadLettersView {
        dead_letters: page.into_iter().map(letter_view).collect(),
        total,
        queued_for_retry: store.retry_count()?,
        groups: groups
            .into_values()
            .map(|(mut g, first, _)| {
                g.first_parked_at = time(Timestamp::from_micros(first));
                g
            })
            .collect(),
    })
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NoticesView {
    pub notices: Vec<NoticeView>,
    pub total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NoticeView {
    pub agent_id: String,
    pub log_id: String,
    pub seq: u64,
    pub warehouse: String,
    pub sku: String,
    pub kind: String,
    pub message: String,
    pub noticed_at: String,
}

pub fn notices(store: &Store, limit: usize) -> Result<NoticesView, StoreError> {
    let (page, total) = store.notices_page(limit)?;
    Ok(NoticesView {
        notices: page
            .into_iter()
            .map(|(agent, log, seq, n)| NoticeView {
                agent_id: agent,
                log_id: log.to_string(),
                seq,
                warehouse: n.warehouse,
                sku: n.sku,
                kind: n.kind,
                message: n.message,
                noticed_at: time(Timestamp::from_micros(n.noticed_at)),
            })
            .collect(),
        total,
    })
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditView {
    /// Newest first.
    pub entries: Vec<AuditEntryView>,
    pub total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditEntryView {
    pub id: u64,
    pub at: String,
    pub role: String,
    pub action: String,
    pub target: String,
    #[serde(default)]
    pub reason: Option<String>,
    pub detail: String,
}

pub fn audit(store: &Store, limit: usize) -> Result<AuditView, StoreError> {
    let (entries, total) = store.audit_page(limit)?;
    Ok(AuditView {
        entries: entries
            .into_iter()
            .map(|(id, e)| AuditEntryView {
                id,
                at: time(Timestamp::from_micros(e.at)),
                role: e.role,
                action: e.action,
                target: e.target,
                reason: e.reason,
                detail: e.detail,
            })
            .collect(),
        total,
    })
}

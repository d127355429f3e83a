//! "Where is my scan?": one event's path from the agent to Odoo (`GET /v1/trace`,
//! `tally-central trace`, the dashboard's trace search): accepted by the agent (seq, time),
//! journaled by central, and merged into which Odoo picking, or set aside and why.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tally_protocol::{LogId, Timestamp};

use super::views::time;
use super::{AdminState, error, handlers::latest_log, with_store};
use crate::merge::merged::SetAside;
use crate::store::{Store, StoreError};
use crate::sync::hub::LiveAgent;

/// What to look for: the client's event id, or a seq (of the agent's latest log unless given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Id(String),
    Seq { log: Option<LogId>, seq: u64 },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceView {
    pub agent_id: String,
    /// What was asked for: `id X` or `seq N`.
    pub query: String,
    pub found: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<TracedEvent>,
    /// Where the event is now: `not-journaled`, `waiting`, `merged`, `parked`,
    /// `queued-for-retry`, `discarded`, `journaled` (central merges nothing).
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picking: Option<TracedPicking>,
    pub steps: Vec<Step>,
    /// Once the event is merged: for each channel, the last push of its SKU, and whether it
    /// was made after the merge (so it carried the event's effect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<TracedPush>>,
}

/// What a channel was last sent of the event's SKU.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TracedPush {
    pub channel: String,
    /// The value the channel accepted, with its outbox sequence and time.
    pub sent: u64,
    pub seq: u64,
    pub at: String,
    /// Whether the push came after the event was merged into Odoo (it then carried the
    /// event's effect, read back from Odoo with everything else).
    pub after_merge: bool,
}

/// The last push of `sku` to each channel the store knows, against the merge time.
fn pushes(store: &Store, sku: &str, merged_at: i64) -> Result<Vec<TracedPush>, StoreError> {
    let mut out = Vec::new();
    for channel in store.channel_names()? {
        if let Some(p) = store.channel_pushed(&channel, sku)? {
            out.push(TracedPush {
                channel,
                sent: p.offer,
                seq: p.seq,
                at: time(Timestamp::from_micros(p.at)),
                after_merge: p.at >= merged_at,
            });
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TracedEvent {
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub sku: String,
    pub qty: String,
    pub location: Option<String>,
    pub reference: Option<String>,
    pub occurred_at: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TracedPicking {
    pub name: String,
    /// `done` (created and validated by Tally) or `filled` (an open picking of Odoo's).
    pub state: String,
    pub merged_at: String,
}

/// One step of the path: `done`, `waiting` or `failed`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub step: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    pub detail: String,
}

fn step(name: &str, status: &str, at: Option<String>, detail: String) -> Step {
    Step {
        step: name.to_owned(),
        status: status.to_owned(),
        at,
        detail,
    }
}

/// Follows one event. `live` is the agent's live session, `merging` whether central merges
/// into Odoo (`None`: unknown, central is stopped).
pub fn build(
    store: &Store,
    agent: &str,
    lookup: &Lookup,
    live: Option<&LiveAgent>,
    merging: Option<bool>,
) -> Result<TraceView, StoreError> {
    let mut view = TraceView {
        agent_id: agent.to_owned(),
        query: match lookup {
            Lookup::Id(id) => format!("id {id}"),
            Lookup::Seq { seq, .. } => format!("seq {seq}"),
        },
        state: "not-journaled".to_owned(),
        ..TraceView::default()
    };
    let found = match lookup {
        Lookup::Id(id) => store.find_event_id(agent, id)?,
        Lookup::Seq { log, seq } => {
            let log = match log {
                Some(log) => Some(*log),
                None => latest_log(store, agent)?,
            };
            match log {
                Some(log) => store
                    .read_journal_seqs(agent, log, &[*seq])?
                    .first()
                    .map(|_| (log, *seq)),
                None => None,
            }
        }
    };
    let Some((log_id, seq)) = found else {
        let held = match (live, lookup) {
            (Some(live), Lookup::Seq { seq, .. }) if *seq <= live.head_seq => {
                format!("the agent holds seq {seq} (its log reaches {}); central has not journaled it yet", live.head_seq)
            }
            (Some(live), _) => format!(
                "central has journaled up to seq {} of the agent's {} events; if the agent accepted this event it is not synced yet",
                live.stored_seq, live.head_seq
            ),
            (None, _) => "central has not journaled it; if the agent accepted it, it has not synced yet (ask the agent: GET /v1/events)".to_owned(),
        };
        view.steps
            .push(step("journaled by central", "waiting", None, held));
        return Ok(view);
    };
    let event = store
        .read_journal_seqs(agent, log_id, &[seq])?
        .into_iter()
        .next()
        .ok_or_else(|| {
            StoreError::Corrupt(format!("indexed event {agent}:{seq} is not journaled"))
        })?;
    view.found = true;
    view.log_id = Some(log_id.to_string());
    view.seq = Some(seq);
    let e = &event.event;
    view.event = Some(TracedEvent {
        id: e.id.clone(),
        kind: e.kind.as_str().to_owned(),
        sku: e.sku.clone(),
        qty: e.qty.to_string(),
        location: e.location.clone(),
        reference: e.reference.clone(),
        occurred_at: e.occurred_at.map(time),
    });
    view.steps.push(step(
        "accepted by the agent",
        "done",
        Some(time(event.received_at)),
        format!("seq {seq} of log {log_id}"),
    ));
    view.steps.push(step(
        "journaled by central",
        "done",
        None,
        format!(
            "stored with seq {seq}; central holds this log up to seq {}",
            store.stored_seq(agent, log_id)?
        ),
    ));
    let merge_step = "merged into Odoo";
    if let Some(aside) = store.set_aside(agent, log_id, seq)? {
        let (state, status, at, detail) = match aside {
            SetAside::Parked(l) => (
                "parked",
                "failed",
                l.parked_at,
                format!(
                    "parked: {} ({}); retry or discard {}/{} once fixed",
                    l.reason, l.message, l.warehouse, l.sku
                ),
            ),
            SetAside::QueuedForRetry(l) => (
                "queued-for-retry",
                "waiting",
                l.parked_at,
                format!(
                    "parked for {} ({}), queued for a retry",
                    l.reason, l.message
                ),
            ),
            SetAside::Discarded(d) => (
                "discarded",
                "failed",
                d.discarded_at,
                format!("discarded: {} (parked for {})", d.reason, d.letter.reason),
            ),
        };
        view.state = state.to_owned();
        view.steps.push(step(
            merge_step,
            status,
            Some(time(Timestamp::from_micros(at))),
            detail,
        ));
        return Ok(view);
    }
    if store.merge_cursor(agent, log_id)? >= seq {
        view.state = "merged".to_owned();
        match store.merged_into(agent, log_id, seq)? {
            Some(into) => {
                let at = time(Timestamp::from_micros(into.merged_at));
                view.steps.push(step(merge_step, "done", Some(at.clone()), format!("in picking {} ({})", into.picking, into.state)));
                view.picking = Some(TracedPicking { name: into.picking, state: into.state, merged_at: at });
                let pushed = pushes(store, &e.sku, into.merged_at)?;
                view.channels = Some(pushed).filter(|p| !p.is_empty());
            }
            None => view.steps.push(step(merge_step, "done", None, "merged (no picking recorded: it needed no change in Odoo, or was merged before pickings were recorded)".to_owned())),
        }
        return Ok(view);
    }
    let (state, detail) = match merging {
        Some(false) => ("journaled", "central merges nothing: no Odoo is configured"),
        _ => (
            "waiting",
            "waiting for the merge (GET /v1/merge says whether Odoo is reachable)",
        ),
    };
    view.state = state.to_owned();
    view.steps
        .push(step(merge_step, "waiting", None, detail.to_owned()));
    Ok(view)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceQuery {
    agent: String,
    id: Option<String>,
    seq: Option<u64>,
    log: Option<String>,
}

pub async fn trace(
    State(state): State<AdminState>,
    query: Result<Query<TraceQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let bad = |m: &str| error(StatusCode::BAD_REQUEST, "invalid_query", m.to_owned());
    let Ok(Query(query)) = query else {
        return bad(
            "agent and either id (the client's event id) or seq (and optionally log) are expected",
        );
    };
    let log = match query.log.as_deref().map(LogId::parse_hex) {
        Some(None) => return bad("log must be 32 hex digits"),
        Some(Some(log)) => Some(log),
        None => None,
    };
    let lookup = match (query.id, query.seq) {
        (Some(id), None) if !id.is_empty() && id.len() <= 128 => Lookup::Id(id),
        (None, Some(seq)) => Lookup::Seq { log, seq },
        _ => return bad("give either id (1 to 128 characters) or seq"),
    };
    let live = state.hub.snapshot().remove(&query.agent);
    let merging = Some(state.merge.is_some());
    let agent = query.agent;
    let work = move |store: &Store| build(store, &agent, &lookup, live.as_ref(), merging);
    with_store(&state.store, work, |view| Json(view).into_response()).await
}

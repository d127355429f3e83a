//! The admin API (loopback only, bearer token): agents, their live state and lag, and the
//! journal for audit.

use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tally_protocol::{LogId, RejectReason, Secret, Timestamp};

use std::collections::HashMap;

use crate::merge::state::StreamProgress;
use crate::store::Store;
use crate::store::registry::RegistryError;
use crate::sync::hub::Hub;

#[derive(Debug, Clone)]
pub struct AdminState {
    pub store: Store,
    pub hub: Hub,
    pub admin_token_sha256: [u8; 32],
    pub token_grace: Duration,
    /// The merge into Odoo, when one is configured.
    pub merge: Option<std::sync::Arc<crate::merge::MergeStatus>>,
    /// The sales channels.
    pub channels: Option<std::sync::Arc<crate::channels::Channels>>,
    /// The availability reader, when Odoo is configured.
    pub availability: Option<std::sync::Arc<crate::availability::reader::ReaderStatus>>,
}

impl AdminState {
    pub fn new(store: Store, hub: Hub, admin_token: &Secret, token_grace: Duration) -> AdminState {
        AdminState {
            store,
            hub,
            admin_token_sha256: Sha256::digest(admin_token.expose().as_bytes()).into(),
            token_grace,
            merge: None,
            channels: None,
            availability: None,
        }
    }
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/v1/agents", get(list_agents).post(add_agent))
        .route("/v1/agents/{id}/rotate", post(rotate_agent))
        .route("/v1/agents/{id}/revoke", post(revoke_agent))
        .route("/v1/journal", get(read_journal))
        .route("/v1/merge", get(merge_status))
        .route("/v1/dead-letters", get(dead_letters))
        .route("/v1/dead-letters/discard", post(discard_dead_letters))
        .route("/v1/dead-letters/retry", post(retry_dead_letters))
        .route("/v1/notices", get(notices))
        .route("/v1/backup", post(backup))
        .merge(crate::channels::api::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// A consistent copy of the store as a redb file, made from one read transaction while central
/// runs. The copy is built in the data directory (the one place the service may write),
/// unlinked once open, and streamed: the caller writes it where the operator wants it.
async fn backup(State(state): State<AdminState>) -> Response {
    let store = state.store.clone();
    let copied = tokio::task::spawn_blocking(move || {
        let temp = store
            .path()
            .with_file_name(format!(".backup-{:016x}.redb", rand::random::<u64>()));
        store.backup(&temp).map_err(|e| e.to_string())?;
        let file = std::fs::File::open(&temp);
        let _ = std::fs::remove_file(&temp);
        file.map_err(|e| format!("cannot read the copy {}: {e}", temp.display()))
    })
    .await;
    match copied {
        Ok(Ok(file)) => {
            let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
            (
                [(header::CONTENT_TYPE, "application/vnd.redb")],
                axum::body::Body::from_stream(stream),
            )
                .into_response()
        }
        Ok(Err(reason)) => {
            tracing::error!(%reason, "backup failed");
            backup_failed()
        }
        Err(reason) => {
            tracing::error!(%reason, "backup failed");
            backup_failed()
        }
    }
}

fn backup_failed() -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "backup_failed",
        "the backup could not be made; central's log says why",
    )
}

pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(tally_service::bearer_token)
        .unwrap_or("");
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    if bool::from(digest.ct_eq(&state.admin_token_sha256)) {
        next.run(request).await
    } else {
        error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid admin bearer token is required",
        )
    }
}

fn blocking_error(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "admin request failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "central could not read or write its database; see its logs",
    )
}

/// Runs `work` on the store off the async workers and answers with `render` of its result, or
/// with a 500 (logged) when the store fails.
pub(crate) async fn with_store<T, W, R>(store: &Store, work: W, render: R) -> Response
where
    T: Send + 'static,
    W: FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    R: FnOnce(T) -> Response,
{
    let store = store.clone();
    match tokio::task::spawn_blocking(move || work(&store)).await {
        Ok(Ok(value)) => render(value),
        Ok(Err(e)) => blocking_error(e),
        Err(e) => blocking_error(e),
    }
}

fn registry_error(e: RegistryError) -> Response {
    match e {
        RegistryError::Exists(_) => error(StatusCode::CONFLICT, "exists", e.to_string()),
        RegistryError::NotFound(_) => error(StatusCode::NOT_FOUND, "not_found", e.to_string()),
        RegistryError::Revoked(_) => error(StatusCode::CONFLICT, "revoked", e.to_string()),
        RegistryError::Store(e) => blocking_error(e),
    }
}

fn time(at: Timestamp) -> String {
    jiff::Timestamp::from_microsecond(at.as_micros())
        .map_or_else(|_| at.as_micros().to_string(), |t| t.to_string())
}

async fn list_agents(State(state): State<AdminState>) -> Response {
    let store = state.store.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let agents = store.list_agents()?;
        let streams = store.streams()?;
        let merged = store.merge_progress()?;
        let clocks = agents
            .iter()
            .map(|a| Ok((a.agent_id.clone(), store.clock_offset(&a.agent_id)?)))
            .collect::<Result<std::collections::HashMap<_, _>, crate::store::StoreError>>()?;
        Ok::<_, crate::store::StoreError>((agents, streams, merged, clocks))
    })
    .await;
    let (agents, streams, merged, clocks) = match loaded {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return blocking_error(e),
        Err(e) => return blocking_error(e),
    };
    let live = state.hub.snapshot();
    let now = Timestamp::now().as_micros();
    let out: Vec<Value> = agents
        .iter()
        .map(|agent| {
            let logs: Vec<Value> = streams
                .iter()
                .filter(|s| s.agent_id == agent.agent_id)
                .map(|s| {
                    let progress = merged.get(&(s.agent_id.clone(), s.log_id)).copied().unwrap_or_default();
                    let mut log = json!({"log_id": s.log_id.to_string(), "stored_seq": s.stored_seq, "first_seen": time(s.created_at)});
                    add_progress(&mut log, &progress);
                    log["unmerged_events"] = s.stored_seq.saturating_sub(progress.resolved_seq).into();
                    log
                })
                .collect();
            let mut entry = json!({
                "agent_id": agent.agent_id,
                "warehouse": agent.warehouse,
                "created_at": time(agent.created_at),
                "revoked": agent.revoked_at.is_some(),
                "connected": false,
                "logs": logs,
            });
            if logs.len() > 1 {
                entry["log_replaced"] = true.into();
            }
            if let Some(Some((behind, measured_at))) = clocks.get(&agent.agent_id) {
                // Positive: the agent's clock is behind central's.
                entry["clock_behind_seconds"] = (*behind as f64 / 1e6).into();
                entry["clock_measured_at"] = time(*measured_at).into();
            }
            if let Some(live) = live.get(&agent.agent_id) {
                let lag = live.head_seq.saturating_sub(live.stored_seq);
                entry["connected"] = live.connected.into();
                entry["last_seen"] = time(live.last_seen).into();
                entry["peer"] = live.peer.to_string().into();
                entry["agent_version"] = live.agent_version.clone().into();
                entry["log_id"] = live.log_id.to_string().into();
                entry["stored_seq"] = live.stored_seq.into();
                entry["head_seq"] = live.head_seq.into();
                entry["lag_events"] = lag.into();
                entry["oldest_unsynced_age_seconds"] = live
                    .oldest_unsynced_at
                    .filter(|_| lag > 0)
                    .map(|at| ((now - at.as_micros()).max(0) as f64 / 1e6).into())
                    .unwrap_or(Value::Null);
            }
            entry
        })
        .collect();
    Json(json!({ "agents": out })).into_response()
}

/// The merge's figures apart: merged into Odoo, parked (dead letters), queued for a retry,
/// discarded; `resolved_seq` is where the merge stands, whichever way each event ended.
fn add_progress(body: &mut Value, progress: &StreamProgress) {
    body["resolved_seq"] = progress.resolved_seq.into();
    body["merged_events"] = progress.merged().into();
    body["parked_events"] = progress.parked.into();
    body["queued_for_retry"] = progress.queued_for_retry.into();
    body["discarded_events"] = progress.discarded.into();
}

/// Every stream's progress added up (`resolved_seq` aside, which is per stream).
fn total_progress(progress: &HashMap<(String, LogId), StreamProgress>) -> [(&'static str, u64); 4] {
    let sum = |f: fn(&StreamProgress) -> u64| progress.values().map(f).sum::<u64>();
    [
        ("merged_events", sum(StreamProgress::merged)),
        ("parked_events", sum(|p| p.parked)),
        ("queued_for_retry", sum(|p| p.queued_for_retry)),
        ("discarded_events", sum(|p| p.discarded)),
    ]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddAgent {
    agent_id: String,
    warehouse: String,
}

pub fn valid_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

async fn add_agent(
    State(state): State<AdminState>,
    body: Result<Json<AddAgent>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "expected {\"agent_id\": \"...\", \"warehouse\": \"...\"}",
        );
    };
    if !valid_name(&body.agent_id) || !valid_name(&body.warehouse) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
            "agent_id and warehouse must be 1 to 64 letters, digits, '-', '_' or '.'",
        );
    }
    let store = state.store.clone();
    let (id, warehouse) = (body.agent_id.clone(), body.warehouse.clone());
    match tokio::task::spawn_blocking(move || store.add_agent(&id, &warehouse)).await {
        Ok(Ok(token)) => {
            tracing::info!(agent_id = %body.agent_id, warehouse = %body.warehouse, "agent added");
            (StatusCode::CREATED, Json(json!({"agent_id": body.agent_id, "warehouse": body.warehouse, "token": token.expose()}))).into_response()
        }
        Ok(Err(e)) => registry_error(e),
        Err(e) => blocking_error(e),
    }
}

async fn rotate_agent(State(state): State<AdminState>, Path(id): Path<String>) -> Response {
    let store = state.store.clone();
    let grace = state.token_grace;
    let agent = id.clone();
    match tokio::task::spawn_blocking(move || store.rotate_agent(&agent, grace)).await {
        Ok(Ok(token)) => {
            tracing::info!(agent_id = %id, grace_seconds = grace.as_secs(), "agent token rotated");
            Json(json!({"agent_id": id, "token": token.expose(), "previous_token_valid_for_seconds": grace.as_secs()})).into_response()
        }
        Ok(Err(e)) => registry_error(e),
        Err(e) => blocking_error(e),
    }
}

async fn revoke_agent(State(state): State<AdminState>, Path(id): Path<String>) -> Response {
    let store = state.store.clone();
    let agent = id.clone();
    match tokio::task::spawn_blocking(move || store.revoke_agent(&agent)).await {
        Ok(Ok(())) => {
            state.hub.close(&id, RejectReason::Revoked);
            tracing::warn!(agent_id = %id, "agent revoked; its connection is closed");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Err(e)) => registry_error(e),
        Err(e) => blocking_error(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JournalQuery {
    agent: String,
    /// The agent's most recent log when not given.
    log: Option<String>,
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

async fn read_journal(
    State(state): State<AdminState>,
    query: Result<Query<JournalQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "agent is expected; log (32 hex digits), after and limit (1..=10000) are optional",
        );
    };
    let log_id = match query.log.as_deref().map(LogId::parse_hex) {
        Some(Some(log_id)) => Some(log_id),
        Some(None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "log must be 32 hex digits",
            );
        }
        None => None,
    };
    let limit = query.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit must be between 1 and 10000",
        );
    }
    let store = state.store.clone();
    let read = tokio::task::spawn_blocking(move || {
        let log_id = match log_id {
            Some(log_id) => log_id,
            // The log central saw last: the current one, unless a disk was replaced twice
            // within a microsecond.
            None => match store
                .streams()?
                .into_iter()
                .filter(|s| s.agent_id == query.agent)
                .max_by_key(|s| s.created_at)
            {
                Some(stream) => stream.log_id,
                None => return Ok(None),
            },
        };
        let events = store.read_journal(&query.agent, log_id, query.after, limit)?;
        Ok::<_, crate::store::StoreError>(Some((log_id, events)))
    })
    .await;
    let (log_id, events) = match read {
        Ok(Ok(Some(found))) => found,
        Ok(Ok(None)) => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                "central has journaled nothing of this agent",
            );
        }
        Ok(Err(e)) => return blocking_error(e),
        Err(e) => return blocking_error(e),
    };
    let out: Vec<Value> = events
        .iter()
        .map(|r| {
            let e = &r.event;
            json!({
                "seq": r.seq, "id": e.id, "type": e.kind.as_str(), "sku": e.sku, "qty": e.qty.to_string(),
                "location": e.location, "to_location": e.to_location, "lot": e.lot, "reference": e.reference,
                "reason": e.reason, "occurred_at": e.occurred_at.map(time), "received_at": time(r.received_at),
                "device": e.device, "user": e.user,
            })
        })
        .collect();
    Json(json!({ "log_id": log_id.to_string(), "events": out })).into_response()
}

/// Prometheus metrics, computed at scrape time from the live sessions (the admin listener is
/// loopback only, so they need no token).
async fn metrics(State(state): State<AdminState>) -> Response {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;

    type Agent = [(&'static str, String); 1];
    let store = state.store.clone();
    let channels = state.channels.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let statuses = match &channels {
            Some(c) => c.statuses(&store)?,
            None => Vec::new(),
        };
        Ok::<_, crate::store::StoreError>((store.streams()?, store.merge_progress()?, statuses))
    })
    .await;
    let (streams, progress, channel_statuses) = match loaded {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return blocking_error(e),
        Err(e) => return blocking_error(e),
    };
    // Per agent, events journaled that the merge has not resolved yet; none when nothing is
    // to be merged (no Odoo configured), so that the alert on it stays quiet.
    let mut behind: std::collections::BTreeMap<String, u64> = Default::default();
    for stream in streams {
        let resolved = progress
            .get(&(stream.agent_id.clone(), stream.log_id))
            .map_or(0, |p| p.resolved_seq);
        let unmerged = if state.merge.is_some() {
            stream.stored_seq.saturating_sub(resolved)
        } else {
            0
        };
        *behind.entry(stream.agent_id).or_default() += unmerged;
    }
    let totals: HashMap<&str, u64> = total_progress(&progress).into_iter().collect();
    let live = state.hub.snapshot();
    let mut registry = Registry::with_prefix("tally_central");
    let connected = Gauge::<i64>::default();
    let agent_connected = Family::<Agent, Gauge>::default();
    let stored = Family::<Agent, Gauge>::default();
    let lag = Family::<Agent, Gauge>::default();
    let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for (agent, view) in &live {
        let labels = [("agent", agent.clone())];
        agent_connected
            .get_or_create(&labels)
            .set(i64::from(view.connected));
        stored.get_or_create(&labels).set(gauge(view.stored_seq));
        lag.get_or_create(&labels)
            .set(gauge(view.head_seq.saturating_sub(view.stored_seq)));
    }
    connected.set(live.values().filter(|v| v.connected).count() as i64);
    registry.register(
        "agents_connected",
        "Agents with a live sync session",
        connected,
    );
    registry.register(
        "agent_connected",
        "1 while the agent's sync session is live",
        agent_connected,
    );
    registry.register(
        "agent_stored_seq",
        "Highest seq journaled for the agent's current log",
        stored,
    );
    registry.register(
        "agent_lag_events",
        "Events the agent holds that central has not journaled yet",
        lag,
    );
    // The alerting metrics exist with or without Odoo, so that an alert rule on them is not
    // silently matching nothing.
    let status = state
        .merge
        .as_ref()
        .map(|merge| merge.snapshot())
        .unwrap_or_default();
    let unmerged = Family::<Agent, Gauge>::default();
    for (agent, events) in &behind {
        unmerged
            .get_or_create(&[("agent", agent.clone())])
            .set(gauge(*events));
    }
    registry.register(
        "agent_unmerged_events",
        "Events journaled for the agent that the merge has not applied to Odoo or parked yet (0 without Odoo configured)",
        unmerged,
    );
    let flags: [(&str, &str, bool); 3] = [
        (
            "odoo_connected",
            "1 while central is logged in to Odoo",
            status.connected,
        ),
        (
            "odoo_alert",
            "1 while merging is paused on an error a person must fix (see GET /v1/merge)",
            status.alert.is_some(),
        ),
        (
            "odoo_circuit_open",
            "1 while calls to Odoo are held back after repeated failures",
            status.circuit == Some(crate::odoo::breaker::CircuitState::Open),
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
            totals["merged_events"],
        ),
        (
            "dead_letters",
            "Events parked because Odoo could not take them (see GET /v1/dead-letters)",
            totals["parked_events"],
        ),
        (
            "queued_for_retry",
            "Parked events an operator asked to retry, not applied yet",
            totals["queued_for_retry"],
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

/// The merge into Odoo: connected, Odoo's version, any alert, and the events merged, parked,
/// queued for a retry and discarded (the same figures as `/metrics`).
async fn merge_status(State(state): State<AdminState>) -> Response {
    let mut body = match &state.merge {
        None => json!({"enabled": false}),
        Some(status) => {
            let mut body = serde_json::to_value(status.snapshot()).unwrap_or_default();
            body["enabled"] = true.into();
            body
        }
    };
    with_store(
        &state.store,
        |store| store.merge_progress(),
        |progress| {
            for (name, value) in total_progress(&progress) {
                body[name] = value.into();
            }
            Json(body).into_response()
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<usize>,
}

/// The `limit` of a list: 1000 unless given, at most 10,000; `None` when it is not one.
fn list_limit(
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Option<usize> {
    let Query(query) = query.ok()?;
    Some(query.limit.unwrap_or(1000)).filter(|limit| (1..=10_000).contains(limit))
}

fn bad_limit() -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_query",
        "limit must be between 1 and 10000",
    )
}

/// Events parked because Odoo could not take them, with the reason: the first `limit` (in
/// agent, log and seq order) and how many there are.
async fn dead_letters(
    State(state): State<AdminState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(limit) = list_limit(query) else {
        return bad_limit();
    };
    let work = move |store: &Store| Ok((store.dead_letters_page(limit)?, store.retry_count()?));
    with_store(&state.store, work, |((letters, total), retrying)| {
        let out: Vec<Value> = letters
            .into_iter()
            .map(|(agent, log, seq, l)| {
                json!({"agent_id": agent, "log_id": log.to_string(), "seq": seq, "warehouse": l.warehouse,
                       "sku": l.sku, "reason": l.reason, "message": l.message,
                       "parked_at": time(Timestamp::from_micros(l.parked_at))})
            })
            .collect();
        Json(json!({ "dead_letters": out, "total": total, "queued_for_retry": retrying }))
            .into_response()
    })
    .await
}

/// What the merge noticed and applied anyway (a count pending in Odoo, say): the first `limit`
/// and how many there are.
async fn notices(
    State(state): State<AdminState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(limit) = list_limit(query) else {
        return bad_limit();
    };
    let work = move |store: &Store| store.notices_page(limit);
    with_store(&state.store, work, |(notices, total)| {
        let out: Vec<Value> = notices
            .into_iter()
            .map(|(agent, log, seq, n)| {
                json!({"agent_id": agent, "log_id": log.to_string(), "seq": seq,
                       "warehouse": n.warehouse, "sku": n.sku, "kind": n.kind,
                       "message": n.message,
                       "noticed_at": time(Timestamp::from_micros(n.noticed_at))})
            })
            .collect();
        Json(json!({ "notices": out, "total": total })).into_response()
    })
    .await
}

/// Why a retry or discard did nothing: a typo in the SKU should not pass for success.
pub fn nothing_parked(warehouse: &str, sku: &str) -> String {
    format!(
        "no events of {sku:?} in warehouse {warehouse:?} are parked (tally-central dlq list shows what is)"
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryKey {
    warehouse: String,
    sku: String,
}

/// Queues every parked event of a (warehouse, SKU) for another attempt (after the product was
/// created in Odoo, say), and wakes the merge.
async fn retry_dead_letters(
    State(state): State<AdminState>,
    body: Result<Json<RetryKey>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "expected {\"warehouse\", \"sku\"}",
        );
    };
    let (warehouse, sku) = (body.warehouse.clone(), body.sku.clone());
    let work = move |store: &Store| store.retry_dead_letters(&warehouse, &sku);
    with_store(&state.store, work, |queued| {
        if queued == 0 {
            return error(
                StatusCode::NOT_FOUND,
                "nothing_parked",
                nothing_parked(&body.warehouse, &body.sku),
            );
        }
        tracing::info!(warehouse = %body.warehouse, sku = %body.sku, queued, "parked events queued for a retry");
        if let Some(merge) = &state.merge {
            merge.wake();
        }
        Json(json!({"queued": queued})).into_response()
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Discard {
    warehouse: String,
    sku: String,
    reason: String,
}

/// Gives up on every parked event of a (warehouse, SKU), with a reason kept for audit.
async fn discard_dead_letters(
    State(state): State<AdminState>,
    body: Result<Json<Discard>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "expected {\"warehouse\", \"sku\", \"reason\"}",
        );
    };
    if body.reason.trim().is_empty() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_reason",
            "a reason is required to discard events",
        );
    }
    let (warehouse, sku, reason) = (
        body.warehouse.clone(),
        body.sku.clone(),
        body.reason.clone(),
    );
    let work = move |store: &Store| store.discard_dead_letters(&warehouse, &sku, &reason);
    with_store(&state.store, work, |discarded| {
        if discarded == 0 {
            return error(
                StatusCode::NOT_FOUND,
                "nothing_parked",
                nothing_parked(&body.warehouse, &body.sku),
            );
        }
        tracing::warn!(warehouse = %body.warehouse, sku = %body.sku, discarded, reason = %body.reason, "parked events discarded");
        Json(json!({"discarded": discarded})).into_response()
    })
    .await
}

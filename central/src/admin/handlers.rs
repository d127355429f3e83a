//! The admin API's routes that read the store and make changes (each change audited with the
//! caller's role and reason).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tally_protocol::{LogId, RejectReason};

use super::{
    AdminState, ListQuery, Role, bad_limit, blocking_error, check_reason, error, list_limit,
    nothing_parked, valid_name, views, with_store,
};
use crate::store::Store;
use crate::store::audit::Actor;
use crate::store::registry::RegistryError;

type QueryResult<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

/// An answer that ends a request early (boxed: a response is large).
pub(crate) type Refusal = Box<Response>;

fn registry_error(e: RegistryError) -> Response {
    match e {
        RegistryError::Exists(_) => error(StatusCode::CONFLICT, "exists", e.to_string()),
        RegistryError::NotFound(_) => error(StatusCode::NOT_FOUND, "not_found", e.to_string()),
        RegistryError::Revoked(_) => error(StatusCode::CONFLICT, "revoked", e.to_string()),
        RegistryError::Store(e) => blocking_error(e),
    }
}

/// A JSON body of type `T`, or the 400 naming what was expected.
pub(crate) fn body<T: serde::de::DeserializeOwned>(
    bytes: &Bytes,
    expected: &str,
) -> Result<T, Refusal> {
    serde_json::from_slice(bytes).map_err(|_| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("expected {expected}"),
        ))
    })
}

/// A reason checked, or the 422 saying why not.
pub(crate) fn reason(reason: Option<&str>, required: bool) -> Result<Option<&str>, Refusal> {
    check_reason(reason, required).map_err(|m| {
        let code = if required && reason.is_none_or(|r| r.trim().is_empty()) {
            "missing_reason"
        } else {
            "invalid_reason"
        };
        Box::new(error(StatusCode::UNPROCESSABLE_ENTITY, code, m))
    })
}

pub async fn list_agents(State(state): State<AdminState>) -> Response {
    let live = state.hub.snapshot();
    let merging = state.merge.is_some();
    let work = move |store: &Store| views::agents(store, &live, merging);
    with_store(&state.store, work, |view| Json(view).into_response()).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddAgent {
    agent_id: String,
    warehouse: String,
    reason: Option<String>,
}

pub async fn add_agent(
    State(state): State<AdminState>,
    Extension(role): Extension<Role>,
    bytes: Bytes,
) -> Response {
    let body: AddAgent = match body(&bytes, "{\"agent_id\": \"...\", \"warehouse\": \"...\"}") {
        Ok(body) => body,
        Err(answer) => return *answer,
    };
    if !valid_name(&body.agent_id) || !valid_name(&body.warehouse) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
            "agent_id and warehouse must be 1 to 64 letters, digits, '-', '_' or '.'",
        );
    }
    let reason = match reason(body.reason.as_deref(), false) {
        Ok(reason) => reason.map(str::to_owned),
        Err(answer) => return *answer,
    };
    let store = state.store.clone();
    let (id, warehouse) = (body.agent_id.clone(), body.warehouse.clone());
    let added = tokio::task::spawn_blocking(move || {
        let actor = Actor {
            role: role.as_str(),
            reason: reason.as_deref(),
        };
        store.add_agent_as(&id, &warehouse, actor)
    })
    .await;
    match added {
        Ok(Ok(token)) => {
            tracing::info!(agent_id = %body.agent_id, warehouse = %body.warehouse, "agent added");
            let answer = json!({"agent_id": body.agent_id, "warehouse": body.warehouse, "token": token.expose()});
            (StatusCode::CREATED, Json(answer)).into_response()
        }
        Ok(Err(e)) => registry_error(e),
        Err(e) => blocking_error(e),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Why {
    reason: Option<String>,
}

/// The optional `{"reason"}` body of a rotation or revocation.
fn optional_reason(bytes: &Bytes) -> Result<Option<String>, Refusal> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let why: Why = body(bytes, "no body, or {\"reason\": \"...\"}")?;
    Ok(reason(why.reason.as_deref(), false)?.map(str::to_owned))
}

pub async fn rotate_agent(
    State(state): State<AdminState>,
    Extension(role): Extension<Role>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Response {
    let reason = match optional_reason(&bytes) {
        Ok(reason) => reason,
        Err(answer) => return *answer,
    };
    let store = state.store.clone();
    let grace = state.token_grace;
    let agent = id.clone();
    let rotated = tokio::task::spawn_blocking(move || {
        let actor = Actor {
            role: role.as_str(),
            reason: reason.as_deref(),
        };
        store.rotate_agent_as(&agent, grace, actor)
    })
    .await;
    match rotated {
        Ok(Ok(token)) => {
            tracing::info!(agent_id = %id, grace_seconds = grace.as_secs(), "agent token rotated");
            Json(json!({"agent_id": id, "token": token.expose(), "previous_token_valid_for_seconds": grace.as_secs()})).into_response()
        }
        Ok(Err(e)) => registry_error(e),
        Err(e) => blocking_error(e),
    }
}

pub async fn revoke_agent(
    State(state): State<AdminState>,
    Extension(role): Extension<Role>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Response {
    let reason = match optional_reason(&bytes) {
        Ok(reason) => reason,
        Err(answer) => return *answer,
    };
    let store = state.store.clone();
    let agent = id.clone();
    let revoked = tokio::task::spawn_blocking(move || {
        let actor = Actor {
            role: role.as_str(),
            reason: reason.as_deref(),
        };
        store.revoke_agent_as(&agent, actor)
    })
    .await;
    match revoked {
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
pub struct JournalQuery {
    agent: String,
    /// The agent's most recent log when not given.
    log: Option<String>,
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

pub async fn read_journal(
    State(state): State<AdminState>,
    query: QueryResult<JournalQuery>,
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
        return bad_limit();
    }
    let work = move |store: &Store| {
        let log_id = match log_id {
            Some(log_id) => log_id,
            None => match latest_log(store, &query.agent)? {
                Some(log_id) => log_id,
                None => return Ok(None),
            },
        };
        let events = store.read_journal(&query.agent, log_id, query.after, limit)?;
        Ok(Some((log_id, events)))
    };
    with_store(&state.store, work, |read| {
        let Some((log_id, events)) = read else {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                "central has journaled nothing of this agent",
            );
        };
        let time = views::time;
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
    })
    .await
}

/// The log central saw last from `agent`: the current one, unless a disk was replaced twice
/// within a microsecond.
pub(crate) fn latest_log(
    store: &Store,
    agent: &str,
) -> Result<Option<LogId>, crate::store::StoreError> {
    Ok(store
        .streams()?
        .into_iter()
        .filter(|s| s.agent_id == agent)
        .max_by_key(|s| s.created_at)
        .map(|s| s.log_id))
}

/// The merge into Odoo: connected, Odoo's version, any alert, and the events merged, parked,
/// queued for a retry and discarded (the same figures as `/metrics`).
pub async fn merge_status(State(state): State<AdminState>) -> Response {
    let live = state.merge.as_ref().map(|m| m.snapshot());
    let work = move |store: &Store| views::merge(store, live.as_ref(), true);
    with_store(&state.store, work, |view| Json(view).into_response()).await
}

/// Events parked because Odoo could not take them, with the reason: the first `limit` (in
/// agent, log and seq order), how many there are, and every (warehouse, SKU) parked.
pub async fn dead_letters(
    State(state): State<AdminState>,
    query: QueryResult<ListQuery>,
) -> Response {
    let Some(limit) = list_limit(query) else {
        return bad_limit();
    };
    let work = move |store: &Store| views::dead_letters(store, limit);
    with_store(&state.store, work, |view| Json(view).into_response()).await
}

/// What the merge noticed and applied anyway (a count pending in Odoo, say).
pub async fn notices(State(state): State<AdminState>, query: QueryResult<ListQuery>) -> Response {
    let Some(limit) = list_limit(query) else {
        return bad_limit();
    };
    let work = move |store: &Store| views::notices(store, limit);
    with_store(&state.store, work, |view| Json(view).into_response()).await
}

/// The audit log, newest first.
pub async fn audit(State(state): State<AdminState>, query: QueryResult<ListQuery>) -> Response {
    let Some(limit) = list_limit(query) else {
        return bad_limit();
    };
    let work = move |store: &Store| views::audit(store, limit);
    with_store(&state.store, work, |view| Json(view).into_response()).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadLetterChange {
    warehouse: String,
    sku: String,
    reason: Option<String>,
}

/// Which change to make to the parked events of a (warehouse, SKU).
#[derive(Debug, Clone, Copy)]
enum Change {
    Retry,
    Discard,
}

async fn change_dead_letters(
    state: AdminState,
    role: Role,
    bytes: Bytes,
    change: Change,
) -> Response {
    let body: DeadLetterChange = match body(&bytes, "{\"warehouse\", \"sku\", \"reason\"}") {
        Ok(body) => body,
        Err(answer) => return *answer,
    };
    let why = match reason(body.reason.as_deref(), true) {
        Ok(reason) => reason.unwrap_or_default().to_owned(),
        Err(answer) => return *answer,
    };
    let (warehouse, sku, reason) = (body.warehouse.clone(), body.sku.clone(), why.clone());
    let work = move |store: &Store| {
        let actor = Actor {
            role: role.as_str(),
            reason: Some(&reason),
        };
        match change {
            Change::Retry => store.retry_dead_letters_as(&warehouse, &sku, actor),
            Change::Discard => store.discard_dead_letters_as(&warehouse, &sku, actor),
        }
    };
    with_store(&state.store, work, |count| {
        if count == 0 {
            return error(
                StatusCode::NOT_FOUND,
                "nothing_parked",
                nothing_parked(&body.warehouse, &body.sku),
            );
        }
        match change {
            Change::Retry => {
                tracing::info!(warehouse = %body.warehouse, sku = %body.sku, queued = count, reason = %why, "parked events queued for a retry");
                if let Some(merge) = &state.merge {
                    merge.wake();
                }
                Json(json!({"queued": count})).into_response()
            }
            Change::Discard => {
                tracing::warn!(warehouse = %body.warehouse, sku = %body.sku, discarded = count, reason = %why, "parked events discarded");
                Json(json!({"discarded": count})).into_response()
            }
        }
    })
    .await
}

/// Queues every parked event of a (warehouse, SKU) for another attempt (after the product was
/// created in Odoo, say), and wakes the merge. A reason is required.
pub async fn retry_dead_letters(
    State(state): State<AdminState>,
    Extension(role): Extension<Role>,
    bytes: Bytes,
) -> Response {
    change_dead_letters(state, role, bytes, Change::Retry).await
}

/// Gives up on every parked event of a (warehouse, SKU), with a reason kept for audit.
pub async fn discard_dead_letters(
    State(state): State<AdminState>,
    Extension(role): Extension<Role>,
    bytes: Bytes,
) -> Response {
    change_dead_letters(state, role, bytes, Change::Discard).await
}

/// A consistent copy of the store as a redb file, made from one read transaction while central
/// runs. The copy is built in the data directory (the one place the service may write),
/// unlinked once open, and streamed: the caller writes it where the operator wants it.
pub async fn backup(State(state): State<AdminState>) -> Response {
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
    let reason = match copied {
        Ok(Ok(file)) => {
            let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
            return (
                [(header::CONTENT_TYPE, "application/vnd.redb")],
                axum::body::Body::from_stream(stream),
            )
                .into_response();
        }
        Ok(Err(reason)) => reason,
        Err(reason) => reason.to_string(),
    };
    tracing::error!(%reason, "backup failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "backup_failed",
        "the backup could not be made; central's log says why",
    )
}

//! The admin API's availability and channel endpoints:
//!
//! - `GET /v1/availability?sku=SKU[&warehouse=CODE]`: the stored [`Availability`] rows and the
//!   reader's state;
//! - `GET /v1/channels`: every channel's [`ChannelStatus`];
//! - `GET /v1/channels/{name}`: one channel's status and its dead letters;
//! - `POST /v1/channels/{name}/resync` with `{"reason"}`: every SKU queued for the channel
//!   again, what it shows read again on the way (admin token; written to the audit log).
//!
//! [`Availability`]: crate::availability::Availability
//! [`ChannelStatus`]: super::ChannelStatus

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::admin::handlers::{body, reason};
use crate::admin::{AdminState, Role, error, with_store};
use crate::store::audit::Actor;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/v1/availability", get(availability))
        .route("/v1/channels", get(list))
        .route("/v1/channels/{name}", get(status))
        .route("/v1/channels/{name}/resync", post(resync))
}

#[derive(Debug, Deserialize)]
struct AvailabilityQuery {
    sku: String,
    warehouse: Option<String>,
}

async fn availability(
    State(state): State<AdminState>,
    Query(q): Query<AvailabilityQuery>,
) -> Response {
    if q.sku.is_empty() || q.sku.len() > 256 {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "sku must be 1 to 256 characters",
        );
    }
    let reader = state.availability.as_ref().map(|r| r.snapshot());
    let channels = state.channels.clone();
    with_store(
        &state.store,
        move |store| {
            crate::admin::channels::availability(
                store,
                &q.sku,
                q.warehouse.as_deref(),
                channels.as_deref(),
            )
        },
        |mut view| {
            view.reader = reader.and_then(|r| serde_json::to_value(r).ok());
            Json(view).into_response()
        },
    )
    .await
}

fn no_channel(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no channel is named {name:?} in central's configuration"),
    )
}

async fn list(State(state): State<AdminState>) -> Response {
    let Some(channels) = state.channels.clone() else {
        return Json(json!({"channels": []})).into_response();
    };
    with_store(
        &state.store,
        move |store| channels.statuses(store),
        |list| Json(json!({"channels": list})).into_response(),
    )
    .await
}

async fn status(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    let Some(channels) = state.channels.clone() else {
        return no_channel(&name);
    };
    let for_store = name.clone();
    with_store(
        &state.store,
        move |store| {
            let status = channels.status(store, &for_store)?;
            let dead = store.channel_dead_letters(&for_store)?;
            Ok((status, dead))
        },
        move |(status, dead)| match status {
            Some(status) => Json(json!({"channel": status, "dead_letters": dead})).into_response(),
            None => no_channel(&name),
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResyncBody {
    reason: Option<String>,
}

/// Queues every SKU for the channel again. The read-only token never gets here (403
/// `read_only`); a reason is required and kept in the audit log with the role.
async fn resync(
    State(state): State<AdminState>,
    Extension(role): Extension<Role>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Response {
    let asked: ResyncBody = match body(&bytes, "{\"reason\"}") {
        Ok(asked) => asked,
        Err(answer) => return *answer,
    };
    let why = match reason(asked.reason.as_deref(), true) {
        Ok(why) => why.unwrap_or_default().to_owned(),
        Err(answer) => return *answer,
    };
    let Some(channels) = state.channels.clone() else {
        return no_channel(&name);
    };
    let Some(config) = channels.config(&name).cloned() else {
        return no_channel(&name);
    };
    channels.request_resync(&name);
    let woken = channels.clone();
    let logged = why.clone();
    with_store(
        &state.store,
        move |store| {
            let actor = Actor {
                role: role.as_str(),
                reason: Some(&why),
            };
            store.outbox_resync(&config, Some(actor))
        },
        move |queued| {
            tracing::info!(channel = %name, queued, reason = %logged, "channel resync asked for");
            woken.wake();
            Json(json!({"channel": name, "queued": queued})).into_response()
        },
    )
    .await
}

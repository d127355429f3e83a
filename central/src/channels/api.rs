//! The admin API's availability and channel endpoints:
//!
//! - `GET /v1/availability?sku=SKU[&warehouse=CODE]`: the stored [`Availability`] rows and the
//!   reader's state;
//! - `GET /v1/channels`: every channel's [`ChannelStatus`];
//! - `GET /v1/channels/{name}`: one channel's status and its dead letters;
//! - `POST /v1/channels/{name}/resync`: every SKU queued for the channel again, what it shows
//!   read again on the way.
//!
//! [`Availability`]: crate::availability::Availability
//! [`ChannelStatus`]: super::ChannelStatus

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::admin::{AdminState, error, with_store};

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
    with_store(
        &state.store,
        move |store| store.availability(&q.sku, q.warehouse.as_deref()),
        |rows| Json(json!({"availability": rows, "reader": reader})).into_response(),
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

async fn resync(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    let Some(channels) = state.channels.clone() else {
        return no_channel(&name);
    };
    let Some(config) = channels.config(&name).cloned() else {
        return no_channel(&name);
    };
    channels.request_resync(&name);
    let woken = channels.clone();
    with_store(
        &state.store,
        move |store| store.outbox_resync(&config),
        move |queued| {
            woken.wake();
            Json(json!({"channel": name, "queued": queued})).into_response()
        },
    )
    .await
}

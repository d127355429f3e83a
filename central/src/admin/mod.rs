//! The admin API and dashboard (loopback, or TLS off loopback; bearer tokens with two roles):
//! agents, their live state and lag, the merge into Odoo, parked events, notices, the audit
//! log, "where is my scan?", metrics, and the page that shows them.
//!
//! - [`auth`]: the two roles (read-only and admin) and the cross-site guard;
//! - [`views`]: the answers, one set of types shared with the command line; [`render`] prints
//!   them as tables; [`channels`]: the same for the sales channels and availability; [`status`] adds up the whole picture and its warnings; [`trace`] follows
//!   one event;
//! - [`handlers`]: the routes that read and change; [`metrics`]: `/metrics`;
//! - [`dashboard`]: the page at `/`, built into the binary.

pub mod auth;
pub mod channels;
pub mod dashboard;
pub mod handlers;
pub mod metrics;
pub mod render;
pub mod status;
pub mod trace;
pub mod views;

use std::time::Duration;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tally_protocol::Secret;
use tally_service::token::TokenDigest;

use crate::store::Store;
use crate::sync::hub::Hub;

pub use auth::Role;

#[derive(Debug, Clone)]
pub struct AdminState {
    pub store: Store,
    pub hub: Hub,
    pub admin_token: TokenDigest,
    /// The read-only token's digest, when one is configured.
    pub read_token: Option<TokenDigest>,
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
            admin_token: digest(admin_token),
            read_token: None,
            token_grace,
            merge: None,
            channels: None,
            availability: None,
        }
    }

    /// Accepts `token` for reading (the dashboard and every GET), never for changes.
    pub fn with_read_token(mut self, token: Option<&Secret>) -> AdminState {
        self.read_token = token.map(digest);
        self
    }
}

fn digest(token: &Secret) -> TokenDigest {
    TokenDigest::of(token.expose())
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/v1/status", get(status::status))
        .route("/v1/whoami", get(auth::whoami))
        .route(
            "/v1/agents",
            get(handlers::list_agents).post(handlers::add_agent),
        )
        .route("/v1/agents/{id}/rotate", post(handlers::rotate_agent))
        .route("/v1/agents/{id}/revoke", post(handlers::revoke_agent))
        .route("/v1/journal", get(handlers::read_journal))
        .route("/v1/merge", get(handlers::merge_status))
        .route("/v1/dead-letters", get(handlers::dead_letters))
        .route(
            "/v1/dead-letters/discard",
            post(handlers::discard_dead_letters),
        )
        .route("/v1/dead-letters/retry", post(handlers::retry_dead_letters))
        .route("/v1/notices", get(handlers::notices))
        .route("/v1/audit", get(handlers::audit))
        .route("/v1/trace", get(trace::trace))
        .route("/v1/backup", post(handlers::backup))
        .merge(crate::channels::api::routes())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics::metrics))
        .merge(dashboard::routes())
        .with_state(state)
}

/// An error answer: `{"error": {"code", "message"}}`.
pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

pub(crate) fn blocking_error(e: impl std::fmt::Display) -> Response {
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

/// Whether `value` is a valid agent id or warehouse code.
pub fn valid_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The longest reason kept for a change.
pub const MAX_REASON: usize = 500;

/// A change's reason, checked: present when `required`, at most [`MAX_REASON`] characters.
pub fn check_reason(reason: Option<&str>, required: bool) -> Result<Option<&str>, String> {
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    match reason {
        None if required => Err("a reason is required (it is kept in the audit log)".to_owned()),
        Some(r) if r.chars().count() > MAX_REASON => {
            Err(format!("the reason is longer than {MAX_REASON} characters"))
        }
        _ => Ok(reason),
    }
}

/// Why a retry or discard did nothing: a typo in the SKU should not pass for success.
pub fn nothing_parked(warehouse: &str, sku: &str) -> String {
    format!(
        "no events of {sku:?} in warehouse {warehouse:?} are parked (tally-central dlq list shows what is)"
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<usize>,
}

/// The `limit` of a list: 1000 unless given, at most 10,000; `None` when it is not one.
pub(crate) fn list_limit(
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Option<usize> {
    let Query(query) = query.ok()?;
    Some(query.limit.unwrap_or(1000)).filter(|limit| (1..=10_000).contains(limit))
}

pub(crate) fn bad_limit() -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_query",
        "limit must be between 1 and 10000",
    )
}

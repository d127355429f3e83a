//! The local HTTP API that scanners and the WMS talk to.
//!
//! `POST /v1/events` answers only after its events are committed durably by the log writer.
//! Errors are JSON `{"error": {"code", "message", "index"?, "field"?}}` with a stable `code`;
//! internal error text never reaches the client.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tally_protocol::{Secret, Timestamp};
use tally_service::token::TokenDigest;

use crate::ingest::{self, EventJson};
use crate::log::writer::{AppendError, WriterHandle};
use crate::log::{ConflictWith, Log, RequestOutcome};
use crate::metrics::{Metrics, Snapshot};
use crate::sync::SyncStatus;

/// Most events `GET /v1/events` returns at once.
pub const MAX_READ_LIMIT: usize = 1000;

/// A request (body included) must complete within this, so a stalled client cannot hold a
/// connection, or shutdown, forever.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub writer: WriterHandle,
    pub log: Log,
    pub metrics: Arc<Metrics>,
    pub tokens: Arc<TokenSet>,
    /// The token GET /metrics requires, when one is configured.
    pub metrics_token: Option<Arc<TokenSet>>,
    pub agent_id: Arc<str>,
    pub warehouse: Arc<str>,
    pub max_log_bytes: u64,
    pub max_body_bytes: usize,
    /// The sync link to central (all zero when the agent runs capture-only).
    pub sync: Arc<SyncStatus>,
}

/// The accepted bearer tokens, kept only as SHA-256 digests and compared in constant time.
pub struct TokenSet {
    digests: Vec<TokenDigest>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenSet({} tokens)", self.digests.len())
    }
}

impl TokenSet {
    pub fn new(tokens: &[Secret]) -> TokenSet {
        TokenSet {
            digests: tokens.iter().map(|t| TokenDigest::of(t.expose())).collect(),
        }
    }

    /// Compares against every token without stopping early, so timing does not reveal which
    /// (or how much of one) matched.
    pub fn accepts(&self, presented: &str) -> bool {
        let digest = TokenDigest::of(presented);
        let mut matched = subtle::Choice::from(0);
        for known in &self.digests {
            matched |= known.matches(&digest);
        }
        matched.into()
    }
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.max_body_bytes;
    let protected = Router::new()
        .route(
            "/v1/events",
            post(post_events)
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    refuse_unreadable_bodies,
                ))
                .get(get_events),
        )
        .route("/v1/status", get(get_status))
        .route("/v1/backup", post(post_backup))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .merge(protected)
        .route("/metrics", get(get_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}

/// A failed request, rendered as `{"error": {...}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    index: Option<usize>,
    field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            index: None,
            field: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(index) = self.index {
            error["index"] = index.into();
        }
        if let Some(field) = self.field {
            error["field"] = field.into();
        }
        let mut response = (self.status, axum::Json(json!({ "error": error }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

async fn require_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(tally_service::bearer_token);
    match presented {
        Some(token) if state.tokens.accepts(token) => next.run(request).await,
        Some(_) => {
            state.metrics.rejected("unauthorized");
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the bearer token is not valid",
            )
            .into_response()
        }
        None => {
            state.metrics.rejected("unauthorized");
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "an Authorization: Bearer <token> header is required",
            )
            .into_response()
        }
    }
}

/// Refuses, from its headers alone, a body `POST /v1/events` would not read: a declared length
/// over the limit is answered before a byte of it arrives, and a body that is not plain JSON
/// gets 415 rather than a parse error that blames its content.
async fn refuse_unreadable_bodies(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match check_body_headers(request.headers(), state.max_body_bytes) {
        Ok(()) => next.run(request).await,
        Err(error) => {
            // The metric's reason for an oversized body predates its error code.
            let reason = match error.code {
                "body_too_large" => "too_large",
                code => code,
            };
            state.metrics.rejected(reason);
            error.into_response()
        }
    }
}

fn check_body_headers(headers: &HeaderMap, max_body_bytes: usize) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_body_bytes as u64) {
        return Err(too_large(max_body_bytes));
    }
    // Only `identity` is read; anything else would reach the JSON parser compressed.
    for encoding in headers.get_all(header::CONTENT_ENCODING) {
        let identity = encoding.to_str().is_ok_and(|v| {
            v.split(',')
                .all(|e| e.trim().eq_ignore_ascii_case("identity"))
        });
        if !identity {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                "the body must not be compressed: send it without Content-Encoding",
            ));
        }
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json_utf8);
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be sent as Content-Type: application/json (UTF-8)",
        ));
    }
    Ok(())
}

/// `application/json`, with a `charset` parameter only if it is UTF-8 (RFC 8259 allows no other).
fn is_json_utf8(content_type: &str) -> bool {
    let mut parts = content_type.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        && parts.all(|param| match param.split_once('=') {
            Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
                value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            }
            _ => true,
        })
}

fn too_large(max_body_bytes: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!(
            "the request body is larger than {max_body_bytes} bytes; send at most {} events per request",
            ingest::MAX_EVENTS_PER_REQUEST
        ),
    )
}

#[derive(Debug, Serialize)]
struct AcceptedJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    seq: u64,
    duplicate: bool,
}

async fn post_events(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            state.metrics.rejected("too_large");
            too_large(state.max_body_bytes)
        } else {
            state.metrics.rejected("unreadable_body");
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "unreadable_body",
                "the request body could not be read",
            )
        }
    })?;
    let events = ingest::parse_body(&body, Timestamp::now()).map_err(|e| {
        state.metrics.rejected(e.code);
        ApiError {
            status: StatusCode::from_u16(e.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
            code: e.code,
            message: e.message,
            index: e.index,
            field: e.field,
        }
    })?;
    let ids: Vec<Option<String>> = events.iter().map(|e| e.id.clone()).collect();
    let outcome = state.writer.append(events).await.map_err(|e| {
        let (status, code, message) = match &e {
            AppendError::StorageFull => (
                StatusCode::INSUFFICIENT_STORAGE,
                "disk_full",
                "the disk holding the event log is full; nothing was stored".to_owned(),
            ),
            AppendError::Storage(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the event log could not be written durably, so the request is not acknowledged; \
                 retry it (events with an id are stored at most once)"
                    .to_owned(),
            ),
            AppendError::Stopped => (
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the agent is shutting down; nothing was stored, retry later".to_owned(),
            ),
        };
        state.metrics.rejected(code);
        ApiError::new(status, code, message)
    })?;
    match outcome {
        RequestOutcome::Stored(accepted) => {
            let stored = accepted.iter().filter(|a| !a.duplicate).count() as u64;
            state
                .metrics
                .accepted(stored, accepted.len() as u64 - stored);
            let status = if stored > 0 {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let body: Vec<AcceptedJson<'_>> = accepted
                .iter()
                .zip(&ids)
                .map(|(a, id)| AcceptedJson {
                    id: id.as_deref(),
                    seq: a.seq,
                    duplicate: a.duplicate,
                })
                .collect();
            Ok((status, axum::Json(json!({ "accepted": body }))).into_response())
        }
        RequestOutcome::Conflict { index, with } => {
            state.metrics.rejected("id_conflict");
            let id = ids[index].as_deref().unwrap_or_default();
            let used_by = match with {
                ConflictWith::Stored(seq) => format!("the stored event with seq {seq}"),
                ConflictWith::Earlier(earlier) => format!("event {earlier} of this request"),
            };
            Err(ApiError {
                status: StatusCode::CONFLICT,
                code: "id_conflict",
                message: format!(
                    "event {index}: id {id:?} is already used by {used_by}, with different content; nothing was stored"
                ),
                index: Some(index),
                field: Some("id".into()),
            })
        }
        RequestOutcome::Full => {
            state.metrics.rejected("log_full");
            Err(ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "log_full",
                format!(
                    "the event log has reached its budget (max_log_bytes = {}); nothing was stored. \
                     Stored events are kept until central has them: restore the link to central or raise max_log_bytes",
                    state.max_log_bytes
                ),
            ))
        }
    }
}

#[derive(Debug, Deserialize)]
struct ReadQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

async fn get_events(
    State(state): State<AppState>,
    query: Result<Query<ReadQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("after and limit must be whole numbers (limit at most {MAX_READ_LIMIT})"),
        )
    })?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_READ_LIMIT).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("limit must be between 1 and {MAX_READ_LIMIT}"),
        ));
    }
    let log = state.log.clone();
    let records = tokio::task::spawn_blocking(move || log.read_after(query.after, limit))
        .await
        .map_err(|_| internal())?
        .map_err(|error| {
            tracing::error!(%error, "reading the event log failed");
            internal()
        })?;
    let events: Vec<EventJson<'_>> = records.iter().map(|r| EventJson::new(r, None)).collect();
    Ok(
        axum::Json(json!({ "log_id": state.log.log_id().to_string(), "events": events }))
            .into_response(),
    )
}

fn internal() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the agent could not read its log; see its logs",
    )
}

/// The body of `GET /v1/status` (also printed by `tally-agent status`).
#[derive(Debug, Serialize, Deserialize)]
pub struct StatusJson {
    pub agent_id: String,
    pub warehouse: String,
    pub log_id: String,
    pub last_seq: u64,
    pub acked_seq: u64,
    pub pending: u64,
    pub oldest_pending_age_seconds: Option<f64>,
    pub log_bytes: u64,
    pub max_log_bytes: u64,
    pub connected: bool,
    /// Why the link to central is down, if it is.
    pub sync_error: Option<String>,
    /// Central's clock minus this agent's, measured at connect.
    pub clock_skew_seconds: Option<f64>,
    pub version: String,
}

async fn get_status(State(state): State<AppState>) -> Result<axum::Json<StatusJson>, ApiError> {
    let log = state.log.clone();
    let status = tokio::task::spawn_blocking(move || log.status())
        .await
        .map_err(|_| internal())?
        .map_err(|error| {
            tracing::error!(%error, "reading the event log status failed");
            internal()
        })?;
    let now = Timestamp::now().as_micros();
    // Acks are persisted at most once a second; the live figure may be ahead.
    let acked_seq = status.acked_seq.max(state.sync.acked_seq());
    Ok(axum::Json(StatusJson {
        agent_id: state.agent_id.to_string(),
        warehouse: state.warehouse.to_string(),
        log_id: state.log.log_id().to_string(),
        last_seq: status.last_seq,
        acked_seq,
        pending: status.last_seq.saturating_sub(acked_seq),
        oldest_pending_age_seconds: status
            .oldest_pending_received_at
            .filter(|_| acked_seq < status.last_seq)
            .map(|at| (now - at.as_micros()).max(0) as f64 / 1e6),
        log_bytes: status.log_bytes,
        max_log_bytes: state.max_log_bytes,
        connected: state.sync.connected(),
        sync_error: state.sync.last_error(),
        clock_skew_seconds: state.sync.clock_skew(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    }))
}

/// A consistent copy of the log as a redb file, made from one read transaction while appends go
/// on. The copy is built in the data directory (the one place the service may write), unlinked
/// once open, and streamed: the caller writes it where the operator wants it.
///
/// Loopback callers only: scanners on the warehouse network hold the same tokens, and a copy of
/// the whole log, disk and time for each, is the operator's, on the agent's machine.
async fn post_backup(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0);
    if !peer.is_some_and(|peer| peer.ip().is_loopback()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "loopback_only",
            "backups are made for callers on the agent's machine only (tally-agent backup)",
        ));
    }
    let log = state.log.clone();
    let copied = tokio::task::spawn_blocking(move || {
        let temp = log
            .path()
            .with_file_name(format!(".backup-{:016x}.redb", rand::random::<u64>()));
        log.backup(&temp)?;
        let file = std::fs::File::open(&temp);
        let _ = std::fs::remove_file(&temp);
        file.map_err(|e| crate::log::LogError::Backup {
            path: temp,
            reason: e.to_string(),
        })
    })
    .await;
    let file = match copied {
        Ok(Ok(file)) => file,
        Ok(Err(error)) => {
            tracing::error!(%error, "backup failed");
            return Err(backup_failed());
        }
        Err(error) => {
            tracing::error!(%error, "backup failed");
            return Err(backup_failed());
        }
    };
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    Ok((
        [(header::CONTENT_TYPE, "application/vnd.redb")],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

fn backup_failed() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "backup_failed",
        "the backup could not be made; the agent's log says why",
    )
}

async fn get_metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(tally_service::bearer_token);
        // Scanner tokens do not open /metrics either: only the metrics token does.
        if !presented.is_some_and(|p| token.accepts(p)) {
            state.metrics.rejected("unauthorized");
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "GET /metrics requires the metrics token as Authorization: Bearer <token>",
            )
            .into_response();
        }
    }
    let log = state.log.clone();
    let (last_seq, acked_seq, oldest) = tokio::task::spawn_blocking(move || {
        log.status()
            .map(|s| (s.last_seq, s.acked_seq, s.oldest_pending_received_at))
            .unwrap_or((0, 0, None))
    })
    .await
    .unwrap_or((0, 0, None));
    let now = tally_protocol::Timestamp::now().as_micros();
    // Pending means not acknowledged by central, whatever the link's own view of it.
    let acked_seq = acked_seq.max(state.sync.acked_seq());
    let oldest_unacked_age_seconds = oldest.filter(|_| acked_seq < last_seq).map_or(0, |at| {
        u64::try_from((now - at.as_micros()) / 1_000_000).unwrap_or(0)
    });
    let text = state.metrics.render(Snapshot {
        log_bytes: state.log.file_bytes(),
        log_budget_bytes: state.max_log_bytes,
        oldest_unacked_age_seconds,
        last_seq,
        acked_seq,
        central_connected: state.sync.connected(),
    });
    (
        [(
            header::CONTENT_TYPE,
            tally_service::OPENMETRICS_CONTENT_TYPE,
        )],
        text,
    )
        .into_response()
}

//! Who may call the admin API: the admin token may do everything, the read-only token (when
//! one is configured) may only read (GET and HEAD). Tokens are compared as SHA-256 digests, in
//! constant time.
//!
//! Cross-site requests: a change (any method but GET and HEAD) needs the admin token in the
//! `Authorization` header. A page on another site cannot make a browser send that header: the
//! browser keeps no credential for this origin (no cookie, no HTTP authentication), and a
//! cross-origin request carrying `Authorization` needs a CORS preflight this API never
//! approves. As a second guard, a change whose `Origin` header names another origin than the
//! one the request was sent to is refused before its token is looked at.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tally_service::token::TokenDigest;

use super::{AdminState, error};

/// The role a request's token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The read-only token: the dashboard and every GET.
    Read,
    /// The admin token: reads and changes.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }
}

/// The role of the bearer token in `authorization`, if it is one of the configured tokens.
pub fn role(state: &AdminState, authorization: Option<&str>) -> Option<Role> {
    let presented = authorization
        .and_then(tally_service::bearer_token)
        .unwrap_or("");
    let digest = TokenDigest::of(presented);
    let admin = digest.matches(&state.admin_token);
    let read = match &state.read_token {
        Some(read) => digest.matches(read),
        None => subtle::Choice::from(0),
    };
    if bool::from(admin) {
        Some(Role::Admin)
    } else if bool::from(read) {
        Some(Role::Read)
    } else {
        None
    }
}

/// Whether the request's `Origin`, if it has one, is another origin than its `Host`.
fn foreign_origin(request: &Request) -> bool {
    let Some(origin) = request.headers().get(header::ORIGIN) else {
        return false;
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    let origin = origin.to_str().ok();
    match (origin, host) {
        (Some(origin), Some(host)) => {
            let own = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            own != Some(host)
        }
        _ => true,
    }
}

/// Lets a request through with its [`Role`] in its extensions, or answers 401 (no valid
/// token), 403 (a change with the read-only token, or from another origin).
pub async fn require_token(
    State(state): State<AdminState>,
    mut request: Request,
    next: Next,
) -> Response {
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if !reads && foreign_origin(&request) {
        return error(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "changes are accepted from this API's own origin only",
        );
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match role(&state, authorization) {
        None => error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid admin or read-only bearer token is required",
        ),
        Some(Role::Read) if !reads => error(
            StatusCode::FORBIDDEN,
            "read_only",
            "the read-only token cannot change anything; this needs the admin token",
        ),
        Some(role) => {
            request.extensions_mut().insert(role);
            next.run(request).await
        }
    }
}

/// `GET /v1/whoami`: the role of the caller's token (the dashboard shows it).
pub async fn whoami(axum::Extension(role): axum::Extension<Role>) -> Response {
    use axum::response::IntoResponse;
    axum::Json(serde_json::json!({"role": role.as_str()})).into_response()
}

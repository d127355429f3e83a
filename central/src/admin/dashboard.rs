//! The dashboard: one page served at `/` of the admin listener, its HTML, CSS and JavaScript
//! built into the binary (no toolchain, no CDN, no external font). The page asks for a token,
//! keeps it in the tab's `sessionStorage`, and sends it as the `Authorization` header of its
//! `fetch` calls to the same API the command line uses; it never puts it in a URL. It polls
//! `GET /v1/status` every few seconds. The assets need no token: they hold no data.
//!
//! Every answer carries a Content-Security-Policy that allows only this origin's script, style
//! and API, and no framing; the script writes data into the page as text, never as HTML (SKUs
//! and messages come from scanners and Odoo).

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AdminState;

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/app.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}

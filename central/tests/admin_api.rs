//! The admin API over HTTP, through the real router and store: who may call it.

use std::time::Duration;

use reqwest::StatusCode;
use tally_central::admin::{AdminState, router};
use tally_central::store::Store;
use tally_central::sync::hub::Hub;
use tally_protocol::Secret;
use tokio_util::sync::CancellationToken;

const ADMIN_TOKEN: &str = "admin-token-0123456789";

struct Admin {
    url: String,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn admin_with(edit: impl FnOnce(&mut AdminState)) -> Admin {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut state = AdminState::new(
        store,
        Hub::default(),
        &Secret::new(ADMIN_TOKEN),
        Duration::from_secs(60),
    );
    edit(&mut state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, router(state))
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    Admin {
        url,
        shutdown,
        _dir: dir,
    }
}

async fn get(url: &str, authorization: Option<&str>) -> StatusCode {
    let mut request = reqwest::Client::new().get(url);
    if let Some(authorization) = authorization {
        request = request.header(reqwest::header::AUTHORIZATION, authorization);
    }
    request.send().await.unwrap().status()
}

/// Regression: the scheme word was case-sensitive, so `bearer <token>` was refused (RFC 7235
/// makes it case-insensitive).
#[tokio::test]
async fn the_auth_scheme_is_case_insensitive() {
    let admin = admin_with(|_| {}).await;
    let agents = format!("{}/v1/agents", admin.url);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let auth = format!("{scheme} {ADMIN_TOKEN}");
        assert_eq!(get(&agents, Some(&auth)).await, StatusCode::OK, "{scheme}");
    }
    for auth in [
        None,
        Some("bearer wrong-token-0123456789"),
        Some(ADMIN_TOKEN),
    ] {
        assert_eq!(
            get(&agents, auth).await,
            StatusCode::UNAUTHORIZED,
            "{auth:?}"
        );
    }
}

const READ_TOKEN: &str = "read-only-token-0123456789";

async fn send(
    method: reqwest::Method,
    url: &str,
    token: &str,
    origin: Option<&str>,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token);
    if let Some(origin) = origin {
        request = request.header(reqwest::header::ORIGIN, origin);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_default())
}

/// The read-only token reads everything and changes nothing; the admin token changes, and
/// every change lands in the audit log with its role and reason.
#[tokio::test]
async fn the_read_only_token_reads_and_only_the_admin_token_changes_audited() {
    let admin = admin_with(|state| {
        *state = state
            .clone()
            .with_read_token(Some(&Secret::new(READ_TOKEN)));
    })
    .await;
    let url = |path: &str| format!("{}{path}", admin.url);
    for path in [
        "/v1/status",
        "/v1/agents",
        "/v1/audit",
        "/v1/dead-letters",
        "/v1/merge",
    ] {
        let (status, _) = send(reqwest::Method::GET, &url(path), READ_TOKEN, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let (_, who) = send(
        reqwest::Method::GET,
        &url("/v1/whoami"),
        READ_TOKEN,
        None,
        None,
    )
    .await;
    assert_eq!(who["role"], "read");
    let add = serde_json::json!({"agent_id": "a1", "warehouse": "WH", "reason": "new scanner"});
    let retry = serde_json::json!({"warehouse": "WH", "sku": "S", "reason": "created"});
    for (path, body) in [("/v1/agents", &add), ("/v1/dead-letters/retry", &retry)] {
        let (status, answer) = send(
            reqwest::Method::POST,
            &url(path),
            READ_TOKEN,
            None,
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], "read_only");
    }
    let (_, audit) = send(
        reqwest::Method::GET,
        &url("/v1/audit"),
        READ_TOKEN,
        None,
        None,
    )
    .await;
    assert_eq!(audit["total"], 0, "a refused change is no change: {audit}");

    let (status, answer) = send(
        reqwest::Method::POST,
        &url("/v1/agents"),
        ADMIN_TOKEN,
        None,
        Some(add),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, _) = send(
        reqwest::Method::POST,
        &url("/v1/agents/a1/revoke"),
        ADMIN_TOKEN,
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, audit) = send(
        reqwest::Method::GET,
        &url("/v1/audit"),
        READ_TOKEN,
        None,
        None,
    )
    .await;
    assert_eq!(audit["total"], 2, "{audit}");
    let newest = &audit["entries"][0];
    assert_eq!(
        (&newest["action"], &newest["role"], &newest["target"]),
        (&"agent-revoke".into(), &"admin".into(), &"a1".into())
    );
    assert_eq!(audit["entries"][1]["reason"], "new scanner");
    // The audit log never shows a token.
    assert!(!audit.to_string().contains("tly1_"), "{audit}");
}

/// A change from a page of another origin is refused before its token is looked at; the
/// API's own origin (the dashboard) and no Origin at all (the command line) are accepted.
#[tokio::test]
async fn changes_from_a_foreign_origin_are_refused() {
    let admin = admin_with(|_| {}).await;
    let add = |id: &str| serde_json::json!({"agent_id": id, "warehouse": "WH"});
    let url = format!("{}/v1/agents", admin.url);
    for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        let (status, answer) = send(
            reqwest::Method::POST,
            &url,
            ADMIN_TOKEN,
            Some(origin),
            Some(add("a1")),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}");
        assert_eq!(answer["error"]["code"], "cross_origin");
    }
    let (status, _) = send(
        reqwest::Method::POST,
        &url,
        ADMIN_TOKEN,
        Some(&admin.url),
        Some(add("a1")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = send(
        reqwest::Method::POST,
        &url,
        ADMIN_TOKEN,
        None,
        Some(add("a2")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    // Reads from anywhere still need a token, and show no data without one.
    let (status, _) = send(
        reqwest::Method::GET,
        &url,
        "",
        Some("http://evil.example"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// The dashboard is served from the binary without a token (it holds no data), under a policy
/// that allows only this origin's script, style and API.
#[tokio::test]
async fn the_dashboard_is_built_in_and_locked_to_its_origin() {
    let admin = admin_with(|_| {}).await;
    for (path, kind) in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/app.css", "text/css"),
    ] {
        let response = reqwest::get(format!("{}{path}", admin.url)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind));
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path} loads nothing from elsewhere"
        );
    }
}

fn shop() -> tally_central::channels::ChannelConfig {
    use std::collections::{BTreeMap, BTreeSet};
    tally_central::channels::ChannelConfig {
        name: "shop".into(),
        kind: tally_central::channels::ChannelKind::Webhook,
        warehouses: BTreeSet::from(["WH".to_owned()]),
        buffer: tally_central::channels::Buffer {
            units: 2,
            percent: 0,
        },
        cap: None,
        skus: BTreeMap::new(),
        ignore: BTreeSet::new(),
        url: "http://127.0.0.1:9".into(),
        secret: Secret::new("s"),
        reconcile: None,
        pool: None,
    }
}

fn stock(sku: &str, units: i64) -> tally_central::availability::Availability {
    let on_hand = tally_protocol::Qty::from_units(units);
    tally_central::availability::Availability {
        sku: sku.into(),
        warehouse: "WH".into(),
        on_hand,
        reserved: tally_protocol::Qty::ZERO,
        free: tally_central::availability::free(on_hand, tally_protocol::Qty::ZERO),
        read_at: String::new(),
        includes: vec![],
    }
}

/// A channel resync is a change: the read-only token is refused, the admin token needs a
/// reason, and the resync lands in the audit log. The channel shows in the status, and a SKU's
/// availability shows what the channel is offered.
#[tokio::test]
async fn a_channel_resync_needs_the_admin_token_and_a_reason_and_is_audited() {
    let admin = admin_with(|state| {
        let channels = vec![shop()];
        state
            .store
            .record_availability(&[stock("A", 10), stock("B", 5)], &channels)
            .unwrap();
        *state = state
            .clone()
            .with_read_token(Some(&Secret::new(READ_TOKEN)));
        state.channels = Some(std::sync::Arc::new(tally_central::channels::Channels::new(
            std::sync::Arc::new(channels),
        )));
    })
    .await;
    let url = |path: &str| format!("{}{path}", admin.url);
    let resync = url("/v1/channels/shop/resync");
    let why = serde_json::json!({"reason": "fixed the shop's locations"});
    let (status, answer) = send(
        reqwest::Method::POST,
        &resync,
        READ_TOKEN,
        None,
        Some(why.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["error"]["code"], "read_only");
    let no_reason = serde_json::json!({});
    let (status, answer) = send(
        reqwest::Method::POST,
        &resync,
        ADMIN_TOKEN,
        None,
        Some(no_reason),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["code"], "missing_reason");
    let (_, audit) = send(
        reqwest::Method::GET,
        &url("/v1/audit"),
        READ_TOKEN,
        None,
        None,
    )
    .await;
    assert_eq!(audit["total"], 0, "a refused resync is no change: {audit}");

    let (status, answer) = send(reqwest::Method::POST, &resync, ADMIN_TOKEN, None, Some(why)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["queued"], 2, "{answer}");
    let (_, audit) = send(
        reqwest::Method::GET,
        &url("/v1/audit"),
        READ_TOKEN,
        None,
        None,
    )
    .await;
    let entry = &audit["entries"][0];
    assert_eq!(
        (&entry["action"], &entry["role"], &entry["target"]),
        (&"channel-resync".into(), &"admin".into(), &"shop".into()),
        "{audit}"
    );
    assert_eq!(entry["reason"], "fixed the shop's locations");
    assert!(
        entry["at"].as_str().is_some_and(|at| at.starts_with("20")),
        "the time is kept: {entry}"
    );
    assert_eq!(entry["detail"], "2 SKUs queued");

    let (_, status) = send(
        reqwest::Method::GET,
        &url("/v1/status"),
        READ_TOKEN,
        None,
        None,
    )
    .await;
    let channel = &status["channels"][0];
    assert_eq!(
        (&channel["name"], &channel["pending"]),
        (&"shop".into(), &2.into()),
        "{status}"
    );
    let (_, availability) = send(
        reqwest::Method::GET,
        &url("/v1/availability?sku=A"),
        READ_TOKEN,
        None,
        None,
    )
    .await;
    let offer = &availability["channels"][0];
    assert_eq!(
        (&offer["channel"], &offer["offered"], &offer["last_sent"]),
        (&"shop".into(), &8.into(), &serde_json::Value::Null),
        "10 free less the buffer of 2, never sent yet: {availability}"
    );
}

//! The local HTTP API, through the real router, writer thread and redb log: every status code
//! the API promises, atomic batches and idempotency.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tally_agent::Agent;
use tally_agent::config::Config;
use tally_protocol::Secret;
use tower::ServiceExt;

const TOKEN: &str = "test-token-0123456789";

struct TestAgent {
    router: Router,
    _dir: tempfile::TempDir,
}

fn config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        warehouse: "WH".into(),
        agent_id: "wh-agent".into(),
        max_log_bytes: 1 << 30,
        scanner_tokens: vec![Secret::new(TOKEN)],
        max_body_bytes: 1 << 20,
        central: None,
        retention: std::time::Duration::from_secs(3600),
        id_retention: std::time::Duration::from_secs(3600),
        metrics_token: None,
    }
}

fn agent_with(edit: impl FnOnce(&mut Config)) -> TestAgent {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    edit(&mut config);
    let agent = Agent::open(&config).unwrap();
    let router = tally_agent::http::router(agent.state().clone());
    TestAgent { router, _dir: dir }
}

fn agent() -> TestAgent {
    agent_with(|_| {})
}

impl TestAgent {
    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }

    async fn post_raw(&self, body: impl Into<Body>) -> (StatusCode, Value) {
        self.send(
            Request::post("/v1/events")
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.into())
                .unwrap(),
        )
        .await
    }

    async fn post(&self, body: Value) -> (StatusCode, Value) {
        self.post_raw(body.to_string()).await
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.send(
            Request::get(uri)
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn stored(&self) -> Vec<Value> {
        let (status, body) = self.get("/v1/events?after=0&limit=1000").await;
        assert_eq!(status, StatusCode::OK);
        body["events"].as_array().unwrap().clone()
    }
}

fn pick(id: &str, qty: &str) -> Value {
    json!({"id": id, "type": "pick", "sku": "SKU-1", "qty": qty, "location": "WH/Stock"})
}

#[tokio::test]
async fn a_posted_event_is_stored_and_read_back() {
    let agent = agent();
    let (status, body) = agent.post(pick("a", "1.5")).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        body,
        json!({"accepted": [{"id": "a", "seq": 1, "duplicate": false}]})
    );
    let stored = agent.stored().await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["qty"], "1.5");
    assert_eq!(stored[0]["sku"], "SKU-1");
    assert_eq!(stored[0]["seq"], 1);
}

#[tokio::test]
async fn a_batch_is_stored_whole_with_contiguous_seqs() {
    let agent = agent();
    let events: Vec<Value> = (0..5).map(|i| pick(&format!("e{i}"), "1")).collect();
    let (status, body) = agent.post(json!({ "events": events })).await;
    assert_eq!(status, StatusCode::CREATED);
    let seqs: Vec<u64> = body["accepted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn a_batch_with_one_bad_event_stores_nothing() {
    let agent = agent();
    let (status, body) = agent
        .post(json!({"events": [pick("a", "1"), pick("b", "1"), {"type": "pick", "sku": "X", "qty": "-1"}]}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["index"], 2);
    assert_eq!(body["error"]["field"], "qty");
    assert_eq!(body["error"]["code"], "invalid_field");
    assert!(agent.stored().await.is_empty());
}

#[tokio::test]
async fn a_retried_event_is_a_duplicate_with_its_original_seq() {
    let agent = agent();
    assert_eq!(agent.post(pick("a", "1")).await.0, StatusCode::CREATED);
    assert_eq!(agent.post(pick("b", "1")).await.0, StatusCode::CREATED);
    let (status, body) = agent.post(pick("a", "1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"accepted": [{"id": "a", "seq": 1, "duplicate": true}]})
    );
    assert_eq!(agent.stored().await.len(), 2);
}

#[tokio::test]
async fn a_batch_mixing_retries_and_new_events_stores_only_the_new() {
    let agent = agent();
    agent.post(pick("a", "1")).await;
    let (status, body) = agent
        .post(json!({"events": [pick("b", "1"), pick("a", "1"), pick("b", "1"), {"type": "receipt", "sku": "S", "qty": 2}]}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        body["accepted"],
        json!([
            {"id": "b", "seq": 2, "duplicate": false},
            {"id": "a", "seq": 1, "duplicate": true},
            {"id": "b", "seq": 2, "duplicate": true},
            {"seq": 3, "duplicate": false},
        ])
    );
    assert_eq!(agent.stored().await.len(), 3);
}

#[tokio::test]
async fn an_id_reused_for_different_content_is_a_conflict_and_stores_nothing() {
    let agent = agent();
    agent.post(pick("a", "1")).await;
    let (status, body) = agent
        .post(json!({"events": [pick("c", "1"), pick("a", "2")]}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "id_conflict");
    assert_eq!(body["error"]["index"], 1);
    assert_eq!(body["error"]["field"], "id");
    assert_eq!(
        agent.stored().await.len(),
        1,
        "the batch's new event was not stored either"
    );
}

/// Regression: a 409 for an id reused inside one request named the seq the earlier event would
/// have had, an event that was never stored.
#[tokio::test]
async fn a_conflict_names_the_stored_event_or_the_earlier_event_of_the_request() {
    let agent = agent();
    let (status, body) = agent
        .post(json!({"events": [pick("a", "1"), pick("a", "2")]}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(!message.contains("seq"), "{message}");
    assert!(message.contains("event 0 of this request"), "{message}");
    assert!(agent.stored().await.is_empty());

    agent.post(pick("x", "1")).await;
    agent.post(pick("a", "1")).await;
    let (status, body) = agent
        .post(json!({"events": [pick("b", "1"), pick("a", "2")]}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("stored event with seq 2"), "{message}");
}

#[tokio::test]
async fn malformed_json_is_400() {
    let agent = agent();
    let (status, body) = agent.post_raw("{\"type\": ").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "malformed_json");
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let agent = agent_with(|c| c.max_body_bytes = 2048);
    let events: Vec<Value> = (0..100).map(|i| pick(&format!("e{i}"), "1")).collect();
    let (status, body) = agent.post(json!({ "events": events })).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "body_too_large");
    assert!(agent.stored().await.is_empty());
}

impl TestAgent {
    async fn post_with(
        &self,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> (StatusCode, Value) {
        let mut request =
            Request::post("/v1/events").header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(body.into()).unwrap()).await
    }
}

/// Regression: `Content-Type: text/plain` was accepted and a gzip body got 400 (blaming its
/// JSON) instead of 415.
#[tokio::test]
async fn a_body_that_is_not_plain_json_is_415() {
    let agent = agent();
    let body = pick("a", "1").to_string();
    for headers in [
        &[][..],
        &[("content-type", "text/plain")],
        &[("content-type", "application/x-www-form-urlencoded")],
        &[("content-type", "application/json; charset=latin1")],
    ] {
        let (status, answer) = agent.post_with(headers, body.clone()).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{headers:?}");
        assert_eq!(answer["error"]["code"], "unsupported_media_type");
    }
    for encoding in ["gzip", "br", "identity, gzip"] {
        let headers = [
            ("content-type", "application/json"),
            ("content-encoding", encoding),
        ];
        let (status, answer) = agent.post_with(&headers, vec![0x1f_u8, 0x8b, 8, 0]).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{encoding}");
        assert_eq!(answer["error"]["code"], "unsupported_encoding");
    }
    assert!(agent.stored().await.is_empty());
    for (i, content_type) in [
        "application/json",
        "Application/JSON; charset=UTF-8",
        "application/json;charset=\"utf-8\"",
    ]
    .into_iter()
    .enumerate()
    {
        let headers = [
            ("content-type", content_type),
            ("content-encoding", "identity"),
        ];
        let (status, _) = agent
            .post_with(&headers, pick(&format!("ok{i}"), "1").to_string())
            .await;
        assert_eq!(status, StatusCode::CREATED, "{content_type}");
    }
}

/// Regression: a declared `Content-Length: 999999999999` was not refused until the body had
/// been read up to the limit.
#[tokio::test]
async fn a_declared_length_over_the_limit_is_413_before_the_body_is_read() {
    let agent = agent();
    // A body that never ends: only an answer from the headers alone can come back.
    let body = Body::from_stream(futures_util::stream::pending::<
        Result<axum::body::Bytes, std::io::Error>,
    >());
    let headers = [
        ("content-type", "application/json"),
        ("content-length", "999999999999"),
    ];
    let (status, answer) = agent.post_with(&headers, body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer["error"]["code"], "body_too_large");
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_401() {
    let agent = agent();
    let post = |auth: Option<&str>| {
        let mut request = Request::post("/v1/events");
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        request
            .body(Body::from(pick("a", "1").to_string()))
            .unwrap()
    };
    for auth in [
        None,
        Some("Bearer wrong-token-0123456789"),
        Some(TOKEN),
        Some("Basic eDp5"),
    ] {
        let (status, body) = agent.send(post(auth)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let (status, _) = agent
        .send(Request::get("/v1/status").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(agent.stored().await.is_empty());
}

/// Regression: the scheme word was case-sensitive, so `bearer <token>` was refused (RFC 7235
/// makes it case-insensitive).
#[tokio::test]
async fn the_auth_scheme_is_case_insensitive() {
    let agent = agent();
    for (i, scheme) in ["bearer", "BEARER", "Bearer"].into_iter().enumerate() {
        let (status, body) = agent
            .send(
                Request::post("/v1/events")
                    .header(header::AUTHORIZATION, format!("{scheme} {TOKEN}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(pick(&format!("e{i}"), "1").to_string()))
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{scheme}: {body}");
    }
    let (status, _) = agent
        .send(
            Request::get("/v1/status")
                .header(header::AUTHORIZATION, "bearer wrong-token-0123456789")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_exhausted_disk_budget_is_507_and_old_events_stay() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    // Room for a few dozen events beyond what the empty log already takes.
    let initial = tally_agent::log::Log::open(dir.path())
        .unwrap()
        .file_bytes();
    config.max_log_bytes = initial + 8_000;
    let agent = TestAgent {
        router: tally_agent::http::router(Agent::open(&config).unwrap().state().clone()),
        _dir: dir,
    };
    let mut stored = Vec::new();
    let mut refused = None;
    for i in 0..10_000 {
        let id = format!("e{i}");
        let (status, body) = agent.post(pick(&id, "1")).await;
        match status {
            StatusCode::CREATED => stored.push(id),
            StatusCode::INSUFFICIENT_STORAGE => {
                assert_eq!(body["error"]["code"], "log_full");
                refused = Some(id);
                break;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let refused = refused.expect("the budget was never reached");
    assert!(!stored.is_empty(), "no event fitted in the budget");
    // A refused event stays refused, a retry of a stored one is still answered.
    assert_eq!(
        agent.post(pick(&refused, "1")).await.0,
        StatusCode::INSUFFICIENT_STORAGE
    );
    assert_eq!(agent.post(pick(&stored[0], "1")).await.0, StatusCode::OK);
    let ids: Vec<String> = agent
        .stored()
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids, stored,
        "every acknowledged event is kept, nothing else"
    );
}

#[tokio::test]
async fn reading_pages_through_the_log() {
    let agent = agent();
    for i in 0..7 {
        agent.post(pick(&format!("e{i}"), "1")).await;
    }
    let (status, body) = agent.get("/v1/events?after=2&limit=3").await;
    assert_eq!(status, StatusCode::OK);
    let seqs: Vec<u64> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![3, 4, 5]);
    assert_eq!(body["log_id"].as_str().unwrap().len(), 32);
    for bad in [
        "/v1/events?limit=0",
        "/v1/events?limit=5000",
        "/v1/events?after=-1",
        "/v1/events?after=x",
    ] {
        let (status, body) = agent.get(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["error"]["code"], "invalid_query");
    }
}

#[tokio::test]
async fn status_reports_the_log() {
    let agent = agent();
    agent
        .post(json!({"events": [pick("a", "1"), pick("b", "1")]}))
        .await;
    let (status, body) = agent.get("/v1/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["agent_id"], "wh-agent");
    assert_eq!(body["warehouse"], "WH");
    assert_eq!(body["last_seq"], 2);
    assert_eq!(body["acked_seq"], 0);
    assert_eq!(body["pending"], 2);
    assert_eq!(body["connected"], false);
    assert_eq!(body["max_log_bytes"], 1u64 << 30);
    assert!(body["oldest_pending_age_seconds"].as_f64().unwrap() >= 0.0);
    assert!(body["log_bytes"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn metrics_count_accepted_and_rejected() {
    let agent = agent();
    agent.post(pick("a", "1")).await;
    agent.post(pick("a", "1")).await;
    agent.post(json!({"type": "pick"})).await;
    let response = agent
        .router
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The body is OpenMetrics (`_total`, `# EOF`): a scraper told "0.0.4" would misread it.
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains("tally_agent_events_accepted_total 1"),
        "{text}"
    );
    assert!(
        text.contains("tally_agent_events_duplicate_total 1"),
        "{text}"
    );
    assert!(
        text.contains("tally_agent_requests_rejected_total{reason=\"missing_field\"} 1"),
        "{text}"
    );
    assert!(text.contains("tally_agent_commit_seconds_bucket"), "{text}");
    assert!(text.contains("tally_agent_last_seq 1"), "{text}");
    assert!(text.contains("tally_agent_acked_seq 0"), "{text}");
    assert!(text.contains("tally_agent_central_connected 0"), "{text}");
    let (status, _) = agent
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn concurrent_posts_share_commits_and_get_distinct_seqs() {
    let agent = agent();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let router = agent.router.clone();
        tasks.push(tokio::spawn(async move {
            let request = Request::post("/v1/events")
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(pick(&format!("c{i}"), "1").to_string()))
                .unwrap();
            let response = router.oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::CREATED);
            let body: Value =
                serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes())
                    .unwrap();
            body["accepted"][0]["seq"].as_u64().unwrap()
        }));
    }
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=64).collect::<Vec<u64>>());
}

/// Issue 10, item 8: /metrics faces the warehouse network; with `metrics_token` set it answers
/// only that token, not a scanner's (which can post events) and not an anonymous caller.
#[tokio::test]
async fn a_configured_metrics_token_closes_metrics_to_everyone_else() {
    const METRICS_TOKEN: &str = "scrape-token-0123456789";
    let agent = agent_with(|c| c.metrics_token = Some(Secret::new(METRICS_TOKEN)));
    let metrics = |auth: Option<String>| {
        let mut request = Request::get("/metrics");
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        agent.send(request.body(Body::empty()).unwrap())
    };
    let (status, body) = metrics(None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(
        metrics(Some(format!("Bearer {TOKEN}"))).await.0,
        StatusCode::UNAUTHORIZED,
        "a scanner token opened /metrics"
    );
    let (status, body) = metrics(Some(format!("bearer {METRICS_TOKEN}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.as_str()
            .is_some_and(|t| t.contains("tally_agent_requests_rejected_total")),
        "{body}"
    );
    // The metrics token is not a scanner token.
    let (status, _) = agent
        .send(
            Request::post("/v1/events")
                .header(header::AUTHORIZATION, format!("Bearer {METRICS_TOKEN}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(pick("m", "1").to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

//! Backups of the event log and their restore (issue 14, item 5): a running agent's backup
//! through `POST /v1/backup` (loopback callers only), and a restore that checks the backup, keeps the replaced log aside
//! and gives the restored log a new id with the unacknowledged events numbered from 1, so
//! central takes it as a new log and drops nothing of it as a duplicate of the old one.

use std::net::SocketAddr;
use std::path::Path;

use axum::extract::ConnectInfo;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use redb::Database;
use serde_json::json;
use tally_agent::Agent;
use tally_agent::config::Config;
use tally_agent::log::backup::{BEFORE_RESTORE_FILE, RestoreError, restore};
use tally_agent::log::{LOG_FILE, LOG_FORMAT, Log};
use tally_protocol::Secret;
use tally_service::datafile::FORMAT_TABLE;
use tower::ServiceExt;

const TOKEN: &str = "test-token-0123456789";

fn config(dir: &Path) -> Config {
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

fn request(method: &str, uri: &str, body: Body) -> Request<Body> {
    from([127, 0, 0, 1], method, uri, body)
}

fn from(ip: [u8; 4], method: &str, uri: &str, body: Body) -> Request<Body> {
    Request::builder()
        .extension(ConnectInfo(SocketAddr::from((ip, 40000))))
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap()
}

/// A running agent with five events, central having acknowledged the first two; its backup
/// through the API, written to `to`. Returns the running agent's log.
async fn backed_up_agent(data_dir: &Path, to: &Path) -> Log {
    let agent = Agent::open(&config(data_dir)).unwrap();
    let router = tally_agent::http::router(agent.state().clone());
    let events: Vec<_> = (1..=5)
        .map(|i| json!({"id": format!("scan-{i}"), "type": "receipt", "sku": "SKU-1", "qty": i.to_string(), "location": "WH/Stock"}))
        .collect();
    let response = router
        .clone()
        .oneshot(request(
            "POST",
            "/v1/events",
            json!({ "events": events }).to_string().into(),
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let log = agent.state().log.clone();
    log.set_acked(2).unwrap();

    let response = router
        .clone()
        .oneshot(request("POST", "/v1/backup", Body::empty()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    std::fs::write(to, &bytes).unwrap();

    let from_the_network = router
        .clone()
        .oneshot(from([192, 168, 1, 20], "POST", "/v1/backup", Body::empty()))
        .await
        .unwrap();
    assert_eq!(from_the_network.status(), StatusCode::FORBIDDEN);
    let unauthorized = router
        .oneshot(Request::post("/v1/backup").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
    log
}

#[tokio::test]
async fn a_running_agents_backup_restores_as_a_new_log_of_its_unacknowledged_events() {
    let dir = tempfile::tempdir().unwrap();
    let (live, restored_dir) = (dir.path().join("live"), dir.path().join("restored"));
    std::fs::create_dir_all(&restored_dir).unwrap();
    let backup = dir.path().join("agent.backup");
    let log = backed_up_agent(&live, &backup).await;
    let old_id = log.log_id();

    // Into a directory with a log of its own, which is kept aside.
    drop(Log::open(&restored_dir).unwrap());
    let restored = restore(&restored_dir, &backup).unwrap();
    assert_eq!(restored.backup_log_id, old_id);
    assert_ne!(restored.log_id, old_id);
    assert_eq!((restored.events, restored.acknowledged), (3, 2));
    assert_eq!(restored.backup_version, LOG_FORMAT.current);
    assert_eq!(
        restored.previous.as_deref(),
        Some(restored_dir.join(BEFORE_RESTORE_FILE).as_path())
    );
    assert!(restored_dir.join(BEFORE_RESTORE_FILE).exists());

    let log = Log::open(&restored_dir).unwrap();
    assert_eq!(log.log_id(), restored.log_id);
    let records = log.read_after(0, 10).unwrap();
    assert_eq!(
        records
            .iter()
            .map(|r| (r.seq, r.event.id.clone().unwrap()))
            .collect::<Vec<_>>(),
        [
            (1, "scan-3".to_owned()),
            (2, "scan-4".to_owned()),
            (3, "scan-5".to_owned())
        ]
    );
    let status = log.status().unwrap();
    assert_eq!((status.last_seq, status.acked_seq), (3, 0));

    // Its client ids still answer as duplicates, with their new seqs.
    let mut writer = tally_agent::log::LogWriter::new(log.clone(), 1 << 30).unwrap();
    let again = tally_protocol::Event {
        id: Some("scan-4".into()),
        ..records[1].event.clone()
    };
    let outcome = writer
        .append_group(&[&[again]], tally_protocol::Timestamp::now())
        .unwrap();
    assert_eq!(
        outcome,
        [tally_agent::log::RequestOutcome::Stored(vec![
            tally_agent::log::Accepted {
                seq: 2,
                duplicate: true
            }
        ])]
    );

    // A second restore would lose the first one's kept log: refused while it is there.
    drop(writer);
    drop(log);
    assert!(matches!(
        restore(&restored_dir, &backup),
        Err(RestoreError::BeforeRestoreExists { .. })
    ));
}

#[tokio::test]
async fn a_restore_is_refused_while_the_agent_runs_and_for_unusable_backups() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let backup = dir.path().join("agent.backup");
    let log = backed_up_agent(&live, &backup).await;
    assert!(matches!(
        restore(&live, &backup),
        Err(RestoreError::Running { .. })
    ));
    drop(log);

    let target = dir.path().join("target");
    std::fs::create_dir_all(&target).unwrap();
    let before = Log::open(&target).unwrap().log_id();

    let future = dir.path().join("future.backup");
    std::fs::copy(&backup, &future).unwrap();
    {
        let db = Database::open(&future).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(FORMAT_TABLE)
            .unwrap()
            .insert("version", LOG_FORMAT.current + 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let not_a_backup = dir.path().join("notes.txt");
    std::fs::write(&not_a_backup, "not a database").unwrap();
    let empty = dir.path().join("empty.redb");
    drop(Database::create(&empty).unwrap());
    for (bad, data_error) in [(&future, true), (&empty, true), (&not_a_backup, false)] {
        let error = restore(&target, bad).unwrap_err();
        assert_eq!(error.is_data_error(), data_error, "{error}");
        assert!(
            error.to_string().contains(&bad.display().to_string()),
            "{error}"
        );
    }
    // Nothing of them was put in place, or left behind.
    assert_eq!(Log::open(&target).unwrap().log_id(), before);
    let left: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, [LOG_FILE]);
}

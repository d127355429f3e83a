//! The sync server through real sockets: a real `Central` on loopback, agents played by raw
//! WebSocket clients that send exactly the frames each case needs.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tally_central::Central;
use tally_central::config::{Config, Transport};
use tally_central::store::Store;
use tally_protocol::*;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

const ADMIN_TOKEN: &str = "admin-token-0123456789";
const LOG: LogId = LogId([1; 16]);

struct TestCentral {
    sync: SocketAddr,
    admin: SocketAddr,
    store: Store,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl TestCentral {
    async fn start() -> TestCentral {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
            transport: Transport::Plaintext,
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            admin_token: Secret::new(ADMIN_TOKEN),
            read_token: None,
            admin_tls: false,
            token_grace: Duration::from_secs(60),
            max_connections: 100,
            odoo: None,
            merge: Default::default(),
            availability_poll: Duration::from_secs(10),
            channels: Vec::new(),
            deprecated: Vec::new(),
        };
        let central = Central::open(config).unwrap();
        let store = central.store().clone();
        let sync = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (sync_addr, admin_addr) = (sync.local_addr().unwrap(), admin.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        tokio::spawn(central.serve(sync, admin, shutdown.clone()));
        TestCentral {
            sync: sync_addr,
            admin: admin_addr,
            store,
            shutdown,
            _dir: dir,
        }
    }

    async fn connect(&self) -> Client {
        let url = format!("ws://{}/v1/sync", self.sync);
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Client { ws }
    }
}

impl Drop for TestCentral {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    async fn send(&mut self, message: &Message) {
        let bytes = encode_message(message);
        self.ws.send(Ws::Binary(bytes.into())).await.unwrap();
    }

    /// The next message from central, or `None` once it closed the connection.
    async fn recv(&mut self) -> Option<Message> {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("central answers within 10 s");
            match frame {
                Some(Ok(Ws::Binary(bytes))) => return Some(decode_message(&bytes).unwrap()),
                Some(Ok(Ws::Close(_)) | Err(_)) | None => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    async fn hello(
        &mut self,
        agent: &str,
        warehouse: &str,
        token: &Secret,
        log: LogId,
        head: u64,
    ) -> Message {
        self.send(&Message::Hello(Hello {
            agent_id: agent.into(),
            warehouse: warehouse.into(),
            log_id: log,
            head_seq: head,
            oldest_unacked_at: None,
            token: token.clone(),
            agent_version: "test".into(),
        }))
        .await;
        self.recv().await.expect("an answer to hello")
    }
}

fn events(seqs: std::ops::RangeInclusive<u64>) -> Vec<LoggedEvent> {
    seqs.map(|seq| LoggedEvent {
        seq,
        received_at: Timestamp::from_micros(1_000 + seq as i64),
        event: Event {
            id: Some(format!("e{seq}")),
            ..Event::new(EventKind::Pick, "SKU", Qty::from_units(1))
        },
    })
    .collect()
}

fn batch(seqs: std::ops::RangeInclusive<u64>) -> Message {
    Message::Batch(Batch {
        events: events(seqs),
    })
}

fn ack(seq: u64) -> Option<Message> {
    Some(Message::Ack(Ack { seq }))
}

fn rejected(message: Option<Message>) -> (RejectReason, bool) {
    match message {
        Some(Message::Reject(r)) => (r.reason, r.retryable),
        other => panic!("expected a Reject, got {other:?}"),
    }
}

fn welcomed(message: Message) -> u64 {
    match message {
        Message::Welcome(w) => w.stored_seq,
        other => panic!("expected a Welcome, got {other:?}"),
    }
}

#[tokio::test]
async fn batches_are_acknowledged_cumulatively_and_duplicates_dropped() {
    let central = TestCentral::start().await;
    let token = central.store.add_agent("a1", "WH").unwrap();
    let mut agent = central.connect().await;
    assert_eq!(welcomed(agent.hello("a1", "WH", &token, LOG, 10).await), 0);
    agent.send(&batch(1..=4)).await;
    agent.send(&batch(5..=10)).await;
    assert_eq!(agent.recv().await, ack(4));
    assert_eq!(agent.recv().await, ack(10));
    drop(agent);

    // Reconnecting resumes from what is stored; resending old events is harmless.
    let mut agent = central.connect().await;
    assert_eq!(welcomed(agent.hello("a1", "WH", &token, LOG, 12).await), 10);
    agent.send(&batch(8..=12)).await;
    assert_eq!(agent.recv().await, ack(12));
    assert_eq!(
        central.store.read_journal("a1", LOG, 0, 100).unwrap(),
        events(1..=12)
    );
}

#[tokio::test]
async fn each_bad_hello_gets_its_own_clear_rejection() {
    let central = TestCentral::start().await;
    let token = central.store.add_agent("a1", "WH").unwrap();
    let revoked = central.store.add_agent("gone", "WH").unwrap();
    central.store.revoke_agent("gone").unwrap();
    let cases = [
        (
            "a1",
            "WH",
            Secret::new("tly1_wrong"),
            RejectReason::BadToken,
        ),
        ("nobody", "WH", token.clone(), RejectReason::BadToken),
        ("gone", "WH", revoked, RejectReason::Revoked),
        ("a1", "OTHER", token, RejectReason::WarehouseMismatch),
    ];
    for (agent_id, warehouse, token, reason) in cases {
        let mut agent = central.connect().await;
        let answer = agent.hello(agent_id, warehouse, &token, LOG, 0).await;
        assert_eq!(
            rejected(Some(answer)),
            (reason, false),
            "{agent_id}/{warehouse}"
        );
    }

    // An agent speaking an older protocol version.
    let mut agent = central.connect().await;
    let mut bytes = encode_message(&Message::Ack(Ack { seq: 0 }));
    bytes[..2].copy_from_slice(&0u16.to_be_bytes());
    agent.ws.send(Ws::Binary(bytes.into())).await.unwrap();
    assert_eq!(
        rejected(agent.recv().await),
        (RejectReason::UnsupportedVersion, false)
    );

    // Anything but Hello first.
    let mut agent = central.connect().await;
    agent.send(&Message::Ack(Ack { seq: 1 })).await;
    assert_eq!(
        rejected(agent.recv().await),
        (RejectReason::ProtocolError, false)
    );
}

#[tokio::test]
async fn garbage_gaps_and_oversized_frames_close_only_their_connection() {
    let central = TestCentral::start().await;
    let token = central.store.add_agent("good", "WH").unwrap();
    let bad_token = central.store.add_agent("bad", "WH").unwrap();
    let mut good = central.connect().await;
    good.hello("good", "WH", &token, LOG, 100).await;

    let mut bad = central.connect().await;
    bad.hello("bad", "WH", &bad_token, LOG, 100).await;
    bad.ws
        .send(Ws::Binary(vec![0, 1, 0xff, 0xfe, 0x17].into()))
        .await
        .unwrap();
    assert_eq!(
        rejected(bad.recv().await),
        (RejectReason::ProtocolError, false)
    );

    let mut bad = central.connect().await;
    bad.hello("bad", "WH", &bad_token, LOG, 100).await;
    bad.send(&batch(5..=6)).await;
    assert_eq!(
        rejected(bad.recv().await),
        (RejectReason::ProtocolError, false),
        "a gap"
    );

    let mut bad = central.connect().await;
    bad.hello("bad", "WH", &bad_token, LOG, 100).await;
    let huge = vec![0u8; tally_central::sync::MAX_MESSAGE_BYTES + 1];
    let _ = bad.ws.send(Ws::Binary(huge.into())).await;
    assert_eq!(
        bad.recv().await,
        None,
        "an oversized frame closes the connection"
    );

    // Meanwhile the good agent was never disturbed.
    good.send(&batch(1..=3)).await;
    assert_eq!(good.recv().await, ack(3));
    assert!(
        central
            .store
            .read_journal("bad", LOG, 0, 10)
            .unwrap()
            .is_empty()
    );
}

/// Guards against central journaling whatever an authenticated agent sends (issue 10, item 2):
/// a receipt of −5 and a pick of 0 once became a delivery of −9.2e12 in Odoo. Each batch
/// holding an event the agent's own ingest would refuse is rejected naming its seq, and
/// nothing of it is journaled; the agent's valid events are then accepted as usual.
#[tokio::test]
async fn a_batch_with_an_invalid_event_is_rejected_naming_its_seq_and_nothing_is_journaled() {
    let central = TestCentral::start().await;
    let token = central.store.add_agent("a1", "WH").unwrap();
    let bad = |event: Event| {
        let mut events = events(1..=3);
        events[2].event = event;
        events
    };
    let cases = [
        (
            bad(Event::new(EventKind::Receipt, "SKU", Qty::from_units(-5))),
            "qty",
        ),
        (bad(Event::new(EventKind::Pick, "SKU", Qty::ZERO)), "qty"),
        (
            bad(Event::new(
                EventKind::Pick,
                "SKU\u{1b}[2J\n",
                Qty::from_units(1),
            )),
            "sku",
        ),
        (
            bad(Event::new(EventKind::Adjustment, "SKU", Qty::from_units(3))),
            "reason",
        ),
        (
            bad(Event::new(
                EventKind::Pick,
                "SKU\u{202e}",
                Qty::from_units(1),
            )),
            "sku",
        ),
        (
            bad(Event::new(
                EventKind::Receipt,
                "SKU",
                Qty::from_micros(i64::MAX),
            )),
            "qty",
        ),
    ];
    for (events, field) in cases {
        let mut agent = central.connect().await;
        assert_eq!(welcomed(agent.hello("a1", "WH", &token, LOG, 3).await), 0);
        agent.send(&Message::Batch(Batch { events })).await;
        match agent.recv().await {
            Some(Message::Reject(reject)) => {
                assert_eq!(
                    (reject.reason, reject.retryable),
                    (RejectReason::ProtocolError, false)
                );
                assert!(
                    reject.message.contains("seq 3") && reject.message.contains(field),
                    "{}",
                    reject.message
                );
            }
            other => panic!("expected a Reject for the {field}, got {other:?}"),
        }
        assert_eq!(central.store.read_journal("a1", LOG, 0, 10).unwrap(), []);
        assert_eq!(central.store.stored_seq("a1", LOG).unwrap(), 0);
    }

    let mut agent = central.connect().await;
    assert_eq!(welcomed(agent.hello("a1", "WH", &token, LOG, 3).await), 0);
    agent.send(&batch(1..=3)).await;
    assert_eq!(agent.recv().await, ack(3));
}

/// A log writer for one test: what central logs, in memory.
#[derive(Clone, Default)]
struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Guards against log injection and flooding without credentials (issue 10, item 4): the
/// agent id of an unauthenticated Hello, logged raw, forged a whole "agent connected" line with
/// a newline and ANSI escapes, and a 4 MiB id wrote 4 MiB of log per attempt.
#[tokio::test]
async fn an_unauthenticated_agent_id_cannot_forge_or_flood_log_lines() {
    let log = CapturedLog::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // The test's runtime runs every task of central on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);
    let central = TestCentral::start().await;
    let forged = "x\n2026-01-01T00:00:00.000000Z  INFO tally_central: agent connected agent_id=admin\u{1b}[2K\u{1b}[1A";
    let mut agent = central.connect().await;
    let answer = agent
        .hello(forged, "WH", &Secret::new("tly1_guess"), LOG, 0)
        .await;
    assert_eq!(rejected(Some(answer)), (RejectReason::BadToken, false));

    let huge = "a".repeat(4 << 20);
    let mut agent = central.connect().await;
    let answer = agent
        .hello(&huge, "WH", &Secret::new("tly1_guess"), LOG, 0)
        .await;
    assert_eq!(rejected(Some(answer)), (RejectReason::ProtocolError, false));
    drop(agent);
    central.shutdown.cancel();

    let text = log.text();
    assert!(
        text.contains("rejected: unknown agent or bad token"),
        "the refusal is logged: {text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "an escape reached the log: {text:?}"
    );
    for line in text.lines() {
        assert!(
            !line.starts_with("2026-01-01T00:00:00.000000Z"),
            "a forged line: {line:?}"
        );
    }
    assert!(text.len() < 64 << 10, "{} bytes of log", text.len());
}

/// Guards against world-readable data outside systemd (issue 10, item 6): the data directory
/// and `central.redb` were created 0755 and 0644 under a usual umask.
#[cfg(unix)]
#[test]
fn the_data_directory_and_store_are_the_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("central-data");
    let config = Config {
        data_dir: data.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        transport: Transport::Plaintext,
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        admin_token: Secret::new(ADMIN_TOKEN),
        read_token: None,
        admin_tls: false,
        token_grace: Duration::from_secs(60),
        max_connections: 100,
        odoo: None,
        merge: Default::default(),
        availability_poll: Duration::from_secs(10),
        channels: Vec::new(),
        deprecated: Vec::new(),
    };
    let central = Central::open(config).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join(tally_central::store::STORE_FILE)), 0o600);
    drop(central);
}

#[tokio::test]
async fn a_stalled_agent_does_not_slow_the_others() {
    let central = TestCentral::start().await;
    let stalled_token = central.store.add_agent("stalled", "WH").unwrap();
    let token = central.store.add_agent("busy", "WH").unwrap();
    let mut stalled = central.connect().await;
    stalled
        .hello("stalled", "WH", &stalled_token, LOG, 1_000_000)
        .await;
    // It sends a lot and never reads an ack, so central's acks to it back up.
    let mut seq = 1;
    for _ in 0..200 {
        stalled.send(&batch(seq..=seq + 99)).await;
        seq += 100;
    }
    let mut busy = central.connect().await;
    busy.hello("busy", "WH", &token, LOG, 50_000).await;
    let mut next = 1;
    for _ in 0..100 {
        busy.send(&batch(next..=next + 499)).await;
        next += 500;
        assert_eq!(busy.recv().await, ack(next - 1));
    }
}

#[tokio::test]
async fn a_new_log_id_is_a_new_sequence_space() {
    let central = TestCentral::start().await;
    let token = central.store.add_agent("a1", "WH").unwrap();
    let mut agent = central.connect().await;
    agent.hello("a1", "WH", &token, LOG, 5).await;
    agent.send(&batch(1..=5)).await;
    assert_eq!(agent.recv().await, ack(5));
    drop(agent);
    let replaced = LogId([2; 16]);
    let mut agent = central.connect().await;
    assert_eq!(
        welcomed(agent.hello("a1", "WH", &token, replaced, 3).await),
        0
    );
    agent.send(&batch(1..=3)).await;
    assert_eq!(agent.recv().await, ack(3));
    assert_eq!(
        central.store.read_journal("a1", LOG, 0, 10).unwrap(),
        events(1..=5)
    );
    assert_eq!(
        central.store.read_journal("a1", replaced, 0, 10).unwrap(),
        events(1..=3)
    );

    let agents: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/v1/agents", central.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let a1 = &agents["agents"][0];
    assert_eq!(a1["log_replaced"], true, "{agents}");
    assert_eq!(a1["logs"].as_array().unwrap().len(), 2);
    // The agent alone is enough: its latest log, from the start.
    let journal: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/v1/journal?agent=a1", central.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(journal["log_id"], replaced.to_string(), "{journal}");
    assert_eq!(journal["events"].as_array().unwrap().len(), 3, "{journal}");

    let metrics = reqwest::get(format!("http://{}/metrics", central.admin))
        .await
        .unwrap();
    assert_eq!(
        metrics.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("tally_central_agents_connected 1"),
        "{metrics}"
    );
    // No Odoo here: what the README says to alert on is there, at 0, not missing.
    for line in [
        "tally_central_odoo_alert 0",
        "tally_central_dead_letters 0",
        "tally_central_agent_unmerged_events{agent=\"a1\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in {metrics}"
        );
    }
    assert!(
        metrics.contains("tally_central_agent_stored_seq{agent=\"a1\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn revoking_closes_the_live_session_at_once() {
    let central = TestCentral::start().await;
    let token = central.store.add_agent("a1", "WH").unwrap();
    let mut agent = central.connect().await;
    agent.hello("a1", "WH", &token, LOG, 0).await;
    let client = reqwest::Client::new();
    let revoke = client
        .post(format!("http://{}/v1/agents/a1/revoke", central.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 204);
    assert_eq!(rejected(agent.recv().await), (RejectReason::Revoked, false));
    let unauthorised = client
        .get(format!("http://{}/v1/agents", central.admin))
        .bearer_auth("wrong-admin-token-000")
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status(), 401);
}

#[tokio::test]
async fn the_dead_letter_api_refuses_bad_input_with_clear_errors() {
    let central = TestCentral::start().await;
    let client = reqwest::Client::new();
    let post = |path: &str, body: &str| {
        client
            .post(format!("http://{}{path}", central.admin))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };
    let cases = [
        ("/v1/dead-letters/retry", "{}", 400, "invalid_body"),
        ("/v1/dead-letters/retry", "not json", 400, "invalid_body"),
        (
            "/v1/dead-letters/retry",
            r#"{"warehouse":"WH","sku":"A","extra":1}"#,
            400,
            "invalid_body",
        ),
        (
            "/v1/dead-letters/discard",
            r#"{"warehouse":"WH","sku":"A","reason":"  "}"#,
            422,
            "missing_reason",
        ),
        (
            "/v1/dead-letters/retry",
            r#"{"warehouse":"WH","sku":"A"}"#,
            422,
            "missing_reason",
        ),
    ];
    for (path, body, status, code) in cases {
        let answer = post(path, body).await.unwrap();
        assert_eq!(answer.status(), status, "{path} {body}");
        let answer: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(answer["error"]["code"], code, "{path} {body}: {answer}");
    }
    // Nothing parked for that key: a typo must not pass for a retry or a discard.
    for (path, body) in [
        (
            "/v1/dead-letters/retry",
            r#"{"warehouse":"WH","sku":"A","reason":"created"}"#,
        ),
        (
            "/v1/dead-letters/discard",
            r#"{"warehouse":"WH","sku":"A","reason":"typo"}"#,
        ),
    ] {
        let answer = post(path, body).await.unwrap();
        assert_eq!(answer.status(), 404, "{path}");
        let answer: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(answer["error"]["code"], "nothing_parked", "{answer}");
    }
    for query in ["?limit=0", "?limit=10001", "?limit=many", "?page=2"] {
        let answer = client
            .get(format!("http://{}/v1/dead-letters{query}", central.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400, "{query}");
    }
    let listed: serde_json::Value = client
        .get(format!("http://{}/v1/dead-letters?limit=5", central.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["total"], 0, "{listed}");
    for path in ["/v1/dead-letters", "/v1/notices"] {
        let unauthorised = client
            .get(format!("http://{}{path}", central.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(unauthorised.status(), 401, "{path}");
    }
}

//! The event log under storage faults and against a model.
//!
//! Faults are injected below redb, through a `StorageBackend` that wraps redb's own
//! `FileBackend` and fails writes or syncs on demand (as a full disk or a dying one would).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use redb::StorageBackend;
use redb::backends::FileBackend;
use serde_json::{Value, json};
use tally_agent::Agent;
use tally_agent::config::Config;
use tally_agent::log::writer::GroupLimits;
use tally_agent::log::{ConflictWith, Log, LogWriter, RequestOutcome};
use tally_protocol::{Event, EventKind, Qty, Secret, Timestamp};
use tower::ServiceExt;

const TOKEN: &str = "test-token-0123456789";

const HEALTHY: u8 = 0;
const DISK_FULL: u8 = 1;
const SYNC_FAILS: u8 = 2;

/// redb's file backend with a switch: healthy, every write fails with ENOSPC, or every
/// fsync fails with EIO.
#[derive(Debug)]
struct FaultyBackend {
    inner: FileBackend,
    mode: Arc<AtomicU8>,
}

impl FaultyBackend {
    fn fault(&self, during: u8) -> std::io::Result<()> {
        if self.mode.load(Ordering::SeqCst) == during {
            let kind = if during == DISK_FULL {
                std::io::ErrorKind::StorageFull
            } else {
                std::io::ErrorKind::Other
            };
            return Err(std::io::Error::new(kind, "injected fault"));
        }
        Ok(())
    }
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.fault(DISK_FULL)?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.fault(SYNC_FAILS)?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.fault(DISK_FULL)?;
        self.inner.write(offset, data)
    }
    fn close(&self) -> std::io::Result<()> {
        self.inner.close()
    }
}

fn faulty_log(path: PathBuf, mode: Arc<AtomicU8>) -> Log {
    let file_path = path.clone();
    Log::open_with_backend(path, move || {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&file_path)?;
        Ok(FaultyBackend {
            inner: FileBackend::new(file).map_err(std::io::Error::other)?,
            mode: Arc::clone(&mode),
        })
    })
    .unwrap()
}

fn config(dir: &Path) -> Config {
    Config {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        warehouse: "WH".into(),
        agent_id: "a".into(),
        max_log_bytes: 1 << 30,
        scanner_tokens: vec![Secret::new(TOKEN)],
        max_body_bytes: 1 << 20,
        central: None,
        retention: std::time::Duration::from_secs(3600),
        id_retention: std::time::Duration::from_secs(3600),
        metrics_token: None,
    }
}

async fn call(router: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn post(router: &Router, ids: &[String]) -> (StatusCode, Value) {
    let events: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "type": "receipt", "sku": "S", "qty": 1}))
        .collect();
    let request = Request::post("/v1/events")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({ "events": events }).to_string()))
        .unwrap();
    call(router, request).await
}

async fn stored_ids(router: &Router) -> Result<Vec<String>, StatusCode> {
    let request = Request::get("/v1/events?limit=1000")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let (status, body) = call(router, request).await;
    if status != StatusCode::OK {
        return Err(status);
    }
    Ok(body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect())
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test]
async fn failing_writes_acknowledge_nothing_and_the_log_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mode = Arc::new(AtomicU8::new(HEALTHY));
    let log = faulty_log(dir.path().join("events.redb"), Arc::clone(&mode));
    let agent = Agent::with_log(&config(dir.path()), log, GroupLimits::default()).unwrap();
    let router = tally_agent::http::router(agent.state().clone());

    let mut acked = ids("ok-a", 5);
    assert_eq!(post(&router, &acked).await.0, StatusCode::CREATED);

    for (fault, status, code) in [
        (DISK_FULL, StatusCode::INSUFFICIENT_STORAGE, "disk_full"),
        (
            SYNC_FAILS,
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
        ),
    ] {
        mode.store(fault, Ordering::SeqCst);
        let refused = ids(&format!("refused-{fault}-"), 3);
        let (got, body) = post(&router, &refused).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
        // While the fault lasts, every write keeps failing and nothing is acknowledged.
        assert_eq!(post(&router, &refused).await.0, status);

        mode.store(HEALTHY, Ordering::SeqCst);
        // Sent again, the refused events are stored once. A failed fsync is ambiguous (the data
        // may have reached the disk anyway), so the retry may find them already stored, but
        // never half of them.
        let (got, body) = post(&router, &refused).await;
        let duplicates: Vec<bool> = body["accepted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["duplicate"].as_bool().unwrap())
            .collect();
        assert!(
            (got == StatusCode::CREATED && duplicates.iter().all(|d| !d))
                || (got == StatusCode::OK && duplicates.iter().all(|d| *d)),
            "{got} {body}"
        );
        if fault == DISK_FULL {
            assert_eq!(
                got,
                StatusCode::CREATED,
                "a write that failed stored nothing"
            );
        }
        acked.extend(refused);
        assert_eq!(stored_ids(&router).await.unwrap(), acked);
    }

    // The file itself is intact: a plain open sees exactly the acknowledged events, in order.
    drop(router);
    drop(agent);
    let reopened = open_when_released(dir.path()).await;
    let records = reopened.read_after(0, 1000).unwrap();
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=acked.len() as u64).collect::<Vec<_>>());
    let stored: Vec<String> = records.into_iter().map(|r| r.event.id.unwrap()).collect();
    assert_eq!(stored, acked);
}

#[tokio::test]
async fn the_log_stays_readable_while_writes_fail() {
    let dir = tempfile::tempdir().unwrap();
    let mode = Arc::new(AtomicU8::new(HEALTHY));
    let log = faulty_log(dir.path().join("events.redb"), Arc::clone(&mode));
    let agent = Agent::with_log(&config(dir.path()), log, GroupLimits::default()).unwrap();
    let router = tally_agent::http::router(agent.state().clone());
    let acked = ids("a", 3);
    post(&router, &acked).await;
    mode.store(SYNC_FAILS, Ordering::SeqCst);
    assert_eq!(
        post(&router, &ids("b", 2)).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(stored_ids(&router).await, Ok(acked));
}

/// The writer thread drops its handle on the log asynchronously after the agent is dropped;
/// opening the file again succeeds once it has.
async fn open_when_released(dir: &Path) -> Log {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Log::open(dir) {
            Ok(log) => return log,
            Err(tally_agent::log::LogError::InUse { .. })
                if std::time::Instant::now() < deadline =>
            {
                tokio::task::yield_now().await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

mod model {
    //! The log against a model: a vector of events and a map of client ids.

    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// A group commit of requests; each request is a list of (client id, qty units).
        Group(Vec<Vec<(Option<u8>, i64)>>),
        /// Close and open the log again.
        Reopen,
        /// Acknowledge and prune every event, keeping every client id.
        Prune,
    }

    fn op() -> impl Strategy<Value = Op> {
        let event = (proptest::option::weighted(0.8, 0u8..12), 1i64..4);
        let request = proptest::collection::vec(event, 1..5);
        prop_oneof![
            6 => proptest::collection::vec(request, 1..4).prop_map(Op::Group),
            1 => Just(Op::Reopen),
            1 => Just(Op::Prune),
        ]
    }

    fn event(id: Option<u8>, qty: i64) -> Event {
        Event {
            id: id.map(|i| format!("id-{i}")),
            ..Event::new(EventKind::Receipt, "S", Qty::from_units(qty))
        }
    }

    #[derive(Default)]
    struct Model {
        log: Vec<Event>,
        ids: HashMap<String, (u64, Event)>,
        /// Events before this index were pruned (seqs stay as they were).
        pruned: usize,
    }

    impl Model {
        fn apply(&mut self, request: &[Event]) -> RequestOutcome {
            let mut accepted = Vec::new();
            let mut added: Vec<Event> = Vec::new();
            let mut local: HashMap<String, (usize, u64, Event)> = HashMap::new();
            for (index, e) in request.iter().enumerate() {
                let next = (self.log.len() + added.len() + 1) as u64;
                let seen = e.id.as_ref().and_then(|id| {
                    local
                        .get(id)
                        .map(|(i, seq, ev)| (ConflictWith::Earlier(*i), *seq, ev))
                        .or(self
                            .ids
                            .get(id)
                            .map(|(seq, ev)| (ConflictWith::Stored(*seq), *seq, ev)))
                });
                match seen {
                    Some((_, seq, original)) if original == e => {
                        accepted.push(tally_agent::log::Accepted {
                            seq,
                            duplicate: true,
                        })
                    }
                    Some((with, _, _)) => {
                        return RequestOutcome::Conflict { index, with };
                    }
                    None => {
                        if let Some(id) = &e.id {
                            local.insert(id.clone(), (index, next, e.clone()));
                        }
                        accepted.push(tally_agent::log::Accepted {
                            seq: next,
                            duplicate: false,
                        });
                        added.push(e.clone());
                    }
                }
            }
            self.ids
                .extend(local.into_iter().map(|(id, (_, seq, e))| (id, (seq, e))));
            self.log.extend(added);
            RequestOutcome::Stored(accepted)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn the_log_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..24), flush_at in 1usize..6) {
            let dir = tempfile::tempdir().unwrap();
            // A small flush threshold, so that client ids move from memory to the ids table
            // (and are rebuilt on reopen) many times per case.
            let open = |dir: &std::path::Path| {
                LogWriter::new(Log::open(dir).unwrap(), u64::MAX).unwrap().with_id_flush_threshold(flush_at)
            };
            let mut writer = open(dir.path());
            let mut model = Model::default();
            for op in ops {
                match op {
                    Op::Reopen => {
                        drop(writer);
                        writer = open(dir.path());
                    }
                    Op::Prune => {
                        // Central acknowledged everything; ids must survive their events.
                        let log = writer.log().clone();
                        let head = log.status().unwrap().last_seq;
                        log.set_acked(head).unwrap();
                        let far_future = Timestamp::from_micros(i64::MAX);
                        log.prune(far_future, Timestamp::from_micros(0)).unwrap();
                        model.pruned = model.log.len();
                    }
                    Op::Group(requests) => {
                        let requests: Vec<Vec<Event>> = requests
                            .into_iter()
                            .map(|r| r.into_iter().map(|(id, qty)| event(id, qty)).collect())
                            .collect();
                        let slices: Vec<&[Event]> = requests.iter().map(Vec::as_slice).collect();
                        let got = writer.append_group(&slices, Timestamp::from_micros(1)).unwrap();
                        let expected: Vec<RequestOutcome> = requests.iter().map(|r| model.apply(r)).collect();
                        prop_assert_eq!(got, expected);
                    }
                }
                let stored: Vec<Event> = writer
                    .log()
                    .read_after(0, usize::MAX)
                    .unwrap()
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| {
                        assert_eq!(r.seq, (model.pruned + i) as u64 + 1);
                        r.event
                    })
                    .collect();
                prop_assert_eq!(&stored, &model.log[model.pruned..]);
                prop_assert_eq!(writer.log().status().unwrap().last_seq, model.log.len() as u64);
            }
        }
    }
}

/// Guards against world-readable data outside systemd (issue 10, item 6): the data directory
/// and `events.redb` were created 0755 and 0644 under a usual umask.
#[cfg(unix)]
#[test]
fn the_data_directory_and_log_are_the_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("agent-data");
    let agent = Agent::open(&config(&data)).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join(tally_agent::log::LOG_FILE)), 0o600);
    drop(agent);
}

//! systemd's watchdog is petted by the log writer itself: a commit stuck in fsync (a dead disk)
//! stops the pets, and they resume once it completes. A timer beside the writer would keep
//! petting a wedged agent, and systemd would never restart it.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use redb::StorageBackend;
use redb::backends::FileBackend;
use tally_agent::Agent;
use tally_agent::config::Config;
use tally_agent::log::writer::GroupLimits;
use tally_agent::log::{Log, RequestOutcome};
use tally_protocol::{Event, EventKind, Qty, Secret};
use tally_service::watchdog::Watchdog;
use tokio_util::sync::CancellationToken;

/// redb's file backend whose fsync, once `armed`, says so on `stuck` and waits for `release`.
#[derive(Debug)]
struct StallingBackend {
    inner: FileBackend,
    gate: Arc<Gate>,
}

#[derive(Debug)]
struct Gate {
    armed: AtomicBool,
    stuck: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl StorageBackend for StallingBackend {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        if self.gate.armed.swap(false, Ordering::SeqCst) {
            let _ = self.gate.stuck.lock().unwrap().send(());
            let _ = self.gate.release.lock().unwrap().recv();
        }
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.inner.write(offset, data)
    }
    fn close(&self) -> std::io::Result<()> {
        self.inner.close()
    }
}

fn config(dir: &Path) -> Config {
    Config {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        warehouse: "WH".into(),
        agent_id: "a".into(),
        max_log_bytes: 1 << 30,
        scanner_tokens: vec![Secret::new("test-token-0123456789")],
        max_body_bytes: 1 << 20,
        central: None,
        retention: Duration::from_secs(3600),
        id_retention: Duration::from_secs(3600),
        metrics_token: None,
    }
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_stuck_in_fsync_stops_the_watchdog_pets() {
    let dir = tempfile::tempdir().unwrap();
    let (stuck_tx, stuck_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let gate = Arc::new(Gate {
        armed: AtomicBool::new(false),
        stuck: Mutex::new(stuck_tx),
        release: Mutex::new(release_rx),
    });
    let file_path = dir.path().join("events.redb");
    let log = Log::open_with_backend(file_path.clone(), {
        let gate = Arc::clone(&gate);
        move || {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&file_path)?;
            Ok(StallingBackend {
                inner: FileBackend::new(file).map_err(std::io::Error::other)?,
                gate: Arc::clone(&gate),
            })
        }
    })
    .unwrap();

    let pets = Arc::new(AtomicUsize::new(0));
    let watchdog = Watchdog::new(Duration::from_millis(40), {
        let pets = Arc::clone(&pets);
        move || {
            pets.fetch_add(1, Ordering::SeqCst);
        }
    });
    let agent = Agent::with_log(&config(dir.path()), log, GroupLimits::default())
        .unwrap()
        .with_watchdog(Arc::clone(&watchdog));
    let writer = agent.state().writer.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(agent.serve(listener, shutdown.clone()));

    wait_until("the idle agent has petted three times", || {
        pets.load(Ordering::SeqCst) >= 3
    })
    .await;

    // An append whose commit hangs in fsync, as on a disk that stopped answering.
    gate.armed.store(true, Ordering::SeqCst);
    let event = Event {
        id: Some("stuck-1".into()),
        ..Event::new(EventKind::Receipt, "SKU-1", Qty::from_units(1))
    };
    let append = tokio::spawn({
        let writer = writer.clone();
        async move { writer.append(vec![event]).await }
    });
    tokio::task::spawn_blocking(move || stuck_rx.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("the commit reached fsync");
    let pets_when_stuck = pets.load(Ordering::SeqCst);
    // Not synchronisation: the window in which no pet may come, 20 probe intervals (a timer
    // beside the writer would have petted about 20 times in it).
    tokio::time::sleep(watchdog.probe_interval() * 20).await;
    assert_eq!(
        pets.load(Ordering::SeqCst),
        pets_when_stuck,
        "the watchdog was petted while the writer was stuck"
    );
    assert!(!append.is_finished(), "the stuck append was answered");

    release_tx.send(()).unwrap();
    let outcome = append.await.unwrap().unwrap();
    assert!(
        matches!(outcome, RequestOutcome::Stored(ref a) if a.len() == 1),
        "{outcome:?}"
    );
    wait_until("the writer pets again", || {
        pets.load(Ordering::SeqCst) > pets_when_stuck
    })
    .await;

    drop(writer);
    shutdown.cancel();
    server.await.unwrap().unwrap();
}

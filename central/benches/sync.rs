//! Sync benchmark: prints its figures; `docs/BENCHMARKS.md` records them.
//!
//! `cargo bench -p tally-central --bench sync` measures, side by side in one run:
//! 1. the drain of a backlog (1,000,000 events by default) from one agent's log to central over
//!    TLS on loopback, against a naive forwarder that POSTs one event per HTTP request into the
//!    same central store;
//! 2. the latency from the agent's 201 to central's durable ack under light load;
//! 3. the memory of a central process per idle connected agent (1,000 agents).
//!
//! Knobs: `TALLY_BENCH_EVENTS` (backlog size), `TALLY_BENCH_NAIVE_EVENTS`,
//! `TALLY_BENCH_AGENTS` (idle agents).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::State;
use axum::routing::post;
use futures_util::{SinkExt, StreamExt};
use tally_agent::log::{Log, LogWriter};
use tally_agent::sync::connect::Endpoint;
use tally_agent::sync::session::SessionLimits;
use tally_agent::sync::{SyncConfig, SyncStatus};
use tally_central::Central;
use tally_central::config::{Config, Transport};
use tally_central::store::Store;
use tally_central::store::journal::JournalHandle;
use tally_protocol::*;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_util::sync::CancellationToken;

const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn event(i: u64) -> Event {
    Event {
        id: Some(format!("gun-{:02}-{i:010}", i % 17)),
        kind: if i.is_multiple_of(5) {
            EventKind::Receipt
        } else {
            EventKind::Pick
        },
        sku: format!("SKU-{:05}", i % 2000),
        qty: Qty::from_units((i % 7 + 1) as i64),
        location: Some("WH/Stock/A-12-03".into()),
        to_location: None,
        lot: None,
        reference: Some(format!("WH/OUT/{:05}", i % 9000)),
        reason: None,
        occurred_at: Some(Timestamp::now()),
        device: Some("gun-7".into()),
        user: Some("ana".into()),
    }
}

fn central_config(dir: &Path, tls: &tally_central::tls::GeneratedCert) -> Config {
    Config {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        transport: Transport::Tls {
            cert: tls.cert.clone(),
            key: tls.key.clone(),
        },
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        admin_token: Secret::new(ADMIN_TOKEN),
        read_token: None,
        admin_tls: false,
        token_grace: Duration::from_secs(60),
        max_connections: 20_000,
        odoo: None,
        merge: Default::default(),
        availability_poll: Duration::from_secs(10),
        channels: Vec::new(),
        deprecated: Vec::new(),
    }
}

fn sync_config(port: u16, ca: &Path, agent_id: &str, token: Secret) -> anyhow::Result<SyncConfig> {
    Ok(SyncConfig {
        endpoint: Endpoint::new(&format!("wss://localhost:{port}/v1/sync"), Some(ca), None)?,
        agent_id: agent_id.into(),
        warehouse: "WH".into(),
        token,
        limits: SessionLimits::default(),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(10),
    })
}

struct Running {
    sync_port: u16,
    store: Store,
    shutdown: CancellationToken,
}

async fn start_central(
    dir: &Path,
    tls: &tally_central::tls::GeneratedCert,
) -> anyhow::Result<Running> {
    let central = Central::open(central_config(dir, tls))?;
    let store = central.store().clone();
    let sync = TcpListener::bind("127.0.0.1:0").await?;
    let admin = TcpListener::bind("127.0.0.1:0").await?;
    let sync_port = sync.local_addr()?.port();
    let shutdown = CancellationToken::new();
    tokio::spawn(central.serve(sync, admin, shutdown.clone()));
    Ok(Running {
        sync_port,
        store,
        shutdown,
    })
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let events = env_usize("TALLY_BENCH_EVENTS", 1_000_000) as u64;
    let naive_events = env_usize("TALLY_BENCH_NAIVE_EVENTS", 20_000) as u64;
    let idle_agents = env_usize("TALLY_BENCH_AGENTS", 1000);
    let work = tempfile::tempdir()?;
    println!("tally sync benchmark — temp dir {}", work.path().display());
    let tls = tally_central::tls::generate(&work.path().join("tls"), &["localhost".into()])?;

    // The backlog: written to the agent's log before central is reachable.
    let agent_dir = work.path().join("agent");
    std::fs::create_dir_all(&agent_dir)?;
    let log = Log::open(&agent_dir)?;
    let started = Instant::now();
    {
        let mut writer = LogWriter::new(log.clone(), u64::MAX)?;
        let mut next = 0u64;
        while next < events {
            let n = (events - next).min(1000);
            let batch: Vec<Event> = (next..next + n).map(event).collect();
            writer.append_group(&[batch.as_slice()], Timestamp::now())?;
            next += n;
        }
    }
    println!(
        "backlog: {events} events written to the agent's log in {:.1?}",
        started.elapsed()
    );

    let central = start_central(&work.path().join("central"), &tls).await?;
    let token = central.store.add_agent("bench-agent", "WH")?;

    // 1. Drain over TLS.
    let status = Arc::new(SyncStatus::default());
    let stop = CancellationToken::new();
    let config = sync_config(central.sync_port, &tls.ca_cert, "bench-agent", token)?;
    let started = Instant::now();
    let sync = tokio::spawn(tally_agent::sync::run(
        log.clone(),
        config,
        Arc::clone(&status),
        stop.clone(),
    ));
    let mut last_report = Instant::now();
    while status.acked_seq() < events {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if last_report.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "  draining: {} of {events} acknowledged",
                status.acked_seq()
            );
            last_report = Instant::now();
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "drain took over 10 minutes"
        );
    }
    let drain = started.elapsed();
    let stored = central.store.stored_seq("bench-agent", log.log_id())?;
    anyhow::ensure!(stored == events, "central stored {stored} of {events}");
    let drain_rate = events as f64 / drain.as_secs_f64();

    // 2. Latency from 201 to ack, light load: one event every 5 ms appended the way the HTTP
    // handler does (the writer's durable commit), then the wait for central's ack.
    let mut writer = LogWriter::new(log.clone(), u64::MAX)?;
    let mut latencies = Vec::new();
    for i in 0..400u64 {
        let batch = [event(events + i)];
        let outcome = writer.append_group(&[batch.as_slice()], Timestamp::now())?;
        let committed = Instant::now();
        let tally_agent::log::RequestOutcome::Stored(accepted) = &outcome[0] else {
            anyhow::bail!("append refused: {outcome:?}");
        };
        let seq = accepted[0].seq;
        while status.acked_seq() < seq {
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        latencies.push(committed.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    stop.cancel();
    let _ = sync.await;

    // The naive forwarder: one HTTP POST per event, each stored by central's journal before
    // the answer, into the same store.
    let naive_rate = naive(&central.store, &log, naive_events).await?;
    central.shutdown.cancel();

    // 3. Idle agents on a central process.
    let per_connection = idle_memory(work.path(), &tls, idle_agents).await?;

    println!();
    println!("| measure | figure | target |");
    println!("|---|---|---|");
    println!(
        "| drain {events} events, TLS, one agent | {:.0} events/s ({drain:.1?}) | ≥ 100,000/s: {} |",
        drain_rate,
        pass(drain_rate >= 100_000.0)
    );
    println!("| naive forwarder, one POST per event | {naive_rate:.0} events/s | |");
    println!(
        "| drain ÷ naive | {:.1}× | ≥ 20×: {} |",
        drain_rate / naive_rate,
        pass(drain_rate / naive_rate >= 20.0)
    );
    println!(
        "| agent commit → central ack, light load | p50 {:.2} ms, p99 {:.2} ms | reported |",
        ms(pct(0.5)),
        ms(pct(0.99))
    );
    println!(
        "| central memory per idle agent ({idle_agents}) | {:.1} KiB | < 100 KiB: {} |",
        per_connection / 1024.0,
        pass(per_connection < 100.0 * 1024.0)
    );
    Ok(())
}

fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn naive(store: &Store, log: &Log, count: u64) -> anyhow::Result<f64> {
    let (journal, _thread) = tally_central::store::journal::spawn(store.clone())?;
    let app = axum::Router::new()
        .route("/event", post(naive_handler))
        .with_state(journal);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let records = log.read_after(0, count as usize)?;
    let started = Instant::now();
    for record in &records {
        let e = &record.event;
        let body = serde_json::json!({
            "seq": record.seq, "id": e.id, "type": e.kind.as_str(), "sku": e.sku, "qty": e.qty.to_string(),
            "location": e.location, "reference": e.reference, "device": e.device, "user": e.user,
        });
        let response = client
            .post(format!("http://{addr}/event"))
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "naive POST failed: {}",
            response.status()
        );
    }
    let rate = records.len() as f64 / started.elapsed().as_secs_f64();
    server.abort();
    Ok(rate)
}

async fn naive_handler(
    State(journal): State<JournalHandle>,
    axum::Json(body): axum::Json<serde_json::Value>,
) -> axum::http::StatusCode {
    let text = |k: &str| body[k].as_str().map(str::to_owned);
    let event = LoggedEvent {
        seq: body["seq"].as_u64().unwrap_or(0),
        received_at: Timestamp::now(),
        event: Event {
            id: text("id"),
            kind: text("type")
                .and_then(|k| k.parse().ok())
                .unwrap_or(EventKind::Pick),
            sku: text("sku").unwrap_or_default(),
            qty: text("qty")
                .and_then(|q| Qty::parse(&q).ok())
                .unwrap_or_default(),
            location: text("location"),
            to_location: None,
            lot: None,
            reference: text("reference"),
            reason: None,
            occurred_at: None,
            device: text("device"),
            user: text("user"),
        },
    };
    match journal
        .append("naive-forwarder".into(), LogId([9; 16]), vec![event])
        .await
    {
        Ok(_) => axum::http::StatusCode::CREATED,
        Err(_) => axum::http::StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")?;
    Ok(kib * 1024)
}

async fn idle_memory(
    work: &Path,
    tls: &tally_central::tls::GeneratedCert,
    agents: usize,
) -> anyhow::Result<f64> {
    let dir = work.join("central-idle");
    std::fs::create_dir_all(&dir)?;
    let mut tokens = Vec::new();
    {
        let store = Store::open(&dir)?;
        for i in 0..agents {
            tokens.push(store.add_agent(&format!("idle-{i}"), "WH")?);
        }
    }
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tally-central"))
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(&dir)
        .arg("--tls-cert")
        .arg(&tls.cert)
        .arg("--tls-key")
        .arg(&tls.key)
        .env("TALLY_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("TALLY_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("central exited")?;
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(
        child.stdout.take().context("stdout")?,
    ));
    let line = lines
        .next_line()
        .await?
        .context("central printed nothing")?;
    let port: u16 = line
        .split_whitespace()
        .nth(3)
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("unexpected line {line:?}"))?;
    let endpoint = Endpoint::new(
        &format!("wss://localhost:{port}/v1/sync"),
        Some(&tls.ca_cert),
        None,
    )?;
    // Warm up: one session, so one-time allocations are not counted per connection.
    let mut links = Vec::new();
    links.push(hello(&endpoint, 0, &tokens[0]).await?);
    let before = rss_bytes(pid)?;
    for (i, token) in tokens.iter().enumerate().skip(1) {
        links.push(hello(&endpoint, i, token).await?);
    }
    let after = rss_bytes(pid)?;
    let per = (after.saturating_sub(before)) as f64 / (agents - 1).max(1) as f64;
    println!(
        "idle agents: central RSS {:.1} MiB with 1 agent, {:.1} MiB with {agents}",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0
    );
    drop(links);
    let _ = child.start_kill();
    let _ = child.wait().await;
    Ok(per)
}

async fn hello(
    endpoint: &Endpoint,
    i: usize,
    token: &Secret,
) -> anyhow::Result<tally_agent::sync::connect::Link> {
    let mut link = endpoint.connect(Duration::from_secs(10)).await?;
    let hello = Message::Hello(Hello {
        agent_id: format!("idle-{i}"),
        warehouse: "WH".into(),
        log_id: LogId(rand::random()),
        head_seq: 0,
        oldest_unacked_at: None,
        token: token.clone(),
        agent_version: "bench".into(),
    });
    link.send(Ws::Binary(encode_message(&hello).into())).await?;
    loop {
        match link.next().await.context("central closed")?? {
            Ws::Binary(bytes) => match decode_message(&bytes)? {
                Message::Welcome(_) => return Ok(link),
                other => anyhow::bail!("expected Welcome, got {other:?}"),
            },
            _ => continue,
        }
    }
}

//! The ingest benchmark: what durability costs, measured against the same HTTP stack.
//!
//! `cargo bench -p tally-agent --bench ingest` prints one table, measured in one run on this
//! machine:
//!
//! 1. single-event posts from 64 concurrent keep-alive clients against three servers that all
//!    run the real router (`tally_agent::http::router`) on a loopback listener:
//!    - **group commit**: the real agent (default [`GroupLimits`]);
//!    - **naive**: the real agent with one request per durable commit;
//!    - **no storage**: the same router whose writer queue is drained by a thread that answers
//!      at once with made-up seqs, so it measures HTTP, JSON and the queue, and no disk;
//!
//!    next to the disk's own `fdatasync` latency on the same file system;
//! 2. posts of 1000-event batches into the real agent;
//! 3. the idle resident memory of the real `tally-agent` binary after one event;
//! 4. the size of that binary.
//!
//! `TALLY_BENCH_SECONDS` sets the measured seconds per load phase (default 5; a fifth of it,
//! at most one second, is an unmeasured warm-up before it). `TMPDIR` chooses where the logs go.

use std::fmt::Write as _;
use std::io::BufRead;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tally_agent::Agent;
use tally_agent::config::Config;
use tally_agent::http::{AppState, TokenSet};
use tally_agent::log::writer::{GroupLimits, WriterHandle};
use tally_agent::log::{Accepted, Log, RequestOutcome};
use tally_agent::metrics::Metrics;
use tally_protocol::Secret;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "bench-token-0123456789";
/// Concurrent clients posting single events.
const CLIENTS: usize = 64;
/// Concurrent clients posting batches, and the events in each batch.
const BATCH_CLIENTS: usize = 4;
const BATCH_EVENTS: usize = 1000;
/// Writes timed for the disk's fdatasync latency.
const FSYNC_ROUNDS: usize = 2000;
/// Capacity of the no-storage server's writer queue: what the real writer gets with the
/// default limits (`max_requests * 4`).
const STUB_QUEUE: usize = 1024 * 4;
/// No single request may take longer than this; the benchmark fails instead of hanging.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

const TARGET_GROUP_OVER_NAIVE: f64 = 5.0;
const TARGET_GROUP_OVER_NO_STORAGE: f64 = 0.70;
const TARGET_BATCH_EVENTS_PER_SEC: f64 = 100_000.0;
const TARGET_RSS_MIB: f64 = 20.0;
const TARGET_BINARY_MIB: f64 = 20.0;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn main() -> anyhow::Result<()> {
    let measure = measure_duration()?;
    let warmup = (measure / 5).min(Duration::from_secs(1));
    let base = tempfile::Builder::new()
        .prefix("tally-bench-")
        .tempdir()
        .context("cannot create the benchmark's temporary directory")?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());

    println!("Tally ingest benchmark");
    println!(
        "  load phases: {:.1} s measured after {:.1} s warm-up (TALLY_BENCH_SECONDS)",
        measure.as_secs_f64(),
        warmup.as_secs_f64()
    );
    println!(
        "  temp dir:    {} ({})",
        base.path().display(),
        describe_filesystem(base.path())
    );
    println!(
        "  cpus:        {cpus}; server runtime 2 workers + writer thread, client runtime 2 workers"
    );
    println!();

    // The server runs on its own runtime sized like the real binary's; the load generator on
    // another. Both share this machine's cores, the same way for every variant.
    let server_rt = runtime("bench-server")?;
    let client_rt = runtime("bench-client")?;
    let client = http_client();

    let fsync = measure_fdatasync(base.path())?;

    let load = |server: &Server, clients: usize, events: usize, tag: &'static str| {
        client_rt.block_on(drive(
            client.clone(),
            server,
            clients,
            events,
            tag,
            warmup,
            measure,
        ))
    };

    let server = start_no_storage(&server_rt, &base.path().join("no-storage"))?;
    let no_storage = load(&server, CLIENTS, 1, "n")?;
    server.stop(&server_rt)?;

    let server = start_agent(
        &server_rt,
        &base.path().join("group"),
        GroupLimits::default(),
    )?;
    let group = load(&server, CLIENTS, 1, "g")?;
    let group_commits = client_rt.block_on(commit_stats(&client, server.addr))?;
    server.stop(&server_rt)?;

    let naive_limits = GroupLimits {
        max_requests: 1,
        max_events: 1,
    };
    let server = start_agent(&server_rt, &base.path().join("naive"), naive_limits)?;
    let naive = load(&server, CLIENTS, 1, "s")?;
    let naive_commits = client_rt.block_on(commit_stats(&client, server.addr))?;
    server.stop(&server_rt)?;

    let server = start_agent(
        &server_rt,
        &base.path().join("batches"),
        GroupLimits::default(),
    )?;
    let batches = load(&server, BATCH_CLIENTS, BATCH_EVENTS, "b")?;
    let batch_commits = client_rt.block_on(commit_stats(&client, server.addr))?;
    server.stop(&server_rt)?;

    let binary = PathBuf::from(env!("CARGO_BIN_EXE_tally-agent"));
    let rss = client_rt.block_on(idle_rss(&client, &binary, &base.path().join("process")))?;
    let binary_bytes = std::fs::metadata(&binary)
        .with_context(|| format!("cannot stat {}", binary.display()))?
        .len();

    println!(
        "Disk: 4 KiB write + fdatasync, {FSYNC_ROUNDS} rounds: p50 {} ms, p99 {} ms",
        ms(fsync.p50),
        ms(fsync.p99)
    );
    println!();
    println!(
        "Single-event posts, {CLIENTS} concurrent keep-alive clients (commit columns cover the warm-up too)"
    );
    print_header();
    print_row("no storage (HTTP only)", &no_storage, None);
    print_row("group commit (durable)", &group, Some(&group_commits));
    print_row("naive 1 req/commit (durable)", &naive, Some(&naive_commits));
    println!();
    println!(
        "{BATCH_EVENTS}-event batches, {BATCH_CLIENTS} concurrent clients, group commit (durable)"
    );
    print_header();
    print_row("batches (durable)", &batches, Some(&batch_commits));
    println!();

    println!(
        "CPU over the measured window (process = server + load generator, % of {cpus} cores; writer = the thread draining the queue, % of its wall time)"
    );
    println!(
        "  {:<30} {:>12} {:>14} {:>18}",
        "variant", "process cpu", "writer on cpu", "writer runnable,"
    );
    println!(
        "  {:<30} {:>12} {:>14} {:>18}",
        "", "", "", "waiting for cpu"
    );
    for (name, result) in [
        ("no storage (HTTP only)", &no_storage),
        ("group commit (durable)", &group),
        ("naive 1 req/commit (durable)", &naive),
        ("batches (durable)", &batches),
    ] {
        let share = |d: Duration| 100.0 * d.as_secs_f64() / result.window.as_secs_f64();
        println!(
            "  {:<30} {:>11.0}% {:>13.0}% {:>17.0}%",
            name,
            share(result.process_cpu) / cpus as f64,
            share(result.writer_cpu),
            share(result.writer_waiting)
        );
    }
    println!();

    let over_naive = group.events_per_sec() / naive.events_per_sec();
    let over_stub = group.events_per_sec() / no_storage.events_per_sec();
    let rss_mib = rss.rss_kib as f64 / 1024.0;
    let binary_mib = binary_bytes as f64 / (1024.0 * 1024.0);
    let clean = |r: &LoadResult| r.errors == 0;
    println!("Targets");
    target(
        "group commit / naive",
        format!("{over_naive:.1}x"),
        format!(">= {TARGET_GROUP_OVER_NAIVE:.0}x"),
        over_naive >= TARGET_GROUP_OVER_NAIVE && clean(&group) && clean(&naive),
    );
    target(
        "group commit / no storage",
        format!("{:.0}%", over_stub * 100.0),
        format!(">= {:.0}%", TARGET_GROUP_OVER_NO_STORAGE * 100.0),
        over_stub >= TARGET_GROUP_OVER_NO_STORAGE && clean(&group) && clean(&no_storage),
    );
    target(
        "1000-event batches",
        format!("{} events/s", thousands(batches.events_per_sec())),
        format!(">= {} events/s", thousands(TARGET_BATCH_EVENTS_PER_SEC)),
        batches.events_per_sec() >= TARGET_BATCH_EVENTS_PER_SEC && clean(&batches),
    );
    target(
        "idle RSS of tally-agent",
        format!("{rss_mib:.1} MiB (peak {:.1})", rss.hwm_kib as f64 / 1024.0),
        format!("< {TARGET_RSS_MIB:.0} MiB"),
        rss_mib < TARGET_RSS_MIB,
    );
    target(
        "tally-agent binary size",
        format!("{binary_mib:.1} MiB"),
        format!("< {TARGET_BINARY_MIB:.0} MiB"),
        binary_mib < TARGET_BINARY_MIB,
    );
    println!("  (binary: {})", binary.display());
    for (name, result) in [
        ("no storage", &no_storage),
        ("group commit", &group),
        ("naive", &naive),
        ("batches", &batches),
    ] {
        if let Some(error) = &result.first_error {
            println!("  first error ({name}): {error}");
        }
    }
    Ok(())
}

fn measure_duration() -> anyhow::Result<Duration> {
    let seconds = match std::env::var("TALLY_BENCH_SECONDS") {
        Ok(text) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| (0.5..=120.0).contains(s))
            .with_context(|| {
                format!("TALLY_BENCH_SECONDS={text:?}: give a number of seconds from 0.5 to 120")
            })?,
        Err(_) => 5.0,
    };
    Ok(Duration::from_secs_f64(seconds))
}

fn runtime(name: &str) -> anyhow::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .context("cannot start a tokio runtime")
}

/// One client for every phase: HTTP/1.1, keep-alive, a pooled connection per concurrent task.
fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CLIENTS)
        .build(connector)
}

fn config(dir: &Path) -> Config {
    Config {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().expect("a valid address"),
        warehouse: "WH".into(),
        agent_id: "bench".into(),
        max_log_bytes: 10 << 30,
        scanner_tokens: vec![Secret::new(TOKEN)],
        max_body_bytes: 4 << 20,
    }
}

/// A server under test, serving on `addr` until stopped.
struct Server {
    addr: std::net::SocketAddr,
    /// The kernel's (15-byte) name of the thread that drains the writer queue.
    writer_thread: &'static str,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// Stops accepting, lets the writer drain and waits for it.
    fn stop(self, rt: &Runtime) -> anyhow::Result<()> {
        self.shutdown.cancel();
        rt.block_on(self.task).context("the server task panicked")?
    }
}

async fn bind() -> anyhow::Result<TcpListener> {
    TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind 127.0.0.1:0")
}

/// The real agent on a fresh log in `dir`.
fn start_agent(rt: &Runtime, dir: &Path, limits: GroupLimits) -> anyhow::Result<Server> {
    std::fs::create_dir_all(dir)?;
    let agent = Agent::with_log(&config(dir), Log::open(dir)?, limits)?;
    let listener = rt.block_on(bind())?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let task = rt.spawn(Box::pin(agent.serve(listener, shutdown.clone())));
    Ok(Server {
        addr,
        writer_thread: "tally-log-write",
        shutdown,
        task,
    })
}

/// The real router whose writer answers every append at once, storing nothing.
fn start_no_storage(rt: &Runtime, dir: &Path) -> anyhow::Result<Server> {
    std::fs::create_dir_all(dir)?;
    let config = config(dir);
    let (writer, mut queue) = WriterHandle::channel(STUB_QUEUE);
    let responder = std::thread::Builder::new()
        .name("bench-no-storage".into())
        .spawn(move || {
            let mut seq = 0u64;
            while let Some(request) = queue.blocking_recv() {
                let accepted = request
                    .events
                    .iter()
                    .map(|_| {
                        seq += 1;
                        Accepted {
                            seq,
                            duplicate: false,
                        }
                    })
                    .collect();
                let _ = request.reply.send(Ok(RequestOutcome::Stored(accepted)));
            }
        })?;
    let state = AppState {
        writer,
        log: Log::open(dir)?,
        metrics: Arc::new(Metrics::new()),
        tokens: Arc::new(TokenSet::new(&config.scanner_tokens)),
        agent_id: config.agent_id.as_str().into(),
        warehouse: config.warehouse.as_str().into(),
        max_log_bytes: config.max_log_bytes,
        max_body_bytes: config.max_body_bytes,
        connected: Arc::new(AtomicBool::new(false)),
    };
    let app = tally_agent::http::router(state);
    let listener = rt.block_on(bind())?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = rt.spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .context("the no-storage server failed")?;
        // The router, and with it the last writer handle, is gone: the responder stops.
        tokio::task::spawn_blocking(move || responder.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the no-storage responder panicked"))
    });
    Ok(Server {
        addr,
        writer_thread: "bench-no-storag",
        shutdown,
        task,
    })
}

/// What one load phase measured.
#[derive(Debug, Default)]
struct LoadResult {
    /// Requests answered 2xx inside the measured window.
    requests: u64,
    events_per_request: usize,
    window: Duration,
    /// Latencies of those requests, in microseconds, sorted.
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    /// CPU time of this whole process (server and load generator) over the window.
    process_cpu: Duration,
    /// Time the writer thread spent on a CPU, and runnable but waiting for one.
    writer_cpu: Duration,
    writer_waiting: Duration,
}

impl LoadResult {
    fn events_per_sec(&self) -> f64 {
        (self.requests * self.events_per_request as u64) as f64 / self.window.as_secs_f64()
    }

    fn latency(&self, quantile: f64) -> Duration {
        Duration::from_micros(u64::from(percentile(&self.latencies_us, quantile)))
    }
}

/// Runs `clients` tasks that each post requests of `events` events back to back until the
/// window ends. A request counts when its answer arrives inside the measured window.
async fn drive(
    client: HttpClient,
    server: &Server,
    clients: usize,
    events: usize,
    tag: &'static str,
    warmup: Duration,
    measure: Duration,
) -> anyhow::Result<LoadResult> {
    let uri: hyper::Uri = format!("http://{}/v1/events", server.addr).parse()?;
    let start = Instant::now() + warmup;
    let end = start + measure;
    let mut tasks = Vec::with_capacity(clients);
    for task in 0..clients {
        let client = client.clone();
        let uri = uri.clone();
        tasks.push(tokio::spawn(async move {
            let mut result = LoadResult::default();
            let mut counter = 0u64;
            while Instant::now() < end {
                let body = request_body(tag, task, &mut counter, events);
                let sent = Instant::now();
                let answer = tokio::time::timeout(REQUEST_TIMEOUT, post(&client, &uri, body)).await;
                let done = Instant::now();
                let outcome = match answer {
                    Ok(Ok((status, _))) if status.is_success() => Ok(()),
                    Ok(Ok((status, text))) => Err(format!("{status}: {text}")),
                    Ok(Err(error)) => Err(format!("{error:#}")),
                    Err(_) => Err(format!("no answer within {REQUEST_TIMEOUT:?}")),
                };
                match outcome {
                    Ok(()) if done >= start && done <= end => {
                        result.requests += 1;
                        let micros = done.duration_since(sent).as_micros();
                        result
                            .latencies_us
                            .push(u32::try_from(micros).unwrap_or(u32::MAX));
                    }
                    Ok(()) => {}
                    Err(error) => {
                        result.errors += 1;
                        result.first_error.get_or_insert(error);
                        // A failing server must not be hammered into a busy loop.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            result
        }));
    }
    tokio::time::sleep_until(start.into()).await;
    let before = CpuSample::take(server.writer_thread);
    tokio::time::sleep_until(end.into()).await;
    let after = CpuSample::take(server.writer_thread);
    let mut total = LoadResult {
        events_per_request: events,
        window: measure,
        process_cpu: after.process.saturating_sub(before.process),
        writer_cpu: after.writer_cpu.saturating_sub(before.writer_cpu),
        writer_waiting: after.writer_waiting.saturating_sub(before.writer_waiting),
        ..LoadResult::default()
    };
    for task in tasks {
        let part = task.await.context("a load task panicked")?;
        total.requests += part.requests;
        total.errors += part.errors;
        total.latencies_us.extend(part.latencies_us);
        if total.first_error.is_none() {
            total.first_error = part.first_error;
        }
    }
    total.latencies_us.sort_unstable();
    Ok(total)
}

/// A body of `events` pick events, each with a client id unique in the run.
fn request_body(tag: &str, task: usize, counter: &mut u64, events: usize) -> Bytes {
    let mut body = String::with_capacity(events * 160 + 16);
    if events > 1 {
        body.push_str("{\"events\":[");
    }
    for i in 0..events {
        if i > 0 {
            body.push(',');
        }
        *counter += 1;
        let n = *counter;
        let _ = write!(
            body,
            "{{\"id\":\"{tag}-{task}-{n}\",\"type\":\"pick\",\"sku\":\"SKU-{:05}\",\"qty\":\"1\",\
             \"location\":\"WH/Stock/A-{:02}\",\"occurred_at\":\"2026-01-15T09:30:00Z\",\
             \"device\":\"scanner-{task}\"}}",
            n % 50_000,
            n % 40
        );
    }
    if events > 1 {
        body.push_str("]}");
    }
    Bytes::from(body)
}

async fn post(
    client: &HttpClient,
    uri: &hyper::Uri,
    body: Bytes,
) -> anyhow::Result<(StatusCode, String)> {
    let request = Request::post(uri.clone())
        .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body))?;
    send(client, request).await
}

async fn get(client: &HttpClient, uri: &str) -> anyhow::Result<(StatusCode, String)> {
    let request = Request::get(uri)
        .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::new()))?;
    send(client, request).await
}

async fn send(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<(StatusCode, String)> {
    let response = client.request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// CPU accounting from /proc: the process's user + system time, and the scheduler's run and
/// wait times for one named thread.
#[derive(Debug, Default)]
struct CpuSample {
    process: Duration,
    writer_cpu: Duration,
    writer_waiting: Duration,
}

impl CpuSample {
    fn take(thread_name: &str) -> CpuSample {
        // Fields after the command name: utime and stime are the 12th and 13th, in USER_HZ
        // (100 per second on Linux).
        let ticks: u64 = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| {
                let rest = &stat[stat.rfind(')')? + 1..];
                let fields: Vec<&str> = rest.split_whitespace().collect();
                Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
            })
            .unwrap_or(0);
        let mut sample = CpuSample {
            process: Duration::from_millis(ticks * 10),
            ..CpuSample::default()
        };
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return sample;
        };
        for task in tasks.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim_end() != thread_name {
                continue;
            }
            let schedstat =
                std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            let mut fields = schedstat
                .split_whitespace()
                .map(|f| f.parse::<u64>().unwrap_or(0));
            sample.writer_cpu = Duration::from_nanos(fields.next().unwrap_or(0));
            sample.writer_waiting = Duration::from_nanos(fields.next().unwrap_or(0));
        }
        sample
    }
}

/// Averages of the writer's commits, from the agent's own `/metrics`.
#[derive(Debug)]
struct CommitStats {
    commits: f64,
    requests_per_commit: f64,
    events_per_commit: f64,
    mean_commit: Duration,
}

async fn commit_stats(
    client: &HttpClient,
    addr: std::net::SocketAddr,
) -> anyhow::Result<CommitStats> {
    let (status, text) = get(client, &format!("http://{addr}/metrics")).await?;
    if !status.is_success() {
        bail!("GET /metrics answered {status}");
    }
    let value = |name: &str| -> anyhow::Result<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("{name} is missing from /metrics"))
    };
    let commits = value("tally_agent_commit_seconds_count")?;
    let per = |sum: f64| if commits > 0.0 { sum / commits } else { 0.0 };
    Ok(CommitStats {
        commits,
        requests_per_commit: per(value("tally_agent_commit_requests_sum")?),
        events_per_commit: per(value("tally_agent_commit_events_sum")?),
        mean_commit: Duration::from_secs_f64(per(value("tally_agent_commit_seconds_sum")?)),
    })
}

/// Latency of rewriting one 4 KiB block and waiting for `fdatasync`, on the file system that
/// holds the logs.
#[derive(Debug)]
struct FsyncResult {
    p50: Duration,
    p99: Duration,
}

fn measure_fdatasync(dir: &Path) -> anyhow::Result<FsyncResult> {
    const BLOCKS: u64 = 256;
    let path = dir.join("fdatasync.probe");
    let file = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let block = [0x5au8; 4096];
    // Allocate the blocks first, so the timed loop overwrites data rather than growing a file.
    for i in 0..BLOCKS {
        file.write_all_at(&block, i * 4096)?;
    }
    file.sync_all()?;
    let mut latencies = Vec::with_capacity(FSYNC_ROUNDS);
    for round in 0..FSYNC_ROUNDS as u64 {
        let started = Instant::now();
        file.write_all_at(&block, (round % BLOCKS) * 4096)?;
        file.sync_data()?;
        latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    drop(file);
    std::fs::remove_file(&path)?;
    latencies.sort_unstable();
    Ok(FsyncResult {
        p50: Duration::from_micros(u64::from(percentile(&latencies, 0.50))),
        p99: Duration::from_micros(u64::from(percentile(&latencies, 0.99))),
    })
}

/// Resident memory of an idle agent process.
#[derive(Debug)]
struct Rss {
    rss_kib: u64,
    hwm_kib: u64,
}

/// Starts the real binary, posts one event, waits until it is healthy and idle, reads its
/// resident memory, then stops it with SIGTERM.
async fn idle_rss(client: &HttpClient, binary: &Path, dir: &Path) -> anyhow::Result<Rss> {
    let mut child = Command::new(binary)
        .arg("run")
        .arg("--data-dir")
        .arg(dir)
        .args(["--warehouse", "WH", "--agent-id", "bench"])
        .args(["--scanner-token", TOKEN, "--listen", "127.0.0.1:0"])
        .env("TALLY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let measured = measure_child(client, &mut child).await;
    let stopped = stop_child(&mut child);
    let rss = measured?;
    stopped?;
    Ok(rss)
}

async fn measure_child(client: &HttpClient, child: &mut Child) -> anyhow::Result<Rss> {
    let stdout = child.stdout.take().context("no stdout")?;
    let addr = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
            for line in std::io::BufReader::new(stdout).lines() {
                if let Some(addr) = line?.strip_prefix("tally-agent listening on http://") {
                    return Ok(addr.to_owned());
                }
            }
            bail!("tally-agent exited before it was listening")
        }),
    )
    .await
    .context("tally-agent did not start listening within 30 s")???;
    let uri: hyper::Uri = format!("http://{addr}/v1/events").parse()?;
    let mut counter = 0;
    let (status, text) = post(client, &uri, request_body("p", 0, &mut counter, 1)).await?;
    if status != StatusCode::CREATED {
        bail!("posting to tally-agent answered {status}: {text}");
    }
    let mut healthy = false;
    for _ in 0..50 {
        if let Ok((StatusCode::OK, _)) = get(client, &format!("http://{addr}/healthz")).await {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !healthy {
        bail!("tally-agent did not answer /healthz");
    }
    // Let it settle into idleness.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .context("cannot read the agent's /proc status")?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/<pid>/status"))
    };
    Ok(Rss {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// SIGTERM (through kill(1): this crate has no unsafe code), then a hard kill after 20 s.
fn stop_child(child: &mut Child) -> anyhow::Result<()> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("tally-agent exited with {status} after SIGTERM");
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill()?;
    child.wait()?;
    bail!("tally-agent did not stop within 20 s of SIGTERM")
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u32], quantile: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The file system holding `path`, from /proc/self/mounts.
fn describe_filesystem(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (device, mount, kind) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(mount).then_some((mount, device, kind))
        })
        .max_by_key(|(mount, _, _)| mount.len())
        .map_or_else(
            || "file system unknown".to_owned(),
            |(mount, device, kind)| format!("{kind} on {device}, mounted at {mount}"),
        )
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn print_header() {
    println!(
        "  {:<30} {:>10} {:>9} {:>9} {:>7} {:>8} {:>10} {:>9} {:>9}",
        "variant",
        "events/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "commits",
        "req/commit",
        "ev/commit",
        "commit ms"
    );
}

fn print_row(name: &str, result: &LoadResult, commits: Option<&CommitStats>) {
    let (count, requests, events, mean) = match commits {
        Some(c) => (
            format!("{:.0}", c.commits),
            format!("{:.1}", c.requests_per_commit),
            format!("{:.1}", c.events_per_commit),
            ms(c.mean_commit),
        ),
        None => ("-".into(), "-".into(), "-".into(), "-".into()),
    };
    println!(
        "  {:<30} {:>10} {:>9} {:>9} {:>7} {:>8} {:>10} {:>9} {:>9}",
        name,
        thousands(result.events_per_sec()),
        ms(result.latency(0.50)),
        ms(result.latency(0.99)),
        result.errors,
        count,
        requests,
        events,
        mean
    );
}

fn target(name: &str, value: String, goal: String, pass: bool) {
    println!(
        "  {:<28} {:>28}   target {:<18} {}",
        name,
        value,
        goal,
        if pass { "PASS" } else { "MISS" }
    );
}

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
//! To explain the figures it also prints, per phase, the CPU used by this process, by every
//! other process, and by the thread that drains the writer queue (on a CPU, or runnable and
//! waiting for one), and the log writer's own ceiling: [`LogWriter::append_group`] timed alone
//! for a few group shapes. A phase during which other processes took more than
//! [`DISTURBED_PERCENT`] of the CPUs is measured again on a fresh server (three attempts at
//! most), so that a build running next to the benchmark does not pass for the agent's cost.
//!
//! The no-storage and group-commit phases run as [`ROUNDS`] back-to-back pairs; each pair gives
//! a ratio, and the pair with the median ratio stands for the run (the VM's speed drifts over
//! minutes, so a ratio across distant phases would measure the drift).
//!
//! `TALLY_BENCH_SECONDS` sets the measured seconds per load phase (default 5; a fifth of it,
//! at most one second, is an unmeasured warm-up before it). `TALLY_BENCH_CLIENTS` changes the
//! number of single-event clients (default 64, which the targets assume), `TALLY_BENCH_ROUNDS`
//! the number of pairs (default 3). `TALLY_BENCH_IDS` chooses the shape of the client ids (see
//! [`IdStyle`]). `TMPDIR` chooses where the logs go.

use std::fmt::Write as _;
use std::io::BufRead;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
use tally_agent::config::{Config, ConfigArgs};
use tally_agent::log::writer::{GroupLimits, WriterHandle, WriterMessage};
use tally_agent::log::{Accepted, Log, LogWriter, RequestOutcome};
use tally_protocol::{Event, Timestamp};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "bench-token-0123456789";
/// Concurrent clients posting single events (`TALLY_BENCH_CLIENTS` overrides it, to see how
/// the variants scale; the targets are stated for 64).
const CLIENTS: usize = 64;
/// Concurrent clients posting batches, and the events in each batch.
const BATCH_CLIENTS: usize = 4;
const BATCH_EVENTS: usize = 1000;
/// Rounds of the no-storage and group-commit phases run back to back (`TALLY_BENCH_ROUNDS`
/// overrides it). This VM's speed drifts by a fifth over minutes with nothing else running, so
/// the ratio is taken within each pair and the median pair is reported.
const ROUNDS: usize = 3;
/// Writes timed for the disk's fdatasync latency.
const FSYNC_ROUNDS: usize = 2000;
/// Capacity of the no-storage server's writer queue: what the real writer gets with the
/// default limits (`max_requests * 4`).
const STUB_QUEUE: usize = 1024 * 4;
/// Above this share of the cpus used by other processes (and the kernel's own threads) during
/// a phase, the phase is measured again and, if it stays disturbed, the report says so.
const DISTURBED_PERCENT: f64 = 20.0;
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
    let ids = IdStyle::from_env()?;
    let clients = env_number("TALLY_BENCH_CLIENTS", CLIENTS as f64, 1.0..=1024.0)? as usize;
    let rounds = env_number("TALLY_BENCH_ROUNDS", ROUNDS as f64, 1.0..=15.0)? as usize;
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
    println!("  client ids:  {} (TALLY_BENCH_IDS)", ids.describe());
    println!(
        "  rounds:      {rounds} pairs of no-storage and group-commit phases, back to back (TALLY_BENCH_ROUNDS)"
    );
    println!();

    // The server runs on its own runtime sized like the real binary's; the load generator on
    // another. Both share this machine's cores, the same way for every variant.
    let bench = Bench {
        server_rt: runtime("bench-server")?,
        client_rt: runtime("bench-client")?,
        client: http_client(),
        base: base.path().to_owned(),
        cpus,
        ids,
        warmup,
        measure,
    };

    let fsync = measure_fdatasync(base.path())?;
    let alone = writer_alone(
        base.path(),
        ids,
        (measure / 5).clamp(Duration::from_millis(300), Duration::from_secs(1)),
    )?;
    println!(
        "Phases (one measured again, on a fresh server, when other processes took more than {DISTURBED_PERCENT:.0}% of the cpus)"
    );
    let naive_limits = GroupLimits {
        max_requests: 1,
        max_events: 1,
    };
    let mut pairs = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let (no_storage, _) = bench.phase(
            &format!("no-storage r{round}"),
            Variant::NoStorage,
            clients,
            1,
        )?;
        let (group, group_commits) = bench.phase(
            &format!("group r{round}"),
            Variant::Agent(GroupLimits::default()),
            clients,
            1,
        )?;
        pairs.push(Pair {
            no_storage,
            group,
            group_commits: group_commits.context("the agent reported no commit statistics")?,
        });
    }
    let (naive, naive_commits) = bench.phase("naive", Variant::Agent(naive_limits), clients, 1)?;
    let (batches, batch_commits) = bench.phase(
        "batches",
        Variant::Agent(GroupLimits::default()),
        BATCH_CLIENTS,
        BATCH_EVENTS,
    )?;
    let commits = |c: Option<CommitStats>| c.context("the agent reported no commit statistics");
    let (naive_commits, batch_commits) = (commits(naive_commits)?, commits(batch_commits)?);
    // The pair with the median ratio stands for the run in the tables; every pair is listed.
    let ratios: Vec<f64> = pairs.iter().map(Pair::ratio).collect();
    pairs.sort_by(|a, b| a.ratio().total_cmp(&b.ratio()));
    let Pair {
        no_storage,
        group,
        group_commits,
    } = pairs.swap_remove(pairs.len() / 2);
    println!();

    let binary = PathBuf::from(env!("CARGO_BIN_EXE_tally-agent"));
    let rss = bench.client_rt.block_on(idle_rss(
        &bench.client,
        &binary,
        &base.path().join("process"),
    ))?;
    let binary_bytes = std::fs::metadata(&binary)
        .with_context(|| format!("cannot stat {}", binary.display()))?
        .len();

    print_report(&Report {
        cpus,
        clients,
        ratios,
        fsync,
        alone,
        no_storage,
        group,
        group_commits,
        naive,
        naive_commits,
        batches,
        batch_commits,
        rss,
        binary,
        binary_bytes,
    });
    Ok(())
}

/// A no-storage phase and the group-commit phase right after it.
#[derive(Debug)]
struct Pair {
    no_storage: LoadResult,
    group: LoadResult,
    group_commits: CommitStats,
}

impl Pair {
    fn ratio(&self) -> f64 {
        self.group.events_per_sec() / self.no_storage.events_per_sec()
    }
}

/// Which server a load phase runs against.
#[derive(Debug, Clone, Copy)]
enum Variant {
    /// The real router with a writer queue that is answered at once, storing nothing.
    NoStorage,
    /// The real agent with these group commit limits.
    Agent(GroupLimits),
}

/// A phase disturbed by other processes is measured again, up to this many attempts in all.
const ATTEMPTS: u32 = 3;

/// What every load phase shares.
#[derive(Debug)]
struct Bench {
    server_rt: Runtime,
    client_rt: Runtime,
    client: HttpClient,
    base: PathBuf,
    cpus: usize,
    ids: IdStyle,
    warmup: Duration,
    measure: Duration,
}

impl Bench {
    /// Measures `clients` clients posting `events` events per request against a fresh server.
    /// When other processes took more than [`DISTURBED_PERCENT`] of the cpus meanwhile, the
    /// phase is measured again on another fresh server, [`ATTEMPTS`] times at most.
    fn phase(
        &self,
        name: &str,
        variant: Variant,
        clients: usize,
        events: usize,
    ) -> anyhow::Result<(LoadResult, Option<CommitStats>)> {
        let mut attempt = 1;
        loop {
            // Fresh directory per attempt, and client ids unique across the run.
            let tag = format!("{}-{attempt}", name.replace(' ', "-"));
            let dir = self.base.join(&tag);
            let server = match variant {
                Variant::NoStorage => start_no_storage(&self.server_rt, &dir)?,
                Variant::Agent(limits) => start_agent(&self.server_rt, &dir, limits)?,
            };
            let phase = Phase {
                clients,
                events,
                ids: self.ids,
                tag: &tag,
                warmup: self.warmup,
                measure: self.measure,
            };
            let result = self
                .client_rt
                .block_on(drive(self.client.clone(), &server, phase));
            let commits = match variant {
                Variant::NoStorage => Ok(None),
                Variant::Agent(_) => self
                    .client_rt
                    .block_on(commit_stats(&self.client, server.addr))
                    .map(Some),
            };
            server.stop(&self.server_rt)?;
            let mut result = result?;
            let commits = commits?;
            let others = result.others_percent(self.cpus);
            println!(
                "  {name:<15} attempt {attempt}: {:>9} events/s, other processes {others:.0}% of the cpus",
                thousands(result.events_per_sec())
            );
            if others <= DISTURBED_PERCENT || attempt == ATTEMPTS {
                result.attempts = attempt;
                return Ok((result, commits));
            }
            attempt += 1;
        }
    }
}

/// Everything one run measured.
#[derive(Debug)]
struct Report {
    cpus: usize,
    clients: usize,
    /// Group commit over no storage in each round, in the order they ran.
    ratios: Vec<f64>,
    fsync: FsyncResult,
    alone: Vec<WriterAlone>,
    no_storage: LoadResult,
    group: LoadResult,
    group_commits: CommitStats,
    naive: LoadResult,
    naive_commits: CommitStats,
    batches: LoadResult,
    batch_commits: CommitStats,
    rss: Rss,
    binary: PathBuf,
    binary_bytes: u64,
}

fn print_report(r: &Report) {
    println!(
        "Disk: 4 KiB write + fdatasync, {FSYNC_ROUNDS} rounds: p50 {} ms, p99 {} ms",
        ms(r.fsync.p50),
        ms(r.fsync.p99)
    );
    println!();
    println!(
        "Single-event posts, {} concurrent keep-alive clients (the round with the median ratio;",
        r.clients
    );
    println!("  commit columns cover the warm-up too)");
    print_header();
    print_row("no storage (HTTP only)", &r.no_storage, None);
    print_row("group commit (durable)", &r.group, Some(&r.group_commits));
    print_row(
        "naive 1 req/commit (durable)",
        &r.naive,
        Some(&r.naive_commits),
    );
    println!();
    println!(
        "{BATCH_EVENTS}-event batches, {BATCH_CLIENTS} concurrent clients, group commit (durable)"
    );
    print_header();
    print_row("batches (durable)", &r.batches, Some(&r.batch_commits));
    println!();

    println!("CPU over the measured window");
    println!(
        "  bench = this process (server + load generator) and others = every other process, in % of"
    );
    println!(
        "  {} cores; writer = the thread draining the writer queue, on a cpu and runnable but",
        r.cpus
    );
    println!("  waiting for one, in % of wall time");
    println!(
        "  {:<30} {:>8} {:>8} {:>8} {:>14} {:>14} {:>9}",
        "variant", "bench", "others", "steal", "writer on cpu", "writer waiting", "attempts"
    );
    let mut disturbed = false;
    for (name, result) in [
        ("no storage (HTTP only)", &r.no_storage),
        ("group commit (durable)", &r.group),
        ("naive 1 req/commit (durable)", &r.naive),
        ("batches (durable)", &r.batches),
    ] {
        let share = |d: Duration| 100.0 * d.as_secs_f64() / result.window.as_secs_f64();
        let cores = |d: Duration| share(d) / r.cpus as f64;
        let others = result.others_percent(r.cpus);
        disturbed |= others > DISTURBED_PERCENT;
        println!(
            "  {:<30} {:>7.0}% {:>7.0}% {:>7.0}% {:>13.0}% {:>13.0}% {:>9}",
            name,
            cores(result.process_cpu),
            others,
            cores(result.steal),
            share(result.writer_cpu),
            share(result.writer_waiting),
            result.attempts
        );
    }
    if disturbed {
        println!(
            "  WARNING: other processes used more than {DISTURBED_PERCENT:.0}% of the cpus during a phase; its figures understate this machine"
        );
    }
    println!();

    println!(
        "Log writer alone: LogWriter::append_group in a loop on one thread, no HTTP (its ceiling)"
    );
    println!(
        "  {:<30} {:>10} {:>10} {:>12}",
        "group", "events/s", "commit ms", "us per event"
    );
    for alone in &r.alone {
        println!(
            "  {:<30} {:>10} {:>10} {:>12.1}",
            format!(
                "{} x {}-event request{}",
                alone.requests,
                alone.events_per_request,
                if alone.requests == 1 { "" } else { "s" }
            ),
            thousands(alone.events_per_sec()),
            ms(alone.mean_commit()),
            alone.mean_commit().as_secs_f64() * 1e6 / alone.events() as f64
        );
    }
    println!();

    let over_naive = r.group.events_per_sec() / r.naive.events_per_sec();
    let over_stub = r.group.events_per_sec() / r.no_storage.events_per_sec();
    let each_round: Vec<String> = r
        .ratios
        .iter()
        .map(|ratio| format!("{:.0}%", ratio * 100.0))
        .collect();
    println!(
        "Group commit / no storage in each round, in order: {}",
        each_round.join(", ")
    );
    println!();
    let rss_mib = r.rss.rss_kib as f64 / 1024.0;
    let binary_mib = r.binary_bytes as f64 / (1024.0 * 1024.0);
    let clean = |r: &LoadResult| r.errors == 0;
    println!("Targets");
    target(
        "group commit / naive",
        format!("{over_naive:.1}x"),
        format!(">= {TARGET_GROUP_OVER_NAIVE:.0}x"),
        over_naive >= TARGET_GROUP_OVER_NAIVE && clean(&r.group) && clean(&r.naive),
    );
    target(
        "group commit / no storage",
        format!("{:.0}% (median round)", over_stub * 100.0),
        format!(">= {:.0}%", TARGET_GROUP_OVER_NO_STORAGE * 100.0),
        over_stub >= TARGET_GROUP_OVER_NO_STORAGE && clean(&r.group) && clean(&r.no_storage),
    );
    target(
        "1000-event batches",
        format!("{} events/s", thousands(r.batches.events_per_sec())),
        format!(">= {} events/s", thousands(TARGET_BATCH_EVENTS_PER_SEC)),
        r.batches.events_per_sec() >= TARGET_BATCH_EVENTS_PER_SEC && clean(&r.batches),
    );
    target(
        "idle RSS of tally-agent",
        format!(
            "{rss_mib:.1} MiB (peak {:.1})",
            r.rss.hwm_kib as f64 / 1024.0
        ),
        format!("< {TARGET_RSS_MIB:.0} MiB"),
        rss_mib < TARGET_RSS_MIB,
    );
    target(
        "tally-agent binary size",
        format!("{binary_mib:.1} MiB"),
        format!("< {TARGET_BINARY_MIB:.0} MiB"),
        binary_mib < TARGET_BINARY_MIB,
    );
    println!("  (binary: {})", r.binary.display());
    for (name, result) in [
        ("no storage", &r.no_storage),
        ("group commit", &r.group),
        ("naive", &r.naive),
        ("batches", &r.batches),
    ] {
        if let Some(error) = &result.first_error {
            println!("  first error ({name}): {error}");
        }
    }
}

fn measure_duration() -> anyhow::Result<Duration> {
    let seconds = env_number("TALLY_BENCH_SECONDS", 5.0, 0.5..=120.0)?;
    Ok(Duration::from_secs_f64(seconds))
}

/// A number from the environment variable `name`, `default` when it is not set.
fn env_number(
    name: &str,
    default: f64,
    range: std::ops::RangeInclusive<f64>,
) -> anyhow::Result<f64> {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| range.contains(n))
            .with_context(|| {
                format!(
                    "{name}={text:?}: give a number from {} to {}",
                    range.start(),
                    range.end()
                )
            }),
        Err(_) => Ok(default),
    }
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
        .pool_max_idle_per_host(1024)
        .build(connector)
}

/// The configuration the real command line would give, through the same validation.
fn config(dir: &Path) -> anyhow::Result<Config> {
    ConfigArgs {
        data_dir: Some(dir.to_owned()),
        listen: Some("127.0.0.1:0".parse()?),
        warehouse: Some("WH".into()),
        agent_id: Some("bench".into()),
        scanner_tokens: vec![TOKEN.into()],
        ..ConfigArgs::default()
    }
    .load()
    .context("the benchmark's configuration is invalid")
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
    let agent = Agent::with_log(&config(dir)?, Log::open(dir)?, limits)?;
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
    let (writer, mut queue) = WriterHandle::channel(STUB_QUEUE);
    let responder = std::thread::Builder::new()
        .name("bench-no-storage".into())
        .spawn(move || {
            let mut seq = 0u64;
            while let Some(message) = queue.blocking_recv() {
                let WriterMessage::Append(request) = message else {
                    continue;
                };
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
    // Everything but the writer is what the real agent builds; its own writer thread stops
    // once the last handle on it (the agent's) is dropped.
    let agent = Agent::with_log(&config(dir)?, Log::open(dir)?, GroupLimits::default())?;
    let mut state = agent.state().clone();
    state.writer = writer;
    drop(agent);
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
    /// Busy CPU time of the whole machine (every process) over the window, and the time the
    /// hypervisor gave to other guests.
    machine_cpu: Duration,
    steal: Duration,
    /// Time the writer thread spent on a CPU, and runnable but waiting for one.
    writer_cpu: Duration,
    writer_waiting: Duration,
    /// How many times the phase was measured (the last one is kept).
    attempts: u32,
}

impl LoadResult {
    fn events_per_sec(&self) -> f64 {
        (self.requests * self.events_per_request as u64) as f64 / self.window.as_secs_f64()
    }

    /// The share of the cpus that other processes used during the window, in percent.
    fn others_percent(&self, cpus: usize) -> f64 {
        let others = self.machine_cpu.saturating_sub(self.process_cpu);
        100.0 * others.as_secs_f64() / self.window.as_secs_f64() / cpus as f64
    }

    fn latency(&self, quantile: f64) -> Duration {
        Duration::from_micros(u64::from(percentile(&self.latencies_us, quantile)))
    }
}

/// One load phase: `clients` tasks each posting requests of `events` events back to back.
#[derive(Debug, Clone, Copy)]
struct Phase<'a> {
    clients: usize,
    events: usize,
    ids: IdStyle,
    /// Starts every client id of the phase, so that ids are unique across phases.
    tag: &'a str,
    warmup: Duration,
    measure: Duration,
}

/// Runs a load phase against `server`. A request counts when its answer arrives inside the
/// measured window.
async fn drive(
    client: HttpClient,
    server: &Server,
    phase: Phase<'_>,
) -> anyhow::Result<LoadResult> {
    let Phase {
        clients,
        events,
        ids,
        tag,
        warmup,
        measure,
    } = phase;
    let uri: hyper::Uri = format!("http://{}/v1/events", server.addr).parse()?;
    let start = Instant::now() + warmup;
    let end = start + measure;
    let mut tasks = Vec::with_capacity(clients);
    let tag: std::sync::Arc<str> = tag.into();
    for task in 0..clients {
        let client = client.clone();
        let uri = uri.clone();
        let tag = std::sync::Arc::clone(&tag);
        tasks.push(tokio::spawn(async move {
            let mut result = LoadResult::default();
            let mut counter = 0u64;
            while Instant::now() < end {
                let body = request_body(ids, &tag, task, &mut counter, events);
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
        machine_cpu: after.machine_busy.saturating_sub(before.machine_busy),
        steal: after.steal.saturating_sub(before.steal),
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

/// How the benchmark's client ids look (`TALLY_BENCH_IDS`). The idempotency index is a
/// B-tree keyed by id, so where new ids land in it decides how many pages a commit rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdStyle {
    /// `<tag>-<client>-<counter>`: each client's ids cluster, the clients' spread (default).
    Client,
    /// 32 random hex digits, like a UUIDv4 from each scanner: every id lands anywhere.
    Uuid,
    /// One zero-padded counter across all clients: every id lands at the end of the index.
    Ordered,
    /// No id at all (no idempotency, nothing written to the index): for comparison only.
    None,
}

impl IdStyle {
    fn from_env() -> anyhow::Result<IdStyle> {
        match std::env::var("TALLY_BENCH_IDS").as_deref() {
            Err(_) | Ok("client") => Ok(IdStyle::Client),
            Ok("uuid") => Ok(IdStyle::Uuid),
            Ok("ordered") => Ok(IdStyle::Ordered),
            Ok("none") => Ok(IdStyle::None),
            Ok(other) => bail!("TALLY_BENCH_IDS={other:?}: give client, uuid, ordered or none"),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            IdStyle::Client => "client: <client>-<counter>",
            IdStyle::Uuid => "uuid: 32 random hex digits",
            IdStyle::Ordered => "ordered: one zero-padded counter",
            IdStyle::None => "none: events without ids",
        }
    }
}

/// The shared counter behind [`IdStyle::Ordered`].
static ORDERED_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A body of `events` pick events, each with a client id unique in the run (unless the ids
/// are [`IdStyle::None`]).
fn request_body(ids: IdStyle, tag: &str, task: usize, counter: &mut u64, events: usize) -> Bytes {
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
        body.push('{');
        let _ = match ids {
            IdStyle::Client => write!(body, "\"id\":\"{tag}-{task}-{n}\","),
            IdStyle::Uuid => write!(body, "\"id\":\"{:032x}\",", rand::random::<u128>()),
            IdStyle::Ordered => {
                let n = ORDERED_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                write!(body, "\"id\":\"{tag}-{n:012}\",")
            }
            IdStyle::None => Ok(()),
        };
        let _ = write!(
            body,
            "\"type\":\"pick\",\"sku\":\"SKU-{:05}\",\"qty\":\"1\",\
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
    machine_busy: Duration,
    steal: Duration,
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
        // The first line of /proc/stat: user nice system idle iowait irq softirq steal ...
        let machine: Vec<u64> = std::fs::read_to_string("/proc/stat")
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let at = |i: usize| machine.get(i).copied().unwrap_or(0);
        let busy = at(0) + at(1) + at(2) + at(5) + at(6);
        let mut sample = CpuSample {
            process: Duration::from_millis(ticks * 10),
            machine_busy: Duration::from_millis(busy * 10),
            steal: Duration::from_millis(at(7) * 10),
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

/// Shapes of group measured by [`writer_alone`]: requests per commit and events per request.
const WRITER_ALONE_GROUPS: [(usize, usize); 4] = [(1, 1), (32, 1), (64, 1), (2, BATCH_EVENTS)];

/// The log writer's own ceiling for one group shape, without HTTP or other threads.
#[derive(Debug)]
struct WriterAlone {
    requests: usize,
    events_per_request: usize,
    commits: u64,
    busy: Duration,
}

impl WriterAlone {
    fn events(&self) -> usize {
        self.requests * self.events_per_request
    }

    fn mean_commit(&self) -> Duration {
        self.busy / u32::try_from(self.commits.max(1)).unwrap_or(u32::MAX)
    }

    fn events_per_sec(&self) -> f64 {
        (self.commits * self.events() as u64) as f64 / self.busy.as_secs_f64()
    }
}

/// Commits groups of each shape in [`WRITER_ALONE_GROUPS`] straight through
/// [`LogWriter::append_group`] on this thread, for `duration` each, on a fresh log; only the
/// commits are timed (making the events is not).
fn writer_alone(base: &Path, ids: IdStyle, duration: Duration) -> anyhow::Result<Vec<WriterAlone>> {
    let mut results = Vec::new();
    for (requests, events_per_request) in WRITER_ALONE_GROUPS {
        let dir = base.join(format!("writer-alone-{requests}x{events_per_request}"));
        std::fs::create_dir_all(&dir)?;
        let mut writer = LogWriter::new(Log::open(&dir)?, 10 << 30)?;
        let tag = format!("w{requests}x{events_per_request}");
        let mut counter = 0;
        let mut result = WriterAlone {
            requests,
            events_per_request,
            commits: 0,
            busy: Duration::ZERO,
        };
        let deadline = Instant::now() + duration;
        while Instant::now() < deadline {
            let group = (0..requests)
                .map(|task| {
                    let body = request_body(ids, &tag, task, &mut counter, events_per_request);
                    tally_agent::ingest::parse_body(&body, Timestamp::now())
                        .map_err(|e| anyhow::anyhow!("a benchmark event is invalid: {e}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let batches: Vec<&[Event]> = group.iter().map(Vec::as_slice).collect();
            let started = Instant::now();
            writer.append_group(&batches, Timestamp::now())?;
            result.busy += started.elapsed();
            result.commits += 1;
        }
        results.push(result);
    }
    Ok(results)
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
        .env("TALLY_LOG", "error")
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
    let (status, text) = post(
        client,
        &uri,
        request_body(IdStyle::Client, "p", 0, &mut counter, 1),
    )
    .await?;
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

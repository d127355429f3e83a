//! The end-to-end harness: builders that start Tally's binaries as real processes, on ports
//! the OS picks, with their data in temporary directories.
//!
//! # Where the binary comes from
//!
//! Cargo hands `CARGO_BIN_EXE_<name>` only to the tests of the package that owns the binary,
//! and a dev-dependency on `tally-agent` builds its library, not its binary. So the harness
//! looks for `tally-agent` in the target directory it runs from (the test executable lives in
//! `target/<profile>/deps/`, the binary in `target/<profile>/`). `cargo test --workspace`
//! builds it (the `tally-agent` package has integration tests of its own, and Cargo builds a
//! package's binaries for those) before any test runs. `cargo test -p tally-tests` on its own
//! does not: run `cargo build -p tally-agent` first. A binary older than any source file that
//! Cargo's dep-info file (`target/<profile>/tally-agent.d`) lists for it is refused rather
//! than tested. `TALLY_AGENT_BIN` overrides the path (then no freshness check is made).
//!
//! `tally-central` is found the same way ([`central_binary`], `TALLY_CENTRAL_BIN`): the
//! `tally-central` package has integration tests too, so `cargo test --workspace` builds it.
//! So is `tally-odoo-sim` ([`odoo_sim_binary`], `TALLY_ODOO_SIM_BIN`), of the `tally-fakes`
//! package, whose integration tests have it built.
//!
//! # Modules
//!
//! - [`central`]: [`CentralProcess`] (a real `tally-central run`), its [`AdminClient`], TLS
//!   material ([`gen_cert`]) and [`check_journal`] (central's journal against an agent's log).
//! - [`odoo_orders`]: receipts and deliveries made in Odoo as its users make them.
//! - [`wait`]: [`wait_synced`], until an agent reports its whole log acknowledged by central
//!   (and, re-exported, the generic [`wait_until`]).
//!
//! Re-exported from `tally-fakes` (the stand-ins that depend on no Tally crate, so that
//! central's own tests use them without this harness): [`odoo_sim`] ([`OdooSim`]),
//! [`channels`] (the Shopify and webhook fakes), [`proxy`] ([`Proxy`], a TCP proxy for fault
//! injection between agents and central) and [`test_seed`].

pub mod browser;
pub mod central;
pub mod odoo_orders;
mod process;
pub mod wait;

pub use tally_fakes::{SEED_ENV, channels, odoo_sim, proxy, test_seed};

pub use central::{
    ADMIN_TOKEN, AdminClient, CENTRAL_BIN_ENV, CentralBuilder, CentralProcess, TlsFiles,
    add_agent_offline, central_binary, central_stderr_path, check_journal, gen_cert,
};
pub use odoo_sim::{
    Fault, FaultKind, Latency, OdooSim, SimConfig, Tracking, Version as OdooVersion,
};
pub use proxy::{Proxy, ProxyStats};
pub use wait::{Current, Generation, next_generation, wait_for_acks, wait_synced, wait_until};

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail, ensure};
use serde_json::Value;

use crate::process::{Names, Process};

/// A scanner token the harness starts agents with unless told otherwise.
pub const TEST_TOKEN: &str = "tally-test-token-0123456789";

/// How long an agent may take to print its listening line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an agent may take to exit after SIGTERM (its own grace period is 10 s).
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one HTTP request may take before the harness gives up on it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The one line `tally-agent run` prints on stdout once it accepts connections.
const LISTENING_PREFIX: &str = "tally-agent listening on ";

/// How error messages name an agent.
const AGENT_NAMES: Names = Names {
    program: "tally-agent",
    process: "the agent",
};

/// The environment variable that names the `tally-agent` binary to test.
pub const AGENT_BIN_ENV: &str = "TALLY_AGENT_BIN";

/// The `tally-agent` binary to run (see the crate documentation). Found and checked once per
/// test process, so that a source edited while a test runs does not fail it halfway.
pub fn agent_binary() -> anyhow::Result<PathBuf> {
    static BINARY: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    cached_binary(&BINARY, "tally-agent", AGENT_BIN_ENV)
}

/// The environment variable that names the `tally-odoo-sim` binary to run.
pub const ODOO_SIM_BIN_ENV: &str = "TALLY_ODOO_SIM_BIN";

/// The `tally-odoo-sim` binary (of the `tally-fakes` package), found like [`agent_binary`].
pub fn odoo_sim_binary() -> anyhow::Result<PathBuf> {
    static BINARY: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    cached_binary(&BINARY, "tally-odoo-sim", ODOO_SIM_BIN_ENV)
}

/// [`find_binary`] once per process: the first answer, kept in `cell`, is every answer.
pub(crate) fn cached_binary(
    cell: &std::sync::OnceLock<Result<PathBuf, String>>,
    name: &str,
    env: &str,
) -> anyhow::Result<PathBuf> {
    cell.get_or_init(|| find_binary(name, env).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// A directory to take the binaries from, set by a program (the demo) that built them itself.
static BINARY_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Takes `tally-agent` and `tally-central` from `dir` from now on (for programs outside
/// `cargo test` that build the binaries themselves). Only the first call counts.
pub fn use_binaries_from(dir: &Path) {
    let _ = BINARY_DIR.set(dir.to_owned());
}

/// Builds `tally-agent` and `tally-central` with cargo into `profile_dir` (a Cargo target
/// profile directory such as `target/debug`, the profile read from its name) and takes them
/// from there: [`use_binaries_from`], for programs run outside `cargo test`.
pub fn build_binaries_into(profile_dir: &Path) -> anyhow::Result<()> {
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build.args([
        "build",
        "--quiet",
        "-p",
        "tally-agent",
        "-p",
        "tally-central",
    ]);
    if release {
        build.arg("--release");
    }
    let status = build
        .status()
        .context("cannot run cargo to build the binaries")?;
    ensure!(
        status.success(),
        "building tally-agent and tally-central failed"
    );
    use_binaries_from(profile_dir);
    Ok(())
}

/// Finds the binary `name` of the package of the same name: the one in the directory given to
/// [`use_binaries_from`] if any, else the path in the environment variable `env` if set, else
/// `target/<profile>/<name>` next to the test executable, refused when older than a source it
/// was built from.
fn find_binary(name: &str, env: &str) -> anyhow::Result<PathBuf> {
    if let Some(dir) = BINARY_DIR.get() {
        let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        ensure!(path.is_file(), "{} does not exist", path.display());
        return Ok(path);
    }
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{env}={} is not a file", path.display());
        }
        return Ok(path);
    }
    let exe = std::env::current_exe().context("cannot find the test executable's path")?;
    // target/<profile>/deps/<test>-<hash> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test executable is not inside a Cargo target directory")?;
    let binary = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let built = match std::fs::metadata(&binary).and_then(|m| m.modified()) {
        Ok(built) => built,
        Err(_) => bail!(
            "the {name} binary is not at {}: build it first with `cargo build --bin {name}` \
             (`cargo test --workspace` builds it too), or point {env} at one",
            binary.display()
        ),
    };
    // Cargo's dep-info file next to the binary lists the sources it was built from: one
    // changed since is a binary Cargo would rebuild, and testing it would test old code.
    let dep_info = binary.with_extension("d");
    if let Some(source) = newer_source(&dep_info, built) {
        bail!(
            "the {name} binary at {} is older than {}: rebuild it with \
             `cargo build --bin {name}` (or run `cargo test --workspace`)",
            binary.display(),
            source.display()
        );
    }
    Ok(binary)
}

/// The first source listed in a Make-style dep-info file (`target: src src ...`, spaces in
/// paths escaped as `\ `) that was modified after `built`. A missing file finds nothing.
fn newer_source(dep_info: &Path, built: SystemTime) -> Option<PathBuf> {
    let text = std::fs::read_to_string(dep_info).ok()?;
    let line = text.lines().next()?;
    // The target's own path may hold ": " only escaped; the first unescaped ": " ends it.
    let (_, sources) = line.split_once(": ")?;
    let mut paths = Vec::new();
    let mut current = String::new();
    let mut chars = sources.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            ' ' => paths.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    paths.push(current);
    paths
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .find(|path| {
            std::fs::metadata(path)
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified > built)
        })
}

/// Where an agent on `data_dir` writes its stderr: next to the data directory, so that it
/// survives restarts (every run appends) and is not mistaken for agent data.
pub fn stderr_log_path(data_dir: &Path) -> PathBuf {
    process::stderr_path_next_to(data_dir, "agent")
}

/// The last `lines` lines of a file, for failure messages.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}

/// Set (to anything) to keep the temporary directory of a [`with_temp_dir`] test that passed.
pub const KEEP_ENV: &str = "TALLY_TEST_KEEP";

/// Runs `test` in a fresh temporary directory named after `name`, after checking that both
/// binaries are there and fresh. On failure, keeps the directory and panics with the error and
/// the last lines of every `*-stderr.log` file in it (where the harness sends the stderr of
/// agents and central whose data directories are directly inside it). With [`KEEP_ENV`] set,
/// a passing test's directory is kept too (and named on stdout).
pub async fn with_temp_dir<F, Fut>(name: &str, test: F)
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    for binary in [agent_binary(), central_binary()] {
        if let Err(error) = binary {
            panic!("{error:#}");
        }
    }
    let base = tempfile::Builder::new()
        .prefix(&format!("tally-{name}-"))
        .tempdir()
        .expect("a temporary directory");
    let result = test(base.path().to_owned()).await;
    if result.is_ok() && std::env::var_os(KEEP_ENV).is_some() {
        println!("{name}: data kept in {}", base.keep().display());
        return;
    }
    if let Err(error) = result {
        let kept = base.keep();
        let mut logs = String::new();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&kept)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        paths.sort();
        for path in paths {
            if path.to_string_lossy().ends_with("-stderr.log") {
                logs.push_str(&format!(
                    "\n--- last lines of {}:\n{}\n",
                    path.display(),
                    tail(&path, 30)
                ));
            }
        }
        panic!("{error:#}\n\n(data kept in {}){logs}", kept.display());
    }
}

/// Runs `test` on the path of a data directory `data` (not created) in a fresh temporary
/// directory whose name starts with `prefix`, after checking that the `tally-agent` binary is
/// there and fresh. On failure, keeps the directory and panics with the error and the last 60
/// lines of the agent's stderr ([`stderr_log_path`]).
pub async fn with_agent_data_dir<F, Fut>(prefix: &str, test: F)
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    // A missing or stale binary fails here, before a data directory is made and kept.
    if let Err(error) = agent_binary() {
        panic!("{error:#}");
    }
    let base = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("a temporary directory");
    let data_dir = base.path().join("data");
    if let Err(error) = test(data_dir.clone()).await {
        let stderr = stderr_log_path(&data_dir);
        let kept = base.keep();
        panic!(
            "{error:#}\n\n(data kept in {}) last lines of the agent's stderr ({}):\n{}",
            kept.display(),
            stderr.display(),
            tail(&stderr, 60)
        );
    }
}

/// The environment variable that makes the crash and outage tests longer: how many times
/// their schedule of kills, cuts and outages is multiplied (1 in CI).
pub const SOAK_ENV: &str = "TALLY_SOAK";

/// The multiplier [`SOAK_ENV`] sets, 1 to 1000 (1 when unset).
pub fn soak_factor() -> anyhow::Result<usize> {
    match std::env::var(SOAK_ENV) {
        Ok(text) => match text.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => anyhow::bail!("{SOAK_ENV} must be a whole number from 1 to 1000, not {text:?}"),
        },
        Err(_) => Ok(1),
    }
}

/// How to start `tally-agent run`.
#[derive(Debug, Clone)]
pub struct AgentBuilder {
    data_dir: PathBuf,
    token: String,
    warehouse: String,
    agent_id: String,
    args: Vec<OsString>,
    log_filter: Option<String>,
    startup_timeout: Duration,
}

impl AgentBuilder {
    pub fn new(data_dir: impl Into<PathBuf>) -> AgentBuilder {
        AgentBuilder {
            data_dir: data_dir.into(),
            token: TEST_TOKEN.to_owned(),
            warehouse: "WH".to_owned(),
            agent_id: "wh-agent".to_owned(),
            args: Vec::new(),
            log_filter: None,
            startup_timeout: STARTUP_TIMEOUT,
        }
    }

    pub fn token(mut self, token: impl Into<String>) -> AgentBuilder {
        self.token = token.into();
        self
    }

    pub fn warehouse(mut self, warehouse: impl Into<String>) -> AgentBuilder {
        self.warehouse = warehouse.into();
        self
    }

    pub fn agent_id(mut self, agent_id: impl Into<String>) -> AgentBuilder {
        self.agent_id = agent_id.into();
        self
    }

    /// An extra command-line argument for `tally-agent run`.
    pub fn arg(mut self, arg: impl Into<OsString>) -> AgentBuilder {
        self.args.push(arg.into());
        self
    }

    /// The agent's `TALLY_LOG` filter (default: inherited, else the agent's own `info`).
    pub fn log_filter(mut self, filter: impl Into<String>) -> AgentBuilder {
        self.log_filter = Some(filter.into());
        self
    }

    /// Syncs to central: `--central-url url --central-token token`, plus `--ca-file ca_file`
    /// when given (for a `wss://` URL to a certificate from [`gen_cert`]).
    pub fn central(self, url: &str, token: &str, ca_file: Option<&Path>) -> AgentBuilder {
        let builder = self
            .arg("--central-url")
            .arg(url)
            .arg("--central-token")
            .arg(token);
        match ca_file {
            Some(path) => builder.arg("--ca-file").arg(path),
            None => builder,
        }
    }

    /// `--server-name`: the name to check in central's certificate instead of the URL's host.
    pub fn server_name(self, name: &str) -> AgentBuilder {
        self.arg("--server-name").arg(name)
    }

    pub fn startup_timeout(mut self, timeout: Duration) -> AgentBuilder {
        self.startup_timeout = timeout;
        self
    }

    /// Starts the agent on 127.0.0.1 with a port the OS picks, and waits for its listening
    /// line on stdout.
    pub async fn spawn(self) -> anyhow::Result<AgentProcess> {
        let binary = agent_binary()?;
        let mut command = process::command(&binary);
        command
            .arg("run")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--warehouse", &self.warehouse])
            .args(["--agent-id", &self.agent_id])
            .args(["--scanner-token", &self.token])
            .args(["--listen", "127.0.0.1:0"])
            .args(&self.args);
        if let Some(filter) = &self.log_filter {
            command.env("TALLY_LOG", filter);
        }
        let (process, base_url) = Process::spawn(
            command,
            AGENT_NAMES,
            &self.data_dir,
            stderr_log_path(&self.data_dir),
            LISTENING_PREFIX,
            self.startup_timeout,
        )
        .await?;
        if !base_url.starts_with("http://127.0.0.1:") {
            bail!("tally-agent listens on {base_url}, not on loopback");
        }
        Ok(AgentProcess {
            process,
            base_url,
            data_dir: self.data_dir,
            token: self.token,
        })
    }
}

/// A running `tally-agent run` process. Dropping it kills the process (SIGKILL).
#[derive(Debug)]
pub struct AgentProcess {
    process: Process,
    base_url: String,
    data_dir: PathBuf,
    token: String,
}

impl AgentProcess {
    /// Starts an agent on `data_dir` that accepts `token`, with the builder's other defaults.
    pub async fn spawn(data_dir: &Path, token: &str) -> anyhow::Result<AgentProcess> {
        AgentBuilder::new(data_dir).token(token).spawn().await
    }

    pub fn builder(data_dir: impl Into<PathBuf>) -> AgentBuilder {
        AgentBuilder::new(data_dir)
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The file that holds the agent's stderr (shared by every run on the same data dir).
    pub fn stderr_path(&self) -> &Path {
        self.process.stderr_path()
    }

    /// The last `lines` lines of the agent's stderr.
    pub fn stderr_tail(&self, lines: usize) -> String {
        self.process.stderr_tail(lines)
    }

    /// An HTTP client for this agent, with the token it was started with.
    pub fn client(&self) -> AgentClient {
        AgentClient::new(&self.base_url, &self.token)
    }

    /// SIGKILL: the process dies at once, wherever it is. Waits for it and returns its status.
    pub async fn kill9(self) -> anyhow::Result<ExitStatus> {
        self.process.kill9().await
    }

    /// SIGTERM, then waits (at most [`SHUTDOWN_TIMEOUT`]) for the agent to exit and returns
    /// its status. An agent that does not exit in time is killed and reported as an error.
    pub async fn terminate(self) -> anyhow::Result<ExitStatus> {
        self.process.terminate().await
    }

    /// Sends `signal` to the agent (it has not been waited for, so its pid is still its own).
    pub fn signal(&self, signal: rustix::process::Signal) -> anyhow::Result<()> {
        self.process.signal(signal)
    }
}

/// `tally-agent export --data-dir DIR`: every stored event, one JSON object each, in seq order.
/// Only while no agent runs on `data_dir`.
pub async fn export(data_dir: &Path) -> anyhow::Result<Vec<Value>> {
    let binary = agent_binary()?;
    let mut command = process::command(&binary);
    command.arg("export").arg("--data-dir").arg(data_dir);
    let text = process::run_to_end(command, "tally-agent export", Duration::from_secs(120)).await?;
    text.lines()
        .enumerate()
        .map(|(n, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("export line {} is not JSON: {line}", n + 1))
        })
        .collect()
}

/// An HTTP answer: its status and its body as JSON (a JSON string holding the text when the
/// body is not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// A small client for the agent's HTTP API.
#[derive(Debug, Clone)]
pub struct AgentClient {
    http: reqwest::Client,
    base_url: String,
    token: String,
}

/// An HTTP client with its own connection pool, no proxy and a [`REQUEST_TIMEOUT`] per request.
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .no_proxy()
        .build()
        .expect("a plain HTTP client builds")
}

impl AgentClient {
    /// A client with its own connection pool and a [`REQUEST_TIMEOUT`] per request.
    pub fn new(base_url: &str, token: &str) -> AgentClient {
        AgentClient {
            http: http_client(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `POST /v1/events` with `body` (one event object or `{"events": [...]}`). An `Err` is a
    /// transport failure: the request's outcome is unknown.
    pub async fn post_events(&self, body: &Value) -> Result<Answer, reqwest::Error> {
        let response = self
            .http
            .post(format!("{}/v1/events", self.base_url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(Answer { status, body })
    }

    async fn get_json(&self, path_and_query: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path_and_query}", self.base_url);
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("GET {url}"))?;
        if !status.is_success() {
            bail!("GET {url} answered {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("GET {url} answered non-JSON: {text}"))
    }

    /// `GET /v1/events?after=&limit=`: the whole answer (`log_id` and `events`).
    pub async fn get_events(&self, after: u64, limit: usize) -> anyhow::Result<Value> {
        self.get_json(&format!("/v1/events?after={after}&limit={limit}"))
            .await
    }

    /// Every stored event, paging through `GET /v1/events`, and the log id.
    pub async fn read_all_events(&self) -> anyhow::Result<(String, Vec<Value>)> {
        let mut events = Vec::new();
        let mut after = 0;
        loop {
            let page = self.get_events(after, 1000).await?;
            let log_id = page["log_id"]
                .as_str()
                .context("GET /v1/events: no log_id")?;
            let batch = page["events"]
                .as_array()
                .context("GET /v1/events: no events array")?;
            let Some(last) = batch.last() else {
                return Ok((log_id.to_owned(), events));
            };
            after = last["seq"].as_u64().context("an event without a seq")?;
            events.extend(batch.iter().cloned());
        }
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> anyhow::Result<Value> {
        self.get_json("/v1/status").await
    }
}

/// FNV-1a: a small, stable hash, so the same id always yields the same event.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A valid event whose every field is derived from `id`, so a stored event can be checked
/// against the id it carries. Quantities are written the way the agent writes them back.
pub fn event_for_id(id: &str) -> Value {
    let h = fnv1a(id);
    let whole = (h >> 8) % 50 + 1;
    let fraction = ["", ".5", ".25", ".125"][((h >> 16) % 4) as usize];
    let qty = format!("{whole}{fraction}");
    let mut event = serde_json::json!({
        "id": id,
        "sku": format!("SKU-{}", h % 40),
        "reference": format!("ref/{id}"),
        "location": format!("WH/Stock/A-{:02}", (h >> 32) % 20),
    });
    match (h >> 24) % 5 {
        0 => {
            event["type"] = "receipt".into();
            event["qty"] = qty.into();
        }
        1 => {
            event["type"] = "pick".into();
            event["qty"] = qty.into();
        }
        2 => {
            event["type"] = "adjustment".into();
            let sign = if (h >> 40).is_multiple_of(2) { "-" } else { "" };
            event["qty"] = format!("{sign}{qty}").into();
            event["reason"] = format!("recount after {id}").into();
        }
        3 => {
            event["type"] = "count".into();
            event["qty"] = qty.into();
        }
        _ => {
            event["type"] = "transfer".into();
            event["qty"] = qty.into();
            event["to_location"] = "WH/Output".into();
        }
    }
    if (h >> 44).is_multiple_of(3) {
        event["lot"] = format!("LOT-{}", (h >> 48) % 100).into();
    }
    event
}

/// One `POST /v1/events` a test client sends: a single event or a batch, each event derived
/// from a fresh client id with [`event_for_id`]. Resending it must give the same answer's seqs.
#[derive(Debug, Clone)]
pub struct EventRequest {
    pub ids: Vec<String>,
    pub body: Value,
    /// How often it was sent before without an answer (its outcome is unknown).
    pub unanswered: u32,
}

/// What a 2xx answer to an [`EventRequest`] said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acceptance {
    /// 201: every event was stored now, with these seqs.
    Stored(Vec<u64>),
    /// 200: every event had been stored before, with these (original) seqs.
    Duplicate(Vec<u64>),
}

impl Acceptance {
    pub fn seqs(&self) -> &[u64] {
        match self {
            Acceptance::Stored(seqs) | Acceptance::Duplicate(seqs) => seqs,
        }
    }
}

impl EventRequest {
    /// Half of the time a single event, otherwise a batch of 2 to 20; ids are
    /// `{prefix}-{n}` with `n` counting on from `next_id`.
    pub fn random(prefix: &str, next_id: &mut u64, rng: &mut impl rand::Rng) -> EventRequest {
        let count = if rng.random_bool(0.5) {
            1
        } else {
            rng.random_range(2..=20)
        };
        let ids: Vec<String> = (0..count)
            .map(|_| {
                *next_id += 1;
                format!("{prefix}-{next_id}")
            })
            .collect();
        let mut events: Vec<Value> = ids.iter().map(|id| event_for_id(id)).collect();
        let body = if count == 1 {
            events.remove(0)
        } else {
            serde_json::json!({ "events": events })
        };
        EventRequest {
            ids,
            body,
            unanswered: 0,
        }
    }

    /// Reads an answer to this request. Anything but 201 with every event new, or 200 with
    /// every event a duplicate, is an error: a request is stored whole or not at all.
    pub fn acceptance(&self, answer: &Answer) -> anyhow::Result<Acceptance> {
        let describe = || {
            format!(
                "request {}..{} ({} events, sent {} times before without an answer) answered {}: {}",
                self.ids[0],
                self.ids[self.ids.len() - 1],
                self.ids.len(),
                self.unanswered,
                answer.status,
                answer.body
            )
        };
        if !matches!(answer.status, 200 | 201) {
            bail!("{}", describe());
        }
        let accepted = answer.body["accepted"]
            .as_array()
            .filter(|a| a.len() == self.ids.len())
            .with_context(|| format!("not one accepted entry per event: {}", describe()))?;
        let mut seqs = Vec::with_capacity(accepted.len());
        let mut duplicates = 0;
        for (entry, id) in accepted.iter().zip(&self.ids) {
            if entry["id"].as_str() != Some(id) {
                bail!("accepted entries out of order: {}", describe());
            }
            match (entry["seq"].as_u64(), entry["duplicate"].as_bool()) {
                (Some(seq), Some(duplicate)) if seq > 0 => {
                    seqs.push(seq);
                    duplicates += usize::from(duplicate);
                }
                _ => bail!("a malformed accepted entry: {}", describe()),
            }
        }
        match (answer.status, duplicates) {
            (201, 0) => Ok(Acceptance::Stored(seqs)),
            (200, d) if d == seqs.len() => Ok(Acceptance::Duplicate(seqs)),
            _ => bail!(
                "{duplicates} of {} events were duplicates: {}",
                seqs.len(),
                describe()
            ),
        }
    }
}

/// Fields the agent adds to a stored event.
const STORED_ONLY: [&str; 3] = ["seq", "received_at", "log_id"];

/// Whether a stored event (from `GET /v1/events` or `export`) holds exactly `sent`.
pub fn same_content(sent: &Value, stored: &Value) -> bool {
    let (Some(sent), Some(stored)) = (sent.as_object(), stored.as_object()) else {
        return false;
    };
    sent.iter()
        .all(|(key, value)| stored.get(key) == Some(value))
        && stored
            .keys()
            .all(|key| sent.contains_key(key) || STORED_ONLY.contains(&key.as_str()))
}

/// What the clients of a test know: every event they sent, which were acknowledged and with
/// which seq, and which were refused outright.
#[derive(Debug, Default)]
pub struct Expectations {
    /// Every client id sent, with the event sent under it.
    pub sent: std::collections::HashMap<String, Value>,
    /// Acknowledged ids (2xx) and the seq the agent gave them.
    pub acked: std::collections::HashMap<String, u64>,
    /// Ids of requests the agent refused with an answer that promises nothing was stored.
    pub refused: std::collections::HashSet<String>,
}

/// Counts from a checked log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogCheck {
    pub stored: usize,
    pub acked: usize,
    /// Stored events whose request was never answered (its outcome was unknown to the client).
    pub stored_unacked: usize,
}

/// Checks a log read back in seq order against what the clients know: seqs are exactly
/// 1..=N; every event carries a client id that was sent, once, with exactly the content sent
/// under it; every acknowledged id is stored with the seq it was acknowledged with; no refused
/// id is stored. Unacknowledged events may be stored (their request's answer was lost).
pub fn check_log(stored: &[Value], expected: &Expectations) -> anyhow::Result<LogCheck> {
    let mut problems = Vec::new();
    let mut seq_of: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for (index, event) in stored.iter().enumerate() {
        let seq = event["seq"].as_u64();
        if seq != Some(index as u64 + 1) {
            problems.push(format!(
                "position {index} holds seq {seq:?}, expected {} (seqs must be 1..=N)",
                index + 1
            ));
        }
        let Some(id) = event["id"].as_str() else {
            problems.push(format!("seq {seq:?} has no client id: {event}"));
            continue;
        };
        if let Some(first) = seq_of.insert(id, seq.unwrap_or(0)) {
            problems.push(format!(
                "id {id} is stored twice: seq {first} and seq {seq:?}"
            ));
        }
        match expected.sent.get(id) {
            None => problems.push(format!("seq {seq:?} has id {id}, which no client sent")),
            Some(sent) if !same_content(sent, event) => problems.push(format!(
                "seq {seq:?} (id {id}) holds {event}, but the client sent {sent}"
            )),
            Some(_) => {}
        }
        if expected.refused.contains(id) {
            problems.push(format!(
                "seq {seq:?} (id {id}) is stored, but its request was refused"
            ));
        }
    }
    let mut acked: Vec<(&String, &u64)> = expected.acked.iter().collect();
    acked.sort_by_key(|(_, seq)| **seq);
    for (id, seq) in acked {
        match seq_of.get(id.as_str()) {
            None => problems.push(format!("acknowledged id {id} (seq {seq}) is not stored")),
            Some(stored) if stored != seq => problems.push(format!(
                "acknowledged id {id} was given seq {seq} but is stored at seq {stored}"
            )),
            Some(_) => {}
        }
    }
    if !problems.is_empty() {
        let shown = problems.len().min(25);
        bail!(
            "{} problems in a log of {} events ({} acknowledged); the first {shown}:\n  {}",
            problems.len(),
            stored.len(),
            expected.acked.len(),
            problems[..shown].join("\n  ")
        );
    }
    let stored_unacked = stored
        .iter()
        .filter(|e| {
            e["id"]
                .as_str()
                .is_some_and(|id| !expected.acked.contains_key(id))
        })
        .count();
    Ok(LogCheck {
        stored: stored.len(),
        acked: expected.acked.len(),
        stored_unacked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_sources_newer_than_the_build_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("main.rs");
        let spaced = dir.path().join("my lib.rs");
        std::fs::write(&plain, "").unwrap();
        std::fs::write(&spaced, "").unwrap();
        let dep_info = dir.path().join("bin.d");
        let escaped = spaced.display().to_string().replace(' ', "\\ ");
        std::fs::write(
            &dep_info,
            format!("/t/bin: {} {escaped}\n", plain.display()),
        )
        .unwrap();
        let past = SystemTime::UNIX_EPOCH;
        assert_eq!(newer_source(&dep_info, past), Some(plain.clone()));
        let future = SystemTime::now() + Duration::from_secs(3600);
        assert_eq!(newer_source(&dep_info, future), None);
        std::fs::File::options()
            .write(true)
            .open(&spaced)
            .unwrap()
            .set_modified(future + Duration::from_secs(1))
            .unwrap();
        assert_eq!(newer_source(&dep_info, future), Some(spaced));
        assert_eq!(newer_source(&dir.path().join("missing.d"), past), None);
    }

    #[test]
    fn events_are_derived_from_their_id() {
        assert_eq!(event_for_id("c1-1"), event_for_id("c1-1"));
        assert_ne!(event_for_id("c1-1"), event_for_id("c1-2"));
        let mut stored = event_for_id("c1-1");
        stored["seq"] = 1.into();
        stored["received_at"] = "2026-01-01T00:00:00Z".into();
        assert!(same_content(&event_for_id("c1-1"), &stored));
        stored["lot"] = "other".into();
        assert!(!same_content(&event_for_id("c1-1"), &stored));
    }

    #[test]
    fn the_log_check_finds_gaps_strangers_and_lost_acks() {
        let mut expected = Expectations::default();
        let stored: Vec<Value> = ["a", "b"]
            .iter()
            .enumerate()
            .map(|(i, id)| {
                expected.sent.insert((*id).into(), event_for_id(id));
                let mut e = event_for_id(id);
                e["seq"] = (i as u64 + 1).into();
                e
            })
            .collect();
        expected.acked.insert("a".into(), 1);
        let check = check_log(&stored, &expected).unwrap();
        assert_eq!((check.stored, check.acked, check.stored_unacked), (2, 1, 1));

        expected.acked.insert("b".into(), 3);
        assert!(check_log(&stored, &expected).is_err());
        expected.acked.remove("b");
        assert!(check_log(&stored[1..], &expected).is_err());
        expected.sent.remove("b");
        assert!(check_log(&stored, &expected).is_err());
    }
}

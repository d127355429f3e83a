//! `tally-central` as a real process: TLS material for it ([`gen_cert`]), agents registered
//! while it is stopped ([`add_agent_offline`]), a running central ([`CentralProcess`], started
//! by [`CentralBuilder`]), its admin API ([`AdminClient`]), and the check that its journal
//! holds exactly an agent's log ([`check_journal`]).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde_json::Value;

use crate::process::{self, Names, Process, command};
use crate::{STARTUP_TIMEOUT, cached_binary, http_client};

/// The environment variable that names the `tally-central` binary to test.
pub const CENTRAL_BIN_ENV: &str = "TALLY_CENTRAL_BIN";

/// The admin token the harness starts central with unless told otherwise.
pub const ADMIN_TOKEN: &str = "tally-test-admin-token-0123456789";

/// The line `tally-central run` prints on stdout once it listens:
/// `tally-central listening on 127.0.0.1:PORT admin http://127.0.0.1:PORT2`.
const LISTENING_PREFIX: &str = "tally-central listening on ";

/// How error messages name central.
const CENTRAL_NAMES: Names = Names {
    program: "tally-central",
    process: "central",
};

/// How long a short command (`gen-cert`, `agent add`) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest page of `GET /v1/journal`.
const JOURNAL_PAGE: usize = 10_000;

/// The `tally-central` binary to run (found like [`crate::agent_binary`]; see the crate
/// documentation). Found and checked once per test process.
pub fn central_binary() -> anyhow::Result<PathBuf> {
    static BINARY: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    cached_binary(&BINARY, "tally-central", CENTRAL_BIN_ENV)
}

/// The files `tally-central gen-cert` writes: a test CA and a server certificate it signed.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate: agents trust it with `--ca-file`.
    pub ca: PathBuf,
    /// The server certificate (for `localhost` and `127.0.0.1`).
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `tally-central gen-cert --out-dir dir --host localhost --host 127.0.0.1`.
pub async fn gen_cert(dir: &Path) -> anyhow::Result<TlsFiles> {
    let binary = central_binary()?;
    let mut gen_cert = command(&binary);
    gen_cert.arg("gen-cert").arg("--out-dir").arg(dir).args([
        "--host",
        "localhost",
        "--host",
        "127.0.0.1",
    ]);
    process::run_to_end(gen_cert, "tally-central gen-cert", COMMAND_TIMEOUT).await?;
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    for file in [&files.ca, &files.cert, &files.key] {
        ensure!(file.is_file(), "gen-cert did not write {}", file.display());
    }
    Ok(files)
}

/// `tally-central agent add AGENT --warehouse WH` on a stopped central's data directory (it
/// opens the database itself): registers the agent and returns its token. While central runs,
/// use [`AdminClient::add_agent`] instead (this command would then try the admin API at an
/// address that is never listened on, and fail).
pub async fn add_agent_offline(
    data_dir: &Path,
    admin_token: &str,
    agent_id: &str,
    warehouse: &str,
) -> anyhow::Result<String> {
    let binary = central_binary()?;
    let mut add = command(&binary);
    add.arg("agent")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--admin-token", admin_token, "--insecure-plaintext"])
        .args(["--listen", "127.0.0.1:1", "--admin-listen", "127.0.0.1:1"])
        .args(["add", agent_id, "--warehouse", warehouse]);
    let stdout = process::run_to_end(add, "tally-central agent add", COMMAND_TIMEOUT).await?;
    let token = stdout.trim();
    ensure!(
        !token.is_empty() && !token.contains(char::is_whitespace),
        "tally-central agent add printed {stdout:?}, not a token"
    );
    Ok(token.to_owned())
}

/// Where central on `data_dir` writes its stderr: next to the data directory, appended to by
/// every run.
pub fn central_stderr_path(data_dir: &Path) -> PathBuf {
    process::stderr_path_next_to(data_dir, "central")
}

/// How central's sync listener speaks.
#[derive(Debug, Clone)]
enum Transport {
    Tls { cert: PathBuf, key: PathBuf },
    Plaintext,
}

/// How to start `tally-central run`. Plain `ws://` unless [`CentralBuilder::tls`] is called.
#[derive(Debug, Clone)]
pub struct CentralBuilder {
    data_dir: PathBuf,
    admin_token: String,
    transport: Transport,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    log_filter: Option<String>,
    startup_timeout: Duration,
}

impl CentralBuilder {
    pub fn new(data_dir: impl Into<PathBuf>) -> CentralBuilder {
        CentralBuilder {
            data_dir: data_dir.into(),
            admin_token: ADMIN_TOKEN.to_owned(),
            transport: Transport::Plaintext,
            args: Vec::new(),
            envs: Vec::new(),
            log_filter: None,
            startup_timeout: STARTUP_TIMEOUT,
        }
    }

    /// Serves `wss://` with the certificate and key of `files`.
    pub fn tls(mut self, files: &TlsFiles) -> CentralBuilder {
        self.transport = Transport::Tls {
            cert: files.cert.clone(),
            key: files.key.clone(),
        };
        self
    }

    /// Serves plain `ws://` (`--insecure-plaintext`; central allows it on loopback only).
    pub fn plaintext(mut self) -> CentralBuilder {
        self.transport = Transport::Plaintext;
        self
    }

    /// The admin API's bearer token (at least 16 characters; default [`ADMIN_TOKEN`]).
    pub fn admin_token(mut self, token: impl Into<String>) -> CentralBuilder {
        self.admin_token = token.into();
        self
    }

    /// An extra command-line argument for `tally-central run`.
    pub fn arg(mut self, arg: impl Into<OsString>) -> CentralBuilder {
        self.args.push(arg.into());
        self
    }

    /// An environment variable for central (a channel's `secret_env`).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> CentralBuilder {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Central's `TALLY_LOG` filter (default: inherited, else central's own `info`).
    /// Merges into `odoo` (the API key goes through the environment, not the command line).
    pub fn odoo(mut self, odoo: &tally_central::odoo::OdooConfig) -> CentralBuilder {
        self.args.extend(
            [
                "--odoo-url",
                &odoo.url,
                "--odoo-db",
                &odoo.db,
                "--odoo-user",
                &odoo.login,
            ]
            .map(OsString::from),
        );
        self.args
            .extend(["--odoo-api", odoo.api.as_str()].map(OsString::from));
        self.envs
            .push(("TALLY_ODOO_API_KEY".into(), odoo.api_key.expose().into()));
        self
    }

    pub fn log_filter(mut self, filter: impl Into<String>) -> CentralBuilder {
        self.log_filter = Some(filter.into());
        self
    }

    pub fn startup_timeout(mut self, timeout: Duration) -> CentralBuilder {
        self.startup_timeout = timeout;
        self
    }

    /// Starts central with its sync listener and admin API on 127.0.0.1, on ports the OS
    /// picks, and waits for its listening line on stdout.
    pub async fn spawn(&self) -> anyhow::Result<CentralProcess> {
        let binary = central_binary()?;
        let mut run = command(&binary);
        run.arg("run")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--admin-token", &self.admin_token]);
        match &self.transport {
            Transport::Tls { cert, key } => {
                run.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
            }
            Transport::Plaintext => {
                run.arg("--insecure-plaintext");
            }
        }
        run.args(&self.args);
        run.envs(self.envs.iter().map(|(k, v)| (k, v)));
        if let Some(filter) = &self.log_filter {
            run.env("TALLY_LOG", filter);
        }
        let (process, rest) = Process::spawn(
            run,
            CENTRAL_NAMES,
            &self.data_dir,
            central_stderr_path(&self.data_dir),
            LISTENING_PREFIX,
            self.startup_timeout,
        )
        .await?;
        let (sync, admin_url) = rest
            .split_once(" admin ")
            .with_context(|| format!("an unexpected listening line: {LISTENING_PREFIX}{rest}"))?;
        let sync_addr: SocketAddr = sync
            .parse()
            .with_context(|| format!("central's sync address {sync:?} is not an address"))?;
        ensure!(
            sync_addr.ip().is_loopback()
                && (admin_url.starts_with("http://127.0.0.1:")
                    || admin_url.starts_with("https://127.0.0.1:")),
            "central listens on {sync_addr} and {admin_url}, not on loopback"
        );
        Ok(CentralProcess {
            process,
            sync_addr,
            tls: matches!(self.transport, Transport::Tls { .. }),
            admin: AdminClient::new(admin_url, &self.admin_token),
            data_dir: self.data_dir.clone(),
        })
    }
}

/// A running `tally-central run` process. Dropping it kills the process (SIGKILL).
#[derive(Debug)]
pub struct CentralProcess {
    process: Process,
    sync_addr: SocketAddr,
    tls: bool,
    admin: AdminClient,
    data_dir: PathBuf,
}

impl CentralProcess {
    pub fn builder(data_dir: impl Into<PathBuf>) -> CentralBuilder {
        CentralBuilder::new(data_dir)
    }

    /// The sync listener's address (`127.0.0.1:PORT`).
    pub fn sync_addr(&self) -> SocketAddr {
        self.sync_addr
    }

    /// The URL agents sync to when they connect directly: `wss://localhost:PORT/v1/sync`
    /// with TLS (the name [`gen_cert`]'s certificate is for), `ws://127.0.0.1:PORT/v1/sync`
    /// without.
    pub fn sync_url(&self) -> String {
        if self.tls {
            format!("wss://localhost:{}/v1/sync", self.sync_addr.port())
        } else {
            format!("ws://{}/v1/sync", self.sync_addr)
        }
    }

    /// The admin API's base URL, `http://127.0.0.1:PORT`.
    pub fn admin_url(&self) -> &str {
        self.admin.base_url()
    }

    /// A client for the admin API, with the token central was started with.
    pub fn admin(&self) -> AdminClient {
        self.admin.clone()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Runs `tally-central <command> [settings] <args>` as an operator would while this
    /// central runs (the command reaches it through its admin API); returns its stdout.
    pub async fn cli(&self, command_name: &str, args: &[&str]) -> anyhow::Result<String> {
        let admin_addr = self
            .admin_url()
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_owned();
        let mut cli = command(&central_binary()?);
        cli.arg(command_name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--admin-token", self.admin.token(), "--insecure-plaintext"])
            .args(["--listen", "127.0.0.1:1", "--admin-listen", &admin_addr])
            .args(args);
        process::run_to_end(
            cli,
            &format!("tally-central {command_name}"),
            COMMAND_TIMEOUT,
        )
        .await
    }

    /// The file that holds central's stderr (shared by every run on the same data dir).
    pub fn stderr_path(&self) -> &Path {
        self.process.stderr_path()
    }

    pub fn stderr_tail(&self, lines: usize) -> String {
        self.process.stderr_tail(lines)
    }

    /// SIGKILL: central dies at once, wherever it is. Waits for it and returns its status.
    pub async fn kill9(self) -> anyhow::Result<ExitStatus> {
        self.process.kill9().await
    }

    /// SIGTERM, then waits (at most [`crate::SHUTDOWN_TIMEOUT`]) for central to exit and returns its
    /// status. A central that does not exit in time is killed and reported as an error.
    pub async fn terminate(self) -> anyhow::Result<ExitStatus> {
        self.process.terminate().await
    }

    /// Sends `signal` to central (it has not been waited for, so its pid is still its own).
    pub fn signal(&self, signal: rustix::process::Signal) -> anyhow::Result<()> {
        self.process.signal(signal)
    }
}

/// A small client for central's admin API.
#[derive(Debug, Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    base_url: String,
    token: String,
}

impl AdminClient {
    /// A client with its own connection pool and a [`crate::REQUEST_TIMEOUT`] per request.
    pub fn new(base_url: &str, token: &str) -> AdminClient {
        AdminClient {
            http: http_client(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| what.to_owned())?;
        let status = response.status();
        let text = response.text().await.with_context(|| what.to_owned())?;
        if !status.is_success() {
            bail!("{what} answered {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("{what} answered non-JSON: {text}"))
    }

    /// `GET path` as JSON (an error for any answer but 2xx).
    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base_url);
        self.send(self.http.get(&url), &format!("GET {url}")).await
    }

    /// `POST /v1/agents`: registers an agent and returns its token.
    pub async fn add_agent(&self, agent_id: &str, warehouse: &str) -> anyhow::Result<String> {
        let url = format!("{}/v1/agents", self.base_url);
        let body = serde_json::json!({ "agent_id": agent_id, "warehouse": warehouse });
        let answer = self
            .send(self.http.post(&url).json(&body), &format!("POST {url}"))
            .await?;
        answer["token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("POST {url} answered without a token: {answer}"))
    }

    /// `GET /v1/agents`: the `agents` array (each with `agent_id`, `connected`, `logs`: one
    /// `{log_id, stored_seq, first_seen}` per log central has seen from it, ...).
    pub async fn agents(&self) -> anyhow::Result<Vec<Value>> {
        let url = format!("{}/v1/agents", self.base_url);
        let answer = self
            .send(self.http.get(&url), &format!("GET {url}"))
            .await?;
        answer["agents"]
            .as_array()
            .cloned()
            .with_context(|| format!("GET {url} answered without an agents array: {answer}"))
    }

    /// The `GET /v1/agents` entry of one agent.
    pub async fn agent(&self, agent_id: &str) -> anyhow::Result<Value> {
        self.agents()
            .await?
            .into_iter()
            .find(|a| a["agent_id"].as_str() == Some(agent_id))
            .with_context(|| format!("GET /v1/agents does not list {agent_id}"))
    }

    /// The stored seq central reports for one log of one agent (`GET /v1/agents`); 0 for a
    /// log it has not seen.
    pub async fn stored_seq(&self, agent_id: &str, log_id: &str) -> anyhow::Result<u64> {
        let agent = self.agent(agent_id).await?;
        Ok(agent["logs"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["log_id"].as_str() == Some(log_id))
            .and_then(|l| l["stored_seq"].as_u64())
            .unwrap_or(0))
    }

    /// One page of `GET /v1/journal`: the events of `agent_id`'s log `log_id` after seq
    /// `after`, at most `limit` (1..=10000).
    pub async fn journal_page(
        &self,
        agent_id: &str,
        log_id: &str,
        after: u64,
        limit: usize,
    ) -> anyhow::Result<Vec<Value>> {
        let url = format!("{}/v1/journal", self.base_url);
        let query = [
            ("agent", agent_id.to_owned()),
            ("log", log_id.to_owned()),
            ("after", after.to_string()),
            ("limit", limit.to_string()),
        ];
        let answer = self
            .send(
                self.http.get(&url).query(&query),
                &format!("GET {url}?agent={agent_id}&log={log_id}&after={after}"),
            )
            .await?;
        answer["events"]
            .as_array()
            .cloned()
            .with_context(|| format!("GET {url} answered without an events array: {answer}"))
    }

    /// Every journaled event of `agent_id`'s log `log_id`, in seq order, paging through
    /// `GET /v1/journal`.
    pub async fn journal(&self, agent_id: &str, log_id: &str) -> anyhow::Result<Vec<Value>> {
        let mut events = Vec::new();
        let mut after = 0;
        loop {
            let page = self
                .journal_page(agent_id, log_id, after, JOURNAL_PAGE)
                .await?;
            let Some(last) = page.last() else {
                return Ok(events);
            };
            let seq = last["seq"]
                .as_u64()
                .with_context(|| format!("a journal entry without a seq: {last}"))?;
            ensure!(
                seq > after,
                "GET /v1/journal after={after} returned seq {seq}"
            );
            after = seq;
            events.extend(page);
        }
    }
}

/// A journal entry as the agent would write it: central spells absent fields as `null`, the
/// agent leaves them out.
fn without_nulls(entry: &Value) -> Value {
    match entry {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|(_, value)| !value.is_null())
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Checks that central's journal of one log (from [`AdminClient::journal`]) holds exactly the
/// agent's log (from `GET /v1/events` on the agent, or `tally-agent export` without its
/// `log_id` field): the same number of events, and at each position the same seq with the
/// same content, `received_at` included. Returns the number of events.
pub fn check_journal(agent_log: &[Value], journal: &[Value]) -> anyhow::Result<usize> {
    let mut problems = Vec::new();
    if agent_log.len() != journal.len() {
        problems.push(format!(
            "the agent's log holds {} events, central's journal {}",
            agent_log.len(),
            journal.len()
        ));
    }
    for (index, (logged, journaled)) in agent_log.iter().zip(journal).enumerate() {
        let journaled = without_nulls(journaled);
        if logged["seq"].as_u64() != Some(index as u64 + 1) {
            problems.push(format!(
                "position {index} of the agent's log holds seq {}",
                logged["seq"]
            ));
        }
        if &journaled != logged {
            problems.push(format!(
                "at position {index} the agent logged {logged} but central journaled {journaled}"
            ));
        }
    }
    for (index, extra) in journal.iter().enumerate().skip(agent_log.len()) {
        if problems.len() > 40 {
            break;
        }
        problems.push(format!(
            "journal position {index} holds {extra}, beyond the agent's log"
        ));
    }
    if !problems.is_empty() {
        let shown = problems.len().min(25);
        bail!(
            "central's journal differs from the agent's log in {} ways; the first {shown}:\n  {}",
            problems.len(),
            problems[..shown].join("\n  ")
        );
    }
    Ok(journal.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_check_ignores_nulls_and_finds_differences() {
        let logged: Vec<Value> = (1..=2)
            .map(|seq| serde_json::json!({"seq": seq, "id": format!("e{seq}"), "qty": "1"}))
            .collect();
        let journal: Vec<Value> = (1..=2)
            .map(|seq| {
                serde_json::json!({"seq": seq, "id": format!("e{seq}"), "qty": "1", "lot": null})
            })
            .collect();
        assert_eq!(check_journal(&logged, &journal).unwrap(), 2);
        assert!(check_journal(&logged[..1], &journal).is_err());
        assert!(check_journal(&logged, &journal[..1]).is_err());
        let mut changed = journal.clone();
        changed[1]["qty"] = "2".into();
        assert!(check_journal(&logged, &changed).is_err());
        let swapped = vec![journal[1].clone(), journal[0].clone()];
        assert!(check_journal(&logged, &swapped).is_err());
    }
}

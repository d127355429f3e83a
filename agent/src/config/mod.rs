//! The agent's configuration: a TOML file, overridden by `TALLY_*` environment variables,
//! overridden by command-line flags. Everything is validated before any file is opened or
//! port bound, and a bad value is reported with the key that holds it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::Duration;

use clap::Args;
use serde::Deserialize;
use tally_protocol::Secret;
pub use tally_service::ConfigError;
use tally_service::layers::{FromEnv, Layered, Layers};
use tally_service::{invalid, parse_duration, read_toml, refuse_placeholder};

use crate::sync::connect::Endpoint;

/// Shortest accepted scanner token: long enough that guessing is hopeless.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Settings shared by `run` and `check-config`. Each flag can also be set by the environment
/// variable shown, or by the key of the same name (with `_`) in the `--config` file.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, env = "TALLY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory holding the event log (created if missing).
    #[arg(long, env = "TALLY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the local HTTP API [default: 127.0.0.1:8917]. Port 0 picks a free port.
    #[arg(long, env = "TALLY_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Code of the Odoo warehouse this agent serves, such as WH.
    #[arg(long, env = "TALLY_WAREHOUSE")]
    pub warehouse: Option<String>,
    /// This agent's identity towards central.
    #[arg(long, env = "TALLY_AGENT_ID")]
    pub agent_id: Option<String>,
    /// Disk budget of the event log, such as 10GiB [default: 10GiB]. When it is reached, new
    /// events are refused with 507; stored events are never dropped to make room.
    #[arg(long, env = "TALLY_MAX_LOG_BYTES", value_name = "SIZE")]
    pub max_log_bytes: Option<String>,
    /// Bearer token a scanner or WMS must present (repeat the flag, or separate with commas in
    /// the environment variable). At least 16 characters.
    #[arg(
        long = "scanner-token",
        env = "TALLY_SCANNER_TOKENS",
        value_delimiter = ',',
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub scanner_tokens: Vec<String>,
    /// File holding the scanner tokens, one per line: keeps them off the command line, where
    /// `ps` shows them to every local user.
    #[arg(long, env = "TALLY_SCANNER_TOKEN_FILE", value_name = "FILE")]
    pub scanner_token_file: Option<PathBuf>,
    /// Largest accepted request body [default: 4MiB].
    #[arg(long, env = "TALLY_MAX_BODY_BYTES", value_name = "SIZE")]
    pub max_body_bytes: Option<String>,
    /// Central's sync address, such as wss://central.example.com:8921/v1/sync. Without it the
    /// agent only captures events.
    #[arg(long, env = "TALLY_CENTRAL_URL", value_name = "URL")]
    pub central_url: Option<String>,
    /// This agent's token at central (printed by `tally-central agent add`).
    #[arg(
        long,
        env = "TALLY_CENTRAL_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub central_token: Option<String>,
    /// File holding this agent's token at central (instead of --central-token).
    #[arg(long, env = "TALLY_CENTRAL_TOKEN_FILE", value_name = "FILE")]
    pub central_token_file: Option<PathBuf>,
    /// PEM file of the certificate authority that signed central's certificate [default: the
    /// public web roots].
    #[arg(long, env = "TALLY_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Name to check in central's certificate, when it differs from the URL's host.
    #[arg(long, env = "TALLY_SERVER_NAME", value_name = "NAME")]
    pub server_name: Option<String>,
    /// How long events central has acknowledged stay in the local log [default: 7d].
    #[arg(long, env = "TALLY_RETENTION", value_name = "DURATION")]
    pub retention: Option<String>,
    /// How long a client id is remembered to catch scanner retries [default: 7d].
    #[arg(long, env = "TALLY_ID_RETENTION", value_name = "DURATION")]
    pub id_retention: Option<String>,
    /// Bearer token GET /metrics then requires (for Prometheus' `authorization` setting); a
    /// token of its own, so that the scraper cannot post events. Without it /metrics answers
    /// anyone who reaches the listener. At least 16 characters.
    #[arg(
        long,
        env = "TALLY_METRICS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub metrics_token: Option<String>,
    /// File holding the metrics token (instead of --metrics-token).
    #[arg(long, env = "TALLY_METRICS_TOKEN_FILE", value_name = "FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// Which of the values above clap took from the environment rather than a flag, for error
    /// messages (filled in by the command line; empty counts every value as a flag).
    #[arg(skip)]
    pub from_env: FromEnv,
}

/// The configuration file's keys. Unknown keys are an error, so a typo is not silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    warehouse: Option<String>,
    agent_id: Option<String>,
    max_log_bytes: Option<Size>,
    #[serde(default)]
    scanner_tokens: Vec<String>,
    max_body_bytes: Option<Size>,
    central_url: Option<String>,
    central_token: Option<String>,
    ca_file: Option<PathBuf>,
    server_name: Option<String>,
    retention: Option<String>,
    id_retention: Option<String>,
    metrics_token: Option<String>,
}

/// A size in the file: a number of bytes, or a string such as "512MiB".
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub warehouse: String,
    pub agent_id: String,
    pub max_log_bytes: u64,
    pub scanner_tokens: Vec<Secret>,
    pub max_body_bytes: usize,
    /// The link to central; `None` runs the agent capture-only.
    pub central: Option<CentralLink>,
    pub retention: Duration,
    pub id_retention: Duration,
    /// The token GET /metrics requires; `None` leaves it open.
    pub metrics_token: Option<Secret>,
}

/// How to reach central.
#[derive(Debug, Clone)]
pub struct CentralLink {
    pub endpoint: Endpoint,
    pub token: Secret,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8917";
const DEFAULT_MAX_LOG_BYTES: u64 = 10 << 30;
const DEFAULT_MAX_BODY_BYTES: u64 = 4 << 20;

impl ConfigArgs {
    /// Merges file, environment and flags (clap has already merged the last two) and validates.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => read_toml(path)?,
            None => FileConfig::default(),
        };
        let layers = Layers::new::<ConfigArgs>(self.config.as_deref(), &self.from_env);
        let data_dir = layers
            .pick("data_dir", self.data_dir.clone(), file.data_dir)
            .ok_or_else(|| invalid("data_dir", "is required (--data-dir or TALLY_DATA_DIR)"))?
            .value;
        let listen = layers
            .pick_or(
                "listen",
                self.listen,
                file.listen,
                DEFAULT_LISTEN.parse().expect("valid default"),
            )
            .value;
        let warehouse = layers
            .pick("warehouse", self.warehouse.clone(), file.warehouse)
            .ok_or_else(|| invalid("warehouse", "is required (--warehouse or TALLY_WAREHOUSE)"))?;
        warehouse.attribute(check_name("warehouse", &warehouse.value))?;
        let agent_id = layers
            .pick("agent_id", self.agent_id.clone(), file.agent_id)
            .ok_or_else(|| invalid("agent_id", "is required (--agent-id or TALLY_AGENT_ID)"))?;
        agent_id.attribute(check_name("agent_id", &agent_id.value))?;
        let max_log_bytes = size(
            &layers,
            "max_log_bytes",
            self.max_log_bytes.clone(),
            file.max_log_bytes,
            DEFAULT_MAX_LOG_BYTES,
        )?;
        max_log_bytes.check(max_log_bytes.value >= 1 << 20, "must be at least 1MiB")?;
        let max_body_bytes = size(
            &layers,
            "max_body_bytes",
            self.max_body_bytes.clone(),
            file.max_body_bytes,
            DEFAULT_MAX_BODY_BYTES,
        )?;
        max_body_bytes.check(
            (1024..=64 << 20).contains(&max_body_bytes.value),
            "must be between 1KiB and 64MiB",
        )?;
        let tokens = match (&self.scanner_token_file, self.scanner_tokens.is_empty()) {
            (Some(_), false) => {
                return Err(invalid(
                    "scanner_tokens",
                    format!(
                        "give the tokens either directly ({}) or in a file ({}), not both",
                        layers.command_line("scanner_tokens").name(),
                        layers.command_line("scanner_token_file").name()
                    ),
                ));
            }
            (Some(path), true) => Some(Layered {
                key: "scanner_tokens",
                value: read_token_lines(path)?,
                origin: layers.command_line("scanner_token_file"),
            }),
            (None, cli) => layers.pick(
                "scanner_tokens",
                (!cli).then(|| self.scanner_tokens.clone()),
                (!file.scanner_tokens.is_empty()).then_some(file.scanner_tokens),
            ),
        };
        let Some(tokens) = tokens.filter(|tokens| !tokens.value.is_empty()) else {
            return Err(invalid(
                "scanner_tokens",
                "at least one token is required (--scanner-token-file, TALLY_SCANNER_TOKENS or the configuration file)",
            ));
        };
        for (i, token) in tokens.value.iter().enumerate() {
            tokens.attribute(check_token(
                "scanner_tokens",
                &format!("token {}", i + 1),
                token,
            ))?;
        }
        let metrics_token = layers.secret(
            "metrics_token",
            "metrics_token_file",
            self.metrics_token_file.as_deref(),
            self.metrics_token.as_deref(),
            file.metrics_token,
        )?;
        if let Some(token) = &metrics_token {
            token.attribute(check_token("metrics_token", "the token", &token.value))?;
            token.check(
                !tokens.value.contains(&token.value),
                "must differ from every scanner token (a scraper must not be able to post events)",
            )?;
        }
        let central_url = layers.pick("central_url", self.central_url.clone(), file.central_url);
        let central_token = layers.secret(
            "central_token",
            "central_token_file",
            self.central_token_file.as_deref(),
            self.central_token.as_deref(),
            file.central_token,
        )?;
        if let Some(token) = &central_token {
            token.attribute(refuse_placeholder("central_token", &token.value))?;
        }
        let central = match (central_url, central_token) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid("central_token", "is required with central_url"));
            }
            (None, Some(_)) => {
                return Err(invalid("central_url", "is required with central_token"));
            }
            (Some(url), Some(token)) => {
                let ca_file = layers.pick("ca_file", self.ca_file.clone(), file.ca_file);
                let server_name =
                    layers.pick("server_name", self.server_name.clone(), file.server_name);
                let endpoint = Endpoint::new(
                    &url.value,
                    ca_file.map(|picked| picked.value).as_deref(),
                    server_name.map(|picked| picked.value).as_deref(),
                )
                .map_err(|e| url.invalid(format!("{e:#}")))?;
                Some(CentralLink {
                    endpoint,
                    token: Secret::new(token.value),
                })
            }
        };
        let week = Duration::from_secs(7 * 86_400);
        let duration = |key: &'static str, cli: Option<&String>, file: Option<String>| match layers
            .pick(key, cli.cloned(), file)
        {
            Some(picked) => Ok(picked.parse(|text| parse_duration(text))?.value),
            None => Ok::<_, ConfigError>(week),
        };
        let retention = duration("retention", self.retention.as_ref(), file.retention)?;
        let id_retention = duration(
            "id_retention",
            self.id_retention.as_ref(),
            file.id_retention,
        )?;
        Ok(Config {
            data_dir,
            listen,
            warehouse: warehouse.value,
            agent_id: agent_id.value,
            max_log_bytes: max_log_bytes.value,
            scanner_tokens: tokens.value.into_iter().map(Secret::new).collect(),
            max_body_bytes: max_body_bytes.value as usize,
            central,
            retention,
            id_retention,
            metrics_token: metrics_token.map(|token| Secret::new(token.value)),
        })
    }
}

/// The rules a bearer token the agent accepts keeps; `what` names it in the message, which
/// never echoes the token itself.
fn check_token(key: &'static str, what: &str, token: &str) -> Result<(), ConfigError> {
    if token.chars().count() < MIN_TOKEN_CHARS || token.len() > 256 {
        return Err(invalid(
            key,
            format!("{what} must be {MIN_TOKEN_CHARS} to 256 characters long"),
        ));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(key, format!("{what} must not contain white space")));
    }
    refuse_placeholder(key, token)
}

/// What `tally-agent status` needs, and nothing more: where the agent listens and a token to
/// show it.
#[derive(Debug, Clone, Default, Args)]
pub struct StatusArgs {
    /// TOML configuration file: its `listen` and first scanner token are used.
    #[arg(long, env = "TALLY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The agent's URL [default: http:// and the configuration's listen address].
    #[arg(long)]
    pub url: Option<String>,
    /// A scanner token of the agent.
    #[arg(
        long = "scanner-token",
        env = "TALLY_SCANNER_TOKENS",
        value_delimiter = ',',
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub scanner_tokens: Vec<String>,
    /// File holding scanner tokens, one per line (the first is used).
    #[arg(long, env = "TALLY_SCANNER_TOKEN_FILE", value_name = "FILE")]
    pub scanner_token_file: Option<PathBuf>,
}

impl StatusArgs {
    /// The agent's base URL and the token to present.
    pub fn target(&self) -> Result<(String, Secret), ConfigError> {
        let file: FileConfig = match &self.config {
            Some(path) => read_toml(path)?,
            None => FileConfig::default(),
        };
        let url = self.url.clone().unwrap_or_else(|| {
            let mut addr = file
                .listen
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        });
        let token = match &self.scanner_token_file {
            Some(path) => read_token_lines(path)?.into_iter().next(),
            None => self
                .scanner_tokens
                .first()
                .or(file.scanner_tokens.first())
                .cloned(),
        };
        let token = token.ok_or_else(|| {
            invalid(
                "scanner_tokens",
                "a scanner token is required (--scanner-token-file, TALLY_SCANNER_TOKENS or --config)",
            )
        })?;
        Ok((url, Secret::new(token)))
    }
}

/// Where `tally-agent export` finds the log: `--data-dir`, or the configuration's `data_dir`.
#[derive(Debug, Clone, Default, Args)]
pub struct DataDirArgs {
    /// TOML configuration file: its `data_dir` is used.
    #[arg(long, env = "TALLY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The agent's data directory.
    #[arg(long, env = "TALLY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataDirArgs {
    pub fn data_dir(&self) -> Result<PathBuf, ConfigError> {
        if let Some(dir) = &self.data_dir {
            return Ok(dir.clone());
        }
        let file: FileConfig = match &self.config {
            Some(path) => read_toml(path)?,
            None => FileConfig::default(),
        };
        file.data_dir.ok_or_else(|| {
            invalid(
                "data_dir",
                "is required (--data-dir, TALLY_DATA_DIR or --config)",
            )
        })
    }
}

/// Scanner tokens from a file: one per non-empty line.
fn read_token_lines(path: &Path) -> Result<Vec<String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Identifiers (agent id, warehouse code): 1..=64 characters of letters, digits, `-`, `_`, `.`.
fn check_name(key: &'static str, value: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("{value:?} must be 1 to 64 letters, digits, '-', '_' or '.'"),
        ))
    }
}

/// The size of `key`: a number of bytes or a text such as "512MiB"; `default` when no layer
/// sets it.
fn size(
    layers: &Layers,
    key: &'static str,
    cli: Option<String>,
    file: Option<Size>,
    default: u64,
) -> Result<Layered<u64>, ConfigError> {
    match layers.pick(key, cli.map(Size::Text), file) {
        Some(picked) => picked.parse(|size| match size {
            Size::Bytes(n) => Ok(*n),
            Size::Text(text) => parse_size(text),
        }),
        None => Ok(layers.pick_or(key, None, None, default)),
    }
}

/// Parses `1048576`, `512KiB`, `64MiB`, `10GiB`, `1TiB` (also KB/MB/GB/TB as powers of 10).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 512MiB or 10GiB"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use KiB, MiB, GiB or TiB)"
            ));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests;

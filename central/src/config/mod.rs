//! Central's configuration: TOML file, `TALLY_*` environment variables, flags — in rising order
//! of precedence — validated before any file is opened or port bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;
use tally_protocol::Secret;
pub use tally_service::ConfigError;
use tally_service::{invalid, parse_duration, read_secret_file, read_toml, refuse_placeholder};

use crate::merge::MergeSettings;
use crate::odoo::OdooConfig;
use odoo::{OdooFile, odoo_config};

mod odoo;
#[cfg(test)]
mod tests;

/// Timeout of one Odoo call, before the time added per picking line (half a second: a
/// 200-line picking gets 160 s): a loaded server retries serialisation failures for up to
/// ~30 s before answering (docs/odoo.md#concurrency).
const ODOO_CALL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, env = "TALLY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory holding central's database (created if missing).
    #[arg(long, env = "TALLY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address agents connect to (WebSocket over TLS) [default: 0.0.0.0:8921].
    #[arg(long, env = "TALLY_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain of the sync listener (leaf first).
    #[arg(long, env = "TALLY_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the sync listener.
    #[arg(long, env = "TALLY_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain ws:// instead of TLS. Refused unless `listen` is a loopback address: for
    /// development on one machine only.
    #[arg(long, env = "TALLY_INSECURE_PLAINTEXT")]
    pub insecure_plaintext: bool,
    /// Address of the admin API [default: 127.0.0.1:8922]. Must be a loopback address: put a
    /// TLS proxy in front of it to reach it from elsewhere.
    #[arg(long, env = "TALLY_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Bearer token of the admin API (at least 16 characters).
    #[arg(
        long,
        env = "TALLY_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// File holding the admin token (instead of --admin-token, which `ps` shows to every
    /// local user).
    #[arg(long, env = "TALLY_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Read-only token of the admin API and dashboard (at least 16 characters, not the admin
    /// token): every GET, no change.
    #[arg(
        long,
        env = "TALLY_READ_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub read_token: Option<String>,
    /// File holding the read-only token (instead of --read-token).
    #[arg(long, env = "TALLY_READ_TOKEN_FILE", value_name = "FILE")]
    pub read_token_file: Option<PathBuf>,
    /// Serve the admin API and dashboard over HTTPS with the sync listener's certificate and
    /// key; required for an admin_listen that is not a loopback address.
    #[arg(long, env = "TALLY_ADMIN_TLS")]
    pub admin_tls: bool,
    /// CA certificate (PEM) the command line trusts for an admin API served over TLS (the
    /// system's roots otherwise).
    #[arg(long, env = "TALLY_ADMIN_CA_FILE", value_name = "FILE")]
    pub admin_ca_file: Option<PathBuf>,
    /// How long a rotated-out agent token keeps working, such as 24h [default: 24h].
    #[arg(long, env = "TALLY_TOKEN_GRACE", value_name = "DURATION")]
    pub token_grace: Option<String>,
    /// How long the merge gathers newly journaled events before a pass, so that a burst lands
    /// in Odoo as a few pickings, such as 2s; 0s merges at once [default: 1s].
    #[arg(long, env = "TALLY_MERGE_WINDOW", value_name = "DURATION")]
    pub merge_window: Option<String>,
    /// Calls that change data (create, validate, ...) in flight at once against Odoo, across
    /// warehouses. Odoo serialises validations, so more only helps a server with spare
    /// workers [default: 1].
    #[arg(long, env = "TALLY_ODOO_MAX_WRITES", value_name = "N")]
    pub odoo_max_writes: Option<usize>,
    /// Most agent connections at once [default: 10000].
    #[arg(long, env = "TALLY_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Odoo's base URL, such as https://erp.example.com (https unless on loopback). Without
    /// it central journals events but merges nothing.
    #[arg(long, env = "TALLY_ODOO_URL", value_name = "URL")]
    pub odoo_url: Option<String>,
    /// Odoo database name.
    #[arg(long, env = "TALLY_ODOO_DB", value_name = "NAME")]
    pub odoo_db: Option<String>,
    /// Login of Odoo's integration user (groups: Internal User + Inventory Administrator, with
    /// an e-mail address).
    #[arg(long, env = "TALLY_ODOO_USER", value_name = "LOGIN")]
    pub odoo_user: Option<String>,
    /// That user's API key.
    #[arg(
        long,
        env = "TALLY_ODOO_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub odoo_api_key: Option<String>,
    /// File holding that user's API key (instead of --odoo-api-key).
    #[arg(long, env = "TALLY_ODOO_API_KEY_FILE", value_name = "FILE")]
    pub odoo_api_key_file: Option<PathBuf>,
    /// Which of Odoo's APIs to use: `auto` (JSON-2 from Odoo 19 on, JSON-RPC before),
    /// `json2` or `jsonrpc` [default: auto].
    #[arg(long, env = "TALLY_ODOO_API", value_name = "API")]
    pub odoo_api: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    #[serde(default)]
    insecure_plaintext: bool,
    admin_listen: Option<SocketAddr>,
    admin_token: Option<String>,
    read_token: Option<String>,
    #[serde(default)]
    admin_tls: bool,
    admin_ca_file: Option<PathBuf>,
    token_grace: Option<String>,
    merge_window: Option<String>,
    odoo_max_writes: Option<usize>,
    max_connections: Option<usize>,
    #[serde(default)]
    odoo: OdooFile,
    /// How often Odoo's own stock changes are polled for availability.
    availability_poll: Option<String>,
    #[serde(default)]
    channels: Vec<crate::channels::config::ChannelFile>,
    #[serde(default)]
    pools: Vec<crate::channels::pool::PoolFile>,
    // The flat `odoo_*` keys came before the `[odoo]` table; still read, with a warning.
    odoo_url: Option<String>,
    odoo_db: Option<String>,
    odoo_user: Option<String>,
    odoo_api_key: Option<String>,
}

impl FileConfig {
    /// The `[odoo]` table with the old flat keys folded in. Setting one value both ways is
    /// refused rather than guessed at.
    fn odoo(&mut self) -> Result<(OdooFile, Vec<String>), ConfigError> {
        let mut odoo = std::mem::take(&mut self.odoo);
        let mut deprecated = Vec::new();
        let flat = [
            ("odoo_url", self.odoo_url.take(), &mut odoo.url),
            ("odoo_db", self.odoo_db.take(), &mut odoo.db),
            ("odoo_user", self.odoo_user.take(), &mut odoo.user),
            ("odoo_api_key", self.odoo_api_key.take(), &mut odoo.api_key),
        ];
        for (key, old, new) in flat {
            let Some(old) = old else { continue };
            if new.is_some() {
                return Err(invalid(
                    key,
                    format!("is set both as {key} and in [odoo]; keep the [odoo] one"),
                ));
            }
            *new = Some(old);
            deprecated.push(format!(
                "the configuration key {key} is deprecated: write it as {} in the [odoo] table",
                key.trim_start_matches("odoo_")
            ));
        }
        if let Some(old) = self.odoo_max_writes.take() {
            if odoo.max_writes.is_some() {
                return Err(invalid(
                    "odoo_max_writes",
                    "is set both as odoo_max_writes and in [odoo]; keep the [odoo] one",
                ));
            }
            odoo.max_writes = Some(old);
            deprecated.push("the configuration key odoo_max_writes is deprecated: write it as max_writes in the [odoo] table".to_owned());
        }
        Ok((odoo, deprecated))
    }
}

/// How the sync listener speaks.
#[derive(Debug, Clone)]
pub enum Transport {
    Tls {
        cert: PathBuf,
        key: PathBuf,
    },
    /// Plain WebSocket, loopback only.
    Plaintext,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub transport: Transport,
    pub admin_listen: SocketAddr,
    pub admin_token: Secret,
    /// The read-only token, if configured.
    pub read_token: Option<Secret>,
    /// Whether the admin listener serves HTTPS (with the sync listener's certificate).
    pub admin_tls: bool,
    pub token_grace: Duration,
    pub max_connections: usize,
    /// Where to merge; `None` journals only.
    pub odoo: Option<OdooConfig>,
    /// How the merge paces itself.
    pub merge: MergeSettings,
    /// How often availability polls Odoo for changes made there (`availability_poll`).
    pub availability_poll: Duration,
    /// The sales channels (`[[channels]]`).
    pub channels: Vec<crate::channels::ChannelConfig>,
    /// Deprecated settings found, one sentence each, for the log.
    pub deprecated: Vec<String>,
}

/// What the commands that manage agents and parked events need: central's database, or the
/// admin API of the central that holds it. No TLS material, no Odoo.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub data_dir: PathBuf,
    pub admin_listen: SocketAddr,
    /// Needed only to reach a running central's admin API.
    pub admin_token: Option<Secret>,
    /// Enough for the read commands against a running central.
    pub read_token: Option<Secret>,
    /// Whether the running central's admin API speaks HTTPS.
    pub admin_tls: bool,
    /// The CA to trust for it (the system's roots otherwise).
    pub admin_ca_file: Option<PathBuf>,
    pub token_grace: Duration,
}

impl LocalConfig {
    /// The base URL of the running central's admin API.
    pub fn admin_url(&self) -> String {
        let scheme = if self.admin_tls { "https" } else { "http" };
        format!("{scheme}://{}", self.admin_listen)
    }
}

impl ConfigArgs {
    fn read_file(&self) -> Result<FileConfig, ConfigError> {
        match &self.config {
            Some(path) => read_toml(path),
            None => Ok(FileConfig::default()),
        }
    }

    /// What `agent` and `dlq` need, validated; everything else in the file is left alone.
    pub fn load_local(&self) -> Result<LocalConfig, ConfigError> {
        let mut file = self.read_file()?;
        let admin_token = self.admin_token(&mut file)?;
        let read_token = self.read_token(&mut file, admin_token.as_ref())?;
        Ok(LocalConfig {
            data_dir: self.data_dir(&mut file)?,
            admin_listen: self.admin_listen(&file)?,
            admin_token,
            read_token,
            admin_tls: self.admin_tls || file.admin_tls,
            admin_ca_file: self.admin_ca_file.clone().or(file.admin_ca_file.take()),
            token_grace: self.token_grace(&mut file)?,
        })
    }

    /// The read-only token, if one is given: checked like the admin token, and refused when it
    /// is the admin token (the read-only role would then be the admin's).
    fn read_token(
        &self,
        file: &mut FileConfig,
        admin: Option<&Secret>,
    ) -> Result<Option<Secret>, ConfigError> {
        let token = secret_from(
            "read_token",
            self.read_token_file.as_deref(),
            self.read_token.as_deref(),
            file.read_token.take(),
        )?;
        let Some(token) = token else { return Ok(None) };
        check_token("read_token", &token)?;
        if admin.is_some_and(|admin| admin.expose() == token) {
            return Err(invalid(
                "read_token",
                "must differ from the admin token (it grants reading only)",
            ));
        }
        Ok(Some(Secret::new(token)))
    }

    fn data_dir(&self, file: &mut FileConfig) -> Result<PathBuf, ConfigError> {
        self.data_dir
            .clone()
            .or(file.data_dir.take())
            .ok_or_else(|| invalid("data_dir", "is required (--data-dir or TALLY_DATA_DIR)"))
    }

    fn admin_listen(&self, file: &FileConfig) -> Result<SocketAddr, ConfigError> {
        let admin_listen = self
            .admin_listen
            .or(file.admin_listen)
            .unwrap_or_else(|| "127.0.0.1:8922".parse().expect("valid default"));
        if !(admin_listen.ip().is_loopback() || self.admin_tls || file.admin_tls) {
            return Err(invalid(
                "admin_listen",
                format!(
                    "{admin_listen} is not a loopback address; the admin API may leave loopback only over TLS (admin_tls)"
                ),
            ));
        }
        Ok(admin_listen)
    }

    /// The admin token, if one is given, checked.
    fn admin_token(&self, file: &mut FileConfig) -> Result<Option<Secret>, ConfigError> {
        let token = secret_from(
            "admin_token",
            self.admin_token_file.as_deref(),
            self.admin_token.as_deref(),
            file.admin_token.take(),
        )?;
        let Some(token) = token else { return Ok(None) };
        check_token("admin_token", &token)?;
        Ok(Some(Secret::new(token)))
    }

    fn token_grace(&self, file: &mut FileConfig) -> Result<Duration, ConfigError> {
        match self.token_grace.clone().or(file.token_grace.take()) {
            Some(text) => parse_duration(&text).map_err(|m| invalid("token_grace", m)),
            None => Ok(Duration::from_secs(24 * 3600)),
        }
    }

    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut file = self.read_file()?;
        let (odoo_file, deprecated) = file.odoo()?;
        let data_dir = self.data_dir(&mut file)?;
        let listen = self
            .listen
            .or(file.listen)
            .unwrap_or_else(|| "0.0.0.0:8921".parse().expect("valid default"));
        let plaintext = self.insecure_plaintext || file.insecure_plaintext;
        let cert = self.tls_cert.clone().or(file.tls_cert.take());
        let key = self.tls_key.clone().or(file.tls_key.take());
        let transport = match (plaintext, cert, key) {
            (true, _, _) if !listen.ip().is_loopback() => {
                return Err(invalid(
                    "insecure_plaintext",
                    format!(
                        "plain ws:// is only allowed on a loopback address, not {listen}; configure tls_cert and tls_key"
                    ),
                ));
            }
            (true, _, _) => Transport::Plaintext,
            (false, Some(cert), Some(key)) => Transport::Tls { cert, key },
            (false, _, _) => {
                return Err(invalid(
                    "tls_cert",
                    "tls_cert and tls_key are required (tally-central gen-cert makes a pair for tests)",
                ));
            }
        };
        let admin_listen = self.admin_listen(&file)?;
        let admin_tls = self.admin_tls || file.admin_tls;
        if admin_tls && matches!(transport, Transport::Plaintext) {
            return Err(invalid(
                "admin_tls",
                "serves the admin API with the sync listener's tls_cert and tls_key, which are not configured",
            ));
        }
        let admin_token = self.admin_token(&mut file)?.ok_or_else(|| {
            invalid(
                "admin_token",
                "is required (--admin-token-file, TALLY_ADMIN_TOKEN or the configuration file)",
            )
        })?;
        let read_token = self.read_token(&mut file, Some(&admin_token))?;
        let token_grace = self.token_grace(&mut file)?;
        let merge_window = match self.merge_window.clone().or(file.merge_window) {
            Some(text) => parse_duration(&text).map_err(|m| invalid("merge_window", m))?,
            None => Duration::from_secs(1),
        };
        if merge_window > Duration::from_secs(3600) {
            return Err(invalid("merge_window", "must be at most 1h"));
        }
        let max_writes = self.odoo_max_writes.or(odoo_file.max_writes).unwrap_or(1);
        if !(1..=64).contains(&max_writes) {
            return Err(invalid("odoo_max_writes", "must be between 1 and 64"));
        }
        let max_connections = self
            .max_connections
            .or(file.max_connections)
            .unwrap_or(10_000);
        if max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1"));
        }
        let odoo = odoo_config(OdooFile {
            url: self.odoo_url.clone().or(odoo_file.url),
            db: self.odoo_db.clone().or(odoo_file.db),
            user: self.odoo_user.clone().or(odoo_file.user),
            api_key: match (&self.odoo_api_key_file, &self.odoo_api_key) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        "odoo_api_key",
                        "give the key either directly or in --odoo-api-key-file, not both",
                    ));
                }
                (Some(path), None) => Some(read_secret_file("odoo_api_key", path)?),
                (None, Some(key)) => Some(key.clone()),
                (None, None) => odoo_file.api_key,
            },
            api: self.odoo_api.clone().or(odoo_file.api),
            max_writes: None,
        })?;
        let availability_poll = match file.availability_poll.take() {
            Some(text) => parse_duration(&text).map_err(|m| invalid("availability_poll", m))?,
            None => Duration::from_secs(10),
        };
        if availability_poll < Duration::from_millis(100)
            || availability_poll > Duration::from_secs(3600)
        {
            return Err(invalid("availability_poll", "must be between 100ms and 1h"));
        }
        let mut channels = crate::channels::config::check(std::mem::take(&mut file.channels))?;
        crate::channels::pool::apply(&mut channels, std::mem::take(&mut file.pools))?;
        Ok(Config {
            availability_poll,
            channels,
            data_dir,
            listen,
            transport,
            admin_listen,
            admin_token,
            read_token,
            admin_tls,
            token_grace,
            max_connections,
            odoo,
            merge: MergeSettings {
                window: merge_window,
                max_writes,
            },
            deprecated,
        })
    }
}

/// A secret given as a file, directly, or in the configuration file (in that precedence);
/// the file and the value at once are refused.
fn secret_from(
    key: &'static str,
    path: Option<&std::path::Path>,
    value: Option<&str>,
    from_file: Option<String>,
) -> Result<Option<String>, ConfigError> {
    match (path, value) {
        (Some(_), Some(_)) => Err(invalid(
            key,
            "give the token either directly or in a file, not both",
        )),
        (Some(path), None) => Ok(Some(read_secret_file(key, path)?)),
        (None, Some(token)) => Ok(Some(token.to_owned())),
        (None, None) => Ok(from_file),
    }
}

/// A token's shape, checked without ever echoing it.
fn check_token(key: &'static str, token: &str) -> Result<(), ConfigError> {
    if token.chars().count() < 16 || token.chars().any(char::is_whitespace) {
        return Err(invalid(
            key,
            "must be at least 16 characters without white space",
        ));
    }
    refuse_placeholder(key, token)
}

//! Central's configuration: TOML file, `TALLY_*` environment variables, flags — in rising order
//! of precedence — validated before any file is opened or port bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;
use tally_protocol::Secret;
pub use tally_service::ConfigError;
use tally_service::layers::{FromEnv, Layered, Layers};
use tally_service::{invalid, parse_duration, read_toml, refuse_placeholder};

use crate::merge::MergeSettings;
use crate::odoo::OdooConfig;
use odoo::OdooFile;

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
    /// Which of the values above clap took from the environment rather than a flag, for error
    /// messages (filled in by the command line; empty counts every value as a flag).
    #[arg(skip)]
    pub from_env: FromEnv,
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

    /// Flags (or their variables) over the file over the defaults, each value with its origin.
    fn layers(&self) -> Layers {
        Layers::new::<ConfigArgs>(self.config.as_deref(), &self.from_env)
    }

    /// What `agent` and `dlq` need, validated; everything else in the file is left alone.
    pub fn load_local(&self) -> Result<LocalConfig, ConfigError> {
        let mut file = self.read_file()?;
        let layers = self.layers();
        let admin_token = self.admin_token(&layers, &mut file)?;
        let read_token = self.read_token(&layers, &mut file, admin_token.as_ref())?;
        Ok(LocalConfig {
            data_dir: self.data_dir(&layers, &mut file)?,
            admin_listen: self.admin_listen(&layers, &file)?,
            admin_token,
            read_token,
            admin_tls: layers
                .switch("admin_tls", self.admin_tls, file.admin_tls)
                .value,
            admin_ca_file: layers
                .pick(
                    "admin_ca_file",
                    self.admin_ca_file.clone(),
                    file.admin_ca_file.take(),
                )
                .map(|picked| picked.value),
            token_grace: self.token_grace(&layers, &mut file)?,
        })
    }

    /// The read-only token, if one is given: checked like the admin token, and refused when it
    /// is the admin token (the read-only role would then be the admin's).
    fn read_token(
        &self,
        layers: &Layers,
        file: &mut FileConfig,
        admin: Option<&Secret>,
    ) -> Result<Option<Secret>, ConfigError> {
        let token = layers.secret(
            "read_token",
            "read_token_file",
            self.read_token_file.as_deref(),
            self.read_token.as_deref(),
            file.read_token.take(),
        )?;
        let Some(token) = token else { return Ok(None) };
        check_token(&token)?;
        if admin.is_some_and(|admin| admin.expose() == token.value) {
            return Err(token.invalid("must differ from the admin token (it grants reading only)"));
        }
        Ok(Some(Secret::new(token.value)))
    }

    fn data_dir(&self, layers: &Layers, file: &mut FileConfig) -> Result<PathBuf, ConfigError> {
        layers
            .pick("data_dir", self.data_dir.clone(), file.data_dir.take())
            .map(|picked| picked.value)
            .ok_or_else(|| invalid("data_dir", "is required (--data-dir or TALLY_DATA_DIR)"))
    }

    fn admin_listen(&self, layers: &Layers, file: &FileConfig) -> Result<SocketAddr, ConfigError> {
        let admin_listen = layers.pick_or(
            "admin_listen",
            self.admin_listen,
            file.admin_listen,
            "127.0.0.1:8922".parse().expect("valid default"),
        );
        let tls = layers.switch("admin_tls", self.admin_tls, file.admin_tls);
        admin_listen.check(
            admin_listen.value.ip().is_loopback() || tls.value,
            format!(
                "{} is not a loopback address; the admin API may leave loopback only over TLS (admin_tls)",
                admin_listen.value
            ),
        )?;
        Ok(admin_listen.value)
    }

    /// The admin token, if one is given, checked.
    fn admin_token(
        &self,
        layers: &Layers,
        file: &mut FileConfig,
    ) -> Result<Option<Secret>, ConfigError> {
        let token = layers.secret(
            "admin_token",
            "admin_token_file",
            self.admin_token_file.as_deref(),
            self.admin_token.as_deref(),
            file.admin_token.take(),
        )?;
        let Some(token) = token else { return Ok(None) };
        check_token(&token)?;
        Ok(Some(Secret::new(token.value)))
    }

    fn token_grace(&self, layers: &Layers, file: &mut FileConfig) -> Result<Duration, ConfigError> {
        Ok(duration(
            layers,
            "token_grace",
            self.token_grace.clone(),
            file.token_grace.take(),
            Duration::from_secs(24 * 3600),
        )?
        .value)
    }

    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut file = self.read_file()?;
        let layers = self.layers();
        let (odoo_file, deprecated) = file.odoo()?;
        let data_dir = self.data_dir(&layers, &mut file)?;
        let listen = layers
            .pick_or(
                "listen",
                self.listen,
                file.listen,
                "0.0.0.0:8921".parse().expect("valid default"),
            )
            .value;
        let plaintext = layers.switch(
            "insecure_plaintext",
            self.insecure_plaintext,
            file.insecure_plaintext,
        );
        let cert = layers.pick("tls_cert", self.tls_cert.clone(), file.tls_cert.take());
        let key = layers.pick("tls_key", self.tls_key.clone(), file.tls_key.take());
        let transport = match (plaintext.value, cert, key) {
            (true, _, _) if !listen.ip().is_loopback() => {
                return Err(plaintext.invalid(format!(
                    "plain ws:// is only allowed on a loopback address, not {listen}; configure tls_cert and tls_key"
                )));
            }
            (true, _, _) => Transport::Plaintext,
            (false, Some(cert), Some(key)) => Transport::Tls {
                cert: cert.value,
                key: key.value,
            },
            (false, _, _) => {
                return Err(invalid(
                    "tls_cert",
                    "tls_cert and tls_key are required (tally-central gen-cert makes a pair for tests)",
                ));
            }
        };
        let admin_listen = self.admin_listen(&layers, &file)?;
        let admin_tls = layers.switch("admin_tls", self.admin_tls, file.admin_tls);
        if admin_tls.value && matches!(transport, Transport::Plaintext) {
            return Err(admin_tls.invalid(
                "serves the admin API with the sync listener's tls_cert and tls_key, which are not configured",
            ));
        }
        let admin_token = self.admin_token(&layers, &mut file)?.ok_or_else(|| {
            invalid(
                "admin_token",
                "is required (--admin-token-file, TALLY_ADMIN_TOKEN or the configuration file)",
            )
        })?;
        let read_token = self.read_token(&layers, &mut file, Some(&admin_token))?;
        let token_grace = self.token_grace(&layers, &mut file)?;
        let merge_window = duration(
            &layers,
            "merge_window",
            self.merge_window.clone(),
            file.merge_window,
            Duration::from_secs(1),
        )?;
        merge_window.check(
            merge_window.value <= Duration::from_secs(3600),
            "must be at most 1h",
        )?;
        let max_writes = layers.pick_or(
            "odoo_max_writes",
            self.odoo_max_writes,
            odoo_file.max_writes,
            1,
        );
        max_writes.check(
            (1..=64).contains(&max_writes.value),
            "must be between 1 and 64",
        )?;
        let max_connections = layers.pick_or(
            "max_connections",
            self.max_connections,
            file.max_connections,
            10_000,
        );
        max_connections.check(max_connections.value > 0, "must be at least 1")?;
        let odoo = self.odoo(&layers, odoo_file)?;
        let availability_poll = duration(
            &layers,
            "availability_poll",
            None,
            file.availability_poll.take(),
            Duration::from_secs(10),
        )?;
        availability_poll.check(
            (Duration::from_millis(100)..=Duration::from_secs(3600))
                .contains(&availability_poll.value),
            "must be between 100ms and 1h",
        )?;
        let mut channels = crate::channels::config::check(std::mem::take(&mut file.channels))?;
        crate::channels::pool::apply(&mut channels, std::mem::take(&mut file.pools))?;
        Ok(Config {
            availability_poll: availability_poll.value,
            channels,
            data_dir,
            listen,
            transport,
            admin_listen,
            admin_token,
            read_token,
            admin_tls: admin_tls.value,
            token_grace,
            max_connections: max_connections.value,
            odoo,
            merge: MergeSettings {
                window: merge_window.value,
                max_writes: max_writes.value,
            },
            deprecated,
        })
    }
}

/// The duration of `key` (such as "90s"), parsed; `default` when no layer sets it.
fn duration(
    layers: &Layers,
    key: &'static str,
    cli: Option<String>,
    file: Option<String>,
    default: Duration,
) -> Result<Layered<Duration>, ConfigError> {
    match layers.pick(key, cli, file) {
        Some(picked) => picked.parse(|text| parse_duration(text)),
        None => Ok(layers.pick_or(key, None, None, default)),
    }
}

/// A token's shape, checked without ever echoing it.
fn check_token(token: &Layered<String>) -> Result<(), ConfigError> {
    let value = &token.value;
    token.check(
        value.chars().count() >= 16 && !value.chars().any(char::is_whitespace),
        "must be at least 16 characters without white space",
    )?;
    token.attribute(refuse_placeholder(token.key, value))
}

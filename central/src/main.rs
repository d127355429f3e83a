//! The `tally-central` command line: parse, validate, then hand over to the library.

mod channel_cli;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::Value;
use tally_central::config::{Config, ConfigArgs, LocalConfig, Transport};
use tally_central::store::{STORE_FILE, Store, StoreError};

use tally_service::EXIT_USAGE;
use tally_service::datafile::EXIT_DATAERR;

/// Tally's coordinator: authenticates warehouse agents and journals their events exactly once.
#[derive(Debug, Parser)]
#[command(name = "tally-central", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run central: the agents' sync listener and the admin API.
    Run(ConfigArgs),
    /// Validate the configuration and exit (0 when valid, 64 with the reason when not).
    CheckConfig(ConfigArgs),
    /// Manage agents (through the running central's admin API, or the database when stopped).
    Agent {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(subcommand)]
        action: AgentAction,
    },
    /// Events parked because Odoo could not take them (through the admin API while central
    /// runs, or on the database when it is stopped).
    Dlq {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Write a consistent copy of central's store to a file: through the running central's
    /// admin API, or from the store itself while central is stopped.
    Backup {
        #[command(flatten)]
        config: ConfigArgs,
        /// The backup file to write (replaced whole, or left as it was).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
    /// Put a backup in place as central's store while central is stopped: checked first, the
    /// replaced store kept as central.redb.before-restore.
    Restore {
        #[command(flatten)]
        config: ConfigArgs,
        /// The backup file to restore.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
    },
    /// The availability of a SKU per warehouse, as last read from Odoo.
    Availability {
        #[command(flatten)]
        config: ConfigArgs,
        sku: String,
        /// Only this warehouse.
        #[arg(long)]
        warehouse: Option<String>,
    },
    /// Sales channels (through the running central's admin API).
    Channel {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(subcommand)]
        action: channel_cli::ChannelAction,
    },
    /// Write a test CA and a server certificate signed by it (ca.pem, cert.pem, key.pem).
    GenCert {
        /// Directory for the files.
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
        /// Host names and IP addresses the certificate is for.
        #[arg(long = "host", value_name = "NAME", default_values_t = ["localhost".to_owned(), "127.0.0.1".to_owned()])]
        hosts: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AgentAction {
    /// Register an agent; prints its token once (only a digest is stored).
    Add {
        agent_id: String,
        #[arg(long)]
        warehouse: String,
    },
    /// List agents with their connection state and lag.
    List,
    /// Issue a new token; the old one keeps working for the configured grace period.
    Rotate { agent_id: String },
    /// Revoke an agent for good and close its connection.
    Revoke { agent_id: String },
}

#[derive(Debug, Subcommand)]
enum DlqAction {
    /// List the parked events with their reasons.
    List,
    /// Try every parked event of a SKU in a warehouse again, in order (after the product or
    /// location was fixed in Odoo); events parked again show up in `list` again.
    Retry {
        /// The warehouse code.
        #[arg(long)]
        warehouse: String,
        /// The SKU whose parked events to retry.
        #[arg(long)]
        sku: String,
    },
    /// Give up on every parked event of a SKU in a warehouse (they never reach Odoo; later
    /// events of that SKU stop waiting behind them). The reason is kept for audit.
    Discard {
        #[arg(long)]
        warehouse: String,
        #[arg(long)]
        sku: String,
        #[arg(long)]
        reason: String,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    tally_service::init_logging();
    let result = match cli.command {
        Command::Run(args) => match load(&args) {
            Ok(config) => run(config),
            Err(code) => return code,
        },
        Command::CheckConfig(args) => match load(&args) {
            Ok(config) => Store::check_format(&config.data_dir)
                .map_err(Into::into)
                .map(|_| {
                    println!(
                        "configuration is valid: data in {}, agents on {}, admin API on {}",
                        config.data_dir.display(),
                        config.listen,
                        config.admin_listen
                    );
                    for warning in &config.deprecated {
                        println!("warning: {warning}");
                    }
                }),
            Err(code) => return code,
        },
        Command::Agent { config, action } => match load_local(&config) {
            Ok(config) => agent(config, action),
            Err(code) => return code,
        },
        Command::Dlq { config, action } => match load_local(&config) {
            Ok(config) => dlq(config, action),
            Err(code) => return code,
        },
        Command::Backup { config, to } => match load_local(&config) {
            Ok(config) => backup(&config, &to),
            Err(code) => return code,
        },
        Command::Restore { config, from } => match load_local(&config) {
            Ok(config) => return restore(&config, &from),
            Err(code) => return code,
        },
        Command::Availability {
            config,
            sku,
            warehouse,
        } => match load_local(&config) {
            Ok(config) => channel_cli::availability(&config, &sku, warehouse.as_deref()),
            Err(code) => return code,
        },
        Command::Channel { config, action } => match load_local(&config) {
            Ok(config) => channel_cli::channel(&config, action),
            Err(code) => return code,
        },
        Command::GenCert { out_dir, hosts } => {
            tally_central::tls::generate(&out_dir, &hosts).map(|files| {
                println!(
                    "CA certificate (give it to agents as ca_file): {}",
                    files.ca_cert.display()
                );
                println!("server certificate: {}", files.cert.display());
                println!("server key:         {}", files.key.display());
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tally-central: {error:#}");
            // Data this release cannot use (a newer format) is not a passing failure: a restart
            // would fail the same way.
            let data_error = error
                .chain()
                .any(|e| matches!(e.downcast_ref(), Some(StoreError::Format(_))));
            if data_error {
                ExitCode::from(EXIT_DATAERR)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The configuration of `run` and `check-config`, with the TLS certificate and key read, so
/// that `check-config` refuses what `run` would fail on.
fn load(args: &ConfigArgs) -> Result<Config, ExitCode> {
    let config = args.load().map_err(|error| config_error(&error))?;
    if let Transport::Tls { cert, key } = &config.transport
        && let Err(error) = tally_central::tls::server_config(cert, key)
    {
        return Err(config_error(&format!("{error:#}")));
    }
    Ok(config)
}

fn load_local(args: &ConfigArgs) -> Result<LocalConfig, ExitCode> {
    args.load_local().map_err(|error| config_error(&error))
}

fn config_error(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("tally-central: invalid configuration: {error}");
    ExitCode::from(EXIT_USAGE)
}

/// The admin token, needed once central turns out to be running.
fn admin_token(config: &LocalConfig) -> anyhow::Result<&str> {
    match &config.admin_token {
        Some(token) => Ok(token.expose()),
        None => bail!(
            "central is running (it holds the database in {}); to ask its admin API give the admin token (--admin-token-file, TALLY_ADMIN_TOKEN or --config)",
            config.data_dir.display()
        ),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(config: Config) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let (listen, admin_listen) = (config.listen, config.admin_listen);
        // Ports first: a port already taken must not leave a data directory and an empty
        // database behind, for the operator to wonder which central they belong to.
        let sync = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let admin = tokio::net::TcpListener::bind(admin_listen)
            .await
            .with_context(|| format!("cannot listen on {admin_listen}"))?;
        let central = tally_central::Central::open(config)?;
        let (sync_addr, admin_addr) = (sync.local_addr()?, admin.local_addr()?);
        tracing::info!(%sync_addr, %admin_addr, "tally-central ready");
        // One line on stdout for supervisors and test harnesses that asked for port 0.
        tally_service::ready(&format!(
            "tally-central listening on {sync_addr} admin http://{admin_addr}"
        ));
        central
            .serve(sync, admin, tally_service::shutdown_on_signal())
            .await
    })
}

fn backup(config: &LocalConfig, to: &Path) -> anyhow::Result<()> {
    if !config.data_dir.join(STORE_FILE).exists() {
        bail!("there is no store in {}", config.data_dir.display());
    }
    match Store::open(&config.data_dir) {
        Ok(store) => {
            let rows = store.backup(to)?;
            eprintln!(
                "backed up the store ({rows} rows, central stopped) to {}",
                to.display()
            );
            Ok(())
        }
        Err(StoreError::InUse { .. }) => runtime()?.block_on(backup_online(config, to)),
        Err(e) => Err(e.into()),
    }
}

/// Streams the running central's backup into a temporary file beside `to`, fsynced, then
/// renamed: `to` is the whole copy or as it was.
async fn backup_online(config: &LocalConfig, to: &Path) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let base = format!("http://{}", config.admin_listen);
    let mut response = reqwest::Client::new()
        .post(format!("{base}/v1/backup"))
        .header(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", admin_token(config)?),
        )
        .send()
        .await
        .with_context(|| {
            format!("central holds its database but its admin API at {base} does not answer")
        })?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        bail!("{base} answered {status}: {text}");
    }
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(to.file_name().context("the target is not a file name")?);
    temp_name.push(".part");
    let temp = to.with_file_name(temp_name);
    let _ = std::fs::remove_file(&temp);
    tally_service::create_private_file(&temp)
        .with_context(|| format!("cannot create {}", temp.display()))?;
    let result = async {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&temp)
            .await
            .with_context(|| format!("cannot open {}", temp.display()))?;
        let mut bytes = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .context("reading the backup failed")?
        {
            file.write_all(&chunk)
                .await
                .with_context(|| format!("cannot write {}", temp.display()))?;
            bytes += chunk.len() as u64;
        }
        file.sync_all()
            .await
            .with_context(|| format!("cannot write {}", temp.display()))?;
        tokio::fs::rename(&temp, to)
            .await
            .with_context(|| format!("cannot write {}", to.display()))?;
        anyhow::Ok(bytes)
    }
    .await;
    match result {
        Ok(bytes) => {
            eprintln!(
                "backed up the running central's store ({bytes} bytes) to {}",
                to.display()
            );
            Ok(())
        }
        Err(error) => {
            let _ = std::fs::remove_file(&temp);
            Err(error)
        }
    }
}

fn restore(config: &LocalConfig, from: &Path) -> ExitCode {
    match tally_central::store::backup::restore(&config.data_dir, from) {
        Ok(restored) => {
            eprintln!(
                "restored {} ({} rows, data format version {}){}",
                from.display(),
                restored.rows,
                restored.backup_version,
                restored
                    .previous
                    .map(|p| format!("; the replaced store is {}", p.display()))
                    .unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("tally-central: {error}");
            ExitCode::from(if error.is_data_error() {
                EXIT_DATAERR
            } else {
                1
            })
        }
    }
}

/// Agent management: through the admin API when central runs (it holds the database), or
/// directly on the database when it does not.
fn agent(config: LocalConfig, action: AgentAction) -> anyhow::Result<()> {
    tally_service::create_private_dir(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    match Store::open(&config.data_dir) {
        Ok(store) => agent_offline(&store, &config, action),
        Err(StoreError::InUse { .. }) => runtime()?.block_on(agent_online(&config, action)),
        Err(e) => Err(e.into()),
    }
}

fn print_token(agent_id: &str, token: &str) {
    println!("{token}");
    eprintln!(
        "token of agent {agent_id} (shown once; store it in the agent's configuration as central_token)"
    );
}

fn agent_offline(store: &Store, config: &LocalConfig, action: AgentAction) -> anyhow::Result<()> {
    match action {
        AgentAction::Add {
            agent_id,
            warehouse,
        } => {
            if !tally_central::admin::valid_name(&agent_id)
                || !tally_central::admin::valid_name(&warehouse)
            {
                bail!("agent id and warehouse must be 1 to 64 letters, digits, '-', '_' or '.'");
            }
            let token = store.add_agent(&agent_id, &warehouse)?;
            print_token(&agent_id, token.expose());
        }
        AgentAction::Rotate { agent_id } => {
            let token = store.rotate_agent(&agent_id, config.token_grace)?;
            print_token(&agent_id, token.expose());
        }
        AgentAction::Revoke { agent_id } => {
            store.revoke_agent(&agent_id)?;
            eprintln!("agent {agent_id} revoked");
        }
        AgentAction::List => {
            for agent in store.list_agents()? {
                println!(
                    "{}\twarehouse={}\t{}",
                    agent.agent_id,
                    agent.warehouse,
                    if agent.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }
                );
            }
        }
    }
    Ok(())
}

async fn agent_online(config: &LocalConfig, action: AgentAction) -> anyhow::Result<()> {
    let base = format!("http://{}", config.admin_listen);
    let client = reqwest::Client::new();
    let auth = format!("Bearer {}", admin_token(config)?);
    let request = match &action {
        AgentAction::Add {
            agent_id,
            warehouse,
        } => client
            .post(format!("{base}/v1/agents"))
            .json(&serde_json::json!({"agent_id": agent_id, "warehouse": warehouse})),
        AgentAction::List => client.get(format!("{base}/v1/agents")),
        AgentAction::Rotate { agent_id } => {
            client.post(format!("{base}/v1/agents/{agent_id}/rotate"))
        }
        AgentAction::Revoke { agent_id } => {
            client.post(format!("{base}/v1/agents/{agent_id}/revoke"))
        }
    };
    let response = request
        .header(reqwest::header::AUTHORIZATION, auth)
        .send()
        .await
        .with_context(|| {
            format!("central holds its database but its admin API at {base} does not answer")
        })?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{base} answered {status}: {text}");
    }
    match action {
        AgentAction::Add { agent_id, .. } | AgentAction::Rotate { agent_id } => {
            let body: Value = serde_json::from_str(&text)?;
            print_token(&agent_id, body["token"].as_str().unwrap_or_default());
        }
        AgentAction::Revoke { agent_id } => {
            eprintln!("agent {agent_id} revoked; its connection is closed")
        }
        AgentAction::List => {
            let body: Value = serde_json::from_str(&text)?;
            println!("{}", serde_json::to_string_pretty(&body)?);
        }
    }
    Ok(())
}

fn dlq(config: LocalConfig, action: DlqAction) -> anyhow::Result<()> {
    if !config.data_dir.is_dir() {
        bail!(
            "there is no central database in {} (check --data-dir or the configuration's data_dir)",
            config.data_dir.display()
        );
    }
    match Store::open(&config.data_dir) {
        Ok(store) => match action {
            DlqAction::List => {
                for (agent, log, seq, letter) in store.dead_letters()? {
                    println!(
                        "{agent}\t{log}\tseq {seq}\t{}\t{}\t{}: {}",
                        letter.warehouse, letter.sku, letter.reason, letter.message
                    );
                }
                for (agent, log, seq, retry) in store.retries()? {
                    println!(
                        "{agent}\t{log}\tseq {seq}\t{}\t{}\tqueued for a retry",
                        retry.letter.warehouse, retry.letter.sku
                    );
                }
                Ok(())
            }
            DlqAction::Retry { warehouse, sku } => {
                let n = store.retry_dead_letters(&warehouse, &sku)?;
                if n == 0 {
                    bail!("{}", nothing_parked(&warehouse, &sku));
                }
                eprintln!(
                    "queued {n} parked events of {sku} in {warehouse} for a retry; central applies them when it next runs"
                );
                Ok(())
            }
            DlqAction::Discard {
                warehouse,
                sku,
                reason,
            } => {
                let n = store.discard_dead_letters(&warehouse, &sku, &reason)?;
                if n == 0 {
                    bail!("{}", nothing_parked(&warehouse, &sku));
                }
                eprintln!("discarded {n} parked events of {sku} in {warehouse}");
                Ok(())
            }
        },
        Err(StoreError::InUse { .. }) => runtime()?.block_on(async {
            let base = format!("http://{}", config.admin_listen);
            let client = reqwest::Client::new();
            let request = match &action {
                DlqAction::List => client.get(format!("{base}/v1/dead-letters")),
                DlqAction::Retry { warehouse, sku } => client
                    .post(format!("{base}/v1/dead-letters/retry"))
                    .json(&serde_json::json!({"warehouse": warehouse, "sku": sku})),
                DlqAction::Discard {
                    warehouse,
                    sku,
                    reason,
                } => client.post(format!("{base}/v1/dead-letters/discard")).json(
                    &serde_json::json!({"warehouse": warehouse, "sku": sku, "reason": reason}),
                ),
            };
            let response = request
                .bearer_auth(admin_token(&config)?)
                .send()
                .await
                .with_context(|| {
                    format!(
                        "central holds its database but its admin API at {base} does not answer"
                    )
                })?;
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            if !status.is_success() {
                bail!("{}", api_error(&base, status, &text));
            }
            let body: Value = serde_json::from_str(&text)?;
            println!("{}", serde_json::to_string_pretty(&body)?);
            Ok(())
        }),
        Err(e) => Err(e.into()),
    }
}

fn nothing_parked(warehouse: &str, sku: &str) -> String {
    tally_central::admin::nothing_parked(warehouse, sku)
}

/// An admin API error as a sentence: its message when it has the API's error shape.
fn api_error(base: &str, status: reqwest::StatusCode, text: &str) -> String {
    let message = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned));
    match message {
        Some(message) => message,
        None => format!("{base} answered {status}: {text}"),
    }
}

//! The `tally-central` command line: parse, validate, then hand over to the library
//! ([`ops`]: the operator's commands; [`api`]: their client of a running central).

mod api;
mod channel;
mod ops;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use ops::{AgentAction, DlqAction, Output, TraceArgs};
use tally_central::config::{Config, ConfigArgs, LocalConfig, Transport};
use tally_central::store::{STORE_FILE, Store, StoreError};

use tally_service::EXIT_USAGE;
use tally_service::datafile::EXIT_DATAERR;
use tally_service::layers::FromEnv;
use tally_service::partfile::PartFile;

/// Tally's coordinator: authenticates warehouse agents, journals their events exactly once and
/// merges them into Odoo.
#[derive(Debug, Parser)]
#[command(name = "tally-central", version, about)]
struct Cli {
    /// How to write log lines on stderr: `text` for people, `json` (one object per line) for
    /// log collectors.
    #[arg(
        long,
        global = true,
        env = "TALLY_LOG_FORMAT",
        value_name = "FORMAT",
        default_value = "text"
    )]
    log_format: tally_service::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run central: the agents' sync listener, the admin API and, with Odoo configured, the
    /// merge into Odoo.
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
    /// The whole picture on one screen: agents, the Odoo link, parked events, warnings.
    Status {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        output: Output,
    },
    /// Where is my scan? One event's path: accepted by the agent, journaled, merged into
    /// which Odoo picking, or parked and why.
    Trace {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        args: TraceArgs,
        #[command(flatten)]
        output: Output,
    },
    /// The audit log: every change, with who (role), when and why; newest first.
    Audit {
        #[command(flatten)]
        config: ConfigArgs,
        /// How many entries.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10000))]
        limit: u64,
        #[command(flatten)]
        output: Output,
    },
    /// What the merge noticed and applied anyway (a count pending in Odoo, say).
    Notices {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10000))]
        limit: u64,
        #[command(flatten)]
        output: Output,
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
        #[command(flatten)]
        output: ops::Output,
    },
    /// Sales channels: their outbox, pushes, drift and errors; a resync.
    Channel {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(subcommand)]
        action: channel::ChannelAction,
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

impl Command {
    /// The configuration arguments of the command, if it has them.
    fn config_mut(&mut self) -> Option<&mut ConfigArgs> {
        match self {
            Command::Run(config) | Command::CheckConfig(config) => Some(config),
            Command::Agent { config, .. }
            | Command::Dlq { config, .. }
            | Command::Status { config, .. }
            | Command::Trace { config, .. }
            | Command::Audit { config, .. }
            | Command::Notices { config, .. }
            | Command::Backup { config, .. }
            | Command::Restore { config, .. }
            | Command::Availability { config, .. }
            | Command::Channel { config, .. } => Some(config),
            Command::GenCert { .. } => None,
        }
    }
}

fn main() -> ExitCode {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, matches)));
    let cli = match parsed {
        Ok((mut cli, matches)) => {
            // Which values came from TALLY_* variables rather than flags, for error messages.
            if let Some(config) = cli.command.config_mut() {
                config.from_env = FromEnv::of(&matches);
            }
            cli
        }
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    tally_service::init_logging(cli.log_format);
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
            Ok(config) => ops::agent(config, action),
            Err(code) => return code,
        },
        Command::Dlq { config, action } => match load_local(&config) {
            Ok(config) => ops::dlq(config, action),
            Err(code) => return code,
        },
        Command::Status { config, output } => match load_local(&config) {
            Ok(config) => ops::status(config, output),
            Err(code) => return code,
        },
        Command::Trace {
            config,
            args,
            output,
        } => match load_local(&config) {
            Ok(config) => ops::trace(config, args, output),
            Err(code) => return code,
        },
        Command::Audit {
            config,
            limit,
            output,
        } => match load_local(&config) {
            Ok(config) => ops::audit(config, limit as usize, output),
            Err(code) => return code,
        },
        Command::Notices {
            config,
            limit,
            output,
        } => match load_local(&config) {
            Ok(config) => ops::notices(config, limit as usize, output),
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
            output,
        } => match load_local(&config) {
            Ok(config) => channel::availability(&config, &sku, warehouse.as_deref(), output),
            Err(code) => return code,
        },
        Command::Channel { config, action } => match load_local(&config) {
            Ok(config) => channel::channel(&config, action),
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

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
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
        let scheme = if config.admin_tls { "https" } else { "http" };
        let central = tally_central::Central::open(config)?;
        let (sync_addr, admin_addr) = (sync.local_addr()?, admin.local_addr()?);
        tracing::info!(%sync_addr, %admin_addr, "tally-central ready");
        // One line on stdout for supervisors and test harnesses that asked for port 0.
        tally_service::ready(&format!(
            "tally-central listening on {sync_addr} admin {scheme}://{admin_addr}"
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
    let api = api::Api::new(config, api::Need::Change)?;
    let base = api.base().to_owned();
    let mut response = api.post("/v1/backup").send().await.with_context(|| {
        format!("central holds its database but its admin API at {base} does not answer")
    })?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        bail!("{}", api::api_error(&base, status, &text));
    }
    let mut file = PartFile::create(to).await?;
    while let Some(chunk) = response
        .chunk()
        .await
        .context("reading the backup failed")?
    {
        file.write(&chunk).await?;
    }
    let bytes = file.finish().await?;
    eprintln!(
        "backed up the running central's store ({bytes} bytes) to {}",
        to.display()
    );
    Ok(())
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

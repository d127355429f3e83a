//! The `tally-agent` command line: parse, validate, then hand over to the library.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tally_agent::config::{Config, ConfigArgs, DataDirArgs, StatusArgs};
use tally_agent::ingest::EventJson;
use tally_agent::log::{LOG_FILE, Log, LogError};
use tally_agent::runtime;
use tally_agent::service::ServiceCommand;

use tally_service::EXIT_USAGE;
use tally_service::datafile::EXIT_DATAERR;
use tally_service::layers::FromEnv;

/// Tally's warehouse agent: durable local capture of stock events, synced to tally-central.
#[derive(Debug, Parser)]
#[command(name = "tally-agent", version, about)]
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
    /// Run the agent: serve the local HTTP API and keep the event log.
    Run(ConfigArgs),
    /// Validate the configuration and the event log's data format, and exit (0 when valid, 64
    /// with the reason when the configuration is not, 65 when the log is of a newer release).
    CheckConfig(ConfigArgs),
    /// Ask the running agent for its status (needs only its address and a scanner token).
    Status(StatusArgs),
    /// Write a consistent copy of the event log to a file: from the running agent (through
    /// `POST /v1/backup`, with its address and a scanner token), or from the log itself while
    /// the agent is stopped.
    Backup {
        /// The backup file to write (replaced whole, or left as it was).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        /// The data directory [default: the configuration's `data_dir`].
        #[arg(long, env = "TALLY_DATA_DIR", value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        agent: StatusArgs,
    },
    /// Put a backup in place as the event log while the agent is stopped: checked first, under
    /// a new log id, the replaced log kept as events.redb.before-restore (see the README).
    Restore {
        #[command(flatten)]
        data_dir: DataDirArgs,
        /// The backup file to restore.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
    },
    /// Manage the Windows service (install, uninstall, start, stop, status): Windows only; on
    /// Linux, systemd runs the agent (see docs/INSTALL.md).
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Print the stored events as JSON lines (works while the agent is stopped).
    Export {
        #[command(flatten)]
        data_dir: DataDirArgs,
        /// Only events with a seq greater than this.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
}

fn main() -> ExitCode {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, matches)));
    let cli = match parsed {
        Ok((mut cli, matches)) => {
            // Which values came from TALLY_* variables rather than flags, for error messages.
            if let Command::Run(config) | Command::CheckConfig(config) = &mut cli.command {
                config.from_env = FromEnv::of(&matches);
            }
            cli
        }
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    // The service logs to its own file, set up by the Windows layer.
    if !matches!(cli.command, Command::Service(ServiceCommand::Run { .. })) {
        tally_service::init_logging(cli.log_format);
    }
    match cli.command {
        Command::Run(args) => {
            let config = match load(&args) {
                Ok(config) => config,
                Err(code) => return code,
            };
            report(run(config))
        }
        Command::CheckConfig(args) => match load(&args) {
            Ok(config) => {
                if let Err(error) = Log::check_format(&config.data_dir) {
                    return report(Err(error.into()));
                }
                println!(
                    "configuration is valid: agent {} for warehouse {}, data in {}, listening on {}",
                    config.agent_id,
                    config.warehouse,
                    config.data_dir.display(),
                    config.listen
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Status(args) => match args.target() {
            Ok((url, token)) => report(status(&url, &token)),
            Err(error) => config_error(&error),
        },
        Command::Backup {
            to,
            data_dir,
            agent,
        } => {
            let data_dir = DataDirArgs {
                config: agent.config.clone(),
                data_dir,
            };
            match data_dir.data_dir() {
                Ok(data_dir) => report(backup(&data_dir, &to, &agent)),
                Err(error) => config_error(&error),
            }
        }
        Command::Restore { data_dir, from } => match data_dir.data_dir() {
            Ok(data_dir) => restore(&data_dir, &from),
            Err(error) => config_error(&error),
        },
        Command::Service(command) => service(command),
        Command::Export { data_dir, after } => match data_dir.data_dir() {
            Ok(data_dir) => report(export(data_dir, after)),
            Err(error) => config_error(&error),
        },
    }
}

#[cfg(windows)]
fn service(command: ServiceCommand) -> ExitCode {
    match tally_agent::service::windows::execute(command) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("tally-agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(windows))]
fn service(_: ServiceCommand) -> ExitCode {
    eprintln!(
        "tally-agent: `service` manages the Windows service; on Linux systemd runs the agent (tally-agent.service from the tally-agent package, see docs/INSTALL.md)"
    );
    ExitCode::from(EXIT_USAGE)
}

fn load(args: &ConfigArgs) -> Result<Config, ExitCode> {
    args.load().map_err(|error| config_error(&error))
}

fn config_error(error: &tally_agent::config::ConfigError) -> ExitCode {
    eprintln!("tally-agent: invalid configuration: {error}");
    ExitCode::from(EXIT_USAGE)
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tally-agent: {error:#}");
            ExitCode::from(tally_agent::exit_code(&error))
        }
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let shutdown = tally_service::shutdown_on_signal();
        tally_agent::run(&config, shutdown, |addr| {
            // One line on stdout for supervisors and test harnesses that asked for port 0.
            tally_service::ready(&format!("tally-agent listening on http://{addr}"))
        })
        .await
    })
}

fn status(url: &str, token: &tally_protocol::Secret) -> anyhow::Result<()> {
    let body = runtime()?.block_on(tally_agent::client::get(
        &format!("{}/v1/status", url.trim_end_matches('/')),
        token,
    ))?;
    let value: serde_json::Value =
        serde_json::from_str(&body).context("the agent's answer is not JSON")?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

fn backup(data_dir: &Path, to: &Path, agent: &StatusArgs) -> anyhow::Result<()> {
    if !data_dir.join(LOG_FILE).exists() {
        bail!("there is no event log in {}", data_dir.display());
    }
    match Log::open(data_dir) {
        Ok(log) => {
            let rows = log.backup(to)?;
            eprintln!(
                "backed up log {} ({rows} rows, the agent stopped) to {}",
                log.log_id(),
                to.display()
            );
        }
        Err(LogError::InUse { .. }) => {
            let (url, token) = agent
                .target()
                .context("the agent is running: its backup is asked for through its API")?;
            let bytes = runtime()?.block_on(tally_agent::client::download(
                &format!("{}/v1/backup", url.trim_end_matches('/')),
                &token,
                to,
            ))?;
            eprintln!(
                "backed up the running agent's log ({bytes} bytes) to {}",
                to.display()
            );
        }
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

fn restore(data_dir: &Path, from: &Path) -> ExitCode {
    match tally_agent::log::backup::restore(data_dir, from) {
        Ok(restored) => {
            eprintln!(
                "restored {} as log {} (the backup's log was {}): {} events to send to central as a new log, {} it had acknowledged left out{}",
                from.display(),
                restored.log_id,
                restored.backup_log_id,
                restored.events,
                restored.acknowledged,
                restored
                    .previous
                    .map(|p| format!("; the replaced log is {}", p.display()))
                    .unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("tally-agent: {error}");
            ExitCode::from(if error.is_data_error() {
                EXIT_DATAERR
            } else {
                1
            })
        }
    }
}

fn export(data_dir: PathBuf, after: u64) -> anyhow::Result<()> {
    if !data_dir.join(LOG_FILE).exists() {
        bail!("there is no event log in {}", data_dir.display());
    }
    let log = Log::open(&data_dir).map_err(|e| match e {
        tally_agent::log::LogError::InUse { .. } => {
            anyhow::anyhow!("{e}; while the agent runs, read events with GET /v1/events instead")
        }
        other => other.into(),
    })?;
    let log_id = Some(log.log_id());
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut cursor = after;
    let mut count: u64 = 0;
    loop {
        let records = log.read_after(cursor, 1000)?;
        let Some(last) = records.last() else { break };
        cursor = last.seq;
        for record in &records {
            serde_json::to_writer(&mut out, &EventJson::new(record, log_id))?;
            out.write_all(b"\n")?;
        }
        count += records.len() as u64;
    }
    out.flush()?;
    eprintln!(
        "exported {count} events (seq {} to {cursor}) from log {}",
        after + 1,
        log.log_id()
    );
    Ok(())
}

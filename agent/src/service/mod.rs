//! The agent as a Windows service, in platform-neutral parts tested on Linux: where the
//! service's files live ([`ServicePaths`]), the states it reports to the service control
//! manager ([`ServiceState`], driven through a [`Controller`]), and [`run_service`], which runs
//! the agent as the service does.
//!
//! `windows.rs`, compiled on Windows only, is the thin layer over the `windows-service` crate:
//! it registers the service, hands the manager's stop control to [`Controller::stop_requested`]
//! and reports each [`Status`] the controller produces. A stop control cancels the same token
//! SIGTERM cancels on Linux, so it keeps the same promise: the listener stops accepting,
//! in-flight requests finish and their commits complete before the process exits.

#[cfg(windows)]
pub mod windows;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use crate::config::ConfigArgs;

/// The service's name in the service control manager.
pub const SERVICE_NAME: &str = "tally-agent";
/// What the Services console shows.
pub const DISPLAY_NAME: &str = "Tally warehouse agent";
/// The account the service runs as: its own virtual account, which the installer gives the
/// service's folder and nothing else.
pub const SERVICE_ACCOUNT: &str = r"NT SERVICE\tally-agent";
/// The log file's size before it rotates, and how many rotated files are kept.
pub const LOG_FILE_BYTES: u64 = 10 << 20;
pub const LOG_FILES_KEPT: usize = 5;

/// How long the manager is told a start may take (opening a large log after a crash checks it).
const START_WAIT_HINT: Duration = Duration::from_secs(120);
/// How long the manager is told a stop may take: the agent's grace for in-flight requests and
/// for the writer's last commit, with room to spare.
const STOP_WAIT_HINT: Duration = Duration::from_secs(30);

/// `tally-agent service …`: the Windows service (elsewhere, each refuses and names systemd).
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ServiceCommand {
    /// Register the service (automatic start, restart on failure, its own virtual account),
    /// create %ProgramData%\Tally with a sample agent.toml, and allow the account in it.
    Install,
    /// Stop and unregister the service; %ProgramData%\Tally (configuration, log, logs) stays.
    Uninstall,
    /// Start the installed service.
    Start,
    /// Stop the service: in-flight requests finish, as on SIGTERM.
    Stop,
    /// Show the service's state.
    Status,
    /// What the service control manager runs (not for use from a console).
    #[command(hide = true)]
    Run {
        /// The service's folder, as `install` found it: a service's own environment may not
        /// name the same `%ProgramData%` (Wine's does not).
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
}

/// Where the service keeps its files: `%ProgramData%\Tally` and below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePaths {
    pub root: PathBuf,
}

impl ServicePaths {
    /// Under `program_data` (the `ProgramData` environment variable), or `C:\ProgramData`.
    pub fn new(program_data: Option<PathBuf>) -> ServicePaths {
        let base = program_data
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"));
        ServicePaths {
            root: base.join("Tally"),
        }
    }

    /// From this process's environment.
    pub fn from_env() -> ServicePaths {
        ServicePaths::new(std::env::var_os("ProgramData").map(PathBuf::from))
    }

    /// `root` itself (`service run --root`), or [`ServicePaths::from_env`] without it.
    pub fn at(root: Option<PathBuf>) -> ServicePaths {
        match root {
            Some(root) => ServicePaths { root },
            None => ServicePaths::from_env(),
        }
    }

    /// The configuration, `%ProgramData%\Tally\agent.toml`.
    pub fn config(&self) -> PathBuf {
        self.root.join("agent.toml")
    }

    /// The event log's directory (whatever the configuration's `data_dir` says, as the systemd
    /// unit's `TALLY_DATA_DIR` does).
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The log file; rotated ones get `.1`, `.2`, ….
    pub fn log_file(&self) -> PathBuf {
        self.root.join("logs").join("tally-agent.log")
    }

    /// The configuration the service runs with: the file, its data directory replaced.
    pub fn config_args(&self) -> ConfigArgs {
        ConfigArgs {
            config: Some(self.config()),
            data_dir: Some(self.data_dir()),
            ..ConfigArgs::default()
        }
    }

    /// Writes the commented sample configuration, its paths made this machine's, unless a
    /// configuration is there (an edited one is never replaced). Returns whether it wrote.
    pub fn install_sample_config(&self) -> std::io::Result<bool> {
        tally_service::create_private_dir(&self.root)?;
        let path = self.config();
        if path.exists() {
            return Ok(false);
        }
        std::fs::write(&path, self.sample_config())?;
        Ok(true)
    }

    /// The packaged sample configuration with Windows paths (TOML literal strings, so that
    /// backslashes stay as they are).
    pub fn sample_config(&self) -> String {
        let literal = |p: &Path| format!("'{}'", p.display());
        SAMPLE_CONFIG
            .replace("\"/var/lib/tally-agent\"", &literal(&self.data_dir()))
            .replace(
                "\"/etc/tally/central-ca.pem\"",
                &literal(&self.root.join("central-ca.pem")),
            )
    }
}

/// The sample configuration the Debian package installs as /etc/tally/agent.toml.
const SAMPLE_CONFIG: &str = include_str!("../../../packaging/agent.example.toml");

/// The states the service control manager knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    StartPending,
    Running,
    StopPending,
    Stopped,
}

/// What is reported to the service control manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub phase: Phase,
    /// Whether the manager may send the stop (and shutdown) control now.
    pub accepts_stop: bool,
    /// Moves on with each report of a pending state, as the manager expects of progress.
    pub checkpoint: u32,
    /// How long the pending state may last before the manager gives up on the service.
    pub wait_hint: Duration,
    /// The process's exit code once stopped (64 a bad configuration, 65 data of a newer
    /// release, 1 another failure, as on the command line).
    pub exit_code: u8,
}

/// What happens to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceEvent {
    /// The agent listens and its log is open.
    Ready,
    /// The manager's stop or shutdown control.
    StopRequested,
    /// The agent returned, with this exit code.
    Exited(u8),
}

/// The service's state machine, pure: events in, the status to report out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceState {
    status: Status,
}

/// What an event asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The status to report, when it changed.
    pub report: Option<Status>,
    /// Cancel the agent's shutdown token (the first stop request only).
    pub stop_agent: bool,
}

impl Default for ServiceState {
    fn default() -> Self {
        ServiceState {
            status: Status {
                phase: Phase::StartPending,
                accepts_stop: false,
                checkpoint: 1,
                wait_hint: START_WAIT_HINT,
                exit_code: 0,
            },
        }
    }
}

impl ServiceState {
    pub fn status(&self) -> Status {
        self.status
    }

    pub fn on(&mut self, event: ServiceEvent) -> Transition {
        let before = self.status;
        let mut stop_agent = false;
        let s = &mut self.status;
        match (s.phase, event) {
            (Phase::Stopped, _) => {}
            (_, ServiceEvent::Exited(code)) => {
                *s = Status {
                    phase: Phase::Stopped,
                    accepts_stop: false,
                    checkpoint: 0,
                    wait_hint: Duration::ZERO,
                    exit_code: code,
                };
            }
            (Phase::StartPending, ServiceEvent::Ready) => {
                *s = Status {
                    phase: Phase::Running,
                    accepts_stop: true,
                    checkpoint: 0,
                    wait_hint: Duration::ZERO,
                    exit_code: 0,
                };
            }
            (Phase::StartPending | Phase::Running, ServiceEvent::StopRequested) => {
                stop_agent = true;
                *s = Status {
                    phase: Phase::StopPending,
                    accepts_stop: false,
                    checkpoint: 1,
                    wait_hint: STOP_WAIT_HINT,
                    exit_code: 0,
                };
            }
            // A second stop while stopping: report progress, the token is cancelled already.
            (Phase::StopPending, ServiceEvent::StopRequested) => s.checkpoint += 1,
            // Ready after a stop was asked for, or twice: nothing changes.
            (_, ServiceEvent::Ready) => {}
        }
        Transition {
            report: (self.status != before).then_some(self.status),
            stop_agent,
        }
    }
}

/// The state machine with its two outlets: where statuses are reported (the service control
/// manager, or a test) and the agent's shutdown token. Shared by the manager's control handler
/// thread and the thread that runs the agent.
pub struct Controller {
    state: Mutex<ServiceState>,
    report: Box<dyn Fn(Status) + Send + Sync>,
    shutdown: CancellationToken,
    listening: Mutex<Option<SocketAddr>>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("state", &self.state)
            .field("listening", &self.listening)
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// A controller in `StartPending`; call [`Controller::report_current`] once the manager can
    /// be told.
    pub fn new(report: impl Fn(Status) + Send + Sync + 'static) -> Arc<Controller> {
        Arc::new(Controller {
            state: Mutex::new(ServiceState::default()),
            report: Box::new(report),
            shutdown: CancellationToken::new(),
            listening: Mutex::new(None),
        })
    }

    /// The token the agent stops on.
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Where the running agent listens.
    pub fn listening(&self) -> Option<SocketAddr> {
        *self.listening.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn report_current(&self) {
        let status = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .status();
        (self.report)(status);
    }

    pub fn ready(&self, addr: SocketAddr) {
        *self.listening.lock().unwrap_or_else(|e| e.into_inner()) = Some(addr);
        self.apply(ServiceEvent::Ready);
    }

    /// The manager's stop or shutdown control: the same shutdown as SIGTERM's.
    pub fn stop_requested(&self) {
        self.apply(ServiceEvent::StopRequested);
    }

    pub fn exited(&self, code: u8) {
        self.apply(ServiceEvent::Exited(code));
    }

    fn apply(&self, event: ServiceEvent) {
        // Reported under the lock, so that the manager sees the statuses in their order.
        let state = &mut *self.state.lock().unwrap_or_else(|e| e.into_inner());
        let transition = state.on(event);
        if transition.stop_agent {
            tally_service::shutdown_now(&self.shutdown);
        }
        if let Some(status) = transition.report {
            (self.report)(status);
        }
    }
}

/// Runs the agent as the service does, with the configuration and data under `paths`, until the
/// controller's stop; reports every status through the controller and returns the exit code.
pub fn run_service(paths: &ServicePaths, controller: &Arc<Controller>) -> u8 {
    let code = match paths.config_args().load() {
        Err(error) => {
            tracing::error!(config = %paths.config().display(), "invalid configuration: {error}");
            tally_service::EXIT_USAGE
        }
        Ok(config) => {
            let ready = {
                let controller = Arc::clone(controller);
                move |addr| controller.ready(addr)
            };
            let result = crate::runtime().and_then(|runtime| {
                runtime.block_on(crate::run(&config, controller.shutdown(), ready))
            });
            match result {
                Ok(()) => 0,
                Err(error) => {
                    tracing::error!("the agent failed: {error:#}");
                    crate::exit_code(&error)
                }
            }
        }
    };
    controller.exited(code);
    code
}

#[cfg(test)]
mod tests;

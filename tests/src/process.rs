//! What [`crate::AgentProcess`] and [`crate::CentralProcess`] share: a Tally binary started
//! with a clean environment, its stderr appended to a log file next to its data directory,
//! its stdout read up to the line that says it listens (and drained after that), and the
//! signals that stop it.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::{SHUTDOWN_TIMEOUT, tail};

/// A command for `binary` with no `TALLY_*` configuration leaking in from the environment the
/// tests run in (only `TALLY_LOG`), its stdin from `/dev/null`, killed when dropped.
pub(crate) fn command(binary: &Path) -> Command {
    let mut command = Command::new(binary);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TALLY_") && name != "TALLY_LOG" {
            command.env_remove(name);
        }
    }
    command.stdin(Stdio::null()).kill_on_drop(true);
    command
}

/// Runs a short command to its end (within `timeout`, in whole seconds) and returns its
/// stdout; `what` names it in errors.
pub(crate) async fn run_to_end(
    mut command: Command,
    what: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .with_context(|| format!("{what} did not finish within {} s", timeout.as_secs()))?
        .with_context(|| format!("cannot run {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8(output.stdout).with_context(|| format!("{what} printed non-UTF-8"))
}

/// Where a process of kind `kind` (`agent`, `central`) on `data_dir` writes its stderr:
/// `<data dir's name>.<kind>-stderr.log` next to the data directory, so that it survives
/// restarts (every run appends) and is not mistaken for data.
pub(crate) fn stderr_path_next_to(data_dir: &Path, kind: &str) -> PathBuf {
    let name = data_dir
        .file_name()
        .map_or_else(|| kind.to_owned(), |n| n.to_string_lossy().into_owned());
    data_dir
        .parent()
        .unwrap_or(data_dir)
        .join(format!("{name}.{kind}-stderr.log"))
}

/// How error messages name a process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Names {
    /// The binary: `tally-agent`.
    pub(crate) program: &'static str,
    /// The process in a sentence: `the agent`.
    pub(crate) process: &'static str,
}

/// A running Tally process started by [`Process::spawn`]. Dropping it kills the process
/// (SIGKILL).
#[derive(Debug)]
pub(crate) struct Process {
    child: Child,
    pid: u32,
    names: Names,
    stderr_path: PathBuf,
}

impl Process {
    /// Starts `command` (made by [`command`], with its arguments) with its stderr appended to
    /// `stderr_path` (after a line naming the binary and `data_dir`), and reads its stdout
    /// until a line starting with `prefix`, within `startup_timeout`. Returns the process and
    /// the rest of that line, trimmed. Later lines are read and dropped, so that a line can
    /// never block or kill the process.
    pub(crate) async fn spawn(
        mut command: Command,
        names: Names,
        data_dir: &Path,
        stderr_path: PathBuf,
        prefix: &str,
        startup_timeout: Duration,
    ) -> anyhow::Result<(Process, String)> {
        let binary = PathBuf::from(command.as_std().get_program());
        let mut stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_path)
            .with_context(|| format!("cannot open {}", stderr_path.display()))?;
        writeln!(
            stderr,
            "=== harness: starting {} on {}",
            binary.display(),
            data_dir.display()
        )?;
        command.stdout(Stdio::piped()).stderr(Stdio::from(stderr));
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let pid = child
            .id()
            .with_context(|| format!("{} exited at once", names.process))?;
        let stdout = child
            .stdout
            .take()
            .with_context(|| format!("{}'s stdout is not piped", names.process))?;
        let mut lines = BufReader::new(stdout).lines();
        let waited = tokio::time::timeout(startup_timeout, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.strip_prefix(prefix) {
                    return Ok(Some(rest.trim().to_owned()));
                }
            }
            Ok::<_, std::io::Error>(None)
        })
        .await;
        let rest = match waited {
            Ok(Ok(Some(rest))) => rest,
            Ok(Ok(None)) | Ok(Err(_)) => {
                let status = tokio::time::timeout(SHUTDOWN_TIMEOUT, child.wait()).await;
                bail!(
                    "{} closed its stdout without a listening line (exit: {status:?}); \
                     its stderr ({}):\n{}",
                    names.program,
                    stderr_path.display(),
                    tail(&stderr_path, 40)
                );
            }
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                bail!(
                    "{} did not print its listening line within {:?}; its stderr ({}):\n{}",
                    names.program,
                    startup_timeout,
                    stderr_path.display(),
                    tail(&stderr_path, 40)
                );
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let process = Process {
            child,
            pid,
            names,
            stderr_path,
        };
        Ok((process, rest))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    pub(crate) fn stderr_tail(&self, lines: usize) -> String {
        tail(&self.stderr_path, lines)
    }

    /// SIGKILL, then waits (at most [`SHUTDOWN_TIMEOUT`]) for the process to die.
    pub(crate) async fn kill9(mut self) -> anyhow::Result<ExitStatus> {
        let name = self.names.process;
        // On Unix, `start_kill` is kill(pid, SIGKILL).
        self.child
            .start_kill()
            .with_context(|| format!("cannot send SIGKILL to {name}"))?;
        tokio::time::timeout(SHUTDOWN_TIMEOUT, self.child.wait())
            .await
            .with_context(|| format!("{name} did not die after SIGKILL"))?
            .with_context(|| format!("cannot wait for {name}"))
    }

    /// SIGTERM, then waits (at most [`SHUTDOWN_TIMEOUT`]) for the process to exit; one that
    /// does not is killed and reported as an error.
    pub(crate) async fn terminate(mut self) -> anyhow::Result<ExitStatus> {
        let name = self.names.process;
        self.signal(rustix::process::Signal::TERM)?;
        match tokio::time::timeout(SHUTDOWN_TIMEOUT, self.child.wait()).await {
            Ok(status) => status.with_context(|| format!("cannot wait for {name}")),
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                bail!(
                    "{name} did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM; its stderr:\n{}",
                    self.stderr_tail(40)
                )
            }
        }
    }

    /// Sends `signal` (the process has not been waited for, so its pid is still its own).
    pub(crate) fn signal(&self, signal: rustix::process::Signal) -> anyhow::Result<()> {
        let name = self.names.process;
        let pid = i32::try_from(self.pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .with_context(|| format!("{name}'s pid is not a valid pid"))?;
        rustix::process::kill_process(pid, signal)
            .with_context(|| format!("cannot send {signal:?} to {name} (pid {})", self.pid))
    }
}

//! What `tally-agent` and `tally-central` share as long-running services: reading a TOML
//! configuration file and naming what is wrong with it, logging to stderr, and telling systemd
//! (when it is there) that the service is ready or stopping.
//!
//! Nothing here knows about stock events or sync; each daemon keeps its own configuration keys.

#![forbid(unsafe_code)]

pub mod backoff;
pub mod datafile;
pub mod layers;
pub mod partfile;
pub mod restore;
pub mod rotate;
pub mod token;
pub mod watchdog;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

/// Why a configuration was refused. The message names the file or the key, so
/// `check-config` can print it as it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// The error for a bad value of `key`.
pub fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// Reads a TOML configuration file into `T` (whose `deny_unknown_fields`, if any, refuses
/// misspelt keys).
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The content type of the `/metrics` answers: prometheus-client writes OpenMetrics text (`_total`
/// counters, `# EOF`), which a scraper must not parse as the older Prometheus text format.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the sample configurations put where a secret goes. A file copied and not edited must
/// not start a service whose tokens everyone who read the sample knows.
const PLACEHOLDER: &str = "CHANGE-ME";

/// Refuses the sample configurations' placeholders for the secret `key` (never echoing it).
pub fn refuse_placeholder(key: &'static str, value: &str) -> Result<(), ConfigError> {
    if value.to_ascii_uppercase().contains(PLACEHOLDER) {
        return Err(invalid(
            key,
            "is still the sample configuration's CHANGE-ME placeholder; generate a secret, for example with: head -c 24 /dev/urandom | base64",
        ));
    }
    Ok(())
}

/// Reads a secret from a file (a systemd credential, or a 0600 file) so that it need not be on
/// a command line, where `ps` shows it to every local user: the file's first line, without
/// its line ending.
pub fn read_secret_file(key: &'static str, path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let secret = text.lines().next().unwrap_or_default().trim();
    if secret.is_empty() {
        return Err(invalid(
            key,
            format!("the file {} is empty", path.display()),
        ));
    }
    Ok(secret.to_owned())
}

/// Exit status for a configuration or usage error (EX_USAGE): a bad value exits with it
/// whether it came from a flag or from the configuration file.
pub const EXIT_USAGE: u8 = 64;

/// Parses a duration such as `90s`, `15m`, `24h` or `7d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration such as 90s, 15m, 24h or 7d: {e}"))
}

/// How the daemons write their log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event (in colour on a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log collectors: `timestamp`, `level`, `target`,
    /// `fields` (with `message`), and the `span` it happened in.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<LogFormat, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?} is not a log format: text or json")),
        }
    }
}

/// Logs to stderr at the level `TALLY_LOG` names (`info` when unset): readable lines (in colour
/// on a terminal), or JSON lines.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TALLY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
}

/// Logs to a rotating file instead of stderr (a Windows service has no console), at the level
/// `TALLY_LOG` names.
pub fn init_logging_to(file: rotate::RotatingFile) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TALLY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .init();
}

/// Prints the line that says where the service listens (scripts and tests wait for it) and
/// tells systemd the service is ready.
pub fn ready(listening: &str) {
    println!("{listening}");
    let _ = std::io::stdout().flush();
    #[cfg(unix)]
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
}

/// A token cancelled on the first SIGTERM or SIGINT (Ctrl-C on Windows), which also tells
/// systemd the service is stopping. Call it inside the runtime.
pub fn shutdown_on_signal() -> CancellationToken {
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    shutdown
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    shutdown_now(&shutdown);
}

/// Starts the shutdown a signal starts, for other ways of asking (the Windows service's stop
/// control): the same token, so the same guarantees (in-flight work finishes first).
pub fn shutdown_now(shutdown: &CancellationToken) {
    tracing::info!("shutdown requested: finishing in-flight work");
    #[cfg(unix)]
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    shutdown.cancel();
}

/// Creates `dir` and whichever of its parents are missing, readable by the owner only (0700
/// on Unix): stock events and agent tokens' digests are nobody else's business, whatever the
/// umask (systemd's unit sets its own; a shell usually leaves 0755). An existing directory
/// keeps its mode: an operator may have opened it on purpose.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates `path` as an empty file readable and writable by the owner only (0600 on Unix),
/// unless it exists (then it is left as it is). A database opened on it afterwards (redb
/// initialises an empty file) keeps that mode.
pub fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// How many characters of an untrusted string a log line shows.
pub const UNTRUSTED_LOG_CHARS: usize = 64;

/// A string from someone not yet trusted (an unauthenticated peer's agent id, a header), made
/// safe for a log line: control, invisible and direction-changing characters, quotes and
/// backslashes escaped as `char::escape_debug` does (a newline or an ANSI escape in it cannot
/// forge a line or repaint the terminal), and cut to [`UNTRUSTED_LOG_CHARS`] characters with
/// an ellipsis (a 4 MiB id costs a short line, not 4 MiB of log).
pub fn untrusted(text: &str) -> Untrusted<'_> {
    Untrusted(text)
}

/// See [`untrusted`].
#[derive(Debug, Clone, Copy)]
pub struct Untrusted<'a>(&'a str);

impl std::fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(UNTRUSTED_LOG_CHARS) {
            write!(f, "{}", c.escape_debug())?;
        }
        if chars.next().is_some() {
            f.write_str("…")?;
        }
        Ok(())
    }
}

/// The token of an `Authorization: Bearer <token>` header value, or `None` for another scheme
/// or no token. The scheme word is compared without regard to case (RFC 7235 §2.1: `bearer`
/// is the same scheme), the token exactly: the caller compares it in constant time.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether a URL's `host` (as `http::Uri::host` gives it, IPv6 in brackets or not) is this
/// machine: `localhost` or a loopback address. The one rule for where plain `ws://` and
/// `http://` are allowed (central's URL for an agent, Odoo's and a channel's for central).
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_hosts_are_this_machine_only() {
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.8.9.1",
            "::1",
            "[::1]",
        ] {
            assert!(super::is_loopback_host(host), "{host}");
        }
        for host in [
            "",
            "example.com",
            "10.0.0.1",
            "localhost.example.com",
            "[::2]",
            "0.0.0.0",
        ] {
            assert!(!super::is_loopback_host(host), "{host}");
        }
    }

    /// Guards against the scheme word being case-sensitive (`bearer` refused; issue 10, item 8).
    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_the_token_is_not() {
        for header in ["Bearer t0K", "bearer t0K", "BEARER t0K", "bEaReR  t0K"] {
            assert_eq!(super::bearer_token(header), Some("t0K"), "{header}");
        }
        for header in ["Basic t0K", "Bearer", "Bearer ", "Bearert0K", "t0K", ""] {
            assert_eq!(super::bearer_token(header), None, "{header}");
        }
    }

    /// Guards against world-readable data outside systemd (issue 10, item 6).
    #[cfg(unix)]
    #[test]
    fn private_directories_and_files_are_the_owners_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/b");
        super::create_private_dir(&data).unwrap();
        super::create_private_dir(&data).unwrap();
        let file = data.join("x.redb");
        super::create_private_file(&file).unwrap();
        std::fs::write(&file, b"kept").unwrap();
        super::create_private_file(&file).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(std::fs::read(&file).unwrap(), b"kept");
    }

    /// Guards against log injection through an unauthenticated agent id (issue 10, item 4).
    #[test]
    fn untrusted_text_is_escaped_and_cut() {
        use super::untrusted;
        assert_eq!(untrusted("wh-agent-1").to_string(), "wh-agent-1");
        assert_eq!(
            untrusted("a\nINFO forged\u{1b}[2K\u{202e}\\").to_string(),
            "a\\nINFO forged\\u{1b}[2K\\u{202e}\\\\"
        );
        let long = "x".repeat(4 << 20);
        assert_eq!(untrusted(&long).to_string(), format!("{}…", "x".repeat(64)));
        assert_eq!(untrusted(&"é".repeat(64)).to_string(), "é".repeat(64));
    }

    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        name: String,
    }

    #[test]
    fn a_file_is_read_and_its_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "name = \"wh1\"\n").unwrap();
        assert_eq!(read_toml::<Sample>(&good).unwrap().name, "wh1");

        let misspelt = dir.path().join("misspelt.toml");
        std::fs::write(&misspelt, "nmae = \"wh1\"\n").unwrap();
        let error = read_toml::<Sample>(&misspelt).unwrap_err();
        assert!(matches!(error, ConfigError::Parse { .. }), "{error:?}");
        let text = error.to_string();
        assert!(
            text.contains("misspelt.toml") && text.contains("nmae"),
            "{text}"
        );

        let missing = dir.path().join("missing.toml");
        let error = read_toml::<Sample>(&missing).unwrap_err();
        assert!(matches!(error, ConfigError::Read { .. }), "{error:?}");
        assert!(error.to_string().contains("missing.toml"));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration(" 24h "), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        let error = parse_duration("seven days").unwrap_err();
        assert!(error.contains("\"seven days\""), "{error}");
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn placeholders_are_refused_without_echoing_them() {
        for sample in [
            "CHANGE-ME-to-a-long-random-token",
            "tly1_CHANGE-ME",
            "change-me",
        ] {
            let error = refuse_placeholder("admin_token", sample).unwrap_err();
            let text = error.to_string();
            assert!(text.starts_with("admin_token: "), "{text}");
            assert!(!text.contains(sample), "{text}");
        }
        assert!(refuse_placeholder("admin_token", "x3Jk9v0q1LmZ8rT2bN6wP4yE").is_ok());
    }

    #[test]
    fn a_secret_file_gives_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret-token-value\n").unwrap();
        assert_eq!(read_secret_file("t", &path).unwrap(), "s3cret-token-value");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_secret_file("t", &path).is_err());
        assert!(read_secret_file("t", &dir.path().join("missing")).is_err());
    }

    #[test]
    fn invalid_names_the_key() {
        assert_eq!(
            invalid("listen", "is not an address").to_string(),
            "listen: is not an address"
        );
    }
}

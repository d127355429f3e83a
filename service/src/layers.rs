//! Configuration layers, for both daemons: a value given on the command line — a flag, or the
//! `TALLY_*` environment variable clap reads in its place — beats the configuration file, which
//! beats the default. [`Layers::pick`] takes one key's value from the first layer that has it
//! and remembers where it came from ([`Origin`]), so that an error about the value says which
//! flag, variable or file to fix ([`Layered::invalid`]).
//!
//! Clap merges flags and variables before the daemon sees them; which values came from the
//! environment is read from its matches once ([`FromEnv::of`]) and carried in the daemon's
//! arguments. The flag and variable of each key are read from the arguments' own clap
//! definition, so nothing is written twice.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;

use crate::{ConfigError, invalid, read_secret_file};

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag, such as `--listen`.
    Flag(String),
    /// An environment variable, such as `TALLY_LISTEN`.
    Env(String),
    /// The configuration file at this path.
    File(PathBuf),
    /// Set nowhere: the built-in default.
    Default,
}

impl Origin {
    /// The flag, variable or file itself: `--listen`, `TALLY_LISTEN`, a path, `the default`.
    pub fn name(&self) -> String {
        match self {
            Origin::Flag(name) | Origin::Env(name) => name.clone(),
            Origin::File(path) => path.display().to_string(),
            Origin::Default => "the default".to_owned(),
        }
    }
}

impl fmt::Display for Origin {
    /// `set by --listen`, `set by TALLY_LISTEN`, `set in /etc/tally/agent.toml`, `the default`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => write!(f, "set by {flag}"),
            Origin::Env(var) => write!(f, "set by {var}"),
            Origin::File(path) => write!(f, "set in {}", path.display()),
            Origin::Default => f.write_str("the default"),
        }
    }
}

/// The command-line arguments (by clap id, the field's name) whose value clap took from the
/// environment. Empty (the default) counts every value given as a flag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FromEnv(BTreeSet<String>);

impl FromEnv {
    /// Read from `matches` and the matches of every subcommand chosen under it (a daemon's
    /// configuration arguments sit on the subcommand, or on a parent of a nested one).
    pub fn of(matches: &clap::ArgMatches) -> FromEnv {
        let mut ids = BTreeSet::new();
        let mut level = Some(matches);
        while let Some(matches) = level {
            ids.extend(
                matches
                    .ids()
                    .filter(|id| {
                        matches.value_source(id.as_str()) == Some(ValueSource::EnvVariable)
                    })
                    .map(|id| id.as_str().to_owned()),
            );
            level = matches.subcommand().map(|(_, sub)| sub);
        }
        FromEnv(ids)
    }

    /// These ids as taken from the environment (for tests).
    pub fn ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> FromEnv {
        FromEnv(ids.into_iter().map(str::to_owned).collect())
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layered<T> {
    /// The configuration key (the file's key, the clap id).
    pub key: &'static str,
    pub value: T,
    pub origin: Origin,
}

impl<T> Layered<T> {
    /// The error for this value: its key, `message`, and where the value was set.
    pub fn invalid(&self, message: impl fmt::Display) -> ConfigError {
        match &self.origin {
            Origin::Default => invalid(self.key, message.to_string()),
            origin => invalid(self.key, format!("{message} ({origin})")),
        }
    }

    /// The value turned into another by `parse`, whose refusal becomes [`Layered::invalid`].
    pub fn parse<U>(
        self,
        parse: impl FnOnce(&T) -> Result<U, String>,
    ) -> Result<Layered<U>, ConfigError> {
        match parse(&self.value) {
            Ok(value) => Ok(Layered {
                key: self.key,
                value,
                origin: self.origin,
            }),
            Err(message) => Err(self.invalid(message)),
        }
    }

    /// `result`, with a refusal of this key said with where the value was set (for checks
    /// written for a bare value, such as [`crate::refuse_placeholder`]).
    pub fn attribute<U>(&self, result: Result<U, ConfigError>) -> Result<U, ConfigError> {
        result.map_err(|error| match error {
            ConfigError::Invalid { key, message } if key == self.key => self.invalid(message),
            other => other,
        })
    }

    /// `Ok(())` when `ok`, else [`Layered::invalid`] with `message`.
    pub fn check(&self, ok: bool, message: impl fmt::Display) -> Result<(), ConfigError> {
        if ok {
            Ok(())
        } else {
            Err(self.invalid(message))
        }
    }
}

/// The layers of one daemon's configuration: its command-line arguments' names, which of them
/// came from the environment, and the configuration file's path.
#[derive(Debug, Clone)]
pub struct Layers {
    /// Clap id → (long flag, environment variable).
    names: BTreeMap<String, (Option<String>, Option<String>)>,
    from_env: FromEnv,
    file: Option<PathBuf>,
}

impl Layers {
    /// The layers of the arguments `A` (a `#[derive(clap::Args)]` struct), with the values
    /// `from_env` names taken from the environment and `file` the configuration file, if any.
    pub fn new<A: clap::Args>(file: Option<&Path>, from_env: &FromEnv) -> Layers {
        let command = A::augment_args(clap::Command::new("layers"));
        let names = command
            .get_arguments()
            .map(|arg| {
                let long = arg.get_long().map(|long| format!("--{long}"));
                let env = arg.get_env().map(|env| env.to_string_lossy().into_owned());
                (arg.get_id().as_str().to_owned(), (long, env))
            })
            .collect();
        Layers {
            names,
            from_env: from_env.clone(),
            file: file.map(Path::to_owned),
        }
    }

    /// Where the command line's value of `key` came from: its environment variable if clap
    /// took it from there, else its flag.
    pub fn command_line(&self, key: &str) -> Origin {
        let (long, env) = self.names.get(key).cloned().unwrap_or_default();
        match (self.from_env.0.contains(key), env, long) {
            (true, Some(env), _) => Origin::Env(env),
            (_, _, Some(long)) => Origin::Flag(long),
            _ => Origin::Flag(format!("--{}", key.replace('_', "-"))),
        }
    }

    /// Where the file's values came from.
    pub fn file(&self) -> Origin {
        match &self.file {
            Some(path) => Origin::File(path.clone()),
            None => Origin::Default,
        }
    }

    /// The value of `key`: the command line's if given, else the file's, else none.
    pub fn pick<T>(
        &self,
        key: &'static str,
        cli: Option<T>,
        file: Option<T>,
    ) -> Option<Layered<T>> {
        match (cli, file) {
            (Some(value), _) => Some(Layered {
                key,
                value,
                origin: self.command_line(key),
            }),
            (None, Some(value)) => Some(Layered {
                key,
                value,
                origin: self.file(),
            }),
            (None, None) => None,
        }
    }

    /// [`Layers::pick`], with `default` when no layer sets the key.
    pub fn pick_or<T>(
        &self,
        key: &'static str,
        cli: Option<T>,
        file: Option<T>,
        default: T,
    ) -> Layered<T> {
        self.pick(key, cli, file).unwrap_or(Layered {
            key,
            value: default,
            origin: Origin::Default,
        })
    }

    /// A switch: on when the command line or the file turns it on (a flag cannot turn off what
    /// the file turned on).
    pub fn switch(&self, key: &'static str, cli: bool, file: bool) -> Layered<bool> {
        self.pick_or(key, cli.then_some(true), file.then_some(true), false)
    }

    /// A secret of `key` given on the command line directly (`cli`), or in a file whose path
    /// the command line gives under `path_key` (`path`, its first line read), else in the
    /// configuration file (`file`). Directly and in a file at once is refused, naming both.
    pub fn secret(
        &self,
        key: &'static str,
        path_key: &'static str,
        path: Option<&Path>,
        cli: Option<&str>,
        file: Option<String>,
    ) -> Result<Option<Layered<String>>, ConfigError> {
        match (path, cli) {
            (Some(_), Some(_)) => Err(invalid(
                key,
                format!(
                    "give it either directly ({}) or in a file ({}), not both",
                    self.command_line(key).name(),
                    self.command_line(path_key).name()
                ),
            )),
            (Some(path), None) => Ok(Some(Layered {
                key,
                value: read_secret_file(key, path)?,
                origin: self.command_line(path_key),
            })),
            (None, cli) => Ok(self.pick(key, cli.map(str::to_owned), file)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, clap::Parser)]
    struct Args {
        #[arg(long, env = "TEST_LAYERS_LISTEN")]
        listen: Option<String>,
        #[arg(long = "scanner-token", env = "TEST_LAYERS_TOKENS")]
        scanner_tokens: Vec<String>,
        #[arg(long, env = "TEST_LAYERS_TOKEN_FILE")]
        token_file: Option<PathBuf>,
    }

    fn layers(from_env: &[&str]) -> Layers {
        Layers::new::<Args>(
            Some(Path::new("/etc/t.toml")),
            &FromEnv::ids(from_env.iter().copied()),
        )
    }

    #[test]
    fn the_command_line_beats_the_file_which_beats_the_default() {
        let layers = layers(&[]);
        let picked = layers.pick("listen", Some(1), Some(2)).unwrap();
        assert_eq!(
            (picked.value, picked.origin),
            (1, Origin::Flag("--listen".into()))
        );
        let picked = layers.pick("listen", None, Some(2)).unwrap();
        assert_eq!(
            (picked.value, picked.origin),
            (2, Origin::File("/etc/t.toml".into()))
        );
        let picked = layers.pick_or("listen", None, None, 3);
        assert_eq!((picked.value, picked.origin), (3, Origin::Default));
        let from_env = self::layers(&["listen"])
            .pick("listen", Some(1), Some(2))
            .unwrap();
        assert_eq!(from_env.origin, Origin::Env("TEST_LAYERS_LISTEN".into()));
    }

    #[test]
    fn errors_name_the_key_the_problem_and_where_the_value_was_set() {
        let layers = layers(&["scanner_tokens"]);
        let cases = [
            (
                layers.pick("listen", Some("x"), None),
                "listen: bad (set by --listen)",
            ),
            (
                layers.pick("listen", None, Some("x")),
                "listen: bad (set in /etc/t.toml)",
            ),
            (
                layers.pick("scanner_tokens", Some("x"), None),
                "scanner_tokens: bad (set by TEST_LAYERS_TOKENS)",
            ),
            (
                Some(layers.pick_or("listen", None, None, "x")),
                "listen: bad",
            ),
        ];
        for (picked, expected) in cases {
            assert_eq!(picked.unwrap().invalid("bad").to_string(), expected);
        }
        let error = layers
            .pick("listen", Some("abc"), None)
            .unwrap()
            .parse(|text| text.parse::<u16>().map_err(|e| format!("{text:?}: {e}")))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "listen: \"abc\": invalid digit found in string (set by --listen)"
        );
    }

    #[test]
    fn a_secret_given_twice_is_refused_naming_both_sources() {
        let layers = layers(&["token_file"]);
        let error = layers
            .secret(
                "scanner_tokens",
                "token_file",
                Some(Path::new("/x")),
                Some("t"),
                None,
            )
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "scanner_tokens: give it either directly (--scanner-token) or in a file (TEST_LAYERS_TOKEN_FILE), not both"
        );
        let from_file = layers
            .secret("scanner_tokens", "token_file", None, None, Some("f".into()))
            .unwrap()
            .unwrap();
        assert_eq!(from_file.origin, Origin::File("/etc/t.toml".into()));
    }
}

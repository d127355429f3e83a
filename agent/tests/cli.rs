//! The `tally-agent` command line: the sample configuration's placeholders are refused, usage
//! errors exit 64 like bad file values, `status` needs only an address and a token, `export`
//! takes `--config` like every other subcommand (issues 10 and 16).

use std::process::{Command, Output};

fn agent(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tally-agent"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TALLY_") {
            command.env_remove(name);
        }
    }
    command.args(args).output().expect("tally-agent runs")
}

/// `tally-agent` with `args` and the environment variables `env` (and no other `TALLY_*`).
fn agent_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tally-agent"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TALLY_") {
            command.env_remove(name);
        }
    }
    command
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("tally-agent runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_sample_configuration_is_refused_until_its_tokens_are_replaced() {
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/agent.example.toml"
    );
    let output = agent(&["check-config", "--config", sample]);
    assert_eq!(output.status.code(), Some(64), "{}", stderr(&output));
    assert!(
        stderr(&output)
            .contains("scanner_tokens: is still the sample configuration's CHANGE-ME placeholder"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn flag_values_clap_cannot_parse_exit_64() {
    for args in [
        &["check-config", "--listen", "nope"][..],
        &["check-config", "--max-log-bytes", "-5"],
        &["export", "--after", "soon"],
    ] {
        let output = agent(args);
        assert_eq!(
            output.status.code(),
            Some(64),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    assert!(agent(&["--version"]).status.success());
}

/// A flag beats its environment variable, which beats the configuration file; a refused value
/// is named with the flag, variable or file that set it.
#[test]
fn flags_beat_the_environment_which_beats_the_file_and_errors_name_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nwarehouse = \"WH\"\nagent_id = \"wh-1\"\nscanner_tokens = [\"file-token-0123456789\"]\nretention = \"a fortnight\"\n",
            dir.path().join("data").to_str().unwrap()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let check = |flag: Option<&str>, env: Option<&str>| {
        let mut args = vec!["check-config", "--config", config];
        if let Some(flag) = flag {
            args.extend(["--retention", flag]);
        }
        let env: Vec<(&str, &str)> = env.map(|v| ("TALLY_RETENTION", v)).into_iter().collect();
        agent_with_env(&args, &env)
    };
    // Every layer refused: the error is the flag's.
    let cases = [
        (
            Some("a flag's week"),
            Some("an env's week"),
            "\"a flag's week\"",
            "(set by --retention)".to_owned(),
        ),
        (
            None,
            Some("an env's week"),
            "\"an env's week\"",
            "(set by TALLY_RETENTION)".to_owned(),
        ),
        (None, None, "\"a fortnight\"", format!("(set in {config})")),
    ];
    for (flag, env, value, origin) in cases {
        let output = check(flag, env);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(64), "{text}");
        assert!(
            text.contains("retention: ") && text.contains(value),
            "{text}"
        );
        assert!(text.contains(&origin), "{origin}: {text}");
    }
    // A good value on a higher layer wins over bad ones below it.
    for (flag, env) in [(Some("14d"), Some("an env's week")), (None, Some("14d"))] {
        let output = check(flag, env);
        assert!(
            output.status.success(),
            "{flag:?} {env:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn status_needs_only_an_address_and_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("scanner.token");
    std::fs::write(&token, "scanner-token-0123456789\n").unwrap();
    // Nothing listens on port 9 of loopback: the command gets as far as asking.
    let output = agent(&[
        "status",
        "--url",
        "http://127.0.0.1:9",
        "--scanner-token-file",
        token.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        !stderr(&output).contains("invalid configuration"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn export_takes_the_data_directory_from_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n", data.to_str().unwrap()),
    )
    .unwrap();
    let output = agent(&["export", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!("there is no event log in {}", data.display())),
        "{}",
        stderr(&output)
    );
}

/// `service` is the Windows service's; elsewhere every subcommand refuses and names systemd.
#[cfg(not(windows))]
#[test]
fn service_refuses_outside_windows_and_names_systemd() {
    for action in ["install", "uninstall", "start", "stop", "status"] {
        let output = agent(&["service", action]);
        assert_eq!(
            output.status.code(),
            Some(64),
            "{action}: {}",
            stderr(&output)
        );
        assert!(stderr(&output).contains("systemd"), "{}", stderr(&output));
    }
}

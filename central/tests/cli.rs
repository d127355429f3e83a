//! The `tally-central` command line without a running central: `check-config` refuses what
//! `run` would fail on, usage errors exit 64 like bad file values, agent management needs no
//! TLS material, and a retry or discard of nothing says so (issues 10, 13 and 16).

use std::path::Path;
use std::process::{Command, Output};

const ADMIN_TOKEN: &str = "admin-token-0123456789";

fn central(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tally-central"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TALLY_") {
            command.env_remove(name);
        }
    }
    command.args(args).output().expect("tally-central runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

#[test]
fn check_config_reads_the_tls_material_run_needs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let missing = dir.path().join("missing.pem");
    let base = [
        "check-config",
        "--data-dir",
        path(&data),
        "--admin-token",
        ADMIN_TOKEN,
    ];
    let output = central(
        &[
            &base[..],
            &["--tls-cert", path(&missing), "--tls-key", path(&missing)],
        ]
        .concat(),
    );
    assert_eq!(output.status.code(), Some(64), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("missing.pem"),
        "{}",
        stderr(&output)
    );

    let tls = dir.path().join("tls");
    assert!(
        central(&["gen-cert", "--out-dir", path(&tls)])
            .status
            .success()
    );
    // A certificate where the key should be.
    let (cert, ca) = (tls.join("cert.pem"), tls.join("ca.pem"));
    let output = central(
        &[
            &base[..],
            &["--tls-cert", path(&cert), "--tls-key", path(&ca)],
        ]
        .concat(),
    );
    assert_eq!(output.status.code(), Some(64), "{}", stderr(&output));

    let key = tls.join("key.pem");
    let output = central(
        &[
            &base[..],
            &["--tls-cert", path(&cert), "--tls-key", path(&key)],
        ]
        .concat(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn the_sample_configuration_is_refused_until_its_token_is_replaced() {
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/central.example.toml"
    );
    let output = central(&["check-config", "--config", sample]);
    assert_eq!(output.status.code(), Some(64), "{}", stderr(&output));
    assert!(
        stderr(&output)
            .contains("admin_token: is still the sample configuration's CHANGE-ME placeholder"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn flag_values_clap_cannot_parse_exit_64() {
    for args in [
        &["check-config", "--listen", "nope"][..],
        &["check-config", "--max-connections", "-5"],
        &["check-config", "--no-such-flag"],
    ] {
        let output = central(args);
        assert_eq!(
            output.status.code(),
            Some(64),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    assert!(central(&["--help"]).status.success());
}

#[test]
fn agents_are_managed_with_the_data_directory_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let add = central(&[
        "agent",
        "--data-dir",
        path(&data),
        "add",
        "wh1-agent",
        "--warehouse",
        "WH",
    ]);
    assert!(add.status.success(), "{}", stderr(&add));
    assert!(String::from_utf8_lossy(&add.stdout).starts_with("tly1_"));
    let list = central(&["agent", "--data-dir", path(&data), "list"]);
    assert!(list.status.success(), "{}", stderr(&list));
    assert!(String::from_utf8_lossy(&list.stdout).contains("wh1-agent"));
}

#[test]
fn retrying_or_discarding_nothing_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let add = central(&[
        "agent",
        "--data-dir",
        path(&data),
        "add",
        "a1",
        "--warehouse",
        "WH",
    ]);
    assert!(add.status.success(), "{}", stderr(&add));
    let dlq = |action: &[&str]| {
        let output = central(&[&["dlq", "--data-dir", path(&data)][..], action].concat());
        assert!(!output.status.success(), "{action:?}");
        assert!(
            stderr(&output).contains("no events of \"SKU-9\" in warehouse \"WH\" are parked"),
            "{}",
            stderr(&output)
        );
    };
    dlq(&[
        "retry",
        "--warehouse",
        "WH",
        "--sku",
        "SKU-9",
        "--reason",
        "created",
    ]);
    dlq(&[
        "discard",
        "--warehouse",
        "WH",
        "--sku",
        "SKU-9",
        "--reason",
        "typo",
    ]);
}

/// Regression: central created its data directory and database before binding its ports, so a
/// port already taken left them behind.
#[test]
fn a_port_already_taken_leaves_no_data_behind() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    for (listen, admin_listen) in [
        (taken.as_str(), "127.0.0.1:0"),
        ("127.0.0.1:0", taken.as_str()),
    ] {
        let data = dir.path().join("data");
        let output = central(&[
            "run",
            "--data-dir",
            path(&data),
            "--listen",
            listen,
            "--admin-listen",
            admin_listen,
            "--admin-token",
            ADMIN_TOKEN,
            "--insecure-plaintext",
        ]);
        assert!(!output.status.success(), "{}", stderr(&output));
        assert!(stderr(&output).contains(&taken), "{}", stderr(&output));
        assert!(!data.exists(), "{} was left behind", data.display());
    }
}

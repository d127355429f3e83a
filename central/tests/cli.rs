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

/// `tally-central` with `args` and the environment variables `env` (and no other `TALLY_*`).
fn central_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tally-central"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TALLY_") {
            command.env_remove(name);
        }
    }
    command
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("tally-central runs")
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

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every read command prints a table, or JSON with `--json`, and says so when there is
/// nothing; while central is stopped they read its database with `--data-dir` alone.
#[test]
fn reads_print_tables_or_json_and_say_when_empty() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = path(&data);
    let run = |args: &[&str]| {
        let output = central(args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        stdout(&output)
    };
    // No database yet: a read says so rather than creating one.
    let output = central(&["dlq", "--data-dir", d, "list"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("there is no central database"),
        "{}",
        stderr(&output)
    );
    assert!(!data.exists());

    let empty = run(&[
        "agent",
        "--data-dir",
        d,
        "add",
        "wh1-agent",
        "--warehouse",
        "WH",
        "--reason",
        "first scanner",
    ]);
    assert!(empty.starts_with("tly1_"));
    assert_eq!(
        run(&["dlq", "--data-dir", d, "list"]),
        "no events are parked\n"
    );
    assert_eq!(run(&["notices", "--data-dir", d]), "no notices\n");
    let listed = run(&["agent", "--data-dir", d, "list"]);
    let mut lines = listed.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("AGENT      WAREHOUSE  STATE"),
        "{listed}"
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("wh1-agent  WH         offline"),
        "{listed}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&run(&["agent", "--data-dir", d, "list", "--json"])).unwrap();
    assert_eq!(json["agents"][0]["agent_id"], "wh1-agent", "{json}");
    let dlq: serde_json::Value =
        serde_json::from_str(&run(&["dlq", "--data-dir", d, "list", "--json"])).unwrap();
    assert_eq!(
        (
            dlq["total"].as_u64(),
            dlq["groups"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );

    let audit = run(&["audit", "--data-dir", d]);
    assert!(
        audit.contains("local") && audit.contains("agent-add") && audit.contains("first scanner"),
        "{audit}"
    );
    let status = run(&["status", "--data-dir", d]);
    assert!(
        status.contains("(stopped)") && status.contains("central-stopped"),
        "{status}"
    );
    assert!(
        status.contains("wh1-agent") && status.contains("no events are parked"),
        "{status}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&run(&["status", "--data-dir", d, "--json"])).unwrap();
    assert_eq!(status["running"], false);
    let trace = run(&[
        "trace",
        "--data-dir",
        d,
        "--agent",
        "wh1-agent",
        "--id",
        "nope",
    ]);
    assert!(trace.contains("not-journaled"), "{trace}");
    // A retry needs a reason, refused before anything is looked up.
    let output = central(&[
        "dlq",
        "--data-dir",
        d,
        "retry",
        "--warehouse",
        "WH",
        "--sku",
        "S",
        "--reason",
        " ",
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("a reason is required"),
        "{}",
        stderr(&output)
    );
}

/// `channel list|status` and `availability` on a stopped central's database: what its store
/// holds of the channels (outbox, dead letters) and of the stock, as tables or JSON.
#[test]
fn channels_and_availability_are_read_from_a_stopped_database() {
    use std::collections::{BTreeMap, BTreeSet};
    use tally_central::availability::{Availability, free};
    use tally_central::channels::{Buffer, ChannelConfig, ChannelKind};
    use tally_protocol::{Qty, Secret};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = path(&data);
    let run = |args: &[&str]| {
        let output = central(args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        stdout(&output)
    };
    let stock = |sku: &str, units: i64| Availability {
        sku: sku.into(),
        warehouse: "WH".into(),
        on_hand: Qty::from_units(units),
        reserved: Qty::ZERO,
        free: free(Qty::from_units(units), Qty::ZERO),
        read_at: "2026-01-01T00:00:00Z".into(),
        includes: vec![],
    };
    let shop = ChannelConfig {
        name: "shop".into(),
        kind: ChannelKind::Webhook,
        warehouses: BTreeSet::from(["WH".to_owned()]),
        buffer: Buffer::default(),
        cap: None,
        skus: BTreeMap::new(),
        ignore: BTreeSet::new(),
        url: "http://127.0.0.1:9".into(),
        secret: Secret::new("s"),
        reconcile: None,
        pool: None,
    };
    // An empty database: nothing to show, said so.
    std::fs::create_dir(&data).unwrap();
    drop(tally_central::store::Store::open(&data).unwrap());
    assert_eq!(
        run(&["channel", "--data-dir", d, "list"]),
        "no channels (none configured, or none in this database)\n"
    );
    assert_eq!(
        run(&["availability", "--data-dir", d, "A"]),
        "no availability of this SKU was read from Odoo\n"
    );
    let output = central(&["channel", "--data-dir", d, "status", "shop"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("nothing of a channel named \"shop\""));

    let store = tally_central::store::Store::open(&data).unwrap();
    store
        .record_availability(&[stock("A", 10), stock("B", 5)], &[shop])
        .unwrap();
    drop(store);
    let list = run(&["channel", "--data-dir", d, "list"]);
    let mut lines = list.lines();
    assert!(
        lines.next().unwrap().starts_with("CHANNEL  KIND  PENDING"),
        "{list}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["shop", "-", "2"], "{list}");
    let json: serde_json::Value =
        serde_json::from_str(&run(&["channel", "--data-dir", d, "list", "--json"])).unwrap();
    assert_eq!(json["channels"][0]["pending"], 2, "{json}");
    let one = run(&["channel", "--data-dir", d, "status", "shop"]);
    assert!(one.contains("the channel refused nothing"), "{one}");
    let status = run(&["status", "--data-dir", d]);
    assert!(status.contains("CHANNELS\nCHANNEL"), "{status}");
    let availability = run(&["availability", "--data-dir", d, "A"]);
    assert!(
        availability.starts_with("SKU  WAREHOUSE  ON HAND"),
        "{availability}"
    );
    assert!(
        availability.contains("\nA    WH         10"),
        "{availability}"
    );
}

/// An error names the flag, variable or file that set the refused value; a flag beats its
/// variable, which beats the file.
#[test]
fn a_refused_value_is_named_with_the_layer_that_set_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("central.toml");
    std::fs::write(&config, "merge_window = \"3h\"\n").unwrap();
    let data = dir.path().join("data");
    let base = [
        "check-config",
        "--config",
        path(&config),
        "--data-dir",
        path(&data),
        "--admin-token",
        ADMIN_TOKEN,
        "--listen",
        "127.0.0.1:0",
        "--insecure-plaintext",
    ];
    let with = |flag: Option<&str>, env: Option<&str>| {
        let mut args = base.to_vec();
        if let Some(flag) = flag {
            args.extend(["--merge-window", flag]);
        }
        let env: Vec<(&str, &str)> = env.map(|v| ("TALLY_MERGE_WINDOW", v)).into_iter().collect();
        central_with_env(&args, &env)
    };
    let cases = [
        (Some("4h"), Some("5h"), "(set by --merge-window)".to_owned()),
        (None, Some("5h"), "(set by TALLY_MERGE_WINDOW)".to_owned()),
        (None, None, format!("(set in {})", config.display())),
    ];
    for (flag, env, origin) in cases {
        let output = with(flag, env);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(64), "{text}");
        assert!(
            text.contains(&format!("merge_window: must be at most 1h {origin}")),
            "{text}"
        );
    }
    for (flag, env) in [(Some("2s"), Some("5h")), (None, Some("2s"))] {
        let output = with(flag, env);
        assert!(
            output.status.success(),
            "{flag:?} {env:?}: {}",
            stderr(&output)
        );
    }
}

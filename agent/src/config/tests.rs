use super::*;

fn args() -> ConfigArgs {
    ConfigArgs {
        data_dir: Some("/tmp/x".into()),
        warehouse: Some("WH".into()),
        agent_id: Some("wh-1".into()),
        scanner_tokens: vec!["a-token-of-sixteen".into()],
        ..ConfigArgs::default()
    }
}

#[test]
fn defaults_fill_what_is_not_given() {
    let config = args().load().unwrap();
    assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(config.max_log_bytes, 10 << 30);
    assert_eq!(config.max_body_bytes, 4 << 20);
}

#[test]
fn flags_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "data_dir = \"/from/file\"\nwarehouse = \"FILEWH\"\nagent_id = \"file\"\nmax_log_bytes = \"2GiB\"\nscanner_tokens = [\"file-token-0123456789\"]\n",
    )
    .unwrap();
    let from_file = ConfigArgs {
        config: Some(path.clone()),
        ..ConfigArgs::default()
    }
    .load()
    .unwrap();
    assert_eq!(from_file.warehouse, "FILEWH");
    assert_eq!(from_file.max_log_bytes, 2 << 30);
    let overridden = ConfigArgs {
        config: Some(path),
        warehouse: Some("FLAG".into()),
        ..ConfigArgs::default()
    }
    .load()
    .unwrap();
    assert_eq!(overridden.warehouse, "FLAG");
    assert_eq!(overridden.data_dir, PathBuf::from("/from/file"));
}

#[test]
fn errors_name_the_flag_variable_or_file_that_set_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, "max_body_bytes = 10\n").unwrap();
    let from_file = ConfigArgs {
        config: Some(path.clone()),
        ..args()
    };
    assert_eq!(
        from_file.load().unwrap_err().to_string(),
        format!(
            "max_body_bytes: must be between 1KiB and 64MiB (set in {})",
            path.display()
        )
    );
    let flagged = ConfigArgs {
        max_body_bytes: Some("lots".into()),
        ..from_file
    };
    let error = flagged.load().unwrap_err().to_string();
    assert!(
        error.starts_with("max_body_bytes: \"lots\" is not a size")
            && error.ends_with("(set by --max-body-bytes)"),
        "{error}"
    );
    let from_env = ConfigArgs {
        from_env: FromEnv::ids(["max_body_bytes"]),
        ..flagged
    };
    let error = from_env.load().unwrap_err().to_string();
    assert!(error.ends_with("(set by TALLY_MAX_BODY_BYTES)"), "{error}");
}

#[test]
fn bad_values_name_their_key() {
    let cases: Vec<(ConfigArgs, &str)> = vec![
        (
            ConfigArgs {
                data_dir: None,
                ..args()
            },
            "data_dir",
        ),
        (
            ConfigArgs {
                warehouse: Some("W H".into()),
                ..args()
            },
            "warehouse",
        ),
        (
            ConfigArgs {
                agent_id: Some(String::new()),
                ..args()
            },
            "agent_id",
        ),
        (
            ConfigArgs {
                max_log_bytes: Some("10 parsecs".into()),
                ..args()
            },
            "max_log_bytes",
        ),
        (
            ConfigArgs {
                max_log_bytes: Some("1KiB".into()),
                ..args()
            },
            "max_log_bytes",
        ),
        (
            ConfigArgs {
                scanner_tokens: vec![],
                ..args()
            },
            "scanner_tokens",
        ),
        (
            ConfigArgs {
                scanner_tokens: vec!["short".into()],
                ..args()
            },
            "scanner_tokens",
        ),
        (
            ConfigArgs {
                metrics_token: Some("short".into()),
                ..args()
            },
            "metrics_token",
        ),
        (
            // A scraper holding a scanner token could post events.
            ConfigArgs {
                metrics_token: Some(args().scanner_tokens[0].clone()),
                ..args()
            },
            "metrics_token",
        ),
    ];
    for (args, key) in cases {
        match args.load() {
            Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key),
            other => panic!("expected an error for {key}, got {other:?}"),
        }
    }
}

#[test]
fn token_errors_do_not_echo_the_token() {
    let err = ConfigArgs {
        scanner_tokens: vec!["has space in it but long".into()],
        ..args()
    }
    .load()
    .unwrap_err();
    assert!(!err.to_string().contains("has space"));
}

#[test]
fn unknown_file_keys_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, "data_dri = \"/x\"\n").unwrap();
    let err = ConfigArgs {
        config: Some(path),
        ..ConfigArgs::default()
    }
    .load()
    .unwrap_err();
    assert!(err.to_string().contains("data_dri"), "{err}");
}

#[test]
fn the_central_link_needs_url_and_token_and_tls_off_loopback() {
    let with = |url: &str, token: Option<&str>| ConfigArgs {
        central_url: Some(url.into()),
        central_token: token.map(Into::into),
        ..args()
    };
    assert!(args().load().unwrap().central.is_none());
    assert!(
        with("wss://central.example.com:8921/v1/sync", Some("t"))
            .load()
            .unwrap()
            .central
            .is_some()
    );
    assert!(
        with("ws://127.0.0.1:8921/v1/sync", Some("t"))
            .load()
            .unwrap()
            .central
            .is_some()
    );
    for (url, token, key) in [
        ("ws://central.example.com/v1/sync", Some("t"), "central_url"),
        ("https://central.example.com/", Some("t"), "central_url"),
        ("wss://central.example.com/", None, "central_token"),
    ] {
        match with(url, token).load() {
            Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{url}"),
            other => panic!("{url}: {other:?}"),
        }
    }
}

#[test]
fn the_samples_placeholders_are_refused() {
    let placeholder = ConfigArgs {
        scanner_tokens: vec!["CHANGE-ME-to-a-long-random-token".into()],
        ..args()
    };
    let central = ConfigArgs {
        central_url: Some("wss://central.example.com/v1/sync".into()),
        central_token: Some("tly1_CHANGE-ME".into()),
        ..args()
    };
    for (args, key) in [(placeholder, "scanner_tokens"), (central, "central_token")] {
        match args.load() {
            Err(ConfigError::Invalid { key: k, message }) => {
                assert_eq!(k, key);
                assert!(message.contains("placeholder"), "{message}");
            }
            other => panic!("{key}: {other:?}"),
        }
    }
}

#[test]
fn tokens_come_from_files_and_not_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let scanners = dir.path().join("scanner.token");
    std::fs::write(
        &scanners,
        "first-token-0123456789\n\nsecond-token-0123456789\n",
    )
    .unwrap();
    let central = dir.path().join("central.token");
    std::fs::write(&central, "tly1_from-a-file\n").unwrap();
    let from_files = ConfigArgs {
        scanner_tokens: vec![],
        scanner_token_file: Some(scanners.clone()),
        central_url: Some("wss://central.example.com/v1/sync".into()),
        central_token_file: Some(central.clone()),
        ..args()
    }
    .load()
    .unwrap();
    let tokens: Vec<&str> = from_files
        .scanner_tokens
        .iter()
        .map(Secret::expose)
        .collect();
    assert_eq!(
        tokens,
        ["first-token-0123456789", "second-token-0123456789"]
    );
    assert_eq!(
        from_files.central.unwrap().token.expose(),
        "tly1_from-a-file"
    );
    let both = ConfigArgs {
        scanner_token_file: Some(scanners),
        ..args()
    };
    assert!(matches!(
        both.load(),
        Err(ConfigError::Invalid {
            key: "scanner_tokens",
            ..
        })
    ));

    let status = StatusArgs {
        scanner_token_file: Some(dir.path().join("scanner.token")),
        ..StatusArgs::default()
    };
    let (url, token) = status.target().unwrap();
    assert_eq!(url, format!("http://{DEFAULT_LISTEN}"));
    assert_eq!(token.expose(), "first-token-0123456789");
}

#[test]
fn status_and_export_read_only_what_they_need_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    // No warehouse, agent id or central link: status and export do not need them.
    std::fs::write(
        &path,
        "data_dir = \"/var/lib/x\"\nlisten = \"0.0.0.0:9000\"\nscanner_tokens = [\"file-token-0123456789\"]\n",
    )
    .unwrap();
    let (url, token) = StatusArgs {
        config: Some(path.clone()),
        ..StatusArgs::default()
    }
    .target()
    .unwrap();
    assert_eq!(url, "http://127.0.0.1:9000");
    assert_eq!(token.expose(), "file-token-0123456789");
    let export = DataDirArgs {
        config: Some(path),
        data_dir: None,
    };
    assert_eq!(export.data_dir().unwrap(), PathBuf::from("/var/lib/x"));
    assert!(StatusArgs::default().target().is_err());
}

#[test]
fn sizes_parse() {
    assert_eq!(parse_size("1048576"), Ok(1 << 20));
    assert_eq!(parse_size("512KiB"), Ok(512 << 10));
    assert_eq!(parse_size("10GiB"), Ok(10 << 30));
    assert_eq!(parse_size("3 MB"), Ok(3_000_000));
    assert!(parse_size("GiB").is_err());
    assert!(parse_size("99999999999TiB").is_err());
}

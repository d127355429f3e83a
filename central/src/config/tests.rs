use super::*;

fn args() -> ConfigArgs {
    ConfigArgs {
        data_dir: Some("/tmp/c".into()),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        insecure_plaintext: true,
        admin_token: Some("admin-token-0123456789".into()),
        ..ConfigArgs::default()
    }
}

/// The key `args` is refused for.
fn refused(args: ConfigArgs) -> &'static str {
    match args.load() {
        Err(ConfigError::Invalid { key, .. }) => key,
        other => panic!("expected a refused key, got {other:?}"),
    }
}

#[test]
fn plaintext_is_for_loopback_only() {
    assert!(matches!(
        args().load().unwrap().transport,
        Transport::Plaintext
    ));
    assert_eq!(
        refused(ConfigArgs {
            listen: Some("0.0.0.0:8921".parse().unwrap()),
            ..args()
        }),
        "insecure_plaintext"
    );
    assert_eq!(
        refused(ConfigArgs {
            insecure_plaintext: false,
            ..args()
        }),
        "tls_cert"
    );
}

#[test]
fn the_read_only_token_is_checked_and_differs_from_the_admin_token() {
    let config = ConfigArgs {
        read_token: Some("read-token-0123456789".into()),
        ..args()
    }
    .load()
    .unwrap();
    assert_eq!(config.read_token.unwrap().expose(), "read-token-0123456789");
    assert!(args().load().unwrap().read_token.is_none());
    for bad in ["short", "admin-token-0123456789"] {
        assert_eq!(
            refused(ConfigArgs {
                read_token: Some(bad.into()),
                ..args()
            }),
            "read_token"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("read.token");
    std::fs::write(&file, "read-token-from-a-file\n").unwrap();
    let local = ConfigArgs {
        read_token_file: Some(file),
        ..ConfigArgs::default()
    };
    let local = ConfigArgs {
        data_dir: Some("/tmp/c".into()),
        ..local
    }
    .load_local()
    .unwrap();
    assert_eq!(local.read_token.unwrap().expose(), "read-token-from-a-file");
}

#[test]
fn the_admin_api_leaves_loopback_only_over_tls() {
    let outside = ConfigArgs {
        admin_listen: Some("10.0.0.1:8922".parse().unwrap()),
        admin_tls: true,
        ..args()
    };
    // TLS for the admin API needs the sync listener's certificate and key.
    assert_eq!(refused(outside.clone()), "admin_tls");
    let config = ConfigArgs {
        insecure_plaintext: false,
        tls_cert: Some("/tmp/cert.pem".into()),
        tls_key: Some("/tmp/key.pem".into()),
        ..outside
    }
    .load()
    .unwrap();
    assert!(config.admin_tls);
    let local = ConfigArgs {
        data_dir: Some("/tmp/c".into()),
        admin_listen: Some("10.0.0.1:8922".parse().unwrap()),
        admin_tls: true,
        ..ConfigArgs::default()
    }
    .load_local()
    .unwrap();
    assert_eq!(local.admin_url(), "https://10.0.0.1:8922");
}

#[test]
fn the_admin_api_stays_on_loopback() {
    assert_eq!(
        refused(ConfigArgs {
            admin_listen: Some("10.0.0.1:1".parse().unwrap()),
            ..args()
        }),
        "admin_listen"
    );
    assert_eq!(
        refused(ConfigArgs {
            admin_token: Some("short".into()),
            ..args()
        }),
        "admin_token"
    );
}

#[test]
fn odoo_needs_tls_off_loopback_and_all_its_keys() {
    let with = |url: &str| ConfigArgs {
        odoo_url: Some(url.into()),
        odoo_db: Some("prod".into()),
        odoo_api_key: Some("k".into()),
        ..args()
    };
    assert!(args().load().unwrap().odoo.is_none());
    assert!(
        with("https://erp.example.com")
            .load()
            .unwrap()
            .odoo
            .is_some()
    );
    assert!(with("http://127.0.0.1:8069").load().unwrap().odoo.is_some());
    assert_eq!(refused(with("http://erp.example.com")), "odoo_url");
    assert_eq!(
        refused(ConfigArgs {
            odoo_db: None,
            ..with("https://erp.example.com")
        }),
        "odoo_db"
    );
}

#[test]
fn the_samples_placeholders_are_refused() {
    assert_eq!(
        refused(ConfigArgs {
            admin_token: Some("CHANGE-ME-to-a-long-random-token".into()),
            ..args()
        }),
        "admin_token"
    );
    assert_eq!(
        refused(ConfigArgs {
            odoo_url: Some("https://erp.example.com".into()),
            odoo_db: Some("prod".into()),
            odoo_api_key: Some("CHANGE-ME".into()),
            ..args()
        }),
        "odoo_api_key"
    );
}

#[test]
fn secrets_come_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin.token");
    std::fs::write(&token, "admin-token-from-a-file\n").unwrap();
    let key = dir.path().join("odoo.key");
    std::fs::write(&key, "odoo-key\n").unwrap();
    let config = ConfigArgs {
        admin_token: None,
        admin_token_file: Some(token.clone()),
        odoo_url: Some("https://erp.example.com".into()),
        odoo_db: Some("prod".into()),
        odoo_api_key_file: Some(key),
        ..args()
    }
    .load()
    .unwrap();
    assert_eq!(config.admin_token.expose(), "admin-token-from-a-file");
    assert_eq!(config.odoo.unwrap().api_key.expose(), "odoo-key");
    assert_eq!(
        refused(ConfigArgs {
            admin_token_file: Some(token),
            ..args()
        }),
        "admin_token"
    );
}

#[test]
fn managing_agents_needs_no_tls_material_nor_a_token() {
    let local = ConfigArgs {
        data_dir: Some("/tmp/c".into()),
        ..ConfigArgs::default()
    }
    .load_local()
    .unwrap();
    assert!(local.admin_token.is_none());
    assert_eq!(local.admin_listen.to_string(), "127.0.0.1:8922");
    assert!(ConfigArgs::default().load_local().is_err());
}

#[test]
fn the_merge_window_defaults_to_a_second_and_is_bounded() {
    assert_eq!(args().load().unwrap().merge, MergeSettings::default());
    let with = |text: &str| ConfigArgs {
        merge_window: Some(text.into()),
        ..args()
    };
    assert_eq!(with("0s").load().unwrap().merge.window, Duration::ZERO);
    for writes in [0, 65] {
        let args = ConfigArgs {
            odoo_max_writes: Some(writes),
            ..args()
        };
        assert_eq!(refused(args), "odoo_max_writes");
    }
    for bad in ["2d", "soon"] {
        assert_eq!(refused(with(bad)), "merge_window");
    }
}

#[test]
fn pools_are_read_from_the_file_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("central.toml");
    let channel = |name: &str, warehouse: &str| {
        format!(
            "[[channels]]\nname = \"{name}\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nwarehouses = [\"{warehouse}\"]\nsecret_env = \"PATH\"\n"
        )
    };
    let load = |pools: &str| {
        let text = [
            channel("shop", "WH"),
            channel("market", "WH"),
            channel("far", "WH2"),
        ]
        .concat();
        std::fs::write(&file, format!("{text}{pools}")).unwrap();
        ConfigArgs {
            config: Some(file.clone()),
            ..args()
        }
        .load()
    };
    let config = load("[[pools]]\nname = \"web\"\nmembers = { shop = 3, market = 1 }\n").unwrap();
    let pooled: Vec<_> = config
        .channels
        .iter()
        .map(|c| c.pool.as_ref().map(|p| p.name.as_str()))
        .collect();
    assert_eq!(pooled, [Some("web"), Some("web"), None]);
    let error = load("[[pools]]\nname = \"web\"\nmembers = { shop = 1, far = 1 }\n").unwrap_err();
    assert!(
        matches!(&error, ConfigError::Invalid { key: "pools", message } if message.contains("same warehouses") && message.contains("\"far\"")),
        "{error}"
    );
    let error = load("[[pools]]\nname = \"web\"\nmembers = { shop = -1 }\n").unwrap_err();
    assert!(
        error.to_string().contains("members = { shop = -1 }"),
        "{error}"
    );
    let error = load("[[pools]]\nname = \"web\"\nmembers = { shop = 0 }\n").unwrap_err();
    assert!(error.to_string().contains("members.shop"), "{error}");
}

#[test]
fn flags_beat_the_file_and_errors_name_where_the_value_was_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("central.toml");
    std::fs::write(&path, "max_connections = 7\ntoken_grace = \"a while\"\n").unwrap();
    let with_file = ConfigArgs {
        config: Some(path.clone()),
        ..args()
    };
    let error = with_file.load().unwrap_err().to_string();
    assert!(
        error.starts_with("token_grace: \"a while\" is not a duration")
            && error.ends_with(&format!("(set in {})", path.display())),
        "{error}"
    );
    // A flag beats the file's value; the file's other values stay.
    let flagged = ConfigArgs {
        token_grace: Some("2h".into()),
        ..with_file.clone()
    };
    let config = flagged.load().unwrap();
    assert_eq!(config.token_grace, Duration::from_secs(2 * 3600));
    assert_eq!(config.max_connections, 7);
    // The same value refused, named by the flag, or by the variable when clap read it there.
    let zero = ConfigArgs {
        max_connections: Some(0),
        ..flagged
    };
    assert_eq!(
        zero.load().unwrap_err().to_string(),
        "max_connections: must be at least 1 (set by --max-connections)"
    );
    let from_env = ConfigArgs {
        from_env: FromEnv::ids(["max_connections"]),
        ..zero
    };
    assert_eq!(
        from_env.load().unwrap_err().to_string(),
        "max_connections: must be at least 1 (set by TALLY_MAX_CONNECTIONS)"
    );
}

#[test]
fn a_secret_given_directly_and_in_a_file_names_both() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin.token");
    std::fs::write(&file, "admin-token-from-a-file\n").unwrap();
    let both = ConfigArgs {
        admin_token_file: Some(file),
        from_env: FromEnv::ids(["admin_token"]),
        ..args()
    };
    assert_eq!(
        both.load().unwrap_err().to_string(),
        "admin_token: give it either directly (TALLY_ADMIN_TOKEN) or in a file (--admin-token-file), not both"
    );
}

//! Backups of central's store and their restore (issue 14, item 5): backups of a newer format
//! or of nothing are refused with 65. A running central's backup, made through its admin API,
//! is tested with the process harness in tests/tests/backup.rs.

use std::process::Command;

use redb::Database;
use tally_central::store::backup::{RestoreError, restore};
use tally_central::store::{STORE_FILE, STORE_FORMAT, Store};
use tally_service::datafile::{EXIT_DATAERR, FORMAT_TABLE};

fn central_cli(args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tally-central"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TALLY_") {
            command.env_remove(name);
        }
    }
    command.args(args).output().unwrap()
}

#[test]
fn unusable_backups_are_refused_with_exit_65_and_leave_the_store_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    let store = Store::open(&source).unwrap();
    store.add_agent("wh-1", "WH").unwrap();
    let future = dir.path().join("future.backup");
    store.backup(&future).unwrap();
    drop(store);
    {
        let db = Database::open(&future).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(FORMAT_TABLE)
            .unwrap()
            .insert("version", STORE_FORMAT.current + 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let empty = dir.path().join("empty.redb");
    drop(Database::create(&empty).unwrap());

    let target = dir.path().join("target");
    std::fs::create_dir_all(&target).unwrap();
    drop(Store::open(&target).unwrap());
    for bad in [&future, &empty] {
        let error = restore(&target, bad).unwrap_err();
        assert!(error.is_data_error(), "{error}");
        let output = central_cli(&[
            "restore",
            "--data-dir",
            target.to_str().unwrap(),
            "--from",
            bad.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(EXIT_DATAERR.into()), "{stderr}");
        assert!(stderr.contains(&bad.display().to_string()), "{stderr}");
    }
    assert!(matches!(
        restore(&target, &dir.path().join("missing")),
        Err(RestoreError::Io { .. })
    ));
    assert_eq!(
        Store::open(&target).unwrap().list_agents().unwrap().len(),
        0
    );
    let left: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, [STORE_FILE]);
}

//! Central's store's data format version (issue 14, item 4): a store written before versions
//! were recorded opens as version 1 with its agents, and a store of a newer format is refused by
//! the library and by the CLI (exit 65), naming the file and both versions.

use std::path::Path;
use std::process::Command;

use redb::{Database, ReadableDatabase};
use tally_central::store::{STORE_FILE, STORE_FORMAT, Store, StoreError};
use tally_service::datafile::{EXIT_DATAERR, FORMAT_TABLE, FormatError};

/// A store as the release before data format versions left it: its tables and an agent, and no
/// `format` table (written by today's code, whose only difference is that table, then dropped).
fn write_unversioned_store(data_dir: &Path) {
    let store = Store::open(data_dir).unwrap();
    store.add_agent("wh-1", "WH").unwrap();
    drop(store);
    let db = Database::open(data_dir.join(STORE_FILE)).unwrap();
    let txn = db.begin_write().unwrap();
    assert!(txn.delete_table(FORMAT_TABLE).unwrap());
    txn.commit().unwrap();
}

fn recorded_version(data_dir: &Path) -> Option<u64> {
    let db = Database::open(data_dir.join(STORE_FILE)).unwrap();
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(FORMAT_TABLE).ok()?;
    table.get("version").unwrap().map(|v| v.value())
}

fn set_version(data_dir: &Path, version: u64) {
    let db = Database::open(data_dir.join(STORE_FILE)).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(FORMAT_TABLE)
        .unwrap()
        .insert("version", version)
        .unwrap();
    txn.commit().unwrap();
}

#[test]
fn a_store_without_a_version_opens_as_version_1_with_its_agents() {
    let dir = tempfile::tempdir().unwrap();
    write_unversioned_store(dir.path());
    assert_eq!(recorded_version(dir.path()), None);
    assert_eq!(Store::check_format(dir.path()).unwrap(), Some(1));

    let store = Store::open(dir.path()).unwrap();
    let agents = store.list_agents().unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].agent_id, "wh-1");
    drop(store);
    assert_eq!(recorded_version(dir.path()), Some(STORE_FORMAT.current));
}

#[test]
fn a_store_of_a_newer_format_is_refused_by_the_library_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    write_unversioned_store(dir.path());
    let future = STORE_FORMAT.current + 1;
    set_version(dir.path(), future);

    let error = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            &error,
            StoreError::Format(FormatError::TooNew { found, supported, .. })
                if *found == future && *supported == STORE_FORMAT.current
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains(&dir.path().join(STORE_FILE).display().to_string()),
        "{error}"
    );
    assert_eq!(recorded_version(dir.path()), Some(future));

    let data_dir = dir.path().to_str().unwrap();
    let expected = format!(
        "has data format version {future}, but this tally supports versions up to {}",
        STORE_FORMAT.current
    );
    for args in [
        &[
            "check-config",
            "--data-dir",
            data_dir,
            "--admin-token",
            "admin-token-0123456789",
            "--insecure-plaintext",
            "--listen",
            "127.0.0.1:0",
        ][..],
        &[
            "run",
            "--data-dir",
            data_dir,
            "--admin-token",
            "admin-token-0123456789",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--insecure-plaintext",
        ],
        &["agent", "--data-dir", data_dir, "list"],
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tally-central"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TALLY_") {
                command.env_remove(name);
            }
        }
        let output = command.args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(EXIT_DATAERR.into()),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains(&expected), "{args:?}: {stderr}");
    }
}

/// Format 2 indexes client event ids: a store of format 1 (a journal, no index) is migrated
/// when it is opened, and its events are then found by id, the latest log's first.
#[tokio::test]
async fn a_format_1_store_gets_its_event_ids_indexed_when_opened() {
    use tally_protocol::{Event, EventKind, LogId, LoggedEvent, Qty, Timestamp};
    let dir = tempfile::tempdir().unwrap();
    let event = |seq: u64, id: &str| LoggedEvent {
        seq,
        received_at: Timestamp::from_micros(seq as i64),
        event: Event {
            id: Some(id.to_owned()),
            ..Event::new(EventKind::Receipt, "S", Qty::from_units(1))
        },
    };
    let (old, new) = (LogId([1; 16]), LogId([2; 16]));
    {
        let store = Store::open(dir.path()).unwrap();
        let (journal, thread) = tally_central::store::journal::spawn(store.clone()).unwrap();
        let agent: std::sync::Arc<str> = "wh-1".into();
        journal
            .append(agent.clone(), old, vec![event(1, "a"), event(2, "b")])
            .await
            .unwrap();
        journal
            .append(agent.clone(), new, vec![event(1, "b")])
            .await
            .unwrap();
        drop(journal);
        thread.join().unwrap();
    }
    // Format 1 had no index.
    let db = Database::open(dir.path().join(STORE_FILE)).unwrap();
    let txn = db.begin_write().unwrap();
    let ids: redb::TableDefinition<(&str, &str), (u128, u64)> =
        redb::TableDefinition::new("journal_ids");
    assert!(txn.delete_table(ids).unwrap());
    txn.commit().unwrap();
    drop(db);
    set_version(dir.path(), 1);

    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.find_event_id("wh-1", "a").unwrap(), Some((old, 1)));
    assert_eq!(store.find_event_id("wh-1", "b").unwrap(), Some((new, 1)));
    assert_eq!(store.find_event_id("wh-1", "c").unwrap(), None);
    drop(store);
    assert_eq!(recorded_version(dir.path()), Some(2));
}

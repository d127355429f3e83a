//! The event log's data format version (issue 14, item 4): a log written before versions were
//! recorded opens as version 1 with its events and log id, and a log of a newer format is
//! refused by the library and by the CLI (exit 65), naming the file and both versions.

use std::path::Path;
use std::process::Command;

use redb::{Database, ReadableDatabase, TableDefinition};
use tally_agent::log::{LOG_FILE, LOG_FORMAT, Log, LogError};
use tally_protocol::{Event, EventKind, LogId, LoggedEvent, Qty, Timestamp, encode_record};
use tally_service::datafile::{EXIT_DATAERR, FORMAT_TABLE, FormatError};

// The tables as releases before data format versions declared them.
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const IDS: TableDefinition<&str, &[u8]> = TableDefinition::new("ids");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const OLD_LOG_ID: [u8; 16] = *b"an-old-log-id-16";

/// A log as the release before data format versions left it: two events, an acknowledgement,
/// a log id, and no `format` table.
fn write_unversioned_log(data_dir: &Path) {
    let db = Database::create(data_dir.join(LOG_FILE)).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut events = txn.open_table(EVENTS).unwrap();
        for seq in 1..=2 {
            let record = LoggedEvent {
                seq,
                received_at: Timestamp::from_micros(1_700_000_000_000_000 + seq as i64),
                event: Event {
                    id: Some(format!("scan-{seq}")),
                    ..Event::new(EventKind::Receipt, "SKU-1", Qty::from_units(seq as i64))
                },
            };
            events
                .insert(seq, encode_record(&record).as_slice())
                .unwrap();
        }
        txn.open_table(IDS).unwrap();
        let mut meta = txn.open_table(META).unwrap();
        meta.insert("log_id", OLD_LOG_ID.as_slice()).unwrap();
        meta.insert("acked_seq", 1u64.to_be_bytes().as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
}

fn recorded_version(data_dir: &Path) -> Option<u64> {
    let db = Database::open(data_dir.join(LOG_FILE)).unwrap();
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(FORMAT_TABLE).ok()?;
    table.get("version").unwrap().map(|v| v.value())
}

fn set_version(data_dir: &Path, version: u64) {
    let db = Database::open(data_dir.join(LOG_FILE)).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(FORMAT_TABLE)
        .unwrap()
        .insert("version", version)
        .unwrap();
    txn.commit().unwrap();
}

#[test]
fn a_log_without_a_version_opens_as_version_1_with_its_events_and_log_id() {
    let dir = tempfile::tempdir().unwrap();
    write_unversioned_log(dir.path());
    assert_eq!(Log::check_format(dir.path()).unwrap(), Some(1));
    assert_eq!(
        recorded_version(dir.path()),
        None,
        "checking writes nothing"
    );

    let log = Log::open(dir.path()).unwrap();
    assert_eq!(log.log_id(), LogId(OLD_LOG_ID));
    let records = log.read_after(0, 10).unwrap();
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(records[1].event.id.as_deref(), Some("scan-2"));
    let status = log.status().unwrap();
    assert_eq!((status.last_seq, status.acked_seq), (2, 1));
    drop(log);
    assert_eq!(recorded_version(dir.path()), Some(LOG_FORMAT.current));
}

#[test]
fn a_new_log_records_the_current_version() {
    let dir = tempfile::tempdir().unwrap();
    drop(Log::open(dir.path()).unwrap());
    assert_eq!(recorded_version(dir.path()), Some(LOG_FORMAT.current));
}

#[test]
fn a_log_of_a_newer_format_is_refused_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    write_unversioned_log(dir.path());
    let future = LOG_FORMAT.current + 1;
    set_version(dir.path(), future);

    let error = Log::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            &error,
            LogError::Format(FormatError::TooNew { found, supported, .. })
                if *found == future && *supported == LOG_FORMAT.current
        ),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.contains(&dir.path().join(LOG_FILE).display().to_string()),
        "{text}"
    );
    assert!(matches!(
        Log::check_format(dir.path()),
        Err(LogError::Format(FormatError::TooNew { .. }))
    ));
    assert_eq!(recorded_version(dir.path()), Some(future));
}

#[test]
fn the_cli_refuses_a_log_of_a_newer_format_with_exit_65() {
    let dir = tempfile::tempdir().unwrap();
    write_unversioned_log(dir.path());
    set_version(dir.path(), LOG_FORMAT.current + 1);
    let token = dir.path().join("scanner.token");
    std::fs::write(&token, "scanner-token-0123456789\n").unwrap();
    let data_dir = dir.path().to_str().unwrap();
    for args in [
        &["export", "--data-dir", data_dir][..],
        &[
            "check-config",
            "--data-dir",
            data_dir,
            "--warehouse",
            "WH",
            "--agent-id",
            "wh-1",
            "--scanner-token-file",
            token.to_str().unwrap(),
        ],
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tally-agent"));
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
        assert!(
            stderr.contains(&format!(
                "has data format version {}, but this tally supports versions up to {}",
                LOG_FORMAT.current + 1,
                LOG_FORMAT.current
            )),
            "{stderr}"
        );
    }
}

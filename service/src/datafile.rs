//! The data format version every redb file of Tally records, its migrations, and consistent
//! copies of a file's tables (backups).
//!
//! A file records its version in the `format` table (`"version"` → `u64`), written in the
//! transaction that creates the file. Files written before versions existed have no such
//! table: they are version 1. Opening a file goes through [`upgrade`] inside the write
//! transaction that opens it, so a migration and the new version number are committed together
//! or not at all: a kill during a migration leaves the old format, never half of the new one.

use std::path::{Path, PathBuf};

use redb::{
    Database, Key, ReadTransaction, ReadableTable, TableDefinition, TableHandle, Value,
    WriteTransaction,
};

/// The table holding the data format version.
pub const FORMAT_TABLE: TableDefinition<&str, u64> = TableDefinition::new("format");
const VERSION_KEY: &str = "version";

/// The version of files written before versions were recorded.
pub const UNVERSIONED: u64 = 1;

/// Exit code when a data file cannot be used as it is (a newer format, a bad backup): 65,
/// sysexits' `EX_DATAERR`, apart from a bad configuration (64) and other failures (1).
pub const EXIT_DATAERR: u8 = 65;

/// One step of a file's history: rewrites the tables of version `to - 1` into version `to`'s
/// inside the opening write transaction.
pub type Migration = fn(&WriteTransaction) -> Result<(), redb::Error>;

/// What a kind of file (the agent's log, central's store) is at this release.
#[derive(Debug, Clone, Copy)]
pub struct Format {
    /// What the file is, for messages: "event log", "central store".
    pub what: &'static str,
    pub current: u64,
    /// `migrations[i]` turns version `i + 1` into version `i + 2`; there are `current - 1`.
    pub migrations: &'static [Migration],
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "the {what} {} has data format version {found}, but this tally supports versions up to {supported}: it was written by a newer release of Tally; run that release, or restore a backup made with this one",
        path.display()
    )]
    TooNew {
        what: &'static str,
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    #[error("the {what} {} has data format version {found}, which no release of Tally wrote", path.display())]
    Unknown {
        what: &'static str,
        path: PathBuf,
        found: u64,
    },
    #[error("migrating the {what} {} from data format version {from} to {to} failed (the file is left at version {from}): {error}", path.display())]
    Migration {
        what: &'static str,
        path: PathBuf,
        from: u64,
        to: u64,
        error: Box<redb::Error>,
    },
    #[error("storage error on {} while reading its data format version: {error}", path.display())]
    Storage {
        path: PathBuf,
        error: Box<redb::Error>,
    },
}

/// What [`upgrade`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// An empty file, now recording the current version.
    Created,
    /// Already at the current version.
    Current,
    /// Migrated from this version (effective once the transaction commits).
    Migrated { from: u64 },
}

/// Checks the version of the file `txn` writes, migrates older data and records the current
/// version. Call it first in the transaction that opens the file, and commit that transaction:
/// on any error, drop it and nothing of the migration is kept.
pub fn upgrade(
    txn: &WriteTransaction,
    path: &Path,
    format: &Format,
) -> Result<Opened, FormatError> {
    debug_assert_eq!(format.migrations.len() as u64 + 1, format.current);
    let storage = |error: redb::Error| FormatError::Storage {
        path: path.to_owned(),
        error: Box::new(error),
    };
    let empty = txn
        .list_tables()
        .map_err(|e| storage(e.into()))?
        .next()
        .is_none();
    let mut table = txn
        .open_table(FORMAT_TABLE)
        .map_err(|e| storage(e.into()))?;
    if empty {
        table
            .insert(VERSION_KEY, format.current)
            .map_err(|e| storage(e.into()))?;
        return Ok(Opened::Created);
    }
    let found = table
        .get(VERSION_KEY)
        .map_err(|e| storage(e.into()))?
        .map_or(UNVERSIONED, |v| v.value());
    check(path, format, found)?;
    if found == format.current {
        if table
            .get(VERSION_KEY)
            .map_err(|e| storage(e.into()))?
            .is_none()
        {
            table
                .insert(VERSION_KEY, format.current)
                .map_err(|e| storage(e.into()))?;
        }
        return Ok(Opened::Current);
    }
    // A migration may open any table, the format table included: let it go first.
    drop(table);
    for from in found..format.current {
        let migrate = format.migrations[(from - 1) as usize];
        migrate(txn).map_err(|error| FormatError::Migration {
            what: format.what,
            path: path.to_owned(),
            from: found,
            to: from + 1,
            error: Box::new(error),
        })?;
    }
    txn.open_table(FORMAT_TABLE)
        .map_err(|e| storage(e.into()))?
        .insert(VERSION_KEY, format.current)
        .map_err(|e| storage(e.into()))?;
    Ok(Opened::Migrated { from: found })
}

fn check(path: &Path, format: &Format, found: u64) -> Result<(), FormatError> {
    if found == 0 {
        return Err(FormatError::Unknown {
            what: format.what,
            path: path.to_owned(),
            found,
        });
    }
    if found > format.current {
        return Err(FormatError::TooNew {
            what: format.what,
            path: path.to_owned(),
            found,
            supported: format.current,
        });
    }
    Ok(())
}

/// The version recorded in a file, read without writing ([`UNVERSIONED`] when it has none), and
/// refused like [`upgrade`] would when this release cannot open it.
pub fn version(txn: &ReadTransaction, path: &Path, format: &Format) -> Result<u64, FormatError> {
    let storage = |error: redb::Error| FormatError::Storage {
        path: path.to_owned(),
        error: Box::new(error),
    };
    let found = match txn.open_table(FORMAT_TABLE) {
        Ok(table) => table
            .get(VERSION_KEY)
            .map_err(|e| storage(e.into()))?
            .map_or(UNVERSIONED, |v| v.value()),
        Err(redb::TableError::TableDoesNotExist(_)) => UNVERSIONED,
        Err(e) => return Err(storage(e.into())),
    };
    check(path, format, found)?;
    Ok(found)
}

/// Copies every row of `definition` as `from` sees it into `to`; returns the rows copied. A
/// table `from` lacks is left out.
pub fn copy_table<K: Key + 'static, V: Value + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    definition: TableDefinition<K, V>,
) -> Result<u64, redb::Error> {
    let source = match from.open_table(definition) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut target = to.open_table(definition)?;
    let mut rows = 0;
    for entry in source.iter()? {
        let (key, value) = entry?;
        target.insert(key.value(), value.value())?;
        rows += 1;
    }
    Ok(rows)
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cannot write the backup {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("storage error while copying into {}: {error}", path.display())]
    Storage { path: PathBuf, error: redb::Error },
    #[error(
        "table {table} is in the data but unknown to this release's backup: refusing an incomplete copy"
    )]
    UnknownTable { table: String },
}

/// Writes a consistent copy of what `snapshot` sees into a new redb file at `to`: the copy is
/// built in a temporary file beside it (0600), fsynced, and renamed over `to`, so `to` is
/// either absent, the previous file, or the whole copy. `copy` copies each table (with
/// [`copy_table`]) and returns the names it copied; a table in the data that it did not copy
/// fails the backup rather than leave it out silently. Returns the rows copied.
pub fn write_copy(
    snapshot: &ReadTransaction,
    to: &Path,
    copy: impl FnOnce(
        &ReadTransaction,
        &WriteTransaction,
    ) -> Result<(Vec<&'static str>, u64), redb::Error>,
) -> Result<u64, BackupError> {
    let io = |error: std::io::Error| BackupError::Io {
        path: to.to_owned(),
        error,
    };
    let storage = |error: redb::Error| BackupError::Storage {
        path: to.to_owned(),
        error,
    };
    let dir = match to.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = to.file_name().ok_or_else(|| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file name",
        ))
    })?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = dir.join(temp_name);
    let _ = std::fs::remove_file(&temp);
    crate::create_private_file(&temp).map_err(io)?;
    let result = (|| {
        let db = Database::create(&temp).map_err(|e| storage(e.into()))?;
        let txn = db.begin_write().map_err(|e| storage(e.into()))?;
        let (copied, rows) = copy(snapshot, &txn).map_err(storage)?;
        for table in snapshot.list_tables().map_err(|e| storage(e.into()))? {
            if !copied.contains(&table.name()) {
                return Err(BackupError::UnknownTable {
                    table: table.name().to_owned(),
                });
            }
        }
        txn.commit().map_err(|e| storage(e.into()))?;
        drop(db);
        std::fs::File::open(&temp)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        std::fs::rename(&temp, to).map_err(io)?;
        // The rename is durable once the directory is.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(rows)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableDatabase;

    const ITEMS: TableDefinition<&str, u64> = TableDefinition::new("items");
    const ITEMS_V2: TableDefinition<&str, &str> = TableDefinition::new("items_v2");

    /// Version 2 of a made-up file: `items`' counts become text in `items_v2`.
    fn to_v2(txn: &WriteTransaction) -> Result<(), redb::Error> {
        let rows: Vec<(String, u64)> = {
            let old = txn.open_table(ITEMS)?;
            old.iter()?
                .map(|e| e.map(|(k, v)| (k.value().to_owned(), v.value())))
                .collect::<Result<_, _>>()?
        };
        let mut new = txn.open_table(ITEMS_V2)?;
        for (k, v) in &rows {
            new.insert(k.as_str(), v.to_string().as_str())?;
        }
        drop(new);
        txn.delete_table(ITEMS)?;
        Ok(())
    }

    fn failing(txn: &WriteTransaction) -> Result<(), redb::Error> {
        txn.open_table(ITEMS_V2)?.insert("half", "done")?;
        Err(redb::Error::Corrupted(
            "a migration that fails half way".into(),
        ))
    }

    const V1: Format = Format {
        what: "test file",
        current: 1,
        migrations: &[],
    };
    const V2: Format = Format {
        what: "test file",
        current: 2,
        migrations: &[to_v2],
    };
    const V2_FAILING: Format = Format {
        what: "test file",
        current: 2,
        migrations: &[failing],
    };

    /// A file as releases before data format versions wrote it: tables, no `format`.
    fn legacy(path: &Path) -> Database {
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(ITEMS).unwrap().insert("A", 3).unwrap();
        txn.commit().unwrap();
        db
    }

    fn open(db: &Database, path: &Path, format: &Format) -> Result<Opened, FormatError> {
        let txn = db.begin_write().unwrap();
        let opened = upgrade(&txn, path, format)?;
        txn.commit().unwrap();
        Ok(opened)
    }

    fn read_version(db: &Database, path: &Path, format: &Format) -> Result<u64, FormatError> {
        version(&db.begin_read().unwrap(), path, format)
    }

    #[test]
    fn a_new_file_records_the_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.redb");
        let db = Database::create(&path).unwrap();
        assert_eq!(open(&db, &path, &V2).unwrap(), Opened::Created);
        assert_eq!(read_version(&db, &path, &V2).unwrap(), 2);
        assert_eq!(open(&db, &path, &V2).unwrap(), Opened::Current);
    }

    #[test]
    fn a_file_without_a_version_is_version_1_and_gets_it_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.redb");
        let db = legacy(&path);
        assert_eq!(read_version(&db, &path, &V1).unwrap(), 1);
        assert_eq!(open(&db, &path, &V1).unwrap(), Opened::Current);
        let txn = db.begin_read().unwrap();
        let format = txn.open_table(FORMAT_TABLE).unwrap();
        assert_eq!(format.get(VERSION_KEY).unwrap().unwrap().value(), 1);
        assert_eq!(
            txn.open_table(ITEMS)
                .unwrap()
                .get("A")
                .unwrap()
                .unwrap()
                .value(),
            3
        );
    }

    #[test]
    fn an_older_file_is_migrated_in_the_opening_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.redb");
        let db = legacy(&path);
        assert_eq!(open(&db, &path, &V2).unwrap(), Opened::Migrated { from: 1 });
        assert_eq!(read_version(&db, &path, &V2).unwrap(), 2);
        let txn = db.begin_read().unwrap();
        assert_eq!(
            txn.open_table(ITEMS_V2)
                .unwrap()
                .get("A")
                .unwrap()
                .unwrap()
                .value(),
            "3"
        );
        assert!(txn.open_table(ITEMS).is_err());
    }

    #[test]
    fn a_failed_migration_leaves_the_old_format_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.redb");
        let db = legacy(&path);
        let error = open(&db, &path, &V2_FAILING).unwrap_err();
        assert!(error.to_string().contains("left at version 1"), "{error}");
        let txn = db.begin_read().unwrap();
        assert!(txn.open_table(FORMAT_TABLE).is_err(), "no version written");
        assert!(
            txn.open_table(ITEMS_V2).is_err(),
            "nothing of the migration"
        );
        assert_eq!(
            txn.open_table(ITEMS)
                .unwrap()
                .get("A")
                .unwrap()
                .unwrap()
                .value(),
            3
        );
        drop(txn);
        // The release with the working migration still opens it.
        assert_eq!(open(&db, &path, &V2).unwrap(), Opened::Migrated { from: 1 });
    }

    #[test]
    fn a_newer_file_is_refused_naming_the_file_and_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.redb");
        let db = Database::create(&path).unwrap();
        open(&db, &path, &V2).unwrap();
        let error = open(&db, &path, &V1).unwrap_err();
        assert!(matches!(
            error,
            FormatError::TooNew {
                found: 2,
                supported: 1,
                ..
            }
        ));
        let text = error.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(
            text.contains("version 2") && text.contains("up to 1"),
            "{text}"
        );
        assert!(read_version(&db, &path, &V1).is_err());
        // Refusing wrote nothing.
        assert_eq!(read_version(&db, &path, &V2).unwrap(), 2);
    }

    #[test]
    fn a_copy_holds_every_table_or_is_not_made() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.redb");
        let db = legacy(&path);
        open(&db, &path, &V1).unwrap();
        let snapshot = db.begin_read().unwrap();
        let to = dir.path().join("backup.redb");
        let rows = write_copy(&snapshot, &to, |from, to| {
            let rows = copy_table(from, to, FORMAT_TABLE)? + copy_table(from, to, ITEMS)?;
            Ok((vec!["format", "items"], rows))
        })
        .unwrap();
        assert_eq!(rows, 2);
        let copy = Database::open(&to).unwrap();
        assert_eq!(read_version(&copy, &to, &V1).unwrap(), 1);
        let txn = copy.begin_read().unwrap();
        assert_eq!(
            txn.open_table(ITEMS)
                .unwrap()
                .get("A")
                .unwrap()
                .unwrap()
                .value(),
            3
        );

        let partial = dir.path().join("partial.redb");
        let error = write_copy(&snapshot, &partial, |from, to| {
            Ok((vec!["format"], copy_table(from, to, FORMAT_TABLE)?))
        })
        .unwrap_err();
        assert!(error.to_string().contains("items"), "{error}");
        assert!(!partial.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}

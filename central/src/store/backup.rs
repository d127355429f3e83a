//! Backups of central's store and their restore.
//!
//! A backup is a fresh redb file holding every table as one read transaction saw it, so it is
//! consistent while sessions journal and the merge runs. A restore checks a backup (its format
//! version, every row of every table read back) and puts it in place while central is stopped,
//! keeping the replaced store aside.

use std::path::{Path, PathBuf};

use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};
use tally_service::datafile::{self, BackupError, FORMAT_TABLE, Opened};
use tally_service::restore::{Refusal, RestoreFiles};

use super::schema::*;
use super::{STORE_FILE, STORE_FORMAT, Store, StoreError};
use crate::availability::store as availability;
use crate::channels::outbox;

/// Where a restore keeps the store it replaced, beside it.
pub const BEFORE_RESTORE_FILE: &str = "central.redb.before-restore";

/// Every table of central's store, copied one by one: the one list of them. A table missing
/// here fails every backup (see [`datafile::write_copy`]) instead of being left out of it.
fn copy_tables(
    from: &ReadTransaction,
    to: &WriteTransaction,
) -> Result<(Vec<&'static str>, u64), redb::Error> {
    use datafile::copy_table as copy;
    let rows = copy(from, to, FORMAT_TABLE)?
        + copy(from, to, AGENTS)?
        + copy(from, to, STREAMS)?
        + copy(from, to, JOURNAL)?
        + copy(from, to, CLOCKS)?
        + copy(from, to, CURSORS)?
        + copy(from, to, PLANS)?
        + copy(from, to, DEAD_LETTERS)?
        + copy(from, to, DISCARDED)?
        + copy(from, to, RETRIES)?
        + copy(from, to, NOTICES)?
        + copy(from, to, COUNTERS)?
        + copy(from, to, crate::merge::merged::MERGED_INTO)?
        + copy(from, to, super::journal::JOURNAL_IDS)?
        + copy(from, to, super::audit::AUDIT)?
        + copy(from, to, availability::AVAILABILITY)?
        + copy(from, to, availability::CURSOR)?
        + copy(from, to, outbox::OUTBOX)?
        + copy(from, to, outbox::PUSHED)?
        + copy(from, to, outbox::DEAD)?
        + copy(from, to, outbox::COUNTERS)?
        + copy(from, to, crate::channels::figures::NOTES)?;
    Ok((TABLES.to_vec(), rows))
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the database {} is open (is tally-central running?): stop central before restoring", path.display())]
    Running { path: PathBuf },
    #[error("{} holds the store a previous restore replaced: move it away first", path.display())]
    BeforeRestoreExists { path: PathBuf },
    #[error("{} is not a backup of central's store (it has no tables)", path.display())]
    NotAStore { path: PathBuf },
    #[error("cannot restore {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the backup {} cannot be read: {error}", path.display())]
    Unreadable { path: PathBuf, error: StoreError },
    #[error(transparent)]
    Copy(#[from] BackupError),
}

impl RestoreError {
    /// Whether the backup itself is unusable here (a newer format, damaged, not a store).
    pub fn is_data_error(&self) -> bool {
        matches!(
            self,
            RestoreError::NotAStore { .. }
                | RestoreError::Unreadable {
                    error: StoreError::Format(_),
                    ..
                }
                | RestoreError::Copy(BackupError::Storage { .. })
        )
    }
}

/// What a restore put in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The backup's data format version (migrated to the current one).
    pub backup_version: u64,
    pub rows: u64,
    /// Where the replaced store was kept, if there was one.
    pub previous: Option<PathBuf>,
}

impl Store {
    /// Writes a consistent copy of the store to `to` while central runs; returns the rows.
    pub fn backup(&self, to: &Path) -> Result<u64, BackupError> {
        let snapshot = self.db().begin_read().map_err(|e| BackupError::Storage {
            path: to.to_owned(),
            error: e.into(),
        })?;
        datafile::write_copy(&snapshot, to, copy_tables)
    }
}

/// Puts the backup `from` in place as the store of `data_dir` while central is stopped: checks
/// and migrates a copy of it, then replaces the store by one rename, keeping the replaced one
/// as [`BEFORE_RESTORE_FILE`] ([`RestoreFiles`]). A failure leaves the store as it was.
pub fn restore(data_dir: &Path, from: &Path) -> Result<Restored, RestoreError> {
    let files = RestoreFiles::new(data_dir, STORE_FILE, BEFORE_RESTORE_FILE);
    let unreadable = |error: StoreError| RestoreError::Unreadable {
        path: from.to_owned(),
        error,
    };
    let storage = |error: redb::Error| unreadable(StoreError::Storage(error));
    let ((backup_version, rows), previous) = files.restore(from, |work, checked| {
        let db = Database::create(work).map_err(|e| storage(e.into()))?;
        let txn = db.begin_write().map_err(|e| storage(e.into()))?;
        let opened = datafile::upgrade(&txn, from, &STORE_FORMAT)
            .map_err(|e| unreadable(StoreError::Format(e)))?;
        let backup_version = match opened {
            Opened::Created => {
                return Err(RestoreError::NotAStore {
                    path: from.to_owned(),
                });
            }
            Opened::Current => STORE_FORMAT.current,
            Opened::Migrated { from } => from,
        };
        txn.commit().map_err(|e| storage(e.into()))?;
        // Copying every table reads every row back, and refuses tables this release does not
        // know rather than drop them.
        let snapshot = db.begin_read().map_err(|e| storage(e.into()))?;
        let rows = datafile::write_copy(&snapshot, checked, copy_tables)?;
        Ok((backup_version, rows))
    })?;
    Ok(Restored {
        backup_version,
        rows,
        previous,
    })
}

impl From<Refusal> for RestoreError {
    fn from(refusal: Refusal) -> RestoreError {
        match refusal {
            Refusal::Running { path } => RestoreError::Running { path },
            Refusal::AsideExists { path } => RestoreError::BeforeRestoreExists { path },
            Refusal::Io { path, error } => RestoreError::Io { path, error },
        }
    }
}

//! Backups of the event log and their restore.
//!
//! A backup is a fresh redb file holding every table as one read transaction saw it, so it is
//! consistent while the writer keeps appending. A restore puts a checked copy of a backup in
//! place under a new [`LogId`]: central keys its journal by (agent, log id, seq), and the
//! restored log's seqs would otherwise collide with the ones central already holds for the old
//! log (events appended after the backup was made), which central would drop as duplicates.
//!
//! What central acknowledged before the backup was made is in its journal under the old log id;
//! the restored log drops those events and numbers the rest from 1, so the new log sends central
//! exactly the events the backup had not yet seen acknowledged.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};
use tally_protocol::{LogId, decode_record, encode_record};
use tally_service::datafile::{self, BackupError, FORMAT_TABLE, Opened};
use tally_service::restore::{Refusal, RestoreFiles};

use super::{
    EVENTS, IDS, IdEntry, LOG_FILE, LOG_FORMAT, Log, LogError, META, META_ACKED_SEQ, META_HEAD_SEQ,
    META_IDS_INDEXED, META_LOG_ID, read_u64,
};

/// Where a restore keeps the log it replaced, beside the log.
pub const BEFORE_RESTORE_FILE: &str = "events.redb.before-restore";

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the event log {} is open (is tally-agent running?): stop the agent before restoring", path.display())]
    Running { path: PathBuf },
    #[error(
        "{} holds the log a previous restore replaced: move it away first",
        path.display()
    )]
    BeforeRestoreExists { path: PathBuf },
    #[error("{} is not a backup of an event log (it has no events or log id)", path.display())]
    NotALog { path: PathBuf },
    #[error("the backup {} is not a consistent log: {reason}", path.display())]
    Inconsistent { path: PathBuf, reason: String },
    #[error("cannot restore {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Copy(#[from] BackupError),
}

impl RestoreError {
    /// Whether the backup itself is unusable here (a newer format, damaged, not a log).
    pub fn is_data_error(&self) -> bool {
        matches!(
            self,
            RestoreError::NotALog { .. }
                | RestoreError::Inconsistent { .. }
                | RestoreError::Log(LogError::Format(_) | LogError::Corrupt { .. })
        )
    }
}

/// What a restore put in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The restored log's new id.
    pub log_id: LogId,
    /// The backup's log id, under which central holds what it acknowledged.
    pub backup_log_id: LogId,
    /// The backup's data format version (migrated to the current one).
    pub backup_version: u64,
    /// Events put back, to be sent to central as the new log's seqs 1 to `events`.
    pub events: u64,
    /// Events central had acknowledged when the backup was made, left out.
    pub acknowledged: u64,
    /// Where the replaced log was kept, if there was one.
    pub previous: Option<PathBuf>,
}

fn copy_tables(
    from: &redb::ReadTransaction,
    to: &WriteTransaction,
) -> Result<(Vec<&'static str>, u64), redb::Error> {
    let rows = datafile::copy_table(from, to, FORMAT_TABLE)?
        + datafile::copy_table(from, to, EVENTS)?
        + datafile::copy_table(from, to, IDS)?
        + datafile::copy_table(from, to, META)?;
    Ok((vec!["format", "events", "ids", "meta"], rows))
}

impl Log {
    /// Writes a consistent copy of the log to `to` (see [`datafile::write_copy`]) while the
    /// agent keeps running; returns the rows copied.
    pub fn backup(&self, to: &Path) -> Result<u64, LogError> {
        let db = self.db()?;
        let snapshot = db.begin_read().map_err(|e| self.storage_error(e))?;
        datafile::write_copy(&snapshot, to, copy_tables).map_err(|e| LogError::Backup {
            path: to.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// Puts the backup `from` in place as the log of `data_dir` while the agent is stopped: checks
/// it (format version, every record decodes, seqs contiguous after the acknowledged ones),
/// migrates it, gives it a new log id, and keeps the replaced log as
/// [`BEFORE_RESTORE_FILE`]. The log is replaced by one rename: a failure leaves it as it was.
pub fn restore(data_dir: &Path, from: &Path) -> Result<Restored, RestoreError> {
    let files = RestoreFiles::new(data_dir, LOG_FILE, BEFORE_RESTORE_FILE);
    let (restored, previous) = files.restore(from, |work, checked| {
        let db = Database::create(work).map_err(|e| storage(from, e.into()))?;
        let txn = db.begin_write().map_err(|e| storage(from, e.into()))?;
        let opened = datafile::upgrade(&txn, from, &LOG_FORMAT).map_err(LogError::Format)?;
        let backup_version = match opened {
            Opened::Created => {
                return Err(RestoreError::NotALog {
                    path: from.to_owned(),
                });
            }
            Opened::Current => LOG_FORMAT.current,
            Opened::Migrated { from } => from,
        };
        let mut restored = renumber(&txn, from)?;
        restored.backup_version = backup_version;
        txn.commit().map_err(|e| storage(from, e.into()))?;
        // Copying every table reads every row once more, and refuses tables this release
        // does not know rather than drop them.
        let snapshot = db.begin_read().map_err(|e| storage(from, e.into()))?;
        datafile::write_copy(&snapshot, checked, copy_tables)?;
        Ok(restored)
    })?;
    Ok(Restored {
        previous,
        ..restored
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

fn storage(path: &Path, error: redb::Error) -> RestoreError {
    RestoreError::Log(LogError::Storage {
        path: path.to_owned(),
        error,
    })
}

/// Drops the events central acknowledged, numbers the rest from 1 (with their client ids), and
/// gives the log a new id, in the restore's transaction.
fn renumber(txn: &WriteTransaction, path: &Path) -> Result<Restored, RestoreError> {
    let err = |e: redb::Error| storage(path, e);
    let inconsistent = |reason: String| RestoreError::Inconsistent {
        path: path.to_owned(),
        reason,
    };
    let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
    let backup_log_id = meta
        .get(META_LOG_ID)
        .map_err(|e| err(e.into()))?
        .and_then(|v| <[u8; 16]>::try_from(v.value()).ok())
        .map(LogId)
        .ok_or_else(|| RestoreError::NotALog {
            path: path.to_owned(),
        })?;
    let acked = read_u64(&meta, META_ACKED_SEQ).map_err(err)?;
    let indexed = read_u64(&meta, META_IDS_INDEXED).map_err(err)?;

    let mut kept = Vec::new();
    let mut acknowledged = 0;
    {
        let events = txn.open_table(EVENTS).map_err(|e| err(e.into()))?;
        for entry in events.iter().map_err(|e| err(e.into()))? {
            let (seq, bytes) = entry.map_err(|e| err(e.into()))?;
            let seq = seq.value();
            let mut record = decode_record(bytes.value()).map_err(|e| {
                RestoreError::Log(LogError::Corrupt {
                    path: path.to_owned(),
                    seq,
                    reason: e.to_string(),
                })
            })?;
            if record.seq != seq {
                return Err(inconsistent(format!(
                    "record {seq} says it is seq {}",
                    record.seq
                )));
            }
            if seq <= acked {
                acknowledged += 1;
                continue;
            }
            let new_seq = seq - acked;
            if new_seq != kept.len() as u64 + 1 {
                return Err(inconsistent(format!(
                    "event {} is missing, yet central had not acknowledged it",
                    acked + kept.len() as u64 + 1
                )));
            }
            record.seq = new_seq;
            kept.push(encode_record(&record));
        }
    }
    txn.delete_table(EVENTS).map_err(|e| err(e.into()))?;
    {
        let mut events = txn.open_table(EVENTS).map_err(|e| err(e.into()))?;
        for (i, bytes) in kept.iter().enumerate() {
            events
                .insert(i as u64 + 1, bytes.as_slice())
                .map_err(|e| err(e.into()))?;
        }
    }

    let ids: Vec<(String, [u8; 48])> = {
        let table = txn.open_table(IDS).map_err(|e| err(e.into()))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| err(e.into()))? {
            let (id, value) = entry.map_err(|e| err(e.into()))?;
            let entry = IdEntry::decode(value.value()).ok_or_else(|| {
                inconsistent(format!("client id {:?} has a bad entry", id.value()))
            })?;
            // An id of an acknowledged event names a seq of the old log only.
            if entry.seq > acked {
                let renumbered = IdEntry {
                    seq: entry.seq - acked,
                    ..entry
                };
                out.push((id.value().to_owned(), renumbered.encode()));
            }
        }
        out
    };
    txn.delete_table(IDS).map_err(|e| err(e.into()))?;
    {
        let mut table = txn.open_table(IDS).map_err(|e| err(e.into()))?;
        for (id, entry) in &ids {
            table
                .insert(id.as_str(), entry.as_slice())
                .map_err(|e| err(e.into()))?;
        }
    }

    let log_id = LogId(rand::random());
    meta.insert(META_LOG_ID, log_id.0.as_slice())
        .map_err(|e| err(e.into()))?;
    for (key, value) in [
        (META_ACKED_SEQ, 0),
        (META_HEAD_SEQ, 0),
        (META_IDS_INDEXED, indexed.saturating_sub(acked)),
    ] {
        meta.insert(key, value.to_be_bytes().as_slice())
            .map_err(|e| err(e.into()))?;
    }
    Ok(Restored {
        log_id,
        backup_log_id,
        backup_version: 0,
        events: kept.len() as u64,
        acknowledged,
        previous: None,
    })
}

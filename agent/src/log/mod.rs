//! The agent's event log: an append-only sequence of events in one redb file.
//!
//! Tables:
//! - `events`: seq → encoded [`LoggedEvent`] (`tally_protocol::encode_record`);
//! - `ids`: client id → seq and a fingerprint of the event's content, for idempotency;
//! - `meta`: the log's random [`LogId`] and the seq central has acknowledged;
//! - `format`: the data format version ([`LOG_FORMAT`], see [`tally_service::datafile`]).
//!
//! Architecture invariant: only the [`writer`] thread writes, and every write transaction is
//! committed with `Durability::Immediate` before any request in it is answered.

mod append;
pub mod backup;
mod ids;
pub mod writer;

pub use append::LogWriter;
use ids::{IdEntry, fingerprint};

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, StorageBackend, TableDefinition,
};
use tally_protocol::{LogId, LoggedEvent, Timestamp, decode_record};
use tally_service::datafile::{Format, FormatError};

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const IDS: TableDefinition<&str, &[u8]> = TableDefinition::new("ids");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The event log's data format. A new version adds its migration here (`migrations[i]` turns
/// version `i + 1` into `i + 2`) and pins the old format in `tests/storage.rs`.
pub const LOG_FORMAT: Format = Format {
    what: "event log",
    current: 1,
    migrations: &[],
};

const META_LOG_ID: &str = "log_id";
const META_ACKED_SEQ: &str = "acked_seq";
/// The highest seq assigned when events were last pruned. Pruning may empty the `events`
/// table and seqs must never be reused, so the head is the larger of this and the last event's
/// seq. Only pruning writes it: an append would pay a page write per commit for it.
const META_HEAD_SEQ: &str = "head_seq";
/// Every event up to this seq has its client id in the `ids` table. Ids of later events live
/// in the writer's memory (rebuilt from `events` on open) and reach `ids` in sorted batches:
/// one random B-tree insert per event per commit would rewrite a page per id and cost more than
/// the event itself.
const META_IDS_INDEXED: &str = "ids_indexed_seq";

/// Pending client ids written to the `ids` table at once, at the latest.
const ID_FLUSH_THRESHOLD: usize = 8192;

/// The file name of the log inside the data directory.
pub const LOG_FILE: &str = "events.redb";

/// redb's page cache. The log is written once and read rarely, so a small cache keeps the
/// agent's memory flat however large the log grows.
const CACHE_BYTES: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("the event log {} is open in another process (is tally-agent already running?)", path.display())]
    InUse { path: PathBuf },
    // `error`, not `source`: the message carries it, and error chains would print it twice.
    #[error("storage error on {}: {error}", path.display())]
    Storage { path: PathBuf, error: redb::Error },
    #[error("the event log {} is being reopened after a storage error", path.display())]
    Reopening { path: PathBuf },
    #[error(transparent)]
    Format(FormatError),
    #[error("cannot back up the event log to {}: {reason}", path.display())]
    Backup { path: PathBuf, reason: String },
    #[error("record {seq} in {} cannot be decoded: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        seq: u64,
        reason: String,
    },
}

impl LogError {
    /// Whether the underlying cause is a full disk (answered with 507, not 500).
    pub fn is_storage_full(&self) -> bool {
        match self {
            LogError::Storage { error: source, .. } => {
                let text = source.to_string();
                matches!(source, redb::Error::Io(e) if e.kind() == std::io::ErrorKind::StorageFull)
                    || text.contains("No space left on device")
            }
            _ => false,
        }
    }
}

/// How the log's database is opened: from a file path, or (for fault-injection tests) through a
/// caller-supplied storage backend. Opening again after an I/O error uses the same recipe.
type Opener = Box<dyn Fn() -> Result<Database, DatabaseError> + Send + Sync>;

struct Shared {
    path: PathBuf,
    opener: Opener,
    /// Replaced by the writer when it reopens the database after an I/O error; `None` while
    /// that reopen has not succeeded.
    db: RwLock<Option<Arc<Database>>>,
    log_id: LogId,
    /// The highest committed seq, published after every commit (the sync client waits on it).
    head: tokio::sync::watch::Sender<u64>,
}

/// A handle on the log, cheap to clone. Reads may run on any thread; appends go through
/// the [`writer`] thread.
#[derive(Clone)]
pub struct Log {
    shared: Arc<Shared>,
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("path", &self.shared.path)
            .field("log_id", &self.shared.log_id)
            .finish()
    }
}

/// What a request's events became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub seq: u64,
    /// The event's client id was stored before with the same content; `seq` is the original's.
    pub duplicate: bool,
}

/// The outcome of one request (one atomic batch) inside a group commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Every event is stored (or was already); one entry per event, in request order.
    Stored(Vec<Accepted>),
    /// Event `index` reuses a client id with different content; nothing of the request is stored.
    Conflict { index: usize, with: ConflictWith },
    /// Storing the request would exceed the log's byte budget; nothing of it is stored.
    Full,
}

/// The event whose client id a conflicting event reuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictWith {
    /// An event already in the log, with this seq.
    Stored(u64),
    /// An earlier event of the same request: it was never stored (the request is refused
    /// whole), so it has no seq to name.
    Earlier(usize),
}

/// Numbers for `/v1/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStatus {
    pub last_seq: u64,
    pub acked_seq: u64,
    pub oldest_pending_received_at: Option<Timestamp>,
    pub log_bytes: u64,
}

impl Log {
    /// Opens (or creates) the log in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Log, LogError> {
        let path = data_dir.join(LOG_FILE);
        let file_path = path.clone();
        Log::open_with(
            path,
            Box::new(move || {
                // redb would create the file with the umask's mode (often 0644).
                tally_service::create_private_file(&file_path)
                    .map_err(|e| DatabaseError::Storage(e.into()))?;
                Database::builder()
                    .set_cache_size(CACHE_BYTES)
                    .create(&file_path)
            }),
        )
    }

    /// Opens the log at `path` through backends made by `backend` (fault-injection tests wrap
    /// redb's `FileBackend` on `path`).
    pub fn open_with_backend<B, F>(path: PathBuf, backend: F) -> Result<Log, LogError>
    where
        B: StorageBackend,
        F: Fn() -> std::io::Result<B> + Send + Sync + 'static,
    {
        Log::open_with(
            path,
            Box::new(move || {
                let backend = backend().map_err(|e| DatabaseError::Storage(e.into()))?;
                Database::builder()
                    .set_cache_size(CACHE_BYTES)
                    .create_with_backend(backend)
            }),
        )
    }

    fn open_with(path: PathBuf, opener: Opener) -> Result<Log, LogError> {
        let db = opener().map_err(|e| open_error(&path, e))?;
        let (log_id, head) = init(&db, &path)?;
        Ok(Log {
            shared: Arc::new(Shared {
                path,
                opener,
                db: RwLock::new(Some(Arc::new(db))),
                log_id,
                head: tokio::sync::watch::Sender::new(head),
            }),
        })
    }

    /// The data format version of the log in `data_dir`, checked without migrating it: an error
    /// when this release cannot open it, `None` when there is no log yet or the running agent
    /// holds it (it checked the version when it opened it).
    pub fn check_format(data_dir: &Path) -> Result<Option<u64>, LogError> {
        let path = data_dir.join(LOG_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let db = match Database::open(&path) {
            Ok(db) => db,
            Err(DatabaseError::DatabaseAlreadyOpen) => return Ok(None),
            Err(e) => return Err(open_error(&path, e)),
        };
        let txn = db.begin_read().map_err(|e| LogError::Storage {
            path: path.clone(),
            error: e.into(),
        })?;
        tally_service::datafile::version(&txn, &path, &LOG_FORMAT)
            .map(Some)
            .map_err(LogError::Format)
    }

    pub fn log_id(&self) -> LogId {
        self.shared.log_id
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The highest committed seq, updated after every commit.
    pub fn head(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.head.subscribe()
    }

    /// Records that central has durably stored every event up to `seq` (never moves back).
    pub fn set_acked(&self, seq: u64) -> Result<(), LogError> {
        let db = self.db()?;
        let err = |e: redb::Error| self.storage_error(e);
        let txn = db.begin_write().map_err(|e| err(e.into()))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
            let current = read_u64(&meta, META_ACKED_SEQ).map_err(err)?;
            if seq > current {
                meta.insert(META_ACKED_SEQ, seq.to_be_bytes().as_slice())
                    .map_err(|e| err(e.into()))?;
            }
        }
        txn.commit().map_err(|e| err(e.into()))
    }

    /// Deletes events that central has acknowledged and that were received before
    /// `events_before`, and client ids first seen before `ids_before`. Returns how many events
    /// and ids were removed. Unacknowledged events are never touched.
    pub fn prune(
        &self,
        events_before: Timestamp,
        ids_before: Timestamp,
    ) -> Result<(u64, u64), LogError> {
        let db = self.db()?;
        let err = |e: redb::Error| self.storage_error(e);
        let txn = db.begin_write().map_err(|e| err(e.into()))?;
        let mut removed = (0, 0);
        {
            let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
            let acked = read_u64(&meta, META_ACKED_SEQ).map_err(err)?;
            let indexed = read_u64(&meta, META_IDS_INDEXED).map_err(err)?;
            let mut events = txn.open_table(EVENTS).map_err(|e| err(e.into()))?;
            let mut ids = txn.open_table(IDS).map_err(|e| err(e.into()))?;
            // An event's client id must be in `ids` before the event may go: the writer's
            // memory of recent ids does not survive a restart, the `events` table does.
            if acked > indexed {
                for entry in events
                    .range(indexed + 1..=acked)
                    .map_err(|e| err(e.into()))?
                {
                    let (seq, bytes) = entry.map_err(|e| err(e.into()))?;
                    let record = self.decode(seq.value(), bytes.value())?;
                    if let Some(id) = &record.event.id {
                        let entry = IdEntry {
                            seq: record.seq,
                            fingerprint: fingerprint(&record.event),
                            at: record.received_at,
                        };
                        ids.insert(id.as_str(), entry.encode().as_slice())
                            .map_err(|e| err(e.into()))?;
                    }
                }
                meta.insert(META_IDS_INDEXED, acked.to_be_bytes().as_slice())
                    .map_err(|e| err(e.into()))?;
            }
            let mut doomed = Vec::new();
            for entry in events.range(..=acked).map_err(|e| err(e.into()))? {
                let (seq, bytes) = entry.map_err(|e| err(e.into()))?;
                let record = self.decode(seq.value(), bytes.value())?;
                // Events are in received order, so the first young one ends the scan.
                if record.received_at >= events_before {
                    break;
                }
                doomed.push(seq.value());
            }
            if let Some(&last_doomed) = doomed.last() {
                let head = read_u64(&meta, META_HEAD_SEQ).map_err(err)?;
                if last_doomed > head {
                    meta.insert(META_HEAD_SEQ, last_doomed.to_be_bytes().as_slice())
                        .map_err(|e| err(e.into()))?;
                }
            }
            for seq in &doomed {
                events.remove(seq).map_err(|e| err(e.into()))?;
            }
            removed.0 = doomed.len() as u64;
            let old: Vec<String> = ids
                .iter()
                .map_err(|e| err(e.into()))?
                .filter_map(|entry| {
                    let (id, value) = entry.ok()?;
                    let entry = IdEntry::decode(value.value())?;
                    (entry.at < ids_before).then(|| id.value().to_owned())
                })
                .collect();
            for id in &old {
                ids.remove(id.as_str()).map_err(|e| err(e.into()))?;
            }
            removed.1 = old.len() as u64;
        }
        txn.commit().map_err(|e| err(e.into()))?;
        Ok(removed)
    }

    fn db(&self) -> Result<Arc<Database>, LogError> {
        let slot = self.shared.db.read().unwrap_or_else(|e| e.into_inner());
        slot.clone().ok_or_else(|| LogError::Reopening {
            path: self.shared.path.clone(),
        })
    }

    fn storage_error(&self, source: impl Into<redb::Error>) -> LogError {
        LogError::Storage {
            path: self.shared.path.clone(),
            error: source.into(),
        }
    }

    /// The size of the log file on disk.
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.shared.path)
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// The client ids of events after `ids_indexed_seq` (not yet in the `ids` table).
    fn unindexed_ids(&self) -> Result<HashMap<String, IdEntry>, LogError> {
        let db = self.db()?;
        let txn = db.begin_read().map_err(|e| self.storage_error(e))?;
        let meta = txn.open_table(META).map_err(|e| self.storage_error(e))?;
        let indexed = read_u64(&meta, META_IDS_INDEXED).map_err(|e| self.storage_error(e))?;
        let events = txn.open_table(EVENTS).map_err(|e| self.storage_error(e))?;
        let mut out = HashMap::new();
        for entry in events
            .range(indexed + 1..)
            .map_err(|e| self.storage_error(e))?
        {
            let (seq, bytes) = entry.map_err(|e| self.storage_error(e))?;
            let record = self.decode(seq.value(), bytes.value())?;
            if let Some(id) = record.event.id.clone() {
                let entry = IdEntry {
                    seq: record.seq,
                    fingerprint: fingerprint(&record.event),
                    at: record.received_at,
                };
                out.entry(id).or_insert(entry);
            }
        }
        Ok(out)
    }

    /// Up to `limit` events with seq > `after`, in seq order.
    pub fn read_after(&self, after: u64, limit: usize) -> Result<Vec<LoggedEvent>, LogError> {
        let db = self.db()?;
        let txn = db.begin_read().map_err(|e| self.storage_error(e))?;
        let table = match txn.open_table(EVENTS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.storage_error(e)),
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        let range = table
            .range(after.saturating_add(1)..)
            .map_err(|e| self.storage_error(e))?;
        for entry in range.take(limit) {
            let (seq, bytes) = entry.map_err(|e| self.storage_error(e))?;
            out.push(self.decode(seq.value(), bytes.value())?);
        }
        Ok(out)
    }

    fn decode(&self, seq: u64, bytes: &[u8]) -> Result<LoggedEvent, LogError> {
        let record = decode_record(bytes).map_err(|e| LogError::Corrupt {
            path: self.shared.path.clone(),
            seq,
            reason: e.to_string(),
        })?;
        if record.seq != seq {
            return Err(LogError::Corrupt {
                path: self.shared.path.clone(),
                seq,
                reason: format!("record carries seq {}", record.seq),
            });
        }
        Ok(record)
    }

    pub fn status(&self) -> Result<LogStatus, LogError> {
        let db = self.db()?;
        let txn = db.begin_read().map_err(|e| self.storage_error(e))?;
        let meta = txn.open_table(META).map_err(|e| self.storage_error(e))?;
        let acked_seq = read_u64(&meta, META_ACKED_SEQ).map_err(|e| self.storage_error(e))?;
        let events = txn.open_table(EVENTS).map_err(|e| self.storage_error(e))?;
        let last = match events.last().map_err(|e| self.storage_error(e))? {
            Some((seq, _)) => seq.value(),
            None => 0,
        };
        let last_seq = read_u64(&meta, META_HEAD_SEQ)
            .map_err(|e| self.storage_error(e))?
            .max(last);
        let oldest_pending_received_at = match events
            .get(acked_seq + 1)
            .map_err(|e| self.storage_error(e))?
        {
            Some(bytes) => Some(self.decode(acked_seq + 1, bytes.value())?.received_at),
            None => None,
        };
        Ok(LogStatus {
            last_seq,
            acked_seq,
            oldest_pending_received_at,
            log_bytes: self.file_bytes(),
        })
    }
}

fn open_error(path: &Path, error: DatabaseError) -> LogError {
    match error {
        DatabaseError::DatabaseAlreadyOpen => LogError::InUse {
            path: path.to_owned(),
        },
        other => LogError::Storage {
            path: path.to_owned(),
            error: other.into(),
        },
    }
}

/// Checks the data format (migrating older data), creates the tables and the log id on first
/// open, all in one transaction; returns the log id and the head seq.
fn init(db: &Database, path: &Path) -> Result<(LogId, u64), LogError> {
    let storage = |error: redb::Error| LogError::Storage {
        path: path.to_owned(),
        error,
    };
    let txn = db.begin_write().map_err(|e| storage(e.into()))?;
    tally_service::datafile::upgrade(&txn, path, &LOG_FORMAT).map_err(LogError::Format)?;
    let tables = || -> Result<(LogId, u64), redb::Error> {
        let events = txn.open_table(EVENTS)?;
        let last = events.last()?.map_or(0, |(seq, _)| seq.value());
        txn.open_table(IDS)?;
        let mut meta = txn.open_table(META)?;
        let head = read_u64(&meta, META_HEAD_SEQ)?.max(last);
        let existing = meta
            .get(META_LOG_ID)?
            .and_then(|v| <[u8; 16]>::try_from(v.value()).ok());
        let log_id = match existing {
            Some(bytes) => LogId(bytes),
            None => {
                let id = LogId(rand::random());
                meta.insert(META_LOG_ID, id.0.as_slice())?;
                id
            }
        };
        Ok((log_id, head))
    };
    let (log_id, head) = tables().map_err(storage)?;
    txn.commit().map_err(|e| storage(e.into()))?;
    Ok((log_id, head))
}

fn read_u64(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<u64, redb::Error> {
    Ok(table
        .get(key)?
        .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0))
}

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

pub mod backup;
pub mod writer;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, StorageBackend, TableDefinition,
};
use sha2::{Digest, Sha256};
use tally_protocol::{
    Event, LogId, LoggedEvent, Timestamp, decode_record, encode_event, encode_record_from_event,
};
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
                        let entry =
                            id_entry(record.seq, &fingerprint(&record.event), record.received_at);
                        ids.insert(id.as_str(), entry.as_slice())
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
                    let (_, _, at) = parse_id_entry(value.value())?;
                    (at < ids_before).then(|| id.value().to_owned())
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

/// A digest of an event's content: equal events have equal fingerprints.
fn fingerprint(event: &Event) -> [u8; 32] {
    Sha256::digest(encode_event(event)).into()
}

/// The `ids` table's value: seq (8 bytes, big-endian), the fingerprint (32), and when the id
/// was first stored (8, µs since the epoch, for expiry).
fn id_entry(seq: u64, fingerprint: &[u8; 32], at: Timestamp) -> [u8; 48] {
    let mut out = [0u8; 48];
    out[..8].copy_from_slice(&seq.to_be_bytes());
    out[8..40].copy_from_slice(fingerprint);
    out[40..].copy_from_slice(&at.as_micros().to_be_bytes());
    out
}

fn parse_id_entry(bytes: &[u8]) -> Option<(u64, [u8; 32], Timestamp)> {
    let seq = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let fp = bytes.get(8..40)?.try_into().ok()?;
    let at = i64::from_be_bytes(bytes.get(40..48)?.try_into().ok()?);
    Some((seq, fp, Timestamp::from_micros(at)))
}

/// Sets up tables inside a write transaction and hands out the log's write operations; used by
/// the writer thread and by tests that drive the log synchronously.
#[derive(Debug)]
pub struct LogWriter {
    log: Log,
    next_seq: u64,
    max_log_bytes: u64,
    /// Set after a failed commit: redb refuses further writes on that handle until reopened.
    needs_reopen: bool,
    /// Client ids of events after `ids_indexed_seq`, not yet in the `ids` table.
    pending_ids: HashMap<String, IdEntry>,
    id_flush_threshold: usize,
}

/// What the log remembers of a client id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IdEntry {
    seq: u64,
    fingerprint: [u8; 32],
    at: Timestamp,
}

/// Where [`plan_request`] looks up client ids: this group's new ones, then the writer's
/// pending ones, then the `ids` table.
struct IdLookup<'a, T> {
    group: &'a HashMap<String, IdEntry>,
    pending: &'a HashMap<String, IdEntry>,
    table: &'a T,
}

impl<T: ReadableTable<&'static str, &'static [u8]>> IdLookup<'_, T> {
    fn get(&self, id: &str) -> Result<Option<IdEntry>, redb::Error> {
        if let Some(entry) = self.group.get(id).or_else(|| self.pending.get(id)) {
            return Ok(Some(*entry));
        }
        Ok(self
            .table
            .get(id)?
            .and_then(|v| parse_id_entry(v.value()))
            .map(|(seq, fingerprint, at)| IdEntry {
                seq,
                fingerprint,
                at,
            }))
    }
}

/// On-disk bytes an event costs, as measured on redb 4 (≈285 bytes for a 150-byte event):
/// used to keep a commit from overshooting the byte budget.
fn estimated_disk_bytes(encoded_len: usize) -> u64 {
    2 * encoded_len as u64 + 64
}

impl LogWriter {
    pub fn new(log: Log, max_log_bytes: u64) -> Result<LogWriter, LogError> {
        let head = log.status()?.last_seq;
        let pending_ids = log.unindexed_ids()?;
        Ok(LogWriter {
            log,
            next_seq: head + 1,
            max_log_bytes,
            needs_reopen: false,
            pending_ids,
            id_flush_threshold: ID_FLUSH_THRESHOLD,
        })
    }

    /// Writes pending client ids to the `ids` table once this many have gathered (tests use a
    /// small number to exercise the flush).
    pub fn with_id_flush_threshold(mut self, threshold: usize) -> LogWriter {
        self.id_flush_threshold = threshold.max(1);
        self
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Stores a group of requests in one durable transaction. Each request is atomic on its
    /// own: it is stored whole, or (on a conflict or a full log) not at all, without affecting
    /// the others. An `Err` means nothing of the group was stored.
    pub fn append_group(
        &mut self,
        group: &[&[Event]],
        now: Timestamp,
    ) -> Result<Vec<RequestOutcome>, LogError> {
        if self.needs_reopen {
            self.reopen()?;
        }
        let result = self.try_append_group(group, now);
        if result.is_err() {
            // A failed commit may have poisoned the handle; the next group reopens it, and seq
            // numbering restarts from what is actually on disk.
            self.needs_reopen = true;
        }
        result
    }

    fn reopen(&mut self) -> Result<(), LogError> {
        let shared = &self.log.shared;
        let mut slot = shared.db.write().unwrap_or_else(|e| e.into_inner());
        // Drop the failed handle first: redb holds a file lock per open database. A reader that
        // still holds it makes this open fail; the next group tries again.
        *slot = None;
        let db = (shared.opener)().map_err(|e| open_error(&shared.path, e))?;
        *slot = Some(Arc::new(db));
        drop(slot);
        self.next_seq = self.log.status()?.last_seq + 1;
        self.pending_ids = self.log.unindexed_ids()?;
        // A failed fsync may still have stored the group: publish what is actually there.
        self.log.shared.head.send_replace(self.next_seq - 1);
        self.needs_reopen = false;
        tracing::info!(path = %shared.path.display(), next_seq = self.next_seq, "reopened the event log after a storage error");
        Ok(())
    }

    fn try_append_group(
        &mut self,
        group: &[&[Event]],
        now: Timestamp,
    ) -> Result<Vec<RequestOutcome>, LogError> {
        let db = self.log.db()?;
        let err = |e: redb::Error| self.log.storage_error(e);
        let mut txn = db.begin_write().map_err(|e| err(e.into()))?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(|e| err(e.into()))?;
        let mut next_seq = self.next_seq;
        let mut budget_used = self.log.file_bytes();
        let mut outcomes = Vec::with_capacity(group.len());
        // Client ids this group stores; they join `pending_ids` once the commit succeeds.
        let mut group_ids: HashMap<String, IdEntry> = HashMap::new();
        let flush = self.pending_ids.len() >= self.id_flush_threshold;
        {
            let mut events = txn.open_table(EVENTS).map_err(|e| err(e.into()))?;
            let mut ids = txn.open_table(IDS).map_err(|e| err(e.into()))?;
            if flush {
                // Sorted, so that neighbouring ids share the pages they rewrite.
                let mut sorted: Vec<(&String, &IdEntry)> = self.pending_ids.iter().collect();
                sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
                for (id, e) in sorted {
                    ids.insert(
                        id.as_str(),
                        id_entry(e.seq, &e.fingerprint, e.at).as_slice(),
                    )
                    .map_err(|e| err(e.into()))?;
                }
                let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
                meta.insert(
                    META_IDS_INDEXED,
                    (self.next_seq - 1).to_be_bytes().as_slice(),
                )
                .map_err(|e| err(e.into()))?;
            }
            for request in group {
                let lookup = IdLookup {
                    group: &group_ids,
                    pending: &self.pending_ids,
                    table: &ids,
                };
                let plan = match plan_request(request, &lookup, next_seq).map_err(err)? {
                    Plan::Conflict { index, with } => {
                        outcomes.push(RequestOutcome::Conflict { index, with });
                        continue;
                    }
                    Plan::Store(plan) => plan,
                };
                let new_records: Vec<(u64, Vec<u8>)> = plan
                    .encoded
                    .iter()
                    .zip(&plan.accepted)
                    .filter(|(_, a)| !a.duplicate)
                    .map(|(bytes, a)| (a.seq, encode_record_from_event(a.seq, now, bytes)))
                    .collect();
                let cost: u64 = new_records
                    .iter()
                    .map(|(_, r)| estimated_disk_bytes(r.len()))
                    .sum();
                if cost > 0 && budget_used + cost > self.max_log_bytes {
                    outcomes.push(RequestOutcome::Full);
                    continue;
                }
                budget_used += cost;
                for (seq, record) in &new_records {
                    events
                        .insert(*seq, record.as_slice())
                        .map_err(|e| err(e.into()))?;
                }
                for ((event, a), fp) in request.iter().zip(&plan.accepted).zip(&plan.fingerprints) {
                    if let (Some(id), false, Some(fp)) = (&event.id, a.duplicate, fp) {
                        group_ids.insert(
                            id.clone(),
                            IdEntry {
                                seq: a.seq,
                                fingerprint: *fp,
                                at: now,
                            },
                        );
                    }
                }
                next_seq += new_records.len() as u64;
                outcomes.push(RequestOutcome::Stored(plan.accepted));
            }
        }
        txn.commit().map_err(|e| err(e.into()))?;
        if flush {
            self.pending_ids.clear();
        }
        self.pending_ids.extend(group_ids);
        if next_seq != self.next_seq {
            self.log.shared.head.send_replace(next_seq - 1);
        }
        self.next_seq = next_seq;
        Ok(outcomes)
    }
}

struct StorePlan {
    accepted: Vec<Accepted>,
    /// Each event's `encode_event` bytes: fingerprinted, then stored without encoding again.
    encoded: Vec<Vec<u8>>,
    /// The fingerprint of each event that is new and has a client id.
    fingerprints: Vec<Option<[u8; 32]>>,
}

enum Plan {
    Store(StorePlan),
    Conflict { index: usize, with: ConflictWith },
}

/// Decides, without writing, what each event of a request becomes: a duplicate of a stored
/// event (same client id, same content), a new event with the next seq, or a conflict.
fn plan_request<T: ReadableTable<&'static str, &'static [u8]>>(
    request: &[Event],
    ids: &IdLookup<'_, T>,
    mut next_seq: u64,
) -> Result<Plan, redb::Error> {
    let mut accepted = Vec::with_capacity(request.len());
    let mut fingerprints = Vec::with_capacity(request.len());
    // Client ids first seen earlier in this same request, with that event's index.
    let mut local: HashMap<&str, (usize, u64, [u8; 32])> = HashMap::new();
    let encoded: Vec<Vec<u8>> = request.iter().map(encode_event).collect();
    for ((index, event), bytes) in request.iter().enumerate().zip(&encoded) {
        let Some(id) = event.id.as_deref() else {
            accepted.push(Accepted {
                seq: next_seq,
                duplicate: false,
            });
            fingerprints.push(None);
            next_seq += 1;
            continue;
        };
        let fp: [u8; 32] = Sha256::digest(bytes).into();
        let seen = match local.get(id) {
            Some(&(earlier, seq, fp)) => Some((ConflictWith::Earlier(earlier), seq, fp)),
            None => ids
                .get(id)?
                .map(|e| (ConflictWith::Stored(e.seq), e.seq, e.fingerprint)),
        };
        match seen {
            Some((_, seq, original)) if original == fp => {
                accepted.push(Accepted {
                    seq,
                    duplicate: true,
                });
                fingerprints.push(None);
            }
            Some((with, _, _)) => return Ok(Plan::Conflict { index, with }),
            None => {
                local.insert(id, (index, next_seq, fp));
                accepted.push(Accepted {
                    seq: next_seq,
                    duplicate: false,
                });
                fingerprints.push(Some(fp));
                next_seq += 1;
            }
        }
    }
    Ok(Plan::Store(StorePlan {
        accepted,
        encoded,
        fingerprints,
    }))
}

//! Central's durable state, in one redb file: the agent registry, the event journal, the
//! merge's state, the audit log, availability and the channels' outboxes. Every table is in
//! [`schema`], opened when the store is.
//!
//! Architecture invariant: journal and stream rows are written only by the journal writer
//! thread ([`journal`]), each group in one durable transaction that also moves the streams'
//! high-water marks, so a stored seq always means every event up to it is stored.

pub mod audit;
pub mod backup;
pub mod journal;
pub mod registry;
pub mod schema;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, DatabaseError, ReadableDatabase};
use tally_service::datafile::{Format, FormatError};

pub(crate) use schema::{AGENTS, JOURNAL, STREAMS};

/// Central's data format. A new version adds its migration here (`migrations[i]` turns version
/// `i + 1` into `i + 2`) and pins the old format in `tests/data_format.rs`.
///
/// - 2: `journal_ids` indexes every journaled event's client id (built from the journal by the
///   migration), with `audit_log` and `merged_into` beside it; a release that does not keep
///   them must not write to the store, so it refuses it.
pub const STORE_FORMAT: Format = Format {
    what: "central store",
    current: 2,
    migrations: &[journal::index_event_ids],
};

/// The file name of central's database inside its data directory.
pub const STORE_FILE: &str = "central.redb";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database {} is open in another process (is tally-central running? then use its admin API)", path.display())]
    InUse { path: PathBuf },
    // Not marked as the source: the message already carries it, and error chains would
    // print it twice.
    #[error("storage error: {0}")]
    Storage(redb::Error),
    #[error(transparent)]
    Format(FormatError),
    #[error("a stored record is corrupt: {0}")]
    Corrupt(String),
}

/// `.storage()` turns any of redb's per-operation error types into a [`StoreError`].
pub(crate) trait ResultExt<T, E> {
    fn storage(self) -> Result<T, StoreError>;
}

impl<T, E: Into<redb::Error>> ResultExt<T, E> for Result<T, E> {
    fn storage(self) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Storage(e.into()))
    }
}

/// The opened database, shared by the registry, the journal writer and readers.
#[derive(Debug, Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
}

impl Store {
    /// Runs `work` on the blocking pool with this store: a write waits for redb's write lock
    /// and an fsync, which must not hold up a runtime worker. A task that panicked or was
    /// cancelled is an error here, for the caller to log and go on (the merge's own wrapper,
    /// `merge::durable`, re-raises a panic instead).
    pub async fn blocking<T, W>(&self, work: W) -> Result<T, StoreError>
    where
        T: Send + 'static,
        W: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        match tokio::task::spawn_blocking(move || work(&store)).await {
            Ok(result) => result,
            Err(e) => Err(StoreError::Storage(redb::Error::Io(std::io::Error::other(
                format!("a store task failed: {e}"),
            )))),
        }
    }

    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join(STORE_FILE);
        // redb would create the file with the umask's mode (often 0644).
        tally_service::create_private_file(&path)
            .map_err(|e| StoreError::Storage(redb::Error::Io(e)))?;
        let db = Database::builder()
            .set_cache_size(64 << 20)
            .create(&path)
            .map_err(|e| match e {
                DatabaseError::DatabaseAlreadyOpen => StoreError::InUse { path: path.clone() },
                other => StoreError::Storage(other.into()),
            })?;
        let txn = db.begin_write().storage()?;
        // In the transaction that creates the tables: a migration commits with them or not at all.
        tally_service::datafile::upgrade(&txn, &path, &STORE_FORMAT).map_err(StoreError::Format)?;
        schema::create_all(&txn)?;
        txn.commit().storage()?;
        Ok(Store {
            db: Arc::new(db),
            path,
        })
    }

    /// The data format version of the store in `data_dir`, checked without migrating it: an
    /// error when this release cannot open it, `None` when there is no store yet or the running
    /// central holds it (it checked the version when it opened it).
    pub fn check_format(data_dir: &Path) -> Result<Option<u64>, StoreError> {
        let path = data_dir.join(STORE_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let db = match Database::open(&path) {
            Ok(db) => db,
            Err(DatabaseError::DatabaseAlreadyOpen) => return Ok(None),
            Err(e) => return Err(StoreError::Storage(e.into())),
        };
        let txn = db.begin_read().storage()?;
        tally_service::datafile::version(&txn, &path, &STORE_FORMAT)
            .map(Some)
            .map_err(StoreError::Format)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn db(&self) -> &Database {
        &self.db
    }
}

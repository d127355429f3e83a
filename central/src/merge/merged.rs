//! Where each merged event went in Odoo, for "where is my scan?": `merged_into` maps
//! (agent, log, seq) to the picking that carries the event's effect, written in the
//! transaction that finishes the plan. Events merged before this table existed have no row.

use redb::{ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};
use tally_protocol::LogId;

use crate::store::{ResultExt, Store, StoreError};

pub(crate) const MERGED_INTO: TableDefinition<(&str, u128, u64), &[u8]> =
    TableDefinition::new("merged_into");

/// The Odoo picking an event landed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergedInto {
    /// The picking's name in Odoo.
    pub picking: String,
    /// `done` for a picking Tally created and validated; `filled` for an open picking of
    /// Odoo's (a customer's delivery, a vendor's receipt) whose moves the scan filled.
    pub state: String,
    pub merged_at: i64,
}

/// Records where `merged` events went, inside the caller's transaction.
pub(crate) fn record(
    txn: &redb::WriteTransaction,
    agent: &str,
    log_id: LogId,
    merged: &[(u64, MergedInto)],
) -> Result<(), StoreError> {
    if merged.is_empty() {
        return Ok(());
    }
    let mut table = txn.open_table(MERGED_INTO).storage()?;
    let log = u128::from_be_bytes(log_id.0);
    for (seq, into) in merged {
        let bytes = serde_json::to_vec(into).expect("serialising a plain struct");
        table
            .insert((agent, log, *seq), bytes.as_slice())
            .storage()?;
    }
    Ok(())
}

impl Store {
    /// The picking event `seq` of (agent, log) was merged into, if recorded.
    pub fn merged_into(
        &self,
        agent: &str,
        log_id: LogId,
        seq: u64,
    ) -> Result<Option<MergedInto>, StoreError> {
        let txn = self.db().begin_read().storage()?;
        let table = match txn.open_table(MERGED_INTO) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(StoreError::Storage(e.into())),
        };
        let Some(value) = table
            .get((agent, u128::from_be_bytes(log_id.0), seq))
            .storage()?
        else {
            return Ok(None);
        };
        serde_json::from_slice(value.value())
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("merged_into record: {e}")))
    }
}

/// Where the merge left one event that it set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetAside {
    Parked(super::state::DeadLetter),
    QueuedForRetry(super::state::DeadLetter),
    Discarded(super::state::Discarded),
}

impl Store {
    /// Whether event `seq` of (agent, log) is parked, queued for a retry or discarded.
    pub fn set_aside(
        &self,
        agent: &str,
        log_id: LogId,
        seq: u64,
    ) -> Result<Option<SetAside>, StoreError> {
        use super::state::Retry;
        use crate::store::schema::{DEAD_LETTERS, DISCARDED, RETRIES};
        let txn = self.db().begin_read().storage()?;
        let key = (agent, u128::from_be_bytes(log_id.0), seq);
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("set-aside event: {e}"));
        let read = |definition: TableDefinition<(&str, u128, u64), &[u8]>| match txn
            .open_table(definition)
        {
            Ok(table) => Ok(table.get(key).storage()?.map(|v| v.value().to_vec())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(StoreError::Storage(e.into())),
        };
        if let Some(bytes) = read(DEAD_LETTERS)? {
            return Ok(Some(SetAside::Parked(
                serde_json::from_slice(&bytes).map_err(corrupt)?,
            )));
        }
        if let Some(bytes) = read(RETRIES)? {
            let retry: Retry = serde_json::from_slice(&bytes).map_err(corrupt)?;
            return Ok(Some(SetAside::QueuedForRetry(retry.letter)));
        }
        if let Some(bytes) = read(DISCARDED)? {
            return Ok(Some(SetAside::Discarded(
                serde_json::from_slice(&bytes).map_err(corrupt)?,
            )));
        }
        Ok(None)
    }
}

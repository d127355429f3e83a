//! A channel's running totals, kept in central's store so that a restart (or a crash) does not
//! reset them:
//!
//! - `channel_counters`: (channel, name) → `errors`, `throttle_waits`, `calls`, `drift_found`
//!   (totals), and `last_resync` (µs), beside the outbox's `seq` and `last_success`;
//! - `channel_notes`: (channel, name) → `last_error` (the message of the last failed push,
//!   removed by the next success) and `drift` (the latest drift found, at most
//!   [`DRIFT_SAMPLE`] rows, JSON).
//!
//! A push's totals are added in the transaction that records what it completed
//! ([`Store::outbox_complete_with`]), so they count each push once: a crash before that
//! commit loses both the completion and the totals, and the push is made again.
//!
//! [`Store::outbox_complete_with`]: crate::store::Store::outbox_complete_with

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::outbox::COUNTERS;
use super::{DRIFT_SAMPLE, Drift};
use crate::store::{ResultExt, Store, StoreError};

pub(crate) const NOTES: TableDefinition<(&str, &str), &str> = TableDefinition::new("channel_notes");

/// What one successful push adds to its channel's totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushFigures {
    pub calls: u64,
    pub throttle_waits: u64,
    pub drift: Vec<Drift>,
}

/// A channel's totals as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    pub errors: u64,
    pub throttle_waits: u64,
    pub calls: u64,
    pub drift_found: u64,
    pub drift: Vec<Drift>,
    pub last_error: Option<String>,
    /// The last resync (µs since the epoch).
    pub last_resync: Option<i64>,
}

pub(crate) fn open_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(NOTES).storage()?;
    Ok(())
}

fn add(
    counters: &mut redb::Table<(&str, &str), u64>,
    channel: &str,
    name: &str,
    by: u64,
) -> Result<(), StoreError> {
    if by == 0 {
        return Ok(());
    }
    let now = counters
        .get((channel, name))
        .storage()?
        .map_or(0, |v| v.value());
    counters
        .insert((channel, name), now.saturating_add(by))
        .storage()?;
    Ok(())
}

/// Adds a successful push's figures to `channel`'s totals and clears its last error, in `txn`.
pub(crate) fn record_push(
    txn: &WriteTransaction,
    channel: &str,
    figures: &PushFigures,
) -> Result<(), StoreError> {
    let mut counters = txn.open_table(COUNTERS).storage()?;
    add(&mut counters, channel, "calls", figures.calls)?;
    add(
        &mut counters,
        channel,
        "throttle_waits",
        figures.throttle_waits,
    )?;
    add(
        &mut counters,
        channel,
        "drift_found",
        figures.drift.len() as u64,
    )?;
    let mut notes = txn.open_table(NOTES).storage()?;
    notes.remove((channel, "last_error")).storage()?;
    if !figures.drift.is_empty() {
        let mut drift: Vec<Drift> = match notes.get((channel, "drift")).storage()? {
            Some(v) => serde_json::from_str(v.value())
                .map_err(|e| StoreError::Corrupt(format!("channel_notes drift: {e}")))?,
            None => Vec::new(),
        };
        drift.extend(figures.drift.iter().cloned());
        let over = drift.len().saturating_sub(DRIFT_SAMPLE);
        drift.drain(..over);
        let json = serde_json::to_string(&drift).expect("serialising plain rows");
        notes.insert((channel, "drift"), json.as_str()).storage()?;
    }
    Ok(())
}

/// Notes a resync of `channel` now, in `txn`.
pub(crate) fn record_resync(txn: &WriteTransaction, channel: &str) -> Result<(), StoreError> {
    let now = tally_protocol::Timestamp::now().as_micros();
    txn.open_table(COUNTERS)
        .storage()?
        .insert((channel, "last_resync"), u64::try_from(now).unwrap_or(0))
        .storage()?;
    Ok(())
}

impl Store {
    /// Counts a failed push of `channel` and keeps its message as the last error.
    pub fn channel_failed(&self, channel: &str, message: &str) -> Result<(), StoreError> {
        let txn = self.db().begin_write().storage()?;
        {
            let mut counters = txn.open_table(COUNTERS).storage()?;
            add(&mut counters, channel, "errors", 1)?;
            txn.open_table(NOTES)
                .storage()?
                .insert((channel, "last_error"), message)
                .storage()?;
        }
        txn.commit().storage()
    }

    /// `channel`'s stored totals (all zero for a channel that never pushed).
    pub fn channel_figures(&self, channel: &str) -> Result<Figures, StoreError> {
        let txn = self.db().begin_read().storage()?;
        let counters = txn.open_table(COUNTERS).storage()?;
        let count = |name: &str| -> Result<u64, StoreError> {
            Ok(counters
                .get((channel, name))
                .storage()?
                .map_or(0, |v| v.value()))
        };
        let notes = txn.open_table(NOTES).storage()?;
        let note = |name: &str| -> Result<Option<String>, StoreError> {
            Ok(notes
                .get((channel, name))
                .storage()?
                .map(|v| v.value().to_owned()))
        };
        let drift = match note("drift")? {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("channel_notes drift: {e}")))?,
            None => Vec::new(),
        };
        let last_resync = counters
            .get((channel, "last_resync"))
            .storage()?
            .map(|v| i64::try_from(v.value()).unwrap_or(i64::MAX));
        Ok(Figures {
            errors: count("errors")?,
            throttle_waits: count("throttle_waits")?,
            calls: count("calls")?,
            drift_found: count("drift_found")?,
            drift,
            last_error: note("last_error")?,
            last_resync,
        })
    }
}

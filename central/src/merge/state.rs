//! The merge engine's durable state, in central's store:
//!
//! - `merge_cursor`: (agent, log) → the highest seq whose event is resolved (applied to Odoo,
//!   or parked);
//! - `merge_plan`: (agent, log) → the plan being applied, recorded before the first call to
//!   Odoo so that a restart applies the same pickings under the same keys;
//! - `dead_letters`: (agent, log, seq) → why that event is parked;
//! - `retry_letters`: (agent, log, seq) → a parked event an operator asked to retry, with the
//!   retry's generation (which makes the retry's picking keys new);
//! - `discarded_letters`: (agent, log, seq) → a parked event given up on, with the reason;
//! - `merged_into`: (agent, log, seq) → the Odoo picking the event went into ([`super::merged`]).

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use tally_protocol::{LogId, Timestamp};

use crate::store::audit::{self, Actor};
use crate::store::{ResultExt, Store, StoreError};

pub(crate) const CURSORS: TableDefinition<(&str, u128), u64> = TableDefinition::new("merge_cursor");
pub(crate) const PLANS: TableDefinition<(&str, u128), &[u8]> = TableDefinition::new("merge_plan");
pub(crate) const DEAD_LETTERS: TableDefinition<(&str, u128, u64), &[u8]> =
    TableDefinition::new("dead_letters");
/// Dead letters an operator discarded, kept for audit with the reason given.
pub(crate) const DISCARDED: TableDefinition<(&str, u128, u64), &[u8]> =
    TableDefinition::new("discarded_letters");

/// Parked events an operator asked to try again: taken before any new run of their stream.
pub(crate) const RETRIES: TableDefinition<(&str, u128, u64), &[u8]> =
    TableDefinition::new("retry_letters");
/// Things an operator should know that did not stop the merge: (agent, log, seq) → notice.
pub(crate) const NOTICES: TableDefinition<(&str, u128, u64), &[u8]> =
    TableDefinition::new("merge_notices");
/// Counters: `retry_generation`.
pub(crate) const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("merge_counters");

/// A parked event queued for another attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    pub letter: DeadLetter,
    /// Which retry request this is: part of the keys of the pickings it creates, so that a
    /// retry never meets a picking an earlier attempt left (cancelled) under the same name.
    pub generation: u64,
}

/// Something about an applied event an operator should look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub warehouse: String,
    pub sku: String,
    /// `pending-odoo-count`: someone's count in Odoo that was not applied yet.
    pub kind: String,
    pub message: String,
    pub noticed_at: i64,
}

/// A parked event and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub warehouse: String,
    pub sku: String,
    /// Odoo's exception name, or Tally's own reason (`unknown-sku`, `parked-behind`, ...).
    pub reason: String,
    pub message: String,
    pub parked_at: i64,
}

/// Records `parked` as dead letters of (`agent`, `log_id`) and removes that log's plan: how
/// both a merge and a retry end, inside the caller's transaction.
fn park_and_end_plan(
    txn: &redb::WriteTransaction,
    agent: &str,
    log_id: LogId,
    parked: &[(u64, DeadLetter)],
) -> Result<(), StoreError> {
    let mut letters = txn.open_table(DEAD_LETTERS).storage()?;
    for (seq, letter) in parked {
        let bytes = serde_json::to_vec(letter).expect("serialising a plain struct");
        letters
            .insert((agent, key(log_id), *seq), bytes.as_slice())
            .storage()?;
    }
    txn.open_table(PLANS)
        .storage()?
        .remove((agent, key(log_id)))
        .storage()?;
    Ok(())
}

fn key(log_id: LogId) -> u128 {
    u128::from_be_bytes(log_id.0)
}

impl Store {
    pub fn merge_cursor(&self, agent: &str, log_id: LogId) -> Result<u64, StoreError> {
        let txn = self.db().begin_read().storage()?;
        match txn.open_table(CURSORS) {
            Ok(table) => Ok(table
                .get((agent, key(log_id)))
                .storage()?
                .map_or(0, |v| v.value())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(StoreError::Storage(e.into())),
        }
    }

    /// The recorded plan of a stream, if one is being applied.
    pub fn merge_plan(&self, agent: &str, log_id: LogId) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db().begin_read().storage()?;
        match txn.open_table(PLANS) {
            Ok(table) => Ok(table
                .get((agent, key(log_id)))
                .storage()?
                .map(|v| v.value().to_vec())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(StoreError::Storage(e.into())),
        }
    }

    /// Records (or updates) a stream's plan durably.
    pub fn save_merge_plan(
        &self,
        agent: &str,
        log_id: LogId,
        plan: &[u8],
    ) -> Result<(), StoreError> {
        let txn = self.db().begin_write().storage()?;
        txn.open_table(PLANS)
            .storage()?
            .insert((agent, key(log_id)), plan)
            .storage()?;
        txn.commit().storage()
    }

    /// Ends a plan: the cursor moves to `through`, the parked events are recorded, and the
    /// plan is removed, in one durable transaction.
    pub fn finish_merge(
        &self,
        agent: &str,
        log_id: LogId,
        through: u64,
        parked: &[(u64, DeadLetter)],
        merged: &[(u64, super::merged::MergedInto)],
    ) -> Result<(), StoreError> {
        let txn = self.db().begin_write().storage()?;
        super::merged::record(&txn, agent, log_id, merged)?;
        {
            let mut cursors = txn.open_table(CURSORS).storage()?;
            cursors.insert((agent, key(log_id)), through).storage()?;
        }
        park_and_end_plan(&txn, agent, log_id, parked)?;
        txn.commit().storage()
    }

    /// Every parked event: (agent, log, seq, letter).
    pub fn dead_letters(&self) -> Result<Vec<(String, LogId, u64, DeadLetter)>, StoreError> {
        Ok(self
            .read_letters(DEAD_LETTERS, "dead letter", usize::MAX)?
            .0)
    }

    /// The first `limit` parked events, and how many there are.
    pub fn dead_letters_page(
        &self,
        limit: usize,
    ) -> Result<(Letters<DeadLetter>, u64), StoreError> {
        self.read_letters(DEAD_LETTERS, "dead letter", limit)
    }

    /// Whether (warehouse, sku) has parked events: later events of that key park behind them,
    /// so that a key's events reach Odoo in order or not at all.
    pub fn parked_keys(&self) -> Result<std::collections::HashSet<(String, String)>, StoreError> {
        Ok(self
            .dead_letters()?
            .into_iter()
            .map(|(_, _, _, l)| (l.warehouse, l.sku))
            .collect())
    }

    /// The keys with events waiting for a retry: new events of those keys wait behind them.
    pub fn retrying_keys(&self) -> Result<std::collections::HashSet<(String, String)>, StoreError> {
        Ok(self
            .retries()?
            .into_iter()
            .map(|(_, _, _, r)| (r.letter.warehouse, r.letter.sku))
            .collect())
    }

    /// Every event queued for a retry: (agent, log, seq, retry), in key order.
    pub fn retries(&self) -> Result<Vec<(String, LogId, u64, Retry)>, StoreError> {
        Ok(self.read_letters(RETRIES, "retry", usize::MAX)?.0)
    }

    /// How many events are queued for a retry.
    pub fn retry_count(&self) -> Result<u64, StoreError> {
        Ok(self.read_letters::<Retry>(RETRIES, "retry", 0)?.1)
    }

    /// Queues every parked event of (warehouse, sku) for another attempt, under a new retry
    /// generation. Returns how many.
    pub fn retry_dead_letters(&self, warehouse: &str, sku: &str) -> Result<usize, StoreError> {
        self.retry_dead_letters_as(warehouse, sku, Actor::local(None))
    }

    /// [`Store::retry_dead_letters`] on behalf of `actor`, audited in the same transaction
    /// when it queued anything.
    pub fn retry_dead_letters_as(
        &self,
        warehouse: &str,
        sku: &str,
        actor: Actor<'_>,
    ) -> Result<usize, StoreError> {
        let txn = self.db().begin_write().storage()?;
        let mut count = 0;
        {
            let mut counters = txn.open_table(COUNTERS).storage()?;
            let generation = counters
                .get("retry_generation")
                .storage()?
                .map_or(0, |v| v.value())
                + 1;
            counters.insert("retry_generation", generation).storage()?;
            let mut letters = txn.open_table(DEAD_LETTERS).storage()?;
            let mut retries = txn.open_table(RETRIES).storage()?;
            for ((agent, log, seq), letter) in matching(&letters, warehouse, sku)? {
                letters.remove((agent.as_str(), log, seq)).storage()?;
                let bytes = serde_json::to_vec(&Retry { letter, generation })
                    .expect("serialising a plain struct");
                retries
                    .insert((agent.as_str(), log, seq), bytes.as_slice())
                    .storage()?;
                count += 1;
            }
        }
        if count > 0 {
            let target = format!("{warehouse}/{sku}");
            let detail = format!("{count} {} queued for a retry", events(count));
            audit::append(&txn, actor, "dead-letter-retry", &target, detail)?;
        }
        txn.commit().storage()?;
        Ok(count)
    }

    /// Ends a retry's plan: its events leave the retry queue, those parked again become dead
    /// letters, and the plan is removed, in one durable transaction. The cursor stays.
    pub fn finish_retry(
        &self,
        agent: &str,
        log_id: LogId,
        seqs: impl IntoIterator<Item = u64>,
        parked: &[(u64, DeadLetter)],
        merged: &[(u64, super::merged::MergedInto)],
    ) -> Result<(), StoreError> {
        let txn = self.db().begin_write().storage()?;
        super::merged::record(&txn, agent, log_id, merged)?;
        {
            let mut retries = txn.open_table(RETRIES).storage()?;
            for seq in seqs {
                retries.remove((agent, key(log_id), seq)).storage()?;
            }
        }
        park_and_end_plan(&txn, agent, log_id, parked)?;
        txn.commit().storage()
    }
}

impl Store {
    /// Records a notice about event `seq` (one per event: a later one replaces it).
    pub fn add_notice(
        &self,
        agent: &str,
        log_id: LogId,
        seq: u64,
        notice: &Notice,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(notice).expect("serialising a plain struct");
        let txn = self.db().begin_write().storage()?;
        txn.open_table(NOTICES)
            .storage()?
            .insert((agent, key(log_id), seq), bytes.as_slice())
            .storage()?;
        txn.commit().storage()
    }

    /// Every notice: (agent, log, seq, notice).
    pub fn notices(&self) -> Result<Vec<(String, LogId, u64, Notice)>, StoreError> {
        Ok(self.read_letters(NOTICES, "notice", usize::MAX)?.0)
    }

    /// The first `limit` notices, and how many there are.
    pub fn notices_page(&self, limit: usize) -> Result<(Letters<Notice>, u64), StoreError> {
        self.read_letters(NOTICES, "notice", limit)
    }
}

/// Where the merge stands on one stream: every event up to `resolved_seq` was either merged
/// into Odoo or set aside (parked, queued for a retry, or discarded); the rest of the events
/// up to it were merged. Computed from the durable tables, so the admin API and the metrics
/// agree, across restarts and retries.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StreamProgress {
    pub resolved_seq: u64,
    pub parked: u64,
    pub queued_for_retry: u64,
    pub discarded: u64,
}

impl StreamProgress {
    /// Events applied to Odoo (or that needed no change there).
    pub fn merged(&self) -> u64 {
        self.resolved_seq
            .saturating_sub(self.parked + self.queued_for_retry + self.discarded)
    }
}

impl Store {
    /// The merge's progress on every stream it has touched, read in one transaction.
    pub fn merge_progress(
        &self,
    ) -> Result<std::collections::HashMap<(String, LogId), StreamProgress>, StoreError> {
        let txn = self.db().begin_read().storage()?;
        let mut out: std::collections::HashMap<(String, LogId), StreamProgress> =
            Default::default();
        match txn.open_table(CURSORS) {
            Ok(table) => {
                for entry in table.iter().storage()? {
                    let (k, v) = entry.storage()?;
                    let (agent, log) = k.value();
                    out.entry((agent.to_owned(), LogId(log.to_be_bytes())))
                        .or_default()
                        .resolved_seq = v.value();
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(StoreError::Storage(e.into())),
        }
        type Field = fn(&mut StreamProgress) -> &mut u64;
        let counted: [(_, Field); 3] = [
            (DEAD_LETTERS, |p| &mut p.parked),
            (RETRIES, |p| &mut p.queued_for_retry),
            (DISCARDED, |p| &mut p.discarded),
        ];
        for (definition, field) in counted {
            let table = match txn.open_table(definition) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => continue,
                Err(e) => return Err(StoreError::Storage(e.into())),
            };
            for entry in table.iter().storage()? {
                let (k, _) = entry.storage()?;
                let (agent, log, _) = k.value();
                *field(
                    out.entry((agent.to_owned(), LogId(log.to_be_bytes())))
                        .or_default(),
                ) += 1;
            }
        }
        Ok(out)
    }
}

/// Logs what a plan parked, one line per (warehouse, SKU): the events parked behind an earlier
/// parked one of their SKU were logged with it.
pub fn log_parked(agent: &str, parked: &[(u64, DeadLetter)]) {
    let mut keys: std::collections::BTreeMap<(&str, &str), Vec<&(u64, DeadLetter)>> =
        Default::default();
    for entry in parked {
        keys.entry((&entry.1.warehouse, &entry.1.sku))
            .or_default()
            .push(entry);
    }
    for ((warehouse, sku), letters) in keys {
        let cause = letters.iter().find(|(_, l)| l.reason != PARKED_BEHIND);
        // A phased run parks what waits behind as each phase starts: not in seq order.
        let first_seq = letters
            .iter()
            .map(|(seq, _)| *seq)
            .min()
            .unwrap_or_default();
        let last_seq = letters
            .iter()
            .map(|(seq, _)| *seq)
            .max()
            .unwrap_or_default();
        match cause {
            Some((seq, letter)) => tracing::warn!(
                agent, warehouse, sku, events = letters.len(), first_seq, last_seq, seq,
                reason = %letter.reason, message = %letter.message,
                "events parked: Odoo cannot take them, and later events of this SKU wait behind them (tally-central dlq list)"
            ),
            None => tracing::debug!(
                agent,
                warehouse,
                sku,
                events = letters.len(),
                first_seq,
                last_seq,
                "events parked behind earlier parked events of their SKU"
            ),
        }
    }
}

/// The reason of an event parked only because an earlier one of its SKU is.
pub const PARKED_BEHIND: &str = "parked-behind";

/// Rows of one of the (agent, log, seq) → JSON tables: (agent, log, seq, value).
pub type Letters<T> = Vec<(String, LogId, u64, T)>;

impl Store {
    /// The first `limit` rows of one of the (agent, log, seq) → JSON tables, decoded, and how
    /// many rows it has (counted by redb, not by reading them).
    fn read_letters<T: serde::de::DeserializeOwned>(
        &self,
        definition: TableDefinition<(&str, u128, u64), &[u8]>,
        what: &str,
        limit: usize,
    ) -> Result<(Letters<T>, u64), StoreError> {
        let txn = self.db().begin_read().storage()?;
        let table = match txn.open_table(definition) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok((Vec::new(), 0)),
            Err(e) => return Err(StoreError::Storage(e.into())),
        };
        let total = table.len().storage()?;
        let mut out = Vec::new();
        for entry in table.iter().storage()?.take(limit) {
            let (k, v) = entry.storage()?;
            let (agent, log, seq) = k.value();
            let value: T = serde_json::from_slice(v.value())
                .map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))?;
            out.push((agent.to_owned(), LogId(log.to_be_bytes()), seq, value));
        }
        Ok((out, total))
    }
}

/// A dead letter an operator gave up on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discarded {
    pub letter: DeadLetter,
    pub reason: String,
    pub discarded_at: i64,
}

impl Store {
    /// Discards every parked event of (warehouse, sku) with `reason`: they will never reach
    /// Odoo, and later events of that key stop parking behind them. Returns how many.
    pub fn discard_dead_letters(
        &self,
        warehouse: &str,
        sku: &str,
        reason: &str,
    ) -> Result<usize, StoreError> {
        self.discard_dead_letters_as(warehouse, sku, Actor::local(Some(reason)))
    }

    /// [`Store::discard_dead_letters`] on behalf of `actor` (whose reason is kept with the
    /// events), audited in the same transaction when it discarded anything.
    pub fn discard_dead_letters_as(
        &self,
        warehouse: &str,
        sku: &str,
        actor: Actor<'_>,
    ) -> Result<usize, StoreError> {
        let reason = actor.reason.unwrap_or_default();
        let txn = self.db().begin_write().storage()?;
        let mut count = 0;
        {
            let mut letters = txn.open_table(DEAD_LETTERS).storage()?;
            let mut discarded = txn.open_table(DISCARDED).storage()?;
            for ((agent, log, seq), letter) in matching(&letters, warehouse, sku)? {
                letters.remove((agent.as_str(), log, seq)).storage()?;
                let record = Discarded {
                    letter,
                    reason: reason.to_owned(),
                    discarded_at: now_micros(),
                };
                let bytes = serde_json::to_vec(&record).expect("serialising a plain struct");
                discarded
                    .insert((agent.as_str(), log, seq), bytes.as_slice())
                    .storage()?;
                count += 1;
            }
        }
        if count > 0 {
            let target = format!("{warehouse}/{sku}");
            let detail = format!("{count} {} discarded", events(count));
            audit::append(&txn, actor, "dead-letter-discard", &target, detail)?;
        }
        txn.commit().storage()?;
        Ok(count)
    }
}

type LetterKey = (String, u128, u64);

/// The dead letters of (warehouse, sku), read out of `letters`.
fn matching(
    letters: &impl ReadableTable<(&'static str, u128, u64), &'static [u8]>,
    warehouse: &str,
    sku: &str,
) -> Result<Vec<(LetterKey, DeadLetter)>, StoreError> {
    let mut out = Vec::new();
    for entry in letters.iter().storage()? {
        let (k, v) = entry.storage()?;
        let letter: DeadLetter = serde_json::from_slice(v.value())
            .map_err(|e| StoreError::Corrupt(format!("dead letter: {e}")))?;
        if letter.warehouse == warehouse && letter.sku == sku {
            let (agent, log, seq) = k.value();
            out.push(((agent.to_owned(), log, seq), letter));
        }
    }
    Ok(out)
}

/// "event" or "events", for `count`.
fn events(count: usize) -> &'static str {
    if count == 1 { "event" } else { "events" }
}

/// The current time for `parked_at`.
pub fn now_micros() -> i64 {
    Timestamp::now().as_micros()
}

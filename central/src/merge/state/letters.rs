//! Dead letters, retries, discards and notices: the (agent, log, seq) → JSON tables; and the
//! merge's progress per stream, counted from them.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tally_protocol::LogId;

use super::{DeadLetter, Discarded, Notice, Retry, key, now_micros};
use crate::store::audit::{self, Actor};
use crate::store::schema::{COUNTERS, CURSORS, DEAD_LETTERS, DISCARDED, NOTICES, RETRIES};
use crate::store::{ResultExt, Store, StoreError};

impl Store {
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
        for entry in txn.open_table(CURSORS).storage()?.iter().storage()? {
            let (k, v) = entry.storage()?;
            let (agent, log) = k.value();
            out.entry((agent.to_owned(), LogId(log.to_be_bytes())))
                .or_default()
                .resolved_seq = v.value();
        }
        type Field = fn(&mut StreamProgress) -> &mut u64;
        let counted: [(_, Field); 3] = [
            (DEAD_LETTERS, |p| &mut p.parked),
            (RETRIES, |p| &mut p.queued_for_retry),
            (DISCARDED, |p| &mut p.discarded),
        ];
        for (definition, field) in counted {
            let table = txn.open_table(definition).storage()?;
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
        let table = txn.open_table(definition).storage()?;
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

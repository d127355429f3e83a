//! The durable outbox of every channel, in central's store:
//!
//! - `channel_outbox`: (channel, SKU) → the offer waiting to be pushed ([`Pending`]): one row
//!   per SKU, so the latest value replaces an unsent one (50 changes during a throttle are
//!   one push, of the last value);
//! - `channel_pushed`: (channel, SKU) → the offer the channel last accepted ([`Pushed`]);
//! - `channel_dead`: (channel, SKU) → why the channel refused that SKU for good
//!   ([`ChannelDeadLetter`]);
//! - `channel_counters`: (channel, name) → `seq` (the last sequence number given) and
//!   `last_success` (µs), and the totals of [`super::figures`].
//!
//! Every pending row carries a sequence number, growing per channel. A push completes a row
//! only if it still holds the sequence number that was sent, so a value that arrived while the
//! push was in flight stays and goes next: a channel is never left with an older value after a
//! newer one, and one worker per channel sends in order.

use std::collections::BTreeSet;

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use tally_protocol::Timestamp;

use super::ChannelConfig;
use super::figures::PushFigures;
use super::offer::{is_risk, offer};
use crate::availability::store::{AVAILABILITY, rows_of};
use crate::store::{ResultExt, Store, StoreError};

pub(crate) const OUTBOX: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("channel_outbox");
pub(crate) const PUSHED: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("channel_pushed");
pub(crate) const DEAD: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("channel_dead");
pub(crate) const COUNTERS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("channel_counters");

/// An offer waiting to be pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub offer: u64,
    pub seq: u64,
    /// A drop (or zero): pushed before rises.
    pub risk: bool,
    /// When the SKU first had an unsent value (µs), kept while newer values replace it.
    pub since: i64,
}

/// What the channel last accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pushed {
    pub offer: u64,
    pub seq: u64,
    pub at: i64,
}

/// A SKU the channel refused for good, with its reason; it leaves the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelDeadLetter {
    pub sku: String,
    pub offer: u64,
    /// The channel's code (`ITEM_NOT_STOCKED_AT_LOCATION`) or Tally's (`sku-not-found`).
    pub code: String,
    pub message: String,
    pub at: i64,
}

/// One row of a batch to push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub sku: String,
    pub offer: u64,
    pub seq: u64,
    pub risk: bool,
}

/// What the outbox holds for one channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxStats {
    pub pending: u64,
    pub pending_risk: u64,
    /// Seconds the oldest unsent value has waited.
    pub oldest_pending_age_s: Option<u64>,
    pub dead_letters: u64,
    /// The last push the channel accepted (RFC 3339).
    pub last_success: Option<String>,
}

pub(crate) fn open_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(OUTBOX).storage()?;
    txn.open_table(PUSHED).storage()?;
    txn.open_table(DEAD).storage()?;
    txn.open_table(COUNTERS).storage()?;
    super::figures::open_tables(txn)
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("serialising a plain struct")
}

fn parse<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Recomputes the offers of `skus` for every channel from the availability in `txn`, and
/// queues those that differ from what the channel was last sent or is about to be sent.
pub(crate) fn enqueue(
    txn: &WriteTransaction,
    channels: &[ChannelConfig],
    skus: &BTreeSet<String>,
) -> Result<(), StoreError> {
    if channels.is_empty() || skus.is_empty() {
        return Ok(());
    }
    let availability = txn.open_table(AVAILABILITY).storage()?;
    let mut outbox = txn.open_table(OUTBOX).storage()?;
    let pushed = txn.open_table(PUSHED).storage()?;
    let mut counters = txn.open_table(COUNTERS).storage()?;
    let now = Timestamp::now().as_micros();
    for sku in skus {
        let rows = rows_of(&availability, sku)?;
        for channel in channels {
            if channel.channel_sku(sku).is_none() {
                continue;
            }
            let key = (channel.name.as_str(), sku.as_str());
            let next = offer(channel, &rows);
            let shown = pushed
                .get(key)
                .storage()?
                .map(|v| parse::<Pushed>("channel_pushed row", v.value()))
                .transpose()?;
            let waiting = outbox
                .get(key)
                .storage()?
                .map(|v| parse::<Pending>("channel_outbox row", v.value()))
                .transpose()?;
            let since = match (&waiting, &shown) {
                (Some(w), _) if w.offer == next => continue,
                (None, Some(s)) if s.offer == next => continue,
                (Some(w), _) => w.since,
                (None, _) => now,
            };
            let seq = counters
                .get((channel.name.as_str(), "seq"))
                .storage()?
                .map_or(0, |v| v.value())
                + 1;
            counters
                .insert((channel.name.as_str(), "seq"), seq)
                .storage()?;
            let row = Pending {
                offer: next,
                seq,
                risk: is_risk(next, shown.map(|s| s.offer)),
                since,
            };
            outbox.insert(key, json(&row).as_slice()).storage()?;
        }
    }
    Ok(())
}

impl Store {
    /// Up to `limit` rows of `channel`'s outbox: drops first, then by age of the value.
    pub fn outbox_batch(&self, channel: &str, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let txn = self.db().begin_read().storage()?;
        let table = txn.open_table(OUTBOX).storage()?;
        let mut rows = Vec::new();
        for entry in table.range((channel, "")..).storage()? {
            let (k, v) = entry.storage()?;
            let (c, sku) = k.value();
            if c != channel {
                break;
            }
            let p: Pending = parse("channel_outbox row", v.value())?;
            rows.push(Entry {
                sku: sku.to_owned(),
                offer: p.offer,
                seq: p.seq,
                risk: p.risk,
            });
        }
        rows.sort_by_key(|e| (!e.risk, e.seq));
        rows.truncate(limit);
        Ok(rows)
    }

    /// Records what the channel accepted (`done`) and refused for good (`dead`, with the code
    /// and message); each row leaves the outbox only if no newer value replaced it meanwhile.
    pub fn outbox_complete(
        &self,
        channel: &str,
        done: &[Entry],
        dead: &[(Entry, String, String)],
    ) -> Result<(), StoreError> {
        self.outbox_complete_with(channel, done, dead, &PushFigures::default())
    }

    /// [`Store::outbox_complete`], adding the push's `figures` (calls, throttle waits, drift)
    /// to the channel's stored totals in the same transaction.
    pub fn outbox_complete_with(
        &self,
        channel: &str,
        done: &[Entry],
        dead: &[(Entry, String, String)],
        figures: &PushFigures,
    ) -> Result<(), StoreError> {
        let now = Timestamp::now().as_micros();
        let txn = self.db().begin_write().storage()?;
        {
            let mut outbox = txn.open_table(OUTBOX).storage()?;
            let mut pushed = txn.open_table(PUSHED).storage()?;
            let mut letters = txn.open_table(DEAD).storage()?;
            let mut counters = txn.open_table(COUNTERS).storage()?;
            let mut take = |sku: &str, seq: u64| -> Result<(), StoreError> {
                let current = outbox
                    .get((channel, sku))
                    .storage()?
                    .map(|v| parse::<Pending>("channel_outbox row", v.value()))
                    .transpose()?;
                if current.is_some_and(|c| c.seq == seq) {
                    outbox.remove((channel, sku)).storage()?;
                }
                Ok(())
            };
            for e in done {
                take(&e.sku, e.seq)?;
                let row = Pushed {
                    offer: e.offer,
                    seq: e.seq,
                    at: now,
                };
                pushed
                    .insert((channel, e.sku.as_str()), json(&row).as_slice())
                    .storage()?;
                letters.remove((channel, e.sku.as_str())).storage()?;
            }
            for (e, code, message) in dead {
                take(&e.sku, e.seq)?;
                let row = ChannelDeadLetter {
                    sku: e.sku.clone(),
                    offer: e.offer,
                    code: code.clone(),
                    message: message.clone(),
                    at: now,
                };
                letters
                    .insert((channel, e.sku.as_str()), json(&row).as_slice())
                    .storage()?;
            }
            if !done.is_empty() {
                counters
                    .insert((channel, "last_success"), now as u64)
                    .storage()?;
            }
        }
        super::figures::record_push(&txn, channel, figures)?;
        txn.commit().storage()
    }

    /// Queues every SKU with availability for `channel` again, whatever it was last sent (a
    /// resync: what the channel shows is read again on the way). Returns how many. An operator's
    /// resync (`actor`) is written to the audit log in the same transaction; a scheduled one
    /// is not.
    pub fn outbox_resync(
        &self,
        channel: &ChannelConfig,
        actor: Option<crate::store::audit::Actor<'_>>,
    ) -> Result<usize, StoreError> {
        let skus = self.availability_skus()?;
        let txn = self.db().begin_write().storage()?;
        {
            let mut pushed = txn.open_table(PUSHED).storage()?;
            let mut outbox = txn.open_table(OUTBOX).storage()?;
            for sku in &skus {
                pushed
                    .remove((channel.name.as_str(), sku.as_str()))
                    .storage()?;
                outbox
                    .remove((channel.name.as_str(), sku.as_str()))
                    .storage()?;
            }
        }
        enqueue(&txn, std::slice::from_ref(channel), &skus)?;
        super::figures::record_resync(&txn, &channel.name)?;
        let queued = txn
            .open_table(OUTBOX)
            .storage()?
            .range((channel.name.as_str(), "")..)
            .storage()?
            .filter(|e| e.as_ref().is_ok_and(|(k, _)| k.value().0 == channel.name))
            .count();
        if let Some(actor) = actor {
            crate::store::audit::append(
                &txn,
                actor,
                "channel-resync",
                &channel.name,
                format!("{queued} SKUs queued"),
            )?;
        }
        txn.commit().storage()?;
        Ok(queued)
    }

    pub fn outbox_stats(&self, channel: &str) -> Result<OutboxStats, StoreError> {
        let txn = self.db().begin_read().storage()?;
        let outbox = txn.open_table(OUTBOX).storage()?;
        let mut stats = OutboxStats::default();
        let mut oldest: Option<i64> = None;
        for entry in outbox.range((channel, "")..).storage()? {
            let (k, v) = entry.storage()?;
            if k.value().0 != channel {
                break;
            }
            let p: Pending = parse("channel_outbox row", v.value())?;
            stats.pending += 1;
            stats.pending_risk += u64::from(p.risk);
            oldest = Some(oldest.map_or(p.since, |o| o.min(p.since)));
        }
        let now = Timestamp::now().as_micros();
        stats.oldest_pending_age_s =
            oldest.map(|o| u64::try_from(now.saturating_sub(o) / 1_000_000).unwrap_or(0));
        let dead = txn.open_table(DEAD).storage()?;
        for entry in dead.range((channel, "")..).storage()? {
            let (k, _) = entry.storage()?;
            if k.value().0 != channel {
                break;
            }
            stats.dead_letters += 1;
        }
        let counters = txn.open_table(COUNTERS).storage()?;
        stats.last_success = counters
            .get((channel, "last_success"))
            .storage()?
            .and_then(|v| jiff::Timestamp::from_microsecond(v.value() as i64).ok())
            .map(|t| t.to_string());
        Ok(stats)
    }

    /// The channels the store holds anything of (outbox, pushes, dead letters, counters): what
    /// the command line lists of a stopped central, which has no channel configuration loaded.
    pub fn channel_names(&self) -> Result<BTreeSet<String>, StoreError> {
        let txn = self.db().begin_read().storage()?;
        let mut names = BTreeSet::new();
        for table in [OUTBOX, PUSHED, DEAD] {
            for entry in txn.open_table(table).storage()?.iter().storage()? {
                names.insert(entry.storage()?.0.value().0.to_owned());
            }
        }
        for entry in txn.open_table(COUNTERS).storage()?.iter().storage()? {
            names.insert(entry.storage()?.0.value().0.to_owned());
        }
        Ok(names)
    }

    /// The SKUs `channel` refused for good.
    pub fn channel_dead_letters(
        &self,
        channel: &str,
    ) -> Result<Vec<ChannelDeadLetter>, StoreError> {
        let txn = self.db().begin_read().storage()?;
        let dead = txn.open_table(DEAD).storage()?;
        let mut out = Vec::new();
        for entry in dead.range((channel, "")..).storage()? {
            let (k, v) = entry.storage()?;
            if k.value().0 != channel {
                break;
            }
            out.push(parse("channel_dead row", v.value())?);
        }
        Ok(out)
    }

    /// What `channel` was last sent of `sku`, if anything.
    pub fn channel_pushed(&self, channel: &str, sku: &str) -> Result<Option<Pushed>, StoreError> {
        let txn = self.db().begin_read().storage()?;
        let pushed = txn.open_table(PUSHED).storage()?;
        pushed
            .get((channel, sku))
            .storage()?
            .map(|v| parse("channel_pushed row", v.value()))
            .transpose()
    }
}

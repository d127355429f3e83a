//! Availability in central's store:
//!
//! - `availability`: (SKU, warehouse) → the last [`Availability`] read from Odoo (JSON);
//! - `availability_cursor`: name → text; `odoo_write_date` is the latest write date of Odoo's
//!   stock records the reader has followed.
//!
//! A read that changes a SKU's stock enqueues the new offers of every channel it feeds in the
//! same transaction ([`crate::channels::outbox::enqueue`]): a crash between the two cannot
//! lose a push.

use std::collections::BTreeSet;

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::Availability;
use crate::channels::ChannelConfig;
use crate::store::{ResultExt, Store, StoreError};

pub(crate) const AVAILABILITY: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("availability");
pub(crate) const CURSOR: TableDefinition<&str, &str> = TableDefinition::new("availability_cursor");

const WRITE_DATE: &str = "odoo_write_date";

/// Creates the tables, in the transaction that opens the store.
pub(crate) fn open_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(AVAILABILITY).storage()?;
    txn.open_table(CURSOR).storage()?;
    Ok(())
}

fn decode(bytes: &[u8]) -> Result<Availability, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("availability row: {e}")))
}

/// Every stored row of `sku` (one per warehouse read), inside a transaction.
pub(crate) fn rows_of(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    sku: &str,
) -> Result<Vec<Availability>, StoreError> {
    let mut out = Vec::new();
    for entry in table.range((sku, "")..).storage()? {
        let (k, v) = entry.storage()?;
        if k.value().0 != sku {
            break;
        }
        out.push(decode(v.value())?);
    }
    Ok(out)
}

impl Store {
    /// Stores what Odoo answered; returns the SKUs whose stock changed (or is new), after
    /// enqueueing their new offers for `channels`, all in one durable transaction.
    pub fn record_availability(
        &self,
        rows: &[Availability],
        channels: &[ChannelConfig],
    ) -> Result<BTreeSet<String>, StoreError> {
        self.record_availability_with(rows, channels, false)
    }

    /// Like [`Store::record_availability`]; with `offer_all`, the offers of every SKU read are
    /// compared with what each channel was sent, changed or not: after a restart, a channel
    /// added or a buffer changed in the configuration gets what it lacks.
    pub fn record_availability_with(
        &self,
        rows: &[Availability],
        channels: &[ChannelConfig],
        offer_all: bool,
    ) -> Result<BTreeSet<String>, StoreError> {
        let txn = self.db().begin_write().storage()?;
        let mut changed = BTreeSet::new();
        {
            let mut table = txn.open_table(AVAILABILITY).storage()?;
            for row in rows {
                let key = (row.sku.as_str(), row.warehouse.as_str());
                let before = table
                    .get(key)
                    .storage()?
                    .map(|v| decode(v.value()))
                    .transpose()?;
                if before.is_none_or(|b| !b.same_stock(row)) {
                    changed.insert(row.sku.clone());
                }
                let bytes = serde_json::to_vec(row).expect("serialising a plain struct");
                table.insert(key, bytes.as_slice()).storage()?;
            }
        }
        if offer_all {
            let all: BTreeSet<String> = rows.iter().map(|r| r.sku.clone()).collect();
            crate::channels::outbox::enqueue(&txn, channels, &all)?;
        } else {
            crate::channels::outbox::enqueue(&txn, channels, &changed)?;
        }
        txn.commit().storage()?;
        Ok(changed)
    }

    /// The stored availability of `sku`, in one warehouse or all.
    pub fn availability(
        &self,
        sku: &str,
        warehouse: Option<&str>,
    ) -> Result<Vec<Availability>, StoreError> {
        let txn = self.db().begin_read().storage()?;
        let table = txn.open_table(AVAILABILITY).storage()?;
        let mut rows = rows_of(&table, sku)?;
        rows.retain(|r| warehouse.is_none_or(|w| r.warehouse == w));
        Ok(rows)
    }

    /// Every SKU with stored availability.
    pub fn availability_skus(&self) -> Result<BTreeSet<String>, StoreError> {
        let txn = self.db().begin_read().storage()?;
        let table = txn.open_table(AVAILABILITY).storage()?;
        let mut out = BTreeSet::new();
        for entry in table.iter().storage()? {
            let (k, _) = entry.storage()?;
            out.insert(k.value().0.to_owned());
        }
        Ok(out)
    }

    /// The latest Odoo write date the reader followed, if any.
    pub fn odoo_write_cursor(&self) -> Result<Option<String>, StoreError> {
        let txn = self.db().begin_read().storage()?;
        let table = txn.open_table(CURSOR).storage()?;
        Ok(table
            .get(WRITE_DATE)
            .storage()?
            .map(|v| v.value().to_owned()))
    }

    pub fn set_odoo_write_cursor(&self, at: &str) -> Result<(), StoreError> {
        let txn = self.db().begin_write().storage()?;
        txn.open_table(CURSOR)
            .storage()?
            .insert(WRITE_DATE, at)
            .storage()?;
        txn.commit().storage()
    }
}

//! Availability: per (SKU, warehouse), what Odoo holds over the warehouse's internal locations
//! (on hand, reserved, free), read in bulk ([`reader`]), kept in central's store ([`store`])
//! and fanned out to the sales channels.
//!
//! Architecture invariant: availability is only ever read from Odoo, never computed from
//! Tally's own events: what Odoo reserved for its own orders, and what people changed inside
//! Odoo, count as much as the scans.

pub mod reader;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tally_protocol::Qty;

/// One SKU's stock in one warehouse, as Odoo last answered. The admin API and the CLI show it
/// as it is (quantities as exact decimal strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Availability {
    pub sku: String,
    pub warehouse: String,
    #[serde(with = "qty_text")]
    pub on_hand: Qty,
    #[serde(with = "qty_text")]
    pub reserved: Qty,
    /// On hand minus reserved: what a new order could still take.
    #[serde(with = "qty_text")]
    pub free: Qty,
    /// When Odoo was read (RFC 3339, UTC).
    pub read_at: String,
    /// The journal positions merged into Odoo before the read: the figures include every
    /// event of these agents' logs up to `through`.
    pub includes: Vec<JournalPosition>,
}

/// How far one agent's log was merged into Odoo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalPosition {
    pub agent: String,
    pub log: String,
    pub through: u64,
}

impl Availability {
    /// Whether the stock figures differ (the read time and positions aside).
    pub fn same_stock(&self, other: &Availability) -> bool {
        (self.on_hand, self.reserved) == (other.on_hand, other.reserved)
    }
}

/// On hand minus reserved (negative stock stays negative: Odoo allows it).
pub fn free(on_hand: Qty, reserved: Qty) -> Qty {
    Qty::from_micros(on_hand.micros().saturating_sub(reserved.micros()))
}

/// The SKUs each merge pass touched, per warehouse, waiting for the availability reader: the
/// merge notes them ([`Touched::note`]), the reader takes them all at once.
#[derive(Debug, Default)]
pub struct Touched {
    skus: Mutex<BTreeMap<String, BTreeSet<String>>>,
    wake: tokio::sync::Notify,
}

impl Touched {
    pub fn note<'a>(&self, warehouse: &str, skus: impl IntoIterator<Item = &'a String>) {
        let mut map = self.skus.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(warehouse.to_owned())
            .or_default()
            .extend(skus.into_iter().cloned());
        drop(map);
        self.wake.notify_one();
    }

    pub fn take(&self) -> BTreeMap<String, BTreeSet<String>> {
        std::mem::take(&mut *self.skus.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub async fn noted(&self) {
        self.wake.notified().await;
    }
}

/// Quantities as exact decimal strings (`"12.5"`), never floats.
pub mod qty_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use tally_protocol::Qty;

    pub fn serialize<S: Serializer>(qty: &Qty, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(qty)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Qty, D::Error> {
        let text = String::deserialize(d)?;
        Qty::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_serialize_as_exact_decimals_and_back() {
        let a = Availability {
            sku: "SKU-1".into(),
            warehouse: "WH".into(),
            on_hand: Qty::parse("10.5").unwrap(),
            reserved: Qty::from_units(3),
            free: free(Qty::parse("10.5").unwrap(), Qty::from_units(3)),
            read_at: "2026-12-03T00:00:00Z".into(),
            includes: vec![],
        };
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["free"], "7.5");
        assert_eq!(json["on_hand"], "10.5");
        let back: Availability = serde_json::from_value(json).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn touched_skus_gather_per_warehouse_until_taken() {
        let t = Touched::default();
        t.note("WH", &["A".to_owned(), "B".to_owned()]);
        t.note("WH", &["A".to_owned()]);
        t.note("WH2", &["C".to_owned()]);
        let taken = t.take();
        assert_eq!(taken["WH"].len(), 2);
        assert_eq!(taken["WH2"].len(), 1);
        assert!(t.take().is_empty());
    }
}

//! The channel's open orders (`processing` and `on-hold`: WooCommerce has lowered
//! `stock_quantity` for them), and which of them Odoo's figures already hold.
//!
//! The cache starts with every open order and then follows WooCommerce's `modified_after`
//! (every status, so that an order leaving the open ones is seen leaving), from the `Date` of
//! the previous read's first answer less [`OVERLAP`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::api::Api;
use crate::channels::{ChannelError, Outcome};
use crate::odoo::OdooClient;

/// How far each read looks back before the previous one: WooCommerce stores whole seconds
/// and dates a change when its request started.
pub const OVERLAP: Duration = Duration::from_secs(10);

/// The statuses for which WooCommerce holds an order's units out of `stock_quantity` and
/// Odoo may not have the order yet.
pub const OPEN: [&str; 2] = ["processing", "on-hold"];

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Order {
    pub id: i64,
    #[serde(default)]
    pub number: String,
    pub status: String,
    #[serde(default)]
    pub date_modified_gmt: Option<String>,
    #[serde(default)]
    pub line_items: Vec<Line>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Line {
    #[serde(default)]
    pub sku: Option<String>,
    pub quantity: i64,
    #[serde(default)]
    pub product_id: i64,
    #[serde(default)]
    pub variation_id: i64,
}

/// The open orders and the cursor that follows them.
#[derive(Debug, Default)]
pub struct OpenOrders {
    pub orders: BTreeMap<i64, Order>,
    /// WooCommerce's clock when the last read started.
    cursor: Option<jiff::Timestamp>,
}

impl OpenOrders {
    /// Reads what changed since the last read (everything open the first time) and returns
    /// the open orders that are new or whose lines changed.
    pub async fn refresh(
        &mut self,
        api: &Api,
        out: &mut Outcome,
    ) -> Result<BTreeSet<i64>, ChannelError> {
        let (orders, date) = match self.cursor {
            None => {
                let query = [("status", OPEN.join(","))];
                api.all::<Order>("/orders", &query, out).await?
            }
            Some(cursor) => {
                let since = cursor - jiff::SignedDuration::try_from(OVERLAP).unwrap_or_default();
                let since = since.strftime("%Y-%m-%dT%H:%M:%S").to_string();
                let query = [
                    ("modified_after", since),
                    ("dates_are_gmt", "true".to_owned()),
                    ("status", "any".to_owned()),
                ];
                api.all::<Order>("/orders", &query, out).await?
            }
        };
        // Without a `Date`, central's clock: the overlap covers a small difference.
        self.cursor = Some(date.unwrap_or_else(jiff::Timestamp::now));
        Ok(self.apply(orders))
    }

    /// Takes orders as read: open ones in (returning those new or changed), others out.
    pub fn apply(&mut self, orders: Vec<Order>) -> BTreeSet<i64> {
        let mut changed = BTreeSet::new();
        for order in orders {
            if !OPEN.contains(&order.status.as_str()) {
                self.orders.remove(&order.id);
                continue;
            }
            let same = self
                .orders
                .get(&order.id)
                .is_some_and(|known| known.line_items == order.line_items);
            if !same {
                changed.insert(order.id);
            }
            self.orders.insert(order.id, order);
        }
        changed
    }

    /// Forgets everything: the next read lists every open order again.
    pub fn forget(&mut self) {
        *self = OpenOrders::default();
    }
}

/// The Odoo reference (`client_order_ref`) of `order` by the channel's template.
pub fn reference(template: &str, order: &Order) -> String {
    let number = if order.number.is_empty() {
        order.id.to_string()
    } else {
        order.number.clone()
    };
    template
        .replace("{number}", &number)
        .replace("{id}", &order.id.to_string())
}

/// Which of `refs` Odoo has as a confirmed sales order (state `sale` or `done`). One call for
/// all of them.
pub async fn confirmed_in_odoo(
    odoo: &OdooClient,
    refs: &BTreeSet<String>,
) -> Result<BTreeSet<String>, crate::odoo::OdooError> {
    if refs.is_empty() {
        return Ok(BTreeSet::new());
    }
    let rows = odoo
        .search_read(
            "sale.order",
            json!([
                ["client_order_ref", "in", refs],
                ["state", "in", ["sale", "done"]]
            ]),
            &["client_order_ref"],
            None,
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|row| row["client_order_ref"].as_str())
        .map(str::to_owned)
        .collect())
}

/// Whether an open order's units must still be taken off an offer computed from Odoo's
/// figures whose read started at `read_at`: unless central had already seen the order
/// confirmed in Odoo (`seen`, when that answer arrived) before the read started. Odoo answers
/// each call from a snapshot of committed data, so an answer showing the order confirmed
/// comes after the commit that reserved it, and a read started later holds the reservation.
/// Unknown read time or not seen confirmed: taken off (under-offer, never over).
pub fn take_off(seen: Option<jiff::Timestamp>, read_at: Option<jiff::Timestamp>) -> bool {
    match (seen, read_at) {
        (Some(seen), Some(read_at)) => seen >= read_at,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: i64, status: &str, qty: i64) -> Order {
        Order {
            id,
            number: format!("{}", 1000 + id),
            status: status.into(),
            date_modified_gmt: None,
            line_items: vec![Line {
                sku: Some("A".into()),
                quantity: qty,
                product_id: 7,
                variation_id: 0,
            }],
        }
    }

    #[test]
    fn orders_leaving_the_open_statuses_are_dropped_and_changes_reported() {
        let mut open = OpenOrders::default();
        let changed = open.apply(vec![order(1, "processing", 2), order(2, "on-hold", 1)]);
        assert_eq!(changed, BTreeSet::from([1, 2]));
        // Read again unchanged (the overlap): nothing new.
        assert!(open.apply(vec![order(1, "processing", 2)]).is_empty());
        // Lines edited: reported again.
        assert_eq!(
            open.apply(vec![order(1, "processing", 3)]),
            BTreeSet::from([1])
        );
        open.apply(vec![order(2, "cancelled", 1), order(3, "completed", 5)]);
        assert_eq!(open.orders.keys().copied().collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn references_follow_the_template() {
        let o = order(5, "processing", 1);
        assert_eq!(reference("{number}", &o), "1005");
        assert_eq!(reference("WC-{number}", &o), "WC-1005");
        assert_eq!(reference("wc/{id}", &o), "wc/5");
    }

    #[test]
    fn an_order_counts_as_in_odoo_only_for_figures_read_after_it_was_seen_confirmed() {
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let read = Some(t("2026-12-03T10:00:10Z"));
        // Not seen in Odoo, or read time unknown: taken off.
        assert!(take_off(None, read));
        assert!(take_off(Some(t("2026-12-03T10:00:00Z")), None));
        // Seen confirmed before the read started: Odoo's figures hold it.
        assert!(!take_off(Some(t("2026-12-03T10:00:09.999Z")), read));
        // Seen at or after the start of the read: taken off (counted twice for a moment).
        assert!(take_off(Some(t("2026-12-03T10:00:10Z")), read));
        assert!(take_off(Some(t("2026-12-03T10:00:12Z")), read));
    }
}

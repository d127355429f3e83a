//! What a SKU is offered on WooCommerce now: Odoo's figures through the channel's buffer,
//! less every open order those figures do not hold (ARCHITECTURE.md, "No oversell").

use std::collections::{BTreeSet, HashMap};

use super::{Entry, Target, WooCommerce, orders};
use crate::channels::ChannelError;
use crate::odoo::OdooClient;

/// One SKU's offer and whether open orders were taken off it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value {
    pub value: u64,
    pub took_off: bool,
}

impl WooCommerce {
    /// The offer of each SKU of `round`; one call to Odoo for all the open orders involved.
    /// A SKU holding an order seen in Odoo after its figures were read is read again (the
    /// availability reader is asked to), so that the order is not taken off twice for long.
    pub(super) async fn values(
        &mut self,
        round: &[(Entry, Target)],
    ) -> Result<Vec<Value>, ChannelError> {
        let bases = self.bases(round).await?;
        let skus: BTreeSet<&str> = round.iter().map(|(e, _)| e.sku.as_str()).collect();
        // Units of each SKU held by open orders: (order reference, Tally SKU, quantity).
        let mut held: Vec<(String, String, u64)> = Vec::new();
        for order in self.orders.orders.values() {
            for line in &order.line_items {
                if let Some(sku) = self.line_sku(line).filter(|s| skus.contains(s.as_str())) {
                    let reference = orders::reference(&self.order_ref, order);
                    held.push((reference, sku, line.quantity.max(0) as u64));
                }
            }
        }
        let refs: BTreeSet<String> = held.iter().map(|(r, _, _)| r.clone()).collect();
        let confirmed = self.confirmed(&refs).await?;
        let mut reread = BTreeSet::new();
        let values = round
            .iter()
            .zip(bases)
            .map(|((e, _), (offer, read_at))| {
                let mut taken = 0u64;
                for (reference, _, qty) in held.iter().filter(|(_, sku, _)| *sku == e.sku) {
                    let seen = confirmed.get(reference).copied();
                    if orders::take_off(seen, read_at) {
                        taken += qty;
                        // In Odoo, but the figures are older: a fresh read settles it.
                        if seen.is_some() {
                            reread.insert(e.sku.clone());
                        }
                    }
                }
                Value {
                    value: offer.saturating_sub(taken),
                    took_off: taken > 0,
                }
            })
            .collect();
        if let Some(touched) = &self.touched
            && !reread.is_empty()
        {
            for warehouse in &self.config.warehouses {
                touched.note(warehouse, &reread);
            }
        }
        Ok(values)
    }

    /// The offer of each SKU from the stored availability and the oldest read time among the
    /// channel's warehouses (the entry's offer, read time unknown, without a store).
    async fn bases(
        &self,
        round: &[(Entry, Target)],
    ) -> Result<Vec<(u64, Option<jiff::Timestamp>)>, ChannelError> {
        let Some(store) = self.store.clone() else {
            return Ok(round.iter().map(|(e, _)| (e.offer, None)).collect());
        };
        let skus: Vec<String> = round.iter().map(|(e, _)| e.sku.clone()).collect();
        let config = self.config.clone();
        store
            .blocking(move |store| {
                skus.iter()
                    .map(|sku| {
                        let rows = store.availability(sku, None)?;
                        let read_at = rows
                            .iter()
                            .filter(|r| config.warehouses.contains(&r.warehouse))
                            .map(|r| r.read_at.parse::<jiff::Timestamp>().ok())
                            .min()
                            .flatten();
                        Ok((crate::channels::offer::offer(&config, &rows), read_at))
                    })
                    .collect()
            })
            .await
            .map_err(|e| ChannelError::retryable(format!("reading availability: {e}")))
    }

    /// When central first saw each of `refs` confirmed in Odoo (on central's clock, when the
    /// answer arrived); one call to Odoo for all of them.
    async fn confirmed(
        &mut self,
        refs: &BTreeSet<String>,
    ) -> Result<HashMap<String, jiff::Timestamp>, ChannelError> {
        if refs.is_empty() {
            return Ok(HashMap::new());
        }
        let Some(config) = &self.odoo_config else {
            // Without Odoo, every open order is taken off.
            return Ok(HashMap::new());
        };
        let unreachable = |e: crate::odoo::OdooError| {
            ChannelError::retryable(format!("cannot ask Odoo which orders it has: {e}"))
        };
        if self.odoo.is_none() {
            self.odoo = Some(OdooClient::connect(config).await.map_err(unreachable)?);
        }
        let odoo = self.odoo.as_ref().expect("connected above");
        let confirmed = match orders::confirmed_in_odoo(odoo, refs).await {
            Ok(confirmed) => confirmed,
            Err(e) => {
                self.odoo = None;
                return Err(unreachable(e));
            }
        };
        let answered = jiff::Timestamp::now();
        // Only the orders still open are remembered.
        let open: BTreeSet<String> = self
            .orders
            .orders
            .values()
            .map(|o| orders::reference(&self.order_ref, o))
            .collect();
        self.seen_in_odoo.retain(|r, _| open.contains(r));
        for reference in confirmed {
            self.seen_in_odoo.entry(reference).or_insert(answered);
        }
        Ok(self.seen_in_odoo.clone())
    }
}

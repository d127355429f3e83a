//! The WooCommerce channel (REST API v3).
//!
//! - Offers are written as `stock_quantity` (with `manage_stock: true`) through
//!   `POST /products/batch` and, for variations, `POST /products/{parent}/variations/batch`, at
//!   most [`BATCH`] updates per call (WooCommerce answers more with `413`). A batch answers
//!   `200` with one entry per update: an entry with an `error` whose status is 4xx sends that
//!   SKU to the channel's dead letters with WooCommerce's code and message, the others go on;
//!   one whose status is 429 or 5xx stays in the outbox for the next push.
//! - `413`, `429` and `5xx` of a whole call fail the push: the worker backs off.
//! - SKUs are resolved in bulk: every product, 100 a page, and the variations of each
//!   variable product, cached for the life of the worker (a resync or a SKU unknown for more
//!   than [`RELOAD`] reads them again).
//!
//! No oversell ([`orders`], ARCHITECTURE.md "No oversell"): `stock_quantity` is an absolute set
//! and WooCommerce lowers it itself for each order. An order WooCommerce took and Odoo's
//! figures do not hold yet is taken off the offer before it is written; after each write, the
//! orders changed since just before it are read, and a SKU one of them touches is written
//! again at once with it taken off.

pub mod api;
pub mod orders;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{ChannelConfig, ChannelError, ChannelKind, Drift, Entry, Outcome};
use crate::odoo::{OdooClient, OdooConfig};
use crate::store::Store;
use api::{Api, Product};
use orders::OpenOrders;

/// Updates per batch call (WooCommerce's limit).
pub const BATCH: usize = 100;
/// Rows one push takes from the outbox: many batch calls share the read of the orders that
/// follows them.
pub const PUSH: usize = 2500;
/// How long a loaded catalog is trusted to lack a SKU.
pub const RELOAD: Duration = Duration::from_secs(300);
/// Writes of the same SKUs, when orders keep arriving during them, before the rest waits for
/// the next push (the buffer covers what one round trip lets through).
const ROUNDS: usize = 3;
/// A read of the orders younger than this serves the next push (the read after each write
/// keeps it whole).
const ORDERS_FRESH: Duration = Duration::from_secs(2);

/// Where a SKU's stock is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    pub id: i64,
    /// The parent product of a variation.
    pub parent: Option<i64>,
}

impl Target {
    fn path(self) -> String {
        match self.parent {
            None => "/products/batch".to_owned(),
            Some(parent) => format!("/products/{parent}/variations/batch"),
        }
    }
}

#[derive(Debug)]
pub struct WooCommerce {
    api: Api,
    config: ChannelConfig,
    order_ref: String,
    /// Odoo's figures, with when they were read (`None`: the entry's offer, read time unknown).
    store: Option<Store>,
    odoo_config: Option<OdooConfig>,
    odoo: Option<OdooClient>,
    /// Channel SKU → where it is written.
    targets: HashMap<String, Target>,
    /// Product or variation id → its channel SKU.
    sku_of_id: HashMap<i64, String>,
    /// `stock_quantity` as read by the catalog load of the current push.
    fresh: HashMap<Target, Option<i64>>,
    loaded: Option<Instant>,
    orders: OpenOrders,
    orders_read: Option<Instant>,
    /// Channel SKU → Tally SKU, where they differ.
    tally_sku: HashMap<String, String>,
}

impl WooCommerce {
    pub fn new(config: &ChannelConfig, store: Option<Store>, odoo: Option<OdooConfig>) -> Self {
        let order_ref = match &config.kind {
            ChannelKind::WooCommerce { order_ref } => order_ref.clone(),
            _ => "{number}".to_owned(),
        };
        WooCommerce {
            api: Api::new(&config.url, &config.secret),
            config: config.clone(),
            order_ref,
            store,
            odoo_config: odoo,
            odoo: None,
            targets: HashMap::new(),
            sku_of_id: HashMap::new(),
            fresh: HashMap::new(),
            loaded: None,
            orders: OpenOrders::default(),
            orders_read: None,
            tally_sku: config
                .skus
                .iter()
                .map(|(tally, channel)| (channel.clone(), tally.clone()))
                .collect(),
        }
    }

    /// Forgets what is cached, so that the next push reads everything again (a resync).
    pub fn forget(&mut self) {
        self.targets.clear();
        self.sku_of_id.clear();
        self.loaded = None;
        self.orders.forget();
        self.orders_read = None;
    }

    /// Reads every product and variation: SKU → id, and the stock each shows.
    async fn load_catalog(&mut self, out: &mut Outcome) -> Result<(), ChannelError> {
        let (products, _) = self
            .api
            .all::<Product>("/products", &[("orderby", "id".into())], out)
            .await?;
        self.targets.clear();
        self.sku_of_id.clear();
        for p in products {
            if p.kind == "variable" {
                let path = format!("/products/{}/variations", p.id);
                let (variations, _) = self.api.all::<Product>(&path, &[], out).await?;
                for v in variations {
                    self.learn(v, Some(p.id));
                }
            }
            self.learn(p, None);
        }
        self.loaded = Some(Instant::now());
        Ok(())
    }

    fn learn(&mut self, p: Product, parent: Option<i64>) {
        if p.sku.is_empty() || p.kind == "variable" {
            return;
        }
        let target = Target { id: p.id, parent };
        let shown = (p.manage_stock == Value::Bool(true))
            .then_some(p.stock_quantity)
            .flatten();
        self.fresh.insert(target, shown);
        self.sku_of_id.insert(p.id, p.sku.clone());
        // WooCommerce keeps SKUs unique; should two share one, the first listed is written.
        self.targets.entry(p.sku).or_insert(target);
    }

    /// The Tally SKU of a line of an order, if the channel sells it.
    fn line_sku(&self, line: &orders::Line) -> Option<String> {
        let id = if line.variation_id != 0 {
            line.variation_id
        } else {
            line.product_id
        };
        let channel = self.sku_of_id.get(&id).cloned().or(line.sku.clone())?;
        Some(self.tally_sku.get(&channel).cloned().unwrap_or(channel))
    }

    pub async fn push(&mut self, batch: &[Entry]) -> Result<Outcome, ChannelError> {
        let mut out = Outcome::default();
        self.fresh.clear();
        let config = self.config.clone();
        let sku_of = |e: &Entry| config.channel_sku(&e.sku).unwrap_or(&e.sku).to_owned();
        let unknown = batch.iter().any(|e| !self.targets.contains_key(&sku_of(e)));
        if unknown && self.loaded.is_none_or(|at| at.elapsed() > RELOAD) {
            self.load_catalog(&mut out).await?;
        }
        let mut todo: Vec<(Entry, Target)> = Vec::new();
        let mut seen = BTreeSet::new();
        for e in batch {
            let sku = sku_of(e);
            match self.targets.get(&sku) {
                None => out.dead.push((
                    e.clone(),
                    "sku-not-found".into(),
                    format!("WooCommerce has no product or variation with SKU {sku:?}"),
                )),
                // Two Tally SKUs mapped to one product: the second waits for the next push.
                Some(t) if !seen.insert(*t) => {}
                Some(t) => todo.push((e.clone(), *t)),
            }
        }
        if todo.is_empty() {
            return Ok(out);
        }
        if self
            .orders_read
            .is_none_or(|at| at.elapsed() > ORDERS_FRESH)
        {
            self.orders.refresh(&self.api, &mut out).await?;
        }
        let mut accepted: HashMap<Target, Entry> = HashMap::new();
        let mut round = todo;
        for _ in 0..ROUNDS {
            let values = self.values(&round).await?;
            self.orders_read = None;
            let written = self.write(&round, &values, &mut out).await?;
            let changed = self.orders.refresh(&self.api, &mut out).await?;
            self.orders_read = Some(Instant::now());
            for (e, t) in &round {
                if written.contains(t) {
                    accepted.entry(*t).or_insert_with(|| e.clone());
                }
            }
            // An order placed while this write was on its way was overwritten by it: its
            // SKUs go again at once, with it taken off.
            let touched: BTreeSet<String> = changed
                .iter()
                .filter_map(|id| self.orders.orders.get(id))
                .flat_map(|o| o.line_items.iter())
                .filter_map(|l| self.line_sku(l))
                .collect();
            round.retain(|(e, t)| written.contains(t) && touched.contains(&e.sku));
            if round.is_empty() {
                break;
            }
            tracing::info!(
                channel = %self.config.name,
                skus = round.len(),
                "orders arrived during a write: writing their SKUs again"
            );
        }
        // A SKU refused in a later round is not also done.
        let dead: BTreeSet<&str> = out.dead.iter().map(|(e, _, _)| e.sku.as_str()).collect();
        let done: Vec<Entry> = accepted
            .into_values()
            .filter(|e| !dead.contains(e.sku.as_str()))
            .collect();
        out.done.extend(done);
        Ok(out)
    }

    /// What each SKU of `round` is offered now: Odoo's figures through the channel's buffer,
    /// less every open order they do not hold.
    async fn values(&mut self, round: &[(Entry, Target)]) -> Result<Vec<u64>, ChannelError> {
        let mut bases = Vec::with_capacity(round.len());
        for (e, _) in round {
            bases.push(self.base(e).await?);
        }
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
        Ok(round
            .iter()
            .zip(bases)
            .map(|((e, _), (offer, read_at))| {
                let taken: u64 = held
                    .iter()
                    .filter(|(r, sku, _)| {
                        *sku == e.sku && orders::take_off(confirmed.get(r).copied(), read_at)
                    })
                    .map(|(_, _, q)| q)
                    .sum();
                offer.saturating_sub(taken)
            })
            .collect())
    }

    /// The offer of one SKU from the stored availability and the oldest read time among the
    /// channel's warehouses (the entry's offer, read time unknown, without a store).
    async fn base(&self, e: &Entry) -> Result<(u64, Option<jiff::Timestamp>), ChannelError> {
        let Some(store) = self.store.clone() else {
            return Ok((e.offer, None));
        };
        let sku = e.sku.clone();
        let rows = tokio::task::spawn_blocking(move || store.availability(&sku, None))
            .await
            .map_err(|e| ChannelError::retryable(format!("reading availability: {e}")))?
            .map_err(|e| ChannelError::retryable(format!("reading availability: {e}")))?;
        let read_at = rows
            .iter()
            .filter(|r| self.config.warehouses.contains(&r.warehouse))
            .map(|r| r.read_at.parse::<jiff::Timestamp>().ok())
            .min()
            .flatten();
        Ok((super::offer::offer(&self.config, &rows), read_at))
    }

    /// When Odoo confirmed each reference; one call to Odoo for all of them.
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
        match orders::confirmed_in_odoo(odoo, refs).await {
            Ok(confirmed) => Ok(confirmed),
            Err(e) => {
                self.odoo = None;
                Err(unreachable(e))
            }
        }
    }

    /// Writes `values`, [`BATCH`] per call and endpoint; returns the targets WooCommerce
    /// accepted. Refused items go to `out.dead`; transient ones are left for the next push.
    async fn write(
        &mut self,
        round: &[(Entry, Target)],
        values: &[u64],
        out: &mut Outcome,
    ) -> Result<BTreeSet<Target>, ChannelError> {
        let mut by_path: BTreeMap<String, Vec<(&Entry, Target, u64)>> = BTreeMap::new();
        // Already showing the value (just read): nothing to write.
        let mut written = BTreeSet::new();
        for ((e, t), value) in round.iter().zip(values) {
            if let Some(shown) = self.fresh.remove(t) {
                if shown == i64::try_from(*value).ok() {
                    written.insert(*t);
                    continue;
                }
                out.drift.push(Drift {
                    sku: e.sku.clone(),
                    channel_showed: shown,
                    offered: *value,
                });
            }
            by_path.entry(t.path()).or_default().push((e, *t, *value));
        }
        for (path, items) in by_path {
            for chunk in items.chunks(BATCH) {
                let updates: Vec<Value> = chunk
                    .iter()
                    .map(|(_, t, v)| json!({"id": t.id, "manage_stock": true, "stock_quantity": v}))
                    .collect();
                let answers = self.api.batch(&path, &updates, out).await?;
                for ((e, t, _), answer) in chunk.iter().zip(answers) {
                    match answer.error {
                        None => {
                            written.insert(*t);
                        }
                        Some(error) if error.is_transient() => {
                            tracing::warn!(channel = %self.config.name, sku = %e.sku, code = %error.code, "WooCommerce could not take a SKU now: it goes again");
                        }
                        Some(error) => {
                            out.dead.push(((*e).clone(), error.code, error.message));
                        }
                    }
                }
            }
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests;

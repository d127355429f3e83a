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
//!   than [`RELOAD`] reads them again). What a listing shows is compared with the offer: equal
//!   is not written, different is reported as drift.
//!
//! No oversell ([`orders`], ARCHITECTURE.md "No oversell"): `stock_quantity` is an absolute set
//! and WooCommerce lowers it itself for each order. The open orders are read before every
//! push, and each one Odoo's figures do not hold yet is taken off the offer ([`offers`]); after
//! each write, the orders changed since just before it are read, and a SKU one of them touches
//! is written again at once with it taken off ([`rounds`]). SKUs written with orders taken off
//! are looked at again every [`RECHECK`], so that counting an order twice (by the shop and by
//! Odoo) does not last.

pub mod api;
mod offers;
pub mod orders;
mod rounds;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ChannelConfig, ChannelError, ChannelKind, Entry, Outcome};
use crate::availability::Touched;
use crate::odoo::{OdooClient, OdooConfig};
use crate::store::Store;
use api::{Api, Product};
use orders::OpenOrders;

/// Updates per batch call (WooCommerce's limit).
pub const BATCH: usize = 100;
/// Rows one push takes from the outbox: many batch calls share the reads of the orders before
/// and after them.
pub const PUSH: usize = 5000;
/// How long a loaded catalog is trusted to lack a SKU.
pub const RELOAD: Duration = Duration::from_secs(300);
/// Writes of the same SKUs, when orders keep arriving during them, before the rest waits for
/// the next recheck (the buffer covers what one round trip lets through).
const ROUNDS: usize = 3;
/// How often SKUs written with open orders taken off are looked at again.
pub const RECHECK: Duration = Duration::from_secs(5);

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
    /// Order reference → when central first saw it confirmed in Odoo (the answer's arrival,
    /// on central's clock), for the open orders.
    seen_in_odoo: HashMap<String, jiff::Timestamp>,
    /// Channel SKU → Tally SKU, where they differ.
    tally_sku: HashMap<String, String>,
    /// Asks the availability reader to read SKUs again.
    touched: Option<Arc<Touched>>,
    /// Tally SKU → what was last written for it, while that took open orders off.
    watch: BTreeMap<String, Watched>,
    next_recheck: Option<Instant>,
}

/// A SKU whose written offer took open orders off: written again when that changes (an order
/// leaves, or Odoo's figures hold it).
#[derive(Debug, Clone)]
struct Watched {
    entry: Entry,
    target: Target,
    written: u64,
}

impl WooCommerce {
    /// `store`: Odoo's figures with their read times (without it, the entries' offers, every
    /// open order taken off). `odoo`: where to ask which orders Odoo has, and the availability
    /// reader to ask for a fresh read.
    pub fn new(
        config: &ChannelConfig,
        store: Option<Store>,
        odoo: Option<(OdooConfig, Arc<Touched>)>,
    ) -> Self {
        let (odoo, touched) = odoo.unzip();
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
            tally_sku: config
                .skus
                .iter()
                .map(|(tally, channel)| (channel.clone(), tally.clone()))
                .collect(),
            touched,
            watch: BTreeMap::new(),
            next_recheck: None,
            seen_in_odoo: HashMap::new(),
        }
    }

    /// Forgets what is cached, so that the next push reads everything again (a resync).
    pub fn forget(&mut self) {
        self.targets.clear();
        self.sku_of_id.clear();
        self.loaded = None;
        self.orders.forget();
        self.seen_in_odoo.clear();
        self.watch.clear();
    }

    /// Reads every product and variation: SKU → id, and the stock each shows.
    async fn load_catalog(&mut self, out: &mut Outcome) -> Result<(), ChannelError> {
        let (products, _) = self
            .api
            .all::<Product>("/products", &[("orderby", "id".into())], out)
            .await?;
        let mut listed = Vec::with_capacity(products.len());
        for p in products {
            if p.kind == "variable" {
                let path = format!("/products/{}/variations", p.id);
                let (variations, _) = self.api.all::<Product>(&path, &[], out).await?;
                listed.extend(variations.into_iter().map(|v| (v, Some(p.id))));
            }
            listed.push((p, None));
        }
        // Replaced only once read whole: a listing cut short by an error keeps the old one.
        self.targets.clear();
        self.sku_of_id.clear();
        for (p, parent) in listed {
            self.learn(p, parent);
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
        // The orders WooCommerce holds stock for, as of just before the figures are computed.
        self.orders.refresh(&self.api, &mut out).await?;
        self.next_recheck = Some(Instant::now() + RECHECK);
        let accepted = self.write_rounds(todo, &mut out).await?;
        // A SKU refused in a later round is not also done.
        let dead: BTreeSet<&str> = out.dead.iter().map(|(e, _, _)| e.sku.as_str()).collect();
        let done: Vec<Entry> = accepted
            .into_iter()
            .filter(|e| !dead.contains(e.sku.as_str()))
            .collect();
        out.done.extend(done);
        Ok(out)
    }
}

#[cfg(test)]
mod tests;

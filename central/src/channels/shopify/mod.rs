//! The Shopify channel (Admin GraphQL, API version 2026-04).
//!
//! - Offers are set as the location's `on_hand` with `inventorySetQuantities`, at most
//!   [`BATCH`] quantities per call, each with `changeFromQuantity` (what Tally last read or
//!   set there) and the mutation under `@idempotent(key:)`, the key a digest of the input, so
//!   the retries of one write carry the same key and a different write never does.
//! - SKUs are resolved to inventory items by `productVariants` queries for up to
//!   [`LOOKUP`] SKUs at once (with their `on_hand` at the location), the location by name from
//!   `locations`; both are cached for the life of the worker.
//! - Every call first waits until the client-side leaky bucket ([`bucket`]) can pay its
//!   expected cost, and every answer's `throttleStatus` corrects the bucket.
//! - `THROTTLED`: wait and send the same request again. `CHANGE_FROM_QUANTITY_STALE`: re-read
//!   those items' `on_hand`, set again. `IDEMPOTENCY_CONCURRENT_REQUEST`: wait, send again with
//!   the same key. Any other user error naming a quantity: that SKU goes to the channel's dead
//!   letters with Shopify's code and message, the others go on.
//!
//! Why `on_hand`: Shopify's `available` is `on_hand` minus what its unfulfilled orders
//! committed. Tally sets `on_hand` to what Odoo has free, so an order Shopify took and Odoo
//! has not seen yet stays subtracted by Shopify itself (see ARCHITECTURE.md, "No oversell").

pub mod bucket;
mod graphql;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tally_protocol::Secret;

use super::{ChannelConfig, ChannelError, ChannelKind, Entry, Outcome};
use bucket::Bucket;
pub use graphql::sku_query;
use graphql::{
    Answer, ITEMS, ItemNode, LEVELS, LOCATIONS, Location, Page, SET, UserError, Variant, shape,
};

/// Quantities per `inventorySetQuantities` call (Shopify's limit).
pub const BATCH: usize = 250;
/// SKUs per lookup query.
pub const LOOKUP: usize = 250;
pub const API_VERSION: &str = "2026-04";
/// The most attempts of one set before what is left waits for the worker's next round.
const SET_ATTEMPTS: usize = 6;

#[derive(Debug)]
pub struct Shopify {
    http: reqwest::Client,
    endpoint: String,
    token: Secret,
    config: ChannelConfig,
    location_name: String,
    location: Option<String>,
    /// Channel SKU → inventory item id (`None`: Shopify has no variant with that SKU).
    items: HashMap<String, Option<String>>,
    /// Inventory item id → its `on_hand` at the location as last read or set (`None`: the
    /// item is not stocked there).
    on_hand: HashMap<String, Option<i64>>,
    bucket: Bucket,
    /// The requested cost Shopify last charged per query, to wait for before the next.
    costs: HashMap<&'static str, f64>,
    /// Items whose `on_hand` was read from Shopify during the current push.
    fresh: HashSet<String>,
}

impl Shopify {
    pub fn new(config: &ChannelConfig) -> Shopify {
        let location_name = match &config.kind {
            ChannelKind::Shopify { location } => location.clone(),
            _ => String::new(),
        };
        Shopify {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a plain HTTP client"),
            endpoint: format!("{}/admin/api/{API_VERSION}/graphql.json", config.url),
            token: config.secret.clone(),
            config: config.clone(),
            location_name,
            location: None,
            items: HashMap::new(),
            on_hand: HashMap::new(),
            bucket: Bucket::new(),
            costs: HashMap::new(),
            fresh: HashSet::new(),
        }
    }

    /// One GraphQL request, paid for first, repeated while Shopify says `THROTTLED`.
    async fn call(
        &mut self,
        op: &'static str,
        query: &str,
        variables: Value,
        out: &mut Outcome,
    ) -> Result<Value, ChannelError> {
        let body = json!({"query": query, "variables": variables});
        for _ in 0..20 {
            // Before the first answer of a kind, the most a query may cost.
            let cost = self.costs.get(op).copied().unwrap_or(1000.0);
            let wait = self.bucket.wait_for(cost, Instant::now());
            if !wait.is_zero() {
                out.throttle_waits += 1;
                tokio::time::sleep(wait).await;
            }
            self.bucket.spend(cost, Instant::now());
            out.calls += 1;
            let response = self
                .http
                .post(&self.endpoint)
                .header("X-Shopify-Access-Token", self.token.expose())
                .json(&body)
                .send()
                .await
                .map_err(|e| ChannelError::transport(e, "Shopify"))?;
            let status = response.status();
            if !status.is_success() {
                return Err(ChannelError::http(status.as_u16(), "Shopify"));
            }
            let body = super::read_limited(response, "Shopify").await?;
            let answer: Answer = serde_json::from_slice(&body).map_err(|e| shape(op, e))?;
            if let Some(cost) = answer.extensions.and_then(|e| e.cost) {
                if let Some(requested) = cost.requested_query_cost {
                    self.costs.insert(op, requested);
                }
                self.bucket.observe(cost.throttle_status, Instant::now());
            }
            let throttled = answer.errors.iter().any(|e| {
                e.extensions.as_ref().and_then(|x| x.code.as_deref()) == Some("THROTTLED")
            });
            if throttled {
                continue;
            }
            if let Some(e) = answer.errors.first() {
                return Err(ChannelError::contract(format!(
                    "Shopify refused {op}: {}",
                    e.message
                )));
            }
            return answer.data.ok_or_else(|| shape(op, "no data"));
        }
        Err(ChannelError::retryable(format!(
            "Shopify kept throttling {op}"
        )))
    }

    async fn location(&mut self, out: &mut Outcome) -> Result<String, ChannelError> {
        if let Some(id) = &self.location {
            return Ok(id.clone());
        }
        let mut after: Option<String> = None;
        loop {
            let data = self
                .call("locations", LOCATIONS, json!({"after": after}), out)
                .await?;
            let page: Page<Location> = serde_json::from_value(data["locations"].clone())
                .map_err(|e| shape("locations", e))?;
            if let Some(found) = page
                .nodes
                .into_iter()
                .find(|l| l.name == self.location_name)
            {
                self.location = Some(found.id.clone());
                return Ok(found.id);
            }
            if !page.page_info.has_next_page {
                return Err(ChannelError::contract(format!(
                    "Shopify has no location named {:?}",
                    self.location_name
                )));
            }
            after = page.page_info.end_cursor;
        }
    }

    /// Finds the inventory items of `skus` (and their `on_hand` at the location).
    async fn lookup(
        &mut self,
        skus: &[&str],
        location: &str,
        out: &mut Outcome,
    ) -> Result<(), ChannelError> {
        let query = sku_query(skus);
        let mut after: Option<String> = None;
        loop {
            let data = self
                .call(
                    "items",
                    ITEMS,
                    json!({"query": query, "location": location, "after": after}),
                    out,
                )
                .await?;
            let page: Page<Variant> = serde_json::from_value(data["productVariants"].clone())
                .map_err(|e| shape("productVariants", e))?;
            for v in page.nodes {
                // Shopify's search may match more than the exact SKU.
                let Some(sku) = v.sku.filter(|s| skus.contains(&s.as_str())) else {
                    continue;
                };
                let item = v.inventory_item;
                self.fresh.insert(item.id.clone());
                self.on_hand.insert(
                    item.id.clone(),
                    item.inventory_level.and_then(|l| l.on_hand()),
                );
                self.items.insert(sku, Some(item.id));
            }
            if !page.page_info.has_next_page {
                break;
            }
            after = page.page_info.end_cursor;
        }
        for sku in skus {
            self.items.entry((*sku).to_owned()).or_insert(None);
        }
        Ok(())
    }

    /// Reads `on_hand` of `items` at the location again.
    async fn reread(
        &mut self,
        items: &[String],
        location: &str,
        out: &mut Outcome,
    ) -> Result<(), ChannelError> {
        for chunk in items.chunks(BATCH) {
            let data = self
                .call(
                    "levels",
                    LEVELS,
                    json!({"ids": chunk, "location": location}),
                    out,
                )
                .await?;
            let nodes: Vec<Option<ItemNode>> =
                serde_json::from_value(data["nodes"].clone()).map_err(|e| shape("nodes", e))?;
            for node in nodes.into_iter().flatten() {
                self.fresh.insert(node.id.clone());
                self.on_hand
                    .insert(node.id, node.inventory_level.and_then(|l| l.on_hand()));
            }
        }
        Ok(())
    }

    /// Forgets what is cached, so that the next push reads everything again (a resync).
    pub fn forget(&mut self) {
        self.items.clear();
        self.on_hand.clear();
        self.location = None;
    }

    pub async fn push(&mut self, batch: &[Entry]) -> Result<Outcome, ChannelError> {
        let mut out = Outcome::default();
        self.fresh.clear();
        let location = self.location(&mut out).await?;
        let config = self.config.clone();
        let sku_of = |e: &Entry| config.channel_sku(&e.sku).unwrap_or(&e.sku).to_owned();
        let unknown: Vec<String> = batch
            .iter()
            .map(sku_of)
            .filter(|s| !self.items.contains_key(s))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for chunk in unknown.chunks(LOOKUP) {
            let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
            self.lookup(&chunk, &location, &mut out).await?;
        }
        let mut todo: Vec<(Entry, String)> = Vec::new();
        let mut seen = HashSet::new();
        for e in batch {
            let sku = sku_of(e);
            match self.items.get(&sku).cloned().flatten() {
                None => out.dead.push((
                    e.clone(),
                    "sku-not-found".into(),
                    format!("Shopify has no product variant with SKU {sku:?}"),
                )),
                // Two Tally SKUs mapped to one item: the second waits for the next call
                // (one item and location at most once per call).
                Some(item) if !seen.insert(item.clone()) => {}
                Some(item) => todo.push((e.clone(), item)),
            }
        }
        self.set(todo, &location, &mut out).await?;
        Ok(out)
    }

    async fn set(
        &mut self,
        mut todo: Vec<(Entry, String)>,
        location: &str,
        out: &mut Outcome,
    ) -> Result<(), ChannelError> {
        for _ in 0..SET_ATTEMPTS {
            // What was just read from Shopify: a value it already shows needs no write, any
            // other is drift worth reporting.
            todo.retain(|(e, item)| {
                if !self.fresh.remove(item) {
                    return true;
                }
                let shown = self.on_hand.get(item).copied().flatten();
                if shown == i64::try_from(e.offer).ok() {
                    out.done.push(e.clone());
                    return false;
                }
                out.drift.push(super::Drift {
                    sku: e.sku.clone(),
                    channel_showed: shown,
                    offered: e.offer,
                });
                true
            });
            if todo.is_empty() {
                return Ok(());
            }
            let quantities: Vec<Value> = todo
                .iter()
                .map(|(e, item)| {
                    json!({
                        "inventoryItemId": item,
                        "locationId": location,
                        "quantity": e.offer,
                        "changeFromQuantity": self.on_hand.get(item).copied().flatten(),
                    })
                })
                .collect();
            let input = json!({
                "name": "on_hand",
                "reason": "correction",
                "referenceDocumentUri": format!("gid://tally/Channel/{}", self.config.name),
                "quantities": quantities,
            });
            let digest = Sha256::digest(
                serde_json::to_vec(&(&self.config.name, &input)).expect("plain JSON"),
            );
            let key = format!("tally-{}", hex::encode(&digest[..16]));
            let data = self
                .call("set", SET, json!({"input": input, "key": key}), out)
                .await?;
            let errors: Vec<UserError> =
                serde_json::from_value(data["inventorySetQuantities"]["userErrors"].clone())
                    .map_err(|e| shape("inventorySetQuantities", e))?;
            if errors.is_empty() {
                for (e, item) in todo.drain(..) {
                    self.on_hand.insert(item, Some(e.offer as i64));
                    out.done.push(e);
                }
                return Ok(());
            }
            let mut stale = Vec::new();
            let mut dead = HashMap::new();
            let mut concurrent = false;
            for error in errors {
                let index = error
                    .field
                    .as_ref()
                    .filter(|f| f.len() >= 3 && f[0] == "input" && f[1] == "quantities")
                    .and_then(|f| f[2].parse::<usize>().ok())
                    .filter(|i| *i < todo.len());
                let code = error.code.unwrap_or_else(|| "UNKNOWN".into());
                match (code.as_str(), index) {
                    ("IDEMPOTENCY_CONCURRENT_REQUEST", _) => concurrent = true,
                    ("CHANGE_FROM_QUANTITY_STALE", Some(i)) => stale.push(todo[i].1.clone()),
                    (_, Some(i)) => {
                        dead.insert(i, (code, error.message));
                    }
                    (_, None) => {
                        return Err(ChannelError::contract(format!(
                            "Shopify refused inventorySetQuantities: {code}: {}",
                            error.message
                        )));
                    }
                }
            }
            if concurrent {
                // The same write is still in flight: the same key again, a little later.
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let mut i = 0;
            todo.retain(|(e, _)| {
                let keep = match dead.remove(&i) {
                    Some((code, message)) => {
                        out.dead.push((e.clone(), code, message));
                        false
                    }
                    None => true,
                };
                i += 1;
                keep
            });
            if !stale.is_empty() {
                self.reread(&stale, location, out).await?;
            }
        }
        Ok(())
    }
}

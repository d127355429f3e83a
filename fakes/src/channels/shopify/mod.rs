//! A fake of Shopify's Admin GraphQL API (2026-04) for what Tally uses: `locations`,
//! `productVariants` (search by `sku:`), `nodes` on inventory items with their
//! `inventoryLevel(locationId:) { quantities(names:) }`, and `inventorySetQuantities`.
//!
//! It behaves like the real service, not like Tally: every document is parsed with a GraphQL
//! parser and answered field by field from its selection sets; a request costs points from a
//! leaky bucket (a request the bucket cannot pay for is answered `THROTTLED` and counted);
//! `inventorySetQuantities` refuses what 2026-04 refuses (no `@idempotent(key:)`, a quantity
//! without `changeFromQuantity`, more than 250 quantities, one item and location twice),
//! compares `changeFromQuantity` with the current value (`CHANGE_FROM_QUANTITY_STALE`), applies
//! all or nothing, and answers a repeated key with the first answer (the same key with other
//! arguments: `IDEMPOTENCY_KEY_PARAMETER_MISMATCH`). A write can be made to stay "in flight"
//! ([`ShopifyFake::in_flight`]): applied, its answer lost, and its key answered
//! `IDEMPOTENCY_CONCURRENT_REQUEST` for a while. Orders lower `available` and raise
//! `committed`; fulfilling lowers `on_hand` and `committed`.

mod document;
mod execute;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use document::top_error;

/// The fake's rate limit and credentials.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    pub token: String,
    pub bucket_max: f64,
    pub restore_rate: f64,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            token: "shpat_test".into(),
            bucket_max: 2000.0,
            restore_rate: 100.0,
        }
    }
}

/// What the fake counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests answered (throttled ones included).
    pub requests: u64,
    pub queries: u64,
    pub mutations: u64,
    /// Requests refused because the bucket could not pay for them.
    pub throttled: u64,
    /// Mutations refused as a whole (a top-level error: a missing directive or argument).
    pub refused: u64,
    /// Quantities applied.
    pub quantities_set: u64,
    /// `CHANGE_FROM_QUANTITY_STALE` answers.
    pub stale: u64,
    /// `IDEMPOTENCY_CONCURRENT_REQUEST` answers.
    pub concurrent: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Level {
    on_hand: i64,
    committed: i64,
}

#[derive(Debug)]
struct Fake {
    config: FakeConfig,
    locations: Vec<(String, String)>,
    /// (sku, inventory item id).
    variants: Vec<(String, String)>,
    /// Every inventory item id.
    items: HashSet<String>,
    /// (item, location) → level; absent: not stocked there.
    levels: HashMap<(String, String), Level>,
    available: f64,
    refilled: Instant,
    /// Idempotency key → (arguments, answer).
    keys: HashMap<String, (Value, Value)>,
    stats: Stats,
    /// Every on_hand set, in order: (item, location, value).
    writes: Vec<(String, String, i64)>,
    /// While set, every request is answered `503` (an outage).
    down: bool,
    /// Set by [`ShopifyFake::in_flight`]: the next new write's `concurrent` answers.
    next_in_flight: Option<u32>,
    /// Key → how many more requests with it are answered `IDEMPOTENCY_CONCURRENT_REQUEST`.
    in_flight: HashMap<String, u32>,
    /// The answer being built is lost (`504`), as when a write outlives the gateway.
    lose_answer: bool,
    /// The idempotency key of every `inventorySetQuantities` received, in order.
    set_keys: Vec<String>,
}

/// The running fake.
#[derive(Debug, Clone)]
pub struct ShopifyFake {
    addr: SocketAddr,
    state: Arc<Mutex<Fake>>,
}

type Shared = Arc<Mutex<Fake>>;

impl ShopifyFake {
    /// Serves on 127.0.0.1 (a port the OS picks) until the runtime ends.
    pub async fn start(config: FakeConfig) -> anyhow::Result<ShopifyFake> {
        let state = Arc::new(Mutex::new(Fake {
            available: config.bucket_max,
            config,
            locations: Vec::new(),
            variants: Vec::new(),
            items: HashSet::new(),
            levels: HashMap::new(),
            refilled: Instant::now(),
            keys: HashMap::new(),
            stats: Stats::default(),
            writes: Vec::new(),
            down: false,
            next_in_flight: None,
            in_flight: HashMap::new(),
            lose_answer: false,
            set_keys: Vec::new(),
        }));
        let app = Router::new()
            .route("/admin/api/2026-04/graphql.json", post(graphql))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the Shopify fake")?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(ShopifyFake { addr, state })
    }

    /// The shop's base URL (a channel's `url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Fake> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add_location(&self, name: &str) -> String {
        let mut f = self.lock();
        let id = format!("gid://shopify/Location/{}", f.locations.len() + 1);
        f.locations.push((id.clone(), name.to_owned()));
        id
    }

    /// A variant with `sku`, stocked with 0 at every location.
    pub fn add_variant(&self, sku: &str) -> String {
        let mut f = self.lock();
        let id = format!("gid://shopify/InventoryItem/{}", f.variants.len() + 1);
        f.variants.push((sku.to_owned(), id.clone()));
        f.items.insert(id.clone());
        let locations: Vec<String> = f.locations.iter().map(|(l, _)| l.clone()).collect();
        for l in locations {
            f.levels.insert((id.clone(), l), Level::default());
        }
        id
    }

    fn key(&self, f: &Fake, sku: &str, location: &str) -> Option<(String, String)> {
        let item = f.variants.iter().find(|(s, _)| s == sku)?.1.clone();
        let loc = f.locations.iter().find(|(_, n)| n == location)?.0.clone();
        Some((item, loc))
    }

    /// Stops stocking `sku` at `location`.
    pub fn unstock(&self, sku: &str, location: &str) {
        let mut f = self.lock();
        if let Some(key) = self.key(&f, sku, location) {
            f.levels.remove(&key);
        }
    }

    /// A customer's order: `available` down, `committed` up. Refused (false) beyond what is
    /// available, as a shop that does not sell out of stock.
    pub fn order(&self, sku: &str, location: &str, qty: i64) -> bool {
        let mut f = self.lock();
        let Some(key) = self.key(&f, sku, location) else {
            return false;
        };
        let Some(level) = f.levels.get_mut(&key) else {
            return false;
        };
        if level.on_hand - level.committed < qty {
            return false;
        }
        level.committed += qty;
        true
    }

    /// Ships `qty` of committed orders: `on_hand` and `committed` down.
    pub fn fulfil(&self, sku: &str, location: &str, qty: i64) {
        let mut f = self.lock();
        if let Some(key) = self.key(&f, sku, location)
            && let Some(level) = f.levels.get_mut(&key)
        {
            level.on_hand -= qty;
            level.committed -= qty;
        }
    }

    /// (on_hand, committed, available) of `sku` at `location`, if stocked there.
    pub fn level(&self, sku: &str, location: &str) -> Option<(i64, i64, i64)> {
        let f = self.lock();
        let key = self.key(&f, sku, location)?;
        f.levels
            .get(&key)
            .map(|l| (l.on_hand, l.committed, l.on_hand - l.committed))
    }

    /// Starts or ends an outage: every request answered `503` meanwhile.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// The next `inventorySetQuantities` with a new key is applied, but its answer is lost
    /// (`504`, as when the write outlives the gateway's timeout), and Shopify keeps it in
    /// progress for the next `concurrent` requests with that key, answering them
    /// `IDEMPOTENCY_CONCURRENT_REQUEST`; after that the key answers with the first answer, as
    /// any repeated key.
    pub fn in_flight(&self, concurrent: u32) {
        self.lock().next_in_flight = Some(concurrent);
    }

    /// The idempotency key of every `inventorySetQuantities` received, in order.
    pub fn set_keys(&self) -> Vec<String> {
        self.lock().set_keys.clone()
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    /// Every `on_hand` Tally set for `sku` at `location`, in order.
    pub fn writes(&self, sku: &str, location: &str) -> Vec<i64> {
        let f = self.lock();
        let Some((item, loc)) = self.key(&f, sku, location) else {
            return Vec::new();
        };
        f.writes
            .iter()
            .filter(|(i, l, _)| *i == item && *l == loc)
            .map(|(_, _, v)| *v)
            .collect()
    }
}

async fn graphql(State(state): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let mut f = state.lock().unwrap_or_else(|e| e.into_inner());
    if f.down {
        return (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response();
    }
    if headers
        .get("x-shopify-access-token")
        .and_then(|v| v.to_str().ok())
        != Some(f.config.token.as_str())
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"})),
        )
            .into_response();
    }
    f.stats.requests += 1;
    let request: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("bad JSON: {e}")).into_response(),
    };
    let query = request["query"].as_str().unwrap_or_default();
    let variables = request["variables"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let document = match graphql_parser::parse_query::<String>(query) {
        Ok(d) => d,
        Err(e) => {
            let error = top_error(&format!("syntax error: {e}"), "PARSE_ERROR");
            return Json(json!({"errors": [error]})).into_response();
        }
    };
    let answer = f.execute(&document, &variables);
    if std::mem::take(&mut f.lose_answer) {
        return (StatusCode::GATEWAY_TIMEOUT, "upstream request timeout").into_response();
    }
    Json(answer).into_response()
}

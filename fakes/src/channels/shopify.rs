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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use graphql_parser::query::{
    Definition, Document, Field, OperationDefinition, Selection, SelectionSet, Value as Gql,
};
use serde_json::{Map, Value, json};

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

fn top_error(message: &str, code: &str) -> Value {
    json!({"message": message, "extensions": {"code": code}})
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

/// A GraphQL value with variables substituted, as JSON.
fn to_json(value: &Gql<'_, String>, vars: &Map<String, Value>) -> Value {
    match value {
        Gql::Variable(name) => vars.get(name).cloned().unwrap_or(Value::Null),
        Gql::Int(n) => json!(n.as_i64()),
        Gql::Float(x) => json!(x),
        Gql::String(s) => json!(s),
        Gql::Boolean(b) => json!(b),
        Gql::Null => Value::Null,
        Gql::Enum(e) => json!(e),
        Gql::List(items) => Value::Array(items.iter().map(|v| to_json(v, vars)).collect()),
        Gql::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), to_json(v, vars)))
                .collect(),
        ),
    }
}

fn arg(field: &Field<'_, String>, name: &str, vars: &Map<String, Value>) -> Value {
    field
        .arguments
        .iter()
        .find(|(n, _)| n == name)
        .map_or(Value::Null, |(_, v)| to_json(v, vars))
}

/// The fields of a selection set, inline fragments flattened (every object here has one type).
fn fields<'a, 'b>(set: &'b SelectionSet<'a, String>) -> Vec<&'b Field<'a, String>> {
    let mut out = Vec::new();
    for item in &set.items {
        match item {
            Selection::Field(f) => out.push(f),
            Selection::InlineFragment(i) => out.extend(fields(&i.selection_set)),
            Selection::FragmentSpread(_) => {}
        }
    }
    out
}

fn key_of(field: &Field<'_, String>) -> String {
    field.alias.clone().unwrap_or_else(|| field.name.clone())
}

/// Requested cost, Shopify's way in outline: a connection costs 2 plus its page size, a list
/// of nodes one per id, a mutation 10.
fn cost(set: &SelectionSet<'_, String>, vars: &Map<String, Value>, mutation: bool) -> f64 {
    if mutation {
        return 10.0;
    }
    fields(set)
        .iter()
        .map(|f| match f.name.as_str() {
            "nodes" if !arg(f, "ids", vars).is_null() => {
                1.0 + arg(f, "ids", vars).as_array().map_or(0, Vec::len) as f64
            }
            _ => match arg(f, "first", vars).as_f64() {
                Some(first) => 2.0 + first,
                None => 1.0,
            },
        })
        .sum()
}

impl Fake {
    fn refill(&mut self) {
        let now = Instant::now();
        let add = now.duration_since(self.refilled).as_secs_f64() * self.config.restore_rate;
        self.available = (self.available + add).min(self.config.bucket_max);
        self.refilled = now;
    }

    fn cost_extension(&self, requested: f64, actual: Option<f64>) -> Value {
        json!({"cost": {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": {
                "maximumAvailable": self.config.bucket_max,
                "currentlyAvailable": self.available,
                "restoreRate": self.config.restore_rate,
            }
        }})
    }

    fn execute(&mut self, document: &Document<'_, String>, vars: &Map<String, Value>) -> Value {
        let Some((set, mutation)) = document.definitions.iter().find_map(|d| match d {
            Definition::Operation(OperationDefinition::Query(q)) => Some((&q.selection_set, false)),
            Definition::Operation(OperationDefinition::SelectionSet(s)) => Some((s, false)),
            Definition::Operation(OperationDefinition::Mutation(m)) => {
                Some((&m.selection_set, true))
            }
            _ => None,
        }) else {
            return json!({"errors": [top_error("no operation", "BAD_REQUEST")]});
        };
        let requested = cost(set, vars, mutation);
        self.refill();
        if requested > self.available {
            self.stats.throttled += 1;
            return json!({
                "errors": [top_error("Throttled", "THROTTLED")],
                "extensions": self.cost_extension(requested, None),
            });
        }
        self.available -= requested;
        if mutation {
            self.stats.mutations += 1;
        } else {
            self.stats.queries += 1;
        }
        let mut data = Map::new();
        for field in fields(set) {
            let value = match field.name.as_str() {
                "locations" => self.locations(field, vars),
                "productVariants" => self.variants(field, vars),
                "nodes" => {
                    let ids = arg(field, "ids", vars);
                    let ids = ids.as_array().cloned().unwrap_or_default();
                    Value::Array(
                        ids.iter()
                            .map(|id| self.item(id.as_str().unwrap_or_default(), field, vars))
                            .collect(),
                    )
                }
                "inventorySetQuantities" if mutation => match self.set_quantities(field, vars) {
                    Ok(v) => v,
                    Err(error) => {
                        self.stats.refused += 1;
                        return json!({
                            "errors": [error],
                            "extensions": self.cost_extension(requested, Some(requested)),
                        });
                    }
                },
                other => {
                    let error = top_error(
                        &format!("Field '{other}' doesn't exist on type 'QueryRoot'"),
                        "undefinedField",
                    );
                    return json!({"errors": [error]});
                }
            };
            data.insert(key_of(field), value);
        }
        json!({"data": data, "extensions": self.cost_extension(requested, Some(requested))})
    }

    /// A connection page over `all`, each node projected by `node`.
    fn page(
        field: &Field<'_, String>,
        vars: &Map<String, Value>,
        all: Vec<Value>,
        node: impl Fn(&Value, &Field<'_, String>) -> Value,
    ) -> Value {
        let first = arg(field, "first", vars).as_u64().unwrap_or(50).min(250) as usize;
        let start: usize = arg(field, "after", vars)
            .as_str()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let end = (start + first).min(all.len());
        let mut out = Map::new();
        for f in fields(&field.selection_set) {
            let v = match f.name.as_str() {
                "nodes" => Value::Array(
                    all[start.min(end)..end]
                        .iter()
                        .map(|n| node(n, f))
                        .collect(),
                ),
                "pageInfo" => project(
                    &json!({"hasNextPage": end < all.len(), "endCursor": end.to_string()}),
                    &f.selection_set,
                ),
                _ => Value::Null,
            };
            out.insert(key_of(f), v);
        }
        Value::Object(out)
    }

    fn locations(&self, field: &Field<'_, String>, vars: &Map<String, Value>) -> Value {
        let all = self
            .locations
            .iter()
            .map(|(id, name)| json!({"id": id, "name": name}))
            .collect();
        Self::page(field, vars, all, |n, f| project(n, &f.selection_set))
    }

    fn variants(&self, field: &Field<'_, String>, vars: &Map<String, Value>) -> Value {
        let query = arg(field, "query", vars);
        let wanted = parse_sku_query(query.as_str().unwrap_or_default());
        let all = self
            .variants
            .iter()
            .filter(|(sku, _)| wanted.as_ref().is_none_or(|w| w.contains(sku)))
            .map(|(sku, item)| json!({"sku": sku, "item": item}))
            .collect();
        Self::page(field, vars, all, |n, f| {
            let mut out = Map::new();
            for g in fields(&f.selection_set) {
                let v = match g.name.as_str() {
                    "sku" => n["sku"].clone(),
                    "inventoryItem" => self.item(n["item"].as_str().unwrap_or_default(), g, vars),
                    _ => Value::Null,
                };
                out.insert(key_of(g), v);
            }
            Value::Object(out)
        })
    }

    /// An inventory item projected by `field`'s selection.
    fn item(&self, id: &str, field: &Field<'_, String>, vars: &Map<String, Value>) -> Value {
        if !self.items.contains(id) {
            return Value::Null;
        }
        let mut out = Map::new();
        for f in fields(&field.selection_set) {
            let v = match f.name.as_str() {
                "id" => json!(id),
                "inventoryLevel" => {
                    let location = arg(f, "locationId", vars);
                    let location = location.as_str().unwrap_or_default().to_owned();
                    match self.levels.get(&(id.to_owned(), location)) {
                        None => Value::Null,
                        Some(level) => self.level(*level, f, vars),
                    }
                }
                _ => Value::Null,
            };
            out.insert(key_of(f), v);
        }
        Value::Object(out)
    }

    fn level(&self, level: Level, field: &Field<'_, String>, vars: &Map<String, Value>) -> Value {
        let mut out = Map::new();
        for f in fields(&field.selection_set) {
            let v = match f.name.as_str() {
                "quantities" => {
                    let names = arg(f, "names", vars);
                    let names = names.as_array().cloned().unwrap_or_default();
                    Value::Array(
                        names
                            .iter()
                            .filter_map(|n| {
                                let name = n.as_str()?;
                                let q = quantity(level, name)?;
                                Some(project(
                                    &json!({"name": name, "quantity": q}),
                                    &f.selection_set,
                                ))
                            })
                            .collect(),
                    )
                }
                _ => Value::Null,
            };
            out.insert(key_of(f), v);
        }
        Value::Object(out)
    }

    fn set_quantities(
        &mut self,
        field: &Field<'_, String>,
        vars: &Map<String, Value>,
    ) -> Result<Value, Value> {
        let key = field
            .directives
            .iter()
            .find(|d| d.name == "idempotent")
            .and_then(|d| d.arguments.iter().find(|(n, _)| n == "key"))
            .map(|(_, v)| to_json(v, vars))
            .and_then(|v| v.as_str().map(str::to_owned))
            .ok_or_else(|| {
                top_error(
                    "The @idempotent directive is required for this mutation.",
                    "BAD_REQUEST",
                )
            })?;
        let input = arg(field, "input", vars);
        let quantities = input["quantities"].as_array().cloned().unwrap_or_default();
        if quantities.len() > 250 {
            return Err(top_error(
                "The input array size of 251 or more is greater than the maximum allowed of 250.",
                "MAX_INPUT_SIZE_EXCEEDED",
            ));
        }
        for (i, q) in quantities.iter().enumerate() {
            if q.get("changeFromQuantity").is_none() {
                return Err(top_error(
                    &format!(
                        "Variable $input of type InventorySetQuantitiesInput! was provided invalid value for quantities.{i}.changeFromQuantity (Expected value to not be null)"
                    ),
                    "INVALID_VARIABLE",
                ));
            }
        }
        self.set_keys.push(key.clone());
        if let Some(left) = self.in_flight.get_mut(&key).filter(|left| **left > 0) {
            *left -= 1;
            self.stats.concurrent += 1;
            let error = json!({"field": null, "message": "This request is currently in progress, please try again.", "code": "IDEMPOTENCY_CONCURRENT_REQUEST"});
            return Ok(project(
                &json!({"inventoryAdjustmentGroup": null, "userErrors": [error]}),
                &field.selection_set,
            ));
        }
        if let Some((args, answer)) = self.keys.get(&key) {
            if *args == input {
                return Ok(project(answer, &field.selection_set));
            }
            let error = json!({"field": ["input"], "message": "The same idempotency key was used with other arguments.", "code": "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"});
            return Ok(project(
                &json!({"inventoryAdjustmentGroup": null, "userErrors": [error]}),
                &field.selection_set,
            ));
        }
        let name = input["name"].as_str().unwrap_or_default().to_owned();
        let mut errors = Vec::new();
        if name != "on_hand" && name != "available" {
            errors.push(json!({"field": ["input", "name"], "message": "The quantity name must be either 'available' or 'on_hand'.", "code": "INVALID_NAME"}));
        }
        let mut seen = HashSet::new();
        let mut changes = Vec::new();
        for (i, q) in quantities.iter().enumerate() {
            let at = |tail: &str| {
                let mut field = vec![json!("input"), json!("quantities"), json!(i.to_string())];
                if !tail.is_empty() {
                    field.push(json!(tail));
                }
                field
            };
            let item = q["inventoryItemId"].as_str().unwrap_or_default().to_owned();
            let location = q["locationId"].as_str().unwrap_or_default().to_owned();
            let wanted = q["quantity"].as_i64().unwrap_or(-1);
            let mut refuse = |code: &str, message: &str, tail: &str| {
                errors.push(json!({"field": at(tail), "message": message, "code": code}));
            };
            if !seen.insert((item.clone(), location.clone())) {
                refuse(
                    "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
                    "The combination of inventoryItemId and locationId must be unique.",
                    "",
                );
                continue;
            }
            if !self.items.contains(&item) {
                refuse(
                    "INVALID_INVENTORY_ITEM",
                    "The specified inventory item could not be found.",
                    "inventoryItemId",
                );
                continue;
            }
            if !self.locations.iter().any(|(l, _)| *l == location) {
                refuse(
                    "INVALID_LOCATION",
                    "The specified location could not be found.",
                    "locationId",
                );
                continue;
            }
            let Some(level) = self.levels.get(&(item.clone(), location.clone())).copied() else {
                refuse(
                    "ITEM_NOT_STOCKED_AT_LOCATION",
                    "The inventory item is not stocked at the location.",
                    "locationId",
                );
                continue;
            };
            if wanted < 0 {
                refuse(
                    "INVALID_QUANTITY_NEGATIVE",
                    "The quantity can't be negative.",
                    "quantity",
                );
                continue;
            }
            let current = quantity(level, &name).unwrap_or(0);
            match &q["changeFromQuantity"] {
                Value::Null => {}
                from if from.as_i64() != Some(current) => {
                    self.stats.stale += 1;
                    refuse(
                        "CHANGE_FROM_QUANTITY_STALE",
                        "The changeFromQuantity value does not match the current quantity.",
                        "changeFromQuantity",
                    );
                    continue;
                }
                _ => {}
            }
            changes.push((item, location, wanted));
        }
        let answer = if errors.is_empty() {
            for (item, location, wanted) in changes {
                let level = self
                    .levels
                    .get_mut(&(item.clone(), location.clone()))
                    .expect("checked");
                level.on_hand = if name == "on_hand" {
                    wanted
                } else {
                    wanted + level.committed
                };
                self.writes.push((item, location, level.on_hand));
                self.stats.quantities_set += 1;
            }
            json!({"inventoryAdjustmentGroup": {"id": format!("gid://shopify/InventoryAdjustmentGroup/{}", self.keys.len() + 1)}, "userErrors": []})
        } else {
            json!({"inventoryAdjustmentGroup": null, "userErrors": errors})
        };
        if let Some(concurrent) = self.next_in_flight.take() {
            self.in_flight.insert(key.clone(), concurrent);
            self.lose_answer = true;
        }
        self.keys.insert(key, (input, answer.clone()));
        Ok(project(&answer, &field.selection_set))
    }
}

fn quantity(level: Level, name: &str) -> Option<i64> {
    match name {
        "on_hand" => Some(level.on_hand),
        "committed" => Some(level.committed),
        "available" => Some(level.on_hand - level.committed),
        _ => None,
    }
}

/// `value` cut down to what `set` selects (all of it when `set` is empty).
fn project(value: &Value, set: &SelectionSet<'_, String>) -> Value {
    if set.items.is_empty() {
        return value.clone();
    }
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|v| project(v, set)).collect()),
        Value::Object(map) => {
            let mut out = Map::new();
            for f in fields(set) {
                let v = map.get(f.name.as_str()).cloned().unwrap_or(Value::Null);
                out.insert(key_of(f), project(&v, &f.selection_set));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// The SKUs of a `sku:"A" OR sku:B` search (`None`: no SKU terms, everything matches).
fn parse_sku_query(query: &str) -> Option<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let mut rest = query;
    while let Some(at) = rest.find("sku:") {
        rest = &rest[at + 4..];
        let (sku, tail) = if let Some(quoted) = rest.strip_prefix('"') {
            let mut sku = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, next)) = chars.next() {
                            sku.push(next);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => sku.push(c),
                }
            }
            (sku, &quoted[end..])
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            (rest[..end].to_owned(), &rest[end..])
        };
        out.insert(sku);
        rest = tail;
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sku_searches_are_read_with_quotes_and_escapes() {
        let skus = parse_sku_query(r#"sku:"A-1" OR sku:"B \"x\"" OR sku:C"#).unwrap();
        assert_eq!(
            skus.into_iter().collect::<Vec<_>>(),
            ["A-1", "B \"x\"", "C"]
        );
        assert!(parse_sku_query("title:shirt").is_none());
    }
}

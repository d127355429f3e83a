//! A fake of WooCommerce's REST API (v3) for what a stock sync uses: products and variations
//! listed in pages (`per_page` at most 100, `X-WP-Total` and `X-WP-TotalPages`), batch updates
//! of `manage_stock` / `stock_quantity` (more than 100 objects answered `413`; a failing object
//! answered inside the `200` with its own `error`), and orders listed by `status`,
//! `modified_after` (with `dates_are_gmt`) and pages.
//!
//! It behaves like WooCommerce, not like Tally: requests need the REST key as HTTP Basic;
//! `stock_quantity` is set as sent (no compare-and-set); placing an order lowers the stock of
//! its lines and leaves it `processing`; cancelling restores the stock; completing leaves it.
//! Test hooks inject an outage (every request answered with a status) and a SKU whose updates
//! fail for good, and count the calls per endpoint.
//!
//! Depends on std, axum, serde and tokio only (no Tally crate).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

mod text;
use text::{base64, format_datetime, parse_datetime};

/// Objects per batch request, and items per page, at most.
pub const LIMIT: usize = 100;

#[derive(Debug, Clone)]
struct Item {
    id: i64,
    parent: Option<i64>,
    sku: String,
    variable: bool,
    manage_stock: bool,
    stock: Option<i64>,
}

impl Item {
    fn json(&self) -> Value {
        let kind = match (self.parent, self.variable) {
            (Some(_), _) => "variation",
            (None, true) => "variable",
            (None, false) => "simple",
        };
        json!({"id": self.id, "sku": self.sku, "type": kind, "parent_id": self.parent.unwrap_or(0),
               "manage_stock": self.manage_stock, "stock_quantity": self.stock})
    }
}

#[derive(Debug, Clone)]
struct Order {
    id: i64,
    status: String,
    modified: i64,
    /// (product or variation id, quantity).
    lines: Vec<(i64, i64)>,
}

#[derive(Debug, Default)]
struct Fake {
    /// `Basic <base64(key:secret)>`.
    auth: String,
    items: BTreeMap<i64, Item>,
    next_id: i64,
    orders: BTreeMap<i64, Order>,
    outage: Option<u16>,
    failing: BTreeSet<String>,
    calls: BTreeMap<String, u64>,
    /// (SKU, stock_quantity) in the order written.
    writes: Vec<(String, i64)>,
    /// An order to place once the next `GET /orders` is answered.
    next_order: Option<Vec<(String, i64)>>,
}

type Shared = Arc<Mutex<Fake>>;

/// The running fake.
#[derive(Debug, Clone)]
pub struct WooFake {
    addr: SocketAddr,
    state: Shared,
}

fn lock(state: &Shared) -> MutexGuard<'_, Fake> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl WooFake {
    /// Serves on 127.0.0.1 (a port the OS picks) until the runtime ends; requests must carry
    /// `key`:`secret` as HTTP Basic.
    pub async fn start(key: &str, secret: &str) -> std::io::Result<WooFake> {
        let state = Arc::new(Mutex::new(Fake {
            auth: format!("Basic {}", base64(format!("{key}:{secret}").as_bytes())),
            next_id: 10,
            ..Fake::default()
        }));
        let app = Router::new()
            .route("/wp-json/wc/v3/products", get(list_products))
            .route("/wp-json/wc/v3/products/batch", post(batch_products))
            .route(
                "/wp-json/wc/v3/products/{id}/variations",
                get(list_variations),
            )
            .route(
                "/wp-json/wc/v3/products/{id}/variations/batch",
                post(batch_variations),
            )
            .route("/wp-json/wc/v3/orders", get(list_orders))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(WooFake { addr, state })
    }

    /// The site's base URL (a channel's `url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn add(&self, parent: Option<i64>, sku: &str, variable: bool, stock: Option<i64>) -> i64 {
        let mut f = lock(&self.state);
        f.next_id += 1;
        let id = f.next_id;
        let item = Item {
            id,
            parent,
            sku: sku.to_owned(),
            variable,
            manage_stock: stock.is_some(),
            stock,
        };
        f.items.insert(id, item);
        id
    }

    /// A simple product; `stock`: its `stock_quantity` (`None`: stock not managed).
    pub fn add_product(&self, sku: &str, stock: Option<i64>) -> i64 {
        self.add(None, sku, false, stock)
    }

    /// A variable product (its stock is its variations').
    pub fn add_variable(&self, sku: &str) -> i64 {
        self.add(None, sku, true, None)
    }

    pub fn add_variation(&self, parent: i64, sku: &str, stock: Option<i64>) -> i64 {
        self.add(Some(parent), sku, false, stock)
    }

    /// The `stock_quantity` of the product or variation with `sku`.
    pub fn stock(&self, sku: &str) -> Option<i64> {
        let f = lock(&self.state);
        f.items
            .values()
            .find(|i| i.sku == sku)
            .and_then(|i| i.stock)
    }

    /// A shop manager's edit of `sku`'s `stock_quantity` in WordPress's admin (no order):
    /// stock managed from now on. False for an unknown SKU.
    pub fn set_stock(&self, sku: &str, stock: i64) -> bool {
        let mut f = lock(&self.state);
        let Some(item) = f.items.values_mut().find(|i| i.sku == sku && !i.variable) else {
            return false;
        };
        item.manage_stock = true;
        item.stock = Some(stock);
        true
    }

    /// A customer's order, as checkout makes it once paid: `processing`, each line's stock
    /// lowered. Refused (`None`) for an unknown SKU or beyond the stock (no backorders).
    pub fn place_order(&self, lines: &[(&str, i64)]) -> Option<i64> {
        let lines: Vec<(String, i64)> = lines.iter().map(|(s, q)| ((*s).to_owned(), *q)).collect();
        place(&mut lock(&self.state), &lines)
    }

    /// A customer's order placed right after the fake answers the next `GET /orders` (a
    /// customer checking out between a client's read of the orders and its next write).
    pub fn place_order_after_next_orders_read(&self, lines: &[(&str, i64)]) {
        let lines = lines.iter().map(|(s, q)| ((*s).to_owned(), *q)).collect();
        lock(&self.state).next_order = Some(lines);
    }

    /// Moves an order to `status`; `cancelled` gives its units back to the stock.
    pub fn set_order_status(&self, order: i64, status: &str) {
        let mut f = lock(&self.state);
        let Some(o) = f.orders.get_mut(&order) else {
            return;
        };
        let restore = status == "cancelled" && o.status != "cancelled";
        o.status = status.to_owned();
        o.modified = now();
        let lines = o.lines.clone();
        if restore {
            for (id, qty) in lines {
                if let Some(item) = f.items.get_mut(&id).filter(|i| i.manage_stock) {
                    item.stock = Some(item.stock.unwrap_or(0) + qty);
                }
            }
        }
    }

    /// Every request answered with `status` (`Some(503)`, `Some(429)`) until `None`.
    pub fn set_outage(&self, status: Option<u16>) {
        lock(&self.state).outage = status;
    }

    /// Updates of `sku` fail for good (an error inside the batch's `200`).
    pub fn fail_sku(&self, sku: &str) {
        lock(&self.state).failing.insert(sku.to_owned());
    }

    /// Calls answered per endpoint (`GET /products`, `POST /products/batch`,
    /// `GET /products/{id}/variations`, `POST /products/{id}/variations/batch`, `GET /orders`),
    /// refused ones included.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        lock(&self.state).calls.clone()
    }

    pub fn total_calls(&self) -> u64 {
        lock(&self.state).calls.values().sum()
    }

    /// Every `stock_quantity` written for `sku`, in order.
    pub fn writes(&self, sku: &str) -> Vec<i64> {
        let f = lock(&self.state);
        f.writes
            .iter()
            .filter(|(s, _)| s == sku)
            .map(|(_, v)| *v)
            .collect()
    }
}

fn place(f: &mut Fake, lines: &[(String, i64)]) -> Option<i64> {
    let mut ids = Vec::new();
    for (sku, qty) in lines {
        let item = f.items.values().find(|i| i.sku == *sku && !i.variable)?;
        if item.manage_stock && item.stock.unwrap_or(0) < *qty {
            return None;
        }
        ids.push((item.id, *qty));
    }
    for (id, qty) in &ids {
        let item = f.items.get_mut(id).expect("found above");
        if item.manage_stock {
            item.stock = Some(item.stock.unwrap_or(0) - qty);
        }
    }
    let id = f.orders.keys().next_back().map_or(1000, |k| k + 1);
    f.orders.insert(
        id,
        Order {
            id,
            status: "processing".into(),
            modified: now(),
            lines: ids,
        },
    );
    Some(id)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"code": code, "message": message, "data": {"status": status.as_u16()}});
    (status, Json(body)).into_response()
}

/// Counts the call and checks the outage and the credentials: the refusal, if any.
fn admit(state: &Shared, endpoint: &str, headers: &HeaderMap) -> Option<Response> {
    let mut f = lock(state);
    *f.calls.entry(endpoint.to_owned()).or_default() += 1;
    if let Some(status) = f.outage {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return Some(error(status, "fake_outage", "The site is unavailable."));
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(f.auth.as_str()) {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "woocommerce_rest_cannot_view",
            "Sorry, you cannot list resources.",
        ));
    }
    None
}

/// `per_page` and `page` checked as WordPress does (`None`: invalid).
fn paging(q: &BTreeMap<String, String>) -> Option<(usize, usize)> {
    let number = |name: &str, default: usize| match q.get(name) {
        None => Ok(default),
        Some(v) => v.parse::<usize>().ok().filter(|n| *n >= 1).ok_or(()),
    };
    match (number("per_page", 10), number("page", 1)) {
        (Ok(per_page), Ok(page)) if per_page <= LIMIT => Some((per_page, page)),
        _ => None,
    }
}

/// One page of `items`, with WordPress's total headers.
fn page_of(items: Vec<Value>, q: &BTreeMap<String, String>) -> Response {
    let Some((per_page, page)) = paging(q) else {
        return error(
            StatusCode::BAD_REQUEST,
            "rest_invalid_param",
            "Invalid parameter(s): per_page, page",
        );
    };
    let total = items.len();
    let pages = total.div_ceil(per_page);
    let body: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert("x-wp-total", HeaderValue::from(total));
    headers.insert("x-wp-totalpages", HeaderValue::from(pages));
    response
}

async fn list_products(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(r) = admit(&state, "GET /products", &headers) {
        return r;
    }
    let f = lock(&state);
    let sku = q.get("sku");
    let items = f
        .items
        .values()
        .filter(|i| i.parent.is_none() && sku.is_none_or(|s| *s == i.sku))
        .map(Item::json)
        .collect();
    page_of(items, &q)
}

async fn list_variations(
    State(state): State<Shared>,
    Path(parent): Path<i64>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(r) = admit(&state, "GET /products/{id}/variations", &headers) {
        return r;
    }
    let f = lock(&state);
    if !f.items.get(&parent).is_some_and(|p| p.variable) {
        return error(
            StatusCode::NOT_FOUND,
            "woocommerce_rest_product_invalid_id",
            "Invalid ID.",
        );
    }
    let items = f
        .items
        .values()
        .filter(|i| i.parent == Some(parent))
        .map(Item::json)
        .collect();
    page_of(items, &q)
}

async fn batch_products(State(state): State<Shared>, headers: HeaderMap, body: String) -> Response {
    if let Some(r) = admit(&state, "POST /products/batch", &headers) {
        return r;
    }
    batch(&state, None, &body)
}

async fn batch_variations(
    State(state): State<Shared>,
    Path(parent): Path<i64>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Some(r) = admit(&state, "POST /products/{id}/variations/batch", &headers) {
        return r;
    }
    batch(&state, Some(parent), &body)
}

/// `{"update": [...]}`: each object applied on its own, its answer in its place.
fn batch(state: &Shared, parent: Option<i64>, body: &str) -> Response {
    let Ok(body) = serde_json::from_str::<Value>(body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "rest_invalid_json",
            "Invalid JSON body passed.",
        );
    };
    let updates = body["update"].as_array().cloned().unwrap_or_default();
    if updates.len() > LIMIT {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "woocommerce_rest_request_entity_too_large",
            &format!("Unable to accept more than {LIMIT} items for this request."),
        );
    }
    let mut f = lock(state);
    let mut answers = Vec::new();
    for update in updates {
        let id = update["id"].as_i64().unwrap_or(0);
        let invalid = json!({"id": id, "error": {"code": "woocommerce_rest_product_invalid_id",
            "message": "Invalid ID.", "data": {"status": 400}}});
        let Some(item) = f
            .items
            .get(&id)
            .filter(|i| i.parent == parent && !i.variable)
        else {
            answers.push(invalid);
            continue;
        };
        if f.failing.contains(&item.sku) {
            answers.push(json!({"id": id, "error": {"code": "woocommerce_rest_invalid_product",
                "message": format!("Product {} cannot be saved.", item.sku), "data": {"status": 400}}}));
            continue;
        }
        let item = f.items.get_mut(&id).expect("found above");
        if let Some(manage) = update["manage_stock"].as_bool() {
            item.manage_stock = manage;
        }
        if let Some(q) = update["stock_quantity"].as_i64() {
            item.stock = Some(q);
        }
        let (sku, stock, answer) = (item.sku.clone(), item.stock, item.json());
        if let Some(q) = stock {
            f.writes.push((sku, q));
        }
        answers.push(answer);
    }
    Json(json!({"update": answers})).into_response()
}

async fn list_orders(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(r) = admit(&state, "GET /orders", &headers) {
        return r;
    }
    let mut f = lock(&state);
    let answer = orders_page(&f, &q);
    if let Some(lines) = f.next_order.take() {
        place(&mut f, &lines);
    }
    answer
}

fn orders_page(f: &Fake, q: &BTreeMap<String, String>) -> Response {
    let statuses: Option<Vec<&str>> = q
        .get("status")
        .filter(|s| s.as_str() != "any")
        .map(|s| s.split(',').collect());
    // Site time is UTC here: with or without `dates_are_gmt` the same instant.
    let after = match q.get("modified_after").map(|t| parse_datetime(t)) {
        Some(None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "rest_invalid_param",
                "Invalid parameter(s): modified_after",
            );
        }
        Some(Some(t)) => Some(t),
        None => None,
    };
    let items = f
        .orders
        .values()
        .filter(|o| {
            statuses
                .as_ref()
                .is_none_or(|s| s.contains(&o.status.as_str()))
        })
        .filter(|o| after.is_none_or(|t| o.modified > t))
        .map(|o| {
            let lines: Vec<Value> = o
                .lines
                .iter()
                .map(|(id, qty)| {
                    let item = &f.items[id];
                    json!({"product_id": item.parent.unwrap_or(item.id),
                           "variation_id": if item.parent.is_some() { item.id } else { 0 },
                           "sku": item.sku, "quantity": qty})
                })
                .collect();
            json!({"id": o.id, "number": o.id.to_string(), "status": o.status,
                   "date_modified_gmt": format_datetime(o.modified), "line_items": lines})
        })
        .collect();
    page_of(items, q)
}

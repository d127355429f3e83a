//! An in-memory **simulator** of Odoo 17, 18 and 19's external API — JSON-RPC, and JSON-2 in
//! the 19 mode —, faithful to what was recorded from real servers (docs/odoo.md), for Tally's
//! tests, demo and benchmarks. It is not Odoo: it implements the models, methods and
//! behaviours the integration relies on, and the hazards it must survive.
//!
//! - [`OdooSim`]: the running server (axum on `POST /jsonrpc` and `POST /json/2/…`, port
//!   picked by the OS) and the Rust handle tests use to seed data, inject faults, move the
//!   clock and inspect stock, pickings, move lines and call counts.
//! - [`SimConfig`]: version (17, 18 or 19), database name, API key, latency model.
//! - [`Fault`] / [`FaultKind`]: the fault switch (serialization failure, operational and
//!   pool errors, HTTP 500, hangs, and "applied but the response is lost").
//! - [`schema`]: models and fields, public so replay tests can map record ids.
//!
//! Inside: [`rpc`] (envelope, typed errors), [`api`] (services, credentials, routing),
//! [`orm`] (generic reads, searches, `read_group`, `web_search_read`, value checks),
//! [`domain`] (search domains), [`stock`] (pickings, moves, reservations, validation,
//! backorders, quants, availability), [`inventory`] (inventory-mode quants),
//! [`sale`] (minimal sales orders), [`store`] (tables, undo journal), [`seed`] (the lab's
//! fresh database), [`clock`], [`faults`] and [`server`] (HTTP).
//!
//! # In a test
//!
//! ```text
//! let sim = OdooSim::start(SimConfig::new(Version::V18)).await?;
//! // point the Odoo client at sim.url(), sim.db(), sim.login() / sim.uid(), sim.api_key()
//! sim.set_on_hand("SKU-002", "WH/Stock", None, 40.0)?;
//! let order = sim.create_sale_order("WH", "Customer", &[("SKU-002", 5.0)], Some("ref"))?;
//! sim.inject(Fault::new(FaultKind::AppliedThenDrop).on("stock.picking", "button_validate"));
//! // ... run the code under test ...
//! assert_eq!(sim.on_hand("SKU-002", "WH/Stock"), 35.0);
//! assert_eq!(sim.call_count("stock.picking", "button_validate"), 2);
//! ```

pub mod api;
pub mod clock;
pub mod domain;
pub mod faults;
pub mod inventory;
pub mod orm;
pub mod rpc;
pub mod sale;
pub mod schema;
pub mod seed;
pub mod server;
pub mod stock;
pub mod store;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use faults::{Fault, FaultKind};
pub use rpc::OdooError;
pub use seed::{ADMIN_LOGIN, ADMIN_PASSWORD, ADMIN_UID, EDGE_LOGIN, EDGE_PASSWORD, EDGE_UID};

use api::ServerInfo;
use orm::{Env, as_f64};
use server::Shared;
use store::{Db, Id};

/// The Odoo major version simulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    V17,
    V18,
    /// 19.0: `stock.move` has no `name`, users' groups are `group_ids`, and JSON-2 beside
    /// JSON-RPC.
    V19,
}

impl Version {
    pub fn major(self) -> u8 {
        match self {
            Version::V17 => 17,
            Version::V18 => 18,
            Version::V19 => 19,
        }
    }

    /// `17`, `18` or `19`.
    pub fn from_major(major: u8) -> Option<Version> {
        match major {
            17 => Some(Version::V17),
            18 => Some(Version::V18),
            19 => Some(Version::V19),
            _ => None,
        }
    }
}

/// The latency model (docs/odoo.md#timings: about 300 ms per call plus 35 ms per move line
/// for create/validate, a busy small server). Zero by default so tests run fast.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency {
    /// Added to every call, before it runs (in parallel with other calls).
    pub per_call: Duration,
    /// Added per move line a call creates, changes or validates, while it holds the
    /// database (calls serialise on it).
    pub per_line: Duration,
}

impl Latency {
    /// The recorded small-server figures: 300 ms per call, 35 ms per line.
    pub fn lab() -> Latency {
        Latency {
            per_call: Duration::from_millis(300),
            per_line: Duration::from_millis(35),
        }
    }
}

/// How to start a simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub version: Version,
    /// The database name clients must send (`no_such_db` gets `psycopg2.OperationalError`).
    pub db: String,
    /// The integration user's API key (default: 40 random hex digits).
    pub api_key: String,
    pub latency: Latency,
    /// `edge-sync`'s e-mail. Odoo needs one to post the "backorder created" message
    /// (docs/odoo.md#backorders); `None` reproduces the lab's first, failing partial pick.
    pub edge_sync_email: Option<String>,
    /// Untracked storable products `BULK-0000`… added to the five lab SKUs.
    pub extra_products: usize,
    /// The version the server says it is, when not `version`: an Odoo whose models differ
    /// from what its version number promises (a customised or patched server), which is
    /// how a test meets a field Tally expects and this server does not have.
    pub reported_version: Option<Version>,
}

impl SimConfig {
    pub fn new(version: Version) -> SimConfig {
        SimConfig {
            version,
            db: "odoo-sim".to_owned(),
            api_key: random_key(),
            latency: Latency::default(),
            edge_sync_email: Some("edge-sync@example.com".to_owned()),
            extra_products: 0,
            reported_version: None,
        }
    }
}

fn random_key() -> String {
    use rand::Rng as _;
    let mut rng = rand::rng();
    (0..40)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

/// Lot/serial tracking of a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracking {
    None,
    Lot,
    Serial,
}

impl Tracking {
    fn as_str(self) -> &'static str {
        match self {
            Tracking::None => "none",
            Tracking::Lot => "lot",
            Tracking::Serial => "serial",
        }
    }
}

/// A picking as tests inspect it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PickingInfo {
    pub id: Id,
    pub name: String,
    pub state: String,
    pub origin: Option<String>,
    pub note: Option<String>,
    /// `incoming`, `outgoing` or `internal`.
    pub picking_type_code: String,
    pub backorder_of: Option<String>,
    pub sale_order: Option<String>,
    pub moves: Vec<MoveInfo>,
}

/// A stock move as tests inspect it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MoveInfo {
    pub id: Id,
    pub sku: String,
    pub demand: f64,
    pub quantity: f64,
    pub picked: bool,
    pub state: String,
    pub from: String,
    pub to: String,
}

/// A move line as tests inspect it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MoveLineInfo {
    pub id: Id,
    pub move_id: Option<Id>,
    pub picking: Option<String>,
    pub reference: String,
    pub sku: String,
    pub quantity: f64,
    pub lot: Option<String>,
    pub from: String,
    pub to: String,
    pub state: String,
    pub date: String,
    pub is_inventory: bool,
}

/// A quant row as tests inspect it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuantInfo {
    pub id: Id,
    pub sku: String,
    pub location: String,
    pub lot: Option<String>,
    pub quantity: f64,
    pub reserved: f64,
}

/// A confirmed sales order made through [`OdooSim::create_sale_order`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SaleOrderInfo {
    pub id: Id,
    pub name: String,
    /// Its delivery pickings' names.
    pub deliveries: Vec<String>,
}

/// A running simulator. Dropping it stops the server (hung calls are released).
#[derive(Debug)]
pub struct OdooSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    api_key: String,
    db_name: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Drop for OdooSim {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

impl OdooSim {
    /// Starts a simulator on 127.0.0.1 with a port the OS picks.
    pub async fn start(config: SimConfig) -> anyhow::Result<OdooSim> {
        OdooSim::bind("127.0.0.1:0".parse()?, config).await
    }

    /// Starts a simulator on `addr`, seeded like the lab's database.
    pub async fn bind(addr: SocketAddr, config: SimConfig) -> anyhow::Result<OdooSim> {
        let mut db = Db::new();
        let credentials = seed::seed(
            &mut db,
            &seed::SeedOptions {
                version: config.version,
                api_key: config.api_key.clone(),
                edge_sync_email: config.edge_sync_email.clone(),
                extra_products: config.extra_products,
            },
        );
        let (stop, stopping) = watch::channel(false);
        let shared = Arc::new(Shared {
            info: Mutex::new(ServerInfo {
                version: config.version,
                reported_version: config.reported_version.unwrap_or(config.version),
                db_name: config.db.clone(),
                credentials,
            }),
            db: Mutex::new(db),
            gate: tokio::sync::Mutex::new(()),
            faults: Mutex::new(faults::Faults::default()),
            calls: Mutex::new(BTreeMap::new()),
            writes: Mutex::new((0, 0)),
            clock: clock::Clock::default(),
            latency: Mutex::new(config.latency),
            stopping: stopping.clone(),
        });
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let addr = listener.local_addr()?;
        let app = server::router(shared.clone());
        let mut shutdown = stopping;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = shutdown.wait_for(|stop| *stop).await;
                })
                .await;
        });
        Ok(OdooSim {
            shared,
            addr,
            api_key: config.api_key,
            db_name: config.db,
            stop,
            task,
        })
    }

    // -- where and who -------------------------------------------------------------------

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (the base URL an Odoo client is configured with).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/jsonrpc`.
    pub fn jsonrpc_url(&self) -> String {
        format!("{}/jsonrpc", self.url())
    }

    pub fn db(&self) -> &str {
        &self.db_name
    }

    pub fn version(&self) -> Version {
        self.shared.version()
    }

    /// Changes the version the server reports (see [`SimConfig::reported_version`]).
    pub fn set_reported_version(&self, version: Version) {
        self.shared.info.lock().expect("info lock").reported_version = version;
    }

    /// The integration user's login (`edge-sync`).
    pub fn login(&self) -> &str {
        EDGE_LOGIN
    }

    /// The integration user's uid (6, as in the lab).
    pub fn uid(&self) -> i64 {
        EDGE_UID
    }

    /// The integration user's API key.
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    // -- faults, latency, clock ----------------------------------------------------------

    /// Arms a fault for the next matching call(s).
    pub fn inject(&self, fault: Fault) {
        self.shared.faults.lock().expect("faults lock").arm(fault);
    }

    /// Disarms every fault.
    pub fn clear_faults(&self) {
        self.shared.faults.lock().expect("faults lock").clear();
    }

    /// Faults armed and not yet consumed.
    pub fn pending_faults(&self) -> Vec<Fault> {
        self.shared.faults.lock().expect("faults lock").pending()
    }

    pub fn set_latency(&self, latency: Latency) {
        *self.shared.latency.lock().expect("latency lock") = latency;
    }

    /// Freezes the clock at a UTC `YYYY-MM-DD HH:MM:SS`.
    pub fn freeze_clock_at(&self, datetime: &str) -> anyhow::Result<()> {
        let Some(seconds) = clock::parse_datetime(datetime) else {
            bail!("not a datetime: {datetime:?}");
        };
        self.shared.clock.set(seconds);
        Ok(())
    }

    /// Runs the simulator's clock `seconds` ahead of the system's (behind when negative):
    /// an Odoo server whose clock is off.
    pub fn set_clock_offset(&self, seconds: i64) {
        self.shared.clock.set_offset(seconds);
    }

    /// Moves the clock forward (freezing it).
    pub fn advance_clock(&self, by: Duration) {
        self.shared.clock.advance(by);
    }

    /// The simulator's time as Odoo writes it.
    pub fn now(&self) -> String {
        clock::format_datetime(self.shared.clock.now())
    }

    // -- calls ---------------------------------------------------------------------------

    /// How many JSON-RPC calls reached `model.method` (faulted ones included; `common`
    /// calls count as ("common", method)).
    pub fn call_count(&self, model: &str, method: &str) -> u64 {
        self.shared
            .calls
            .lock()
            .expect("calls lock")
            .get(&(model.to_owned(), method.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// The most calls that change data (create, write, validate, ...) that were in flight at
    /// once, from arrival to answer.
    pub fn max_concurrent_writes(&self) -> u64 {
        self.shared.writes.lock().expect("writes lock").1
    }

    /// Every (model, method) called, with counts.
    pub fn calls(&self) -> BTreeMap<(String, String), u64> {
        self.shared.calls.lock().expect("calls lock").clone()
    }

    /// All calls so far.
    pub fn total_calls(&self) -> u64 {
        self.calls().values().sum()
    }

    /// Runs `model.method(args, kwargs)` directly (no HTTP, no faults, no latency) as `uid`
    /// (e.g. [`ADMIN_UID`] for what only the administrator may do), in its own
    /// transaction.
    pub fn execute(
        &self,
        uid: Id,
        model: &str,
        method: &str,
        args: Value,
        kwargs: Value,
    ) -> Result<Option<Value>, OdooError> {
        let info = self.shared.info.lock().expect("info lock").clone();
        let secret = info
            .credentials
            .iter()
            .find(|c| c.uid == uid)
            .and_then(|c| c.secrets.first().cloned())
            .unwrap_or_default();
        let call = rpc::Call {
            id: Value::Null,
            service: "object".into(),
            method: "execute_kw".into(),
            args: vec![
                json!(info.db_name),
                json!(uid),
                json!(secret),
                json!(model),
                json!(method),
                args,
                kwargs,
            ],
        };
        let now = self.shared.clock.now();
        let mut db = self.shared.db.lock().expect("db lock");
        api::handle(&mut db, &info, now, &call).map(|o| o.result)
    }

    /// Runs `f` with an environment as the administrator, outside any RPC (inspection and
    /// test setup); what it changes is kept.
    fn with_env<R>(&self, context: Map<String, Value>, f: impl FnOnce(&mut Env) -> R) -> R {
        let version = self.version();
        let now = self.shared.clock.now();
        let mut db = self.shared.db.lock().expect("db lock");
        let mut env = Env {
            db: &mut db,
            version,
            uid: ADMIN_UID,
            ctx: context,
            now,
            lines: 0,
        };
        env.db.stamp = Some(clock::format_datetime(now));
        let result = f(&mut env);
        env.db.commit();
        result
    }

    // -- seeding -------------------------------------------------------------------------

    fn admin(&self, model: &str, method: &str, args: Value) -> anyhow::Result<Value> {
        self.execute(ADMIN_UID, model, method, args, json!({}))
            .map_err(|e| anyhow::anyhow!("{model}.{method}: {}: {}", e.name(), e.message()))?
            .context("no result")
    }

    /// Adds a storable product `sku` (named `Product <sku>`) and returns its id. Odoo does not keep
    /// `default_code` unique: adding a SKU twice makes two products (docs/odoo.md#resolving).
    pub fn add_product(&self, sku: &str, tracking: Tracking) -> anyhow::Result<Id> {
        let mut vals = json!({"name": format!("Product {sku}"), "default_code": sku,
                              "tracking": tracking.as_str()});
        match self.version() {
            Version::V17 => vals["detailed_type"] = json!("product"),
            Version::V18 | Version::V19 => {
                vals["type"] = json!("consu");
                vals["is_storable"] = json!(true);
            }
        }
        let id = self.admin("product.product", "create", json!([vals]))?;
        id.as_i64().context("product id")
    }

    /// Adds an internal location `name` under the location whose complete name is `parent`
    /// (e.g. `"WH/Stock"`), and returns its id.
    pub fn add_location(&self, parent: &str, name: &str) -> anyhow::Result<Id> {
        let parent = self.location_id(parent)?;
        let id = self.admin(
            "stock.location",
            "create",
            json!([{"name": name, "location_id": parent, "usage": "internal"}]),
        )?;
        id.as_i64().context("location id")
    }

    /// Adds a customer and returns its id.
    pub fn add_partner(&self, name: &str) -> anyhow::Result<Id> {
        let id = self.admin("res.partner", "create", json!([{"name": name}]))?;
        id.as_i64().context("partner id")
    }

    /// Sets the on-hand quantity of `sku` at `location` (and `lot`, created if needed)
    /// directly, without a move — test setup, like a stock manager's raw quant create.
    pub fn set_on_hand(
        &self,
        sku: &str,
        location: &str,
        lot: Option<&str>,
        quantity: f64,
    ) -> anyhow::Result<()> {
        let product = self.product_id(sku)?;
        let location = self.location_id(location)?;
        self.with_env(Map::new(), |env| {
            let lot = match lot {
                Some(name) => Some(match stock::find_lot(env, product, name) {
                    Some(lot) => lot,
                    None => {
                        let mut vals = Map::new();
                        vals.insert("name".into(), json!(name));
                        vals.insert("product_id".into(), json!(product));
                        stock::create_lot(env, &vals)
                            .map_err(|e| anyhow::anyhow!("{}", e.message()))?
                    }
                }),
                None => None,
            };
            let rows = stock::quant_rows(env, product, location, lot);
            let current: f64 = rows
                .iter()
                .map(|q| env.f64("stock.quant", *q, "quantity"))
                .sum();
            stock::update_quant(env, product, location, lot, quantity - current);
            Ok(())
        })
    }

    /// Adds another quant row for (sku, location) holding `quantity`, as concurrent updates
    /// leave behind (docs/odoo.md#quants): readers must sum rows, and an absolute count lands
    /// on one of them. Returns the row's id.
    pub fn add_quant_row(&self, sku: &str, location: &str, quantity: f64) -> anyhow::Result<Id> {
        let product = self.product_id(sku)?;
        let location = self.location_id(location)?;
        let created = self.execute(
            ADMIN_UID,
            "stock.quant",
            "create",
            json!([[{"product_id": product, "location_id": location, "quantity": quantity}]]),
            json!({}),
        );
        let ids = created
            .map_err(|e| anyhow::anyhow!("{}", e.message()))?
            .context("no result")?;
        ids.get(0).and_then(Value::as_i64).context("quant id")
    }

    /// Sets a quant row's `in_date`, which decides which duplicate row Odoo picks first.
    pub fn set_quant_in_date(&self, quant: Id, datetime: &str) -> anyhow::Result<()> {
        if clock::parse_datetime(datetime).is_none() {
            bail!("not a datetime: {datetime:?}");
        }
        self.with_env(Map::new(), |env| {
            env.db
                .set("stock.quant", quant, "in_date", Value::from(datetime));
        });
        Ok(())
    }

    /// Sets (or removes) `edge-sync`'s e-mail address.
    pub fn set_edge_sync_email(&self, email: Option<&str>) {
        self.with_env(Map::new(), |env| {
            env.db.set(
                "res.users",
                EDGE_UID,
                "email",
                email.map_or(Value::Null, Value::from),
            );
        });
    }

    /// Creates and confirms a sales order from warehouse `warehouse` (code) for `lines`
    /// (sku, quantity), as the lab's administrator did: its delivery is `assigned` with the
    /// stock reserved, `sale_id` set, and `origin` the order name (18: `"<SO> - <ref>"`
    /// when `client_ref` is given).
    pub fn create_sale_order(
        &self,
        warehouse: &str,
        customer: &str,
        lines: &[(&str, f64)],
        client_ref: Option<&str>,
    ) -> anyhow::Result<SaleOrderInfo> {
        let warehouse_id = self.warehouse_id(warehouse)?;
        let partner = self.add_partner(customer)?;
        let mut order_lines = Vec::new();
        for (sku, quantity) in lines {
            let product = self.product_id(sku)?;
            order_lines.push(json!([0, 0, {"product_id": product, "product_uom_qty": quantity}]));
        }
        let mut vals = json!({"partner_id": partner, "warehouse_id": warehouse_id,
                              "order_line": order_lines});
        if let Some(client_ref) = client_ref {
            vals["client_order_ref"] = json!(client_ref);
        }
        let id = self
            .admin("sale.order", "create", json!([vals]))?
            .as_i64()
            .context("order id")?;
        self.admin("sale.order", "action_confirm", json!([[id]]))?;
        self.with_env(Map::new(), |env| {
            let deliveries = env
                .db
                .children("stock.picking", "sale_id", id)
                .into_iter()
                .map(|p| env.text("stock.picking", p, "name"))
                .collect();
            Ok(SaleOrderInfo {
                id,
                name: env.text("sale.order", id, "name"),
                deliveries,
            })
        })
    }

    // -- lookups -------------------------------------------------------------------------

    /// The id of the (first) product with `default_code == sku`.
    pub fn product_id(&self, sku: &str) -> anyhow::Result<Id> {
        self.with_env(Map::new(), |env| {
            env.db
                .ids("product.product")
                .into_iter()
                .find(|p| env.text("product.product", *p, "default_code") == sku)
                .with_context(|| format!("no product {sku}"))
        })
    }

    /// The id of the location whose complete name is `name` (e.g. `"WH/Stock"`).
    pub fn location_id(&self, name: &str) -> anyhow::Result<Id> {
        self.with_env(Map::new(), |env| {
            env.db
                .ids("stock.location")
                .into_iter()
                .find(|l| env.text("stock.location", *l, "complete_name") == name)
                .with_context(|| format!("no location {name}"))
        })
    }

    /// The id of the warehouse with `code`.
    pub fn warehouse_id(&self, code: &str) -> anyhow::Result<Id> {
        self.with_env(Map::new(), |env| {
            env.db
                .ids("stock.warehouse")
                .into_iter()
                .find(|w| env.text("stock.warehouse", *w, "code") == code)
                .with_context(|| format!("no warehouse {code}"))
        })
    }

    /// Every id of `model` (for replay tests mapping seeded records).
    pub fn record_ids(&self, model: &str) -> Vec<Id> {
        self.shared.db.lock().expect("db lock").ids(model)
    }

    // -- inspection ----------------------------------------------------------------------

    /// On-hand quantity of `sku` at exactly `location` (complete name), all lots, summing
    /// every quant row (rows can be duplicated, docs/odoo.md#quants).
    pub fn on_hand(&self, sku: &str, location: &str) -> f64 {
        self.quants(sku)
            .into_iter()
            .filter(|q| q.location == location)
            .map(|q| q.quantity)
            .sum()
    }

    /// On-hand quantity of `sku` / `lot` at exactly `location`.
    pub fn on_hand_lot(&self, sku: &str, location: &str, lot: &str) -> f64 {
        self.quants(sku)
            .into_iter()
            .filter(|q| q.location == location && q.lot.as_deref() == Some(lot))
            .map(|q| q.quantity)
            .sum()
    }

    /// On-hand quantity of `sku` in a warehouse's internal locations (by code).
    pub fn on_hand_in_warehouse(&self, sku: &str, warehouse: &str) -> f64 {
        self.availability(sku, warehouse).0
    }

    /// (`qty_available`, `free_qty`, `virtual_available`) of `sku` at a warehouse (code).
    pub fn availability(&self, sku: &str, warehouse: &str) -> (f64, f64, f64) {
        let (Ok(product), Ok(warehouse)) = (self.product_id(sku), self.warehouse_id(warehouse))
        else {
            return (0.0, 0.0, 0.0);
        };
        let mut context = Map::new();
        context.insert("warehouse".into(), json!(warehouse));
        self.with_env(context, |env| {
            (
                stock::availability(env, product, "qty_available"),
                stock::availability(env, product, "free_qty"),
                stock::availability(env, product, "virtual_available"),
            )
        })
    }

    /// Every quant row of `sku`, virtual locations included.
    pub fn quants(&self, sku: &str) -> Vec<QuantInfo> {
        let Ok(product) = self.product_id(sku) else {
            return Vec::new();
        };
        self.with_env(Map::new(), |env| {
            env.db
                .children("stock.quant", "product_id", product)
                .into_iter()
                .map(|q| QuantInfo {
                    id: q,
                    sku: sku.to_owned(),
                    location: name_of(
                        env,
                        "stock.location",
                        env.m2o("stock.quant", q, "location_id"),
                    ),
                    lot: env
                        .m2o("stock.quant", q, "lot_id")
                        .map(|l| env.text("stock.lot", l, "name")),
                    quantity: env.f64("stock.quant", q, "quantity"),
                    reserved: stock::quant_reserved(env, q),
                })
                .collect()
        })
    }

    /// Every picking, oldest first, with its moves.
    pub fn pickings(&self) -> Vec<PickingInfo> {
        self.with_env(Map::new(), |env| {
            env.db
                .ids("stock.picking")
                .into_iter()
                .map(|p| picking_info(env, p))
                .collect()
        })
    }

    /// The picking named `name`.
    pub fn picking(&self, name: &str) -> Option<PickingInfo> {
        self.pickings().into_iter().find(|p| p.name == name)
    }

    /// Every move line, oldest first.
    pub fn move_lines(&self) -> Vec<MoveLineInfo> {
        self.with_env(Map::new(), |env| {
            env.db
                .ids("stock.move.line")
                .into_iter()
                .map(|l| {
                    let raw = |f| env.raw("stock.move.line", l, f);
                    MoveLineInfo {
                        id: l,
                        move_id: env.m2o("stock.move.line", l, "move_id"),
                        picking: env
                            .m2o("stock.move.line", l, "picking_id")
                            .map(|p| env.text("stock.picking", p, "name")),
                        reference: raw("reference").as_str().unwrap_or("").to_owned(),
                        sku: env
                            .m2o("stock.move.line", l, "product_id")
                            .map(|p| env.text("product.product", p, "default_code"))
                            .unwrap_or_default(),
                        quantity: env.f64("stock.move.line", l, "quantity"),
                        lot: env
                            .m2o("stock.move.line", l, "lot_id")
                            .map(|lot| env.text("stock.lot", lot, "name")),
                        from: name_of(
                            env,
                            "stock.location",
                            env.m2o("stock.move.line", l, "location_id"),
                        ),
                        to: name_of(
                            env,
                            "stock.location",
                            env.m2o("stock.move.line", l, "location_dest_id"),
                        ),
                        state: raw("state").as_str().unwrap_or("").to_owned(),
                        date: env.text("stock.move.line", l, "date"),
                        is_inventory: orm::truthy(&raw("is_inventory")),
                    }
                })
                .collect()
        })
    }

    /// Done move lines only (what actually changed stock).
    pub fn done_move_lines(&self) -> Vec<MoveLineInfo> {
        self.move_lines()
            .into_iter()
            .filter(|l| l.state == "done")
            .collect()
    }
}

fn name_of(env: &Env, model: &str, id: Option<Id>) -> String {
    id.map(|id| env.display_name(model, id)).unwrap_or_default()
}

fn optional_text(env: &Env, model: &str, id: Id, field: &str) -> Option<String> {
    Some(env.text(model, id, field)).filter(|t| !t.is_empty())
}

fn picking_info(env: &Env, picking: Id) -> PickingInfo {
    let moves = stock::picking_moves(env, picking)
        .into_iter()
        .map(|mv| MoveInfo {
            id: mv,
            sku: env
                .m2o("stock.move", mv, "product_id")
                .map(|p| env.text("product.product", p, "default_code"))
                .unwrap_or_default(),
            demand: as_f64(&env.db.field("stock.move", mv, "product_uom_qty")),
            quantity: stock::move_quantity(env, mv),
            picked: env.flag("stock.move", mv, "picked"),
            state: env.text("stock.move", mv, "state"),
            from: name_of(
                env,
                "stock.location",
                env.m2o("stock.move", mv, "location_id"),
            ),
            to: name_of(
                env,
                "stock.location",
                env.m2o("stock.move", mv, "location_dest_id"),
            ),
        })
        .collect();
    PickingInfo {
        id: picking,
        name: env.text("stock.picking", picking, "name"),
        state: env.text("stock.picking", picking, "state"),
        origin: optional_text(env, "stock.picking", picking, "origin"),
        note: optional_text(env, "stock.picking", picking, "note"),
        picking_type_code: env
            .raw("stock.picking", picking, "picking_type_code")
            .as_str()
            .unwrap_or("")
            .to_owned(),
        backorder_of: env
            .m2o("stock.picking", picking, "backorder_id")
            .map(|b| env.text("stock.picking", b, "name")),
        sale_order: env
            .m2o("stock.picking", picking, "sale_id")
            .map(|s| env.text("sale.order", s, "name")),
        moves,
    }
}

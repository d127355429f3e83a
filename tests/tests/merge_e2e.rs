//! The whole chain against an Odoo: scanners post to a `tally-agent`, which syncs over TLS to a
//! `tally-central` merging into Odoo; central is SIGKILLed while the warehouse keeps scanning
//! and restarted; afterwards Odoo holds exactly the effect of every event, at each location,
//! and picks and receipts naming an open Odoo picking filled it and left a backorder.
//!
//! By default the Odoo is the simulator (17, 18 and 19 in turn). With `TALLY_ODOO_URL`,
//! `TALLY_ODOO_DB`, `TALLY_ODOO_USER` and `TALLY_ODOO_API_KEY` set, the same test runs against
//! that real Odoo instead and says so on stdout (`cargo test -p tally-tests --test merge_e2e --
//! --nocapture`). The live database needs what `tally-demo` needs: warehouse `WH` with a
//! location `WH/Stock/Shelf 2` and storable products CHAIR-OAK, LAMP-BRASS and DESK-PINE
//! without lots; the integration user needs an e-mail address (for backorders) and the rights
//! the README lists. Checks are relative to the stock found at the start, except the count,
//! which sets DESK-PINE on Shelf 2 to a known quantity. Wherever the database holds its stock,
//! the test first puts some of LAMP-BRASS at both locations (an inventory adjustment), so
//! Odoo may reserve the delivery it fills at either: the scans must leave from where they were
//! made all the same. `TALLY_ODOO_API` (auto, json2 or jsonrpc) picks the transport.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use tally_central::odoo::{Call, OdooClient, OdooConfig};
use tally_protocol::Secret;
use tally_tests::odoo_orders::{Direction, name_and_state, open_picking};
use tally_tests::odoo_sim::{Fault, FaultKind, OdooSim, SimConfig, Tracking, Version};
use tally_tests::{
    AdminClient, AgentProcess, CentralProcess, TlsFiles, add_agent_offline, gen_cert, wait_synced,
    wait_until, with_temp_dir,
};

const WAREHOUSE: &str = "WH";
const AGENT_ID: &str = "e2e-agent";
const SCANNER_TOKEN: &str = "e2e-scanner-token-0123456789";
const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789";
const STOCK: &str = "WH/Stock";
const SHELF: &str = "WH/Stock/Shelf 2";
const SKUS: [&str; 3] = ["CHAIR-OAK", "LAMP-BRASS", "DESK-PINE"];
/// A real Odoo takes a few hundred milliseconds a call.
const MERGE_WAIT: Duration = Duration::from_secs(300);

/// The real Odoo named by the environment, if all four variables are set.
fn live_odoo() -> Option<OdooConfig> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    Some(OdooConfig {
        url: var("TALLY_ODOO_URL")?,
        db: var("TALLY_ODOO_DB")?,
        login: var("TALLY_ODOO_USER")?,
        api_key: Secret::new(var("TALLY_ODOO_API_KEY")?),
        call_timeout: Duration::from_secs(300),
        // `TALLY_ODOO_API=jsonrpc` tries 19 over its old transport.
        api: match var("TALLY_ODOO_API") {
            Some(api) => api
                .parse()
                .expect("TALLY_ODOO_API is auto, json2 or jsonrpc"),
            None => Default::default(),
        },
    })
}

/// A simulator of `version` with `skus` (untracked) and `WH/Stock/Shelf 2`, and the settings
/// central needs to reach it.
async fn simulator(version: Version, skus: &[&str]) -> anyhow::Result<(OdooSim, OdooConfig)> {
    let sim = OdooSim::start(SimConfig::new(version)).await?;
    for sku in skus {
        sim.add_product(sku, Tracking::None)?;
    }
    sim.add_location(STOCK, "Shelf 2")?;
    let config = OdooConfig {
        url: sim.url(),
        db: sim.db().to_owned(),
        login: sim.login().to_owned(),
        api_key: Secret::new(sim.api_key()),
        call_timeout: Duration::from_secs(60),
        api: Default::default(),
    };
    Ok((sim, config))
}

/// The warehouse's agent, syncing to central through the proxy on `port` (plain `ws://`).
async fn agent_through(dir: &Path, port: u16, token: &str) -> anyhow::Result<AgentProcess> {
    AgentProcess::builder(dir.join("agent"))
        .token(SCANNER_TOKEN)
        .warehouse(WAREHOUSE)
        .agent_id(AGENT_ID)
        .central(&format!("ws://127.0.0.1:{port}/v1/sync"), token, None)
        .spawn()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_lands_in_odoo_exactly_once_through_a_central_crash() {
    if let Some(odoo) = live_odoo() {
        println!(
            "merge_e2e: LIVE run against the real Odoo at {} (database {}, user {})",
            odoo.url, odoo.db, odoo.login
        );
        with_temp_dir("merge-e2e-live", |dir| async move {
            scenario(&dir, &odoo).await
        })
        .await;
        println!("merge_e2e: LIVE run passed");
        return;
    }
    for version in [Version::V17, Version::V18, Version::V19] {
        println!("merge_e2e: against the Odoo simulator ({version:?}), not a real Odoo");
        with_temp_dir(&format!("merge-e2e-{version:?}"), |dir| async move {
            let (_sim, odoo) = simulator(version, &SKUS).await?;
            scenario(&dir, &odoo).await
        })
        .await;
    }
}

/// What the test reads of Odoo: quantities at exact locations, through JSON-RPC like central.
struct Odoo {
    client: OdooClient,
    products: BTreeMap<String, i64>,
    locations: BTreeMap<String, i64>,
}

impl Odoo {
    async fn connect(config: &OdooConfig) -> anyhow::Result<Odoo> {
        let client = OdooClient::connect(config)
            .await
            .context("cannot reach Odoo")?;
        let skus: Vec<String> = SKUS.iter().map(|s| (*s).to_owned()).collect();
        let products = client
            .products(&skus)
            .await?
            .into_iter()
            .map(|p| (p.sku, p.id))
            .collect::<BTreeMap<_, _>>();
        ensure!(
            products.len() == SKUS.len(),
            "Odoo lacks some of the products {SKUS:?}: found {products:?}"
        );
        let view = client
            .warehouses(&[WAREHOUSE.to_owned()])
            .await?
            .first()
            .context("no warehouse WH")?
            .view_location;
        let locations = client
            .locations_by_name(&[STOCK.to_owned(), SHELF.to_owned()], view)
            .await?
            .into_iter()
            .collect::<BTreeMap<_, _>>();
        ensure!(locations.len() == 2, "Odoo lacks {STOCK} or {SHELF}");
        Ok(Odoo {
            client,
            products,
            locations,
        })
    }

    /// On hand of `sku` at exactly `location`, every quant row summed.
    async fn on_hand(&self, sku: &str, location: &str) -> anyhow::Result<f64> {
        Ok(self
            .client
            .quantity_at(self.products[sku], self.locations[location], None)
            .await?
            + 0.0)
    }

    async fn snapshot(&self) -> anyhow::Result<BTreeMap<(&'static str, &'static str), f64>> {
        let mut out = BTreeMap::new();
        for sku in SKUS {
            for location in [STOCK, SHELF] {
                out.insert((sku, location), self.on_hand(sku, location).await?);
            }
        }
        Ok(out)
    }

    /// An open receipt or delivery of `qty` `sku`, as a purchase or a sale would leave.
    async fn expect(&self, receipt: bool, sku: &str, qty: f64) -> anyhow::Result<(i64, String)> {
        let direction = if receipt {
            Direction::Receipt
        } else {
            Direction::Delivery
        };
        open_picking(&self.client, direction, sku, qty, "tally merge_e2e").await
    }

    /// Makes `sku` at exactly `location` at least `qty`, through an inventory adjustment as a
    /// stock manager would apply it.
    async fn stock_at_least(&self, sku: &str, location: &str, qty: f64) -> anyhow::Result<()> {
        let missing = qty - self.on_hand(sku, location).await?;
        if missing <= 0.0 {
            return Ok(());
        }
        let (product, location_id) = (self.products[sku], self.locations[location]);
        let context = json!({"inventory_mode": true});
        let rows = self
            .client
            .search_read(
                "stock.quant",
                json!([
                    ["product_id", "=", product],
                    ["location_id", "=", location_id],
                    ["lot_id", "=", false]
                ]),
                &["id", "quantity"],
                None,
            )
            .await?;
        let quant = match rows.first() {
            Some(row) => {
                let id = row["id"].as_i64().context("quant id")?;
                let counted = row["quantity"].as_f64().unwrap_or(0.0) + missing;
                self.client
                    .execute(
                        Call::records("stock.quant", "write", vec![id])
                            .arg("vals", json!({"inventory_quantity": counted}))
                            .context(context.clone()),
                    )
                    .await?;
                id
            }
            None => {
                let created = self
                    .client
                    .execute(
                        Call::model("stock.quant", "create")
                            .arg(
                                "vals_list",
                                json!([{"product_id": product, "location_id": location_id,
                                        "inventory_quantity": missing}]),
                            )
                            .context(context.clone()),
                    )
                    .await?
                    .context("no answer to stock.quant.create")?;
                created
                    .as_i64()
                    .or_else(|| created.get(0).and_then(Value::as_i64))
                    .context("no quant id")?
            }
        };
        self.client
            .execute(
                Call::records("stock.quant", "action_apply_inventory", vec![quant])
                    .context(context),
            )
            .await?;
        let now = self.on_hand(sku, location).await?;
        ensure!(
            now >= qty,
            "{sku} at {location}: {now} after the adjustment"
        );
        Ok(())
    }

    /// (id, name, state) of a picking.
    async fn picking(&self, id: i64) -> anyhow::Result<(i64, String, String)> {
        let (name, state) = name_and_state(&self.client, id).await?;
        Ok((id, name, state))
    }

    /// The demand of each open backorder of picking `id`.
    async fn backorder_demand(&self, id: i64) -> anyhow::Result<Vec<f64>> {
        let rows = self
            .client
            .search_read(
                "stock.move",
                json!([["picking_id.backorder_id", "=", id]]),
                &["product_uom_qty", "state"],
                None,
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r["product_uom_qty"].as_f64())
            .collect())
    }
}

fn central(dir: &Path, tls: &TlsFiles, odoo: &OdooConfig) -> tally_tests::CentralBuilder {
    CentralProcess::builder(dir)
        .admin_token(ADMIN_TOKEN)
        .tls(tls)
        .odoo(odoo)
        .log_filter("info,tally_central::merge=debug")
}

/// Waits until central has merged everything it stored of the agent, with nothing parked.
async fn wait_merged(admin: &AdminClient) -> anyhow::Result<()> {
    wait_resolved(admin).await?;
    let parked = dead_letters(admin).await?;
    ensure!(
        parked["dead_letters"]
            .as_array()
            .is_some_and(|l| l.is_empty()),
        "events were parked: {parked}"
    );
    Ok(())
}

async fn dead_letters(admin: &AdminClient) -> anyhow::Result<Value> {
    Ok(reqwest::Client::new()
        .get(format!("{}/v1/dead-letters", admin.base_url()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .json()
        .await?)
}

/// Waits until every event central stored of the agent is applied to Odoo or parked.
async fn wait_resolved(admin: &AdminClient) -> anyhow::Result<()> {
    wait_until(
        "central to merge every journaled event into Odoo",
        MERGE_WAIT,
        || async {
            let view = admin.agent(AGENT_ID).await?;
            let log = view["logs"]
                .as_array()
                .and_then(|l| l.first())
                .cloned()
                .unwrap_or_default();
            let done =
                log["stored_seq"].as_u64().is_some() && log["resolved_seq"] == log["stored_seq"];
            Ok(if done {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(log.to_string())
            })
        },
    )
    .await
}

fn event(id: &str, kind: &str, sku: &str, qty: &str) -> Value {
    json!({"id": id, "type": kind, "sku": sku, "qty": qty, "location": STOCK})
}

async fn scenario(dir: &Path, config: &OdooConfig) -> anyhow::Result<()> {
    let odoo = Odoo::connect(config).await?;
    let before = odoo.snapshot().await?;
    // Unique event ids per run: a live database keeps what earlier runs did.
    let run = format!("{:08x}", rand::random::<u32>());
    let id = |name: &str| format!("{run}-{name}");

    let tls = gen_cert(&dir.join("tls")).await?;
    let central_dir = dir.join("central");
    let token = add_agent_offline(&central_dir, ADMIN_TOKEN, AGENT_ID, WAREHOUSE).await?;
    let first = central(&central_dir, &tls, config).spawn().await?;
    let link = tally_tests::Proxy::start(first.sync_addr()).await?;
    let agent = AgentProcess::builder(dir.join("agent"))
        .token(SCANNER_TOKEN)
        .warehouse(WAREHOUSE)
        .agent_id(AGENT_ID)
        .central(
            &format!("wss://localhost:{}/v1/sync", link.port()),
            &token,
            Some(&tls.ca),
        )
        .spawn()
        .await?;
    let scanner = agent.client();

    // The morning: receipts, a transfer to the shelf, an adjustment, a count, picks.
    let mut morning = vec![
        event(&id("rcv-1"), "receipt", "CHAIR-OAK", "40"),
        event(&id("rcv-2"), "receipt", "LAMP-BRASS", "25"),
        json!({"id": id("xfr-1"), "type": "transfer", "sku": "CHAIR-OAK", "qty": "10",
               "location": STOCK, "to_location": SHELF}),
        json!({"id": id("adj-1"), "type": "adjustment", "sku": "LAMP-BRASS", "qty": "-1",
               "reason": "broken"}),
        json!({"id": id("cnt-1"), "type": "count", "sku": "DESK-PINE", "qty": "12",
               "location": SHELF}),
    ];
    for i in 0..20 {
        let sku = if i % 2 == 0 {
            "CHAIR-OAK"
        } else {
            "LAMP-BRASS"
        };
        morning.push(event(&id(&format!("pick-{i}")), "pick", sku, "1"));
    }
    let answer = scanner.post_events(&json!({ "events": morning })).await?;
    ensure!(answer.status == 201, "{}", answer.body);
    wait_synced(&scanner, Duration::from_secs(60)).await?;

    // Central dies hard, most likely in the middle of merging the morning into Odoo; the
    // warehouse keeps scanning through the outage.
    link.stall();
    first.kill9().await?;
    let outage: Vec<Value> = (0..15)
        .map(|i| event(&id(&format!("outage-{i}")), "pick", "LAMP-BRASS", "1"))
        .chain([
            json!({"id": id("adj-2"), "type": "adjustment", "sku": "DESK-PINE", "qty": "3",
                   "location": SHELF, "reason": "found"}),
            json!({"id": id("pick-shelf"), "type": "pick", "sku": "DESK-PINE", "qty": "2",
                   "location": SHELF}),
        ])
        .collect();
    let answer = scanner.post_events(&json!({ "events": outage })).await?;
    ensure!(answer.status == 201, "{}", answer.body);

    let second = central(&central_dir, &tls, config).spawn().await?;
    link.retarget(second.sync_addr());
    link.unblock();
    wait_synced(&scanner, Duration::from_secs(90)).await?;
    let admin = second.admin();
    wait_merged(&admin).await?;
    // Central measured the agent's clock when it connected (same machine: no real offset).
    let view = admin.agent(AGENT_ID).await?;
    let behind = view["clock_behind_seconds"]
        .as_f64()
        .with_context(|| format!("no clock measurement in {view}"))?;
    ensure!(behind.abs() < 5.0, "clock_behind_seconds {behind}");

    let after = odoo.snapshot().await?;
    let moved = |sku: &'static str, location: &'static str| {
        after[&(sku, location)] - before[&(sku, location)]
    };
    ensure!(
        moved("CHAIR-OAK", STOCK) == 40.0 - 10.0 - 10.0,
        "CHAIR-OAK at {STOCK}: {before:?} → {after:?}"
    );
    ensure!(moved("CHAIR-OAK", SHELF) == 10.0, "{before:?} → {after:?}");
    ensure!(
        moved("LAMP-BRASS", STOCK) == 25.0 - 1.0 - 10.0 - 15.0,
        "LAMP-BRASS at {STOCK}: {before:?} → {after:?}"
    );
    ensure!(moved("DESK-PINE", STOCK) == 0.0, "{before:?} → {after:?}");
    // Counted 12, then +3 found and 2 picked.
    ensure!(
        after[&("DESK-PINE", SHELF)] == 12.0 + 3.0 - 2.0,
        "DESK-PINE at {SHELF}: {before:?} → {after:?}"
    );

    // Picks and receipts naming an open picking fill it where they were scanned, wherever
    // Odoo reserved or expected the goods; what is not scanned stays open in a backorder.
    for location in [STOCK, SHELF] {
        odoo.stock_at_least("LAMP-BRASS", location, 10.0).await?;
    }
    let ready = odoo.snapshot().await?;
    let (receipt, receipt_name) = odoo.expect(true, "CHAIR-OAK", 10.0).await?;
    let (delivery, delivery_name) = odoo.expect(false, "LAMP-BRASS", 5.0).await?;
    let filled = vec![
        json!({"id": id("po-1"), "type": "receipt", "sku": "CHAIR-OAK", "qty": "6",
               "location": SHELF, "reference": receipt_name}),
        json!({"id": id("so-1"), "type": "pick", "sku": "LAMP-BRASS", "qty": "2",
               "location": STOCK, "reference": delivery_name}),
        json!({"id": id("so-2"), "type": "pick", "sku": "LAMP-BRASS", "qty": "1",
               "location": SHELF, "reference": delivery_name}),
    ];
    let answer = scanner.post_events(&json!({ "events": filled })).await?;
    ensure!(answer.status == 201, "{}", answer.body);
    wait_synced(&scanner, Duration::from_secs(60)).await?;
    wait_merged(&admin).await?;
    for (id, name, remaining) in [
        (receipt, &receipt_name, 4.0),
        (delivery, &delivery_name, 2.0),
    ] {
        let (_, _, state) = odoo.picking(id).await?;
        ensure!(state == "done", "{name} is {state}, not done");
        let backorders = odoo.backorder_demand(id).await?;
        ensure!(
            backorders == vec![remaining],
            "{name}'s backorder holds {backorders:?}, not {remaining}"
        );
    }
    // "Where is my scan?" names the open picking each scan filled.
    for (event, name) in [("po-1", &receipt_name), ("so-2", &delivery_name)] {
        let trace = admin
            .get_json(&format!("/v1/trace?agent={AGENT_ID}&id={}", id(event)))
            .await?;
        ensure!(
            trace["state"] == "merged"
                && trace["picking"]["name"] == name.as_str()
                && trace["picking"]["state"] == "filled",
            "the trace of {event}: {trace}"
        );
    }
    let last = odoo.snapshot().await?;
    let filled = |sku: &'static str, location: &'static str| {
        last[&(sku, location)] - ready[&(sku, location)]
    };
    for (sku, location, moved) in [
        ("CHAIR-OAK", STOCK, 0.0),
        ("CHAIR-OAK", SHELF, 6.0),
        ("LAMP-BRASS", STOCK, -2.0),
        ("LAMP-BRASS", SHELF, -1.0),
    ] {
        ensure!(
            filled(sku, location) == moved,
            "{sku} at {location} moved {}, not {moved}: {ready:?} → {last:?}",
            filled(sku, location)
        );
    }

    let (agent_exit, central_exit) = (agent.terminate().await?, second.terminate().await?);
    ensure!(
        agent_exit.success() && central_exit.success(),
        "unclean exit: agent {agent_exit}, central {central_exit}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_events_are_retried_from_the_cli_once_odoo_has_the_product() {
    with_temp_dir("merge-e2e-retry", |dir| async move {
        let (sim, odoo) = simulator(Version::V18, &["CHAIR-OAK"]).await?;
        let central_dir = dir.join("central");
        let token = add_agent_offline(&central_dir, ADMIN_TOKEN, AGENT_ID, WAREHOUSE).await?;
        let central = CentralProcess::builder(&central_dir)
            .admin_token(ADMIN_TOKEN)
            .plaintext()
            .odoo(&odoo)
            .spawn()
            .await?;
        let agent = AgentProcess::builder(dir.join("agent"))
            .token(SCANNER_TOKEN)
            .warehouse(WAREHOUSE)
            .agent_id(AGENT_ID)
            .central(&central.sync_url(), &token, None)
            .spawn()
            .await?;
        let scanner = agent.client();
        // A product nobody created in Odoo yet, between two events of one that exists.
        let events = vec![
            event("r1", "receipt", "NEW-SKU", "5"),
            event("r2", "receipt", "CHAIR-OAK", "3"),
            event("p1", "pick", "NEW-SKU", "1"),
        ];
        let answer = scanner.post_events(&json!({ "events": events })).await?;
        ensure!(answer.status == 201, "{}", answer.body);
        wait_synced(&scanner, Duration::from_secs(60)).await?;
        let admin = central.admin();
        wait_resolved(&admin).await?;
        ensure!(sim.on_hand("CHAIR-OAK", STOCK) == 3.0);
        let listed: Value = serde_json::from_str(&central.cli("dlq", &["list", "--json"]).await?)?;
        let reasons: Vec<&str> = listed["dead_letters"]
            .as_array()
            .context("dead_letters")?
            .iter()
            .filter_map(|l| l["reason"].as_str())
            .collect();
        ensure!(
            reasons == ["unknown-sku", "parked-behind"],
            "dlq list: {listed}"
        );
        let metrics = reqwest::get(format!("{}/metrics", central.admin_url()))
            .await?
            .text()
            .await?;
        for line in [
            "tally_central_dead_letters 2",
            "tally_central_odoo_connected 1",
            "tally_central_odoo_circuit_open 0",
            "tally_central_agent_unmerged_events{agent=\"e2e-agent\"} 0",
        ] {
            ensure!(metrics.contains(line), "no {line:?} in {metrics}");
        }

        // Merged and parked apart, the same in /v1/merge, /v1/agents and /metrics; the parking
        // logged once for the SKU (issue 16).
        figures_agree(&admin, central.admin_url(), 1, 2).await?;
        let log = std::fs::read_to_string(central.stderr_path())?;
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("events parked"))
            .collect();
        ensure!(
            lines.len() == 1 && lines[0].contains("NEW-SKU") && lines[0].contains("unknown-sku"),
            "parking log lines: {lines:?}"
        );

        sim.add_product("NEW-SKU", Tracking::None)?;
        let queued = central
            .cli(
                "dlq",
                &[
                    "retry",
                    "--warehouse",
                    WAREHOUSE,
                    "--sku",
                    "NEW-SKU",
                    "--reason",
                    "NEW-SKU created in Odoo",
                ],
            )
            .await?;
        ensure!(
            queued.starts_with("queued 2 parked events of NEW-SKU"),
            "dlq retry: {queued}"
        );
        wait_until("the retried events to be applied", MERGE_WAIT, || async {
            let parked = dead_letters(&admin).await?;
            let done = parked["dead_letters"]
                .as_array()
                .is_some_and(|l| l.is_empty())
                && parked["queued_for_retry"] == 0;
            Ok(if done {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(parked.to_string())
            })
        })
        .await?;
        ensure!(
            sim.on_hand("NEW-SKU", STOCK) == 4.0,
            "NEW-SKU: {}",
            sim.on_hand("NEW-SKU", STOCK)
        );
        figures_agree(&admin, central.admin_url(), 3, 0).await?;
        Ok(())
    })
    .await;
}

/// Checks that `/v1/merge`, the agent's log in `/v1/agents` and `/metrics` all count `merged`
/// events merged and `parked` parked.
async fn figures_agree(
    admin: &AdminClient,
    admin_url: &str,
    merged: u64,
    parked: u64,
) -> anyhow::Result<()> {
    let status: Value = reqwest::Client::new()
        .get(format!("{admin_url}/v1/merge"))
        .bearer_auth(admin.token())
        .send()
        .await?
        .json()
        .await?;
    ensure!(
        status["merged_events"] == merged && status["parked_events"] == parked,
        "/v1/merge: {status}"
    );
    let agent = admin.agent(AGENT_ID).await?;
    let log = &agent["logs"][0];
    ensure!(
        log["merged_events"] == merged && log["parked_events"] == parked,
        "/v1/agents: {agent}"
    );
    let metrics = reqwest::get(format!("{admin_url}/metrics"))
        .await?
        .text()
        .await?;
    for line in [
        format!("tally_central_merged_events {merged}"),
        format!("tally_central_dead_letters {parked}"),
    ] {
        ensure!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in {metrics}"
        );
    }
    Ok(())
}

/// A moment of a merge at which central is SIGKILLed: the simulator fault that holds central
/// there, and the condition that shows central has reached it.
struct Step {
    name: &'static str,
    fault: Fault,
    reached: fn(&OdooSim, &str) -> bool,
}

fn tally_pickings(sim: &OdooSim) -> Vec<tally_tests::odoo_sim::PickingInfo> {
    sim.pickings()
        .into_iter()
        .filter(|p| p.name.starts_with("tally-"))
        .collect()
}

fn steps() -> Vec<Step> {
    use FaultKind::{AppliedThenHang, Hang};
    let picking =
        |kind, method: &str, skip| Fault::new(kind).on("stock.picking", method).after(skip);
    vec![
        // The plan is recorded (it is, before any call); nothing reached Odoo.
        Step {
            name: "after the plan",
            fault: picking(Hang, "create", 0),
            reached: |sim, _| sim.pending_faults().is_empty(),
        },
        Step {
            name: "after a create",
            fault: picking(AppliedThenHang, "create", 0),
            reached: |sim, _| !tally_pickings(sim).is_empty(),
        },
        // Odoo validated; central has not recorded it.
        Step {
            name: "after a validation, before it is marked done",
            fault: picking(AppliedThenHang, "button_validate", 0),
            reached: |sim, _| tally_pickings(sim).iter().any(|p| p.state == "done"),
        },
        Step {
            name: "after a fill's guard",
            fault: picking(Hang, "write", 0),
            reached: |sim, _| sim.pending_faults().is_empty(),
        },
        Step {
            name: "after a fill's write",
            fault: picking(AppliedThenHang, "write", 0),
            reached: |sim, delivery| {
                sim.picking(delivery)
                    .and_then(|p| p.note)
                    .is_some_and(|n| n.contains("tally:"))
            },
        },
        Step {
            name: "after a fill's validation",
            fault: picking(AppliedThenHang, "button_validate", 2),
            reached: |sim, delivery| sim.picking(delivery).is_some_and(|p| p.state == "done"),
        },
        Step {
            name: "after a count's plan",
            fault: picking(Hang, "create", 2),
            reached: |sim, _| sim.pending_faults().is_empty(),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn central_sigkilled_at_each_step_of_a_batch_applies_it_once() {
    for step in steps() {
        with_temp_dir("merge-e2e-steps", |dir| async move {
            killed_at(&dir, &step)
                .await
                .with_context(|| format!("central killed {}", step.name))
        })
        .await;
    }
}

async fn killed_at(dir: &Path, step: &Step) -> anyhow::Result<()> {
    let (sim, config) = simulator(Version::V17, &SKUS).await?;
    sim.set_on_hand("LAMP-BRASS", STOCK, None, 50.0)?;
    sim.set_on_hand("LAMP-BRASS", SHELF, None, 20.0)?;
    let odoo = Odoo::connect(&config).await?;
    let (delivery, delivery_name) = odoo.expect(false, "LAMP-BRASS", 5.0).await?;

    let central_dir = dir.join("central");
    let token = add_agent_offline(&central_dir, ADMIN_TOKEN, AGENT_ID, WAREHOUSE).await?;
    let builder = CentralProcess::builder(&central_dir)
        .admin_token(ADMIN_TOKEN)
        .plaintext()
        .odoo(&config);
    sim.inject(step.fault.clone());
    let first = builder.spawn().await?;
    let link = tally_tests::Proxy::start(first.sync_addr()).await?;
    let agent = agent_through(dir, link.port(), &token).await?;
    let scanner = agent.client();
    let events = vec![
        event("r1", "receipt", "CHAIR-OAK", "5"),
        event("p1", "pick", "LAMP-BRASS", "2"),
        // Odoo reserved the delivery at WH/Stock; the picker took the 3 from the shelf.
        json!({"id": "f1", "type": "pick", "sku": "LAMP-BRASS", "qty": "3",
               "location": SHELF, "reference": delivery_name}),
        event("c1", "count", "DESK-PINE", "7"),
    ];
    let answer = scanner.post_events(&json!({ "events": events })).await?;
    ensure!(answer.status == 201, "{}", answer.body);
    wait_until(
        "central to reach the step",
        Duration::from_secs(30),
        || async {
            Ok(if (step.reached)(&sim, &delivery_name) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(format!("{:?}", sim.pickings()))
            })
        },
    )
    .await?;
    first.kill9().await?;
    sim.clear_faults();

    let second = builder.spawn().await?;
    link.retarget(second.sync_addr());
    wait_synced(&scanner, Duration::from_secs(60)).await?;
    wait_merged(&second.admin()).await?;
    ensure!(sim.on_hand("CHAIR-OAK", STOCK) == 5.0);
    for (location, left) in [(STOCK, 48.0), (SHELF, 17.0)] {
        ensure!(
            sim.on_hand("LAMP-BRASS", location) == left,
            "LAMP-BRASS at {location}: {}",
            sim.on_hand("LAMP-BRASS", location)
        );
    }
    ensure!(sim.on_hand("DESK-PINE", STOCK) == 7.0);
    let (_, _, state) = odoo.picking(delivery).await?;
    ensure!(state == "done", "the delivery is {state}");
    ensure!(odoo.backorder_demand(delivery).await? == vec![2.0]);
    // One picking per key, each done once.
    let tally = tally_pickings(&sim);
    let mut names: Vec<&str> = tally.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    ensure!(names.len() == tally.len() && tally.len() == 3, "{tally:?}");
    ensure!(tally.iter().all(|p| p.state == "done"), "{tally:?}");
    second.terminate().await?;
    Ok(())
}

/// An event of `kind` at `location`.
fn event_at(id: &str, kind: &str, sku: &str, qty: &str, location: &str) -> Value {
    json!({"id": id, "type": kind, "sku": sku, "qty": qty, "location": location})
}

/// A moment in the merge of counts at which central is SIGKILLed: the simulator fault that
/// holds central there (reached once the fault is spent).
fn count_steps() -> Vec<(&'static str, Fault)> {
    use FaultKind::{AppliedThenHang, Hang};
    let at = |kind, model: &str, method: &str, skip| Fault::new(kind).on(model, method).after(skip);
    // The feed below makes three phases: pickings 0 (R1), 1 (D1) and the first counts' 2
    // (C1); 3 (p2-D1), 4 (p2-T1) and the second counts' 5 (p2-C1); 6 (p3-R1). Each phase's
    // counts read the quants twice (quantities, then pending counts) and the moves once.
    vec![
        (
            "at the first counts' reads",
            at(Hang, "stock.quant", "search_read", 0),
        ),
        (
            "at the first counts' moves since",
            at(Hang, "stock.move.line", "search_read", 0),
        ),
        (
            "after the first counts' adjustment is created",
            at(AppliedThenHang, "stock.picking", "create", 2),
        ),
        (
            "after the first counts' adjustment is validated",
            at(AppliedThenHang, "stock.picking", "button_validate", 2),
        ),
        (
            "at the second phase's first picking",
            at(Hang, "stock.picking", "create", 3),
        ),
        (
            "at the second counts' reads",
            at(Hang, "stock.quant", "search_read", 2),
        ),
        (
            "after the second counts' adjustment is created",
            at(AppliedThenHang, "stock.picking", "create", 5),
        ),
        (
            "after the second counts' adjustment is validated",
            at(AppliedThenHang, "stock.picking", "button_validate", 5),
        ),
        (
            "after the last phase's validation",
            at(AppliedThenHang, "stock.picking", "button_validate", 6),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_of_many_stocks_among_moves_land_once_through_a_sigkill_at_each_step() {
    for (name, fault) in count_steps() {
        with_temp_dir("merge-e2e-counts", |dir| async move {
            counts_killed_at(&dir, fault)
                .await
                .with_context(|| format!("central killed {name}"))
        })
        .await;
    }
}

async fn counts_killed_at(dir: &Path, fault: Fault) -> anyhow::Result<()> {
    let (sim, config) = simulator(Version::V17, &SKUS).await?;
    for sku in SKUS {
        for location in [STOCK, SHELF] {
            sim.set_on_hand(sku, location, None, 40.0)?;
        }
    }
    let central_dir = dir.join("central");
    let token = add_agent_offline(&central_dir, ADMIN_TOKEN, AGENT_ID, WAREHOUSE).await?;
    let builder = CentralProcess::builder(&central_dir)
        .admin_token(ADMIN_TOKEN)
        .plaintext()
        .odoo(&config);
    sim.inject(fault);
    let first = builder.spawn().await?;
    let link = tally_tests::Proxy::start(first.sync_addr()).await?;
    let agent = agent_through(dir, link.port(), &token).await?;
    let scanner = agent.client();
    // Counts of four stocks, two of them counted twice, among moves of the same stocks and of
    // others; read one at a time, they leave what `expected` says.
    let events = vec![
        event_at("1", "receipt", "LAMP-BRASS", "5", STOCK),
        event_at("2", "count", "LAMP-BRASS", "30", STOCK),
        event_at("3", "pick", "CHAIR-OAK", "2", STOCK),
        event_at("4", "count", "CHAIR-OAK", "9", SHELF),
        event_at("5", "pick", "LAMP-BRASS", "4", STOCK),
        event_at("6", "receipt", "DESK-PINE", "3", SHELF),
        event_at("7", "count", "LAMP-BRASS", "20", STOCK),
        json!({"id": "8", "type": "transfer", "sku": "CHAIR-OAK", "qty": "1",
               "location": STOCK, "to_location": SHELF}),
        event_at("9", "count", "DESK-PINE", "10", SHELF),
        event_at("10", "pick", "LAMP-BRASS", "1", SHELF),
        event_at("11", "count", "CHAIR-OAK", "4", SHELF),
        event_at("12", "receipt", "LAMP-BRASS", "6", STOCK),
    ];
    let expected = [
        ("LAMP-BRASS", STOCK, 26.0),
        ("LAMP-BRASS", SHELF, 39.0),
        ("CHAIR-OAK", STOCK, 37.0),
        ("CHAIR-OAK", SHELF, 4.0),
        ("DESK-PINE", STOCK, 40.0),
        ("DESK-PINE", SHELF, 10.0),
    ];
    let answer = scanner.post_events(&json!({ "events": events })).await?;
    ensure!(answer.status == 201, "{}", answer.body);
    wait_until(
        "central to reach the step",
        Duration::from_secs(30),
        || async {
            Ok(if sim.pending_faults().is_empty() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(format!("{:?}", sim.pickings()))
            })
        },
    )
    .await?;
    first.kill9().await?;
    sim.clear_faults();

    let second = builder.spawn().await?;
    link.retarget(second.sync_addr());
    wait_synced(&scanner, Duration::from_secs(60)).await?;
    wait_merged(&second.admin()).await?;
    for (sku, location, want) in expected {
        let got = sim.on_hand(sku, location);
        ensure!(got == want, "{sku} at {location}: {got}, not {want}");
    }
    // One picking per key, each done once: three phases, not a round per count.
    let tally = tally_pickings(&sim);
    let mut names: Vec<&str> = tally.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    ensure!(names.len() == tally.len() && tally.len() == 7, "{tally:?}");
    ensure!(tally.iter().all(|p| p.state == "done"), "{tally:?}");
    second.terminate().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_api_key_pauses_the_merge_with_an_alert_until_it_is_fixed() {
    with_temp_dir("merge-e2e-auth", |dir| async move {
        let (sim, good) = simulator(Version::V17, &["CHAIR-OAK"]).await?;
        let bad = OdooConfig {
            api_key: Secret::new("not-the-key-0123456789"),
            ..good.clone()
        };
        let central_dir = dir.join("central");
        let token = add_agent_offline(&central_dir, ADMIN_TOKEN, AGENT_ID, WAREHOUSE).await?;
        let builder = |odoo: &OdooConfig| {
            CentralProcess::builder(&central_dir)
                .admin_token(ADMIN_TOKEN)
                .plaintext()
                .odoo(odoo)
        };
        let first = builder(&bad).spawn().await?;
        let link = tally_tests::Proxy::start(first.sync_addr()).await?;
        let agent = agent_through(&dir, link.port(), &token).await?;
        let scanner = agent.client();
        let answer = scanner
            .post_events(&event("r1", "receipt", "CHAIR-OAK", "4"))
            .await?;
        ensure!(answer.status == 201, "{}", answer.body);
        wait_synced(&scanner, Duration::from_secs(60)).await?;
        let status_url = format!("{}/v1/merge", first.admin_url());
        let alert = wait_until(
            "an alert about the key",
            Duration::from_secs(30),
            || async {
                let status: Value = reqwest::Client::new()
                    .get(&status_url)
                    .bearer_auth(ADMIN_TOKEN)
                    .send()
                    .await?
                    .json()
                    .await?;
                Ok(match status["alert"].as_str() {
                    Some(alert) => ControlFlow::Break(alert.to_owned()),
                    None => ControlFlow::Continue(status.to_string()),
                })
            },
        )
        .await?;
        ensure!(alert.contains("refused login"), "alert: {alert}");
        ensure!(!alert.contains("not-the-key"), "the key leaked: {alert}");
        ensure!(
            sim.on_hand("CHAIR-OAK", STOCK) == 0.0,
            "merged with a bad key"
        );
        let log = std::fs::read_to_string(first.stderr_path())?;
        ensure!(!log.contains("not-the-key"), "the key is in central's log");

        // The operator fixes the key and restarts central: the held events merge.
        first.terminate().await?;
        let second = builder(&good).spawn().await?;
        link.retarget(second.sync_addr());
        wait_merged(&second.admin()).await?;
        ensure!(sim.on_hand("CHAIR-OAK", STOCK) == 4.0);
        Ok(())
    })
    .await;
}

/// Odoo 19 dropped `stock.move.name`: Tally 0.1 sent it to every 19 server, each picking
/// was refused with "Invalid field", and every event of the feed was parked as a dead letter
/// while `/v1/merge` said all was well. An error saying that Tally and the server disagree
/// about a field must pause the merge loudly and leave the events waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_the_server_lacks_pauses_the_merge_loudly_and_parks_nothing() {
    with_temp_dir("merge-e2e-contract", |dir| async move {
        // A 19 that says it is 18: the client sends the move description 18 requires.
        let mut config = SimConfig::new(Version::V19);
        config.reported_version = Some(Version::V18);
        let sim = OdooSim::start(config).await?;
        sim.add_product("CHAIR-OAK", Tracking::None)?;
        let odoo = OdooConfig {
            url: sim.url(),
            db: sim.db().to_owned(),
            login: sim.login().to_owned(),
            api_key: Secret::new(sim.api_key()),
            call_timeout: Duration::from_secs(60),
            api: Default::default(),
        };
        let central_dir = dir.join("central");
        let token = add_agent_offline(&central_dir, ADMIN_TOKEN, AGENT_ID, WAREHOUSE).await?;
        let builder = || {
            CentralProcess::builder(&central_dir)
                .admin_token(ADMIN_TOKEN)
                .plaintext()
                .odoo(&odoo)
        };
        let first = builder().spawn().await?;
        let link = tally_tests::Proxy::start(first.sync_addr()).await?;
        let agent = agent_through(&dir, link.port(), &token).await?;
        let scanner = agent.client();
        for (id, kind, qty) in [("c1", "receipt", "6"), ("c2", "pick", "2")] {
            let answer = scanner
                .post_events(&event(id, kind, "CHAIR-OAK", qty))
                .await?;
            ensure!(answer.status == 201, "{}", answer.body);
        }
        wait_synced(&scanner, Duration::from_secs(60)).await?;
        let http = reqwest::Client::new();
        let status_url = format!("{}/v1/merge", first.admin_url());
        let alert = wait_until(
            "an alert about the field",
            Duration::from_secs(30),
            || async {
                let status: Value = http
                    .get(&status_url)
                    .bearer_auth(ADMIN_TOKEN)
                    .send()
                    .await?
                    .json()
                    .await?;
                Ok(match status["alert"].as_str() {
                    Some(alert) => ControlFlow::Break(alert.to_owned()),
                    None => ControlFlow::Continue(status.to_string()),
                })
            },
        )
        .await?;
        ensure!(
            alert.contains("Invalid field 'name'")
                && alert.contains("stock.move")
                && alert.contains("stock.picking.create"),
            "the alert names the call, model and field: {alert}"
        );
        let metrics = http
            .get(format!("{}/metrics", first.admin_url()))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?
            .text()
            .await?;
        ensure!(
            metrics.lines().any(|l| l == "tally_central_odoo_alert 1"),
            "{metrics}"
        );
        let parked = dead_letters(&first.admin()).await?;
        ensure!(
            parked["dead_letters"].as_array().is_some_and(Vec::is_empty),
            "a contract failure parked events: {parked}"
        );
        ensure!(sim.on_hand("CHAIR-OAK", STOCK) == 0.0);
        let log = std::fs::read_to_string(first.stderr_path())?;
        let said = log.matches("merging into Odoo is paused").count();
        ensure!(
            said == 1,
            "the alert is logged once, not per pass ({said}):\n{log}"
        );

        // The server is put right and central restarted: the waiting events merge, once.
        sim.set_reported_version(Version::V19);
        first.terminate().await?;
        let second = builder().spawn().await?;
        link.retarget(second.sync_addr());
        wait_merged(&second.admin()).await?;
        ensure!(sim.on_hand("CHAIR-OAK", STOCK) == 4.0);
        second.terminate().await?;
        Ok(())
    })
    .await;
}

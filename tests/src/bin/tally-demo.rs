//! `tally-demo`: Tally's main job end to end on one machine, with real processes.
//!
//! Builds the binaries, makes a test CA, starts the Odoo simulator (or uses the real Odoo given
//! with `--odoo-url`), `tally-central` (TLS) merging into it and a warehouse's `tally-agent`
//! linked to central, posts a scanner feed, cuts central off with `kill -9` while the warehouse
//! keeps scanning, brings it back, and shows every event journaled exactly once and Odoo's
//! stock moved by exactly the feed — and a Shopify shop (a local fake of Shopify's Admin
//! GraphQL API) following Odoo's free stock as a sales channel.
//!
//! Run with `cargo run -p tally-tests --bin tally-demo`. Everything it writes stays in
//! `target/tally-demo/` for a look afterwards. It ends by starting central and the agent again
//! and printing the dashboard's address and a token to sign in with, serving until Ctrl-C
//! (`--no-dashboard` exits instead).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use clap::Parser;
use serde_json::{Value, json};
use tally_central::odoo::{OdooClient, OdooConfig};
use tally_protocol::Secret;
use tally_tests::channels::shopify::{FakeConfig, ShopifyFake};
use tally_tests::odoo_orders::{Direction, open_picking};
use tally_tests::odoo_sim::{OdooSim, SimConfig, Tracking, Version};
use tally_tests::{
    AgentProcess, CentralProcess, Proxy, add_agent_offline, gen_cert, wait_synced, wait_until,
};

/// Tally end to end on one machine: Odoo (simulated unless given), central, a warehouse agent.
#[derive(Debug, Parser)]
struct Args {
    /// A real Odoo 17, 18 or 19 to merge into instead of the simulator (its warehouse WH must have
    /// a location WH/Stock/Shelf 2 and storable products CHAIR-OAK, LAMP-BRASS, DESK-PINE).
    #[arg(long, env = "TALLY_ODOO_URL", requires_all = ["odoo_db", "odoo_api_key"])]
    odoo_url: Option<String>,
    #[arg(long, env = "TALLY_ODOO_DB")]
    odoo_db: Option<String>,
    #[arg(long, env = "TALLY_ODOO_USER", default_value = "edge-sync")]
    odoo_user: String,
    #[arg(long, env = "TALLY_ODOO_API_KEY", hide_env_values = true)]
    odoo_api_key: Option<String>,
    /// Exit after the demo instead of serving the dashboard until Ctrl-C (the default when
    /// standard input is not a terminal).
    #[arg(long)]
    no_dashboard: bool,
}

const SKUS: [&str; 3] = ["CHAIR-OAK", "LAMP-BRASS", "DESK-PINE"];

const WAREHOUSE: &str = "WH";
const AGENT_ID: &str = "wh1-agent";
const SCANNER_TOKEN: &str = "demo-scanner-token-0123456789";
const ADMIN_TOKEN: &str = "demo-admin-token-0123456789";
/// The dashboard's read-only token.
const READ_TOKEN: &str = "demo-read-token-0123456789";
/// Units the shop is never offered of any SKU.
const BUFFER: i64 = 1;

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(error) = run(args).await {
        eprintln!("\ntally-demo failed: {error:#}");
        std::process::exit(1);
    }
}

fn step(text: &str) {
    println!("\n▶ {text}");
}

/// Builds the two binaries with the profile this demo was built with, and points the harness
/// at them.
fn build_binaries() -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe.parent().context("the demo's own directory")?.to_owned();
    tally_tests::build_binaries_into(&profile_dir)
}

fn workspace_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .context("the demo runs from a Cargo target directory")?;
    let dir = target.join("tally-demo");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The scanner feed; `delivery` is an open Odoo delivery (of 5 LAMP-BRASS) that three of the
/// picks name, as a WMS does when it picks a sales order.
fn feed(delivery: &str) -> Vec<Value> {
    let mut events = vec![
        json!({"id": "rcv-0001", "type": "receipt", "sku": "CHAIR-OAK", "qty": "40", "location": "WH/Stock", "reference": "vendor-asn-7", "device": "dock-1", "user": "sam"}),
        json!({"id": "rcv-0002", "type": "receipt", "sku": "LAMP-BRASS", "qty": "40", "location": "WH/Stock", "reference": "vendor-asn-7", "device": "dock-1", "user": "sam"}),
        json!({"id": "xfr-0001", "type": "transfer", "sku": "CHAIR-OAK", "qty": "10", "location": "WH/Stock", "to_location": "WH/Stock/Shelf 2", "device": "gun-3", "user": "ana"}),
        json!({"id": "adj-0001", "type": "adjustment", "sku": "LAMP-BRASS", "qty": "-1", "reason": "broken in handling", "device": "gun-3", "user": "ana"}),
        json!({"id": "cnt-0001", "type": "count", "sku": "DESK-PINE", "qty": "12", "location": "WH/Stock", "device": "gun-4", "user": "lee"}),
    ];
    for i in 1..=20 {
        events.push(json!({"id": format!("pick-{i:04}"), "type": "pick", "sku": if i % 2 == 0 { "CHAIR-OAK" } else { "LAMP-BRASS" }, "qty": "1", "location": "WH/Stock", "reference": format!("web-order-{}", 100 + i / 5), "device": "gun-3", "user": "ana"}));
    }
    for i in 1..=3 {
        events.push(json!({"id": format!("so-pick-{i:04}"), "type": "pick", "sku": "LAMP-BRASS", "qty": "1", "location": "WH/Stock", "reference": delivery, "device": "gun-3", "user": "ana"}));
    }
    events
}

/// The deliveries of an order (`origin`): each picking's name, state and quantity (shipped
/// when done, still to ship otherwise).
async fn deliveries(odoo: &OdooClient, origin: &str) -> anyhow::Result<Vec<(String, String, f64)>> {
    let moves = odoo
        .search_read(
            "stock.move",
            json!([["picking_id.origin", "=", origin]]),
            &["picking_id", "state", "quantity", "product_uom_qty"],
            None,
        )
        .await?;
    Ok(moves
        .iter()
        .map(|m| {
            let state = m["state"].as_str().unwrap_or_default().to_owned();
            let field = if state == "done" {
                "quantity"
            } else {
                "product_uom_qty"
            };
            (
                m["picking_id"][1].as_str().unwrap_or_default().to_owned(),
                state,
                m[field].as_f64().unwrap_or(0.0),
            )
        })
        .collect())
}

/// Odoo's on-hand quantity of each demo SKU in warehouse WH.
async fn odoo_stock(odoo: &OdooClient) -> anyhow::Result<Vec<(String, f64)>> {
    let wh = odoo
        .warehouses(&["WH".into()])
        .await?
        .into_iter()
        .next()
        .context("Odoo has no warehouse WH")?;
    let rows = odoo
        .search_read(
            "product.product",
            json!([["default_code", "in", SKUS]]),
            &["default_code", "qty_available"],
            Some(json!({"warehouse": wh.id})),
        )
        .await?;
    Ok(SKUS
        .iter()
        .map(|sku| {
            let qty = rows
                .iter()
                .find(|r| r["default_code"] == *sku)
                .and_then(|r| r["qty_available"].as_f64())
                .unwrap_or(0.0);
            ((*sku).to_owned(), qty + 0.0)
        })
        .collect())
}

async fn run(args: Args) -> anyhow::Result<()> {
    step("Building tally-agent and tally-central");
    build_binaries()?;
    let dir = workspace_dir()?;
    println!("  working directory: {}", dir.display());

    // Keeps the simulator alive for the whole demo.
    let mut _simulator = None;
    let odoo_config = match &args.odoo_url {
        Some(url) => {
            step(&format!("Using the real Odoo at {url}"));
            OdooConfig {
                url: url.clone(),
                db: args.odoo_db.clone().context("--odoo-db")?,
                login: args.odoo_user.clone(),
                api_key: Secret::new(args.odoo_api_key.clone().context("--odoo-api-key")?),
                call_timeout: Duration::from_secs(300),
                api: Default::default(),
            }
        }
        None => {
            step(
                "Starting the Odoo simulator (an in-memory Odoo 17 speaking JSON-RPC — not a real Odoo)",
            );
            let sim = OdooSim::start(SimConfig::new(Version::V17)).await?;
            for sku in SKUS {
                sim.add_product(sku, Tracking::None)?;
            }
            sim.add_location("WH/Stock", "Shelf 2")?;
            println!(
                "  {} (database {}, user {})",
                sim.url(),
                sim.db(),
                sim.login()
            );
            let config = OdooConfig {
                url: sim.url(),
                db: sim.db().to_owned(),
                login: sim.login().to_owned(),
                api_key: Secret::new(sim.api_key()),
                call_timeout: Duration::from_secs(60),
                api: Default::default(),
            };
            _simulator = Some(sim);
            config
        }
    };
    let odoo = OdooClient::connect(&odoo_config)
        .await
        .context("cannot reach Odoo")?;
    let stock_before = odoo_stock(&odoo).await?;
    println!(
        "  Odoo {} — on hand in WH before: {}",
        odoo.major_version(),
        show(&stock_before)
    );

    step(
        "Starting a Shopify shop (a local fake of Shopify's Admin GraphQL API) as a sales channel",
    );
    let shop = ShopifyFake::start(FakeConfig::default()).await?;
    shop.add_location("Main");
    for sku in SKUS {
        shop.add_variant(sku);
    }
    let config = channel_config(&dir, &shop)?;
    println!(
        "  {} — channel \"shop\" in {}: warehouse {WAREHOUSE}, buffer {BUFFER}",
        shop.url(),
        config.display()
    );

    step("Making a test CA and central's certificate (tally-central gen-cert)");
    let tls = gen_cert(&dir.join("tls")).await?;
    println!("  {}", tls.ca.display());

    step("Registering the warehouse's agent at central (tally-central agent add)");
    let central_dir = dir.join("central");
    let token = add_agent_offline(&central_dir, ADMIN_TOKEN, AGENT_ID, WAREHOUSE).await?;
    println!(
        "  agent {AGENT_ID} for warehouse {WAREHOUSE}: token {}…",
        &token[..12]
    );

    step("Starting tally-central (agents connect over TLS; it merges into Odoo)");
    let central = central_with_odoo(&central_dir, &tls, &odoo_config, &config)
        .spawn()
        .await?;
    // The warehouse reaches central through a relay the demo can cut, like a WAN link.
    let link = Proxy::start(central.sync_addr()).await?;
    println!(
        "  central on {}, admin API on {}",
        central.sync_addr(),
        central.admin_url()
    );

    step("Starting tally-agent at the warehouse, linked to central");
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
    println!("  scanners post to {}/v1/events", agent.base_url());

    step("Scanners post a morning's feed: receipts, a transfer, an adjustment, a count, picks");
    let order = format!("tally-demo order {:08x}", rand::random::<u32>());
    let (_, delivery_name) =
        open_picking(&odoo, Direction::Delivery, "LAMP-BRASS", 5.0, &order).await?;
    println!(
        "  Odoo has an open delivery {delivery_name} of 5 LAMP-BRASS (a sales order); three picks name it"
    );
    let events = feed(&delivery_name);
    let (first, rest) = events.split_at(5);
    let answer = scanner.post_events(&json!({ "events": first })).await?;
    println!(
        "  batch of {} → {} (stored durably before the answer)",
        first.len(),
        answer.status
    );
    for event in rest {
        let answer = scanner.post_events(event).await?;
        ensure!(
            answer.status == 201,
            "unexpected answer {}: {}",
            answer.status,
            answer.body
        );
    }
    println!("  {} picks → 201 each", rest.len());
    let retry = scanner.post_events(&rest[0]).await?;
    println!(
        "  a scanner retries pick-0001 after a timeout → {} duplicate={} seq={}",
        retry.status, retry.body["accepted"][0]["duplicate"], retry.body["accepted"][0]["seq"]
    );
    let bad = scanner
        .post_events(&json!({"type": "pick", "sku": "CHAIR-OAK", "qty": "-3"}))
        .await?;
    println!(
        "  a malformed event → {} {}",
        bad.status, bad.body["error"]["message"]
    );

    let status = wait_synced(&scanner, Duration::from_secs(60)).await?;
    println!(
        "  synced: central acknowledged {} of {} events",
        status["acked_seq"], status["last_seq"]
    );

    step("Central goes down hard (kill -9) while the warehouse keeps working");
    link.stall();
    central.kill9().await?;
    for i in 1..=15 {
        let event = json!({"id": format!("outage-{i:04}"), "type": "pick", "sku": "LAMP-BRASS", "qty": "1", "location": "WH/Stock", "device": "gun-5", "user": "kim"});
        let answer = scanner.post_events(&event).await?;
        ensure!(
            answer.status == 201,
            "the agent refused an event during the outage: {}",
            answer.body
        );
    }
    let status = scanner.status().await?;
    println!(
        "  15 more picks accepted offline; pending at the agent: {}, connected: {}",
        status["pending"], status["connected"]
    );

    step("Central comes back; the agent resumes from what central has stored");
    let central = central_with_odoo(&central_dir, &tls, &odoo_config, &config)
        .spawn()
        .await?;
    link.retarget(central.sync_addr());
    link.unblock();
    let status = wait_synced(&scanner, Duration::from_secs(90)).await?;
    println!(
        "  synced again: acked {} of {}",
        status["acked_seq"], status["last_seq"]
    );

    step("What central holds");
    let admin = central.admin();
    let agent_view = admin.agent(AGENT_ID).await?;
    println!(
        "  agent {AGENT_ID}: connected={} stored_seq={} lag_events={}",
        agent_view["connected"], agent_view["stored_seq"], agent_view["lag_events"]
    );
    let log_id = status["log_id"].as_str().context("log_id")?;
    let journal = admin.journal(AGENT_ID, log_id).await?;
    let (_, agent_log) = scanner.read_all_events().await?;
    let ids: std::collections::HashSet<&str> =
        journal.iter().filter_map(|e| e["id"].as_str()).collect();
    ensure!(
        journal.len() == agent_log.len() && ids.len() == journal.len(),
        "journal {} events, agent log {}",
        journal.len(),
        agent_log.len()
    );
    println!(
        "  journal: {} events, each exactly once, in the agent's order:",
        journal.len()
    );
    for e in journal
        .iter()
        .take(6)
        .chain(journal.iter().skip(journal.len().saturating_sub(3)))
    {
        println!(
            "    seq {:>3}  {:<10} {:<11} {:>4}  {}",
            e["seq"].as_u64().unwrap_or(0),
            e["type"].as_str().unwrap_or(""),
            e["sku"].as_str().unwrap_or(""),
            e["qty"].as_str().unwrap_or(""),
            e["id"].as_str().unwrap_or("")
        );
    }

    step("What Odoo holds: the events merged as a few coalesced pickings, applied exactly once");
    let merged = wait_until(
        "central to merge every journaled event into Odoo",
        Duration::from_secs(120),
        || async {
            let view = admin.agent(AGENT_ID).await?;
            let log = view["logs"]
                .as_array()
                .and_then(|l| l.first())
                .cloned()
                .unwrap_or_default();
            Ok(
                if log["resolved_seq"] == log["stored_seq"] && log["stored_seq"].as_u64().is_some()
                {
                    std::ops::ControlFlow::Break(log)
                } else {
                    std::ops::ControlFlow::Continue(log.to_string())
                },
            )
        },
    )
    .await?;
    println!(
        "  resolved through seq {}: {} merged, {} parked",
        merged["resolved_seq"], merged["merged_events"], merged["parked_events"]
    );
    let stock_after = odoo_stock(&odoo).await?;
    println!("  on hand in WH after:  {}", show(&stock_after));
    for ((sku, before), (_, after)) in stock_before.iter().zip(&stock_after) {
        println!(
            "    {sku:<11} {before:>6} → {after:>6}  ({:+})",
            after - before
        );
    }
    println!("  the sales order's deliveries (3 of its 5 LAMP-BRASS were scanned):");
    for (name, state, qty) in deliveries(&odoo, &order).await? {
        println!("    {name:<14} {state:<10} {qty}");
    }
    let parked: Value = reqwest::Client::new()
        .get(format!("{}/v1/dead-letters", central.admin_url()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .json()
        .await?;
    for letter in parked["dead_letters"].as_array().into_iter().flatten() {
        println!(
            "  parked: seq {} {} — {}",
            letter["seq"],
            letter["sku"].as_str().unwrap_or(""),
            letter["message"].as_str().unwrap_or("")
        );
    }

    step("What the Shopify shop offers: Odoo's free stock less the buffer, pushed by central");
    show_channel(&admin, &shop).await?;

    step("Stopping both (SIGTERM: in-flight work finishes, exit 0)");
    let agent_exit = agent.terminate().await?;
    let central_exit = central.terminate().await?;
    if !agent_exit.success() || !central_exit.success() {
        bail!("unclean exit: agent {agent_exit}, central {central_exit}");
    }
    println!("  done. Logs and data are in {}", dir.display());
    if args.no_dashboard {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        // Run from a script or CI: nobody is there to open the page or press Ctrl-C.
        println!("  (not run from a terminal: the dashboard is not served; run it in one to look)");
        return Ok(());
    }

    step("Central and the agent again, for a look at the dashboard");
    let central = central_with_odoo(&central_dir, &tls, &odoo_config, &config)
        .spawn()
        .await?;
    let agent = AgentProcess::builder(dir.join("agent"))
        .token(SCANNER_TOKEN)
        .warehouse(WAREHOUSE)
        .agent_id(AGENT_ID)
        .central(
            &format!("wss://localhost:{}/v1/sync", central.sync_addr().port()),
            &token,
            Some(&tls.ca),
        )
        .spawn()
        .await?;
    println!("  press Ctrl-C to stop central, the agent and the simulator");
    println!(
        "\n  dashboard: {}/  — sign in with the read-only token {READ_TOKEN}\n  (the admin token {ADMIN_TOKEN} may also retry and discard parked events)",
        central.admin_url()
    );
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    agent.terminate().await?;
    central.terminate().await?;
    Ok(())
}

fn show(stock: &[(String, f64)]) -> String {
    stock
        .iter()
        .map(|(sku, qty)| format!("{sku} {qty}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn central_with_odoo(
    dir: &Path,
    tls: &tally_tests::TlsFiles,
    odoo: &OdooConfig,
    config: &Path,
) -> tally_tests::CentralBuilder {
    CentralProcess::builder(dir)
        .admin_token(ADMIN_TOKEN)
        .arg("--read-token")
        .arg(READ_TOKEN)
        .tls(tls)
        .odoo(odoo)
        .arg("--config")
        .arg(config)
}

/// Central's configuration file: one Shopify channel fed by warehouse WH (its access token in a
/// 0600 file, as a deployment keeps it).
fn channel_config(dir: &Path, shop: &ShopifyFake) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let token = dir.join("shopify-token");
    std::fs::write(&token, "shpat_test\n")?;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600))?;
    let config = dir.join("central.toml");
    std::fs::write(
        &config,
        format!(
            "[[channels]]\nname = \"shop\"\nkind = \"shopify\"\nurl = \"{}\"\nlocation = \"Main\"\nwarehouses = [\"{WAREHOUSE}\"]\nbuffer = {BUFFER}\nsecret_file = \"{}\"\n",
            shop.url(),
            token.display()
        ),
    )?;
    Ok(config)
}

/// Waits until the shop shows Odoo's free stock (as central read it) less the buffer for every
/// SKU, and prints both side by side with the channel's figures.
async fn show_channel(admin: &tally_tests::AdminClient, shop: &ShopifyFake) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let get = |path: String| {
        let request = http
            .get(format!("{}{path}", admin.base_url()))
            .bearer_auth(admin.token());
        async move { anyhow::Ok(request.send().await?.json::<Value>().await?) }
    };
    let rows = wait_until(
        "the shop to show Odoo's free stock less the buffer",
        Duration::from_secs(60),
        || async {
            let mut rows = Vec::new();
            for sku in SKUS {
                let body = get(format!("/v1/availability?sku={sku}&warehouse={WAREHOUSE}")).await?;
                let row = body["availability"][0].clone();
                let free: f64 = row["free"].as_str().unwrap_or("0").parse()?;
                let offer = ((free.floor() as i64) - BUFFER).max(0);
                let level = shop.level(sku, "Main");
                if level.map(|l| l.0) != Some(offer) {
                    return Ok(std::ops::ControlFlow::Continue(format!(
                        "{sku}: Odoo free {free}, shop {level:?}"
                    )));
                }
                rows.push((sku, row, level.unwrap_or_default()));
            }
            Ok(std::ops::ControlFlow::Break(rows))
        },
    )
    .await?;
    println!("    SKU          Odoo on hand  reserved  free  →  Shopify on hand  available");
    for (sku, row, (on_hand, _, available)) in rows {
        println!(
            "    {sku:<11} {:>13} {:>9} {:>5}  →  {on_hand:>15} {available:>10}",
            row["on_hand"].as_str().unwrap_or(""),
            row["reserved"].as_str().unwrap_or(""),
            row["free"].as_str().unwrap_or("")
        );
    }
    let status = get("/v1/channels/shop".to_owned()).await?;
    let c = &status["channel"];
    println!(
        "  channel shop: {} calls to Shopify, {} pending, last success {}",
        c["calls"], c["pending"], c["last_success"]
    );
    Ok(())
}

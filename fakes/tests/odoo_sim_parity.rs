//! Parity of the simulator with real Odoo 17, 18 and 19 servers: a script of the calls Tally
//! makes (`odoo_parity/script.rs`, `odoo_parity/flows.rs`) — lookups, its pickings and their
//! refusals, lots, quants and pending counts, what a count reads, fills of open pickings and
//! their backorders, contract errors — runs against the simulator of each version, and every
//! answer is compared with what a real server of that version answered to the same script,
//! recorded in `fakes/transcripts/odoo<version>.json`: HTTP status, error class and first line
//! of its message (digits aside), the JSON shape of a result, and by value the facts the
//! script derives (states, quantities moved, reservations, backorders' demand). 17 and 18 run
//! over JSON-RPC; 19 over JSON-2 and again over JSON-RPC.
//!
//! To record again against a real server (set up as docs/odoo.md#live-servers says):
//! `TALLY_ODOO_RECORD=1 TALLY_ODOO_URL=… TALLY_ODOO_DB=… TALLY_ODOO_USER=… TALLY_ODOO_API_KEY=…
//! cargo test -p tally-fakes --test odoo_sim_parity`; only the test of the server's version
//! records, the others replay. Recording moves stock of LAMP-BRASS and LOT-WINE in that
//! database (and leaves its pickings, lots and cancelled backorders behind): not while another
//! test checks that database's stock.

mod odoo_parity;

use std::path::PathBuf;

use anyhow::Context;
use odoo_parity::{Run, Session, Transport, differences, script};
use serde_json::{Value, json};
use tally_fakes::odoo_sim::{ADMIN_UID, OdooSim, SimConfig, Tracking, Version};

fn transports(version: Version) -> &'static [Transport] {
    match version {
        Version::V19 => &[Transport::Json2, Transport::Jsonrpc],
        _ => &[Transport::Jsonrpc],
    }
}

fn recording(version: Version) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("transcripts/odoo{}.json", version.major()))
}

/// The live server's major version, when recording is asked for.
async fn live_major() -> anyhow::Result<Option<u64>> {
    if std::env::var_os("TALLY_ODOO_RECORD").is_none() {
        return Ok(None);
    }
    let url = std::env::var("TALLY_ODOO_URL").context("TALLY_ODOO_URL is needed")?;
    let info: Value = reqwest::Client::new()
        .post(format!("{url}/web/webclient/version_info"))
        .json(&json!({"jsonrpc": "2.0", "method": "call", "params": {}, "id": 0}))
        .send()
        .await?
        .json()
        .await?;
    Ok(info["result"]["server_version_info"][0].as_u64())
}

/// Runs the script against the live server and writes the recording.
async fn record(version: Version) -> anyhow::Result<()> {
    let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is needed"));
    let (url, db, user, key) = (
        var("TALLY_ODOO_URL")?,
        var("TALLY_ODOO_DB")?,
        var("TALLY_ODOO_USER")?,
        var("TALLY_ODOO_API_KEY")?,
    );
    let mut runs = Vec::new();
    for transport in transports(version) {
        let mut live = Session::new(&url, &db, &user, &key, *transport);
        script::run(&mut live).await?;
        // Tracebacks name the server's files: keep their last line only.
        for answer in &mut live.answers {
            for pointer in ["/debug", "/error/data/debug"] {
                if let Some(debug) = answer.body.pointer_mut(pointer)
                    && let Some(text) = debug.as_str()
                {
                    let last = text.trim_end().lines().last().unwrap_or_default();
                    *debug = json!(last);
                }
            }
        }
        runs.push(Run {
            transport: *transport,
            answers: live.answers,
        });
    }
    let text = serde_json::to_string_pretty(&runs)? + "\n";
    anyhow::ensure!(!text.contains(&key), "the recording holds the API key");
    std::fs::write(recording(version), text)?;
    let answers: usize = runs.iter().map(|r| r.answers.len()).sum();
    println!(
        "recorded {answers} answers of Odoo {} into {}",
        version.major(),
        recording(version).display()
    );
    Ok(())
}

/// A simulator with what the lab's databases have: the products and the shelf the script
/// uses, named as there, stock for the open deliveries to reserve, and an older lot of wine
/// (which 19 takes for a delivery that names none).
async fn simulator(version: Version) -> anyhow::Result<OdooSim> {
    let sim = OdooSim::start(SimConfig::new(version)).await?;
    for (sku, name, tracking) in [
        (script::LAMP, "Brass Lamp", Tracking::None),
        (script::WINE, "Wine (lot tracked)", Tracking::Lot),
    ] {
        let id = sim.add_product(sku, tracking)?;
        sim.execute(
            ADMIN_UID,
            "product.product",
            "write",
            json!([[id], {"name": name}]),
            json!({}),
        )
        .map_err(|e| anyhow::anyhow!("renaming {sku}: {}", e.message()))?;
    }
    sim.add_location("WH/Stock", "Shelf 2")?;
    sim.set_on_hand(script::LAMP, "WH/Stock", None, 50.0)?;
    sim.set_on_hand(script::LAMP, script::SHELF, None, 10.0)?;
    sim.set_on_hand(script::WINE, "WH/Stock", Some("WINE-2024-A"), 24.0)?;
    Ok(sim)
}

async fn parity(version: Version) -> anyhow::Result<()> {
    let major = live_major().await?;
    if major == Some(u64::from(version.major())) {
        return record(version).await;
    }
    let text = std::fs::read_to_string(recording(version))
        .with_context(|| format!("reading {}", recording(version).display()))?;
    let recorded: Vec<Run> = serde_json::from_str(&text)?;
    let mut report = Vec::new();
    for transport in transports(version) {
        let run = recorded
            .iter()
            .find(|r| r.transport == *transport)
            .with_context(|| format!("no {transport:?} run recorded for {}", version.major()))?;
        let sim = simulator(version).await?;
        let mut simulated =
            Session::new(&sim.url(), sim.db(), sim.login(), sim.api_key(), *transport);
        let outcome = script::run(&mut simulated).await;
        for line in differences(&run.answers, &simulated.answers) {
            report.push(format!("{transport:?}: {line}"));
        }
        if let Err(e) = outcome {
            report.push(format!("{transport:?}: the script stopped: {e:#}"));
        }
        println!(
            "Odoo {} over {transport:?}: {} answers compared",
            version.major(),
            run.answers.len()
        );
    }
    anyhow::ensure!(
        report.is_empty(),
        "the simulator's {} differs from the recorded server:\n{}",
        version.major(),
        report.join("\n")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odoo_17_answers_as_the_recorded_server_does() -> anyhow::Result<()> {
    parity(Version::V17).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odoo_18_answers_as_the_recorded_server_does() -> anyhow::Result<()> {
    parity(Version::V18).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odoo_19_answers_as_the_recorded_server_does() -> anyhow::Result<()> {
    parity(Version::V19).await
}

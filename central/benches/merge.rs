//! Merge benchmark: prints its figures; `docs/BENCHMARKS.md` records them.
//!
//! `cargo bench -p tally-central --bench merge`: 10,000 events over 200 SKUs in 2 warehouses,
//! merged into the Odoo simulator by Tally's engine and, in the same run, by a naive integration
//! that sends one picking (create + validate) per event. The simulator's latency model is
//! docs/odoo.md#timings's: 300 ms per call + 35 ms per move line (`TALLY_BENCH_LATENCY_SCALE`
//! scales it). The naive side costs the same for every event, and all 10,000 would take about two
//! hours, so it runs on the first `TALLY_BENCH_NAIVE_EVENTS` (default 300) and is extrapolated; the
//! output says so. Both end states are checked against the expected stock.
//!
//! Then the count scenario ([`counts`]): one warehouse, 200 SKUs over two locations, 10,000
//! receipts and picks merged once as they are and once with 3 % of them replaced by counts of
//! the same stocks (a cycle-counting day); both wall times and their ratio (target ≤ 1.5×).
//! `TALLY_BENCH_SCENARIO=naive` or `counts` runs only one of the two.
//!
//! With `TALLY_ODOO_URL` (and `_DB`, `_USER`, `_API_KEY`) set to a real Odoo 19 it compares the
//! two transports, JSON-RPC and JSON-2, on the same merge instead (see [`transports`]); with
//! `TALLY_BENCH_SCENARIO=counts` as well it runs the count scenario against that Odoo (which
//! needs the storable products `BULK-0000`… `BULK-0199` and `WH/Stock/Shelf 2`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tally_central::merge::apply::{RetryPolicy, apply_once};
use tally_central::merge::engine::Engine;
use tally_central::merge::plan::{Line, PickingKind, PlannedPicking};
use tally_central::odoo::{OdooClient, OdooConfig};
use tally_central::store::Store;
use tally_fakes::odoo_sim::{Latency, OdooSim, SimConfig, Version};
use tally_protocol::*;

const EVENTS: usize = 10_000;
const SKUS: usize = 200;
const WAREHOUSES: [&str; 2] = ["WH", "WH2"];

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

fn latency(scale: f64) -> Latency {
    let lab = Latency::lab();
    Latency {
        per_call: lab.per_call.mul_f64(scale),
        per_line: lab.per_line.mul_f64(scale),
    }
}

async fn sim(latency: Latency) -> anyhow::Result<(OdooSim, OdooClient)> {
    let mut config = SimConfig::new(Version::V17);
    config.extra_products = SKUS;
    config.latency = latency;
    let sim = OdooSim::start(config).await?;
    let client = OdooClient::connect(&OdooConfig {
        url: sim.url(),
        db: sim.db().to_owned(),
        login: sim.login().to_owned(),
        api_key: Secret::new(sim.api_key()),
        call_timeout: Duration::from_secs(600),
        api: Default::default(),
    })
    .await?;
    Ok((sim, client))
}

/// The feed: (warehouse index, kind, sku, qty), deterministic.
fn feed() -> Vec<(usize, EventKind, String, i64)> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..EVENTS)
        .map(|_| {
            let r = next();
            let wh = (r % 2) as usize;
            let kind = if (r >> 8) % 10 < 4 {
                EventKind::Receipt
            } else {
                EventKind::Pick
            };
            let sku = format!("BULK-{:04}", (r >> 16) % SKUS as u64);
            (wh, kind, sku, ((r >> 32) % 5 + 1) as i64)
        })
        .collect()
}

fn expected(feed: &[(usize, EventKind, String, i64)]) -> HashMap<(usize, String), i64> {
    let mut out = HashMap::new();
    for (wh, kind, sku, qty) in feed {
        let signed = if *kind == EventKind::Receipt {
            *qty
        } else {
            -qty
        };
        *out.entry((*wh, sku.clone())).or_insert(0) += signed;
    }
    out
}

fn check(sim: &OdooSim, expected: &HashMap<(usize, String), i64>) -> anyhow::Result<()> {
    for ((wh, sku), qty) in expected {
        let got = sim.on_hand_in_warehouse(sku, WAREHOUSES[*wh]);
        anyhow::ensure!(
            (got - *qty as f64).abs() < 1e-9,
            "{sku} in {}: {got}, expected {qty}",
            WAREHOUSES[*wh]
        );
    }
    Ok(())
}

/// Tally: journal the feed for two agents (one per warehouse) and merge it.
async fn tally(
    latency: Latency,
    feed: &[(usize, EventKind, String, i64)],
) -> anyhow::Result<(Duration, u64, OdooSim)> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let (journal, _thread) = tally_central::store::journal::spawn(store.clone())?;
    for (i, wh) in WAREHOUSES.iter().enumerate() {
        store.add_agent(&format!("agent-{i}"), wh)?;
        let events: Vec<LoggedEvent> = feed
            .iter()
            .filter(|e| e.0 == i)
            .enumerate()
            .map(|(n, (_, kind, sku, qty))| LoggedEvent {
                seq: n as u64 + 1,
                received_at: Timestamp::now(),
                event: Event::new(*kind, sku.clone(), Qty::from_units(*qty)),
            })
            .collect();
        for chunk in events.chunks(1000) {
            journal
                .append(
                    Arc::from(format!("agent-{i}")),
                    LogId([i as u8 + 1; 16]),
                    chunk.to_vec(),
                )
                .await?;
        }
    }
    let (sim, client) = sim(latency).await?;
    let calls_before = sim.total_calls();
    let mut engine = Engine::new(store, client, RetryPolicy::default());
    let started = Instant::now();
    let merged = engine.merge_all().await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        merged == feed.len() as u64,
        "merged {merged} of {}",
        feed.len()
    );
    Ok((elapsed, sim.total_calls() - calls_before, sim))
}

/// The naive integration: one picking per event, created and validated as the event comes.
async fn naive(
    latency: Latency,
    feed: &[(usize, EventKind, String, i64)],
) -> anyhow::Result<(Duration, u64, OdooSim)> {
    let (sim, client) = sim(latency).await?;
    let warehouses = client.warehouses(&WAREHOUSES.map(str::to_owned)).await?;
    let virtuals = client.virtual_locations().await?;
    let skus: Vec<String> = (0..SKUS).map(|i| format!("BULK-{i:04}")).collect();
    let products: HashMap<String, (i64, i64)> = client
        .products(&skus)
        .await?
        .into_iter()
        .map(|p| (p.sku, (p.id, p.uom_id)))
        .collect();
    let calls_before = sim.total_calls();
    let started = Instant::now();
    for (n, (wh, kind, sku, qty)) in feed.iter().enumerate() {
        let w = warehouses
            .iter()
            .find(|w| w.code == WAREHOUSES[*wh])
            .expect("seeded warehouse");
        let (product, uom) = products[sku];
        let (picking_type, from, to) = match kind {
            EventKind::Receipt => (w.receipt_type, virtuals.vendors, w.stock_location),
            _ => (w.delivery_type, w.stock_location, virtuals.customers),
        };
        let picking = PlannedPicking {
            key: format!("naive-{n}"),
            kind: if *kind == EventKind::Receipt {
                PickingKind::Receipt
            } else {
                PickingKind::Delivery
            },
            picking_type,
            from,
            to,
            lines: vec![Line {
                product,
                uom,
                qty: Qty::from_units(*qty),
                from,
                to,
                lot: None,
                create_lot: false,
                seqs: vec![n as u64],
            }],
        };
        apply_once(&client, &picking, RetryPolicy::default()).await?;
    }
    Ok((started.elapsed(), sim.total_calls() - calls_before, sim))
}

/// JSON-RPC against JSON-2 on a real Odoo 19 (`TALLY_ODOO_URL`, `_DB`, `_USER`, `_API_KEY`):
/// the same feed over the lab's SKUs merged in the same small runs by two engines, one per
/// transport, their runs interleaved so that both see the server in the same state. Each
/// run is one merge pass (a picking per kind: create + validate), so the figure is the
/// transport's cost per call, not Odoo's per line. The stock moved is checked: each engine
/// applies the feed once.
async fn transports(url: String) -> anyhow::Result<()> {
    use tally_central::odoo::Api;
    let var = |name: &str| std::env::var(name).map_err(|_| anyhow::anyhow!("{name} is not set"));
    let config = |api| -> anyhow::Result<OdooConfig> {
        Ok(OdooConfig {
            url: url.clone(),
            db: var("TALLY_ODOO_DB")?,
            login: var("TALLY_ODOO_USER")?,
            api_key: Secret::new(var("TALLY_ODOO_API_KEY")?),
            call_timeout: Duration::from_secs(300),
            api,
        })
    };
    let runs: usize = std::env::var("TALLY_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let per_run = 30;
    let skus = ["LAMP-BRASS", "CHAIR-OAK", "DESK-PINE"];
    let probe = OdooClient::connect(&config(Api::Json2)?).await?;
    println!(
        "tally merge benchmark, transports: Odoo {} at {url}, {runs} runs of {per_run} events over {skus:?} in WH",
        probe.major_version()
    );
    let wh = probe
        .warehouses(&["WH".to_owned()])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("Odoo has no warehouse WH"))?;
    let products = probe.products(&skus.map(str::to_owned)).await?;
    let on_hand = async |client: &OdooClient| -> anyhow::Result<f64> {
        let mut total = 0.0;
        for p in &products {
            total += client.quantity_at(p.id, wh.stock_location, None).await?;
        }
        Ok(total)
    };
    let before = on_hand(&probe).await?;
    let mut lanes = Vec::new();
    for (i, api) in [Api::JsonRpc, Api::Json2].into_iter().enumerate() {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let (journal, thread) = tally_central::store::journal::spawn(store.clone())?;
        let agent = format!("bench-{}", api.as_str());
        store.add_agent(&agent, "WH")?;
        let client = OdooClient::connect(&config(api)?).await?;
        let log_id = LogId(rand_bytes(i));
        let engine = Engine::new(store, client, RetryPolicy::default());
        lanes.push((
            api,
            dir,
            journal,
            thread,
            agent,
            log_id,
            engine,
            Duration::ZERO,
        ));
    }
    let mut net = 0i64;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for run in 0..runs {
        let events: Vec<Event> = (0..per_run)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let qty = (state >> 40) % 3 + 1;
                let kind = if state % 10 < 6 {
                    EventKind::Receipt
                } else {
                    EventKind::Pick
                };
                net += if kind == EventKind::Receipt {
                    qty as i64
                } else {
                    -(qty as i64)
                };
                Event::new(
                    kind,
                    skus[(state >> 20) as usize % skus.len()],
                    Qty::from_units(qty as i64),
                )
            })
            .collect();
        for (_, _, journal, _, agent, log_id, engine, spent) in &mut lanes {
            let logged = events
                .iter()
                .enumerate()
                .map(|(n, e)| LoggedEvent {
                    seq: (run * per_run + n) as u64 + 1,
                    received_at: Timestamp::now(),
                    event: e.clone(),
                })
                .collect();
            journal
                .append(Arc::from(agent.as_str()), *log_id, logged)
                .await?;
            let started = Instant::now();
            let merged = engine.merge_all().await?;
            *spent += started.elapsed();
            anyhow::ensure!(merged == per_run as u64, "merged {merged} of {per_run}");
        }
    }
    let after = on_hand(&probe).await?;
    anyhow::ensure!(
        (after - before - 2.0 * net as f64).abs() < 1e-6,
        "on hand moved by {}, expected {} (the feed once per transport)",
        after - before,
        2 * net
    );
    println!();
    println!("| transport | runs | events | wall time in merge passes | per pass |");
    println!("|---|---|---|---|---|");
    for (api, _, _, _, _, _, _, spent) in &lanes {
        println!(
            "| {} | {runs} | {} | {:.2} s | {:.1} ms |",
            api.as_str(),
            runs * per_run,
            spent.as_secs_f64(),
            spent.as_secs_f64() * 1000.0 / runs as f64
        );
    }
    println!(
        "on hand of the SKUs in WH/Stock moved by {:+} = the feed once per transport",
        after - before
    );
    Ok(())
}

/// A log id per lane that differs between runs of the benchmark (plans are keyed by it).
fn rand_bytes(lane: usize) -> [u8; 16] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut id = nanos.to_le_bytes();
    id[15] = lane as u8;
    id
}

/// How many SKUs, locations and events the count scenario moves, and the share of counts.
const COUNT_SKUS: usize = 200;
const COUNT_LOCATIONS: [&str; 2] = ["WH/Stock", "WH/Stock/Shelf 2"];
const COUNT_EVENTS: usize = 10_000;
const COUNT_SHARE: f64 = 0.03;

/// One event of the count scenario: (kind, sku, location, qty).
type Scanned = (EventKind, String, &'static str, i64);

/// The count scenario's feed, deterministic: receipts and picks of every (SKU, location), and
/// with `counts`, the same feed with 3 % of its events replaced by counts of their own stock.
fn count_feed(counts: bool) -> Vec<Scanned> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..COUNT_EVENTS)
        .map(|_| {
            let r = next();
            let sku = format!("BULK-{:04}", r % COUNT_SKUS as u64);
            let location = COUNT_LOCATIONS[((r >> 12) % 2) as usize];
            let qty = ((r >> 20) % 5 + 1) as i64;
            let kind = if (r >> 28) % 10 < 4 {
                EventKind::Receipt
            } else {
                EventKind::Pick
            };
            let counted = (r >> 36) % 10_000 < (COUNT_SHARE * 10_000.0) as u64;
            if counts && counted {
                (EventKind::Count, sku, location, ((r >> 44) % 60) as i64)
            } else {
                (kind, sku, location, qty)
            }
        })
        .collect()
}

/// Each stock's quantity after `feed`, read one event at a time from `start`.
fn count_expected(
    feed: &[Scanned],
    start: &HashMap<(String, &'static str), i64>,
) -> HashMap<(String, &'static str), i64> {
    let mut out = start.clone();
    for (kind, sku, location, qty) in feed {
        let at = out.entry((sku.clone(), *location)).or_insert(0);
        match kind {
            EventKind::Receipt => *at += qty,
            EventKind::Pick => *at -= qty,
            _ => *at = *qty,
        }
    }
    out
}

/// What each stock of the scenario holds in Odoo, by SKU and location name.
async fn count_quantities(
    client: &OdooClient,
) -> anyhow::Result<HashMap<(String, &'static str), i64>> {
    let skus: Vec<String> = (0..COUNT_SKUS).map(|i| format!("BULK-{i:04}")).collect();
    let products = client.products(&skus).await?;
    anyhow::ensure!(
        products.len() == COUNT_SKUS,
        "Odoo has {} of the products BULK-0000…BULK-{:04}",
        products.len(),
        COUNT_SKUS - 1
    );
    let view = client
        .warehouses(&["WH".to_owned()])
        .await?
        .first()
        .ok_or_else(|| anyhow::anyhow!("Odoo has no warehouse WH"))?
        .view_location;
    let names: Vec<String> = COUNT_LOCATIONS.map(str::to_owned).to_vec();
    let locations = client.locations_by_name(&names, view).await?;
    anyhow::ensure!(
        locations.len() == 2,
        "Odoo lacks one of {COUNT_LOCATIONS:?}"
    );
    let ids: Vec<i64> = products.iter().map(|p| p.id).collect();
    let places: Vec<i64> = locations.values().copied().collect();
    // Nothing is dated after the year 9999: quants only.
    let (quants, _) = client
        .count_stock(&ids, &places, "9999-12-31 23:59:59", "tally-")
        .await?;
    let mut out = HashMap::new();
    for p in &products {
        for name in COUNT_LOCATIONS {
            let here = locations[name];
            let units: i64 = quants
                .iter()
                .filter(|q| q.product == p.id && q.location == here)
                .map(|q| q.qty.map(|q| q.micros()))
                .sum::<Option<i64>>()
                .ok_or_else(|| {
                    anyhow::anyhow!("a quantity of {} beyond what a float holds", p.sku)
                })?
                / 1_000_000;
            out.insert((p.sku.clone(), name), units);
        }
    }
    Ok(out)
}

/// Journals `feed` for one agent of WH and merges it into the Odoo at `config`; returns the
/// wall time, the Odoo calls (on the simulator) and the pickings made.
async fn merge_feed(
    config: &OdooConfig,
    sim: Option<&OdooSim>,
    feed: &[Scanned],
) -> anyhow::Result<(Duration, Option<u64>)> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let (journal, _thread) = tally_central::store::journal::spawn(store.clone())?;
    store.add_agent("agent-counts", "WH")?;
    let log_id = LogId(rand_bytes(9));
    let events: Vec<LoggedEvent> = feed
        .iter()
        .enumerate()
        .map(|(n, (kind, sku, location, qty))| {
            let mut event = Event::new(*kind, sku.clone(), Qty::from_units(*qty));
            event.location = Some((*location).to_owned());
            LoggedEvent {
                seq: n as u64 + 1,
                received_at: Timestamp::now(),
                event,
            }
        })
        .collect();
    for chunk in events.chunks(1000) {
        journal
            .append(Arc::from("agent-counts"), log_id, chunk.to_vec())
            .await?;
    }
    let client = OdooClient::connect(config).await?;
    let calls_before = sim.map(OdooSim::total_calls);
    let mut engine = Engine::new(store.clone(), client, RetryPolicy::default());
    let started = Instant::now();
    let merged = engine.merge_all().await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        merged == feed.len() as u64,
        "merged {merged} of {}",
        feed.len()
    );
    anyhow::ensure!(
        store.dead_letters()?.is_empty(),
        "events were parked: {:?}",
        store.dead_letters()?.first()
    );
    Ok((
        elapsed,
        sim.zip(calls_before)
            .map(|(s, before)| s.total_calls() - before),
    ))
}

/// The count scenario: the same feed without counts and with 3 % counts, each merged into a
/// fresh simulator (or, with `live`, both into that real Odoo one after the other), each end
/// state checked against the feed read one event at a time.
async fn counts(latency: Latency, live: Option<OdooConfig>) -> anyhow::Result<()> {
    println!();
    println!(
        "count scenario: {COUNT_EVENTS} events, {COUNT_SKUS} SKUs over {} locations in WH, one agent",
        COUNT_LOCATIONS.len()
    );
    let mut rows = Vec::new();
    for with_counts in [false, true] {
        let feed = count_feed(with_counts);
        let counted = feed.iter().filter(|e| e.0 == EventKind::Count).count();
        let (config, sim) = match &live {
            Some(config) => (config.clone(), None),
            None => {
                let mut sim_config = SimConfig::new(Version::V17);
                sim_config.extra_products = COUNT_SKUS;
                let sim = OdooSim::start(sim_config).await?;
                sim.add_location("WH/Stock", "Shelf 2")?;
                for i in 0..COUNT_SKUS {
                    for location in COUNT_LOCATIONS {
                        sim.set_on_hand(&format!("BULK-{i:04}"), location, None, 100.0)?;
                    }
                }
                sim.set_latency(latency);
                let config = OdooConfig {
                    url: sim.url(),
                    db: sim.db().to_owned(),
                    login: sim.login().to_owned(),
                    api_key: Secret::new(sim.api_key()),
                    call_timeout: Duration::from_secs(600),
                    api: Default::default(),
                };
                (config, Some(sim))
            }
        };
        let probe = OdooClient::connect(&config).await?;
        let start = count_quantities(&probe).await?;
        let (time, calls) = merge_feed(&config, sim.as_ref(), &feed).await?;
        let want = count_expected(&feed, &start);
        let got = count_quantities(&probe).await?;
        let wrong: Vec<_> = want
            .iter()
            .filter(|(key, qty)| got.get(*key) != Some(qty))
            .take(5)
            .collect();
        anyhow::ensure!(
            wrong.is_empty(),
            "stocks that do not read as the feed says (expected): {wrong:?}"
        );
        let pickings = sim.as_ref().map(|s| {
            s.pickings()
                .iter()
                .filter(|p| p.name.starts_with("tally-"))
                .count()
        });
        rows.push((counted, time, calls, pickings));
    }
    println!();
    println!("| feed | counts | Odoo calls | pickings | wall time |");
    println!("|---|---|---|---|---|");
    let show = |n: Option<u64>| n.map_or("–".to_owned(), |n| n.to_string());
    for (name, (counted, time, calls, pickings)) in ["receipts and picks", "the same, 3 % counts"]
        .iter()
        .zip(&rows)
    {
        println!(
            "| {name} | {counted} | {} | {} | {:.2} s |",
            show(*calls),
            show(pickings.map(|p| p as u64)),
            time.as_secs_f64()
        );
    }
    let ratio = rows[1].1.as_secs_f64() / rows[0].1.as_secs_f64();
    println!(
        "with counts / without: {ratio:.2}× (target ≤ 1.5×: {}); every stock reads as the feed says, one event at a time",
        pass(ratio <= 1.5)
    );
    Ok(())
}

async fn run() -> anyhow::Result<()> {
    let scenario = std::env::var("TALLY_BENCH_SCENARIO").unwrap_or_default();
    if let Ok(url) = std::env::var("TALLY_ODOO_URL") {
        if scenario == "counts" {
            let var =
                |name: &str| std::env::var(name).map_err(|_| anyhow::anyhow!("{name} is not set"));
            let config = OdooConfig {
                url,
                db: var("TALLY_ODOO_DB")?,
                login: var("TALLY_ODOO_USER")?,
                api_key: Secret::new(var("TALLY_ODOO_API_KEY")?),
                call_timeout: Duration::from_secs(600),
                api: Default::default(),
            };
            let probe = OdooClient::connect(&config).await?;
            println!(
                "tally merge benchmark, counts: Odoo {} at {} (database {})",
                probe.major_version(),
                config.url,
                config.db
            );
            return counts(Latency::default(), Some(config)).await;
        }
        return transports(url).await;
    }
    let scale: f64 = std::env::var("TALLY_BENCH_LATENCY_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let sample: usize = std::env::var("TALLY_BENCH_NAIVE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
        .clamp(1, EVENTS);
    let model = latency(scale);
    if scenario == "counts" {
        println!(
            "latency model: {:?} per call + {:?} per line (docs/odoo.md#timings × {scale})",
            model.per_call, model.per_line
        );
        return counts(model, None).await;
    }
    println!(
        "tally merge benchmark: {EVENTS} events, {SKUS} SKUs, {} warehouses",
        WAREHOUSES.len()
    );
    println!(
        "latency model: {:?} per call + {:?} per line (docs/odoo.md#timings × {scale})",
        model.per_call, model.per_line
    );
    let feed = feed();
    let want = expected(&feed);

    let (tally_time, tally_calls, tally_sim) = tally(model, &feed).await?;
    check(&tally_sim, &want)?;
    // The same merge against a simulator without latency: an upper bound of Tally's own time
    // (it includes the simulator's work too).
    let (own_time, _, _) = tally(Latency::default(), &feed).await?;
    let (sample_time, sample_calls, naive_sim) = naive(model, &feed[..sample]).await?;
    check(&naive_sim, &expected(&feed[..sample]))?;
    let factor = EVENTS as f64 / sample as f64;
    let naive_time = sample_time.mul_f64(factor);
    let naive_calls = (sample_calls as f64 * factor).round() as u64;
    println!(
        "naive: {sample} events measured in {:.1} s ({sample_calls} calls), extrapolated ×{factor:.1} to {EVENTS}",
        sample_time.as_secs_f64()
    );

    let waiting = tally_time.saturating_sub(own_time);
    println!();
    println!("| measure | Tally | naive (one picking per event) | ratio | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| Odoo calls | {tally_calls} | {naive_calls} | {:.0}× fewer | ≥ 100×: {} |",
        naive_calls as f64 / tally_calls as f64,
        pass(naive_calls >= 100 * tally_calls)
    );
    println!(
        "| wall time | {:.2} s | {:.2} s | {:.0}× less | ≥ 20×: {} |",
        tally_time.as_secs_f64(),
        naive_time.as_secs_f64(),
        naive_time.as_secs_f64() / tally_time.as_secs_f64(),
        pass(naive_time.as_secs_f64() >= 20.0 * tally_time.as_secs_f64())
    );
    println!(
        "| Tally's own time (same merge, no latency) | {:.3} s | | {:.1}% of the time waiting on Odoo | < 5%: {} |",
        own_time.as_secs_f64(),
        100.0 * own_time.as_secs_f64() / waiting.as_secs_f64().max(1e-9),
        pass(own_time.as_secs_f64() < 0.05 * waiting.as_secs_f64())
    );
    println!(
        "both end states equal the expected stock of every SKU in both warehouses (naive: of its sample)"
    );
    if scenario != "naive" {
        counts(model, None).await?;
    }
    Ok(())
}

fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

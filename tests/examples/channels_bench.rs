//! Channel benchmark: prints its figures; `docs/BENCHMARKS.md` records them.
//!
//! `cargo run --release -p tally-tests --example channels_bench` measures:
//! 1. scan to channel: from a `tally-agent`'s `201` for a pick to the Shopify fake showing the
//!    new `on_hand`, through real `tally-central` and `tally-agent` processes and the Odoo
//!    simulator, with central's default windows (merge window 1 s, availability re-read right
//!    after each merge pass); once with the simulator answering at once and once with the lab's
//!    small-server latency (300 ms a call, 35 ms a line);
//! 2. Shopify API calls for 10,000 changed SKUs: a first run (SKUs and location looked up) and a
//!    second (resolved), against one call per SKU;
//! 3. the same 10,000 under a tight rate limit: the time taken against the bucket's
//!    theoretical minimum, and the calls Shopify refused as throttled (must be 0).
//!
//! Knobs: `TALLY_BENCH_SCANS` (default 60), `TALLY_BENCH_SKUS` (default 10,000).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::json;
use tally_central::channels::shopify::Shopify;
use tally_central::channels::{Buffer, ChannelConfig, ChannelKind, Entry};
use tally_protocol::Secret;
use tally_tests::channels::shopify::{FakeConfig, ShopifyFake};
use tally_tests::odoo_sim::{Latency, OdooSim, SimConfig, Tracking, Version};
use tally_tests::{AgentProcess, CentralProcess, wait_synced, wait_until};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Builds the binaries in this example's profile and points the harness at them.
fn build_binaries() -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    // target/<profile>/examples/channels_bench
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the example's profile directory")?
        .to_owned();
    tally_tests::build_binaries_into(&profile_dir)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Scan to channel latencies, `scans` picks one after another.
async fn scan_to_channel(
    dir: &Path,
    latency: Latency,
    scans: usize,
) -> anyhow::Result<Vec<Duration>> {
    const SKUS: usize = 20;
    let sim = OdooSim::start(SimConfig {
        latency,
        ..SimConfig::new(Version::V18)
    })
    .await?;
    let shop = ShopifyFake::start(FakeConfig::default()).await?;
    shop.add_location("Main");
    let sku = |i: usize| format!("BENCH-{i:03}");
    for i in 0..SKUS {
        sim.add_product(&sku(i), Tracking::None)?;
        sim.set_on_hand(&sku(i), "WH/Stock", None, 1000.0)?;
        shop.add_variant(&sku(i));
    }
    let config = dir.join("central.toml");
    std::fs::write(
        &config,
        format!(
            "[[channels]]\nname = \"shop\"\nkind = \"shopify\"\nurl = \"{}\"\nlocation = \"Main\"\nwarehouses = [\"WH\"]\nsecret_env = \"BENCH_SHOPIFY_TOKEN\"\n",
            shop.url()
        ),
    )?;
    let odoo = tally_central::odoo::OdooConfig {
        url: sim.url(),
        db: sim.db().to_owned(),
        login: sim.login().to_owned(),
        api_key: Secret::new(sim.api_key()),
        call_timeout: Duration::from_secs(60),
        api: Default::default(),
    };
    let central = CentralProcess::builder(dir.join("central"))
        .plaintext()
        .odoo(&odoo)
        .env("BENCH_SHOPIFY_TOKEN", "shpat_test")
        .arg("--config")
        .arg(&config)
        .spawn()
        .await?;
    let token = central.admin().add_agent("bench-agent", "WH").await?;
    let agent = AgentProcess::builder(dir.join("agent"))
        .token("bench-scanner-token-0123456789")
        .warehouse("WH")
        .agent_id("bench-agent")
        .central(&central.sync_url(), &token, None)
        .spawn()
        .await?;
    let scanner = agent.client();
    for i in 0..SKUS {
        let s = sku(i);
        wait_until("the first push", Duration::from_secs(120), || {
            let level = shop.level(&s, "Main");
            async move {
                Ok(if level.map(|l| l.0) == Some(1000) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(format!("{level:?}"))
                })
            }
        })
        .await?;
    }
    let mut expected = [1000i64; SKUS];
    let mut latencies = Vec::with_capacity(scans);
    for n in 0..scans {
        let i = n % SKUS;
        let event = json!({"id": format!("scan-{n}"), "type": "pick", "sku": sku(i), "qty": "1", "location": "WH/Stock"});
        let answer = scanner.post_events(&event).await?;
        let accepted = Instant::now();
        ensure!(answer.status == 201, "{}", answer.body);
        expected[i] -= 1;
        let (s, want) = (sku(i), expected[i]);
        loop {
            if shop.level(&s, "Main").map(|l| l.0) == Some(want) {
                break;
            }
            ensure!(
                accepted.elapsed() < Duration::from_secs(60),
                "{s} never reached {want}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(accepted.elapsed());
    }
    wait_synced(&scanner, Duration::from_secs(30)).await?;
    drop(agent);
    drop(central);
    latencies.sort();
    Ok(latencies)
}

fn channel(shop: &ShopifyFake) -> ChannelConfig {
    ChannelConfig {
        name: "bench".into(),
        kind: ChannelKind::Shopify {
            location: "Main".into(),
        },
        warehouses: ["WH".to_owned()].into(),
        buffer: Buffer::default(),
        cap: None,
        skus: Default::default(),
        ignore: Default::default(),
        url: shop.url(),
        secret: Secret::new("shpat_test"),
        reconcile: None,
        pool: None,
    }
}

/// Pushes `skus` changed SKUs in outbox-sized batches; returns (calls, throttle waits, time).
async fn push_all(
    shopify: &mut Shopify,
    skus: &[String],
    offer: u64,
) -> anyhow::Result<(u64, u64, Duration)> {
    let started = Instant::now();
    let (mut calls, mut waits) = (0, 0);
    for chunk in skus.chunks(tally_central::channels::shopify::BATCH) {
        let batch: Vec<Entry> = chunk
            .iter()
            .map(|s| Entry {
                sku: s.clone(),
                offer,
                seq: 1,
                risk: false,
            })
            .collect();
        let out = shopify
            .push(&batch)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        ensure!(
            out.done.len() == batch.len(),
            "{} of {} pushed",
            out.done.len(),
            batch.len()
        );
        calls += out.calls;
        waits += out.throttle_waits;
    }
    Ok((calls, waits, started.elapsed()))
}

async fn calls_per_skus(n: usize) -> anyhow::Result<()> {
    let shop = ShopifyFake::start(FakeConfig {
        bucket_max: 1e12,
        restore_rate: 1e12,
        ..FakeConfig::default()
    })
    .await?;
    shop.add_location("Main");
    let skus: Vec<String> = (0..n).map(|i| format!("SKU-{i:06}")).collect();
    for s in &skus {
        shop.add_variant(s);
    }
    let mut shopify = Shopify::new(&channel(&shop));
    let (first, _, t1) = push_all(&mut shopify, &skus, 5).await?;
    let (second, _, t2) = push_all(&mut shopify, &skus, 6).await?;
    let stats = shop.stats();
    println!("\n2. Shopify API calls for {n} changed SKUs (one call per SKU would be {n})");
    println!(
        "   first run (lookups included): {first} calls ({:.0}× fewer), {:.2} s",
        n as f64 / first as f64,
        t1.as_secs_f64()
    );
    println!(
        "   resolved run:                 {second} calls ({:.0}× fewer), {:.2} s",
        n as f64 / second as f64,
        t2.as_secs_f64()
    );
    println!("   lookups the first run added:  {}", first - second);
    println!(
        "   Shopify saw {} mutations, {} queries, {} quantities set",
        stats.mutations, stats.queries, stats.quantities_set
    );
    Ok(())
}

async fn under_throttle(n: usize) -> anyhow::Result<()> {
    let (max, rate) = (2000.0, 1000.0);
    let shop = ShopifyFake::start(FakeConfig {
        bucket_max: max,
        restore_rate: rate,
        ..FakeConfig::default()
    })
    .await?;
    shop.add_location("Main");
    let skus: Vec<String> = (0..n).map(|i| format!("SKU-{i:06}")).collect();
    for s in &skus {
        shop.add_variant(s);
    }
    let mut shopify = Shopify::new(&channel(&shop));
    let (calls, waits, took) = push_all(&mut shopify, &skus, 5).await?;
    let stats = shop.stats();
    // Every query asks for 250 nodes (252 points), every mutation 10.
    let points = stats.queries as f64 * 252.0 + stats.mutations as f64 * 10.0;
    let minimum = ((points - max) / rate).max(0.0);
    println!(
        "\n3. The same {n} SKUs (first run) under a bucket of {max} points, {rate} back a second"
    );
    println!(
        "   {calls} calls, {points} points, {:.2} s against a theoretical minimum of {minimum:.2} s ({:+.1} %); {waits} waits; throttled by Shopify: {}",
        took.as_secs_f64(),
        (took.as_secs_f64() / minimum - 1.0) * 100.0,
        stats.throttled
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    build_binaries()?;
    let scans = env_usize("TALLY_BENCH_SCANS", 60);
    let skus = env_usize("TALLY_BENCH_SKUS", 10_000);
    let work = tempfile::tempdir()?;
    println!(
        "tally channel benchmark — temp dir {}",
        work.path().display()
    );
    println!("\n1. Scan to channel ({scans} picks, one after another; merge window 1 s)");
    for (name, latency) in [
        ("simulator answering at once", Latency::default()),
        ("lab latency, 300 ms a call", Latency::lab()),
    ] {
        let dir: PathBuf = work.path().join(name.split(' ').next().unwrap_or("run"));
        std::fs::create_dir_all(&dir)?;
        let l = scan_to_channel(&dir, latency, scans).await?;
        println!(
            "   {name:<30} p50 {:>6.0} ms  p99 {:>6.0} ms  max {:>6.0} ms",
            percentile(&l, 0.5).as_secs_f64() * 1000.0,
            percentile(&l, 0.99).as_secs_f64() * 1000.0,
            l.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        );
    }
    calls_per_skus(skus).await?;
    under_throttle(skus).await?;
    Ok(())
}

//! WooCommerce channel benchmark: API calls per changed SKUs; `docs/BENCHMARKS.md` records
//! the figures.
//!
//! `cargo run --release -p tally-tests --example woocommerce_bench` pushes
//! `TALLY_BENCH_SKUS` (default 10,000) changed SKUs through the WooCommerce client, in outbox
//! batches as the channel's worker takes them, against the WooCommerce fake: a first run (the
//! SKUs resolved from the product and variation pages) and a second on the resolved SKUs, for
//! a catalog of simple products and for one where a fifth of the SKUs are variations (ten per
//! variable product); against one call per SKU.

use std::time::{Duration, Instant};

use anyhow::ensure;
use tally_central::channels::woocommerce::{PUSH, WooCommerce};
use tally_central::channels::{Buffer, ChannelConfig, ChannelKind, Entry};
use tally_protocol::Secret;
use tally_tests::channels::woocommerce::WooFake;

fn channel(woo: &WooFake) -> ChannelConfig {
    ChannelConfig {
        name: "bench".into(),
        kind: ChannelKind::WooCommerce {
            order_ref: "{number}".into(),
        },
        warehouses: ["WH".to_owned()].into(),
        buffer: Buffer::default(),
        cap: None,
        skus: Default::default(),
        ignore: Default::default(),
        url: woo.url(),
        secret: Secret::new("ck_bench:cs_bench"),
        reconcile: None,
        pool: None,
    }
}

/// Pushes every SKU at `offer` in outbox-sized batches; returns (calls, time).
async fn push_all(
    client: &mut WooCommerce,
    skus: &[String],
    offer: u64,
) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let mut calls = 0;
    for chunk in skus.chunks(PUSH) {
        let batch: Vec<Entry> = chunk
            .iter()
            .map(|s| Entry {
                sku: s.clone(),
                offer,
                seq: 1,
                risk: false,
            })
            .collect();
        let out = client
            .push(&batch)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        ensure!(
            out.done.len() == batch.len() && out.dead.is_empty(),
            "{} of {} pushed, {} refused",
            out.done.len(),
            batch.len(),
            out.dead.len()
        );
        calls += out.calls;
    }
    Ok((calls, started.elapsed()))
}

/// `variations`: how many of the `n` SKUs are variations (ten per variable product).
async fn run(n: usize, variations: usize) -> anyhow::Result<()> {
    let woo = WooFake::start("ck_bench", "cs_bench").await?;
    let mut skus = Vec::with_capacity(n);
    for i in 0..n - variations {
        let sku = format!("SKU-{i:06}");
        woo.add_product(&sku, Some(0));
        skus.push(sku);
    }
    for p in 0..variations.div_ceil(10) {
        let parent = woo.add_variable(&format!("VAR-{p:05}"));
        for v in 0..10.min(variations - p * 10) {
            let sku = format!("VAR-{p:05}-{v}");
            woo.add_variation(parent, &sku, Some(0));
            skus.push(sku);
        }
    }
    let mut client = WooCommerce::new(&channel(&woo), None, None);
    let (first, t1) = push_all(&mut client, &skus, 5).await?;
    let after_first = woo.calls();
    let (second, t2) = push_all(&mut client, &skus, 6).await?;
    ensure!(
        woo.total_calls() == first + second,
        "the client's count is the fake's"
    );
    ensure!(skus.iter().all(|s| woo.stock(s) == Some(6)));
    let writes_second: u64 = woo
        .calls()
        .iter()
        .filter(|(k, _)| k.starts_with("POST"))
        .map(|(k, v)| v - after_first.get(k).copied().unwrap_or(0))
        .sum();
    println!("\n{n} changed SKUs, {variations} of them variations (one call per SKU would be {n})");
    println!(
        "   first run (lookups included): {first} calls ({:.0}× fewer), {:.2} s",
        n as f64 / first as f64,
        t1.as_secs_f64()
    );
    println!(
        "   resolved run:                 {second} calls ({:.0}× fewer), {:.2} s: {writes_second} batch writes, {} reads of the orders",
        n as f64 / second as f64,
        t2.as_secs_f64(),
        second - writes_second
    );
    println!("   lookups the first run added:  {}", first - second);
    println!("   first run per endpoint:       {after_first:?}");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = std::env::var("TALLY_BENCH_SKUS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000usize);
    println!("tally WooCommerce channel benchmark (batches of {PUSH} SKUs a push)");
    run(n, 0).await?;
    run(n, n / 5).await?;
    Ok(())
}

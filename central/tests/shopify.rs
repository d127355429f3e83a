//! The Shopify adapter against the Shopify fake (fakes/src/channels/shopify.rs): the fake
//! refuses what 2026-04 refuses; offers land as `on_hand` with compare-and-set; a stale
//! value is re-read and set again; a permanent refusal of one SKU dead-letters that SKU only;
//! a small bucket is never sent a call it cannot pay for; a write whose answer was lost is
//! sent again under the same key through `IDEMPOTENCY_CONCURRENT_REQUEST` and applied once;
//! and 50,000 SKUs take
//! ⌈50,000 / 250⌉ mutations plus the lookups.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use tally_central::channels::shopify::{LOOKUP, Shopify};
use tally_central::channels::{Buffer, ChannelConfig, ChannelKind, Entry};
use tally_fakes::channels::shopify::{FakeConfig, ShopifyFake};
use tally_protocol::Secret;

fn config(fake: &ShopifyFake, token: &str) -> ChannelConfig {
    ChannelConfig {
        name: "shop".into(),
        kind: ChannelKind::Shopify {
            location: "Main".into(),
        },
        warehouses: BTreeSet::from(["WH".to_owned()]),
        buffer: Buffer::default(),
        cap: None,
        skus: BTreeMap::from([("TALLY-9".to_owned(), "SHOP-9".to_owned())]),
        ignore: BTreeSet::new(),
        url: fake.url(),
        secret: Secret::new(token),
        reconcile: None,
        pool: None,
    }
}

fn entry(sku: &str, offer: u64, seq: u64) -> Entry {
    Entry {
        sku: sku.into(),
        offer,
        seq,
        risk: false,
    }
}

async fn raw(fake: &ShopifyFake, query: &str, variables: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{}/admin/api/2026-04/graphql.json", fake.url()))
        .header("X-Shopify-Access-Token", "shpat_test")
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_fake_refuses_what_2026_04_refuses() {
    let fake = ShopifyFake::start(FakeConfig::default()).await.unwrap();
    let location = fake.add_location("Main");
    let item = fake.add_variant("A");
    let q = |from: Value| json!({"inventoryItemId": item, "locationId": location, "quantity": 5, "changeFromQuantity": from});
    let with_key = "mutation M($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input) @idempotent(key: \"k1\") { userErrors { field code } } }";
    let without_key = "mutation M($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input) { userErrors { field code } } }";
    let input = |quantities: Vec<Value>| json!({"input": {"name": "on_hand", "reason": "correction", "quantities": quantities}});

    let a = raw(&fake, without_key, input(vec![q(json!(0))])).await;
    assert!(
        a["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("@idempotent"),
        "{a}"
    );
    let mut no_from = q(json!(0));
    no_from
        .as_object_mut()
        .unwrap()
        .remove("changeFromQuantity");
    let a = raw(&fake, with_key, input(vec![no_from])).await;
    assert!(
        a["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("changeFromQuantity"),
        "{a}"
    );
    let a = raw(&fake, with_key, input(vec![q(json!(0)); 251])).await;
    assert_eq!(
        a["errors"][0]["extensions"]["code"],
        "MAX_INPUT_SIZE_EXCEEDED"
    );
    let a = raw(&fake, with_key, input(vec![q(json!(0)), q(json!(0))])).await;
    assert_eq!(
        a["data"]["inventorySetQuantities"]["userErrors"][0]["code"],
        "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR"
    );
    assert_eq!(fake.level("A", "Main"), Some((0, 0, 0)), "nothing applied");
    let a = raw(&fake, "{ shop { name } }", json!({})).await;
    assert!(a["errors"][0]["message"].as_str().unwrap().contains("shop"));
    let a = raw(
        &fake,
        "query { locations(first: 5) { nodes { id name",
        json!({}),
    )
    .await;
    assert!(
        a["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("syntax")
    );
    // Compare-and-set: a stale value is refused, the right one applied; a null opts out.
    let stale = "mutation M($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input) @idempotent(key: \"k2\") { userErrors { field code } } }";
    let a = raw(&fake, stale, input(vec![q(json!(3))])).await;
    assert_eq!(
        a["data"]["inventorySetQuantities"]["userErrors"][0]["code"],
        "CHANGE_FROM_QUANTITY_STALE"
    );
    let ok = "mutation M($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input) @idempotent(key: \"k3\") { userErrors { field code } } }";
    let a = raw(&fake, ok, input(vec![q(json!(0))])).await;
    assert_eq!(a["data"]["inventorySetQuantities"]["userErrors"], json!([]));
    assert_eq!(fake.level("A", "Main"), Some((5, 0, 5)));
    // The same key again: the first answer, applied once; with other arguments: refused.
    let a = raw(&fake, ok, input(vec![q(json!(0))])).await;
    assert_eq!(a["data"]["inventorySetQuantities"]["userErrors"], json!([]));
    let a = raw(&fake, ok, input(vec![q(json!(5))])).await;
    assert_eq!(
        a["data"]["inventorySetQuantities"]["userErrors"][0]["code"],
        "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"
    );
    assert_eq!(fake.writes("A", "Main"), [5]);
    // An order: available down, committed up.
    assert!(fake.order("A", "Main", 2));
    assert_eq!(fake.level("A", "Main"), Some((5, 2, 3)));
}

#[tokio::test]
async fn offers_land_as_on_hand_stale_values_are_reread_and_refusals_park_one_sku() {
    let fake = ShopifyFake::start(FakeConfig::default()).await.unwrap();
    fake.add_location("Other");
    fake.add_location("Main");
    for sku in ["A", "B", "C", "SHOP-9"] {
        fake.add_variant(sku);
    }
    fake.unstock("C", "Main");
    let mut shop = Shopify::new(&config(&fake, "shpat_test"));
    let out = shop
        .push(&[
            entry("A", 7, 1),
            entry("B", 3, 2),
            entry("C", 4, 3),
            entry("TALLY-9", 9, 4),
            entry("NOWHERE", 1, 5),
        ])
        .await
        .unwrap();
    let done: BTreeSet<&str> = out.done.iter().map(|e| e.sku.as_str()).collect();
    assert_eq!(done, BTreeSet::from(["A", "B", "TALLY-9"]));
    let dead: BTreeMap<&str, &str> = out
        .dead
        .iter()
        .map(|(e, code, _)| (e.sku.as_str(), code.as_str()))
        .collect();
    assert_eq!(
        dead,
        BTreeMap::from([
            ("C", "ITEM_NOT_STOCKED_AT_LOCATION"),
            ("NOWHERE", "sku-not-found")
        ])
    );
    assert_eq!(fake.level("A", "Main"), Some((7, 0, 7)));
    assert_eq!(fake.level("SHOP-9", "Main"), Some((9, 0, 9)), "mapped SKU");
    assert_eq!(
        fake.level("A", "Other"),
        Some((0, 0, 0)),
        "only the channel's location"
    );

    // Shopify ships an order itself: on_hand moved under Tally. The next set is refused as
    // stale, re-read, and set again; nothing else changes.
    assert!(fake.order("A", "Main", 2));
    fake.fulfil("A", "Main", 2);
    let out = shop.push(&[entry("A", 6, 6)]).await.unwrap();
    assert_eq!(out.done.len(), 1);
    assert_eq!(fake.level("A", "Main"), Some((6, 0, 6)));
    assert_eq!(fake.stats().stale, 1);
    assert_eq!(fake.stats().throttled, 0);
}

#[tokio::test]
async fn bad_credentials_are_an_alert_not_a_dead_letter() {
    let fake = ShopifyFake::start(FakeConfig::default()).await.unwrap();
    fake.add_location("Main");
    let mut shop = Shopify::new(&config(&fake, "wrong"));
    let error = shop.push(&[entry("A", 1, 1)]).await.unwrap_err();
    assert_eq!(error.class, tally_central::channels::ErrorClass::Auth);
    assert!(!error.message.contains("wrong"));
}

#[tokio::test]
async fn a_small_bucket_is_never_sent_a_call_it_cannot_pay_for() {
    // 300 points, 150 back a second: every lookup (252) and mutation (10) must wait its turn.
    let fake = ShopifyFake::start(FakeConfig {
        bucket_max: 300.0,
        restore_rate: 150.0,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    fake.add_location("Main");
    let skus: Vec<String> = (0..600).map(|i| format!("S{i:04}")).collect();
    for sku in &skus {
        fake.add_variant(sku);
    }
    let mut shop = Shopify::new(&config(&fake, "shpat_test"));
    let mut waits = 0;
    let started = std::time::Instant::now();
    for (n, chunk) in skus.chunks(250).enumerate() {
        let batch: Vec<Entry> = chunk
            .iter()
            .enumerate()
            .map(|(i, s)| entry(s, 5, (n * 250 + i) as u64))
            .collect();
        let out = shop.push(&batch).await.unwrap();
        assert_eq!(out.done.len(), batch.len());
        waits += out.throttle_waits;
    }
    let stats = fake.stats();
    assert_eq!(stats.throttled, 0, "{stats:?}");
    assert!(waits > 0, "the bucket was too small not to wait");
    // Within 10 % (plus a second for the first, unknown bucket) of the theoretical minimum:
    // every point beyond the first full bucket refills at the restore rate. Each query
    // (locations, lookups) asks for 250 nodes: 252 points.
    let points = stats.queries as f64 * 252.0 + stats.mutations as f64 * 10.0;
    let minimum = ((points - 300.0) / 150.0).max(0.0);
    let took = started.elapsed().as_secs_f64();
    assert!(
        took <= minimum * 1.1 + 1.0,
        "took {took:.2} s, minimum {minimum:.2} s"
    );
    assert_eq!(fake.level("S0599", "Main"), Some((5, 0, 5)));
}

#[tokio::test]
async fn a_throttled_answer_is_waited_out_and_the_same_request_sent_again() {
    let fake = ShopifyFake::start(FakeConfig {
        bucket_max: 300.0,
        restore_rate: 150.0,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    fake.add_location("Main");
    fake.add_variant("A");
    // Another app of the same store spends the bucket: Tally's first call, sent before it
    // knows the bucket, is refused as throttled.
    let spent = raw(
        &fake,
        "{ locations(first: 250) { nodes { id } } }",
        json!({}),
    )
    .await;
    assert!(spent["data"]["locations"].is_object(), "{spent}");
    let mut shop = Shopify::new(&config(&fake, "shpat_test"));
    let out = shop.push(&[entry("A", 4, 1)]).await.unwrap();
    assert_eq!(out.done.len(), 1);
    assert_eq!(fake.level("A", "Main"), Some((4, 0, 4)));
    let stats = fake.stats();
    assert_eq!(stats.throttled, 1, "only the call sent blind: {stats:?}");
    assert!(out.throttle_waits >= 1);
}

#[tokio::test]
async fn a_write_still_in_flight_is_retried_with_the_same_key_and_applied_once() {
    let fake = ShopifyFake::start(FakeConfig::default()).await.unwrap();
    fake.add_location("Main");
    fake.add_variant("A");
    let mut shop = Shopify::new(&config(&fake, "shpat_test"));
    // The write is applied but its answer is lost: Tally cannot know, and fails the push.
    fake.in_flight(2);
    let error = shop.push(&[entry("A", 4, 1)]).await.unwrap_err();
    assert_eq!(
        error.class,
        tally_central::channels::ErrorClass::Retryable,
        "{error}"
    );
    assert_eq!(fake.level("A", "Main"), Some((4, 0, 4)));
    // The worker pushes the same row again: Shopify still has the first call in progress
    // twice, then answers with its result.
    let out = shop.push(&[entry("A", 4, 1)]).await.unwrap();
    assert_eq!(out.done.len(), 1);
    assert!(out.dead.is_empty());
    assert_eq!(fake.stats().concurrent, 2);
    let keys = fake.set_keys();
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert!(
        keys.iter().all(|k| *k == keys[0]),
        "one key throughout: {keys:?}"
    );
    // Applied once: a new key would have met a stale changeFromQuantity and set it again.
    assert_eq!(fake.writes("A", "Main"), [4]);
    assert_eq!(fake.level("A", "Main"), Some((4, 0, 4)));
    // The next write is another one, under another key.
    shop.push(&[entry("A", 6, 2)]).await.unwrap();
    assert_ne!(fake.set_keys().last(), Some(&keys[0]));
    assert_eq!(fake.writes("A", "Main"), [4, 6]);
}

#[tokio::test]
async fn fifty_thousand_skus_take_one_mutation_per_250_plus_the_lookups() {
    let fake = ShopifyFake::start(FakeConfig {
        bucket_max: 1e9,
        restore_rate: 1e9,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    fake.add_location("Main");
    let skus: Vec<String> = (0..50_000).map(|i| format!("SKU-{i:05}")).collect();
    for sku in &skus {
        fake.add_variant(sku);
    }
    let mut shop = Shopify::new(&config(&fake, "shpat_test"));
    for (n, chunk) in skus
        .chunks(tally_central::channels::shopify::BATCH)
        .enumerate()
    {
        let batch: Vec<Entry> = chunk.iter().map(|s| entry(s, 3, n as u64)).collect();
        let out = shop.push(&batch).await.unwrap();
        assert_eq!(out.done.len(), batch.len());
    }
    let stats = fake.stats();
    assert_eq!(stats.mutations, 50_000u64.div_ceil(250));
    assert_eq!(stats.quantities_set, 50_000);
    // One locations query, then one lookup per LOOKUP SKUs.
    assert_eq!(stats.queries, 1 + 50_000u64.div_ceil(LOOKUP as u64));
    assert_eq!(fake.level("SKU-49999", "Main"), Some((3, 0, 3)));
    // Once resolved, 50,000 changes more are mutations only.
    let before = fake.stats();
    for chunk in skus.chunks(250) {
        let batch: Vec<Entry> = chunk.iter().map(|s| entry(s, 4, 9)).collect();
        shop.push(&batch).await.unwrap();
    }
    let after = fake.stats();
    assert_eq!(after.queries, before.queries);
    assert_eq!(after.mutations - before.mutations, 200);
}

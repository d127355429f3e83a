//! The WooCommerce client against the WooCommerce fake of `tally-tests`.

use std::collections::{BTreeMap, BTreeSet};

use tally_fakes::channels::woocommerce::WooFake;
use tally_protocol::Secret;

use super::*;
use crate::channels::{Buffer, ErrorClass};

const KEY: &str = "ck_test";
const SECRET: &str = "cs_test";

fn channel(fake: &WooFake, secret: &str) -> ChannelConfig {
    ChannelConfig {
        name: "woo".into(),
        kind: ChannelKind::WooCommerce {
            order_ref: "{number}".into(),
        },
        warehouses: BTreeSet::from(["WH".to_owned()]),
        buffer: Buffer::default(),
        cap: None,
        skus: BTreeMap::new(),
        ignore: BTreeSet::new(),
        url: fake.url(),
        secret: Secret::new(secret),
        reconcile: None,
        pool: None,
    }
}

fn entry(sku: &str, offer: u64) -> Entry {
    Entry {
        sku: sku.into(),
        offer,
        seq: 1,
        risk: false,
    }
}

fn client(fake: &WooFake) -> WooCommerce {
    WooCommerce::new(&channel(fake, &format!("{KEY}:{SECRET}")), None, None)
}

fn calls(fake: &WooFake, endpoint: &str) -> u64 {
    fake.calls().get(endpoint).copied().unwrap_or(0)
}

#[tokio::test]
async fn skus_resolve_in_bulk_and_writes_go_100_a_call_per_endpoint() {
    let fake = WooFake::start(KEY, SECRET).await.unwrap();
    for n in 0..250 {
        fake.add_product(&format!("P{n:03}"), Some(0));
    }
    let shirt = fake.add_variable("SHIRT");
    for size in ["S", "M", "L"] {
        fake.add_variation(shirt, &format!("SHIRT-{size}"), None);
    }
    let mut woo = client(&fake);
    let mut batch: Vec<Entry> = (0..250).map(|n| entry(&format!("P{n:03}"), n)).collect();
    batch.extend(["S", "M", "L"].map(|s| entry(&format!("SHIRT-{s}"), 7)));
    let out = woo.push(&batch).await.unwrap();
    assert_eq!(out.done.len(), 253);
    assert!(out.dead.is_empty(), "{:?}", out.dead);
    assert_eq!(fake.stock("P249"), Some(249));
    assert_eq!(fake.stock("SHIRT-M"), Some(7));
    // P000 already showed 0: read, not written.
    assert!(fake.writes("P000").is_empty());
    // Lookups: 3 pages of products, one of variations. Writes: 100 + 100 + 49, and 3.
    assert_eq!(calls(&fake, "GET /products"), 3);
    assert_eq!(calls(&fake, "GET /products/{id}/variations"), 1);
    assert_eq!(calls(&fake, "POST /products/batch"), 3);
    assert_eq!(calls(&fake, "POST /products/{id}/variations/batch"), 1);
    // The variations did not manage stock (nothing shown): drift is reported.
    assert!(
        out.drift
            .iter()
            .any(|d| d.sku == "SHIRT-S" && d.channel_showed.is_none())
    );

    // Resolved now: the next push of every SKU is writes and one read of the orders.
    let before = fake.total_calls();
    let batch: Vec<Entry> = (0..250)
        .map(|n| entry(&format!("P{n:03}"), n + 1))
        .collect();
    let out = woo.push(&batch).await.unwrap();
    assert_eq!(out.done.len(), 250);
    assert_eq!(out.calls, fake.total_calls() - before);
    assert!(out.calls <= 3 + 2, "{} calls", out.calls);
    assert_eq!(fake.stock("P000"), Some(1));
}

#[tokio::test]
async fn a_refused_item_is_dead_lettered_and_the_others_go_on() {
    let fake = WooFake::start(KEY, SECRET).await.unwrap();
    for sku in ["A", "B", "C"] {
        fake.add_product(sku, Some(1));
    }
    fake.fail_sku("B");
    let mut woo = client(&fake);
    let out = woo
        .push(&[
            entry("A", 5),
            entry("B", 5),
            entry("C", 5),
            entry("NOPE", 5),
        ])
        .await
        .unwrap();
    let done: BTreeSet<&str> = out.done.iter().map(|e| e.sku.as_str()).collect();
    assert_eq!(done, BTreeSet::from(["A", "C"]));
    let dead: BTreeMap<&str, &str> = out
        .dead
        .iter()
        .map(|(e, code, _)| (e.sku.as_str(), code.as_str()))
        .collect();
    assert_eq!(dead["B"], "woocommerce_rest_invalid_product");
    assert_eq!(dead["NOPE"], "sku-not-found");
    assert_eq!((fake.stock("A"), fake.stock("B")), (Some(5), Some(1)));
}

#[tokio::test]
async fn outages_are_retryable_and_bad_credentials_are_not() {
    let fake = WooFake::start(KEY, SECRET).await.unwrap();
    fake.add_product("A", Some(1));
    for status in [503, 429, 413] {
        fake.set_outage(Some(status));
        let error = client(&fake).push(&[entry("A", 2)]).await.unwrap_err();
        assert_eq!(error.class, ErrorClass::Retryable, "{status}: {error}");
        assert!(error.message.contains(&status.to_string()), "{error}");
    }
    fake.set_outage(None);
    let mut wrong = WooCommerce::new(&channel(&fake, "ck_test:wrong"), None, None);
    let error = wrong.push(&[entry("A", 2)]).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Auth);
    assert!(!error.message.contains("wrong"));
    assert_eq!(fake.stock("A"), Some(1));
}

#[tokio::test]
async fn open_orders_are_taken_off_and_an_order_during_a_write_is_written_again() {
    let fake = WooFake::start(KEY, SECRET).await.unwrap();
    fake.add_product("A", Some(10));
    fake.add_product("B", Some(10));
    let order = fake.place_order(&[("A", 3)]).unwrap();
    assert_eq!(fake.stock("A"), Some(7));
    let mut woo = client(&fake);
    // Odoo's figures (no Odoo here: no order counts as in Odoo) say 10 free: 3 are sold.
    woo.push(&[entry("A", 10)]).await.unwrap();
    assert_eq!(fake.stock("A"), Some(7));
    // It showed 7 already (read with the catalog): nothing written.
    assert!(fake.writes("A").is_empty());

    // An order lands after the push read the orders and before its write: the write undoes
    // its decrement (7 over 5), the read after it sees the order, and A is written again at
    // once with it taken off.
    fake.place_order_after_next_orders_read(&[("A", 2), ("B", 1)]);
    let out = woo.push(&[entry("A", 10)]).await.unwrap();
    assert_eq!(out.done.len(), 1);
    assert_eq!(fake.stock("A"), Some(5));
    assert_eq!(fake.writes("A"), vec![7, 5]);
    let late = 1001;
    assert!(fake.writes("B").is_empty(), "B was not pushed");

    // Nothing to look at again before its time.
    assert!(woo.recheck().await.is_none());
    // The late order leaves the open ones without Odoo (completed in WooCommerce), the first
    // is cancelled (WooCommerce gives its 3 back itself: 8). A's offer no longer has anything
    // to take off: the recheck writes it without waiting for Odoo's figures to change.
    fake.set_order_status(late, "completed");
    fake.set_order_status(order, "cancelled");
    assert_eq!(fake.stock("A"), Some(8));
    woo.next_recheck = None;
    let out = woo.recheck().await.unwrap().unwrap();
    assert!(out.calls >= 2, "{out:?}");
    assert_eq!(fake.stock("A"), Some(10));
    assert!(woo.watch.is_empty());
    woo.next_recheck = None;
    assert!(woo.recheck().await.is_none(), "nothing is watched any more");
}

/// Odoo's figures of A in WH, free `free`, read at `read_at`.
fn figures(store: &Store, free: i64, read_at: jiff::Timestamp) {
    let free = tally_protocol::Qty::from_units(free);
    let row = crate::availability::Availability {
        sku: "A".into(),
        warehouse: "WH".into(),
        on_hand: free,
        reserved: tally_protocol::Qty::ZERO,
        free,
        read_at: read_at.to_string(),
        includes: vec![],
    };
    store.record_availability(&[row], &[]).unwrap();
}

#[tokio::test]
async fn an_order_counts_as_in_odoo_only_once_odoos_figures_were_read_after_its_confirmation() {
    use tally_fakes::odoo_sim::{OdooSim, SimConfig, Tracking, Version};
    let sim = OdooSim::start(SimConfig::new(Version::V18)).await.unwrap();
    sim.add_product("A", Tracking::None).unwrap();
    sim.set_on_hand("A", "WH/Stock", None, 10.0).unwrap();
    let fake = WooFake::start(KEY, SECRET).await.unwrap();
    fake.add_product("A", Some(10));
    let order = fake.place_order(&[("A", 3)]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let odoo = crate::odoo::OdooConfig {
        url: sim.url(),
        db: sim.db().to_owned(),
        login: sim.login().to_owned(),
        api_key: Secret::new(sim.api_key()),
        call_timeout: std::time::Duration::from_secs(30),
        api: Default::default(),
    };
    let touched = Arc::new(Touched::default());
    let config = ChannelConfig {
        kind: ChannelKind::WooCommerce {
            order_ref: "WC-{number}".into(),
        },
        ..channel(&fake, &format!("{KEY}:{SECRET}"))
    };
    let mut woo = WooCommerce::new(&config, Some(store.clone()), Some((odoo, touched.clone())));
    let now = jiff::Timestamp::now();
    let seconds = |s: i64| jiff::SignedDuration::from_secs(s);

    // Odoo has no order WC-<n>: 10 free there, 3 sold in WooCommerce.
    figures(&store, 10, now);
    woo.push(&[entry("A", 10)]).await.unwrap();
    assert_eq!(fake.stock("A"), Some(7));

    // A sales order with another reference does not count.
    sim.create_sale_order("WH", "Someone", &[("A", 1.0)], Some("WC-999999"))
        .unwrap();
    // The order reaches Odoo, confirmed now, reserving 3 (and the 1 above): 6 free.
    sim.create_sale_order(
        "WH",
        "WooCommerce",
        &[("A", 3.0)],
        Some(&format!("WC-{order}")),
    )
    .unwrap();
    // Figures read before central saw the order confirmed (still 9 free there): the order is
    // taken off, and the availability reader is asked for a fresh read.
    let before = jiff::Timestamp::now();
    figures(&store, 9, before - seconds(30));
    woo.push(&[entry("A", 9)]).await.unwrap();
    assert_eq!(fake.stock("A"), Some(6));
    assert_eq!(touched.take()["WH"], BTreeSet::from(["A".to_owned()]));
    // Figures whose read started before central saw it, even holding the reservation: counted
    // twice, an under-offer, and a fresh read asked for again.
    figures(&store, 6, before);
    woo.next_recheck = None;
    woo.recheck().await.unwrap().unwrap();
    assert_eq!(fake.stock("A"), Some(3));
    assert_eq!(touched.take()["WH"], BTreeSet::from(["A".to_owned()]));
    // The fresh read, started after central saw the order confirmed, holds the reservation:
    // counted once, by Odoo, and the recheck writes it without any change in Odoo's offer.
    figures(&store, 6, jiff::Timestamp::now());
    woo.next_recheck = None;
    woo.recheck().await.unwrap().unwrap();
    assert_eq!(fake.stock("A"), Some(6));
    assert!(woo.watch.is_empty());
    assert!(touched.take().is_empty());
    // The first figure, 7, WooCommerce showed already: not written.
    assert_eq!(fake.writes("A"), vec![6, 3, 6]);
}

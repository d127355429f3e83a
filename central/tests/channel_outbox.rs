//! The channel outbox against a simple model: the latest value of a SKU wins, a push that
//! completes after a newer value arrived leaves the newer one queued (never an older value
//! after a newer), drops go before rises, and everything survives closing and reopening the
//! store.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tally_central::availability::{Availability, free};
use tally_central::channels::{Buffer, ChannelConfig, ChannelKind};
use tally_central::store::Store;
use tally_protocol::{Qty, Secret};

fn channel() -> ChannelConfig {
    ChannelConfig {
        name: "shop".into(),
        kind: ChannelKind::Webhook,
        warehouses: BTreeSet::from(["WH".to_owned()]),
        buffer: Buffer::default(),
        cap: None,
        skus: BTreeMap::new(),
        ignore: BTreeSet::from(["IGNORED".to_owned()]),
        url: "http://127.0.0.1:9".into(),
        secret: Secret::new("s"),
        reconcile: None,
        pool: None,
    }
}

fn row(sku: &str, on_hand: i64) -> Availability {
    let on_hand = Qty::from_units(on_hand);
    Availability {
        sku: sku.into(),
        warehouse: "WH".into(),
        on_hand,
        reserved: Qty::ZERO,
        free: free(on_hand, Qty::ZERO),
        read_at: String::new(),
        includes: vec![],
    }
}

#[test]
fn latest_wins_drops_first_and_a_late_completion_keeps_the_newer_value() {
    let dir = tempfile::tempdir().unwrap();
    let channels = vec![channel()];
    let store = Store::open(dir.path()).unwrap();
    store
        .record_availability(&[row("A", 10), row("B", 10), row("IGNORED", 3)], &channels)
        .unwrap();
    let first = store.outbox_batch("shop", 10).unwrap();
    assert_eq!(first.len(), 2, "the ignored SKU is never queued");
    store.outbox_complete("shop", &first, &[]).unwrap();
    assert!(store.outbox_batch("shop", 10).unwrap().is_empty());

    // A rises, B drops: B goes first though it changed later.
    store
        .record_availability(&[row("A", 12)], &channels)
        .unwrap();
    store
        .record_availability(&[row("B", 4)], &channels)
        .unwrap();
    let batch = store.outbox_batch("shop", 10).unwrap();
    assert_eq!(
        batch
            .iter()
            .map(|e| (e.sku.as_str(), e.offer, e.risk))
            .collect::<Vec<_>>(),
        [("B", 4, true), ("A", 12, false)]
    );
    // While that push is in flight, A changes 50 times: one row, the last value.
    for n in 0..50 {
        store
            .record_availability(&[row("A", 20 + n)], &channels)
            .unwrap();
    }
    store.outbox_complete("shop", &batch, &[]).unwrap();
    let left = store.outbox_batch("shop", 10).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!((left[0].sku.as_str(), left[0].offer), ("A", 69));
    assert_eq!(
        store.channel_pushed("shop", "A").unwrap().unwrap().offer,
        12
    );
    drop(store);

    // Reopened (a restart): the newer value is still waiting, its age kept.
    let store = Store::open(dir.path()).unwrap();
    let left = store.outbox_batch("shop", 10).unwrap();
    assert_eq!((left[0].sku.as_str(), left[0].offer), ("A", 69));
    let stats = store.outbox_stats("shop").unwrap();
    assert_eq!(stats.pending, 1);
    assert!(stats.last_success.is_some());
    // Refused for good: out of the outbox, into the dead letters.
    store
        .outbox_complete(
            "shop",
            &[],
            &[(
                left[0].clone(),
                "ITEM_NOT_STOCKED_AT_LOCATION".into(),
                "no".into(),
            )],
        )
        .unwrap();
    assert_eq!(store.outbox_stats("shop").unwrap().dead_letters, 1);
    assert_eq!(store.outbox_stats("shop").unwrap().pending, 0);
}

/// Random changes and pushes completing late, against the model "what the channel holds is
/// always a value Tally computed, and once the outbox is drained it is the latest".
#[test]
fn random_interleavings_end_at_the_latest_value_and_never_go_back() {
    let mut rng = StdRng::seed_from_u64(12);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let channels = vec![channel()];
    let skus = ["A", "B", "C", "D"];
    let mut latest: BTreeMap<&str, u64> = BTreeMap::new();
    // What the channel shows, with the sequence number of the value it shows.
    let mut shown: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut in_flight = Vec::new();
    for _ in 0..2000 {
        match rng.random_range(0..3) {
            0 => {
                let sku = skus[rng.random_range(0..skus.len())];
                let qty = rng.random_range(0..30);
                store
                    .record_availability(&[row(sku, qty)], &channels)
                    .unwrap();
                latest.insert(sku, qty as u64);
            }
            1 if in_flight.is_empty() => {
                in_flight = store.outbox_batch("shop", rng.random_range(1..4)).unwrap();
                for e in &in_flight {
                    let before = shown.get(&e.sku).map_or(0, |s| s.1);
                    assert!(e.seq > before, "an older value pushed after a newer one");
                    shown.insert(e.sku.clone(), (e.offer, e.seq));
                }
            }
            _ => {
                store.outbox_complete("shop", &in_flight, &[]).unwrap();
                in_flight.clear();
            }
        }
    }
    store.outbox_complete("shop", &in_flight, &[]).unwrap();
    loop {
        let batch = store.outbox_batch("shop", 3).unwrap();
        if batch.is_empty() {
            break;
        }
        for e in &batch {
            shown.insert(e.sku.clone(), (e.offer, e.seq));
        }
        store.outbox_complete("shop", &batch, &[]).unwrap();
    }
    for (sku, qty) in latest {
        assert_eq!(shown[sku].0, qty, "{sku} ends at its latest value");
    }
}

/// A channel added to the configuration after availability was stored gets every SKU from the
/// next full read, though no stock changed.
#[test]
fn a_full_read_offers_unchanged_skus_to_a_new_channel() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.record_availability(&[row("A", 10)], &[]).unwrap();
    let channels = vec![channel()];
    store
        .record_availability(&[row("A", 10)], &channels)
        .unwrap();
    assert!(
        store.outbox_batch("shop", 10).unwrap().is_empty(),
        "a partial read of unchanged stock queues nothing"
    );
    store
        .record_availability_with(&[row("A", 10)], &channels, true)
        .unwrap();
    let batch = store.outbox_batch("shop", 10).unwrap();
    assert_eq!((batch[0].sku.as_str(), batch[0].offer), ("A", 10));
    // Once the channel has it, a full read queues nothing more.
    store.outbox_complete("shop", &batch, &[]).unwrap();
    store
        .record_availability_with(&[row("A", 10)], &channels, true)
        .unwrap();
    assert!(store.outbox_batch("shop", 10).unwrap().is_empty());
}

#[test]
fn a_channels_totals_are_kept_in_the_store_across_a_reopen() {
    use tally_central::channels::Drift;
    use tally_central::channels::figures::PushFigures;
    let dir = tempfile::tempdir().unwrap();
    let channels = vec![channel()];
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .record_availability(&[row("A", 10), row("B", 4)], &channels)
            .unwrap();
        let batch = store.outbox_batch("shop", 10).unwrap();
        store
            .channel_failed("shop", "Shopify answered HTTP 503")
            .unwrap();
        store
            .channel_failed("shop", "Shopify answered HTTP 502")
            .unwrap();
        let drift = Drift {
            sku: "A".into(),
            channel_showed: Some(3),
            offered: 10,
        };
        let figures = PushFigures {
            calls: 3,
            throttle_waits: 1,
            drift: vec![drift.clone()],
        };
        store
            .outbox_complete_with("shop", &batch, &[], &figures)
            .unwrap();
        store
            .channel_failed("shop", "Shopify answered HTTP 500")
            .unwrap();
        store.outbox_resync(&channels[0], None).unwrap();
        let figures = store.channel_figures("shop").unwrap();
        assert_eq!(
            (figures.errors, figures.calls, figures.throttle_waits),
            (3, 3, 1)
        );
        assert_eq!((figures.drift_found, figures.drift), (1, vec![drift]));
        assert_eq!(
            figures.last_error.as_deref(),
            Some("Shopify answered HTTP 500")
        );
        assert!(figures.last_resync.is_some());
    }
    let store = Store::open(dir.path()).unwrap();
    let before = store.channel_figures("shop").unwrap();
    assert_eq!(before.errors, 3);
    assert_eq!(before.calls, 3);
    // A success clears the last error and adds to the totals.
    let batch = store.outbox_batch("shop", 10).unwrap();
    let figures = PushFigures {
        calls: 2,
        ..PushFigures::default()
    };
    store
        .outbox_complete_with("shop", &batch, &[], &figures)
        .unwrap();
    let after = store.channel_figures("shop").unwrap();
    assert_eq!((after.errors, after.calls, after.drift_found), (3, 5, 1));
    assert_eq!(after.last_error, None);
    assert_eq!(after.last_resync, before.last_resync);
    // Another channel's totals are its own.
    assert_eq!(store.channel_figures("other").unwrap().calls, 0);
}

//! Counts planned by stock against a sequential model: random feeds of counts of many stocks
//! (product, location, lot) interleaved with receipts, picks, transfers and adjustments of the
//! same and other stocks are merged into the Odoo simulator, the merge cut short by a failure
//! at random calls (create, validate, the counts' reads; applied or not) and resumed by a new
//! engine each time, and every quant must end as reading the feed one event at a time says.
//! Also: the counts of a run are computed together and applied as one adjustment, not one
//! round of pickings each.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tally_central::merge::apply::RetryPolicy;
use tally_central::merge::engine::Engine;
use tally_central::odoo::{OdooClient, OdooConfig};
use tally_central::store::Store;
use tally_central::store::journal::{self, JournalHandle};
use tally_fakes::odoo_sim::{Fault, FaultKind, OdooSim, SimConfig, Version};
use tally_protocol::{Event, EventKind, LogId, LoggedEvent, Qty, Secret, Timestamp};

const LOG: LogId = LogId([0xcd; 16]);
const AGENT: &str = "wh-agent";
const STOCK: &str = "WH/Stock";
const SHELF: &str = "WH/Stock/Shelf 2";
const LOCATIONS: [&str; 2] = [STOCK, SHELF];
/// Untracked products, and one tracked by lot with its lots.
const UNTRACKED: [&str; 4] = ["SKU-001", "SKU-002", "SKU-003", "SKU-004"];
const TRACKED: &str = "SKU-005";
const LOTS: [&str; 2] = ["LOT-A", "LOT-B"];
const INITIAL: i64 = 10;
/// Feeds per run of the test, events per feed, journal appends per feed.
const FEEDS: usize = 4;
const EVENTS: usize = 120;
const APPENDS: usize = 3;

/// A stock: (sku, location, lot).
type Key = (&'static str, &'static str, Option<&'static str>);

struct Setup {
    sim: OdooSim,
    store: Store,
    journal: JournalHandle,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.add_agent(AGENT, "WH").unwrap();
        let (journal, _thread) = journal::spawn(store.clone()).unwrap();
        let sim = OdooSim::start(SimConfig::new(Version::V17)).await.unwrap();
        sim.add_location(STOCK, "Shelf 2").unwrap();
        Setup {
            sim,
            store,
            journal,
            _dir: dir,
        }
    }

    /// An engine that gives up at the first failure, like a central that dies there.
    async fn engine(&self) -> Engine {
        let client = OdooClient::connect(&OdooConfig {
            url: self.sim.url(),
            db: self.sim.db().to_owned(),
            login: self.sim.login().to_owned(),
            api_key: Secret::new(self.sim.api_key()),
            call_timeout: Duration::from_secs(5),
            api: Default::default(),
        })
        .await
        .unwrap();
        let policy = RetryPolicy {
            attempts: 1,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        };
        Engine::new(self.store.clone(), client, policy)
    }

    fn quantity(&self, (sku, location, lot): Key) -> f64 {
        match lot {
            Some(lot) => self.sim.on_hand_lot(sku, location, lot),
            None => self.sim.on_hand(sku, location),
        }
    }
}

fn every_key() -> Vec<Key> {
    let mut keys = Vec::new();
    for location in LOCATIONS {
        keys.extend(UNTRACKED.iter().map(|sku| (*sku, location, None)));
        keys.extend(LOTS.iter().map(|lot| (TRACKED, location, Some(*lot))));
    }
    keys
}

/// A random event and what it does to the model: each stock's quantity, one event at a time.
fn random_event(rng: &mut StdRng, seq: u64, model: &mut BTreeMap<Key, i64>) -> LoggedEvent {
    let keys = every_key();
    let (sku, location, lot) = keys[rng.random_range(0..keys.len())];
    let roll = rng.random_range(0..100);
    let qty = rng.random_range(1..=5);
    let mut event = match roll {
        0..25 => {
            *model.entry((sku, location, lot)).or_default() += qty;
            Event::new(EventKind::Receipt, sku, Qty::from_units(qty))
        }
        25..50 => {
            *model.entry((sku, location, lot)).or_default() -= qty;
            Event::new(EventKind::Pick, sku, Qty::from_units(qty))
        }
        50..60 => {
            let signed = if rng.random_bool(0.5) { qty } else { -qty };
            *model.entry((sku, location, lot)).or_default() += signed;
            let mut e = Event::new(EventKind::Adjustment, sku, Qty::from_units(signed));
            e.reason = Some("test".into());
            e
        }
        60..70 => {
            let to = if location == STOCK { SHELF } else { STOCK };
            *model.entry((sku, location, lot)).or_default() -= qty;
            *model.entry((sku, to, lot)).or_default() += qty;
            let mut e = Event::new(EventKind::Transfer, sku, Qty::from_units(qty));
            e.to_location = Some(to.into());
            e
        }
        _ => {
            let counted = rng.random_range(0..=20);
            model.insert((sku, location, lot), counted);
            Event::new(EventKind::Count, sku, Qty::from_units(counted))
        }
    };
    event.location = Some(location.into());
    event.lot = lot.map(Into::into);
    LoggedEvent {
        seq,
        received_at: Timestamp::now(),
        event,
    }
}

/// Where a merge may be cut short: calls that change Odoo, and the counts' reads.
fn random_fault(rng: &mut StdRng) -> Fault {
    let (model, method) = [
        ("stock.picking", "create"),
        ("stock.picking", "button_validate"),
        ("stock.quant", "search_read"),
        ("stock.move.line", "search_read"),
    ][rng.random_range(0..4)];
    let kinds = [
        FaultKind::AppliedThenDrop,
        FaultKind::AppliedThenHttp500,
        FaultKind::SerializationFailure,
        FaultKind::Http500,
    ];
    Fault::new(kinds[rng.random_range(0..kinds.len())])
        .on(model, method)
        .after(rng.random_range(0..6))
}

/// Merges until everything journaled is through, a new engine after each failure (a restart
/// on the same store); returns how many times the merge was cut short.
async fn merge_through(s: &Setup, last: u64) -> usize {
    let mut cut_short = 0;
    for _ in 0..50 {
        match s.engine().await.merge_all().await {
            Ok(_) if s.store.merge_cursor(AGENT, LOG).unwrap() == last => return cut_short,
            Ok(_) => {}
            Err(_) => cut_short += 1,
        }
    }
    panic!("the merge did not get through in 50 passes ({cut_short} cut short)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_of_many_stocks_end_as_the_sequential_reading_says_through_failures() {
    let seed = tally_fakes::test_seed().unwrap();
    println!("merge_counts: seed {seed} (TALLY_TEST_SEED replays it)");
    let mut rng = StdRng::seed_from_u64(seed);
    for feed in 0..FEEDS {
        let s = Setup::new().await;
        let mut model: BTreeMap<Key, i64> = BTreeMap::new();
        for key in every_key() {
            s.sim
                .set_on_hand(key.0, key.1, key.2, INITIAL as f64)
                .unwrap();
            model.insert(key, INITIAL);
        }
        let mut seq = 0;
        let mut cut_short = 0;
        let mut counts = 0;
        for _ in 0..APPENDS {
            let events: Vec<LoggedEvent> = (0..EVENTS / APPENDS)
                .map(|_| {
                    seq += 1;
                    random_event(&mut rng, seq, &mut model)
                })
                .collect();
            counts += events
                .iter()
                .filter(|e| e.event.kind == EventKind::Count)
                .count();
            s.journal
                .append(Arc::from(AGENT), LOG, events)
                .await
                .unwrap();
            for _ in 0..rng.random_range(1..=3) {
                s.sim.inject(random_fault(&mut rng));
            }
            cut_short += merge_through(&s, seq).await;
            s.sim.clear_faults();
        }
        let context = format!("seed {seed}, feed {feed}");
        assert!(
            s.store.dead_letters().unwrap().is_empty(),
            "{context}: parked {:?}",
            s.store.dead_letters().unwrap()
        );
        for (key, want) in &model {
            assert_eq!(s.quantity(*key), *want as f64, "{context}: {key:?}");
        }
        let pickings = s.sim.pickings();
        let mut names: Vec<&str> = pickings.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names.len(),
            pickings.len(),
            "{context}: a picking name twice"
        );
        for p in pickings.iter().filter(|p| p.name.starts_with("tally-")) {
            let split = pickings
                .iter()
                .any(|q| q.name.starts_with(&format!("{}.", p.name)));
            assert!(
                p.state == "done" || (p.state == "cancel" && split),
                "{context}: {} is {}",
                p.name,
                p.state
            );
        }
        let adjustments = pickings.iter().filter(|p| p.name.contains("-C")).count();
        println!(
            "merge_counts: {context}: {EVENTS} events, {counts} counts in {adjustments} \
             adjustments, cut short {cut_short} times, {} pickings",
            pickings.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counts_of_a_run_are_one_adjustment_and_the_rest_coalesces_across_them() {
    let s = Setup::new().await;
    // 10 counts, each of its own stock, each between a receipt before it and a pick after it
    // of its stock, and picks of another product all along.
    let mut events = Vec::new();
    let mut model: BTreeMap<Key, i64> = BTreeMap::new();
    let keys: Vec<Key> = every_key();
    let mut seq = 0;
    let mut push = |kind: EventKind, (sku, location, lot): Key, qty: i64| {
        seq += 1;
        let mut e = Event::new(kind, sku, Qty::from_units(qty));
        e.location = Some(location.into());
        e.lot = lot.map(Into::into);
        events.push(LoggedEvent {
            seq,
            received_at: Timestamp::now(),
            event: e,
        });
    };
    for key in &keys {
        s.sim.set_on_hand(key.0, key.1, key.2, 100.0).unwrap();
    }
    let counted: Vec<Key> = keys.iter().copied().filter(|k| k.0 != "SKU-004").collect();
    for (n, key) in counted.iter().enumerate() {
        push(EventKind::Receipt, *key, 2);
        push(EventKind::Count, *key, 50 + n as i64);
        push(EventKind::Pick, *key, 1);
        push(EventKind::Pick, ("SKU-004", STOCK, None), 1);
        model.insert(*key, 50 + n as i64 - 1);
    }
    s.journal
        .append(Arc::from(AGENT), LOG, events)
        .await
        .unwrap();
    let before = s.sim.call_count("stock.picking", "create");
    let quant_reads = s.sim.call_count("stock.quant", "search_read");
    s.engine().await.merge_all().await.unwrap();
    for (key, want) in &model {
        assert_eq!(s.quantity(*key), *want as f64, "{key:?}");
    }
    assert_eq!(
        s.sim.on_hand("SKU-004", STOCK),
        100.0 - counted.len() as f64
    );
    // Phase 1: the receipts and the SKU-004 picks, then every count in one adjustment;
    // phase 2: the picks after the counts.
    let names: Vec<String> = s
        .sim
        .pickings()
        .into_iter()
        .map(|p| p.name)
        .filter(|n| n.starts_with("tally-"))
        .collect();
    let suffixes: Vec<&str> = names
        .iter()
        .map(|n| {
            n.rsplit_once(&format!("-1-{}", counted.len() * 4))
                .unwrap()
                .1
        })
        .collect();
    assert_eq!(suffixes, ["-R1", "-D1", "-C1", "-p2-D1"], "{names:?}");
    assert_eq!(s.sim.call_count("stock.picking", "create") - before, 4);
    // The quantities once, the pending counts once.
    assert_eq!(
        s.sim.call_count("stock.quant", "search_read") - quant_reads,
        2
    );
}

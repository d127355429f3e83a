//! Availability read from the Odoo simulator (17, 18 and 19): a full read per warehouse at
//! start, changes made inside Odoo (a sales order reserving, a manual quant) followed by the
//! write-date poll, SKUs a merge pass touched re-read at once, and each change queued for the
//! channels that warehouse feeds.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use tally_central::availability::reader::{Reader, ReaderStatus};
use tally_central::availability::{Availability, Touched};
use tally_central::channels::{Buffer, ChannelConfig, ChannelKind, Channels};
use tally_central::odoo::OdooConfig;
use tally_central::store::Store;
use tally_fakes::odoo_sim::{OdooSim, SimConfig, Version};
use tally_fakes::wait::wait_until;
use tally_protocol::{Qty, Secret};
use tokio_util::sync::CancellationToken;

fn webhook(warehouses: &[&str], buffer: u64) -> ChannelConfig {
    ChannelConfig {
        name: "hook".into(),
        kind: ChannelKind::Webhook,
        warehouses: warehouses.iter().map(|w| (*w).to_owned()).collect(),
        buffer: Buffer {
            units: buffer,
            percent: 0,
        },
        cap: None,
        skus: BTreeMap::new(),
        ignore: BTreeSet::new(),
        // Never called here: no worker runs.
        url: "http://127.0.0.1:9".into(),
        secret: Secret::new("s"),
        reconcile: None,
        pool: None,
    }
}

struct Setup {
    sim: OdooSim,
    store: Store,
    touched: Arc<Touched>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn start(version: Version, poll: Duration) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.add_agent("wh-agent", "WH").unwrap();
        let sim = OdooSim::start(SimConfig::new(version)).await.unwrap();
        sim.set_on_hand("SKU-002", "WH/Stock", None, 40.0).unwrap();
        sim.set_on_hand("SKU-003", "WH/Stock", None, 10.0).unwrap();
        sim.set_on_hand("SKU-003", "WH2/Stock", None, 5.0).unwrap();
        let touched = Arc::new(Touched::default());
        let shutdown = CancellationToken::new();
        let reader = Reader {
            store: store.clone(),
            odoo: OdooConfig {
                url: sim.url(),
                db: sim.db().to_owned(),
                login: sim.login().to_owned(),
                api_key: Secret::new(sim.api_key()),
                call_timeout: Duration::from_secs(5),
                api: Default::default(),
            },
            channels: Arc::new(Channels::new(Arc::new(vec![webhook(&["WH", "WH2"], 2)]))),
            touched: Arc::clone(&touched),
            poll,
            status: Arc::new(ReaderStatus::default()),
        };
        tokio::spawn(reader.run(shutdown.clone()));
        Setup {
            sim,
            store,
            touched,
            shutdown,
            _dir: dir,
        }
    }

    /// Waits until `sku` in `warehouse` reads (on hand, reserved).
    async fn until(&self, sku: &str, warehouse: &str, on_hand: i64, reserved: i64) -> Availability {
        let store = self.store.clone();
        wait_until(
            &format!("{sku} in {warehouse} to read {on_hand} on hand, {reserved} reserved"),
            Duration::from_secs(20),
            || {
                let rows = store.availability(sku, Some(warehouse));
                async move {
                    let rows = rows?;
                    Ok(match rows.first() {
                        Some(r)
                            if r.on_hand == Qty::from_units(on_hand)
                                && r.reserved == Qty::from_units(reserved) =>
                        {
                            ControlFlow::Break(r.clone())
                        }
                        other => ControlFlow::Continue(format!("{other:?}")),
                    })
                }
            },
        )
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn odoo_side_changes_reach_availability_and_the_outbox() {
    for version in [Version::V17, Version::V18, Version::V19] {
        let s = Setup::start(version, Duration::from_millis(200)).await;
        // The full read at start, per warehouse.
        let a = s.until("SKU-002", "WH", 40, 0).await;
        assert_eq!(a.free, Qty::from_units(40));
        assert_eq!(a.includes.len(), 0, "no agent has merged anything yet");
        s.until("SKU-003", "WH2", 5, 0).await;
        s.until("SKU-003", "WH", 10, 0).await;
        // The channel is offered both warehouses less its buffer of 2.
        let batch = s.store.outbox_batch("hook", 100).unwrap();
        let offer = |sku: &str| batch.iter().find(|e| e.sku == sku).map(|e| e.offer);
        assert_eq!(offer("SKU-003"), Some(13), "{version:?}: {batch:?}");
        assert_eq!(offer("SKU-002"), Some(38), "{version:?}");

        // A sales order confirmed in Odoo reserves 4: seen by the poll, not a full read.
        s.sim
            .create_sale_order("WH", "Customer", &[("SKU-002", 4.0)], None)
            .unwrap();
        let a = s.until("SKU-002", "WH", 40, 4).await;
        assert_eq!(a.free, Qty::from_units(36));
        let batch = s.store.outbox_batch("hook", 100).unwrap();
        let row = batch.iter().find(|e| e.sku == "SKU-002").unwrap();
        assert_eq!(
            row.offer, 34,
            "{version:?}: the newest value replaced the unsent one"
        );
        // A manual quantity set in Odoo.
        s.sim.set_on_hand("SKU-004", "WH/Stock", None, 7.0).unwrap();
        s.until("SKU-004", "WH", 7, 0).await;
        s.shutdown.cancel();
    }
}

#[tokio::test]
async fn skus_a_merge_pass_touched_are_read_again_at_once() {
    // A poll so slow it never runs during the test: only the merge's note can bring the change.
    let s = Setup::start(Version::V18, Duration::from_secs(3600)).await;
    s.until("SKU-002", "WH", 40, 0).await;
    s.sim
        .set_on_hand("SKU-002", "WH/Stock", None, 31.0)
        .unwrap();
    s.touched.note("WH", &["SKU-002".to_owned()]);
    s.until("SKU-002", "WH", 31, 0).await;
    // A SKU whose stock is gone from the warehouse reads zero, not its old figure.
    s.sim.set_on_hand("SKU-003", "WH/Stock", None, 0.0).unwrap();
    s.touched.note("WH", &["SKU-003".to_owned()]);
    s.until("SKU-003", "WH", 0, 0).await;
    // SKUs already looked up: the read after a pass is the stock call alone, no product lookup.
    let lookups = s.sim.call_count("product.product", "search_read");
    let stock_reads = s.sim.call_count("stock.quant", "read_group");
    s.sim
        .set_on_hand("SKU-002", "WH/Stock", None, 25.0)
        .unwrap();
    s.touched
        .note("WH", &["SKU-002".to_owned(), "SKU-003".to_owned()]);
    s.until("SKU-002", "WH", 25, 0).await;
    assert_eq!(
        s.sim.call_count("product.product", "search_read"),
        lookups,
        "the SKUs' products were looked up again"
    );
    assert_eq!(
        s.sim.call_count("stock.quant", "read_group"),
        stock_reads + 1,
        "one stock call for the warehouse"
    );
    s.shutdown.cancel();
}

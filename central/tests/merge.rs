//! The merge engine against the Odoo simulator: journaled events land in Odoo's stock exactly,
//! what Odoo cannot take is parked with its key, and a pass interrupted mid-plan resumes under
//! the same keys without applying anything twice.

use std::sync::Arc;
use std::time::Duration;

use tally_central::merge::apply::RetryPolicy;
use tally_central::merge::engine::Engine;
use tally_central::odoo::{ErrorKind, OdooClient, OdooConfig};
use tally_central::store::Store;
use tally_central::store::journal::{self, JournalHandle};
use tally_fakes::odoo_sim::{
    ADMIN_UID, Fault, FaultKind, Latency, OdooSim, SaleOrderInfo, SimConfig, Version,
};
use tally_protocol::{Event, EventKind, LogId, LoggedEvent, Qty, Secret, Timestamp};

// Orders as Odoo users make them: the harness's module, compiled into this test from its source
// (it needs only central's Odoo client; depending on tally-tests would build central twice).
#[path = "../../tests/src/odoo_orders.rs"]
#[allow(dead_code)] // name_and_state serves the harness's end-to-end tests
mod odoo_orders;
use odoo_orders::{Direction, open_picking};

const LOG: LogId = LogId([0xab; 16]);

struct Setup {
    sim: OdooSim,
    store: Store,
    journal: JournalHandle,
    _dir: tempfile::TempDir,
}

async fn setup(version: Version) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.add_agent("wh-agent", "WH").unwrap();
    let (journal, _thread) = journal::spawn(store.clone()).unwrap();
    let sim = OdooSim::start(SimConfig::new(version)).await.unwrap();
    Setup {
        sim,
        store,
        journal,
        _dir: dir,
    }
}

/// Event `seq`: `qty` units of `sku`, received now, nothing else set (adjustments get a
/// reason, as the agent requires).
fn logged(seq: u64, kind: EventKind, sku: &str, qty: i64) -> LoggedEvent {
    LoggedEvent {
        seq,
        received_at: Timestamp::now(),
        event: Event {
            reason: (kind == EventKind::Adjustment).then(|| "test".into()),
            ..Event::new(kind, sku, Qty::from_units(qty))
        },
    }
}

impl Setup {
    async fn engine(&self, attempts: u32) -> Engine {
        let client = OdooClient::connect(&OdooConfig {
            url: self.sim.url(),
            db: self.sim.db().to_owned(),
            login: self.sim.login().to_owned(),
            api_key: Secret::new(self.sim.api_key()),
            call_timeout: Duration::from_millis(500),
            api: Default::default(),
        })
        .await
        .unwrap();
        let policy = RetryPolicy {
            attempts,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        };
        Engine::new(self.store.clone(), client, policy)
    }

    /// Journals `events` for `wh-agent`.
    async fn append(&self, events: Vec<LoggedEvent>) {
        self.journal
            .append(Arc::from("wh-agent"), LOG, events)
            .await
            .unwrap();
    }

    /// An order of 5 SKU-002 from WH (80 on hand) and a journaled pick of `picked` naming it.
    async fn order_picked(&self, picked: i64) -> SaleOrderInfo {
        self.sim
            .set_on_hand("SKU-002", "WH/Stock", None, 80.0)
            .unwrap();
        let order = self
            .sim
            .create_sale_order("WH", "Customer", &[("SKU-002", 5.0)], None)
            .unwrap();
        self.append(vec![referenced(1, Pick, "SKU-002", picked, &order.name)])
            .await;
        order
    }

    /// Journals `events` (kind, sku, qty, location) as seqs after `first - 1`.
    async fn journal(&self, first: u64, events: &[(EventKind, &str, i64, Option<&str>)]) {
        let records = events
            .iter()
            .enumerate()
            .map(|(i, (kind, sku, qty, location))| {
                let mut e = logged(first + i as u64, *kind, sku, *qty);
                e.event.location = location.map(Into::into);
                e
            })
            .collect();
        self.append(records).await;
    }
}

use EventKind::*;

#[tokio::test]
async fn journaled_events_land_in_odoo_exactly_and_coalesced() {
    for version in [Version::V17, Version::V18, Version::V19] {
        let s = setup(version).await;
        let before = |sku: &str| s.sim.on_hand(sku, "WH/Stock");
        let (a0, b0, c0) = (before("SKU-001"), before("SKU-002"), before("SKU-003"));
        s.journal(
            1,
            &[
                (Receipt, "SKU-001", 10, None),
                (Pick, "SKU-001", 3, None),
                (Pick, "SKU-001", 2, Some("WH/Stock")),
                (Receipt, "SKU-002", 5, None),
                (Adjustment, "SKU-003", -4, None),
                (Adjustment, "SKU-003", 1, None),
            ],
        )
        .await;
        let mut engine = s.engine(3).await;
        assert_eq!(engine.merge_all().await.unwrap(), 6);
        assert_eq!(before("SKU-001"), a0 + 5.0, "{version:?}");
        assert_eq!(before("SKU-002"), b0 + 5.0);
        assert_eq!(before("SKU-003"), c0 - 3.0);
        // Six events, three pickings (receipts, deliveries, adjustments): two calls each.
        assert_eq!(s.sim.call_count("stock.picking", "create"), 3);
        assert_eq!(s.sim.call_count("stock.picking", "button_validate"), 3);
        assert_eq!(s.store.merge_cursor("wh-agent", LOG).unwrap(), 6);
        // Nothing new: nothing happens.
        assert_eq!(engine.merge_all().await.unwrap(), 0);
        assert_eq!(before("SKU-001"), a0 + 5.0);
    }
}

#[tokio::test]
async fn an_unknown_sku_parks_only_its_own_key() {
    let s = setup(Version::V18).await;
    let a0 = s.sim.on_hand("SKU-001", "WH/Stock");
    s.journal(
        1,
        &[
            (Receipt, "NO-SUCH-SKU", 4, None),
            (Receipt, "SKU-001", 2, None),
        ],
    )
    .await;
    let mut engine = s.engine(3).await;
    engine.merge_all().await.unwrap();
    s.journal(
        3,
        &[(Pick, "NO-SUCH-SKU", 1, None), (Pick, "SKU-001", 1, None)],
    )
    .await;
    engine.merge_all().await.unwrap();
    assert_eq!(
        s.sim.on_hand("SKU-001", "WH/Stock"),
        a0 + 1.0,
        "the other key kept flowing"
    );
    let parked: Vec<(u64, String)> = s
        .store
        .dead_letters()
        .unwrap()
        .into_iter()
        .map(|(_, _, seq, l)| (seq, l.reason))
        .collect();
    assert_eq!(
        parked,
        vec![
            (1, "unknown-sku".to_owned()),
            (3, "parked-behind".to_owned())
        ]
    );
    assert_eq!(s.store.merge_cursor("wh-agent", LOG).unwrap(), 4);

    // The product is created in Odoo and the parked events are given up on: the key flows again.
    s.sim
        .add_product("NO-SUCH-SKU", tally_fakes::odoo_sim::Tracking::None)
        .unwrap();
    assert_eq!(
        s.store
            .discard_dead_letters("WH", "NO-SUCH-SKU", "booked by hand")
            .unwrap(),
        2
    );
    s.journal(5, &[(Receipt, "NO-SUCH-SKU", 6, None)]).await;
    engine.merge_all().await.unwrap();
    assert_eq!(s.sim.on_hand("NO-SUCH-SKU", "WH/Stock"), 6.0);
    assert!(s.store.dead_letters().unwrap().is_empty());
}

#[tokio::test]
async fn parked_events_retried_after_the_fix_land_in_order_before_anything_newer() {
    let s = setup(Version::V17).await;
    s.journal(
        1,
        &[
            (Receipt, "NEW-SKU", 10, None),
            (Count, "NEW-SKU", 7, None),
            (Pick, "NEW-SKU", 2, None),
        ],
    )
    .await;
    let mut engine = s.engine(3).await;
    engine.merge_all().await.unwrap();
    assert_eq!(s.store.dead_letters().unwrap().len(), 3);
    // A retry before the fix parks them all again, under new keys next time.
    assert_eq!(s.store.retry_dead_letters("WH", "NEW-SKU").unwrap(), 3);
    engine.merge_all().await.unwrap();
    assert_eq!(s.store.dead_letters().unwrap().len(), 3);
    assert!(s.store.retries().unwrap().is_empty());

    // The product is created in Odoo; a newer event arrives before the retry is applied.
    s.sim
        .add_product("NEW-SKU", tally_fakes::odoo_sim::Tracking::None)
        .unwrap();
    assert_eq!(s.store.retry_dead_letters("WH", "NEW-SKU").unwrap(), 3);
    s.journal(4, &[(Pick, "NEW-SKU", 1, None)]).await;
    engine.merge_all().await.unwrap();
    // Receipt 10, count to 7 (a delta of −3), pick 2, then the newer pick 1: 4.
    assert_eq!(s.sim.on_hand("NEW-SKU", "WH/Stock"), 4.0);
    assert!(s.store.dead_letters().unwrap().is_empty());
    assert!(s.store.retries().unwrap().is_empty());
    assert_eq!(s.store.merge_cursor("wh-agent", LOG).unwrap(), 4);
}

#[tokio::test]
async fn what_odoo_cannot_take_at_planning_is_parked_while_the_rest_applies() {
    let s = setup(Version::V17).await;
    let a0 = s.sim.on_hand("SKU-001", "WH/Stock");
    // SKU-005 is lot-tracked (and the event has no lot); WH/Nowhere does not exist.
    s.journal(
        1,
        &[
            (Receipt, "SKU-005", 1, None),
            (Receipt, "SKU-001", 3, None),
            (Receipt, "SKU-002", 1, Some("WH/Nowhere")),
            // Another warehouse's location is not this warehouse's to book.
            (Receipt, "SKU-003", 1, Some("WH2/Stock")),
        ],
    )
    .await;
    let mut engine = s.engine(3).await;
    engine.merge_all().await.unwrap();
    assert_eq!(s.sim.on_hand("SKU-001", "WH/Stock"), a0 + 3.0);
    let reasons: Vec<String> = s
        .store
        .dead_letters()
        .unwrap()
        .into_iter()
        .map(|(_, _, _, l)| l.reason)
        .collect();
    assert_eq!(
        reasons,
        vec![
            "missing-lot".to_owned(),
            "unknown-location".to_owned(),
            "unknown-location".to_owned()
        ]
    );
}

#[tokio::test]
async fn a_picking_odoo_refuses_is_split_per_line_under_new_keys() {
    let s = setup(Version::V18).await;
    let (a0, b0) = (
        s.sim.on_hand("SKU-001", "WH/Stock"),
        s.sim.on_hand("SKU-002", "WH/Stock"),
    );
    // Someone cancelled a picking that holds the batch's key: Odoo will never take that name
    // again, so the batch's receipts must go through under other keys.
    let key = format!("tally-wh-agent-{}-1-2-R1", &LOG.to_string()[..8]);
    let wh = s.sim.warehouse_id("WH").unwrap();
    let picking_type = s
        .sim
        .execute(
            ADMIN_UID,
            "stock.warehouse",
            "read",
            serde_json::json!([[wh], ["in_type_id"]]),
            serde_json::json!({}),
        )
        .unwrap()
        .unwrap()[0]["in_type_id"][0]
        .clone();
    let id = s
        .sim
        .execute(
            ADMIN_UID,
            "stock.picking",
            "create",
            serde_json::json!([{"name": key, "picking_type_id": picking_type}]),
            serde_json::json!({}),
        )
        .unwrap()
        .unwrap();
    s.sim
        .execute(
            ADMIN_UID,
            "stock.picking",
            "action_cancel",
            serde_json::json!([[id]]),
            serde_json::json!({}),
        )
        .unwrap();
    s.journal(
        1,
        &[(Receipt, "SKU-001", 2, None), (Receipt, "SKU-002", 5, None)],
    )
    .await;
    let mut engine = s.engine(3).await;
    engine.merge_all().await.unwrap();
    assert_eq!(s.sim.on_hand("SKU-001", "WH/Stock"), a0 + 2.0);
    assert_eq!(s.sim.on_hand("SKU-002", "WH/Stock"), b0 + 5.0);
    assert!(s.sim.picking(&format!("{key}.1")).is_some());
    assert!(s.sim.picking(&format!("{key}.2")).is_some());
    assert!(s.store.dead_letters().unwrap().is_empty());
}

#[tokio::test]
async fn a_pass_cut_short_resumes_its_recorded_plan_without_applying_twice() {
    for kind in [
        FaultKind::AppliedThenDrop,
        FaultKind::AppliedThenHttp500,
        FaultKind::SerializationFailure,
    ] {
        for method in ["create", "button_validate"] {
            let s = setup(Version::V17).await;
            let a0 = s.sim.on_hand("SKU-001", "WH/Stock");
            let b0 = s.sim.on_hand("SKU-002", "WH/Stock");
            s.journal(
                1,
                &[(Receipt, "SKU-001", 4, None), (Pick, "SKU-002", 1, None)],
            )
            .await;
            // The first pass gives up at once (one attempt) on the first failure, like a
            // central that dies there.
            s.sim
                .inject(Fault::new(kind).times(1).on("stock.picking", method));
            let mut first = s.engine(1).await;
            let error = first.merge_all().await.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Retryable, "{kind:?} {method}");
            drop(first);
            let mut second = s.engine(3).await;
            second.merge_all().await.unwrap();
            assert_eq!(
                s.sim.on_hand("SKU-001", "WH/Stock"),
                a0 + 4.0,
                "{kind:?} {method}"
            );
            assert_eq!(
                s.sim.on_hand("SKU-002", "WH/Stock"),
                b0 - 1.0,
                "{kind:?} {method}"
            );
            assert_eq!(s.store.merge_cursor("wh-agent", LOG).unwrap(), 2);
        }
    }
}

#[tokio::test]
async fn a_count_lands_as_of_its_time_whatever_was_applied_since() {
    for version in [Version::V17, Version::V18, Version::V19] {
        let s = setup(version).await;
        let mut engine = s.engine(3).await;
        let a0 = s.sim.on_hand("SKU-001", "WH/Stock");
        // A receipt scanned before the count; Tally applies it after the count's time (as after
        // an outage), so Odoo dates it later. It must not be taken out of the count.
        s.journal(1, &[(Receipt, "SKU-001", 10, None)]).await;
        // Someone books +5 directly in Odoo after the count was taken.
        let client = OdooClient::connect(&OdooConfig {
            url: s.sim.url(),
            db: s.sim.db().to_owned(),
            login: s.sim.login().to_owned(),
            api_key: Secret::new(s.sim.api_key()),
            call_timeout: Duration::from_millis(500),
            api: Default::default(),
        })
        .await
        .unwrap();
        let wh = client.warehouses(&["WH".into()]).await.unwrap().remove(0);
        let virtuals = client.virtual_locations().await.unwrap();
        let product = client
            .products(&["SKU-001".into()])
            .await
            .unwrap()
            .remove(0);
        let line = tally_central::merge::plan::Line {
            product: product.id,
            uom: product.uom_id,
            qty: Qty::from_units(5),
            from: virtuals.vendors,
            to: wh.stock_location,
            lot: None,
            create_lot: false,
            seqs: vec![],
        };
        let manual = tally_central::merge::plan::PlannedPicking {
            key: "MANUAL/IN/0001".into(),
            kind: tally_central::merge::plan::PickingKind::Receipt,
            picking_type: wh.receipt_type,
            from: virtuals.vendors,
            to: wh.stock_location,
            lines: vec![line],
        };
        tally_central::merge::apply::apply_once(&client, &manual, RetryPolicy::default())
            .await
            .unwrap();
        // The count, taken a minute ago: 7 on the shelf.
        let mut count = logged(2, Count, "SKU-001", 7);
        count.event.occurred_at = Some(Timestamp::from_micros(
            Timestamp::now().as_micros() - 60_000_000,
        ));
        s.append(vec![count]).await;
        engine.merge_all().await.unwrap();
        // 7 counted, plus the +5 booked in Odoo after the count.
        assert_eq!(
            s.sim.on_hand("SKU-001", "WH/Stock"),
            12.0,
            "{version:?} (started at {a0})"
        );
        assert!(s.store.dead_letters().unwrap().is_empty());
        // A count that matches needs no picking at all.
        let before = s.sim.call_count("stock.picking", "create");
        let same = LoggedEvent {
            seq: 3,
            received_at: Timestamp::now(),
            event: Event {
                qty: Qty::from_units(12),
                occurred_at: None,
                ..s.store.read_journal("wh-agent", LOG, 1, 1).unwrap()[0]
                    .event
                    .clone()
            },
        };
        s.append(vec![same]).await;
        engine.merge_all().await.unwrap();
        assert_eq!(s.sim.call_count("stock.picking", "create"), before);
        assert_eq!(s.sim.on_hand("SKU-001", "WH/Stock"), 12.0);
    }
}

#[tokio::test]
async fn a_count_is_placed_among_odoos_moves_through_both_clock_offsets() {
    let s = setup(Version::V18).await;
    // Odoo's clock runs an hour behind central's; the agent's half an hour ahead.
    s.sim.set_clock_offset(-3600);
    s.store
        .set_clock_offset("wh-agent", -30 * 60 * 1_000_000)
        .unwrap();
    s.sim.set_on_hand("SKU-001", "WH/Stock", None, 0.0).unwrap();
    // Someone books +5 in Odoo now, which is after the count (taken a minute ago).
    let before = s.sim.on_hand("SKU-001", "WH/Stock");
    let product = s.sim.product_id("SKU-001").unwrap();
    let stock = s.sim.location_id("WH/Stock").unwrap();
    let vendors = s.sim.location_id("Partners/Vendors").unwrap();
    let picking_type = s
        .sim
        .execute(
            ADMIN_UID,
            "stock.picking.type",
            "search",
            serde_json::json!([[["code", "=", "incoming"]]]),
            serde_json::json!({}),
        )
        .unwrap()
        .unwrap()[0]
        .as_i64()
        .unwrap();
    let created = s
        .sim
        .execute(
            ADMIN_UID,
            "stock.picking",
            "create",
            serde_json::json!([{"picking_type_id": picking_type, "location_id": vendors,
                "location_dest_id": stock, "move_ids": [[0, 0, {"name": "manual",
                "product_id": product, "product_uom_qty": 5.0, "quantity": 5.0, "picked": true,
                "location_id": vendors, "location_dest_id": stock}]]}]),
            serde_json::json!({}),
        )
        .unwrap()
        .unwrap();
    let id = created.as_i64().or_else(|| created[0].as_i64()).unwrap();
    s.sim
        .execute(
            ADMIN_UID,
            "stock.picking",
            "button_validate",
            serde_json::json!([[id]]),
            serde_json::json!({}),
        )
        .unwrap();
    assert_eq!(s.sim.on_hand("SKU-001", "WH/Stock"), before + 5.0);
    let agent_now = Timestamp::now().as_micros() + 30 * 60 * 1_000_000;
    let mut count = logged(1, Count, "SKU-001", 7);
    count.received_at = Timestamp::from_micros(agent_now);
    count.event.occurred_at = Some(Timestamp::from_micros(agent_now - 60_000_000));
    s.append(vec![count]).await;
    s.engine(3).await.merge_all().await.unwrap();
    // Without either correction the +5 would look older than the count and be counted over.
    assert_eq!(s.sim.on_hand("SKU-001", "WH/Stock"), 12.0);
}

#[tokio::test]
async fn a_count_pending_in_odoo_is_left_alone_and_reported() {
    let s = setup(Version::V17).await;
    s.sim
        .set_on_hand("SKU-001", "WH/Stock", None, 20.0)
        .unwrap();
    // The administrator counted 9 in Odoo and has not applied it.
    let quant = s
        .sim
        .quants("SKU-001")
        .into_iter()
        .find(|q| q.location == "WH/Stock")
        .unwrap()
        .id;
    s.sim
        .execute(
            ADMIN_UID,
            "stock.quant",
            "write",
            serde_json::json!([[quant], {"inventory_quantity": 9.0}]),
            serde_json::json!({"context": {"inventory_mode": true}}),
        )
        .unwrap();
    s.journal(1, &[(Count, "SKU-001", 15, None)]).await;
    s.engine(3).await.merge_all().await.unwrap();
    assert_eq!(s.sim.on_hand("SKU-001", "WH/Stock"), 15.0);
    let pending = s
        .sim
        .execute(
            ADMIN_UID,
            "stock.quant",
            "search_read",
            serde_json::json!([[["inventory_quantity_set", "=", true]]]),
            serde_json::json!({"fields": ["inventory_quantity"]}),
        )
        .unwrap()
        .unwrap();
    assert_eq!(pending[0]["inventory_quantity"], 9.0, "still pending");
    let notices = s.store.notices().unwrap();
    assert_eq!(notices.len(), 1);
    let (_, _, seq, notice) = &notices[0];
    assert_eq!((*seq, notice.kind.as_str()), (1, "pending-odoo-count"));
    assert!(notice.message.contains("count of 9"), "{}", notice.message);
}

#[tokio::test]
async fn lot_quantities_move_exactly_and_an_unknown_lot_parks() {
    for version in [Version::V17, Version::V18, Version::V19] {
        let s = setup(version).await;
        s.sim
            .set_on_hand("SKU-005", "WH/Stock", Some("LOT-A"), 10.0)
            .unwrap();
        let event = |seq: u64, kind: EventKind, qty: i64, lot: &str| {
            let mut e = logged(seq, kind, "SKU-005", qty);
            e.event.lot = Some(lot.into());
            e
        };
        let events = vec![
            event(1, Pick, 3, "LOT-A"),
            event(2, Receipt, 4, "LOT-B"),
            // Stock of a lot Odoo has never seen turns up: the lot is created.
            event(3, Adjustment, 2, "LOT-FOUND"),
            // Counts of a lot count that lot alone (LOT-A holds 7 by then).
            event(4, Count, 5, "LOT-A"),
            event(5, Count, 3, "LOT-COUNTED"),
            event(6, Pick, 1, "LOT-NOWHERE"),
        ];
        s.append(events).await;
        let mut engine = s.engine(3).await;
        engine.merge_all().await.unwrap();
        assert_eq!(
            s.sim.on_hand_lot("SKU-005", "WH/Stock", "LOT-A"),
            5.0,
            "{version:?}"
        );
        assert_eq!(
            s.sim.on_hand_lot("SKU-005", "WH/Stock", "LOT-COUNTED"),
            3.0,
            "{version:?}"
        );
        assert_eq!(
            s.sim.on_hand_lot("SKU-005", "WH/Stock", "LOT-B"),
            4.0,
            "{version:?}"
        );
        assert_eq!(
            s.sim.on_hand_lot("SKU-005", "WH/Stock", "LOT-FOUND"),
            2.0,
            "{version:?}"
        );
        // A lot Odoo does not know cannot leave the warehouse: parked with Odoo's reason.
        let parked: Vec<u64> = s
            .store
            .dead_letters()
            .unwrap()
            .into_iter()
            .map(|(_, _, seq, _)| seq)
            .collect();
        assert_eq!(parked, vec![6], "{version:?}");
    }
}

/// A pick or receipt of `qty` units of `sku` naming `reference`.
fn referenced(seq: u64, kind: EventKind, sku: &str, qty: i64, reference: &str) -> LoggedEvent {
    let mut e = logged(seq, kind, sku, qty);
    e.event.reference = Some(reference.into());
    e
}

#[tokio::test]
async fn a_partial_pick_of_a_sales_delivery_leaves_a_backorder_and_releases_the_picked_reservation()
{
    for version in [Version::V17, Version::V18, Version::V19] {
        let s = setup(version).await;
        s.sim
            .set_on_hand("SKU-002", "WH/Stock", None, 80.0)
            .unwrap();
        s.sim
            .set_on_hand("SKU-003", "WH/Stock", None, 98.0)
            .unwrap();
        let order = s
            .sim
            .create_sale_order(
                "WH",
                "Customer",
                &[("SKU-002", 5.0), ("SKU-003", 3.0)],
                Some("PO-4711"),
            )
            .unwrap();
        let delivery = order.deliveries[0].clone();
        let reserved = |sku: &str| -> f64 {
            s.sim
                .quants(sku)
                .iter()
                .filter(|q| q.location == "WH/Stock")
                .map(|q| q.reserved)
                .sum()
        };
        let (on_hand2, on_hand3) = (
            s.sim.on_hand("SKU-002", "WH/Stock"),
            s.sim.on_hand("SKU-003", "WH/Stock"),
        );
        let (reserved2, reserved3) = (reserved("SKU-002"), reserved("SKU-003"));
        // 3 of 5 SKU-002 scanned in two scans (one naming the picking, one the order), and
        // all 3 SKU-003; plus a pick of something the order does not hold.
        let events = vec![
            referenced(1, Pick, "SKU-002", 2, &delivery),
            referenced(2, Pick, "SKU-002", 1, &order.name),
            referenced(3, Pick, "SKU-003", 3, &delivery),
            referenced(4, Pick, "SKU-001", 1, &delivery),
        ];
        s.append(events).await;
        let mut engine = s.engine(3).await;
        assert_eq!(engine.merge_all().await.unwrap(), 4);
        assert!(s.store.dead_letters().unwrap().is_empty(), "{version:?}");

        let original = s.sim.picking(&delivery).unwrap();
        assert_eq!(original.state, "done", "{version:?}");
        let backorder = s
            .sim
            .pickings()
            .into_iter()
            .find(|p| p.backorder_of.as_deref() == Some(delivery.as_str()))
            .expect("a backorder for the 2 units not picked");
        assert_eq!(backorder.state, "assigned", "{:#?}", s.sim.pickings());
        let remaining: Vec<(String, f64)> = backorder
            .moves
            .iter()
            .map(|m| (m.sku.clone(), m.demand))
            .collect();
        assert_eq!(remaining, vec![("SKU-002".to_owned(), 2.0)], "{version:?}");
        // Stock left for what was scanned; the 5 reserved units were released and the 2 of
        // the backorder reserved again; all 3 of SKU-003 shipped.
        assert_eq!(s.sim.on_hand("SKU-002", "WH/Stock"), on_hand2 - 3.0);
        assert_eq!(s.sim.on_hand("SKU-003", "WH/Stock"), on_hand3 - 3.0);
        assert_eq!(reserved("SKU-002"), reserved2 - 3.0, "{version:?}");
        assert_eq!(reserved("SKU-003"), reserved3 - 3.0, "{version:?}");
        // The pick the order does not hold went out in Tally's own delivery.
        assert_eq!(s.sim.call_count("stock.picking", "create"), 1);

        // The next scans of the order fill the backorder, found through the original's name;
        // a replay of a finished plan reads the picking once and changes nothing.
        let events = vec![referenced(5, Pick, "SKU-002", 2, &delivery)];
        s.append(events).await;
        engine.merge_all().await.unwrap();
        assert_eq!(s.sim.picking(&backorder.name).unwrap().state, "done");
        assert_eq!(s.sim.on_hand("SKU-002", "WH/Stock"), on_hand2 - 5.0);
        assert_eq!(reserved("SKU-002"), reserved2 - 5.0, "{version:?}");
        assert!(
            !s.sim
                .pickings()
                .iter()
                .any(|p| p.backorder_of.as_deref() == Some(backorder.name.as_str())),
            "nothing left over, no second backorder"
        );
    }
}

#[tokio::test]
async fn a_fill_cut_short_at_any_call_is_applied_once_and_a_picking_validated_by_someone_else_parks()
 {
    for kind in [
        FaultKind::AppliedThenDrop,
        FaultKind::AppliedThenHttp500,
        FaultKind::SerializationFailure,
    ] {
        for (model, method) in [
            ("stock.picking", "search_read"),
            ("stock.move.line", "search_read"),
            ("stock.picking", "write"),
            ("stock.picking", "button_validate"),
        ] {
            let s = setup(Version::V17).await;
            s.order_picked(3).await;
            // Planning reads pickings too: fail the calls of the fill itself.
            let mut first = s.engine(1).await;
            let skip = if (model, method) == ("stock.picking", "search_read") {
                2
            } else {
                0
            };
            s.sim
                .inject(Fault::new(kind).times(1).on(model, method).after(skip));
            let error = first.merge_all().await.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Retryable, "{kind:?} {method}");
            drop(first);
            s.engine(3).await.merge_all().await.unwrap();
            assert_eq!(
                s.sim.on_hand("SKU-002", "WH/Stock"),
                77.0,
                "{kind:?} {method}"
            );
            let backorders: Vec<f64> = s
                .sim
                .pickings()
                .iter()
                .filter(|p| p.backorder_of.is_some())
                .flat_map(|p| p.moves.iter().map(|m| m.demand))
                .collect();
            assert_eq!(backorders, vec![2.0], "{kind:?} {method}");
        }
    }

    // Someone validates the delivery in Odoo between planning and applying: the scans are
    // parked with the reason, not applied to some other picking.
    let s = setup(Version::V18).await;
    let order = s.order_picked(3).await;
    s.sim
        .inject(Fault::new(FaultKind::Http500).on("stock.picking", "write"));
    assert!(s.engine(1).await.merge_all().await.is_err());
    let delivery = s.sim.picking(&order.deliveries[0]).unwrap();
    s.sim
        .execute(
            ADMIN_UID,
            "stock.picking",
            "button_validate",
            serde_json::json!([[delivery.id]]),
            serde_json::json!({}),
        )
        .unwrap();
    let shipped = s.sim.on_hand("SKU-002", "WH/Stock");
    s.engine(3).await.merge_all().await.unwrap();
    assert_eq!(s.sim.on_hand("SKU-002", "WH/Stock"), shipped);
    let parked: Vec<(u64, String)> = s
        .store
        .dead_letters()
        .unwrap()
        .into_iter()
        .map(|(_, _, seq, letter)| (seq, letter.reason))
        .collect();
    assert_eq!(parked, vec![(1, "picking-conflict".to_owned())]);
}

#[tokio::test]
async fn warehouses_merge_side_by_side_within_the_write_permits() {
    for max_writes in [1, 2] {
        let s = setup(Version::V18).await;
        s.store.add_agent("wh2-agent", "WH2").unwrap();
        s.sim.set_latency(Latency {
            per_call: Duration::from_millis(100),
            per_line: Duration::ZERO,
        });
        s.journal(
            1,
            &[(Receipt, "SKU-001", 3, None), (Pick, "SKU-002", 1, None)],
        )
        .await;
        let wh2: Vec<LoggedEvent> = [(1, Receipt, "SKU-001", 5), (2, Pick, "SKU-002", 2)]
            .into_iter()
            .map(|(seq, kind, sku, qty)| logged(seq, kind, sku, qty))
            .collect();
        s.journal
            .append(Arc::from("wh2-agent"), LOG, wh2)
            .await
            .unwrap();
        let client = OdooClient::connect(&OdooConfig {
            url: s.sim.url(),
            db: s.sim.db().to_owned(),
            login: s.sim.login().to_owned(),
            api_key: Secret::new(s.sim.api_key()),
            call_timeout: Duration::from_secs(5),
            api: Default::default(),
        })
        .await
        .unwrap()
        .with_max_writes(max_writes);
        let mut engine = Engine::new(s.store.clone(), client, RetryPolicy::default());
        assert_eq!(engine.merge_all().await.unwrap(), 4);
        assert_eq!(s.sim.on_hand_in_warehouse("SKU-001", "WH2"), 5.0);
        assert_eq!(s.sim.on_hand_in_warehouse("SKU-002", "WH2"), -2.0);
        // Both lanes write the same way at the same pace: with two permits their writes
        // overlap; with one they never do.
        assert_eq!(s.sim.max_concurrent_writes(), max_writes as u64);
    }
}

#[tokio::test]
async fn an_over_pick_of_a_filled_delivery_ships_what_was_scanned() {
    let s = setup(Version::V17).await;
    let order = s.order_picked(6).await;
    s.engine(3).await.merge_all().await.unwrap();
    assert_eq!(s.sim.on_hand("SKU-002", "WH/Stock"), 74.0);
    let delivery = s.sim.picking(&order.deliveries[0]).unwrap();
    assert_eq!(delivery.state, "done");
    let shipped: f64 = delivery.moves.iter().map(|m| m.quantity).sum();
    assert_eq!(shipped, 6.0);
    assert!(
        !s.sim
            .pickings()
            .iter()
            .any(|p| p.backorder_of.as_deref() == Some(delivery.name.as_str())),
        "nothing left to ship"
    );
    assert_eq!(s.sim.call_count("stock.picking", "create"), 0);
}

#[tokio::test]
async fn an_agent_for_a_warehouse_odoo_lacks_holds_only_its_own_events() {
    let s = setup(Version::V17).await;
    s.store.add_agent("ghost-agent", "NOWHERE").unwrap();
    s.journal(1, &[(Receipt, "SKU-001", 3, None)]).await;
    s.journal
        .append(
            Arc::from("ghost-agent"),
            LOG,
            vec![logged(1, Receipt, "SKU-001", 100)],
        )
        .await
        .unwrap();
    let before = s.sim.on_hand("SKU-001", "WH/Stock");
    let mut engine = s.engine(3).await;
    // WH's receipt of 3 is merged; the unknown warehouse's 100 wait.
    assert_eq!(engine.merge_all().await.unwrap(), 1);
    assert_eq!(s.sim.on_hand("SKU-001", "WH/Stock"), before + 3.0);
    let stuck = engine.stuck();
    assert_eq!(stuck.len(), 1);
    assert!(stuck[0].contains("NOWHERE"), "{stuck:?}");
    // Nothing of it was parked or skipped: it waits.
    assert_eq!(s.store.merge_cursor("ghost-agent", LOG).unwrap(), 0);
    assert!(s.store.dead_letters().unwrap().is_empty());
}

const STOCK: &str = "WH/Stock";
const SHELF: &str = "WH/Stock/Shelf 2";

impl Setup {
    /// `sku` on hand at WH/Stock and at Shelf 2, the shelf's stock the older when
    /// `shelf_oldest` (so Odoo's FIFO reserves there first), else the younger.
    fn stock_at_both(&self, sku: &str, lot: Option<(&str, &str)>, shelf_oldest: bool) {
        self.sim.add_location(STOCK, "Shelf 2").ok();
        let (stock_lot, shelf_lot) = lot.unzip();
        self.sim.set_on_hand(sku, STOCK, stock_lot, 80.0).unwrap();
        self.sim.set_on_hand(sku, SHELF, shelf_lot, 20.0).unwrap();
        let (old, young) = if shelf_oldest {
            (SHELF, STOCK)
        } else {
            (STOCK, SHELF)
        };
        for q in self.sim.quants(sku) {
            let date = match q.location.as_str() {
                l if l == old => "2026-01-01 08:00:00",
                l if l == young => "2026-06-01 08:00:00",
                _ => continue,
            };
            self.sim.set_quant_in_date(q.id, date).unwrap();
        }
    }

    /// (on hand, reserved) of `sku` at exactly `location`.
    fn at(&self, sku: &str, location: &str) -> (f64, f64) {
        self.sim
            .quants(sku)
            .iter()
            .filter(|q| q.location == location)
            .fold((0.0, 0.0), |(on, res), q| {
                (on + q.quantity, res + q.reserved)
            })
    }

    /// The demand of each open backorder of `picking`.
    fn backorder_demand(&self, picking: &str) -> Vec<f64> {
        self.sim
            .pickings()
            .iter()
            .filter(|p| p.backorder_of.as_deref() == Some(picking))
            .flat_map(|p| p.moves.iter().map(|m| m.demand))
            .collect()
    }

    /// A client for making orders as Odoo's users do.
    async fn client(&self) -> OdooClient {
        OdooClient::connect(&OdooConfig {
            url: self.sim.url(),
            db: self.sim.db().to_owned(),
            login: self.sim.login().to_owned(),
            api_key: Secret::new(self.sim.api_key()),
            call_timeout: Duration::from_secs(5),
            api: Default::default(),
        })
        .await
        .unwrap()
    }
}

/// A pick or receipt naming `reference`, scanned at `location`.
fn scanned(
    seq: u64,
    kind: EventKind,
    sku: &str,
    qty: i64,
    reference: &str,
    location: &str,
) -> LoggedEvent {
    let mut e = referenced(seq, kind, sku, qty, reference);
    e.event.location = Some(location.into());
    e
}

/// Regression (issue 9): a fill wrote the move's quantity, which Odoo applies to the lines it
/// reserved, so a scan at WH/Stock shipped from the shelf Odoo had reserved.
#[tokio::test]
async fn a_pick_filling_a_delivery_leaves_from_where_it_was_scanned_not_where_odoo_reserved() {
    for version in [Version::V17, Version::V18] {
        let s = setup(version).await;
        s.stock_at_both("SKU-002", None, true);
        let order = s
            .sim
            .create_sale_order("WH", "Customer", &[("SKU-002", 5.0)], None)
            .unwrap();
        let delivery = &order.deliveries[0];
        // Odoo's FIFO reserved the shelf's older stock.
        assert_eq!(s.at("SKU-002", SHELF), (20.0, 5.0), "{version:?}");
        s.append(vec![scanned(1, Pick, "SKU-002", 3, delivery, STOCK)])
            .await;
        s.engine(3).await.merge_all().await.unwrap();
        assert!(s.store.dead_letters().unwrap().is_empty());
        assert_eq!(s.sim.picking(delivery).unwrap().state, "done");
        let shipped: Vec<(String, f64)> = s
            .sim
            .done_move_lines()
            .into_iter()
            .filter(|l| l.picking.as_deref() == Some(delivery.as_str()))
            .map(|l| (l.from, l.quantity))
            .collect();
        assert_eq!(shipped, vec![(STOCK.to_owned(), 3.0)], "{version:?}");
        // The shelf's reservation went back; the backorder of 2 reserved it again.
        assert_eq!(s.at("SKU-002", STOCK), (77.0, 0.0), "{version:?}");
        assert_eq!(s.at("SKU-002", SHELF), (20.0, 2.0), "{version:?}");
        assert_eq!(s.backorder_demand(delivery), vec![2.0]);
    }
}

#[tokio::test]
async fn picks_of_one_delivery_at_two_locations_each_leave_from_their_own() {
    for version in [Version::V17, Version::V18] {
        let s = setup(version).await;
        s.stock_at_both("SKU-002", None, false);
        let order = s
            .sim
            .create_sale_order("WH", "Customer", &[("SKU-002", 5.0)], None)
            .unwrap();
        let delivery = &order.deliveries[0];
        assert_eq!(s.at("SKU-002", STOCK), (80.0, 5.0), "{version:?}");
        // At the reserved location and at another, in one run, one of them twice.
        s.append(vec![
            scanned(1, Pick, "SKU-002", 1, delivery, STOCK),
            scanned(2, Pick, "SKU-002", 2, &order.name, SHELF),
            scanned(3, Pick, "SKU-002", 1, delivery, STOCK),
        ])
        .await;
        s.engine(3).await.merge_all().await.unwrap();
        assert!(s.store.dead_letters().unwrap().is_empty());
        assert_eq!(s.sim.picking(delivery).unwrap().state, "done");
        assert_eq!(s.at("SKU-002", SHELF), (18.0, 0.0), "{version:?}");
        // 2 left WH/Stock; the backorder's 1 is reserved there again.
        assert_eq!(s.at("SKU-002", STOCK), (78.0, 1.0), "{version:?}");
        assert_eq!(s.backorder_demand(delivery), vec![1.0]);
        // One write for the whole picking.
        assert_eq!(s.sim.call_count("stock.picking", "write"), 1);
        assert_eq!(s.sim.call_count("stock.picking", "create"), 0);
    }
}

#[tokio::test]
async fn receipts_filling_an_expected_receipt_land_where_they_were_scanned() {
    for version in [Version::V17, Version::V18] {
        let s = setup(version).await;
        s.sim.add_location(STOCK, "Shelf 2").unwrap();
        let client = s.client().await;
        let (_, whole) = open_picking(&client, Direction::Receipt, "SKU-001", 4.0, "PO-1")
            .await
            .unwrap();
        let (_, split) = open_picking(&client, Direction::Receipt, "SKU-003", 5.0, "PO-2")
            .await
            .unwrap();
        let before = |sku| (s.at(sku, STOCK).0, s.at(sku, SHELF).0);
        let (one, three) = (before("SKU-001"), before("SKU-003"));
        s.append(vec![
            // All 4 expected into WH/Stock go to the shelf.
            scanned(1, Receipt, "SKU-001", 4, &whole, SHELF),
            // 3 of 5: 2 to the shelf, 1 where expected.
            scanned(2, Receipt, "SKU-003", 2, &split, SHELF),
            scanned(3, Receipt, "SKU-003", 1, &split, STOCK),
        ])
        .await;
        s.engine(3).await.merge_all().await.unwrap();
        assert!(s.store.dead_letters().unwrap().is_empty());
        assert_eq!(before("SKU-001"), (one.0, one.1 + 4.0), "{version:?}");
        assert_eq!(before("SKU-003"), (three.0 + 1.0, three.1 + 2.0));
        for name in [&whole, &split] {
            assert_eq!(s.sim.picking(name).unwrap().state, "done", "{name}");
        }
        assert!(s.backorder_demand(&whole).is_empty());
        assert_eq!(s.backorder_demand(&split), vec![2.0], "{version:?}");
        assert_eq!(s.sim.call_count("stock.picking", "create"), 2);
    }
}

#[tokio::test]
async fn a_lot_tracked_delivery_is_filled_from_the_scanned_lot_and_an_unknown_lot_parks() {
    for version in [Version::V17, Version::V18] {
        let s = setup(version).await;
        s.stock_at_both("SKU-005", Some(("LOT-A", "LOT-B")), false);
        let order = s
            .sim
            .create_sale_order("WH", "Customer", &[("SKU-005", 5.0)], None)
            .unwrap();
        let delivery = &order.deliveries[0];
        assert_eq!(s.at("SKU-005", STOCK), (80.0, 5.0), "{version:?}");
        let mut pick = scanned(1, Pick, "SKU-005", 3, delivery, SHELF);
        pick.event.lot = Some("LOT-B".into());
        s.append(vec![pick]).await;
        s.engine(3).await.merge_all().await.unwrap();
        assert!(s.store.dead_letters().unwrap().is_empty(), "{version:?}");
        assert_eq!(s.sim.on_hand_lot("SKU-005", SHELF, "LOT-B"), 17.0);
        assert_eq!(s.sim.on_hand_lot("SKU-005", STOCK, "LOT-A"), 80.0);
        assert_eq!(s.backorder_demand(delivery), vec![2.0]);

        // A lot Odoo does not know cannot fill the backorder: Odoo refuses, the scan parks,
        // and nothing ships.
        let backorder = s
            .sim
            .pickings()
            .into_iter()
            .find(|p| p.backorder_of.as_deref() == Some(delivery.as_str()))
            .unwrap();
        let mut pick = scanned(2, Pick, "SKU-005", 2, delivery, STOCK);
        pick.event.lot = Some("LOT-NOWHERE".into());
        s.append(vec![pick]).await;
        s.engine(3).await.merge_all().await.unwrap();
        let parked: Vec<u64> = s
            .store
            .dead_letters()
            .unwrap()
            .into_iter()
            .map(|(_, _, seq, _)| seq)
            .collect();
        assert_eq!(parked, vec![2], "{version:?}");
        assert_ne!(s.sim.picking(&backorder.name).unwrap().state, "done");
        assert_eq!(s.sim.on_hand_lot("SKU-005", STOCK, "LOT-A"), 80.0);
    }
}

/// Guards against sums of quantities that wrap or that Odoo's floats cannot hold (issue 10,
/// item 1): ten receipts of the per-event maximum were once validated as a delivery of
/// 8.4e12 to Vendors, and three events whose micro-units summed to 2^64 coalesced to 0 and
/// vanished as merged. Each is parked with its reason, nothing of it is booked, and the other
/// products of the same run are merged as usual.
#[tokio::test]
async fn quantities_beyond_what_odoo_holds_exactly_are_parked_and_nothing_is_booked() {
    let s = setup(Version::V18).await;
    for sku in ["BIG-RECEIPT", "WRAPPED", "FINE", "BIG-COUNT"] {
        s.sim
            .add_product(sku, tally_fakes::odoo_sim::Tracking::None)
            .unwrap();
    }
    // Ten receipts of the largest quantity one event may carry: 10^10 units together, beyond
    // the 2^33 units a float holds to the micro-unit.
    let mut events: Vec<LoggedEvent> = (1..=10)
        .map(|seq| logged(seq, Receipt, "BIG-RECEIPT", Qty::MAX_UNITS))
        .collect();
    // Journaled before central checked what agents send: 2^64 micro-units in three picks.
    for (seq, micros) in [(11, i64::MAX), (12, i64::MAX), (13, 2)] {
        events.push(LoggedEvent {
            seq,
            received_at: Timestamp::now(),
            event: Event::new(Pick, "WRAPPED", Qty::from_micros(micros)),
        });
    }
    events.push(logged(14, Receipt, "FINE", 4));
    s.append(events).await;
    // A count of the maximum where Odoo holds −8·10^9: a change of 9·10^9 units.
    s.sim
        .set_on_hand("BIG-COUNT", "WH/Stock", None, -8.0e9)
        .unwrap();
    s.append(vec![logged(15, Count, "BIG-COUNT", Qty::MAX_UNITS)])
        .await;

    let mut engine = s.engine(3).await;
    engine.merge_all().await.unwrap();

    assert_eq!(s.sim.on_hand("BIG-RECEIPT", "WH/Stock"), 0.0);
    assert_eq!(s.sim.on_hand("WRAPPED", "WH/Stock"), 0.0);
    assert_eq!(s.sim.on_hand("BIG-COUNT", "WH/Stock"), -8.0e9);
    assert_eq!(s.sim.on_hand("FINE", "WH/Stock"), 4.0);
    let letters = s.store.dead_letters().unwrap();
    let parked: Vec<(u64, &str, &str)> = letters
        .iter()
        .map(|(_, _, seq, l)| (*seq, l.sku.as_str(), l.reason.as_str()))
        .collect();
    let mut expected: Vec<(u64, &str, &str)> = (1..=10)
        .map(|seq| (seq, "BIG-RECEIPT", "quantity-too-large"))
        .collect();
    expected.extend([
        (11, "WRAPPED", "invalid-event"),
        (12, "WRAPPED", "parked-behind"),
        (13, "WRAPPED", "parked-behind"),
        (15, "BIG-COUNT", "quantity-too-large"),
    ]);
    assert_eq!(parked, expected);
    for (_, _, seq, letter) in &letters {
        if letter.reason == "quantity-too-large" {
            assert!(
                letter.message.contains(&format!("{:?}", letter.sku)),
                "seq {seq}: {}",
                letter.message
            );
        }
    }
    assert_eq!(s.store.merge_cursor("wh-agent", LOG).unwrap(), 15);
}

/// The bound on quantities holds phase by phase (counts no longer end a run): a product whose
/// line passes what Odoo holds exactly in a later phase is parked there, its count in that
/// phase and its events of the phase after wait behind it, while its earlier phase — moves and
/// count — lands. A count whose change is beyond the bound is parked where the phase's counts
/// are computed together, a later count of its SKU in the same phase waits behind it, and the
/// other counts of the phase are one adjustment as usual.
#[tokio::test]
async fn the_exact_bound_holds_in_every_phase_and_for_counts_computed_together() {
    let s = setup(Version::V18).await;
    for sku in ["A", "B", "C", "D"] {
        s.sim
            .add_product(sku, tally_fakes::odoo_sim::Tracking::None)
            .unwrap();
    }
    s.sim.add_location(STOCK, "Shelf 2").unwrap();
    s.sim.set_on_hand("C", STOCK, None, -8.0e9).unwrap();
    let at_shelf = |mut e: LoggedEvent| {
        e.event.location = Some(SHELF.into());
        e
    };
    let mut events = vec![
        // Phase 1: A's receipt and count, B and D apart, C's two counts.
        logged(1, Receipt, "A", 4),
        logged(2, Count, "A", 10),
        logged(3, Receipt, "B", 5),
        // A change of 9·10^9 units: beyond 2^33.
        logged(4, Count, "C", Qty::MAX_UNITS),
        at_shelf(logged(5, Count, "C", 3)),
        logged(6, Count, "D", 7),
    ];
    // Phase 2: ten receipts of A of the largest quantity (10^10 together), then A's count.
    events.extend((7..=16).map(|seq| logged(seq, Receipt, "A", Qty::MAX_UNITS)));
    events.push(logged(17, Count, "A", 1));
    // Phase 3: after A's second count.
    events.push(logged(18, Receipt, "A", 1));
    s.append(events).await;

    s.engine(3).await.merge_all().await.unwrap();

    assert_eq!(s.sim.on_hand("A", STOCK), 10.0);
    assert_eq!(s.sim.on_hand("B", STOCK), 5.0);
    assert_eq!(s.sim.on_hand("C", STOCK), -8.0e9);
    assert_eq!(s.sim.on_hand("C", SHELF), 0.0);
    assert_eq!(s.sim.on_hand("D", STOCK), 7.0);
    let letters = s.store.dead_letters().unwrap();
    let mut parked: Vec<(u64, &str, &str)> = letters
        .iter()
        .map(|(_, _, seq, l)| (*seq, l.sku.as_str(), l.reason.as_str()))
        .collect();
    parked.sort();
    let mut expected = vec![(4, "C", "quantity-too-large"), (5, "C", "parked-behind")];
    expected.extend((7..=16).map(|seq| (seq, "A", "quantity-too-large")));
    expected.extend([(17, "A", "parked-behind"), (18, "A", "parked-behind")]);
    assert_eq!(parked, expected);
    for (_, _, seq, letter) in &letters {
        if letter.reason == "quantity-too-large" {
            assert!(
                letter.message.contains(&format!("{:?}", letter.sku)),
                "seq {seq}: {}",
                letter.message
            );
        }
    }
    assert_eq!(s.store.merge_cursor("wh-agent", LOG).unwrap(), 18);
}

/// A durable write of the merge that waits (for the store's write lock, for an fsync) stalls
/// neither another warehouse's lane nor the sync listener: on a runtime of one thread, while
/// the WH lane is held inside its first commit, the WH2 lane merges to its end and an agent's
/// handshake is answered.
#[tokio::test(flavor = "current_thread")]
async fn a_slow_merge_commit_stalls_neither_another_lane_nor_the_sync_listener() {
    use std::ops::ControlFlow::{Break, Continue};
    use std::sync::atomic::{AtomicBool, Ordering};

    use futures_util::{SinkExt, StreamExt};
    use tally_central::Central;
    use tally_central::config::{Config, Transport};
    use tally_protocol::{Hello, Message, decode_message, encode_message};
    use tokio_tungstenite::tungstenite::Message as Ws;

    let s = setup(Version::V18).await;
    s.store.add_agent("wh2-agent", "WH2").unwrap();
    s.journal(1, &[(Receipt, "SKU-001", 3, None)]).await;
    let wh2 = vec![
        logged(1, Receipt, "SKU-001", 5),
        logged(2, Pick, "SKU-002", 2),
    ];
    s.journal
        .append(Arc::from("wh2-agent"), LOG, wh2)
        .await
        .unwrap();
    // The WH lane's first write waits on its blocking thread until released.
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = std::sync::Mutex::new(released);
    let held = AtomicBool::new(false);
    let hook = Arc::new(move |agent: &str| {
        if agent == "wh-agent" && !held.swap(true, Ordering::SeqCst) {
            entered_tx.send(()).unwrap();
            released
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(60))
                .expect("the test releases the held commit");
        }
    });
    let mut engine = s.engine(3).await.with_before_write(hook);
    let merge = tokio::spawn(async move { engine.merge_all().await });
    tokio::time::timeout(Duration::from_secs(20), entered.recv())
        .await
        .expect("the WH lane reaches its first commit")
        .unwrap();

    // The other lane merges everything while WH's commit is held.
    tally_fakes::wait::wait_until("the WH2 lane to merge", Duration::from_secs(20), || {
        let cursor = s.store.merge_cursor("wh2-agent", LOG);
        async move {
            let cursor = cursor?;
            Ok(if cursor == 2 {
                Break(())
            } else {
                Continue(format!("WH2's cursor at {cursor}"))
            })
        }
    })
    .await
    .unwrap();
    assert_eq!(s.sim.on_hand_in_warehouse("SKU-001", "WH2"), 5.0);
    assert_eq!(
        s.store.merge_cursor("wh-agent", LOG).unwrap(),
        0,
        "WH is held"
    );

    // A central on the same thread answers an agent's handshake.
    let dir = tempfile::tempdir().unwrap();
    let central = Central::open(Config {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        transport: Transport::Plaintext,
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        admin_token: Secret::new("admin-token-0123456789"),
        read_token: None,
        admin_tls: false,
        token_grace: Duration::from_secs(60),
        max_connections: 10,
        odoo: None,
        merge: Default::default(),
        availability_poll: Duration::from_secs(10),
        channels: Vec::new(),
        deprecated: Vec::new(),
    })
    .unwrap();
    let token = central.store().add_agent("a1", "WH").unwrap();
    let sync = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1/sync", sync.local_addr().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let served = tokio::spawn(central.serve(sync, admin, shutdown.clone()));
    let welcome = tokio::time::timeout(Duration::from_secs(20), async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let hello = Message::Hello(Hello {
            agent_id: "a1".into(),
            warehouse: "WH".into(),
            log_id: LOG,
            head_seq: 0,
            oldest_unacked_at: None,
            token,
            agent_version: "test".into(),
        });
        ws.send(Ws::Binary(encode_message(&hello).into()))
            .await
            .unwrap();
        loop {
            match ws.next().await {
                Some(Ok(Ws::Binary(bytes))) => return decode_message(&bytes).unwrap(),
                Some(Ok(_)) => continue,
                other => panic!("central closed the handshake: {other:?}"),
            }
        }
    })
    .await
    .expect("central answers the handshake while a merge commit is held");
    assert!(matches!(welcome, Message::Welcome(_)), "{welcome:?}");
    shutdown.cancel();
    served.await.unwrap().unwrap();

    release.send(()).unwrap();
    assert_eq!(merge.await.unwrap().unwrap(), 3);
    assert_eq!(s.store.merge_cursor("wh-agent", LOG).unwrap(), 1);
    assert_eq!(s.sim.on_hand_in_warehouse("SKU-001", "WH2"), 5.0);
}

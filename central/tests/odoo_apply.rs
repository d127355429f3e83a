//! Applying pickings to Odoo exactly once, against the Odoo simulator of `tally-tests`: the
//! normal two-call path, replays, and every failure kind Odoo was seen to produce, including
//! calls that were applied but whose answer was lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tally_central::merge::apply::{Applied, RetryPolicy, apply_once, resume};
use tally_central::merge::plan::{Line, PickingKind, PlannedPicking};
use tally_central::odoo::breaker::{Breaker, CircuitState};
use tally_central::odoo::{ErrorKind, OdooClient, OdooConfig};
use tally_fakes::odoo_sim::{Fault, FaultKind, OdooSim, SimConfig, Tracking, Version};
use tally_protocol::{Qty, Secret};

const CALL_TIMEOUT: Duration = Duration::from_millis(500);

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 6,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(10),
    }
}

/// A client whose circuit breaker cools down in 40 ms (longer than all of [`fast_retries`]'s
/// delays after it opens).
async fn connect(sim: &OdooSim) -> OdooClient {
    let config = OdooConfig {
        url: sim.url(),
        db: sim.db().to_owned(),
        login: sim.login().to_owned(),
        api_key: Secret::new(sim.api_key()),
        call_timeout: CALL_TIMEOUT,
        api: Default::default(),
    };
    let breaker = Breaker::new(Duration::from_millis(40), Duration::from_millis(40));
    OdooClient::connect_with(&config, Arc::new(breaker))
        .await
        .unwrap()
}

/// A receipt of `qty` SKU-001 into WH/Stock, resolved through the client as the merge would.
async fn receipt(client: &OdooClient, key: &str, sku: &str, qty: i64) -> PlannedPicking {
    let wh = client.warehouses(&["WH".into()]).await.unwrap().remove(0);
    let virtuals = client.virtual_locations().await.unwrap();
    let product = client.products(&[sku.into()]).await.unwrap().remove(0);
    PlannedPicking {
        key: key.into(),
        kind: PickingKind::Receipt,
        picking_type: wh.receipt_type,
        from: virtuals.vendors,
        to: wh.stock_location,
        lines: vec![Line {
            product: product.id,
            uom: product.uom_id,
            qty: Qty::from_units(qty),
            from: virtuals.vendors,
            to: wh.stock_location,
            lot: None,
            create_lot: false,
            seqs: vec![1],
        }],
    }
}

#[tokio::test]
async fn a_picking_is_applied_in_two_calls_and_a_replay_applies_nothing() {
    for version in [Version::V17, Version::V18, Version::V19] {
        let sim = OdooSim::start(SimConfig::new(version)).await.unwrap();
        let client = connect(&sim).await;
        assert_eq!(client.major_version(), version.major() as u32);
        let before = sim.on_hand("SKU-001", "WH/Stock");
        let picking = receipt(&client, "tally-test-1-R1", "SKU-001", 7).await;
        assert_eq!(
            apply_once(&client, &picking, fast_retries()).await,
            Ok(Applied::Done)
        );
        assert_eq!(sim.on_hand("SKU-001", "WH/Stock"), before + 7.0);
        assert_eq!(sim.call_count("stock.picking", "create"), 1);
        assert_eq!(sim.call_count("stock.picking", "button_validate"), 1);

        assert_eq!(
            apply_once(&client, &picking, fast_retries()).await,
            Ok(Applied::AlreadyDone)
        );
        assert_eq!(
            resume(&client, &picking, fast_retries()).await,
            Ok(Applied::AlreadyDone)
        );
        assert_eq!(
            sim.on_hand("SKU-001", "WH/Stock"),
            before + 7.0,
            "{version:?}: applied once"
        );
    }
}

#[tokio::test]
async fn every_failure_kind_ends_with_exactly_one_application() {
    let kinds = [
        FaultKind::SerializationFailure,
        FaultKind::OperationalError,
        FaultKind::PoolError,
        FaultKind::Http500,
        FaultKind::Hang,
        FaultKind::AppliedThenHttp500,
        FaultKind::AppliedThenDrop,
        FaultKind::AppliedThenHang,
    ];
    for version in [Version::V17, Version::V18, Version::V19] {
        let sim = OdooSim::start(SimConfig::new(version)).await.unwrap();
        let client = connect(&sim).await;
        for (i, kind) in kinds.into_iter().enumerate() {
            for method in ["create", "button_validate"] {
                let key = format!("tally-fault-{i}-{method}");
                let picking = receipt(&client, &key, "SKU-002", 3).await;
                let before = sim.on_hand("SKU-002", "WH/Stock");
                sim.inject(Fault::new(kind).times(1).on("stock.picking", method));
                let applied = apply_once(&client, &picking, fast_retries()).await;
                assert!(
                    applied.is_ok(),
                    "{version:?} {kind:?} on {method}: {applied:?}"
                );
                assert_eq!(
                    sim.on_hand("SKU-002", "WH/Stock"),
                    before + 3.0,
                    "{version:?} {kind:?} on {method}"
                );
                assert!(sim.pending_faults().is_empty());
            }
        }
    }
}

#[tokio::test]
async fn failures_that_outlast_the_retries_are_returned_and_a_later_resume_finishes() {
    let sim = OdooSim::start(SimConfig::new(Version::V18)).await.unwrap();
    let client = connect(&sim).await;
    let picking = receipt(&client, "tally-outage-R1", "SKU-003", 4).await;
    let before = sim.on_hand("SKU-003", "WH/Stock");
    sim.inject(
        Fault::new(FaultKind::AppliedThenHttp500)
            .times(1)
            .on("stock.picking", "create"),
    );
    sim.inject(Fault::new(FaultKind::PoolError).times(20));
    let calls = sim.total_calls();
    let error = apply_once(&client, &picking, fast_retries())
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Retryable);
    // Five failures in a row opened the circuit: the last attempts did not reach Odoo.
    assert_eq!(error.name, "circuit-open");
    assert_eq!(sim.total_calls() - calls, u64::from(Breaker::THRESHOLD));
    assert_ne!(
        client.breaker().state(Instant::now()).0,
        CircuitState::Closed
    );
    sim.clear_faults();
    // Retries spaced wider than the cool-down: the circuit lets a probe through.
    let patient = RetryPolicy {
        attempts: 4,
        min_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(100),
    };
    assert_eq!(resume(&client, &picking, patient).await, Ok(Applied::Done));
    assert_eq!(
        client.breaker().state(Instant::now()).0,
        CircuitState::Closed
    );
    assert_eq!(sim.on_hand("SKU-003", "WH/Stock"), before + 4.0);
    assert_eq!(
        sim.call_count("stock.picking", "create"),
        1,
        "the picking was created once"
    );
}

#[tokio::test]
async fn refusals_of_the_data_are_permanent() {
    let sim = OdooSim::start(SimConfig::new(Version::V17)).await.unwrap();
    sim.add_product("LOT-ONLY", Tracking::Lot).unwrap();
    let client = connect(&sim).await;
    // A lot-tracked product without its lot: Odoo refuses the validation.
    let picking = receipt(&client, "tally-lot-R1", "LOT-ONLY", 2).await;
    let error = apply_once(&client, &picking, fast_retries())
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permanent, "{error}");
    // A product that does not exist.
    let mut ghost = receipt(&client, "tally-ghost-R1", "SKU-001", 1).await;
    ghost.lines[0].product = 999_999;
    let error = apply_once(&client, &ghost, fast_retries())
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permanent, "{error}");
}

#[tokio::test]
async fn bad_credentials_are_an_auth_error_that_never_shows_the_key() {
    let sim = OdooSim::start(SimConfig::new(Version::V18)).await.unwrap();
    let key = "0000000000000000000000000000000000000000";
    let error = OdooClient::connect(&OdooConfig {
        url: sim.url(),
        db: sim.db().to_owned(),
        login: sim.login().to_owned(),
        api_key: Secret::new(key),
        call_timeout: CALL_TIMEOUT,
        api: Default::default(),
    })
    .await
    .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Auth);
    assert!(!error.to_string().contains(key));
    let error = OdooClient::connect(&OdooConfig {
        url: sim.url(),
        db: "no_such_db".into(),
        login: sim.login().to_owned(),
        api_key: Secret::new(sim.api_key()),
        call_timeout: CALL_TIMEOUT,
        api: Default::default(),
    })
    .await
    .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Auth, "{error}");
}

/// A delivery Tally creates leaves from the location scanned even when that location's stock is
/// all reserved (by an open sales order) and a sublocation holds free stock: Odoo would reserve
/// a move's `quantity` there by its removal strategy, so the picking carries its own picked
/// lines at the scanned location instead (docs/odoo.md#pickings). Red when the move's quantity
/// is written instead.
#[tokio::test]
async fn a_delivery_leaves_from_the_scanned_location_when_its_stock_is_reserved() {
    for version in [Version::V17, Version::V18, Version::V19] {
        let sim = OdooSim::start(SimConfig::new(version)).await.unwrap();
        sim.add_location("WH/Stock", "Shelf 2").unwrap();
        sim.set_on_hand("SKU-001", "WH/Stock", None, 5.0).unwrap();
        sim.set_on_hand("SKU-001", "WH/Stock/Shelf 2", None, 10.0)
            .unwrap();
        // The older stock at WH/Stock goes first: the order reserves all of it.
        sim.create_sale_order("WH", "Customer", &[("SKU-001", 5.0)], None)
            .unwrap();
        let client = connect(&sim).await;
        let wh = client.warehouses(&["WH".into()]).await.unwrap().remove(0);
        let virtuals = client.virtual_locations().await.unwrap();
        let product = client
            .products(&["SKU-001".into()])
            .await
            .unwrap()
            .remove(0);
        let picking = PlannedPicking {
            key: "tally-test-1-D1".into(),
            kind: PickingKind::Delivery,
            picking_type: wh.delivery_type,
            from: wh.stock_location,
            to: virtuals.customers,
            lines: vec![Line {
                product: product.id,
                uom: product.uom_id,
                qty: Qty::from_units(3),
                from: wh.stock_location,
                to: virtuals.customers,
                lot: None,
                create_lot: false,
                seqs: vec![1],
            }],
        };
        assert_eq!(
            apply_once(&client, &picking, fast_retries()).await,
            Ok(Applied::Done)
        );
        assert_eq!(sim.on_hand("SKU-001", "WH/Stock"), 2.0, "{version:?}");
        assert_eq!(
            sim.on_hand("SKU-001", "WH/Stock/Shelf 2"),
            10.0,
            "{version:?}"
        );
    }
}

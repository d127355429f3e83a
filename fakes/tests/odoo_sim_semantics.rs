//! What the Odoo simulator promises beyond response shapes (docs/odoo.md),
//! on both versions: exact stock deltas from the 2-call flow, negative stock, the picking
//! name as an idempotency key, 17 vs 18 on validating a done picking, backorders from a
//! partial pick, the "picked" hazard, a move's lines replaced at another location (docs/odoo.md),
//! and the fault switch — every fault kind leaves nothing
//! applied except "applied, response lost", which applies exactly once. Also the
//! `tally-odoo-sim` binary's startup line and the latency model.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tally_fakes::odoo_sim::{
    ADMIN_UID, Fault, FaultKind, Latency, OdooSim, SimConfig, Tracking, Version,
};

const VERSIONS: [Version; 2] = [Version::V17, Version::V18];

/// A minimal JSON-RPC client, as the integration would speak to Odoo.
struct Rpc {
    client: reqwest::Client,
    url: String,
    db: String,
    uid: i64,
    key: String,
}

/// An RPC failure: an Odoo error (`data.name`, `message`) or a transport problem.
#[derive(Debug)]
enum Failure {
    Odoo(String, String),
    Transport(String),
}

impl Failure {
    fn name(&self) -> &str {
        match self {
            Failure::Odoo(name, _) => name,
            Failure::Transport(_) => "transport",
        }
    }

    fn detail(&self) -> &str {
        match self {
            Failure::Odoo(_, message) | Failure::Transport(message) => message,
        }
    }
}

impl Rpc {
    fn new(sim: &OdooSim) -> Rpc {
        Rpc::with_timeout(sim, Duration::from_secs(30))
    }

    fn with_timeout(sim: &OdooSim, timeout: Duration) -> Rpc {
        Rpc {
            client: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("client"),
            url: sim.jsonrpc_url(),
            db: sim.db().to_owned(),
            uid: sim.uid(),
            key: sim.api_key().to_owned(),
        }
    }

    async fn raw(&self, service: &str, method: &str, args: Value) -> Result<Value, Failure> {
        let body = json!({"jsonrpc": "2.0", "method": "call", "id": 1,
                          "params": {"service": service, "method": method, "args": args}});
        let response = self
            .client
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| Failure::Transport(e.to_string()))?;
        if !response.status().is_success() {
            return Err(Failure::Transport(format!("HTTP {}", response.status())));
        }
        let text = response
            .text()
            .await
            .map_err(|e| Failure::Transport(format!("body: {e}")))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| Failure::Transport(format!("not JSON: {e}")))?;
        if let Some(error) = value.get("error") {
            return Err(Failure::Odoo(
                error["data"]["name"].as_str().unwrap_or("").to_owned(),
                error["data"]["message"].as_str().unwrap_or("").to_owned(),
            ));
        }
        Ok(value.get("result").cloned().unwrap_or(Value::Null))
    }

    async fn call(
        &self,
        model: &str,
        method: &str,
        args: Value,
        kwargs: Value,
    ) -> Result<Value, Failure> {
        self.raw(
            "object",
            "execute_kw",
            json!([self.db, self.uid, self.key, model, method, args, kwargs]),
        )
        .await
    }

    async fn ok(&self, model: &str, method: &str, args: Value, kwargs: Value) -> Value {
        match self.call(model, method, args, kwargs).await {
            Ok(value) => value,
            Err(failure) => panic!("{model}.{method} failed: {failure:?}"),
        }
    }

    /// The recommended 2-call flow's first call: a picking of `quantity` × `sku` with the
    /// done quantity preset, named `key`.
    async fn create_picking(
        &self,
        key: &str,
        receipt: bool,
        sku_id: i64,
        quantity: f64,
    ) -> Result<Value, Failure> {
        // WH: receipts 1, deliveries 2 (same in 17 and 18); Vendors 4, WH/Stock 8, Customers 5.
        let (picking_type, from, to) = if receipt { (1, 4, 8) } else { (2, 8, 5) };
        self.call(
            "stock.picking",
            "create",
            json!([{"picking_type_id": picking_type, "location_id": from, "location_dest_id": to,
                    "name": key, "origin": key,
                    "move_ids": [[0, 0, {"name": key, "product_id": sku_id, "product_uom": 1,
                                         "product_uom_qty": quantity, "quantity": quantity,
                                         "picked": true, "location_id": from,
                                         "location_dest_id": to}]]}]),
            json!({}),
        )
        .await
    }

    /// The 2-call flow's second call, dropping any remainder.
    async fn validate(&self, picking: i64) -> Result<Value, Failure> {
        self.call(
            "stock.picking",
            "button_validate",
            json!([[picking]]),
            json!({"context": {"skip_backorder": true, "picking_ids_not_to_backorder": [picking],
                               "skip_sms": true}}),
        )
        .await
    }
}

async fn start(version: Version) -> OdooSim {
    OdooSim::start(SimConfig::new(version))
        .await
        .expect("simulator")
}

#[tokio::test]
async fn two_call_flows_move_quants_by_exactly_the_delta() {
    for version in VERSIONS {
        let sim = start(version).await;
        let rpc = Rpc::new(&sim);
        let sku = sim.product_id("SKU-001").unwrap();
        let receipt = rpc
            .create_picking("edge:r1", true, sku, 10.0)
            .await
            .unwrap();
        assert_eq!(sim.picking("edge:r1").unwrap().state, "assigned");
        assert_eq!(
            rpc.validate(receipt.as_i64().unwrap()).await.unwrap(),
            json!(true)
        );
        assert_eq!(sim.on_hand("SKU-001", "WH/Stock"), 10.0, "{version:?}");

        let delivery = rpc
            .create_picking("edge:d1", false, sku, 3.0)
            .await
            .unwrap();
        // The preset quantity is reserved until validation (docs/odoo.md#reservations).
        assert_eq!(sim.availability("SKU-001", "WH"), (10.0, 7.0, 7.0));
        assert_eq!(
            rpc.validate(delivery.as_i64().unwrap()).await.unwrap(),
            json!(true)
        );
        assert_eq!(sim.on_hand("SKU-001", "WH/Stock"), 7.0);
        assert_eq!(sim.availability("SKU-001", "WH"), (7.0, 7.0, 7.0));
        let done: Vec<_> = sim
            .done_move_lines()
            .into_iter()
            .map(|l| (l.reference, l.quantity, l.from, l.to))
            .collect();
        assert_eq!(
            done,
            vec![
                (
                    "edge:r1".to_owned(),
                    10.0,
                    "Partners/Vendors".to_owned(),
                    "WH/Stock".to_owned()
                ),
                (
                    "edge:d1".to_owned(),
                    3.0,
                    "WH/Stock".to_owned(),
                    "Partners/Customers".to_owned()
                ),
            ]
        );
        assert_eq!(sim.call_count("stock.picking", "create"), 2);
        assert_eq!(sim.call_count("stock.picking", "button_validate"), 2);
    }
}

#[tokio::test]
async fn negative_stock_is_allowed_including_on_lots() {
    for version in VERSIONS {
        let sim = start(version).await;
        let rpc = Rpc::new(&sim);
        let sku = sim.product_id("SKU-002").unwrap();
        sim.set_on_hand("SKU-002", "WH/Stock", None, 10.0).unwrap();
        let delivery = rpc
            .create_picking("edge:neg", false, sku, 13.0)
            .await
            .unwrap();
        assert_eq!(
            rpc.validate(delivery.as_i64().unwrap()).await.unwrap(),
            json!(true)
        );
        assert_eq!(sim.on_hand("SKU-002", "WH/Stock"), -3.0, "{version:?}");

        // Lot-tracked: delivering 5 from a lot holding 2 leaves it at -3
        // (docs/odoo.md#negative-stock).
        sim.set_on_hand("SKU-005", "WH/Stock", Some("LOT-B"), 2.0)
            .unwrap();
        let lot = rpc
            .ok(
                "stock.lot",
                "search",
                json!([[["name", "=", "LOT-B"]]]),
                json!({}),
            )
            .await[0]
            .as_i64()
            .unwrap();
        let product = sim.product_id("SKU-005").unwrap();
        let picking = rpc
            .ok(
                "stock.picking",
                "create",
                json!([{"picking_type_id": 2, "location_id": 8, "location_dest_id": 5,
                        "name": "edge:lot-neg",
                        "move_ids": [[0, 0, {"product_id": product, "product_uom_qty": 5,
                                             "name": "SKU-005",
                                             "location_id": 8, "location_dest_id": 5}]],
                        "move_line_ids": [[0, 0, {"product_id": product, "quantity": 5,
                                                  "lot_id": lot, "picked": true,
                                                  "location_id": 8, "location_dest_id": 5}]]}]),
                json!({}),
            )
            .await;
        assert_eq!(
            rpc.validate(picking.as_i64().unwrap()).await.unwrap(),
            json!(true)
        );
        assert_eq!(sim.on_hand_lot("SKU-005", "WH/Stock", "LOT-B"), -3.0);
    }
}

#[tokio::test]
async fn a_duplicate_picking_name_is_refused_and_creates_nothing() {
    for version in VERSIONS {
        let sim = start(version).await;
        let rpc = Rpc::new(&sim);
        let sku = sim.product_id("SKU-003").unwrap();
        rpc.create_picking("edge-WH-batch-42", true, sku, 1.0)
            .await
            .unwrap();
        let before = (
            sim.pickings().len(),
            sim.move_lines().len(),
            sim.quants("SKU-003"),
        );
        let error = rpc
            .create_picking("edge-WH-batch-42", true, sku, 1.0)
            .await
            .unwrap_err();
        match error {
            Failure::Odoo(name, message) => {
                assert_eq!(name, "odoo.exceptions.ValidationError");
                assert_eq!(
                    message,
                    "The operation cannot be completed: Reference must be unique per company!"
                );
            }
            other => panic!("{other:?}"),
        }
        let after = (
            sim.pickings().len(),
            sim.move_lines().len(),
            sim.quants("SKU-003"),
        );
        assert_eq!(
            before, after,
            "{version:?}: a refused create left something behind"
        );
        // `origin` is not unique: two pickings may share it (docs/odoo.md#exactly-once).
        for name in ["edge:o1", "edge:o2"] {
            rpc.ok(
                "stock.picking",
                "create",
                json!([{"picking_type_id": 1, "origin": "edge:same", "name": name}]),
                json!({}),
            )
            .await;
        }
        let found = rpc
            .ok(
                "stock.picking",
                "search_count",
                json!([[["origin", "=", "edge:same"]]]),
                json!({}),
            )
            .await;
        assert_eq!(found, json!(2));
    }
}

#[tokio::test]
async fn validating_a_done_picking_again_never_reapplies() {
    for version in VERSIONS {
        let sim = start(version).await;
        let rpc = Rpc::new(&sim);
        let sku = sim.product_id("SKU-001").unwrap();
        let picking = rpc
            .create_picking("edge:twice", true, sku, 4.0)
            .await
            .unwrap();
        let picking = picking.as_i64().unwrap();
        assert_eq!(rpc.validate(picking).await.unwrap(), json!(true));
        let again = rpc.validate(picking).await;
        match version {
            Version::V17 => match again {
                Err(Failure::Odoo(name, message)) => {
                    assert_eq!(name, "odoo.exceptions.UserError");
                    assert!(message.starts_with(
                        "You cannot validate a transfer if no quantities are reserved."
                    ));
                }
                other => panic!("17 should refuse: {other:?}"),
            },
            Version::V18 | Version::V19 => assert_eq!(again.unwrap(), json!(true)),
        }
        assert_eq!(sim.on_hand("SKU-001", "WH/Stock"), 4.0, "{version:?}");
        assert_eq!(sim.done_move_lines().len(), 1);
    }
}

/// A sales order's delivery, as the lab's admin made them (docs/odoo.md#open-pickings).
async fn so_delivery(sim: &OdooSim, rpc: &Rpc) -> (i64, Vec<(i64, String)>) {
    for sku in ["SKU-002", "SKU-003"] {
        sim.set_on_hand(sku, "WH/Stock", None, 50.0).unwrap();
    }
    let order = sim
        .create_sale_order(
            "WH",
            "Edge Fulfil Customer",
            &[("SKU-002", 5.0), ("SKU-003", 3.0)],
            Some("lab-ref"),
        )
        .unwrap();
    assert_eq!(order.deliveries.len(), 1);
    let found = rpc
        .ok(
            "stock.picking",
            "web_search_read",
            json!([[["sale_id.name", "=", order.name]],
                   {"state": {}, "note": {}, "origin": {},
                    "move_ids": {"fields": {"product_id": {"fields": {"default_code": {}}},
                                            "product_uom_qty": {}, "quantity": {}, "state": {}}}}]),
            json!({}),
        )
        .await;
    let record = &found["records"][0];
    assert_eq!(found["length"], json!(1));
    assert_eq!(record["state"], json!("assigned"));
    let origin = record["origin"].as_str().unwrap();
    match sim.version() {
        Version::V17 => assert_eq!(origin, order.name),
        Version::V18 | Version::V19 => assert_eq!(origin, format!("{} - lab-ref", order.name)),
    }
    let moves = record["move_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(
                m["quantity"], m["product_uom_qty"],
                "reserved at confirmation"
            );
            (
                m["id"].as_i64().unwrap(),
                m["product_id"]["default_code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (record["id"].as_i64().unwrap(), moves)
}

#[tokio::test]
async fn a_partial_pick_makes_a_reserved_backorder() {
    for version in VERSIONS {
        let sim = start(version).await;
        let rpc = Rpc::new(&sim);
        let (picking, moves) = so_delivery(&sim, &rpc).await;
        let (before_on_hand, before_free, _) = sim.availability("SKU-002", "WH");
        // 3 of 5 × SKU-002 and 3 of 3 × SKU-003 (docs/odoo.md#open-pickings).
        let commands: Vec<Value> = moves
            .iter()
            .map(|(id, _)| json!([1, id, {"quantity": 3, "picked": true}]))
            .collect();
        rpc.ok(
            "stock.picking",
            "write",
            json!([[picking], {"move_ids": commands}]),
            json!({}),
        )
        .await;
        let result = rpc
            .ok(
                "stock.picking",
                "button_validate",
                json!([[picking]]),
                json!({"context": {"skip_backorder": true, "skip_sms": true}}),
            )
            .await;
        assert_eq!(result, json!(true));
        let pickings = sim.pickings();
        let original = pickings.iter().find(|p| p.id == picking).unwrap();
        let backorder = pickings
            .iter()
            .find(|p| p.backorder_of.as_deref() == Some(original.name.as_str()))
            .expect("a backorder");
        assert_eq!(original.state, "done");
        assert_eq!(backorder.state, "assigned", "{version:?}");
        assert_eq!(backorder.sale_order, original.sale_order);
        assert_eq!(backorder.moves.len(), 1);
        assert_eq!(
            (
                backorder.moves[0].sku.as_str(),
                backorder.moves[0].demand,
                backorder.moves[0].quantity
            ),
            ("SKU-002", 2.0, 2.0)
        );
        let (on_hand, free, _) = sim.availability("SKU-002", "WH");
        assert_eq!(on_hand, before_on_hand - 3.0);
        // 5 reserved units released, 2 reserved again for the backorder.
        assert_eq!(free, before_free);
        // The SO line delivered 3 of 5.
        let lines = rpc
            .ok(
                "sale.order.line",
                "search_read",
                json!([[["product_id.default_code", "=", "SKU-002"]]]),
                json!({"fields": ["qty_delivered", "product_uom_qty"]}),
            )
            .await;
        assert_eq!(lines[0]["qty_delivered"], json!(3.0));
    }
}

/// The fill write found on real 17, 18 and 19 (docs/odoo.md): deleting a move's lines and
/// creating picked ones elsewhere moves its reservation there, repeats harmlessly, and ships
/// from there; the backorder is reserved by Odoo's own rules.
#[tokio::test]
async fn replacing_a_moves_lines_ships_from_the_new_lines_location() {
    for version in VERSIONS {
        let sim = start(version).await;
        let rpc = Rpc::new(&sim);
        sim.add_location("WH/Stock", "Shelf 2").unwrap();
        let (picking, moves) = so_delivery(&sim, &rpc).await;
        sim.set_on_hand("SKU-002", "WH/Stock/Shelf 2", None, 20.0)
            .unwrap();
        let shelf = sim.location_id("WH/Stock/Shelf 2").unwrap();
        let (mv, _) = moves.iter().find(|(_, sku)| sku == "SKU-002").unwrap();
        let at = |location: &str| -> (f64, f64) {
            sim.quants("SKU-002")
                .iter()
                .filter(|q| q.location == location)
                .fold((0.0, 0.0), |(q, r), row| {
                    (q + row.quantity, r + row.reserved)
                })
        };
        assert_eq!(at("WH/Stock"), (50.0, 5.0), "{version:?}");
        for _ in 0..2 {
            let lines = rpc
                .ok(
                    "stock.move.line",
                    "search_read",
                    json!([[["move_id", "in", [mv]]]]),
                    json!({"fields": ["id", "move_id"]}),
                )
                .await;
            let mut commands: Vec<Value> = lines
                .as_array()
                .unwrap()
                .iter()
                .map(|l| json!([2, l["id"]]))
                .collect();
            commands.push(
                json!([0, 0, {"product_id": sim.product_id("SKU-002").unwrap(),
                                        "product_uom_id": 1, "location_id": shelf,
                                        "location_dest_id": 5, "quantity": 3, "picked": true,
                                        "picking_id": picking}]),
            );
            rpc.ok(
                "stock.picking",
                "write",
                json!([[picking], {"move_ids": [[1, mv, {"move_line_ids": commands,
                                                          "picked": true}]]}]),
                json!({}),
            )
            .await;
            assert_eq!(at("WH/Stock"), (50.0, 0.0), "{version:?}");
            assert_eq!(at("WH/Stock/Shelf 2"), (20.0, 3.0), "{version:?}");
        }
        let result = rpc
            .ok(
                "stock.picking",
                "button_validate",
                json!([[picking]]),
                json!({"context": {"skip_backorder": true, "skip_sms": true}}),
            )
            .await;
        assert_eq!(result, json!(true));
        // SKU-003 was not scanned: it goes whole to the backorder with SKU-002's 2, both
        // reserved again at WH/Stock.
        assert_eq!(at("WH/Stock/Shelf 2"), (17.0, 0.0), "{version:?}");
        assert_eq!(at("WH/Stock"), (50.0, 2.0), "{version:?}");
        let name = sim
            .pickings()
            .into_iter()
            .find(|p| p.id == picking)
            .unwrap()
            .name;
        let backorder = sim
            .pickings()
            .into_iter()
            .find(|p| p.backorder_of.as_deref() == Some(name.as_str()))
            .unwrap();
        let mut left: Vec<(String, f64)> = backorder
            .moves
            .iter()
            .map(|m| (m.sku.clone(), m.quantity))
            .collect();
        left.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            left,
            vec![("SKU-002".to_owned(), 2.0), ("SKU-003".to_owned(), 3.0)]
        );
    }
}

#[tokio::test]
async fn without_an_email_the_backorder_validation_rolls_back() {
    for version in VERSIONS {
        let sim = start(version).await;
        sim.set_edge_sync_email(None);
        let rpc = Rpc::new(&sim);
        let (picking, moves) = so_delivery(&sim, &rpc).await;
        let commands: Vec<Value> = moves
            .iter()
            .map(|(id, _)| json!([1, id, {"quantity": 1, "picked": true}]))
            .collect();
        rpc.ok(
            "stock.picking",
            "write",
            json!([[picking], {"move_ids": commands}]),
            json!({}),
        )
        .await;
        let error = rpc
            .call(
                "stock.picking",
                "button_validate",
                json!([[picking]]),
                json!({"context": {"skip_backorder": true, "skip_sms": true}}),
            )
            .await
            .unwrap_err();
        assert_eq!(error.name(), "odoo.exceptions.UserError", "{version:?}");
        assert_eq!(sim.pickings().len(), 1, "no backorder");
        assert!(sim.done_move_lines().is_empty(), "nothing applied");
        // The integration user may set its own e-mail; then it works.
        rpc.ok(
            "res.users",
            "write",
            json!([[sim.uid()], {"email": "edge-sync@example.com"}]),
            json!({}),
        )
        .await;
        let result = rpc
            .ok(
                "stock.picking",
                "button_validate",
                json!([[picking]]),
                json!({"context": {"skip_backorder": true, "skip_sms": true}}),
            )
            .await;
        assert_eq!(result, json!(true));
        assert_eq!(sim.pickings().len(), 2);
    }
}

#[tokio::test]
async fn quantities_without_picked_ship_every_reserved_line() {
    for version in VERSIONS {
        let sim = start(version).await;
        let rpc = Rpc::new(&sim);
        let (picking, moves) = so_delivery(&sim, &rpc).await;
        let sku002 = moves.iter().find(|(_, s)| s == "SKU-002").unwrap().0;
        // The hazard (docs/odoo.md#move-lines): a quantity written without `picked`, SKU-003
        // untouched.
        rpc.ok(
            "stock.picking",
            "write",
            json!([[picking], {"move_ids": [[1, sku002, {"quantity": 3}]]}]),
            json!({}),
        )
        .await;
        let before = sim.on_hand("SKU-003", "WH/Stock");
        rpc.ok(
            "stock.picking",
            "button_validate",
            json!([[picking]]),
            json!({"context": {"skip_backorder": true, "skip_sms": true}}),
        )
        .await;
        // The unscanned SKU-003 reservation was shipped.
        assert_eq!(
            sim.on_hand("SKU-003", "WH/Stock"),
            before - 3.0,
            "{version:?}"
        );
        let backorder = sim
            .pickings()
            .into_iter()
            .find(|p| p.backorder_of.is_some())
            .unwrap();
        assert_eq!(backorder.moves.len(), 1);
        assert_eq!(
            (backorder.moves[0].sku.as_str(), backorder.moves[0].demand),
            ("SKU-002", 2.0)
        );

        // With `picked: true` on what was scanned, the untouched line goes to a backorder.
        let (picking, moves) = so_delivery(&sim, &rpc).await;
        let sku002 = moves.iter().find(|(_, s)| s == "SKU-002").unwrap().0;
        let before = sim.on_hand("SKU-003", "WH/Stock");
        rpc.ok(
            "stock.picking",
            "write",
            json!([[picking], {"move_ids": [[1, sku002, {"quantity": 5, "picked": true}]]}]),
            json!({}),
        )
        .await;
        rpc.ok(
            "stock.picking",
            "button_validate",
            json!([[picking]]),
            json!({"context": {"skip_backorder": true, "skip_sms": true}}),
        )
        .await;
        assert_eq!(sim.on_hand("SKU-003", "WH/Stock"), before);
        let name = sim
            .pickings()
            .into_iter()
            .find(|p| p.id == picking)
            .unwrap()
            .name;
        let backorder = sim
            .pickings()
            .into_iter()
            .find(|p| p.backorder_of.as_deref() == Some(name.as_str()))
            .unwrap();
        assert_eq!(backorder.moves[0].sku, "SKU-003");
        assert_eq!(backorder.moves[0].quantity, 3.0, "reserved again");
    }
}

#[tokio::test]
async fn a_validation_without_preset_quantities_returns_the_backorder_wizard() {
    for version in VERSIONS {
        let sim = start(version).await;
        let rpc = Rpc::new(&sim);
        sim.set_on_hand("SKU-001", "WH/Stock", None, 12.0).unwrap();
        let sku = sim.product_id("SKU-001").unwrap();
        let picking = rpc
            .ok(
                "stock.picking",
                "create",
                json!([{"picking_type_id": 2, "location_id": 8, "location_dest_id": 5,
                        "move_ids": [[0, 0, {"name": "x", "product_id": sku, "product_uom_qty": 17,
                                             "location_id": 8, "location_dest_id": 5}]]}]),
                json!({}),
            )
            .await;
        let picking = picking.as_i64().unwrap();
        let action = rpc
            .ok(
                "stock.picking",
                "button_validate",
                json!([[picking]]),
                json!({}),
            )
            .await;
        assert_eq!(action["res_model"], json!("stock.backorder.confirmation"));
        assert_eq!(
            action["context"]["button_validate_picking_ids"],
            json!([picking])
        );
        assert_eq!(
            sim.on_hand("SKU-001", "WH/Stock"),
            12.0,
            "a wizard is not done"
        );
        // Dropping the remainder validates only what was reserved (docs/odoo.md#pickings: not the
        // delta).
        assert_eq!(rpc.validate(picking).await.unwrap(), json!(true));
        assert_eq!(sim.on_hand("SKU-001", "WH/Stock"), 0.0, "{version:?}");
    }
}

#[tokio::test]
async fn a_missing_lot_fails_and_cancel_releases_the_reservation() {
    for version in VERSIONS {
        let sim = start(version).await;
        let rpc = Rpc::new(&sim);
        sim.set_on_hand("SKU-005", "WH/Stock", Some("LOT-A"), 21.0)
            .unwrap();
        let sku = sim.product_id("SKU-005").unwrap();
        let picking = rpc
            .create_picking("edge:nolot", false, sku, 2.0)
            .await
            .unwrap();
        let picking = picking.as_i64().unwrap();
        assert_eq!(sim.availability("SKU-005", "WH").1, 19.0);
        match rpc.validate(picking).await {
            Err(Failure::Odoo(name, message)) => {
                assert_eq!(name, "odoo.exceptions.UserError");
                assert_eq!(
                    message,
                    "You need to supply a Lot/Serial number for products [SKU-005] Edge product 5."
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            sim.availability("SKU-005", "WH").1,
            19.0,
            "the reservation survives"
        );
        rpc.ok(
            "stock.picking",
            "action_cancel",
            json!([[picking]]),
            json!({}),
        )
        .await;
        assert_eq!(sim.availability("SKU-005", "WH").1, 21.0, "{version:?}");
        // The name stays taken until the cancelled picking is unlinked (docs/odoo.md#cancelling).
        assert!(
            rpc.create_picking("edge:nolot", false, sku, 1.0)
                .await
                .is_err()
        );
        rpc.ok("stock.picking", "unlink", json!([[picking]]), json!({}))
            .await;
        assert!(
            rpc.create_picking("edge:nolot", false, sku, 1.0)
                .await
                .is_ok()
        );
    }
}

#[tokio::test]
async fn counts_apply_once_with_their_marker() {
    for version in VERSIONS {
        let sim = start(version).await;
        let rpc = Rpc::new(&sim);
        sim.set_on_hand("SKU-004", "WH/Stock", None, 10.0).unwrap();
        let sku = sim.product_id("SKU-004").unwrap();
        let ids = rpc
            .ok(
                "stock.quant",
                "create",
                json!([[{"product_id": sku, "location_id": 8, "inventory_quantity": 14.0}]]),
                json!({"context": {"inventory_mode": true}}),
            )
            .await;
        let applied = rpc
            .call(
                "stock.quant",
                "action_apply_inventory",
                json!([ids]),
                json!({"context": {"inventory_mode": true, "inventory_name": "edge-count:k1"}}),
            )
            .await
            .unwrap();
        assert_eq!(applied, Value::Null, "no result key");
        assert_eq!(sim.on_hand("SKU-004", "WH/Stock"), 14.0, "{version:?}");
        let marker = rpc
            .ok(
                "stock.move",
                "search_count",
                json!([[
                    ["name", "=like", "edge-count:k1%"],
                    ["is_inventory", "=", true]
                ]]),
                json!({}),
            )
            .await;
        assert_eq!(marker, json!(1));
        // A duplicate row makes an absolute count land on one row only (docs/odoo.md#quants), while
        // the relative path moves exactly the delta.
        let row = sim.add_quant_row("SKU-004", "WH/Stock", 0.0).unwrap();
        rpc.ok(
            "stock.quant",
            "write",
            json!([[row], {"inventory_diff_quantity": -3.0}]),
            json!({"context": {"inventory_mode": true}}),
        )
        .await;
        rpc.call(
            "stock.quant",
            "action_apply_inventory",
            json!([[row]]),
            json!({"context": {"inventory_mode": true, "inventory_name": "edge-count:k2"}}),
        )
        .await
        .unwrap();
        assert_eq!(sim.on_hand("SKU-004", "WH/Stock"), 11.0);
    }
}

/// Every fault kind on `button_validate`: the ones that fail before the work leave the
/// picking assigned and stock unchanged; "applied" ones leave it done, exactly once, even
/// when the client retries the way docs/odoo.md#exactly-once says.
#[tokio::test]
async fn faults_apply_nothing_unless_applied_then_lost() {
    for version in VERSIONS {
        for kind in FaultKind::ALL {
            let sim = start(version).await;
            let rpc = Rpc::new(&sim);
            // Hangs end only when the client gives up: a short client timeout is the point.
            let impatient = Rpc::with_timeout(&sim, Duration::from_millis(300));
            let sku = sim.product_id("SKU-001").unwrap();
            let picking = rpc
                .create_picking("edge:fault", true, sku, 5.0)
                .await
                .unwrap();
            let picking = picking.as_i64().unwrap();
            sim.inject(Fault::new(kind).on("stock.picking", "button_validate"));
            let outcome = impatient.validate(picking).await;
            let failure = outcome.expect_err("a faulted call must not succeed");
            match kind {
                FaultKind::SerializationFailure => {
                    assert_eq!(failure.name(), "psycopg2.errors.SerializationFailure")
                }
                FaultKind::OperationalError => {
                    assert_eq!(failure.name(), "psycopg2.OperationalError")
                }
                FaultKind::PoolError => assert_eq!(failure.name(), "psycopg2.pool.PoolError"),
                _ => assert_eq!(
                    failure.name(),
                    "transport",
                    "{kind:?}: {}",
                    failure.detail()
                ),
            }
            assert!(sim.pending_faults().is_empty());
            let state = sim.picking("edge:fault").unwrap().state;
            let applied = if kind.applies() { 5.0 } else { 0.0 };
            assert_eq!(
                sim.on_hand("SKU-001", "WH/Stock"),
                applied,
                "{version:?} {kind:?}"
            );
            assert_eq!(state, if kind.applies() { "done" } else { "assigned" });

            // Recovery by key: look the picking up, validate only if not done.
            let found = rpc
                .ok(
                    "stock.picking",
                    "search_read",
                    json!([[["name", "=", "edge:fault"]]]),
                    json!({"fields": ["id", "state"]}),
                )
                .await;
            if found[0]["state"] != json!("done") {
                assert_eq!(rpc.validate(picking).await.unwrap(), json!(true));
            }
            assert_eq!(
                sim.on_hand("SKU-001", "WH/Stock"),
                5.0,
                "{version:?} {kind:?}"
            );
            assert_eq!(sim.done_move_lines().len(), 1);
        }
    }
}

#[tokio::test]
async fn faults_can_be_armed_over_http_and_match_only_their_target() {
    let sim = start(Version::V17).await;
    let rpc = Rpc::new(&sim);
    let client = reqwest::Client::new();
    let armed = client
        .post(format!("{}/sim/faults", sim.url()))
        .json(&json!({"kind": "pool_error", "times": 2, "model": "stock.picking", "method": "create"}))
        .send()
        .await
        .unwrap();
    assert!(armed.status().is_success());
    // Other calls are untouched.
    let version = rpc.raw("common", "version", json!([])).await.unwrap();
    assert_eq!(version["server_version_info"][0], json!(17));
    let sku = sim.product_id("SKU-001").unwrap();
    for _ in 0..2 {
        let failure = rpc
            .create_picking("edge:p", true, sku, 1.0)
            .await
            .unwrap_err();
        assert_eq!(failure.name(), "psycopg2.pool.PoolError");
    }
    assert!(sim.pickings().is_empty());
    rpc.create_picking("edge:p", true, sku, 1.0).await.unwrap();
    assert_eq!(sim.call_count("stock.picking", "create"), 3);
    let calls: Value = client
        .get(format!("{}/sim/calls", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(calls["stock.picking.create"], json!(3));
}

#[tokio::test]
async fn authentication_and_envelope_follow_odoo() {
    for version in VERSIONS {
        let sim = start(version).await;
        let rpc = Rpc::new(&sim);
        let uid = rpc
            .raw(
                "common",
                "authenticate",
                json!([sim.db(), "edge-sync", sim.api_key(), {}]),
            )
            .await
            .unwrap();
        assert_eq!(uid, json!(6));
        let refused = rpc
            .raw(
                "common",
                "authenticate",
                json!([sim.db(), "edge-sync", "wrong", {}]),
            )
            .await
            .unwrap();
        assert_eq!(refused, json!(false));
        let unknown_db = rpc
            .raw(
                "common",
                "authenticate",
                json!(["no_such_db", "edge-sync", "x", {}]),
            )
            .await
            .unwrap_err();
        assert_eq!(unknown_db.name(), "psycopg2.OperationalError");
        let mut bad = Rpc::new(&sim);
        bad.key = "deadbeef".into();
        let denied = bad
            .call("res.users", "read", json!([[6], ["login"]]), json!({}))
            .await;
        assert_eq!(denied.unwrap_err().name(), "odoo.exceptions.AccessDenied");
        let method = rpc
            .call("product.product", "no_such_method", json!([[]]), json!({}))
            .await;
        match (version, method) {
            (Version::V17, Err(Failure::Odoo(name, message))) => {
                assert_eq!(name, "builtins.AttributeError");
                assert_eq!(
                    message,
                    "The method 'no_such_method' does not exist on the model 'product.product'"
                );
            }
            (Version::V18, Err(Failure::Odoo(_, message))) => {
                assert_eq!(
                    message,
                    "The method 'product.product.no_such_method' does not exist"
                )
            }
            (_, other) => panic!("{other:?}"),
        }
        // A method returning None has no `result` key at all.
        let body = json!({"jsonrpc": "2.0", "method": "call", "id": 9, "params": {
            "service": "object", "method": "execute_kw",
            "args": [sim.db(), 6, sim.api_key(), "stock.quant", "action_clear_inventory_quantity", [[]], {}]}});
        let raw: Value = reqwest::Client::new()
            .post(sim.jsonrpc_url())
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(raw, json!({"jsonrpc": "2.0", "id": 9}));
    }
}

#[tokio::test]
async fn duplicate_skus_and_admin_only_sales_are_reproduced() {
    let sim = start(Version::V18).await;
    let rpc = Rpc::new(&sim);
    sim.add_product("SKU-001", Tracking::None).unwrap();
    let found = rpc
        .ok(
            "product.product",
            "search_read",
            json!([[["default_code", "in", ["SKU-001"]]]]),
            json!({"fields": ["default_code", "type", "is_storable"]}),
        )
        .await;
    assert_eq!(
        found.as_array().unwrap().len(),
        2,
        "default_code is not unique"
    );
    assert_eq!(found[0]["type"], json!("consu"));
    let refused = rpc
        .call(
            "sale.order",
            "create",
            json!([{"partner_id": 1}]),
            json!({}),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.name(), "odoo.exceptions.AccessError");
    let as_admin = sim.execute(
        ADMIN_UID,
        "sale.order",
        "create",
        json!([{"partner_id": 1, "order_line": []}]),
        json!({}),
    );
    assert!(as_admin.is_ok());
}

#[tokio::test]
async fn the_latency_model_delays_calls_by_call_and_line() {
    let mut config = SimConfig::new(Version::V17);
    config.latency = Latency {
        per_call: Duration::from_millis(40),
        per_line: Duration::from_millis(10),
    };
    let sim = OdooSim::start(config).await.unwrap();
    let rpc = Rpc::new(&sim);
    let started = Instant::now();
    rpc.raw("common", "version", json!([])).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(40));
    let sku = sim.product_id("SKU-001").unwrap();
    let started = Instant::now();
    rpc.create_picking("edge:slow", true, sku, 1.0)
        .await
        .unwrap();
    // One call plus at least a move and its line.
    assert!(
        started.elapsed() >= Duration::from_millis(60),
        "{:?}",
        started.elapsed()
    );
    sim.set_latency(Latency::default());
}

#[tokio::test]
async fn the_binary_announces_itself_as_a_simulator() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tally-odoo-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--version",
            "18",
            "--db",
            "demo",
            "--seed-products",
            "3",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("tally-odoo-sim");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("a startup line in time")
        .unwrap()
        .unwrap();
    assert!(
        line.starts_with(
            "tally-odoo-sim (Odoo 18 simulator, not a real Odoo) listening on http://127.0.0.1:"
        ),
        "{line}"
    );
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .unwrap()
            .to_owned()
    };
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    assert_eq!(field("db="), "demo");
    assert_eq!(field("login="), "edge-sync");
    let key = field("api_key=");
    let body = json!({"jsonrpc": "2.0", "method": "call", "id": 1, "params": {
        "service": "object", "method": "execute_kw",
        "args": ["demo", 6, key, "product.product", "search_count", [[["default_code", "=like", "BULK-%"]]], {}]}});
    let answer: Value = reqwest::Client::new()
        .post(format!("{url}/jsonrpc"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["result"], json!(3));
    child.kill().await.unwrap();
}

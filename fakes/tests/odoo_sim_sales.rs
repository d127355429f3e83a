//! The simulator's sales orders as the WooCommerce channel relies on them: a draft keeps the
//! date it was created with until it is confirmed, and confirming dates it (Odoo's
//! `action_confirm` sets `date_order`); the order is found by its `client_order_ref` and state.

use std::time::Duration;

use serde_json::json;
use tally_fakes::odoo_sim::{ADMIN_UID, OdooSim, SimConfig, Tracking, Version};

#[tokio::test]
async fn confirming_an_order_dates_it_and_it_is_found_by_its_customer_reference() {
    for version in [Version::V17, Version::V18] {
        let sim = OdooSim::start(SimConfig::new(version)).await.unwrap();
        sim.add_product("CHAIR", Tracking::None).unwrap();
        sim.set_on_hand("CHAIR", "WH/Stock", None, 10.0).unwrap();
        let product = sim.product_id("CHAIR").unwrap();
        sim.freeze_clock_at("2026-12-03 10:00:00").unwrap();
        let admin = |model: &str, method: &str, args: serde_json::Value| {
            sim.execute(ADMIN_UID, model, method, args, json!({}))
                .unwrap()
                .unwrap()
        };
        let order = admin(
            "sale.order",
            "create",
            json!([{"partner_id": 1, "client_order_ref": "WC-1001",
                    "order_line": [[0, 0, {"product_id": product, "product_uom_qty": 2.0}]]}]),
        );
        let read = |domain: serde_json::Value| admin("sale.order", "search_read", json!([domain]));
        let confirmed_domain = json!([
            ["client_order_ref", "in", ["WC-1001", "WC-9"]],
            ["state", "in", ["sale", "done"]]
        ]);
        assert_eq!(
            read(confirmed_domain.clone()),
            json!([]),
            "a draft is not confirmed"
        );
        let draft = read(json!([["id", "=", order]]));
        assert_eq!(draft[0]["date_order"], "2026-12-03 10:00:00");

        sim.advance_clock(Duration::from_secs(90));
        admin("sale.order", "action_confirm", json!([[order]]));
        let confirmed = read(confirmed_domain);
        assert_eq!(confirmed.as_array().unwrap().len(), 1, "{version:?}");
        assert_eq!(
            confirmed[0]["date_order"], "2026-12-03 10:01:30",
            "{version:?}"
        );
        assert_eq!(confirmed[0]["state"], "sale");
    }
}

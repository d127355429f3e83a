//! A minimal `sale.order`: enough for a confirmed order to have an assigned delivery with
//! `sale_id`, moves linked to the order lines and reserved stock (docs/odoo.md#reservations), and
//! for the lines' `qty_delivered` to follow done moves. Only the administrator may create
//! or confirm orders, as in the lab (edge-sync may read them).

use serde_json::{Map, Value, json};

use super::Version;
use super::orm::Env;
use super::rpc::OdooError;
use super::stock;
use super::store::{Id, Rec};

/// The administrator's uid (the only sales user of the seeded database).
pub const ADMIN_UID: Id = 2;

/// The refusal an integration user gets when creating or changing sales orders.
pub fn access_error(operation: &str) -> OdooError {
    OdooError::AccessError(format!(
        "You are not allowed to {operation} 'Sales Order' (sale.order) records.\n\nThis operation is allowed for the following groups:\n\t- Sales/Administrator\n\t- Sales/User: Own Documents Only\n\nContact your administrator to request access if necessary."
    ))
}

/// `sale.order.create` with `order_line` `[0, 0, {product_id, product_uom_qty}]` commands.
pub fn create_order(env: &mut Env, vals: &Map<String, Value>) -> Result<Id, OdooError> {
    let mut plain = vals.clone();
    let lines = plain.remove("order_line");
    let mut rec = env.to_record("sale.order", &plain)?;
    let n = env.db.next_counter("sale.order");
    rec.insert("name", Value::from(format!("S{n:05}")));
    rec.insert("state", Value::from("draft"));
    rec.entry("warehouse_id").or_insert(json!(1));
    rec.entry("company_id").or_insert(json!(1));
    rec.insert("date_order", Value::from(env.now_text()));
    let order = env.insert_checked("sale.order", rec)?;
    let commands = lines
        .and_then(|l| l.as_array().cloned())
        .unwrap_or_default();
    for (sequence, command) in commands.iter().enumerate() {
        let Some(vals) = command.get(2).and_then(Value::as_object) else {
            continue;
        };
        let mut rec = env.to_record("sale.order.line", vals)?;
        rec.insert("order_id", Value::from(order));
        rec.insert("sequence", Value::from(10 + sequence as i64));
        if let Some(product) = rec.get("product_id").and_then(Value::as_i64) {
            rec.entry("name")
                .or_insert(Value::from(env.display_name("product.product", product)));
        }
        env.insert_checked("sale.order.line", rec)?;
    }
    Ok(order)
}

/// `sale.order.action_confirm`: state `sale`, `date_order` the moment of confirmation, and
/// one delivery from the order's warehouse, confirmed and reserved. Its `origin` is the order name; 18 appends the customer
/// reference (`"S00009 - ref"`, docs/odoo.md#open-pickings).
pub fn confirm_orders(env: &mut Env, orders: &[Id]) -> Result<(), OdooError> {
    env.check_exist("sale.order", orders)?;
    for order in orders {
        if env.text("sale.order", *order, "state") == "sale" {
            continue;
        }
        env.db
            .set("sale.order", *order, "state", Value::from("sale"));
        // As Odoo's `action_confirm`: the order is dated when it is confirmed.
        let now = env.now_text();
        env.db
            .set("sale.order", *order, "date_order", Value::from(now));
        let warehouse = env.m2o("sale.order", *order, "warehouse_id").unwrap_or(1);
        let picking_type = env
            .m2o("stock.warehouse", warehouse, "out_type_id")
            .ok_or_else(|| OdooError::UserError("The warehouse has no delivery type".into()))?;
        let name = env.text("sale.order", *order, "name");
        let reference = env.text("sale.order", *order, "client_order_ref");
        let origin = match env.version {
            Version::V18 | Version::V19 if !reference.is_empty() => format!("{name} - {reference}"),
            _ => name,
        };
        let source = env.db.field(
            "stock.picking.type",
            picking_type,
            "default_location_src_id",
        );
        let dest = env.db.field(
            "stock.picking.type",
            picking_type,
            "default_location_dest_id",
        );
        let mut vals = Map::new();
        vals.insert("picking_type_id".into(), json!(picking_type));
        vals.insert("origin".into(), Value::from(origin));
        vals.insert(
            "partner_id".into(),
            env.db.field("sale.order", *order, "partner_id"),
        );
        vals.insert("sale_id".into(), json!(order));
        vals.insert("location_id".into(), source.clone());
        vals.insert("location_dest_id".into(), dest.clone());
        let picking = stock::create_picking(env, &vals)?;
        for line in env.db.children("sale.order.line", "order_id", *order) {
            let mut mv = Map::new();
            if env.version != Version::V19 {
                mv.insert("name".into(), env.db.field("sale.order.line", line, "name"));
            }
            mv.insert(
                "product_id".into(),
                env.db.field("sale.order.line", line, "product_id"),
            );
            mv.insert(
                "product_uom_qty".into(),
                env.db.field("sale.order.line", line, "product_uom_qty"),
            );
            mv.insert("location_id".into(), source.clone());
            mv.insert("location_dest_id".into(), dest.clone());
            mv.insert("sale_line_id".into(), json!(line));
            mv.insert(
                "partner_id".into(),
                env.db.field("sale.order", *order, "partner_id"),
            );
            stock::create_move(env, &mv, Some(picking))?;
        }
        stock::confirm_pickings(env, &[picking])?;
    }
    Ok(())
}

/// `qty_delivered`: done quantities sent to customers, minus returns.
pub fn delivered(env: &Env, line: Id) -> f64 {
    let mut total = 0.0;
    for mv in env.db.children("stock.move", "sale_line_id", line) {
        if env.text("stock.move", mv, "state") != "done" {
            continue;
        }
        let quantity = stock::move_quantity(env, mv);
        let usage = |field| {
            env.m2o("stock.move", mv, field)
                .map(|l| stock::usage(env, l))
                .unwrap_or_default()
        };
        if usage("location_dest_id") == "customer" {
            total += quantity;
        } else if usage("location_id") == "customer" {
            total -= quantity;
        }
    }
    total
}

/// `"S00009 - [SKU-002] Edge product 2 (Customer)"`.
pub fn line_display_name(env: &Env, line: Id) -> String {
    let order = env.m2o("sale.order.line", line, "order_id").unwrap_or(0);
    let product = env
        .m2o("sale.order.line", line, "product_id")
        .map(|p| env.display_name("product.product", p))
        .unwrap_or_default();
    let partner = env
        .m2o("sale.order", order, "partner_id")
        .map(|p| env.text("res.partner", p, "name"))
        .unwrap_or_default();
    format!(
        "{} - {product} ({partner})",
        env.text("sale.order", order, "name")
    )
}

/// `res.partner.create` (admin, for customers).
pub fn create_partner(env: &mut Env, vals: &Map<String, Value>) -> Result<Id, OdooError> {
    let mut rec: Rec = env.to_record("res.partner", vals)?;
    let name = rec.get("name").cloned().unwrap_or(Value::Null);
    rec.insert("complete_name", name);
    rec.entry("company_id").or_insert(Value::Null);
    env.insert_checked("res.partner", rec)
}

//! Lots: a receipt naming a new lot, a delivery without a lot (refused on 17 and 18, filled
//! from Odoo's choice of lot on 19), a delivery by lot id, a duplicate lot (docs/odoo.md#lots).

use serde_json::{Value, json};

use super::fills::{fill, open};
use super::flows::first_id;
use super::script::{Lab, picking, state, validate};
use super::{C, Session};

/// A move of the lot-tracked product without quantity: its lines carry the lots.
fn wine_move(s: &Session, lab: &Lab, qty: f64, from: i64, to: i64) -> Value {
    let mut line = json!({"product_id": lab.wine, "product_uom": lab.uom,
                          "product_uom_qty": qty, "location_id": from, "location_dest_id": to});
    if s.major < 19 {
        line["name"] = json!(s.stamp);
    }
    line
}

/// A picking-level move line of the lot-tracked product, by lot id or by a new lot's name.
fn lot_line(lab: &Lab, qty: f64, from: i64, to: i64, lot: &Value) -> Value {
    let mut line = json!({"product_id": lab.wine, "product_uom_id": lab.uom, "quantity": qty,
                          "location_id": from, "location_dest_id": to, "picked": true});
    match lot {
        Value::Number(id) => line["lot_id"] = json!(id),
        other => line["lot_name"] = other.clone(),
    }
    json!([0, 0, line])
}

/// On hand of the wine in lot `lot` at `location`.
async fn in_lot(s: &mut Session, step: &str, lab: &Lab, lot: i64, at: i64) -> anyhow::Result<f64> {
    let rows = s
        .call(
            step,
            C::search(
                "stock.quant",
                json!([
                    ["product_id", "=", lab.wine],
                    ["location_id", "=", at],
                    ["lot_id", "=", lot]
                ]),
                &["quantity", "lot_id"],
            ),
        )
        .await?;
    Ok(rows
        .as_array()
        .map(|rows| rows.iter().filter_map(|r| r["quantity"].as_f64()).sum())
        .unwrap_or(0.0))
}

/// Lots: a receipt names a new one, a delivery without one is refused (and cancelled), a
/// delivery by lot id, a duplicate lot refused.
pub async fn lots(s: &mut Session, lab: &Lab) -> anyhow::Result<()> {
    let lot = s.name("lot");
    let key = s.name("wine-in");
    let mut create = picking(
        &key,
        lab.receipt_type,
        lab.vendors,
        lab.stock,
        &[wine_move(s, lab, 3.0, lab.vendors, lab.stock)],
    );
    create = add_lines(
        create,
        vec![lot_line(lab, 3.0, lab.vendors, lab.stock, &json!(lot))],
    );
    let created = s.call("lot receipt: create", create).await?;
    let id = first_id(&created, "lot receipt")?;
    let done = s.call("lot receipt: validate", validate(id)).await?;
    let lots = s
        .call(
            "lot receipt: the new lot",
            C::search(
                "stock.lot",
                json!([["name", "=", lot], ["product_id", "=", lab.wine]]),
                &["id", "name", "product_id"],
            ),
        )
        .await?;
    let lot_id = first_id(&lots[0]["id"], "lot")?;
    let held = in_lot(s, "lot receipt: in the lot", lab, lot_id, lab.stock).await?;
    s.fact(
        "lot receipt: validated, lots made, held",
        json!([done, lots.as_array().map(Vec::len), held]),
    );

    let key = s.name("wine-nolot");
    let line = wine_move(s, lab, 1.0, lab.stock, lab.customers);
    let mut line_picked = line.clone();
    line_picked["quantity"] = json!(1.0);
    line_picked["picked"] = json!(true);
    let created = s
        .call(
            "lot delivery without a lot: create",
            picking(
                &key,
                lab.delivery_type,
                lab.stock,
                lab.customers,
                &[line_picked],
            ),
        )
        .await?;
    let id = first_id(&created, "delivery")?;
    s.call("lot delivery without a lot: validate", validate(id))
        .await?;
    let after = state(s, "lot delivery without a lot: state", &key).await?;
    s.call(
        "lot delivery without a lot: cancel",
        C::records("stock.picking", "action_cancel", &[id]),
    )
    .await?;
    let cancelled = state(s, "lot delivery without a lot: state after cancel", &key).await?;
    s.fact(
        "lot delivery without a lot: states",
        json!([after, cancelled]),
    );

    let key = s.name("wine-out");
    let create = add_lines(
        picking(&key, lab.delivery_type, lab.stock, lab.customers, &[line]),
        vec![lot_line(lab, 1.0, lab.stock, lab.customers, &json!(lot_id))],
    );
    let created = s.call("lot delivery: create", create).await?;
    let id = first_id(&created, "lot delivery")?;
    let done = s.call("lot delivery: validate", validate(id)).await?;
    let left = in_lot(s, "lot delivery: in the lot", lab, lot_id, lab.stock).await?;
    s.fact("lot delivery: validated, left", json!([done, left]));

    // Lines nested in the move's own `move_line_ids` validate, without the picking's id
    // (docs/odoo.md#move-lines).
    let key = s.name("wine-nested");
    let mut nested = wine_move(s, lab, 1.0, lab.vendors, lab.stock);
    nested["move_line_ids"] = json!([lot_line(
        lab,
        1.0,
        lab.vendors,
        lab.stock,
        &json!(s.name("lot3"))
    )]);
    let created = s
        .call(
            "nested lines: create",
            picking(&key, lab.receipt_type, lab.vendors, lab.stock, &[nested]),
        )
        .await?;
    let id = first_id(&created, "nested receipt")?;
    let done = s.call("nested lines: validate", validate(id)).await?;
    let on_picking = s
        .call(
            "nested lines: by picking",
            C::search("stock.move.line", json!([["picking_id", "=", id]]), &["id"]),
        )
        .await?;
    let on_move = s
        .call(
            "nested lines: by move",
            C::search(
                "stock.move.line",
                json!([["move_id.picking_id", "=", id]]),
                &["id", "picking_id"],
            ),
        )
        .await?;
    s.fact(
        "nested lines: validated, by picking, by move",
        json!([
            done,
            on_picking.as_array().map(Vec::len),
            on_move.as_array().map(Vec::len)
        ]),
    );
    s.call(
        "lot: the same name again",
        C::model("stock.lot", "create")
            .arg("vals_list", json!([{"name": lot, "product_id": lab.wine}])),
    )
    .await?;
    let created = s
        .call(
            "lot: a new one",
            C::model("stock.lot", "create").arg(
                "vals_list",
                json!([{"name": s.name("lot2"), "product_id": lab.wine}]),
            ),
        )
        .await?;
    s.fact(
        "lot: a new one made",
        json!(first_id(&created, "lot").is_ok()),
    );
    Ok(())
}

/// Adds picking-level move lines to a `stock.picking.create`.
fn add_lines(c: C, lines: Vec<Value>) -> C {
    let C {
        model,
        method,
        ids,
        mut args,
        kwargs,
    } = c;
    if let Some((_, vals)) = args.first_mut() {
        vals[0]["move_line_ids"] = json!(lines);
    }
    C {
        model,
        method,
        ids,
        args,
        kwargs,
    }
}

/// A fill of an open delivery of the lot-tracked product naming a lot Odoo lacks: the write
/// is accepted, validation refused (its wording per version), the picking cancelled
/// (docs/odoo.md#fills).
pub async fn unknown_lot(s: &mut Session, lab: &Lab) -> anyhow::Result<()> {
    let (id, name, mv, lines) = open(s, "unknown lot", lab, lab.wine, false, 1.0).await?;
    let line = json!({"product_id": lab.wine, "product_uom_id": lab.uom, "location_id": lab.stock,
                      "location_dest_id": lab.customers, "quantity": 1.0, "picked": true,
                      "picking_id": id, "lot_name": s.name("no-such-lot")});
    let marker = s.name("unknown-lot");
    let written = s
        .call(
            "unknown lot: write",
            fill(id, &name, &marker, mv, &lines, line),
        )
        .await?;
    s.call(
        "unknown lot: validate",
        C::records("stock.picking", "button_validate", &[id])
            .ctx(json!({"skip_backorder": true, "skip_sms": true})),
    )
    .await?;
    let after = state(s, "unknown lot: state", &name).await?;
    let cancelled = s
        .call(
            "unknown lot: cancel",
            C::records("stock.picking", "action_cancel", &[id]),
        )
        .await?;
    s.fact(
        "unknown lot: written, state, cancelled",
        json!([written, after, cancelled]),
    );
    Ok(())
}

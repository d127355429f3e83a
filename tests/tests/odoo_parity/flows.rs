//! Lots, quants in inventory mode and pending counts, and what a count reads
//! (docs/odoo.md#lots, #quants, #counts).

use anyhow::Context;
use serde_json::{Value, json};

use super::script::{Lab, SHELF, on_hand, picking, state, validate};
use super::{C, Session};

pub fn first_id(value: &Value, what: &str) -> anyhow::Result<i64> {
    value
        .as_i64()
        .or_else(|| value.get(0).and_then(Value::as_i64))
        .with_context(|| format!("no id for {what} in {value}"))
}

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

/// Inventory mode on the lamp's shelf row: a pending count seen, applied (no `result`), and
/// the create that returns the existing row (docs/odoo.md#quants, #counts).
pub async fn quants(s: &mut Session, lab: &Lab) -> anyhow::Result<()> {
    let mode = json!({"inventory_mode": true});
    let rows = s
        .call(
            "quants: the shelf's rows",
            C::search(
                "stock.quant",
                json!([
                    ["product_id", "=", lab.lamp],
                    ["location_id", "=", lab.shelf],
                    ["lot_id", "=", false]
                ]),
                &[
                    "id",
                    "quantity",
                    "inventory_quantity",
                    "inventory_quantity_set",
                ],
            )
            .ctx(mode.clone()),
        )
        .await?;
    let row = first_id(&rows[0]["id"], "quant")?;
    let counted = rows[0]["quantity"].as_f64().context("quantity")? + 1.0;
    let before = on_hand(s, "quants: shelf before", lab.lamp, lab.shelf).await?;
    s.call(
        "quants: a count left pending",
        C::records("stock.quant", "write", &[row])
            .arg("vals", json!({"inventory_quantity": counted}))
            .ctx(mode.clone()),
    )
    .await?;
    let pending = s
        .call(
            "quants: pending counts",
            C::search(
                "stock.quant",
                json!([
                    ["inventory_quantity_set", "=", true],
                    ["product_id", "=", lab.lamp]
                ]),
                &["product_id", "location_id", "inventory_quantity", "user_id"],
            )
            .ctx(mode.clone()),
        )
        .await?;
    let seen = pending
        .as_array()
        .is_some_and(|p| p.iter().any(|r| r["location_id"][1] == SHELF));
    let mut apply = mode.clone();
    apply["inventory_name"] = json!(s.name("count"));
    s.call(
        "quants: apply",
        C::records("stock.quant", "action_apply_inventory", &[row]).ctx(apply),
    )
    .await?;
    let after = on_hand(s, "quants: shelf after", lab.lamp, lab.shelf).await?;
    s.fact("quants: pending seen, moved", json!([seen, after - before]));
    let created = s
        .call(
            "quants: create in inventory mode",
            C::model("stock.quant", "create")
                .arg("vals_list", json!([{"product_id": lab.lamp, "location_id": lab.shelf, "inventory_quantity": after}]))
                .ctx(mode.clone()),
        )
        .await?;
    let existing = first_id(&created, "quant").ok();
    let ids: Vec<i64> = rows
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["id"].as_i64()).collect())
        .unwrap_or_default();
    s.fact(
        "quants: create answered an existing row",
        json!(existing.is_some_and(|e| ids.contains(&e))),
    );
    if let Some(existing) = existing {
        s.call(
            "quants: clear the count",
            C::records(
                "stock.quant",
                "action_clear_inventory_quantity",
                &[existing],
            )
            .ctx(mode.clone()),
        )
        .await?;
    }
    // The one-call count: 17 keeps the context's name, 18 drops it (docs/odoo.md#quants).
    let mut auto = mode;
    auto["inventory_name"] = json!(s.name("auto"));
    s.call(
        "quants: one-call count",
        C::records("stock.quant", "write", &[row])
            .arg(
                "vals",
                json!({"inventory_quantity_auto_apply": after + 1.0}),
            )
            .ctx(auto),
    )
    .await?;
    let named = s
        .call(
            "quants: the one-call count's line",
            C::search(
                "stock.move.line",
                json!([["reference", "=", s.name("auto")]]),
                &["reference", "quantity"],
            ),
        )
        .await?;
    let moved = on_hand(
        s,
        "quants: shelf after the one-call count",
        lab.lamp,
        lab.shelf,
    )
    .await?;
    s.fact(
        "quants: one-call count named, moved",
        json!([named.as_array().map(Vec::len), moved - after]),
    );
    Ok(())
}

/// What a warehouse can sell, per location and per warehouse (docs/odoo.md#availability).
pub async fn availability(s: &mut Session, lab: &Lab) -> anyhow::Result<()> {
    let fields = [
        "qty_available",
        "free_qty",
        "virtual_available",
        "incoming_qty",
        "outgoing_qty",
    ];
    let products = json!([["id", "in", [lab.lamp, lab.wine]]]);
    for (step, context) in [
        (
            "availability: warehouse",
            json!({"warehouse": lab.warehouse}),
        ),
        ("availability: location", json!({"location": lab.stock})),
    ] {
        s.call(
            step,
            C::search("product.product", products.clone(), &fields).ctx(context),
        )
        .await?;
    }
    let within = json!([
        ["product_id", "in", [lab.lamp]],
        ["location_id", "child_of", lab.stock]
    ]);
    for (step, groupby) in [
        (
            "availability: quants by product and location",
            json!(["product_id", "location_id"]),
        ),
        ("availability: quants by warehouse", json!(["warehouse_id"])),
    ] {
        s.call(
            step,
            C::model("stock.quant", "read_group")
                .arg("domain", within.clone())
                .arg("fields", json!(["quantity:sum", "reserved_quantity:sum"]))
                .arg("groupby", groupby)
                .kw("lazy", json!(false)),
        )
        .await?;
    }
    Ok(())
}

/// What a count reads: the done lines at the counted location since a time, and their
/// pickings (docs/odoo.md#counts). The run's own lines are compared; others' are ignored.
pub async fn counts(s: &mut Session, lab: &Lab) -> anyhow::Result<()> {
    let first = s
        .call(
            "count: the run's first line",
            C::search(
                "stock.move.line",
                json!([["reference", "=", s.name("in")]]),
                &["date", "reference"],
            ),
        )
        .await?;
    let since = first[0]["date"].as_str().context("date")?.to_owned();
    let lines = s
        .call(
            "count: lines since",
            C::search(
                "stock.move.line",
                json!([
                    ["product_id", "in", [lab.lamp]],
                    ["state", "=", "done"],
                    ["date", ">=", since],
                    "|",
                    ["location_id", "in", [lab.shelf]],
                    ["location_dest_id", "in", [lab.shelf]]
                ]),
                &[
                    "product_id",
                    "lot_id",
                    "quantity_product_uom",
                    "location_id",
                    "location_dest_id",
                    "date",
                    "reference",
                    "picking_id",
                ],
            ),
        )
        .await?;
    let prefix = format!("{}-", s.stamp);
    let mut ours: Vec<Value> = Vec::new();
    let mut pickings: Vec<i64> = Vec::new();
    for line in lines.as_array().into_iter().flatten() {
        let Some(reference) = line["reference"].as_str() else {
            continue;
        };
        let Some(what) = reference.strip_prefix(&prefix) else {
            continue;
        };
        let into = line["location_dest_id"][0] == lab.shelf;
        ours.push(json!([
            what,
            line["quantity_product_uom"],
            if into { "in" } else { "out" }
        ]));
        if let Some(p) = line["picking_id"][0].as_i64() {
            pickings.push(p);
        }
    }
    ours.sort_by_key(|v| v.to_string());
    s.fact("count: the run's lines at the shelf", json!(ours));
    let rows = s
        .call(
            "count: their pickings",
            C::search(
                "stock.picking",
                json!([["id", "in", pickings]]),
                &["id", "name", "note"],
            ),
        )
        .await?;
    s.fact(
        "count: pickings found",
        json!(rows.as_array().map(Vec::len)),
    );
    Ok(())
}

//! Quants in inventory mode, pending counts and their conflict, availability, what a count
//! reads, and stray pickings found by name (docs/odoo.md#quants, #availability, #counts,
//! #cancelling).

use anyhow::Context;
use serde_json::{Value, json};

use super::script::{Lab, SHELF, on_hand, picking, validate};
use super::{C, Session};

pub fn first_id(value: &Value, what: &str) -> anyhow::Result<i64> {
    value
        .as_i64()
        .or_else(|| value.get(0).and_then(Value::as_i64))
        .with_context(|| format!("no id for {what} in {value}"))
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
    s.call(
        "availability: at exactly the shelf",
        C::search("product.product", products.clone(), &fields)
            .ctx(json!({"location": lab.shelf, "strict": true})),
    )
    .await?;
    s.call(
        "availability: as of a time",
        C::search("product.product", products.clone(), &fields)
            .ctx(json!({"location": lab.shelf, "to_date": "2026-01-01 00:00:00"})),
    )
    .await?;
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

/// A count left pending goes out of date when stock moves meanwhile: applying it answers the
/// conflict wizard and applies nothing (docs/odoo.md#quants).
pub async fn conflict(s: &mut Session, lab: &Lab) -> anyhow::Result<()> {
    let mode = json!({"inventory_mode": true});
    let rows = s
        .call(
            "conflict: the shelf's rows",
            C::search(
                "stock.quant",
                json!([
                    ["product_id", "=", lab.lamp],
                    ["location_id", "=", lab.shelf],
                    ["lot_id", "=", false]
                ]),
                &["id", "quantity"],
            )
            .ctx(mode.clone()),
        )
        .await?;
    let row = first_id(&rows[0]["id"], "quant")?;
    let counted = rows[0]["quantity"].as_f64().context("quantity")? + 5.0;
    s.call(
        "conflict: a count left pending",
        C::records("stock.quant", "write", &[row])
            .arg("vals", json!({"inventory_quantity": counted}))
            .ctx(mode.clone()),
    )
    .await?;
    let key = s.name("conflict");
    let line = super::script::moving(s, lab, 1.0, lab.vendors, lab.shelf, s.major < 19);
    let created = s
        .call(
            "conflict: a receipt meanwhile",
            picking(&key, lab.receipt_type, lab.vendors, lab.shelf, &[line]),
        )
        .await?;
    let id = first_id(&created, "receipt")?;
    s.call("conflict: validate the receipt", validate(id))
        .await?;
    let before = on_hand(s, "conflict: shelf before applying", lab.lamp, lab.shelf).await?;
    let action = s
        .call(
            "conflict: apply",
            C::records("stock.quant", "action_apply_inventory", &[row]).ctx(mode.clone()),
        )
        .await?;
    let after = on_hand(s, "conflict: shelf after applying", lab.lamp, lab.shelf).await?;
    s.call(
        "conflict: clear the count",
        C::records("stock.quant", "action_clear_inventory_quantity", &[row]).ctx(mode),
    )
    .await?;
    s.fact(
        "conflict: wizard, moved",
        json!([action["res_model"], after - before]),
    );
    Ok(())
}

/// Stray pickings of an integration, found by their name prefix (docs/odoo.md#cancelling).
pub async fn strays(s: &mut Session) -> anyhow::Result<()> {
    let rows = s
        .call(
            "strays: the run's pickings",
            C::search(
                "stock.picking",
                json!([["name", "=like", format!("{}-%", s.stamp)]]),
                &["name", "state"],
            ),
        )
        .await?;
    let prefix = format!("{}-", s.stamp);
    let mut found: Vec<Value> = rows
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some(json!([
                r["name"].as_str()?.strip_prefix(&prefix)?,
                r["state"]
            ]))
        })
        .collect();
    found.sort_by_key(|v| v.to_string());
    s.fact("strays: the run's pickings and states", json!(found));
    Ok(())
}

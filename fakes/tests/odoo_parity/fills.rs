//! Fills of open pickings — a delivery's and a receipt's, partial with a backorder, and an
//! over-pick — with the wizard, the marker and the backorders cancelled (docs/odoo.md#fills,
//! #open-pickings, #backorders, #cancelling).

use anyhow::Context;
use serde_json::{Value, json};

use super::flows::first_id;
use super::script::{Lab, on_hand, state, states};
use super::{C, Session};

/// An open picking as a sales order or a purchase leaves it: demand only, confirmed and
/// reserved by Odoo. Returns (picking, move, its lines).
pub async fn open(
    s: &mut Session,
    step: &str,
    lab: &Lab,
    product: i64,
    receipt: bool,
    qty: f64,
) -> anyhow::Result<(i64, String, i64, Vec<i64>)> {
    let (kind, from, to) = if receipt {
        (lab.receipt_type, lab.vendors, lab.stock)
    } else {
        (lab.delivery_type, lab.stock, lab.customers)
    };
    let mut line = json!({"product_id": product, "product_uom": lab.uom, "product_uom_qty": qty,
                          "location_id": from, "location_dest_id": to});
    if s.major < 19 {
        line["name"] = json!(s.stamp);
    }
    let created = s
        .call(
            &format!("{step}: create"),
            C::model("stock.picking", "create").arg(
                "vals_list",
                json!([{"picking_type_id": kind, "location_id": from, "location_dest_id": to,
                    "origin": s.stamp, "move_ids": [[0, 0, line]]}]),
            ),
        )
        .await?;
    let id = first_id(&created, step)?;
    for method in ["action_confirm", "action_assign"] {
        s.call(
            &format!("{step}: {method}"),
            C::records("stock.picking", method, &[id]),
        )
        .await?;
    }
    let rows = s
        .call(
            &format!("{step}: read"),
            C::search(
                "stock.picking",
                json!([["id", "=", id]]),
                &["name", "state", "note"],
            ),
        )
        .await?;
    let name = rows[0]["name"].as_str().context("name")?.to_owned();
    let moves = s
        .call(
            &format!("{step}: moves"),
            C::search(
                "stock.move",
                json!([["picking_id", "=", id]]),
                &["id", "product_uom_qty", "state"],
            ),
        )
        .await?;
    let mv = first_id(&moves[0]["id"], "move")?;
    let lines = s
        .call(
            &format!("{step}: lines"),
            C::search(
                "stock.move.line",
                json!([["move_id", "in", [mv]]]),
                &["id", "move_id", "picked"],
            ),
        )
        .await?;
    let lines: Vec<Value> = lines.as_array().cloned().unwrap_or_default();
    s.fact(
        &format!("{step}: state, demand, no line picked"),
        json!([
            rows[0]["state"],
            moves[0]["product_uom_qty"],
            lines.iter().all(|l| l["picked"] == false)
        ]),
    );
    Ok((
        id,
        name,
        mv,
        lines.iter().filter_map(|l| l["id"].as_i64()).collect(),
    ))
}

/// Tally's fill: the move's lines replaced by one picked line where the scan was, and the
/// marker in the note, in one write (docs/odoo.md#fills).
pub fn fill(id: i64, name: &str, marker: &str, mv: i64, lines: &[i64], line: Value) -> C {
    let mut commands: Vec<Value> = lines.iter().map(|l| json!([2, l])).collect();
    commands.push(json!([0, 0, line]));
    C::records("stock.picking", "write", &[id]).arg(
        "vals",
        json!({"note": format!("<p>tally:{marker}@{name}</p>"),
               "move_ids": [[1, mv, {"move_line_ids": commands}]]}),
    )
}

/// A partial fill of a delivery (the wizard without context, then a backorder), a partial
/// fill of a receipt, an over-pick, a picked line added beside Odoo's reserved ones (which
/// validation drops), and the backorders cancelled.
pub async fn fills(s: &mut Session, lab: &Lab) -> anyhow::Result<()> {
    for (step, receipt, demand, scanned) in [
        ("fill delivery", false, 5.0, 3.0),
        ("fill receipt", true, 4.0, 3.0),
        ("over-pick", false, 1.0, 2.0),
        ("a line added", false, 3.0, 1.0),
    ] {
        let (id, name, mv, mut lines) = open(s, step, lab, lab.lamp, receipt, demand).await?;
        if step == "a line added" {
            // Odoo's reserved lines stay, unpicked (docs/odoo.md#fills: rejected for Tally).
            lines.clear();
        }
        let before = on_hand(s, &format!("{step}: shelf before"), lab.lamp, lab.shelf).await?;
        let (from, to) = if receipt {
            (lab.vendors, lab.shelf)
        } else {
            (lab.shelf, lab.customers)
        };
        let line = json!({"product_id": lab.lamp, "product_uom_id": lab.uom, "location_id": from,
                          "location_dest_id": to, "quantity": scanned, "picked": true, "picking_id": id});
        let marker = s.name("fill");
        s.call(
            &format!("{step}: write"),
            fill(id, &name, &marker, mv, &lines, line),
        )
        .await?;
        let moves = s
            .call(
                &format!("{step}: after the write"),
                C::search(
                    "stock.move",
                    json!([["id", "=", mv]]),
                    &["quantity", "state"],
                ),
            )
            .await?;
        let picking_states = states(s, &format!("{step}: after the write"), id).await?;
        let written = json!([moves[0]["quantity"], moves[0]["state"], picking_states]);
        if !receipt && scanned < demand {
            let wizard = s
                .call(
                    &format!("{step}: validate without context"),
                    C::records("stock.picking", "button_validate", &[id]),
                )
                .await?;
            let still = state(s, &format!("{step}: state after the wizard"), &name).await?;
            s.fact(
                &format!("{step}: wizard, state"),
                json!([wizard["res_model"], still]),
            );
        }
        let done = s
            .call(
                &format!("{step}: validate"),
                C::records("stock.picking", "button_validate", &[id])
                    .ctx(json!({"skip_backorder": true, "skip_sms": true})),
            )
            .await?;
        let rows = s
            .call(
                &format!("{step}: the picking"),
                C::search(
                    "stock.picking",
                    json!([["id", "=", id]]),
                    &["state", "note"],
                ),
            )
            .await?;
        let marked = rows[0]["note"]
            .as_str()
            .is_some_and(|n| n.contains(&marker));
        let demand_now = s
            .call(
                &format!("{step}: demand"),
                C::search(
                    "stock.move",
                    json!([["id", "=", mv]]),
                    &["product_uom_qty", "quantity"],
                ),
            )
            .await?;
        let after = on_hand(s, &format!("{step}: shelf after"), lab.lamp, lab.shelf).await?;
        let backorders = s
            .call(
                &format!("{step}: backorders"),
                C::search(
                    "stock.picking",
                    json!([["backorder_id", "=", id]]),
                    &["id", "state", "note"],
                ),
            )
            .await?;
        let backorders: Vec<Value> = backorders.as_array().cloned().unwrap_or_default();
        let mut rest = Vec::new();
        for b in &backorders {
            let b_id = first_id(&b["id"], "backorder")?;
            let moves = s
                .call(
                    &format!("{step}: backorder moves"),
                    C::search(
                        "stock.move",
                        json!([["picking_id", "=", b_id]]),
                        &["product_uom_qty", "state"],
                    ),
                )
                .await?;
            rest.push(json!([
                b["state"],
                b["note"].as_str().is_some_and(|n| n.contains(&marker)),
                moves[0]["product_uom_qty"],
                moves[0]["state"]
            ]));
            let cancelled = s
                .call(
                    &format!("{step}: cancel the backorder"),
                    C::records("stock.picking", "action_cancel", &[b_id]),
                )
                .await?;
            rest.push(cancelled);
        }
        s.fact(
            &format!("{step}: written, validated, state, marked, demand, done, moved, backorders"),
            json!([
                written,
                done,
                rows[0]["state"],
                marked,
                demand_now[0]["product_uom_qty"],
                demand_now[0]["quantity"],
                after - before,
                rest
            ]),
        );
        if step == "over-pick" {
            // Writing the same quantity on a done move again changes nothing.
            s.call(
                "over-pick: write the done move again",
                C::records("stock.move", "write", &[mv]).arg("vals", json!({"quantity": scanned})),
            )
            .await?;
            let again = on_hand(
                s,
                "over-pick: shelf after writing again",
                lab.lamp,
                lab.shelf,
            )
            .await?;
            s.fact("over-pick: writing again moved", json!(again - after));
            // Another quantity: 17 rewrites history, 18 and 19 refuse (docs/odoo.md#open-pickings).
            s.call(
                "over-pick: another quantity on the done move",
                C::records("stock.move", "write", &[mv])
                    .arg("vals", json!({"quantity": scanned + 1.0})),
            )
            .await?;
            let rewritten = on_hand(
                s,
                "over-pick: shelf after another quantity",
                lab.lamp,
                lab.shelf,
            )
            .await?;
            s.fact(
                "over-pick: another quantity moved",
                json!(rewritten - again),
            );
        }
    }
    Ok(())
}

/// The backorder wizard's own path: created without the action's context its `process`
/// answers `true` and validates nothing; with it, the picking is done with a backorder
/// (docs/odoo.md#open-pickings).
pub async fn wizard(s: &mut Session, lab: &Lab) -> anyhow::Result<()> {
    let (id, name, mv, lines) = open(s, "wizard", lab, lab.lamp, false, 2.0).await?;
    let line = json!({"product_id": lab.lamp, "product_uom_id": lab.uom, "location_id": lab.shelf,
                      "location_dest_id": lab.customers, "quantity": 1.0, "picked": true,
                      "picking_id": id});
    let marker = s.name("wizard");
    s.call("wizard: write", fill(id, &name, &marker, mv, &lines, line))
        .await?;
    let action = s
        .call(
            "wizard: validate without context",
            C::records("stock.picking", "button_validate", &[id]),
        )
        .await?;
    let model = action["res_model"]
        .as_str()
        .unwrap_or("stock.backorder.confirmation")
        .to_owned();
    let vals = json!([{"pick_ids": [[4, id]]}]);
    let bare = s
        .call(
            "wizard: create without context",
            C::model(&model, "create").arg("vals_list", vals.clone()),
        )
        .await?;
    let bare = first_id(&bare, "wizard")?;
    let processed = s
        .call(
            "wizard: process without context",
            C::records(&model, "process", &[bare]),
        )
        .await?;
    let still = state(s, "wizard: state after the bare wizard", &name).await?;
    let context = action["context"].clone();
    let wizard = s
        .call(
            "wizard: create with the action's context",
            C::model(&model, "create")
                .arg("vals_list", vals)
                .ctx(context.clone()),
        )
        .await?;
    let wizard = first_id(&wizard, "wizard")?;
    let done = s
        .call(
            "wizard: process",
            C::records(&model, "process", &[wizard]).ctx(context),
        )
        .await?;
    let after = state(s, "wizard: state after processing", &name).await?;
    let backorders = s
        .call(
            "wizard: backorders",
            C::search(
                "stock.picking",
                json!([["backorder_id", "=", id]]),
                &["id", "state"],
            ),
        )
        .await?;
    let mut rest = Vec::new();
    for b in backorders.as_array().cloned().unwrap_or_default() {
        let b_id = first_id(&b["id"], "backorder")?;
        rest.push(b["state"].clone());
        let cancelled = s
            .call(
                "wizard: cancel the backorder",
                C::records("stock.picking", "action_cancel", &[b_id]),
            )
            .await?;
        rest.push(cancelled);
    }
    s.fact(
        "wizard: model, bare processed, state, processed, state, backorders",
        json!([model, processed, still, done, after, rest]),
    );
    Ok(())
}

/// The hazard of docs/odoo.md#move-lines: a quantity written with nothing picked makes Odoo
/// pick every move and ship every reservation. Measured in the whole warehouse, since Odoo
/// chose where it reserved.
pub async fn unpicked(s: &mut Session, lab: &Lab) -> anyhow::Result<()> {
    let (id, _, mv, _) = open(s, "unpicked", lab, lab.lamp, false, 2.0).await?;
    let before = in_warehouse(s, "unpicked: warehouse before", lab).await?;
    s.call(
        "unpicked: write a quantity, nothing picked",
        C::records("stock.move", "write", &[mv]).arg("vals", json!({"quantity": 1.0})),
    )
    .await?;
    let done = s
        .call(
            "unpicked: validate",
            C::records("stock.picking", "button_validate", &[id])
                .ctx(json!({"skip_backorder": true, "skip_sms": true})),
        )
        .await?;
    let after = in_warehouse(s, "unpicked: warehouse after", lab).await?;
    let backorders = s
        .call(
            "unpicked: backorders",
            C::search(
                "stock.picking",
                json!([["backorder_id", "=", id]]),
                &["id", "state"],
            ),
        )
        .await?;
    let mut rest = Vec::new();
    for b in backorders.as_array().cloned().unwrap_or_default() {
        let b_id = first_id(&b["id"], "backorder")?;
        rest.push(b["state"].clone());
        let cancelled = s
            .call(
                "unpicked: cancel the backorder",
                C::records("stock.picking", "action_cancel", &[b_id]),
            )
            .await?;
        rest.push(cancelled);
    }
    s.fact(
        "unpicked: validated, left the warehouse, backorders",
        json!([done, after - before, rest]),
    );
    Ok(())
}

/// On hand of the lamp in the whole warehouse.
async fn in_warehouse(s: &mut Session, step: &str, lab: &Lab) -> anyhow::Result<f64> {
    let rows = s
        .call(
            step,
            C::search(
                "product.product",
                json!([["id", "=", lab.lamp]]),
                &["qty_available"],
            )
            .ctx(json!({"warehouse": lab.warehouse})),
        )
        .await?;
    rows[0]["qty_available"].as_f64().context("qty_available")
}

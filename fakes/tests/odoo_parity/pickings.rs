//! Tally's own pickings — receipts, deliveries, mixed internal pickings, the four-call path,
//! the move's name per version — and the refusals it must classify (docs/odoo.md#pickings,
//! #exactly-once, #reservations, #errors).

use anyhow::Context;
use serde_json::json;

use super::script::{Lab, free, id_of, moving, on_hand, picking, state, states, validate};
use super::{C, Session};

/// Tally's own pickings (docs/odoo.md#pickings, #exactly-once, #reservations).
pub async fn own(s: &mut Session, lab: &Lab) -> anyhow::Result<()> {
    let named = s.major < 19;
    let before = on_hand(s, "receipt: shelf before", lab.lamp, lab.shelf).await?;
    let key = s.name("in");
    let receipt = moving(s, lab, 2.0, lab.vendors, lab.shelf, named);
    let created = s
        .call(
            "receipt: create",
            picking(
                &key,
                lab.receipt_type,
                lab.vendors,
                lab.shelf,
                std::slice::from_ref(&receipt),
            ),
        )
        .await?;
    let id = id_of(&created, "receipt")?;
    let moves = s
        .call(
            "receipt: its moves",
            C::search(
                "stock.move",
                json!([["picking_id", "=", id]]),
                &["reference", "origin", "state", "quantity", "picked"],
            ),
        )
        .await?;
    let m = &moves[0];
    s.fact(
        "receipt: moves before validation",
        json!([
            m["reference"] == key.as_str(),
            m["origin"],
            m["state"],
            m["quantity"],
            m["picked"]
        ]),
    );
    let before_validation = states(s, "receipt: before validation", id).await?;
    s.fact("receipt: states before validation", before_validation);
    let done = s.call("receipt: validate", validate(id)).await?;
    s.fact("receipt: validated", done);
    let state = state(s, "receipt: find by name", &key).await?;
    s.fact("receipt: state", json!(state));
    let after = on_hand(s, "receipt: shelf after", lab.lamp, lab.shelf).await?;
    s.fact("receipt: shelf moved", json!(after - before));
    s.call(
        "receipt: the same name again",
        picking(&key, lab.receipt_type, lab.vendors, lab.shelf, &[receipt]),
    )
    .await?;
    // 17 refuses, 18 and 19 answer true; neither moves stock.
    s.call("receipt: validate again", validate(id)).await?;
    let again = on_hand(
        s,
        "receipt: shelf after validating again",
        lab.lamp,
        lab.shelf,
    )
    .await?;
    s.fact("receipt: validating again moved", json!(again - after));

    // The move's name: optional on 17, required on 18, gone on 19.
    for (step, with_name) in [
        ("a move without a name", false),
        ("a move with a name", true),
    ] {
        let key = s.name(if with_name { "named" } else { "unnamed" });
        let line = moving(s, lab, 1.0, lab.vendors, lab.stock, with_name);
        let created = s
            .call(
                &format!("receipt: {step}"),
                picking(&key, lab.receipt_type, lab.vendors, lab.stock, &[line]),
            )
            .await?;
        if let Ok(id) = id_of(&created, "picking") {
            let cancelled = s
                .call(
                    &format!("receipt: {step}: cancel"),
                    C::records("stock.picking", "action_cancel", &[id]),
                )
                .await?;
            s.fact(&format!("receipt: {step}: cancelled"), cancelled);
        }
    }

    // Validated without any context: nothing to back order, so `true`.
    let key = s.name("nocontext");
    let line = moving(s, lab, 1.0, lab.vendors, lab.shelf, named);
    let created = s
        .call(
            "receipt without context: create",
            picking(&key, lab.receipt_type, lab.vendors, lab.shelf, &[line]),
        )
        .await?;
    let id = id_of(&created, "receipt")?;
    let done = s
        .call(
            "receipt without context: validate",
            C::records("stock.picking", "button_validate", &[id]),
        )
        .await?;
    s.fact("receipt without context: validated", done);

    // Four calls: draft, confirm, write the quantity, validate.
    let key = s.name("four");
    let mut line = moving(s, lab, 1.0, lab.vendors, lab.shelf, named);
    let map = line.as_object_mut().context("move")?;
    map.remove("quantity");
    map.remove("picked");
    let created = s
        .call(
            "four calls: create a draft",
            picking(&key, lab.receipt_type, lab.vendors, lab.shelf, &[line]),
        )
        .await?;
    let id = id_of(&created, "draft")?;
    s.call(
        "four calls: confirm",
        C::records("stock.picking", "action_confirm", &[id]),
    )
    .await?;
    let moves = s
        .call(
            "four calls: the move",
            C::search(
                "stock.move",
                json!([["picking_id", "=", id]]),
                &["id", "state", "quantity"],
            ),
        )
        .await?;
    let state_then = moves[0]["state"].clone();
    let mv = id_of(&moves[0]["id"], "move")?;
    s.call(
        "four calls: write the quantity",
        C::records("stock.move", "write", &[mv])
            .arg("vals", json!({"quantity": 1.0, "picked": true})),
    )
    .await?;
    let written = states(s, "four calls: written", id).await?;
    let done = s.call("four calls: validate", validate(id)).await?;
    s.fact(
        "four calls: confirmed state, written states, validated",
        json!([state_then, written, done]),
    );

    // A delivery reserves at once, even beyond what is on hand, and moves exactly its quantity.
    let key = s.name("out");
    let free_before = free(s, "delivery: free before", lab, lab.shelf).await?;
    let shelf_before = on_hand(s, "delivery: shelf before", lab.lamp, lab.shelf).await?;
    let line = moving(s, lab, 1.0, lab.shelf, lab.customers, named);
    let created = s
        .call(
            "delivery: create",
            picking(&key, lab.delivery_type, lab.shelf, lab.customers, &[line]),
        )
        .await?;
    let id = id_of(&created, "delivery")?;
    let free_after = free(s, "delivery: free after create", lab, lab.shelf).await?;
    let created = states(s, "delivery: created", id).await?;
    s.fact("delivery: states before validation", created);
    let done = s.call("delivery: validate", validate(id)).await?;
    let shelf_after = on_hand(s, "delivery: shelf after", lab.lamp, lab.shelf).await?;
    s.fact(
        "delivery: reserved on create, validated, moved",
        json!([free_after - free_before, done, shelf_after - shelf_before]),
    );

    // An internal picking mixing directions, as an adjustment is booked.
    let key = s.name("mixed");
    let before = on_hand(s, "mixed: shelf before", lab.lamp, lab.shelf).await?;
    let moves = [
        moving(s, lab, 3.0, lab.adjustment, lab.shelf, named),
        moving(s, lab, 1.0, lab.shelf, lab.adjustment, named),
    ];
    let created = s
        .call(
            "mixed: create",
            picking(&key, lab.internal_type, lab.adjustment, lab.shelf, &moves),
        )
        .await?;
    let id = id_of(&created, "mixed")?;
    let created = states(s, "mixed: created", id).await?;
    s.fact("mixed: states before validation", created);
    let done = s.call("mixed: validate", validate(id)).await?;
    let after = on_hand(s, "mixed: shelf after", lab.lamp, lab.shelf).await?;
    s.fact("mixed: validated, moved", json!([done, after - before]));
    Ok(())
}

/// What Odoo refuses of a picking (docs/odoo.md#errors).
pub async fn refusals(s: &mut Session, lab: &Lab) -> anyhow::Result<()> {
    let named = s.major < 19;
    let key = s.name("empty");
    let created = s
        .call(
            "empty transfer: create",
            picking(&key, lab.receipt_type, lab.vendors, lab.stock, &[]),
        )
        .await?;
    let id = id_of(&created, "empty")?;
    s.call("empty transfer: validate", validate(id)).await?;
    s.call(
        "empty transfer: cancel",
        C::records("stock.picking", "action_cancel", &[id]),
    )
    .await?;
    // A cancelled picking keeps its name until it is deleted (docs/odoo.md#cancelling).
    let empty = |key: &str| picking(key, lab.receipt_type, lab.vendors, lab.stock, &[]);
    s.call("cancelled: its name again", empty(&key)).await?;
    let gone = s
        .call(
            "cancelled: unlink",
            C::records("stock.picking", "unlink", &[id]),
        )
        .await?;
    let again = s.call("unlinked: its name again", empty(&key)).await?;
    let again = id_of(&again, "picking")?;
    s.call(
        "unlinked: unlink the new one",
        C::records("stock.picking", "unlink", &[again]),
    )
    .await?;
    s.fact("cancelled, unlinked", gone);
    let done = s
        .call(
            "a done picking",
            C::search(
                "stock.picking",
                json!([["name", "=", s.name("in")]]),
                &["id", "state"],
            ),
        )
        .await?;
    let done = id_of(&done[0]["id"], "done picking")?;
    s.call(
        "a done picking: unlink",
        C::records("stock.picking", "unlink", &[done]),
    )
    .await?;
    s.call(
        "a done picking: cancel",
        C::records("stock.picking", "action_cancel", &[done]),
    )
    .await?;
    let still = state(s, "a done picking: state", &s.name("in")).await?;
    s.fact("a done picking: still", json!(still));
    let mut line = moving(s, lab, 1.0, lab.vendors, lab.stock, named);
    line.as_object_mut().context("move")?.remove("location_id");
    s.call(
        "a move without its source",
        picking(
            &s.name("nosource"),
            lab.receipt_type,
            lab.vendors,
            lab.stock,
            &[line],
        ),
    )
    .await?;
    let mut line = moving(s, lab, 1.0, lab.vendors, lab.stock, named);
    line["quantity"] = json!("ten");
    s.call(
        "a quantity that is not a number",
        picking(
            &s.name("ten"),
            lab.receipt_type,
            lab.vendors,
            lab.stock,
            &[line],
        ),
    )
    .await?;
    s.call("a picking that does not exist", validate(999_999_999))
        .await?;
    Ok(())
}

/// The refusals Tally classifies as contract errors (docs/odoo.md#errors).
pub async fn errors(s: &mut Session) -> anyhow::Result<()> {
    let any = json!([]);
    s.call(
        "unknown model",
        C::search("no.such.model", any.clone(), &["id"]),
    )
    .await?;
    s.call(
        "unknown method",
        C::model("product.product", "no_such_method"),
    )
    .await?;
    s.call(
        "unknown field",
        C::search("product.product", any.clone(), &["no_such_field"]),
    )
    .await?;
    s.call(
        "private method",
        C::records("stock.picking", "_action_done", &[999_999_999]),
    )
    .await?;
    s.call("no right", C::search("ir.config_parameter", any, &["key"]))
        .await?;
    Ok(())
}

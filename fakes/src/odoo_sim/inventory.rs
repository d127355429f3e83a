//! `stock.quant` in `inventory_mode` (docs/odoo.md#quants): counts set with
//! `create(inventory_quantity)` (which returns the existing row's id), relative counts by
//! writing `inventory_diff_quantity`, `action_apply_inventory` (done `is_inventory` moves
//! named by the context's `inventory_name`, no `result` key), the wizards it returns instead
//! of applying (tracked product without lot, outdated count), the conflict wizard, and the
//! 1-call `inventory_quantity_auto_apply` (18 drops the marker).

use serde_json::{Map, Value, json};

use super::Version;
use super::clock;
use super::orm::{EPSILON, Env, as_f64, ids_of, truthy};
use super::rpc::OdooError;
use super::stock;
use super::store::{Id, Rec};

/// Odoo's inventory-loss location ("Virtual Locations/Inventory adjustment").
fn inventory_loss(env: &Env) -> Result<Id, OdooError> {
    env.db
        .ids("stock.location")
        .into_iter()
        .find(|l| {
            env.text("stock.location", *l, "usage") == "inventory"
                && !env.flag("stock.location", *l, "scrap_location")
        })
        .ok_or_else(|| OdooError::UserError("No inventory adjustment location".into()))
}

/// Whether the quantity moved since the count was set (`is_outdated`): the counted quantity
/// minus the stored difference no longer equals the quantity.
pub fn is_outdated(env: &Env, quant: Id) -> bool {
    env.flag("stock.quant", quant, "inventory_quantity_set")
        && (env.f64("stock.quant", quant, "inventory_quantity")
            - env.f64("stock.quant", quant, "inventory_diff_quantity")
            - env.f64("stock.quant", quant, "quantity"))
        .abs()
            > EPSILON
}

/// Sets a counted quantity on a row, as the UI does: the difference is stored now, the row
/// is marked as counted by the calling user today.
fn set_count(env: &mut Env, quant: Id, counted: f64, counter: Option<Id>) {
    let quantity = env.f64("stock.quant", quant, "quantity");
    let today = clock::format_date(env.now);
    env.db.update("stock.quant", quant, |rec| {
        rec.insert("inventory_quantity", Value::from(counted));
        rec.insert("inventory_diff_quantity", Value::from(counted - quantity));
        rec.insert("inventory_quantity_set", Value::Bool(true));
        if let Some(user) = counter {
            rec.insert("user_id", Value::from(user));
        }
        rec.insert("inventory_date", Value::from(today));
    });
}

/// The name of the move a one-call count (`inventory_quantity_auto_apply`) books: 18 replaces
/// the whole context there, losing `inventory_name`; 17 and 19 keep it (docs/odoo.md#quants).
fn auto_apply_name(env: &Env) -> Option<String> {
    match env.version {
        Version::V18 => None,
        Version::V17 | Version::V19 => env.ctx_value("inventory_name").as_str().map(str::to_owned),
    }
}

/// Forgets a count (after applying it, or `action_clear_inventory_quantity`).
fn clear_count(env: &mut Env, quant: Id) {
    let year_end = clock::year_end(env.now);
    env.db.update("stock.quant", quant, |rec| {
        rec.insert("inventory_quantity", json!(0.0));
        rec.insert("inventory_diff_quantity", json!(0.0));
        rec.insert("inventory_quantity_set", Value::Bool(false));
        rec.insert("user_id", Value::Null);
        rec.insert("inventory_date", Value::from(year_end));
    });
}

/// The key fields of a quant create.
fn key_of(env: &Env, vals: &Map<String, Value>) -> Result<(Id, Id, Option<Id>), OdooError> {
    let rec = env.to_record("stock.quant", vals)?;
    let product = rec.get("product_id").and_then(Value::as_i64);
    let location = rec.get("location_id").and_then(Value::as_i64);
    let (Some(product), Some(location)) = (product, location) else {
        let field = if product.is_none() {
            "product_id"
        } else {
            "location_id"
        };
        let def = env.field_def("stock.quant", field)?;
        return Err(super::orm::required_error(env.version, "stock.quant", def));
    };
    Ok((product, location, rec.get("lot_id").and_then(Value::as_i64)))
}

/// `stock.quant.create`. In inventory mode a counted quantity goes to the first existing
/// row of the key (whose id is returned); `inventory_quantity_auto_apply` applies at once;
/// anything else makes a new row — also outside inventory mode, where a `quantity` creates
/// stock with no move at all (the danger docs/odoo.md#quants warns of).
pub fn create_quants(
    env: &mut Env,
    vals_list: &[Map<String, Value>],
) -> Result<Vec<Id>, OdooError> {
    let inventory_mode = env.ctx_flag("inventory_mode");
    let mut ids = Vec::new();
    for vals in vals_list {
        let (product, location, lot) = key_of(env, vals)?;
        if inventory_mode && let Some(counted) = vals.get("inventory_quantity_auto_apply") {
            let quant = stock::ensure_quant_row(env, product, location, lot);
            let quantity = env.f64("stock.quant", quant, "quantity");
            env.db.set(
                "stock.quant",
                quant,
                "inventory_diff_quantity",
                Value::from(as_f64(counted) - quantity),
            );
            let name = auto_apply_name(env);
            apply_quants(env, &[quant], name)?;
            ids.push(quant);
        } else if inventory_mode && let Some(counted) = vals.get("inventory_quantity") {
            let quant = match stock::quant_rows(env, product, location, lot).first() {
                Some(row) => *row,
                None => stock::ensure_quant_row(env, product, location, lot),
            };
            // A count created in inventory mode is the counting user's (their name goes on the
            // move); one written on an existing row is no one's (as 17, 18 and 19 answered).
            let uid = env.uid;
            set_count(env, quant, as_f64(counted), Some(uid));
            ids.push(quant);
        } else {
            let mut rec: Rec = env.to_record("stock.quant", vals)?;
            rec.entry("company_id").or_insert(json!(1));
            rec.entry("quantity").or_insert(json!(0.0));
            rec.insert("inventory_quantity", json!(0.0));
            // A stored compute: recomputed to 0 on create whatever was sent.
            rec.insert("inventory_diff_quantity", json!(0.0));
            rec.insert("inventory_quantity_set", Value::Bool(false));
            rec.insert("in_date", Value::from(env.now_text()));
            rec.insert("inventory_date", Value::from(clock::year_end(env.now)));
            ids.push(env.insert_checked("stock.quant", rec)?);
        }
    }
    Ok(ids)
}

/// `stock.quant.write`: counted quantities mark the row; the difference may be written
/// directly (the relative path, docs/odoo.md#quants).
pub fn write_quants(
    env: &mut Env,
    quants: &[Id],
    vals: &Map<String, Value>,
) -> Result<(), OdooError> {
    env.check_exist("stock.quant", quants)?;
    for quant in quants {
        for (field, value) in vals {
            match field.as_str() {
                "inventory_quantity" => set_count(env, *quant, as_f64(value), None),
                "inventory_quantity_auto_apply" if env.ctx_flag("inventory_mode") => {
                    set_count(env, *quant, as_f64(value), None);
                    let name = auto_apply_name(env);
                    apply_quants(env, &[*quant], name)?;
                }
                "inventory_diff_quantity" => env.db.set(
                    "stock.quant",
                    *quant,
                    "inventory_diff_quantity",
                    Value::from(as_f64(value)),
                ),
                "inventory_quantity_set" if !truthy(value) => clear_count(env, *quant),
                _ => {
                    let def = env.field_def("stock.quant", field)?;
                    let value = env.coerce("stock.quant", def, value)?;
                    env.db.set("stock.quant", *quant, def.name, value);
                }
            }
        }
    }
    Ok(())
}

/// `action_apply_inventory`: the tracking wizard when a tracked product is counted without a
/// lot, the conflict wizard when a count is outdated (nothing applied in either case), else
/// applies and returns `None` (no `result` key).
pub fn apply_inventory(env: &mut Env, quants: &[Id]) -> Result<Option<Value>, OdooError> {
    env.check_exist("stock.quant", quants)?;
    let tracked_without_lot: Vec<Id> = quants
        .iter()
        .filter_map(|q| {
            let product = env.m2o("stock.quant", *q, "product_id")?;
            (stock::is_tracked(env, product)
                && env.m2o("stock.quant", *q, "lot_id").is_none()
                && env.flag("stock.quant", *q, "inventory_quantity_set"))
            .then_some(product)
        })
        .collect();
    if !tracked_without_lot.is_empty() {
        let mut context = env.ctx.clone();
        context.insert("default_quant_ids".into(), json!(quants));
        context.insert("default_product_ids".into(), json!(tracked_without_lot));
        return Ok(Some(json!({
            "name": "Tracked Products in Inventory Adjustment",
            "type": "ir.actions.act_window",
            "view_mode": "form",
            "views": [[false, "form"]],
            "res_model": "stock.track.confirmation",
            "target": "new",
            "context": context,
        })));
    }
    let outdated: Vec<Id> = quants
        .iter()
        .copied()
        .filter(|q| is_outdated(env, *q))
        .collect();
    if !outdated.is_empty() {
        let mut context = env.ctx.clone();
        context.insert("default_quant_ids".into(), json!(quants));
        context.insert("default_quant_to_fix_ids".into(), json!(outdated));
        return Ok(Some(json!({
            "name": "Conflict in Inventory Adjustment",
            "type": "ir.actions.act_window",
            "view_mode": "form",
            "views": [[false, "form"]],
            "res_model": "stock.inventory.conflict",
            "target": "new",
            "context": context,
        })));
    }
    let name = env.ctx_value("inventory_name").as_str().map(str::to_owned);
    apply_quants(env, quants, name)?;
    Ok(None)
}

/// Applies each row's stored difference as a done `is_inventory` move from or to the
/// inventory-loss location, named `name` (or "Product Quantity Updated") plus the counting
/// user, then forgets the counts. A zero difference still logs a zero move, as observed.
fn apply_quants(env: &mut Env, quants: &[Id], name: Option<String>) -> Result<(), OdooError> {
    let loss = inventory_loss(env)?;
    for quant in quants {
        let diff = env.f64("stock.quant", *quant, "inventory_diff_quantity");
        let product = env.m2o("stock.quant", *quant, "product_id").unwrap_or(0);
        let location = env.m2o("stock.quant", *quant, "location_id").unwrap_or(0);
        let lot = env.m2o("stock.quant", *quant, "lot_id");
        let mut move_name = name
            .clone()
            .unwrap_or_else(|| "Product Quantity Updated".to_owned());
        if let Some(user) = env.m2o("stock.quant", *quant, "user_id") {
            move_name = format!("{move_name} ({})", env.text("res.users", user, "name"));
        }
        let (source, dest) = if diff > 0.0 {
            (loss, location)
        } else {
            (location, loss)
        };
        let now = Value::from(env.now_text());
        let mut mv = Rec::new();
        mv.insert("name", Value::from(move_name));
        mv.insert("product_id", json!(product));
        mv.insert(
            "product_uom",
            env.db.field("product.product", product, "uom_id"),
        );
        mv.insert("product_uom_qty", Value::from(diff.abs()));
        mv.insert("location_id", json!(source));
        mv.insert("location_dest_id", json!(dest));
        mv.insert("state", Value::from("done"));
        mv.insert("picked", Value::Bool(true));
        mv.insert("is_inventory", Value::Bool(true));
        mv.insert("company_id", json!(1));
        mv.insert("sequence", json!(10));
        mv.insert("date", now.clone());
        let move_id = env.db.insert("stock.move", mv);
        let mut line = Rec::new();
        line.insert("move_id", json!(move_id));
        line.insert("product_id", json!(product));
        line.insert(
            "product_uom_id",
            env.db.field("product.product", product, "uom_id"),
        );
        line.insert("quantity", Value::from(diff.abs()));
        line.insert("location_id", json!(source));
        line.insert("location_dest_id", json!(dest));
        line.insert("lot_id", lot.map_or(Value::Null, Value::from));
        line.insert("picked", Value::Bool(true));
        line.insert("company_id", json!(1));
        line.insert("date", now);
        env.db.insert("stock.move.line", line);
        env.lines += 1;
        stock::move_quant(env, product, source, dest, lot, diff.abs());
        clear_count(env, *quant);
    }
    Ok(())
}

/// `action_clear_inventory_quantity`: forgets pending counts; returns `None`.
pub fn clear_inventory(env: &mut Env, quants: &[Id]) -> Result<(), OdooError> {
    env.check_exist("stock.quant", quants)?;
    for quant in quants {
        clear_count(env, *quant);
    }
    Ok(())
}

/// `stock.inventory.conflict.create`, filled from the action's context.
pub fn create_conflict_wizard(env: &mut Env, vals: &Map<String, Value>) -> Result<Id, OdooError> {
    let pick = |key: &str, default: &str| {
        vals.get(key)
            .map(|v| super::orm::apply_m2m_commands(&[], v))
            .unwrap_or_else(|| Ok(ids_of(env.ctx_value(default))))
    };
    let quants = pick("quant_ids", "default_quant_ids")?;
    let to_fix = pick("quant_to_fix_ids", "default_quant_to_fix_ids")?;
    let mut rec = Rec::new();
    rec.insert("quant_ids", json!(quants));
    rec.insert("quant_to_fix_ids", json!(to_fix));
    Ok(env.db.insert("stock.inventory.conflict", rec))
}

/// `action_keep_difference` (apply the differences computed when the counts were set, i.e.
/// "as of" the count) or `action_keep_counted_quantity` (force the counted quantities).
pub fn resolve_conflict(
    env: &mut Env,
    wizards: &[Id],
    keep_counted: bool,
) -> Result<(), OdooError> {
    env.check_exist("stock.inventory.conflict", wizards)?;
    let name = env.ctx_value("inventory_name").as_str().map(str::to_owned);
    for wizard in wizards {
        let quants = ids_of(
            &env.db
                .field("stock.inventory.conflict", *wizard, "quant_ids"),
        );
        if keep_counted {
            for quant in &quants {
                let counted = env.f64("stock.quant", *quant, "inventory_quantity");
                let quantity = env.f64("stock.quant", *quant, "quantity");
                env.db.set(
                    "stock.quant",
                    *quant,
                    "inventory_diff_quantity",
                    Value::from(counted - quantity),
                );
            }
        }
        apply_quants(env, &quants, name.clone())?;
    }
    Ok(())
}

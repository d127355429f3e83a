//! The script: logging in, what Tally looks up, and the helpers of the other parts —
//! `pickings.rs` (Tally's own pickings and the refusals it must classify), `flows.rs` (lots,
//! quants, what a count reads) and `fills.rs` (open pickings and their backorders). Records are found by name from earlier answers, never by id, so the script runs
//! unchanged on a lab database and on the simulator; quantities are checked as differences.

use anyhow::Context;
use serde_json::{Value, json};

use super::{C, Session, Transport, fills, flows, lots, pickings};

/// The products the script moves: `LAMP` untracked, `WINE` lot-tracked.
pub const LAMP: &str = "LAMP-BRASS";
pub const WINE: &str = "LOT-WINE";
pub const SHELF: &str = "WH/Stock/Shelf 2";

/// What the lookups found.
pub struct Lab {
    pub warehouse: i64,
    pub stock: i64,
    pub shelf: i64,
    pub vendors: i64,
    pub customers: i64,
    pub adjustment: i64,
    pub receipt_type: i64,
    pub delivery_type: i64,
    pub internal_type: i64,
    pub lamp: i64,
    pub wine: i64,
    pub uom: i64,
}

/// The whole script.
pub async fn run(s: &mut Session) -> anyhow::Result<()> {
    connect(s).await?;
    let lab = lookups(s).await?;
    pickings::own(s, &lab).await?;
    pickings::refusals(s, &lab).await?;
    lots::lots(s, &lab).await?;
    flows::quants(s, &lab).await?;
    flows::availability(s, &lab).await?;
    flows::conflict(s, &lab).await?;
    fills::fills(s, &lab).await?;
    fills::wizard(s, &lab).await?;
    fills::unpicked(s, &lab).await?;
    lots::unknown_lot(s, &lab).await?;
    flows::counts(s, &lab).await?;
    flows::strays(s).await?;
    pickings::errors(s).await
}

pub fn id_of(value: &Value, what: &str) -> anyhow::Result<i64> {
    value
        .as_i64()
        .or_else(|| value.get(0).and_then(Value::as_i64))
        .with_context(|| format!("no id for {what} in {value}"))
}

/// The version, the user id, and the refused logins.
async fn connect(s: &mut Session) -> anyhow::Result<()> {
    let info = s.web("version_info", "/web/webclient/version_info").await?;
    let major = info["result"]["server_version_info"][0]
        .as_u64()
        .context("server_version_info")?;
    s.major = u8::try_from(major)?;
    s.fact("major version", json!(major));
    let (db, login, key) = (s.db.clone(), s.login.clone(), s.key.clone());
    match s.transport {
        Transport::Json2 => {
            let context = s
                .json2("context_get", "res.users/context_get", &key, json!({}))
                .await?;
            s.uid = context["uid"].as_i64().context("uid")?;
            s.json2("bad key", "res.users/context_get", "not-a-key", json!({}))
                .await?;
        }
        Transport::Jsonrpc => {
            let auth = s
                .jsonrpc(
                    "authenticate",
                    "common",
                    "authenticate",
                    json!([db, login, key, {}]),
                )
                .await?;
            s.uid = auth["result"].as_i64().context("uid")?;
            s.jsonrpc(
                "authenticate with a bad key",
                "common",
                "authenticate",
                json!([db, login, "not-a-key", {}]),
            )
            .await?;
            s.jsonrpc(
                "authenticate an unknown login",
                "common",
                "authenticate",
                json!([db, "no-such-login", key, {}]),
            )
            .await?;
            let call = |db: &str, uid: i64, key: &str| {
                json!([db, uid, key, "res.users", "context_get", [], {}])
            };
            s.jsonrpc(
                "bad key",
                "object",
                "execute_kw",
                call(&db, s.uid, "not-a-key"),
            )
            .await?;
            s.jsonrpc("bad uid", "object", "execute_kw", call(&db, 999_999, &key))
                .await?;
            s.jsonrpc(
                "unknown database",
                "object",
                "execute_kw",
                call("no_such_db", s.uid, &key),
            )
            .await?;
        }
    }
    // The user's groups: `groups_id` until 18, `group_ids` from 19 (docs/odoo.md#versions).
    let (groups, other) = if s.major >= 19 {
        ("group_ids", "groups_id")
    } else {
        ("groups_id", "group_ids")
    };
    let uid = s.uid;
    let me = s
        .call(
            "the user",
            C::search(
                "res.users",
                json!([["id", "=", uid]]),
                &["login", "email", groups],
            ),
        )
        .await?;
    s.fact("the user has an e-mail", json!(me[0]["email"].is_string()));
    s.call(
        "the other version's groups field",
        C::search("res.users", json!([["id", "=", uid]]), &[other]),
    )
    .await?;
    Ok(())
}

/// Tally's lookups (docs/odoo.md#resolving).
async fn lookups(s: &mut Session) -> anyhow::Result<Lab> {
    let wh = s
        .call(
            "warehouse",
            C::search(
                "stock.warehouse",
                json!([["code", "in", ["WH"]]]),
                &[
                    "id",
                    "code",
                    "company_id",
                    "lot_stock_id",
                    "view_location_id",
                    "in_type_id",
                    "out_type_id",
                    "int_type_id",
                ],
            ),
        )
        .await?;
    let m2o = |field: &str| id_of(&wh[0][field], field);
    let (stock, view) = (m2o("lot_stock_id")?, m2o("view_location_id")?);
    let virtuals = s
        .call(
            "virtual locations",
            C::search(
                "stock.location",
                json!([["usage", "in", ["supplier", "customer", "inventory"]]]),
                &["id", "complete_name", "usage"],
            ),
        )
        .await?;
    let find = |f: &dyn Fn(&Value) -> bool| {
        virtuals
            .as_array()
            .and_then(|rows| rows.iter().find(|r| f(r)))
            .and_then(|r| r["id"].as_i64())
    };
    let vendors = find(&|r| r["usage"] == "supplier").context("vendors")?;
    let customers = find(&|r| r["usage"] == "customer").context("customers")?;
    let adjustment = find(&|r| {
        r["usage"] == "inventory"
            && r["complete_name"]
                .as_str()
                .is_some_and(|n| n.to_lowercase().contains("adjustment"))
    })
    .context("inventory adjustment")?;
    let internal = s
        .call(
            "internal locations by name",
            C::search(
                "stock.location",
                json!([
                    ["complete_name", "in", ["WH/Stock", SHELF]],
                    ["id", "child_of", view]
                ]),
                &["id", "complete_name"],
            ),
        )
        .await?;
    let shelf = internal
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["complete_name"] == SHELF))
        .and_then(|r| r["id"].as_i64())
        .context("shelf")?;
    // Storable: 17's detailed_type, 18's and 19's is_storable (docs/odoo.md#versions).
    let (storable, other) = if s.major >= 18 {
        ("is_storable", "detailed_type")
    } else {
        ("detailed_type", "is_storable")
    };
    let products = s
        .call(
            "products",
            C::search(
                "product.product",
                json!([["default_code", "in", [LAMP, WINE]]]),
                &["id", "default_code", "uom_id", "tracking", "type", storable],
            ),
        )
        .await?;
    let rows = products.as_array().context("products")?;
    let mut facts: Vec<Value> = rows
        .iter()
        .map(|r| {
            let stored = if s.major >= 18 {
                r["is_storable"] == true
            } else {
                r["detailed_type"] == "product"
            };
            json!([r["default_code"], r["tracking"], stored])
        })
        .collect();
    facts.sort_by_key(|f| f[0].to_string());
    s.fact("products: tracking, storable", json!(facts));
    let product = |sku: &str| {
        rows.iter()
            .find(|r| r["default_code"] == sku)
            .with_context(|| format!("no product {sku}"))
    };
    let (lamp, wine) = (product(LAMP)?, product(WINE)?);
    let lab = Lab {
        warehouse: id_of(&wh[0]["id"], "warehouse")?,
        stock,
        shelf,
        vendors,
        customers,
        adjustment,
        receipt_type: m2o("in_type_id")?,
        delivery_type: m2o("out_type_id")?,
        internal_type: m2o("int_type_id")?,
        lamp: id_of(&lamp["id"], "lamp")?,
        wine: id_of(&wine["id"], "wine")?,
        uom: id_of(&lamp["uom_id"], "uom")?,
    };
    s.call(
        "the other version's storable field",
        C::search("product.product", json!([["id", "=", lab.lamp]]), &[other]),
    )
    .await?;
    Ok(lab)
}

/// A move with its quantity preset and picked, as Tally sends it (docs/odoo.md#pickings);
/// with the move's `name` when `named`.
pub fn moving(s: &Session, lab: &Lab, qty: f64, from: i64, to: i64, named: bool) -> Value {
    let mut line = json!({"product_id": lab.lamp, "product_uom": lab.uom,
                          "product_uom_qty": qty, "quantity": qty, "picked": true,
                          "location_id": from, "location_dest_id": to});
    if named {
        line["name"] = json!(s.stamp);
    }
    line
}

/// `stock.picking.create` of one picking.
pub fn picking(name: &str, kind: i64, from: i64, to: i64, moves: &[Value]) -> C {
    let moves: Vec<Value> = moves.iter().map(|m| json!([0, 0, m])).collect();
    C::model("stock.picking", "create").arg(
        "vals_list",
        json!([{"name": name, "origin": name, "picking_type_id": kind,
                "location_id": from, "location_dest_id": to, "move_ids": moves}]),
    )
}

/// Tally's validation: no wizard, the rest dropped.
pub fn validate(id: i64) -> C {
    C::records("stock.picking", "button_validate", &[id]).ctx(
        json!({"skip_backorder": true, "picking_ids_not_to_backorder": [id], "skip_sms": true}),
    )
}

/// The state of the picking called `name` (`missing` when there is none).
pub async fn state(s: &mut Session, step: &str, name: &str) -> anyhow::Result<String> {
    let rows = s
        .call(
            step,
            C::search(
                "stock.picking",
                json!([["name", "=", name]]),
                &["id", "state"],
            ),
        )
        .await?;
    Ok(rows[0]["state"].as_str().unwrap_or("missing").to_owned())
}

/// The state of picking `id` and of its moves (sorted): `[picking, [moves…]]`.
pub async fn states(s: &mut Session, step: &str, id: i64) -> anyhow::Result<Value> {
    let picking = s
        .call(
            &format!("{step}: picking state"),
            C::search("stock.picking", json!([["id", "=", id]]), &["state"]),
        )
        .await?;
    let moves = s
        .call(
            &format!("{step}: move states"),
            C::search("stock.move", json!([["picking_id", "=", id]]), &["state"]),
        )
        .await?;
    let mut moves: Vec<String> = moves
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["state"].as_str().map(str::to_owned))
        .collect();
    moves.sort();
    Ok(json!([picking[0]["state"], moves]))
}

/// On hand of `product` at exactly `location`, every quant row summed.
pub async fn on_hand(
    s: &mut Session,
    step: &str,
    product: i64,
    location: i64,
) -> anyhow::Result<f64> {
    let rows = s
        .call(
            step,
            C::search(
                "stock.quant",
                json!([["product_id", "=", product], ["location_id", "=", location]]),
                &["quantity", "reserved_quantity", "lot_id"],
            ),
        )
        .await?;
    Ok(rows
        .as_array()
        .map(|rows| rows.iter().filter_map(|r| r["quantity"].as_f64()).sum())
        .unwrap_or(0.0))
}

/// `free_qty` of the lamp at `location` and its children.
pub async fn free(s: &mut Session, step: &str, lab: &Lab, location: i64) -> anyhow::Result<f64> {
    let rows = s
        .call(
            step,
            C::search(
                "product.product",
                json!([["id", "=", lab.lamp]]),
                &["free_qty"],
            )
            .ctx(json!({"location": location})),
        )
        .await?;
    rows[0]["free_qty"].as_f64().context("free_qty")
}

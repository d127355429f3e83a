//! Typed calls for what the merge needs, each one request to Odoo over either transport
//! (docs/odoo.md).

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};
use tally_protocol::Qty;

use super::client::{Call, OdooClient};
use super::error::{ErrorKind, OdooError};
use crate::merge::plan::{
    FillMove, Line, MovedRow, OpenMove, OpenPicking, PickingKind, PlannedFill, PlannedPicking,
    QuantRow,
};

/// A warehouse as Odoo describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarehouseRow {
    pub id: i64,
    pub code: String,
    pub company_id: i64,
    pub stock_location: i64,
    pub view_location: i64,
    pub receipt_type: i64,
    pub delivery_type: i64,
    pub internal_type: i64,
}

/// The virtual locations stock comes from and goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtualLocations {
    pub vendors: i64,
    pub customers: i64,
    pub inventory_adjustment: i64,
}

/// A product found by its SKU (`default_code`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductRow {
    pub id: i64,
    pub sku: String,
    pub uom_id: i64,
    /// `none`, `lot` or `serial`.
    pub tracking: String,
    /// Whether Odoo keeps stock of it (17: `detailed_type == 'product'`; 18: `is_storable`).
    pub storable: bool,
}

/// A count someone entered in Odoo and has not applied.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingCount {
    pub product: i64,
    pub location: i64,
    pub counted: f64,
    /// Who counted (the quant's `user_id`).
    pub user: String,
}

/// A picking's id and state (`draft`, `waiting`, `confirmed`, `assigned`, `done`, `cancel`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickingState {
    pub id: i64,
    pub state: String,
}

fn malformed(what: &str) -> OdooError {
    OdooError::new(
        ErrorKind::Contract,
        "malformed-answer",
        format!("Odoo's answer to {what} has an unexpected shape"),
    )
}

/// A many2one value: `[id, "display name"]`, or `false`.
fn many2one(value: &Value) -> Option<i64> {
    value.get(0).and_then(Value::as_i64)
}

fn int(value: &Value) -> Option<i64> {
    value.as_i64()
}

/// A quantity as Odoo's float fields take it: the double nearest the exact decimal, which
/// rounds back to it (`Qty::to_f64`). The merge never plans a line beyond
/// `Qty::MAX_EXACT_MICROS`; one that gets here anyway (a plan recorded by an older version) is
/// refused as bad data, so its events are parked instead of a different quantity being booked.
pub fn qty_value(qty: Qty) -> Result<Value, OdooError> {
    match qty.to_f64() {
        Some(value) => Ok(json!(value)),
        None => Err(OdooError::new(
            ErrorKind::Permanent,
            "quantity-too-large",
            format!(
                "a quantity of {qty} is more than Odoo's float quantities hold exactly ({} units)",
                Qty::MAX_EXACT_MICROS / Qty::SCALE
            ),
        )),
    }
}

impl OdooClient {
    /// `model.search_read(domain, fields)`.
    pub async fn search_read(
        &self,
        model: &str,
        domain: Value,
        fields: &[&str],
        context: Option<Value>,
    ) -> Result<Vec<Value>, OdooError> {
        let mut call = Call::model(model, "search_read")
            .arg("domain", domain)
            .kwarg("fields", json!(fields));
        if let Some(context) = context {
            call = call.context(context);
        }
        match self.execute(call).await? {
            Some(Value::Array(rows)) => Ok(rows),
            _ => Err(malformed(&format!("{model}.search_read"))),
        }
    }

    pub async fn warehouses(&self, codes: &[String]) -> Result<Vec<WarehouseRow>, OdooError> {
        let fields = [
            "id",
            "code",
            "company_id",
            "lot_stock_id",
            "view_location_id",
            "in_type_id",
            "out_type_id",
            "int_type_id",
        ];
        let rows = self
            .search_read(
                "stock.warehouse",
                json!([["code", "in", codes]]),
                &fields,
                None,
            )
            .await?;
        rows.iter()
            .map(|r| {
                Some(WarehouseRow {
                    id: int(&r["id"])?,
                    code: r["code"].as_str()?.to_owned(),
                    company_id: many2one(&r["company_id"])?,
                    stock_location: many2one(&r["lot_stock_id"])?,
                    view_location: many2one(&r["view_location_id"])?,
                    receipt_type: many2one(&r["in_type_id"])?,
                    delivery_type: many2one(&r["out_type_id"])?,
                    internal_type: many2one(&r["int_type_id"])?,
                })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed("stock.warehouse.search_read"))
    }

    /// Vendors, Customers and Inventory adjustment, by usage (and by name for inventory, which
    /// Scrap shares).
    pub async fn virtual_locations(&self) -> Result<VirtualLocations, OdooError> {
        let rows = self
            .search_read(
                "stock.location",
                json!([["usage", "in", ["supplier", "customer", "inventory"]]]),
                &["id", "complete_name", "usage"],
                None,
            )
            .await?;
        let find = |usage: &str, name: Option<&str>| {
            rows.iter()
                .filter(|r| r["usage"] == usage)
                .find(|r| {
                    name.is_none_or(|n| r["complete_name"].as_str().is_some_and(|c| c.contains(n)))
                })
                .and_then(|r| int(&r["id"]))
        };
        let missing = |what: &str| {
            OdooError::new(
                ErrorKind::Auth,
                "configuration",
                format!("Odoo has no {what} location"),
            )
        };
        Ok(VirtualLocations {
            vendors: find("supplier", None).ok_or_else(|| missing("vendor (supplier)"))?,
            customers: find("customer", None).ok_or_else(|| missing("customer"))?,
            inventory_adjustment: find("inventory", Some("Inventory adjustment"))
                .ok_or_else(|| missing("Inventory adjustment"))?,
        })
    }

    /// Products by SKU. Archived products are not found; a SKU may come back more than once
    /// (Odoo does not make `default_code` unique), which the caller must refuse.
    pub async fn products(&self, skus: &[String]) -> Result<Vec<ProductRow>, OdooError> {
        let v17 = self.major_version() <= 17;
        let fields: &[&str] = if v17 {
            &[
                "id",
                "default_code",
                "uom_id",
                "tracking",
                "type",
                "detailed_type",
            ]
        } else {
            &[
                "id",
                "default_code",
                "uom_id",
                "tracking",
                "type",
                "is_storable",
            ]
        };
        let rows = self
            .search_read(
                "product.product",
                json!([["default_code", "in", skus]]),
                fields,
                None,
            )
            .await?;
        rows.iter()
            .map(|r| {
                let storable = if v17 {
                    r["detailed_type"] == "product" || r["type"] == "product"
                } else {
                    r["is_storable"] == true
                };
                Some(ProductRow {
                    id: int(&r["id"])?,
                    sku: r["default_code"].as_str()?.to_owned(),
                    uom_id: many2one(&r["uom_id"])?,
                    tracking: r["tracking"].as_str().unwrap_or("none").to_owned(),
                    storable,
                })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed("product.product.search_read"))
    }

    /// Internal locations by full name (`WH/Stock/Shelf 2`) under `within` (a warehouse's view
    /// location).
    pub async fn locations_by_name(
        &self,
        names: &[String],
        within: i64,
    ) -> Result<HashMap<String, i64>, OdooError> {
        let rows = self
            .search_read(
                "stock.location",
                json!([
                    ["complete_name", "in", names],
                    ["usage", "=", "internal"],
                    ["id", "child_of", within]
                ]),
                &["id", "complete_name"],
                None,
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((r["complete_name"].as_str()?.to_owned(), int(&r["id"])?)))
            .collect())
    }

    /// The picking named `name` (unique per company), if any.
    pub async fn find_picking(&self, name: &str) -> Result<Option<PickingState>, OdooError> {
        let rows = self
            .search_read(
                "stock.picking",
                json!([["name", "=", name]]),
                &["id", "state"],
                None,
            )
            .await?;
        Ok(rows.first().and_then(|r| {
            Some(PickingState {
                id: int(&r["id"])?,
                state: r["state"].as_str()?.to_owned(),
            })
        }))
    }

    /// Creates the picking with every move's quantity preset and picked (docs/odoo.md#pickings),
    /// so validation moves exactly these quantities. Lots go in picking-level move lines
    /// (docs/odoo.md#lots).
    pub async fn create_picking(&self, picking: &PlannedPicking) -> Result<i64, OdooError> {
        let moves: Vec<Value> = picking
            .lines
            .iter()
            .map(|line| {
                let qty = qty_value(line.qty)?;
                let mut values = json!({
                    "product_id": line.product,
                    "product_uom": line.uom,
                    "product_uom_qty": qty,
                    "location_id": line.from,
                    "location_dest_id": line.to,
                });
                // Odoo 17 and 18 require a move's description; 19 removed the field.
                if self.major_version() < 19 {
                    values["name"] = json!(picking.key);
                }
                if line.lot.is_none() {
                    values["quantity"] = qty;
                    values["picked"] = json!(true);
                }
                Ok(json!([0, 0, values]))
            })
            .collect::<Result<_, OdooError>>()?;
        let mut values = json!({
            "name": picking.key,
            "origin": picking.key,
            "picking_type_id": picking.picking_type,
            "location_id": picking.from,
            "location_dest_id": picking.to,
            "move_ids": moves,
        });
        // Receipts name their lots (Odoo creates them); every other picking takes existing lots
        // by id (docs/odoo.md#lots), looked up in one call.
        let lots = if picking.kind == PickingKind::Receipt {
            HashMap::new()
        } else {
            let mut lots = self.lot_ids(picking).await?;
            self.create_missing_lots(picking, &mut lots).await?;
            lots
        };
        let lot_lines: Vec<Value> = picking
            .lines
            .iter()
            .filter(|l| l.lot.is_some())
            .map(|l| lot_line(picking, l, &lots))
            .collect::<Result<_, _>>()?;
        if !lot_lines.is_empty() {
            values["move_line_ids"] = json!(lot_lines);
        }
        match self
            .write(
                Call::model("stock.picking", "create")
                    .arg("vals_list", json!([values]))
                    .lines(picking.lines.len()),
            )
            .await?
        {
            Some(Value::Number(id)) => id.as_i64().ok_or_else(|| malformed("stock.picking.create")),
            Some(Value::Array(ids)) => ids
                .first()
                .and_then(Value::as_i64)
                .ok_or_else(|| malformed("stock.picking.create")),
            _ => Err(malformed("stock.picking.create")),
        }
    }

    /// Creates the lots of lines that may create them and are not in `lots` (an internal
    /// picking does not create lots from names, docs/odoo.md#lots), adding their ids. A lot created
    /// meanwhile by someone else (the name is unique per product) is looked up instead.
    async fn create_missing_lots(
        &self,
        picking: &PlannedPicking,
        lots: &mut HashMap<(i64, String), i64>,
    ) -> Result<(), OdooError> {
        for line in picking.lines.iter().filter(|l| l.create_lot) {
            let Some(name) = line.lot.clone() else {
                continue;
            };
            if lots.contains_key(&(line.product, name.clone())) {
                continue;
            }
            let created = self
                .write(Call::model("stock.lot", "create").arg(
                    "vals_list",
                    json!([{"name": name, "product_id": line.product}]),
                ))
                .await;
            match created {
                Ok(Some(id)) => {
                    let id = id
                        .as_i64()
                        .or_else(|| id.get(0).and_then(Value::as_i64))
                        .ok_or_else(|| malformed("stock.lot.create"))?;
                    tracing::info!(lot = %name, product = line.product, "created a lot in Odoo for stock found in an adjustment");
                    lots.insert((line.product, name), id);
                }
                Ok(None) => return Err(malformed("stock.lot.create")),
                Err(e) if e.kind == ErrorKind::Permanent => {
                    let found = self.lot_ids(picking).await?;
                    match found.get(&(line.product, name.clone())) {
                        Some(id) => {
                            lots.insert((line.product, name), *id);
                        }
                        None => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The ids of the existing lots the picking's lines name, by (product, lot name).
    async fn lot_ids(
        &self,
        picking: &PlannedPicking,
    ) -> Result<HashMap<(i64, String), i64>, OdooError> {
        let names: Vec<&str> = picking
            .lines
            .iter()
            .filter_map(|l| l.lot.as_deref())
            .collect();
        if names.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = self
            .search_read(
                "stock.lot",
                json!([["name", "in", names]]),
                &["id", "name", "product_id"],
                None,
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some((
                    (many2one(&r["product_id"])?, r["name"].as_str()?.to_owned()),
                    int(&r["id"])?,
                ))
            })
            .collect())
    }

    /// Validates without any wizard. `Ok(true)` only when Odoo says it is done; `Ok(false)`
    /// when it answered with a wizard (nothing was applied).
    pub async fn validate_picking(&self, id: i64, lines: usize) -> Result<bool, OdooError> {
        let context =
            json!({"skip_backorder": true, "picking_ids_not_to_backorder": [id], "skip_sms": true});
        let result = self
            .write(
                Call::records("stock.picking", "button_validate", vec![id])
                    .context(context)
                    .lines(lines),
            )
            .await?;
        Ok(result == Some(Value::Bool(true)))
    }

    /// The quantity of `product` at exactly `location` (every quant row summed: Odoo may hold
    /// several for one key, docs/odoo.md#quants).
    /// With `lot`, only that lot's quantity.
    pub async fn quantity_at(
        &self,
        product: i64,
        location: i64,
        lot: Option<i64>,
    ) -> Result<f64, OdooError> {
        let mut domain = vec![
            json!(["product_id", "=", product]),
            json!(["location_id", "=", location]),
        ];
        if let Some(lot) = lot {
            domain.push(json!(["lot_id", "=", lot]));
        }
        let rows = self
            .search_read("stock.quant", json!(domain), &["quantity"], None)
            .await?;
        // A row without a number is a contract failure, not a quantity of 0.
        rows.iter()
            .map(|r| {
                r["quantity"]
                    .as_f64()
                    .ok_or_else(|| malformed("stock.quant quantity"))
            })
            .sum()
    }

    /// The ids of the lots `names` (product, lot name) that Odoo has.
    pub async fn lots_named(
        &self,
        names: &[(i64, String)],
    ) -> Result<HashMap<(i64, String), i64>, OdooError> {
        if names.is_empty() {
            return Ok(HashMap::new());
        }
        let products: Vec<i64> = names.iter().map(|(p, _)| *p).collect();
        let lots: Vec<&str> = names.iter().map(|(_, n)| n.as_str()).collect();
        let rows = self
            .search_read(
                "stock.lot",
                json!([["product_id", "in", products], ["name", "in", lots]]),
                &["id", "name", "product_id"],
                None,
            )
            .await?;
        rows.iter()
            .map(|r| {
                Some((
                    (many2one(&r["product_id"])?, r["name"].as_str()?.to_owned()),
                    int(&r["id"])?,
                ))
            })
            .collect::<Option<HashMap<_, _>>>()
            .ok_or_else(|| malformed("stock.lot.search_read"))
    }

    /// What counts of `products` at `locations` are computed from, in bulk (docs/odoo.md#counts):
    /// every quant row of those products at exactly those locations (the caller picks its own pairs
    /// and lots out of them), and the done move lines into or out of them dated after `after`
    /// (UTC), leaving out moves of pickings whose name starts with `exclude_prefix` (Tally's own)
    /// and of pickings Tally filled.
    pub async fn count_stock(
        &self,
        products: &[i64],
        locations: &[i64],
        after: &str,
        exclude_prefix: &str,
    ) -> Result<(Vec<QuantRow>, Vec<MovedRow>), OdooError> {
        let rows = self
            .search_read(
                "stock.quant",
                json!([
                    ["product_id", "in", products],
                    ["location_id", "in", locations]
                ]),
                &["product_id", "location_id", "lot_id", "quantity"],
                None,
            )
            .await?;
        let quants = rows
            .iter()
            .map(|r| {
                Some(QuantRow {
                    product: many2one(&r["product_id"])?,
                    location: many2one(&r["location_id"])?,
                    lot: many2one(&r["lot_id"]),
                    qty: qty_from_f64(r["quantity"].as_f64()?),
                })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed("stock.quant.search_read"))?;
        let domain = json!([
            ["product_id", "in", products],
            ["state", "=", "done"],
            ["date", ">", after],
            "|",
            ["location_id", "in", locations],
            ["location_dest_id", "in", locations]
        ]);
        let fields = [
            "product_id",
            "lot_id",
            "quantity_product_uom",
            "location_id",
            "location_dest_id",
            "date",
            "reference",
            "picking_id",
        ];
        let rows = self
            .search_read("stock.move.line", domain, &fields, None)
            .await?;
        let rows: Vec<&Value> = rows
            .iter()
            .filter(|r| {
                !r["reference"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with(exclude_prefix)
            })
            .collect();
        // Open pickings Tally filled (a sales order's delivery) keep Odoo's name: their note
        // tells them apart.
        let pickings: Vec<i64> = rows
            .iter()
            .filter_map(|r| many2one(&r["picking_id"]))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let filled: std::collections::HashSet<i64> = if pickings.is_empty() {
            Default::default()
        } else {
            self.search_read(
                "stock.picking",
                json!([["id", "in", pickings]]),
                &["id", "name", "note"],
                None,
            )
            .await?
            .iter()
            .filter(|p| {
                crate::merge::plan::filled_by_tally(
                    p["note"].as_str().unwrap_or_default(),
                    p["name"].as_str().unwrap_or_default(),
                )
            })
            .filter_map(|p| int(&p["id"]))
            .collect()
        };
        let moved = rows
            .iter()
            .filter(|r| many2one(&r["picking_id"]).is_none_or(|p| !filled.contains(&p)))
            .map(|r| {
                Some(MovedRow {
                    product: many2one(&r["product_id"])?,
                    from: many2one(&r["location_id"])?,
                    to: many2one(&r["location_dest_id"])?,
                    lot: many2one(&r["lot_id"]),
                    qty: qty_from_f64(r["quantity_product_uom"].as_f64()?),
                    date: r["date"].as_str()?.to_owned(),
                })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed("stock.move.line.search_read"))?;
        Ok((quants, moved))
    }

    /// Counts people entered in Odoo for `products` at exactly `locations` and have not
    /// applied yet (docs/odoo.md#counts), in one call.
    pub async fn pending_counts(
        &self,
        products: &[i64],
        locations: &[i64],
    ) -> Result<Vec<PendingCount>, OdooError> {
        let rows = self
            .search_read(
                "stock.quant",
                json!([
                    ["inventory_quantity_set", "=", true],
                    ["product_id", "in", products],
                    ["location_id", "in", locations]
                ]),
                &["product_id", "location_id", "inventory_quantity", "user_id"],
                Some(json!({"inventory_mode": true})),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Some(PendingCount {
                    product: many2one(&r["product_id"])?,
                    location: many2one(&r["location_id"])?,
                    counted: r["inventory_quantity"].as_f64()?,
                    user: r["user_id"]
                        .get(1)
                        .and_then(Value::as_str)
                        .unwrap_or("someone")
                        .to_owned(),
                })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed("stock.quant.search_read"))
    }

    /// Cancels a picking so it leaves no reservation behind.
    pub async fn cancel_picking(&self, id: i64) -> Result<(), OdooError> {
        self.write(Call::records("stock.picking", "action_cancel", vec![id]))
            .await
            .map(|_| ())
    }
}

/// States of a picking that can still be filled: confirmed, waiting for another operation, or
/// (partly) reserved. Drafts are not ready; done and cancelled pickings are history.
const OPEN_STATES: [&str; 3] = ["confirmed", "waiting", "assigned"];

/// How many backorders deep a reference is followed (each partial fill adds one).
const MAX_BACKORDER_DEPTH: usize = 32;

/// A picking as the fill guard reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillGuard {
    pub state: String,
    pub note: String,
}

impl OdooClient {
    /// The open pickings each reference names (docs/odoo.md#open-pickings), oldest first: a picking
    /// by its name — or, once that one is done, the open backorders it left — else the open
    /// pickings of the sales order of that name (`sale_id`, not `origin`, which Odoo 18 decorates;
    /// an order shipped in several steps has a picking per step). References that name nothing open
    /// are left out.
    pub async fn open_pickings(
        &self,
        references: &[String],
    ) -> Result<BTreeMap<String, Vec<OpenPicking>>, OdooError> {
        let fields = ["id", "name", "state", "picking_type_id"];
        // reference → (id, name, picking type) of each open picking it names
        let mut found: BTreeMap<String, Vec<(i64, String, i64)>> = BTreeMap::new();
        let rows = self
            .search_read(
                "stock.picking",
                json!([["name", "in", references]]),
                &fields,
                None,
            )
            .await?;
        // Done pickings: follow their backorders, breadth first, a call per generation.
        let mut done: HashMap<i64, String> = HashMap::new();
        let mut named = std::collections::HashSet::new();
        for row in &rows {
            let (Some(id), Some(name), Some(state)) =
                (int(&row["id"]), row["name"].as_str(), row["state"].as_str())
            else {
                return Err(malformed("stock.picking.search_read"));
            };
            named.insert(name.to_owned());
            if OPEN_STATES.contains(&state) {
                let kind = many2one(&row["picking_type_id"]).unwrap_or_default();
                found
                    .entry(name.to_owned())
                    .or_default()
                    .push((id, name.to_owned(), kind));
            } else if state == "done" {
                done.insert(id, name.to_owned());
            }
        }
        for _ in 0..MAX_BACKORDER_DEPTH {
            if done.is_empty() {
                break;
            }
            let ids: Vec<i64> = done.keys().copied().collect();
            let rows = self
                .search_read(
                    "stock.picking",
                    json!([["backorder_id", "in", ids]]),
                    &["id", "name", "state", "picking_type_id", "backorder_id"],
                    None,
                )
                .await?;
            let mut next = HashMap::new();
            for row in &rows {
                let (Some(id), Some(name), Some(state), Some(parent)) = (
                    int(&row["id"]),
                    row["name"].as_str(),
                    row["state"].as_str(),
                    many2one(&row["backorder_id"]),
                ) else {
                    return Err(malformed("stock.picking.search_read"));
                };
                let Some(reference) = done.get(&parent) else {
                    continue;
                };
                if OPEN_STATES.contains(&state) {
                    let kind = many2one(&row["picking_type_id"]).unwrap_or_default();
                    found
                        .entry(reference.clone())
                        .or_default()
                        .push((id, name.to_owned(), kind));
                } else if state == "done" {
                    next.insert(id, reference.clone());
                }
            }
            done = next;
        }
        let orders: Vec<&String> = references.iter().filter(|r| !named.contains(*r)).collect();
        if !orders.is_empty() {
            let domain = json!([["sale_id.name", "in", orders], ["state", "in", OPEN_STATES]]);
            let mut with_order = fields.to_vec();
            with_order.push("sale_id");
            match self
                .search_read("stock.picking", domain, &with_order, None)
                .await
            {
                Ok(rows) => {
                    for row in &rows {
                        let (Some(id), Some(name), Some(order)) = (
                            int(&row["id"]),
                            row["name"].as_str(),
                            row["sale_id"].get(1).and_then(Value::as_str),
                        ) else {
                            continue;
                        };
                        let kind = many2one(&row["picking_type_id"]).unwrap_or_default();
                        found.entry(order.to_owned()).or_default().push((
                            id,
                            name.to_owned(),
                            kind,
                        ));
                    }
                }
                // No sales app in this database: no picking has a `sale_id`.
                Err(e) if e.kind == ErrorKind::Permanent => {
                    tracing::debug!(error = %e, "pickings cannot be looked up by sales order");
                }
                Err(e) => return Err(e),
            }
        }
        if found.is_empty() {
            return Ok(BTreeMap::new());
        }
        let ids: Vec<i64> = found.values().flatten().map(|(id, ..)| *id).collect();
        let moves = self
            .search_read(
                "stock.move",
                json!([
                    ["picking_id", "in", ids],
                    ["state", "not in", ["done", "cancel"]]
                ]),
                &[
                    "id",
                    "picking_id",
                    "product_id",
                    "location_id",
                    "location_dest_id",
                ],
                None,
            )
            .await?;
        let mut by_picking: HashMap<i64, Vec<OpenMove>> = HashMap::new();
        for m in &moves {
            let (Some(id), Some(picking), Some(product), Some(from), Some(to)) = (
                int(&m["id"]),
                many2one(&m["picking_id"]),
                many2one(&m["product_id"]),
                many2one(&m["location_id"]),
                many2one(&m["location_dest_id"]),
            ) else {
                return Err(malformed("stock.move.search_read"));
            };
            by_picking.entry(picking).or_default().push(OpenMove {
                id,
                product,
                from,
                to,
            });
        }
        Ok(found
            .into_iter()
            .map(|(reference, mut candidates)| {
                candidates.sort_unstable();
                let candidates = candidates
                    .into_iter()
                    .map(|(id, name, picking_type)| {
                        // Two references (a picking's name and its order's) may name one
                        // picking.
                        let mut moves = by_picking.get(&id).cloned().unwrap_or_default();
                        moves.sort_unstable_by_key(|m| m.id);
                        OpenPicking {
                            id,
                            name,
                            picking_type,
                            moves,
                        }
                    })
                    .collect();
                (reference, candidates)
            })
            .collect())
    }

    /// The state and note of the picking a fill targets (the GUARD of docs/odoo.md#open-pickings).
    pub async fn fill_guard(&self, picking: i64) -> Result<Option<FillGuard>, OdooError> {
        let rows = self
            .search_read(
                "stock.picking",
                json!([["id", "=", picking]]),
                &["state", "note"],
                None,
            )
            .await?;
        Ok(rows.first().map(|r| FillGuard {
            state: r["state"].as_str().unwrap_or_default().to_owned(),
            // An empty Html field reads as `false`.
            note: r["note"].as_str().unwrap_or_default().to_owned(),
        }))
    }

    /// Puts what was scanned on the fill's moves, where it was scanned, picked, and appends the
    /// marker to the note, in one transaction (the WRITE of docs/odoo.md#fills): each
    /// filled move's current lines (Odoo's reservation, or an earlier attempt's lines) are
    /// deleted, which releases what they reserved, and a picked line per scanned location and
    /// lot takes their place. Absolute: repeating it leaves the same lines.
    pub async fn write_fill(&self, fill: &PlannedFill, note: &str) -> Result<(), OdooError> {
        let note = format!("{note}<p>{}</p>", fill.marker());
        let moves = if fill.moves.iter().all(|m| m.line.is_some()) {
            self.fill_line_commands(fill).await?
        } else {
            // A plan recorded before fills carried locations: applied as it was planned.
            fill.moves
                .iter()
                .map(|m| Ok(json!([1, m.move_id, {"quantity": qty_value(m.qty)?, "picked": true}])))
                .collect::<Result<_, OdooError>>()?
        };
        self.write(
            Call::records("stock.picking", "write", vec![fill.picking])
                .arg("vals", json!({"note": note, "move_ids": moves}))
                .lines(fill.moves.len()),
        )
        .await
        .map(|_| ())
    }

    /// `[1, move, {move_line_ids: [[2, line]…, [0, 0, line]…], picked: true}]` per filled move.
    async fn fill_line_commands(&self, fill: &PlannedFill) -> Result<Vec<Value>, OdooError> {
        let mut by_move: BTreeMap<i64, Vec<&FillMove>> = BTreeMap::new();
        for m in &fill.moves {
            by_move.entry(m.move_id).or_default().push(m);
        }
        let ids: Vec<i64> = by_move.keys().copied().collect();
        let current = self
            .search_read(
                "stock.move.line",
                json!([["move_id", "in", ids]]),
                &["id", "move_id"],
                None,
            )
            .await?;
        let mut old: HashMap<i64, Vec<i64>> = HashMap::new();
        for row in &current {
            let (Some(id), Some(mv)) = (int(&row["id"]), many2one(&row["move_id"])) else {
                return Err(malformed("stock.move.line.search_read"));
            };
            old.entry(mv).or_default().push(id);
        }
        let lots = self.fill_lot_ids(fill).await?;
        by_move
            .into_iter()
            .map(|(move_id, scans)| {
                let mut lines: Vec<Value> = old
                    .remove(&move_id)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|id| json!([2, id]))
                    .collect();
                for m in scans {
                    let Some(line) = &m.line else { continue };
                    let mut values = json!({
                        "picking_id": fill.picking,
                        "product_id": m.product,
                        "product_uom_id": line.uom,
                        "location_id": line.from,
                        "location_dest_id": line.to,
                        "quantity": qty_value(m.qty)?,
                        "picked": true,
                    });
                    // An existing lot by id; a new one by name, which a receipt creates and
                    // Odoo refuses on a pick (the scans are then parked with its reason).
                    if let Some(lot) = &line.lot {
                        match lots.get(&(m.product, lot.clone())) {
                            Some(id) => values["lot_id"] = json!(id),
                            None => values["lot_name"] = json!(lot),
                        }
                    }
                    lines.push(json!([0, 0, values]));
                }
                Ok(json!([1, move_id, {"move_line_ids": lines, "picked": true}]))
            })
            .collect()
    }

    /// The ids of the existing lots a fill names, by (product, lot name).
    async fn fill_lot_ids(
        &self,
        fill: &PlannedFill,
    ) -> Result<HashMap<(i64, String), i64>, OdooError> {
        let names: Vec<&str> = fill
            .moves
            .iter()
            .filter_map(|m| m.line.as_ref()?.lot.as_deref())
            .collect();
        if names.is_empty() {
            return Ok(HashMap::new());
        }
        let products: Vec<i64> = fill.moves.iter().map(|m| m.product).collect();
        let rows = self
            .search_read(
                "stock.lot",
                json!([["name", "in", names], ["product_id", "in", products]]),
                &["id", "name", "product_id"],
                None,
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some((
                    (many2one(&r["product_id"])?, r["name"].as_str()?.to_owned()),
                    int(&r["id"])?,
                ))
            })
            .collect())
    }

    /// Validates a filled picking, leaving what was not picked in a backorder without any
    /// wizard (`skip_backorder` without `picking_ids_not_to_backorder`, docs/odoo.md#backorders).
    pub async fn validate_with_backorder(&self, fill: &PlannedFill) -> Result<bool, OdooError> {
        let context = json!({"skip_backorder": true, "skip_sms": true});
        let result = self
            .write(
                Call::records("stock.picking", "button_validate", vec![fill.picking])
                    .context(context)
                    .lines(fill.moves.len()),
            )
            .await?;
        Ok(result == Some(Value::Bool(true)))
    }
}

/// A picking-level move line carrying a lot: `lot_id` when the lot exists (`lots`), else
/// `lot_name` — which a receipt turns into a new lot, and which Odoo refuses elsewhere (the
/// events are then parked with Odoo's reason).
fn lot_line(
    picking: &PlannedPicking,
    line: &Line,
    lots: &HashMap<(i64, String), i64>,
) -> Result<Value, OdooError> {
    let mut values = json!({
        "product_id": line.product,
        "product_uom_id": line.uom,
        "quantity": qty_value(line.qty)?,
        "location_id": line.from,
        "location_dest_id": line.to,
        "picked": true,
        "reference": picking.key,
    });
    let lot = line.lot.clone().unwrap_or_default();
    match lots.get(&(line.product, lot.clone())) {
        Some(id) => values["lot_id"] = json!(id),
        None => values["lot_name"] = json!(lot),
    }
    Ok(json!([0, 0, values]))
}

/// A quantity Odoo reported as a float, back to an exact decimal (Odoo rounds to the unit's
/// precision, at most 6 places here); `None` when it is not a number or beyond what a float
/// holds exactly — never a made-up zero.
pub fn qty_from_f64(value: f64) -> Option<Qty> {
    Qty::from_f64(value)
}

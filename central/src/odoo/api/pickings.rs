//! Tally's own pickings: found by key, created with their lots, validated, cancelled; and the
//! quantity at one place.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::catalog::lots_by_name;
use super::rows::PickingStatus;
use super::{PickingState, created_id, qty_value};
use crate::merge::plan::{Line, PickingKind, PlannedPicking};
use crate::odoo::client::{Call, OdooClient};
use crate::odoo::error::{ErrorKind, OdooError};

#[derive(Deserialize)]
struct Picking {
    id: i64,
    state: PickingStatus,
}

#[derive(Deserialize)]
struct Quant {
    quantity: f64,
}

impl OdooClient {
    /// The picking named `name` (unique per company), if any.
    pub async fn find_picking(&self, name: &str) -> Result<Option<PickingState>, OdooError> {
        let rows: Vec<Picking> = self
            .search(
                "stock.picking",
                json!([["name", "=", name]]),
                &["id", "state"],
            )
            .await?;
        Ok(rows.into_iter().next().map(|r| PickingState {
            id: r.id,
            state: r.state,
        }))
    }

    /// Creates the picking with a picked, picking-level move line per planned line, at the
    /// line's own locations (and lot), so validation moves exactly these quantities from and to
    /// where they were scanned. A move's `quantity` is never written: Odoo would reserve it by
    /// its removal strategy anywhere in the source location's subtree, taking a sublocation's
    /// stock when the scanned location's is reserved (docs/odoo.md#pickings).
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
        let lines: Vec<Value> = picking
            .lines
            .iter()
            .map(|l| move_line(picking, l, &lots))
            .collect::<Result<_, _>>()?;
        values["move_line_ids"] = json!(lines);
        let answer = self
            .write(
                Call::model("stock.picking", "create")
                    .arg("vals_list", json!([values]))
                    .lines(picking.lines.len()),
            )
            .await?;
        created_id(answer, "stock.picking.create")
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
                Ok(answer) => {
                    let id = created_id(answer, "stock.lot.create")?;
                    tracing::info!(lot = %name, product = line.product, "created a lot in Odoo for stock found in an adjustment");
                    lots.insert((line.product, name), id);
                }
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
            .search(
                "stock.lot",
                json!([["name", "in", names]]),
                &["id", "name", "product_id"],
            )
            .await?;
        Ok(lots_by_name(rows))
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
        // A row without a number is a contract failure, not a quantity of 0.
        let rows: Vec<Quant> = self
            .search("stock.quant", json!(domain), &["quantity"])
            .await?;
        Ok(rows.iter().map(|r| r.quantity).sum())
    }

    /// Cancels a picking so it leaves no reservation behind.
    pub async fn cancel_picking(&self, id: i64) -> Result<(), OdooError> {
        self.write(Call::records("stock.picking", "action_cancel", vec![id]))
            .await
            .map(|_| ())
    }
}

/// A picking-level move line carrying a lot: `lot_id` when the lot exists (`lots`), else
/// `lot_name` — which a receipt turns into a new lot, and which Odoo refuses elsewhere (the
/// events are then parked with Odoo's reason).
/// The picked move line of `line`, at its own locations, with its lot (by id, or by name on a
/// receipt, which creates it).
fn move_line(
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
    if let Some(lot) = &line.lot {
        match lots.get(&(line.product, lot.clone())) {
            Some(id) => values["lot_id"] = json!(id),
            None => values["lot_name"] = json!(lot),
        }
    }
    Ok(json!([0, 0, values]))
}

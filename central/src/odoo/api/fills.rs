//! Open Odoo pickings the scans name (a picking, its backorders, a sales order's pickings),
//! and filling one: the guard read, the write of what was scanned, the validation.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;
use serde_json::{Value, json};

use super::catalog::lots_by_name;
use super::qty_value;
use super::rows::{Many2one, OrFalse, PickingStatus};
use crate::merge::plan::{FillMove, OpenMove, OpenPicking, PlannedFill};
use crate::odoo::client::{Call, OdooClient};
use crate::odoo::error::{ErrorKind, OdooError};

/// How many backorders deep a reference is followed (each partial fill adds one).
const MAX_BACKORDER_DEPTH: usize = 32;

/// A picking as the fill guard reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillGuard {
    pub state: PickingStatus,
    pub note: String,
}

#[derive(Deserialize)]
struct Picking {
    id: i64,
    name: String,
    state: PickingStatus,
    picking_type_id: Many2one,
}

/// A picking a done one left for what it did not move.
#[derive(Deserialize)]
struct Backorder {
    id: i64,
    name: String,
    state: PickingStatus,
    picking_type_id: Many2one,
    backorder_id: Many2one,
}

/// A picking of a sales order.
#[derive(Deserialize)]
struct OrderPicking {
    id: i64,
    name: String,
    picking_type_id: Many2one,
    sale_id: Many2one,
}

#[derive(Deserialize)]
struct Move {
    id: i64,
    picking_id: Many2one,
    product_id: Many2one,
    location_id: Many2one,
    location_dest_id: Many2one,
}

#[derive(Deserialize)]
struct Guard {
    state: PickingStatus,
    /// An empty Html field reads as `false`.
    note: OrFalse<String>,
}

#[derive(Deserialize)]
struct MoveLine {
    id: i64,
    move_id: Many2one,
}

impl OdooClient {
    /// The open pickings each reference names (docs/odoo.md#open-pickings), oldest first: a picking by its
    /// name — or, once that one is done, the open backorders it left — else the open pickings
    /// of the sales order of that name (`sale_id`, not `origin`, which Odoo 18 decorates; an
    /// order shipped in several steps has a picking per step). References that name nothing
    /// open are left out.
    pub async fn open_pickings(
        &self,
        references: &[String],
    ) -> Result<BTreeMap<String, Vec<OpenPicking>>, OdooError> {
        let fields = ["id", "name", "state", "picking_type_id"];
        // reference → (id, name, picking type) of each open picking it names
        let mut found: BTreeMap<String, Vec<(i64, String, i64)>> = BTreeMap::new();
        let rows: Vec<Picking> = self
            .search(
                "stock.picking",
                json!([["name", "in", references]]),
                &fields,
            )
            .await?;
        // Done pickings: follow their backorders, breadth first, a call per generation.
        let mut done: HashMap<i64, String> = HashMap::new();
        let mut named = HashSet::new();
        for row in rows {
            named.insert(row.name.clone());
            if row.state.is_open() {
                found.entry(row.name.clone()).or_default().push((
                    row.id,
                    row.name,
                    row.picking_type_id.id,
                ));
            } else if row.state == PickingStatus::Done {
                done.insert(row.id, row.name);
            }
        }
        for _ in 0..MAX_BACKORDER_DEPTH {
            if done.is_empty() {
                break;
            }
            let ids: Vec<i64> = done.keys().copied().collect();
            let rows: Vec<Backorder> = self
                .search(
                    "stock.picking",
                    json!([["backorder_id", "in", ids]]),
                    &["id", "name", "state", "picking_type_id", "backorder_id"],
                )
                .await?;
            let mut next = HashMap::new();
            for row in rows {
                let Some(reference) = done.get(&row.backorder_id.id) else {
                    continue;
                };
                if row.state.is_open() {
                    found.entry(reference.clone()).or_default().push((
                        row.id,
                        row.name,
                        row.picking_type_id.id,
                    ));
                } else if row.state == PickingStatus::Done {
                    next.insert(row.id, reference.clone());
                }
            }
            done = next;
        }
        let orders: Vec<&String> = references.iter().filter(|r| !named.contains(*r)).collect();
        if !orders.is_empty() {
            let open: Vec<&str> = PickingStatus::OPEN.iter().map(|s| s.as_str()).collect();
            let domain = json!([["sale_id.name", "in", orders], ["state", "in", open]]);
            let mut with_order = fields.to_vec();
            with_order.push("sale_id");
            match self
                .search::<OrderPicking>("stock.picking", domain, &with_order)
                .await
            {
                Ok(rows) => {
                    for row in rows {
                        found.entry(row.sale_id.name).or_default().push((
                            row.id,
                            row.name,
                            row.picking_type_id.id,
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
        let moves: Vec<Move> = self
            .search(
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
            )
            .await?;
        let mut by_picking: HashMap<i64, Vec<OpenMove>> = HashMap::new();
        for m in moves {
            by_picking
                .entry(m.picking_id.id)
                .or_default()
                .push(OpenMove {
                    id: m.id,
                    product: m.product_id.id,
                    from: m.location_id.id,
                    to: m.location_dest_id.id,
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
        let rows: Vec<Guard> = self
            .search(
                "stock.picking",
                json!([["id", "=", picking]]),
                &["state", "note"],
            )
            .await?;
        Ok(rows.into_iter().next().map(|r| FillGuard {
            state: r.state,
            note: r.note.into_option().unwrap_or_default(),
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
        let current: Vec<MoveLine> = self
            .search(
                "stock.move.line",
                json!([["move_id", "in", ids]]),
                &["id", "move_id"],
            )
            .await?;
        let mut old: HashMap<i64, Vec<i64>> = HashMap::new();
        for row in current {
            old.entry(row.move_id.id).or_default().push(row.id);
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
            .search(
                "stock.lot",
                json!([["name", "in", names], ["product_id", "in", products]]),
                &["id", "name", "product_id"],
            )
            .await?;
        Ok(lots_by_name(rows))
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

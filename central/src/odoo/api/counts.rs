//! What a count is computed from: the quants of its stock and the moves since it was taken,
//! and the counts people entered in Odoo without applying them.

use std::collections::{BTreeSet, HashSet};

use serde::Deserialize;
use serde_json::json;

use super::rows::{self, Many2one, OrFalse};
use super::{PendingCount, qty_from_f64};
use crate::merge::plan::{MovedRow, QuantRow};
use crate::odoo::client::OdooClient;
use crate::odoo::error::OdooError;

#[derive(Deserialize)]
struct Quant {
    product_id: Many2one,
    location_id: Many2one,
    lot_id: OrFalse<Many2one>,
    /// Beyond what a float holds exactly, the count parks (`QuantRow::qty` is `None`).
    quantity: f64,
}

#[derive(Deserialize)]
struct MoveLine {
    product_id: Many2one,
    lot_id: OrFalse<Many2one>,
    quantity_product_uom: f64,
    location_id: Many2one,
    location_dest_id: Many2one,
    date: String,
    reference: OrFalse<String>,
    picking_id: OrFalse<Many2one>,
}

#[derive(Deserialize)]
struct NotedPicking {
    id: i64,
    name: String,
    /// An empty Html field reads as `false`.
    note: OrFalse<String>,
}

#[derive(Deserialize)]
struct PendingQuant {
    product_id: Many2one,
    location_id: Many2one,
    inventory_quantity: f64,
    user_id: OrFalse<Many2one>,
}

impl OdooClient {
    /// What counts of `products` at `locations` are computed from, in bulk (docs/odoo.md#counts):
    /// every quant row of those products at exactly those locations (the caller
    /// picks its own pairs and lots out of them), and the done move lines into or out of them
    /// dated after `after` (UTC), leaving out moves of pickings whose name starts with
    /// `exclude_prefix` (Tally's own) and of pickings Tally filled.
    pub async fn count_stock(
        &self,
        products: &[i64],
        locations: &[i64],
        after: &str,
        exclude_prefix: &str,
    ) -> Result<(Vec<QuantRow>, Vec<MovedRow>), OdooError> {
        let rows: Vec<Quant> = self
            .search(
                "stock.quant",
                json!([
                    ["product_id", "in", products],
                    ["location_id", "in", locations]
                ]),
                &["product_id", "location_id", "lot_id", "quantity"],
            )
            .await?;
        let quants = rows
            .into_iter()
            .map(|r| QuantRow {
                product: r.product_id.id,
                location: r.location_id.id,
                lot: r.lot_id.into_option().map(|l| l.id),
                qty: qty_from_f64(r.quantity),
            })
            .collect();
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
        let rows: Vec<MoveLine> = self.search("stock.move.line", domain, &fields).await?;
        let rows: Vec<MoveLine> = rows
            .into_iter()
            .filter(|r| {
                !r.reference
                    .0
                    .as_deref()
                    .is_some_and(|reference| reference.starts_with(exclude_prefix))
            })
            .collect();
        // Open pickings Tally filled (a sales order's delivery) keep Odoo's name: their note
        // tells them apart.
        let pickings: Vec<i64> = rows
            .iter()
            .filter_map(|r| r.picking_id.0.as_ref().map(|p| p.id))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let filled: HashSet<i64> = if pickings.is_empty() {
            HashSet::new()
        } else {
            let noted: Vec<NotedPicking> = self
                .search(
                    "stock.picking",
                    json!([["id", "in", pickings]]),
                    &["id", "name", "note"],
                )
                .await?;
            noted
                .into_iter()
                .filter(|p| {
                    crate::merge::plan::filled_by_tally(
                        p.note.0.as_deref().unwrap_or_default(),
                        &p.name,
                    )
                })
                .map(|p| p.id)
                .collect()
        };
        let moved = rows
            .into_iter()
            .filter(|r| {
                r.picking_id
                    .0
                    .as_ref()
                    .is_none_or(|p| !filled.contains(&p.id))
            })
            .map(|r| MovedRow {
                product: r.product_id.id,
                from: r.location_id.id,
                to: r.location_dest_id.id,
                lot: r.lot_id.into_option().map(|l| l.id),
                qty: qty_from_f64(r.quantity_product_uom),
                date: r.date,
            })
            .collect();
        Ok((quants, moved))
    }

    /// Counts people entered in Odoo for `products` at exactly `locations` and have not
    /// applied yet (docs/odoo.md#counts), in one call.
    pub async fn pending_counts(
        &self,
        products: &[i64],
        locations: &[i64],
    ) -> Result<Vec<PendingCount>, OdooError> {
        let model = "stock.quant";
        let rows = self
            .search_read(
                model,
                json!([
                    ["inventory_quantity_set", "=", true],
                    ["product_id", "in", products],
                    ["location_id", "in", locations]
                ]),
                &["product_id", "location_id", "inventory_quantity", "user_id"],
                Some(json!({"inventory_mode": true})),
            )
            .await?;
        let rows: Vec<PendingQuant> = rows::decode(model, rows)?;
        Ok(rows
            .into_iter()
            .map(|r| PendingCount {
                product: r.product_id.id,
                location: r.location_id.id,
                counted: r.inventory_quantity,
                // No user on the quant: nobody to name.
                user: r
                    .user_id
                    .into_option()
                    .map_or_else(|| "someone".to_owned(), |u| u.name),
            })
            .collect())
    }
}

//! Orders as Odoo users make them, through JSON-RPC: an expected receipt or a delivery of one
//! product in warehouse `WH`, created and confirmed, for tests and the demo to scan against
//! (on the simulator or on a real Odoo).

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use tally_central::odoo::Call;
use tally_central::odoo::OdooClient;

/// Which way the goods go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Vendors → WH/Stock, as a purchase order's receipt.
    Receipt,
    /// WH/Stock → Customers, as a sales order's delivery.
    Delivery,
}

/// Creates, confirms and (where stock allows) reserves a picking of `qty` `sku`, with
/// `origin`; returns its (id, name).
pub async fn open_picking(
    odoo: &OdooClient,
    direction: Direction,
    sku: &str,
    qty: f64,
    origin: &str,
) -> anyhow::Result<(i64, String)> {
    let wh = odoo
        .warehouses(&["WH".to_owned()])
        .await?
        .into_iter()
        .next()
        .context("Odoo has no warehouse WH")?;
    let virtuals = odoo.virtual_locations().await?;
    let (kind, from, to) = match direction {
        Direction::Receipt => (wh.receipt_type, virtuals.vendors, wh.stock_location),
        Direction::Delivery => (wh.delivery_type, wh.stock_location, virtuals.customers),
    };
    let product = odoo
        .products(&[sku.to_owned()])
        .await?
        .into_iter()
        .next()
        .with_context(|| format!("Odoo has no product {sku}"))?;
    let mut line = json!({"product_id": product.id, "product_uom": product.uom_id,
                          "product_uom_qty": qty, "location_id": from, "location_dest_id": to});
    // Odoo 19 has no move description; 17 and 18 require one.
    if odoo.major_version() < 19 {
        line["name"] = json!(sku);
    }
    let created = odoo
        .execute(Call::model("stock.picking", "create").arg(
            "vals_list",
            json!([{
                "picking_type_id": kind, "location_id": from, "location_dest_id": to,
                "origin": origin, "move_ids": [[0, 0, line]],
            }]),
        ))
        .await?
        .context("no answer to stock.picking.create")?;
    let id = created
        .as_i64()
        .or_else(|| created.get(0).and_then(Value::as_i64))
        .context("no picking id")?;
    for method in ["action_confirm", "action_assign"] {
        odoo.execute(Call::records("stock.picking", method, vec![id]))
            .await?;
    }
    let (name, state) = name_and_state(odoo, id).await?;
    ensure!(
        matches!(state.as_str(), "assigned" | "confirmed"),
        "the new picking {name} is {state}, not open"
    );
    Ok((id, name))
}

/// The name and state of picking `id`.
pub async fn name_and_state(odoo: &OdooClient, id: i64) -> anyhow::Result<(String, String)> {
    let rows = odoo
        .search_read(
            "stock.picking",
            json!([["id", "=", id]]),
            &["name", "state"],
            None,
        )
        .await?;
    let row = rows
        .first()
        .with_context(|| format!("Odoo has no picking {id}"))?;
    Ok((
        row["name"].as_str().unwrap_or_default().to_owned(),
        row["state"].as_str().unwrap_or_default().to_owned(),
    ))
}

//! Typed calls for what the merge needs, each one request to Odoo over either transport
//! (docs/odoo.md). Every answer is read into the types of [`rows`]: a field missing or of
//! another shape is a contract error naming the model and the field, never a default.
//!
//! - `catalog.rs`: warehouses, virtual locations, products, locations, lots;
//! - `pickings.rs`: find, create (with lots), validate, cancel a picking; quantities;
//! - `fills.rs`: open pickings by reference and filling them;
//! - `counts.rs`: what counts are computed from, and counts pending in Odoo.

mod catalog;
mod counts;
mod fills;
mod pickings;
pub mod rows;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tally_protocol::Qty;

pub use fills::FillGuard;
pub use rows::{Many2one, PickingStatus, Tracking};

use super::client::{Call, OdooClient};
use super::error::{ErrorKind, OdooError};

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
    pub tracking: Tracking,
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

/// A picking's id and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickingState {
    pub id: i64,
    pub state: PickingStatus,
}

fn malformed(what: &str) -> OdooError {
    OdooError::new(
        ErrorKind::Contract,
        "malformed-answer",
        format!("Odoo's answer to {what} has an unexpected shape"),
    )
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

/// A quantity Odoo reported as a float, back to an exact decimal (Odoo rounds to the unit's
/// precision, at most 6 places here); `None` when it is not a number or beyond what a float
/// holds exactly — never a made-up zero.
pub fn qty_from_f64(value: f64) -> Option<Qty> {
    Qty::from_f64(value)
}

/// The id a `create` answered: one id, or a list of one.
fn created_id(answer: Option<Value>, what: &str) -> Result<i64, OdooError> {
    match answer {
        Some(Value::Number(id)) => id.as_i64().ok_or_else(|| malformed(what)),
        Some(Value::Array(ids)) => ids
            .first()
            .and_then(Value::as_i64)
            .ok_or_else(|| malformed(what)),
        _ => Err(malformed(what)),
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

    /// `model.search_read(domain, fields)`, each row read as a `T` (see [`rows`]).
    async fn search<T: DeserializeOwned>(
        &self,
        model: &str,
        domain: Value,
        fields: &[&str],
    ) -> Result<Vec<T>, OdooError> {
        let rows = self.search_read(model, domain, fields, None).await?;
        rows::decode(model, rows)
    }
}

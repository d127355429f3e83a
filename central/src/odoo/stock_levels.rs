//! Reads of what a warehouse holds, for availability (docs/odoo.md, "Availability"): the sums
//! of `stock.quant` over a warehouse's internal locations in one `read_group` per warehouse for
//! any number of products, and the products whose stock Odoo changed since a write date.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{Value, json};
use tally_protocol::Qty;

use super::client::{Call, OdooClient};
use super::error::{ErrorKind, OdooError};

/// One product's stock over a warehouse's internal locations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockLevel {
    pub product: i64,
    pub on_hand: Qty,
    pub reserved: Qty,
}

/// A `read_group` row grouped by `product_id`: typed, so that a renamed or missing field is a
/// contract failure naming the field, not a zero.
#[derive(Debug, Deserialize)]
struct QuantGroup {
    /// `[id, "display name"]`.
    product_id: (i64, Value),
    quantity: f64,
    reserved_quantity: f64,
}

#[derive(Debug, Deserialize)]
struct ProductCode {
    id: i64,
    /// `false` for a product without an internal reference.
    default_code: Value,
}

#[derive(Debug, Deserialize)]
struct Written {
    product_id: (i64, Value),
}

fn contract(what: &str, error: impl std::fmt::Display) -> OdooError {
    OdooError::new(
        ErrorKind::Contract,
        "malformed-answer",
        format!("Odoo's answer to {what} has an unexpected shape: {error}"),
    )
}

fn qty(what: &str, value: f64) -> Result<Qty, OdooError> {
    Qty::from_f64(value).ok_or_else(|| contract(what, format!("{value} is not an exact quantity")))
}

fn rows<T: for<'de> Deserialize<'de>>(
    what: &str,
    answer: Option<Value>,
) -> Result<Vec<T>, OdooError> {
    let answer = answer.ok_or_else(|| contract(what, "no result"))?;
    serde_json::from_value(answer).map_err(|e| contract(what, e))
}

impl OdooClient {
    /// On hand and reserved of every product (or only `products`) over the internal locations
    /// below `view_location` (a warehouse's view location), in one call. Products without a
    /// quant there are absent.
    pub async fn stock_levels(
        &self,
        view_location: i64,
        products: Option<&[i64]>,
    ) -> Result<Vec<StockLevel>, OdooError> {
        let mut domain = vec![
            json!(["location_id", "child_of", view_location]),
            json!(["location_id.usage", "=", "internal"]),
        ];
        if let Some(products) = products {
            domain.push(json!(["product_id", "in", products]));
        }
        let answer = self
            .execute(
                Call::model("stock.quant", "read_group")
                    .arg("domain", json!(domain))
                    .arg("fields", json!(["quantity:sum", "reserved_quantity:sum"]))
                    .arg("groupby", json!(["product_id"]))
                    .kwarg("lazy", json!(false)),
            )
            .await?;
        let what = "stock.quant.read_group";
        rows::<QuantGroup>(what, answer)?
            .into_iter()
            .map(|g| {
                Ok(StockLevel {
                    product: g.product_id.0,
                    on_hand: qty(what, g.quantity)?,
                    reserved: qty(what, g.reserved_quantity)?,
                })
            })
            .collect()
    }

    /// The SKUs (`default_code`) of `products`, archived ones included; products without one
    /// are left out.
    pub async fn skus_of(&self, products: &[i64]) -> Result<BTreeMap<i64, String>, OdooError> {
        if products.is_empty() {
            return Ok(BTreeMap::new());
        }
        let answer = self
            .execute(
                Call::model("product.product", "search_read")
                    .arg("domain", json!([["id", "in", products]]))
                    .kwarg("fields", json!(["id", "default_code"]))
                    .context(json!({"active_test": false})),
            )
            .await?;
        Ok(rows::<ProductCode>("product.product.search_read", answer)?
            .into_iter()
            .filter_map(|p| Some((p.id, p.default_code.as_str()?.to_owned())))
            .collect())
    }

    /// The products whose quants or moves Odoo wrote at or after `since` (Odoo's UTC
    /// `YYYY-MM-DD HH:MM:SS`), one grouped read per model. Quants change with every
    /// reservation, receipt, delivery, scrap and adjustment; moves cover a quant removed once
    /// it is empty.
    pub async fn stock_written_since(&self, since: &str) -> Result<BTreeSet<i64>, OdooError> {
        let mut products = BTreeSet::new();
        for model in ["stock.quant", "stock.move"] {
            let answer = self
                .execute(
                    Call::model(model, "read_group")
                        .arg("domain", json!([["write_date", ">=", since]]))
                        .arg("fields", json!(["product_id"]))
                        .arg("groupby", json!(["product_id"]))
                        .kwarg("lazy", json!(false)),
                )
                .await?;
            for row in rows::<Written>(&format!("{model}.read_group"), answer)? {
                products.insert(row.product_id.0);
            }
        }
        Ok(products)
    }
}

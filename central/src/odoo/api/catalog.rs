//! What the merge resolves events against: warehouses, virtual locations, products by SKU,
//! locations by name, lots by name.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::json;

use super::rows::{Many2one, Tracking};
use super::{ProductRow, VirtualLocations, WarehouseRow};
use crate::odoo::client::OdooClient;
use crate::odoo::error::{ErrorKind, OdooError};

#[derive(Deserialize)]
struct Warehouse {
    id: i64,
    code: String,
    company_id: Many2one,
    lot_stock_id: Many2one,
    view_location_id: Many2one,
    in_type_id: Many2one,
    out_type_id: Many2one,
    int_type_id: Many2one,
}

#[derive(Deserialize)]
struct Location {
    id: i64,
    complete_name: String,
}

#[derive(Deserialize)]
struct VirtualLocation {
    id: i64,
    complete_name: String,
    usage: String,
}

/// A product on Odoo 17, where `detailed_type` says whether it is storable.
#[derive(Debug, Deserialize)]
struct Product17 {
    id: i64,
    default_code: String,
    uom_id: Many2one,
    tracking: Tracking,
    #[serde(rename = "type")]
    kind: String,
    detailed_type: String,
}

/// A product on Odoo 18 and later, with `is_storable`.
#[derive(Debug, Deserialize)]
struct Product18 {
    id: i64,
    default_code: String,
    uom_id: Many2one,
    tracking: Tracking,
    is_storable: bool,
}

#[derive(Deserialize)]
pub(super) struct Lot {
    id: i64,
    name: String,
    product_id: Many2one,
}

/// Lots by (product, lot name).
pub(super) fn lots_by_name(rows: Vec<Lot>) -> HashMap<(i64, String), i64> {
    rows.into_iter()
        .map(|r| ((r.product_id.id, r.name), r.id))
        .collect()
}

impl OdooClient {
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
        let rows: Vec<Warehouse> = self
            .search("stock.warehouse", json!([["code", "in", codes]]), &fields)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| WarehouseRow {
                id: r.id,
                code: r.code,
                company_id: r.company_id.id,
                stock_location: r.lot_stock_id.id,
                view_location: r.view_location_id.id,
                receipt_type: r.in_type_id.id,
                delivery_type: r.out_type_id.id,
                internal_type: r.int_type_id.id,
            })
            .collect())
    }

    /// Vendors, Customers and Inventory adjustment, by usage (and by name for inventory, which
    /// Scrap shares).
    pub async fn virtual_locations(&self) -> Result<VirtualLocations, OdooError> {
        let rows: Vec<VirtualLocation> = self
            .search(
                "stock.location",
                json!([["usage", "in", ["supplier", "customer", "inventory"]]]),
                &["id", "complete_name", "usage"],
            )
            .await?;
        let find = |usage: &str, name: Option<&str>| {
            rows.iter()
                .filter(|r| r.usage == usage)
                .find(|r| name.is_none_or(|n| r.complete_name.contains(n)))
                .map(|r| r.id)
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
        let domain = json!([["default_code", "in", skus]]);
        let model = "product.product";
        if self.major_version() <= 17 {
            let fields = [
                "id",
                "default_code",
                "uom_id",
                "tracking",
                "type",
                "detailed_type",
            ];
            let rows: Vec<Product17> = self.search(model, domain, &fields).await?;
            Ok(rows
                .into_iter()
                .map(|r| ProductRow {
                    storable: r.detailed_type == "product" || r.kind == "product",
                    id: r.id,
                    sku: r.default_code,
                    uom_id: r.uom_id.id,
                    tracking: r.tracking,
                })
                .collect())
        } else {
            let fields = [
                "id",
                "default_code",
                "uom_id",
                "tracking",
                "type",
                "is_storable",
            ];
            let rows: Vec<Product18> = self.search(model, domain, &fields).await?;
            Ok(rows
                .into_iter()
                .map(|r| ProductRow {
                    id: r.id,
                    sku: r.default_code,
                    uom_id: r.uom_id.id,
                    tracking: r.tracking,
                    storable: r.is_storable,
                })
                .collect())
        }
    }

    /// Internal locations by full name (`WH/Stock/Shelf 2`) under `within` (a warehouse's view
    /// location).
    pub async fn locations_by_name(
        &self,
        names: &[String],
        within: i64,
    ) -> Result<HashMap<String, i64>, OdooError> {
        let rows: Vec<Location> = self
            .search(
                "stock.location",
                json!([
                    ["complete_name", "in", names],
                    ["usage", "=", "internal"],
                    ["id", "child_of", within]
                ]),
                &["id", "complete_name"],
            )
            .await?;
        Ok(rows.into_iter().map(|r| (r.complete_name, r.id)).collect())
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
            .search(
                "stock.lot",
                json!([["product_id", "in", products], ["name", "in", lots]]),
                &["id", "name", "product_id"],
            )
            .await?;
        Ok(lots_by_name(rows))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::odoo::api::rows::decode;

    /// A product row missing `tracking` (a renamed field) once read as untracked; it is an
    /// error naming the model and the field, and so is a tracking Tally does not know.
    #[test]
    fn a_product_without_its_tracking_is_a_contract_error_not_an_untracked_product() {
        let row = json!({"id": 7, "default_code": "LAMP", "uom_id": [1, "Units"],
            "type": "consu", "is_storable": true});
        let error = decode::<Product18>("product.product", vec![row]).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Contract);
        assert!(error.message.contains("product.product") && error.message.contains("tracking"));
        let row = json!({"id": 7, "default_code": "LAMP", "uom_id": [1, "Units"],
            "tracking": "batch", "type": "product", "detailed_type": "product"});
        let error = decode::<Product17>("product.product", vec![row]).unwrap_err();
        assert!(error.message.contains("tracking"), "{error}");
        let row = json!({"id": 7, "default_code": "LAMP", "uom_id": [1, "Units"],
            "tracking": "lot", "type": "consu", "is_storable": true});
        let product = decode::<Product18>("product.product", vec![row])
            .unwrap()
            .remove(0);
        assert_eq!(product.tracking, Tracking::Lot);
    }
}

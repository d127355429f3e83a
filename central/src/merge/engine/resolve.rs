//! What a run names, looked up in Odoo once per lane: its warehouse, products by SKU and
//! locations by name.

use std::collections::HashSet;

use tally_protocol::LoggedEvent;

use super::Lane;
use super::MergeError;
use crate::merge::plan::{Product, Warehouse};
use crate::merge::state::ParkReason;
use crate::odoo::api::Tracking;

/// A product lookup's outcome, cached per SKU.
#[derive(Debug, Clone)]
pub(super) enum Found {
    Product(Product),
    Refused { reason: ParkReason, message: String },
}

impl Lane {
    /// The lane's warehouse as Odoo describes it (read once).
    pub(super) async fn warehouse(&mut self) -> Result<Warehouse, MergeError> {
        if let Some(found) = &self.warehouse {
            return Ok(found.clone());
        }
        let code = self.code.as_str();
        let row = self
            .odoo
            .warehouses(&[code.to_owned()])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| MergeError::UnknownWarehouse(code.to_owned()))?;
        let virtuals = *self
            .virtuals
            .get_or_try_init(|| self.odoo.virtual_locations())
            .await?;
        let warehouse = Warehouse {
            code: code.to_owned(),
            view_location: row.view_location,
            stock_location: row.stock_location,
            receipt_type: row.receipt_type,
            delivery_type: row.delivery_type,
            internal_type: row.internal_type,
            vendors: virtuals.vendors,
            customers: virtuals.customers,
            inventory_adjustment: virtuals.inventory_adjustment,
        };
        self.warehouse = Some(warehouse.clone());
        Ok(warehouse)
    }

    /// Looks up, in one call each, the SKUs and location names (within `warehouse`) not cached
    /// yet.
    pub(super) async fn resolve(
        &mut self,
        warehouse: &Warehouse,
        run: &[LoggedEvent],
    ) -> Result<(), MergeError> {
        let skus: Vec<String> = run
            .iter()
            .map(|e| e.event.sku.clone())
            .filter(|s| !self.products.contains_key(s))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if !skus.is_empty() {
            let rows = self.odoo.products(&skus).await?;
            for sku in skus {
                let matching: Vec<_> = rows.iter().filter(|r| r.sku == sku).collect();
                let found = match matching.as_slice() {
                    [] => Found::Refused {
                        reason: ParkReason::UnknownSku,
                        message: format!(
                            "no active product in Odoo has the internal reference {sku:?}"
                        ),
                    },
                    [one] if !one.storable => Found::Refused {
                        reason: ParkReason::NotStorable,
                        message: format!("product {sku:?} is not a storable product in Odoo"),
                    },
                    [one] => Found::Product(Product {
                        id: one.id,
                        uom_id: one.uom_id,
                        lot_tracked: one.tracking != Tracking::None,
                    }),
                    many => Found::Refused {
                        reason: ParkReason::DuplicateSku,
                        message: format!(
                            "{} products in Odoo share the internal reference {sku:?}",
                            many.len()
                        ),
                    },
                };
                self.products.insert(sku, found);
            }
        }
        let names: Vec<String> = run
            .iter()
            .flat_map(|e| [e.event.location.clone(), e.event.to_location.clone()])
            .flatten()
            .filter(|n| !self.locations.contains_key(n))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if !names.is_empty() {
            let found = self
                .odoo
                .locations_by_name(&names, warehouse.view_location)
                .await?;
            for name in names {
                let id = found.get(&name).copied();
                self.locations.insert(name, id);
            }
        }
        Ok(())
    }
}

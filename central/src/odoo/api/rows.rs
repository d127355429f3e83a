//! Odoo's rows as types: each `search_read` answer is deserialized into a struct of the fields
//! Tally asked for. A field that is missing, or of another shape than Tally relies on, is a
//! contract error ([`ErrorKind::Contract`]) naming the model and the field: merging pauses with
//! an alert, nothing is parked, and no field ever falls back to a default.

use std::fmt;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::odoo::error::{ErrorKind, OdooError};

/// A many2one value that is set: `[id, "display name"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Many2one {
    pub id: i64,
    pub name: String,
}

impl<'de> Deserialize<'de> for Many2one {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (id, name) = <(i64, String)>::deserialize(d)
            .map_err(|e| D::Error::custom(format!("expected a many2one [id, \"name\"]: {e}")))?;
        Ok(Many2one { id, name })
    }
}

/// A field Odoo may leave empty, which it sends as `false` (a many2one, a char or html field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrFalse<T>(pub Option<T>);

impl<T> OrFalse<T> {
    pub fn into_option(self) -> Option<T> {
        self.0
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for OrFalse<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Bool(false) => Ok(OrFalse(None)),
            value => T::deserialize(value)
                .map(|v| OrFalse(Some(v)))
                .map_err(D::Error::custom),
        }
    }
}

/// A picking's state (`stock.picking.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PickingStatus {
    Draft,
    Waiting,
    Confirmed,
    Assigned,
    Done,
    Cancel,
}

impl PickingStatus {
    /// Confirmed, waiting for another operation, or (partly) reserved: a picking that can
    /// still be filled. Drafts are not ready; done and cancelled pickings are history.
    pub const OPEN: [PickingStatus; 3] = [
        PickingStatus::Confirmed,
        PickingStatus::Waiting,
        PickingStatus::Assigned,
    ];

    pub fn is_open(self) -> bool {
        PickingStatus::OPEN.contains(&self)
    }

    /// Done or cancelled: nothing changes it any more.
    pub fn is_final(self) -> bool {
        matches!(self, PickingStatus::Done | PickingStatus::Cancel)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PickingStatus::Draft => "draft",
            PickingStatus::Waiting => "waiting",
            PickingStatus::Confirmed => "confirmed",
            PickingStatus::Assigned => "assigned",
            PickingStatus::Done => "done",
            PickingStatus::Cancel => "cancel",
        }
    }
}

impl fmt::Display for PickingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a product is tracked (`product.product.tracking`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tracking {
    None,
    Lot,
    Serial,
}

/// `search_read`'s rows of `model` as `T`; the first row that does not fit is an error naming
/// the model and the field.
pub fn decode<T: DeserializeOwned>(model: &str, rows: Vec<Value>) -> Result<Vec<T>, OdooError> {
    rows.into_iter().map(|row| decode_row(model, row)).collect()
}

fn decode_row<T: DeserializeOwned>(model: &str, row: Value) -> Result<T, OdooError> {
    serde_path_to_error::deserialize(row).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." {
            // A missing field is reported at the row itself, its name in the message.
            String::new()
        } else {
            format!(" field {path}:")
        };
        OdooError::new(
            ErrorKind::Contract,
            "malformed-answer",
            format!(
                "a {model} row from Odoo does not have the shape Tally relies on:{field} {inner}"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Quant {
        product_id: Many2one,
        lot_id: OrFalse<Many2one>,
        quantity: f64,
    }

    fn quant(row: Value) -> Result<Quant, OdooError> {
        decode_row("stock.quant", row)
    }

    #[test]
    fn a_row_of_the_expected_shape_is_read_exactly() {
        let q =
            quant(json!({"product_id": [7, "Lamp"], "lot_id": false, "quantity": 2.5})).unwrap();
        assert_eq!(
            q.product_id,
            Many2one {
                id: 7,
                name: "Lamp".into()
            }
        );
        assert_eq!(q.lot_id, OrFalse(None));
        assert_eq!(q.quantity, 2.5);
        let q =
            quant(json!({"product_id": [7, "Lamp"], "lot_id": [3, "L1"], "quantity": 0})).unwrap();
        assert_eq!(q.lot_id.into_option().map(|l| l.id), Some(3));
    }

    #[test]
    fn a_missing_or_malformed_field_is_a_contract_error_naming_model_and_field() {
        let cases = [
            (
                json!({"product_id": [7, "Lamp"], "lot_id": false}),
                "quantity",
            ),
            (
                json!({"product_id": [7, "Lamp"], "quantity": 1.0}),
                "lot_id",
            ),
            (
                json!({"product_id": false, "lot_id": false, "quantity": 1.0}),
                "product_id",
            ),
            (
                json!({"product_id": [7, "Lamp"], "lot_id": false, "quantity": "1"}),
                "quantity",
            ),
            (
                json!({"product_id": [7, "Lamp"], "lot_id": 3, "quantity": 1.0}),
                "lot_id",
            ),
        ];
        for (row, field) in cases {
            let error = quant(row.clone()).unwrap_err();
            assert_eq!(error.kind, ErrorKind::Contract, "{row}");
            assert!(error.message.contains("stock.quant"), "{error}");
            assert!(error.message.contains(field), "{row}: {error}");
        }
    }

    #[test]
    fn states_and_tracking_are_the_ones_odoo_has_and_no_other() {
        let state: PickingStatus = serde_json::from_value(json!("assigned")).unwrap();
        assert!(state.is_open() && !state.is_final());
        assert!(serde_json::from_value::<PickingStatus>(json!("shipped")).is_err());
        let tracking: Tracking = serde_json::from_value(json!("serial")).unwrap();
        assert_eq!(tracking, Tracking::Serial);
        assert!(serde_json::from_value::<Tracking>(json!(false)).is_err());
    }
}

//! The planner's tests: helpers here, the cases by topic.

mod counts;
mod fills;
mod phases;
mod pickings;

use std::collections::HashMap;

use tally_protocol::{Event, EventKind, Timestamp};

use super::*;

/// The stock location of [`WH`], and a shelf inside it.
const STOCK: i64 = 8;
const SHELF: i64 = 21;

const WH: Warehouse = Warehouse {
    code: String::new(),
    view_location: 7,
    stock_location: 8,
    receipt_type: 1,
    delivery_type: 2,
    internal_type: 5,
    vendors: 4,
    customers: 5,
    inventory_adjustment: 14,
};

fn event(seq: u64, kind: EventKind, sku_id: i64, qty: i64) -> (LoggedEvent, Product) {
    (
        LoggedEvent {
            seq,
            received_at: Timestamp::from_micros(0),
            event: Event::new(kind, format!("SKU-{sku_id}"), Qty::from_units(qty)),
        },
        Product {
            id: sku_id,
            uom_id: 1,
            lot_tracked: false,
        },
    )
}

fn resolve(events: &[(LoggedEvent, Product)]) -> Vec<ResolvedEvent<'_>> {
    events
        .iter()
        .map(|(event, product)| ResolvedEvent {
            event,
            product: product.clone(),
            location: WH.stock_location,
            to_location: Some(20),
        })
        .collect()
}

fn open_move(id: i64, product: i64, from: i64, to: i64) -> OpenMove {
    OpenMove {
        id,
        product,
        from,
        to,
    }
}

//! A fresh database like those of docs/odoo.md#sources once set up: warehouses `WH`
//! and `WH2` with their stock/view locations and operation types, the partner and virtual
//! locations (Vendors 4, Customers 5, Inventory adjustment 14, Scrap 16 — the ids of a fresh
//! Odoo database), products `SKU-001`…`SKU-005` (`SKU-005` lot-tracked), the administrator
//! and the integration user `edge-sync` with its API key. Ids mirror the recorded
//! databases (the operation types differ between 17 and 18, docs/odoo.md#sources).

use serde_json::{Value, json};

use super::Version;
use super::api::Credential;
use super::store::{Db, Id, Rec};

/// The integration user's login.
pub const EDGE_LOGIN: &str = "edge-sync";
/// The integration user's uid (as in both lab databases).
pub const EDGE_UID: Id = 6;
/// The integration user's password (API keys are preferred; both work).
pub const EDGE_PASSWORD: &str = "edge-sync-pw";
/// The integration user's name, which Odoo appends to inventory adjustment moves.
pub const EDGE_NAME: &str = "Edge Sync (integration)";
/// The administrator's login and password (uid 2).
pub const ADMIN_LOGIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin";
pub const ADMIN_UID: Id = 2;

/// Inserts `pairs` as record `id` of `model` (ids are handed out in order, so gaps are
/// reserved first).
fn put(db: &mut Db, model: &'static str, id: Id, pairs: &[(&'static str, Value)]) {
    db.reserve_ids_below(model, id);
    let rec: Rec = pairs.iter().cloned().collect();
    let got = db.insert(model, rec);
    assert_eq!(got, id, "seeding {model} out of order");
}

/// Location `id`: `name` under `parent`, with Odoo's complete name rule (a view's own name;
/// otherwise the parent's complete name, then the name).
fn location(db: &mut Db, id: Id, name: &str, parent: Option<Id>, usage: &str, active: bool) {
    let complete = match parent {
        Some(parent) if usage != "view" => format!(
            "{}/{name}",
            db.field("stock.location", parent, "complete_name")
                .as_str()
                .unwrap_or("")
        ),
        _ => name.to_owned(),
    };
    put(
        db,
        "stock.location",
        id,
        &[
            ("name", json!(name)),
            ("complete_name", json!(complete)),
            ("location_id", parent.map_or(Value::Null, Value::from)),
            ("usage", json!(usage)),
            (
                "company_id",
                if parent == Some(2) {
                    Value::Null
                } else {
                    json!(1)
                },
            ),
            ("scrap_location", json!(name == "Scrap")),
            ("active", json!(active)),
        ],
    );
}

/// An operation type.
#[allow(clippy::too_many_arguments)]
fn picking_type(
    db: &mut Db,
    id: Id,
    warehouse: Id,
    name: &str,
    code: &str,
    prefix: &str,
    (src, dest): (Id, Id),
    active: bool,
) {
    put(
        db,
        "stock.picking.type",
        id,
        &[
            ("name", json!(name)),
            ("code", json!(code)),
            ("sequence_code", json!(prefix)),
            ("sequence", json!(id)),
            ("warehouse_id", json!(warehouse)),
            ("company_id", json!(1)),
            ("default_location_src_id", json!(src)),
            ("default_location_dest_id", json!(dest)),
            ("use_create_lots", json!(code == "incoming")),
            ("use_existing_lots", json!(code != "incoming")),
            ("active", json!(active)),
        ],
    );
}

/// Operation type ids of a warehouse: receipt, delivery, internal, inactive others.
type TypeIds = (Id, Id, Id, &'static [Id]);

/// A warehouse: view and stock locations (plus the inactive multi-step ones), and its
/// operation types at the ids `types` = (receipt, delivery, internal, fillers...).
fn warehouse(db: &mut Db, id: Id, name: &str, code: &str, (view, stock): (Id, Id), types: TypeIds) {
    location(db, view, code, Some(1), "view", true);
    location(db, stock, "Stock", Some(view), "internal", true);
    for (offset, extra) in ["Input", "Quality Control", "Output", "Packing Zone"]
        .iter()
        .enumerate()
    {
        let extra_id = stock + 1 + offset as Id;
        location(db, extra_id, extra, Some(view), "internal", false);
    }
    let (receipt, delivery, internal, fillers) = types;
    let mut all: Vec<(Id, &str)> = vec![(receipt, "in"), (delivery, "out"), (internal, "int")];
    all.extend(fillers.iter().map(|f| (*f, "filler")));
    all.sort();
    let filler_names = [
        "Pick",
        "Pack",
        "Storage",
        "Cross Dock",
        "Quality Control",
        "Returns",
    ];
    let mut filler_index = 0;
    for (type_id, role) in all {
        match role {
            "in" => picking_type(
                db,
                type_id,
                id,
                "Receipts",
                "incoming",
                "IN",
                (4, stock),
                true,
            ),
            "out" => picking_type(
                db,
                type_id,
                id,
                "Delivery Orders",
                "outgoing",
                "OUT",
                (stock, 5),
                true,
            ),
            "int" => picking_type(
                db,
                type_id,
                id,
                "Internal Transfers",
                "internal",
                "INT",
                (stock, stock),
                true,
            ),
            _ => {
                let name = filler_names[filler_index % filler_names.len()];
                filler_index += 1;
                let prefix = name.to_uppercase().replace(' ', "");
                picking_type(
                    db,
                    type_id,
                    id,
                    name,
                    "internal",
                    &prefix,
                    (stock, stock),
                    false,
                );
            }
        }
    }
    put(
        db,
        "stock.warehouse",
        id,
        &[
            ("name", json!(name)),
            ("code", json!(code)),
            ("sequence", json!(id * 10)),
            ("company_id", json!(1)),
            ("view_location_id", json!(view)),
            ("lot_stock_id", json!(stock)),
            ("in_type_id", json!(receipt)),
            ("out_type_id", json!(delivery)),
            ("int_type_id", json!(internal)),
            ("active", json!(true)),
        ],
    );
}

/// Product fields for a storable product in `version`.
pub fn product_record(version: Version, name: &str, sku: &str, tracking: &str) -> Rec {
    let mut rec: Rec = [
        ("name", json!(name)),
        ("default_code", json!(sku)),
        ("tracking", json!(tracking)),
        ("uom_id", json!(1)),
        ("company_id", Value::Null),
        ("active", json!(true)),
    ]
    .into_iter()
    .collect();
    match version {
        Version::V17 => {
            rec.insert("type", json!("product"));
            rec.insert("detailed_type", json!("product"));
        }
        Version::V18 | Version::V19 => {
            rec.insert("type", json!("consu"));
            rec.insert("is_storable", json!(true));
        }
    }
    rec
}

/// What a seeded database needs to know beyond its records.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    pub version: Version,
    pub api_key: String,
    /// The integration user's e-mail (docs/odoo.md#backorders; without it partial picks
    /// with a backorder fail).
    pub edge_sync_email: Option<String>,
    /// Extra untracked storable products `BULK-0000`, `BULK-0001`, …
    pub extra_products: usize,
}

/// Fills an empty database; returns who may log in with what.
pub fn seed(db: &mut Db, options: &SeedOptions) -> Vec<Credential> {
    let version = options.version;
    let groups = match version {
        Version::V17 | Version::V18 => "groups_id",
        Version::V19 => "group_ids",
    };
    put(
        db,
        "res.company",
        1,
        &[("name", json!("My Company")), ("sequence", json!(10))],
    );
    put(
        db,
        "uom.uom",
        1,
        &[("name", json!("Units")), ("factor", json!(1.0))],
    );
    for (id, name) in [
        (1, "My Company"),
        (2, "OdooBot"),
        (3, "Administrator"),
        (7, EDGE_NAME),
    ] {
        put(
            db,
            "res.partner",
            id,
            &[
                ("name", json!(name)),
                ("complete_name", json!(name)),
                ("active", json!(true)),
            ],
        );
    }
    put(
        db,
        "res.users",
        1,
        &[
            ("name", json!("OdooBot")),
            ("login", json!("__system__")),
            ("partner_id", json!(2)),
            ("company_id", json!(1)),
            ("active", json!(false)),
            ("share", json!(false)),
        ],
    );
    put(
        db,
        "res.users",
        ADMIN_UID,
        &[
            ("name", json!("Administrator")),
            ("login", json!(ADMIN_LOGIN)),
            ("email", json!("admin@yourcompany.example.com")),
            ("partner_id", json!(3)),
            ("company_id", json!(1)),
            (groups, json!([1, 2, 3, 4])),
            ("active", json!(true)),
            ("share", json!(false)),
        ],
    );
    put(
        db,
        "res.users",
        EDGE_UID,
        &[
            ("name", json!(EDGE_NAME)),
            ("login", json!(EDGE_LOGIN)),
            (
                "email",
                options
                    .edge_sync_email
                    .as_deref()
                    .map_or(Value::Null, Value::from),
            ),
            ("partner_id", json!(7)),
            ("company_id", json!(1)),
            (groups, json!([1, 38])),
            ("active", json!(true)),
            ("share", json!(false)),
        ],
    );
    location(db, 1, "Physical Locations", None, "view", true);
    location(db, 2, "Partners", None, "view", true);
    location(db, 3, "Virtual Locations", None, "view", true);
    location(db, 4, "Vendors", Some(2), "supplier", true);
    location(db, 5, "Customers", Some(2), "customer", true);
    location(db, 6, "Inter-company transit", Some(1), "transit", false);
    let (wh_types, wh2_types): (TypeIds, TypeIds) = match version {
        Version::V17 => ((1, 2, 5, &[3, 4]), (6, 7, 10, &[8, 9])),
        Version::V18 | Version::V19 => (
            (1, 2, 7, &[3, 4, 5, 6, 8]),
            (9, 10, 15, &[11, 12, 13, 14, 16]),
        ),
    };
    warehouse(db, 1, "My Company", "WH", (7, 8), wh_types);
    location(db, 13, "Production", Some(3), "production", true);
    location(db, 14, "Inventory adjustment", Some(3), "inventory", true);
    location(db, 15, "Procurements", Some(3), "production", false);
    location(db, 16, "Scrap", Some(3), "inventory", true);
    warehouse(db, 2, "Second Warehouse", "WH2", (17, 18), wh2_types);
    db.reserve_ids_below("stock.location", 23);
    for n in 1..=5 {
        let tracking = if n == 5 { "lot" } else { "none" };
        let rec = product_record(
            version,
            &format!("Edge product {n}"),
            &format!("SKU-{n:03}"),
            tracking,
        );
        db.insert("product.product", rec);
    }
    for n in 0..options.extra_products {
        let rec = product_record(
            version,
            &format!("Bulk product {n}"),
            &format!("BULK-{n:04}"),
            "none",
        );
        db.insert("product.product", rec);
    }
    db.commit();
    vec![
        Credential {
            uid: ADMIN_UID,
            login: ADMIN_LOGIN.to_owned(),
            secrets: vec![ADMIN_PASSWORD.to_owned()],
        },
        Credential {
            uid: EDGE_UID,
            login: EDGE_LOGIN.to_owned(),
            secrets: vec![EDGE_PASSWORD.to_owned(), options.api_key.clone()],
        },
    ]
}

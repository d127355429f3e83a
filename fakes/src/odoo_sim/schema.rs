//! The models and fields the simulator knows, with the types, labels and version differences
//! recorded from Odoo 17, 18 and 19 (docs/odoo.md#versions). This drives reading (how a value is
//! rendered), writing (how a value is checked), `fields_get`, domains and ordering, and it is
//! public so that replay tests can tell which model an id in a request belongs to.

use std::sync::OnceLock;

use super::Version;

/// An Odoo field type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Char,
    Text,
    Html,
    Integer,
    Float,
    Boolean,
    Selection,
    Date,
    Datetime,
    Many2one,
    One2many,
    Many2many,
}

impl Kind {
    /// The name `fields_get` reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Char => "char",
            Kind::Text => "text",
            Kind::Html => "html",
            Kind::Integer => "integer",
            Kind::Float => "float",
            Kind::Boolean => "boolean",
            Kind::Selection => "selection",
            Kind::Date => "date",
            Kind::Datetime => "datetime",
            Kind::Many2one => "many2one",
            Kind::One2many => "one2many",
            Kind::Many2many => "many2many",
        }
    }

    pub fn is_relational(self) -> bool {
        matches!(self, Kind::Many2one | Kind::One2many | Kind::Many2many)
    }
}

/// One field of a model.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    /// The label (`string` in `fields_get`, and in "mandatory field" errors).
    pub string: &'static str,
    /// The related model of a relational field.
    pub relation: Option<&'static str>,
    /// For a one2many: the many2one field on `relation` pointing back.
    pub inverse: Option<&'static str>,
    pub required: bool,
    pub readonly: bool,
    /// Stored in the database (searchable and groupable without computing).
    pub store: bool,
    /// Derived by the simulator on read instead of stored.
    pub computed: bool,
    /// The major versions that have it (inclusive).
    pub versions: (u8, u8),
    /// For selections: (value, label) for 17 and, when different, for 18.
    pub selection: Option<(Sel, Option<Sel>)>,
}

/// Every version the simulator knows.
pub const ALL_VERSIONS: (u8, u8) = (17, u8::MAX);

/// A selection's (value, label) pairs.
pub type Sel = &'static [(&'static str, &'static str)];

/// One Odoo model.
#[derive(Debug, Clone)]
pub struct Model {
    pub name: &'static str,
    /// The model's description, as in "Model: Stock Move (stock.move)".
    pub description: &'static str,
    /// The default `_order`.
    pub order: &'static str,
    pub fields: Vec<Field>,
}

impl Model {
    /// The field `name` as it exists in `version`.
    pub fn field(&self, name: &str, version: Version) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.name == name && f.exists_in(version))
    }

    /// Every field of `version`, in declaration order.
    pub fn fields_of(&self, version: Version) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(move |f| f.exists_in(version))
    }

    /// Whether records of this model can be archived (`active`), which hides them from
    /// searches unless the context says `active_test: false`.
    pub fn has_active(&self) -> bool {
        self.fields.iter().any(|f| f.name == "active")
    }
}

fn f(name: &'static str, kind: Kind, string: &'static str) -> Field {
    Field {
        name,
        kind,
        string,
        relation: None,
        inverse: None,
        required: false,
        readonly: false,
        store: true,
        computed: false,
        versions: ALL_VERSIONS,
        selection: None,
    }
}

impl Field {
    fn rel(mut self, relation: &'static str) -> Field {
        self.relation = Some(relation);
        self
    }
    fn inv(mut self, inverse: &'static str) -> Field {
        self.inverse = Some(inverse);
        self.store = false;
        self.computed = true;
        self
    }
    fn req(mut self) -> Field {
        self.required = true;
        self
    }
    fn ro(mut self) -> Field {
        self.readonly = true;
        self
    }
    /// Computed on read and not stored (not searchable by the real Odoo in SQL either).
    fn calc(mut self) -> Field {
        self.computed = true;
        self.store = false;
        self.readonly = true;
        self
    }
    /// Computed but stored in the real Odoo (searchable); the simulator computes it.
    fn calc_stored(mut self) -> Field {
        self.computed = true;
        self.readonly = true;
        self
    }
    /// Removed after `major`.
    fn until(mut self, major: u8) -> Field {
        self.versions.1 = major;
        self
    }
    /// Added in `major`.
    fn since(mut self, major: u8) -> Field {
        self.versions.0 = major;
        self
    }
    fn sel(mut self, v17: Sel, v18: Option<Sel>) -> Field {
        self.selection = Some((v17, v18));
        self
    }
}

use Kind::*;

const PICKING_STATES: Sel = &[
    ("draft", "Draft"),
    ("waiting", "Waiting Another Operation"),
    ("confirmed", "Waiting"),
    ("assigned", "Ready"),
    ("done", "Done"),
    ("cancel", "Cancelled"),
];
const MOVE_STATES: Sel = &[
    ("draft", "New"),
    ("waiting", "Waiting Another Move"),
    ("confirmed", "Waiting Availability"),
    ("partially_available", "Partially Available"),
    ("assigned", "Available"),
    ("done", "Done"),
    ("cancel", "Cancelled"),
];
const USAGES: Sel = &[
    ("supplier", "Vendor Location"),
    ("view", "View"),
    ("internal", "Internal Location"),
    ("customer", "Customer Location"),
    ("inventory", "Inventory Loss"),
    ("production", "Production"),
    ("transit", "Transit Location"),
];
const TRACKING_17: Sel = &[
    ("serial", "By Unique Serial Number"),
    ("lot", "By Lots"),
    ("none", "No Tracking"),
];
const TRACKING_18: Sel = &[
    ("serial", "By Unique Serial Number"),
    ("lot", "By Lots"),
    ("none", "By Quantity"),
];
const TYPE_17: Sel = &[
    ("consu", "Consumable"),
    ("service", "Service"),
    ("product", "Storable Product"),
];
const TYPE_18: Sel = &[
    ("consu", "Goods"),
    ("service", "Service"),
    ("combo", "Combo"),
];
const PICKING_TYPE_CODES: Sel = &[
    ("incoming", "Receipt"),
    ("outgoing", "Delivery"),
    ("internal", "Internal Transfer"),
];
const SO_STATES: Sel = &[
    ("draft", "Quotation"),
    ("sent", "Quotation Sent"),
    ("sale", "Sales Order"),
    ("cancel", "Cancelled"),
];

fn build() -> Vec<Model> {
    vec![
        Model {
            name: "res.company",
            description: "Companies",
            order: "sequence, name",
            fields: vec![
                f("name", Char, "Company Name").req(),
                f("sequence", Integer, "Sequence"),
            ],
        },
        Model {
            name: "res.partner",
            description: "Contact",
            order: "complete_name, id",
            fields: vec![
                f("name", Char, "Name"),
                f("complete_name", Char, "Complete Name").calc_stored(),
                f("email", Char, "Email"),
                f("phone", Char, "Phone"),
                f("company_id", Many2one, "Company").rel("res.company"),
                f("active", Boolean, "Active"),
            ],
        },
        Model {
            name: "res.users",
            description: "User",
            order: "name, login",
            fields: vec![
                f("name", Char, "Name").req(),
                f("login", Char, "Login").req(),
                f("email", Char, "Email"),
                f("partner_id", Many2one, "Related Partner").rel("res.partner"),
                f("company_id", Many2one, "Company").rel("res.company"),
                f("groups_id", Many2many, "Groups")
                    .rel("res.groups")
                    .until(18),
                f("group_ids", Many2many, "Groups")
                    .rel("res.groups")
                    .since(19),
                f("share", Boolean, "Share User").ro(),
                f("active", Boolean, "Active"),
            ],
        },
        Model {
            name: "res.groups",
            description: "Access Groups",
            order: "name",
            fields: vec![f("name", Char, "Name").req()],
        },
        Model {
            name: "uom.uom",
            description: "Product Unit of Measure",
            order: "factor DESC, id",
            fields: vec![
                f("name", Char, "Unit of Measure").req(),
                f("factor", Float, "Ratio"),
            ],
        },
        Model {
            name: "product.product",
            description: "Product Variant",
            order: "default_code, name, id",
            fields: vec![
                f("name", Char, "Name").req(),
                f("default_code", Char, "Internal Reference"),
                f("barcode", Char, "Barcode"),
                f("type", Selection, "Type").sel(TYPE_17, Some(TYPE_18)),
                f("detailed_type", Selection, "Product Type")
                    .sel(TYPE_17, None)
                    .until(17),
                f("is_storable", Boolean, "Track Inventory").since(18),
                f("tracking", Selection, "Tracking").sel(TRACKING_17, Some(TRACKING_18)),
                f("uom_id", Many2one, "Unit of Measure").rel("uom.uom"),
                f("company_id", Many2one, "Company").rel("res.company"),
                f("active", Boolean, "Active"),
                f("qty_available", Float, "Quantity On Hand").calc(),
                f("free_qty", Float, "Free To Use Quantity ").calc(),
                f("virtual_available", Float, "Forecasted Quantity").calc(),
                f("incoming_qty", Float, "Incoming").calc(),
                f("outgoing_qty", Float, "Outgoing").calc(),
            ],
        },
        Model {
            name: "stock.warehouse",
            description: "Warehouse",
            order: "sequence,id",
            fields: vec![
                f("name", Char, "Warehouse").req(),
                f("code", Char, "Short Name").req(),
                f("sequence", Integer, "Sequence"),
                f("company_id", Many2one, "Company")
                    .rel("res.company")
                    .req(),
                f("view_location_id", Many2one, "View Location").rel("stock.location"),
                f("lot_stock_id", Many2one, "Location Stock").rel("stock.location"),
                f("in_type_id", Many2one, "In Type").rel("stock.picking.type"),
                f("out_type_id", Many2one, "Out Type").rel("stock.picking.type"),
                f("int_type_id", Many2one, "Internal Type").rel("stock.picking.type"),
                f("active", Boolean, "Active"),
            ],
        },
        Model {
            name: "stock.location",
            description: "Inventory Locations",
            order: "complete_name, id",
            fields: vec![
                f("name", Char, "Location Name").req(),
                f("complete_name", Char, "Full Location Name").calc_stored(),
                f("location_id", Many2one, "Parent Location").rel("stock.location"),
                f("child_ids", One2many, "Contains")
                    .rel("stock.location")
                    .inv("location_id"),
                f("usage", Selection, "Location Type")
                    .sel(USAGES, None)
                    .req(),
                f("company_id", Many2one, "Company").rel("res.company"),
                f("scrap_location", Boolean, "Is a Scrap Location?"),
                f("warehouse_id", Many2one, "Warehouse")
                    .rel("stock.warehouse")
                    .calc_stored(),
                f("active", Boolean, "Active"),
            ],
        },
        Model {
            name: "stock.picking.type",
            description: "Picking Type",
            order: "sequence, id",
            fields: vec![
                f("name", Char, "Operation Type").req(),
                f("code", Selection, "Type of Operation")
                    .sel(PICKING_TYPE_CODES, None)
                    .req(),
                f("sequence", Integer, "Sequence"),
                f("sequence_code", Char, "Sequence Prefix").req(),
                f("warehouse_id", Many2one, "Warehouse").rel("stock.warehouse"),
                f("company_id", Many2one, "Company").rel("res.company"),
                f(
                    "default_location_src_id",
                    Many2one,
                    "Default Source Location",
                )
                .rel("stock.location"),
                f(
                    "default_location_dest_id",
                    Many2one,
                    "Default Destination Location",
                )
                .rel("stock.location"),
                f("use_create_lots", Boolean, "Create New Lots/Serial Numbers"),
                f(
                    "use_existing_lots",
                    Boolean,
                    "Use Existing Lots/Serial Numbers",
                ),
                f("active", Boolean, "Active"),
            ],
        },
        Model {
            name: "stock.lot",
            description: "Lot/Serial",
            order: "name, id",
            fields: vec![
                f("name", Char, "Lot/Serial Number").req(),
                f("ref", Char, "Internal Reference"),
                f("product_id", Many2one, "Product")
                    .rel("product.product")
                    .req(),
                f("company_id", Many2one, "Company").rel("res.company"),
                f("product_qty", Float, "On Hand Quantity").calc(),
                f("quant_ids", One2many, "Quants")
                    .rel("stock.quant")
                    .inv("lot_id"),
            ],
        },
        Model {
            name: "stock.picking",
            description: "Transfer",
            order: "priority desc, scheduled_date asc, id desc",
            fields: vec![
                f("name", Char, "Reference"),
                f("origin", Char, "Source Document"),
                f("note", Html, "Notes"),
                f("priority", Selection, "Priority").sel(&[("0", "Normal"), ("1", "Urgent")], None),
                f("state", Selection, "Status")
                    .sel(PICKING_STATES, None)
                    .calc_stored(),
                f("move_type", Selection, "Shipping Policy")
                    .sel(
                        &[
                            ("direct", "As soon as possible"),
                            ("one", "When all products are ready"),
                        ],
                        None,
                    )
                    .req(),
                f("picking_type_id", Many2one, "Operation Type")
                    .rel("stock.picking.type")
                    .req(),
                f("picking_type_code", Selection, "Type of Operation")
                    .sel(PICKING_TYPE_CODES, None)
                    .calc(),
                f("location_id", Many2one, "Source Location")
                    .rel("stock.location")
                    .req(),
                f("location_dest_id", Many2one, "Destination Location")
                    .rel("stock.location")
                    .req(),
                f("partner_id", Many2one, "Contact").rel("res.partner"),
                f("company_id", Many2one, "Company").rel("res.company"),
                f("user_id", Many2one, "Responsible").rel("res.users"),
                f("move_ids", One2many, "Stock Moves")
                    .rel("stock.move")
                    .inv("picking_id"),
                f(
                    "move_ids_without_package",
                    One2many,
                    "Stock moves not in package",
                )
                .rel("stock.move")
                .inv("picking_id"),
                f("move_line_ids", One2many, "Operations")
                    .rel("stock.move.line")
                    .inv("picking_id"),
                f("backorder_id", Many2one, "Back Order of").rel("stock.picking"),
                f("backorder_ids", One2many, "Back Orders")
                    .rel("stock.picking")
                    .inv("backorder_id"),
                f("sale_id", Many2one, "Sales Order").rel("sale.order"),
                f("scheduled_date", Datetime, "Scheduled Date"),
                f("date_deadline", Datetime, "Deadline").ro(),
                f("date", Datetime, "Creation Date"),
                f("date_done", Datetime, "Date of Transfer").ro(),
                f("create_date", Datetime, "Created on").ro(),
            ],
        },
        Model {
            name: "stock.move",
            description: "Stock Move",
            order: "sequence, id",
            fields: vec![
                // Odoo 19 removed the move's description.
                f("name", Char, "Description").req().until(18),
                f("sequence", Integer, "Sequence"),
                f("reference", Char, "Reference").calc_stored(),
                f("origin", Char, "Source Document"),
                f("description_picking", Text, "Description of Picking"),
                f("product_id", Many2one, "Product")
                    .rel("product.product")
                    .req(),
                f("product_uom", Many2one, "UoM").rel("uom.uom").req(),
                f("product_uom_qty", Float, "Demand").req(),
                f("product_qty", Float, "Real Quantity").calc_stored(),
                f("quantity", Float, "Quantity").calc_stored(),
                f("picked", Boolean, "Picked"),
                f("state", Selection, "Status").sel(MOVE_STATES, None).ro(),
                f("location_id", Many2one, "Source Location")
                    .rel("stock.location")
                    .req(),
                f("location_dest_id", Many2one, "Destination Location")
                    .rel("stock.location")
                    .req(),
                f("picking_id", Many2one, "Transfer").rel("stock.picking"),
                f("picking_type_id", Many2one, "Operation Type").rel("stock.picking.type"),
                f("move_line_ids", One2many, "Move Lines")
                    .rel("stock.move.line")
                    .inv("move_id"),
                f("partner_id", Many2one, "Destination Address ").rel("res.partner"),
                f("company_id", Many2one, "Company")
                    .rel("res.company")
                    .req(),
                f("sale_line_id", Many2one, "Sale Line").rel("sale.order.line"),
                f("is_inventory", Boolean, "Inventory"),
                f("date", Datetime, "Date Scheduled").req(),
                f("date_deadline", Datetime, "Deadline").ro(),
                f("next_serial", Char, "First SN"),
                f("write_date", Datetime, "Last Updated on").ro(),
            ],
        },
        Model {
            name: "stock.move.line",
            description: "Product Moves (Stock Move Line)",
            order: "id",
            fields: vec![
                f("picking_id", Many2one, "Transfer").rel("stock.picking"),
                f("move_id", Many2one, "Stock Operation").rel("stock.move"),
                f("company_id", Many2one, "Company").rel("res.company").ro(),
                f("product_id", Many2one, "Product").rel("product.product"),
                f("product_uom_id", Many2one, "Unit of Measure")
                    .rel("uom.uom")
                    .req(),
                f("quantity", Float, "Quantity"),
                f("quantity_product_uom", Float, "Quantity in Product UoM").calc_stored(),
                f("picked", Boolean, "Picked"),
                f("lot_id", Many2one, "Lot/Serial Number").rel("stock.lot"),
                f("lot_name", Char, "Lot/Serial Number Name"),
                f("location_id", Many2one, "From")
                    .rel("stock.location")
                    .req(),
                f("location_dest_id", Many2one, "To")
                    .rel("stock.location")
                    .req(),
                f("state", Selection, "Status")
                    .sel(MOVE_STATES, None)
                    .calc_stored(),
                f("reference", Char, "Reference").calc_stored(),
                f("is_inventory", Boolean, "Inventory").calc(),
                f("date", Datetime, "Date").req(),
                f("description_picking", Text, "Description picking"),
            ],
        },
        Model {
            name: "stock.quant",
            description: "Quants",
            order: "id",
            fields: vec![
                f("product_id", Many2one, "Product")
                    .rel("product.product")
                    .req(),
                f("location_id", Many2one, "Location")
                    .rel("stock.location")
                    .req(),
                f("lot_id", Many2one, "Lot/Serial Number").rel("stock.lot"),
                f("company_id", Many2one, "Company").rel("res.company").ro(),
                f("warehouse_id", Many2one, "Warehouse")
                    .rel("stock.warehouse")
                    .calc(),
                f("quantity", Float, "Quantity").ro(),
                f("reserved_quantity", Float, "Reserved Quantity").calc_stored(),
                f("available_quantity", Float, "Available Quantity").calc(),
                f("inventory_quantity", Float, "Counted Quantity"),
                f("inventory_diff_quantity", Float, "Difference").ro(),
                f("inventory_quantity_set", Boolean, "Inventory Quantity Set"),
                f(
                    "inventory_quantity_auto_apply",
                    Float,
                    "Inventoried Quantity",
                )
                .calc(),
                f(
                    "is_outdated",
                    Boolean,
                    "Quantity has been moved since last count",
                )
                .calc(),
                f("inventory_date", Date, "Scheduled Date"),
                f("in_date", Datetime, "Incoming Date").ro(),
                f("user_id", Many2one, "Assigned To").rel("res.users"),
                f("write_date", Datetime, "Last Updated on").ro(),
            ],
        },
        Model {
            name: "sale.order",
            description: "Sales Order",
            order: "date_order desc, id desc",
            fields: vec![
                f("name", Char, "Order Reference").req(),
                f("state", Selection, "Status").sel(SO_STATES, None).ro(),
                f("partner_id", Many2one, "Customer")
                    .rel("res.partner")
                    .req(),
                f("warehouse_id", Many2one, "Warehouse").rel("stock.warehouse"),
                f("client_order_ref", Char, "Customer Reference"),
                f("company_id", Many2one, "Company").rel("res.company"),
                f("date_order", Datetime, "Order Date"),
                f("order_line", One2many, "Order Lines")
                    .rel("sale.order.line")
                    .inv("order_id"),
                f("picking_ids", One2many, "Transfers")
                    .rel("stock.picking")
                    .inv("sale_id"),
            ],
        },
        Model {
            name: "sale.order.line",
            description: "Sales Order Line",
            order: "order_id, sequence, id",
            fields: vec![
                f("order_id", Many2one, "Order Reference")
                    .rel("sale.order")
                    .req(),
                f("sequence", Integer, "Sequence"),
                f("name", Text, "Description"),
                f("product_id", Many2one, "Product").rel("product.product"),
                f("product_uom_qty", Float, "Quantity"),
                f("qty_delivered", Float, "Delivery Quantity").calc_stored(),
                f("qty_to_invoice", Float, "Quantity To Invoice").calc_stored(),
                f("move_ids", One2many, "Stock Moves")
                    .rel("stock.move")
                    .inv("sale_line_id"),
            ],
        },
        Model {
            name: "stock.backorder.confirmation",
            description: "Backorder Confirmation",
            order: "id",
            fields: vec![
                f("pick_ids", Many2many, "Pick").rel("stock.picking"),
                f("show_transfers", Boolean, "Show Transfers"),
                f(
                    "backorder_confirmation_line_ids",
                    One2many,
                    "Backorder Confirmation Lines",
                )
                .rel("stock.backorder.confirmation.line")
                .inv("backorder_confirmation_id"),
            ],
        },
        Model {
            name: "stock.backorder.confirmation.line",
            description: "Backorder Confirmation Line",
            order: "id",
            fields: vec![
                f("backorder_confirmation_id", Many2one, "Immediate Transfer")
                    .rel("stock.backorder.confirmation"),
                f("picking_id", Many2one, "Transfer").rel("stock.picking"),
                f("to_backorder", Boolean, "To Backorder"),
            ],
        },
        Model {
            name: "stock.inventory.conflict",
            description: "Conflict in Inventory",
            order: "id",
            fields: vec![
                f("quant_ids", Many2many, "Quants").rel("stock.quant"),
                f("quant_to_fix_ids", Many2many, "Conflicts").rel("stock.quant"),
            ],
        },
        Model {
            name: "res.users.apikeys.description",
            description: "API Key Description",
            order: "id",
            fields: vec![f("name", Char, "Description").req()],
        },
        Model {
            name: "ir.config_parameter",
            description: "System Parameter",
            order: "key",
            fields: vec![f("key", Char, "Key").req(), f("value", Text, "Value").req()],
        },
    ]
}

/// Every model the simulator serves.
pub fn models() -> &'static [Model] {
    static MODELS: OnceLock<Vec<Model>> = OnceLock::new();
    MODELS.get_or_init(build)
}

/// The model called `name`.
pub fn model(name: &str) -> Option<&'static Model> {
    models().iter().find(|m| m.name == name)
}

/// The model's name as a `'static` string (store keys are static).
pub fn static_name(name: &str) -> Option<&'static str> {
    model(name).map(|m| m.name)
}

/// The field `field` of `model` in `version`.
pub fn field(model: &str, field: &str, version: Version) -> Option<&'static Field> {
    self::model(model).and_then(|m| m.field(field, version))
}

/// Whether `model.field` is a many2one in any version (the store indexes those).
pub fn is_many2one(model: &str, field: &str) -> bool {
    self::model(model).is_some_and(|m| {
        m.fields
            .iter()
            .any(|f| f.name == field && f.kind == Kind::Many2one)
    })
}

/// The model a relational field points to (for replay tests mapping ids).
pub fn relation(version: Version, model: &str, field: &str) -> Option<&'static str> {
    self::field(model, field, version).and_then(|f| f.relation)
}

/// The field naming a record's parent, for `child_of` (Odoo's `_parent_name`).
pub fn parent_field(model: &str) -> Option<&'static str> {
    match model {
        "stock.location" => Some("location_id"),
        _ => None,
    }
}

impl Field {
    /// The (value, label) pairs of a selection in `version`.
    pub fn selection_of(&self, version: Version) -> Option<Sel> {
        self.selection.map(|(v17, v18)| match version {
            Version::V17 => v17,
            Version::V18 | Version::V19 => v18.unwrap_or(v17),
        })
    }

    pub fn exists_in(&self, version: Version) -> bool {
        (self.versions.0..=self.versions.1).contains(&version.major())
    }
}

//! The generic half of Odoo's ORM as the external API sees it: reading values in Odoo's
//! shapes (many2one as `[id, "display name"]`, empty values as `false`, floats as floats),
//! checking written values (`"ten"` for a float is a `ValueError`, a dangling many2one the
//! foreign-key `ValidationError`), searching with domains and `_order`, `read_group`,
//! `web_read`/`web_search_read` and `fields_get`. Per-model behaviour lives in
//! [`super::stock`], [`super::inventory`] and [`super::sale`].

use std::cmp::Ordering;

use serde_json::{Map, Value, json};

use super::Version;
use super::domain::Domain;
use super::rpc::OdooError;
use super::schema::{self, Field, Kind};
use super::store::{Db, Id, Rec};
use super::{clock, inventory, sale, stock};

/// Everything one call runs with: the database (inside the call's transaction), who calls,
/// the context, the time, and how much per-line work the latency model should charge.
#[derive(Debug)]
pub struct Env<'a> {
    pub db: &'a mut Db,
    pub version: Version,
    pub uid: Id,
    pub ctx: Map<String, Value>,
    /// Seconds since the epoch, fixed for the whole call (one transaction, one `now()`).
    pub now: i64,
    /// Move lines created, validated or changed, for the per-line latency.
    pub lines: usize,
}

/// Reads a float from a stored value (`null` is 0).
pub fn as_f64(value: &Value) -> f64 {
    match value {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::Bool(true) => 1.0,
        _ => 0.0,
    }
}

/// Tolerance for quantity comparisons (Odoo rounds to the unit's precision).
pub const EPSILON: f64 = 1e-6;

/// Many2many/one2many id lists and single ids alike, as a list of ids.
pub fn ids_of(value: &Value) -> Vec<Id> {
    match value {
        Value::Array(items) => items.iter().filter_map(Value::as_i64).collect(),
        other => other.as_i64().into_iter().collect(),
    }
}

impl Env<'_> {
    /// The context value `key` (`null` when absent).
    pub fn ctx_value(&self, key: &str) -> &Value {
        self.ctx.get(key).unwrap_or(&Value::Null)
    }

    /// Whether the context sets `key` to something true.
    pub fn ctx_flag(&self, key: &str) -> bool {
        truthy(self.ctx_value(key))
    }

    pub fn now_text(&self) -> String {
        clock::format_datetime(self.now)
    }

    /// A stored float field.
    pub fn f64(&self, model: &str, id: Id, field: &str) -> f64 {
        as_f64(&self.db.field(model, id, field))
    }

    /// A stored many2one field.
    pub fn m2o(&self, model: &str, id: Id, field: &str) -> Option<Id> {
        self.db.field(model, id, field).as_i64()
    }

    /// A stored text field (`""` when empty).
    pub fn text(&self, model: &str, id: Id, field: &str) -> String {
        self.db
            .field(model, id, field)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// A stored boolean field.
    pub fn flag(&self, model: &str, id: Id, field: &str) -> bool {
        truthy(&self.db.field(model, id, field))
    }

    /// A field's value in storage form, computing it when the model computes it: many2one
    /// as id or `null`, x2many as an array of ids.
    pub fn raw(&self, model: &str, id: Id, field: &str) -> Value {
        if field == "id" {
            return Value::from(id);
        }
        if field == "display_name" {
            return Value::from(self.display_name(model, id));
        }
        let Some(def) = schema::field(model, field, self.version) else {
            return Value::Null;
        };
        if let (Kind::One2many, Some(relation), Some(inverse)) =
            (def.kind, def.relation, def.inverse)
        {
            let Some(relation) = schema::static_name(relation) else {
                return Value::Array(vec![]);
            };
            let inverse = schema::field(relation, inverse, self.version).map_or("", |f| f.name);
            let mut ids = self.db.children(relation, inverse, id);
            self.sort_ids(relation, &mut ids, None);
            return Value::from(ids);
        }
        if def.computed {
            return self.compute(model, id, field);
        }
        self.db.field(model, id, field)
    }

    /// Fields the simulator derives instead of storing.
    fn compute(&self, model: &str, id: Id, field: &str) -> Value {
        match (model, field) {
            ("product.product", _) => Value::from(stock::availability(self, id, field)),
            ("stock.move", "quantity") => Value::from(stock::move_quantity(self, id)),
            ("stock.move", "product_qty") => self.db.field(model, id, "product_uom_qty"),
            ("stock.move", "reference") => Value::from(stock::move_reference(self, id)),
            ("stock.move.line", "quantity_product_uom") => self.db.field(model, id, "quantity"),
            ("stock.move.line", "state") => match self.m2o(model, id, "move_id") {
                Some(mv) => self.db.field("stock.move", mv, "state"),
                None => Value::from("draft"),
            },
            ("stock.move.line", "reference") => match self.m2o(model, id, "move_id") {
                Some(mv) => Value::from(stock::move_reference(self, mv)),
                None => Value::Null,
            },
            ("stock.move.line", "is_inventory") => match self.m2o(model, id, "move_id") {
                Some(mv) => Value::from(self.flag("stock.move", mv, "is_inventory")),
                None => Value::from(false),
            },
            ("stock.picking", "state") => self.db.field(model, id, "state"),
            ("stock.picking", "picking_type_code") => {
                match self.m2o(model, id, "picking_type_id") {
                    Some(t) => self.db.field("stock.picking.type", t, "code"),
                    None => Value::Null,
                }
            }
            ("stock.quant", "reserved_quantity") => Value::from(stock::quant_reserved(self, id)),
            ("stock.quant", "available_quantity") => {
                Value::from(self.f64(model, id, "quantity") - stock::quant_reserved(self, id))
            }
            ("stock.quant", "is_outdated") => Value::from(inventory::is_outdated(self, id)),
            ("stock.quant", "inventory_quantity_auto_apply") => {
                self.db.field(model, id, "quantity")
            }
            ("stock.quant", "warehouse_id") => self
                .m2o(model, id, "location_id")
                .and_then(|loc| stock::location_warehouse(self, loc))
                .map_or(Value::Null, Value::from),
            ("stock.location", "warehouse_id") => {
                stock::location_warehouse(self, id).map_or(Value::Null, Value::from)
            }
            ("stock.location", "complete_name") | ("res.partner", "complete_name") => {
                self.db.field(model, id, field)
            }
            ("stock.lot", "product_qty") => Value::from(stock::lot_quantity(self, id)),
            ("sale.order.line", "qty_delivered") => Value::from(sale::delivered(self, id)),
            ("sale.order.line", "qty_to_invoice") => self.db.field(model, id, "product_uom_qty"),
            _ => self.db.field(model, id, field),
        }
    }

    /// The `display_name` Odoo shows for a record (the name part of `[id, name]`).
    pub fn display_name(&self, model: &str, id: Id) -> String {
        match model {
            "product.product" => {
                let name = self.text(model, id, "name");
                match self.text(model, id, "default_code") {
                    code if code.is_empty() => name,
                    code => format!("[{code}] {name}"),
                }
            }
            "stock.location" => self.text(model, id, "complete_name"),
            "stock.picking.type" => {
                let name = self.text(model, id, "name");
                match self.m2o(model, id, "warehouse_id") {
                    Some(wh) => format!("{}: {name}", self.text("stock.warehouse", wh, "name")),
                    None => name,
                }
            }
            "stock.move" => stock::move_display_name(self, id),
            "sale.order.line" => sale::line_display_name(self, id),
            "stock.quant" => {
                let loc = self.m2o(model, id, "location_id").unwrap_or(0);
                let product = self.m2o(model, id, "product_id").unwrap_or(0);
                format!(
                    "{} - {}",
                    self.display_name("stock.location", loc),
                    self.display_name("product.product", product)
                )
            }
            "stock.move.line" => self.text(model, id, "lot_name"),
            _ => match self.db.field(model, id, "name") {
                Value::String(name) => name,
                _ => format!("{model},{id}"),
            },
        }
    }

    /// Whether `id` is one of `roots` or below one of them (`child_of`).
    pub fn is_descendant(&self, model: &str, id: Id, roots: &[Id]) -> Result<bool, OdooError> {
        let Some(parent) = schema::parent_field(model) else {
            return Ok(roots.contains(&id));
        };
        let mut current = Some(id);
        let mut guard = 0;
        while let Some(at) = current {
            if roots.contains(&at) {
                return Ok(true);
            }
            current = self.m2o(model, at, parent);
            guard += 1;
            if guard > 64 {
                break;
            }
        }
        Ok(false)
    }

    /// A field in the shape `read` returns.
    pub fn read_value(&self, model: &str, id: Id, field: &Field) -> Value {
        let raw = self.raw(model, id, field.name);
        render(self, field, raw)
    }

    /// Ids of `model` matching `domain`, in `order` (or the model's), after `offset`, at
    /// most `limit`.
    pub fn search(
        &self,
        model: &'static str,
        domain: &Domain,
        order: Option<&str>,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<Vec<Id>, OdooError> {
        let def = schema::model(model).ok_or_else(|| unknown_model(model))?;
        let active_test = def.has_active()
            && !domain.mentions("active")
            && self.ctx.get("active_test") != Some(&Value::Bool(false));
        let candidates = domain
            .candidates(self, model)
            .unwrap_or_else(|| self.db.ids(model));
        let mut ids = Vec::new();
        for id in candidates {
            if active_test && self.db.field(model, id, "active") == Value::Bool(false) {
                continue;
            }
            if domain.matches(self, model, id)? {
                ids.push(id);
            }
        }
        if let Some(order) = order {
            validate_order(model, order, self.version)?;
        }
        self.sort_ids(model, &mut ids, order);
        let ids: Vec<Id> = ids.into_iter().skip(offset).collect();
        Ok(match limit {
            Some(limit) => ids.into_iter().take(limit).collect(),
            None => ids,
        })
    }

    /// Sorts ids by an `_order` specification (`"date desc, id"`); `None` is the model's.
    pub fn sort_ids(&self, model: &str, ids: &mut [Id], order: Option<&str>) {
        let spec =
            parse_order(order.unwrap_or_else(|| schema::model(model).map_or("id", |m| m.order)));
        if ids.len() < 2 {
            return;
        }
        let mut keyed: Vec<(Vec<Value>, Id)> = ids
            .iter()
            .map(|id| (self.sort_key(model, *id, &spec, 0), *id))
            .collect();
        keyed.sort_by(|(a, ia), (b, ib)| {
            for ((value_a, value_b), (_, desc)) in a.iter().zip(b).zip(&spec) {
                let ordering = compare_sort(value_a, value_b, *desc);
                if ordering != Ordering::Equal {
                    return ordering;
                }
            }
            ia.cmp(ib)
        });
        for (slot, (_, id)) in ids.iter_mut().zip(keyed) {
            *slot = id;
        }
    }

    /// One value per ordering term; a many2one sorts by its record's own default order.
    fn sort_key(&self, model: &str, id: Id, spec: &[(String, bool)], depth: u8) -> Vec<Value> {
        spec.iter()
            .map(|(field, _)| {
                let value = self.raw(model, id, field);
                let relation = schema::field(model, field, self.version)
                    .filter(|f| f.kind == Kind::Many2one)
                    .and_then(|f| f.relation);
                match (relation, value.as_i64()) {
                    (Some(rel), Some(rid)) if depth == 0 => {
                        let rel_spec = parse_order(schema::model(rel).map_or("id", |m| m.order));
                        let mut key = self.sort_key(rel, rid, &rel_spec, 1);
                        // Descending terms of the related order are inverted in place.
                        for (v, (_, desc)) in key.iter_mut().zip(&rel_spec) {
                            if *desc {
                                *v = invert(v);
                            }
                        }
                        key.push(Value::from(rid));
                        Value::Array(key)
                    }
                    _ => value,
                }
            })
            .collect()
    }

    /// `read(ids, fields)`: missing ids are left out, as Odoo does.
    pub fn read(
        &self,
        model: &'static str,
        ids: &[Id],
        fields: &[String],
    ) -> Result<Vec<Value>, OdooError> {
        let def = schema::model(model).ok_or_else(|| unknown_model(model))?;
        let fields: Vec<&Field> = if fields.is_empty() {
            def.fields_of(self.version).collect()
        } else {
            fields
                .iter()
                .filter(|name| name.as_str() != "id")
                .map(|name| {
                    // 19 words a read of an unknown field apart from a write of one.
                    self.field_def(model, name).map_err(|e| match self.version {
                        Version::V19 => {
                            OdooError::ValueError(format!("Invalid field '{name}' on '{model}'"))
                        }
                        _ => e,
                    })
                })
                .collect::<Result<_, _>>()?
        };
        let mut out = Vec::new();
        for id in ids {
            if !self.db.exists(model, *id) {
                continue;
            }
            let mut rec = Map::new();
            rec.insert("id".into(), Value::from(*id));
            for field in &fields {
                rec.insert(field.name.into(), self.read_value(model, *id, field));
            }
            out.push(Value::Object(rec));
        }
        Ok(out)
    }

    /// The field `name` of `model`, or Odoo's "Invalid field" error.
    pub fn field_def(&self, model: &str, name: &str) -> Result<&'static Field, OdooError> {
        if name == "display_name" {
            return Ok(&DISPLAY_NAME);
        }
        schema::field(model, name, self.version).ok_or_else(|| {
            OdooError::ValueError(format!("Invalid field '{name}' on model '{model}'"))
        })
    }

    /// `web_read(specification)` of one record: nested specifications for relational
    /// fields, plain ids without one (Odoo 17/18 web client protocol).
    pub fn web_read(&self, model: &'static str, id: Id, spec: &Map<String, Value>) -> Value {
        let mut rec = Map::new();
        rec.insert("id".into(), Value::from(id));
        for (name, sub) in spec {
            let Ok(field) = self.field_def(model, name) else {
                continue;
            };
            let nested = sub.get("fields").and_then(Value::as_object);
            let raw = self.raw(model, id, field.name);
            let relation = field.relation.and_then(schema::static_name);
            let value = match (field.kind, nested, relation) {
                (Kind::Many2one, Some(nested), Some(rel)) => match raw.as_i64() {
                    Some(rid) if nested.is_empty() => Value::from(rid),
                    Some(rid) => self.web_read(rel, rid, nested),
                    None => Value::Bool(false),
                },
                (Kind::Many2one, None, _) => raw.as_i64().map_or(Value::Bool(false), Value::from),
                (Kind::One2many | Kind::Many2many, Some(nested), Some(rel)) => Value::Array(
                    ids_of(&raw)
                        .into_iter()
                        .map(|rid| self.web_read(rel, rid, nested))
                        .collect(),
                ),
                _ => render(self, field, raw),
            };
            rec.insert(name.clone(), value);
        }
        Value::Object(rec)
    }

    /// `read_group(domain, fields, groupby, lazy=False)`: one row per distinct value of the
    /// group-by fields, with sums of the aggregated numeric fields, `__count` and
    /// `__domain` (the search domain and the group's terms, with explicit `'&'`s).
    pub fn read_group(
        &self,
        model: &'static str,
        domain: &Domain,
        domain_json: &Value,
        fields: &[String],
        groupby: &[String],
        lazy: bool,
    ) -> Result<Vec<Value>, OdooError> {
        let groupby: Vec<String> = if lazy {
            groupby.iter().take(1).cloned().collect()
        } else {
            groupby.to_vec()
        };
        let mut group_fields = Vec::new();
        for name in &groupby {
            let field = self.field_def(model, name)?;
            if !field.store && self.version == Version::V17 {
                return Err(OdooError::ValueError(format!(
                    "Cannot convert field {model}.{name} to SQL"
                )));
            }
            group_fields.push(field);
        }
        let mut aggregates = Vec::new();
        for spec in fields {
            let name = spec.split(':').next().unwrap_or(spec);
            if groupby.iter().any(|g| g == name) || name == "__count" {
                continue;
            }
            let field = self.field_def(model, name)?;
            if matches!(field.kind, Kind::Float | Kind::Integer) {
                aggregates.push(field);
            }
        }
        let ids = self.search(model, domain, None, 0, None)?;
        // Groups keyed by their raw values, in first-seen order, then sorted.
        let mut groups: Vec<(Vec<Value>, Vec<Id>)> = Vec::new();
        for id in ids {
            let key: Vec<Value> = group_fields
                .iter()
                .map(|f| self.raw(model, id, f.name))
                .collect();
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(id),
                None => groups.push((key, vec![id])),
            }
        }
        groups.sort_by(|(a, _), (b, _)| {
            for ((va, vb), field) in a.iter().zip(b).zip(&group_fields) {
                let ordering = match (field.relation, va.as_i64(), vb.as_i64()) {
                    (Some(rel), Some(x), Some(y)) => {
                        let mut pair = [x, y];
                        self.sort_ids(rel, &mut pair, None);
                        if x == y {
                            Ordering::Equal
                        } else if pair[0] == x {
                            Ordering::Less
                        } else {
                            Ordering::Greater
                        }
                    }
                    _ => compare_sort(va, vb, false),
                };
                if ordering != Ordering::Equal {
                    return ordering;
                }
            }
            Ordering::Equal
        });
        let base = Domain::parse(domain_json)?.to_json();
        let mut rows = Vec::new();
        for (key, members) in groups {
            let mut row = Map::new();
            let mut terms = Vec::new();
            for (field, value) in group_fields.iter().zip(&key) {
                row.insert(field.name.into(), render(self, field, value.clone()));
                let term_value = match value {
                    Value::Null => Value::Bool(false),
                    other => other.clone(),
                };
                terms.push(json!([field.name, "=", term_value]));
            }
            if lazy {
                let name = groupby.first().cloned().unwrap_or_default();
                row.insert(format!("{name}_count"), Value::from(members.len()));
            } else {
                row.insert("__count".into(), Value::from(members.len()));
            }
            for field in &aggregates {
                let sum: f64 = members
                    .iter()
                    .map(|id| as_f64(&self.raw(model, *id, field.name)))
                    .sum();
                let value = if field.kind == Kind::Integer {
                    Value::from(sum as i64)
                } else {
                    Value::from(sum)
                };
                row.insert(field.name.into(), value);
            }
            // Odoo ANDs each group term onto the normalized search domain.
            let ands = if base.is_empty() {
                terms.len().saturating_sub(1)
            } else {
                terms.len()
            };
            let mut full: Vec<Value> = (0..ands).map(|_| Value::from("&")).collect();
            full.extend(base.iter().cloned());
            full.extend(terms);
            row.insert("__domain".into(), Value::Array(full));
            if lazy {
                row.insert(
                    "__context".into(),
                    json!({"group_by": groupby_rest(&groupby)}),
                );
            }
            rows.push(Value::Object(row));
        }
        Ok(rows)
    }

    /// `fields_get(allfields, attributes)`.
    pub fn fields_get(&self, model: &'static str, only: &[String], attributes: &[String]) -> Value {
        let Some(def) = schema::model(model) else {
            return json!({});
        };
        let mut out = Map::new();
        for field in def.fields_of(self.version) {
            if !only.is_empty() && !only.iter().any(|n| n == field.name) {
                continue;
            }
            let mut attrs = Map::new();
            let mut put = |name: &str, value: Value| {
                if attributes.is_empty() || attributes.iter().any(|a| a == name) {
                    attrs.insert(name.to_owned(), value);
                }
            };
            put("type", Value::from(field.kind.name()));
            put("string", Value::from(field.string));
            put("readonly", Value::from(field.readonly));
            put("required", Value::from(field.required));
            put("store", Value::from(field.store));
            put("searchable", Value::from(field.store));
            put("sortable", Value::from(field.store));
            if let Some(relation) = field.relation {
                put("relation", Value::from(relation));
            }
            if let Some(selection) = field.selection_of(self.version) {
                put(
                    "selection",
                    Value::Array(selection.iter().map(|(v, l)| json!([v, l])).collect()),
                );
            }
            out.insert(field.name.into(), Value::Object(attrs));
        }
        Value::Object(out)
    }

    /// Checks and converts a written value to storage form.
    pub fn coerce(&self, model: &str, field: &Field, value: &Value) -> Result<Value, OdooError> {
        Ok(match field.kind {
            Kind::Float => Value::from(to_float(value)?),
            Kind::Integer => Value::from(to_float(value)? as i64),
            Kind::Boolean => Value::from(truthy(value)),
            Kind::Char
            | Kind::Text
            | Kind::Html
            | Kind::Selection
            | Kind::Date
            | Kind::Datetime => match value {
                Value::Null | Value::Bool(false) => Value::Null,
                Value::String(s) => Value::from(s.clone()),
                other => Value::from(other.to_string()),
            },
            Kind::Many2one => {
                let id = match value {
                    Value::Null | Value::Bool(false) => return Ok(Value::Null),
                    Value::Array(pair) => pair.first().and_then(Value::as_i64),
                    other => other.as_i64(),
                };
                let Some(id) = id else {
                    return Err(OdooError::ValueError(format!(
                        "Wrong value for {model}.{}: {value}",
                        field.name
                    )));
                };
                let relation = field.relation.unwrap_or("");
                if !self.db.exists(relation, id) {
                    return Err(fk_error(model, field.name));
                }
                Value::from(id)
            }
            Kind::Many2many => Value::from(apply_m2m_commands(&[], value)?),
            Kind::One2many => Value::Null,
        })
    }

    /// Converts `vals` (field → JSON) into a stored record for `model`, skipping one2many
    /// fields (the caller handles their commands) and fields the model does not have.
    pub fn to_record(&self, model: &str, vals: &Map<String, Value>) -> Result<Rec, OdooError> {
        let mut rec = Rec::new();
        for (name, value) in vals {
            let field = self.field_def(model, name)?;
            if field.kind == Kind::One2many || field.name == "display_name" {
                continue;
            }
            rec.insert(field.name, self.coerce(model, field, value)?);
        }
        Ok(rec)
    }

    /// Inserts a record after checking its required fields, as the database's NOT NULL
    /// constraints do.
    pub fn insert_checked(&mut self, model: &'static str, mut rec: Rec) -> Result<Id, OdooError> {
        let def = schema::model(model).ok_or_else(|| unknown_model(model))?;
        for field in def.fields_of(self.version) {
            if field.required && !field.computed && rec.get(field.name).is_none_or(Value::is_null) {
                return Err(required_error(self.version, model, field));
            }
        }
        if def.has_active() {
            rec.entry("active").or_insert(Value::Bool(true));
        }
        Ok(self.db.insert(model, rec))
    }

    /// Missing ids among `ids` raise `MissingError`, as `browse(ids).write()` does.
    pub fn check_exist(&self, model: &str, ids: &[Id]) -> Result<(), OdooError> {
        let missing: Vec<Id> = ids
            .iter()
            .copied()
            .filter(|id| !self.db.exists(model, *id))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(OdooError::missing(model, &missing, self.uid))
        }
    }
}

/// The pseudo-field every model has.
static DISPLAY_NAME: Field = Field {
    name: "display_name",
    kind: Kind::Char,
    string: "Display Name",
    relation: None,
    inverse: None,
    required: false,
    readonly: true,
    store: false,
    computed: true,
    versions: schema::ALL_VERSIONS,
    selection: None,
};

/// Renders a storage-form value the way `read` returns it.
fn render(env: &Env, field: &Field, raw: Value) -> Value {
    match field.kind {
        Kind::Float => Value::from(as_f64(&raw)),
        Kind::Integer => Value::from(raw.as_f64().unwrap_or(0.0) as i64),
        Kind::Boolean => Value::from(truthy(&raw)),
        Kind::Many2one => match (raw.as_i64(), field.relation) {
            (Some(id), Some(rel)) if env.db.exists(rel, id) => {
                json!([id, env.display_name(rel, id)])
            }
            _ => Value::Bool(false),
        },
        Kind::One2many | Kind::Many2many => Value::from(ids_of(&raw)),
        _ if field.name == "display_name" => raw,
        _ => match raw {
            Value::Null => Value::Bool(false),
            other => other,
        },
    }
}

fn groupby_rest(groupby: &[String]) -> Vec<String> {
    groupby.iter().skip(1).cloned().collect()
}

/// Python's truthiness for JSON values.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Python's `float(value)`.
fn to_float(value: &Value) -> Result<f64, OdooError> {
    match value {
        Value::Null | Value::Bool(false) => Ok(0.0),
        Value::Bool(true) => Ok(1.0),
        Value::Number(n) => Ok(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => s.trim().parse::<f64>().map_err(|_| {
            OdooError::ValueError(format!("could not convert string to float: '{s}'"))
        }),
        other => Err(OdooError::TypeError(format!(
            "float() argument must be a string or a real number, not '{}'",
            match other {
                Value::Array(_) => "list",
                _ => "dict",
            }
        ))),
    }
}

/// Applies x2many commands (`[6,0,ids]`, `[4,id]`, `[3,id]`, `[5]`, or a plain id list) to
/// a list of ids.
pub fn apply_m2m_commands(current: &[Id], value: &Value) -> Result<Vec<Id>, OdooError> {
    let mut ids = current.to_vec();
    let Value::Array(items) = value else {
        return Ok(ids_of(value));
    };
    if items.iter().all(Value::is_i64) {
        return Ok(ids_of(value));
    }
    for command in items {
        let parts = command.as_array().cloned().unwrap_or_default();
        match parts.first().and_then(Value::as_i64) {
            Some(6) => ids = parts.get(2).map(ids_of).unwrap_or_default(),
            Some(4) => {
                if let Some(id) = parts.get(1).and_then(Value::as_i64)
                    && !ids.contains(&id)
                {
                    ids.push(id);
                }
            }
            Some(3) => {
                let id = parts.get(1).and_then(Value::as_i64);
                ids.retain(|x| Some(*x) != id);
            }
            Some(5) => ids.clear(),
            _ => {
                return Err(OdooError::ValueError(format!(
                    "Unsupported x2many command {command}"
                )));
            }
        }
    }
    Ok(ids)
}

/// The foreign-key violation Odoo reports for a dangling many2one.
pub fn fk_error(model: &str, field: &str) -> OdooError {
    let description = schema::model(model).map_or(model, |m| m.description);
    let table = model.replace('.', "_");
    OdooError::ValidationError(format!(
        "The operation cannot be completed: another model requires the record being deleted. If possible, archive it instead.\n\nModel: {description} ({model})\nConstraint: {table}_{field}_fkey\n"
    ))
}

/// The NOT NULL violation Odoo reports for a missing required field.
pub fn required_error(version: Version, model: &str, field: &Field) -> OdooError {
    let description = schema::model(model).map_or(model, |m| m.description);
    if version == Version::V19 {
        return OdooError::ValidationError(format!(
            "The operation cannot be completed: Missing required value for the field '{}' ({}).\nModel: '{description}' ({model})\n- create/update: a mandatory field is not set\n- delete: another model requires the record being deleted, you can archive it instead\n",
            field.string, field.name
        ));
    }
    OdooError::ValidationError(format!(
        "The operation cannot be completed:\n- Create/update: a mandatory field is not set.\n- Delete: another model requires the record being deleted. If possible, archive it instead.\n\nModel: {description} ({model})\nField: {} ({})\n",
        field.string, field.name
    ))
}

pub fn unknown_model(model: &str) -> OdooError {
    OdooError::UserError(format!("Object {model} doesn't exist"))
}

fn parse_order(order: &str) -> Vec<(String, bool)> {
    order
        .split(',')
        .filter_map(|term| {
            let mut words = term.split_whitespace();
            let field = words.next()?.to_owned();
            let desc = words.next().is_some_and(|w| w.eq_ignore_ascii_case("desc"));
            Some((field, desc))
        })
        .collect()
}

fn validate_order(model: &str, order: &str, version: Version) -> Result<(), OdooError> {
    for (field, _) in parse_order(order) {
        if field != "id" && schema::field(model, &field, version).is_none() {
            return Err(OdooError::ValueError(format!(
                "Invalid field '{field}' on model '{model}'"
            )));
        }
    }
    Ok(())
}

/// A value that sorts in the opposite direction (for descending terms of a related order).
fn invert(value: &Value) -> Value {
    match value {
        Value::Number(n) => Value::from(-n.as_f64().unwrap_or(0.0)),
        Value::Bool(b) => Value::from(!b),
        Value::String(s) => Value::from(
            s.chars()
                .map(|c| char::from_u32(0x10FFFF - c as u32).unwrap_or(c))
                .collect::<String>(),
        ),
        other => other.clone(),
    }
}

/// PostgreSQL ordering: NULLS LAST ascending, NULLS FIRST descending.
fn compare_sort(a: &Value, b: &Value, desc: bool) -> Ordering {
    let ordering = match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => {
            return if desc {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        (_, Value::Null) => {
            return if desc {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (vx, vy) in x.iter().zip(y) {
                let o = compare_sort(vx, vy, false);
                if o != Ordering::Equal {
                    return if desc { o.reverse() } else { o };
                }
            }
            x.len().cmp(&y.len())
        }
        _ => Ordering::Equal,
    };
    if desc { ordering.reverse() } else { ordering }
}

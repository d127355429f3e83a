//! Answering a parsed document from the fake's state: the queries Tally makes, and
//! `inventorySetQuantities` with everything 2026-04 checks (the directive, compare-and-set,
//! the limits, idempotency keys), paid for from the leaky bucket.

use std::collections::HashSet;
use std::time::Instant;

use graphql_parser::query::{Definition, Document, Field, OperationDefinition};
use serde_json::{Map, Value, json};

use super::document::{arg, cost, fields, key_of, parse_sku_query, project, to_json, top_error};
use super::{Fake, Level};

impl Fake {
    fn refill(&mut self) {
        let now = Instant::now();
        let add = now.duration_since(self.refilled).as_secs_f64() * self.config.restore_rate;
        self.available = (self.available + add).min(self.config.bucket_max);
        self.refilled = now;
    }

    fn cost_extension(&self, requested: f64, actual: Option<f64>) -> Value {
        json!({"cost": {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": {
                "maximumAvailable": self.config.bucket_max,
                "currentlyAvailable": self.available,
                "restoreRate": self.config.restore_rate,
            }
        }})
    }

    pub(super) fn execute(
        &mut self,
        document: &Document<'_, String>,
        vars: &Map<String, Value>,
    ) -> Value {
        let Some((set, mutation)) = document.definitions.iter().find_map(|d| match d {
            Definition::Operation(OperationDefinition::Query(q)) => Some((&q.selection_set, false)),
            Definition::Operation(OperationDefinition::SelectionSet(s)) => Some((s, false)),
            Definition::Operation(OperationDefinition::Mutation(m)) => {
                Some((&m.selection_set, true))
            }
            _ => None,
        }) else {
            return json!({"errors": [top_error("no operation", "BAD_REQUEST")]});
        };
        let requested = cost(set, vars, mutation);
        self.refill();
        if requested > self.available {
            self.stats.throttled += 1;
            return json!({
                "errors": [top_error("Throttled", "THROTTLED")],
                "extensions": self.cost_extension(requested, None),
            });
        }
        self.available -= requested;
        if mutation {
            self.stats.mutations += 1;
        } else {
            self.stats.queries += 1;
        }
        let mut data = Map::new();
        for field in fields(set) {
            let value = match field.name.as_str() {
                "locations" => self.locations(field, vars),
                "productVariants" => self.variants(field, vars),
                "nodes" => {
                    let ids = arg(field, "ids", vars);
                    let ids = ids.as_array().cloned().unwrap_or_default();
                    Value::Array(
                        ids.iter()
                            .map(|id| self.item(id.as_str().unwrap_or_default(), field, vars))
                            .collect(),
                    )
                }
                "inventorySetQuantities" if mutation => match self.set_quantities(field, vars) {
                    Ok(v) => v,
                    Err(error) => {
                        self.stats.refused += 1;
                        return json!({
                            "errors": [error],
                            "extensions": self.cost_extension(requested, Some(requested)),
                        });
                    }
                },
                other => {
                    let error = top_error(
                        &format!("Field '{other}' doesn't exist on type 'QueryRoot'"),
                        "undefinedField",
                    );
                    return json!({"errors": [error]});
                }
            };
            data.insert(key_of(field), value);
        }
        json!({"data": data, "extensions": self.cost_extension(requested, Some(requested))})
    }

    /// A connection page over `all`, each node projected by `node`.
    fn page(
        field: &Field<'_, String>,
        vars: &Map<String, Value>,
        all: Vec<Value>,
        node: impl Fn(&Value, &Field<'_, String>) -> Value,
    ) -> Value {
        let first = arg(field, "first", vars).as_u64().unwrap_or(50).min(250) as usize;
        let start: usize = arg(field, "after", vars)
            .as_str()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let end = (start + first).min(all.len());
        let mut out = Map::new();
        for f in fields(&field.selection_set) {
            let v = match f.name.as_str() {
                "nodes" => Value::Array(
                    all[start.min(end)..end]
                        .iter()
                        .map(|n| node(n, f))
                        .collect(),
                ),
                "pageInfo" => project(
                    &json!({"hasNextPage": end < all.len(), "endCursor": end.to_string()}),
                    &f.selection_set,
                ),
                _ => Value::Null,
            };
            out.insert(key_of(f), v);
        }
        Value::Object(out)
    }

    fn locations(&self, field: &Field<'_, String>, vars: &Map<String, Value>) -> Value {
        let all = self
            .locations
            .iter()
            .map(|(id, name)| json!({"id": id, "name": name}))
            .collect();
        Self::page(field, vars, all, |n, f| project(n, &f.selection_set))
    }

    fn variants(&self, field: &Field<'_, String>, vars: &Map<String, Value>) -> Value {
        let query = arg(field, "query", vars);
        let wanted = parse_sku_query(query.as_str().unwrap_or_default());
        let all = self
            .variants
            .iter()
            .filter(|(sku, _)| wanted.as_ref().is_none_or(|w| w.contains(sku)))
            .map(|(sku, item)| json!({"sku": sku, "item": item}))
            .collect();
        Self::page(field, vars, all, |n, f| {
            let mut out = Map::new();
            for g in fields(&f.selection_set) {
                let v = match g.name.as_str() {
                    "sku" => n["sku"].clone(),
                    "inventoryItem" => self.item(n["item"].as_str().unwrap_or_default(), g, vars),
                    _ => Value::Null,
                };
                out.insert(key_of(g), v);
            }
            Value::Object(out)
        })
    }

    /// An inventory item projected by `field`'s selection.
    fn item(&self, id: &str, field: &Field<'_, String>, vars: &Map<String, Value>) -> Value {
        if !self.items.contains(id) {
            return Value::Null;
        }
        let mut out = Map::new();
        for f in fields(&field.selection_set) {
            let v = match f.name.as_str() {
                "id" => json!(id),
                "inventoryLevel" => {
                    let location = arg(f, "locationId", vars);
                    let location = location.as_str().unwrap_or_default().to_owned();
                    match self.levels.get(&(id.to_owned(), location)) {
                        None => Value::Null,
                        Some(level) => self.level(*level, f, vars),
                    }
                }
                _ => Value::Null,
            };
            out.insert(key_of(f), v);
        }
        Value::Object(out)
    }

    fn level(&self, level: Level, field: &Field<'_, String>, vars: &Map<String, Value>) -> Value {
        let mut out = Map::new();
        for f in fields(&field.selection_set) {
            let v = match f.name.as_str() {
                "quantities" => {
                    let names = arg(f, "names", vars);
                    let names = names.as_array().cloned().unwrap_or_default();
                    Value::Array(
                        names
                            .iter()
                            .filter_map(|n| {
                                let name = n.as_str()?;
                                let q = quantity(level, name)?;
                                Some(project(
                                    &json!({"name": name, "quantity": q}),
                                    &f.selection_set,
                                ))
                            })
                            .collect(),
                    )
                }
                _ => Value::Null,
            };
            out.insert(key_of(f), v);
        }
        Value::Object(out)
    }

    fn set_quantities(
        &mut self,
        field: &Field<'_, String>,
        vars: &Map<String, Value>,
    ) -> Result<Value, Value> {
        let key = field
            .directives
            .iter()
            .find(|d| d.name == "idempotent")
            .and_then(|d| d.arguments.iter().find(|(n, _)| n == "key"))
            .map(|(_, v)| to_json(v, vars))
            .and_then(|v| v.as_str().map(str::to_owned))
            .ok_or_else(|| {
                top_error(
                    "The @idempotent directive is required for this mutation.",
                    "BAD_REQUEST",
                )
            })?;
        let input = arg(field, "input", vars);
        let quantities = input["quantities"].as_array().cloned().unwrap_or_default();
        if quantities.len() > 250 {
            return Err(top_error(
                "The input array size of 251 or more is greater than the maximum allowed of 250.",
                "MAX_INPUT_SIZE_EXCEEDED",
            ));
        }
        for (i, q) in quantities.iter().enumerate() {
            if q.get("changeFromQuantity").is_none() {
                return Err(top_error(
                    &format!(
                        "Variable $input of type InventorySetQuantitiesInput! was provided invalid value for quantities.{i}.changeFromQuantity (Expected value to not be null)"
                    ),
                    "INVALID_VARIABLE",
                ));
            }
        }
        self.set_keys.push(key.clone());
        if let Some(left) = self.in_flight.get_mut(&key).filter(|left| **left > 0) {
            *left -= 1;
            self.stats.concurrent += 1;
            let error = json!({"field": null, "message": "This request is currently in progress, please try again.", "code": "IDEMPOTENCY_CONCURRENT_REQUEST"});
            return Ok(project(
                &json!({"inventoryAdjustmentGroup": null, "userErrors": [error]}),
                &field.selection_set,
            ));
        }
        if let Some((args, answer)) = self.keys.get(&key) {
            if *args == input {
                return Ok(project(answer, &field.selection_set));
            }
            let error = json!({"field": ["input"], "message": "The same idempotency key was used with other arguments.", "code": "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"});
            return Ok(project(
                &json!({"inventoryAdjustmentGroup": null, "userErrors": [error]}),
                &field.selection_set,
            ));
        }
        let name = input["name"].as_str().unwrap_or_default().to_owned();
        let mut errors = Vec::new();
        if name != "on_hand" && name != "available" {
            errors.push(json!({"field": ["input", "name"], "message": "The quantity name must be either 'available' or 'on_hand'.", "code": "INVALID_NAME"}));
        }
        let mut seen = HashSet::new();
        let mut changes = Vec::new();
        for (i, q) in quantities.iter().enumerate() {
            let at = |tail: &str| {
                let mut field = vec![json!("input"), json!("quantities"), json!(i.to_string())];
                if !tail.is_empty() {
                    field.push(json!(tail));
                }
                field
            };
            let item = q["inventoryItemId"].as_str().unwrap_or_default().to_owned();
            let location = q["locationId"].as_str().unwrap_or_default().to_owned();
            let wanted = q["quantity"].as_i64().unwrap_or(-1);
            let mut refuse = |code: &str, message: &str, tail: &str| {
                errors.push(json!({"field": at(tail), "message": message, "code": code}));
            };
            if !seen.insert((item.clone(), location.clone())) {
                refuse(
                    "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
                    "The combination of inventoryItemId and locationId must be unique.",
                    "",
                );
                continue;
            }
            if !self.items.contains(&item) {
                refuse(
                    "INVALID_INVENTORY_ITEM",
                    "The specified inventory item could not be found.",
                    "inventoryItemId",
                );
                continue;
            }
            if !self.locations.iter().any(|(l, _)| *l == location) {
                refuse(
                    "INVALID_LOCATION",
                    "The specified location could not be found.",
                    "locationId",
                );
                continue;
            }
            let Some(level) = self.levels.get(&(item.clone(), location.clone())).copied() else {
                refuse(
                    "ITEM_NOT_STOCKED_AT_LOCATION",
                    "The inventory item is not stocked at the location.",
                    "locationId",
                );
                continue;
            };
            if wanted < 0 {
                refuse(
                    "INVALID_QUANTITY_NEGATIVE",
                    "The quantity can't be negative.",
                    "quantity",
                );
                continue;
            }
            let current = quantity(level, &name).unwrap_or(0);
            match &q["changeFromQuantity"] {
                Value::Null => {}
                from if from.as_i64() != Some(current) => {
                    self.stats.stale += 1;
                    refuse(
                        "CHANGE_FROM_QUANTITY_STALE",
                        "The changeFromQuantity value does not match the current quantity.",
                        "changeFromQuantity",
                    );
                    continue;
                }
                _ => {}
            }
            changes.push((item, location, wanted));
        }
        let answer = if errors.is_empty() {
            for (item, location, wanted) in changes {
                let level = self
                    .levels
                    .get_mut(&(item.clone(), location.clone()))
                    .expect("checked");
                level.on_hand = if name == "on_hand" {
                    wanted
                } else {
                    wanted + level.committed
                };
                self.writes.push((item, location, level.on_hand));
                self.stats.quantities_set += 1;
            }
            json!({"inventoryAdjustmentGroup": {"id": format!("gid://shopify/InventoryAdjustmentGroup/{}", self.keys.len() + 1)}, "userErrors": []})
        } else {
            json!({"inventoryAdjustmentGroup": null, "userErrors": errors})
        };
        if let Some(concurrent) = self.next_in_flight.take() {
            self.in_flight.insert(key.clone(), concurrent);
            self.lose_answer = true;
        }
        self.keys.insert(key, (input, answer.clone()));
        Ok(project(&answer, &field.selection_set))
    }
}

fn quantity(level: Level, name: &str) -> Option<i64> {
    match name {
        "on_hand" => Some(level.on_hand),
        "committed" => Some(level.committed),
        "available" => Some(level.on_hand - level.committed),
        _ => None,
    }
}

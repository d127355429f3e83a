//! Odoo search domains: prefix notation with `'&'`, `'|'`, `'!'` and an implicit `'&'`
//! between consecutive terms, leaves `[path, operator, value]` where `path` may be dotted
//! (`picking_id.name`, `product_id.default_code`, `move_id.picking_id`). The operators are
//! those the integration and the recorded experiments use: `=`, `!=`, `in`, `not in`, `<`,
//! `>`, `<=`, `>=`, `like`, `ilike`, `not like`, `not ilike`, `=like`, `=ilike` and
//! `child_of`.
//!
//! Semantics follow Odoo's SQL: a path through a many2one or x2many matches when any
//! related value matches; `!=`, `not in` and the negated likes also match empty values;
//! comparisons with an empty value are false.

use serde_json::Value;

use super::orm::Env;
use super::rpc::OdooError;
use super::schema::{self, Kind};
use super::store::Id;

/// A parsed domain.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    And(Vec<Domain>),
    Or(Vec<Domain>),
    Not(Box<Domain>),
    Leaf(Leaf),
    /// `(1, '=', 1)`.
    True,
    /// `(0, '=', 1)`.
    False,
}

/// One `[path, operator, value]` term.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    pub path: Vec<String>,
    pub op: String,
    pub value: Value,
}

impl Domain {
    /// Parses a JSON domain. `null`/`false`/`[]` is the empty domain (everything).
    pub fn parse(value: &Value) -> Result<Domain, OdooError> {
        let items = match value {
            Value::Null | Value::Bool(false) => return Ok(Domain::True),
            Value::Array(items) => items,
            other => {
                return Err(OdooError::ValueError(format!("Invalid domain: {other}")));
            }
        };
        let mut stack: Vec<Domain> = Vec::new();
        for item in items.iter().rev() {
            match item.as_str() {
                Some("&") | Some("|") => {
                    let (Some(a), Some(b)) = (stack.pop(), stack.pop()) else {
                        return Err(OdooError::ValueError(format!(
                            "Invalid domain {value}: missing operands"
                        )));
                    };
                    stack.push(if item == "&" {
                        Domain::And(vec![a, b])
                    } else {
                        Domain::Or(vec![a, b])
                    });
                }
                Some("!") => {
                    let a = stack.pop().ok_or_else(|| {
                        OdooError::ValueError(format!("Invalid domain {value}: missing operand"))
                    })?;
                    stack.push(Domain::Not(Box::new(a)));
                }
                _ => stack.push(Domain::leaf(item)?),
            }
        }
        stack.reverse();
        Ok(match stack.len() {
            0 => Domain::True,
            1 => stack.remove(0),
            _ => Domain::And(stack),
        })
    }

    fn leaf(item: &Value) -> Result<Domain, OdooError> {
        let invalid = || OdooError::ValueError(format!("Invalid leaf {item}"));
        let parts = item
            .as_array()
            .filter(|p| p.len() == 3)
            .ok_or_else(invalid)?;
        if let (Some(a), Some(b)) = (parts[0].as_i64(), parts[2].as_i64()) {
            return Ok(if a == b { Domain::True } else { Domain::False });
        }
        let path = parts[0].as_str().ok_or_else(invalid)?;
        let op = parts[1].as_str().ok_or_else(invalid)?.to_lowercase();
        const OPS: [&str; 15] = [
            "=",
            "!=",
            "<>",
            "in",
            "not in",
            "<",
            ">",
            "<=",
            ">=",
            "like",
            "ilike",
            "not like",
            "not ilike",
            "=like",
            "=ilike",
        ];
        if !OPS.contains(&op.as_str()) && op != "child_of" {
            return Err(OdooError::ValueError(format!("Invalid operator {op:?}")));
        }
        Ok(Domain::Leaf(Leaf {
            path: path.split('.').map(str::to_owned).collect(),
            op: if op == "<>" { "!=".to_owned() } else { op },
            value: parts[2].clone(),
        }))
    }

    /// The ids a top-level `[m2o, '=', id]`, `[m2o, 'in', ids]` or `['id', …]` term restricts
    /// a search to, so that the store's index can be used instead of a scan.
    pub fn candidates(&self, env: &Env, model: &'static str) -> Option<Vec<Id>> {
        let leaves: Vec<&Leaf> = match self {
            Domain::Leaf(leaf) => vec![leaf],
            Domain::And(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    Domain::Leaf(l) => Some(l),
                    _ => None,
                })
                .collect(),
            _ => return None,
        };
        for leaf in leaves {
            if leaf.path.len() != 1 || !matches!(leaf.op.as_str(), "=" | "in") {
                continue;
            }
            let values: Vec<Id> = match &leaf.value {
                Value::Array(items) => items.iter().filter_map(Value::as_i64).collect(),
                value => value.as_i64().into_iter().collect(),
            };
            if values.is_empty() && !leaf.value.is_array() {
                continue;
            }
            let field = leaf.path[0].as_str();
            if field == "id" {
                // A record matches once, however often the domain names it.
                let mut ids: Vec<Id> = values
                    .into_iter()
                    .filter(|id| env.db.exists(model, *id))
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                return Some(ids);
            }
            let Some(def) = schema::field(model, field, env.version) else {
                continue;
            };
            if def.kind == Kind::Many2one && !def.computed {
                let mut ids: Vec<Id> = values
                    .iter()
                    .flat_map(|parent| env.db.children(model, def.name, *parent))
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                return Some(ids);
            }
        }
        None
    }

    /// Whether record `id` of `model` matches.
    pub fn matches(&self, env: &Env, model: &'static str, id: Id) -> Result<bool, OdooError> {
        Ok(match self {
            Domain::True => true,
            Domain::False => false,
            Domain::And(parts) => {
                for part in parts {
                    if !part.matches(env, model, id)? {
                        return Ok(false);
                    }
                }
                true
            }
            Domain::Or(parts) => {
                for part in parts {
                    if part.matches(env, model, id)? {
                        return Ok(true);
                    }
                }
                false
            }
            Domain::Not(part) => !part.matches(env, model, id)?,
            Domain::Leaf(leaf) => leaf.matches(env, model, id)?,
        })
    }

    /// Whether the domain mentions `field` at its top level (e.g. `active`, which switches
    /// off the implicit `active = True`).
    pub fn mentions(&self, field: &str) -> bool {
        match self {
            Domain::Leaf(leaf) => leaf.path.first().is_some_and(|p| p == field),
            Domain::And(parts) | Domain::Or(parts) => parts.iter().any(|p| p.mentions(field)),
            Domain::Not(part) => part.mentions(field),
            Domain::True | Domain::False => false,
        }
    }

    /// Back to Odoo's normalized JSON (explicit `'&'`s), for `read_group`'s `__domain`.
    pub fn to_json(&self) -> Vec<Value> {
        match self {
            Domain::True => vec![],
            Domain::False => vec![serde_json::json!([0, "=", 1])],
            Domain::Leaf(leaf) => vec![leaf.to_json()],
            Domain::Not(part) => {
                let mut out = vec![Value::from("!")];
                out.extend(part.to_json());
                out
            }
            Domain::And(parts) | Domain::Or(parts) => {
                let op = if matches!(self, Domain::And(_)) {
                    "&"
                } else {
                    "|"
                };
                let parts: Vec<Vec<Value>> = parts
                    .iter()
                    .map(Domain::to_json)
                    .filter(|p| !p.is_empty())
                    .collect();
                let mut out: Vec<Value> = (1..parts.len()).map(|_| Value::from(op)).collect();
                out.extend(parts.into_iter().flatten());
                out
            }
        }
    }
}

impl Leaf {
    fn to_json(&self) -> Value {
        Value::Array(vec![
            Value::from(self.path.join(".")),
            Value::from(self.op.clone()),
            self.value.clone(),
        ])
    }

    fn matches(&self, env: &Env, model: &'static str, id: Id) -> Result<bool, OdooError> {
        let (target, kind, values) = self.resolve(env, model, id)?;
        let negative = matches!(self.op.as_str(), "!=" | "not in" | "not like" | "not ilike");
        let positive_op = match self.op.as_str() {
            "!=" => "=",
            "not in" => "in",
            "not like" => "like",
            "not ilike" => "ilike",
            op => op,
        };
        let mut any = false;
        for value in &values {
            if compare(env, target, kind, value, positive_op, &self.value)? {
                any = true;
                break;
            }
        }
        Ok(any != negative)
    }

    /// Follows the path from record `id`: the model of the last field (or of the record for
    /// `id`), its kind, and the values found (one per related record reached).
    fn resolve(
        &self,
        env: &Env,
        model: &'static str,
        id: Id,
    ) -> Result<(&'static str, Kind, Vec<Value>), OdooError> {
        let mut current: Vec<(&'static str, Id)> = vec![(model, id)];
        for (i, name) in self.path.iter().enumerate() {
            let last = i + 1 == self.path.len();
            let here = current.first().map_or(model, |(m, _)| *m);
            if name == "id" {
                let values = current.iter().map(|(_, id)| Value::from(*id)).collect();
                return Ok((here, Kind::Many2one, values));
            }
            let field = schema::field(here, name, env.version).ok_or_else(|| {
                OdooError::ValueError(format!(
                    "Invalid field {here}.{name} in leaf {}",
                    self.to_json()
                ))
            })?;
            let mut values = Vec::new();
            let mut next = Vec::new();
            for (m, rec) in &current {
                let raw = env.raw(m, *rec, name);
                match raw {
                    Value::Array(ids) if field.kind.is_relational() => {
                        if ids.is_empty() {
                            values.push(Value::Null);
                        }
                        for related in ids {
                            if let (Some(rel), Some(rid)) = (field.relation, related.as_i64()) {
                                next.push((rel, rid));
                            }
                            values.push(related);
                        }
                    }
                    other => {
                        if let (Some(rel), Some(rid)) = (field.relation, other.as_i64()) {
                            next.push((rel, rid));
                        }
                        values.push(other);
                    }
                }
            }
            if last {
                let target = field.relation.unwrap_or(here);
                return Ok((target, field.kind, values));
            }
            if field.relation.is_none() {
                return Err(OdooError::ValueError(format!(
                    "Invalid field {here}.{name} in leaf {}: not relational",
                    self.to_json()
                )));
            }
            if next.is_empty() {
                // Nothing related: the leaf sees one empty value.
                let rel = field.relation.unwrap_or(here);
                let last_field = self.path.last().map(String::as_str).unwrap_or("id");
                let kind =
                    schema::field(rel, last_field, env.version).map_or(Kind::Many2one, |f| f.kind);
                return Ok((rel, kind, vec![Value::Null]));
            }
            current = next;
        }
        Ok((model, Kind::Many2one, vec![]))
    }
}

/// Whether a stored value satisfies `op value` (a positive operator).
fn compare(
    env: &Env,
    target: &'static str,
    kind: Kind,
    stored: &Value,
    op: &str,
    wanted: &Value,
) -> Result<bool, OdooError> {
    // A many2one compared with text matches on the related record's name.
    if kind == Kind::Many2one
        && let Value::String(_) = wanted
        && op != "child_of"
    {
        let name = match stored.as_i64() {
            Some(id) => Value::from(env.display_name(target, id)),
            None => Value::Null,
        };
        return compare(env, target, Kind::Char, &name, op, wanted);
    }
    Ok(match op {
        "=" => equal(stored, wanted),
        "in" => match wanted {
            Value::Array(items) => items.iter().any(|w| equal(stored, w)),
            single => equal(stored, single),
        },
        "<" | ">" | "<=" | ">=" => {
            let Some(ordering) = order(stored, wanted) else {
                return Ok(false);
            };
            match op {
                "<" => ordering.is_lt(),
                ">" => ordering.is_gt(),
                "<=" => ordering.is_le(),
                _ => ordering.is_ge(),
            }
        }
        "like" | "ilike" | "=like" | "=ilike" => {
            let (Some(text), Some(pattern)) = (stored.as_str(), wanted.as_str()) else {
                return Ok(false);
            };
            let pattern = if op.starts_with('=') {
                pattern.to_owned()
            } else {
                format!("%{pattern}%")
            };
            like(&pattern, text, op.ends_with("ilike"))
        }
        "child_of" => {
            let Some(id) = stored.as_i64() else {
                return Ok(false);
            };
            let roots: Vec<Id> = match wanted {
                Value::Array(items) => items.iter().filter_map(Value::as_i64).collect(),
                single => single.as_i64().into_iter().collect(),
            };
            env.is_descendant(target, id, &roots)?
        }
        other => {
            return Err(OdooError::ValueError(format!("Invalid operator {other:?}")));
        }
    })
}

/// SQL-ish equality where `false` stands for an empty value.
fn equal(stored: &Value, wanted: &Value) -> bool {
    match (stored, wanted) {
        (Value::Null, Value::Bool(false) | Value::Null) => true,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(a), Value::String(b)) => a == b,
        _ => false,
    }
}

fn order(stored: &Value, wanted: &Value) -> Option<std::cmp::Ordering> {
    match (stored, wanted) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => Some(a.as_str().cmp(b.as_str())),
        _ => None,
    }
}

/// SQL `LIKE`: `%` any run, `_` any one character.
pub fn like(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let fold = |s: &str| {
        if case_insensitive {
            s.to_lowercase()
        } else {
            s.to_owned()
        }
    };
    let p: Vec<char> = fold(pattern).chars().collect();
    let t: Vec<char> = fold(text).chars().collect();
    // Classic wildcard matching with backtracking on the last '%'.
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '_' || p[pi] == t[ti]) && p[pi] != '%' {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '%' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '%' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prefix_operators_and_implicit_and() {
        let d = Domain::parse(&json!([["a", "=", 1], "|", ["b", "=", 2], ["c", "=", 3]])).unwrap();
        match d {
            Domain::And(parts) => {
                assert_eq!(parts.len(), 2);
                assert!(matches!(&parts[1], Domain::Or(o) if o.len() == 2));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(Domain::parse(&json!([])).unwrap(), Domain::True);
        assert!(Domain::parse(&json!(["|", ["a", "=", 1]])).is_err());
        assert!(Domain::parse(&json!([["a", "~", 1]])).is_err());
    }

    #[test]
    fn normalized_json_has_explicit_ands() {
        let d = Domain::parse(&json!([["a", "=", 1], ["b", "=", 2]])).unwrap();
        assert_eq!(
            Value::from(d.to_json()),
            json!(["&", ["a", "=", 1], ["b", "=", 2]])
        );
    }

    #[test]
    fn like_patterns() {
        assert!(like("edge-count:a1%", "edge-count:a1 (Edge Sync)", false));
        assert!(!like("edge-count:a1%", "Edge-count:a1", false));
        assert!(like(
            "%edge-sync:k1@%",
            "<p>Edge-Sync:K1@WH/OUT/1</p>",
            true
        ));
        assert!(like("WH_OUT", "WH/OUT", false));
        assert!(!like("abc", "abcd", false));
    }
}

//! Reading a GraphQL document as Shopify does: values with variables substituted, arguments,
//! the fields of a selection set and their response keys, a query's cost, an answer cut down to
//! what was selected, and the SKUs of a `productVariants` search.

use std::collections::BTreeSet;

use graphql_parser::query::{Field, Selection, SelectionSet, Value as Gql};
use serde_json::{Map, Value, json};

pub(super) fn top_error(message: &str, code: &str) -> Value {
    json!({"message": message, "extensions": {"code": code}})
}

/// A GraphQL value with variables substituted, as JSON.
pub(super) fn to_json(value: &Gql<'_, String>, vars: &Map<String, Value>) -> Value {
    match value {
        Gql::Variable(name) => vars.get(name).cloned().unwrap_or(Value::Null),
        Gql::Int(n) => json!(n.as_i64()),
        Gql::Float(x) => json!(x),
        Gql::String(s) => json!(s),
        Gql::Boolean(b) => json!(b),
        Gql::Null => Value::Null,
        Gql::Enum(e) => json!(e),
        Gql::List(items) => Value::Array(items.iter().map(|v| to_json(v, vars)).collect()),
        Gql::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), to_json(v, vars)))
                .collect(),
        ),
    }
}

pub(super) fn arg(field: &Field<'_, String>, name: &str, vars: &Map<String, Value>) -> Value {
    field
        .arguments
        .iter()
        .find(|(n, _)| n == name)
        .map_or(Value::Null, |(_, v)| to_json(v, vars))
}

/// The fields of a selection set, inline fragments flattened (every object here has one type).
pub(super) fn fields<'a, 'b>(set: &'b SelectionSet<'a, String>) -> Vec<&'b Field<'a, String>> {
    let mut out = Vec::new();
    for item in &set.items {
        match item {
            Selection::Field(f) => out.push(f),
            Selection::InlineFragment(i) => out.extend(fields(&i.selection_set)),
            Selection::FragmentSpread(_) => {}
        }
    }
    out
}

pub(super) fn key_of(field: &Field<'_, String>) -> String {
    field.alias.clone().unwrap_or_else(|| field.name.clone())
}

/// Requested cost, Shopify's way in outline: a connection costs 2 plus its page size, a list
/// of nodes one per id, a mutation 10.
pub(super) fn cost(
    set: &SelectionSet<'_, String>,
    vars: &Map<String, Value>,
    mutation: bool,
) -> f64 {
    if mutation {
        return 10.0;
    }
    fields(set)
        .iter()
        .map(|f| match f.name.as_str() {
            "nodes" if !arg(f, "ids", vars).is_null() => {
                1.0 + arg(f, "ids", vars).as_array().map_or(0, Vec::len) as f64
            }
            _ => match arg(f, "first", vars).as_f64() {
                Some(first) => 2.0 + first,
                None => 1.0,
            },
        })
        .sum()
}

/// `value` cut down to what `set` selects (all of it when `set` is empty).
pub(super) fn project(value: &Value, set: &SelectionSet<'_, String>) -> Value {
    if set.items.is_empty() {
        return value.clone();
    }
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|v| project(v, set)).collect()),
        Value::Object(map) => {
            let mut out = Map::new();
            for f in fields(set) {
                let v = map.get(f.name.as_str()).cloned().unwrap_or(Value::Null);
                out.insert(key_of(f), project(&v, &f.selection_set));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// The SKUs of a `sku:"A" OR sku:B` search (`None`: no SKU terms, everything matches).
pub(super) fn parse_sku_query(query: &str) -> Option<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let mut rest = query;
    while let Some(at) = rest.find("sku:") {
        rest = &rest[at + 4..];
        let (sku, tail) = if let Some(quoted) = rest.strip_prefix('"') {
            let mut sku = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, next)) = chars.next() {
                            sku.push(next);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => sku.push(c),
                }
            }
            (sku, &quoted[end..])
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            (rest[..end].to_owned(), &rest[end..])
        };
        out.insert(sku);
        rest = tail;
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sku_searches_are_read_with_quotes_and_escapes() {
        let skus = parse_sku_query(r#"sku:"A-1" OR sku:"B \"x\"" OR sku:C"#).unwrap();
        assert_eq!(
            skus.into_iter().collect::<Vec<_>>(),
            ["A-1", "B \"x\"", "C"]
        );
        assert!(parse_sku_query("title:shirt").is_none());
    }
}

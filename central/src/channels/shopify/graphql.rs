//! What Tally says to Shopify and how it reads the answers: the GraphQL documents and the
//! shapes of their results, user errors and cost extensions.

use serde::Deserialize;
use serde_json::Value;

use super::super::ChannelError;
use super::bucket::ThrottleStatus;

pub(super) const LOCATIONS: &str = "query TallyLocations($after: String) {
  locations(first: 250, after: $after) { nodes { id name } pageInfo { hasNextPage endCursor } }
}";

pub(super) const ITEMS: &str = "query TallyItems($query: String!, $location: ID!, $after: String) {
  productVariants(first: 250, query: $query, after: $after) {
    nodes {
      sku
      inventoryItem { id inventoryLevel(locationId: $location) { quantities(names: [\"on_hand\"]) { name quantity } } }
    }
    pageInfo { hasNextPage endCursor }
  }
}";

pub(super) const LEVELS: &str = "query TallyLevels($ids: [ID!]!, $location: ID!) {
  nodes(ids: $ids) {
    ... on InventoryItem { id inventoryLevel(locationId: $location) { quantities(names: [\"on_hand\"]) { name quantity } } }
  }
}";

pub(super) const SET: &str =
    "mutation TallySet($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id }
    userErrors { field message code }
  }
}";

#[derive(Debug, Deserialize)]
pub(super) struct Answer {
    pub(super) data: Option<Value>,
    #[serde(default)]
    pub(super) errors: Vec<GraphQlError>,
    pub(super) extensions: Option<Extensions>,
}

#[derive(Debug, Deserialize)]
pub(super) struct GraphQlError {
    pub(super) message: String,
    #[serde(default)]
    pub(super) extensions: Option<ErrorExtensions>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ErrorExtensions {
    pub(super) code: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Extensions {
    pub(super) cost: Option<Cost>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Cost {
    pub(super) requested_query_cost: Option<f64>,
    pub(super) throttle_status: ThrottleStatus,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PageInfo {
    pub(super) has_next_page: bool,
    pub(super) end_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Page<T> {
    pub(super) nodes: Vec<T>,
    #[serde(rename = "pageInfo")]
    pub(super) page_info: PageInfo,
}

#[derive(Debug, Deserialize)]
pub(super) struct Location {
    pub(super) id: String,
    pub(super) name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Variant {
    pub(super) sku: Option<String>,
    pub(super) inventory_item: ItemNode,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ItemNode {
    pub(super) id: String,
    pub(super) inventory_level: Option<Level>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Level {
    pub(super) quantities: Vec<NamedQuantity>,
}

#[derive(Debug, Deserialize)]
pub(super) struct NamedQuantity {
    pub(super) name: String,
    pub(super) quantity: i64,
}

#[derive(Debug, Deserialize)]
pub(super) struct UserError {
    #[serde(default)]
    pub(super) field: Option<Vec<String>>,
    pub(super) message: String,
    pub(super) code: Option<String>,
}

impl Level {
    pub(super) fn on_hand(&self) -> Option<i64> {
        self.quantities
            .iter()
            .find(|q| q.name == "on_hand")
            .map(|q| q.quantity)
    }
}

pub(super) fn shape(what: &str, e: impl std::fmt::Display) -> ChannelError {
    ChannelError::contract(format!(
        "Shopify's answer to {what} has an unexpected shape: {e}"
    ))
}

/// `sku:"A" OR sku:"B"`, quoted for Shopify's search syntax.
pub fn sku_query(skus: &[&str]) -> String {
    skus.iter()
        .map(|s| format!("sku:\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(" OR ")
}

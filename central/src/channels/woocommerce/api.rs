//! WooCommerce's REST API (v3) as Tally uses it: paged listings (`per_page`, `page`, the
//! `X-WP-TotalPages` header) and batch updates, authenticated with the REST API key as HTTP
//! Basic (which is why the channel's URL must be https, or loopback).

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tally_protocol::Secret;

use super::super::{ChannelError, Outcome, read_limited};

/// Items per page of a listing (WooCommerce's largest).
pub const PAGE: usize = 100;

/// The most pages one listing reads (100,000 items) before it is refused as endless.
const MAX_PAGES: u64 = 1000;

#[derive(Debug)]
pub struct Api {
    http: reqwest::Client,
    /// `<url>/wp-json/wc/v3`.
    base: String,
    /// The consumer key and secret (both redacted in `Debug`).
    key: Secret,
    secret: Secret,
}

/// One page of a listing and what its answer said besides.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total_pages: u64,
    /// The answer's `Date` (WooCommerce's clock), when it had one.
    pub date: Option<jiff::Timestamp>,
}

/// A product or a variation, as listed.
#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    pub id: i64,
    #[serde(default)]
    pub sku: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub manage_stock: Value,
    #[serde(default)]
    pub stock_quantity: Option<i64>,
}

/// One entry of a batch's `update` answer: the product as saved, or an error.
#[derive(Debug, Deserialize)]
pub struct Updated {
    #[serde(default)]
    pub id: Option<i64>,
    #[serde(default)]
    pub error: Option<ItemError>,
}

#[derive(Debug, Deserialize)]
pub struct ItemError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub data: Option<ItemErrorData>,
}

#[derive(Debug, Deserialize)]
pub struct ItemErrorData {
    #[serde(default)]
    pub status: Option<u16>,
}

impl ItemError {
    /// Whether the same update may succeed later (the item's status says overloaded or down).
    pub fn is_transient(&self) -> bool {
        self.data
            .as_ref()
            .and_then(|d| d.status)
            .is_some_and(|s| s == 408 || s == 429 || s >= 500)
    }
}

#[derive(Debug, Deserialize)]
struct BatchAnswer {
    #[serde(default)]
    update: Vec<Updated>,
}

fn shape(what: &str, e: impl std::fmt::Display) -> ChannelError {
    ChannelError::contract(format!(
        "WooCommerce answered {what} in an unexpected shape: {e}"
    ))
}

impl Api {
    /// `secret` is `KEY:SECRET` (checked by the configuration).
    pub fn new(url: &str, secret: &Secret) -> Api {
        let (key, secret) = secret.expose().split_once(':').unwrap_or(("", ""));
        Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a plain HTTP client"),
            base: format!("{url}/wp-json/wc/v3"),
            key: Secret::new(key),
            secret: Secret::new(secret),
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
        out: &mut Outcome,
    ) -> Result<(Vec<u8>, reqwest::header::HeaderMap), ChannelError> {
        out.calls += 1;
        let response = request
            .basic_auth(self.key.expose(), Some(self.secret.expose()))
            .send()
            .await
            .map_err(|e| ChannelError::transport(e, "WooCommerce"))?;
        let status = response.status();
        if status.as_u16() == 429 {
            out.throttle_waits += 1;
        }
        if !status.is_success() {
            return Err(ChannelError::http(
                status.as_u16(),
                &format!("WooCommerce ({what})"),
            ));
        }
        let headers = response.headers().clone();
        Ok((read_limited(response, "WooCommerce").await?, headers))
    }

    /// One page of the listing at `path`.
    pub async fn page<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        page: u64,
        out: &mut Outcome,
    ) -> Result<Page<T>, ChannelError> {
        let request = self
            .http
            .get(format!("{}{path}", self.base))
            .query(query)
            .query(&[("per_page", PAGE.to_string()), ("page", page.to_string())]);
        let (body, headers) = self.send(request, path, out).await?;
        let items: Vec<T> = serde_json::from_slice(&body).map_err(|e| shape(path, e))?;
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let total_pages = header("x-wp-totalpages")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(page);
        let date = header("date").and_then(parse_http_date);
        Ok(Page {
            items,
            total_pages,
            date,
        })
    }

    /// Every page of the listing at `path`, and the first answer's `Date`.
    pub async fn all<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        out: &mut Outcome,
    ) -> Result<(Vec<T>, Option<jiff::Timestamp>), ChannelError> {
        let first = self.page::<T>(path, query, 1, out).await?;
        if first.total_pages > MAX_PAGES {
            return Err(ChannelError::contract(format!(
                "WooCommerce lists {} pages at {path}: more than Tally reads ({MAX_PAGES})",
                first.total_pages
            )));
        }
        let mut items = first.items;
        for page in 2..=first.total_pages {
            items.extend(self.page::<T>(path, query, page, out).await?.items);
        }
        Ok((items, first.date))
    }

    /// `POST <path>` with `{"update": updates}`: one answer per update, in order.
    pub async fn batch(
        &self,
        path: &str,
        updates: &[Value],
        out: &mut Outcome,
    ) -> Result<Vec<Updated>, ChannelError> {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&serde_json::json!({ "update": updates }));
        let (body, _) = self.send(request, path, out).await?;
        let answer: BatchAnswer = serde_json::from_slice(&body).map_err(|e| shape(path, e))?;
        if answer.update.len() != updates.len() {
            return Err(shape(
                path,
                format!(
                    "{} answers to {} updates",
                    answer.update.len(),
                    updates.len()
                ),
            ));
        }
        Ok(answer.update)
    }
}

/// An HTTP `Date` (`Thu, 03 Dec 2026 10:00:00 GMT`).
pub fn parse_http_date(text: &str) -> Option<jiff::Timestamp> {
    jiff::fmt::rfc2822::parse(text).ok().map(|z| z.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_and_item_errors_are_read() {
        let t = parse_http_date("Thu, 03 Dec 2026 10:00:00 GMT").unwrap();
        assert_eq!(t.to_string(), "2026-12-03T10:00:00Z");
        assert!(parse_http_date("yesterday").is_none());
        let answer: BatchAnswer = serde_json::from_str(
            r#"{"update":[{"id":1,"stock_quantity":3},
                {"id":2,"error":{"code":"woocommerce_rest_product_invalid_id","message":"Invalid ID.","data":{"status":400}}},
                {"id":3,"error":{"code":"busy","message":"later","data":{"status":503}}}]}"#,
        )
        .unwrap();
        assert!(answer.update[0].error.is_none());
        let refused = answer.update[1].error.as_ref().unwrap();
        assert!(!refused.is_transient());
        assert_eq!(refused.code, "woocommerce_rest_product_invalid_id");
        assert!(answer.update[2].error.as_ref().unwrap().is_transient());
    }

    #[test]
    fn the_key_and_secret_are_split_and_never_shown() {
        let api = Api::new("https://shop.example", &Secret::new("ck_key:cs_secret"));
        assert_eq!(api.key.expose(), "ck_key");
        assert_eq!(api.secret.expose(), "cs_secret");
        let shown = format!("{api:?}");
        assert!(
            !shown.contains("cs_secret") && !shown.contains("ck_key"),
            "{shown}"
        );
        assert_eq!(api.base, "https://shop.example/wp-json/wc/v3");
    }
}

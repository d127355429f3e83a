//! The WooCommerce fake behaves like WooCommerce: Basic auth, pages with WordPress's headers,
//! at most 100 objects a batch (`413` beyond), per-item errors inside a `200`, orders that
//! lower and (cancelled) restore the stock, listed by status, `modified_after` and page, and an
//! injectable outage.

use serde_json::{Value, json};
use tally_fakes::channels::woocommerce::WooFake;

const API: &str = "/wp-json/wc/v3";

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(fake: &WooFake) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: format!("{}{API}", fake.url()),
        }
    }

    async fn get(&self, path: &str) -> (u16, Value, Option<(String, String)>) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .basic_auth("ck", Some("cs"))
            .send()
            .await
            .unwrap();
        let header = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
        let totals = header("x-wp-total").zip(header("x-wp-totalpages"));
        (r.status().as_u16(), r.json().await.unwrap(), totals)
    }

    async fn batch(&self, path: &str, updates: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .basic_auth("ck", Some("cs"))
            .json(&json!({ "update": updates }))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
}

#[tokio::test]
async fn products_page_and_batches_apply_item_by_item_up_to_100() {
    let fake = WooFake::start("ck", "cs").await.unwrap();
    let ids: Vec<i64> = (0..150)
        .map(|n| fake.add_product(&format!("P{n}"), Some(1)))
        .collect();
    let shirt = fake.add_variable("SHIRT");
    let small = fake.add_variation(shirt, "SHIRT-S", None);
    let c = Client::new(&fake);

    let (status, page, totals) = c.get("/products?per_page=100&page=2").await;
    assert_eq!(status, 200);
    assert_eq!(page.as_array().unwrap().len(), 51);
    assert_eq!(totals, Some(("151".into(), "2".into())));
    assert_eq!(c.get("/products?per_page=101").await.0, 400);
    let (_, variations, _) = c.get(&format!("/products/{shirt}/variations")).await;
    assert_eq!(variations[0]["sku"], "SHIRT-S");
    assert_eq!(variations[0]["manage_stock"], false);

    let too_many: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "stock_quantity": 5}))
        .collect();
    assert_eq!(c.batch("/products/batch", json!(too_many)).await.0, 413);
    assert_eq!(fake.stock("P0"), Some(1), "a refused batch changes nothing");

    fake.fail_sku("P1");
    let (status, answer) = c
        .batch(
            "/products/batch",
            json!([{"id": ids[0], "stock_quantity": 4}, {"id": ids[1], "stock_quantity": 4},
                   {"id": 999_999, "stock_quantity": 4}, {"id": small, "stock_quantity": 4}]),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["update"][0]["stock_quantity"], 4);
    assert_eq!(answer["update"][1]["error"]["data"]["status"], 400);
    assert_eq!(
        answer["update"][2]["error"]["code"],
        "woocommerce_rest_product_invalid_id"
    );
    // A variation is updated through its parent only.
    assert!(answer["update"][3]["error"].is_object());
    let (_, answer) = c
        .batch(
            &format!("/products/{shirt}/variations/batch"),
            json!([{"id": small, "manage_stock": true, "stock_quantity": 6}]),
        )
        .await;
    assert_eq!(answer["update"][0]["stock_quantity"], 6);
    assert_eq!(
        (fake.stock("P0"), fake.stock("P1"), fake.stock("SHIRT-S")),
        (Some(4), Some(1), Some(6))
    );
    assert_eq!(fake.writes("P0"), vec![4]);
    assert_eq!(fake.calls()["POST /products/batch"], 2);
}

#[tokio::test]
async fn orders_move_the_stock_and_are_listed_by_status_and_modification() {
    let fake = WooFake::start("ck", "cs").await.unwrap();
    fake.add_product("A", Some(5));
    let c = Client::new(&fake);
    assert!(fake.place_order(&[("A", 6)]).is_none(), "no backorders");
    let first = fake.place_order(&[("A", 2)]).unwrap();
    let second = fake.place_order(&[("A", 1)]).unwrap();
    assert_eq!(fake.stock("A"), Some(2));
    fake.set_order_status(first, "cancelled");
    assert_eq!(fake.stock("A"), Some(4), "cancelling restores the stock");

    let (_, open, _) = c.get("/orders?status=processing,on-hold").await;
    assert_eq!(open.as_array().unwrap().len(), 1);
    assert_eq!(open[0]["id"], second);
    assert_eq!(open[0]["line_items"][0]["sku"], "A");
    assert_eq!(open[0]["line_items"][0]["quantity"], 1);
    let (_, all, totals) = c.get("/orders?status=any&per_page=1&page=2").await;
    assert_eq!(all.as_array().unwrap().len(), 1);
    assert_eq!(totals, Some(("2".into(), "2".into())));
    let (_, later, _) = c
        .get("/orders?modified_after=2999-01-01T00:00:00&dates_are_gmt=true")
        .await;
    assert_eq!(later, json!([]));
    let (_, since, _) = c
        .get("/orders?modified_after=2000-01-01T00:00:00&dates_are_gmt=true")
        .await;
    assert_eq!(since.as_array().unwrap().len(), 2);
    assert_eq!(c.get("/orders?modified_after=soon").await.0, 400);
}

#[tokio::test]
async fn credentials_are_checked_and_outages_answer_every_call() {
    let fake = WooFake::start("ck", "cs").await.unwrap();
    fake.add_product("A", Some(5));
    let refused = reqwest::Client::new()
        .get(format!("{}{API}/products", fake.url()))
        .basic_auth("ck", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let c = Client::new(&fake);
    fake.set_outage(Some(503));
    assert_eq!(c.get("/products").await.0, 503);
    fake.set_outage(Some(429));
    assert_eq!(c.get("/orders").await.0, 429);
    fake.set_outage(None);
    assert_eq!(c.get("/products").await.0, 200);
    assert_eq!(fake.calls()["GET /products"], 3);
    assert_eq!(fake.total_calls(), 4);
}

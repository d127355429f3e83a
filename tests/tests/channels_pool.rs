//! Two Shopify shops in one pool, end to end with real processes: Odoo (the simulator) holds
//! the stock, scans posted to a `tally-agent` move it through `tally-central`, and the two
//! shops' offers of a SKU follow their weighted shares of the pool's stock, summing to at
//! most it at every step — where two separate channels would each offer all of it. And a
//! Shopify shop and a WooCommerce shop in one pool: an order WooCommerce took and Odoo does not
//! have yet comes off the WooCommerce share alone, and the pool never offers more than is
//! truly free.

mod channels_support;

use anyhow::ensure;
use serde_json::json;
use tally_tests::channels::shopify::{FakeConfig, ShopifyFake};
use tally_tests::channels::woocommerce::WooFake;
use tally_tests::odoo_sim::{OdooSim, SimConfig, Tracking, Version};
use tally_tests::{wait_synced, with_temp_dir};

use channels_support::{
    STOCK, WAIT, WAREHOUSE, admin_get, on_hand, pick, scanner_agent, shop_shows, shopify_channel,
    start_central, woo_shows, woocommerce_channel, write_config,
};

const SCANNER_TOKEN: &str = "pool-scanner-token-0123456789abcdef";

async fn shop() -> anyhow::Result<ShopifyFake> {
    let shop = ShopifyFake::start(FakeConfig::default()).await?;
    shop.add_location("Main");
    for sku in ["CHAIR-OAK", "LAMP-BRASS"] {
        shop.add_variant(sku);
    }
    Ok(shop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shops_in_a_pool_never_offer_together_more_than_its_stock() {
    with_temp_dir("channels-pool", |dir| async move {
        let sim = OdooSim::start(SimConfig::new(Version::V18)).await?;
        for (sku, qty) in [("CHAIR-OAK", 20.0), ("LAMP-BRASS", 10.0)] {
            sim.add_product(sku, Tracking::None)?;
            sim.set_on_hand(sku, STOCK, None, qty)?;
        }
        let (big, small) = (shop().await?, shop().await?);
        // `small` also holds one unit of its own share back.
        let tables = [
            shopify_channel(&dir, "big", &big, "")?,
            shopify_channel(&dir, "small", &small, "buffer = 1")?,
            "\n[[pools]]\nname = \"web\"\nmembers = { big = 2, small = 1 }\n".to_owned(),
        ]
        .concat();
        let config = write_config(&dir, &tables)?;
        let central = start_central(&dir, &sim, &config).await?;

        // 20 chairs split 2:1 (13.3 and 6.7: the odd unit to the share the method owes it
        // first), `small` less its buffer; 10 lamps split 7 and 3 (6.7 and 3.3).
        shop_shows(&big, "CHAIR-OAK", 13).await?;
        shop_shows(&small, "CHAIR-OAK", 7 - 1).await?;
        shop_shows(&big, "LAMP-BRASS", 7).await?;
        shop_shows(&small, "LAMP-BRASS", 3 - 1).await?;

        let agent = scanner_agent(&dir, &central, "pool-agent", SCANNER_TOKEN).await?;
        let scanner = agent.client();
        // Each pick of chairs moves both members' offers; the pool's stock bounds their sum.
        for (id, qty, stock, shares) in [("p1", "5", 15, (10, 5)), ("p2", "4", 11, (7, 4))] {
            let event = json!({"id": id, "type": "pick", "sku": "CHAIR-OAK", "qty": qty, "location": STOCK});
            let answer = scanner.post_events(&json!({"events": [event]})).await?;
            ensure!(answer.status == 201, "{}", answer.body);
            wait_synced(&scanner, WAIT).await?;
            shop_shows(&big, "CHAIR-OAK", shares.0).await?;
            shop_shows(&small, "CHAIR-OAK", shares.1 - 1).await?;
            ensure!(sim.on_hand("CHAIR-OAK", STOCK) == stock as f64);
            let offered = on_hand(&big, "CHAIR-OAK").unwrap() + on_hand(&small, "CHAIR-OAK").unwrap();
            ensure!(offered <= stock, "the pool offers {offered} of {stock}");
        }
        // Every figure either shop was ever sent was a share of some stock of the pool: no
        // member was sent the whole stock, or a value between two shares.
        ensure!(big.writes("CHAIR-OAK", "Main") == [13, 10, 7], "{:?}", big.writes("CHAIR-OAK", "Main"));
        ensure!(small.writes("CHAIR-OAK", "Main") == [6, 4, 3], "{:?}", small.writes("CHAIR-OAK", "Main"));
        // The lamps did not move, and were not pushed again.
        ensure!(big.writes("LAMP-BRASS", "Main") == [7]);
        ensure!(small.writes("LAMP-BRASS", "Main") == [2]);

        // The operator sees the pool on each member and what each is offered.
        let status = admin_get(&central.admin(), "/v1/channels/small").await?;
        ensure!(status.contains("\"pool\":\"web\""), "{status}");
        let availability = central.cli("availability", &["CHAIR-OAK", "--json"]).await?;
        ensure!(
            availability.contains("\"free\": \"11\"")
                && availability.contains("\"offered\": 7")
                && availability.contains("\"offered\": 3"),
            "{availability}"
        );
        Ok(())
    })
    .await;
}

/// What the pool offers of `sku`: the shop's `on_hand` and WooCommerce's `stock_quantity`.
fn offered(shop: &ShopifyFake, woo: &WooFake, sku: &str) -> (i64, i64) {
    (on_hand(shop, sku).unwrap_or(0), woo.stock(sku).unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_and_a_woocommerce_store_share_a_pool_and_its_orders_come_off_their_share() {
    with_temp_dir("channels-pool-mixed", |dir| async move {
        let sim = OdooSim::start(SimConfig::new(Version::V18)).await?;
        for (sku, qty) in [("CHAIR-OAK", 20.0), ("LAMP-BRASS", 10.0)] {
            sim.add_product(sku, Tracking::None)?;
            sim.set_on_hand(sku, STOCK, None, qty)?;
        }
        let shop = shop().await?;
        let woo = WooFake::start("ck_pool", "cs_pool").await?;
        for sku in ["CHAIR-OAK", "LAMP-BRASS"] {
            woo.add_product(sku, Some(0));
        }
        let tables = [
            shopify_channel(&dir, "shop", &shop, "")?,
            woocommerce_channel(&dir, "woo", &woo, ("ck_pool", "cs_pool"), "")?,
            "\n[[pools]]\nname = \"web\"\nmembers = { shop = 1, woo = 1 }\n".to_owned(),
        ]
        .concat();
        let config = write_config(&dir, &tables)?;
        let central = start_central(&dir, &sim, &config).await?;
        shop_shows(&shop, "CHAIR-OAK", 10).await?;
        woo_shows(&woo, "CHAIR-OAK", 10).await?;
        shop_shows(&shop, "LAMP-BRASS", 5).await?;
        woo_shows(&woo, "LAMP-BRASS", 5).await?;

        // WooCommerce sells 3 chairs (its stock 10 -> 7); Odoo does not know the order yet.
        let order = woo
            .place_order(&[("CHAIR-OAK", 3)])
            .ok_or_else(|| anyhow::anyhow!("WooCommerce refused the order"))?;
        let agent = scanner_agent(&dir, &central, "pool-agent", SCANNER_TOKEN).await?;
        let scanner = agent.client();
        // A pick of 4: Odoo's free 16, shares 8 and 8; WooCommerce's share less its order.
        let answer = scanner
            .post_events(&json!({"events": [pick("p1", "CHAIR-OAK", "4")]}))
            .await?;
        ensure!(answer.status == 201, "{}", answer.body);
        wait_synced(&scanner, WAIT).await?;
        shop_shows(&shop, "CHAIR-OAK", 8).await?;
        woo_shows(&woo, "CHAIR-OAK", 8 - 3).await?;
        let (a, b) = offered(&shop, &woo, "CHAIR-OAK");
        ensure!(
            a + b <= 16 - 3,
            "the pool offers {a} + {b}; truly free is 13"
        );
        for written in woo.writes("CHAIR-OAK").iter().skip(1) {
            ensure!(
                *written <= 8 - 3,
                "WooCommerce was written {written} over its order: {:?}",
                woo.writes("CHAIR-OAK")
            );
        }

        // The order reaches Odoo (reserved 3, free 13): the shares of 13 are offered as they
        // are, the order now in Odoo's figures and not taken off again.
        sim.create_sale_order(
            WAREHOUSE,
            "WooCommerce",
            &[("CHAIR-OAK", 3.0)],
            Some(&order.to_string()),
        )?;
        let wait = tally_tests::wait_until("the pool to offer Odoo's 13 free chairs", WAIT, || {
            let (a, b) = offered(&shop, &woo, "CHAIR-OAK");
            async move {
                Ok(
                    if a + b == 13 && (6..=7).contains(&a) && (6..=7).contains(&b) {
                        std::ops::ControlFlow::Break(())
                    } else {
                        std::ops::ControlFlow::Continue(format!("shop {a}, woo {b}"))
                    },
                )
            }
        });
        wait.await?;
        // Nothing either was ever written let the pool offer more than was truly free: the
        // shop's writes are shares of 20, 16 and 13; WooCommerce's are at most its share of
        // 16 less the order before Odoo had it, and at most its share of 13 after.
        for written in shop.writes("CHAIR-OAK", "Main") {
            ensure!(
                [10, 8, 7, 6].contains(&written),
                "{:?}",
                shop.writes("CHAIR-OAK", "Main")
            );
        }
        let availability = central
            .cli("availability", &["CHAIR-OAK", "--json"])
            .await?;
        ensure!(availability.contains("\"free\": \"13\""), "{availability}");
        let status = admin_get(&central.admin(), "/v1/channels/woo").await?;
        ensure!(status.contains("\"pool\":\"web\""), "{status}");
        Ok(())
    })
    .await;
}

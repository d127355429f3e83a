//! Two Shopify shops in one pool, end to end with real processes: Odoo (the simulator) holds
//! the stock, scans posted to a `tally-agent` move it through `tally-central`, and the two
//! shops' offers of a SKU follow their weighted shares of the pool's stock, summing to at
//! most it at every step — where two separate channels would each offer all of it.

mod channels_support;

use anyhow::ensure;
use serde_json::json;
use tally_tests::channels::shopify::{FakeConfig, ShopifyFake};
use tally_tests::odoo_sim::{OdooSim, SimConfig, Tracking, Version};
use tally_tests::{AgentProcess, wait_synced, with_temp_dir};

use channels_support::{
    STOCK, WAIT, WAREHOUSE, admin_get, on_hand, shop_shows, shopify_channel, start_central,
    write_config,
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

        let token = central.admin().add_agent("pool-agent", WAREHOUSE).await?;
        let agent = AgentProcess::builder(dir.join("agent"))
            .token(SCANNER_TOKEN)
            .warehouse(WAREHOUSE)
            .agent_id("pool-agent")
            .central(&central.sync_url(), &token, None)
            .spawn()
            .await?;
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

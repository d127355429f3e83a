//! Availability fanned out to a sales channel, end to end with real processes: scans posted to
//! a `tally-agent` reach the Odoo simulator through `tally-central`, and then the Shopify
//! fake's `on_hand` at the channel's location, with the channel's buffer held back; a sales
//! order confirmed inside Odoo reaches the channel too. The oversell window: an order Shopify
//! took and Odoo has not seen, then an unrelated scan makes Tally push before Odoo knows the
//! order; Shopify's available never rises above what is truly free, then or after Odoo
//! reserves the order. And a Shopify outage while central is SIGKILLed: afterwards every SKU
//! ends at its newest value, with no older value written after a newer one. The outage lasts
//! seconds by default; `TALLY_CHANNEL_OUTAGE_SECS=600` makes it a ten-minute soak:
//!
//! ```sh
//! TALLY_CHANNEL_OUTAGE_SECS=600 cargo test -p tally-tests --test channels_e2e outage
//! ```

mod channels_support;

use std::ops::ControlFlow;

use anyhow::ensure;
use serde_json::json;
use tally_tests::channels::shopify::{FakeConfig, ShopifyFake};
use tally_tests::odoo_sim::{OdooSim, SimConfig, Tracking, Version};
use tally_tests::{wait_synced, wait_until, with_temp_dir};

use channels_support::{
    RECOVERY, STOCK, WAIT, WAREHOUSE, admin_get, outage_through_a_crash, pick, scanner_agent,
    shop_shows, shop_shows_within, shopify_channel, start_central,
};

const SCANNER_TOKEN: &str = "channels-scanner-token-0123456789";
const BUFFER: i64 = 2;

/// Central's configuration: the simulator, a fast poll, one Shopify channel.
fn write_config(dir: &std::path::Path, shop: &ShopifyFake) -> anyhow::Result<std::path::PathBuf> {
    let shop = shopify_channel(dir, "shop", shop, &format!("buffer = {BUFFER}"))?;
    channels_support::write_config(dir, &shop)
}

struct World {
    sim: OdooSim,
    shop: ShopifyFake,
}

async fn world() -> anyhow::Result<World> {
    let sim = OdooSim::start(SimConfig::new(Version::V18)).await?;
    let shop = ShopifyFake::start(FakeConfig::default()).await?;
    shop.add_location("Main");
    for (sku, qty) in [("CHAIR-OAK", 20.0), ("LAMP-BRASS", 10.0)] {
        sim.add_product(sku, Tracking::None)?;
        sim.set_on_hand(sku, STOCK, None, qty)?;
        shop.add_variant(sku);
    }
    Ok(World { sim, shop })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_and_odoo_orders_reach_shopify_and_never_oversell() {
    with_temp_dir("channels-e2e", |dir| async move {
        let World { sim, shop } = world().await?;
        let config = write_config(&dir, &shop)?;
        let central = start_central(&dir, &sim, &config).await?;
        let agent = scanner_agent(&dir, &central, "shop-agent", SCANNER_TOKEN).await?;
        let scanner = agent.client();

        // What Odoo holds reaches Shopify, less the buffer.
        shop_shows(&shop, "CHAIR-OAK", 20 - BUFFER).await?;
        shop_shows(&shop, "LAMP-BRASS", 10 - BUFFER).await?;

        // A pick: Odoo first, then Shopify.
        let answer = scanner
            .post_events(&json!({"events": [pick("p1", "CHAIR-OAK", "5")]}))
            .await?;
        ensure!(answer.status == 201, "{}", answer.body);
        wait_synced(&scanner, WAIT).await?;
        shop_shows(&shop, "CHAIR-OAK", 15 - BUFFER).await?;
        ensure!(sim.on_hand("CHAIR-OAK", STOCK) == 15.0);

        // A sales order confirmed inside Odoo reserves 3 lamps: the poll brings it.
        sim.create_sale_order(WAREHOUSE, "Walk-in", &[("LAMP-BRASS", 3.0)], None)?;
        shop_shows(&shop, "LAMP-BRASS", 7 - BUFFER).await?;

        // The oversell window. Shopify takes an order for 4 chairs; Odoo does not know it yet.
        ensure!(
            shop.order("CHAIR-OAK", "Main", 4),
            "Shopify refused the order"
        );
        let truly_free = |odoo_free: i64, not_in_odoo: i64| odoo_free - not_in_odoo - BUFFER;
        // An unrelated scan makes Tally push a new figure before Odoo knows the order.
        let answer = scanner
            .post_events(&json!({"events": [pick("p2", "CHAIR-OAK", "1")]}))
            .await?;
        ensure!(answer.status == 201, "{}", answer.body);
        shop_shows(&shop, "CHAIR-OAK", 14 - BUFFER).await?;
        let (_, committed, available) = shop.level("CHAIR-OAK", "Main").unwrap();
        ensure!(committed == 4);
        ensure!(
            available <= truly_free(14, 4),
            "Shopify offers {available}, truly free is {}",
            truly_free(14, 4)
        );
        // The order reaches Odoo (a connector creates and confirms it there): reserved 4.
        sim.create_sale_order(WAREHOUSE, "Shopify order", &[("CHAIR-OAK", 4.0)], None)?;
        shop_shows(&shop, "CHAIR-OAK", 10 - BUFFER).await?;
        let (_, _, available) = shop.level("CHAIR-OAK", "Main").unwrap();
        // Odoo's free is 10 and holds the order now; Shopify still has it committed.
        ensure!(
            available <= truly_free(10, 0),
            "Shopify offers {available} after Odoo reserved"
        );
        // Every figure Tally ever wrote was a value Odoo had free, less the buffer.
        for written in shop.writes("CHAIR-OAK", "Main") {
            ensure!(
                [18, 13, 12, 8].contains(&written),
                "an unexpected write of {written}"
            );
        }
        let stats = shop.stats();
        ensure!(stats.throttled == 0, "{stats:?}");

        // Shopify ships the order itself (on_hand and committed down by 4) before Odoo moves:
        // the channel now under-offers, never over-offers, and a resync reads what it shows
        // and sets it straight, reporting the drift.
        shop.fulfil("CHAIR-OAK", "Main", 4);
        ensure!(shop.level("CHAIR-OAK", "Main") == Some((4, 0, 4)));
        let resync = central
            .cli(
                "channel",
                &["resync", "shop", "--reason", "fulfilled in Shopify"],
            )
            .await?;
        ensure!(resync.starts_with("queued "), "{resync}");
        shop_shows(&shop, "CHAIR-OAK", 10 - BUFFER).await?;
        let (_, _, available) = shop.level("CHAIR-OAK", "Main").unwrap();
        ensure!(available == truly_free(10, 0), "{available}");

        // What the admin API and the CLI show: the outbox drains (the push lands in Shopify
        // a moment before central records it).
        let admin = central.admin();
        wait_until("the channel's outbox to drain", WAIT, || {
            let admin = admin.clone();
            async move {
                let body = admin_get(&admin, "/v1/channels/shop").await?;
                Ok(if body.contains("\"pending\":0,") {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(body)
                })
            }
        })
        .await?;
        let status = central
            .cli("channel", &["status", "shop", "--json"])
            .await?;
        ensure!(status.contains("\"dead_letters\": []"), "{status}");
        ensure!(
            status.contains("\"channel_showed\": 4") && status.contains("\"offered\": 8"),
            "the resync's drift is reported: {status}"
        );
        let metrics = admin_get(&central.admin(), "/metrics").await?;
        ensure!(
            metrics.contains("tally_central_channel_pending{channel=\"shop\"}0")
                && metrics.contains("tally_central_channel_alert{channel=\"shop\"}0"),
            "{metrics}"
        );
        let list = central.cli("channel", &["list", "--json"]).await?;
        ensure!(list.contains("\"name\": \"shop\""), "{list}");
        let table = central.cli("channel", &["list"]).await?;
        ensure!(
            table.starts_with("CHANNEL") && table.contains("\nshop "),
            "{table}"
        );
        let availability = central
            .cli("availability", &["CHAIR-OAK", "--json"])
            .await?;
        ensure!(availability.contains("\"free\": \"10\""), "{availability}");
        ensure!(
            availability.contains("\"channel\": \"shop\"")
                && availability.contains("\"last_sent\": 8"),
            "what the channel was last sent: {availability}"
        );
        // The trace of the first pick names the channel's last push of its SKU, made after the
        // pick was merged.
        let traced = central
            .cli("trace", &["--agent", "shop-agent", "--id", "p1", "--json"])
            .await?;
        ensure!(
            traced.contains("\"channel\": \"shop\"") && traced.contains("\"after_merge\": true"),
            "{traced}"
        );
        let audit = admin_get(&central.admin(), "/v1/audit").await?;
        ensure!(
            audit.contains("\"action\":\"channel-resync\"")
                && audit.contains("\"role\":\"admin\",\"action\":\"channel-resync\"")
                && audit.contains("\"reason\":\"fulfilled"),
            "the resync is audited: {audit}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopify_outage_through_a_central_crash_ends_at_the_newest_values() {
    with_temp_dir("channels-e2e-outage", |dir| async move {
        let World { sim, shop } = world().await?;
        let config = write_config(&dir, &shop)?;
        let central = start_central(&dir, &sim, &config).await?;
        shop_shows(&shop, "CHAIR-OAK", 20 - BUFFER).await?;
        shop_shows(&shop, "LAMP-BRASS", 10 - BUFFER).await?;
        let written_before = shop.writes("CHAIR-OAK", "Main").len();

        // Shopify goes down; Odoo keeps changing; central is SIGKILLed with pushes queued.
        shop.set_down(true);
        let outage =
            outage_through_a_crash(&dir, &sim, &config, central, || async { Ok(()) }).await?;
        shop.set_down(false);
        let back = std::time::Instant::now();
        shop_shows_within(&shop, "CHAIR-OAK", 11 - BUFFER, RECOVERY).await?;
        shop_shows_within(&shop, "LAMP-BRASS", 7 - BUFFER, RECOVERY).await?;
        let recovered_in = back.elapsed();
        let writes = shop.writes("CHAIR-OAK", "Main");
        outage.check_writes("Shopify", &writes[written_before..], BUFFER, recovered_in)?;
        ensure!(shop.stats().throttled == 0);
        drop(outage.central);
        Ok(())
    })
    .await;
}

//! The WooCommerce channel end to end with real processes: scans posted to a `tally-agent`
//! reach the Odoo simulator through `tally-central`, and then the WooCommerce fake's
//! `stock_quantity` (a simple product and a variation), with the buffer held back. The oversell
//! window: WooCommerce takes an order (and lowers its own stock), an unrelated scan makes Tally
//! push before Odoo knows the order, and no figure Tally writes is above what is truly free,
//! then or after Odoo confirms the order with its reference. A resync after the stock was
//! edited in WordPress writes back what differs and reports the drift. And a WooCommerce
//! outage while
//! central is SIGKILLed: afterwards every SKU ends at its newest value, with no older value
//! written after a newer one. The outage lasts seconds by default;
//! `TALLY_CHANNEL_OUTAGE_SECS=600` makes it a ten-minute soak (as in `channels_e2e.rs`).

mod channels_support;

use std::ops::ControlFlow;
use std::path::Path;

use anyhow::{Context, ensure};
use serde_json::json;
use tally_tests::channels::woocommerce::WooFake;
use tally_tests::odoo_sim::{OdooSim, SimConfig, Tracking, Version};
use tally_tests::{wait_synced, wait_until, with_temp_dir};

use channels_support::{
    RECOVERY, STOCK, WAIT, WAREHOUSE, outage_through_a_crash, pick, scanner_agent, start_central,
    woo_shows, woo_shows_within, woocommerce_channel,
};

const SCANNER_TOKEN: &str = "woo-scanner-token-0123456789abcdef";
const BUFFER: i64 = 2;
const KEY: &str = "ck_e2e";
const SECRET: &str = "cs_e2e";

/// Central's configuration: the simulator, a fast poll, one WooCommerce channel.
fn write_config(dir: &Path, woo: &WooFake) -> anyhow::Result<std::path::PathBuf> {
    let extra = format!("order_ref = \"WC-{{number}}\"\nbuffer = {BUFFER}");
    let woo = woocommerce_channel(dir, "woo", woo, (KEY, SECRET), &extra)?;
    channels_support::write_config(dir, &woo)
}

async fn world() -> anyhow::Result<(OdooSim, WooFake)> {
    let sim = OdooSim::start(SimConfig::new(Version::V18)).await?;
    let woo = WooFake::start(KEY, SECRET).await?;
    for (sku, qty) in [("CHAIR-OAK", 20.0), ("LAMP-BRASS", 10.0)] {
        sim.add_product(sku, Tracking::None)?;
        sim.set_on_hand(sku, STOCK, None, qty)?;
    }
    woo.add_product("CHAIR-OAK", Some(0));
    let lamp = woo.add_variable("LAMP");
    woo.add_variation(lamp, "LAMP-BRASS", None);
    Ok((sim, woo))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_reach_woocommerce_and_its_orders_are_never_offered_again() {
    with_temp_dir("woo-e2e", |dir| async move {
        let (sim, woo) = world().await?;
        let config = write_config(&dir, &woo)?;
        let central = start_central(&dir, &sim, &config).await?;
        let agent = scanner_agent(&dir, &central, "woo-agent", SCANNER_TOKEN).await?;
        let scanner = agent.client();

        // What Odoo holds reaches WooCommerce, less the buffer: a product and a variation.
        woo_shows(&woo, "CHAIR-OAK", 20 - BUFFER).await?;
        woo_shows(&woo, "LAMP-BRASS", 10 - BUFFER).await?;

        // A pick: Odoo first, then WooCommerce.
        let answer = scanner
            .post_events(&json!({"events": [pick("p1", "CHAIR-OAK", "5")]}))
            .await?;
        ensure!(answer.status == 201, "{}", answer.body);
        wait_synced(&scanner, WAIT).await?;
        woo_shows(&woo, "CHAIR-OAK", 15 - BUFFER).await?;
        ensure!(sim.on_hand("CHAIR-OAK", STOCK) == 15.0);
        // A sales order confirmed inside Odoo reserves 3 lamps: the poll brings it.
        sim.create_sale_order(WAREHOUSE, "Walk-in", &[("LAMP-BRASS", 3.0)], None)?;
        woo_shows(&woo, "LAMP-BRASS", 7 - BUFFER).await?;

        // The oversell window. WooCommerce takes an order for 4 chairs and lowers its own
        // stock; Odoo does not know the order.
        let order = woo
            .place_order(&[("CHAIR-OAK", 4)])
            .context("WooCommerce refused the order")?;
        ensure!(woo.stock("CHAIR-OAK") == Some(15 - BUFFER - 4));
        let truly_free = |odoo_free: i64, not_in_odoo: i64| odoo_free - not_in_odoo - BUFFER;
        let written_before = woo.writes("CHAIR-OAK").len();
        // An unrelated scan makes Tally push a new figure before Odoo knows the order.
        let answer = scanner
            .post_events(&json!({"events": [pick("p2", "CHAIR-OAK", "1")]}))
            .await?;
        ensure!(answer.status == 201, "{}", answer.body);
        woo_shows(&woo, "CHAIR-OAK", truly_free(14, 4)).await?;
        let writes = woo.writes("CHAIR-OAK");
        for written in &writes[written_before..] {
            // Before the pick reached Odoo, 15 were free there; after it, 14: the order's 4
            // are never offered again (14 - BUFFER = 12 would be).
            ensure!(
                *written <= truly_free(15, 4),
                "Tally wrote {written} over an order Odoo did not have: {writes:?}"
            );
        }

        // The order reaches Odoo (a connector creates and confirms it there with the channel's
        // reference): reserved 4, Odoo's free 10. Counted twice for a moment at most, then
        // once: what WooCommerce shows stays at or under what is truly free.
        let written_before = woo.writes("CHAIR-OAK").len();
        sim.create_sale_order(
            WAREHOUSE,
            "WooCommerce",
            &[("CHAIR-OAK", 4.0)],
            Some(&format!("WC-{order}")),
        )?;
        // A later scan moves Odoo again: the figure pushed holds the order once (Odoo's), not
        // twice, once central saw the confirmation before the figures' read.
        let answer = scanner
            .post_events(&json!({"events": [pick("p3", "CHAIR-OAK", "1")]}))
            .await?;
        ensure!(answer.status == 201, "{}", answer.body);
        woo_shows(&woo, "CHAIR-OAK", truly_free(9, 0)).await?;
        let writes = woo.writes("CHAIR-OAK");
        for written in &writes[written_before..] {
            ensure!(
                *written <= truly_free(10, 0),
                "Tally wrote {written} after Odoo reserved the order: {writes:?}"
            );
        }
        ensure!(
            sim.call_count("sale.order", "search_read") > 0,
            "Odoo was asked for the channel's orders"
        );
        // The lamp (a variation) was never touched by an order: written as Odoo says.
        ensure!(woo.stock("LAMP-BRASS") == Some(7 - BUFFER));
        let status = central.cli("channel", &["status", "woo", "--json"]).await?;
        ensure!(status.contains("\"kind\": \"woocommerce\""), "{status}");
        ensure!(status.contains("\"dead_letters\": []"), "{status}");
        Ok(())
    })
    .await;
}

/// Someone edits the stock in WordPress's admin, above and below what Tally offers: a resync
/// reads what WooCommerce shows for every mapped SKU, writes the differences back and reports
/// the drift it found; the status and the audit show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_sets_straight_what_was_edited_in_woocommerce_and_reports_the_drift() {
    with_temp_dir("woo-e2e-resync", |dir| async move {
        let (sim, woo) = world().await?;
        let config = write_config(&dir, &woo)?;
        let central = start_central(&dir, &sim, &config).await?;
        woo_shows(&woo, "CHAIR-OAK", 20 - BUFFER).await?;
        woo_shows(&woo, "LAMP-BRASS", 10 - BUFFER).await?;
        let written = woo.writes("CHAIR-OAK").len() + woo.writes("LAMP-BRASS").len();

        // An over-offer (the dangerous drift) on the simple product, an under-offer on the
        // variation.
        ensure!(woo.set_stock("CHAIR-OAK", 40) && woo.set_stock("LAMP-BRASS", 0));
        let resync = central
            .cli(
                "channel",
                &["resync", "woo", "--reason", "stock edited in WordPress"],
            )
            .await?;
        ensure!(resync.starts_with("queued "), "{resync}");
        woo_shows(&woo, "CHAIR-OAK", 20 - BUFFER).await?;
        woo_shows(&woo, "LAMP-BRASS", 10 - BUFFER).await?;
        // Only the two edited SKUs were written, once each.
        let after = woo.writes("CHAIR-OAK").len() + woo.writes("LAMP-BRASS").len();
        ensure!(
            after == written + 2,
            "{written} writes before, {after} after"
        );

        // The drift is reported (the write lands a moment before central records it).
        let found = [
            json!({"sku": "CHAIR-OAK", "channel_showed": 40, "offered": 20 - BUFFER}),
            json!({"sku": "LAMP-BRASS", "channel_showed": 0, "offered": 10 - BUFFER}),
        ];
        wait_until("the resync's drift in the channel's status", WAIT, || {
            let central = &central;
            let found = &found;
            async move {
                let status = central.cli("channel", &["status", "woo", "--json"]).await?;
                let view: serde_json::Value = serde_json::from_str(&status)?;
                let drift = view
                    .pointer("/channel/drift")
                    .and_then(|d| d.as_array())
                    .context("no channel.drift in the status")?;
                Ok(if found.iter().all(|f| drift.contains(f)) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(status)
                })
            }
        })
        .await?;
        let audit = central.cli("audit", &["--json"]).await?;
        ensure!(
            audit.contains("channel-resync") && audit.contains("stock edited in WordPress"),
            "the resync is audited: {audit}"
        );
        drop(central);
        Ok(())
    })
    .await;
}

/// WooCommerce answers `503` for a few seconds (CI) or `TALLY_CHANNEL_OUTAGE_SECS` (a soak)
/// while Odoo keeps changing and central is SIGKILLed half way and restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_woocommerce_outage_through_a_central_crash_ends_at_the_newest_values() {
    with_temp_dir("woo-e2e-outage", |dir| async move {
        let (sim, woo) = world().await?;
        let config = write_config(&dir, &woo)?;
        let central = start_central(&dir, &sim, &config).await?;
        woo_shows(&woo, "CHAIR-OAK", 20 - BUFFER).await?;
        woo_shows(&woo, "LAMP-BRASS", 10 - BUFFER).await?;
        let written_before = woo.writes("CHAIR-OAK").len();

        // WooCommerce goes down; Odoo keeps changing; central is SIGKILLed with pushes queued,
        // once it tried WooCommerce.
        woo.set_outage(Some(503));
        let calls_before = woo.total_calls();
        let shop = &woo;
        let tried = || {
            wait_until(
                "central to try WooCommerce during the outage",
                WAIT,
                move || {
                    let tried = shop.total_calls() > calls_before;
                    async move {
                        Ok(if tried {
                            ControlFlow::Break(())
                        } else {
                            ControlFlow::Continue("no call yet".to_owned())
                        })
                    }
                },
            )
        };
        let outage = outage_through_a_crash(&dir, &sim, &config, central, tried).await?;
        woo.set_outage(None);
        let back = std::time::Instant::now();
        woo_shows_within(&woo, "CHAIR-OAK", 11 - BUFFER, RECOVERY).await?;
        woo_shows_within(&woo, "LAMP-BRASS", 7 - BUFFER, RECOVERY).await?;
        let recovered_in = back.elapsed();
        let writes = woo.writes("CHAIR-OAK");
        outage.check_writes(
            "WooCommerce",
            &writes[written_before..],
            BUFFER,
            recovered_in,
        )?;
        drop(outage.central);
        Ok(())
    })
    .await;
}

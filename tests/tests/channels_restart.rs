//! A channel's totals survive central's crash, with real processes: calls, drift found, errors,
//! the last error and the last resync of a Shopify channel are read from central's status,
//! central is SIGKILLed, and the restarted central shows them again — growing from there, not
//! from zero.

mod channels_support;

use std::ops::ControlFlow;

use anyhow::{Context, ensure};
use serde_json::Value;
use tally_tests::channels::shopify::{FakeConfig, ShopifyFake};
use tally_tests::odoo_sim::{OdooSim, SimConfig, Tracking, Version};
use tally_tests::{CentralProcess, wait_until, with_temp_dir};

use channels_support::{STOCK, WAIT, shop_shows, shopify_channel, start_central, write_config};

/// The channel's status from the running central's admin API.
async fn status(central: &CentralProcess) -> anyhow::Result<Value> {
    let admin = central.admin();
    let body = reqwest::Client::new()
        .get(format!("{}/v1/channels/shop", admin.base_url()))
        .bearer_auth(admin.token())
        .send()
        .await?
        .json::<Value>()
        .await?;
    body.get("channel")
        .cloned()
        .context("no channel in the answer")
}

fn count(status: &Value, name: &str) -> u64 {
    status[name].as_u64().unwrap_or(0)
}

/// Waits until the channel's status satisfies `done`.
async fn status_until(
    central: &CentralProcess,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    wait_until(what, WAIT, || async {
        let status = status(central).await?;
        Ok(if done(&status) {
            ControlFlow::Break(status)
        } else {
            ControlFlow::Continue(status.to_string())
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channels_totals_survive_a_central_crash() {
    with_temp_dir("channels-restart", |dir| async move {
        let sim = OdooSim::start(SimConfig::new(Version::V18)).await?;
        sim.add_product("CHAIR-OAK", Tracking::None)?;
        sim.set_on_hand("CHAIR-OAK", STOCK, None, 20.0)?;
        let shop = ShopifyFake::start(FakeConfig::default()).await?;
        shop.add_location("Main");
        shop.add_variant("CHAIR-OAK");
        let config = write_config(&dir, &shopify_channel(&dir, "shop", &shop, "")?)?;
        let central = start_central(&dir, &sim, &config).await?;

        // The first push reads what Shopify shows (nothing): calls made, drift found.
        shop_shows(&shop, "CHAIR-OAK", 20).await?;
        status_until(&central, "the first push's figures", |s| {
            count(s, "calls") > 0 && count(s, "drift_found") > 0 && s["pending"] == 0
        })
        .await?;
        // Shopify goes down; a change in Odoo fails to reach it; an operator asks a resync.
        shop.set_down(true);
        sim.set_on_hand("CHAIR-OAK", STOCK, None, 17.0)?;
        let resync = central
            .cli("channel", &["resync", "shop", "--reason", "checking"])
            .await?;
        ensure!(resync.starts_with("queued "), "{resync}");
        let before = status_until(&central, "a failed push", |s| {
            count(s, "errors") >= 2 && s["last_error"].is_string()
        })
        .await?;
        ensure!(before["last_resync"].is_string(), "{before}");

        central.kill9().await?;
        let central = start_central(&dir, &sim, &config).await?;
        // Shopify is still down: no push can succeed, so calls and drift are exactly as
        // before, and errors only grew.
        let after = status(&central).await?;
        for name in ["calls", "drift_found", "throttle_waits"] {
            ensure!(
                count(&after, name) == count(&before, name),
                "{name}: {before} then {after}"
            );
        }
        ensure!(
            count(&after, "errors") >= count(&before, "errors"),
            "{before} then {after}"
        );
        ensure!(after["last_error"].is_string(), "{after}");
        ensure!(
            after["last_resync"] == before["last_resync"],
            "{before} then {after}"
        );
        ensure!(after["drift"] == before["drift"], "{before} then {after}");

        // Shopify back: the totals grow from there and the last error is cleared.
        shop.set_down(false);
        shop_shows(&shop, "CHAIR-OAK", 17).await?;
        let calls = count(&before, "calls");
        status_until(&central, "the push after the outage", |s| {
            count(s, "calls") > calls && s["last_error"].is_null()
        })
        .await?;
        Ok(())
    })
    .await;
}

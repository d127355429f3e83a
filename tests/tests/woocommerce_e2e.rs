//! The WooCommerce channel end to end with real processes: scans posted to a `tally-agent`
//! reach the Odoo simulator through `tally-central`, and then the WooCommerce fake's
//! `stock_quantity` (a simple product and a variation), with the buffer held back. The oversell
//! window: WooCommerce takes an order (and lowers its own stock), an unrelated scan makes Tally
//! push before Odoo knows the order, and no figure Tally writes is above what is truly free,
//! then or after Odoo confirms the order with its reference. And a WooCommerce outage while
//! central is SIGKILLed: afterwards every SKU ends at its newest value.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use tally_tests::channels::woocommerce::WooFake;
use tally_tests::odoo_sim::{OdooSim, SimConfig, Tracking, Version};
use tally_tests::{AgentProcess, CentralProcess, wait_synced, wait_until, with_temp_dir};

const WAREHOUSE: &str = "WH";
const STOCK: &str = "WH/Stock";
const SCANNER_TOKEN: &str = "woo-scanner-token-0123456789abcdef";
const BUFFER: i64 = 2;
const WAIT: Duration = Duration::from_secs(60);
const KEY: &str = "ck_e2e";
const SECRET: &str = "cs_e2e";

fn pick(id: &str, sku: &str, qty: &str) -> Value {
    json!({"id": id, "type": "pick", "sku": sku, "qty": qty, "location": STOCK})
}

/// Central's configuration: the simulator, a fast poll, one WooCommerce channel.
fn write_config(dir: &Path, woo: &WooFake) -> anyhow::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let secret = dir.join("woo-key");
    std::fs::write(&secret, format!("{KEY}:{SECRET}\n"))?;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))?;
    let config = dir.join("central.toml");
    std::fs::write(
        &config,
        format!(
            r#"merge_window = "100ms"
availability_poll = "300ms"

[[channels]]
name = "woo"
kind = "woocommerce"
url = "{url}"
order_ref = "WC-{{number}}"
warehouses = ["{WAREHOUSE}"]
buffer = {BUFFER}
secret_file = "{secret}"
"#,
            url = woo.url(),
            secret = secret.display()
        ),
    )?;
    Ok(config)
}

async fn start_central(dir: &Path, sim: &OdooSim, config: &Path) -> anyhow::Result<CentralProcess> {
    let odoo = tally_central::odoo::OdooConfig {
        url: sim.url(),
        db: sim.db().to_owned(),
        login: sim.login().to_owned(),
        api_key: tally_protocol::Secret::new(sim.api_key()),
        call_timeout: Duration::from_secs(30),
        api: Default::default(),
    };
    CentralProcess::builder(dir.join("central"))
        .plaintext()
        .odoo(&odoo)
        .arg("--config")
        .arg(config)
        .spawn()
        .await
}

/// Waits until WooCommerce's `stock_quantity` of `sku` is `stock`.
async fn woo_shows(woo: &WooFake, sku: &str, stock: i64) -> anyhow::Result<()> {
    wait_until(
        &format!("WooCommerce to show {stock} of {sku}"),
        WAIT,
        || {
            let shown = woo.stock(sku);
            async move {
                Ok(match shown {
                    Some(s) if s == stock => ControlFlow::Break(()),
                    other => ControlFlow::Continue(format!("stock_quantity {other:?}")),
                })
            }
        },
    )
    .await
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
        let token = central.admin().add_agent("woo-agent", WAREHOUSE).await?;
        let agent = AgentProcess::builder(dir.join("agent"))
            .token(SCANNER_TOKEN)
            .warehouse(WAREHOUSE)
            .agent_id("woo-agent")
            .central(&central.sync_url(), &token, None)
            .spawn()
            .await?;
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
        // twice, once the read follows the confirmation by the margin.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_woocommerce_outage_through_a_central_crash_ends_at_the_newest_values() {
    with_temp_dir("woo-e2e-outage", |dir| async move {
        let (sim, woo) = world().await?;
        let config = write_config(&dir, &woo)?;
        let central = start_central(&dir, &sim, &config).await?;
        woo_shows(&woo, "CHAIR-OAK", 20 - BUFFER).await?;
        woo_shows(&woo, "LAMP-BRASS", 10 - BUFFER).await?;

        // WooCommerce goes down; Odoo keeps changing; central is SIGKILLed with pushes queued.
        woo.set_outage(Some(503));
        let failed_before = woo.total_calls();
        for (n, qty) in [17.0, 12.0, 16.0].into_iter().enumerate() {
            sim.set_on_hand("CHAIR-OAK", STOCK, None, qty)?;
            sim.set_on_hand("LAMP-BRASS", STOCK, None, 9.0 - n as f64)?;
            let admin = central.admin();
            let want = format!("\"on_hand\":\"{}\"", qty as i64);
            wait_until("central to read the change", WAIT, || {
                let admin = admin.clone();
                let want = want.clone();
                async move {
                    let body = admin_get(&admin, "/v1/availability?sku=CHAIR-OAK").await?;
                    Ok(if body.contains(&want) {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(body)
                    })
                }
            })
            .await?;
        }
        wait_until("central to try WooCommerce during the outage", WAIT, || {
            let tried = woo.total_calls() > failed_before;
            async move {
                Ok(if tried {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue("no call yet".to_owned())
                })
            }
        })
        .await?;
        central.kill9().await?;
        // While central is down, Odoo changes once more.
        sim.set_on_hand("CHAIR-OAK", STOCK, None, 11.0)?;
        let central = start_central(&dir, &sim, &config).await?;
        woo.set_outage(None);
        woo_shows(&woo, "CHAIR-OAK", 11 - BUFFER).await?;
        woo_shows(&woo, "LAMP-BRASS", 7 - BUFFER).await?;
        // Nothing older was written after the newest value.
        let writes = woo.writes("CHAIR-OAK");
        ensure!(writes.last() == Some(&(11 - BUFFER)), "{writes:?}");
        ensure!(
            !writes.contains(&(17 - BUFFER)) && !writes.contains(&(12 - BUFFER)),
            "a value overtaken during the outage was written: {writes:?}"
        );
        drop(central);
        Ok(())
    })
    .await;
}

async fn admin_get(admin: &tally_tests::AdminClient, path: &str) -> anyhow::Result<String> {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", admin.base_url()))
        .bearer_auth(admin.token())
        .send()
        .await?;
    Ok(response.text().await?.replace(' ', ""))
}

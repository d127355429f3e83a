//! What the channel tests beyond `channels_e2e.rs` share: central started against the Odoo
//! simulator with a configuration of Shopify fakes, and waits on what a fake shows.

#![allow(dead_code)]

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tally_tests::CentralProcess;
use tally_tests::channels::shopify::ShopifyFake;
use tally_tests::odoo_sim::OdooSim;
use tally_tests::wait_until;

pub const WAREHOUSE: &str = "WH";
pub const STOCK: &str = "WH/Stock";
pub const WAIT: Duration = Duration::from_secs(60);

/// A `[[channels]]` table for the Shopify fake `shop`, named `name`, feeding [`WAREHOUSE`]
/// from its location `Main`, with `extra` lines (a buffer…) added.
pub fn shopify_channel(
    dir: &Path,
    name: &str,
    shop: &ShopifyFake,
    extra: &str,
) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let secret = dir.join(format!("{name}-token"));
    std::fs::write(&secret, "shpat_test\n")?;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))?;
    Ok(format!(
        r#"
[[channels]]
name = "{name}"
kind = "shopify"
url = "{url}"
location = "Main"
warehouses = ["{WAREHOUSE}"]
secret_file = "{secret}"
{extra}
"#,
        url = shop.url(),
        secret = secret.display()
    ))
}

/// Writes central's configuration: the fast windows of the tests, then `tables`.
pub fn write_config(dir: &Path, tables: &str) -> anyhow::Result<PathBuf> {
    let config = dir.join("central.toml");
    std::fs::write(
        &config,
        format!("merge_window = \"100ms\"\navailability_poll = \"300ms\"\n{tables}"),
    )?;
    Ok(config)
}

pub async fn start_central(
    dir: &Path,
    sim: &OdooSim,
    config: &Path,
) -> anyhow::Result<CentralProcess> {
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

/// Shopify's `on_hand` of `sku` at Main, if it has the SKU.
pub fn on_hand(shop: &ShopifyFake, sku: &str) -> Option<i64> {
    shop.level(sku, "Main").map(|(h, _, _)| h)
}

/// Waits until Shopify's `on_hand` of `sku` at Main is `want`.
pub async fn shop_shows(shop: &ShopifyFake, sku: &str, want: i64) -> anyhow::Result<()> {
    wait_until(
        &format!("Shopify at {} to show {want} on hand of {sku}", shop.url()),
        WAIT,
        || {
            let level = shop.level(sku, "Main");
            async move {
                Ok(match level {
                    Some((h, _, _)) if h == want => ControlFlow::Break(()),
                    other => {
                        ControlFlow::Continue(format!("(on_hand, committed, available) {other:?}"))
                    }
                })
            }
        },
    )
    .await
}

/// An admin API GET's body, without spaces.
pub async fn admin_get(admin: &tally_tests::AdminClient, path: &str) -> anyhow::Result<String> {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", admin.base_url()))
        .bearer_auth(admin.token())
        .send()
        .await?;
    Ok(response.text().await?.replace(' ', ""))
}

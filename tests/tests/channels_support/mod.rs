//! What the channel tests share: central started against the Odoo simulator with a
//! configuration of channel fakes, waits on what central read and what a fake shows, and the
//! length of the outage soaks.

#![allow(dead_code)]

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tally_tests::channels::shopify::ShopifyFake;
use tally_tests::channels::woocommerce::WooFake;
use tally_tests::odoo_sim::OdooSim;
use tally_tests::wait_until;
use tally_tests::{AgentProcess, CentralProcess};

pub const WAREHOUSE: &str = "WH";
pub const STOCK: &str = "WH/Stock";
pub const WAIT: Duration = Duration::from_secs(60);
/// How long a channel back from an outage may take to show the newest figures: its circuit
/// stays open up to 30 s and its backoff waits up to 30 s (the two overlap), then the push,
/// with room for a loaded machine.
pub const RECOVERY: Duration = Duration::from_secs(90);

/// Writes `secret` to `dir/name` with mode 0600, as central wants a channel's secret file.
fn secret_file(dir: &Path, name: &str, secret: &str) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let file = dir.join(name);
    std::fs::write(&file, format!("{secret}\n"))?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// A `tally-agent` in `dir/agent` for [`WAREHOUSE`], added to `central` as `agent_id` and
/// linked to it, taking scans with `scanner_token`.
pub async fn scanner_agent(
    dir: &Path,
    central: &CentralProcess,
    agent_id: &str,
    scanner_token: &str,
) -> anyhow::Result<AgentProcess> {
    let token = central.admin().add_agent(agent_id, WAREHOUSE).await?;
    AgentProcess::builder(dir.join("agent"))
        .token(scanner_token)
        .warehouse(WAREHOUSE)
        .agent_id(agent_id)
        .central(&central.sync_url(), &token, None)
        .spawn()
        .await
}

/// A `[[channels]]` table for the Shopify fake `shop`, named `name`, feeding [`WAREHOUSE`]
/// from its location `Main`, with `extra` lines (a buffer…) added.
pub fn shopify_channel(
    dir: &Path,
    name: &str,
    shop: &ShopifyFake,
    extra: &str,
) -> anyhow::Result<String> {
    let secret = secret_file(dir, &format!("{name}-token"), "shpat_test")?;
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

/// A `[[channels]]` table for the WooCommerce fake `woo` (key `key`, secret `secret`), named
/// `name`, feeding [`WAREHOUSE`], with `extra` lines (a buffer…) added.
pub fn woocommerce_channel(
    dir: &Path,
    name: &str,
    woo: &WooFake,
    (key, secret): (&str, &str),
    extra: &str,
) -> anyhow::Result<String> {
    let file = secret_file(dir, &format!("{name}-key"), &format!("{key}:{secret}"))?;
    Ok(format!(
        r#"
[[channels]]
name = "{name}"
kind = "woocommerce"
url = "{url}"
warehouses = ["{WAREHOUSE}"]
secret_file = "{secret}"
{extra}
"#,
        url = woo.url(),
        secret = file.display()
    ))
}

/// A scanner's pick of `qty` `sku` from [`STOCK`], as posted to an agent.
pub fn pick(id: &str, sku: &str, qty: &str) -> Value {
    json!({"id": id, "type": "pick", "sku": sku, "qty": qty, "location": STOCK})
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
    shop_shows_within(shop, sku, want, WAIT).await
}

/// [`shop_shows`], waiting up to `timeout`.
pub async fn shop_shows_within(
    shop: &ShopifyFake,
    sku: &str,
    want: i64,
    timeout: Duration,
) -> anyhow::Result<()> {
    wait_until(
        &format!("Shopify at {} to show {want} on hand of {sku}", shop.url()),
        timeout,
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

/// Waits until WooCommerce's `stock_quantity` of `sku` is `want`.
pub async fn woo_shows(woo: &WooFake, sku: &str, want: i64) -> anyhow::Result<()> {
    woo_shows_within(woo, sku, want, WAIT).await
}

/// [`woo_shows`], waiting up to `timeout`.
pub async fn woo_shows_within(
    woo: &WooFake,
    sku: &str,
    want: i64,
    timeout: Duration,
) -> anyhow::Result<()> {
    wait_until(
        &format!("WooCommerce to show {want} of {sku}"),
        timeout,
        || {
            let shown = woo.stock(sku);
            async move {
                Ok(match shown {
                    Some(s) if s == want => ControlFlow::Break(()),
                    other => ControlFlow::Continue(format!("stock_quantity {other:?}")),
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

/// Waits until central's availability of `sku` shows `on_hand` (read from Odoo).
pub async fn central_reads(
    central: &CentralProcess,
    sku: &str,
    on_hand: i64,
) -> anyhow::Result<()> {
    let admin = central.admin();
    let path = format!("/v1/availability?sku={sku}");
    let want = format!("\"on_hand\":\"{on_hand}\"");
    wait_until(
        &format!("central to read {on_hand} on hand of {sku}"),
        WAIT,
        || {
            let admin = admin.clone();
            let (path, want) = (path.clone(), want.clone());
            async move {
                let body = admin_get(&admin, &path).await?;
                Ok(if body.contains(&want) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(body)
                })
            }
        },
    )
    .await
}

/// How long a channel stays down in the outage tests, in seconds: `TALLY_CHANNEL_OUTAGE_SECS`.
/// Unset (CI): as long as a few changes and a central crash take, a few seconds. Set (a soak,
/// such as `600`): Odoo keeps changing for that long, half of it before central is SIGKILLed,
/// half after its restart, while the channel stays down.
pub const OUTAGE_ENV: &str = "TALLY_CHANNEL_OUTAGE_SECS";

pub fn outage() -> Duration {
    match std::env::var(OUTAGE_ENV) {
        Ok(secs) => Duration::from_secs(
            secs.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{OUTAGE_ENV} must be whole seconds, not {secs:?}")),
        ),
        Err(_) => Duration::ZERO,
    }
}

/// Sets Odoo's stock of CHAIR-OAK (and of LAMP-BRASS, if given) and waits until central read
/// the chairs.
pub async fn odoo_changes(
    sim: &OdooSim,
    central: &CentralProcess,
    chairs: i64,
    lamps: Option<i64>,
) -> anyhow::Result<()> {
    sim.set_on_hand("CHAIR-OAK", STOCK, None, chairs as f64)?;
    if let Some(lamps) = lamps {
        sim.set_on_hand("LAMP-BRASS", STOCK, None, lamps as f64)?;
    }
    central_reads(central, "CHAIR-OAK", chairs).await
}

/// What [`outage_through_a_crash`] went through.
pub struct Outage {
    /// Central, restarted after the SIGKILL.
    pub central: CentralProcess,
    /// Changes of Odoo's chairs central read during the outage.
    pub changes: usize,
    /// The chairs central had read last when it was killed (what its outbox held).
    pub chairs_at_kill: i64,
    pub took: Duration,
}

impl Outage {
    /// Checks what the channel was written of CHAIR-OAK after the outage (`after`, its writes
    /// since the outage began, less `buffer`): the newest value, at most preceded by the value
    /// queued when central was killed (the newest central knew, pushed before its first read
    /// of Odoo after the restart): nothing overtaken during the outage, nothing older after it.
    /// Prints what the soak went through.
    pub fn check_writes(
        &self,
        channel: &str,
        after: &[i64],
        buffer: i64,
        recovered_in: Duration,
    ) -> anyhow::Result<()> {
        let (changes, took) = (self.changes, self.took);
        let queued_at_kill = self.chairs_at_kill - buffer;
        anyhow::ensure!(
            after == [11 - buffer] || after == [queued_at_kill, 11 - buffer],
            "{changes} changes in {took:?} of outage, then {channel} written {after:?}"
        );
        println!(
            "outage of {took:?}: {changes} changes in Odoo, then {channel} written {after:?}, \
             {recovered_in:?} after it came back"
        );
        Ok(())
    }
}

/// The Odoo side of a channel outage, the channel down throughout: Odoo's stock of CHAIR-OAK
/// changes (and LAMP-BRASS's the first three times: 9, 8, 7), each change read by central, at
/// least three times and for half of [`outage`]; `before_kill` runs; central is SIGKILLed;
/// Odoo's chairs go to 11 while it is down; central restarts and, in a soak, Odoo keeps
/// changing for the rest of the outage, back to 11 at the end.
pub async fn outage_through_a_crash<F, Fut>(
    dir: &Path,
    sim: &OdooSim,
    config: &Path,
    central: CentralProcess,
    before_kill: F,
) -> anyhow::Result<Outage>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    const CHAIRS: [i64; 6] = [17, 12, 16, 14, 13, 15];
    let outage = outage();
    let since = std::time::Instant::now();
    let mut changes = 0;
    while changes < 3 || since.elapsed() < outage / 2 {
        let lamps = (changes < 3).then(|| 9 - changes as i64);
        odoo_changes(sim, &central, CHAIRS[changes % CHAIRS.len()], lamps).await?;
        changes += 1;
    }
    let chairs_at_kill = CHAIRS[(changes - 1) % CHAIRS.len()];
    before_kill().await?;
    central.kill9().await?;
    sim.set_on_hand("CHAIR-OAK", STOCK, None, 11.0)?;
    let central = start_central(dir, sim, config).await?;
    if since.elapsed() < outage {
        while since.elapsed() < outage {
            odoo_changes(sim, &central, CHAIRS[changes % CHAIRS.len()], None).await?;
            changes += 1;
        }
        odoo_changes(sim, &central, 11, None).await?;
    }
    Ok(Outage {
        central,
        changes,
        chairs_at_kill,
        took: since.elapsed(),
    })
}

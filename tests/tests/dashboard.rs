//! The dashboard in a real headless Chromium (Debian's `chromium`, driven over the DevTools
//! protocol): a person signs in with the read-only token by keyboard, sees one connected and one
//! disconnected agent, sees a SKU Odoo does not know parked once its event is journaled, cannot
//! retry it with the read-only token, retries it with the admin token once the product exists
//! in the Odoo simulator and sees it clear, and traces a scan to its Odoo picking. The page
//! stays within a phone's width. A screenshot is saved in the test's directory (kept when the
//! test fails, or with `TALLY_TEST_KEEP`); with `TALLY_UPDATE_SCREENSHOT=1` it replaces
//! docs/dashboard.png, the README's picture, instead: a test run leaves the tree as it was.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use tally_central::odoo::OdooConfig;
use tally_protocol::Secret;
use tally_tests::browser::Browser;
use tally_tests::odoo_sim::{OdooSim, SimConfig, Tracking, Version};
use tally_tests::{AgentProcess, CentralProcess, add_agent_offline, wait_synced, with_temp_dir};

const ADMIN_TOKEN: &str = "dashboard-admin-token-0123456789";
const READ_TOKEN: &str = "dashboard-read-token-0123456789";
const SCANNER_TOKEN: &str = "dashboard-scanner-token-0123456789";
const WAREHOUSE: &str = "WH";
const PAGE_WAIT: Duration = Duration::from_secs(60);

/// The text of the page element `selector` (empty when absent).
fn text(selector: &str) -> String {
    format!("(document.querySelector({selector:?}) || {{}}).textContent || ''")
}

/// The dashboard's dead-letter rows, as `warehouse|sku|events`.
const PARKED_ROWS: &str = "[...document.querySelectorAll('#dlq tbody tr')].filter(r => r.cells.length > 1).map(r => r.cells[0].textContent + '|' + r.cells[1].textContent + '|' + r.cells[2].textContent)";

async fn sign_in(page: &mut Browser, token: &str) -> anyhow::Result<()> {
    page.eval("if (document.getElementById('signin').hidden) document.getElementById('signout').click(); true")
        .await?;
    page.eval("document.getElementById('token').focus(); true")
        .await?;
    page.type_text(token).await?;
    page.press("Enter").await?;
    page.wait_for(
        "the page to show data",
        "document.body.dataset.loaded === 'true'",
        PAGE_WAIT,
    )
    .await?;
    Ok(())
}

/// Asks for a retry of `sku` from the page, with a reason typed into the form.
async fn retry_from_page(page: &mut Browser, sku: &str) -> anyhow::Result<()> {
    let click = format!(
        "(() => {{ const b = [...document.querySelectorAll('#dlq button[data-action=retry]')].find(b => b.dataset.sku === {sku:?}); if (!b) return false; b.click(); return true; }})()"
    );
    ensure!(
        page.eval(&click).await? == Value::Bool(true),
        "no Retry button for {sku}"
    );
    // The form takes the focus: the reason is typed, Enter confirms.
    page.wait_for(
        "the reason field to have focus",
        "document.activeElement && document.activeElement.id === 'dlq-reason'",
        PAGE_WAIT,
    )
    .await?;
    page.type_text(&format!("{sku} created in Odoo")).await?;
    page.press("Enter").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_agents_parked_skus_retries_and_traces() {
    with_temp_dir("dashboard", |dir| async move { scenario(&dir).await }).await;
}

async fn scenario(dir: &Path) -> anyhow::Result<()> {
    let sim = OdooSim::start(SimConfig::new(Version::V17)).await?;
    sim.add_product("CHAIR-OAK", Tracking::None)?;
    let odoo = OdooConfig {
        url: sim.url(),
        db: sim.db().to_owned(),
        login: sim.login().to_owned(),
        api_key: Secret::new(sim.api_key()),
        call_timeout: Duration::from_secs(60),
        api: Default::default(),
    };
    let central_dir = dir.join("central");
    let dock = add_agent_offline(&central_dir, ADMIN_TOKEN, "dock-agent", WAREHOUSE).await?;
    let yard = add_agent_offline(&central_dir, ADMIN_TOKEN, "yard-agent", WAREHOUSE).await?;
    let central = CentralProcess::builder(&central_dir)
        .admin_token(ADMIN_TOKEN)
        .arg("--read-token")
        .arg(READ_TOKEN)
        .arg("--merge-window")
        .arg("0s")
        .odoo(&odoo)
        .spawn()
        .await?;
    let agent = |name: &str, token: &str| {
        AgentProcess::builder(dir.join(name))
            .token(SCANNER_TOKEN)
            .warehouse(WAREHOUSE)
            .agent_id(name)
            .central(&central.sync_url(), token, None)
    };
    let dock_agent = agent("dock-agent", &dock).spawn().await?;
    let yard_agent = agent("yard-agent", &yard).spawn().await?;
    wait_synced(&yard_agent.client(), PAGE_WAIT).await?;
    yard_agent.terminate().await?;

    let scanner = dock_agent.client();
    let events = json!({"events": [
        {"id": "chair-1", "type": "receipt", "sku": "CHAIR-OAK", "qty": "4"},
    ]});
    ensure!(scanner.post_events(&events).await?.status == 201);
    wait_synced(&scanner, PAGE_WAIT).await?;

    let mut page = Browser::launch(1280, 1400).await?;
    page.navigate(&format!("{}/", central.admin_url())).await?;
    sign_in(&mut page, READ_TOKEN).await?;
    ensure!(page.eval(&text("#role")).await? == "read-only");
    let states = "[...document.querySelectorAll('#agents tbody tr')].map(r => r.cells[0].textContent + '=' + r.cells[2].textContent).join(',')";
    page.wait_for(
        "one connected and one disconnected agent",
        &format!("{states} === 'dock-agent=connected,yard-agent=disconnected'"),
        PAGE_WAIT,
    )
    .await?;
    ensure!(
        page.eval(&text("#dlq tbody")).await? == "Nothing is parked.",
        "nothing is parked yet"
    );

    // A SKU Odoo does not know: parked once its event is journaled and merged.
    let events = json!({"events": [
        {"id": "lamp-1", "type": "receipt", "sku": "LAMP-NEW", "qty": "2"},
    ]});
    ensure!(scanner.post_events(&events).await?.status == 201);
    page.wait_for(
        "the parked SKU on the page",
        &format!("{PARKED_ROWS}.join(',') === 'WH|LAMP-NEW|1'"),
        PAGE_WAIT,
    )
    .await?;
    ensure!(
        page.eval(&text("#dlq tbody"))
            .await?
            .as_str()
            .is_some_and(|t| t.contains("unknown-sku")),
        "the reason is shown"
    );

    // The read-only token cannot retry: the page says so and the SKU stays parked.
    retry_from_page(&mut page, "LAMP-NEW").await?;
    page.wait_for(
        "the refusal on the page",
        &format!(
            "{}.includes('read-only token cannot change')",
            text("#dlq-result")
        ),
        PAGE_WAIT,
    )
    .await?;
    let parked: Value = central.admin().get_json("/v1/dead-letters").await?;
    ensure!(parked["total"] == 1, "still parked: {parked}");

    // The admin token: the trace of the first scan shows its picking, then the retry clears
    // the parked SKU once the product exists in Odoo.
    sign_in(&mut page, ADMIN_TOKEN).await?;
    ensure!(page.eval(&text("#role")).await? == "admin");
    page.eval("document.getElementById('trace-agent').value = 'dock-agent'; document.getElementById('trace-id').value = 'chair-1'; document.querySelector('#trace-form button').click(); true").await?;
    let traced = page
        .wait_for(
            "the trace on the page",
            &format!("{t}.includes('merged into') && {t}", t = text("#trace")),
            PAGE_WAIT,
        )
        .await?;
    let picking = sim
        .pickings()
        .into_iter()
        .find(|p| p.moves.iter().any(|m| m.sku == "CHAIR-OAK"))
        .context("the simulator holds no picking of CHAIR-OAK")?;
    ensure!(picking.state == "done", "the picking is {}", picking.state);
    ensure!(
        traced
            .as_str()
            .is_some_and(|t| t.contains(&format!("into {} (done)", picking.name))),
        "the trace names picking {}: {traced}",
        picking.name
    );
    // A SKU's availability per warehouse, as the reader last read it from Odoo (the receipt
    // of 4 merged): asked again until the read has happened.
    page.eval("document.getElementById('availability-sku').value = 'CHAIR-OAK'; true")
        .await?;
    let row = page
        .wait_for(
            "CHAIR-OAK's availability in WH on the page",
            "(document.querySelector('#availability-form button').click(), \
             Array.from(document.querySelectorAll('#availability-warehouses tbody tr')) \
               .map((r) => Array.from(r.cells).map((c) => c.textContent).join('|')) \
               .find((r) => r.startsWith('WH|4|0|4|')) || false)",
            PAGE_WAIT,
        )
        .await?;
    ensure!(
        page.eval(&text("#availability-channels tbody")).await? == "No channels.",
        "central has no channels: {row}"
    );
    let screenshot = if std::env::var_os("TALLY_UPDATE_SCREENSHOT").is_some() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard.png")
    } else {
        dir.join("dashboard.png")
    };
    page.screenshot(&screenshot).await?;

    sim.add_product("LAMP-NEW", Tracking::None)?;
    retry_from_page(&mut page, "LAMP-NEW").await?;
    page.wait_for(
        "the retried SKU to clear from the page",
        "document.querySelector('#dlq tbody').textContent === 'Nothing is parked.'",
        PAGE_WAIT,
    )
    .await?;
    ensure!(
        sim.on_hand("LAMP-NEW", "WH/Stock") == 2.0,
        "the retried receipt is in Odoo"
    );
    let audit: Value = central.admin().get_json("/v1/audit").await?;
    ensure!(
        audit["entries"][0]["action"] == "dead-letter-retry"
            && audit["entries"][0]["role"] == "admin"
            && audit["entries"][0]["reason"] == "LAMP-NEW created in Odoo",
        "the retry is audited: {audit}"
    );

    // A phone: nothing wider than the screen (tables scroll inside their own box).
    page.viewport(390, 844, true).await?;
    let width = page.eval("document.documentElement.scrollWidth").await?;
    ensure!(
        width.as_u64().is_some_and(|w| w <= 390),
        "the page is {width} px wide on a 390 px phone"
    );
    // The token never reached a URL or the page's text.
    let leaked = page
        .eval(&format!("location.href.includes({ADMIN_TOKEN:?}) || document.body.innerText.includes({ADMIN_TOKEN:?})"))
        .await?;
    ensure!(
        leaked == Value::Bool(false),
        "the token shows in the URL or the page"
    );
    Ok(())
}

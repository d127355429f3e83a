//! Operating a running central from the command line: the admin listener served over TLS
//! (`--admin-tls`, the sync listener's certificate), the read-only token enough for every read
//! command (`status`, `agent list`, `trace`, `dlq list`, `audit`) and refused for a change, the
//! same views as tables and as `--json`, and plain HTTP or an unknown CA refused.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use tally_tests::central::central_binary;
use tally_tests::{
    AgentProcess, CentralProcess, add_agent_offline, gen_cert, wait_synced, with_temp_dir,
};

const ADMIN_TOKEN: &str = "ops-admin-token-0123456789";
const READ_TOKEN: &str = "ops-read-token-0123456789";
const SCANNER_TOKEN: &str = "ops-scanner-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_only_token_runs_every_read_command_over_the_tls_admin_listener() {
    with_temp_dir("operations", |dir| async move { scenario(&dir).await }).await;
}

async fn scenario(dir: &Path) -> anyhow::Result<()> {
    let tls = gen_cert(&dir.join("tls")).await?;
    let central_dir = dir.join("central");
    let token = add_agent_offline(&central_dir, ADMIN_TOKEN, "dock-agent", "WH").await?;
    let central = CentralProcess::builder(&central_dir)
        .admin_token(ADMIN_TOKEN)
        .tls(&tls)
        .arg("--admin-tls")
        .arg("--read-token")
        .arg(READ_TOKEN)
        .spawn()
        .await?;
    let admin_url = central.admin_url().to_owned();
    ensure!(
        admin_url.starts_with("https://"),
        "the admin API is {admin_url}"
    );
    let admin_addr = admin_url.trim_start_matches("https://").to_owned();
    let agent = AgentProcess::builder(dir.join("agent"))
        .token(SCANNER_TOKEN)
        .warehouse("WH")
        .agent_id("dock-agent")
        .central(&central.sync_url(), &token, Some(&tls.ca))
        .spawn()
        .await?;
    let events = json!({"events": [{"id": "scan-1", "type": "receipt", "sku": "S-1", "qty": "2"}]});
    ensure!(agent.client().post_events(&events).await?.status == 201);
    wait_synced(&agent.client(), Duration::from_secs(60)).await?;

    // tally-central COMMAND with the read-only token and the CA, as an operator would.
    let cli = |args: &[&str]| {
        let mut command =
            std::process::Command::new(central_binary().expect("tally-central is built"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TALLY_") {
                command.env_remove(name);
            }
        }
        command
            .args(&args[..1])
            .arg("--data-dir")
            .arg(&central_dir)
            .args([
                "--admin-listen",
                &admin_addr,
                "--admin-tls",
                "--read-token",
                READ_TOKEN,
            ])
            .arg("--admin-ca-file")
            .arg(&tls.ca)
            .args(&args[1..])
            .output()
            .expect("tally-central runs")
    };
    let run = |args: &[&str]| -> anyhow::Result<String> {
        let output = cli(args);
        ensure!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let status = run(&["status"])?;
    ensure!(
        status.contains("(running)") && status.contains("dock-agent  WH         connected"),
        "{status}"
    );
    ensure!(
        status.contains("not configured: central journals without merging"),
        "{status}"
    );
    let status: Value = serde_json::from_str(&run(&["status", "--json"])?)?;
    ensure!(
        status["running"] == true && status["agents"][0]["connected"] == true,
        "{status}"
    );
    let trace = run(&["trace", "--agent", "dock-agent", "--id", "scan-1"])?;
    ensure!(
        trace.starts_with("agent dock-agent, id scan-1: journaled"),
        "{trace}"
    );
    ensure!(
        trace.contains("central merges nothing: no Odoo is configured"),
        "{trace}"
    );
    let by_seq: Value = serde_json::from_str(&run(&[
        "trace",
        "--agent",
        "dock-agent",
        "--seq",
        "1",
        "--json",
    ])?)?;
    ensure!(
        by_seq["event"]["id"] == "scan-1" && by_seq["seq"] == 1,
        "{by_seq}"
    );
    ensure!(run(&["dlq", "list"])? == "no events are parked\n");
    ensure!(run(&["agent", "list"])?.contains("dock-agent"));
    let audit = run(&["audit"])?;
    ensure!(
        audit.contains("agent-add") && audit.contains("local"),
        "{audit}"
    );

    // A change needs the admin token.
    let refused = cli(&["agent", "add", "yard-agent", "--warehouse", "WH"]);
    ensure!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    ensure!(stderr.contains("give the admin token"), "{stderr}");

    // Plain HTTP, or a client that does not trust the CA, gets nothing.
    let plain = reqwest::get(format!("http://{admin_addr}/healthz")).await;
    ensure!(
        plain.is_err() || !plain.as_ref().is_ok_and(|r| r.status().is_success()),
        "plain HTTP answered"
    );
    let untrusted = reqwest::get(format!("{admin_url}/healthz")).await;
    ensure!(untrusted.is_err(), "a client without the CA was answered");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&tls.ca)?)?;
    let trusted = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()?
        .get(format!("{admin_url}/v1/whoami"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .context("the admin API over TLS")?;
    ensure!(trusted.json::<Value>().await?["role"] == "read");
    Ok(())
}

//! Guards against a restored agent backup colliding with the log central already holds (issue
//! 14, item 5): the agent syncs a log, is backed up while it runs, syncs more events under the
//! same log, then is stopped and restored from the backup. The restored log must get a new log
//! id, so the events it stores next are journaled under it, not dropped by central as
//! duplicates of the old log's seqs; the old log stays in central's journal as it was.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use tally_tests::{
    AgentProcess, CentralBuilder, TEST_TOKEN, agent_binary, check_journal, event_for_id, export,
    wait_synced, with_temp_dir,
};

const SYNC_DEADLINE: Duration = Duration::from_secs(60);

async fn post(agent: &AgentProcess, ids: &[&str]) -> anyhow::Result<()> {
    let events: Vec<Value> = ids.iter().map(|id| event_for_id(id)).collect();
    let answer = agent
        .client()
        .post_events(&json!({ "events": events }))
        .await?;
    ensure!(answer.status == 201, "{}: {}", answer.status, answer.body);
    Ok(())
}

async fn agent_cli(args: &[&std::ffi::OsStr]) -> anyhow::Result<String> {
    let output = tokio::process::Command::new(agent_binary()?)
        .args(args)
        .env_remove("TALLY_CONFIG")
        .env_remove("TALLY_DATA_DIR")
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    ensure!(output.status.success(), "tally-agent {args:?}: {stderr}");
    Ok(stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_backup_syncs_as_a_new_log() {
    with_temp_dir("agent-restore", |base| async move { restored(&base).await }).await;
}

async fn restored(base: &Path) -> anyhow::Result<()> {
    let central = CentralBuilder::new(base.join("central")).spawn().await?;
    let admin = central.admin();
    let agent_id = "wh-restored";
    let token = admin.add_agent(agent_id, "WH").await?;
    let data = base.join("agent");
    let builder = AgentProcess::builder(&data)
        .agent_id(agent_id)
        .warehouse("WH")
        .central(&central.sync_url(), &token, None);

    // Three events synced; a restart persists central's acknowledgement of all three.
    let agent = builder.clone().spawn().await?;
    post(&agent, &["r-1", "r-2", "r-3"]).await?;
    wait_synced(&agent.client(), SYNC_DEADLINE).await?;
    ensure!(agent.terminate().await?.success());
    let agent = builder.clone().spawn().await?;
    let status = wait_synced(&agent.client(), SYNC_DEADLINE).await?;
    let old_log_id = status["log_id"].as_str().context("no log_id")?.to_owned();

    // Backed up while it runs, through its API.
    let token_file = base.join("scanner.token");
    std::fs::write(&token_file, TEST_TOKEN)?;
    let backup = base.join("agent.backup");
    agent_cli(&[
        "backup".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--url".as_ref(),
        agent.base_url().as_ref(),
        "--scanner-token-file".as_ref(),
        token_file.as_os_str(),
        "--to".as_ref(),
        backup.as_os_str(),
    ])
    .await?;

    // Three more under the old log (seqs 4 to 6), then the disk is lost and the backup restored.
    post(&agent, &["r-4", "r-5", "r-6"]).await?;
    wait_synced(&agent.client(), SYNC_DEADLINE).await?;
    ensure!(agent.terminate().await?.success());
    let old_log = export(&data).await?;
    let said = agent_cli(&[
        "restore".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--from".as_ref(),
        backup.as_os_str(),
    ])
    .await?;
    ensure!(
        said.contains("0 events to send to central as a new log, 3 it had acknowledged left out"),
        "{said}"
    );

    let agent = builder.spawn().await?;
    post(&agent, &["r-7"]).await?;
    let status = wait_synced(&agent.client(), SYNC_DEADLINE).await?;
    let new_log_id = status["log_id"].as_str().context("no log_id")?.to_owned();
    ensure!(new_log_id != old_log_id, "the restored log kept its log id");
    ensure!(
        status["last_seq"] == 1,
        "the restored log ends at {}",
        status["last_seq"]
    );

    let (_, new_log) = agent.client().read_all_events().await?;
    let new_journal = admin.journal(agent_id, &new_log_id).await?;
    check_journal(&new_log, &new_journal).context("the restored log")?;
    ensure!(
        new_journal.len() == 1 && new_journal[0]["id"] == "r-7",
        "central journaled {new_journal:?} under the restored log"
    );
    let old_journal = admin.journal(agent_id, &old_log_id).await?;
    ensure!(
        old_journal.len() == 6 && old_log.len() == 6,
        "the old log: {} journaled, {} exported",
        old_journal.len(),
        old_log.len()
    );
    ensure!(agent.terminate().await?.success());
    Ok(())
}

//! Guards against a stopped agent forgetting central's last acknowledgement (found by the
//! package install test, issue 14): SIGTERM dropped the sync session before it wrote the ack
//! down, so a backup made after the stop counted events central had acknowledged as
//! unacknowledged, and restoring it would have sent them to central again under the new log id.

use std::path::Path;
use std::time::Duration;

use anyhow::ensure;
use serde_json::{Value, json};
use tally_agent::log::Log;
use tally_tests::{AgentProcess, CentralBuilder, event_for_id, wait_synced, with_temp_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_agent_has_recorded_centrals_last_ack() {
    with_temp_dir("agent-stop-ack", |base| async move { stopped(&base).await }).await;
}

async fn stopped(base: &Path) -> anyhow::Result<()> {
    let central = CentralBuilder::new(base.join("central")).spawn().await?;
    let token = central.admin().add_agent("wh-stop", "WH").await?;
    let data = base.join("agent");
    let agent = AgentProcess::builder(&data)
        .agent_id("wh-stop")
        .warehouse("WH")
        .central(&central.sync_url(), &token, None)
        .spawn()
        .await?;
    let events: Vec<Value> = ["s-1", "s-2", "s-3"]
        .iter()
        .map(|id| event_for_id(id))
        .collect();
    let answer = agent
        .client()
        .post_events(&json!({ "events": events }))
        .await?;
    ensure!(answer.status == 201, "{}: {}", answer.status, answer.body);
    wait_synced(&agent.client(), Duration::from_secs(60)).await?;
    // Stopped at once: no later message from central gives the session another chance to
    // write the ack down.
    ensure!(
        agent.terminate().await?.success(),
        "the agent did not exit 0"
    );
    let recorded = Log::open(&data)?.status()?.acked_seq;
    ensure!(
        recorded == 3,
        "the stopped agent's log records ack {recorded}, not 3"
    );
    Ok(())
}

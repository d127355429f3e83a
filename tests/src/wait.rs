//! Waiting for an agent: [`wait_synced`] and the generations of a restarted agent process.
//! The generic polling ([`wait_until`], [`wait_for_acks`]) is `tally_fakes::wait`'s,
//! re-exported here.

use std::ops::ControlFlow;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

pub use tally_fakes::wait::{POLL_INTERVAL, wait_for_acks, wait_until};

/// Waits until the agent behind `client` is connected to central and reports every event of
/// its log acknowledged (`acked_seq == last_seq` in `GET /v1/status`), and returns that
/// status.
pub async fn wait_synced(
    client: &crate::AgentClient,
    deadline: Duration,
) -> anyhow::Result<serde_json::Value> {
    wait_until(
        &format!("the agent at {} to sync its whole log", client.base_url()),
        deadline,
        || async {
            let status = client.status().await?;
            let synced = status["connected"] == true
                && status["acked_seq"].as_u64().is_some()
                && status["acked_seq"] == status["last_seq"];
            Ok(if synced {
                ControlFlow::Break(status)
            } else {
                ControlFlow::Continue(status.to_string())
            })
        },
    )
    .await
}

/// One run of an agent process that a test kills and restarts: which run, and a client for it.
#[derive(Debug)]
pub struct Generation {
    pub number: u64,
    pub client: crate::AgentClient,
}

/// The agent process clients should talk to: `None` while it is down.
pub type Current = Option<std::sync::Arc<Generation>>;

/// The agent process to talk to: the current one, or (after a failure on generation `after`) a
/// newer one, within `deadline`.
pub async fn next_generation(
    current: &mut watch::Receiver<Current>,
    after: Option<u64>,
    deadline: Duration,
) -> anyhow::Result<std::sync::Arc<Generation>> {
    let wanted = |g: &Current| {
        g.as_ref()
            .is_some_and(|g| after.is_none_or(|after| g.number > after))
    };
    let generation = tokio::time::timeout(deadline, current.wait_for(wanted))
        .await
        .with_context(|| format!("no (new) agent process came up within {deadline:?}"))?
        .context("the controller is gone")?
        .clone();
    generation.context("unreachable: waited for Some")
}

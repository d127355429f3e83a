//! Waiting for an observable condition, with a deadline instead of a guessed sleep.

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

/// How often [`wait_until`] looks again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Calls `check` every [`POLL_INTERVAL`] until it returns `Ok(ControlFlow::Break(value))`, and
/// returns the value. `Ok(ControlFlow::Continue(seen))` means "not yet", with a description of
/// what `check` saw; an `Err` fails at once. When `deadline` passes first, fails naming `what`
/// and the last `seen`, so that a timeout says where things stood, not only that they did not
/// happen.
pub async fn wait_until<T, F, Fut>(
    what: &str,
    deadline: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<ControlFlow<T, String>>>,
{
    let until = Instant::now() + deadline;
    let mut ticks = tokio::time::interval(POLL_INTERVAL);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seen = String::from("(nothing yet)");
    loop {
        ticks.tick().await;
        let remaining = until.saturating_duration_since(Instant::now());
        // A check that itself hangs (a request to a stuck process) counts against the deadline.
        match tokio::time::timeout(remaining.max(Duration::from_millis(1)), check()).await {
            Ok(result) => match result.with_context(|| format!("while waiting for {what}"))? {
                ControlFlow::Break(value) => return Ok(value),
                ControlFlow::Continue(now) => seen = now,
            },
            Err(_) => bail!(
                "{what}: not within {deadline:?} (the last check did not finish); last seen: {seen}"
            ),
        }
        if Instant::now() >= until {
            bail!("{what}: not within {deadline:?}; last seen: {seen}");
        }
    }
}

/// Waits (at most `deadline`) until the clients' count of acknowledged events in `acked` has
/// grown by `more` from where it stands now, or a client has set `failed` (an error, pointing
/// at the client's own error, which the test reports).
pub async fn wait_for_acks(
    acked: &mut watch::Receiver<u64>,
    failed: &AtomicBool,
    more: u64,
    deadline: Duration,
) -> anyhow::Result<()> {
    let target = *acked.borrow_and_update() + more;
    tokio::time::timeout(
        deadline,
        acked.wait_for(|n| *n >= target || failed.load(Ordering::SeqCst)),
    )
    .await
    .with_context(|| format!("fewer than {more} events were acknowledged within {deadline:?}"))?
    .context("the clients' counter is gone")?;
    ensure!(
        !failed.load(Ordering::SeqCst),
        "a client failed (see below)"
    );
    Ok(())
}

//! Guards against an orderly stop (SIGTERM, as from systemd) failing or losing acknowledged
//! events while clients are still posting.
//!
//! Eight clients post single events and small batches to a real `tally-agent` process; after a
//! random number of acknowledged events it gets SIGTERM. It must exit with status 0, every
//! event it acknowledged must be in the log at its seq, events of requests it refused as
//! "shutting down" must not be, and the log must read back as seqs 1..=N holding exactly what
//! the clients sent.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tally_tests::{
    Acceptance, AgentClient, AgentProcess, EventRequest, Expectations, TEST_TOKEN, check_log,
    event_for_id, export, test_seed, with_agent_data_dir,
};
use tokio::sync::watch;

const CLIENTS: usize = 8;
/// SIGTERM comes after this many acknowledged events (a number from the range).
const MIN_TERM_AFTER: u64 = 200;
const MAX_TERM_AFTER: u64 = 2000;
/// The longest any one wait may take before the test fails instead of hanging.
const WAIT: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Shared {
    acked: watch::Sender<u64>,
    /// Set just before SIGTERM is sent: from then on a failed request is expected.
    terminating: AtomicBool,
    /// Requests answered 2xx after SIGTERM was sent.
    answered_after_term: AtomicU64,
    failed: AtomicBool,
}

#[derive(Debug, Default)]
struct ClientReport {
    sent: Vec<String>,
    acked: HashMap<String, u64>,
    refused: Vec<String>,
    unanswered: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_posting_exits_cleanly_and_keeps_acknowledged_events() {
    with_agent_data_dir("tally-agent-sigterm-", |data_dir| async move {
        run(&data_dir).await
    })
    .await;
}

async fn run(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let seed = test_seed()?;
    let mut rng = StdRng::seed_from_u64(seed);
    let agent = AgentProcess::spawn(data_dir, TEST_TOKEN).await?;
    let (acked_tx, mut acked_rx) = watch::channel(0u64);
    let shared = Arc::new(Shared {
        acked: acked_tx,
        terminating: AtomicBool::new(false),
        answered_after_term: AtomicU64::new(0),
        failed: AtomicBool::new(false),
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let shared = Arc::clone(&shared);
            let http = agent.client();
            let seed = seed.wrapping_add(n as u64 + 1);
            tokio::spawn(async move {
                let result = client(n, seed, http, &shared).await;
                if result.is_err() {
                    shared.failed.store(true, Ordering::SeqCst);
                    shared.acked.send_modify(|_| {});
                }
                result
            })
        })
        .collect();

    let term_after = rng.random_range(MIN_TERM_AFTER..=MAX_TERM_AFTER);
    tokio::time::timeout(
        WAIT,
        acked_rx.wait_for(|n| *n >= term_after || shared.failed.load(Ordering::SeqCst)),
    )
    .await
    .with_context(|| format!("fewer than {term_after} events were acknowledged within {WAIT:?}"))?
    .context("the clients' counter is gone")?;
    let acked_at_term = *acked_rx.borrow();

    shared.terminating.store(true, Ordering::SeqCst);
    let term_sent = Instant::now();
    let status = agent.terminate().await?;
    let shutdown = term_sent.elapsed();

    let mut reports = Vec::with_capacity(CLIENTS);
    for (n, task) in clients.into_iter().enumerate() {
        match tokio::time::timeout(WAIT, task).await {
            Ok(Ok(Ok(report))) => reports.push(report),
            Ok(Ok(Err(error))) => bail!("client {n} failed: {error:#}"),
            Ok(Err(panic)) => bail!("client {n} panicked: {panic}"),
            Err(_) => bail!("client {n} did not finish within {WAIT:?}"),
        }
    }
    ensure!(
        status.success(),
        "the agent exited with {status} after SIGTERM"
    );

    let exported = export(data_dir).await?;
    let mut expected = Expectations::default();
    let mut unanswered = 0;
    for report in reports {
        for id in report.sent {
            let event = event_for_id(&id);
            ensure!(
                expected.sent.insert(id.clone(), event).is_none(),
                "two clients sent id {id}"
            );
        }
        expected.acked.extend(report.acked);
        expected.refused.extend(report.refused);
        unanswered += report.unanswered;
    }
    let check = check_log(&exported, &expected)?;
    println!(
        "agent_shutdown (seed {seed}): SIGTERM after {acked_at_term} acknowledged events; exited \
         with {status} after {:.2} s; {} requests answered 2xx after SIGTERM, {} refused as \
         shutting down, {unanswered} unanswered; {} events sent, {} acknowledged, {} stored ({} \
         of them never acknowledged), {:.1} s",
        shutdown.as_secs_f64(),
        shared.answered_after_term.load(Ordering::SeqCst),
        expected.refused.len(),
        expected.sent.len(),
        check.acked,
        check.stored,
        check.stored_unacked,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One client: posts fresh requests until the agent stops answering (after SIGTERM).
async fn client(
    n: usize,
    seed: u64,
    http: AgentClient,
    shared: &Shared,
) -> anyhow::Result<ClientReport> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut report = ClientReport::default();
    let mut next_id = 0;
    let prefix = format!("c{n}");
    loop {
        let request = EventRequest::random(&prefix, &mut next_id, &mut rng);
        report.sent.extend(request.ids.iter().cloned());
        let answer = match http.post_events(&request.body).await {
            Ok(answer) => answer,
            Err(error) => {
                ensure!(
                    shared.terminating.load(Ordering::SeqCst),
                    "client {n}: a request failed before SIGTERM: {error}"
                );
                // The agent is going away: this request's outcome is unknown, and the client
                // stops.
                report.unanswered += 1;
                return Ok(report);
            }
        };
        if answer.status == 503 && answer.body["error"]["code"] == "shutting_down" {
            ensure!(
                shared.terminating.load(Ordering::SeqCst),
                "client {n}: the agent refused as shutting down before SIGTERM"
            );
            // "nothing was stored": checked against the log.
            report.refused.extend(request.ids);
            return Ok(report);
        }
        let acceptance = request.acceptance(&answer)?;
        let Acceptance::Stored(seqs) = acceptance else {
            bail!(
                "a first send of {:?} was answered as a duplicate",
                request.ids
            );
        };
        if shared.terminating.load(Ordering::SeqCst) {
            shared.answered_after_term.fetch_add(1, Ordering::SeqCst);
        }
        for (id, seq) in request.ids.iter().zip(seqs) {
            report.acked.insert(id.clone(), seq);
        }
        let count = request.ids.len() as u64;
        shared.acked.send_modify(|acked| *acked += count);
    }
}

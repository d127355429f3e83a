//! Guards against a crash (SIGKILL: power cut, OOM killer) losing, renumbering, duplicating or
//! tearing acknowledged events, and against retries of unanswered requests storing twice.
//!
//! Sixteen clients post single events and small batches to a real `tally-agent` process while
//! it is killed with SIGKILL at random points (after a random number of further acknowledged
//! events) and restarted on the same data directory. Clients resend every request whose answer
//! was lost. At the end the log, read over HTTP and by `tally-agent export`, must hold every
//! acknowledged event once, at the seq it was acknowledged with, with seqs 1..=N and every
//! event exactly as a client sent it.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tally_tests::{
    Acceptance, AgentProcess, Current, EventRequest, Expectations, Generation, TEST_TOKEN,
    check_log, event_for_id, export, next_generation, test_seed, wait_for_acks,
    with_agent_data_dir,
};
use tokio::sync::watch;

const CLIENTS: usize = 16;
/// SIGKILL rounds: a number from this range.
const MIN_ROUNDS: usize = 5;
const MAX_ROUNDS: usize = 8;
/// Each kill comes after this many more acknowledged events: one kill in four early (while
/// the clients are still resending what the last kill left unanswered), the others later.
const EARLY_KILL_AFTER: std::ops::RangeInclusive<u64> = 0..=40;
const KILL_AFTER: std::ops::RangeInclusive<u64> = 100..=3000;
/// Acknowledged events after the last restart, before the clients stop.
const FINAL_EVENTS: u64 = 1000;
/// The longest any one wait may take before the test fails instead of hanging.
const WAIT: Duration = Duration::from_secs(60);
/// A request resent this often without an answer fails the test.
const MAX_UNANSWERED: u32 = 10;

#[derive(Debug)]
struct Shared {
    /// Events acknowledged so far (each counted once per acknowledging answer).
    acked: watch::Sender<u64>,
    max_acked_seq: AtomicU64,
    stop: AtomicBool,
    failed: AtomicBool,
}

#[derive(Debug, Default)]
struct ClientReport {
    sent: Vec<String>,
    acked: HashMap<String, u64>,
    requests: u64,
    /// Requests whose first send got no answer.
    unanswered: u64,
    /// Resends answered 200 (already stored) and 201 (stored now).
    retried_duplicate: u64,
    retried_stored: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_repeated_sigkill() {
    with_agent_data_dir("tally-agent-crash-", |data_dir| async move {
        run(&data_dir).await
    })
    .await;
}

async fn run(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let seed = test_seed()?;
    let mut rng = StdRng::seed_from_u64(seed);
    let rounds = rng.random_range(MIN_ROUNDS..=MAX_ROUNDS) * tally_tests::soak_factor()?;

    let mut agent = AgentProcess::spawn(data_dir, TEST_TOKEN).await?;
    let log_id = agent.client().status().await?["log_id"]
        .as_str()
        .context("no log_id in /v1/status")?
        .to_owned();
    let (current_tx, current_rx) = watch::channel::<Current>(Some(Arc::new(Generation {
        number: 0,
        client: agent.client(),
    })));
    let (acked_tx, mut acked_rx) = watch::channel(0u64);
    let shared = Arc::new(Shared {
        acked: acked_tx,
        max_acked_seq: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        failed: AtomicBool::new(false),
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let shared = Arc::clone(&shared);
            let current = current_rx.clone();
            let seed = seed.wrapping_add(n as u64 + 1);
            tokio::spawn(async move {
                let result = client(n, seed, current, &shared).await;
                if result.is_err() {
                    shared.failed.store(true, Ordering::SeqCst);
                    shared.acked.send_modify(|_| {});
                }
                result
            })
        })
        .collect();

    let mut kills = 0;
    let mut outcome: anyhow::Result<()> = Ok(());
    for round in 1..=rounds {
        let more = if rng.random_bool(0.25) {
            rng.random_range(EARLY_KILL_AFTER)
        } else {
            rng.random_range(KILL_AFTER)
        };
        if let Err(error) = wait_for_acks(&mut acked_rx, &shared.failed, more, WAIT).await {
            outcome = Err(error.context(format!("before kill {round}")));
            break;
        }
        // Clients that fail from here on wait for the next generation before resending.
        current_tx.send_replace(None);
        let status = agent.kill9().await?;
        kills += 1;
        ensure!(
            status.signal() == Some(rustix::process::Signal::KILL.as_raw()),
            "the agent was killed with SIGKILL but exited with {status}"
        );
        agent = AgentProcess::spawn(data_dir, TEST_TOKEN)
            .await
            .with_context(|| format!("restarting after kill {round}"))?;
        // Every answer read so far came from a process that is now dead; its events must be
        // on disk. (Read the maximum first: the new process may acknowledge more meanwhile.)
        let max_acked = shared.max_acked_seq.load(Ordering::SeqCst);
        let status = agent.client().status().await?;
        ensure!(
            status["log_id"].as_str() == Some(log_id.as_str()),
            "the log id changed across a restart: {status}"
        );
        let last_seq = status["last_seq"].as_u64().unwrap_or(0);
        ensure!(
            last_seq >= max_acked,
            "after kill {round} the log ends at seq {last_seq}, but seq {max_acked} was acknowledged"
        );
        current_tx.send_replace(Some(Arc::new(Generation {
            number: round as u64,
            client: agent.client(),
        })));
    }
    if outcome.is_ok() {
        outcome = wait_for_acks(&mut acked_rx, &shared.failed, FINAL_EVENTS, WAIT)
            .await
            .context("after the last restart");
    }
    shared.stop.store(true, Ordering::SeqCst);

    let mut reports = Vec::with_capacity(CLIENTS);
    for (n, task) in clients.into_iter().enumerate() {
        match tokio::time::timeout(WAIT, task).await {
            Ok(Ok(Ok(report))) => reports.push(report),
            Ok(Ok(Err(error))) => bail!("client {n} failed: {error:#}"),
            Ok(Err(panic)) => bail!("client {n} panicked: {panic}"),
            Err(_) => bail!("client {n} did not finish within {WAIT:?}"),
        }
    }
    outcome?;

    let client = agent.client();
    let (read_log_id, via_http) = client.read_all_events().await?;
    ensure!(
        read_log_id == log_id,
        "GET /v1/events reports log id {read_log_id}, not {log_id}"
    );
    let status = agent.terminate().await?;
    ensure!(
        status.success(),
        "the agent exited with {status} after SIGTERM"
    );
    let exported = export(data_dir).await?;
    ensure!(
        exported.len() == via_http.len(),
        "export printed {} events, GET /v1/events returned {}",
        exported.len(),
        via_http.len()
    );
    for (line, read) in exported.iter().zip(&via_http) {
        let mut line = line.clone();
        let exported_log_id = line
            .as_object_mut()
            .and_then(|o| o.remove("log_id"))
            .unwrap_or(Value::Null);
        ensure!(
            exported_log_id.as_str() == Some(log_id.as_str()) && &line == read,
            "export and GET /v1/events disagree:\n  export: {line} (log id {exported_log_id})\n  GET:    {read}"
        );
    }

    let mut expected = Expectations::default();
    let mut totals = ClientReport::default();
    for report in reports {
        for id in report.sent {
            let event = event_for_id(&id);
            ensure!(
                expected.sent.insert(id.clone(), event).is_none(),
                "two clients sent id {id}"
            );
        }
        expected.acked.extend(report.acked);
        totals.requests += report.requests;
        totals.unanswered += report.unanswered;
        totals.retried_duplicate += report.retried_duplicate;
        totals.retried_stored += report.retried_stored;
    }
    let check = check_log(&exported, &expected)?;
    println!(
        "agent_crash (seed {seed}): {kills} SIGKILL rounds, {} requests ({} unanswered, resent: \
         {} found stored, {} stored anew), {} events sent, {} acknowledged, {} stored ({} of them \
         never acknowledged), {:.1} s",
        totals.requests,
        totals.unanswered,
        totals.retried_duplicate,
        totals.retried_stored,
        expected.sent.len(),
        check.acked,
        check.stored,
        check.stored_unacked,
        started.elapsed().as_secs_f64()
    );
    ensure!(kills == rounds, "only {kills} of {rounds} kills happened");
    // Sixteen clients post back to back: a kill that catches no request in flight every time
    // means the test no longer tests what it claims to.
    ensure!(
        totals.unanswered > 0,
        "no request was in flight at any of the {kills} kills"
    );
    Ok(())
}

/// One client: posts fresh requests until told to stop, and resends a request whose answer
/// was lost (to the next agent process) until it gets one.
async fn client(
    n: usize,
    seed: u64,
    mut current: watch::Receiver<Current>,
    shared: &Shared,
) -> anyhow::Result<ClientReport> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut report = ClientReport::default();
    let mut next_id = 0;
    let mut pending: Option<EventRequest> = None;
    let prefix = format!("c{n}");
    loop {
        let mut request = match pending.take() {
            Some(request) => request,
            None if shared.stop.load(Ordering::SeqCst) => break,
            None => {
                let request = EventRequest::random(&prefix, &mut next_id, &mut rng);
                report.sent.extend(request.ids.iter().cloned());
                report.requests += 1;
                request
            }
        };
        let generation = next_generation(&mut current, None, WAIT).await?;
        match generation.client.post_events(&request.body).await {
            Ok(answer) => {
                let acceptance = request.acceptance(&answer)?;
                match (&acceptance, request.unanswered) {
                    (Acceptance::Stored(_), 0) => {}
                    (Acceptance::Stored(_), _) => report.retried_stored += 1,
                    (Acceptance::Duplicate(_), 0) => {
                        bail!(
                            "a first send of {:?} was answered as a duplicate",
                            request.ids
                        )
                    }
                    (Acceptance::Duplicate(_), _) => report.retried_duplicate += 1,
                }
                for (id, &seq) in request.ids.iter().zip(acceptance.seqs()) {
                    if let Some(before) = report.acked.insert(id.clone(), seq) {
                        bail!("id {id} was acknowledged twice (seq {before}, then {seq})");
                    }
                    shared.max_acked_seq.fetch_max(seq, Ordering::SeqCst);
                }
                let count = request.ids.len() as u64;
                shared.acked.send_modify(|acked| *acked += count);
            }
            Err(error) => {
                if request.unanswered == 0 {
                    report.unanswered += 1;
                }
                request.unanswered += 1;
                ensure!(
                    request.unanswered <= MAX_UNANSWERED,
                    "request {:?} got no answer {MAX_UNANSWERED} times; last: {error}",
                    request.ids
                );
                pending = Some(request);
                // The agent is (being) killed: resend to the next one. An error from a live
                // agent shows up as this wait timing out.
                next_generation(&mut current, Some(generation.number), WAIT)
                    .await
                    .with_context(|| format!("client {n}: after a failed request ({error})"))?;
            }
        }
    }
    Ok(report)
}

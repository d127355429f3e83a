//! Guards against the agent ⇄ central sync losing, duplicating, renumbering or altering events
//! when links break or lag and either side is SIGKILLed mid-stream.
//!
//! Three agents (each its own process and data directory, registered at central) sync over TLS
//! to one central, each through its own [`Proxy`], while client tasks post single events and
//! small batches to every agent without pause (resending any request whose answer a killed
//! agent lost). Faults come in a random order, each after a random number of further events
//! acknowledged by the agents, and each only once every agent affected by the previous one has
//! reconnected and central has acknowledged new events from it: links cut at once (several
//! times), links slowed down, one agent's link down and its reconnects refused (an outage),
//! central SIGKILLed and restarted on the same data directory on a
//! new port (twice; the proxies are retargeted, and central must still hold everything it had
//! acknowledged before the kill), an agent SIGKILLed and restarted (its log must still hold
//! everything it had acknowledged). Then the clients stop, every agent drains, and central's
//! journal of each agent's log must be exactly that log: every event the agent acknowledged,
//! once, at its seq, with its content, seqs 1..=N, nothing else.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tally_tests::{
    Acceptance, AgentBuilder, AgentClient, AgentProcess, CentralBuilder, CentralProcess, Current,
    EventRequest, Expectations, Generation, Proxy, TlsFiles, check_journal, check_log,
    event_for_id, gen_cert, next_generation, test_seed, wait_for_acks, wait_synced, wait_until,
    with_temp_dir,
};
use tokio::sync::watch;

const AGENTS: usize = 3;
const CLIENTS_PER_AGENT: usize = 2;
/// Faults, shuffled into a random order.
const CUTS: usize = 3;
const CENTRAL_KILLS: usize = 2;
const AGENT_KILLS: usize = 1;
const DELAYS: usize = 1;
const OUTAGES: usize = 1;
/// Each fault comes after this many more events acknowledged by the agents (all agents
/// together).
const FAULT_AFTER: std::ops::RangeInclusive<u64> = 200..=2000;
/// Events acknowledged by the agents after the last fault, before the clients stop.
const FINAL_EVENTS: u64 = 500;
/// Per-chunk delay a slowed-down link gets, in milliseconds.
const DELAY_MS: std::ops::RangeInclusive<u64> = 1..=4;
/// The longest any one wait may take before the test fails instead of hanging: an agent's
/// reconnect backoff alone may reach its 30 s cap.
const WAIT: Duration = Duration::from_secs(60);
/// A request resent this often without an answer fails the test.
const MAX_UNANSWERED: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Cut the links of some agents (each with probability 2/3, at least one).
    Cut,
    /// SIGKILL central, restart it on a new port, retarget the proxies.
    KillCentral,
    /// SIGKILL one agent and restart it on its data directory.
    KillAgent,
    /// Slow every link down by a random per-chunk delay (for the rest of the run).
    Delay,
    /// Take central off one agent's network (its link cut, reconnects refused) until the agent
    /// has tried to reconnect and been refused.
    Outage,
}

#[derive(Debug)]
struct Shared {
    /// Events acknowledged by the agents so far, all clients together.
    acked: watch::Sender<u64>,
    stop: AtomicBool,
    failed: AtomicBool,
}

/// One agent: its process, its proxy, and what the controller knows of it.
#[derive(Debug)]
struct Slot {
    agent_id: String,
    builder: AgentBuilder,
    proxy: Proxy,
    process: Option<AgentProcess>,
    current: watch::Sender<Current>,
    generation: u64,
    log_id: String,
    /// The highest seq this agent acknowledged to a client.
    max_acked_seq: Arc<AtomicU64>,
}

impl Slot {
    fn client(&self) -> anyhow::Result<AgentClient> {
        Ok(self.process.as_ref().context("the agent is down")?.client())
    }
}

#[derive(Debug, Default)]
struct ClientReport {
    sent: Vec<String>,
    acked: HashMap<String, u64>,
    requests: u64,
    unanswered: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_reaches_central_once_through_chaos() {
    with_temp_dir("sync-chaos", |base| async move { run(&base).await }).await;
}

async fn run(base: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let seed = test_seed()?;
    println!("sync_chaos: seed {seed} (set TALLY_TEST_SEED to replay the fault schedule)");
    let mut rng = StdRng::seed_from_u64(seed);

    let tls = gen_cert(&base.join("tls")).await?;
    let central_builder = CentralBuilder::new(base.join("central")).tls(&tls);
    let mut central = central_builder.spawn().await?;
    let (acked_tx, mut acked_rx) = watch::channel(0u64);
    let shared = Arc::new(Shared {
        acked: acked_tx,
        stop: AtomicBool::new(false),
        failed: AtomicBool::new(false),
    });
    let mut slots = Vec::with_capacity(AGENTS);
    let mut clients = Vec::new();
    for n in 0..AGENTS {
        let slot = start_agent(base, n, &central, &tls).await?;
        for c in 0..CLIENTS_PER_AGENT {
            let shared = Arc::clone(&shared);
            let current = slot.current.subscribe();
            let max_acked_seq = Arc::clone(&slot.max_acked_seq);
            let seed = seed.wrapping_add((n * CLIENTS_PER_AGENT + c) as u64 + 1);
            let prefix = format!("a{n}c{c}");
            clients.push((
                n,
                tokio::spawn(async move {
                    let result = client(prefix, seed, current, &max_acked_seq, &shared).await;
                    if result.is_err() {
                        shared.failed.store(true, Ordering::SeqCst);
                        shared.acked.send_modify(|_| {});
                    }
                    result
                }),
            ));
        }
        slots.push(slot);
    }

    let soak = tally_tests::soak_factor()?;
    let mut faults: Vec<Fault> = [
        (Fault::Cut, CUTS),
        (Fault::KillCentral, CENTRAL_KILLS),
        (Fault::KillAgent, AGENT_KILLS),
        (Fault::Delay, DELAYS),
        (Fault::Outage, OUTAGES),
    ]
    .iter()
    .flat_map(|&(fault, count)| std::iter::repeat_n(fault, count * soak))
    .collect();
    faults.shuffle(&mut rng);

    let mut outcome: anyhow::Result<()> = Ok(());
    // Agents hit by the previous fault: before the next one, each must have reconnected (a new
    // connection through its proxy since `forwarded`) and streamed (central acknowledged more).
    // Before the first fault, every agent must have connected once.
    let mut hit: Vec<(usize, u64)> = (0..AGENTS).map(|n| (n, 0)).collect();
    let mut cut_links = 0;
    for (round, &fault) in faults.iter().enumerate() {
        let more = rng.random_range(FAULT_AFTER);
        let ready = async {
            wait_for_acks(&mut acked_rx, &shared.failed, more, WAIT).await?;
            wait_streaming(&slots, &hit).await
        };
        if let Err(error) = ready.await {
            outcome = Err(error.context(format!("before fault {} ({fault:?})", round + 1)));
            break;
        }
        let forwarded: Vec<u64> = slots.iter().map(|s| s.proxy.stats().forwarded).collect();
        // Evidence that the fault lands mid-stream: events central had not acknowledged yet.
        let unsynced = match unsynced(&slots).await {
            Ok(unsynced) => unsynced,
            Err(error) => {
                outcome = Err(error.context(format!("before fault {}", round + 1)));
                break;
            }
        };
        let result = match fault {
            Fault::Cut => {
                let mut chosen: Vec<usize> =
                    (0..AGENTS).filter(|_| rng.random_bool(2.0 / 3.0)).collect();
                if chosen.is_empty() {
                    chosen.push(rng.random_range(0..AGENTS));
                }
                for &n in &chosen {
                    cut_links += slots[n].proxy.cut();
                }
                Ok(chosen)
            }
            Fault::KillCentral => {
                let restarted = kill_central(central, &central_builder, &slots).await;
                match restarted {
                    Ok(restarted) => {
                        central = restarted;
                        Ok((0..AGENTS).collect())
                    }
                    Err(error) => return Err(error.context(format!("fault {}", round + 1))),
                }
            }
            Fault::KillAgent => {
                let n = rng.random_range(0..AGENTS);
                kill_agent(&mut slots[n]).await.map(|()| vec![n])
            }
            Fault::Outage => {
                let n = rng.random_range(0..AGENTS);
                let proxy = &slots[n].proxy;
                let refused = proxy.stats().refused;
                cut_links += proxy.block();
                let refusal = wait_until(
                    &format!("agent {} to be refused a reconnect", slots[n].agent_id),
                    WAIT,
                    || async {
                        let stats = proxy.stats();
                        Ok(if stats.refused > refused {
                            ControlFlow::Break(())
                        } else {
                            ControlFlow::Continue(format!("{stats:?}"))
                        })
                    },
                )
                .await;
                proxy.unblock();
                refusal.map(|()| vec![n])
            }
            Fault::Delay => {
                for slot in &slots {
                    slot.proxy
                        .set_delay(Duration::from_millis(rng.random_range(DELAY_MS)));
                }
                Ok(Vec::new())
            }
        };
        match result {
            Ok(agents) => {
                println!(
                    "sync_chaos: fault {} of {}: {fault:?} {agents:?} after {more} more events, \
                     with {unsynced:?} events not yet acknowledged by central, at {:.1} s",
                    round + 1,
                    faults.len(),
                    started.elapsed().as_secs_f64()
                );
                hit = agents.into_iter().map(|n| (n, forwarded[n])).collect();
            }
            Err(error) => {
                outcome = Err(error.context(format!("fault {} ({fault:?})", round + 1)));
                break;
            }
        }
    }
    if outcome.is_ok() {
        outcome = async {
            wait_for_acks(&mut acked_rx, &shared.failed, FINAL_EVENTS, WAIT).await?;
            wait_streaming(&slots, &hit).await
        }
        .await
        .context("after the last fault");
    }
    shared.stop.store(true, Ordering::SeqCst);

    let mut expected: Vec<Expectations> = (0..AGENTS).map(|_| Expectations::default()).collect();
    let mut requests = 0;
    let mut unanswered = 0;
    for (n, task) in clients {
        let report = match tokio::time::timeout(WAIT, task).await {
            Ok(Ok(Ok(report))) => report,
            Ok(Ok(Err(error))) => bail!("a client of agent {n} failed: {error:#}"),
            Ok(Err(panic)) => bail!("a client of agent {n} panicked: {panic}"),
            Err(_) => bail!("a client of agent {n} did not finish within {WAIT:?}"),
        };
        for id in report.sent {
            let event = event_for_id(&id);
            ensure!(
                expected[n].sent.insert(id.clone(), event).is_none(),
                "two clients sent id {id}"
            );
        }
        expected[n].acked.extend(report.acked);
        requests += report.requests;
        unanswered += report.unanswered;
    }
    outcome?;

    let admin = central.admin();
    let mut summary = Vec::new();
    for (slot, expected) in slots.iter().zip(&expected) {
        let client = slot.client()?;
        let status = wait_synced(&client, WAIT)
            .await
            .with_context(|| format!("agent {} after the clients stopped", slot.agent_id))?;
        ensure!(
            status["log_id"] == slot.log_id.as_str(),
            "agent {} reports log {} now, not {}",
            slot.agent_id,
            status["log_id"],
            slot.log_id
        );
        let (log_id, logged) = client.read_all_events().await?;
        ensure!(
            log_id == slot.log_id,
            "agent {}: the log id changed",
            slot.agent_id
        );
        let check = check_log(&logged, expected)
            .with_context(|| format!("agent {}'s own log", slot.agent_id))?;
        let journal = admin.journal(&slot.agent_id, &log_id).await?;
        check_journal(&logged, &journal).with_context(|| {
            format!(
                "central's journal of agent {} (log {log_id})",
                slot.agent_id
            )
        })?;
        let listed = admin.agent(&slot.agent_id).await?;
        ensure!(
            listed["logs"].as_array().map(Vec::len) == Some(1)
                && listed["logs"][0]["log_id"] == log_id.as_str()
                && listed["logs"][0]["stored_seq"] == logged.len(),
            "GET /v1/agents lists {listed}"
        );
        let stats = slot.proxy.stats();
        summary.push(format!(
            "{}: {} events ({} acknowledged to clients), {} connections",
            slot.agent_id, check.stored, check.acked, stats.forwarded
        ));
    }
    println!(
        "sync_chaos (seed {seed}): faults {faults:?}; {cut_links} links cut; {requests} requests \
         ({unanswered} unanswered and resent); {}; every journal equals its agent's log; {:.1} s",
        summary.join("; "),
        started.elapsed().as_secs_f64()
    );
    ensure!(cut_links > 0, "no cut caught a live link");

    for slot in &mut slots {
        if let Some(process) = slot.process.take() {
            let status = process.terminate().await?;
            ensure!(
                status.success(),
                "agent {} exited with {status}",
                slot.agent_id
            );
        }
    }
    let status = central.terminate().await?;
    ensure!(status.success(), "central exited with {status}");
    Ok(())
}

/// Per agent, how many events of its log central has not acknowledged (as the agent reports).
async fn unsynced(slots: &[Slot]) -> anyhow::Result<Vec<u64>> {
    let mut out = Vec::with_capacity(slots.len());
    for slot in slots {
        let status = slot.client()?.status().await?;
        out.push(
            status["pending"]
                .as_u64()
                .context("no pending in /v1/status")?,
        );
    }
    Ok(out)
}

/// Registers agent `n` at central, starts its proxy and its process (syncing over TLS through
/// the proxy, checking central's certificate for `localhost`).
async fn start_agent(
    base: &Path,
    n: usize,
    central: &CentralProcess,
    tls: &TlsFiles,
) -> anyhow::Result<Slot> {
    let agent_id = format!("wh{n}-agent");
    let warehouse = format!("WH{n}");
    let token = central.admin().add_agent(&agent_id, &warehouse).await?;
    let proxy = Proxy::start(central.sync_addr()).await?;
    let builder = AgentProcess::builder(base.join(format!("agent{n}")))
        .agent_id(&agent_id)
        .warehouse(&warehouse)
        .central(
            &format!("wss://127.0.0.1:{}/v1/sync", proxy.port()),
            &token,
            Some(&tls.ca),
        )
        .server_name("localhost");
    let process = builder.clone().spawn().await?;
    let client = process.client();
    let log_id = client.status().await?["log_id"]
        .as_str()
        .context("no log_id in /v1/status")?
        .to_owned();
    let (current, _) = watch::channel::<Current>(Some(Arc::new(Generation { number: 0, client })));
    Ok(Slot {
        agent_id,
        builder,
        proxy,
        process: Some(process),
        current,
        generation: 0,
        log_id,
        max_acked_seq: Arc::new(AtomicU64::new(0)),
    })
}

/// SIGKILLs central and restarts it on its data directory (on a new port). Meanwhile the
/// proxies hold reconnects; before they are released to the new central, it must journal at
/// least what each agent had seen acknowledged before the kill.
async fn kill_central(
    central: CentralProcess,
    builder: &CentralBuilder,
    slots: &[Slot],
) -> anyhow::Result<CentralProcess> {
    for slot in slots {
        slot.proxy.stall();
    }
    let mut acked_before = Vec::with_capacity(slots.len());
    for slot in slots {
        let status = slot.client()?.status().await?;
        acked_before.push(status["acked_seq"].as_u64().context("no acked_seq")?);
    }
    let status = central.kill9().await?;
    ensure!(
        status.signal() == Some(rustix::process::Signal::KILL.as_raw()),
        "central was killed with SIGKILL but exited with {status}"
    );
    let central = builder.spawn().await.context("restarting central")?;
    let admin = central.admin();
    for (slot, &acked) in slots.iter().zip(&acked_before) {
        let stored = admin.stored_seq(&slot.agent_id, &slot.log_id).await?;
        ensure!(
            stored >= acked,
            "central acknowledged seq {acked} of {} before SIGKILL, but holds only {stored} after restarting",
            slot.agent_id
        );
    }
    for slot in slots {
        slot.proxy.retarget(central.sync_addr());
        slot.proxy.unblock();
    }
    Ok(central)
}

/// SIGKILLs an agent and restarts it on its data directory; its log must still hold every
/// event it had acknowledged to a client.
async fn kill_agent(slot: &mut Slot) -> anyhow::Result<()> {
    slot.current.send_replace(None);
    let process = slot.process.take().context("the agent is down already")?;
    let status = process.kill9().await?;
    ensure!(
        status.signal() == Some(rustix::process::Signal::KILL.as_raw()),
        "agent {} was killed with SIGKILL but exited with {status}",
        slot.agent_id
    );
    let process = slot
        .builder
        .clone()
        .spawn()
        .await
        .with_context(|| format!("restarting agent {}", slot.agent_id))?;
    // Read the maximum first: the new process may acknowledge more meanwhile.
    let max_acked = slot.max_acked_seq.load(Ordering::SeqCst);
    let status = process.client().status().await?;
    ensure!(
        status["log_id"] == slot.log_id.as_str(),
        "agent {}'s log id changed across a restart: {status}",
        slot.agent_id
    );
    let last_seq = status["last_seq"].as_u64().unwrap_or(0);
    ensure!(
        last_seq >= max_acked,
        "agent {}'s log ends at seq {last_seq} after SIGKILL, but seq {max_acked} was acknowledged",
        slot.agent_id
    );
    slot.generation += 1;
    slot.current.send_replace(Some(Arc::new(Generation {
        number: slot.generation,
        client: process.client(),
    })));
    slot.process = Some(process);
    Ok(())
}

/// Waits until every agent in `hit` has made a new connection through its proxy (more than
/// `forwarded` so far) and is connected, and then until central has acknowledged more of its
/// log than when it reconnected: the faults land on live, streaming sessions.
async fn wait_streaming(slots: &[Slot], hit: &[(usize, u64)]) -> anyhow::Result<()> {
    for &(n, forwarded) in hit {
        let slot = &slots[n];
        let client = slot.client()?;
        let reconnected = wait_until(
            &format!("agent {} to reconnect", slot.agent_id),
            WAIT,
            || async {
                let now = slot.proxy.stats().forwarded;
                let status = client.status().await?;
                Ok(if now > forwarded && status["connected"] == true {
                    ControlFlow::Break(status["acked_seq"].as_u64().unwrap_or(0))
                } else {
                    ControlFlow::Continue(format!("{now} connections forwarded; {status}"))
                })
            },
        )
        .await?;
        wait_until(
            &format!(
                "central to acknowledge more of agent {}'s log",
                slot.agent_id
            ),
            WAIT,
            || async {
                let status = client.status().await?;
                Ok(
                    if status["connected"] == true
                        && status["acked_seq"].as_u64().unwrap_or(0) > reconnected
                    {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(status.to_string())
                    },
                )
            },
        )
        .await?;
    }
    Ok(())
}

/// One client of one agent: posts fresh requests until told to stop, and resends a request
/// whose answer was lost (to the agent's next process) until it gets one.
async fn client(
    prefix: String,
    seed: u64,
    mut current: watch::Receiver<Current>,
    max_acked_seq: &AtomicU64,
    shared: &Shared,
) -> anyhow::Result<ClientReport> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut report = ClientReport::default();
    let mut next_id = 0;
    let mut pending: Option<EventRequest> = None;
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
                if let (Acceptance::Duplicate(_), 0) = (&acceptance, request.unanswered) {
                    bail!(
                        "a first send of {:?} was answered as a duplicate",
                        request.ids
                    );
                }
                for (id, &seq) in request.ids.iter().zip(acceptance.seqs()) {
                    if let Some(before) = report.acked.insert(id.clone(), seq) {
                        bail!("id {id} was acknowledged twice (seq {before}, then {seq})");
                    }
                    max_acked_seq.fetch_max(seq, Ordering::SeqCst);
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
                // The agent is (being) killed: resend to its next process. An error from a
                // live agent shows up as this wait timing out.
                next_generation(&mut current, Some(generation.number), WAIT)
                    .await
                    .with_context(|| {
                        format!("client {prefix}: after a failed request ({error})")
                    })?;
            }
        }
    }
    Ok(report)
}

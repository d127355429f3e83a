//! Guards against double or lost application to Odoo when central dies mid-merge.
//!
//! An in-process Odoo 17 simulator with 240 extra products (`BULK-0000`…, more than the 200
//! lines of one picking, so that a large run needs two pickings of a kind), each with some
//! initial stock in WH, and a latency model (tens of milliseconds per call, a millisecond or
//! two per move line) so that a merge takes long enough to be interrupted; one `tally-central`
//! merging into it; one agent syncing to central (plain `ws://` on loopback) through a
//! [`Proxy`]. Rounds of receipts and picks over the BULK SKUs are posted to the agent, and
//! central is SIGKILLed several times mid-merge and restarted on the same data directory (the
//! proxy retargeted), while posting goes on between kills. Each kill comes either after a
//! random number of picking creates/validations reached the simulator since central (re)started
//! (plus a random jitter), or as soon as the simulator holds a picking that central created and
//! has not validated yet. A few simulator faults apply a picking create or validation and then
//! lose its answer (dropped connection, HTTP 500). At the end every acknowledged event must be
//! merged (`resolved_seq == stored_seq ==` the agent's `last_seq`), and Odoo must hold exactly
//! their net effect: per SKU, on hand in WH is the initial stock plus receipts minus picks;
//! every `tally-…` picking is done (or cancelled only when it was split into `….N` pickings);
//! no picking name appears twice; and nothing is parked in the dead letters.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::{ControlFlow, RangeInclusive};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tally_tests::{
    ADMIN_TOKEN, AdminClient, AgentClient, AgentProcess, CentralBuilder, CentralProcess, Fault,
    FaultKind, Latency, OdooSim, OdooVersion, Proxy, SimConfig, test_seed, wait_synced, wait_until,
    with_temp_dir,
};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

const AGENT_ID: &str = "wh-agent";
const WAREHOUSE: &str = "WH";
/// The simulator's extra products `BULK-0000`… the events move (more than
/// `MAX_LINES_PER_PICKING`, 200).
const SKUS: usize = 240;
/// On hand of every BULK SKU in WH/Stock before the first event.
const INITIAL_STOCK: i64 = 1000;
/// Central is SIGKILLed this many times.
const KILLS: usize = 6;
/// Simulator faults (a picking create or validation applied, then its answer lost; at least
/// one of each).
const SIM_FAULTS: usize = 3;
/// Events per round of posts, and per request.
const ROUND_EVENTS: RangeInclusive<usize> = 400..=800;
const BATCH_EVENTS: RangeInclusive<usize> = 1..=40;
/// A client's pause between two requests: the shape of the feed, spreading a round over time
/// so that central merges it in several runs while it is posted (nothing waits on it).
const PACE_MS: RangeInclusive<u64> = 0..=20;
/// A round extra to the schedule, posted when the merge ran out of work (or to spend faults).
const EXTRA_ROUND_EVENTS: usize = 150;
/// At most this many extra rounds at the end, to spend faults still armed.
const FINAL_EXTRA_ROUNDS: usize = 4;
/// A kill after this many picking creates/validations since central (re)started...
const KILL_AFTER_CALLS: RangeInclusive<u64> = 1..=4;
/// ...and this much random jitter (a random fault schedule, not synchronisation).
const KILL_JITTER_MS: RangeInclusive<u64> = 0..=30;
/// Otherwise (with this probability, and at least once) a kill as soon as central has created
/// a picking it has not validated yet.
const OPEN_PICKING_KILL: f64 = 0.3;
/// The simulator's latency model.
const PER_CALL_MS: RangeInclusive<u64> = 20..=40;
const PER_LINE_MS: RangeInclusive<u64> = 1..=2;
/// The longest any one wait may take before the test fails instead of hanging.
const WAIT: Duration = Duration::from_secs(40);
/// How often the controller looks at the simulator's counters while waiting for a moment.
const TICK: Duration = Duration::from_millis(5);
/// Every this many ticks, it also asks whether the merge ran out of work.
const IDLE_CHECK_TICKS: u32 = 20;
/// Every this many ticks, it lists the simulator's pickings (for an open one).
const PICKING_CHECK_TICKS: u32 = 3;

fn sku(n: usize) -> String {
    format!("BULK-{n:04}")
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// One event a client posts: a receipt or a pick of `qty` units of BULK SKU `sku`.
#[derive(Debug, Clone)]
struct Posted {
    id: String,
    sku: usize,
    receipt: bool,
    qty: i64,
}

impl Posted {
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "type": if self.receipt { "receipt" } else { "pick" },
            "sku": sku(self.sku),
            "qty": self.qty.to_string(),
            "reference": format!("merge-crash/{}", self.id),
        })
    }
}

/// Posts rounds of events to the agent in a background task, one round at a time, and keeps
/// every event the agent acknowledged.
struct Poster {
    client: AgentClient,
    rounds: usize,
    requests: usize,
    running: Option<JoinHandle<anyhow::Result<Vec<Posted>>>>,
    acked: Vec<Posted>,
}

impl Poster {
    fn new(client: AgentClient) -> Poster {
        Poster {
            client,
            rounds: 0,
            requests: 0,
            running: None,
            acked: Vec::new(),
        }
    }

    /// Whether a round is being posted.
    fn busy(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|task| !task.is_finished())
    }

    /// Waits for the round being posted, if any, and keeps what the agent acknowledged.
    async fn finish(&mut self) -> anyhow::Result<()> {
        if let Some(task) = self.running.take() {
            let acked = tokio::time::timeout(WAIT, task)
                .await
                .with_context(|| format!("a round of posts did not finish within {WAIT:?}"))?
                .context("a round of posts panicked")??;
            self.acked.extend(acked);
        }
        Ok(())
    }

    /// Starts posting a round of `events` fresh events (after the previous round finished), in
    /// requests of random sizes.
    async fn start(&mut self, events: usize, rng: &mut StdRng) -> anyhow::Result<()> {
        self.finish().await?;
        let round = self.rounds;
        self.rounds += 1;
        let mut batches: Vec<Vec<Posted>> = Vec::new();
        let mut n = 0;
        while n < events {
            let size = rng.random_range(BATCH_EVENTS).min(events - n);
            batches.push(
                (n..n + size)
                    .map(|i| Posted {
                        id: format!("r{round}-{i}"),
                        sku: rng.random_range(0..SKUS),
                        receipt: rng.random_bool(0.55),
                        qty: rng.random_range(1..=9),
                    })
                    .collect(),
            );
            n += size;
        }
        self.requests += batches.len();
        let pauses = batches
            .iter()
            .map(|_| millis(rng.random_range(PACE_MS)))
            .collect();
        self.running = Some(tokio::spawn(post_batches(
            self.client.clone(),
            batches,
            pauses,
        )));
        Ok(())
    }
}

/// Posts each batch as one request, each after its pause; every event must be stored as new
/// (the agent is never killed here, so every request gets its answer).
async fn post_batches(
    client: AgentClient,
    batches: Vec<Vec<Posted>>,
    pauses: Vec<Duration>,
) -> anyhow::Result<Vec<Posted>> {
    let mut acked = Vec::new();
    for (batch, pause) in batches.into_iter().zip(pauses) {
        tokio::time::sleep(pause).await;
        let mut events: Vec<Value> = batch.iter().map(Posted::json).collect();
        let body = if events.len() == 1 {
            events.remove(0)
        } else {
            json!({ "events": events })
        };
        let answer = client
            .post_events(&body)
            .await
            .with_context(|| format!("posting {}..", batch[0].id))?;
        let accepted = answer.body["accepted"].as_array();
        let fine = answer.status == 201
            && accepted.is_some_and(|a| {
                a.len() == batch.len()
                    && a.iter().zip(&batch).all(|(entry, posted)| {
                        entry["id"] == posted.id.as_str() && entry["duplicate"] == false
                    })
            });
        ensure!(
            fine,
            "posting {} events from {} answered {}: {}",
            batch.len(),
            batch[0].id,
            answer.status,
            answer.body
        );
        acked.extend(batch);
    }
    Ok(acked)
}

/// (stored_seq, resolved_seq) of the agent's log as central reports it (0, 0 before it has one).
async fn merge_progress(admin: &AdminClient) -> anyhow::Result<(u64, u64)> {
    let agent = admin.agent(AGENT_ID).await?;
    let logs = agent["logs"].as_array().cloned().unwrap_or_default();
    ensure!(logs.len() <= 1, "central lists several logs: {agent}");
    let log = logs.first().cloned().unwrap_or_default();
    Ok((
        log["stored_seq"].as_u64().unwrap_or(0),
        log["resolved_seq"].as_u64().unwrap_or(0),
    ))
}

/// Picking creates and validations that reached the simulator.
fn picking_calls(sim: &OdooSim) -> u64 {
    sim.call_count("stock.picking", "create") + sim.call_count("stock.picking", "button_validate")
}

/// Names of `tally-…` pickings neither done nor cancelled.
fn open_pickings(sim: &OdooSim) -> BTreeSet<String> {
    sim.pickings()
        .into_iter()
        .filter(|p| p.name.starts_with("tally-") && p.state != "done" && p.state != "cancel")
        .map(|p| p.name)
        .collect()
}

/// When to kill central.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// After this many more picking creates/validations reached the simulator.
    AfterCalls(u64),
    /// As soon as the simulator holds a picking created (by this central) and not validated.
    OpenPicking,
}

/// Whether everything the agent holds is merged and no round is being posted.
async fn merge_idle(
    admin: &AdminClient,
    agent: &AgentClient,
    poster: &Poster,
) -> anyhow::Result<bool> {
    if poster.busy() {
        return Ok(false);
    }
    let last_seq = agent.status().await?["last_seq"].as_u64().unwrap_or(0);
    let (stored, merged) = merge_progress(admin).await?;
    Ok(stored == last_seq && merged == stored)
}

/// Waits for `moment`; if the merge runs out of work meanwhile, posts another round. Returns
/// a description of the moment.
async fn wait_for_moment(
    moment: Moment,
    sim: &OdooSim,
    admin: &AdminClient,
    agent: &AgentClient,
    poster: &mut Poster,
    rng: &mut StdRng,
) -> anyhow::Result<String> {
    let base = picking_calls(sim);
    let open_before = match moment {
        Moment::OpenPicking => open_pickings(sim),
        Moment::AfterCalls(_) => BTreeSet::new(),
    };
    let until = Instant::now() + WAIT;
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut tick: u32 = 0;
    loop {
        ticks.tick().await;
        tick = tick.wrapping_add(1);
        let calls = picking_calls(sim) - base;
        match moment {
            Moment::AfterCalls(k) if calls >= k => {
                return Ok(format!("after {calls} picking calls"));
            }
            Moment::OpenPicking if calls > 0 && tick.is_multiple_of(PICKING_CHECK_TICKS) => {
                if let Some(name) = open_pickings(sim).difference(&open_before).next() {
                    return Ok(format!("with {name} created, not validated"));
                }
            }
            _ => {}
        }
        if Instant::now() >= until {
            bail!(
                "{moment:?} did not come within {WAIT:?} ({calls} picking calls since; merge \
                 progress (stored, merged) {:?})",
                merge_progress(admin).await.ok()
            );
        }
        if tick.is_multiple_of(IDLE_CHECK_TICKS) && merge_idle(admin, agent, poster).await? {
            poster.start(EXTRA_ROUND_EVENTS, rng).await?;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn central_killed_mid_merge_applies_every_event_to_odoo_once() {
    with_temp_dir("merge-crash", |base| async move { run(&base).await }).await;
}

async fn run(base: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let seed = test_seed()?;
    println!(
        "merge_crash: seed {seed} (set TALLY_TEST_SEED to replay the schedule; timings still vary)"
    );
    let mut rng = StdRng::seed_from_u64(seed);

    let mut config = SimConfig::new(OdooVersion::V17);
    config.extra_products = SKUS;
    config.latency = Latency {
        per_call: millis(rng.random_range(PER_CALL_MS)),
        per_line: millis(rng.random_range(PER_LINE_MS)),
    };
    let latency = config.latency;
    let sim = OdooSim::start(config).await?;
    for n in 0..SKUS {
        sim.set_on_hand(&sku(n), "WH/Stock", None, INITIAL_STOCK as f64)?;
    }

    let central_builder: CentralBuilder = CentralProcess::builder(base.join("central"))
        .arg("--odoo-url")
        .arg(sim.url())
        .arg("--odoo-db")
        .arg(sim.db())
        .arg("--odoo-user")
        .arg(sim.login())
        .arg("--odoo-api-key")
        .arg(sim.api_key());
    let mut central = central_builder.spawn().await?;
    let token = central.admin().add_agent(AGENT_ID, WAREHOUSE).await?;
    let proxy = Proxy::start(central.sync_addr()).await?;
    let agent = AgentProcess::builder(base.join("agent"))
        .agent_id(AGENT_ID)
        .warehouse(WAREHOUSE)
        .central(
            &format!("ws://127.0.0.1:{}/v1/sync", proxy.port()),
            &token,
            None,
        )
        .spawn()
        .await?;
    let client = agent.client();
    let mut poster = Poster::new(client.clone());

    // The schedule: which kills wait for an open picking (at least one), and before which kills
    // a simulator fault is armed (the first one: before the first kill).
    let kills = KILLS * tally_tests::soak_factor()?;
    let mut moments: Vec<Moment> = (0..kills)
        .map(|_| {
            if rng.random_bool(OPEN_PICKING_KILL) {
                Moment::OpenPicking
            } else {
                Moment::AfterCalls(rng.random_range(KILL_AFTER_CALLS))
            }
        })
        .collect();
    if !moments.iter().any(|m| matches!(m, Moment::OpenPicking)) {
        moments[rng.random_range(0..kills)] = Moment::OpenPicking;
    }
    // One fault on a create, one on a validation, the others on either.
    let fault_at: BTreeMap<usize, &str> = rand::seq::index::sample(&mut rng, kills, SIM_FAULTS)
        .into_iter()
        .enumerate()
        .map(|(n, cycle)| {
            let method = match n {
                0 => "create",
                1 => "button_validate",
                _ if rng.random_bool(0.5) => "create",
                _ => "button_validate",
            };
            (cycle, method)
        })
        .collect();
    println!("merge_crash: kills {moments:?}; simulator faults before kills {fault_at:?}");
    let mut faults = Vec::new();
    let mut kills = Vec::new();

    for (cycle, &moment) in moments.iter().enumerate() {
        if cycle == 0 || rng.random_bool(0.6) {
            poster
                .start(rng.random_range(ROUND_EVENTS), &mut rng)
                .await?;
        }
        if let Some(&method) = fault_at.get(&cycle) {
            let kind = if rng.random_bool(0.5) {
                FaultKind::AppliedThenDrop
            } else {
                FaultKind::AppliedThenHttp500
            };
            sim.inject(Fault::new(kind).on("stock.picking", method));
            faults.push(format!("{kind:?} on {method}"));
        }
        let when = wait_for_moment(
            moment,
            &sim,
            &central.admin(),
            &client,
            &mut poster,
            &mut rng,
        )
        .await
        .with_context(|| format!("before kill {}", cycle + 1))?;
        if matches!(moment, Moment::AfterCalls(_)) {
            tokio::time::sleep(millis(rng.random_range(KILL_JITTER_MS))).await;
        }
        proxy.stall();
        let status = central.kill9().await?;
        ensure!(
            status.signal() == Some(rustix::process::Signal::KILL.as_raw()),
            "central was killed with SIGKILL but exited with {status}"
        );
        let open = open_pickings(&sim).len();
        central = central_builder
            .spawn()
            .await
            .with_context(|| format!("restarting central after kill {}", cycle + 1))?;
        proxy.retarget(central.sync_addr());
        proxy.unblock();
        let (stored, merged) = merge_progress(&central.admin()).await?;
        let line = format!(
            "kill {} {when}: {open} pickings open, merged {merged} of {stored} stored",
            cycle + 1
        );
        println!(
            "merge_crash: {line} ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        kills.push(line);
    }

    // After the last kill, one more round, then everything must be merged; faults still armed
    // (no matching call came) get a few more rounds to be spent.
    poster
        .start(rng.random_range(ROUND_EVENTS), &mut rng)
        .await?;
    let admin = central.admin();
    let mut extra_rounds = 0;
    loop {
        wait_until(
            "central to merge every event the agent holds",
            WAIT,
            || async {
                if poster.busy() {
                    return Ok(ControlFlow::Continue("a round is being posted".into()));
                }
                let last_seq = client.status().await?["last_seq"].as_u64().unwrap_or(0);
                let (stored, merged) = merge_progress(&admin).await?;
                Ok(if stored == last_seq && merged == stored {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(format!(
                        "agent's last_seq {last_seq}, stored_seq {stored}, resolved_seq {merged}"
                    ))
                })
            },
        )
        .await?;
        let pending = sim.pending_faults();
        if pending.is_empty() {
            break;
        }
        ensure!(
            extra_rounds < FINAL_EXTRA_ROUNDS,
            "simulator faults never hit after {extra_rounds} extra rounds: {pending:?}"
        );
        extra_rounds += 1;
        poster.start(EXTRA_ROUND_EVENTS, &mut rng).await?;
    }
    poster.finish().await?;

    // Every acknowledged event is stored at central and merged.
    let status = wait_synced(&client, WAIT).await?;
    let last_seq = status["last_seq"].as_u64().context("no last_seq")?;
    ensure!(
        last_seq == poster.acked.len() as u64,
        "the agent's log ends at seq {last_seq}, but it acknowledged {} events",
        poster.acked.len()
    );
    let (stored, merged) = merge_progress(&admin).await?;
    ensure!(
        stored == last_seq && merged == last_seq,
        "central stores seq {stored} and merged {merged} of the agent's {last_seq}"
    );

    let mut problems = Vec::new();

    // Nothing parked.
    let dead_letters: Value = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .get(format!("{}/v1/dead-letters", central.admin_url()))
        .bearer_auth(ADMIN_TOKEN)
        .timeout(WAIT)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let letters = dead_letters["dead_letters"]
        .as_array()
        .with_context(|| format!("GET /v1/dead-letters answered {dead_letters}"))?;
    for letter in letters.iter().take(10) {
        problems.push(format!("a dead letter: {letter}"));
    }

    // Every picking name once; every tally picking done, or cancelled and split.
    let pickings = sim.pickings();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for picking in &pickings {
        *names.entry(picking.name.as_str()).or_default() += 1;
    }
    for (name, count) in &names {
        if *count > 1 {
            problems.push(format!("picking {name} exists {count} times"));
        }
    }
    let tally: Vec<_> = pickings
        .iter()
        .filter(|p| p.name.starts_with("tally-"))
        .collect();
    let mut split = 0;
    for picking in &tally {
        match picking.state.as_str() {
            "done" => {}
            "cancel" => {
                let prefix = format!("{}.", picking.name);
                if names.keys().any(|n| n.starts_with(&prefix)) {
                    split += 1;
                } else {
                    problems.push(format!(
                        "picking {} is cancelled but was not split",
                        picking.name
                    ));
                }
            }
            state => problems.push(format!("picking {} is left {state}", picking.name)),
        }
    }

    // Odoo's stock moved by exactly the acknowledged events.
    let mut expected = [INITIAL_STOCK; SKUS];
    let (mut receipts, mut picks) = (0, 0);
    for posted in &poster.acked {
        if posted.receipt {
            expected[posted.sku] += posted.qty;
            receipts += 1;
        } else {
            expected[posted.sku] -= posted.qty;
            picks += 1;
        }
    }
    for (n, &want) in expected.iter().enumerate() {
        let got = sim.on_hand_in_warehouse(&sku(n), WAREHOUSE);
        if (got - want as f64).abs() > 1e-6 {
            problems.push(format!(
                "{} on hand in {WAREHOUSE} is {got}, but the events make it {want} \
                 ({INITIAL_STOCK} before)",
                sku(n)
            ));
        }
    }
    if !problems.is_empty() {
        bail!(
            "{} problems in Odoo after {} kills ({}); the first 30:\n  {}",
            problems.len(),
            kills.len(),
            kills.join("; "),
            problems[..problems.len().min(30)].join("\n  ")
        );
    }
    let lookups = sim.call_count("stock.picking", "search_read");
    ensure!(
        lookups > 0,
        "no restarted central looked a picking up: no kill interrupted a plan"
    );

    println!(
        "merge_crash (seed {seed}): {} kills, {} events ({receipts} receipts, {picks} picks) in \
         {} rounds of {} requests, {} tally pickings ({split} split), calls: {} creates, {} \
         validations, {lookups} lookups, {} in all; faults {faults:?}; latency {:?} + {:?}/line; \
         {:.1} s",
        kills.len(),
        poster.acked.len(),
        poster.rounds,
        poster.requests,
        tally.len(),
        sim.call_count("stock.picking", "create"),
        sim.call_count("stock.picking", "button_validate"),
        sim.total_calls(),
        latency.per_call,
        latency.per_line,
        started.elapsed().as_secs_f64()
    );

    let status = agent.terminate().await?;
    ensure!(status.success(), "the agent exited with {status}");
    let status = central.terminate().await?;
    ensure!(status.success(), "central exited with {status}");
    Ok(())
}

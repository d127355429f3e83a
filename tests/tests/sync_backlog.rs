//! Guards against a large backlog (an agent cut off from central for a long time) being lost,
//! duplicated, reordered or altered when the link comes back, and against central merging,
//! deduplicating or dropping events across logs when an agent's disk is replaced (a fresh log
//! under the same agent id).
//!
//! `backlog_drains_in_full`: an agent captures 100,000 events (batches of 1000) while its link
//! to central is held by a stalled proxy and central has not even started (the agent was
//! registered offline, with `tally-central agent add` on the stopped central's data directory).
//! Then central starts and the proxy forwards (and cuts the link once, a third of the way): the
//! agent must drain everything, and central's journal must hold exactly the agent's log.
//!
//! `replaced_disk_keeps_both_logs`: an agent syncs a log, is stopped, its data directory is
//! moved aside and a fresh agent with the same agent id starts on an empty one (a new log id)
//! and is sent some of the same client ids again. Central must hold both logs in full, each
//! under its own log id, and list both for the agent.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::Value;
use tally_tests::{
    ADMIN_TOKEN, AgentClient, AgentProcess, CentralBuilder, Proxy, add_agent_offline,
    check_journal, event_for_id, export, gen_cert, same_content, wait_synced, wait_until,
    with_temp_dir,
};

const BACKLOG: u64 = 100_000;
const BATCH: u64 = 1000;
/// How long an agent may take to drain its backlog once central is reachable.
const DRAIN_DEADLINE: Duration = Duration::from_secs(120);
/// How long an agent may take to reconnect and catch up after a short outage (its reconnect
/// backoff may have grown to its 30 s cap).
const SYNC_DEADLINE: Duration = Duration::from_secs(60);

/// A `POST /v1/events` body holding the events of `ids`.
fn batch_body(ids: impl IntoIterator<Item = String>) -> Value {
    let events: Vec<Value> = ids.into_iter().map(|id| event_for_id(&id)).collect();
    serde_json::json!({ "events": events })
}

/// Posts a batch that must be stored anew (201) and returns its seqs.
async fn post_new(client: &AgentClient, ids: Vec<String>) -> anyhow::Result<Vec<u64>> {
    let count = ids.len();
    let answer = client
        .post_events(&batch_body(ids))
        .await
        .context("POST /v1/events")?;
    ensure!(
        answer.status == 201,
        "a batch of {count} new events was answered {}: {}",
        answer.status,
        answer.body
    );
    answer.body["accepted"]
        .as_array()
        .filter(|a| a.len() == count)
        .context("not one accepted entry per event")?
        .iter()
        .map(|entry| {
            entry["seq"]
                .as_u64()
                .context("an accepted entry without a seq")
        })
        .collect()
}

/// A journal entry without central's `null`s, for [`same_content`].
fn without_nulls(entry: &Value) -> Value {
    let mut entry = entry.clone();
    if let Some(fields) = entry.as_object_mut() {
        fields.retain(|_, value| !value.is_null());
    }
    entry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_drains_in_full() {
    with_temp_dir("sync-backlog", |base| async move { backlog(&base).await }).await;
}

async fn backlog(base: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let tls = gen_cert(&base.join("tls")).await?;
    let central_dir = base.join("central");
    let agent_id = "wh-backlog";
    let token = add_agent_offline(&central_dir, ADMIN_TOKEN, agent_id, "WH").await?;

    // Central is not running: the proxy holds the agent's connection attempts (with nowhere
    // to send them yet) until central is up.
    let proxy = Proxy::start("127.0.0.1:1".parse()?).await?;
    proxy.stall();
    let agent = AgentProcess::builder(base.join("agent"))
        .agent_id(agent_id)
        .warehouse("WH")
        .central(
            &format!("wss://127.0.0.1:{}/v1/sync", proxy.port()),
            &token,
            Some(&tls.ca),
        )
        .server_name("localhost")
        .spawn()
        .await?;
    let client = agent.client();
    for first in (1..=BACKLOG).step_by(BATCH as usize) {
        let ids: Vec<String> = (first..first + BATCH).map(|n| format!("b-{n}")).collect();
        let seqs = post_new(&client, ids).await?;
        ensure!(
            seqs.first() == Some(&first) && seqs.last() == Some(&(first + BATCH - 1)),
            "the batch from b-{first} was given seqs {:?}..{:?}",
            seqs.first(),
            seqs.last()
        );
    }
    let captured = started.elapsed();
    let status = client.status().await?;
    ensure!(
        status["last_seq"] == BACKLOG && status["acked_seq"] == 0 && status["connected"] == false,
        "with central unreachable, the agent reports {status}"
    );
    let log_id = status["log_id"]
        .as_str()
        .context("no log_id in /v1/status")?
        .to_owned();

    let central = CentralBuilder::new(&central_dir).tls(&tls).spawn().await?;
    proxy.retarget(central.sync_addr());
    proxy.unblock();
    let reachable = Instant::now();
    // Once central has a good part of the backlog, the link is cut: the drain must resume
    // where central's journal ends, not start over or skip.
    let acked_at_cut = wait_until(
        "central to acknowledge a third of the backlog",
        DRAIN_DEADLINE,
        || async {
            let status = client.status().await?;
            let acked = status["acked_seq"].as_u64().unwrap_or(0);
            Ok(if acked >= BACKLOG / 3 {
                ControlFlow::Break(acked)
            } else {
                ControlFlow::Continue(status.to_string())
            })
        },
    )
    .await?;
    let cut = proxy.cut();
    let status = wait_synced(&client, DRAIN_DEADLINE).await?;
    let drained = reachable.elapsed();
    ensure!(
        status["acked_seq"] == BACKLOG && status["last_seq"] == BACKLOG,
        "after draining the agent reports {status}"
    );

    let journal = central.admin().journal(agent_id, &log_id).await?;
    ensure!(
        journal.len() as u64 == BACKLOG,
        "central journaled {} events of log {log_id}, not {BACKLOG}",
        journal.len()
    );
    ensure!(
        journal[0]["seq"] == 1 && journal[journal.len() - 1]["seq"] == BACKLOG,
        "the journal runs from seq {} to {}",
        journal[0]["seq"],
        journal[journal.len() - 1]["seq"]
    );
    // The events were posted one batch after the other: seq n holds client id b-n.
    for (index, entry) in journal.iter().enumerate() {
        let seq = index as u64 + 1;
        let id = format!("b-{seq}");
        ensure!(
            entry["seq"] == seq
                && entry["id"] == id.as_str()
                && same_content(&event_for_id(&id), &without_nulls(entry)),
            "journal position {index} holds {entry}, expected seq {seq} with {}",
            event_for_id(&id)
        );
    }
    // And field by field, received_at included, as the agent logged them.
    let (read_log_id, logged) = client.read_all_events().await?;
    ensure!(read_log_id == log_id, "the agent's log id changed");
    check_journal(&logged, &journal)?;
    let listed = central.admin().agent(agent_id).await?;
    ensure!(
        listed["logs"].as_array().map(Vec::len) == Some(1)
            && listed["logs"][0]["log_id"] == log_id.as_str()
            && listed["logs"][0]["stored_seq"] == BACKLOG,
        "GET /v1/agents lists {listed}"
    );
    let stats = proxy.stats();
    println!(
        "sync_backlog: {BACKLOG} events captured offline in {:.1} s, drained in {:.1} s \
         (link cut once at acked seq {acked_at_cut}, {cut} connection(s) cut; {} connections \
         through the proxy), {:.1} s in all",
        captured.as_secs_f64(),
        drained.as_secs_f64(),
        stats.forwarded,
        started.elapsed().as_secs_f64()
    );
    let status = agent.terminate().await?;
    ensure!(status.success(), "the agent exited with {status}");
    let status = central.terminate().await?;
    ensure!(status.success(), "central exited with {status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_disk_keeps_both_logs() {
    with_temp_dir("sync-replaced-disk", |base| async move {
        replaced_disk(&base).await
    })
    .await;
}

/// Posts `ids` as singles and small batches; every event must be stored anew.
async fn post_all_new(client: &AgentClient, ids: &[String]) -> anyhow::Result<()> {
    let mut rest = ids;
    let mut size = 1;
    while !rest.is_empty() {
        let (now, later) = rest.split_at(size.min(rest.len()));
        post_new(client, now.to_vec()).await?;
        rest = later;
        size = size % 25 + 1;
    }
    Ok(())
}

async fn replaced_disk(base: &Path) -> anyhow::Result<()> {
    const FIRST: u64 = 3000;
    const AGAIN: u64 = 1000;
    const FRESH: u64 = 1000;
    let started = Instant::now();
    let tls = gen_cert(&base.join("tls")).await?;
    let central = CentralBuilder::new(base.join("central"))
        .tls(&tls)
        .spawn()
        .await?;
    let admin = central.admin();
    let agent_id = "wh-replaced";
    let token = admin.add_agent(agent_id, "WH").await?;
    let builder = AgentProcess::builder(base.join("agent"))
        .agent_id(agent_id)
        .warehouse("WH")
        .central(&central.sync_url(), &token, Some(&tls.ca));

    // The first disk: a log of FIRST events, synced in full, then the agent stops.
    let first = builder.clone().spawn().await?;
    let ids: Vec<String> = (1..=FIRST).map(|n| format!("r-{n}")).collect();
    post_all_new(&first.client(), &ids).await?;
    let status = wait_synced(&first.client(), SYNC_DEADLINE).await?;
    let old_log_id = status["log_id"].as_str().context("no log_id")?.to_owned();
    let status = first.terminate().await?;
    ensure!(status.success(), "the first agent exited with {status}");

    // The disk is replaced: the old data directory is moved aside (kept only to compare), and
    // the agent starts on an empty one. Scanners resend some ids the old disk had stored: the
    // new log does not know them, so they are stored again, under the new log.
    let old_dir = base.join("agent-old-disk");
    std::fs::rename(base.join("agent"), &old_dir).context("moving the data directory aside")?;
    let second = builder.spawn().await?;
    let new_log_id = second.client().status().await?["log_id"]
        .as_str()
        .context("no log_id")?
        .to_owned();
    ensure!(
        new_log_id != old_log_id,
        "the agent on an empty disk reuses log id {old_log_id}"
    );
    let ids: Vec<String> = (1..=AGAIN)
        .chain(FIRST + 1..=FIRST + FRESH)
        .map(|n| format!("r-{n}"))
        .collect();
    post_all_new(&second.client(), &ids).await?;
    let status = wait_synced(&second.client(), SYNC_DEADLINE).await?;
    ensure!(
        status["last_seq"] == AGAIN + FRESH,
        "the new log ends at {}",
        status["last_seq"]
    );

    let (read_log_id, new_log) = second.client().read_all_events().await?;
    ensure!(read_log_id == new_log_id, "the agent's log id changed");
    let new_journal = admin.journal(agent_id, &new_log_id).await?;
    check_journal(&new_log, &new_journal).context("the new log")?;
    let mut old_log = export(&old_dir).await?;
    for event in &mut old_log {
        let exported = event
            .as_object_mut()
            .and_then(|e| e.remove("log_id"))
            .unwrap_or(Value::Null);
        ensure!(
            exported == old_log_id.as_str(),
            "the old disk exports an event of log {exported}"
        );
    }
    ensure!(
        old_log.len() as u64 == FIRST,
        "the old disk holds {} events",
        old_log.len()
    );
    let old_journal = admin.journal(agent_id, &old_log_id).await?;
    check_journal(&old_log, &old_journal).context("the old log")?;
    // The resent ids are in both logs: journaled once per log, not merged across them.
    for n in 1..=AGAIN {
        let id = format!("r-{n}");
        let in_old = old_journal
            .iter()
            .filter(|e| e["id"] == id.as_str())
            .count();
        let in_new = new_journal
            .iter()
            .filter(|e| e["id"] == id.as_str())
            .count();
        ensure!(
            (in_old, in_new) == (1, 1),
            "id {id} is journaled {in_old} times in the old log and {in_new} in the new"
        );
    }

    let listed = admin.agent(agent_id).await?;
    let logs = listed["logs"]
        .as_array()
        .context("no logs in GET /v1/agents")?;
    let stored = |log_id: &str| {
        logs.iter()
            .find(|l| l["log_id"] == log_id)
            .and_then(|l| l["stored_seq"].as_u64())
    };
    ensure!(
        logs.len() == 2
            && stored(&old_log_id) == Some(FIRST)
            && stored(&new_log_id) == Some(AGAIN + FRESH)
            && listed["log_replaced"] == true,
        "GET /v1/agents lists {listed}"
    );
    println!(
        "sync_replaced_disk: log {old_log_id} ({FIRST} events) and log {new_log_id} ({} events, \
         {AGAIN} ids resent from the old disk) both journaled in full, {:.1} s",
        AGAIN + FRESH,
        started.elapsed().as_secs_f64()
    );
    let status = second.terminate().await?;
    ensure!(status.success(), "the second agent exited with {status}");
    let status = central.terminate().await?;
    ensure!(status.success(), "central exited with {status}");
    Ok(())
}

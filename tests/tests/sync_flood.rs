//! A connection flood must not lock agents out (issue 10, item 3): with `--max-connections
//! 200`, 300 idle TCP sockets from one host once held every slot for the 10 s handshake
//! budget, re-opened as they closed, and a real agent stayed disconnected for as long as the
//! flood went on — while central wrote a log line per refused or timed-out socket.
//!
//! Here a flood from 127.0.0.2 keeps up to 300 idle sockets open against a central allowing
//! 40 connections, re-opening each one central closes, while a real agent on 127.0.0.1
//! connects over TLS and syncs; then a second flood from many addresses at once. The agent's
//! events must reach central's journal, and the failures must be summed up in the log, not
//! written a line each.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::ensure;
use serde_json::json;
use tally_tests::{
    AgentProcess, CentralProcess, add_agent_offline, gen_cert, wait_synced, with_temp_dir,
};
use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;
use tokio_util::sync::CancellationToken;

const ADMIN_TOKEN: &str = "flood-admin-token-0123456789";
const SCANNER_TOKEN: &str = "flood-scanner-token-0123456789";
/// Connections one flooding socket opens at most, so the flood ends by itself.
const MAX_ATTEMPTS: u32 = 500;

/// Keeps up to `sockets` idle connections from the addresses `sources` open against
/// `target`, opening a new one whenever central closes one, until `stop`. Returns how many
/// connections it opened in all.
fn flood(
    target: SocketAddr,
    sources: Vec<IpAddr>,
    sockets: usize,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let opened = Arc::new(AtomicU64::new(0));
        let mut holders = tokio::task::JoinSet::new();
        for n in 0..sockets {
            let (stop, opened) = (stop.clone(), Arc::clone(&opened));
            let source = sources[n % sources.len()];
            holders.spawn(async move {
                let mut attempts = 0;
                while !stop.is_cancelled() {
                    let Ok(socket) = TcpSocket::new_v4() else {
                        return;
                    };
                    if socket.bind(SocketAddr::new(source, 0)).is_err() {
                        return;
                    }
                    let Ok(mut stream) = socket.connect(target).await else {
                        // Refused at the backlog: try again at once, as an attacker would.
                        tokio::task::yield_now().await;
                        continue;
                    };
                    opened.fetch_add(1, Ordering::Relaxed);
                    // Say nothing; wait until central gives up on us (or the test ends).
                    let mut byte = [0u8; 1];
                    tokio::select! {
                        () = stop.cancelled() => return,
                        _ = stream.read(&mut byte) => {}
                    }
                    attempts += 1;
                    if attempts >= MAX_ATTEMPTS {
                        return;
                    }
                    // Paced, so that two cores are left for central and the agent.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        }
        while holders.join_next().await.is_some() {}
        opened.load(Ordering::Relaxed)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_does_not_lock_an_agent_out() {
    with_temp_dir("sync-flood", |dir| async move {
        let tls = gen_cert(&dir.join("tls")).await?;
        let central_dir = dir.join("central");
        let token = add_agent_offline(&central_dir, ADMIN_TOKEN, "flood-agent", "WH").await?;
        let central = CentralProcess::builder(&central_dir)
            .admin_token(ADMIN_TOKEN)
            .tls(&tls)
            .arg("--max-connections")
            .arg("40")
            .spawn()
            .await?;
        let target = SocketAddr::from(([127, 0, 0, 1], central.sync_addr().port()));

        // One host floods first, and keeps flooding while the agent connects.
        let stop = CancellationToken::new();
        let one_host = flood(
            target,
            vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))],
            300,
            stop.clone(),
        );
        let agent = AgentProcess::builder(dir.join("agent"))
            .token(SCANNER_TOKEN)
            .warehouse("WH")
            .agent_id("flood-agent")
            .central(
                &format!("wss://localhost:{}/v1/sync", target.port()),
                &token,
                Some(&tls.ca),
            )
            .spawn()
            .await?;
        let scanner = agent.client();
        for n in 0..20 {
            let answer = scanner
                .post_events(&json!({"id": format!("f{n}"), "type": "receipt",
                                     "sku": "SKU-1", "qty": "1"}))
                .await?;
            ensure!(answer.status == 201, "{}", answer.body);
        }
        wait_synced(&scanner, Duration::from_secs(60)).await?;

        // Then many hosts at once, more than there are slots for unauthenticated
        // connections: the agent that authenticated keeps its slot and keeps syncing.
        let many_hosts = flood(
            target,
            (2..66)
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 1, i)))
                .collect(),
            300,
            stop.clone(),
        );
        for n in 20..40 {
            let answer = scanner
                .post_events(&json!({"id": format!("f{n}"), "type": "receipt",
                                     "sku": "SKU-1", "qty": "1"}))
                .await?;
            ensure!(answer.status == 201, "{}", answer.body);
        }
        wait_synced(&scanner, Duration::from_secs(60)).await?;
        stop.cancel();
        let opened = one_host.await? + many_hosts.await?;
        ensure!(opened >= 40, "the flood opened only {opened} connections");

        let log_id = scanner.status().await?["log_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let stored = central.admin().stored_seq("flood-agent", &log_id).await?;
        ensure!(stored == 40, "central stored {stored} of 40 events");
        // Failures are summed up: a few lines a minute, not one per socket.
        let log = std::fs::read_to_string(central.stderr_path())?;
        let lines = log
            .lines()
            .filter(|l| l.contains("connection refused") || l.contains("handshake"))
            .count();
        ensure!(
            lines <= 12,
            "{lines} log lines about {opened} flood connections:\n{log}"
        );
        agent.terminate().await?;
        central.terminate().await?;
        Ok(())
    })
    .await;
}

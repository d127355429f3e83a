//! Guards against a regression where SIGTERM never completed while a client held a request
//! open mid-body: the connection kept a writer handle alive and the agent waited for it forever
//! (systemd would SIGKILL it at TimeoutStopSec).

use std::time::{Duration, Instant};

use tally_tests::{AgentProcess, TEST_TOKEN, event_for_id};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn sigterm_completes_while_a_client_stalls_mid_request() {
    let base = tempfile::tempdir().unwrap();
    let agent = AgentProcess::spawn(&base.path().join("data"), TEST_TOKEN)
        .await
        .unwrap();
    let client = agent.client();
    let stored = event_for_id("before-stall");
    client.post_events(&stored).await.unwrap();

    let addr = agent.base_url().trim_start_matches("http://").to_owned();
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: agent\r\nAuthorization: Bearer {TEST_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"id\":"
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    // The agent has read the headers (it answers others meanwhile).
    client.status().await.unwrap();

    let started = Instant::now();
    let status = agent
        .terminate()
        .await
        .expect("the agent exits while the client still stalls");
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "took {:?}",
        started.elapsed()
    );
    drop(stalled);

    let events = tally_tests::export(&base.path().join("data"))
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["id"], "before-stall");
}

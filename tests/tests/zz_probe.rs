use std::time::{Duration, Instant};
use tally_tests::{AgentProcess, TEST_TOKEN};
use tokio::io::AsyncWriteExt;

async fn probe(kind: &str, partial: &str) {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("data");
    let agent = AgentProcess::spawn(&dir, TEST_TOKEN).await.unwrap();
    let addr = agent.base_url().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream.write_all(partial.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    // make sure the agent has read it: a full request on another connection
    let answer = agent.client().status().await.unwrap();
    assert!(answer["log_id"].is_string());
    let t = Instant::now();
    let stderr = agent.stderr_path().to_owned();
    let result = agent.terminate().await;
    println!(
        "{kind}: {:?} after {:.1?}",
        result
            .as_ref()
            .map_err(|e| e.to_string().lines().next().unwrap().to_owned()),
        t.elapsed()
    );
    println!("{}", tally_tests::tail(&stderr, 5));
    drop(stream);
}

#[tokio::test]
async fn slow_body() {
    probe("mid-body", &format!("POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"id\":")).await;
}

#[tokio::test]
async fn partial_head() {
    probe("partial head", "POST /v1/events HTTP/1.1\r\nHost: x\r\n").await;
}

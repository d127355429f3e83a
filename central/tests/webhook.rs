//! The webhook channel: the worker pushes the outbox to a receiver that checks signatures,
//! through failures (`503`, retried with backoff); a receiver with another secret refuses
//! every request and the channel raises an alert instead of dropping anything; and the
//! README's Python receiver accepts Tally's signature and refuses a tampered body.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use tally_central::availability::{Availability, free};
use tally_central::channels::webhook::signature;
use tally_central::channels::{Buffer, ChannelConfig, ChannelKind, Channels, worker};
use tally_central::store::Store;
use tally_fakes::channels::webhook::WebhookReceiver;
use tally_fakes::wait::wait_until;
use tally_protocol::{Qty, Secret};
use tokio_util::sync::CancellationToken;

fn channel(url: String, secret: &str) -> ChannelConfig {
    ChannelConfig {
        name: "hook".into(),
        kind: ChannelKind::Webhook,
        warehouses: BTreeSet::from(["WH".to_owned()]),
        buffer: Buffer {
            units: 1,
            percent: 0,
        },
        cap: Some(50),
        skus: BTreeMap::from([("A".to_owned(), "shop-a".to_owned())]),
        ignore: BTreeSet::new(),
        url,
        secret: Secret::new(secret),
        reconcile: None,
        pool: None,
    }
}

fn row(sku: &str, on_hand: i64) -> Availability {
    let on_hand = Qty::from_units(on_hand);
    Availability {
        sku: sku.into(),
        warehouse: "WH".into(),
        on_hand,
        reserved: Qty::ZERO,
        free: free(on_hand, Qty::ZERO),
        read_at: String::new(),
        includes: vec![],
    }
}

#[tokio::test]
async fn the_worker_pushes_signed_batches_through_failures() {
    let receiver = WebhookReceiver::start("hook-secret").await.unwrap();
    receiver.fail_next(2);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let config = channel(receiver.url(), "hook-secret");
    let channels = Arc::new(Channels::new(Arc::new(vec![config.clone()])));
    store
        .record_availability(&[row("A", 10), row("B", 80)], &channels.configs)
        .unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(worker::run(
        store.clone(),
        config,
        Arc::clone(&channels),
        shutdown.clone(),
    ));
    wait_until(
        "the receiver to get both SKUs",
        Duration::from_secs(30),
        || {
            let seen = (receiver.quantity("shop-a"), receiver.quantity("B"));
            async move {
                Ok(match seen {
                    (Some(9), Some(50)) => ControlFlow::Break(()),
                    other => ControlFlow::Continue(format!("{other:?}")),
                })
            }
        },
    )
    .await
    .unwrap();
    let (accepted, refused, failed) = receiver.counts();
    assert_eq!((refused, failed), (0, 2));
    assert!(accepted >= 1);
    assert_eq!(channels.status(&store, "hook").unwrap().unwrap().errors, 2);
    shutdown.cancel();
}

#[tokio::test]
async fn a_receiver_with_another_secret_refuses_and_the_channel_alerts() {
    let receiver = WebhookReceiver::start("the-receivers-secret")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let config = channel(receiver.url(), "another-secret");
    let channels = Arc::new(Channels::new(Arc::new(vec![config.clone()])));
    store
        .record_availability(&[row("A", 10)], &channels.configs)
        .unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(worker::run(
        store.clone(),
        config,
        Arc::clone(&channels),
        shutdown.clone(),
    ));
    let live = Arc::clone(&channels);
    wait_until("an alert", Duration::from_secs(30), || {
        let alert = live.live("hook").alert;
        async move {
            Ok(match alert {
                Some(a) => ControlFlow::Break(a),
                None => ControlFlow::Continue("no alert".into()),
            })
        }
    })
    .await
    .unwrap();
    assert_eq!(receiver.counts().1, 1);
    assert!(
        !channels
            .live("hook")
            .alert
            .unwrap()
            .contains("another-secret")
    );
    // Nothing was dropped: the value waits in the outbox.
    assert_eq!(store.outbox_stats("hook").unwrap().pending, 1);
    shutdown.cancel();
}

/// The Python block of README.md that follows `<!-- webhook-receiver -->`.
fn readme_receiver() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let start = readme
        .find("<!-- webhook-receiver -->")
        .expect("README.md has the webhook receiver");
    let block = &readme[start..];
    let code = block
        .split_once("```python\n")
        .expect("a ```python block")
        .1;
    code.split_once("```").expect("the block ends").0.to_owned()
}

#[test]
fn the_readmes_python_receiver_verifies_tallys_signature() {
    let snippet = readme_receiver();
    let now = jiff::Timestamp::now().as_second() as u64;
    let body = br#"{"channel":"hook","delivery":"d1","items":[{"sku":"A","quantity":3}]}"#;
    let sig = signature(b"s3cret", now, body);
    let run = |timestamp: u64, body: &[u8], sig: &str| {
        let script = format!(
            "{snippet}\nimport sys\nprint(verify(b's3cret', sys.argv[1], sys.argv[2].encode(), sys.argv[3]))\n"
        );
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(timestamp.to_string())
            .arg(std::str::from_utf8(body).unwrap())
            .arg(sig)
            .output()
            .expect("python3 runs (CI installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    assert_eq!(run(now, body, &sig), "True");
    assert_eq!(run(now, br#"{"channel":"hook","items":[]}"#, &sig), "False");
    assert_eq!(run(now + 1, body, &sig), "False");
    // A replayed request: the right signature of an old timestamp.
    let old = now - 3600;
    assert_eq!(run(old, body, &signature(b"s3cret", old, body)), "False");
}

//! The agent's sync session driven through channels, with the test playing central.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{sink, stream};
use tally_agent::log::{Log, LogWriter};
use tally_agent::sync::SyncStatus;
use tally_agent::sync::session::{self, End, Incoming, Outgoing, SessionLimits};
use tally_protocol::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Central {
    to_agent: mpsc::UnboundedSender<Incoming>,
    from_agent: mpsc::UnboundedReceiver<Outgoing>,
}

impl Central {
    fn send(&self, message: Message) {
        self.to_agent
            .send(Incoming::Binary(encode_message(&message)))
            .unwrap();
    }

    /// The next message the agent sent (pings skipped).
    async fn recv(&mut self) -> Message {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), self.from_agent.recv())
                .await
                .expect("the agent sends within 10 s")
                .expect("the session is running");
            if let Outgoing::Binary(bytes) = frame {
                return decode_message(&bytes).unwrap();
            }
        }
    }

    async fn batch(&mut self) -> Vec<u64> {
        match self.recv().await {
            Message::Batch(b) => b.events.iter().map(|e| e.seq).collect(),
            other => panic!("expected a batch, got {other:?}"),
        }
    }
}

fn limits() -> SessionLimits {
    SessionLimits {
        batch_max_events: 5,
        window: 3,
        ..SessionLimits::default()
    }
}

fn log_with(dir: &std::path::Path, events: u64) -> Log {
    let log = Log::open(dir).unwrap();
    let mut writer = LogWriter::new(log.clone(), u64::MAX).unwrap();
    let batch: Vec<Event> = (0..events)
        .map(|i| Event {
            id: Some(format!("e{i}")),
            ..Event::new(EventKind::Receipt, "S", Qty::from_units(1))
        })
        .collect();
    if events > 0 {
        writer
            .append_group(&[batch.as_slice()], Timestamp::now())
            .unwrap();
    }
    log
}

/// Starts a session on `log`; returns the test's end of the link and the session's outcome.
fn start(
    log: &Log,
    limits: SessionLimits,
) -> (
    Central,
    tokio::task::JoinHandle<End>,
    Arc<SyncStatus>,
    CancellationToken,
) {
    let (to_agent, incoming) = mpsc::unbounded_channel::<Incoming>();
    let (outgoing, from_agent) = mpsc::unbounded_channel::<Outgoing>();
    let status = Arc::new(SyncStatus::default());
    let shutdown = CancellationToken::new();
    let hello = Hello {
        agent_id: "a".into(),
        warehouse: "WH".into(),
        log_id: log.log_id(),
        head_seq: 0,
        oldest_unacked_at: None,
        token: Secret::new("t"),
        agent_version: "test".into(),
    };
    let task = {
        let (log, status, shutdown) = (log.clone(), Arc::clone(&status), shutdown.clone());
        tokio::spawn(async move {
            let stream = stream::unfold(incoming, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|frame| (Ok::<_, std::io::Error>(frame), rx))
            });
            let sink = sink::unfold(outgoing, |tx, frame: Outgoing| async move {
                tx.send(frame)
                    .map_err(|_| std::io::Error::other("closed"))?;
                Ok::<_, std::io::Error>(tx)
            });
            session::run(
                Box::pin(stream),
                Box::pin(sink),
                &log,
                hello,
                limits,
                &status,
                &shutdown,
            )
            .await
        })
    };
    (
        Central {
            to_agent,
            from_agent,
        },
        task,
        status,
        shutdown,
    )
}

fn welcome(stored_seq: u64) -> Message {
    Message::Welcome(Welcome {
        stored_seq,
        server_time: Timestamp::now(),
    })
}

#[tokio::test]
async fn streams_from_the_stored_seq_in_windowed_batches_and_records_acks() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with(dir.path(), 30);
    let (mut central, task, status, shutdown) = start(&log, limits());
    assert!(matches!(central.recv().await, Message::Hello(_)));
    central.send(welcome(7));
    assert_eq!(central.batch().await, vec![8, 9, 10, 11, 12]);
    assert_eq!(central.batch().await, vec![13, 14, 15, 16, 17]);
    assert_eq!(central.batch().await, vec![18, 19, 20, 21, 22]);
    // The window is full: the next batch follows the ack that frees a slot.
    central.send(Message::Ack(Ack { seq: 12 }));
    assert_eq!(central.batch().await, vec![23, 24, 25, 26, 27]);
    central.send(Message::Ack(Ack { seq: 27 }));
    assert_eq!(central.batch().await, vec![28, 29, 30]);
    central.send(Message::Ack(Ack { seq: 30 }));
    assert!(status.connected());

    // New events are picked up as the log grows.
    let mut writer = LogWriter::new(log.clone(), u64::MAX).unwrap();
    let more = [Event {
        id: None,
        ..log.read_after(0, 1).unwrap()[0].event.clone()
    }];
    writer
        .append_group(&[more.as_slice()], Timestamp::now())
        .unwrap();
    assert_eq!(central.batch().await, vec![31]);
    central.send(Message::Ack(Ack { seq: 31 }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while status.acked_seq() < 31 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ack was never taken in"
        );
        tokio::task::yield_now().await;
    }

    shutdown.cancel();
    assert!(matches!(task.await.unwrap(), End::Shutdown));
    assert_eq!(
        log.status().unwrap().acked_seq,
        31,
        "the last ack is persisted"
    );
}

#[tokio::test]
async fn a_rejection_ends_the_session_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with(dir.path(), 3);
    let (mut central, task, status, _shutdown) = start(&log, limits());
    central.recv().await;
    central.send(Message::Reject(Reject {
        reason: RejectReason::Revoked,
        retryable: false,
        message: "gone".into(),
    }));
    match task.await.unwrap() {
        End::Rejected {
            reason, retryable, ..
        } => assert_eq!((reason, retryable), (RejectReason::Revoked, false)),
        other => panic!("{other:?}"),
    }
    assert!(!status.connected());
}

#[tokio::test]
async fn central_ahead_of_the_log_is_fatal_not_silently_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with(dir.path(), 3);
    let (mut central, task, _status, _shutdown) = start(&log, limits());
    central.recv().await;
    central.send(welcome(10));
    assert!(matches!(task.await.unwrap(), End::Fatal(_)));
}

#[tokio::test]
async fn an_ack_for_something_never_sent_ends_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with(dir.path(), 3);
    let (mut central, task, _status, _shutdown) = start(&log, limits());
    central.recv().await;
    central.send(welcome(0));
    assert_eq!(central.batch().await, vec![1, 2, 3]);
    central.send(Message::Ack(Ack { seq: 9 }));
    assert!(matches!(task.await.unwrap(), End::Link(_)));
}

#[tokio::test]
async fn a_silent_link_is_declared_dead() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with(dir.path(), 0);
    let limits = SessionLimits {
        ping_interval: Duration::from_millis(20),
        dead_after: Duration::from_millis(200),
        ..limits()
    };
    let (mut central, task, _status, _shutdown) = start(&log, limits);
    central.recv().await;
    central.send(welcome(0));
    // Central answers nothing more, not even pongs: the agent must give up on the link.
    let end = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the session ends")
        .unwrap();
    assert!(
        matches!(end, End::Link(ref m) if m.contains("nothing heard")),
        "{end:?}"
    );
}

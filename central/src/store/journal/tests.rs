use tally_protocol::{Event, EventKind, Qty};

use super::*;

fn events(seqs: std::ops::RangeInclusive<u64>) -> Vec<LoggedEvent> {
    seqs.map(|seq| LoggedEvent {
        seq,
        received_at: Timestamp::from_micros(seq as i64),
        event: Event {
            id: Some(format!("e{seq}")),
            ..Event::new(EventKind::Receipt, "S", Qty::from_units(1))
        },
    })
    .collect()
}

/// The watchdog's pet comes from the journal writer: held up behind a write transaction
/// (as behind a hung fsync) it stops petting, and freed it pets again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_journal_writer_stops_the_watchdog_pets() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};
    use tally_service::watchdog::{Watchdog, send_probes};

    async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (journal, thread) = spawn(store.clone()).unwrap();
    let pets = Arc::new(AtomicUsize::new(0));
    let watchdog = Watchdog::new(Duration::from_millis(40), {
        let pets = Arc::clone(&pets);
        move || {
            pets.fetch_add(1, Ordering::SeqCst);
        }
    });
    let shutdown = tokio_util::sync::CancellationToken::new();
    let prober = tokio::spawn(send_probes(Arc::clone(&watchdog), shutdown.clone(), {
        let journal = journal.clone();
        move |probe| {
            let journal = journal.clone();
            async move { journal.probe(probe).await }
        }
    }));
    wait_until("the idle writer has petted three times", || {
        pets.load(Ordering::SeqCst) >= 3
    })
    .await;

    // Another write transaction holds the database: the writer's next commit waits for it.
    let blocker = store.db().begin_write().unwrap();
    let append = tokio::spawn({
        let journal = journal.clone();
        async move {
            journal
                .append("a1".into(), LogId([7; 16]), events(1..=1))
                .await
        }
    });
    let pets_before = pets.load(Ordering::SeqCst);
    // Not synchronisation: the window in which the stuck writer may not pet, 20 probe
    // intervals. One probe reached before the writer took the append may still count.
    tokio::time::sleep(watchdog.probe_interval() * 20).await;
    let pets_while_stuck = pets.load(Ordering::SeqCst) - pets_before;
    assert!(
        pets_while_stuck <= 1,
        "petted {pets_while_stuck} times while stuck"
    );
    assert!(!append.is_finished(), "the stuck batch was answered");

    drop(blocker);
    assert_eq!(append.await.unwrap().unwrap(), 1);
    let pets_after = pets.load(Ordering::SeqCst);
    wait_until("the freed writer pets again", || {
        pets.load(Ordering::SeqCst) > pets_after
    })
    .await;

    shutdown.cancel();
    prober.await.unwrap();
    drop(journal);
    tokio::task::spawn_blocking(move || thread.join().unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn batches_are_journaled_once_and_gaps_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (journal, thread) = spawn(store.clone()).unwrap();
    let agent: Arc<str> = "a1".into();
    let log = LogId([7; 16]);
    let other = LogId([8; 16]);
    assert_eq!(
        journal
            .append(agent.clone(), log, events(1..=3))
            .await
            .unwrap(),
        3
    );
    // Overlap with what is stored: the duplicates are dropped, the rest stored.
    assert_eq!(
        journal
            .append(agent.clone(), log, events(2..=5))
            .await
            .unwrap(),
        5
    );
    // Entirely old: nothing changes.
    assert_eq!(
        journal
            .append(agent.clone(), log, events(1..=2))
            .await
            .unwrap(),
        5
    );
    assert!(matches!(
        journal.append(agent.clone(), log, events(7..=8)).await,
        Err(JournalError::Gap { stored: 5, got: 7 })
    ));
    let mut broken = events(6..=8);
    broken.remove(1);
    assert!(matches!(
        journal.append(agent.clone(), log, broken).await,
        Err(JournalError::NotContiguous)
    ));
    // A new log id of the same agent is its own sequence space.
    assert_eq!(
        journal
            .append(agent.clone(), other, events(1..=2))
            .await
            .unwrap(),
        2
    );

    let seqs: Vec<u64> = store
        .read_journal("a1", log, 0, 100)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    assert_eq!(store.read_journal("a1", other, 0, 100).unwrap().len(), 2);
    assert_eq!(store.stored_seq("a1", log).unwrap(), 5);
    assert_eq!(store.stored_seq("a1", LogId([9; 16])).unwrap(), 0);
    // Client ids are indexed; the latest log journaled under an id wins.
    assert_eq!(store.find_event_id("a1", "e4").unwrap(), Some((log, 4)));
    assert_eq!(store.find_event_id("a1", "e2").unwrap(), Some((other, 2)));
    assert_eq!(store.find_event_id("a1", "e9").unwrap(), None);
    assert_eq!(store.find_event_id("a2", "e4").unwrap(), None);
    let streams = store.streams().unwrap();
    assert_eq!(streams.len(), 2);
    drop(journal);
    thread.join().unwrap();
}

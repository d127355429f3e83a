//! systemd's watchdog (`WatchdogSec=` in the unit), petted by the loop it guards.
//!
//! A timer that sends `WATCHDOG=1` beside a loop proves only that the timer runs. Here a timer
//! sends a [`Probe`] into the guarded loop's own queue, behind whatever work waits there, and the
//! loop itself sends `WATCHDOG=1` when it reaches the probe ([`Probe::reached`]). A loop stuck in
//! a commit (a hung fsync, a lock never released), or a queue that no longer moves, leaves its
//! probe unanswered: the pets stop, and after `WatchdogSec=` systemd kills the service
//! (SIGABRT) and restarts it. One probe at most is in flight, so a stuck loop's queue does not
//! fill with probes.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The watchdog of one guarded loop: how long the service manager waits for a pet, and how a
/// pet is sent.
pub struct Watchdog {
    timeout: Duration,
    pet: Box<dyn Fn() + Send + Sync>,
    /// A probe was sent and the loop has not reached it yet.
    in_flight: AtomicBool,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog")
            .field("timeout", &self.timeout)
            .field("in_flight", &self.in_flight.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Watchdog {
    /// The watchdog systemd asked for (`$WATCHDOG_USEC`, set by `WatchdogSec=` for the service's
    /// main process), or `None` when there is none (not under systemd, no `WatchdogSec=`, or
    /// not on Unix).
    pub fn from_systemd() -> Option<Arc<Watchdog>> {
        #[cfg(unix)]
        {
            let mut usec = 0;
            if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
                let pet = || {
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                };
                return Some(Watchdog::new(Duration::from_micros(usec), pet));
            }
        }
        None
    }

    /// A watchdog that calls `pet` when a probe is reached (tests count the calls).
    pub fn new(timeout: Duration, pet: impl Fn() + Send + Sync + 'static) -> Arc<Watchdog> {
        Arc::new(Watchdog {
            timeout,
            pet: Box::new(pet),
            in_flight: AtomicBool::new(false),
        })
    }

    /// How long the service manager waits for a pet before it kills the service.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How often a probe is sent: a quarter of the timeout, so that a probe may wait behind
    /// queued work for most of the timeout before a healthy loop is taken for a stuck one
    /// (systemd asks for a pet at least every half).
    pub fn probe_interval(&self) -> Duration {
        (self.timeout / 4).max(Duration::from_millis(1))
    }
}

/// A request for a sign of life, travelling through a guarded loop's queue. The loop calls
/// [`Probe::reached`] when it gets to it, after the work queued before it.
#[derive(Debug)]
pub struct Probe(Arc<Watchdog>);

impl Probe {
    /// Sends the pet (`WATCHDOG=1`): the loop that calls this has come this far.
    pub fn reached(self) {
        (self.0.pet)();
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        // Reached, or dropped unreached (the queue closed): either way the next one may go.
        self.0.in_flight.store(false, Ordering::Release);
    }
}

/// Sends a probe into the guarded loop every [`Watchdog::probe_interval`], one at a time,
/// until `shutdown` is cancelled or `send` answers `false` (the loop's queue is closed).
/// `send` waits while the queue is full, as the loop's other senders do.
pub async fn send_probes<F, Fut>(watchdog: Arc<Watchdog>, shutdown: CancellationToken, mut send: F)
where
    F: FnMut(Probe) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut tick = tokio::time::interval(watchdog.probe_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if watchdog.in_flight.swap(true, Ordering::AcqRel) {
            // The last probe is still queued or the loop is still busy with what came before
            // it: no pet until it gets there.
            continue;
        }
        let probe = Probe(Arc::clone(&watchdog));
        tokio::select! {
            () = shutdown.cancelled() => return,
            sent = send(probe) => if !sent { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;
    use std::time::Instant;

    use super::*;

    fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// A loop that reaches its probes unless it is stuck: the pet comes from the loop, so a
    /// stuck loop stops the pets, and the probe timer does not pile probes up behind it.
    #[test]
    fn a_stuck_loop_stops_the_pets_and_a_freed_one_resumes_them() {
        let pets = Arc::new(AtomicUsize::new(0));
        let watchdog = Watchdog::new(Duration::from_millis(40), {
            let pets = Arc::clone(&pets);
            move || {
                pets.fetch_add(1, Ordering::SeqCst);
            }
        });
        // The guarded loop: a thread that handles its queue's probes; `stick` makes it block on
        // the next one until `release` says so, as a commit stuck in fsync would.
        let (queue_tx, queue_rx) = tokio::sync::mpsc::channel::<Probe>(16);
        let (stick_tx, stick_rx) = mpsc::channel::<mpsc::Receiver<()>>();
        let (stuck_tx, stuck_rx) = mpsc::channel::<()>();
        let guarded = std::thread::spawn(move || {
            let mut queue_rx = queue_rx;
            while let Some(probe) = queue_rx.blocking_recv() {
                if let Ok(release) = stick_rx.try_recv() {
                    stuck_tx.send(()).unwrap();
                    let _ = release.recv();
                }
                probe.reached();
            }
        });
        let sent = Arc::new(AtomicUsize::new(0));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let shutdown = CancellationToken::new();
        let prober = std::thread::spawn({
            let (watchdog, shutdown, sent) =
                (Arc::clone(&watchdog), shutdown.clone(), Arc::clone(&sent));
            move || {
                runtime.block_on(send_probes(watchdog, shutdown, move |probe| {
                    sent.fetch_add(1, Ordering::SeqCst);
                    let queue = queue_tx.clone();
                    async move { queue.send(probe).await.is_ok() }
                }))
            }
        });

        wait_until("the running loop has petted three times", || {
            pets.load(Ordering::SeqCst) >= 3
        });

        let (release_tx, release_rx) = mpsc::channel();
        stick_tx.send(release_rx).unwrap();
        stuck_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let (pets_when_stuck, sent_when_stuck) =
            (pets.load(Ordering::SeqCst), sent.load(Ordering::SeqCst));
        // Not synchronisation: the window in which nothing may happen, 20 probe intervals (a
        // timer beside the loop would have petted 20 times in it).
        std::thread::sleep(watchdog.probe_interval() * 20);
        assert_eq!(
            pets.load(Ordering::SeqCst),
            pets_when_stuck,
            "a stuck loop petted"
        );
        assert_eq!(
            sent.load(Ordering::SeqCst),
            sent_when_stuck,
            "probes piled up behind the stuck one"
        );

        release_tx.send(()).unwrap();
        wait_until("the freed loop pets again", || {
            pets.load(Ordering::SeqCst) >= pets_when_stuck + 2
        });

        shutdown.cancel();
        prober.join().unwrap();
        guarded.join().unwrap();
    }

    #[test]
    fn the_probe_interval_is_a_quarter_of_the_timeout() {
        let watchdog = Watchdog::new(Duration::from_secs(60), || {});
        assert_eq!(watchdog.probe_interval(), Duration::from_secs(15));
        assert_eq!(watchdog.timeout(), Duration::from_secs(60));
    }
}

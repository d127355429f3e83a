//! A circuit breaker per remote service (Odoo, each sales channel): after
//! [`Breaker::THRESHOLD`] failures in a row that say the service is down or overloaded
//! (timeouts, refused connections, 5xx, serialisation failures), calls fail at once for a
//! cool-down instead of piling onto a struggling server. When the cool-down is over, the next
//! call goes through as a probe: success closes the circuit, failure opens it again for twice as
//! long (capped).
//!
//! What counts as "down" is the error type's own call ([`Classify`]): an answer that is an error
//! about the data or the credentials still shows the service is up and counts as a success here.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How an outbound error reads to the breaker.
pub trait Classify {
    /// Whether the error says the service is down or overloaded (as opposed to refusing one
    /// request's data or credentials, which shows it is up).
    fn is_outage(&self) -> bool;
}

/// A call refused because the circuit is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the service failed {failures} times in a row; calls resume in {} s", retry_in.as_secs() + 1)]
pub struct CircuitOpen {
    pub failures: u32,
    pub retry_in: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Circuit {
    /// Calls go through; `failures` in a row so far.
    Closed { failures: u32 },
    /// Calls fail at once until `until`.
    Open { until: Instant, cooldown: Duration },
    /// The cool-down is over: one call is on its way to find out.
    Probing { cooldown: Duration },
}

/// What the admin API shows of the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CircuitState {
    Closed,
    Open,
    Probing,
}

impl CircuitState {
    /// The name the admin API and metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::Probing => "probing",
        }
    }
}

#[derive(Debug)]
pub struct Breaker {
    circuit: Mutex<Circuit>,
    first_cooldown: Duration,
    max_cooldown: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker::new(Duration::from_secs(15), Duration::from_secs(300))
    }
}

impl Breaker {
    /// Failures in a row that open the circuit.
    pub const THRESHOLD: u32 = 5;

    pub fn new(first_cooldown: Duration, max_cooldown: Duration) -> Breaker {
        Breaker {
            circuit: Mutex::new(Circuit::Closed { failures: 0 }),
            first_cooldown,
            max_cooldown,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Circuit> {
        self.circuit.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a call may go out now; when not, the error to return instead.
    pub fn admit(&self, now: Instant) -> Result<(), CircuitOpen> {
        let mut circuit = self.lock();
        match *circuit {
            Circuit::Open { until, cooldown } if now >= until => {
                *circuit = Circuit::Probing { cooldown };
                Ok(())
            }
            Circuit::Open { until, .. } => Err(CircuitOpen {
                failures: Self::THRESHOLD,
                retry_in: until.saturating_duration_since(now),
            }),
            Circuit::Closed { .. } | Circuit::Probing { .. } => Ok(()),
        }
    }

    /// Records how a call that was let through ended.
    pub fn record<E: Classify>(&self, result: Result<(), &E>, now: Instant) {
        let down = result.is_err_and(Classify::is_outage);
        let mut circuit = self.lock();
        *circuit = match (*circuit, down) {
            (_, false) => Circuit::Closed { failures: 0 },
            (Circuit::Closed { failures }, true) if failures + 1 < Self::THRESHOLD => {
                Circuit::Closed {
                    failures: failures + 1,
                }
            }
            (Circuit::Closed { .. }, true) => Circuit::Open {
                until: now + self.first_cooldown,
                cooldown: self.first_cooldown,
            },
            (Circuit::Probing { cooldown } | Circuit::Open { cooldown, .. }, true) => {
                let cooldown = (cooldown * 2).min(self.max_cooldown);
                Circuit::Open {
                    until: now + cooldown,
                    cooldown,
                }
            }
        };
    }

    /// The state, and how long an open circuit stays open.
    pub fn state(&self, now: Instant) -> (CircuitState, Option<Duration>) {
        match *self.lock() {
            Circuit::Closed { .. } => (CircuitState::Closed, None),
            Circuit::Open { until, .. } => (
                CircuitState::Open,
                Some(until.saturating_duration_since(now)),
            ),
            Circuit::Probing { .. } => (CircuitState::Probing, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error type of a test service: `true` is an outage.
    struct Down(bool);

    impl Classify for Down {
        fn is_outage(&self) -> bool {
            self.0
        }
    }

    fn down() -> Down {
        Down(true)
    }

    #[test]
    fn opens_after_failures_in_a_row_probes_after_the_cooldown_and_backs_off() {
        let breaker = Breaker::new(Duration::from_secs(10), Duration::from_secs(25));
        let t0 = Instant::now();
        for _ in 0..Breaker::THRESHOLD - 1 {
            breaker.admit(t0).unwrap();
            breaker.record(Err(&down()), t0);
        }
        // A refusal about the data shows Odoo is up: the count starts again.
        breaker.record(Err(&Down(false)), t0);
        for _ in 0..Breaker::THRESHOLD {
            assert_eq!(breaker.state(t0).0, CircuitState::Closed);
            breaker.admit(t0).unwrap();
            breaker.record(Err(&down()), t0);
        }
        assert_eq!(
            breaker.state(t0),
            (CircuitState::Open, Some(Duration::from_secs(10)))
        );
        assert_eq!(
            breaker.admit(t0).unwrap_err().retry_in,
            Duration::from_secs(10)
        );
        let t1 = t0 + Duration::from_secs(10);
        breaker.admit(t1).unwrap();
        assert_eq!(breaker.state(t1).0, CircuitState::Probing);
        // The probe fails: open for twice as long, then capped.
        breaker.record(Err(&down()), t1);
        assert_eq!(breaker.state(t1).1, Some(Duration::from_secs(20)));
        let t2 = t1 + Duration::from_secs(20);
        breaker.admit(t2).unwrap();
        breaker.record(Err(&down()), t2);
        assert_eq!(breaker.state(t2).1, Some(Duration::from_secs(25)));
        // A probe that succeeds closes it.
        let t3 = t2 + Duration::from_secs(25);
        breaker.admit(t3).unwrap();
        breaker.record::<Down>(Ok(()), t3);
        assert_eq!(breaker.state(t3), (CircuitState::Closed, None));
    }
}

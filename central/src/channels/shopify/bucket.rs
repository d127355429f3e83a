//! Shopify's leaky bucket of query cost, as the client sees it: refilled at the restore rate,
//! capped at the maximum, corrected from every answer's `throttleStatus`. Pure.

use std::time::{Duration, Instant};

/// `extensions.cost.throttleStatus` of an answer.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThrottleStatus {
    pub maximum_available: f64,
    pub currently_available: f64,
    pub restore_rate: f64,
}

#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    /// Known once Shopify answered once.
    status: Option<(ThrottleStatus, Instant)>,
}

impl Bucket {
    pub fn new() -> Bucket {
        Bucket { status: None }
    }

    /// What Shopify said after an answer at `now`.
    pub fn observe(&mut self, status: ThrottleStatus, now: Instant) {
        self.status = Some((status, now));
    }

    /// The points available at `now`, if known.
    pub fn available(&self, now: Instant) -> Option<f64> {
        self.status.map(|(s, at)| {
            let refill = now.saturating_duration_since(at).as_secs_f64() * s.restore_rate;
            (s.currently_available + refill).min(s.maximum_available)
        })
    }

    /// How long to wait before a call of `cost` points can be paid for (zero when it can now,
    /// or when the bucket is not known yet).
    pub fn wait_for(&self, cost: f64, now: Instant) -> Duration {
        let Some((s, _)) = self.status else {
            return Duration::ZERO;
        };
        let available = self.available(now).unwrap_or(0.0);
        let cost = cost.min(s.maximum_available);
        if available >= cost || s.restore_rate <= 0.0 {
            return Duration::ZERO;
        }
        // A millisecond more than the arithmetic says: the server's clock is not ours.
        Duration::from_secs_f64((cost - available) / s.restore_rate) + Duration::from_millis(1)
    }

    /// Takes `cost` points at `now` (the server charges the requested cost when the call
    /// arrives; its answer corrects this).
    pub fn spend(&mut self, cost: f64, now: Instant) {
        if let Some(available) = self.available(now)
            && let Some((s, _)) = self.status
        {
            self.status = Some((
                ThrottleStatus {
                    currently_available: available - cost,
                    ..s
                },
                now,
            ));
        }
    }
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_exactly_as_long_as_the_refill_needs() {
        let t0 = Instant::now();
        let mut b = Bucket::new();
        assert_eq!(b.wait_for(1000.0, t0), Duration::ZERO);
        b.observe(
            ThrottleStatus {
                maximum_available: 2000.0,
                currently_available: 100.0,
                restore_rate: 100.0,
            },
            t0,
        );
        let wait = b.wait_for(300.0, t0);
        assert!(wait >= Duration::from_secs(2) && wait < Duration::from_millis(2010));
        assert_eq!(
            b.wait_for(300.0, t0 + Duration::from_secs(2)),
            Duration::ZERO
        );
        // Never more than the bucket holds.
        assert_eq!(b.available(t0 + Duration::from_secs(100)), Some(2000.0));
        b.spend(300.0, t0 + Duration::from_secs(2));
        assert_eq!(b.available(t0 + Duration::from_secs(2)), Some(0.0));
    }
}

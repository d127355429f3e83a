//! Retry delays: capped exponential backoff with jitter, as a pure function. The agent's
//! reconnects to central and central's pushes to a channel both wait this way.

use std::time::Duration;

/// The delay before retry `attempt` (0 for the first retry): `min · 2^attempt`,
/// capped at `max`, then scaled by a factor in [0.5, 1) from `jitter` ∈ [0, 1) so that many
/// agents cut off by the same outage do not reconnect in lockstep.
pub fn delay(attempt: u32, min: Duration, max: Duration, jitter: f64) -> Duration {
    let exponential = min.saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX));
    let capped = exponential.min(max);
    capped.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(30);

    #[test]
    fn grows_exponentially_then_stays_at_the_cap() {
        let at = |attempt| delay(attempt, MIN, MAX, 1.0);
        assert_eq!(at(0), MIN);
        assert_eq!(at(1), MIN * 2);
        assert_eq!(at(4), MIN * 16);
        assert_eq!(at(20), MAX);
        assert_eq!(at(u32::MAX), MAX);
    }

    #[test]
    fn jitter_spreads_each_delay_over_its_upper_half() {
        assert_eq!(delay(3, MIN, MAX, 0.0), MIN * 4);
        assert_eq!(delay(3, MIN, MAX, 0.5), MIN * 6);
        assert!(delay(3, MIN, MAX, 0.999) < MIN * 8);
        assert_eq!(
            delay(3, MIN, MAX, 7.0),
            MIN * 8,
            "out-of-range jitter is clamped"
        );
    }
}

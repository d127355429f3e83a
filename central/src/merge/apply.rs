//! Applying one planned picking to Odoo exactly once, whatever fails on the way.
//!
//! The picking's `name` is its deterministic key, and Odoo refuses a second picking of the same
//! name (`unique(name, company_id)`), so creating is safe to repeat. After any failure whose
//! outcome is unknown (a timeout, a lost answer, a 5xx, a serialisation failure), the key is looked
//! up: `done` means applied, an open state means validate again, absent means create again
//! (docs/odoo.md#exactly-once). Nothing is ever created twice and nothing is validated blindly.

use std::time::Duration;

use crate::merge::plan::{PlannedFill, PlannedPicking};
use crate::odoo::api::PickingStatus;
use crate::odoo::{ErrorKind, OdooClient, OdooError};

/// How hard to try before handing a retryable failure back to the caller.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 8,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Capped exponential backoff with jitter in the upper half.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exponential = self
            .min_delay
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX));
        exponential
            .min(self.max_delay)
            .mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
    }

    /// After a failed call: gives `error` back when it is not worth retrying or the attempts
    /// are used up; otherwise waits before the next attempt (which starts with a lookup).
    async fn back_off(
        &self,
        error: OdooError,
        failures: &mut u32,
        key: &str,
    ) -> Result<(), OdooError> {
        if !error.is_retryable() || *failures + 1 >= self.attempts {
            return Err(error);
        }
        tracing::warn!(%key, %error, attempt = *failures + 1, "Odoo call failed; looking again before retrying");
        tokio::time::sleep(self.delay(*failures, rand::random())).await;
        *failures += 1;
        Ok(())
    }
}

fn not_validated(name: &str) -> OdooError {
    OdooError::new(
        ErrorKind::Permanent,
        "not-validated",
        format!("Odoo answered the validation of {name} with a wizard instead of applying it"),
    )
}

/// What applying found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// This call created (or finished) and validated the picking.
    Done,
    /// The picking was already done: an earlier attempt applied it.
    AlreadyDone,
}

#[derive(Debug, Clone, Copy)]
enum Next {
    Create,
    Lookup,
    Validate(i64),
}

/// Applies `picking` exactly once. A permanent or auth error comes back as is; so does a
/// retryable one once `policy` is exhausted (the caller tries again later, from a lookup).
pub async fn apply_once(
    client: &OdooClient,
    picking: &PlannedPicking,
    policy: RetryPolicy,
) -> Result<Applied, OdooError> {
    apply_from(client, picking, policy, Next::Create).await
}

/// Like [`apply_once`] for a picking that may have been attempted before (after a restart):
/// starts with a lookup instead of a create.
pub async fn resume(
    client: &OdooClient,
    picking: &PlannedPicking,
    policy: RetryPolicy,
) -> Result<Applied, OdooError> {
    apply_from(client, picking, policy, Next::Lookup).await
}

async fn apply_from(
    client: &OdooClient,
    picking: &PlannedPicking,
    policy: RetryPolicy,
    mut next: Next,
) -> Result<Applied, OdooError> {
    let mut failures = 0;
    loop {
        let error = match next {
            Next::Create => match client.create_picking(picking).await {
                Ok(id) => {
                    next = Next::Validate(id);
                    continue;
                }
                Err(e) if e.is_duplicate_name() => {
                    next = Next::Lookup;
                    continue;
                }
                Err(e) => e,
            },
            Next::Lookup => match client.find_picking(&picking.key).await {
                Ok(None) => {
                    next = Next::Create;
                    continue;
                }
                Ok(Some(found)) if found.state == PickingStatus::Done => {
                    return Ok(Applied::AlreadyDone);
                }
                Ok(Some(found)) if found.state == PickingStatus::Cancel => {
                    return Err(OdooError::new(
                        ErrorKind::Permanent,
                        "cancelled",
                        format!(
                            "picking {} was cancelled in Odoo; its events need a new attempt under a new key",
                            picking.key
                        ),
                    ));
                }
                Ok(Some(found)) => {
                    next = Next::Validate(found.id);
                    continue;
                }
                Err(e) => e,
            },
            Next::Validate(id) => match client.validate_picking(id, picking.lines.len()).await {
                Ok(true) => return Ok(Applied::Done),
                Ok(false) => return Err(not_validated(&picking.key)),
                Err(e) => e,
            },
        };
        policy.back_off(error, &mut failures, &picking.key).await?;
        // Whatever the last call did, the key tells what is there now.
        next = Next::Lookup;
    }
}

/// Whether `note` carries `marker` as a whole (not as the prefix of a longer picking name).
fn has_marker(note: &str, marker: &str) -> bool {
    crate::merge::plan::markers(note).any(|m| m == marker)
}

#[derive(Debug, Clone, Copy)]
enum FillStep {
    Guard,
    Write,
    Validate,
}

/// Fills an open picking exactly once (docs/odoo.md#open-pickings): GUARD reads the picking; done
/// with this fill's marker means applied; open with the marker means written but not validated;
/// open without it means WRITE (quantities + marker, one transaction) then VALIDATE, keeping a
/// backorder for what was not picked. After any failure of unknown outcome, GUARD again. A picking
/// someone else validated or cancelled first is a permanent error: its events are parked for a
/// person to look at, never applied to some other picking behind their back.
pub async fn fill_once(
    client: &OdooClient,
    fill: &PlannedFill,
    policy: RetryPolicy,
) -> Result<Applied, OdooError> {
    let marker = fill.marker();
    let mut failures = 0;
    let mut step = FillStep::Guard;
    let mut note = String::new();
    loop {
        let error = match step {
            FillStep::Guard => match client.fill_guard(fill.picking).await {
                Ok(None) => {
                    return Err(OdooError::new(
                        ErrorKind::Permanent,
                        "picking-gone",
                        format!("picking {} no longer exists in Odoo", fill.picking_name),
                    ));
                }
                Ok(Some(guard)) => {
                    let marked = has_marker(&guard.note, &marker);
                    match (guard.state, marked) {
                        (PickingStatus::Done, true) => return Ok(Applied::AlreadyDone),
                        (PickingStatus::Done | PickingStatus::Cancel, false) => {
                            return Err(OdooError::new(
                                ErrorKind::Permanent,
                                "picking-conflict",
                                format!(
                                    "picking {} was {} in Odoo before Tally applied these scans to it",
                                    fill.picking_name,
                                    if guard.state == PickingStatus::Done {
                                        "validated"
                                    } else {
                                        "cancelled"
                                    }
                                ),
                            ));
                        }
                        (_, true) => step = FillStep::Validate,
                        (_, false) => {
                            note = guard.note;
                            step = FillStep::Write;
                        }
                    }
                    continue;
                }
                Err(e) => e,
            },
            FillStep::Write => match client.write_fill(fill, &note).await {
                Ok(()) => {
                    step = FillStep::Validate;
                    continue;
                }
                Err(e) => e,
            },
            FillStep::Validate => match client.validate_with_backorder(fill).await {
                Ok(true) => return Ok(Applied::Done),
                Ok(false) => return Err(not_validated(&fill.picking_name)),
                Err(e) => e,
            },
        };
        policy.back_off(error, &mut failures, &fill.key).await?;
        step = FillStep::Guard;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_cap() {
        let policy = RetryPolicy {
            attempts: 5,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        assert_eq!(policy.delay(0, 1.0), Duration::from_millis(100));
        assert_eq!(policy.delay(2, 1.0), Duration::from_millis(400));
        assert_eq!(policy.delay(10, 1.0), Duration::from_secs(1));
        assert_eq!(policy.delay(2, 0.0), Duration::from_millis(200));
    }

    #[test]
    fn a_marker_counts_only_for_its_own_picking() {
        let marker = "tally:K-F1@WH/OUT/0001";
        assert!(has_marker("<p>tally:K-F1@WH/OUT/0001</p>", marker));
        assert!(has_marker("tally:K-F1@WH/OUT/0001", marker));
        // A backorder's note is a copy of the original's: its marker names another picking.
        assert!(!has_marker("<p>tally:K-F1@WH/OUT/00012</p>", marker));
        assert!(!has_marker("<p>tally:K-F10@WH/OUT/0001</p>", marker));
        assert!(!has_marker("", marker));
    }
}

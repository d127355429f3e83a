//! A run of journaled events into the plan recorded before Odoo is called: resolved, parked
//! where it cannot be planned, split into phases, its pickings and fills planned and its counts
//! placed on Odoo's clock.

use std::collections::{BTreeMap, HashSet};

use tally_protocol::{EventKind, LogId, LoggedEvent};

use super::Lane;
use super::{Found, MergeError};
use crate::merge::keys;
use crate::merge::plan::{
    Oversized, PlannedCount, QUANTITY_TOO_LARGE, ResolvedEvent, fill, may_fill, phases, plan,
};
use crate::merge::state::{DeadLetter, ParkReason, Status, StoredPhase, StoredPlan, now_micros};

impl Lane {
    /// Plans the run that starts `events`: the plan and how many of `events` it takes (all of
    /// them, unless a referenced picking would be filled in two phases).
    pub(super) async fn plan_run(
        &mut self,
        agent: &str,
        log_id: LogId,
        run: &[LoggedEvent],
        retry: Option<u64>,
    ) -> Result<(StoredPlan, usize), MergeError> {
        let code = self.code.clone();
        let code = code.as_str();
        let mut parked = Vec::new();
        let park = |parked: &mut Vec<(u64, DeadLetter)>,
                    e: &LoggedEvent,
                    reason: &str,
                    message: String| {
            parked.push((
                e.seq,
                DeadLetter {
                    warehouse: code.to_owned(),
                    sku: e.event.sku.clone(),
                    reason: reason.to_owned(),
                    message,
                    parked_at: now_micros(),
                },
            ));
        };
        let park_oversized = |parked: &mut Vec<(u64, DeadLetter)>, oversized: Vec<Oversized>| {
            for o in oversized {
                let e = run
                    .iter()
                    .find(|e| e.seq == o.seq)
                    .expect("the planner only returns events of the run");
                park(parked, e, QUANTITY_TOO_LARGE, o.message);
            }
        };
        let warehouse = self.warehouse().await?;
        self.resolve(&warehouse, run).await?;
        // A key with parked events, or events waiting for a retry, takes nothing new until
        // those are through; a retry run itself waits only behind what is parked.
        let mut blocked: HashSet<String> = self.store.blocked_skus(code, retry.is_some()).await?;
        let mut resolved = Vec::with_capacity(run.len());
        for e in run {
            let ev = &e.event;
            if blocked.contains(&ev.sku) {
                park(
                    &mut parked,
                    e,
                    crate::merge::state::PARKED_BEHIND,
                    format!(
                        "an earlier event of {:?} in {code} is parked; this one waits behind it",
                        ev.sku
                    ),
                );
                continue;
            }
            // The journal may hold events from before central checked what agents send (or
            // from a rule added since): they are parked, never merged.
            if let Err(error) = e.validate() {
                park(
                    &mut parked,
                    e,
                    ParkReason::InvalidEvent.as_str(),
                    format!("the event breaks the event rules: {error}"),
                );
                blocked.insert(ev.sku.clone());
                continue;
            }
            let location = |name: &Option<String>| match name {
                None => Ok(warehouse.stock_location),
                Some(n) => self.locations.get(n).copied().flatten().ok_or(n.clone()),
            };
            let refusal = match self.products.get(&ev.sku) {
                Some(Found::Refused { reason, message }) => {
                    Some((reason.as_str(), message.clone()))
                }
                Some(Found::Product(p)) if p.lot_tracked && ev.lot.is_none() => Some((
                    ParkReason::MissingLot.as_str(),
                    format!(
                        "product {:?} is tracked by lot in Odoo and the event has no lot",
                        ev.sku
                    ),
                )),
                _ => None,
            };
            let from = location(&ev.location);
            let to = if ev.kind == EventKind::Transfer {
                location(&ev.to_location).map(Some)
            } else {
                Ok(None)
            };
            match (refusal, from, to, self.products.get(&ev.sku)) {
                (Some((reason, message)), ..) => {
                    park(&mut parked, e, reason, message);
                    blocked.insert(ev.sku.clone());
                }
                (None, Err(name), _, _) | (None, _, Err(name), _) => {
                    park(
                        &mut parked,
                        e,
                        ParkReason::UnknownLocation.as_str(),
                        format!("Odoo has no internal location named {name:?} in warehouse {code}"),
                    );
                    blocked.insert(ev.sku.clone());
                }
                (None, Ok(location), Ok(to_location), Some(Found::Product(product))) => {
                    resolved.push(ResolvedEvent {
                        event: e,
                        product: product.clone(),
                        location,
                        to_location,
                    });
                }
                _ => unreachable!("every SKU of the run was resolved"),
            }
        }
        // Refusals are not remembered: the product or location may be created in Odoo before
        // the next run (and parked events retried).
        self.products
            .retain(|_, found| matches!(found, Found::Product(_)));
        self.locations.retain(|_, id| id.is_some());

        let (phased, rest) = phases(resolved);
        // Parking depends only on earlier events: what the run leaves for the next one is
        // planned there again, from scratch.
        let taken = match rest.first() {
            Some(next) => run
                .iter()
                .position(|e| e.seq == next.event.seq)
                .expect("a resolved event is one of the run's"),
            None => run.len(),
        };
        let run = &run[..taken];
        parked.retain(|(seq, _)| run.iter().any(|e| e.seq == *seq));
        let (first, through) = (run[0].seq, run[run.len() - 1].seq);
        let skus: BTreeMap<u64, String> =
            run.iter().map(|e| (e.seq, e.event.sku.clone())).collect();
        let batch_key = keys::batch_key(agent, log_id, first, through, retry);
        let references: Vec<String> = phased
            .iter()
            .flat_map(|p| &p.moves)
            .filter(|r| may_fill(r.event))
            .filter_map(|r| r.event.event.reference.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let open = if references.is_empty() {
            BTreeMap::new()
        } else {
            self.odoo.open_pickings(&references).await?
        };
        let clock = self.clock(agent).await?;
        let mut stored = Vec::with_capacity(phased.len());
        for (n, phase) in phased.into_iter().enumerate() {
            let key = match n {
                0 => batch_key.clone(),
                n => format!("{batch_key}-p{}", n + 1),
            };
            // A product whose fill or line would sum beyond what Odoo holds exactly is left
            // out of the phase and parked; its events in later phases wait behind it
            // (`hold_back`, as each phase starts).
            let (fills, rest, oversized) = fill(&key, &warehouse, phase.moves, &open);
            park_oversized(&mut parked, oversized);
            let (pickings, oversized) = plan(&key, &warehouse, &rest);
            park_oversized(&mut parked, oversized);
            let mut counts = Vec::with_capacity(phase.counts.len());
            for c in &phase.counts {
                let e = c.event;
                match clock.odoo_time(e) {
                    Some(at) => counts.push(PlannedCount {
                        seq: e.seq,
                        product: c.product.id,
                        uom: c.product.uom_id,
                        location: c.location,
                        lot: e.event.lot.clone(),
                        qty: e.event.qty,
                        at,
                    }),
                    None => park(
                        &mut parked,
                        e,
                        ParkReason::BadTime.as_str(),
                        format!("the time of count seq {} is out of range", e.seq),
                    ),
                }
            }
            stored.push(StoredPhase {
                key,
                started: false,
                pickings: pickings.into_iter().map(|p| (p, Status::Pending)).collect(),
                fills: fills.into_iter().map(|f| (f, Status::Pending)).collect(),
                counts,
                counted: false,
                adjustments: Vec::new(),
            });
        }
        if parked
            .iter()
            .any(|(_, letter)| letter.reason == QUANTITY_TOO_LARGE)
        {
            tracing::warn!(
                warehouse = code,
                first,
                through,
                "events parked: a quantity they add up to is more than Odoo holds exactly"
            );
        }
        let plan = StoredPlan {
            warehouse: code.to_owned(),
            through,
            pickings: Vec::new(),
            fills: Vec::new(),
            phases: stored,
            parked,
            skus,
            retry,
        };
        Ok((plan, taken))
    }

    /// How this agent's clock and Odoo's are off from central's, as the plan is made.
    async fn clock(&self, agent: &str) -> Result<Clocks, MergeError> {
        Ok(Clocks {
            agent_behind: self.store.clock_offset(agent).await?.unwrap_or(0),
            odoo_ahead: self.odoo.clock_offset_micros(),
        })
    }
}

/// How far the agent's clock and Odoo's are from central's, to place a count's time on Odoo's
/// clock.
#[derive(Debug, Clone, Copy)]
struct Clocks {
    /// How far the agent's clock is behind central's (µs), measured when it connected.
    agent_behind: i64,
    /// How far Odoo's clock is ahead of central's (µs), from the `Date` of Odoo's answers.
    odoo_ahead: i64,
}

impl Clocks {
    /// When a count was taken, on Odoo's clock, as Odoo dates moves (UTC, whole seconds); `None`
    /// when that is out of range.
    fn odoo_time(&self, count: &LoggedEvent) -> Option<String> {
        let agent_clock = count
            .event
            .occurred_at
            .unwrap_or(count.received_at)
            .as_micros();
        let at = agent_clock
            .saturating_add(self.agent_behind)
            .saturating_add(self.odoo_ahead);
        jiff::Timestamp::from_microsecond(at)
            .ok()
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
    }
}

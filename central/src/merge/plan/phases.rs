//! Splitting a run into phases: a count after the events of its stock before it.

use std::collections::HashMap;

use tally_protocol::EventKind;

use super::*;

/// The stock a count is taken of: one product at one location, of one lot or, without a lot,
/// of all of them. Also the stock an event moves (a transfer moves two).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Stock {
    product: i64,
    location: i64,
    lot: Option<String>,
}

/// What has been placed so far of one stock (one lot, or all lots of a product at a location).
#[derive(Debug)]
struct Placed {
    lot: Option<String>,
    /// The phase of the stock's last count (0: none yet).
    counted: usize,
    /// The highest phase of a move of the stock.
    moved: usize,
}

/// A part of a run: its moves are applied first, then its counts are computed and applied.
#[derive(Debug, Default)]
pub struct Phase<'a> {
    /// The events that move stock (coalesced by [`fill`] and [`plan`]).
    pub moves: Vec<ResolvedEvent<'a>>,
    /// The counts that close the phase: of distinct stocks, each after every move of its stock
    /// that comes before it in the log.
    pub counts: Vec<ResolvedEvent<'a>>,
}

/// Splits a run into phases, in log order per stock: an event goes into the first phase after
/// the last count of its stock (of either end, for a transfer), and a count closes the first
/// phase that holds every earlier move of its stock and comes after its stock's earlier count.
/// A count without a lot is of every lot of its product there, so it is ordered against each.
/// Events of other stocks coalesce across a count.
///
/// A referenced pick or receipt fills an open Odoo picking that was looked up when the run was
/// planned; once a phase validated it, its backorder is another picking. So the run ends (the
/// rest is returned, for the next run) at the first such event whose reference already filled
/// in an earlier phase.
pub fn phases<'a>(events: Vec<ResolvedEvent<'a>>) -> (Vec<Phase<'a>>, Vec<ResolvedEvent<'a>>) {
    // (product, location) → each lot (or none) seen there
    let mut placed: HashMap<(i64, i64), Vec<Placed>> = HashMap::new();
    let mut referenced: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<Phase<'a>> = Vec::new();
    let mut events = events.into_iter();
    while let Some(r) = events.next() {
        let e = &r.event.event;
        let stocks = r.stocks();
        // The placed entries whose stock overlaps `stock`: the same lot, or either without.
        let overlapping = |placed: &HashMap<(i64, i64), Vec<Placed>>, stock: &Stock| {
            placed
                .get(&(stock.product, stock.location))
                .into_iter()
                .flatten()
                .filter(|p| p.lot.is_none() || stock.lot.is_none() || p.lot == stock.lot)
                .map(|p| (p.counted, p.moved))
                .collect::<Vec<_>>()
        };
        let phase = if e.kind == EventKind::Count {
            overlapping(&placed, &stocks[0])
                .into_iter()
                .map(|(counted, moved)| moved.max(counted + 1))
                .max()
                .unwrap_or(1)
                .max(1)
        } else {
            stocks
                .iter()
                .flat_map(|s| overlapping(&placed, s))
                .map(|(counted, _)| counted + 1)
                .max()
                .unwrap_or(1)
        };
        if may_fill(r.event)
            && let Some(reference) = &e.reference
        {
            match referenced.get(reference) {
                Some(&first) if first != phase => {
                    let rest = std::iter::once(r).chain(events).collect();
                    return (out, rest);
                }
                Some(_) => {}
                None => {
                    referenced.insert(reference.clone(), phase);
                }
            }
        }
        for stock in &stocks {
            let lots = placed.entry((stock.product, stock.location)).or_default();
            let at = match lots.iter().position(|p| p.lot == stock.lot) {
                Some(at) => at,
                None => {
                    lots.push(Placed {
                        lot: stock.lot.clone(),
                        counted: 0,
                        moved: 0,
                    });
                    lots.len() - 1
                }
            };
            let entry = &mut lots[at];
            if e.kind == EventKind::Count {
                entry.counted = phase;
            } else {
                entry.moved = entry.moved.max(phase);
            }
        }
        if out.len() < phase {
            out.resize_with(phase, Phase::default);
        }
        let target = &mut out[phase - 1];
        if e.kind == EventKind::Count {
            target.counts.push(r);
        } else {
            target.moves.push(r);
        }
    }
    (out, Vec::new())
}

impl ResolvedEvent<'_> {
    /// The stocks the event changes: its location's, and a transfer's destination's.
    fn stocks(&self) -> Vec<Stock> {
        let e = &self.event.event;
        let at = |location| Stock {
            product: self.product.id,
            location,
            lot: e.lot.clone(),
        };
        let mut out = vec![at(self.location)];
        if let Some(to) = self.to_location.filter(|to| *to != self.location)
            && e.kind == EventKind::Transfer
        {
            out.push(at(to));
        }
        out
    }
}

//! What a channel is offered of a SKU, and which changes are the risky ones. Pure.
//!
//! A channel alone is offered the free stock of its warehouses less its buffer, at most its
//! cap ([`offer`]). Channels in a pool ([`super::pool`]) split the pool's free stock by weight
//! first ([`shares`]), so that together they never offer more than it; each member's buffer
//! and cap then only lower its own share.

use tally_protocol::Qty;

use super::ChannelConfig;
use crate::availability::Availability;

/// The whole units a channel may offer: the free stock of its warehouses summed (a missing
/// warehouse counts as nothing) — or, for a pool member, its [`shares`] of that stock — less
/// the buffer (`units`, then `percent` of that stock, rounded up), never below zero, at most
/// the cap.
pub fn offer(channel: &ChannelConfig, rows: &[Availability]) -> u64 {
    let units = free_units(channel, rows);
    let stock = match &channel.pool {
        // Every row is of the one SKU offered (none: nothing to share).
        Some(pool) => rows
            .first()
            .map_or(0, |r| pool.share_of(&channel.name, &r.sku, units)),
        None => units,
    };
    hold_back(channel, stock)
}

/// The free stock of the channel's warehouses in whole units (a channel cannot sell half of a
/// unit Tally holds 0.5 of), never below zero. For a pool, the pool's available-to-promise:
/// every member feeds the same warehouses.
pub fn free_units(channel: &ChannelConfig, rows: &[Availability]) -> u64 {
    let free: i64 = rows
        .iter()
        .filter(|r| channel.warehouses.contains(&r.warehouse))
        .fold(0i64, |sum, r| sum.saturating_add(r.free.micros()));
    u64::try_from(free.max(0) / Qty::SCALE).unwrap_or(0)
}

/// `stock` less the channel's buffer, at most its cap: never more than `stock`, and never
/// less for more `stock` (a member's offer rises and falls with its share).
fn hold_back(channel: &ChannelConfig, stock: u64) -> u64 {
    let percent = (stock * u64::from(channel.buffer.percent)).div_ceil(100);
    let offered = stock
        .saturating_sub(channel.buffer.units)
        .saturating_sub(percent);
    channel.cap.map_or(offered, |cap| offered.min(cap))
}

/// Splits `units` between members of the given `weights`, in the members' order (a weight of
/// 0: a member that does not sell the SKU, and gets none of it).
///
/// Unless every weight is 0, the shares sum to exactly `units` (none lost to rounding down: one unit left with two
/// members still goes to one of them), no share exceeds its fair part rounded up
/// (⌈units × weight ÷ Σweights⌉), and — unlike largest remainders — no share ever falls when
/// `units` rises (nor rises when it falls). That last property is what keeps a pool from
/// over-offering while its members' pushes land one after the other: whichever members still
/// show the old value, the sum of what they show is at most the larger of the old and the new
/// stock (ARCHITECTURE.md, "Pools").
///
/// The method is Adams's (a divisor method): units are handed out one at a time, each to the
/// member with the highest `weight ÷ units it already has` (a member with none first), ties
/// to the higher weight, then the earlier member. It is computed without the loop: every
/// member starts at its fair part rounded up, and the units handed out last are taken back
/// until the sum is `units` (at most one per member).
pub fn shares(units: u64, weights: &[u32]) -> Vec<u64> {
    let total: u128 = weights.iter().map(|w| u128::from(*w)).sum();
    if total == 0 {
        return vec![0; weights.len()];
    }
    let mut shares: Vec<u64> = weights
        .iter()
        .map(|w| {
            let fair = (u128::from(units) * u128::from(*w)).div_ceil(total);
            u64::try_from(fair).unwrap_or(u64::MAX)
        })
        .collect();
    let mut given: u128 = shares.iter().map(|s| u128::from(*s)).sum();
    while given > u128::from(units) {
        // The member whose last unit was handed out last: the lowest weight ÷ (share − 1)
        // (∞ for a share of 1), ties to the lower weight, then the later member.
        let last = (0..shares.len())
            .filter(|&i| shares[i] > 0)
            .min_by(|&a, &b| handed_before(a, b, weights, &shares))
            .expect("more given than units means some share is positive");
        shares[last] -= 1;
        given -= 1;
    }
    shares
}

/// Orders members by when Adams's method handed out their current last unit: `Less` when
/// `a`'s came after `b`'s (so `min_by` finds the last one handed out).
fn handed_before(a: usize, b: usize, weights: &[u32], shares: &[u64]) -> std::cmp::Ordering {
    // Priority of a member's last unit: weight ÷ (share − 1), compared by cross-multiplying;
    // a share of 1 has an infinite priority.
    let priority = |i: usize| (u128::from(weights[i]), u128::from(shares[i] - 1));
    let ((wa, da), (wb, db)) = (priority(a), priority(b));
    let by_priority = match (da, db) {
        (0, 0) => std::cmp::Ordering::Equal,
        (0, _) => std::cmp::Ordering::Greater,
        (_, 0) => std::cmp::Ordering::Less,
        _ => (wa * db).cmp(&(wb * da)),
    };
    by_priority
        .then(weights[a].cmp(&weights[b]))
        .then(b.cmp(&a))
}

/// Whether pushing `next` after `shown` (what the channel was last sent, if anything) lowers
/// the offer: such pushes go first, since until they land the channel offers too much.
pub fn is_risk(next: u64, shown: Option<u64>) -> bool {
    shown.is_none_or(|shown| next < shown) || next == 0
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use proptest::prelude::*;
    use tally_protocol::Secret;

    use super::*;
    use crate::channels::pool::Pool;
    use crate::channels::{Buffer, ChannelKind};

    fn channel(units: u64, percent: u8, cap: Option<u64>) -> ChannelConfig {
        ChannelConfig {
            name: "c".into(),
            kind: ChannelKind::Webhook,
            warehouses: BTreeSet::from(["WH".to_owned(), "WH2".to_owned()]),
            buffer: Buffer { units, percent },
            cap,
            skus: BTreeMap::new(),
            ignore: BTreeSet::new(),
            url: "http://127.0.0.1:1".into(),
            secret: Secret::new("s"),
            reconcile: None,
            pool: None,
        }
    }

    fn row(warehouse: &str, free: &str) -> Availability {
        let free = Qty::parse(free).unwrap();
        Availability {
            sku: "A".into(),
            warehouse: warehouse.into(),
            on_hand: free,
            reserved: Qty::ZERO,
            free,
            read_at: String::new(),
            includes: vec![],
        }
    }

    #[test]
    fn the_offer_sums_the_channels_warehouses_and_holds_the_buffer_back() {
        let rows = [row("WH", "30"), row("WH2", "12.5"), row("OTHER", "100")];
        assert_eq!(offer(&channel(0, 0, None), &rows), 42);
        assert_eq!(offer(&channel(2, 0, None), &rows), 40);
        // 10 % of 42 is 4.2: 5 units held back.
        assert_eq!(offer(&channel(2, 10, None), &rows), 35);
        assert_eq!(offer(&channel(0, 0, Some(20)), &rows), 20);
        assert_eq!(offer(&channel(50, 0, None), &rows), 0);
        assert_eq!(offer(&channel(0, 0, None), &[row("WH", "-4")]), 0);
        assert_eq!(offer(&channel(0, 0, None), &[]), 0);
    }

    #[test]
    fn drops_and_zeros_are_risks_rises_are_not() {
        assert!(is_risk(3, Some(5)));
        assert!(is_risk(0, Some(0)));
        assert!(is_risk(7, None));
        assert!(!is_risk(6, Some(5)));
    }

    #[test]
    fn shares_split_by_weight_and_hand_every_unit_out() {
        assert_eq!(shares(10, &[1, 1]), [5, 5]);
        assert_eq!(shares(10, &[3, 1]), [7, 3]);
        assert_eq!(shares(9, &[2, 1]), [6, 3]);
        // The last unit of two goes to the heavier member, or the earlier one of equals.
        assert_eq!(shares(1, &[1, 3]), [0, 1]);
        assert_eq!(shares(1, &[2, 2]), [1, 0]);
        assert_eq!(shares(2, &[1, 1, 1]), [1, 1, 0]);
        assert_eq!(shares(0, &[5, 1]), [0, 0]);
        assert_eq!(shares(7, &[4]), [7]);
        assert_eq!(
            shares(u64::MAX, &[1, 1])
                .iter()
                .map(|s| u128::from(*s))
                .sum::<u128>(),
            u128::from(u64::MAX)
        );
    }

    #[test]
    fn a_pool_member_is_offered_its_share_less_its_own_buffer_and_cap() {
        let pool = Arc::new(Pool {
            name: "web".into(),
            members: vec![("big".into(), 3), ("small".into(), 1)],
            ignores: BTreeMap::new(),
        });
        let member = |name: &str, units: u64, cap: Option<u64>| ChannelConfig {
            name: name.into(),
            pool: Some(Arc::clone(&pool)),
            ..channel(units, 0, cap)
        };
        let rows = [row("WH", "30"), row("WH2", "11.5")];
        // 41 units: 3/4 is 30.75, 1/4 is 10.25.
        assert_eq!(offer(&member("big", 0, None), &rows), 31);
        assert_eq!(offer(&member("small", 0, None), &rows), 10);
        assert_eq!(offer(&member("big", 4, None), &rows), 27);
        assert_eq!(offer(&member("small", 0, Some(6)), &rows), 6);
    }

    proptest! {
        #[test]
        fn shares_never_exceed_the_stock_nor_a_fair_part_and_never_move_against_it(
            units in 0u64..100_000,
            weights in prop::collection::vec(prop_oneof![Just(0u32), 1u32..1000], 1..8),
        ) {
            let split = shares(units, &weights);
            prop_assert_eq!(split.len(), weights.len());
            let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
            if total == 0 {
                prop_assert!(split.iter().all(|s| *s == 0));
                return Ok(());
            }
            prop_assert_eq!(split.iter().sum::<u64>(), units);
            for (share, weight) in split.iter().zip(&weights) {
                prop_assert!(*share <= (units * u64::from(*weight)).div_ceil(total));
            }
            // Deterministic, and monotone: one more unit lowers nobody's share.
            prop_assert_eq!(&shares(units, &weights), &split);
            let more = shares(units + 1, &weights);
            for (before, after) in split.iter().zip(&more) {
                prop_assert!(before <= after, "{split:?} then {more:?}");
            }
        }

        #[test]
        fn pool_members_offer_together_at_most_the_pools_stock(
            free in 0u64..10_000,
            weights in prop::collection::vec(1u32..50, 1..5),
            buffers in prop::collection::vec((0u64..5, 0u8..30, prop::option::of(0u64..5_000)), 5),
        ) {
            let pool = Arc::new(Pool {
                name: "p".into(),
                members: weights.iter().enumerate().map(|(i, w)| (format!("m{i}"), *w)).collect(),
                ignores: BTreeMap::new(),
            });
            let rows = [row("WH", &free.to_string())];
            let offered: u64 = (0..weights.len())
                .map(|i| {
                    let (units, percent, cap) = buffers[i];
                    let member = ChannelConfig {
                        name: format!("m{i}"),
                        pool: Some(Arc::clone(&pool)),
                        ..channel(units, percent, cap)
                    };
                    offer(&member, &rows)
                })
                .sum();
            prop_assert!(offered <= free);
        }
    }
}

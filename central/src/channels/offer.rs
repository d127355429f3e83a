//! What a channel is offered of a SKU, and which changes are the risky ones. Pure.

use tally_protocol::Qty;

use super::ChannelConfig;
use crate::availability::Availability;

/// The whole units a channel may offer: the free stock of its warehouses summed (a missing
/// warehouse counts as nothing), less the buffer (`units`, then `percent` of the free stock,
/// rounded up), never below zero, at most the cap.
pub fn offer(channel: &ChannelConfig, rows: &[Availability]) -> u64 {
    let free: i64 = rows
        .iter()
        .filter(|r| channel.warehouses.contains(&r.warehouse))
        .fold(0i64, |sum, r| sum.saturating_add(r.free.micros()));
    // Whole units only: a channel cannot sell half of a unit Tally holds 0.5 of.
    let units = u64::try_from(free.max(0) / Qty::SCALE).unwrap_or(0);
    let percent = (units * u64::from(channel.buffer.percent)).div_ceil(100);
    let offered = units
        .saturating_sub(channel.buffer.units)
        .saturating_sub(percent);
    channel.cap.map_or(offered, |cap| offered.min(cap))
}

/// Whether pushing `next` after `shown` (what the channel was last sent, if anything) lowers
/// the offer: such pushes go first, since until they land the channel offers too much.
pub fn is_risk(next: u64, shown: Option<u64>) -> bool {
    shown.is_none_or(|shown| next < shown) || next == 0
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use tally_protocol::Secret;

    use super::*;
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
}

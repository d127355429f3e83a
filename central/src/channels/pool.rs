//! `[[pools]]` of central's configuration file: channels that share one stock and never offer
//! together more than it.
//!
//! A pool names its member channels with a weight each. Every member must feed the same
//! warehouses, so the pool's available-to-promise (ATP) of a SKU is simply their free stock in
//! whole units, the stock each member alone would see; [`super::offer::shares`] splits it by
//! weight, and each member's buffer and cap then lower only its own share. Checked at start-up,
//! before anything is opened or bound.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Deserialize;
use tally_service::{ConfigError, invalid};

use super::ChannelConfig;
use super::offer::shares;

/// One `[[pools]]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolFile {
    /// A name of the operator's choosing, unique among pools (`[a-z0-9_-]`, 1 to 40).
    pub name: String,
    /// Member channel → its weight (a whole number above zero).
    pub members: BTreeMap<String, u32>,
}

/// A checked pool: its members (in name order) and their weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub members: Vec<(String, u32)>,
    /// Member → the SKUs it never gets (its `ignore` list): a SKU is split only between the
    /// members that sell it.
    pub ignores: BTreeMap<String, BTreeSet<String>>,
}

impl Pool {
    /// What `channel`, a member, may offer of a pool ATP of `units` of `sku`: its [`shares`]
    /// part among the members that do not ignore `sku`. A channel that is not a member gets
    /// nothing (never the case for a checked pool).
    pub fn share_of(&self, channel: &str, sku: &str, units: u64) -> u64 {
        let weights: Vec<u32> = self
            .members
            .iter()
            .map(|(name, w)| {
                let ignores = self.ignores.get(name).is_some_and(|i| i.contains(sku));
                if ignores { 0 } else { *w }
            })
            .collect();
        self.members
            .iter()
            .position(|(name, _)| name == channel)
            .map_or(0, |i| shares(units, &weights)[i])
    }
}

/// Checks `pools` against the checked `channels` and marks each member with its pool: every
/// member is a channel, a channel is in at most one pool, every weight is above zero, and all
/// members feed the same warehouses. Errors name the pool and the offending member.
pub fn apply(channels: &mut [ChannelConfig], pools: Vec<PoolFile>) -> Result<(), ConfigError> {
    let mut names = BTreeSet::new();
    let mut pooled: BTreeMap<String, String> = BTreeMap::new();
    for file in pools {
        let name = file.name;
        let bad = |message: String| invalid("pools", format!("pool {name:?}: {message}"));
        if !super::config::valid_name(&name) {
            return Err(bad(
                "a name is 1 to 40 characters of a-z, 0-9, - and _".into()
            ));
        }
        if !names.insert(name.clone()) {
            return Err(invalid("pools", format!("two pools are named {name:?}")));
        }
        if file.members.is_empty() {
            return Err(bad(
                "members must name at least one channel with its weight".into(),
            ));
        }
        let mut warehouses: Option<(&str, BTreeSet<String>)> = None;
        for (member, weight) in &file.members {
            let Some(channel) = channels.iter().find(|c| &c.name == member) else {
                return Err(bad(format!(
                    "members.{member}: no channel is named {member:?}"
                )));
            };
            if *weight == 0 {
                return Err(bad(format!(
                    "members.{member}: a weight is a whole number above 0"
                )));
            }
            if let Some(other) = pooled.insert(member.clone(), name.clone()) {
                return Err(bad(format!(
                    "members.{member}: channel {member:?} is already in pool {other:?}"
                )));
            }
            match &warehouses {
                None => warehouses = Some((member, channel.warehouses.clone())),
                Some((first, set)) if *set != channel.warehouses => {
                    return Err(bad(format!(
                        "members.{member}: channel {member:?} feeds warehouses {:?} but {first:?} feeds {:?}; \
                         the members of a pool share one stock, so they must feed the same warehouses",
                        channel.warehouses, set
                    )));
                }
                Some(_) => {}
            }
        }
        let ignores = channels
            .iter()
            .filter(|c| file.members.contains_key(&c.name) && !c.ignore.is_empty())
            .map(|c| (c.name.clone(), c.ignore.clone()))
            .collect();
        let pool = Arc::new(Pool {
            name: name.clone(),
            members: file.members.into_iter().collect(),
            ignores,
        });
        for channel in channels.iter_mut() {
            if pool.members.iter().any(|(m, _)| *m == channel.name) {
                channel.pool = Some(Arc::clone(&pool));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::config::{ChannelFile, check};

    fn channels() -> Vec<ChannelConfig> {
        let channel = |name: &str, warehouses: &[&str]| ChannelFile {
            name: name.into(),
            kind: "webhook".into(),
            warehouses: warehouses.iter().map(|w| (*w).to_owned()).collect(),
            url: "http://127.0.0.1:9/hook".into(),
            secret_env: Some("PATH".into()),
            ..ChannelFile::default()
        };
        check(vec![
            channel("a", &["WH", "WH2"]),
            channel("b", &["WH2", "WH"]),
            channel("c", &["WH"]),
        ])
        .unwrap()
    }

    fn pool(name: &str, members: &[(&str, u32)]) -> PoolFile {
        PoolFile {
            name: name.into(),
            members: members.iter().map(|(m, w)| ((*m).to_owned(), *w)).collect(),
        }
    }

    fn error(pools: Vec<PoolFile>) -> String {
        apply(&mut channels(), pools).unwrap_err().to_string()
    }

    #[test]
    fn members_are_marked_with_their_pool() {
        let mut channels = channels();
        apply(&mut channels, vec![pool("web", &[("b", 1), ("a", 3)])]).unwrap();
        let web = channels[0].pool.clone().unwrap();
        assert_eq!(web.members, [("a".to_owned(), 3), ("b".to_owned(), 1)]);
        assert_eq!(channels[1].pool.as_deref(), Some(&*web));
        assert!(channels[2].pool.is_none());
        assert_eq!(web.share_of("a", "X", 10), 7);
        assert_eq!(web.share_of("b", "X", 10), 3);
        assert_eq!(web.share_of("c", "X", 10), 0);
    }

    #[test]
    fn a_sku_a_member_ignores_goes_whole_to_the_others() {
        let mut channels = channels();
        channels[1].ignore.insert("SAMPLE".into());
        apply(&mut channels, vec![pool("web", &[("a", 3), ("b", 1)])]).unwrap();
        let web = channels[0].pool.clone().unwrap();
        assert_eq!(web.share_of("a", "SAMPLE", 10), 10);
        assert_eq!(web.share_of("b", "SAMPLE", 10), 0);
        assert_eq!(web.share_of("a", "X", 10), 7);
    }

    #[test]
    fn a_wrong_pool_is_refused_naming_the_key() {
        let e = error(vec![pool("web", &[("a", 1), ("nope", 1)])]);
        assert!(e.contains("pools") && e.contains("members.nope"), "{e}");
        let e = error(vec![pool("web", &[("a", 0), ("b", 1)])]);
        assert!(e.contains("members.a") && e.contains("above 0"), "{e}");
        let e = error(vec![pool("web", &[("a", 1)]), pool("more", &[("a", 1)])]);
        assert!(e.contains("already in pool \"web\""), "{e}");
        let e = error(vec![pool("web", &[("a", 1), ("c", 1)])]);
        assert!(
            e.contains("members.c") && e.contains("same warehouses"),
            "{e}"
        );
        let e = error(vec![pool("web", &[]), pool("web", &[("a", 1)])]);
        assert!(e.contains("at least one channel"), "{e}");
        let e = error(vec![pool("web", &[("a", 1)]), pool("web", &[("b", 1)])]);
        assert!(e.contains("two pools"), "{e}");
        let e = error(vec![pool("Web!", &[("a", 1)])]);
        assert!(e.contains("1 to 40 characters"), "{e}");
    }
}

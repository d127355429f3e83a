//! Every table of central's store, in one place, and their opening: `create_all` runs in the
//! transaction that opens the store, so every table exists from then on and no reader meets
//! a missing one.
//!
//! | table | key | value | written by |
//! |---|---|---|---|
//! | `format` | `"version"` | `u64` | `tally_service::datafile` (the data format, [`super::STORE_FORMAT`]) |
//! | `agents` | agent id | registry record (JSON) | `registry.rs` |
//! | `agent_clock` | agent id | (µs behind central, when measured) | `registry.rs` (sync sessions) |
//! | `streams` | (agent id, log id) | highest seq journaled, when the stream appeared | `journal.rs` (writer thread) |
//! | `journal` | (agent id, log id, seq) | encoded `LoggedEvent` | `journal.rs` (writer thread) |
//! | `merge_cursor` | (agent id, log id) | highest seq resolved | `merge::state` |
//! | `merge_plan` | (agent id, log id) | the plan being applied (JSON, `merge::state::plans`) | `merge::state` |
//! | `dead_letters` | (agent id, log id, seq) | why the event is parked (JSON) | `merge::state` |
//! | `retry_letters` | (agent id, log id, seq) | a parked event queued for a retry (JSON) | `merge::state` |
//! | `discarded_letters` | (agent id, log id, seq) | a parked event given up on (JSON) | `merge::state` |
//! | `merge_notices` | (agent id, log id, seq) | something an operator should know (JSON) | `merge::state` |
//! | `merge_counters` | name | `u64` (`retry_generation`) | `merge::state` |
//! | `merged_into` | (agent id, log id, seq) | the Odoo picking the event went into (JSON) | `merge::merged` |
//! | `journal_ids` | (agent id, client event id) | (log id, seq) | `journal.rs` (writer thread; built by the format 2 migration) |
//! | `audit_log` | sequence number | a change made through the admin API or CLI (JSON) | `audit.rs` |
//! | `availability` | (SKU, warehouse) | on hand, reserved, free, when read, journal positions | `availability::store` |
//! | `availability_cursor` | name | Odoo write-date cursor | `availability::store` |
//! | `channel_outbox` | (channel, SKU) | the value to push, with its sequence number | `channels::outbox` |
//! | `channel_pushed` | (channel, SKU) | what the channel was last sent | `channels::outbox` |
//! | `channel_dead` | (channel, SKU) | a push the channel refused for good, with why | `channels::outbox` |
//! | `channel_counters` | (channel, name) | per-channel counters and totals | `channels::outbox`, `channels::figures` |
//! | `channel_notes` | (channel, name) | a channel's last error and latest drift | `channels::figures` |
//!
//! A new table goes here, in `create_all`, in [`TABLES`] and in the backup's list
//! (`backup.rs`, which fails any backup that misses one).

use redb::{TableDefinition, WriteTransaction};

use super::{ResultExt, StoreError};

pub(crate) const AGENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("agents");
/// Each agent's clock as central last measured it: (agent) → (central's clock minus the
/// agent's, in microseconds; when measured).
pub(crate) const CLOCKS: TableDefinition<&str, (i64, i64)> = TableDefinition::new("agent_clock");
pub(crate) const STREAMS: TableDefinition<(&str, u128), &[u8]> = TableDefinition::new("streams");
pub(crate) const JOURNAL: TableDefinition<(&str, u128, u64), &[u8]> =
    TableDefinition::new("journal");

pub(crate) const CURSORS: TableDefinition<(&str, u128), u64> = TableDefinition::new("merge_cursor");
pub(crate) const PLANS: TableDefinition<(&str, u128), &[u8]> = TableDefinition::new("merge_plan");
pub(crate) const DEAD_LETTERS: TableDefinition<(&str, u128, u64), &[u8]> =
    TableDefinition::new("dead_letters");
/// Dead letters an operator discarded, kept for audit with the reason given.
pub(crate) const DISCARDED: TableDefinition<(&str, u128, u64), &[u8]> =
    TableDefinition::new("discarded_letters");
/// Parked events an operator asked to try again: taken before any new run of their stream.
pub(crate) const RETRIES: TableDefinition<(&str, u128, u64), &[u8]> =
    TableDefinition::new("retry_letters");
/// Things an operator should know that did not stop the merge: (agent, log, seq) → notice.
pub(crate) const NOTICES: TableDefinition<(&str, u128, u64), &[u8]> =
    TableDefinition::new("merge_notices");
/// Counters: `retry_generation`.
pub(crate) const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("merge_counters");

/// The name of every table of the store, `format` included (checked against an opened store
/// by the test below).
pub const TABLES: [&str; 22] = [
    "format",
    "agents",
    "agent_clock",
    "streams",
    "journal",
    "merge_cursor",
    "merge_plan",
    "dead_letters",
    "retry_letters",
    "discarded_letters",
    "merge_notices",
    "merge_counters",
    "merged_into",
    "journal_ids",
    "audit_log",
    "availability",
    "availability_cursor",
    "channel_outbox",
    "channel_pushed",
    "channel_dead",
    "channel_counters",
    "channel_notes",
];

/// Opens (creating where missing) every table but `format`, which the format check owns.
pub(crate) fn create_all(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(AGENTS).storage()?;
    txn.open_table(CLOCKS).storage()?;
    txn.open_table(STREAMS).storage()?;
    txn.open_table(JOURNAL).storage()?;
    txn.open_table(CURSORS).storage()?;
    txn.open_table(PLANS).storage()?;
    txn.open_table(DEAD_LETTERS).storage()?;
    txn.open_table(RETRIES).storage()?;
    txn.open_table(DISCARDED).storage()?;
    txn.open_table(NOTICES).storage()?;
    txn.open_table(COUNTERS).storage()?;
    txn.open_table(crate::merge::merged::MERGED_INTO)
        .storage()?;
    txn.open_table(super::journal::JOURNAL_IDS).storage()?;
    txn.open_table(super::audit::AUDIT).storage()?;
    crate::availability::store::open_tables(txn)?;
    crate::channels::outbox::open_tables(txn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use redb::{ReadableDatabase, TableHandle};

    use super::*;
    use crate::store::Store;

    #[test]
    fn a_new_store_has_every_table_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let txn = store.db().begin_read().unwrap();
        let mut found: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_owned())
            .collect();
        found.sort();
        let mut expected: Vec<String> = TABLES.iter().map(|t| (*t).to_owned()).collect();
        expected.sort();
        assert_eq!(found, expected);
    }
}

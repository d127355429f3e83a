//! The audit log: every change an operator made (agents added, rotated, revoked; parked events
//! retried or discarded; channels resynced), who made it (the role of the token, or `local` for the command line
//! on a stopped central's database), when, and why.
//!
//! Each entry is written in the transaction that makes the change, so a change is never
//! without its entry, nor an entry without its change. Keys are increasing numbers; entries
//! are never changed or removed.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use tally_protocol::Timestamp;

use super::{ResultExt, Store, StoreError};

/// (number) → [`AuditEntry`] as JSON.
pub(crate) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_log");

/// Who asks for a change, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor<'a> {
    /// `admin` (the admin token), or `local` (the command line on the database).
    pub role: &'a str,
    pub reason: Option<&'a str>,
}

impl<'a> Actor<'a> {
    /// The command line working on a stopped central's database.
    pub fn local(reason: Option<&'a str>) -> Actor<'a> {
        Actor {
            role: "local",
            reason,
        }
    }
}

/// One change, as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Microseconds since the Unix epoch, central's clock.
    pub at: i64,
    pub role: String,
    /// `agent-add`, `agent-rotate`, `agent-revoke`, `dead-letter-retry`, `dead-letter-discard`,
    /// `channel-resync`.
    pub action: String,
    /// The agent id, `warehouse/SKU`, or the channel's name.
    pub target: String,
    pub reason: Option<String>,
    /// What the change did, such as `3 events queued`.
    pub detail: String,
}

/// Appends an entry inside the caller's write transaction.
pub(crate) fn append(
    txn: &redb::WriteTransaction,
    actor: Actor<'_>,
    action: &str,
    target: &str,
    detail: String,
) -> Result<(), StoreError> {
    let mut table = txn.open_table(AUDIT).storage()?;
    let next = table
        .last()
        .storage()?
        .map_or(1, |(k, _)| k.value().saturating_add(1));
    let entry = AuditEntry {
        at: Timestamp::now().as_micros(),
        role: actor.role.to_owned(),
        action: action.to_owned(),
        target: target.to_owned(),
        reason: actor.reason.map(str::to_owned),
        detail,
    };
    let bytes = serde_json::to_vec(&entry).expect("serialising a plain struct");
    table.insert(next, bytes.as_slice()).storage()?;
    Ok(())
}

impl Store {
    /// The newest `limit` entries, newest first, with their numbers, and how many there are.
    pub fn audit_page(&self, limit: usize) -> Result<(Vec<(u64, AuditEntry)>, u64), StoreError> {
        let txn = self.db().begin_read().storage()?;
        let table = match txn.open_table(AUDIT) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok((Vec::new(), 0)),
            Err(e) => return Err(StoreError::Storage(e.into())),
        };
        let total = table.len().storage()?;
        let mut out = Vec::new();
        for entry in table.iter().storage()?.rev().take(limit) {
            let (k, v) = entry.storage()?;
            let entry: AuditEntry = serde_json::from_slice(v.value())
                .map_err(|e| StoreError::Corrupt(format!("audit entry {}: {e}", k.value())))?;
            out.push((k.value(), entry));
        }
        Ok((out, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_is_audited_with_its_role_and_reason_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let admin = Actor {
            role: "admin",
            reason: Some("new scanner"),
        };
        store.add_agent_as("a1", "WH", admin).unwrap();
        store
            .rotate_agent_as("a1", std::time::Duration::ZERO, Actor::local(None))
            .unwrap();
        store.revoke_agent_as("a1", admin).unwrap();
        // Nothing parked: no change, no entry.
        assert_eq!(
            store
                .retry_dead_letters_as("WH", "S", Actor::local(Some("fixed")))
                .unwrap(),
            0
        );
        let (entries, total) = store.audit_page(10).unwrap();
        assert_eq!(total, 3);
        let actions: Vec<(&str, &str, &str)> = entries
            .iter()
            .map(|(_, e)| (e.action.as_str(), e.role.as_str(), e.target.as_str()))
            .collect();
        assert_eq!(
            actions,
            [
                ("agent-revoke", "admin", "a1"),
                ("agent-rotate", "local", "a1"),
                ("agent-add", "admin", "a1"),
            ]
        );
        assert_eq!(entries[2].1.reason.as_deref(), Some("new scanner"));
        assert_eq!(entries[0].0, 3);
        assert_eq!(store.audit_page(1).unwrap().0.len(), 1);
        // A failed change leaves no entry either.
        assert!(store.add_agent_as("a1", "WH", admin).is_err());
        assert_eq!(store.audit_page(10).unwrap().1, 3);
    }
}

//! The agent registry: who may connect, for which warehouse, with which token.
//!
//! Only a SHA-256 digest of each token is stored. Tokens are 256 random bits, so a plain digest
//! is as strong as a slow password hash here, and checking one costs microseconds.
//! Comparisons are constant-time.

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use tally_protocol::{Secret, Timestamp};
use tally_service::token::TokenDigest;

use super::audit::{self, Actor};
use super::{AGENTS, ResultExt, Store, StoreError};

/// The prefix of every agent token, so secret scanners and people can recognise one.
const TOKEN_PREFIX: &str = "tly1_";

/// The registry record as stored (private: the storage format is not an API).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredAgent {
    warehouse: String,
    token_sha256: [u8; 32],
    previous_token_sha256: Option<[u8; 32]>,
    previous_valid_until: Option<i64>,
    revoked_at: Option<i64>,
    created_at: i64,
}

/// What operators see of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    pub agent_id: String,
    pub warehouse: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// Until when the token replaced by the last rotation still works.
    pub previous_token_valid_until: Option<Timestamp>,
}

/// The result of checking an agent's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted {
        warehouse: String,
    },
    /// Unknown agent or wrong token: deliberately one answer for both.
    BadToken,
    Revoked,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("agent {0:?} is already registered")]
    Exists(String),
    #[error("no agent {0:?} is registered")]
    NotFound(String),
    #[error("agent {0:?} is revoked; add it again under a new id")]
    Revoked(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn digest(token: &str) -> [u8; 32] {
    TokenDigest::of(token).to_bytes()
}

fn new_token() -> Secret {
    let bytes: [u8; 32] = rand::random();
    Secret::new(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

fn decode(agent_id: &str, bytes: &[u8]) -> Result<StoredAgent, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt(format!("registry record of {agent_id:?}: {e}")))
}

fn info(agent_id: &str, a: &StoredAgent) -> AgentInfo {
    AgentInfo {
        agent_id: agent_id.to_owned(),
        warehouse: a.warehouse.clone(),
        created_at: Timestamp::from_micros(a.created_at),
        revoked_at: a.revoked_at.map(Timestamp::from_micros),
        previous_token_valid_until: a.previous_valid_until.map(Timestamp::from_micros),
    }
}

impl Store {
    /// Registers an agent and returns its token: the only time the token is ever shown.
    /// Audited as a `local` change (the database worked on directly).
    pub fn add_agent(&self, agent_id: &str, warehouse: &str) -> Result<Secret, RegistryError> {
        self.add_agent_as(agent_id, warehouse, Actor::local(None))
    }

    /// [`Store::add_agent`] on behalf of `actor`, audited in the same transaction.
    pub fn add_agent_as(
        &self,
        agent_id: &str,
        warehouse: &str,
        actor: Actor<'_>,
    ) -> Result<Secret, RegistryError> {
        let token = new_token();
        let record = StoredAgent {
            warehouse: warehouse.to_owned(),
            token_sha256: digest(token.expose()),
            previous_token_sha256: None,
            previous_valid_until: None,
            revoked_at: None,
            created_at: Timestamp::now().as_micros(),
        };
        let txn = self.db().begin_write().storage()?;
        {
            let mut table = txn.open_table(AGENTS).storage()?;
            if table.get(agent_id).storage()?.is_some() {
                return Err(RegistryError::Exists(agent_id.to_owned()));
            }
            let bytes = serde_json::to_vec(&record).expect("serialising a plain struct");
            table.insert(agent_id, bytes.as_slice()).storage()?;
        }
        audit::append(
            &txn,
            actor,
            "agent-add",
            agent_id,
            format!("warehouse {warehouse}"),
        )?;
        txn.commit().storage()?;
        Ok(token)
    }

    /// Issues a new token; the old one keeps working until `now + grace`.
    pub fn rotate_agent(
        &self,
        agent_id: &str,
        grace: std::time::Duration,
    ) -> Result<Secret, RegistryError> {
        self.rotate_agent_as(agent_id, grace, Actor::local(None))
    }

    /// [`Store::rotate_agent`] on behalf of `actor`, audited in the same transaction.
    pub fn rotate_agent_as(
        &self,
        agent_id: &str,
        grace: std::time::Duration,
        actor: Actor<'_>,
    ) -> Result<Secret, RegistryError> {
        let token = new_token();
        let detail = format!("previous token valid for {}s", grace.as_secs());
        self.update(agent_id, (actor, "agent-rotate", detail), |record| {
            if record.revoked_at.is_some() {
                return Err(RegistryError::Revoked(agent_id.to_owned()));
            }
            record.previous_token_sha256 = Some(record.token_sha256);
            record.previous_valid_until = Some(
                Timestamp::now()
                    .as_micros()
                    .saturating_add(i64::try_from(grace.as_micros()).unwrap_or(i64::MAX)),
            );
            record.token_sha256 = digest(token.expose());
            Ok(())
        })?;
        Ok(token)
    }

    /// Revokes an agent for good. Its live connection must be closed by the caller.
    pub fn revoke_agent(&self, agent_id: &str) -> Result<(), RegistryError> {
        self.revoke_agent_as(agent_id, Actor::local(None))
    }

    /// [`Store::revoke_agent`] on behalf of `actor`, audited in the same transaction.
    pub fn revoke_agent_as(&self, agent_id: &str, actor: Actor<'_>) -> Result<(), RegistryError> {
        let change = (actor, "agent-revoke", "revoked".to_owned());
        self.update(agent_id, change, |record| {
            record
                .revoked_at
                .get_or_insert(Timestamp::now().as_micros());
            Ok(())
        })
    }

    /// Changes an agent's record and audits it (`actor`, action, detail), in one transaction.
    fn update(
        &self,
        agent_id: &str,
        (actor, action, detail): (Actor<'_>, &str, String),
        change: impl FnOnce(&mut StoredAgent) -> Result<(), RegistryError>,
    ) -> Result<(), RegistryError> {
        let txn = self.db().begin_write().storage()?;
        {
            let mut table = txn.open_table(AGENTS).storage()?;
            let mut record = match table.get(agent_id).storage()? {
                Some(bytes) => decode(agent_id, bytes.value())?,
                None => return Err(RegistryError::NotFound(agent_id.to_owned())),
            };
            change(&mut record)?;
            let bytes = serde_json::to_vec(&record).expect("serialising a plain struct");
            table.insert(agent_id, bytes.as_slice()).storage()?;
        }
        audit::append(&txn, actor, action, agent_id, detail)?;
        txn.commit().storage()?;
        Ok(())
    }

    pub fn list_agents(&self) -> Result<Vec<AgentInfo>, StoreError> {
        let txn = self.db().begin_read().storage()?;
        let table = txn.open_table(AGENTS).storage()?;
        let mut out = Vec::new();
        for entry in table.iter().storage()? {
            let (id, bytes) = entry.storage()?;
            out.push(info(id.value(), &decode(id.value(), bytes.value())?));
        }
        Ok(out)
    }

    /// Checks an agent's token, in constant time with respect to the token.
    pub fn verify_agent(&self, agent_id: &str, token: &Secret) -> Result<Verdict, StoreError> {
        let presented = TokenDigest::of(token.expose());
        let txn = self.db().begin_read().storage()?;
        let table = txn.open_table(AGENTS).storage()?;
        let Some(bytes) = table.get(agent_id).storage()? else {
            return Ok(Verdict::BadToken);
        };
        let record = decode(agent_id, bytes.value())?;
        let now = Timestamp::now().as_micros();
        let current = TokenDigest::from_bytes(record.token_sha256).matches(&presented);
        let previous = match (record.previous_token_sha256, record.previous_valid_until) {
            (Some(old), Some(until)) if now < until => {
                TokenDigest::from_bytes(old).matches(&presented)
            }
            _ => subtle::Choice::from(0),
        };
        if !bool::from(current | previous) {
            return Ok(Verdict::BadToken);
        }
        if record.revoked_at.is_some() {
            return Ok(Verdict::Revoked);
        }
        Ok(Verdict::Accepted {
            warehouse: record.warehouse,
        })
    }
}

use super::schema::CLOCKS;

impl Store {
    /// Records how far the agent's clock is behind central's (`offset_micros`; negative when
    /// it is ahead), measured when it connected.
    pub fn set_clock_offset(&self, agent_id: &str, offset_micros: i64) -> Result<(), StoreError> {
        let mut txn = self.db().begin_write().storage()?;
        // Advisory and measured again at every connection: no fsync of its own (a storm of
        // reconnections must not cost one each); the next journal commit makes it durable.
        txn.set_durability(redb::Durability::None).storage()?;
        txn.open_table(CLOCKS)
            .storage()?
            .insert(agent_id, (offset_micros, Timestamp::now().as_micros()))
            .storage()?;
        txn.commit().storage()
    }

    /// The agent's last measured clock offset and when it was measured, if ever.
    pub fn clock_offset(&self, agent_id: &str) -> Result<Option<(i64, Timestamp)>, StoreError> {
        let txn = self.db().begin_read().storage()?;
        let table = txn.open_table(CLOCKS).storage()?;
        Ok(table.get(agent_id).storage()?.map(|v| {
            let (offset, at) = v.value();
            (offset, Timestamp::from_micros(at))
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn a_new_agent_is_accepted_with_its_token_only() {
        let (_dir, store) = store();
        let token = store.add_agent("a1", "WH").unwrap();
        assert!(token.expose().starts_with(TOKEN_PREFIX));
        assert_eq!(
            store.verify_agent("a1", &token).unwrap(),
            Verdict::Accepted {
                warehouse: "WH".into()
            }
        );
        assert_eq!(
            store.verify_agent("a1", &Secret::new("nope")).unwrap(),
            Verdict::BadToken
        );
        assert_eq!(store.verify_agent("a2", &token).unwrap(), Verdict::BadToken);
        assert!(matches!(
            store.add_agent("a1", "WH"),
            Err(RegistryError::Exists(_))
        ));
    }

    #[test]
    fn rotation_keeps_the_old_token_for_the_grace_period_only() {
        let (_dir, store) = store();
        let old = store.add_agent("a1", "WH").unwrap();
        let new = store.rotate_agent("a1", Duration::from_secs(3600)).unwrap();
        assert_ne!(old, new);
        assert!(matches!(
            store.verify_agent("a1", &old).unwrap(),
            Verdict::Accepted { .. }
        ));
        assert!(matches!(
            store.verify_agent("a1", &new).unwrap(),
            Verdict::Accepted { .. }
        ));
        let newest = store.rotate_agent("a1", Duration::ZERO).unwrap();
        assert_eq!(store.verify_agent("a1", &new).unwrap(), Verdict::BadToken);
        assert_eq!(store.verify_agent("a1", &old).unwrap(), Verdict::BadToken);
        assert!(matches!(
            store.verify_agent("a1", &newest).unwrap(),
            Verdict::Accepted { .. }
        ));
    }

    #[test]
    fn a_revoked_agent_is_told_so_and_cannot_rotate() {
        let (_dir, store) = store();
        let token = store.add_agent("a1", "WH").unwrap();
        store.revoke_agent("a1").unwrap();
        assert_eq!(store.verify_agent("a1", &token).unwrap(), Verdict::Revoked);
        assert_eq!(
            store.verify_agent("a1", &Secret::new("x")).unwrap(),
            Verdict::BadToken
        );
        assert!(matches!(
            store.rotate_agent("a1", Duration::ZERO),
            Err(RegistryError::Revoked(_))
        ));
        assert!(store.list_agents().unwrap()[0].revoked_at.is_some());
        assert!(matches!(
            store.revoke_agent("zz"),
            Err(RegistryError::NotFound(_))
        ));
    }
}

//! The log's write operations ([`LogWriter`]): planning a request against the client ids
//! already stored, appending its new events within the byte budget, acknowledging, pruning.
//! Only the [`super::writer`] thread (and tests driving the log synchronously) call them.

use std::collections::HashMap;
use std::sync::Arc;

use redb::ReadableTable;
use tally_protocol::{Event, Timestamp, encode_event, encode_record_from_event};

use super::ids::{IdEntry, fingerprint_encoded};
use super::{
    Accepted, ConflictWith, EVENTS, ID_FLUSH_THRESHOLD, IDS, Log, LogError, META, META_IDS_INDEXED,
    RequestOutcome, open_error,
};

/// Sets up tables inside a write transaction and hands out the log's write operations; used by
/// the writer thread and by tests that drive the log synchronously.
#[derive(Debug)]
pub struct LogWriter {
    log: Log,
    next_seq: u64,
    max_log_bytes: u64,
    /// Set after a failed commit: redb refuses further writes on that handle until reopened.
    needs_reopen: bool,
    /// Client ids of events after `ids_indexed_seq`, not yet in the `ids` table.
    pending_ids: HashMap<String, IdEntry>,
    id_flush_threshold: usize,
}

/// Where [`plan_request`] looks up client ids: this group's new ones, then the writer's
/// pending ones, then the `ids` table.
struct IdLookup<'a, T> {
    group: &'a HashMap<String, IdEntry>,
    pending: &'a HashMap<String, IdEntry>,
    table: &'a T,
}

impl<T: ReadableTable<&'static str, &'static [u8]>> IdLookup<'_, T> {
    fn get(&self, id: &str) -> Result<Option<IdEntry>, redb::Error> {
        if let Some(entry) = self.group.get(id).or_else(|| self.pending.get(id)) {
            return Ok(Some(*entry));
        }
        Ok(self.table.get(id)?.and_then(|v| IdEntry::decode(v.value())))
    }
}

/// On-disk bytes an event costs, as measured on redb 4 (≈285 bytes for a 150-byte event):
/// used to keep a commit from overshooting the byte budget.
fn estimated_disk_bytes(encoded_len: usize) -> u64 {
    2 * encoded_len as u64 + 64
}

impl LogWriter {
    pub fn new(log: Log, max_log_bytes: u64) -> Result<LogWriter, LogError> {
        let head = log.status()?.last_seq;
        let pending_ids = log.unindexed_ids()?;
        Ok(LogWriter {
            log,
            next_seq: head + 1,
            max_log_bytes,
            needs_reopen: false,
            pending_ids,
            id_flush_threshold: ID_FLUSH_THRESHOLD,
        })
    }

    /// Writes pending client ids to the `ids` table once this many have gathered (tests use a
    /// small number to exercise the flush).
    pub fn with_id_flush_threshold(mut self, threshold: usize) -> LogWriter {
        self.id_flush_threshold = threshold.max(1);
        self
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Stores a group of requests in one durable transaction. Each request is atomic on its
    /// own: it is stored whole, or (on a conflict or a full log) not at all, without affecting
    /// the others. An `Err` means nothing of the group was stored.
    pub fn append_group(
        &mut self,
        group: &[&[Event]],
        now: Timestamp,
    ) -> Result<Vec<RequestOutcome>, LogError> {
        if self.needs_reopen {
            self.reopen()?;
        }
        let result = self.try_append_group(group, now);
        if result.is_err() {
            // A failed commit may have poisoned the handle; the next group reopens it, and seq
            // numbering restarts from what is actually on disk.
            self.needs_reopen = true;
        }
        result
    }

    fn reopen(&mut self) -> Result<(), LogError> {
        let shared = &self.log.shared;
        let mut slot = shared.db.write().unwrap_or_else(|e| e.into_inner());
        // Drop the failed handle first: redb holds a file lock per open database. A reader that
        // still holds it makes this open fail; the next group tries again.
        *slot = None;
        let db = (shared.opener)().map_err(|e| open_error(&shared.path, e))?;
        *slot = Some(Arc::new(db));
        drop(slot);
        self.next_seq = self.log.status()?.last_seq + 1;
        self.pending_ids = self.log.unindexed_ids()?;
        // A failed fsync may still have stored the group: publish what is actually there.
        self.log.shared.head.send_replace(self.next_seq - 1);
        self.needs_reopen = false;
        tracing::info!(path = %shared.path.display(), next_seq = self.next_seq, "reopened the event log after a storage error");
        Ok(())
    }

    fn try_append_group(
        &mut self,
        group: &[&[Event]],
        now: Timestamp,
    ) -> Result<Vec<RequestOutcome>, LogError> {
        let db = self.log.db()?;
        let err = |e: redb::Error| self.log.storage_error(e);
        let mut txn = db.begin_write().map_err(|e| err(e.into()))?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(|e| err(e.into()))?;
        let mut next_seq = self.next_seq;
        let mut budget_used = self.log.file_bytes();
        let mut outcomes = Vec::with_capacity(group.len());
        // Client ids this group stores; they join `pending_ids` once the commit succeeds.
        let mut group_ids: HashMap<String, IdEntry> = HashMap::new();
        let flush = self.pending_ids.len() >= self.id_flush_threshold;
        {
            let mut events = txn.open_table(EVENTS).map_err(|e| err(e.into()))?;
            let mut ids = txn.open_table(IDS).map_err(|e| err(e.into()))?;
            if flush {
                // Sorted, so that neighbouring ids share the pages they rewrite.
                let mut sorted: Vec<(&String, &IdEntry)> = self.pending_ids.iter().collect();
                sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
                for (id, e) in sorted {
                    ids.insert(id.as_str(), e.encode().as_slice())
                        .map_err(|e| err(e.into()))?;
                }
                let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
                meta.insert(
                    META_IDS_INDEXED,
                    (self.next_seq - 1).to_be_bytes().as_slice(),
                )
                .map_err(|e| err(e.into()))?;
            }
            for request in group {
                let lookup = IdLookup {
                    group: &group_ids,
                    pending: &self.pending_ids,
                    table: &ids,
                };
                let plan = match plan_request(request, &lookup, next_seq).map_err(err)? {
                    Plan::Conflict { index, with } => {
                        outcomes.push(RequestOutcome::Conflict { index, with });
                        continue;
                    }
                    Plan::Store(plan) => plan,
                };
                let new_records: Vec<(u64, Vec<u8>)> = plan
                    .encoded
                    .iter()
                    .zip(&plan.accepted)
                    .filter(|(_, a)| !a.duplicate)
                    .map(|(bytes, a)| (a.seq, encode_record_from_event(a.seq, now, bytes)))
                    .collect();
                let cost: u64 = new_records
                    .iter()
                    .map(|(_, r)| estimated_disk_bytes(r.len()))
                    .sum();
                if cost > 0 && budget_used + cost > self.max_log_bytes {
                    outcomes.push(RequestOutcome::Full);
                    continue;
                }
                budget_used += cost;
                for (seq, record) in &new_records {
                    events
                        .insert(*seq, record.as_slice())
                        .map_err(|e| err(e.into()))?;
                }
                for ((event, a), fp) in request.iter().zip(&plan.accepted).zip(&plan.fingerprints) {
                    if let (Some(id), false, Some(fp)) = (&event.id, a.duplicate, fp) {
                        group_ids.insert(
                            id.clone(),
                            IdEntry {
                                seq: a.seq,
                                fingerprint: *fp,
                                at: now,
                            },
                        );
                    }
                }
                next_seq += new_records.len() as u64;
                outcomes.push(RequestOutcome::Stored(plan.accepted));
            }
        }
        txn.commit().map_err(|e| err(e.into()))?;
        if flush {
            self.pending_ids.clear();
        }
        self.pending_ids.extend(group_ids);
        if next_seq != self.next_seq {
            self.log.shared.head.send_replace(next_seq - 1);
        }
        self.next_seq = next_seq;
        Ok(outcomes)
    }
}

struct StorePlan {
    accepted: Vec<Accepted>,
    /// Each event's `encode_event` bytes: fingerprinted, then stored without encoding again.
    encoded: Vec<Vec<u8>>,
    /// The fingerprint of each event that is new and has a client id.
    fingerprints: Vec<Option<[u8; 32]>>,
}

enum Plan {
    Store(StorePlan),
    Conflict { index: usize, with: ConflictWith },
}

/// Decides, without writing, what each event of a request becomes: a duplicate of a stored
/// event (same client id, same content), a new event with the next seq, or a conflict.
fn plan_request<T: ReadableTable<&'static str, &'static [u8]>>(
    request: &[Event],
    ids: &IdLookup<'_, T>,
    mut next_seq: u64,
) -> Result<Plan, redb::Error> {
    let mut accepted = Vec::with_capacity(request.len());
    let mut fingerprints = Vec::with_capacity(request.len());
    // Client ids first seen earlier in this same request, with that event's index.
    let mut local: HashMap<&str, (usize, u64, [u8; 32])> = HashMap::new();
    let encoded: Vec<Vec<u8>> = request.iter().map(encode_event).collect();
    for ((index, event), bytes) in request.iter().enumerate().zip(&encoded) {
        let Some(id) = event.id.as_deref() else {
            accepted.push(Accepted {
                seq: next_seq,
                duplicate: false,
            });
            fingerprints.push(None);
            next_seq += 1;
            continue;
        };
        let fp = fingerprint_encoded(bytes);
        let seen = match local.get(id) {
            Some(&(earlier, seq, fp)) => Some((ConflictWith::Earlier(earlier), seq, fp)),
            None => ids
                .get(id)?
                .map(|e| (ConflictWith::Stored(e.seq), e.seq, e.fingerprint)),
        };
        match seen {
            Some((_, seq, original)) if original == fp => {
                accepted.push(Accepted {
                    seq,
                    duplicate: true,
                });
                fingerprints.push(None);
            }
            Some((with, _, _)) => return Ok(Plan::Conflict { index, with }),
            None => {
                local.insert(id, (index, next_seq, fp));
                accepted.push(Accepted {
                    seq: next_seq,
                    duplicate: false,
                });
                fingerprints.push(Some(fp));
                next_seq += 1;
            }
        }
    }
    Ok(Plan::Store(StorePlan {
        accepted,
        encoded,
        fingerprints,
    }))
}

//! The `ids` table's entries: what the log remembers of a client id (the seq it was stored
//! at, a fingerprint of the event's content, when it was first stored), and their encoding.

use sha2::{Digest, Sha256};
use tally_protocol::{Event, Timestamp, encode_event};

/// What the log remembers of a client id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IdEntry {
    pub(super) seq: u64,
    pub(super) fingerprint: [u8; 32],
    pub(super) at: Timestamp,
}

impl IdEntry {
    /// The `ids` table's value: seq (8 bytes, big-endian), the fingerprint (32), and when the
    /// id was first stored (8, µs since the epoch, for expiry).
    pub(super) fn encode(&self) -> [u8; 48] {
        let mut out = [0u8; 48];
        out[..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..40].copy_from_slice(&self.fingerprint);
        out[40..].copy_from_slice(&self.at.as_micros().to_be_bytes());
        out
    }

    /// The entry [`IdEntry::encode`] wrote; `None` for bytes of another shape.
    pub(super) fn decode(bytes: &[u8]) -> Option<IdEntry> {
        let seq = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let fingerprint = bytes.get(8..40)?.try_into().ok()?;
        let at = i64::from_be_bytes(bytes.get(40..48)?.try_into().ok()?);
        Some(IdEntry {
            seq,
            fingerprint,
            at: Timestamp::from_micros(at),
        })
    }
}

/// A digest of an event's content: equal events have equal fingerprints.
pub(super) fn fingerprint(event: &Event) -> [u8; 32] {
    fingerprint_encoded(&encode_event(event))
}

/// [`fingerprint`] of an event already encoded with `encode_event`.
pub(super) fn fingerprint_encoded(encoded: &[u8]) -> [u8; 32] {
    Sha256::digest(encoded).into()
}

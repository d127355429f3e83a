//! The names Tally gives its Odoo pickings. A name is the picking's idempotency key (Odoo keeps
//! picking names unique per company, docs/odoo.md#exactly-once), so it must be the same for
//! the same events on every attempt, and never the same for different ones:
//!
//! - a run's **batch key**, `tally-{agent}-{log}-{first}-{through}`, plus `-r{generation}` when
//!   an operator retries parked events (built here, [`batch_key`]);
//! - a run's later phases add `-p{n}` (the engine); each picking adds its kind's letter and
//!   chunk number (`-R1`, `-D2`, counts `-C1`; `plan`), each fill of an open picking `-F{n}`
//!   (which names Tally's marker in that picking's note, not a picking);
//! - a picking Odoo refused is split into one picking per line, `{key}.{n}` ([`split_key`]).

use std::fmt::Write;

use tally_protocol::LogId;

/// How every picking Tally creates is named at the start: what tells Tally's own moves apart
/// from other people's in Odoo (counts leave them out, docs/odoo.md#counts).
pub const PREFIX: &str = "tally-";

/// How much of the agent's log id a key carries: the first 4 bytes, 8 hex digits. A replaced
/// log (a restored or new disk) numbers its events from 1 again, so the key must tell two logs
/// of one agent apart; 32 random bits do, while keeping picking names short enough to read in
/// Odoo.
const LOG_ID_BYTES: usize = 4;

/// The part of a key that names the agent's log: its id's first [`LOG_ID_BYTES`] bytes in hex.
pub fn log_tag(log_id: LogId) -> String {
    log_id.0[..LOG_ID_BYTES]
        .iter()
        .fold(String::with_capacity(2 * LOG_ID_BYTES), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// The key of the run of `agent`'s log `log_id` from seq `first` through `through`; `retry` is
/// the generation of an operator's retry of parked events, which must not reuse the keys of the
/// attempt that parked them.
pub fn batch_key(
    agent: &str,
    log_id: LogId,
    first: u64,
    through: u64,
    retry: Option<u64>,
) -> String {
    let mut key = format!("{PREFIX}{agent}-{}-{first}-{through}", log_tag(log_id));
    if let Some(generation) = retry {
        let _ = write!(key, "-r{generation}");
    }
    key
}

/// The key of line `n` (from 1) of the picking `key` Odoo refused, applied alone to find the
/// line Odoo refuses.
pub fn split_key(key: &str, n: usize) -> String {
    format!("{key}.{n}")
}

/// Whether `key` is one line of a refused picking ([`split_key`]): it ends in a dot and digits.
/// No other key does — they end in a kind's letter and a chunk number — even when the agent's
/// name holds dots (agent names may: `wh.north`).
pub fn is_split_key(key: &str) -> bool {
    key.rsplit_once('.')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: LogId = LogId([
        0xab, 0xcd, 0x01, 0x02, 0xff, 0xee, 0xdd, 0xcc, 0, 1, 2, 3, 4, 5, 6, 7,
    ]);

    #[test]
    fn the_log_tag_is_the_first_eight_hex_digits_of_the_log_id() {
        assert_eq!(log_tag(LOG), "abcd0102");
        assert_eq!(log_tag(LOG), LOG.to_string()[..8]);
        assert_eq!(log_tag(LogId([0; 16])), "00000000");
    }

    #[test]
    fn batch_keys_name_agent_log_seqs_and_retry() {
        assert_eq!(
            batch_key("wh-agent", LOG, 1, 40, None),
            "tally-wh-agent-abcd0102-1-40"
        );
        assert_eq!(
            batch_key("wh-agent", LOG, 7, 7, Some(2)),
            "tally-wh-agent-abcd0102-7-7-r2"
        );
        assert!(batch_key("a", LOG, 1, 1, None).starts_with(PREFIX));
    }

    #[test]
    fn only_split_keys_end_in_a_dot_and_digits() {
        let key = format!("{}-R1", batch_key("wh", LOG, 1, 9, None));
        assert!(!is_split_key(&key));
        assert!(is_split_key(&split_key(&key, 1)));
        assert!(is_split_key(&split_key(&key, 12)));
        // Dots in an agent's name do not make a split.
        let dotted = format!("{}-p2-C1", batch_key("wh.north.2", LOG, 3, 4, Some(1)));
        assert!(!is_split_key(&dotted));
        assert!(is_split_key(&split_key(&dotted, 3)));
        assert!(!is_split_key("tally-wh-abcd0102-1-2-D1."));
        assert!(!is_split_key("tally-wh-abcd0102-1-2-D1.x"));
    }
}

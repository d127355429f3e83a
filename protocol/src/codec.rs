//! The versioned postcard encodings.
//!
//! A message on the wire is `[version: u16 big-endian][postcard(Message)]`; a record in an
//! agent's log is `[version: u8][postcard(LoggedEvent)]`. The version comes first and fixed-width
//! so that a peer can refuse an unknown version before it tries to decode the rest.

use crate::event::{Event, LoggedEvent, Timestamp};
use crate::message::Message;

/// The version of [`Message`]'s encoding this build speaks.
pub const MESSAGE_VERSION: u16 = 1;
/// The version of the log record encoding this build writes.
pub const RECORD_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty or truncated input")]
    Truncated,
    #[error("unsupported encoding version {found} (this build speaks {supported})")]
    UnsupportedVersion { found: u16, supported: u16 },
    #[error("malformed body: {0}")]
    Malformed(String),
    #[error("{0} trailing bytes after the body")]
    TrailingBytes(usize),
}

pub fn encode_message(message: &Message) -> Vec<u8> {
    let mut out = MESSAGE_VERSION.to_be_bytes().to_vec();
    // Serialising owned, well-formed data into a Vec cannot fail.
    postcard::to_io(message, &mut out).expect("postcard encoding into a Vec");
    out
}

pub fn decode_message(bytes: &[u8]) -> Result<Message, DecodeError> {
    let (version, body) = bytes
        .split_first_chunk::<2>()
        .ok_or(DecodeError::Truncated)?;
    let version = u16::from_be_bytes(*version);
    if version != MESSAGE_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            found: version,
            supported: MESSAGE_VERSION,
        });
    }
    decode_exact(body)
}

/// The canonical bytes of one event's content, for fingerprinting (idempotency checks).
pub fn encode_event(event: &Event) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION];
    postcard::to_io(event, &mut out).expect("postcard encoding into a Vec");
    out
}

/// The same bytes as [`encode_record`] of `LoggedEvent { seq, received_at, event }`, built from
/// the event's [`encode_event`] bytes, so a writer that has them encodes the event only once.
/// (Postcard encodes a struct as its fields one after the other.)
pub fn encode_record_from_event(seq: u64, received_at: Timestamp, encoded_event: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_event.len() + 20);
    out.push(RECORD_VERSION);
    postcard::to_io(&seq, &mut out).expect("postcard encoding into a Vec");
    postcard::to_io(&received_at, &mut out).expect("postcard encoding into a Vec");
    out.extend_from_slice(encoded_event.get(1..).unwrap_or_default());
    out
}

pub fn encode_record(record: &LoggedEvent) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION];
    postcard::to_io(record, &mut out).expect("postcard encoding into a Vec");
    out
}

pub fn decode_record(bytes: &[u8]) -> Result<LoggedEvent, DecodeError> {
    let (&version, body) = bytes.split_first().ok_or(DecodeError::Truncated)?;
    if version != RECORD_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            found: version.into(),
            supported: RECORD_VERSION.into(),
        });
    }
    decode_exact(body)
}

fn decode_exact<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    let (value, rest) = postcard::take_from_bytes(body).map_err(|e| match e {
        postcard::Error::DeserializeUnexpectedEnd => DecodeError::Truncated,
        other => DecodeError::Malformed(other.to_string()),
    })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(value)
}

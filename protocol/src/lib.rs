//! Tally's wire format.
//!
//! Everything that crosses a process boundary in binary form is defined here: the stock
//! [`Event`] a scanner posts, the [`LoggedEvent`] the agent stores and ships, and the sync
//! [`Message`]s exchanged between `tally-agent` and `tally-central`, and the rules an event
//! keeps ([`Event::validate`]), which both sides check.
//!
//! Architecture invariant: this is the only crate that names `postcard`. Other crates call
//! [`encode_message`]/[`decode_message`] and [`encode_record`]/[`decode_record`].
//!
//! Postcard is not self-describing: field order *is* the format. Every encoded form therefore
//! starts with a version, and `tests/golden.rs` pins the exact bytes of every message so that an
//! accidental change to a type fails the build instead of corrupting a peer.

#![forbid(unsafe_code)]

mod codec;
mod event;
mod message;
mod validate;

pub use codec::{
    DecodeError, MESSAGE_VERSION, RECORD_VERSION, decode_message, decode_record, encode_event,
    encode_message, encode_record, encode_record_from_event,
};
pub use event::{Event, EventKind, LogId, LoggedEvent, Qty, QtyError, Timestamp};
pub use message::{
    Ack, Batch, CLOCK_HEADER, Hello, Message, Reject, RejectReason, Secret, Welcome,
};
pub use validate::{EventError, check_text};

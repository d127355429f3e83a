//! Everything that knows Odoo's JSON-RPC: the transport ([`client`]), the error classification
//! ([`error`]).
//!
//! Architecture invariant: only `central::odoo` builds or parses Odoo's JSON.

pub mod client;
pub mod error;

pub use client::{OdooClient, OdooConfig};
pub use error::{ErrorKind, OdooError};

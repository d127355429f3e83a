//! Everything that knows Odoo's JSON-RPC: the transport ([`client`]) with its circuit breaker
//! ([`breaker`]), the error classification ([`error`]), and typed calls for what the merge
//! needs ([`api`]).
//!
//! Architecture invariant: only `central::odoo` builds or parses Odoo's JSON.

pub mod api;
pub mod breaker;
pub mod client;
pub mod error;
pub mod stock_levels;

pub use client::{Api, Call, OdooClient, OdooConfig, Transport};
pub use error::{ErrorKind, OdooError};

//! `tally-central`: authenticates agents, journals their events exactly once, and (next
//! milestone) merges them into Odoo.

#![forbid(unsafe_code)]

pub mod store;

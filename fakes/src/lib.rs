//! Stand-ins for what Tally talks to, for its tests, demo and benchmarks. This crate depends
//! on no Tally crate, so that `tally-central`'s own tests can use it without building central
//! a second time (`tally-tests`, the process harness, depends on central).
//!
//! # Modules
//!
//! - [`odoo_sim`]: [`OdooSim`], an in-memory simulator of Odoo 17, 18 and 19 (JSON-RPC, and
//!   JSON-2 in its 19 mode; the behaviour `docs/odoo.md` records), with a fault switch, a
//!   latency model and an inspection API; also served by the `tally-odoo-sim` binary.
//! - [`channels`]: fakes of the sales channels Tally pushes to (Shopify's Admin GraphQL API,
//!   a webhook receiver that checks signatures).
//! - [`proxy`]: [`Proxy`], a TCP proxy for fault injection between two processes.
//! - [`wait`]: [`wait_until`], polling an observable condition with a deadline.
//! - [`test_seed`]: the seed of a randomized test, replayable with [`SEED_ENV`].

pub mod channels;
pub mod odoo_sim;
pub mod proxy;
pub mod wait;

pub use odoo_sim::{
    Fault, FaultKind, Latency, OdooSim, SimConfig, Tracking, Version as OdooVersion,
};
pub use proxy::{Proxy, ProxyStats};
pub use wait::{wait_for_acks, wait_until};

use anyhow::Context;

/// The environment variable that fixes a randomized test's seed, to replay its schedule.
pub const SEED_ENV: &str = "TALLY_TEST_SEED";

/// The seed of a randomized test: [`SEED_ENV`] if set, else a random one.
pub fn test_seed() -> anyhow::Result<u64> {
    match std::env::var(SEED_ENV) {
        Ok(text) => text.parse().context("TALLY_TEST_SEED must be a number"),
        Err(_) => Ok(rand::random()),
    }
}

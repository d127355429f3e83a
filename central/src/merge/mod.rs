//! The merge engine: applying each warehouse's journaled events to Odoo exactly once, in log
//! order. [`plan`] holds the pure part (cutting and coalescing runs of events into pickings);
//! [`apply`] applies one planned picking exactly once.

pub mod apply;
pub mod engine;
pub mod plan;
pub mod state;

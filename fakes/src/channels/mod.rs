//! Fakes of the sales channels Tally pushes to, each behaving like the real service: a
//! Shopify Admin GraphQL fake ([`shopify`]) and a webhook receiver that checks signatures
//! ([`webhook`]).

pub mod shopify;
pub mod webhook;

//! Fakes of the sales channels Tally pushes to, each behaving like the real service: a
//! Shopify Admin GraphQL fake ([`shopify`]), a WooCommerce REST fake ([`woocommerce`]) and a
//! webhook receiver that checks signatures ([`webhook`]).

pub mod shopify;
pub mod webhook;
pub mod woocommerce;

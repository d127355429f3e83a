//! `tally-odoo-sim`: an in-memory **simulator** of an Odoo 17, 18 or 19 server's external API
//! (JSON-RPC, and JSON-2 as 19) for Tally's demo and benchmarks. It is not Odoo: it serves the
//! models and behaviours recorded from real servers (docs/odoo.md), seeded like the lab's database
//! (warehouses `WH` and `WH2`, products `SKU-001`…`SKU-005`, user `edge-sync` with an API key).
//!
//! It prints one line once it accepts connections:
//! `tally-odoo-sim (Odoo 17 simulator, not a real Odoo) listening on http://ADDR db=DB
//! login=edge-sync api_key=KEY`, and runs until interrupted.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tally_fakes::odoo_sim::{Latency, OdooSim, SimConfig, Version};

/// A simulator of Odoo 17, 18 or 19's external API (POST /jsonrpc; POST /json/2/… as 19) for
/// tests, demos and benchmarks. Not a real Odoo.
#[derive(Debug, Parser)]
#[command(name = "tally-odoo-sim", disable_version_flag = true)]
struct Args {
    /// Address to listen on (port 0: the OS picks one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Odoo major version to simulate: 17, 18 or 19.
    #[arg(long = "version", default_value_t = 17, value_parser = clap::value_parser!(u8).range(17..=19))]
    odoo_version: u8,
    /// Latency added to every call, in milliseconds (the lab measured about 300).
    #[arg(long, default_value_t = 0)]
    latency_call_ms: u64,
    /// Latency added per move line created or validated, in milliseconds (about 35).
    #[arg(long, default_value_t = 0)]
    latency_line_ms: u64,
    /// Database name clients must use.
    #[arg(long, default_value = "odoo-sim")]
    db: String,
    /// Extra untracked storable products BULK-0000… besides SKU-001…SKU-005.
    #[arg(long, default_value_t = 0)]
    seed_products: usize,
    /// The integration user's API key (default: random).
    #[arg(long, env = "TALLY_ODOO_SIM_API_KEY")]
    api_key: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let version =
        Version::from_major(args.odoo_version).context("--version must be 17, 18 or 19")?;
    let mut config = SimConfig::new(version);
    config.db = args.db;
    config.extra_products = args.seed_products;
    config.latency = Latency {
        per_call: Duration::from_millis(args.latency_call_ms),
        per_line: Duration::from_millis(args.latency_line_ms),
    };
    if let Some(key) = args.api_key {
        config.api_key = key;
    }
    let sim = OdooSim::bind(args.listen, config)
        .await
        .with_context(|| format!("cannot start the simulator on {}", args.listen))?;
    println!(
        "tally-odoo-sim (Odoo {} simulator, not a real Odoo) listening on {} db={} login={} api_key={}",
        version.major(),
        sim.url(),
        sim.db(),
        sim.login(),
        sim.api_key()
    );
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    drop(sim);
    Ok(())
}

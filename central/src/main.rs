//! `tally-central`: not built yet. The sync server, journal and Odoo merge arrive with the
//! sync and merge issues; this binary only reports its version so the workspace is whole.

use clap::Parser;

/// Tally's coordinator (not yet implemented: see the README's roadmap).
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
    eprintln!("tally-central is not implemented yet; see README.md");
    std::process::exit(69);
}

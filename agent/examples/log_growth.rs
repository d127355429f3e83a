//! How the log writer's throughput holds up as the log and its client-id index grow.
//!
//! ```sh
//! cargo run --release -p tally-agent --example log_growth -- [EVENTS] [IDS]
//! ```
//!
//! Appends `EVENTS` (default 3,000,000) single-event requests with [`LogWriter::append_group`],
//! 64 requests per durable commit, on one thread, into a fresh log under `TMPDIR`, and prints
//! every two seconds the rate over that window, its slowest commit (the periodic flush of
//! client ids into the `ids` table is the slow one) and the file's size. `IDS` is `device`
//! (default: a device prefix and a counter, so new ids are clustered) or `random` (32 random
//! hex digits, like a UUIDv4). The log is deleted at the end.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tally_agent::log::{Log, LogWriter};
use tally_protocol::{Event, EventKind, Qty, Timestamp};

const REQUESTS_PER_COMMIT: usize = 64;
const REPORT_EVERY: Duration = Duration::from_secs(2);

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let total: u64 = match args.next() {
        Some(text) => text.parse().context("EVENTS must be a whole number")?,
        None => 3_000_000,
    };
    let random = match args.next().as_deref() {
        None | Some("device") => false,
        Some("random") => true,
        Some(other) => bail!("IDS is `device` or `random`, not {other:?}"),
    };
    let dir = tempfile::Builder::new()
        .prefix("tally-log-growth-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let mut writer = LogWriter::new(Log::open(dir.path())?, u64::MAX)?;
    println!(
        "{total} events, {REQUESTS_PER_COMMIT} single-event requests per commit, {} ids, log in {}",
        if random { "random" } else { "device-counter" },
        dir.path().display()
    );
    println!(
        "{:>10} {:>10} {:>18} {:>10}",
        "events", "events/s", "slowest commit ms", "file MiB"
    );

    let (mut written, mut window_events) = (0u64, 0u64);
    let (mut window, mut slowest) = (Instant::now(), Duration::ZERO);
    while written < total {
        let requests: Vec<[Event; 1]> = (0..REQUESTS_PER_COMMIT.min((total - written) as usize))
            .map(|_| {
                written += 1;
                [event(written, random)]
            })
            .collect();
        let group: Vec<&[Event]> = requests.iter().map(|r| r.as_slice()).collect();
        let started = Instant::now();
        writer.append_group(&group, Timestamp::now())?;
        slowest = slowest.max(started.elapsed());
        window_events += requests.len() as u64;
        if window.elapsed() >= REPORT_EVERY || written >= total {
            println!(
                "{:>10} {:>10.0} {:>18.1} {:>10}",
                written,
                window_events as f64 / window.elapsed().as_secs_f64(),
                slowest.as_secs_f64() * 1e3,
                writer.log().file_bytes() >> 20
            );
            (window, window_events, slowest) = (Instant::now(), 0, Duration::ZERO);
        }
    }
    Ok(())
}

/// The `n`th pick of a realistic shape; its client id clustered by device or random.
fn event(n: u64, random: bool) -> Event {
    let id = if random {
        format!("{:032x}", mix(n))
    } else {
        format!("scanner-{}-{n}", n % 64)
    };
    Event {
        id: Some(id),
        location: Some("WH/Stock/A-25".into()),
        occurred_at: Some(Timestamp::from_micros(1_768_000_000_000_000)),
        device: Some(format!("scanner-{}", n % 64)),
        ..Event::new(
            EventKind::Pick,
            format!("SKU-{:05}", n % 5000),
            Qty::from_units(1),
        )
    }
}

/// A bijective scramble of `n` (two rounds of multiply and xor-shift): ids that look random
/// and never repeat.
fn mix(n: u64) -> u128 {
    let mut x = u128::from(n) ^ 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834;
    x = x.wrapping_mul(0xd6e8_feb8_6659_fd93_d6e8_feb8_6659_fd93);
    x ^= x >> 67;
    x = x.wrapping_mul(0xa076_1d64_78bd_642f_a076_1d64_78bd_642f);
    x ^ (x >> 59)
}

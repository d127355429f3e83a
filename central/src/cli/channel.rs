//! `tally-central availability` and `tally-central channel`: tables by default, the admin
//! API's JSON with `--json`, through the same views as the other read commands. While central
//! is stopped they read its database (channels: what the store holds; the live figures need
//! the running central); `channel resync` needs the running central and the admin token.

use anyhow::bail;
use clap::Subcommand;
use serde_json::json;
use tally_central::admin::channels::{self, AvailabilityView, ChannelView, ChannelsView};
use tally_central::config::LocalConfig;

use crate::api::{Api, Need};
use crate::ops::{Output, read};
use crate::runtime;

#[derive(Debug, Subcommand)]
pub enum ChannelAction {
    /// Every channel with its outbox (pending, oldest pending age, dead letters), last success,
    /// errors, drift, circuit and alert.
    List(#[command(flatten)] Output),
    /// One channel's status, its drift and the SKUs it refused for good.
    Status {
        name: String,
        #[command(flatten)]
        output: Output,
    },
    /// Queue every SKU for the channel again; what it shows is read again on the way.
    Resync {
        name: String,
        /// Why, for the audit log.
        #[arg(long)]
        reason: String,
    },
}

pub fn availability(
    config: &LocalConfig,
    sku: &str,
    warehouse: Option<&str>,
    output: Output,
) -> anyhow::Result<()> {
    let mut path = format!("/v1/availability?sku={}", encode(sku));
    if let Some(w) = warehouse {
        path.push_str(&format!("&warehouse={}", encode(w)));
    }
    let view: AvailabilityView = read(config, &path, |store| {
        channels::availability(store, sku, warehouse, None)
    })?;
    output.print(&view, channels::render_availability)
}

pub fn channel(config: &LocalConfig, action: ChannelAction) -> anyhow::Result<()> {
    match action {
        ChannelAction::List(output) => {
            let view = read(config, "/v1/channels", |store| {
                Ok(ChannelsView {
                    channels: channels::statuses(store, None)?.unwrap_or_default(),
                })
            })?;
            output.print(&view, channels::render_channels)
        }
        ChannelAction::Status { name, output } => {
            let path = format!("/v1/channels/{}", encode(&name));
            let view: Option<ChannelView> = read(config, &path, |store| {
                channels::stored_channel(store, &name)
            })?;
            let Some(view) = view else {
                bail!("central's database holds nothing of a channel named {name:?}");
            };
            output.print(&view, channels::render_channel)
        }
        ChannelAction::Resync { name, reason } => {
            let reason = tally_central::admin::check_reason(Some(&reason), true)
                .map_err(anyhow::Error::msg)?
                .unwrap_or_default()
                .to_owned();
            runtime()?.block_on(async {
                let api = Api::new(config, Need::Change)?;
                let path = format!("/v1/channels/{}/resync", encode(&name));
                let answer = api.change(&path, &json!({"reason": reason})).await?;
                println!(
                    "queued {} SKUs for channel {name}; what it shows is read again on the way",
                    answer["queued"]
                );
                Ok(())
            })
        }
    }
}

/// Percent-encodes a path or query part.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

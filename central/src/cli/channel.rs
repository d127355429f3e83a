//! `tally-central availability` and `tally-central channel`: through the running central's
//! admin API; `availability` reads the store itself while central is stopped.

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::Value;
use tally_central::config::LocalConfig;
use tally_central::store::{Store, StoreError};

#[derive(Debug, Subcommand)]
pub enum ChannelAction {
    /// Every channel with its outbox (pending, oldest pending age, dead letters), last success,
    /// errors and throttle waits.
    List,
    /// One channel's status and the SKUs it refused for good.
    Status { name: String },
    /// Queue every SKU for the channel again; what it shows is read again on the way.
    Resync { name: String },
}

pub fn availability(
    config: &LocalConfig,
    sku: &str,
    warehouse: Option<&str>,
) -> anyhow::Result<()> {
    match Store::open(&config.data_dir) {
        Ok(store) => {
            let rows = store.availability(sku, warehouse)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({"availability": rows}))?
            );
            Ok(())
        }
        Err(StoreError::InUse { .. }) => {
            let mut path = format!("/v1/availability?sku={}", encode(sku));
            if let Some(w) = warehouse {
                path.push_str(&format!("&warehouse={}", encode(w)));
            }
            print(ask(config, reqwest::Method::GET, &path)?)
        }
        Err(e) => Err(e.into()),
    }
}

pub fn channel(config: &LocalConfig, action: ChannelAction) -> anyhow::Result<()> {
    let (method, path) = match &action {
        ChannelAction::List => (reqwest::Method::GET, "/v1/channels".to_owned()),
        ChannelAction::Status { name } => (
            reqwest::Method::GET,
            format!("/v1/channels/{}", encode(name)),
        ),
        ChannelAction::Resync { name } => (
            reqwest::Method::POST,
            format!("/v1/channels/{}/resync", encode(name)),
        ),
    };
    print(ask(config, method, &path)?)
}

fn print(body: Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
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

fn ask(config: &LocalConfig, method: reqwest::Method, path: &str) -> anyhow::Result<Value> {
    let Some(token) = &config.admin_token else {
        bail!(
            "give the admin token (--admin-token-file, TALLY_ADMIN_TOKEN or --config) to ask central's admin API"
        );
    };
    let base = format!("http://{}", config.admin_listen);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .request(method, format!("{base}{path}"))
            .bearer_auth(token.expose())
            .send()
            .await
            .with_context(|| {
                format!("central's admin API at {base} does not answer (is central running?)")
            })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let message = body["error"]["message"].as_str().map(str::to_owned);
            bail!(
                "{}",
                message.unwrap_or_else(|| format!("{base} answered {status}"))
            );
        }
        Ok(body)
    })
}

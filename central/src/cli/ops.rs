//! The commands an operator runs against central: on its database while it is stopped, or
//! through its admin API while it runs (it holds the database then). Reads print a table, or
//! the API's JSON with `--json`, built from the same views either way.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::json;
use tally_central::admin::{self, render, status, trace, views};
use tally_central::config::LocalConfig;
use tally_central::store::audit::Actor;
use tally_central::store::{STORE_FILE, Store, StoreError};

use crate::api::{Api, Need};
use crate::runtime;

/// `--json` of a read command.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct Output {
    /// Print the admin API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl Output {
    pub(crate) fn print<T: Serialize>(
        self,
        view: &T,
        table: fn(&T) -> String,
    ) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(view)?);
        } else {
            print!("{}", table(view));
        }
        Ok(())
    }
}

#[derive(Debug, Subcommand)]
pub enum AgentAction {
    /// Register an agent; prints its token once (only a digest is stored).
    Add {
        agent_id: String,
        #[arg(long)]
        warehouse: String,
        /// Why, for the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// List agents with their connection state and lag.
    List(#[command(flatten)] Output),
    /// Issue a new token; the old one keeps working for the configured grace period.
    Rotate {
        agent_id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Revoke an agent for good and close its connection.
    Revoke {
        agent_id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// List the parked events by (warehouse, SKU) with their reasons.
    List(#[command(flatten)] Output),
    /// Try every parked event of a SKU in a warehouse again, in order (after the product or
    /// location was fixed in Odoo); events parked again show up in `list` again.
    Retry {
        /// The warehouse code.
        #[arg(long)]
        warehouse: String,
        /// The SKU whose parked events to retry.
        #[arg(long)]
        sku: String,
        /// What was fixed, for the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Give up on every parked event of a SKU in a warehouse (they never reach Odoo; later
    /// events of that SKU stop waiting behind them). The reason is kept for audit.
    Discard {
        #[arg(long)]
        warehouse: String,
        #[arg(long)]
        sku: String,
        #[arg(long)]
        reason: String,
    },
}

/// Where a command works: the stopped central's database, or the running one's API.
enum Target {
    Store(Store),
    Api,
}

/// Opens the database, or says central runs; `create` makes a missing database (agent add).
fn target(config: &LocalConfig, create: bool) -> anyhow::Result<Target> {
    if !create && !config.data_dir.join(STORE_FILE).exists() {
        bail!(
            "there is no central database in {} (check --data-dir or the configuration's data_dir)",
            config.data_dir.display()
        );
    }
    if create {
        tally_service::create_private_dir(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;
    }
    match Store::open(&config.data_dir) {
        Ok(store) => Ok(Target::Store(store)),
        Err(StoreError::InUse { .. }) => Ok(Target::Api),
        Err(e) => Err(e.into()),
    }
}

/// A read: built from the store, or read from the API's `path`.
pub(crate) fn read<T: serde::de::DeserializeOwned>(
    config: &LocalConfig,
    path: &str,
    offline: impl FnOnce(&Store) -> Result<T, StoreError>,
) -> anyhow::Result<T> {
    match target(config, false)? {
        Target::Store(store) => Ok(offline(&store)?),
        Target::Api => runtime()?.block_on(Api::new(config, Need::Read)?.read(path)),
    }
}

fn check_reason(reason: Option<&str>, required: bool) -> anyhow::Result<Option<&str>> {
    admin::check_reason(reason, required).map_err(anyhow::Error::msg)
}

fn print_token(agent_id: &str, token: &str) {
    println!("{token}");
    eprintln!(
        "token of agent {agent_id} (shown once; store it in the agent's configuration as central_token)"
    );
}

pub fn agent(config: LocalConfig, action: AgentAction) -> anyhow::Result<()> {
    if let AgentAction::List(output) = action {
        let view = read(&config, "/v1/agents", |store| {
            views::agents(store, &Default::default(), false)
        })?;
        return output.print(&view, render::agents);
    }
    let store = match target(&config, true)? {
        Target::Store(store) => store,
        Target::Api => return runtime()?.block_on(agent_online(&config, action)),
    };
    match action {
        AgentAction::Add {
            agent_id,
            warehouse,
            reason,
        } => {
            if !admin::valid_name(&agent_id) || !admin::valid_name(&warehouse) {
                bail!("agent id and warehouse must be 1 to 64 letters, digits, '-', '_' or '.'");
            }
            let actor = Actor::local(check_reason(reason.as_deref(), false)?);
            let token = store.add_agent_as(&agent_id, &warehouse, actor)?;
            print_token(&agent_id, token.expose());
        }
        AgentAction::Rotate { agent_id, reason } => {
            let actor = Actor::local(check_reason(reason.as_deref(), false)?);
            let token = store.rotate_agent_as(&agent_id, config.token_grace, actor)?;
            print_token(&agent_id, token.expose());
        }
        AgentAction::Revoke { agent_id, reason } => {
            let actor = Actor::local(check_reason(reason.as_deref(), false)?);
            store.revoke_agent_as(&agent_id, actor)?;
            eprintln!("agent {agent_id} revoked");
        }
        AgentAction::List(_) => unreachable!("listed above"),
    }
    Ok(())
}

async fn agent_online(config: &LocalConfig, action: AgentAction) -> anyhow::Result<()> {
    let api = Api::new(config, Need::Change)?;
    match action {
        AgentAction::Add {
            agent_id,
            warehouse,
            reason,
        } => {
            let body = json!({"agent_id": agent_id, "warehouse": warehouse, "reason": reason});
            let answer = api.change("/v1/agents", &body).await?;
            print_token(&agent_id, answer["token"].as_str().unwrap_or_default());
        }
        AgentAction::Rotate { agent_id, reason } => {
            let path = format!("/v1/agents/{agent_id}/rotate");
            let answer = api.change(&path, &json!({"reason": reason})).await?;
            print_token(&agent_id, answer["token"].as_str().unwrap_or_default());
        }
        AgentAction::Revoke { agent_id, reason } => {
            let path = format!("/v1/agents/{agent_id}/revoke");
            api.change(&path, &json!({"reason": reason})).await?;
            eprintln!("agent {agent_id} revoked; its connection is closed");
        }
        AgentAction::List(_) => unreachable!("lists are reads"),
    }
    Ok(())
}

pub fn dlq(config: LocalConfig, action: DlqAction) -> anyhow::Result<()> {
    let (warehouse, sku, reason, retry) = match action {
        DlqAction::List(output) => {
            let view = read(&config, "/v1/dead-letters", |store| {
                views::dead_letters(store, 1000)
            })?;
            return output.print(&view, render::dead_letters);
        }
        DlqAction::Retry {
            warehouse,
            sku,
            reason,
        } => (warehouse, sku, reason, true),
        DlqAction::Discard {
            warehouse,
            sku,
            reason,
        } => (warehouse, sku, reason, false),
    };
    let reason = check_reason(Some(&reason), true)?
        .unwrap_or_default()
        .to_owned();
    let store = match target(&config, false)? {
        Target::Store(store) => store,
        Target::Api => {
            return runtime()?.block_on(async {
                let api = Api::new(&config, Need::Change)?;
                let body = json!({"warehouse": warehouse, "sku": sku, "reason": reason});
                let path = if retry {
                    "/v1/dead-letters/retry"
                } else {
                    "/v1/dead-letters/discard"
                };
                let answer = api.change(path, &body).await?;
                match retry {
                    true => println!(
                        "queued {} parked events of {sku} in {warehouse} for a retry",
                        answer["queued"]
                    ),
                    false => println!(
                        "discarded {} parked events of {sku} in {warehouse}",
                        answer["discarded"]
                    ),
                }
                Ok(())
            });
        }
    };
    let actor = Actor::local(Some(&reason));
    let n = if retry {
        store.retry_dead_letters_as(&warehouse, &sku, actor)?
    } else {
        store.discard_dead_letters_as(&warehouse, &sku, actor)?
    };
    if n == 0 {
        bail!("{}", admin::nothing_parked(&warehouse, &sku));
    }
    match retry {
        true => println!(
            "queued {n} parked events of {sku} in {warehouse} for a retry; central applies them when it next runs"
        ),
        false => println!("discarded {n} parked events of {sku} in {warehouse}"),
    }
    Ok(())
}

pub fn status(config: LocalConfig, output: Output) -> anyhow::Result<()> {
    let view = read(&config, "/v1/status", |store| {
        status::build(store, &Default::default(), None, None, false)
    })?;
    output.print(&view, render::status)
}

pub fn notices(config: LocalConfig, limit: usize, output: Output) -> anyhow::Result<()> {
    let path = format!("/v1/notices?limit={limit}");
    let view = read(&config, &path, |store| views::notices(store, limit))?;
    output.print(&view, render::notices)
}

pub fn audit(config: LocalConfig, limit: usize, output: Output) -> anyhow::Result<()> {
    let path = format!("/v1/audit?limit={limit}");
    let view = read(&config, &path, |store| views::audit(store, limit))?;
    output.print(&view, render::audit)
}

/// What `trace` looks for.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The agent that accepted the event.
    #[arg(long)]
    pub agent: String,
    /// The client's event id.
    #[arg(long, conflicts_with = "seq", required_unless_present = "seq")]
    pub id: Option<String>,
    /// The event's seq in the agent's log (its latest log unless --log is given).
    #[arg(long)]
    pub seq: Option<u64>,
    /// The log (32 hex digits) the seq is of.
    #[arg(long, requires = "seq")]
    pub log: Option<String>,
}

pub fn trace(config: LocalConfig, args: TraceArgs, output: Output) -> anyhow::Result<()> {
    let log = match args.log.as_deref() {
        Some(text) => Some(
            tally_protocol::LogId::parse_hex(text)
                .with_context(|| format!("--log {text:?} is not 32 hex digits"))?,
        ),
        None => None,
    };
    let (lookup, query) = match (args.id, args.seq) {
        (Some(id), _) => {
            let query = format!("id={}", form_encode(&id));
            (trace::Lookup::Id(id), query)
        }
        (None, Some(seq)) => {
            let log_query = log.map(|l| format!("&log={l}")).unwrap_or_default();
            (
                trace::Lookup::Seq { log, seq },
                format!("seq={seq}{log_query}"),
            )
        }
        (None, None) => bail!("give --id or --seq"),
    };
    let path = format!("/v1/trace?agent={}&{query}", form_encode(&args.agent));
    let agent = args.agent;
    let view = read(&config, &path, |store| {
        trace::build(store, &agent, &lookup, None, None)
    })?;
    output.print(&view, render::trace)
}

/// `text` percent-encoded for a query string.
fn form_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

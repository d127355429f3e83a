//! No secret leaks: an agent and central run with known tokens and a known Odoo key (central
//! logging JSON lines, the agent text, both at debug level), traffic and failures are driven
//! through them (bad scanner tokens, a refused sync token, invalid events, a read-only token
//! trying a change, a parked event, Odoo failing, then central restarted with a wrong Odoo key),
//! and none of the secrets appears in any log line, error, metric, page or API answer.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use tally_central::odoo::OdooConfig;
use tally_protocol::Secret;
use tally_tests::odoo_sim::{Fault, FaultKind, OdooSim, SimConfig, Tracking, Version};
use tally_tests::{
    AgentProcess, CentralProcess, add_agent_offline, wait_synced, wait_until, with_temp_dir,
};

const ADMIN_TOKEN: &str = "secret-admin-0123456789-QZX";
const READ_TOKEN: &str = "secret-read-0123456789-QZX";
const SCANNER_TOKEN: &str = "secret-scanner-0123456789-QZX";
const METRICS_TOKEN: &str = "secret-metrics-0123456789-QZX";
const WRONG_TOKEN: &str = "secret-wrong-0123456789-QZX";
const WRONG_ODOO_KEY: &str = "secret-wrong-odoo-key-0123456789-QZX";

/// Everything the daemons said or answered, with where it came from.
#[derive(Default)]
struct Seen(Vec<(String, String)>);

impl Seen {
    fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.0.push((what.into(), text.into()));
    }

    /// Fails naming the first place a secret shows.
    fn check(&self, secrets: &[&str]) -> anyhow::Result<()> {
        for (what, text) in &self.0 {
            for secret in secrets {
                // Part of a secret is a leak too: its first 12 characters are unique here.
                let part = &secret[..secret.len().min(12)];
                ensure!(
                    !text.contains(part),
                    "{what} shows a secret ({part}…):\n{text}"
                );
            }
        }
        Ok(())
    }
}

async fn answer(request: reqwest::RequestBuilder) -> anyhow::Result<String> {
    let response = request.send().await?;
    let status = response.status();
    Ok(format!("{status} {}", response.text().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_shows_in_logs_errors_metrics_pages_or_answers() {
    with_temp_dir("secrets", |dir| async move { scenario(&dir).await }).await;
}

async fn scenario(dir: &Path) -> anyhow::Result<()> {
    let sim = OdooSim::start(SimConfig::new(Version::V17)).await?;
    sim.add_product("CHAIR-OAK", Tracking::None)?;
    let odoo_key = sim.api_key().to_owned();
    let odoo = |key: &str| OdooConfig {
        url: sim.url(),
        db: sim.db().to_owned(),
        login: sim.login().to_owned(),
        api_key: Secret::new(key),
        call_timeout: Duration::from_secs(30),
        api: Default::default(),
    };
    let central_dir = dir.join("central");
    let agent_token = add_agent_offline(&central_dir, ADMIN_TOKEN, "dock-agent", "WH").await?;
    let central_with = |key: &str| {
        CentralProcess::builder(&central_dir)
            .admin_token(ADMIN_TOKEN)
            .arg("--read-token")
            .arg(READ_TOKEN)
            .arg("--log-format")
            .arg("json")
            .arg("--merge-window")
            .arg("0s")
            .log_filter("debug")
            .odoo(&odoo(key))
    };
    let central = central_with(&odoo_key).spawn().await?;
    let agent = AgentProcess::builder(dir.join("agent"))
        .token(SCANNER_TOKEN)
        .warehouse("WH")
        .agent_id("dock-agent")
        .arg("--metrics-token")
        .arg(METRICS_TOKEN)
        .log_filter("debug")
        .central(&central.sync_url(), &agent_token, None)
        .spawn()
        .await?;
    let http = reqwest::Client::new();
    let mut seen = Seen::default();

    // Scanners: accepted, refused for a bad token, refused for a bad event.
    let events = json!({"events": [
        {"id": "ok-1", "type": "receipt", "sku": "CHAIR-OAK", "qty": "3"},
        {"id": "ok-2", "type": "receipt", "sku": "NOT-IN-ODOO", "qty": "1"},
    ]});
    let events_url = format!("{}/v1/events", agent.base_url());
    seen.add(
        "POST /v1/events",
        answer(
            http.post(&events_url)
                .bearer_auth(SCANNER_TOKEN)
                .json(&events),
        )
        .await?,
    );
    seen.add(
        "POST /v1/events, wrong token",
        answer(
            http.post(&events_url)
                .bearer_auth(WRONG_TOKEN)
                .json(&events),
        )
        .await?,
    );
    let bad = json!({"events": [{"id": "bad", "type": "receipt", "sku": "", "qty": "x"}]});
    seen.add(
        "POST /v1/events, invalid",
        answer(http.post(&events_url).bearer_auth(SCANNER_TOKEN).json(&bad)).await?,
    );
    wait_synced(&agent.client(), Duration::from_secs(60)).await?;

    // An agent with a wrong sync token is refused by central.
    let intruder = AgentProcess::builder(dir.join("intruder"))
        .token(SCANNER_TOKEN)
        .warehouse("WH")
        .agent_id("dock-agent")
        .central(&central.sync_url(), WRONG_TOKEN, None)
        .spawn()
        .await?;
    wait_until(
        "the intruder to be refused",
        Duration::from_secs(30),
        || async {
            let log = std::fs::read_to_string(central.stderr_path())?;
            // Central logs refused handshakes as counts of a kind, with the last one's peer.
            Ok(if log.contains("count since the last such line") {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue("no refusal logged yet".into())
            })
        },
    )
    .await?;
    intruder.terminate().await?;

    // Odoo fails a few calls; the unknown SKU is parked.
    sim.inject(Fault {
        times: 2,
        ..Fault::new(FaultKind::Http500)
    });
    let admin = central.admin();
    wait_until(
        "the unknown SKU to be parked",
        Duration::from_secs(90),
        || async {
            let parked = admin.get_json("/v1/dead-letters").await?;
            Ok(if parked["total"] == 1 {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(parked.to_string())
            })
        },
    )
    .await?;

    // The admin API, with each token and with a wrong one; the read-only token tries a change.
    let base = central.admin_url().to_owned();
    let reads = [
        "/v1/status",
        "/v1/whoami",
        "/v1/agents",
        "/v1/merge",
        "/v1/dead-letters",
        "/v1/notices",
        "/v1/audit",
        "/v1/trace?agent=dock-agent&id=ok-1",
        "/v1/trace?agent=dock-agent&seq=2",
        "/v1/journal?agent=dock-agent",
    ];
    for path in reads {
        for token in [ADMIN_TOKEN, READ_TOKEN, WRONG_TOKEN] {
            let got = answer(http.get(format!("{base}{path}")).bearer_auth(token)).await?;
            seen.add(format!("GET {path}"), got);
        }
    }
    let retry = json!({"warehouse": "WH", "sku": "NOT-IN-ODOO", "reason": "checking"});
    for token in [READ_TOKEN, WRONG_TOKEN] {
        let got = answer(
            http.post(format!("{base}/v1/dead-letters/retry"))
                .bearer_auth(token)
                .json(&retry),
        )
        .await?;
        seen.add("POST /v1/dead-letters/retry", got);
    }
    let foreign = http
        .post(format!("{base}/v1/agents/dock-agent/revoke"))
        .bearer_auth(ADMIN_TOKEN)
        .header("origin", "http://evil.example");
    seen.add("POST from a foreign origin", answer(foreign).await?);
    seen.add(
        "POST /v1/agents/nobody/rotate",
        answer(
            http.post(format!("{base}/v1/agents/nobody/rotate"))
                .bearer_auth(ADMIN_TOKEN),
        )
        .await?,
    );
    for page in ["/", "/app.js", "/app.css", "/metrics", "/healthz"] {
        seen.add(
            format!("GET {page}"),
            answer(http.get(format!("{base}{page}"))).await?,
        );
    }
    let agent_base = agent.base_url().to_owned();
    for path in ["/v1/status", "/metrics", "/v1/events?after=0&limit=10"] {
        for token in [SCANNER_TOKEN, METRICS_TOKEN, WRONG_TOKEN] {
            let got = answer(http.get(format!("{agent_base}{path}")).bearer_auth(token)).await?;
            seen.add(format!("agent GET {path}"), got);
        }
    }
    // The command line's answers and errors.
    for (command, args) in [
        ("status", &[][..]),
        ("agent", &["list"][..]),
        ("dlq", &["list"][..]),
        ("audit", &[][..]),
        ("trace", &["--agent", "dock-agent", "--id", "ok-2"][..]),
    ] {
        seen.add(
            format!("tally-central {command}"),
            central.cli(command, args).await?,
        );
    }
    let refused = central
        .cli(
            "dlq",
            &[
                "retry",
                "--warehouse",
                "WH",
                "--sku",
                "NONE",
                "--reason",
                "typo",
            ],
        )
        .await;
    seen.add("tally-central dlq retry (refused)", format!("{refused:?}"));

    // Central again, with a wrong Odoo key: the alert names the failure, not the key.
    central.terminate().await?;
    let central = central_with(WRONG_ODOO_KEY).spawn().await?;
    let admin = central.admin();
    wait_until(
        "the merge to raise its alert",
        Duration::from_secs(60),
        || async {
            let merge = admin.get_json("/v1/merge").await?;
            Ok(if merge["alert"].is_string() {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(merge.to_string())
            })
        },
    )
    .await?;
    for path in ["/v1/merge", "/v1/status"] {
        seen.add(
            format!("GET {path} (wrong key)"),
            admin.get_json(path).await?.to_string(),
        );
    }
    seen.add(
        "GET /metrics (wrong key)",
        answer(http.get(format!("{}/metrics", central.admin_url()))).await?,
    );
    central.terminate().await?;
    agent.terminate().await?;

    // Every log line of both daemons; central's are JSON objects.
    let central_log = std::fs::read_to_string(tally_tests::central_stderr_path(&central_dir))?;
    let mut json_lines = 0;
    for line in central_log
        .lines()
        .filter(|l| !l.starts_with("=== harness"))
    {
        let object: Value = serde_json::from_str(line)
            .with_context(|| format!("central logged a line that is not JSON: {line}"))?;
        ensure!(
            object["level"].is_string() && object["fields"].is_object(),
            "{line}"
        );
        json_lines += 1;
    }
    ensure!(json_lines > 20, "central logged only {json_lines} lines");
    seen.add("central's log", central_log);
    for name in ["agent", "intruder"] {
        let path = tally_tests::stderr_log_path(&dir.join(name));
        seen.add(
            format!("{name}'s log"),
            std::fs::read_to_string(&path).unwrap_or_default(),
        );
    }
    ensure!(
        seen.0.len() > 60,
        "too little was looked at: {}",
        seen.0.len()
    );
    seen.check(&[
        ADMIN_TOKEN,
        READ_TOKEN,
        SCANNER_TOKEN,
        METRICS_TOKEN,
        WRONG_TOKEN,
        &agent_token,
        &odoo_key,
        WRONG_ODOO_KEY,
    ])
}

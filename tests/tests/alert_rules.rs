//! The alert rules of `packaging/prometheus/tally-rules.yml` against real metrics: a central
//! (merging into the Odoo simulator) and two agents run, one is stopped and one event is parked;
//! the metrics of central and of the running agent are scraped, and `promtool test rules` (from
//! Debian's `prometheus` package, which `.ci/run` installs) evaluates every rule over series
//! built from them: as scraped (the stopped agent and the parked event alert, nothing else;
//! the webhook channel is healthy), and with the same series moved past each threshold (every
//! rule alerts, on the real labels).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use tally_central::odoo::OdooConfig;
use tally_protocol::Secret;
use tally_tests::channels::webhook::WebhookReceiver;
use tally_tests::odoo_sim::{OdooSim, SimConfig, Tracking, Version};
use tally_tests::{
    AgentProcess, CentralProcess, add_agent_offline, wait_synced, wait_until, with_temp_dir,
};

const ADMIN_TOKEN: &str = "alerts-admin-token-0123456789";
const SCANNER_TOKEN: &str = "alerts-scanner-token-0123456789";

/// One scraped sample: name, labels (with the `job` and `instance` a scrape adds), value.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the samples of an OpenMetrics (or Prometheus text) exposition.
fn parse(text: &str, job: &str, instance: &str) -> anyhow::Result<Vec<Series>> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line
            .rsplit_once(' ')
            .with_context(|| format!("a sample without a value: {line}"))?;
        let value: f64 = value
            .parse()
            .with_context(|| format!("not a number: {line}"))?;
        let (name, mut labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .with_context(|| format!("unclosed labels: {line}"))?;
                (name.to_owned(), parse_labels(body)?)
            }
        };
        labels.insert("job".into(), job.into());
        labels.insert("instance".into(), instance.into());
        out.push(Series {
            name,
            labels,
            value,
        });
    }
    Ok(out)
}

fn parse_labels(body: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .with_context(|| format!("bad labels: {body}"))?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => {
                    if let Some((_, c)) = chars.next() {
                        value.push(if c == 'n' { '\n' } else { c });
                    }
                }
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => bail!("unterminated label value: {body}"),
            }
        };
        labels.insert(key.trim_start_matches(',').to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    Ok(labels)
}

fn series_text(s: &Series) -> String {
    let labels: Vec<String> = s
        .labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{}{{{}}}", s.name, labels.join(","))
}

/// The rules as shipped, without their annotations: promtool would otherwise need each alert's
/// rendered text; `promtool check rules` checks the annotations' templates.
fn rules_without_annotations(rules: &str) -> String {
    let mut out = String::new();
    let mut skipping: Option<usize> = None;
    for line in rules.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(level) = skipping {
            if indent > level || line.trim().is_empty() {
                continue;
            }
            skipping = None;
        }
        if line.trim() == "annotations:" {
            skipping = Some(indent);
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The alerts Tally's rules should raise over `series`, worked out from the series alone:
/// alert name → the label sets it fires with.
fn expected(series: &[Series]) -> BTreeMap<&'static str, Vec<BTreeMap<String, String>>> {
    let mut out: BTreeMap<&'static str, Vec<BTreeMap<String, String>>> = BTreeMap::new();
    let value = |name: &str, labels: &BTreeMap<String, String>| {
        series
            .iter()
            .find(|s| s.name == name && &s.labels == labels)
            .map(|s| s.value)
    };
    for s in series {
        let v = s.value;
        let hit: Option<(&'static str, &str)> = match s.name.as_str() {
            "tally_central_agent_connected" if v == 0.0 => Some(("TallyAgentOffline", "warning")),
            "tally_agent_central_connected" if v == 0.0 => {
                Some(("TallyAgentCentralUnreachable", "warning"))
            }
            "tally_central_agent_oldest_unsynced_age_seconds"
            | "tally_agent_oldest_unacked_age_seconds"
                if v > 900.0 =>
            {
                Some(("TallyEventsUnsynced", "warning"))
            }
            "tally_central_agent_oldest_unmerged_age_seconds" if v > 900.0 => {
                Some(("TallyEventsUnmerged", "warning"))
            }
            "tally_central_odoo_alert" if v == 1.0 => Some(("TallyOdooAlert", "critical")),
            "tally_central_odoo_circuit_open" if v == 1.0 => {
                Some(("TallyOdooCircuitOpen", "critical"))
            }
            "tally_central_dead_letters" if v > 0.0 => Some(("TallyDeadLetters", "warning")),
            "tally_central_channel_oldest_pending_seconds" if v > 900.0 => {
                Some(("TallyChannelBehind", "warning"))
            }
            "tally_central_channel_alert" if v == 1.0 => Some(("TallyChannelAlert", "critical")),
            "tally_central_channel_circuit_open" if v == 1.0 => {
                Some(("TallyChannelCircuitOpen", "critical"))
            }
            "tally_central_channel_dead_letters" if v > 0.0 => {
                Some(("TallyChannelDeadLetters", "warning"))
            }
            "tally_agent_log_budget_bytes"
                if v > 0.0
                    && value("tally_agent_log_bytes", &s.labels).is_some_and(|b| b / v > 0.9) =>
            {
                Some(("TallyAgentDiskBudget", "critical"))
            }
            _ => None,
        };
        if let Some((alert, severity)) = hit {
            let mut labels = s.labels.clone();
            labels.insert("severity".into(), severity.into());
            out.entry(alert).or_default().push(labels);
        }
    }
    out
}

const ALERTS: [&str; 12] = [
    "TallyAgentOffline",
    "TallyAgentCentralUnreachable",
    "TallyEventsUnsynced",
    "TallyEventsUnmerged",
    "TallyOdooAlert",
    "TallyOdooCircuitOpen",
    "TallyDeadLetters",
    "TallyAgentDiskBudget",
    "TallyChannelBehind",
    "TallyChannelAlert",
    "TallyChannelCircuitOpen",
    "TallyChannelDeadLetters",
];

/// A promtool test: `series` held for 30 minutes, every rule evaluated at 10 minutes.
fn promtool_test(name: &str, series: &[Series]) -> Value {
    let input: Vec<Value> = series
        .iter()
        .map(|s| json!({"series": series_text(s), "values": format!("{}x30", s.value)}))
        .collect();
    let expected = expected(series);
    let checks: Vec<Value> = ALERTS
        .iter()
        .map(|alert| {
            let alerts: Vec<Value> = expected
                .get(alert)
                .into_iter()
                .flatten()
                .map(|labels| json!({"exp_labels": labels}))
                .collect();
            json!({"eval_time": "10m", "alertname": alert, "exp_alerts": alerts})
        })
        .collect();
    json!({"name": name, "interval": "1m", "input_series": input, "alert_rule_test": checks})
}

/// The same series moved past every threshold.
fn past_thresholds(series: &[Series]) -> Vec<Series> {
    let budget: BTreeMap<_, _> = series
        .iter()
        .filter(|s| s.name == "tally_agent_log_budget_bytes")
        .map(|s| (s.labels.clone(), s.value))
        .collect();
    series
        .iter()
        .cloned()
        .map(|mut s| {
            s.value = match s.name.as_str() {
                "tally_central_agent_connected" | "tally_agent_central_connected" => 0.0,
                "tally_central_agent_oldest_unsynced_age_seconds"
                | "tally_agent_oldest_unacked_age_seconds"
                | "tally_central_agent_oldest_unmerged_age_seconds"
                | "tally_central_channel_oldest_pending_seconds" => 1000.0,
                "tally_central_odoo_alert"
                | "tally_central_odoo_circuit_open"
                | "tally_central_channel_alert"
                | "tally_central_channel_circuit_open" => 1.0,
                "tally_central_channel_dead_letters" => 2.0,
                "tally_agent_log_bytes" => budget.get(&s.labels).map_or(s.value, |b| b * 0.95),
                _ => s.value,
            };
            s
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_rule_fires_on_real_metrics_and_only_when_it_should() {
    with_temp_dir("alert-rules", |dir| async move { scenario(&dir).await }).await;
}

const HOOK_SECRET: &str = "alerts-hook-secret-0123456789";

/// Central's configuration file: one webhook channel selling warehouse WH.
fn channel_config(dir: &Path, url: &str) -> anyhow::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let secret = dir.join("hook-secret");
    std::fs::write(&secret, HOOK_SECRET)?;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))?;
    let config = dir.join("central.toml");
    std::fs::write(
        &config,
        format!(
            "[[channels]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{url}\"\nwarehouses = [\"WH\"]\nsecret_file = \"{}\"\n",
            secret.display()
        ),
    )?;
    Ok(config)
}

async fn scenario(dir: &Path) -> anyhow::Result<()> {
    let sim = OdooSim::start(SimConfig::new(Version::V17)).await?;
    sim.add_product("CHAIR-OAK", Tracking::None)?;
    let odoo = OdooConfig {
        url: sim.url(),
        db: sim.db().to_owned(),
        login: sim.login().to_owned(),
        api_key: Secret::new(sim.api_key()),
        call_timeout: Duration::from_secs(60),
        api: Default::default(),
    };
    let central_dir = dir.join("central");
    let dock = add_agent_offline(&central_dir, ADMIN_TOKEN, "dock-agent", "WH").await?;
    let yard = add_agent_offline(&central_dir, ADMIN_TOKEN, "yard-agent", "WH").await?;
    // One webhook channel, so the channel series are scraped too; its receiver takes every
    // push, so none of its rules fires as scraped.
    let hook = WebhookReceiver::start(HOOK_SECRET).await?;
    let config = channel_config(dir, &hook.url())?;
    let central = CentralProcess::builder(&central_dir)
        .admin_token(ADMIN_TOKEN)
        .arg("--merge-window")
        .arg("0s")
        .arg("--config")
        .arg(&config)
        .odoo(&odoo)
        .spawn()
        .await?;
    let agent = |name: &str, token: &str| {
        AgentProcess::builder(dir.join(name))
            .token(SCANNER_TOKEN)
            .warehouse("WH")
            .agent_id(name)
            .central(&central.sync_url(), token, None)
    };
    let dock_agent = agent("dock-agent", &dock).spawn().await?;
    let yard_agent = agent("yard-agent", &yard).spawn().await?;
    wait_synced(&yard_agent.client(), Duration::from_secs(60)).await?;
    yard_agent.terminate().await?;
    let events = json!({"events": [
        {"id": "a", "type": "receipt", "sku": "CHAIR-OAK", "qty": "1"},
        {"id": "b", "type": "receipt", "sku": "NOT-IN-ODOO", "qty": "1"},
    ]});
    ensure!(dock_agent.client().post_events(&events).await?.status == 201);
    wait_synced(&dock_agent.client(), Duration::from_secs(60)).await?;
    let admin = central.admin();
    wait_until(
        "the unknown SKU to be parked",
        Duration::from_secs(60),
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

    let scrape = |url: String| async move {
        let text = reqwest::get(&url).await?.error_for_status()?.text().await?;
        anyhow::Ok(text)
    };
    let mut series = parse(
        &scrape(format!("{}/metrics", central.admin_url())).await?,
        "tally-central",
        "central",
    )?;
    series.extend(parse(
        &scrape(format!("{}/metrics", dock_agent.base_url())).await?,
        "tally-agent",
        "dock",
    )?);
    // What the scenario made true, read from the metrics themselves.
    let now = expected(&series);
    let offline: Vec<&str> = now["TallyAgentOffline"]
        .iter()
        .map(|l| l["agent"].as_str())
        .collect();
    ensure!(offline == ["yard-agent"], "offline agents: {offline:?}");
    ensure!(
        now.contains_key("TallyDeadLetters") && now.len() == 2,
        "alerts as scraped: {now:?}"
    );
    let moved = past_thresholds(&series);
    ensure!(
        ALERTS.iter().all(|a| expected(&moved).contains_key(a)),
        "a rule has no series to fire on: {:?}",
        expected(&moved).keys().collect::<Vec<_>>()
    );

    let rules_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/prometheus/tally-rules.yml");
    let rules = std::fs::read_to_string(&rules_path).context("reading the rules")?;
    let stripped = dir.join("tally-rules.yml");
    std::fs::write(&stripped, rules_without_annotations(&rules))?;
    let tests = json!({
        "rule_files": [stripped],
        "evaluation_interval": "1m",
        "tests": [promtool_test("as scraped", &series), promtool_test("past every threshold", &moved)],
    });
    // JSON is YAML: promtool reads it as it is.
    let tests_path = dir.join("tally-rules.test.yml");
    std::fs::write(&tests_path, serde_json::to_string_pretty(&tests)?)?;
    let output = tokio::process::Command::new("promtool")
        .arg("test")
        .arg("rules")
        .arg(&tests_path)
        .output()
        .await
        .context("cannot run promtool (apt-get install prometheus, as .ci/run does)")?;
    ensure!(
        output.status.success(),
        "promtool test rules failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[test]
fn samples_and_labels_are_parsed() {
    let series = parse(
        "# HELP x y\nx_total 3\nx{agent=\"a\\\"b\",le=\"+Inf\"} 1.5\n# EOF\n",
        "j",
        "i",
    )
    .unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(series[1].labels["agent"], "a\"b");
    assert_eq!(series[1].labels["le"], "+Inf");
    assert_eq!(series[1].value, 1.5);
    assert_eq!(
        rules_without_annotations("a:\n  annotations:\n    x: y\n  labels:\n    s: w\n"),
        "a:\n  labels:\n    s: w\n"
    );
}

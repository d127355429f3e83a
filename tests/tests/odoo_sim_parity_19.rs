//! Parity of the simulator's Odoo 19 mode with a real Odoo 19.0 server, over JSON-2 and the
//! deprecated JSON-RPC: a script of the calls Tally makes (and the refusals it must classify)
//! runs against the simulator, and every answer — HTTP status, error class and first line of
//! its message, the JSON shape of a result — is compared with what the real server answered to
//! the same script, recorded in `tests/transcripts/odoo19.json`.
//!
//! The script finds the records it needs by name from earlier answers, so it runs unchanged on
//! both. To record again against a real 19 (its database set up as `docs/odoo.md` says):
//! `TALLY_ODOO_RECORD=1 TALLY_ODOO_URL=… TALLY_ODOO_DB=… TALLY_ODOO_USER=… TALLY_ODOO_API_KEY=…
//! cargo test -p tally-tests --test odoo_sim_parity_19`.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::{Value, json};
use tally_tests::odoo_sim::{OdooSim, SimConfig, Tracking, Version};

/// One answer as the script saw it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Answer {
    step: String,
    status: u16,
    body: Value,
}

struct Server {
    http: reqwest::Client,
    url: String,
    db: String,
    key: String,
    answers: Vec<Answer>,
}

impl Server {
    /// `POST /json/2/<model>/<method>` with `body`, as `key`.
    async fn json2(
        &mut self,
        step: &str,
        target: &str,
        key: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}/json/2/{target}", self.url))
            .header("Authorization", format!("bearer {key}"))
            .header("X-Odoo-Database", &self.db)
            .json(&body)
            .send()
            .await?;
        self.record(step, response).await
    }

    /// `object.execute_kw` over `/jsonrpc`, with the uid from `context_get`.
    async fn jsonrpc(
        &mut self,
        step: &str,
        uid: i64,
        model: &str,
        method: &str,
        args: Value,
    ) -> anyhow::Result<Value> {
        let body = json!({"jsonrpc": "2.0", "method": "call", "id": 1, "params": {
            "service": "object", "method": "execute_kw",
            "args": [self.db, uid, self.key, model, method, args, {}]}});
        let response = self
            .http
            .post(format!("{}/jsonrpc", self.url))
            .json(&body)
            .send()
            .await?;
        self.record(step, response).await
    }

    async fn record(&mut self, step: &str, response: reqwest::Response) -> anyhow::Result<Value> {
        let status = response.status().as_u16();
        let body: Value = response.json().await.context(step.to_owned())?;
        self.answers.push(Answer {
            step: step.to_owned(),
            status,
            body: body.clone(),
        });
        Ok(body)
    }
}

/// The script: Tally's lookups, a picking created and validated, and each refusal.
async fn script(s: &mut Server) -> anyhow::Result<()> {
    let key = s.key.clone();
    let info = s
        .http
        .post(format!("{}/web/webclient/version_info", s.url))
        .json(&json!({"jsonrpc": "2.0", "method": "call", "params": {}, "id": 0}))
        .send()
        .await?;
    s.record("version_info", info).await?;
    let context = s
        .json2("context_get", "res.users/context_get", &key, json!({}))
        .await?;
    let uid = context["uid"].as_i64().context("uid")?;
    s.json2("bad key", "res.users/context_get", "not-a-key", json!({}))
        .await?;
    let warehouses = s
        .json2(
            "warehouse",
            "stock.warehouse/search_read",
            &key,
            json!({"domain": [["code", "=", "WH"]],
                   "fields": ["id", "code", "company_id", "lot_stock_id", "view_location_id",
                              "in_type_id", "out_type_id", "int_type_id"]}),
        )
        .await?;
    let stock = warehouses[0]["lot_stock_id"][0].as_i64().context("stock")?;
    let receipt_type = warehouses[0]["in_type_id"][0].as_i64().context("type")?;
    let virtuals = s
        .json2(
            "virtual locations",
            "stock.location/search_read",
            &key,
            json!({"domain": [["usage", "in", ["supplier", "customer", "inventory"]]],
                   "fields": ["id", "complete_name", "usage"]}),
        )
        .await?;
    let vendors = virtuals
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["usage"] == "supplier"))
        .and_then(|r| r["id"].as_i64())
        .context("vendors")?;
    let products = s
        .json2(
            "products",
            "product.product/search_read",
            &key,
            json!({"domain": [["default_code", "in", ["LAMP-BRASS"]]],
                   "fields": ["id", "default_code", "uom_id", "tracking", "type", "is_storable"]}),
        )
        .await?;
    let product = products[0]["id"].as_i64().context("product")?;
    let uom = products[0]["uom_id"][0].as_i64().context("uom")?;
    let line = json!({"product_id": product, "product_uom": uom, "product_uom_qty": 1.0,
                      "quantity": 1.0, "picked": true,
                      "location_id": vendors, "location_dest_id": stock});
    let mut named = line.clone();
    named["name"] = json!("tally-parity");
    let picking = |line: &Value, name: &str| {
        json!({"vals_list": [{"name": name, "origin": name, "picking_type_id": receipt_type,
                              "location_id": vendors, "location_dest_id": stock,
                              "move_ids": [[0, 0, line]]}]})
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_micros();
    let name = format!("tally-parity-{stamp}");
    s.json2(
        "create with a move name",
        "stock.picking/create",
        &key,
        picking(&named, &name),
    )
    .await?;
    s.jsonrpc(
        "create with a move name over jsonrpc",
        uid,
        "stock.picking",
        "create",
        json!([picking(&named, &name)["vals_list"][0]]),
    )
    .await?;
    let created = s
        .json2(
            "create",
            "stock.picking/create",
            &key,
            picking(&line, &name),
        )
        .await?;
    let id = created[0].as_i64().context("picking id")?;
    s.json2(
        "duplicate name",
        "stock.picking/create",
        &key,
        picking(&line, &name),
    )
    .await?;
    s.json2(
        "validate",
        "stock.picking/button_validate",
        &key,
        json!({"ids": [id], "context": {"skip_backorder": true,
               "picking_ids_not_to_backorder": [id], "skip_sms": true}}),
    )
    .await?;
    s.json2(
        "find by name",
        "stock.picking/search_read",
        &key,
        json!({"domain": [["name", "=", name]], "fields": ["id", "state"]}),
    )
    .await?;
    s.json2(
        "quants",
        "stock.quant/search_read",
        &key,
        json!({"domain": [["product_id", "=", product], ["location_id", "=", stock]],
               "fields": ["quantity"]}),
    )
    .await?;
    s.json2(
        "unknown model",
        "no.such.model/search_read",
        &key,
        json!({"domain": []}),
    )
    .await?;
    s.json2(
        "unknown method",
        "product.product/no_such_method",
        &key,
        json!({}),
    )
    .await?;
    s.json2(
        "unknown field",
        "product.product/search_read",
        &key,
        json!({"domain": [], "fields": ["no_such_field"]}),
    )
    .await?;
    s.json2(
        "missing record",
        "stock.picking/button_validate",
        &key,
        json!({"ids": [999_999_999]}),
    )
    .await?;
    s.json2(
        "private method",
        "stock.picking/_action_done",
        &key,
        json!({"ids": [id]}),
    )
    .await?;
    s.json2(
        "no right",
        "ir.config_parameter/search_read",
        &key,
        json!({"domain": []}),
    )
    .await?;
    Ok(())
}

fn recording() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("transcripts/odoo19.json")
}

/// The message's first line with quotes unified (the simulator is not asked to copy the
/// group lists of access errors word for word).
fn headline(body: &Value) -> String {
    body["message"]
        .as_str()
        .or(body["error"]["data"]["message"].as_str())
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .replace('"', "'")
}

fn error_name(body: &Value) -> Option<&str> {
    body["name"]
        .as_str()
        .or(body["error"]["data"]["name"].as_str())
}

/// Differences in JSON shape: types, and keys of objects.
fn shape(recorded: &Value, sim: &Value, path: &str, out: &mut Vec<String>) {
    match (recorded, sim) {
        (Value::Object(a), Value::Object(b)) => {
            let (ka, kb): (Vec<_>, Vec<_>) = (a.keys().collect(), b.keys().collect());
            if ka != kb {
                out.push(format!("{path}: keys {ka:?} vs {kb:?}"));
            }
            for (k, v) in a {
                if let Some(w) = b.get(k) {
                    shape(v, w, &format!("{path}.{k}"), out);
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if let (Some(x), Some(y)) = (a.first(), b.first()) {
                shape(x, y, &format!("{path}[0]"), out);
            } else if a.is_empty() != b.is_empty() {
                out.push(format!("{path}: {} vs {} elements", a.len(), b.len()));
            }
        }
        (Value::Number(a), Value::Number(b)) if a.is_f64() != b.is_f64() => {
            out.push(format!("{path}: {a} vs {b}"));
        }
        (a, b) if std::mem::discriminant(a) != std::mem::discriminant(b) => {
            out.push(format!("{path}: {a} vs {b}"));
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odoo_19_answers_as_the_recorded_server_does() -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    if std::env::var_os("TALLY_ODOO_RECORD").is_some() {
        let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is needed"));
        let mut live = Server {
            http,
            url: var("TALLY_ODOO_URL")?,
            db: var("TALLY_ODOO_DB")?,
            key: var("TALLY_ODOO_API_KEY")?,
            answers: Vec::new(),
        };
        script(&mut live).await?;
        // Tracebacks name the server's files: keep their last line only.
        for answer in &mut live.answers {
            for pointer in ["/debug", "/error/data/debug"] {
                if let Some(debug) = answer.body.pointer_mut(pointer)
                    && let Some(text) = debug.as_str()
                {
                    let last = text.trim_end().lines().last().unwrap_or_default();
                    *debug = json!(last);
                }
            }
        }
        std::fs::write(
            recording(),
            serde_json::to_string_pretty(&live.answers)? + "\n",
        )?;
        println!(
            "recorded {} answers into {}",
            live.answers.len(),
            recording().display()
        );
        return Ok(());
    }
    let recorded: Vec<Answer> = serde_json::from_slice(&std::fs::read(recording())?)?;
    let sim = OdooSim::start(SimConfig::new(Version::V19)).await?;
    sim.add_product("LAMP-BRASS", Tracking::None)?;
    let mut simulated = Server {
        http,
        url: sim.url(),
        db: sim.db().to_owned(),
        key: sim.api_key().to_owned(),
        answers: Vec::new(),
    };
    script(&mut simulated).await?;
    assert_eq!(recorded.len(), simulated.answers.len(), "the same script");
    let mut differences = Vec::new();
    for (real, ours) in recorded.iter().zip(&simulated.answers) {
        let step = &real.step;
        if real.status != ours.status {
            differences.push(format!("{step}: HTTP {} vs {}", real.status, ours.status));
        }
        match (error_name(&real.body), error_name(&ours.body)) {
            (Some(a), Some(b)) if a != b => differences.push(format!("{step}: {a} vs {b}")),
            (Some(_), Some(_)) if headline(&real.body) != headline(&ours.body) => {
                differences.push(format!(
                    "{step}: {:?} vs {:?}",
                    headline(&real.body),
                    headline(&ours.body)
                ))
            }
            (Some(_), Some(_)) => {}
            (a, b) if a.is_some() != b.is_some() => {
                differences.push(format!("{step}: error {a:?} vs {b:?}"));
            }
            _ => shape(&real.body, &ours.body, step, &mut differences),
        }
    }
    assert!(
        differences.is_empty(),
        "the simulator's 19 differs from the recorded server:\n{}",
        differences.join("\n")
    );
    Ok(())
}

//! The parity script's plumbing: a session with one Odoo (real or simulated) over one
//! transport, which records every answer, and the comparison of two recordings.

pub mod fills;
pub mod flows;
pub mod lots;
pub mod pickings;
pub mod script;

use anyhow::Context;
use serde_json::{Map, Value, json};

/// How the script talks to Odoo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// `POST /json/2/<model>/<method>` (19 and later).
    Json2,
    /// `object.execute_kw` over `POST /jsonrpc`.
    Jsonrpc,
}

/// One answer as the script saw it. `status` 0 marks a fact the script derived from earlier
/// answers (a state, a difference of quantities), compared by value.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    pub step: String,
    pub status: u16,
    pub body: Value,
}

/// The answers of one run of the script over one transport.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Run {
    pub transport: Transport,
    pub answers: Vec<Answer>,
}

/// One model method call, said once for both transports, as Tally's client says it: JSON-RPC
/// takes the ids and `arg`s by position and `kw`s by name, JSON-2 everything by name.
pub struct C {
    model: String,
    method: String,
    ids: Option<Vec<i64>>,
    args: Vec<(&'static str, Value)>,
    kwargs: Vec<(&'static str, Value)>,
}

impl C {
    /// A method of the model (`search_read`, `create`).
    pub fn model(model: &str, method: &str) -> C {
        C {
            model: model.to_owned(),
            method: method.to_owned(),
            ids: None,
            args: Vec::new(),
            kwargs: Vec::new(),
        }
    }

    /// A method of the records `ids` (`write`, `button_validate`).
    pub fn records(model: &str, method: &str, ids: &[i64]) -> C {
        C {
            ids: Some(ids.to_vec()),
            ..C::model(model, method)
        }
    }

    /// `search_read(domain, fields)`.
    pub fn search(model: &str, domain: Value, fields: &[&str]) -> C {
        C::model(model, "search_read")
            .arg("domain", domain)
            .kw("fields", json!(fields))
    }

    pub fn arg(mut self, name: &'static str, value: Value) -> C {
        self.args.push((name, value));
        self
    }

    pub fn kw(mut self, name: &'static str, value: Value) -> C {
        self.kwargs.push((name, value));
        self
    }

    pub fn ctx(self, context: Value) -> C {
        self.kw("context", context)
    }
}

/// A session with one Odoo database as the integration user.
pub struct Session {
    pub http: reqwest::Client,
    pub url: String,
    pub db: String,
    pub login: String,
    pub key: String,
    pub transport: Transport,
    /// The major version, from the server's `version_info`.
    pub major: u8,
    /// The integration user's id (from `authenticate` or `context_get`).
    pub uid: i64,
    /// Makes this run's picking names, lots and markers unique in a database that keeps them.
    pub stamp: String,
    pub answers: Vec<Answer>,
}

impl Session {
    pub fn new(url: &str, db: &str, login: &str, key: &str, transport: Transport) -> Session {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or_default();
        Session {
            http: reqwest::Client::new(),
            url: url.trim_end_matches('/').to_owned(),
            db: db.to_owned(),
            login: login.to_owned(),
            key: key.to_owned(),
            transport,
            major: 0,
            uid: 0,
            stamp: format!("tally-parity-{stamp}"),
            answers: Vec::new(),
        }
    }

    /// A name unique to this run: `tally-parity-<stamp>-<what>`.
    pub fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.stamp)
    }

    /// Calls `c` over the session's transport and records the answer; returns the result
    /// (`null` for an error and for a method that returned nothing).
    pub async fn call(&mut self, step: &str, c: C) -> anyhow::Result<Value> {
        match self.transport {
            Transport::Json2 => {
                let mut body = Map::new();
                if let Some(ids) = &c.ids {
                    body.insert("ids".into(), json!(ids));
                }
                for (name, value) in c.args.iter().chain(&c.kwargs) {
                    body.insert((*name).to_owned(), value.clone());
                }
                let key = self.key.clone();
                let target = format!("{}/{}", c.model, c.method);
                let answer = self.json2(step, &target, &key, Value::Object(body)).await?;
                let ok = self.answers.last().is_some_and(|a| a.status < 300);
                Ok(if ok { answer } else { Value::Null })
            }
            Transport::Jsonrpc => {
                let ids = c.ids.iter().map(|ids| json!(ids));
                let args: Vec<Value> = ids.chain(c.args.iter().map(|(_, v)| v.clone())).collect();
                let kwargs: Map<String, Value> = c
                    .kwargs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect();
                let params = json!([self.db, self.uid, self.key, c.model, c.method, args, kwargs]);
                let body = self.jsonrpc(step, "object", "execute_kw", params).await?;
                Ok(body.get("result").cloned().unwrap_or(Value::Null))
            }
        }
    }

    /// `POST /json/2/<target>` with `body`, as `key`; the answer's body.
    pub async fn json2(
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

    /// A JSON-RPC call of `service.method(args)`; the whole envelope.
    pub async fn jsonrpc(
        &mut self,
        step: &str,
        service: &str,
        method: &str,
        args: Value,
    ) -> anyhow::Result<Value> {
        let body = json!({"jsonrpc": "2.0", "method": "call", "id": 1,
                          "params": {"service": service, "method": method, "args": args}});
        let response = self
            .http
            .post(format!("{}/jsonrpc", self.url))
            .json(&body)
            .send()
            .await?;
        self.record(step, response).await
    }

    /// A JSON-RPC envelope to a web route (`/web/webclient/version_info`).
    pub async fn web(&mut self, step: &str, route: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{route}", self.url))
            .json(&json!({"jsonrpc": "2.0", "method": "call", "params": {}, "id": 0}))
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

    /// Records what the script derived from the answers, to be compared by value.
    pub fn fact(&mut self, step: &str, value: Value) {
        self.answers.push(Answer {
            step: format!("{step} (fact)"),
            status: 0,
            body: value,
        });
    }
}

/// The first line of an error's message, with digits (ids, counters, the run's stamp) and
/// quotes unified.
pub fn headline(body: &Value) -> String {
    let line = body["message"]
        .as_str()
        .or(body["error"]["data"]["message"].as_str())
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .replace('"', "'");
    let mut out = String::new();
    for c in line.chars() {
        if !c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('#') {
            out.push('#');
        }
    }
    out
}

/// The exception class of an error answer: JSON-RPC's `error.data.name`, or the `name` of a
/// JSON-2 body sent with an error status (a wizard action has a `name` too).
pub fn error_name(answer: &Answer) -> Option<&str> {
    match answer.body["error"]["data"]["name"].as_str() {
        Some(name) => Some(name),
        None if answer.status >= 300 => answer.body["name"].as_str(),
        None => None,
    }
}

/// Differences in JSON shape: types, keys of objects, empty or not. `false` stands for an
/// empty value of any type, as Odoo answers an empty many2one, text or date.
pub fn shape(recorded: &Value, sim: &Value, path: &str, out: &mut Vec<String>) {
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
        (Value::Bool(false), Value::Array(_) | Value::String(_) | Value::Object(_))
        | (Value::Array(_) | Value::String(_) | Value::Object(_), Value::Bool(false)) => {}
        (Value::Number(a), Value::Number(b)) if a.is_f64() != b.is_f64() => {
            out.push(format!("{path}: {a} vs {b}"));
        }
        (a, b) if std::mem::discriminant(a) != std::mem::discriminant(b) => {
            out.push(format!("{path}: {a} vs {b}"));
        }
        _ => {}
    }
}

/// Every difference between a recorded run and the simulator's, one line each.
pub fn differences(recorded: &[Answer], simulated: &[Answer]) -> Vec<String> {
    let mut out = Vec::new();
    for (real, ours) in recorded.iter().zip(simulated) {
        let step = &real.step;
        if real.step != ours.step {
            out.push(format!(
                "the script went another way: recorded {:?}, simulator {:?}",
                real.step, ours.step
            ));
            return out;
        }
        if real.status != ours.status {
            out.push(format!("{step}: HTTP {} vs {}", real.status, ours.status));
        }
        if real.status == 0 {
            if real.body != ours.body {
                out.push(format!("{step}: {} vs {}", real.body, ours.body));
            }
            continue;
        }
        match (error_name(real), error_name(ours)) {
            (Some(a), Some(b)) if a != b => out.push(format!("{step}: {a} vs {b}")),
            (Some(_), Some(_)) if headline(&real.body) != headline(&ours.body) => {
                out.push(format!(
                    "{step}: {:?} vs {:?}",
                    headline(&real.body),
                    headline(&ours.body)
                ))
            }
            (Some(_), Some(_)) => {
                // JSON-RPC's envelope around the error: its code and message.
                for pointer in ["/error/code", "/error/message"] {
                    let (a, b) = (real.body.pointer(pointer), ours.body.pointer(pointer));
                    if a != b {
                        out.push(format!("{step}: {pointer} {a:?} vs {b:?}"));
                    }
                }
            }
            (a, b) if a.is_some() != b.is_some() => {
                out.push(format!("{step}: error {a:?} vs {b:?}"));
            }
            _ => shape(&real.body, &ours.body, step, &mut out),
        }
    }
    if recorded.len() != simulated.len() {
        out.push(format!(
            "{} answers recorded, {} from the simulator",
            recorded.len(),
            simulated.len()
        ));
    }
    out
}

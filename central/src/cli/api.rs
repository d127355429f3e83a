//! The command line's client of a running central's admin API: the same view types the API
//! answers with, read back, and errors as the API's sentences.

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tally_central::config::LocalConfig;

/// Whether a request reads or changes: a read may use the read-only token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Read,
    Change,
}

#[derive(Debug)]
pub struct Api {
    base: String,
    http: reqwest::Client,
    token: String,
}

impl Api {
    pub fn new(config: &LocalConfig, need: Need) -> anyhow::Result<Api> {
        let token = match (need, &config.admin_token, &config.read_token) {
            (_, Some(admin), _) => admin.expose().to_owned(),
            (Need::Read, None, Some(read)) => read.expose().to_owned(),
            (Need::Read, None, None) => bail!(
                "central is running (it holds the database in {}); to ask its admin API give the read-only or admin token (--read-token-file, --admin-token-file, TALLY_READ_TOKEN, TALLY_ADMIN_TOKEN or --config)",
                config.data_dir.display()
            ),
            (Need::Change, None, _) => bail!(
                "central is running (it holds the database in {}); to change anything through its admin API give the admin token (--admin-token-file, TALLY_ADMIN_TOKEN or --config)",
                config.data_dir.display()
            ),
        };
        let mut http = reqwest::Client::builder();
        if let Some(ca) = &config.admin_ca_file {
            let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{} is not a PEM certificate", ca.display()))?;
            http = http.add_root_certificate(cert);
        }
        Ok(Api {
            base: config.admin_url(),
            http: http.build().context("cannot set up the HTTP client")?,
            token,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Sends `request` and returns the answer's body, or the API's error as a sentence.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<String> {
        let response = request.send().await.with_context(|| {
            format!(
                "central holds its database but its admin API at {} does not answer",
                self.base
            )
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{}", api_error(&self.base, status, &text));
        }
        Ok(text)
    }

    /// `GET path`, read as `T`.
    pub async fn read<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let text = self.send(self.get(path)).await?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{}{path} answered what this command cannot read: {text}",
                self.base
            )
        })
    }

    /// `POST path` with a JSON body; the answer as JSON (`null` when empty).
    pub async fn change(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let text = self.send(self.post(path).json(body)).await?;
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_str(&text)?)
    }
}

/// An admin API error as a sentence: its message when it has the API's error shape.
pub fn api_error(base: &str, status: reqwest::StatusCode, text: &str) -> String {
    let message = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned));
    match message {
        Some(message) => message,
        None => format!("{base} answered {status}: {text}"),
    }
}

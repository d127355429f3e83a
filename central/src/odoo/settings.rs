//! Where and as whom to reach Odoo, and over which of its external APIs: the `[odoo]` table of
//! central's configuration, once checked.

use std::str::FromStr;
use std::time::Duration;

use tally_protocol::Secret;

/// Which of Odoo's external APIs to use (`[odoo] api` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Api {
    /// JSON-2 from Odoo 19 on, JSON-RPC before.
    #[default]
    Auto,
    Json2,
    JsonRpc,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Auto => "auto",
            Api::Json2 => "json2",
            Api::JsonRpc => "jsonrpc",
        }
    }
}

impl FromStr for Api {
    type Err = String;

    fn from_str(text: &str) -> Result<Api, String> {
        match text {
            "auto" => Ok(Api::Auto),
            "json2" => Ok(Api::Json2),
            "jsonrpc" => Ok(Api::JsonRpc),
            other => Err(format!(
                "{other:?} is not an Odoo API (auto, json2 or jsonrpc)"
            )),
        }
    }
}

/// The transport a connected client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    JsonRpc,
    Json2,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::JsonRpc => "jsonrpc",
            Transport::Json2 => "json2",
        })
    }
}

/// Where and as whom to reach Odoo.
#[derive(Clone)]
pub struct OdooConfig {
    /// Base URL, such as `https://erp.example.com` (`/jsonrpc` is appended).
    pub url: String,
    pub db: String,
    pub login: String,
    /// The integration user's API key (never logged).
    pub api_key: Secret,
    /// Timeout of one call; calls that write or validate picking lines get
    /// [`TIMEOUT_PER_LINE`] more per line.
    pub call_timeout: Duration,
    pub api: Api,
}

impl std::fmt::Debug for OdooConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OdooConfig")
            .field("url", &self.url)
            .field("db", &self.db)
            .field("login", &self.login)
            .field("api_key", &self.api_key)
            .field("api", &self.api)
            .finish()
    }
}

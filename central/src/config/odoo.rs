//! The `[odoo]` table: read from the file, checked into an [`OdooConfig`].

use serde::Deserialize;
use tally_protocol::Secret;
use tally_service::{ConfigError, invalid, refuse_placeholder};

use super::ODOO_CALL_TIMEOUT;
use crate::odoo::{Api, OdooConfig};

/// The `[odoo]` table of the configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OdooFile {
    pub(super) url: Option<String>,
    pub(super) db: Option<String>,
    pub(super) user: Option<String>,
    pub(super) api_key: Option<String>,
    pub(super) api: Option<String>,
    pub(super) max_writes: Option<usize>,
}

pub(super) fn odoo_config(odoo: OdooFile) -> Result<Option<OdooConfig>, ConfigError> {
    let OdooFile {
        url,
        db,
        user,
        api_key: key,
        api,
        ..
    } = odoo;
    let Some(url) = url else {
        if db.is_some() || key.is_some() {
            return Err(invalid(
                "odoo_url",
                "is required with odoo_db and odoo_api_key",
            ));
        }
        return Ok(None);
    };
    let uri: axum::http::Uri = url
        .parse()
        .map_err(|_| invalid("odoo_url", format!("{url:?} is not a URL")))?;
    let host = uri.host().unwrap_or_default();
    let loopback = tally_service::is_loopback_host(host);
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if loopback => {}
        _ => {
            return Err(invalid(
                "odoo_url",
                format!("{url:?} must be https:// (plain http only on loopback)"),
            ));
        }
    }
    Ok(Some(OdooConfig {
        url,
        db: db.ok_or_else(|| invalid("odoo_db", "is required with odoo_url"))?,
        login: user.unwrap_or_else(|| "edge-sync".to_owned()),
        api_key: {
            let key = key.ok_or_else(|| invalid("odoo_api_key", "is required with odoo_url"))?;
            refuse_placeholder("odoo_api_key", &key)?;
            Secret::new(key)
        },
        call_timeout: ODOO_CALL_TIMEOUT,
        api: match api {
            Some(text) => text.parse().map_err(|m: String| invalid("odoo.api", m))?,
            None => Api::Auto,
        },
    }))
}

//! The `[odoo]` table: read from the file (with the old flat `odoo_*` keys folded in), layered
//! under the `--odoo-*` flags and checked into an [`OdooConfig`].

use serde::Deserialize;
use tally_protocol::Secret;
use tally_service::layers::{Layered, Layers};
use tally_service::{ConfigError, invalid, refuse_placeholder};

use super::{ConfigArgs, FileConfig, ODOO_CALL_TIMEOUT};
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

impl FileConfig {
    /// The `[odoo]` table with the old flat keys folded in. Setting one value both ways is
    /// refused rather than guessed at.
    pub(super) fn odoo(&mut self) -> Result<(OdooFile, Vec<String>), ConfigError> {
        let mut odoo = std::mem::take(&mut self.odoo);
        let mut deprecated = Vec::new();
        let flat = [
            ("odoo_url", self.odoo_url.take(), &mut odoo.url),
            ("odoo_db", self.odoo_db.take(), &mut odoo.db),
            ("odoo_user", self.odoo_user.take(), &mut odoo.user),
            ("odoo_api_key", self.odoo_api_key.take(), &mut odoo.api_key),
        ];
        for (key, old, new) in flat {
            let Some(old) = old else { continue };
            if new.is_some() {
                return Err(invalid(
                    key,
                    format!("is set both as {key} and in [odoo]; keep the [odoo] one"),
                ));
            }
            *new = Some(old);
            deprecated.push(format!(
                "the configuration key {key} is deprecated: write it as {} in the [odoo] table",
                key.trim_start_matches("odoo_")
            ));
        }
        if let Some(old) = self.odoo_max_writes.take() {
            if odoo.max_writes.is_some() {
                return Err(invalid(
                    "odoo_max_writes",
                    "is set both as odoo_max_writes and in [odoo]; keep the [odoo] one",
                ));
            }
            odoo.max_writes = Some(old);
            deprecated.push("the configuration key odoo_max_writes is deprecated: write it as max_writes in the [odoo] table".to_owned());
        }
        Ok((odoo, deprecated))
    }
}

impl ConfigArgs {
    /// Where to merge: the `[odoo]` table under the `--odoo-*` flags, checked; an error names
    /// where the value it refuses was set.
    pub(super) fn odoo(
        &self,
        layers: &Layers,
        file: OdooFile,
    ) -> Result<Option<OdooConfig>, ConfigError> {
        let url = layers.pick("odoo_url", self.odoo_url.clone(), file.url);
        let db = layers.pick("odoo_db", self.odoo_db.clone(), file.db);
        let user = layers.pick("odoo_user", self.odoo_user.clone(), file.user);
        let api_key = layers.secret(
            "odoo_api_key",
            "odoo_api_key_file",
            self.odoo_api_key_file.as_deref(),
            self.odoo_api_key.as_deref(),
            file.api_key,
        )?;
        let api = layers.pick("odoo_api", self.odoo_api.clone(), file.api);
        let value = |picked: &Option<Layered<String>>| picked.as_ref().map(|p| p.value.clone());
        let checked = odoo_config(OdooFile {
            url: value(&url),
            db: value(&db),
            user: value(&user),
            api_key: value(&api_key),
            api: value(&api),
            max_writes: None,
        });
        [url, db, user, api_key, api]
            .iter()
            .flatten()
            .fold(checked, |checked, picked| picked.attribute(checked))
    }
}

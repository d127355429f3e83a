//! `[[channels]]` of central's configuration file, checked into [`ChannelConfig`] before
//! anything is opened or bound.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tally_protocol::Secret;
use tally_service::{ConfigError, invalid};

/// One `[[channels]]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelFile {
    /// A name of the operator's choosing, unique (`[a-z0-9_-]`, at most 40 characters).
    pub name: String,
    /// `shopify`, `woocommerce` or `webhook`.
    pub kind: String,
    /// The warehouse codes whose free stock the channel offers (summed).
    pub warehouses: Vec<String>,
    /// Units held back from the offer.
    #[serde(default)]
    pub buffer: u64,
    /// Percent of the free stock held back, on top of `buffer` (0 to 100).
    #[serde(default)]
    pub buffer_percent: u8,
    /// The most the channel is ever offered of one SKU.
    pub cap: Option<u64>,
    /// Tally SKU → the channel's SKU, where they differ.
    #[serde(default)]
    pub skus: BTreeMap<String, String>,
    /// Tally SKUs the channel never gets.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Shopify: the shop's base URL (`https://NAME.myshopify.com`). WooCommerce: the site's
    /// base URL (`https://shop.example`, without `/wp-json`). Webhook: the receiver's URL.
    pub url: String,
    /// Shopify: the name of the Shopify location the warehouses feed.
    pub location: Option<String>,
    /// WooCommerce: the `client_order_ref` the channel's orders get in Odoo, `{number}` (the
    /// default) and `{id}` replaced by the WooCommerce order's number and id.
    pub order_ref: Option<String>,
    /// The environment variable holding the access token (Shopify), `KEY:SECRET` of a REST API
    /// key (WooCommerce) or signing secret (webhook).
    pub secret_env: Option<String>,
    /// A file (mode 0600 or stricter) holding it instead.
    pub secret_file: Option<PathBuf>,
    /// How often to resync on its own: read what the channel shows of every SKU and set what
    /// differs (`0s`: never). Default: `1h` for Shopify, never for webhooks.
    pub reconcile: Option<String>,
}

/// What a channel is, with what only that kind needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelKind {
    Shopify {
        location: String,
    },
    /// `order_ref`: the template of the Odoo reference of a WooCommerce order.
    WooCommerce {
        order_ref: String,
    },
    Webhook,
}

impl ChannelKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ChannelKind::Shopify { .. } => "shopify",
            ChannelKind::WooCommerce { .. } => "woocommerce",
            ChannelKind::Webhook => "webhook",
        }
    }
}

/// What a channel is offered of each SKU: the free stock of its warehouses, less the buffer,
/// at most the cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Buffer {
    pub units: u64,
    pub percent: u8,
}

/// A checked channel.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    pub name: String,
    pub kind: ChannelKind,
    pub warehouses: BTreeSet<String>,
    pub buffer: Buffer,
    pub cap: Option<u64>,
    pub skus: BTreeMap<String, String>,
    pub ignore: BTreeSet<String>,
    pub url: String,
    pub secret: Secret,
    /// Scheduled resyncs; `None`: only when asked.
    pub reconcile: Option<std::time::Duration>,
    /// The pool the channel shares its stock with, if any (`[[pools]]`, [`super::pool`]).
    pub pool: Option<std::sync::Arc<super::pool::Pool>>,
}

impl ChannelConfig {
    /// The channel's SKU for a Tally SKU, `None` when the channel ignores it.
    pub fn channel_sku<'a>(&'a self, sku: &'a str) -> Option<&'a str> {
        if self.ignore.contains(sku) {
            return None;
        }
        Some(self.skus.get(sku).map_or(sku, String::as_str))
    }
}

/// Checks every channel: names unique, URLs https (plain http only on loopback), a secret
/// from exactly one place.
pub fn check(files: Vec<ChannelFile>) -> Result<Vec<ChannelConfig>, ConfigError> {
    let mut names = BTreeSet::new();
    files
        .into_iter()
        .map(|f| {
            let channel = check_one(f)?;
            if !names.insert(channel.name.clone()) {
                return Err(invalid(
                    "channels",
                    format!("two channels are named {:?}", channel.name),
                ));
            }
            Ok(channel)
        })
        .collect()
}

fn check_one(f: ChannelFile) -> Result<ChannelConfig, ConfigError> {
    let name = f.name;
    let bad = |message: String| invalid("channels", format!("channel {name:?}: {message}"));
    if !valid_name(&name) {
        return Err(bad(
            "a name is 1 to 40 characters of a-z, 0-9, - and _".into()
        ));
    }
    if f.warehouses.is_empty() {
        return Err(bad(
            "warehouses must name at least one warehouse code".into()
        ));
    }
    if f.buffer_percent > 100 {
        return Err(bad("buffer_percent must be between 0 and 100".into()));
    }
    check_url(&f.url).map_err(&bad)?;
    let kind = match f.kind.as_str() {
        "shopify" => ChannelKind::Shopify {
            location: f.location.ok_or_else(|| {
                bad("a shopify channel needs location (a Shopify location's name)".into())
            })?,
        },
        "woocommerce" => ChannelKind::WooCommerce {
            order_ref: check_order_ref(f.order_ref.as_deref().unwrap_or("{number}"))
                .map_err(&bad)?,
        },
        "webhook" => ChannelKind::Webhook,
        other => {
            return Err(bad(format!(
                "kind {other:?} is not one of shopify, woocommerce, webhook"
            )));
        }
    };
    if f.order_ref.is_some() && !matches!(kind, ChannelKind::WooCommerce { .. }) {
        return Err(bad("order_ref is for woocommerce channels only".into()));
    }
    let reconcile = match (&f.reconcile, &kind) {
        (Some(text), _) => {
            Some(tally_service::parse_duration(text).map_err(&bad)?).filter(|d| !d.is_zero())
        }
        (None, ChannelKind::Shopify { .. } | ChannelKind::WooCommerce { .. }) => {
            Some(std::time::Duration::from_secs(3600))
        }
        (None, ChannelKind::Webhook) => None,
    };
    if reconcile.is_some_and(|d| d < std::time::Duration::from_secs(60)) {
        return Err(bad("reconcile must be at least 60s (or 0s: never)".into()));
    }
    let secret = match (f.secret_env, f.secret_file) {
        (Some(var), None) => std::env::var(&var)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| bad(format!("the environment variable {var} is not set")))?,
        (None, Some(path)) => read_private(&path).map_err(&bad)?,
        _ => {
            return Err(bad(
                "give its secret either as secret_env or as secret_file".into(),
            ));
        }
    };
    if matches!(kind, ChannelKind::WooCommerce { .. })
        && !secret
            .split_once(':')
            .is_some_and(|(k, s)| !k.is_empty() && !s.is_empty())
    {
        // Never the value itself: it is a credential.
        return Err(bad(
            "a woocommerce secret is KEY:SECRET (the REST API key's consumer key and secret)"
                .into(),
        ));
    }
    Ok(ChannelConfig {
        name: name.clone(),
        kind,
        warehouses: f.warehouses.into_iter().collect(),
        buffer: Buffer {
            units: f.buffer,
            percent: f.buffer_percent,
        },
        cap: f.cap,
        skus: f.skus,
        ignore: f.ignore.into_iter().collect(),
        url: f.url.trim_end_matches('/').to_owned(),
        secret: Secret::new(secret),
        reconcile,
        pool: None,
    })
}

/// A `client_order_ref` template: `{number}` and `{id}` only, at least one of them.
fn check_order_ref(template: &str) -> Result<String, String> {
    let rest = template.replace("{number}", "").replace("{id}", "");
    if rest.contains(['{', '}']) || rest.len() == template.len() || template.len() > 64 {
        return Err(format!(
            "order_ref {template:?} must hold {{number}} or {{id}} (and no other {{...}}), in at most 64 characters"
        ));
    }
    Ok(template.to_owned())
}

/// A channel's or a pool's name: 1 to 40 characters of `a-z`, `0-9`, `-` and `_`.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn check_url(url: &str) -> Result<(), String> {
    let uri: axum::http::Uri = url
        .parse()
        .map_err(|_| format!("url {url:?} is not a URL"))?;
    let host = uri.host().unwrap_or_default();
    let loopback = tally_service::is_loopback_host(host);
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if loopback => Ok(()),
        _ => Err(format!(
            "url {url:?} must be https:// (plain http only on loopback)"
        )),
    }
}

/// A secret from a file only its owner can read (the file's first line).
fn read_private(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{} is readable by others (mode {:o}): chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        ));
    }
    tally_service::read_secret_file("secret_file", path).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shopify() -> ChannelFile {
        ChannelFile {
            name: "shop".into(),
            kind: "shopify".into(),
            warehouses: vec!["WH".into()],
            url: "https://example.myshopify.com".into(),
            location: Some("Main".into()),
            secret_env: Some("PATH".into()),
            ..ChannelFile::default()
        }
    }

    #[test]
    fn a_channel_is_checked_and_its_errors_name_it() {
        let ok = check(vec![shopify()]).unwrap();
        assert_eq!(
            ok[0].kind,
            ChannelKind::Shopify {
                location: "Main".into()
            }
        );
        let err = |f: ChannelFile| check(vec![f]).unwrap_err().to_string();
        assert!(
            err(ChannelFile {
                url: "http://shop.example".into(),
                ..shopify()
            })
            .contains("https")
        );
        assert!(
            err(ChannelFile {
                kind: "ebay".into(),
                ..shopify()
            })
            .contains("\"ebay\"")
        );
        assert!(
            err(ChannelFile {
                location: None,
                ..shopify()
            })
            .contains("location")
        );
        assert!(
            err(ChannelFile {
                buffer_percent: 101,
                ..shopify()
            })
            .contains("buffer_percent")
        );
        assert!(
            err(ChannelFile {
                secret_env: None,
                ..shopify()
            })
            .contains("secret")
        );
        assert!(
            err(ChannelFile {
                secret_env: Some("TALLY_NO_SUCH_VARIABLE".into()),
                ..shopify()
            })
            .contains("TALLY_NO_SUCH_VARIABLE")
        );
        assert!(
            check(vec![shopify(), shopify()])
                .unwrap_err()
                .to_string()
                .contains("two channels")
        );
    }

    #[test]
    fn a_secret_file_readable_by_others_is_refused_and_never_shown() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "shpat_secret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let f = || ChannelFile {
            secret_env: None,
            secret_file: Some(path.clone()),
            ..shopify()
        };
        let error = check(vec![f()]).unwrap_err().to_string();
        assert!(error.contains("chmod 600"), "{error}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let ok = check(vec![f()]).unwrap();
        assert_eq!(ok[0].secret.expose(), "shpat_secret");
        assert!(!format!("{:?}", ok[0]).contains("shpat_secret"));
    }

    #[test]
    fn a_woocommerce_channel_needs_a_key_and_secret_and_a_sane_order_ref() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            path
        };
        let (good, only_key) = (file("good", "ck_1:cs_2\n"), file("bad", "ck_only\n"));
        let woo = || ChannelFile {
            kind: "woocommerce".into(),
            url: "https://shop.example".into(),
            location: None,
            secret_env: None,
            secret_file: Some(good.clone()),
            ..shopify()
        };
        let ok = check(vec![woo()]).unwrap();
        assert_eq!(
            ok[0].kind,
            ChannelKind::WooCommerce {
                order_ref: "{number}".into()
            }
        );
        assert_eq!(ok[0].kind.as_str(), "woocommerce");
        let with_ref = check(vec![ChannelFile {
            order_ref: Some("WC-{number}".into()),
            ..woo()
        }])
        .unwrap();
        assert_eq!(
            with_ref[0].kind,
            ChannelKind::WooCommerce {
                order_ref: "WC-{number}".into()
            }
        );
        let err = |f: ChannelFile| check(vec![f]).unwrap_err().to_string();
        // The key travels as HTTP Basic: https, or plain http on loopback only.
        assert!(
            err(ChannelFile {
                url: "http://shop.example".into(),
                ..woo()
            })
            .contains("https")
        );
        assert!(
            check(vec![ChannelFile {
                url: "http://127.0.0.1:8080".into(),
                ..woo()
            }])
            .is_ok()
        );
        let bad_secret = err(ChannelFile {
            secret_file: Some(only_key.clone()),
            ..woo()
        });
        assert!(bad_secret.contains("KEY:SECRET"), "{bad_secret}");
        assert!(!bad_secret.contains("ck_only"), "{bad_secret}");
        for template in ["WC", "WC-{name}", "{number}}"] {
            assert!(
                err(ChannelFile {
                    order_ref: Some(template.into()),
                    ..woo()
                })
                .contains("order_ref"),
                "{template}"
            );
        }
        assert!(
            err(ChannelFile {
                order_ref: Some("{number}".into()),
                ..shopify()
            })
            .contains("woocommerce channels only")
        );
    }

    #[test]
    fn skus_map_through_overrides_and_the_ignore_list() {
        let mut f = shopify();
        f.skus.insert("A".into(), "shop-a".into());
        f.ignore.push("B".into());
        let c = &check(vec![f]).unwrap()[0];
        assert_eq!(c.channel_sku("A"), Some("shop-a"));
        assert_eq!(c.channel_sku("B"), None);
        assert_eq!(c.channel_sku("C"), Some("C"));
    }
}

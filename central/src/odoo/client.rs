//! The JSON-RPC transport: `POST /jsonrpc`, the envelope, and turning every failure into an
//! [`OdooError`]. Knows nothing about stock; [`super::api`] builds on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tally_protocol::Secret;

use super::breaker::Breaker;
use super::error::{ErrorKind, OdooError, classify_application, classify_http};

/// Largest answer read from Odoo (a 1000-SKU availability read is well under this).
const MAX_ANSWER_BYTES: usize = 64 << 20;
/// Time added to a call's timeout per picking line it writes or validates: Odoo spends
/// ~35 ms a line on a small server (CONTRACT §4.2), far more when it is loaded.
const TIMEOUT_PER_LINE: Duration = Duration::from_millis(500);

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
    /// [`TIMEOUT_PER_LINE`] more per line (CONTRACT §4.2).
    pub call_timeout: Duration,
}

impl std::fmt::Debug for OdooConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OdooConfig")
            .field("url", &self.url)
            .field("db", &self.db)
            .field("login", &self.login)
            .field("api_key", &self.api_key)
            .finish()
    }
}

/// An authenticated connection to one Odoo database.
pub struct OdooClient {
    http: reqwest::Client,
    endpoint: String,
    db: String,
    uid: i64,
    api_key: Secret,
    /// The server's major version (17, 18, ...): product type fields differ.
    major: u32,
    next_id: AtomicU64,
    timeout: Duration,
    breaker: Arc<Breaker>,
    /// Permits for calls that change data: Odoo serialises validations, and concurrent ones
    /// only fail with serialisation errors (CONTRACT §8).
    writes: Arc<tokio::sync::Semaphore>,
    /// Odoo's clock minus central's, in microseconds, from the `Date` of Odoo's last answer
    /// (whole seconds, so within about half a second).
    clock_offset: AtomicI64,
}

impl std::fmt::Debug for OdooClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OdooClient")
            .field("endpoint", &self.endpoint)
            .field("db", &self.db)
            .field("uid", &self.uid)
            .field("major", &self.major)
            .finish()
    }
}

impl OdooClient {
    /// Detects the version and authenticates (the first call per key costs ~0.8 s on Odoo).
    pub async fn connect(config: &OdooConfig) -> Result<OdooClient, OdooError> {
        OdooClient::connect_with(config, Arc::default()).await
    }

    /// Like [`OdooClient::connect`], sharing `breaker` with earlier clients of this Odoo (a
    /// reconnection keeps the circuit's state).
    pub async fn connect_with(
        config: &OdooConfig,
        breaker: Arc<Breaker>,
    ) -> Result<OdooClient, OdooError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| OdooError::new(ErrorKind::Auth, "http-client", e.to_string()))?;
        let mut client = OdooClient {
            http,
            endpoint: format!("{}/jsonrpc", config.url.trim_end_matches('/')),
            db: config.db.clone(),
            uid: 0,
            api_key: config.api_key.clone(),
            major: 0,
            next_id: AtomicU64::new(1),
            timeout: config.call_timeout,
            breaker,
            writes: Arc::new(tokio::sync::Semaphore::new(1)),
            clock_offset: AtomicI64::new(0),
        };
        let version = client
            .call("common", "version", json!([]), config.call_timeout)
            .await?;
        client.major = version
            .as_ref()
            .and_then(|v| v["server_version_info"][0].as_u64())
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| {
                OdooError::new(
                    ErrorKind::Auth,
                    "version",
                    "common.version did not report server_version_info",
                )
            })?;
        let uid = client
            .call(
                "common",
                "authenticate",
                json!([config.db, config.login, config.api_key.expose(), {}]),
                config.call_timeout,
            )
            .await?;
        client.uid = match uid {
            Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
            _ => {
                return Err(OdooError::new(
                    ErrorKind::Auth,
                    "authenticate",
                    format!(
                        "Odoo refused login {:?} with the configured API key on database {:?}",
                        config.login, config.db
                    ),
                ));
            }
        };
        Ok(client)
    }

    pub fn major_version(&self) -> u32 {
        self.major
    }

    pub fn uid(&self) -> i64 {
        self.uid
    }

    /// `object.execute_kw(db, uid, key, model, method, args, kwargs)`. `Ok(None)` is a method
    /// that returned nothing (Odoo then sends no `result` key at all).
    pub async fn execute_kw(
        &self,
        model: &str,
        method: &str,
        args: Value,
        kwargs: Value,
    ) -> Result<Option<Value>, OdooError> {
        self.execute_kw_lines(model, method, args, kwargs, 0).await
    }

    /// [`OdooClient::execute_kw`] for a call that writes or validates `lines` picking lines:
    /// its timeout grows with them.
    pub async fn execute_kw_lines(
        &self,
        model: &str,
        method: &str,
        args: Value,
        kwargs: Value,
        lines: usize,
    ) -> Result<Option<Value>, OdooError> {
        let timeout = self.timeout
            + TIMEOUT_PER_LINE.saturating_mul(u32::try_from(lines).unwrap_or(u32::MAX));
        let params = json!([
            self.db,
            self.uid,
            self.api_key.expose(),
            model,
            method,
            args,
            kwargs
        ]);
        self.call("object", "execute_kw", params, timeout).await
    }

    /// Allows `max` calls that change data in flight at once (1 unless set).
    pub fn with_max_writes(mut self, max: usize) -> OdooClient {
        self.writes = Arc::new(tokio::sync::Semaphore::new(max.max(1)));
        self
    }

    /// [`OdooClient::execute_kw_lines`] for a call that changes data: it waits for one of the
    /// write permits first.
    pub async fn execute_write(
        &self,
        model: &str,
        method: &str,
        args: Value,
        kwargs: Value,
        lines: usize,
    ) -> Result<Option<Value>, OdooError> {
        let _permit =
            self.writes.acquire().await.map_err(|_| {
                OdooError::new(ErrorKind::Retryable, "closed", "the client is closing")
            })?;
        self.execute_kw_lines(model, method, args, kwargs, lines)
            .await
    }

    /// How far Odoo's clock is ahead of central's (microseconds; negative when behind), as
    /// of Odoo's last answer.
    pub fn clock_offset_micros(&self) -> i64 {
        self.clock_offset.load(Ordering::Relaxed)
    }

    /// The circuit breaker this client reports to.
    pub fn breaker(&self) -> &Arc<Breaker> {
        &self.breaker
    }

    async fn call(
        &self,
        service: &str,
        method: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Option<Value>, OdooError> {
        self.breaker.admit(Instant::now())?;
        let result = self.send(service, method, args, timeout).await;
        self.breaker
            .record(result.as_ref().map(|_| ()), Instant::now());
        result
    }

    async fn send(
        &self,
        service: &str,
        method: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Option<Value>, OdooError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "method": "call", "params": {"service": service, "method": method, "args": args}, "id": id});
        let sent = tally_protocol::Timestamp::now().as_micros();
        let response = self
            .http
            .post(&self.endpoint)
            .json(&body)
            .timeout(timeout)
            .send()
            .await
            .map_err(transport_error)?;
        if let Some(odoo) = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(http_date_micros)
        {
            // The Date is Odoo's clock cut to the second; the answer came in between.
            let received = tally_protocol::Timestamp::now().as_micros();
            let central = sent + (received - sent) / 2;
            self.clock_offset
                .store(odoo + 500_000 - central, Ordering::Relaxed);
        }
        let status = response.status();
        let bytes = read_limited(response).await?;
        let parsed: Result<Value, _> = serde_json::from_slice(&bytes);
        match parsed {
            Ok(envelope) if envelope.is_object() => parse_envelope(envelope),
            _ if !status.is_success() => Err(OdooError::new(
                classify_http(status.as_u16()),
                format!("http-{}", status.as_u16()),
                format!("Odoo answered HTTP {status} without a JSON-RPC body"),
            )),
            _ => Err(OdooError::new(
                ErrorKind::Retryable,
                "non-json",
                format!("Odoo answered HTTP {status} with a body that is not JSON-RPC"),
            )),
        }
    }
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, OdooError> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if out.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(OdooError::new(
                ErrorKind::Permanent,
                "too-large",
                format!("Odoo's answer exceeds {MAX_ANSWER_BYTES} bytes"),
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// An HTTP `Date` (`Sun, 06 Nov 1994 08:49:37 GMT`) in microseconds since the epoch.
fn http_date_micros(text: &str) -> Option<i64> {
    let parsed = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(text)
        .ok()?;
    Some(parsed.as_microsecond())
}

/// reqwest's errors name the URL but never the body, so they carry no secret.
fn transport_error(e: reqwest::Error) -> OdooError {
    let name = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    };
    OdooError::new(ErrorKind::Retryable, name, e.without_url().to_string())
}

/// Splits a JSON-RPC envelope into its result or its classified error.
pub fn parse_envelope(mut envelope: Value) -> Result<Option<Value>, OdooError> {
    if let Some(error) = envelope.get("error") {
        let data = &error["data"];
        let name = data["name"]
            .as_str()
            .or(error["message"].as_str())
            .unwrap_or("unknown")
            .to_owned();
        let message = data["message"].as_str().unwrap_or_default().to_owned();
        return Err(OdooError::new(
            classify_application(&name, &message),
            name,
            message,
        ));
    }
    Ok(envelope.get_mut("result").map(Value::take))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_split_into_result_nothing_or_error() {
        assert_eq!(
            parse_envelope(json!({"jsonrpc":"2.0","id":1,"result":6})),
            Ok(Some(json!(6)))
        );
        assert_eq!(
            parse_envelope(json!({"jsonrpc":"2.0","id":1,"result":false})),
            Ok(Some(json!(false)))
        );
        // A method returning None: no `result` key at all (CONTRACT §1).
        assert_eq!(parse_envelope(json!({"jsonrpc":"2.0","id":1})), Ok(None));
        let error = parse_envelope(json!({"jsonrpc":"2.0","id":1,"error":{"code":200,"message":"Odoo Server Error",
            "data":{"name":"psycopg2.errors.SerializationFailure","debug":"Traceback ...","message":"could not serialize access due to concurrent update\n","arguments":[],"context":{}}}}))
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::Retryable);
        assert_eq!(error.name, "psycopg2.errors.SerializationFailure");
        assert!(
            !error.to_string().contains("Traceback"),
            "debug tracebacks stay out of messages"
        );
    }

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            http_date_micros("Thu, 01 Jan 1970 00:00:01 GMT"),
            Some(1_000_000)
        );
        assert_eq!(http_date_micros("yesterday"), None);
    }

    #[test]
    fn the_api_key_never_shows_in_debug_output() {
        let config = OdooConfig {
            url: "https://erp.example.com".into(),
            db: "prod".into(),
            login: "edge-sync".into(),
            api_key: Secret::new("0123456789abcdef0123456789abcdef01234567"),
            call_timeout: Duration::from_secs(1),
        };
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
    }
}

//! The transports to Odoo's external API — JSON-RPC (`POST /jsonrpc`, Odoo 17 to 21) and
//! JSON-2 (`POST /json/2/<model>/<method>`, Odoo 19 and later) — and turning every failure
//! into an [`OdooError`]. A [`Call`] says what to call once; each transport encodes it its
//! own way. Knows nothing about stock; [`super::api`] builds on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tally_protocol::Secret;

use super::answers::{
    http_date_micros, malformed, parse_json2_error, parse_jsonrpc_answer, read_limited,
    transport_error,
};
use super::breaker::Breaker;
use super::error::{ErrorKind, OdooError, classify_http};
pub use super::settings::{Api, OdooConfig, Transport};

/// Time added to a call's timeout per picking line it writes or validates: Odoo spends
/// ~35 ms a line on a small server (docs/odoo.md), far more when it is loaded.
const TIMEOUT_PER_LINE: Duration = Duration::from_millis(500);
/// The first Odoo version that serves JSON-2; `auto` uses it from there on (19 deprecates
/// `/jsonrpc`, and Odoo's documentation schedules its removal for 22).
const FIRST_JSON2_MAJOR: u32 = 19;

/// One call of a model's method, said once for both transports. JSON-RPC's `execute_kw`
/// takes the record ids and [`Call::arg`]s by position and [`Call::kwarg`]s by name; JSON-2
/// takes everything by name (`ids`, each argument's parameter name, `context`).
#[derive(Debug, Clone)]
pub struct Call<'a> {
    model: &'a str,
    method: &'a str,
    ids: Option<Vec<i64>>,
    args: Vec<(&'static str, Value)>,
    kwargs: Vec<(&'static str, Value)>,
    /// Picking lines it writes or validates (its timeout grows with them).
    lines: usize,
}

impl<'a> Call<'a> {
    /// A method of the model itself (`search_read`, `create`).
    pub fn model(model: &'a str, method: &'a str) -> Call<'a> {
        Call {
            model,
            method,
            ids: None,
            args: Vec::new(),
            kwargs: Vec::new(),
            lines: 0,
        }
    }

    /// A method of the records `ids` (`write`, `button_validate`).
    pub fn records(model: &'a str, method: &'a str, ids: Vec<i64>) -> Call<'a> {
        Call {
            ids: Some(ids),
            ..Call::model(model, method)
        }
    }

    /// The next positional argument, whose parameter is called `name` in Odoo's signature.
    pub fn arg(mut self, name: &'static str, value: Value) -> Call<'a> {
        self.args.push((name, value));
        self
    }

    /// A keyword argument.
    pub fn kwarg(mut self, name: &'static str, value: Value) -> Call<'a> {
        self.kwargs.push((name, value));
        self
    }

    pub fn context(self, context: Value) -> Call<'a> {
        self.kwarg("context", context)
    }

    pub fn lines(mut self, lines: usize) -> Call<'a> {
        self.lines = lines;
        self
    }

    /// `model.method`, for errors.
    pub fn target(&self) -> String {
        format!("{}.{}", self.model, self.method)
    }

    /// `execute_kw`'s `args` and `kwargs`.
    fn jsonrpc_args(&self) -> (Value, Value) {
        let ids = self.ids.iter().map(|ids| json!(ids));
        let args: Vec<Value> = ids
            .chain(self.args.iter().map(|(_, v)| v.clone()))
            .collect();
        let kwargs: Map<String, Value> = self
            .kwargs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        (Value::Array(args), Value::Object(kwargs))
    }

    /// JSON-2's body: every argument by name.
    fn json2_body(&self) -> Value {
        let mut body = Map::new();
        if let Some(ids) = &self.ids {
            body.insert("ids".into(), json!(ids));
        }
        for (name, value) in self.args.iter().chain(&self.kwargs) {
            body.insert((*name).to_owned(), value.clone());
        }
        Value::Object(body)
    }
}

/// An authenticated connection to one Odoo database.
pub struct OdooClient {
    http: reqwest::Client,
    base: String,
    db: String,
    login: String,
    uid: i64,
    api_key: Secret,
    /// The server's major version (17, 18, 19, ...): fields differ between them.
    major: u32,
    transport: Transport,
    next_id: AtomicU64,
    timeout: Duration,
    breaker: Arc<Breaker>,
    /// Permits for calls that change data: Odoo serialises validations, and concurrent ones
    /// only fail with serialisation errors (docs/odoo.md).
    writes: Arc<tokio::sync::Semaphore>,
    /// Odoo's clock minus central's, in microseconds, from the `Date` of Odoo's last answer
    /// (whole seconds, so within about half a second).
    clock_offset: AtomicI64,
}

impl std::fmt::Debug for OdooClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OdooClient")
            .field("base", &self.base)
            .field("db", &self.db)
            .field("uid", &self.uid)
            .field("major", &self.major)
            .field("transport", &self.transport)
            .finish()
    }
}

impl OdooClient {
    /// Detects the version, picks the transport and authenticates (the first call per key
    /// costs ~0.8 s on Odoo).
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
            .user_agent(concat!("tally-central/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OdooError::new(ErrorKind::Auth, "http-client", e.to_string()))?;
        let mut client = OdooClient {
            http,
            base: config.url.trim_end_matches('/').to_owned(),
            db: config.db.clone(),
            login: config.login.clone(),
            uid: 0,
            api_key: config.api_key.clone(),
            major: 0,
            transport: Transport::JsonRpc,
            next_id: AtomicU64::new(1),
            timeout: config.call_timeout,
            breaker,
            writes: Arc::new(tokio::sync::Semaphore::new(1)),
            clock_offset: AtomicI64::new(0),
        };
        client.major = client.detect_version().await?;
        client.transport = match config.api {
            Api::JsonRpc => Transport::JsonRpc,
            Api::Json2 => Transport::Json2,
            Api::Auto if client.major >= FIRST_JSON2_MAJOR => Transport::Json2,
            Api::Auto => Transport::JsonRpc,
        };
        if client.transport == Transport::Json2 && client.major < FIRST_JSON2_MAJOR {
            return Err(OdooError::new(
                ErrorKind::Contract,
                "configuration",
                format!(
                    "api = \"json2\" needs Odoo {FIRST_JSON2_MAJOR} or later; this server is Odoo {}",
                    client.major
                ),
            ));
        }
        client.uid = match client.transport {
            Transport::JsonRpc => client.authenticate_jsonrpc().await?,
            Transport::Json2 => client.authenticate_json2().await?,
        };
        Ok(client)
    }

    /// The major version, from the web client's `/web/webclient/version_info` (no
    /// credentials; the same answer as `common.version`, on a route that is not the `/jsonrpc`
    /// endpoint Odoo 19 deprecates).
    async fn detect_version(&self) -> Result<u32, OdooError> {
        let request = self
            .http
            .post(format!("{}/web/webclient/version_info", self.base))
            .json(&json!({"jsonrpc": "2.0", "method": "call", "params": {}, "id": 0}));
        self.breaker.admit(Instant::now())?;
        let answer = match self.send(request, self.timeout).await {
            Ok((status, body)) => parse_jsonrpc_answer(status, &body),
            Err(e) => Err(e),
        };
        self.breaker
            .record(answer.as_ref().map(|_| ()), Instant::now());
        answer?
            .as_ref()
            .and_then(|v| v["server_version_info"].get(0))
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| {
                OdooError::new(
                    ErrorKind::Contract,
                    "version",
                    "/web/webclient/version_info did not report server_version_info",
                )
            })
    }

    fn refused_login(&self) -> OdooError {
        OdooError::new(
            ErrorKind::Auth,
            "authenticate",
            format!(
                "Odoo refused login {:?} with the configured API key on database {:?}",
                self.login, self.db
            ),
        )
    }

    async fn authenticate_jsonrpc(&self) -> Result<i64, OdooError> {
        let uid = self
            .jsonrpc(
                "common",
                "authenticate",
                json!([self.db, self.login, self.api_key.expose(), {}]),
                self.timeout,
            )
            .await?;
        match uid {
            Some(Value::Number(n)) => n.as_i64().ok_or_else(|| self.refused_login()),
            _ => Err(self.refused_login()),
        }
    }

    /// JSON-2 has no login: the key says who calls. The key is checked (401 otherwise) and
    /// its user's login compared with the configured one, so a key pasted from another user
    /// is caught at start rather than showing up as someone else's changes in Odoo.
    async fn authenticate_json2(&self) -> Result<i64, OdooError> {
        let context = self
            .execute(Call::model("res.users", "context_get"))
            .await
            .map_err(|e| match e.kind {
                ErrorKind::Auth => self.refused_login(),
                _ => e,
            })?;
        let uid = context
            .as_ref()
            .and_then(|c| c["uid"].as_i64())
            .ok_or_else(|| malformed("res.users.context_get"))?;
        let rows = self
            .execute(
                Call::model("res.users", "search_read")
                    .arg("domain", json!([["id", "=", uid]]))
                    .kwarg("fields", json!(["login"])),
            )
            .await?;
        let login = rows
            .as_ref()
            .and_then(|r| r[0]["login"].as_str())
            .ok_or_else(|| malformed("res.users.search_read"))?;
        if login != self.login {
            return Err(OdooError::new(
                ErrorKind::Auth,
                "authenticate",
                format!(
                    "the configured API key belongs to Odoo user {login:?}, not {:?}",
                    self.login
                ),
            ));
        }
        Ok(uid)
    }

    pub fn major_version(&self) -> u32 {
        self.major
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    pub fn uid(&self) -> i64 {
        self.uid
    }

    /// Calls a model's method. `Ok(None)` is a method that returned nothing.
    pub async fn execute(&self, call: Call<'_>) -> Result<Option<Value>, OdooError> {
        let timeout = self.timeout
            + TIMEOUT_PER_LINE.saturating_mul(u32::try_from(call.lines).unwrap_or(u32::MAX));
        self.breaker.admit(Instant::now())?;
        let result = match self.transport {
            Transport::JsonRpc => {
                let (args, kwargs) = call.jsonrpc_args();
                let params = json!([
                    self.db,
                    self.uid,
                    self.api_key.expose(),
                    call.model,
                    call.method,
                    args,
                    kwargs
                ]);
                self.send_jsonrpc("object", "execute_kw", params, timeout)
                    .await
            }
            Transport::Json2 => self.send_json2(&call, timeout).await,
        };
        self.breaker
            .record(result.as_ref().map(|_| ()), Instant::now());
        result.map_err(|e| e.during(call.target()))
    }

    /// Allows `max` calls that change data in flight at once (1 unless set).
    pub fn with_max_writes(mut self, max: usize) -> OdooClient {
        self.writes = Arc::new(tokio::sync::Semaphore::new(max.max(1)));
        self
    }

    /// [`OdooClient::execute`] for a call that changes data: it waits for one of the write
    /// permits first.
    pub async fn write(&self, call: Call<'_>) -> Result<Option<Value>, OdooError> {
        let _permit =
            self.writes.acquire().await.map_err(|_| {
                OdooError::new(ErrorKind::Retryable, "closed", "the client is closing")
            })?;
        self.execute(call).await
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

    /// A JSON-RPC call outside `execute_kw` (the `common` service), through the breaker.
    async fn jsonrpc(
        &self,
        service: &str,
        method: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Option<Value>, OdooError> {
        self.breaker.admit(Instant::now())?;
        let result = self.send_jsonrpc(service, method, args, timeout).await;
        self.breaker
            .record(result.as_ref().map(|_| ()), Instant::now());
        result
    }

    async fn send_jsonrpc(
        &self,
        service: &str,
        method: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Option<Value>, OdooError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "method": "call", "params": {"service": service, "method": method, "args": args}, "id": id});
        let request = self.http.post(format!("{}/jsonrpc", self.base)).json(&body);
        let (status, bytes) = self.send(request, timeout).await?;
        parse_jsonrpc_answer(status, &bytes)
    }

    async fn send_json2(
        &self,
        call: &Call<'_>,
        timeout: Duration,
    ) -> Result<Option<Value>, OdooError> {
        let request = self
            .http
            .post(format!(
                "{}/json/2/{}/{}",
                self.base, call.model, call.method
            ))
            .bearer_auth(self.api_key.expose())
            .header("X-Odoo-Database", &self.db)
            .json(&call.json2_body());
        let (status, bytes) = self.send(request, timeout).await?;
        let parsed = serde_json::from_slice::<Value>(&bytes);
        match parsed {
            Ok(value) if status.is_success() => Ok(Some(value).filter(|v| !v.is_null())),
            Ok(error) if error.get("name").is_some() => {
                Err(parse_json2_error(status.as_u16(), &error))
            }
            _ => Err(OdooError::new(
                classify_http(status.as_u16()),
                format!("http-{}", status.as_u16()),
                format!("Odoo answered HTTP {status} without a JSON-2 body"),
            )),
        }
    }

    /// Sends a request and reads its whole answer (bounded), noting Odoo's clock.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), OdooError> {
        let sent = tally_protocol::Timestamp::now().as_micros();
        let response = request
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
        Ok((status, read_limited(response).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_key_never_shows_in_debug_output() {
        let config = OdooConfig {
            url: "https://erp.example.com".into(),
            db: "prod".into(),
            login: "edge-sync".into(),
            api_key: Secret::new("0123456789abcdef0123456789abcdef01234567"),
            call_timeout: Duration::from_secs(1),
            api: Api::Auto,
        };
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
    }
}

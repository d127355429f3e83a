//! The HTTP side: `POST /jsonrpc` with Odoo's envelope, `POST /json/2/<model>/<method>` (19),
//! the fault switch and the latency
//! model around each call, and a small admin API under `/sim/` (loopback only, like the
//! simulator itself) for driving faults from outside a Rust test.
//!
//! Calls serialise on one gate, as concurrent validations on the same products serialise
//! in PostgreSQL: the per-call latency is slept before taking the gate (network and Python
//! overhead run in parallel), the per-line latency while holding it (database work).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::api::{self, ServerInfo};
use super::clock::{self, Clock};
use super::faults::{Fault, FaultKind, Faults};
use super::rpc::{self, Call, OdooError};
use super::store::Db;
use super::{Latency, Version};

/// State shared by the HTTP handlers and the [`super::OdooSim`] handle.
#[derive(Debug)]
pub struct Shared {
    pub info: Mutex<ServerInfo>,
    pub db: Mutex<Db>,
    /// Serialises calls (see the module documentation).
    pub gate: tokio::sync::Mutex<()>,
    pub faults: Mutex<Faults>,
    pub calls: Mutex<BTreeMap<(String, String), u64>>,
    /// Calls that change data, in flight now and at most so far (arrival to answer).
    pub writes: Mutex<(u64, u64)>,
    pub clock: Clock,
    pub latency: Mutex<Latency>,
    /// Flips to `true` when the simulator stops, releasing hung handlers.
    pub stopping: watch::Receiver<bool>,
}

impl Shared {
    pub fn version(&self) -> Version {
        self.info.lock().expect("info lock").version
    }
}

/// The router: `/jsonrpc` and the `/sim/` admin routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/jsonrpc", post(jsonrpc))
        .route("/json/2/{model}/{method}", post(json2))
        .route(
            "/sim/faults",
            post(arm_fault).get(list_faults).delete(clear_faults),
        )
        .route("/sim/calls", get(list_calls))
        .route("/web/webclient/version_info", post(version_info))
        .layer(DefaultBodyLimit::max(256 * 1024 * 1024))
        .layer(axum::middleware::map_response_with_state(
            shared.clone(),
            server_date,
        ))
        .with_state(shared)
}

/// Answers carry the simulator's clock in `Date`, as Odoo's carry its server's.
async fn server_date(State(shared): State<Arc<Shared>>, mut response: Response) -> Response {
    if let Ok(date) = clock::format_http_date(shared.clock.now()).parse() {
        response.headers_mut().insert(header::DATE, date);
    }
    response
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// What werkzeug sends when the request dies before the JSON-RPC layer: an HTTP 500
/// with an HTML body (docs/odoo.md#concurrency).
fn html_500() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was unable to complete your request. Either the server is overloaded or there is an error in the application.</p>\n",
    )
        .into_response()
}

/// A response whose body fails at once: the client gets no usable answer and the
/// connection is closed.
fn dropped_connection() -> Response {
    let failing = futures_util::stream::iter([Err::<Bytes, std::io::Error>(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "simulated lost response",
    ))]);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(failing))
        .unwrap_or_else(|_| html_500())
}

/// Waits until the simulator stops (a "hang": the client's timeout fires first).
async fn hang(shared: &Shared) -> Response {
    let mut stopping = shared.stopping.clone();
    let _ = stopping.wait_for(|stop| *stop).await;
    html_500()
}

async fn jsonrpc(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let version = shared.version();
    let call = match Call::parse(&body) {
        Ok(call) => call,
        Err((id, error)) => {
            return json_response(StatusCode::OK, &rpc::failure_for(&id, &error, version));
        }
    };
    let body = match run(&shared, &call).await {
        Ok(Ok(outcome)) => rpc::success(&call.id, outcome.result),
        Ok(Err(error)) => rpc::failure_for(&call.id, &error, version),
        Err(response) => return response,
    };
    json_response(StatusCode::OK, &body)
}

/// `POST /json/2/<model>/<method>` (Odoo 19): the API key as a bearer token, the database in
/// `X-Odoo-Database`, every argument by name; the result as plain JSON, errors as
/// `{name, message, arguments, context, debug}` with the status Odoo gives the exception.
async fn json2(
    State(shared): State<Arc<Shared>>,
    Path((model, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let info = shared.info.lock().expect("info lock").clone();
    if info.version.major() < 19 {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned());
    let Some(credential) = token
        .as_ref()
        .and_then(|token| info.credentials.iter().find(|c| c.secrets.contains(token)))
    else {
        return json2_failure(
            StatusCode::UNAUTHORIZED,
            "werkzeug.exceptions.Unauthorized",
            "Invalid apikey",
        );
    };
    let db = headers
        .get("x-odoo-database")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(&info.db_name);
    if db != info.db_name {
        return json2_failure(
            StatusCode::NOT_FOUND,
            "werkzeug.exceptions.NotFound",
            &format!("database {db:?} not found"),
        );
    }
    let Ok(Value::Object(mut kwargs)) = serde_json::from_slice::<Value>(&body) else {
        return json2_failure(
            StatusCode::BAD_REQUEST,
            "werkzeug.exceptions.BadRequest",
            "the body must be a JSON object",
        );
    };
    let positional: Vec<Value> = kwargs.remove("ids").into_iter().collect();
    let call = Call {
        id: Value::Null,
        service: "object".into(),
        method: "execute_kw".into(),
        args: vec![
            json!(info.db_name),
            json!(credential.uid),
            json!(token.unwrap_or_default()),
            json!(model),
            json!(method),
            Value::Array(positional),
            Value::Object(kwargs),
        ],
    };
    match run(&shared, &call).await {
        Ok(Ok(outcome)) => json_response(StatusCode::OK, &outcome.result.unwrap_or(Value::Null)),
        // The controller looks the model up itself, before any ORM error could say so.
        Ok(Err(OdooError::UserError(message)))
            if message.starts_with("Object ") && message.ends_with("doesn't exist") =>
        {
            json2_failure(
                StatusCode::NOT_FOUND,
                "werkzeug.exceptions.NotFound",
                &format!("the model '{model}' does not exist"),
            )
        }
        Ok(Err(error)) => {
            let (status, name) = match &error {
                OdooError::UserError(_) | OdooError::ValidationError(_) => {
                    (StatusCode::UNPROCESSABLE_ENTITY, error.name())
                }
                OdooError::AccessDenied | OdooError::AccessError(_) => {
                    (StatusCode::FORBIDDEN, error.name())
                }
                OdooError::MissingError(_) => (StatusCode::NOT_FOUND, error.name()),
                // The controller turns an unknown method into 404 and arguments that do not
                // fit the signature into 422.
                OdooError::AttributeError(_) => {
                    (StatusCode::NOT_FOUND, "werkzeug.exceptions.NotFound")
                }
                OdooError::TypeError(_) => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "werkzeug.exceptions.UnprocessableEntity",
                ),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, error.name()),
            };
            json2_failure(status, name, &error.message())
        }
        Err(response) => response,
    }
}

fn json2_failure(status: StatusCode, name: &str, message: &str) -> Response {
    let class = name.rsplit('.').next().unwrap_or(name);
    json_response(
        status,
        &json!({
            "name": name,
            "message": message,
            "arguments": [message],
            "context": {},
            "debug": format!("Traceback (most recent call last):\n  File \"tally-odoo-sim\" (a simulator, not Odoo)\n{class}: {message}\n"),
        }),
    )
}

/// Runs one call as both routes do: counted, with its fault and latency, serialised on the
/// gate. `Err` is a response that is not an answer (a simulated crash, hang or lost answer).
async fn run(shared: &Shared, call: &Call) -> Result<Result<api::Outcome, OdooError>, Response> {
    let (model, method) = call.target();
    *shared
        .calls
        .lock()
        .expect("calls lock")
        .entry((model.clone(), method.clone()))
        .or_insert(0) += 1;
    let _write = (call.service == "object" && WRITE_METHODS.contains(&method.as_str()))
        .then(|| WriteInFlight::start(shared));
    let fault = shared
        .faults
        .lock()
        .expect("faults lock")
        .take(&call.service, &model, &method);
    let latency = *shared.latency.lock().expect("latency lock");
    if !latency.per_call.is_zero() {
        tokio::time::sleep(latency.per_call).await;
    }
    if let Some(kind) = fault
        && !kind.applies()
    {
        return match kind {
            FaultKind::SerializationFailure => Ok(Err(OdooError::SerializationFailure)),
            FaultKind::OperationalError => Ok(Err(OdooError::too_many_clients())),
            FaultKind::PoolError => Ok(Err(OdooError::PoolError)),
            FaultKind::Http500 => Err(html_500()),
            _ => Err(hang(shared).await),
        };
    }
    let outcome = {
        let _gate = shared.gate.lock().await;
        let outcome = {
            let info = shared.info.lock().expect("info lock").clone();
            let now = shared.clock.now();
            let mut db = shared.db.lock().expect("db lock");
            api::handle(&mut db, &info, now, call)
        };
        let lines = outcome.as_ref().map_or(0, |o| o.lines);
        if lines > 0 && !latency.per_line.is_zero() {
            tokio::time::sleep(latency.per_line * lines as u32).await;
        }
        outcome
    };
    match fault {
        Some(FaultKind::AppliedThenHttp500) => Err(html_500()),
        Some(FaultKind::AppliedThenDrop) => Err(dropped_connection()),
        Some(FaultKind::AppliedThenHang) => Err(hang(shared).await),
        _ => Ok(outcome),
    }
}

/// Methods that change data, for counting concurrent writes.
const WRITE_METHODS: [&str; 10] = [
    "create",
    "write",
    "unlink",
    "button_validate",
    "action_cancel",
    "action_confirm",
    "action_assign",
    "action_apply_inventory",
    "process",
    "process_cancel_backorder",
];

/// A write call in flight, from its arrival until its answer is built (or the handler is
/// dropped).
struct WriteInFlight<'a>(&'a Shared);

impl<'a> WriteInFlight<'a> {
    fn start(shared: &'a Shared) -> WriteInFlight<'a> {
        let mut writes = shared.writes.lock().expect("writes lock");
        writes.0 += 1;
        writes.1 = writes.1.max(writes.0);
        WriteInFlight(shared)
    }
}

impl Drop for WriteInFlight<'_> {
    fn drop(&mut self) {
        self.0.writes.lock().expect("writes lock").0 -= 1;
    }
}

/// The web client's version route (some clients probe it).
async fn version_info(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("id").cloned())
        .unwrap_or(Value::Null);
    let reported = shared.info.lock().expect("info lock").reported_version;
    json_response(
        StatusCode::OK,
        &rpc::success(&id, Some(api::version(reported))),
    )
}

async fn arm_fault(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Fault>(&body) {
        Ok(fault) => {
            shared
                .faults
                .lock()
                .expect("faults lock")
                .arm(fault.clone());
            json_response(StatusCode::OK, &json!({"armed": fault}))
        }
        Err(error) => json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": format!("not a fault: {error}"),
                    "kinds": FaultKind::ALL}),
        ),
    }
}

async fn list_faults(State(shared): State<Arc<Shared>>) -> Response {
    let pending = shared.faults.lock().expect("faults lock").pending();
    json_response(StatusCode::OK, &json!({"pending": pending}))
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> Response {
    shared.faults.lock().expect("faults lock").clear();
    json_response(StatusCode::OK, &json!({"pending": []}))
}

async fn list_calls(State(shared): State<Arc<Shared>>) -> Response {
    let calls: BTreeMap<String, u64> = shared
        .calls
        .lock()
        .expect("calls lock")
        .iter()
        .map(|((model, method), n)| (format!("{model}.{method}"), *n))
        .collect();
    json_response(StatusCode::OK, &json!(calls))
}

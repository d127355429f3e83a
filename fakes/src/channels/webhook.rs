//! A webhook receiver as a user would write one: it checks `X-Tally-Signature` (HMAC-SHA256
//! of the timestamp, a `.` and the body, keyed with the shared secret) in constant time,
//! refuses a timestamp more than five minutes off, and keeps the latest quantity per SKU.
//! It can be told to fail the next requests with `503`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Debug, Default)]
struct Inner {
    secret: Vec<u8>,
    quantities: BTreeMap<String, i64>,
    accepted: u64,
    refused_signatures: u64,
    fail_next: u64,
    failed: u64,
}

#[derive(Debug, Clone)]
pub struct WebhookReceiver {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

fn check(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(timestamp), Some(signature)) =
        (header("x-tally-timestamp"), header("x-tally-signature"))
    else {
        return false;
    };
    let Ok(sent) = timestamp.parse::<i64>() else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if (now - sent).abs() > 300 {
        return false;
    }
    let Some(hex_sig) = signature.strip_prefix("v1=") else {
        return false;
    };
    let Ok(given) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key size");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&given).is_ok()
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut r = inner.lock().unwrap_or_else(|e| e.into_inner());
    if r.fail_next > 0 {
        r.fail_next -= 1;
        r.failed += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if !check(&r.secret, &headers, &body) {
        r.refused_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    for item in value["items"].as_array().into_iter().flatten() {
        if let (Some(sku), Some(q)) = (item["sku"].as_str(), item["quantity"].as_i64()) {
            r.quantities.insert(sku.to_owned(), q);
        }
    }
    r.accepted += 1;
    StatusCode::NO_CONTENT
}

impl WebhookReceiver {
    pub async fn start(secret: &str) -> anyhow::Result<WebhookReceiver> {
        let inner = Arc::new(Mutex::new(Inner {
            secret: secret.as_bytes().to_vec(),
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(WebhookReceiver { addr, inner })
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest quantity received for `sku`.
    pub fn quantity(&self, sku: &str) -> Option<i64> {
        self.lock().quantities.get(sku).copied()
    }

    /// (accepted, refused for a bad signature, failed on purpose).
    pub fn counts(&self) -> (u64, u64, u64) {
        let r = self.lock();
        (r.accepted, r.refused_signatures, r.failed)
    }

    /// Answers the next `n` requests with `503`.
    pub fn fail_next(&self, n: u64) {
        self.lock().fail_next = n;
    }
}

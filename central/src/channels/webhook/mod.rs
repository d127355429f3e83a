//! The webhook channel: the changed offers as one JSON POST, signed.
//!
//! Body: `{"channel": NAME, "delivery": ID, "items": [{"sku": SKU, "quantity": N}, ...]}`.
//! Headers:
//! - `X-Tally-Timestamp`: seconds since the epoch when the request was signed;
//! - `X-Tally-Signature`: `v1=` and the lowercase hex HMAC-SHA256, keyed with the channel's
//!   secret, of the timestamp, a `.`, and the exact body bytes;
//! - `X-Tally-Delivery`: the same delivery id as the body, stable across retries of the same
//!   items, for a receiver to drop repeats.
//!
//! A receiver checks the signature in constant time and refuses a timestamp more than five
//! minutes away from its clock (a replayed request). `2xx` accepts every item; `408`, `429`
//! and `5xx` are retried with backoff; any other answer pauses the channel with an alert.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tally_protocol::Secret;

use super::{ChannelConfig, ChannelError, Entry, Outcome};

/// Items per POST.
pub const BATCH: usize = 500;

pub const TIMESTAMP_HEADER: &str = "X-Tally-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Tally-Signature";
pub const DELIVERY_HEADER: &str = "X-Tally-Delivery";

#[derive(Debug)]
pub struct Webhook {
    http: reqwest::Client,
    name: String,
    url: String,
    secret: Secret,
    /// Tally SKU → the receiver's SKU.
    config: ChannelConfig,
}

/// `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any size");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` is the signature of `body` at `timestamp` (constant-time comparison).
pub fn verify(secret: &[u8], timestamp: u64, body: &[u8], header: &str) -> bool {
    use subtle::ConstantTimeEq;
    let expected = signature(secret, timestamp, body);
    expected.len() == header.len() && bool::from(expected.as_bytes().ct_eq(header.as_bytes()))
}

impl Webhook {
    pub fn new(config: &ChannelConfig) -> Webhook {
        Webhook {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("a plain HTTP client"),
            name: config.name.clone(),
            url: config.url.clone(),
            secret: config.secret.clone(),
            config: config.clone(),
        }
    }

    pub async fn push(&mut self, batch: &[Entry]) -> Result<Outcome, ChannelError> {
        let items: Vec<serde_json::Value> = batch
            .iter()
            .map(|e| {
                let sku = self.config.channel_sku(&e.sku).unwrap_or(&e.sku);
                serde_json::json!({"sku": sku, "quantity": e.offer})
            })
            .collect();
        let delivery = hex::encode(
            &Sha256::digest(serde_json::to_vec(&(&self.name, &items)).expect("plain JSON"))[..16],
        );
        let body = serde_json::to_vec(&serde_json::json!({
            "channel": self.name,
            "delivery": delivery,
            "items": items,
        }))
        .expect("plain JSON");
        let timestamp = jiff::Timestamp::now().as_second().max(0) as u64;
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(
                SIGNATURE_HEADER,
                signature(self.secret.expose().as_bytes(), timestamp, &body),
            )
            .header(DELIVERY_HEADER, &delivery)
            .body(body)
            .send()
            .await
            .map_err(|e| ChannelError::transport(e, &format!("webhook {}", self.name)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(ChannelError::http(
                status.as_u16(),
                &format!("webhook {}", self.name),
            ));
        }
        Ok(Outcome {
            done: batch.to_vec(),
            calls: 1,
            ..Outcome::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        let sig = signature(b"secret", 1_700_000_000, br#"{"a":1}"#);
        assert!(sig.starts_with("v1=") && sig.len() == 3 + 64);
        assert!(verify(b"secret", 1_700_000_000, br#"{"a":1}"#, &sig));
        assert!(!verify(b"secret", 1_700_000_001, br#"{"a":1}"#, &sig));
        assert!(!verify(b"secret", 1_700_000_000, br#"{"a":2}"#, &sig));
        assert!(!verify(b"other", 1_700_000_000, br#"{"a":1}"#, &sig));
    }
}

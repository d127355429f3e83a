//! Reading Odoo's answers: the body within a size limit, JSON-RPC envelopes and JSON-2 error
//! bodies turned into [`OdooError`]s, transport failures classified, the `Date` header. Pure
//! but for reading the body; the transports in [`super::client`] call these.

use serde_json::Value;

use super::error::{ErrorKind, OdooError, classify_application, classify_http};

/// Largest answer read from Odoo (a 1000-SKU availability read is well under this).
const MAX_ANSWER_BYTES: usize = 64 << 20;

pub(super) fn malformed(what: &str) -> OdooError {
    OdooError::new(
        ErrorKind::Contract,
        "malformed-answer",
        format!("Odoo's answer to {what} has an unexpected shape"),
    )
}

pub(super) async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, OdooError> {
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
pub(super) fn http_date_micros(text: &str) -> Option<i64> {
    let parsed = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(text)
        .ok()?;
    Some(parsed.as_microsecond())
}

/// reqwest's errors name the URL but never the body, so they carry no secret.
pub(super) fn transport_error(e: reqwest::Error) -> OdooError {
    let name = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    };
    OdooError::new(ErrorKind::Retryable, name, e.without_url().to_string())
}

/// A JSON-RPC answer: its envelope's result or error, or what its status says.
pub(super) fn parse_jsonrpc_answer(
    status: reqwest::StatusCode,
    bytes: &[u8],
) -> Result<Option<Value>, OdooError> {
    match serde_json::from_slice::<Value>(bytes) {
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

/// Turns a JSON-2 error answer (`{"name", "message", "arguments", "context", "debug"}`
/// with an HTTP error status) into an [`OdooError`]; the `debug` traceback is left out.
pub fn parse_json2_error(status: u16, error: &Value) -> OdooError {
    let name = error["name"].as_str().unwrap_or("unknown").to_owned();
    let message = error["message"].as_str().unwrap_or_default().to_owned();
    let kind = match status {
        401 => ErrorKind::Auth,
        _ => classify_application(&name, &message),
    };
    OdooError::new(kind, name, message)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
        // A method returning None: no `result` key at all (docs/odoo.md#transports).
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
}

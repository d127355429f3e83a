//! What can go wrong talking to Odoo, sorted into the three kinds the merge engine acts on.
//!
//! The classification is a pure function of what came back (`classify_*`), unit-tested against
//! the error envelopes recorded from real Odoo 17 and 18 servers (`shared/odoo/CONTRACT.md` §1, §8).

use std::fmt;

/// How the caller should react.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Nothing was applied (or the outcome is unknown and must be looked up by key); try again
    /// later: timeouts, connection failures, HTTP 5xx, non-JSON bodies, serialisation failures,
    /// an overloaded database.
    Retryable,
    /// Odoo refused this data (unknown product, missing lot, a constraint): retrying the same
    /// request cannot help; the events behind it are parked.
    Permanent,
    /// Credentials, rights or configuration are wrong (bad key, missing access right, unknown
    /// database): nothing for this Odoo can succeed until a person fixes it.
    Auth,
}

/// An error from Odoo or from the way to it. Never holds the API key or a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OdooError {
    pub kind: ErrorKind,
    /// Odoo's exception name (`error.data.name`), or a name for a transport failure such as
    /// `timeout`, `connect` or `http-502`.
    pub name: String,
    /// Odoo's message, or a description of the transport failure.
    pub message: String,
}

impl OdooError {
    pub fn new(kind: ErrorKind, name: impl Into<String>, message: impl Into<String>) -> OdooError {
        OdooError {
            kind,
            name: name.into(),
            message: message.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Retryable
    }

    /// The picking-name uniqueness violation: the record exists already (a retried create).
    pub fn is_duplicate_name(&self) -> bool {
        self.name == "odoo.exceptions.ValidationError"
            && self
                .message
                .contains("Reference must be unique per company")
    }
}

impl fmt::Display for OdooError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message.trim_end(), self.name)
    }
}

impl std::error::Error for OdooError {}

/// Classifies Odoo's `error.data.name` and `message`.
pub fn classify_application(name: &str, message: &str) -> ErrorKind {
    match name {
        "psycopg2.errors.SerializationFailure" | "psycopg2.pool.PoolError" => ErrorKind::Retryable,
        // An unknown database is configuration; a full server is load.
        "psycopg2.OperationalError" if message.contains("does not exist") => ErrorKind::Auth,
        "psycopg2.OperationalError" => ErrorKind::Retryable,
        "odoo.exceptions.AccessDenied" | "odoo.exceptions.AccessError" => ErrorKind::Auth,
        // A model or method that does not exist is a deployment mismatch, not bad data.
        "builtins.AttributeError" => ErrorKind::Auth,
        "odoo.exceptions.UserError"
            if message.contains("doesn't exist") && message.starts_with("Object ") =>
        {
            ErrorKind::Auth
        }
        // A wrong uid surfaces as MissingError on res.users.
        "odoo.exceptions.MissingError" if message.contains("res.users(") => ErrorKind::Auth,
        _ => ErrorKind::Permanent,
    }
}

/// Classifies an HTTP answer that is not a JSON-RPC body.
pub fn classify_http(status: u16) -> ErrorKind {
    match status {
        401 | 403 | 404 => ErrorKind::Auth,
        400..=499 => ErrorKind::Permanent,
        _ => ErrorKind::Retryable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every error name the recorded servers produced, with the kind the merge engine needs.
    #[test]
    fn recorded_error_names_are_classified() {
        let cases = [
            (
                "odoo.exceptions.AccessDenied",
                "Access Denied",
                ErrorKind::Auth,
            ),
            (
                "odoo.exceptions.AccessError",
                "You are not allowed to access 'System Parameter'",
                ErrorKind::Auth,
            ),
            (
                "odoo.exceptions.AccessError",
                "Private methods (such as _action_done) cannot be called remotely.",
                ErrorKind::Auth,
            ),
            (
                "odoo.exceptions.MissingError",
                "Record does not exist or has been deleted.\n(Record: res.users(999,), User: 999)",
                ErrorKind::Auth,
            ),
            (
                "odoo.exceptions.MissingError",
                "Record does not exist or has been deleted.\n(Record: stock.picking(99999,), User: 6)",
                ErrorKind::Permanent,
            ),
            (
                "psycopg2.OperationalError",
                "connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  database \"no_such_db\" does not exist\n",
                ErrorKind::Auth,
            ),
            (
                "psycopg2.OperationalError",
                "connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  sorry, too many clients already\n",
                ErrorKind::Retryable,
            ),
            (
                "psycopg2.errors.SerializationFailure",
                "could not serialize access due to concurrent update\n",
                ErrorKind::Retryable,
            ),
            (
                "psycopg2.pool.PoolError",
                "The Connection Pool Is Full",
                ErrorKind::Retryable,
            ),
            (
                "odoo.exceptions.UserError",
                "Object no.such.model doesn't exist",
                ErrorKind::Auth,
            ),
            (
                "builtins.AttributeError",
                "The method 'no_such_method' does not exist on the model 'product.product'",
                ErrorKind::Auth,
            ),
            (
                "odoo.exceptions.UserError",
                "You need to supply a Lot/Serial number for products [SKU-005] Edge product 5.",
                ErrorKind::Permanent,
            ),
            (
                "odoo.exceptions.UserError",
                "You can’t validate an empty transfer.",
                ErrorKind::Permanent,
            ),
            (
                "odoo.exceptions.ValidationError",
                "The operation cannot be completed: Reference must be unique per company!",
                ErrorKind::Permanent,
            ),
            (
                "builtins.ValueError",
                "could not convert string to float: 'ten'",
                ErrorKind::Permanent,
            ),
        ];
        for (name, message, kind) in cases {
            assert_eq!(
                classify_application(name, message),
                kind,
                "{name}: {message}"
            );
        }
    }

    #[test]
    fn http_statuses_are_classified() {
        assert_eq!(classify_http(500), ErrorKind::Retryable);
        assert_eq!(classify_http(502), ErrorKind::Retryable);
        assert_eq!(classify_http(503), ErrorKind::Retryable);
        assert_eq!(classify_http(404), ErrorKind::Auth);
        assert_eq!(classify_http(413), ErrorKind::Permanent);
    }

    #[test]
    fn duplicate_names_are_recognised() {
        let e = OdooError::new(
            ErrorKind::Permanent,
            "odoo.exceptions.ValidationError",
            "The operation cannot be completed: Reference must be unique per company!",
        );
        assert!(e.is_duplicate_name());
    }
}

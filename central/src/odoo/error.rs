//! What can go wrong talking to Odoo, sorted into the four kinds the merge engine acts on.
//!
//! The classification is a pure function of what came back (`classify_*`), unit-tested against
//! the error answers recorded from real Odoo 17, 18 and 19 servers (docs/odoo.md, "Errors").

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
    /// Credentials or configuration are wrong (bad key, unknown database): nothing for this
    /// Odoo can succeed until a person fixes it.
    Auth,
    /// Tally and this Odoo disagree about the API itself — an unknown field, model or method,
    /// a missing access right, an answer of the wrong shape. It says nothing about the events
    /// being merged: merging pauses with an alert, and the events wait, never parked.
    Contract,
}

impl ErrorKind {
    /// Whether only a person can end it (merging pauses and raises an alert).
    pub fn needs_person(self) -> bool {
        matches!(self, ErrorKind::Auth | ErrorKind::Contract)
    }
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
    /// The call that failed (`stock.picking.create`), when it was a model's method.
    pub call: Option<String>,
}

impl OdooError {
    pub fn new(kind: ErrorKind, name: impl Into<String>, message: impl Into<String>) -> OdooError {
        OdooError {
            kind,
            name: name.into(),
            message: message.into(),
            call: None,
        }
    }

    /// Names the call that failed.
    pub fn during(mut self, call: String) -> OdooError {
        self.call.get_or_insert(call);
        self
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
        if let Some(call) = &self.call {
            write!(f, "{call}: ")?;
        }
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
        "odoo.exceptions.AccessDenied" => ErrorKind::Auth,
        // A missing right, a private method: the integration user or Tally must change.
        "odoo.exceptions.AccessError" => ErrorKind::Contract,
        // A model, method, field or argument that does not exist is a deployment mismatch
        // (Odoo 19 removed `stock.move.name`), not bad data.
        "builtins.AttributeError" | "builtins.TypeError" | "builtins.KeyError" => {
            ErrorKind::Contract
        }
        "builtins.ValueError" if message.starts_with("Invalid field") => ErrorKind::Contract,
        // JSON-2's own refusals: no such model or method (404), arguments that do not fit
        // the method (422), no or a wrong key (401).
        "werkzeug.exceptions.NotFound"
        | "werkzeug.exceptions.UnprocessableEntity"
        | "werkzeug.exceptions.BadRequest" => ErrorKind::Contract,
        "werkzeug.exceptions.Unauthorized" => ErrorKind::Auth,
        "odoo.exceptions.UserError"
            if message.contains("doesn't exist") && message.starts_with("Object ") =>
        {
            ErrorKind::Contract
        }
        // A wrong uid surfaces as MissingError on res.users.
        "odoo.exceptions.MissingError" if message.contains("res.users(") => ErrorKind::Auth,
        _ => ErrorKind::Permanent,
    }
}

/// Classifies an HTTP answer that is not a JSON-RPC body.
pub fn classify_http(status: u16) -> ErrorKind {
    match status {
        401 | 403 => ErrorKind::Auth,
        // No such route: `/jsonrpc` on an Odoo that removed it, or a URL that is not Odoo.
        404 => ErrorKind::Contract,
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
                ErrorKind::Contract,
            ),
            (
                "odoo.exceptions.AccessError",
                "Private methods (such as _action_done) cannot be called remotely.",
                ErrorKind::Contract,
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
                ErrorKind::Contract,
            ),
            (
                "builtins.AttributeError",
                "The method 'no_such_method' does not exist on the model 'product.product'",
                ErrorKind::Contract,
            ),
            // Odoo 19 removed the field Odoo 17 and 18 require.
            (
                "builtins.ValueError",
                "Invalid field 'name' on model 'stock.move'",
                ErrorKind::Contract,
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
        assert_eq!(classify_http(401), ErrorKind::Auth);
        assert_eq!(classify_http(404), ErrorKind::Contract);
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

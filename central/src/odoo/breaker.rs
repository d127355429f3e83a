//! The circuit breaker in front of Odoo: the shared [`crate::breaker`], with Odoo's errors
//! classified (only a retryable error says Odoo is down).

pub use crate::breaker::{Breaker, CircuitOpen, CircuitState, Classify};

use super::error::{ErrorKind, OdooError};

impl Classify for OdooError {
    fn is_outage(&self) -> bool {
        self.kind == ErrorKind::Retryable
    }
}

impl From<CircuitOpen> for OdooError {
    fn from(open: CircuitOpen) -> OdooError {
        OdooError::new(
            ErrorKind::Retryable,
            "circuit-open",
            format!(
                "Odoo failed {} times in a row; calls resume in {} s",
                open.failures,
                open.retry_in.as_secs() + 1
            ),
        )
    }
}

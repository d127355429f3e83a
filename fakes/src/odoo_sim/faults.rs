//! The fault switch: make the next N calls (optionally only those to a model/method) fail
//! the ways a real Odoo fails under load (docs/odoo.md#concurrency), so that retry and exactly-once
//! logic can be tested. Every kind but the `Applied*` ones fails *before* the call touches
//! the database, as Odoo's do (a serialization failure rolls the transaction back; a pool
//! error or an HTTP 500 from `_serve_db` happens before any work).

use serde::{Deserialize, Serialize};

/// How a faulted call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// JSON error `psycopg2.errors.SerializationFailure`; nothing applied.
    SerializationFailure,
    /// JSON error `psycopg2.OperationalError` ("too many clients"); nothing applied.
    OperationalError,
    /// JSON error `psycopg2.pool.PoolError`; nothing applied.
    PoolError,
    /// HTTP 500 with a non-JSON (HTML) body; nothing applied.
    Http500,
    /// No response at all until the client gives up (a timeout); nothing applied.
    Hang,
    /// The call is applied and committed, then the answer is an HTTP 500 (HTML).
    AppliedThenHttp500,
    /// The call is applied and committed, then the connection drops mid-response.
    AppliedThenDrop,
    /// The call is applied and committed, then no response comes (the client times out).
    AppliedThenHang,
}

impl FaultKind {
    /// Whether the call runs (and commits) before the fault shows.
    pub fn applies(self) -> bool {
        matches!(
            self,
            FaultKind::AppliedThenHttp500 | FaultKind::AppliedThenDrop | FaultKind::AppliedThenHang
        )
    }

    /// Every kind, for tests that go through them all.
    pub const ALL: [FaultKind; 8] = [
        FaultKind::SerializationFailure,
        FaultKind::OperationalError,
        FaultKind::PoolError,
        FaultKind::Http500,
        FaultKind::Hang,
        FaultKind::AppliedThenHttp500,
        FaultKind::AppliedThenDrop,
        FaultKind::AppliedThenHang,
    ];
}

/// One armed fault: its kind, how many more calls it hits, and which calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub kind: FaultKind,
    /// How many matching calls still fail (at least 1).
    #[serde(default = "one")]
    pub times: u32,
    /// Only `execute_kw` calls on this model (`None`: any call, `common` ones included).
    #[serde(default)]
    pub model: Option<String>,
    /// Only this method (`execute_kw`'s method, or the `common` method).
    #[serde(default)]
    pub method: Option<String>,
    /// How many matching calls pass untouched before the fault hits.
    #[serde(default)]
    pub skip: u32,
}

fn one() -> u32 {
    1
}

impl Fault {
    /// The next call fails with `kind`.
    pub fn new(kind: FaultKind) -> Fault {
        Fault {
            kind,
            times: 1,
            model: None,
            method: None,
            skip: 0,
        }
    }

    /// The next `times` matching calls fail.
    pub fn times(mut self, times: u32) -> Fault {
        self.times = times.max(1);
        self
    }

    /// Only calls of `method` on `model` (e.g. `"stock.picking"`, `"button_validate"`).
    pub fn on(mut self, model: &str, method: &str) -> Fault {
        self.model = Some(model.to_owned());
        self.method = Some(method.to_owned());
        self
    }

    /// Lets the first `calls` matching calls through.
    pub fn after(mut self, calls: u32) -> Fault {
        self.skip = calls;
        self
    }

    /// Only calls on `model`, any method.
    pub fn on_model(mut self, model: &str) -> Fault {
        self.model = Some(model.to_owned());
        self
    }

    fn matches(&self, service: &str, model: &str, method: &str) -> bool {
        let model_ok = match &self.model {
            Some(wanted) => service == "object" && wanted == model,
            None => true,
        };
        model_ok && self.method.as_deref().is_none_or(|m| m == method)
    }
}

/// Armed faults, consumed first-armed first.
#[derive(Debug, Default)]
pub struct Faults {
    armed: Vec<Fault>,
}

impl Faults {
    pub fn arm(&mut self, fault: Fault) {
        self.armed.push(fault);
    }

    pub fn clear(&mut self) {
        self.armed.clear();
    }

    /// Faults still armed.
    pub fn pending(&self) -> Vec<Fault> {
        self.armed.clone()
    }

    /// The fault this call gets, if any (consuming one of its `times`).
    pub fn take(&mut self, service: &str, model: &str, method: &str) -> Option<FaultKind> {
        let index = self
            .armed
            .iter()
            .position(|f| f.matches(service, model, method))?;
        let fault = &mut self.armed[index];
        if fault.skip > 0 {
            fault.skip -= 1;
            return None;
        }
        let kind = fault.kind;
        fault.times -= 1;
        if fault.times == 0 {
            self.armed.remove(index);
        }
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_match_and_run_out() {
        let mut faults = Faults::default();
        faults.arm(
            Fault::new(FaultKind::PoolError)
                .times(2)
                .on("stock.picking", "button_validate"),
        );
        assert_eq!(faults.take("object", "stock.picking", "create"), None);
        assert_eq!(faults.take("common", "common", "button_validate"), None);
        assert_eq!(
            faults.take("object", "stock.picking", "button_validate"),
            Some(FaultKind::PoolError)
        );
        assert_eq!(
            faults.take("object", "stock.picking", "button_validate"),
            Some(FaultKind::PoolError)
        );
        assert_eq!(
            faults.take("object", "stock.picking", "button_validate"),
            None
        );
        faults.arm(
            Fault::new(FaultKind::Http500)
                .on_model("stock.move")
                .after(1),
        );
        assert_eq!(faults.take("object", "stock.move", "write"), None);
        assert_eq!(
            faults.take("object", "stock.move", "write"),
            Some(FaultKind::Http500)
        );
        faults.arm(Fault::new(FaultKind::Hang));
        assert_eq!(
            faults.take("common", "common", "version"),
            Some(FaultKind::Hang)
        );
    }

    #[test]
    fn kinds_have_stable_names() {
        let fault: Fault = serde_json::from_str(r#"{"kind":"applied_then_drop"}"#).unwrap();
        assert_eq!(fault, Fault::new(FaultKind::AppliedThenDrop));
        assert!(FaultKind::AppliedThenDrop.applies());
        assert!(!FaultKind::SerializationFailure.applies());
    }
}

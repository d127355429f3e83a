//! The JSON-RPC envelope of Odoo's `/jsonrpc` route (docs/odoo.md#transports): requests
//! `{"jsonrpc":"2.0","method":"call","params":{"service","method","args"},"id"}`, successes
//! `{"jsonrpc":"2.0","id","result"}` with **no `result` key** when the method returned `None`,
//! and application errors as HTTP 200 with `error.code` 200 and the exception's qualified
//! class name in `error.data.name`.

use super::Version;
use serde_json::{Value, json};

/// A parsed JSON-RPC call.
#[derive(Debug, Clone)]
pub struct Call {
    /// The request's `id`, echoed back whatever its type.
    pub id: Value,
    /// `common`, `object` or `db`.
    pub service: String,
    /// `version`, `authenticate`, `execute_kw`, …
    pub method: String,
    pub args: Vec<Value>,
}

impl Call {
    /// Parses a request body. A body that is not a JSON-RPC call is an error carrying the
    /// id when one could be read.
    pub fn parse(body: &[u8]) -> Result<Call, (Value, OdooError)> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            (
                Value::Null,
                OdooError::BadRequest(format!("Invalid JSON data: {e}")),
            )
        })?;
        let id = value.get("id").cloned().unwrap_or(Value::Null);
        let params = value.get("params").cloned().unwrap_or(Value::Null);
        let text = |key: &str| params.get(key).and_then(Value::as_str).map(str::to_owned);
        let (Some(service), Some(method)) = (text("service"), text("method")) else {
            return Err((
                id,
                OdooError::BadRequest("params.service and params.method are required".into()),
            ));
        };
        let args = match params.get("args") {
            Some(Value::Array(args)) => args.clone(),
            None | Some(Value::Null) => Vec::new(),
            Some(other) => vec![other.clone()],
        };
        Ok(Call {
            id,
            service,
            method,
            args,
        })
    }

    /// For `object.execute_kw`: the model and method called, for fault matching and the
    /// per-(model, method) call counts. Other calls count as (service, method).
    pub fn target(&self) -> (String, String) {
        if self.service == "object" && matches!(self.method.as_str(), "execute_kw" | "execute") {
            let text = |i: usize| {
                self.args
                    .get(i)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            (text(3), text(4))
        } else {
            (self.service.clone(), self.method.clone())
        }
    }
}

/// An exception the simulated server raises, by the class the real one raises.
#[derive(Debug, Clone, PartialEq)]
pub enum OdooError {
    /// `odoo.exceptions.AccessDenied`: bad password or API key.
    AccessDenied,
    /// `odoo.exceptions.AccessError`: ACLs, private methods.
    AccessError(String),
    /// `odoo.exceptions.MissingError`: a record that does not exist.
    MissingError(String),
    /// `odoo.exceptions.UserError`: business refusals.
    UserError(String),
    /// `odoo.exceptions.ValidationError`: constraints.
    ValidationError(String),
    /// `builtins.AttributeError`: unknown method.
    AttributeError(String),
    /// `builtins.ValueError`: bad values.
    ValueError(String),
    /// `builtins.TypeError`: bad arguments.
    TypeError(String),
    /// `psycopg2.OperationalError`: unknown database, too many clients.
    OperationalError(String),
    /// `psycopg2.errors.SerializationFailure`: a concurrent update won after 5 tries.
    SerializationFailure,
    /// `psycopg2.pool.PoolError`: the server's connection pool is exhausted.
    PoolError,
    /// A request that is not JSON-RPC at all.
    BadRequest(String),
}

impl OdooError {
    /// The qualified class name, `error.data.name`.
    pub fn name(&self) -> &'static str {
        match self {
            OdooError::AccessDenied => "odoo.exceptions.AccessDenied",
            OdooError::AccessError(_) => "odoo.exceptions.AccessError",
            OdooError::MissingError(_) => "odoo.exceptions.MissingError",
            OdooError::UserError(_) => "odoo.exceptions.UserError",
            OdooError::ValidationError(_) => "odoo.exceptions.ValidationError",
            OdooError::AttributeError(_) => "builtins.AttributeError",
            OdooError::ValueError(_) => "builtins.ValueError",
            OdooError::TypeError(_) => "builtins.TypeError",
            OdooError::OperationalError(_) => "psycopg2.OperationalError",
            OdooError::SerializationFailure => "psycopg2.errors.SerializationFailure",
            OdooError::PoolError => "psycopg2.pool.PoolError",
            OdooError::BadRequest(_) => "werkzeug.exceptions.BadRequest",
        }
    }

    /// The exception's message, `error.data.message`.
    pub fn message(&self) -> String {
        match self {
            OdooError::AccessDenied => "Access Denied".to_owned(),
            OdooError::SerializationFailure => {
                "could not serialize access due to concurrent update\n".to_owned()
            }
            OdooError::PoolError => "The Connection Pool Is Full".to_owned(),
            OdooError::AccessError(m)
            | OdooError::MissingError(m)
            | OdooError::UserError(m)
            | OdooError::ValidationError(m)
            | OdooError::AttributeError(m)
            | OdooError::ValueError(m)
            | OdooError::TypeError(m)
            | OdooError::OperationalError(m)
            | OdooError::BadRequest(m) => m.clone(),
        }
    }

    /// The `error` member of the response (`code` 200 on 17 and 18, 0 on 19).
    pub fn to_json_for(&self, version: Version) -> Value {
        let mut error = self.to_json();
        if version == Version::V19 {
            error["code"] = json!(0);
        }
        error
    }

    /// The `error` member of the response, as 17 and 18 send it.
    pub fn to_json(&self) -> Value {
        let name = self.name();
        let message = self.message();
        // Python prints builtins without their module.
        let class = name.strip_prefix("builtins.").unwrap_or(name);
        let debug = format!(
            "Traceback (most recent call last):\n  File \"tally-odoo-sim\" (a simulator, not Odoo)\n{class}: {message}\n"
        );
        json!({
            "code": 200,
            "message": "Odoo Server Error",
            "data": {
                "name": name,
                "debug": debug,
                "message": message,
                "arguments": [message],
                "context": {},
            }
        })
    }

    /// "Record does not exist or has been deleted." for `model(ids)` as seen by `uid`.
    pub fn missing(model: &str, ids: &[i64], uid: i64) -> OdooError {
        let ids: String = ids.iter().map(|id| format!("{id},")).collect();
        OdooError::MissingError(format!(
            "Record does not exist or has been deleted.\n(Record: {model}({ids}), User: {uid})"
        ))
    }

    /// The "unknown database" error of `common.authenticate` and `execute_kw`.
    pub fn unknown_db(db: &str) -> OdooError {
        OdooError::OperationalError(format!(
            "connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  database \"{db}\" does not exist\n"
        ))
    }

    /// The overload error 18 returned when PostgreSQL ran out of connections
    /// (docs/odoo.md#concurrency).
    pub fn too_many_clients() -> OdooError {
        let line = "connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  sorry, too many clients already\n";
        OdooError::OperationalError(format!("{line}{line}"))
    }
}

/// A success response. `None` leaves the `result` key out, as Odoo does for methods that
/// return `None`.
pub fn success(id: &Value, result: Option<Value>) -> Value {
    let mut response = json!({"jsonrpc": "2.0", "id": id});
    if let Some(result) = result {
        response["result"] = result;
    }
    response
}

/// An error response (sent with HTTP 200), as 17 and 18 send it.
pub fn failure(id: &Value, error: &OdooError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": error.to_json()})
}

/// An error response as `version` sends it.
pub fn failure_for(id: &Value, error: &OdooError, version: Version) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": error.to_json_for(version)})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_results_have_no_result_key() {
        let response = success(&json!(7), None);
        assert_eq!(response, json!({"jsonrpc": "2.0", "id": 7}));
        assert_eq!(
            success(&json!(7), Some(json!(false)))["result"],
            json!(false)
        );
    }

    #[test]
    fn errors_carry_the_class_name_and_message() {
        let response = failure(&json!(1), &OdooError::AccessDenied);
        assert_eq!(response["error"]["code"], 200);
        assert_eq!(response["error"]["message"], "Odoo Server Error");
        assert_eq!(
            response["error"]["data"]["name"],
            "odoo.exceptions.AccessDenied"
        );
        assert_eq!(
            response["error"]["data"]["arguments"],
            json!(["Access Denied"])
        );
        let debug = failure(&json!(1), &OdooError::AttributeError("x".into()));
        assert!(
            debug["error"]["data"]["debug"]
                .as_str()
                .unwrap()
                .ends_with("\nAttributeError: x\n")
        );
    }

    #[test]
    fn execute_kw_targets_model_and_method() {
        let body = br#"{"jsonrpc":"2.0","method":"call","id":3,"params":{"service":"object",
            "method":"execute_kw","args":["db",6,"k","stock.picking","button_validate",[[1]],{}]}}"#;
        let call = Call::parse(body).unwrap();
        assert_eq!(
            call.target(),
            ("stock.picking".to_owned(), "button_validate".to_owned())
        );
        assert!(Call::parse(b"{").is_err());
    }
}

//! What one JSON-RPC call does: the `common` service (`version`, `authenticate`, `login`),
//! the `db` service (`list`), and `object.execute_kw` — credentials, then the model, then
//! the method — routed to the generic ORM methods or a model's own behaviour. Each call
//! runs in one transaction: an error rolls back everything the call did.

use serde_json::{Map, Value, json};

use super::orm::{self, Env, ids_of};
use super::rpc::{Call, OdooError};
use super::store::{Db, Id};
use super::{Version, clock, domain::Domain, inventory, sale, schema, stock};

/// What the database holds about who may call: logins, passwords and API keys.
#[derive(Debug, Clone)]
pub struct Credential {
    pub uid: Id,
    pub login: String,
    /// Passwords and API keys both work in the password slot (docs/odoo.md#logging-in).
    pub secrets: Vec<String>,
}

/// The settings a call depends on.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub version: Version,
    /// What `common.version` and the web client's version route say.
    pub reported_version: Version,
    pub db_name: String,
    pub credentials: Vec<Credential>,
}

/// The result of a call: `None` means the method returned `None` (no `result` key), and how
/// many move lines it handled (for the latency model).
#[derive(Debug)]
pub struct Outcome {
    pub result: Option<Value>,
    pub lines: usize,
}

/// Runs one call against the database at time `now`.
pub fn handle(db: &mut Db, info: &ServerInfo, now: i64, call: &Call) -> Result<Outcome, OdooError> {
    match (call.service.as_str(), call.method.as_str()) {
        ("common", "version") => Ok(done(version(info.reported_version))),
        ("common", "about") => Ok(done(json!("See http://openerp.com"))),
        ("common", "authenticate") | ("common", "login") => {
            let db_name = text_arg(&call.args, 0);
            if db_name != info.db_name {
                return Err(OdooError::unknown_db(&db_name));
            }
            let login = text_arg(&call.args, 1);
            let secret = text_arg(&call.args, 2);
            let uid = info
                .credentials
                .iter()
                .find(|c| c.login == login && c.secrets.contains(&secret))
                .map(|c| c.uid);
            Ok(done(uid.map_or(Value::Bool(false), Value::from)))
        }
        ("db", "list") => Ok(done(json!([info.db_name]))),
        ("db", "server_version") => Ok(done(json!(format!("{}.0", info.version.major())))),
        ("object", "execute_kw") | ("object", "execute") => execute_kw(db, info, now, call),
        (service, method) => Err(OdooError::AttributeError(format!(
            "The method '{method}' does not exist on the service '{service}'"
        ))),
    }
}

fn done(result: Value) -> Outcome {
    Outcome {
        result: Some(result),
        lines: 0,
    }
}

/// `common.version()` as 17.0, 18.0 and 19.0 answer it.
pub fn version(version: Version) -> Value {
    let major = version.major();
    json!({
        "server_version": format!("{major}.0"),
        "server_version_info": [major, 0, 0, "final", 0, ""],
        "server_serie": format!("{major}.0"),
        "protocol_version": 1,
    })
}

fn text_arg(args: &[Value], index: usize) -> String {
    match args.get(index) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// `execute_kw(db, uid, secret, model, method, args, kwargs)`.
fn execute_kw(db: &mut Db, info: &ServerInfo, now: i64, call: &Call) -> Result<Outcome, OdooError> {
    let db_name = text_arg(&call.args, 0);
    if db_name != info.db_name {
        return Err(OdooError::unknown_db(&db_name));
    }
    let uid = call.args.get(1).and_then(Value::as_i64).unwrap_or(0);
    let secret = text_arg(&call.args, 2);
    if !db.exists("res.users", uid) {
        return Err(OdooError::missing("res.users", &[uid], uid));
    }
    let authorised = info
        .credentials
        .iter()
        .any(|c| c.uid == uid && c.secrets.contains(&secret));
    if !authorised {
        return Err(OdooError::AccessDenied);
    }
    let model = text_arg(&call.args, 3);
    let method = text_arg(&call.args, 4);
    // `execute(db, uid, secret, model, method, *args)` spreads the arguments;
    // `execute_kw(…, args, kwargs)` passes a list and a dict.
    let (args, mut kwargs) = if call.method == "execute" {
        (call.args.iter().skip(5).cloned().collect(), Map::new())
    } else {
        let args = match call.args.get(5) {
            Some(Value::Array(args)) => args.clone(),
            None | Some(Value::Null) => Vec::new(),
            Some(other) => vec![other.clone()],
        };
        let kwargs = call
            .args
            .get(6)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        (args, kwargs)
    };
    let ctx = match kwargs.remove("context") {
        Some(Value::Object(ctx)) => ctx,
        _ => Map::new(),
    };
    let mut env = Env {
        db,
        version: info.version,
        uid,
        ctx,
        now,
        lines: 0,
    };
    env.db.stamp = Some(clock::format_datetime(now));
    db_transaction(&mut env, |env| {
        dispatch(
            env,
            &model,
            &method,
            Args {
                pos: args,
                kw: kwargs,
            },
        )
    })
}

/// Runs `work` as one transaction: commit on success, roll back on error.
fn db_transaction(
    env: &mut Env,
    work: impl FnOnce(&mut Env) -> Result<Option<Value>, OdooError>,
) -> Result<Outcome, OdooError> {
    env.db.commit();
    match work(env) {
        Ok(result) => {
            env.db.commit();
            Ok(Outcome {
                result,
                lines: env.lines,
            })
        }
        Err(error) => {
            env.db.rollback();
            Err(error)
        }
    }
}

/// Positional and keyword arguments of a model method.
struct Args {
    pos: Vec<Value>,
    kw: Map<String, Value>,
}

impl Args {
    /// Argument `index` or keyword `name`.
    fn get(&self, index: usize, name: &str) -> Option<&Value> {
        self.kw
            .get(name)
            .or_else(|| self.pos.get(index))
            .filter(|v| !v.is_null())
    }

    /// The record ids (first positional argument of record methods).
    fn ids(&self) -> Vec<Id> {
        self.pos.first().map(ids_of).unwrap_or_default()
    }

    fn strings(&self, index: usize, name: &str) -> Vec<String> {
        match self.get(index, name) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    }

    fn usize(&self, index: usize, name: &str) -> Option<usize> {
        self.get(index, name)
            .and_then(Value::as_u64)
            .map(|n| n as usize)
    }

    fn text(&self, index: usize, name: &str) -> Option<String> {
        self.get(index, name)
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// `create`'s values: one dict or a list of dicts.
    fn vals_list(&self) -> Result<(Vec<Map<String, Value>>, bool), OdooError> {
        match self.get(0, "vals_list").or_else(|| self.get(0, "vals")) {
            Some(Value::Object(vals)) => Ok((vec![vals.clone()], false)),
            Some(Value::Array(items)) => {
                let list = items
                    .iter()
                    .map(|v| {
                        v.as_object().cloned().ok_or_else(|| {
                            OdooError::TypeError(format!("create() values must be dicts, got {v}"))
                        })
                    })
                    .collect::<Result<_, _>>()?;
                Ok((list, true))
            }
            _ => Err(OdooError::TypeError(
                "create() missing 1 required positional argument: 'vals_list'".into(),
            )),
        }
    }

    /// `write`'s values (second positional argument).
    fn vals(&self) -> Result<Map<String, Value>, OdooError> {
        self.get(1, "vals")
            .and_then(Value::as_object)
            .cloned()
            .ok_or_else(|| {
                OdooError::TypeError(
                    "write() missing 1 required positional argument: 'vals'".into(),
                )
            })
    }
}

/// Routes a model method.
fn dispatch(
    env: &mut Env,
    model: &str,
    method: &str,
    args: Args,
) -> Result<Option<Value>, OdooError> {
    if method.starts_with('_') {
        return Err(OdooError::AccessError(match env.version {
            Version::V17 => {
                format!("Private methods (such as {method}) cannot be called remotely.")
            }
            Version::V18 | Version::V19 => {
                format!("Private methods (such as '{model}.{method}') cannot be called remotely.")
            }
        }));
    }
    let Some(model) = schema::static_name(model) else {
        return Err(orm::unknown_model(model));
    };
    check_access(env, model, method)?;
    if let Some(result) = model_method(env, model, method, &args)? {
        return Ok(result);
    }
    generic_method(env, model, method, &args)
}

/// The access rules the integration user runs into (docs/odoo.md#rights).
fn check_access(env: &Env, model: &str, method: &str) -> Result<(), OdooError> {
    let admin = env.uid == sale::ADMIN_UID;
    if model == "ir.config_parameter" && !admin {
        return Err(OdooError::AccessError(
            "You are not allowed to access 'System Parameter' (ir.config_parameter) records.\n\nThis operation is allowed for the following groups:\n\t- Administration/Settings\n\nContact your administrator to request access if necessary.".into(),
        ));
    }
    if model == "sale.order" && !admin {
        match method {
            "create" => return Err(sale::access_error("create")),
            "write" | "action_confirm" | "action_cancel" => {
                return Err(sale::access_error("modify"));
            }
            "unlink" => return Err(sale::access_error("delete")),
            _ => {}
        }
    }
    Ok(())
}

/// Methods with model-specific behaviour. `Ok(None)` means "not special here".
fn model_method(
    env: &mut Env,
    model: &'static str,
    method: &str,
    args: &Args,
) -> Result<Option<Option<Value>>, OdooError> {
    let ids = args.ids();
    let yes = Ok(Some(Some(Value::Bool(true))));
    match (model, method) {
        ("stock.picking", "button_validate") => {
            let options = stock::ValidateOptions::from_context(env);
            Ok(Some(Some(stock::button_validate(env, &ids, &options)?)))
        }
        ("stock.picking", "action_confirm") => {
            stock::confirm_pickings(env, &ids)?;
            yes
        }
        ("stock.picking", "action_assign") => {
            stock::assign_pickings(env, &ids)?;
            yes
        }
        ("stock.picking", "action_cancel") => {
            stock::cancel_pickings(env, &ids)?;
            yes
        }
        ("stock.picking", "unlink") => {
            stock::unlink_pickings(env, &ids)?;
            yes
        }
        ("stock.picking", "write") => {
            stock::write_pickings(env, &ids, &args.vals()?)?;
            yes
        }
        ("stock.move", "write") => {
            stock::write_moves(env, &ids, &args.vals()?)?;
            yes
        }
        ("stock.move.line", "write") => {
            stock::write_lines(env, &ids, &args.vals()?)?;
            yes
        }
        ("stock.quant", "create") => {
            let (list, many) = args.vals_list()?;
            let ids = inventory::create_quants(env, &list)?;
            Ok(Some(Some(created(ids, many))))
        }
        ("stock.quant", "write") => {
            inventory::write_quants(env, &ids, &args.vals()?)?;
            yes
        }
        ("stock.quant", "action_apply_inventory") => {
            Ok(Some(inventory::apply_inventory(env, &ids)?))
        }
        ("stock.quant", "action_clear_inventory_quantity") => {
            inventory::clear_inventory(env, &ids)?;
            Ok(Some(None))
        }
        ("stock.inventory.conflict", "action_keep_difference") => {
            inventory::resolve_conflict(env, &ids, false)?;
            Ok(Some(None))
        }
        ("stock.inventory.conflict", "action_keep_counted_quantity") => {
            inventory::resolve_conflict(env, &ids, true)?;
            Ok(Some(None))
        }
        ("stock.backorder.confirmation", "process") => Ok(Some(Some(
            stock::process_backorder_wizard(env, &ids, false)?,
        ))),
        ("stock.backorder.confirmation", "process_cancel_backorder") => Ok(Some(Some(
            stock::process_backorder_wizard(env, &ids, true)?,
        ))),
        ("res.users", "context_get") => Ok(Some(Some(json!({
            "lang": "en_US",
            "tz": false,
            "uid": env.uid,
        })))),
        ("sale.order", "action_confirm") => {
            sale::confirm_orders(env, &ids)?;
            yes
        }
        ("res.users.apikeys.description", "make_key") => Err(OdooError::UserError(
            "This method can only be accessed over HTTP".into(),
        )),
        ("res.users", "write") => {
            let vals = args.vals()?;
            env.check_exist("res.users", &ids)?;
            let own_fields = vals
                .keys()
                .all(|k| matches!(k.as_str(), "email" | "name" | "signature" | "lang" | "tz"));
            if env.uid != sale::ADMIN_UID && (ids.iter().any(|id| *id != env.uid) || !own_fields) {
                return Err(OdooError::AccessError(
                    "You are not allowed to modify 'User' (res.users) records.\n\nThis operation is allowed for the following groups:\n\t- Administration/Access Rights\n\nContact your administrator to request access if necessary.".into(),
                ));
            }
            generic_write(env, model, &ids, &vals)?;
            yes
        }
        (_, "create") => {
            let (list, many) = args.vals_list()?;
            let mut ids = Vec::new();
            for vals in &list {
                ids.push(create_one(env, model, vals)?);
            }
            Ok(Some(Some(created(ids, many))))
        }
        _ => Ok(None),
    }
}

/// `create` returns an id for one dict and a list for a list.
fn created(ids: Vec<Id>, many: bool) -> Value {
    if many {
        Value::from(ids)
    } else {
        ids.first()
            .map_or(Value::Bool(false), |id| Value::from(*id))
    }
}

fn create_one(
    env: &mut Env,
    model: &'static str,
    vals: &Map<String, Value>,
) -> Result<Id, OdooError> {
    match model {
        "stock.picking" => stock::create_picking(env, vals),
        "stock.move" => stock::create_move(env, vals, None),
        "stock.move.line" => stock::create_line(env, vals, None, None),
        "stock.location" => stock::create_location(env, vals),
        "stock.lot" => stock::create_lot(env, vals),
        "product.product" => stock::create_product(env, vals),
        "sale.order" => sale::create_order(env, vals),
        "res.partner" => sale::create_partner(env, vals),
        "stock.backorder.confirmation" => stock::create_backorder_wizard(env, vals),
        "stock.inventory.conflict" => inventory::create_conflict_wizard(env, vals),
        _ => {
            let rec = env.to_record(model, vals)?;
            env.insert_checked(model, rec)
        }
    }
}

fn generic_write(
    env: &mut Env,
    model: &'static str,
    ids: &[Id],
    vals: &Map<String, Value>,
) -> Result<(), OdooError> {
    env.check_exist(model, ids)?;
    let rec = env.to_record(model, vals)?;
    for id in ids {
        env.db.update(model, *id, |stored| {
            for (field, value) in &rec {
                stored.insert(field, value.clone());
            }
        });
    }
    Ok(())
}

/// The ORM methods every model has.
fn generic_method(
    env: &mut Env,
    model: &'static str,
    method: &str,
    args: &Args,
) -> Result<Option<Value>, OdooError> {
    let domain_json = || args.get(0, "domain").cloned().unwrap_or(json!([]));
    let result = match method {
        "search_read" => {
            let domain = Domain::parse(&domain_json())?;
            let order = args.text(4, "order");
            let ids = env.search(
                model,
                &domain,
                order.as_deref(),
                args.usize(2, "offset").unwrap_or(0),
                args.usize(3, "limit"),
            )?;
            Value::from(env.read(model, &ids, &args.strings(1, "fields"))?)
        }
        "search" => {
            let domain = Domain::parse(&domain_json())?;
            let order = args.text(3, "order");
            Value::from(env.search(
                model,
                &domain,
                order.as_deref(),
                args.usize(1, "offset").unwrap_or(0),
                args.usize(2, "limit"),
            )?)
        }
        "search_count" => {
            let domain = Domain::parse(&domain_json())?;
            let ids = env.search(model, &domain, None, 0, args.usize(1, "limit"))?;
            Value::from(ids.len())
        }
        "read" => Value::from(env.read(model, &args.ids(), &args.strings(1, "fields"))?),
        "web_search_read" => {
            let domain = Domain::parse(&domain_json())?;
            let spec = args
                .get(1, "specification")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let all = env.search(model, &domain, args.text(4, "order").as_deref(), 0, None)?;
            let offset = args.usize(2, "offset").unwrap_or(0);
            let page: Vec<Id> = all
                .iter()
                .copied()
                .skip(offset)
                .take(args.usize(3, "limit").unwrap_or(usize::MAX))
                .collect();
            let records: Vec<Value> = page
                .iter()
                .map(|id| env.web_read(model, *id, &spec))
                .collect();
            json!({"length": all.len(), "records": records})
        }
        "web_read" => {
            let spec = args
                .get(1, "specification")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let ids: Vec<Id> = args
                .ids()
                .into_iter()
                .filter(|id| env.db.exists(model, *id))
                .collect();
            Value::from(
                ids.iter()
                    .map(|id| env.web_read(model, *id, &spec))
                    .collect::<Vec<_>>(),
            )
        }
        "read_group" => {
            let domain_value = domain_json();
            let domain = Domain::parse(&domain_value)?;
            let lazy = args.get(6, "lazy").is_none_or(orm::truthy);
            Value::from(env.read_group(
                model,
                &domain,
                &domain_value,
                &args.strings(1, "fields"),
                &args.strings(2, "groupby"),
                lazy,
            )?)
        }
        "fields_get" => env.fields_get(
            model,
            &args.strings(0, "allfields"),
            &args.strings(1, "attributes"),
        ),
        "write" => {
            generic_write(env, model, &args.ids(), &args.vals()?)?;
            Value::Bool(true)
        }
        "unlink" => {
            let ids = args.ids();
            env.check_exist(model, &ids)?;
            for id in ids {
                env.db.remove(model, id);
            }
            Value::Bool(true)
        }
        "exists" => Value::from(
            args.ids()
                .into_iter()
                .filter(|id| env.db.exists(model, *id))
                .collect::<Vec<_>>(),
        ),
        "name_get" | "read_display_name" => Value::from(
            args.ids()
                .into_iter()
                .filter(|id| env.db.exists(model, *id))
                .map(|id| json!([id, env.display_name(model, id)]))
                .collect::<Vec<_>>(),
        ),
        _ => {
            return Err(OdooError::AttributeError(match env.version {
                Version::V17 => {
                    format!("The method '{method}' does not exist on the model '{model}'")
                }
                Version::V18 | Version::V19 => {
                    format!("The method '{model}.{method}' does not exist")
                }
            }));
        }
    };
    Ok(Some(result))
}

//! The simulator's database: one table of records per Odoo model, an index of many2one
//! values (so that one2many fields and `field = id` searches do not scan whole tables), and
//! an undo journal so that a call that fails leaves nothing behind, as Odoo's transaction
//! per RPC call does.
//!
//! Records are maps from field name to a stored value in "storage form": many2one fields
//! hold the related id as a JSON number (or `null`), many2many fields an array of ids, text
//! and selection fields a string or `null`. One2many and computed fields are never stored;
//! [`super::orm`] derives them. Ids come from counters that, like PostgreSQL sequences, are
//! not rolled back.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use super::schema;

/// A record id, as Odoo's integer primary keys.
pub type Id = i64;

/// One stored record: field name → stored value. The id is the table's key, not a field.
pub type Rec = BTreeMap<&'static str, Value>;

/// What undoes one change of the current transaction.
#[derive(Debug, Clone)]
enum Undo {
    /// A record was inserted: remove it.
    Inserted(&'static str, Id),
    /// A record was replaced or removed: put this old version back.
    Restore(&'static str, Id, Rec),
}

/// The rows of one model, and the next id it hands out.
#[derive(Debug, Clone, Default)]
pub struct Table {
    rows: BTreeMap<Id, Rec>,
    next_id: Id,
}

/// All tables, the many2one index and the journal of the open transaction.
#[derive(Debug, Default)]
pub struct Db {
    tables: HashMap<&'static str, Table>,
    /// (model, many2one field, parent id) → ids of the records pointing at that parent.
    children: HashMap<(&'static str, &'static str, Id), BTreeSet<Id>>,
    journal: Vec<Undo>,
    /// Named counters (picking sequences, sale order numbers); never rolled back.
    counters: HashMap<String, u64>,
    /// The current call's `now()` as Odoo writes datetimes: stamped as `write_date` on every
    /// record of a model that has one when it is created or changed (Odoo's ORM does the same).
    pub stamp: Option<String>,
}

impl Db {
    pub fn new() -> Db {
        Db::default()
    }

    fn table(&mut self, model: &'static str) -> &mut Table {
        self.tables.entry(model).or_insert_with(|| Table {
            rows: BTreeMap::new(),
            next_id: 1,
        })
    }

    /// Makes the next id handed out for `model` at least `id` (seeding mirrors the ids of a
    /// fresh Odoo database, which has gaps).
    pub fn reserve_ids_below(&mut self, model: &'static str, id: Id) {
        let table = self.table(model);
        table.next_id = table.next_id.max(id);
    }

    /// Inserts a new record and returns its id.
    pub fn insert(&mut self, model: &'static str, mut rec: Rec) -> Id {
        self.stamp_write_date(model, &mut rec);
        let table = self.table(model);
        let id = table.next_id;
        table.next_id += 1;
        self.index(model, id, &rec, true);
        self.table(model).rows.insert(id, rec);
        self.journal.push(Undo::Inserted(model, id));
        id
    }

    pub fn get(&self, model: &str, id: Id) -> Option<&Rec> {
        self.tables.get(model).and_then(|t| t.rows.get(&id))
    }

    pub fn exists(&self, model: &str, id: Id) -> bool {
        self.get(model, id).is_some()
    }

    /// A stored field, or `Value::Null` when the record or the field is absent.
    pub fn field(&self, model: &str, id: Id, field: &str) -> Value {
        self.get(model, id)
            .and_then(|rec| rec.get(field))
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Every id of `model`, ascending.
    pub fn ids(&self, model: &str) -> Vec<Id> {
        self.tables
            .get(model)
            .map(|t| t.rows.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Replaces stored fields of a record (a no-op on a missing record).
    pub fn update(&mut self, model: &'static str, id: Id, change: impl FnOnce(&mut Rec)) {
        let Some(old) = self.get(model, id).cloned() else {
            return;
        };
        let mut new = old.clone();
        change(&mut new);
        if new == old {
            return;
        }
        self.stamp_write_date(model, &mut new);
        self.index(model, id, &old, false);
        self.index(model, id, &new, true);
        self.table(model).rows.insert(id, new);
        self.journal.push(Undo::Restore(model, id, old));
    }

    fn stamp_write_date(&self, model: &str, rec: &mut Rec) {
        if let Some(now) = &self.stamp
            && schema::model(model).is_some_and(|m| m.fields.iter().any(|f| f.name == "write_date"))
        {
            rec.insert("write_date", Value::from(now.clone()));
        }
    }

    /// Sets one stored field.
    pub fn set(&mut self, model: &'static str, id: Id, field: &'static str, value: Value) {
        self.update(model, id, |rec| {
            rec.insert(field, value);
        });
    }

    pub fn remove(&mut self, model: &'static str, id: Id) {
        let Some(old) = self.table(model).rows.remove(&id) else {
            return;
        };
        self.index(model, id, &old, false);
        self.journal.push(Undo::Restore(model, id, old));
    }

    /// Ids of `model` records whose many2one `field` points at `parent`, ascending.
    pub fn children(&self, model: &'static str, field: &'static str, parent: Id) -> Vec<Id> {
        self.children
            .get(&(model, field, parent))
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default()
    }

    fn index(&mut self, model: &'static str, id: Id, rec: &Rec, add: bool) {
        for (field, value) in rec {
            let Some(parent) = value.as_i64() else {
                continue;
            };
            if !schema::is_many2one(model, field) {
                continue;
            }
            let key = (model, *field, parent);
            if add {
                self.children.entry(key).or_default().insert(id);
            } else if let Some(set) = self.children.get_mut(&key) {
                set.remove(&id);
                if set.is_empty() {
                    self.children.remove(&key);
                }
            }
        }
    }

    /// Forgets the journal: what was done so far stays.
    pub fn commit(&mut self) {
        self.journal.clear();
    }

    /// Undoes every change since the last commit, newest first.
    pub fn rollback(&mut self) {
        while let Some(undo) = self.journal.pop() {
            match undo {
                Undo::Inserted(model, id) => {
                    if let Some(old) = self.table(model).rows.remove(&id) {
                        self.index(model, id, &old, false);
                    }
                }
                Undo::Restore(model, id, rec) => {
                    if let Some(current) = self.table(model).rows.remove(&id) {
                        self.index(model, id, &current, false);
                    }
                    self.index(model, id, &rec, true);
                    self.table(model).rows.insert(id, rec);
                }
            }
        }
    }

    /// The next value of a named counter (1, 2, …). Like a PostgreSQL sequence it is not
    /// rolled back, so a failed call leaves a gap.
    pub fn next_counter(&mut self, name: &str) -> u64 {
        let counter = self.counters.entry(name.to_owned()).or_insert(0);
        *counter += 1;
        *counter
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(pairs: &[(&'static str, Value)]) -> Rec {
        pairs.iter().cloned().collect()
    }

    #[test]
    fn rollback_restores_rows_and_the_index() {
        let mut db = Db::new();
        let picking = db.insert("stock.picking", rec(&[("name", json!("P1"))]));
        let kept = db.insert("stock.move", rec(&[("picking_id", json!(picking))]));
        db.commit();

        let added = db.insert("stock.move", rec(&[("picking_id", json!(picking))]));
        db.set("stock.move", kept, "picking_id", Value::Null);
        db.remove("stock.picking", picking);
        assert_eq!(
            db.children("stock.move", "picking_id", picking),
            vec![added]
        );
        db.rollback();

        assert!(db.exists("stock.picking", picking));
        assert!(!db.exists("stock.move", added));
        assert_eq!(db.children("stock.move", "picking_id", picking), vec![kept]);
        // Ids are not reused after a rollback, like a database sequence.
        assert!(db.insert("stock.move", Rec::new()) > added);
    }
}

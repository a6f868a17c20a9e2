//! Which shapes a change affects, without trying every shape: per table, shapes whose where
//! clause requires `column = value` (alone, ANDed with more, `IN` per value, `OR` per branch)
//! are found by looking the row's value up; only the rest are tried one by one. The shapes found
//! are then checked against their whole clause, so the index only narrows, never decides.
use super::filter::{lookup_key, ColType};
use super::{Change, Row, Shape};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Weak};

#[derive(Default)]
pub(super) struct Index {
    /// By relation (`schema.table`).
    tables: HashMap<String, TableShapes>,
}

#[derive(Default)]
struct TableShapes {
    /// Column name → its shapes by required value.
    equal: HashMap<String, ByValue>,
    /// Shapes whose clause requires no value: tried on every change to the table.
    scan: Vec<Weak<Shape>>,
}

/// One column's type, and lookup key → the shapes that require that value.
type ByValue = (ColType, HashMap<String, Vec<Weak<Shape>>>);

impl Index {
    pub fn insert(&mut self, shape: &Arc<Shape>) {
        let table = self.tables.entry(shape.relation.clone()).or_default();
        let weak = Arc::downgrade(shape);
        match shape.filter.required_values() {
            None => table.scan.push(weak),
            Some(values) => {
                for (col, key) in values {
                    let column = &shape.table.columns[col];
                    table
                        .equal
                        .entry(column.name.clone())
                        .or_insert_with(|| (shape.types[col], HashMap::new()))
                        .1
                        .entry(key)
                        .or_default()
                        .push(weak.clone());
                }
            }
        }
    }

    /// Call `each` with every shape (still alive) that may contain the change's new or old row;
    /// a shape may come more than once. Returns how many dead shapes were met (see `prune`).
    pub fn candidates(&self, change: &Change, mut each: impl FnMut(&Arc<Shape>)) -> usize {
        let Some(table) = self.tables.get(&change.relation) else {
            return 0;
        };
        let mut dead = 0;
        let mut visit = |shapes: &[Weak<Shape>]| {
            for weak in shapes {
                match weak.upgrade() {
                    Some(shape) => each(&shape),
                    None => dead += 1,
                }
            }
        };
        visit(&table.scan);
        for (column, (ty, by_key)) in &table.equal {
            for row in [&change.new, &change.old].into_iter().flatten() {
                if let Some(shapes) = key_of(row, column, *ty).and_then(|k| by_key.get(&k)) {
                    visit(shapes);
                }
            }
        }
        dead
    }

    /// Forget shapes that no longer exist.
    pub fn prune(&mut self) {
        let alive = |w: &Weak<Shape>| w.strong_count() > 0;
        for table in self.tables.values_mut() {
            table.scan.retain(alive);
            for (_, by_key) in table.equal.values_mut() {
                by_key.retain(|_, shapes| {
                    shapes.retain(alive);
                    !shapes.is_empty()
                });
            }
            table.equal.retain(|_, (_, by_key)| !by_key.is_empty());
        }
        self.tables
            .retain(|_, t| !t.scan.is_empty() || !t.equal.is_empty());
    }
}

fn key_of(row: &Row, column: &str, ty: ColType) -> Option<String> {
    lookup_key(ty, row.get(column).and_then(Value::as_str)?)
}

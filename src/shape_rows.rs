//! A shape's rows as a client holds them: the follower's batches applied at up-to-date
//! boundaries (so a reader never sees half a transaction or half a snapshot), each row kept as
//! its merged columns and, decoded, as `T`.
use crate::shape_follower::{Batch, ChangeMessage, Columns};
use crate::shape_protocol::{Operation, Txid};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// What a correct server never sends. Applied anyway as the nearest sensible change (an insert
/// of a present key replaces it; an update of a missing key inserts what it has), and reported:
/// tests fail on them, the browser counts them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anomaly {
    InsertOfPresentKey(String),
    UpdateOfMissingKey(String),
    DeleteOfMissingKey(String),
    /// The merged columns do not read as the row type (kept as columns, left out of `rows`).
    Undecodable {
        key: String,
        error: String,
    },
}

/// What one up-to-date applied.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    /// A fresh snapshot replaced every row held before.
    pub replaced: bool,
    /// Keys inserted, updated or deleted.
    pub changed: BTreeSet<String>,
    /// The transactions the changes came from (a client retires its writes by them).
    pub txids: BTreeSet<Txid>,
    pub anomalies: Vec<Anomaly>,
}

#[derive(Clone, Debug)]
pub struct ShapeRows<T> {
    columns: BTreeMap<String, Columns>,
    rows: BTreeMap<String, T>,
    /// Changes since the last up-to-date, not yet visible.
    pending: Vec<ChangeMessage>,
    /// The pending changes are a snapshot: they replace what is held.
    replacing: bool,
}

impl<T> Default for ShapeRows<T> {
    fn default() -> Self {
        ShapeRows {
            columns: BTreeMap::new(),
            rows: BTreeMap::new(),
            pending: Vec::new(),
            replacing: false,
        }
    }
}

impl<T: DeserializeOwned> ShapeRows<T> {
    /// Rows held before (a client's stored copy), by key, as columns.
    pub fn from_columns(columns: BTreeMap<String, Columns>) -> (ShapeRows<T>, Vec<Anomaly>) {
        let mut rows = ShapeRows::default();
        let mut anomalies = Vec::new();
        for (key, c) in columns {
            rows.set(key, c, &mut anomalies);
        }
        (rows, anomalies)
    }

    /// Take in one answer's batch; at its up-to-date, apply everything since the last one.
    pub fn add(&mut self, batch: Batch) -> Option<Applied> {
        if batch.starts_snapshot {
            self.pending.clear();
            self.replacing = true;
        }
        self.pending.extend(batch.changes);
        batch.up_to_date.then(|| self.apply())
    }

    /// The changes waiting for an up-to-date (a snapshot's progress, for example).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Rows decoded as `T`, by key.
    pub fn rows(&self) -> &BTreeMap<String, T> {
        &self.rows
    }

    /// Every row's merged columns, by key (what a client stores).
    pub fn columns(&self) -> &BTreeMap<String, Columns> {
        &self.columns
    }

    fn apply(&mut self) -> Applied {
        let mut applied = Applied {
            replaced: std::mem::take(&mut self.replacing),
            ..Applied::default()
        };
        if applied.replaced {
            applied.changed.extend(self.columns.keys().cloned());
            self.columns.clear();
            self.rows.clear();
        }
        let anomalies = &mut applied.anomalies;
        for m in std::mem::take(&mut self.pending) {
            applied.txids.extend(m.txids.iter().copied());
            applied.changed.insert(m.key.clone());
            match m.operation {
                Operation::Insert => {
                    if self.columns.contains_key(&m.key) {
                        anomalies.push(Anomaly::InsertOfPresentKey(m.key.clone()));
                    }
                    self.set(m.key, m.value, anomalies);
                }
                Operation::Update => {
                    let merged = match self.columns.remove(&m.key) {
                        Some(mut old) => {
                            old.extend(m.value);
                            old
                        }
                        None => {
                            anomalies.push(Anomaly::UpdateOfMissingKey(m.key.clone()));
                            m.value
                        }
                    };
                    self.set(m.key, merged, anomalies);
                }
                Operation::Delete => {
                    self.rows.remove(&m.key);
                    if self.columns.remove(&m.key).is_none() {
                        anomalies.push(Anomaly::DeleteOfMissingKey(m.key));
                    }
                }
            }
        }
        applied
    }

    fn set(&mut self, key: String, columns: Columns, anomalies: &mut Vec<Anomaly>) {
        let value = Value::Object(columns);
        match T::deserialize(&value) {
            Ok(row) => {
                self.rows.insert(key.clone(), row);
            }
            Err(e) => {
                self.rows.remove(&key);
                anomalies.push(Anomaly::Undecodable {
                    key: key.clone(),
                    error: e.to_string(),
                });
            }
        }
        if let Value::Object(columns) = value {
            self.columns.insert(key, columns);
        }
    }
}

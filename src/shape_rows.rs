//! A shape's rows as a client holds them: the follower's batches applied at up-to-date
//! boundaries (so a reader never sees half a transaction or half a snapshot), each row kept as
//! its merged columns, read as `T` on demand.
use crate::shape_follower::{Batch, ChangeMessage, Columns};
use crate::shape_protocol::{Operation, Txid};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::marker::PhantomData;

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
    /// Keys inserted, updated or deleted (each once).
    pub changed: Vec<String>,
    /// The transactions the changes came from (a client retires its writes by them), each once.
    pub txids: Vec<Txid>,
    pub anomalies: Vec<Anomaly>,
}

/// A shape's rows by key, as merged columns; `T` is what they read as. Only reading is generic
/// (`rows`): what the browser ships is one copy of the merging code, not one per table.
#[derive(Clone, Debug)]
pub struct ShapeRows<T> {
    columns: BTreeMap<String, Columns>,
    /// Changes since the last up-to-date, not yet visible.
    pending: Vec<ChangeMessage>,
    /// The pending changes are a snapshot: they replace what is held.
    replacing: bool,
    row: PhantomData<fn() -> T>,
}

impl<T> Default for ShapeRows<T> {
    fn default() -> Self {
        ShapeRows {
            columns: BTreeMap::new(),
            pending: Vec::new(),
            replacing: false,
            row: PhantomData,
        }
    }
}

impl<T: DeserializeOwned> ShapeRows<T> {
    /// Rows held before (a client's stored copy), by key, as columns.
    pub fn from_columns(columns: BTreeMap<String, Columns>) -> (ShapeRows<T>, Vec<Anomaly>) {
        let rows = ShapeRows {
            columns,
            ..ShapeRows::default()
        };
        let anomalies = rows.unreadable(rows.columns.keys());
        (rows, anomalies)
    }

    /// Take in one answer's batch; at its up-to-date, apply everything since the last one.
    pub fn add(&mut self, batch: Batch) -> Option<Applied> {
        if batch.starts_snapshot {
            self.pending.clear();
            self.replacing = true;
        }
        self.pending.extend(batch.changes);
        if !batch.up_to_date {
            return None;
        }
        let mut applied = apply(
            &mut self.columns,
            std::mem::take(&mut self.pending),
            std::mem::take(&mut self.replacing),
        );
        let unreadable = self.unreadable(applied.changed.iter());
        applied.anomalies.extend(unreadable);
        Some(applied)
    }

    /// The changes waiting for an up-to-date (a snapshot's progress, for example).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The rows that read as `T`, by key.
    pub fn rows(&self) -> BTreeMap<String, T> {
        self.columns
            .iter()
            .filter_map(|(k, c)| Some((k.clone(), T::deserialize(c).ok()?)))
            .collect()
    }

    /// Every row's merged columns, by key (what a client stores).
    pub fn columns(&self) -> &BTreeMap<String, Columns> {
        &self.columns
    }

    /// Rows among `keys` whose columns do not read as `T` (kept as columns, left out of `rows`).
    fn unreadable<'a>(&self, keys: impl Iterator<Item = &'a String>) -> Vec<Anomaly> {
        keys.filter_map(|k| {
            let error = T::deserialize(self.columns.get(k)?).err()?;
            Some(Anomaly::Undecodable {
                key: k.clone(),
                error: error.to_string(),
            })
        })
        .collect()
    }
}

/// Apply the changes since the last up-to-date to the columns held (replacing them first when
/// the changes are a snapshot).
fn apply(
    columns: &mut BTreeMap<String, Columns>,
    changes: Vec<ChangeMessage>,
    replacing: bool,
) -> Applied {
    let mut applied = Applied {
        replaced: replacing,
        ..Applied::default()
    };
    if replacing {
        applied.changed.extend(std::mem::take(columns).into_keys());
    }
    for m in changes {
        applied.txids.extend(m.txids.iter().copied());
        applied.changed.push(m.key.clone());
        match m.operation {
            Operation::Insert => {
                if columns.contains_key(&m.key) {
                    applied
                        .anomalies
                        .push(Anomaly::InsertOfPresentKey(m.key.clone()));
                }
                columns.insert(m.key, m.value);
            }
            Operation::Update => match columns.get_mut(&m.key) {
                Some(old) => old.extend(m.value),
                None => {
                    applied
                        .anomalies
                        .push(Anomaly::UpdateOfMissingKey(m.key.clone()));
                    columns.insert(m.key, m.value);
                }
            },
            Operation::Delete => {
                if columns.remove(&m.key).is_none() {
                    applied.anomalies.push(Anomaly::DeleteOfMissingKey(m.key));
                }
            }
        }
    }
    applied.changed.sort_unstable();
    applied.changed.dedup();
    applied.txids.sort_unstable();
    applied.txids.dedup();
    applied
}

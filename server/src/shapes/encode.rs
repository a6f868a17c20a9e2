//! The protocol's JSON: change messages, snapshot bodies, the `electric-schema` header.
use super::{Change, Offset, Operation, Row, Shape, ShapeServer, Tx};
use serde_json::{json, Map, Value};
use turns::shape_protocol::Control;

/// The up-to-date control message that ends a response at the head of the log. Its
/// `global_last_seen_lsn` is the response offset's LSN: SSE clients continue from `{it}_0`, which
/// (offsets being transaction-granular) is exactly there.
pub(super) fn up_to_date(offset: Offset) -> Value {
    json!({"headers": {"control": Control::UpToDate, "global_last_seen_lsn": offset.lsn.to_string()}})
}

impl ShapeServer {
    /// The `electric-schema` header value for a shape.
    pub fn schema_json(shape: &Shape) -> String {
        let mut out = Map::new();
        for &i in &shape.selected {
            let c = &shape.table.columns[i];
            let mut m = Map::new();
            let ty = match c.ty.as_str() {
                "integer" => "int4",
                "bigint" => "int8",
                "smallint" => "int2",
                "boolean" => "bool",
                "character varying" => "varchar",
                "character" => "bpchar",
                "timestamp with time zone" => "timestamptz",
                "timestamp without time zone" => "timestamp",
                other => other,
            };
            m.insert("type".into(), ty.into());
            if let Some(p) = c.pk_index {
                m.insert("pk_index".into(), p.into());
            }
            if c.not_null {
                m.insert("not_null".into(), true.into());
            }
            if let Some(l) = c.max_length {
                m.insert("max_length".into(), l.into());
            }
            out.insert(c.name.clone(), Value::Object(m));
        }
        Value::Object(out).to_string()
    }
}

/// The shape-log message for one change, if it concerns the shape. An update that moves a row
/// into the shape is an insert for it; out of it, a delete.
pub(super) fn message_for(shape: &Shape, change: &Change, tx: &Tx, at: Offset) -> Option<Value> {
    let was_in = change.old.as_ref().is_some_and(|o| shape.matches(o));
    let is_in = change.new.as_ref().is_some_and(|n| shape.matches(n));
    let (op, row, old_value) = match (change.op, was_in, is_in) {
        (Operation::Insert, _, true) => {
            (Operation::Insert, shape.project(change.new.as_ref()?), None)
        }
        (Operation::Update, false, true) => {
            (Operation::Insert, shape.project(change.new.as_ref()?), None)
        }
        (Operation::Update, true, true) => {
            let new = change.new.as_ref()?;
            let old = change.old.as_ref()?;
            if shape.def.replica_full {
                (
                    Operation::Update,
                    shape.project(new),
                    Some(shape.project(old)),
                )
            } else {
                // Changed columns and the key only.
                let full = shape.project(new);
                let pk: Vec<&str> = shape.table.pk().iter().map(|c| c.name.as_str()).collect();
                let changed = full
                    .into_iter()
                    .filter(|(k, v)| pk.contains(&k.as_str()) || old.get(k) != Some(v))
                    .collect();
                (Operation::Update, changed, None)
            }
        }
        (Operation::Update | Operation::Delete, true, false) => {
            let old = change.old.as_ref()?;
            let row = if shape.def.replica_full {
                shape.project(old)
            } else {
                key_only(shape, old)
            };
            (Operation::Delete, row, None)
        }
        _ => return None,
    };
    let key_source = change
        .new
        .as_ref()
        .filter(|_| op != Operation::Delete)
        .or(change.old.as_ref())?;
    let mut headers = serde_json::json!({
        "operation": op,
        "relation": [shape.table.schema, shape.table.name],
        "txids": [tx.xid],
        "lsn": tx.lsn.to_string(),
        "op_position": at.op,
    });
    if at.op + 1 == tx.changes.len() as u64 {
        headers["last"] = true.into();
    }
    let mut msg =
        serde_json::json!({ "key": shape.key(key_source), "value": row, "headers": headers });
    if let Some(old) = old_value {
        msg["old_value"] = Value::Object(old);
    }
    Some(msg)
}

fn key_only(shape: &Shape, row: &Row) -> Row {
    shape
        .table
        .pk()
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                row.get(&c.name).cloned().unwrap_or(Value::Null),
            )
        })
        .collect()
}

/// A response body in pieces, shared by every response that sends it (a large snapshot).
#[derive(Clone)]
pub struct JsonChunks(std::sync::Arc<Vec<bytes::Bytes>>);

impl JsonChunks {
    pub fn body(&self) -> axum::body::Body {
        match &self.0[..] {
            [one] => axum::body::Body::from(one.clone()),
            chunks => {
                let chunks = chunks.to_vec();
                axum::body::Body::from_stream(futures_util::stream::iter(
                    chunks.into_iter().map(Ok::<_, std::convert::Infallible>),
                ))
            }
        }
    }
}

/// Bytes per piece of a snapshot's body: large enough for few pieces, small enough that the
/// body is never reallocated and copied as it grows (a 100,000-row snapshot is ~100 MB).
const CHUNK: usize = 256 * 1024;

/// A snapshot's insert messages, serialised as they are read into the response's JSON array,
/// so a large snapshot is a few buffers rather than a map per row.
pub struct SnapshotBody {
    pub rows: usize,
    chunks: Vec<bytes::Bytes>,
    json: Vec<u8>,
}

impl Default for SnapshotBody {
    fn default() -> Self {
        SnapshotBody {
            rows: 0,
            chunks: Vec::new(),
            // Most shapes are small (one PM's turns): the first piece grows as needed.
            json: b"[".to_vec(),
        }
    }
}

impl SnapshotBody {
    /// The finished JSON array. The last piece is trimmed to its length: a shared snapshot is
    /// kept for a while, and a small one must not hold a whole piece's capacity.
    pub fn finish(mut self) -> JsonChunks {
        self.json.push(b']');
        self.json.shrink_to_fit();
        self.chunks.push(bytes::Bytes::from(self.json));
        JsonChunks(std::sync::Arc::new(self.chunks))
    }

    pub(super) fn push(&mut self, shape: &Shape, values: &[Option<&str>]) {
        let out = &mut self.json;
        if self.rows > 0 {
            out.push(b',');
        }
        self.rows += 1;
        let key = shape.key_with(|c| {
            let i = shape
                .table
                .columns
                .iter()
                .position(|x| std::ptr::eq(x, c))?;
            values[i]
        });
        out.extend_from_slice(b"{\"key\":");
        json_str(out, &key);
        out.extend_from_slice(b",\"value\":{");
        for (n, &i) in shape.selected.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            json_str(out, &shape.table.columns[i].name);
            out.push(b':');
            match values[i] {
                Some(v) => json_str(out, v),
                None => out.extend_from_slice(b"null"),
            }
        }
        out.extend_from_slice(b"},\"headers\":{\"operation\":\"insert\",\"relation\":[");
        json_str(out, &shape.table.schema);
        out.push(b',');
        json_str(out, &shape.table.name);
        out.extend_from_slice(b"]}}");
        if out.len() >= CHUNK {
            let full = std::mem::replace(out, Vec::with_capacity(CHUNK + CHUNK / 4));
            self.chunks.push(bytes::Bytes::from(full));
        }
    }
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    // Serialising a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

//! A decoder for the pgoutput logical replication protocol (version 1): the messages our shape
//! server needs — Begin, Commit, Relation, Insert, Update, Delete, Truncate — from the raw
//! payloads that `pgwire-replication` delivers. Values stay in Postgres' text format, which is
//! what the shape protocol sends.
use std::fmt;

/// One column value in a tuple.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Datum {
    Null,
    /// A TOASTed value that did not change (only its old row, with REPLICA IDENTITY FULL, has it).
    Unchanged,
    Text(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
    pub is_key: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relation {
    pub id: u32,
    pub schema: String,
    pub name: String,
    pub columns: Vec<Column>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Begin {
        final_lsn: u64,
        commit_time: i64,
        xid: u32,
    },
    Commit {
        commit_lsn: u64,
        end_lsn: u64,
        commit_time: i64,
    },
    Relation(Relation),
    Insert {
        relation: u32,
        new: Vec<Datum>,
    },
    /// `old` is present with REPLICA IDENTITY FULL (or when the key changed).
    Update {
        relation: u32,
        old: Option<Vec<Datum>>,
        new: Vec<Datum>,
    },
    Delete {
        relation: u32,
        old: Vec<Datum>,
    },
    Truncate {
        relations: Vec<u32>,
    },
    /// Messages we do not act on (Origin, Type, logical messages).
    Other(u8),
}

#[derive(Debug, PartialEq, Eq)]
pub struct DecodeError(String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pgoutput: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError(format!(
                "truncated message: wanted {n} bytes, {} left",
                self.buf.len()
            )));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn i16(&mut self) -> Result<i16, DecodeError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, DecodeError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(self.i32()? as u32)
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    fn cstr(&mut self) -> Result<String, DecodeError> {
        let end = self
            .buf
            .iter()
            .position(|&c| c == 0)
            .ok_or_else(|| DecodeError("unterminated string".into()))?;
        let s =
            String::from_utf8(self.buf[..end].to_vec()).map_err(|e| DecodeError(e.to_string()))?;
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }
    fn tuple(&mut self) -> Result<Vec<Datum>, DecodeError> {
        let n = self.i16()?;
        let mut out = Vec::with_capacity(n.max(0) as usize);
        for _ in 0..n {
            out.push(match self.u8()? {
                b'n' => Datum::Null,
                b'u' => Datum::Unchanged,
                b't' => {
                    let len = self.i32()?;
                    let bytes = self.take(len.max(0) as usize)?;
                    Datum::Text(
                        String::from_utf8(bytes.to_vec())
                            .map_err(|e| DecodeError(e.to_string()))?,
                    )
                }
                other => {
                    return Err(DecodeError(format!(
                        "unsupported tuple value kind {:?}",
                        other as char
                    )))
                }
            });
        }
        Ok(out)
    }
}

/// Decode one pgoutput message.
pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader { buf };
    let tag = r.u8()?;
    Ok(match tag {
        b'B' => Message::Begin {
            final_lsn: r.i64()? as u64,
            commit_time: r.i64()?,
            xid: r.u32()?,
        },
        b'C' => {
            let _flags = r.u8()?;
            Message::Commit {
                commit_lsn: r.i64()? as u64,
                end_lsn: r.i64()? as u64,
                commit_time: r.i64()?,
            }
        }
        b'R' => {
            let id = r.u32()?;
            let schema = r.cstr()?;
            let name = r.cstr()?;
            let _replica_identity = r.u8()?;
            let n = r.i16()?;
            let mut columns = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n {
                let flags = r.u8()?;
                columns.push(Column {
                    name: r.cstr()?,
                    type_oid: r.u32()?,
                    type_modifier: r.i32()?,
                    is_key: flags & 1 == 1,
                });
            }
            Message::Relation(Relation {
                id,
                schema,
                name,
                columns,
            })
        }
        b'I' => {
            let relation = r.u32()?;
            expect(r.u8()?, b'N')?;
            Message::Insert {
                relation,
                new: r.tuple()?,
            }
        }
        b'U' => {
            let relation = r.u32()?;
            let mut kind = r.u8()?;
            let mut old = None;
            if kind == b'K' || kind == b'O' {
                old = Some(r.tuple()?);
                kind = r.u8()?;
            }
            expect(kind, b'N')?;
            Message::Update {
                relation,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let relation = r.u32()?;
            let kind = r.u8()?;
            if kind != b'K' && kind != b'O' {
                return Err(DecodeError(format!(
                    "delete without old tuple ({:?})",
                    kind as char
                )));
            }
            Message::Delete {
                relation,
                old: r.tuple()?,
            }
        }
        b'T' => {
            let n = r.i32()?;
            let _options = r.u8()?;
            let relations = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
            Message::Truncate { relations }
        }
        other => Message::Other(other),
    })
}

fn expect(got: u8, want: u8) -> Result<(), DecodeError> {
    if got == want {
        Ok(())
    } else {
        Err(DecodeError(format!(
            "expected {:?}, got {:?}",
            want as char, got as char
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(values: &[Option<&str>]) -> Vec<u8> {
        let mut b = (values.len() as i16).to_be_bytes().to_vec();
        for v in values {
            match v {
                None => b.push(b'n'),
                Some(s) => {
                    b.push(b't');
                    b.extend((s.len() as i32).to_be_bytes());
                    b.extend(s.as_bytes());
                }
            }
        }
        b
    }

    #[test]
    fn relation_update_with_old_row_and_toast() {
        let mut rel = vec![b'R'];
        rel.extend(16384u32.to_be_bytes());
        rel.extend(b"public\0turns\0");
        rel.push(b'f');
        rel.extend(2i16.to_be_bytes());
        rel.push(1);
        rel.extend(b"id\0");
        rel.extend(2950u32.to_be_bytes());
        rel.extend((-1i32).to_be_bytes());
        rel.push(0);
        rel.extend(b"note\0");
        rel.extend(25u32.to_be_bytes());
        rel.extend((-1i32).to_be_bytes());
        let Message::Relation(r) = decode(&rel).expect("relation") else {
            panic!("not a relation")
        };
        assert_eq!(
            (r.schema.as_str(), r.name.as_str(), r.columns.len()),
            ("public", "turns", 2)
        );
        assert!(r.columns[0].is_key && !r.columns[1].is_key);
        assert_eq!(r.columns[1].type_oid, 25);

        let mut up = vec![b'U'];
        up.extend(16384u32.to_be_bytes());
        up.push(b'O');
        up.extend(tuple(&[Some("a"), Some("old")]));
        up.push(b'N');
        let mut new = tuple(&[Some("a")]);
        new[1] = 2; // two columns: "a" then an unchanged TOAST value
        new.push(b'u');
        up.extend(new);
        assert_eq!(
            decode(&up).expect("update"),
            Message::Update {
                relation: 16384,
                old: Some(vec![Datum::Text("a".into()), Datum::Text("old".into())]),
                new: vec![Datum::Text("a".into()), Datum::Unchanged],
            }
        );
    }

    #[test]
    fn insert_delete_commit_and_truncated_input() {
        let mut ins = vec![b'I'];
        ins.extend(7u32.to_be_bytes());
        ins.push(b'N');
        ins.extend(tuple(&[Some("1"), None]));
        assert_eq!(
            decode(&ins).expect("insert"),
            Message::Insert {
                relation: 7,
                new: vec![Datum::Text("1".into()), Datum::Null]
            }
        );
        let mut del = vec![b'D'];
        del.extend(7u32.to_be_bytes());
        del.push(b'O');
        del.extend(tuple(&[Some("1")]));
        assert!(matches!(
            decode(&del),
            Ok(Message::Delete { relation: 7, .. })
        ));
        let mut commit = vec![b'C', 0];
        commit.extend(100i64.to_be_bytes());
        commit.extend(120i64.to_be_bytes());
        commit.extend(5i64.to_be_bytes());
        assert_eq!(
            decode(&commit).expect("commit"),
            Message::Commit {
                commit_lsn: 100,
                end_lsn: 120,
                commit_time: 5
            }
        );
        assert!(
            decode(&ins[..ins.len() - 1]).is_err(),
            "truncated input is an error, not a panic"
        );
        assert!(decode(&[]).is_err());
    }
}

//! The mutation wire's two dialects.
//!
//! Version 2 (now): every enum externally tagged — `{"edit_turn": {"turn": …, "edits":
//! [{"wo_number": {"from": …, "to": …}}]}}` — which a browser reads without serde's buffering of
//! tagged content (code it would otherwise ship).
//!
//! Version 1 (until December 2026): internally tagged — `{"kind": "edit_turn", "turn": …,
//! "edits": [{"field": "wo_number", "from": …, "to": …}]}`, outcomes `{"outcome": "rejected",
//! "reason": "conflict", …}`. Devices running an older app still send it and still hold it in
//! their outboxes. Both dialects read as the same types (`Mutation` reads either); the server
//! answers in the dialect a request spoke (`Received`, `Answer`).
use crate::mutation::{Mutation, Outcome};
use serde::de::{Deserializer, Error as _};
use serde::ser::{Error as _, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Which dialect a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    V1,
    V2,
}

/// `{tag: name, ...rest}` → `{name: {...rest}}`. Whether `v` was in the tagged form.
fn retag(v: &mut Value, tag: &str) -> bool {
    let Some(obj) = v.as_object_mut() else {
        return false;
    };
    let Some(Value::String(name)) = obj.remove(tag) else {
        return false;
    };
    let rest = std::mem::take(obj);
    obj.insert(name, Value::Object(rest));
    true
}

/// `{name: {...rest}}` → `{tag: name, ...rest}` (the inverse of `retag`).
fn untag(v: &mut Value, tag: &str) {
    let Some(obj) = v.as_object_mut() else {
        return;
    };
    let Some(name) = obj.keys().next().cloned().filter(|_| obj.len() == 1) else {
        return;
    };
    let mut flat = match obj.remove(&name) {
        Some(Value::Object(inner)) => inner,
        _ => Map::new(),
    };
    flat.insert(tag.to_string(), Value::String(name));
    *obj = flat;
}

/// A change in either dialect, as version 2. Returns the dialect it was in.
pub fn upgrade_change(change: &mut Value) -> Dialect {
    if !retag(change, "kind") {
        return Dialect::V2;
    }
    for kind in ["edit_turn", "update_property"] {
        if let Some(edits) = change
            .get_mut(kind)
            .and_then(|c| c.get_mut("edits"))
            .and_then(Value::as_array_mut)
        {
            for edit in edits {
                retag(edit, "field");
            }
        }
    }
    Dialect::V1
}

/// A refusal in either dialect, as version 2.
pub fn upgrade_rejection(rejection: &mut Value) {
    retag(rejection, "reason");
}

/// A version-2 outcome, as a version-1 client reads it.
pub fn downgrade_outcome(outcome: &mut Value) {
    if let Some(rejection) = outcome.get_mut("rejected") {
        untag(rejection, "reason");
    }
    untag(outcome, "outcome");
}

/// `#[serde(deserialize_with)]` for a change stored or sent in either dialect.
pub fn change<'de, D: Deserializer<'de>>(d: D) -> Result<crate::mutation::Change, D::Error> {
    let mut v = Value::deserialize(d)?;
    upgrade_change(&mut v);
    crate::mutation::Change::deserialize(v).map_err(D::Error::custom)
}

/// `#[serde(deserialize_with)]` for a refusal stored in either dialect.
pub fn rejection<'de, D: Deserializer<'de>>(d: D) -> Result<crate::mutation::Rejection, D::Error> {
    let mut v = Value::deserialize(d)?;
    upgrade_rejection(&mut v);
    crate::mutation::Rejection::deserialize(v).map_err(D::Error::custom)
}

/// A mutation as a client sent it, and the dialect it spoke.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    pub mutation: Mutation,
    pub dialect: Dialect,
}

impl<'de> Deserialize<'de> for Received {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let dialect = match v.get("change").and_then(|c| c.get("kind")) {
            Some(_) => Dialect::V1,
            None => Dialect::V2,
        };
        Ok(Received {
            mutation: Mutation::deserialize(v).map_err(D::Error::custom)?,
            dialect,
        })
    }
}

impl Serialize for Received {
    /// Always version 2 (what this app's clients send).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.mutation.serialize(s)
    }
}

/// An outcome, to be written in the dialect its request spoke.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub outcome: Outcome,
    pub dialect: Dialect,
}

impl Serialize for Answer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.dialect {
            Dialect::V2 => self.outcome.serialize(s),
            Dialect::V1 => {
                let mut v = serde_json::to_value(&self.outcome).map_err(S::Error::custom)?;
                downgrade_outcome(&mut v);
                v.serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Answer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut v = Value::deserialize(d)?;
        let dialect = if retag(&mut v, "outcome") {
            if let Some(rejection) = v.get_mut("rejected") {
                upgrade_rejection(rejection);
            }
            Dialect::V1
        } else {
            Dialect::V2
        };
        Ok(Answer {
            outcome: Outcome::deserialize(v).map_err(D::Error::custom)?,
            dialect,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mutation::{Change, Edit, Rejection, TurnEdit};
    use uuid::Uuid;

    /// A mutation and an outcome as version 1 wrote them (serialized by the app before
    /// December 2026).
    const V1_MUTATION: &str = r#"{"id":"00000000-0000-0000-0000-000000000000","base_version":3,
        "device_time":"2027-01-15T08:00:00Z","change":{"kind":"edit_turn",
        "turn":"00000000-0000-0000-0000-000000000000",
        "edits":[{"field":"amount","from":null,"to":"1200"},{"field":"stage",
        "from":"00000000-0000-0000-0000-000000000001","to":"00000000-0000-0000-0000-000000000002"}]}}"#;
    const V1_REJECTED: &str = r#"{"outcome":"rejected","reason":"conflict","message":"changed","fields":["wo_number"],"current":null}"#;
    const V1_APPLIED: &str = r#"{"outcome":"applied","txid":"7"}"#;

    #[test]
    fn version_1_reads_as_the_same_mutation_as_version_2_and_answers_in_kind() {
        let old: Received = serde_json::from_str(V1_MUTATION).expect("v1 reads");
        assert_eq!(old.dialect, Dialect::V1);
        let Change::EditTurn { edits, .. } = &old.mutation.change else {
            panic!("an edit: {:?}", old.mutation.change);
        };
        assert_eq!(
            edits[0],
            TurnEdit::Amount(Edit {
                from: None,
                to: Some(crate::Decimal::new(1200, 0))
            })
        );
        assert_eq!(edits[1].column(), "stage_id");
        // Written again, it is version 2, and reads as itself.
        let v2 = serde_json::to_value(&old.mutation).expect("json");
        assert_eq!(
            v2["change"]["edit_turn"]["edits"][0]["amount"]["to"],
            "1200"
        );
        let new: Received = serde_json::from_value(v2).expect("v2 reads");
        assert_eq!((new.dialect, &new.mutation), (Dialect::V2, &old.mutation));
        // A stored outbox entry of version 1 reads as a plain `Mutation` too.
        let stored: Mutation = serde_json::from_str(V1_MUTATION).expect("stored v1");
        assert_eq!(stored, old.mutation);

        // Answers: version 1 clients get version 1, byte for byte what they used to get.
        for (text, outcome) in [
            (
                V1_REJECTED,
                Outcome::Rejected(Rejection::Conflict {
                    message: "changed".into(),
                    fields: vec!["wo_number".into()],
                    current: None,
                }),
            ),
            (
                V1_APPLIED,
                Outcome::Applied {
                    txid: Some("7".into()),
                },
            ),
        ] {
            let v1 = Answer {
                outcome: outcome.clone(),
                dialect: Dialect::V1,
            };
            let written: Value = serde_json::to_value(&v1).expect("v1 answer");
            assert_eq!(
                written,
                serde_json::from_str::<Value>(text).expect("fixture")
            );
            assert_eq!(
                serde_json::from_value::<Answer>(written).expect("reads"),
                v1
            );
            let v2 = serde_json::to_string(&Answer {
                outcome: outcome.clone(),
                dialect: Dialect::V2,
            })
            .expect("v2 answer");
            assert_eq!(serde_json::from_str::<Outcome>(&v2).expect("v2"), outcome);
        }
        // A refusal stored by version 1 (a device's list of refused changes) upgrades.
        let mut stored: Value = serde_json::from_str(
            r#"{"reason":"invalid","message":"m","fields":[{"field":"wo_number","message":"m"}]}"#,
        )
        .expect("json");
        upgrade_rejection(&mut stored);
        let r: Rejection = serde_json::from_value(stored).expect("reads");
        assert_eq!(r.message(), "m");
        assert_eq!(Uuid::nil(), old.mutation.id);
    }
}

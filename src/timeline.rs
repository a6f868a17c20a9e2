//! A turn's history as people read it: every write the audit log kept, who made it, when on the
//! server and when on the device, and the fields it changed (before → after), shown to each
//! viewer only as far as they may see the turn's money.
use crate::line_items::LineItem;
use crate::model::format_usd;
use crate::mutation::field_label;
use crate::{Actor, ApprovalStatus, Decimal, Role};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One write to the turn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// When the server wrote it.
    pub at: DateTime<Utc>,
    /// When the user made it, by their device's clock (offline work is written later).
    pub device_time: Option<DateTime<Utc>>,
    pub who: Option<String>,
    /// What was done, in words ("Moved", "Approved", …).
    pub action: String,
    pub changes: Vec<FieldChange>,
    /// The reason given (a rejection's, a cancellation's).
    pub note: Option<String>,
}

impl Entry {
    /// When it was done: on the device when known, so work done offline reads in its order.
    pub fn done_at(&self) -> DateTime<Utc> {
        self.device_time.unwrap_or(self.at)
    }

    /// Written well after it was made (offline, or queued behind a slow connection).
    pub fn written_later(&self) -> bool {
        (self.at - self.done_at()).num_seconds() > 60
    }
}

/// One field a write changed, as text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub label: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// The turn columns a timeline shows (labelled by `mutation::field_label`).
const SHOWN: &[&str] = &[
    "turn_id",
    "stage_id",
    "vendor_id",
    "turn_amount",
    "approved_turn_amount",
    "approval_status",
    "wo_number",
    "move_out_date",
    "expected_completion_date",
    "turn_completion_date",
];

/// Columns only those who see a turn's financials see (as `TurnCard::redact_for`).
const FINANCIAL: &[&str] = &["turn_amount", "approved_turn_amount", "approval_status"];

/// Whether a write shows in `viewer`'s timeline: approval steps only to those who see the turn's
/// money (as `TurnCard::redact_for`), and to a vendor only what was done while the work was their
/// company's (not the turn's earlier life, not another vendor's answer).
pub fn shows(action: &str, before: Option<&Value>, after: Option<&Value>, viewer: &Actor) -> bool {
    let approval = matches!(action, "submit_for_approval" | "approve" | "reject");
    if approval && !viewer.sees_turn_financials() {
        return false;
    }
    match viewer.vendor_id.filter(|_| viewer.role == Role::Vendor) {
        None => true,
        Some(vendor) => {
            // The turn's vendor: a line item carries it as `turn_vendor_id` (its own
            // `vendor_id` is who does that line).
            let theirs = |row: Option<&Value>| {
                row.and_then(|r| {
                    r.get("turn_vendor_id")
                        .or(r.get("vendor_id"))?
                        .as_str()?
                        .parse::<uuid::Uuid>()
                        .ok()
                }) == Some(vendor)
            };
            theirs(before) || theirs(after)
        }
    }
}

/// Whether `viewer` sees a change `by` someone that was refused: their own, or any on a turn
/// they manage (they are the ones to sort it out).
pub fn shows_refusal(viewer: &Actor, by: uuid::Uuid) -> bool {
    viewer.user_id == by || viewer.is_manager()
}

/// A refused change as its turn's history tells it.
pub fn refusal(
    at: DateTime<Utc>,
    device_time: Option<DateTime<Utc>>,
    who: Option<String>,
    action: &str,
    why: &str,
) -> Entry {
    Entry {
        at,
        device_time,
        who,
        action: format!("Not saved — {}", action_label(action).to_lowercase()),
        changes: Vec::new(),
        note: Some(why.to_string()),
    }
}

/// What an audit action reads as.
pub fn action_label(action: &str) -> &'static str {
    match action {
        "create_turn" => "Started the turn",
        "edit_turn" => "Changed",
        "submit_for_approval" => "Submitted for approval",
        "approve" => "Approved",
        "reject" => "Rejected",
        "cancel_turn" => "Cancelled the turn",
        "accept_work" => "Accepted the job",
        "decline_work" => "Declined the job",
        "add_line_items" => "Added to the scope",
        "edit_line_item" => "Changed the scope",
        "remove_line_item" => "Removed from the scope",
        "record_qc" => "Recorded QC",
        "add_note" => "Added a note",
        "add_photo" => "Added a photo",
        _ => "Changed",
    }
}

/// The fields a write changed (`before`, `after`: the row as JSON), as text; `name` gives the
/// name behind an id column's value (stages, vendors), and `financials` whether the viewer sees
/// the money.
pub fn changes(
    before: Option<&Value>,
    after: Option<&Value>,
    financials: bool,
    name: impl Fn(&str, &str) -> Option<String>,
) -> Vec<FieldChange> {
    let text = |row: Option<&Value>, column: &str| -> Option<String> {
        let value = row?.get(column)?;
        let raw = match value {
            Value::Null => return None,
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Some(match column {
            "stage_id" | "vendor_id" => name(column, &raw).unwrap_or(raw),
            "turn_amount" | "approved_turn_amount" => {
                raw.parse::<Decimal>().map(format_usd).unwrap_or(raw)
            }
            "approval_status" => serde_json::from_value::<ApprovalStatus>(value.clone())
                .map(|s| s.label().to_string())
                .unwrap_or(raw),
            _ => raw,
        })
    };
    SHOWN
        .iter()
        .filter(|column| financials || !FINANCIAL.contains(column))
        .filter_map(|column| {
            let (b, a) = (text(before, column), text(after, column));
            (b != a).then(|| FieldChange {
                label: field_label(column),
                before: b,
                after: a,
            })
        })
        .collect()
}

/// What a write to one of the turn's line items changed (`before`, `after`: the line as JSON):
/// the line as it read before and after, with its cost for those who see the money.
pub fn line_change(
    before: Option<&Value>,
    after: Option<&Value>,
    financials: bool,
) -> Option<FieldChange> {
    let describe = |row: Option<&Value>| Some(line_from_json(row?)?.describe(financials));
    let (before, after) = (describe(before), describe(after));
    (before != after).then(|| FieldChange {
        label: "Line item".into(),
        before,
        after,
    })
}

/// A line item from its row as `to_jsonb` writes it.
fn line_from_json(row: &Value) -> Option<LineItem> {
    let text = |column: &str| match row.get(column)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    Some(LineItem {
        id: text("id")?.parse().ok()?,
        turn_id: text("turn_id")?.parse().ok()?,
        position: text("position")?.parse().ok()?,
        category: text("category")?,
        description: text("description")?,
        quantity: text("quantity")?.parse().ok()?,
        unit_cost: text("unit_cost").and_then(|c| c.parse().ok()),
        vendor_id: text("vendor_id").and_then(|v| v.parse().ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_write_reads_as_its_changed_fields_with_names_and_money() {
        let before = json!({"stage_id": "s1", "vendor_id": null, "turn_amount": 1200.5,
            "approval_status": "PENDING", "wo_number": "WO-1", "version": 3});
        let after = json!({"stage_id": "s2", "vendor_id": "v1", "turn_amount": 1200.5,
            "approval_status": "DFO_APPROVAL_NEEDED", "wo_number": "WO-1", "version": 4});
        let name =
            |column: &str, id: &str| Some(format!("{column}:{id}")).filter(|_| id != "unknown");
        let change = |label: &str, before: Option<&str>, after: Option<&str>| FieldChange {
            label: label.into(),
            before: before.map(str::to_string),
            after: after.map(str::to_string),
        };
        assert_eq!(
            changes(Some(&before), Some(&after), true, name),
            vec![
                change("Stage", Some("stage_id:s1"), Some("stage_id:s2")),
                change("Vendor", None, Some("vendor_id:v1")),
                change("Approval", Some("Pending"), Some("Needs DFO approval")),
            ]
        );
        // Without financials the approval is not shown; the rest is.
        assert_eq!(changes(Some(&before), Some(&after), false, name).len(), 2);
        // A new turn: every field it was made with.
        let made = changes(
            None,
            Some(&json!({"turn_id": "P-1-ABCDE", "turn_amount": "99"})),
            true,
            name,
        );
        assert_eq!(
            made,
            vec![
                change("Turn ID", None, Some("P-1-ABCDE")),
                change("Amount", None, Some(&format_usd(Decimal::new(99, 0)))),
            ]
        );
    }

    #[test]
    fn a_vendor_sees_the_work_while_it_was_theirs_and_no_approvals() {
        let (mine, other) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        let vendor = Actor {
            user_id: uuid::Uuid::from_u128(9),
            role: Role::Vendor,
            vendor_id: Some(mine),
        };
        let pm = Actor {
            role: Role::PropertyManager,
            vendor_id: None,
            ..vendor
        };
        let with = |v: Option<uuid::Uuid>| json!({ "vendor_id": v.map(|v| v.to_string()) });
        let (none, theirs, others) = (with(None), with(Some(mine)), with(Some(other)));
        assert!(
            shows("edit_turn", Some(&none), Some(&theirs), &vendor),
            "given to them"
        );
        assert!(
            shows("edit_turn", Some(&theirs), Some(&theirs), &vendor),
            "while theirs"
        );
        assert!(
            shows("decline_work", Some(&theirs), Some(&none), &vendor),
            "their answer"
        );
        assert!(
            !shows("create_turn", None, Some(&none), &vendor),
            "before them"
        );
        assert!(
            !shows("decline_work", Some(&others), Some(&none), &vendor),
            "another's answer"
        );
        assert!(
            !shows("approve", Some(&theirs), Some(&theirs), &vendor),
            "approvals"
        );
        for action in ["create_turn", "approve", "decline_work"] {
            assert!(shows(action, Some(&others), Some(&none), &pm));
        }
    }

    #[test]
    fn a_line_item_change_reads_as_the_line_before_and_after() {
        let line = |quantity: f64| {
            json!({"id": "00000000-0000-0000-0000-000000000001",
                   "turn_id": "00000000-0000-0000-0000-000000000002", "position": 1,
                   "category": "Paint", "description": "Walls", "quantity": quantity,
                   "unit_cost": 150.0, "turn_vendor_id": null})
        };
        let (two, three) = (line(2.0), line(3.0));
        let changed = line_change(Some(&two), Some(&three), true).expect("changed");
        assert_eq!(
            (changed.before.as_deref(), changed.after.as_deref()),
            (
                Some("Paint — Walls · 2 × $150.00"),
                Some("Paint — Walls · 3 × $150.00")
            )
        );
        let added = line_change(None, Some(&two), false).expect("added");
        assert_eq!(
            (added.before, added.after.as_deref()),
            (None, Some("Paint — Walls · 2"))
        );
        assert_eq!(line_change(Some(&two), Some(&two), true), None);
        // A vendor sees a line's changes while the turn is their company's.
        let vendor = Actor {
            user_id: uuid::Uuid::from_u128(9),
            role: Role::Vendor,
            vendor_id: Some(uuid::Uuid::from_u128(5)),
        };
        let theirs =
            json!({"vendor_id": null, "turn_vendor_id": uuid::Uuid::from_u128(5).to_string()});
        assert!(shows("add_line_items", None, Some(&theirs), &vendor));
        assert!(!shows("add_line_items", None, Some(&two), &vendor));
    }

    #[test]
    fn offline_work_reads_in_the_order_it_was_done() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let entry = |device: Option<i64>| Entry {
            at,
            device_time: device.map(|s| at - chrono::Duration::seconds(s)),
            who: None,
            action: "Changed".into(),
            changes: Vec::new(),
            note: None,
        };
        assert!(entry(Some(3600)).written_later());
        assert!(!entry(Some(5)).written_later());
        assert_eq!(entry(None).done_at(), at);
        assert!(entry(Some(3600)).done_at() < entry(Some(60)).done_at());
    }
}

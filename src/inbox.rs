//! Who is told what: the inbox. A turn's change tells the people whose turn it now is (the vendor
//! given the work, the approvers it now waits for, the managers when it is approved, rejected or
//! declined); a reminder tells approvers what has waited over a day, and the level above what has
//! waited over two; an overdue turn tells its managers and its vendor. The server writes these
//! notices (in the same statement as the change) and the `inbox` shape brings each user theirs.
use crate::approval::{ApprovalLevel, ApprovalStatus};
use crate::model::{format_usd, TurnCard};
use crate::pg_text;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// What a notice is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Assigned,
    Declined,
    ApprovalNeeded,
    Approved,
    Rejected,
    /// An approval waited over a day.
    ApprovalWaiting,
    /// An approval waited over two days: told to the level above.
    Escalated,
    /// Past its expected completion.
    Overdue,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Assigned => "assigned",
            Kind::Declined => "declined",
            Kind::ApprovalNeeded => "approval_needed",
            Kind::Approved => "approved",
            Kind::Rejected => "rejected",
            Kind::ApprovalWaiting => "approval_waiting",
            Kind::Escalated => "escalated",
            Kind::Overdue => "overdue",
        }
    }
}

/// Who a notice is for (the server finds the users).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum To {
    /// The vendor company's users.
    Vendor(Uuid),
    /// The turn's property manager and senior property manager.
    Managers,
    /// Approvers of a level.
    Approvers(ApprovalLevel),
    /// Admins (above head office).
    Admins,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub to: To,
    pub kind: Kind,
    pub message: String,
    /// Sent once per key and user (reminders, escalations, overdue turns).
    pub key: Option<String>,
}

/// Over a day waiting: the approvers are reminded.
pub const REMIND_AFTER: Duration = Duration::hours(24);
/// Over two days: the level above is told.
pub const ESCALATE_AFTER: Duration = Duration::hours(48);

fn about(turn: &TurnCard) -> String {
    format!("{} · {}", turn.turn_id, turn.property_name)
}

/// The notices a change to a turn makes (`before`: the row as it was, as JSON).
pub fn on_turn_change(before: &Value, after: &TurnCard) -> Vec<Notice> {
    let was_vendor = before
        .get("vendor_id")
        .and_then(Value::as_str)
        .and_then(|v| v.parse::<Uuid>().ok());
    let was_status = before
        .get("approval_status")
        .cloned()
        .and_then(|s| serde_json::from_value::<ApprovalStatus>(s).ok());
    let what = about(after);
    let notice = |to, kind, message: String| Notice {
        to,
        kind,
        message,
        key: None,
    };
    let mut out = Vec::new();
    if let Some(v) = after.vendor_id.filter(|v| Some(*v) != was_vendor) {
        out.push(notice(
            To::Vendor(v),
            Kind::Assigned,
            format!("{what}: a new job for you"),
        ));
    }
    if let (Some(_), None, Some(reason)) = (was_vendor, after.vendor_id, &after.decline_reason) {
        if after.declined_vendor_id == was_vendor {
            let vendor = after
                .vendor_name
                .clone()
                .unwrap_or_else(|| "The vendor".into());
            out.push(notice(
                To::Managers,
                Kind::Declined,
                format!("{what}: declined by the vendor ({vendor}): {reason}"),
            ));
        }
    }
    let status = after.approval_status.unwrap_or(ApprovalStatus::Pending);
    if Some(status) != was_status {
        let amount = after
            .turn_amount
            .map(|a| format!(" ({})", format_usd(a)))
            .unwrap_or_default();
        match status {
            ApprovalStatus::DfoApprovalNeeded | ApprovalStatus::HoApprovalNeeded => {
                if let Some(level) = status.awaiting() {
                    out.push(notice(
                        To::Approvers(level),
                        Kind::ApprovalNeeded,
                        format!("{what}: approval needed{amount}"),
                    ));
                }
            }
            ApprovalStatus::DfoApproved | ApprovalStatus::HoApproved
                if was_status.is_some_and(|s| s.awaiting().is_some()) =>
            {
                out.push(notice(
                    To::Managers,
                    Kind::Approved,
                    format!("{what}: approved{amount}"),
                ))
            }
            ApprovalStatus::Rejected => out.push(notice(
                To::Managers,
                Kind::Rejected,
                format!("{what}: rejected"),
            )),
            _ => {}
        }
    }
    out
}

/// A turn waiting for an approval, and since when (its approval was asked for).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct Waiting {
    pub id: Uuid,
    pub turn_id: String,
    pub property_name: String,
    pub approval_status: ApprovalStatus,
    pub since: DateTime<Utc>,
}

/// Reminders for a waiting turn at `now`: its approvers after a day, the level above after two
/// (head office's waits go to the admins). Each once per wait.
pub fn reminders(w: &Waiting, now: DateTime<Utc>) -> Vec<Notice> {
    let Some(level) = w.approval_status.awaiting() else {
        return Vec::new();
    };
    let waited = now - w.since;
    let what = format!("{} · {}", w.turn_id, w.property_name);
    let since = w.since.timestamp();
    let mut out = Vec::new();
    if waited > REMIND_AFTER {
        out.push(Notice {
            to: To::Approvers(level),
            kind: Kind::ApprovalWaiting,
            message: format!("{what}: approval waiting over 24 hours"),
            key: Some(format!(
                "waiting:{}:{}:{since}",
                w.id,
                w.approval_status.as_str()
            )),
        });
    }
    if waited > ESCALATE_AFTER {
        let (to, who) = match level {
            ApprovalLevel::Dfo => (To::Approvers(ApprovalLevel::Ho), "the DFO"),
            ApprovalLevel::Ho => (To::Admins, "head office"),
        };
        out.push(Notice {
            to,
            kind: Kind::Escalated,
            message: format!("{what}: waiting for {who} over 48 hours"),
            key: Some(format!(
                "escalated:{}:{}:{since}",
                w.id,
                w.approval_status.as_str()
            )),
        });
    }
    out
}

/// The notices for a turn past its expected completion (once per expected date).
pub fn overdue(turn: &TurnCard, today: NaiveDate) -> Vec<Notice> {
    let Some(expected) = turn
        .expected_completion_date
        .filter(|d| *d < today && turn.turn_completion_date.is_none())
    else {
        return Vec::new();
    };
    let message = format!("{}: past its expected completion ({expected})", about(turn));
    let key = Some(format!("overdue:{}:{expected}", turn.id));
    let mut out = vec![Notice {
        to: To::Managers,
        kind: Kind::Overdue,
        message: message.clone(),
        key: key.clone(),
    }];
    if let Some(v) = turn.vendor_id {
        out.push(Notice {
            to: To::Vendor(v),
            kind: Kind::Overdue,
            message,
            key,
        });
    }
    out
}

/// A `notifications` row as the `inbox` shape brings it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Notification {
    pub id: Uuid,
    #[serde(default)]
    pub turn_id: Option<Uuid>,
    pub kind: String,
    pub message: String,
    #[serde(default, with = "pg_text::opt_timestamp")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, with = "pg_text::opt_timestamp")]
    pub read_at: Option<DateTime<Utc>>,
}

/// The inbox newest first.
pub fn newest_first(mut list: Vec<Notification>) -> Vec<Notification> {
    list.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::card;

    #[test]
    fn a_change_tells_whose_turn_it_now_is() {
        let vendor = Uuid::new_v4();
        let before = serde_json::json!({"vendor_id": null, "approval_status": "PENDING"});
        let mut after = card();
        after.vendor_id = Some(vendor);
        after.turn_amount = Some(crate::Decimal::new(2500, 0));
        after.approval_status = Some(ApprovalStatus::DfoApprovalNeeded);
        let notices = on_turn_change(&before, &after);
        let to: Vec<(To, Kind)> = notices.iter().map(|n| (n.to, n.kind)).collect();
        assert_eq!(
            to,
            vec![
                (To::Vendor(vendor), Kind::Assigned),
                (To::Approvers(ApprovalLevel::Dfo), Kind::ApprovalNeeded)
            ]
        );
        assert!(
            notices[1].message.ends_with("approval needed ($2,500.00)"),
            "{}",
            notices[1].message
        );

        // Decided: the managers hear it; nobody hears an unchanged turn.
        let waiting = serde_json::json!({"vendor_id": vendor.to_string(), "approval_status": "DFO_APPROVAL_NEEDED"});
        after.approval_status = Some(ApprovalStatus::DfoApproved);
        let decided = on_turn_change(&waiting, &after);
        assert_eq!(
            decided.iter().map(|n| (n.to, n.kind)).collect::<Vec<_>>(),
            vec![(To::Managers, Kind::Approved)]
        );
        let same =
            serde_json::json!({"vendor_id": vendor.to_string(), "approval_status": "DFO_APPROVED"});
        assert!(on_turn_change(&same, &after).is_empty());

        // Declined: back to the managers, with the reason.
        let mut declined = after.clone();
        declined.vendor_id = None;
        declined.declined_vendor_id = Some(vendor);
        declined.decline_reason = Some("Booked solid".into());
        let notices = on_turn_change(&same, &declined);
        assert_eq!(notices.len(), 1);
        assert_eq!(
            (notices[0].to, notices[0].kind),
            (To::Managers, Kind::Declined)
        );
        assert!(notices[0].message.ends_with(": Booked solid"));
    }

    #[test]
    fn waiting_approvals_are_reminded_after_a_day_and_escalated_after_two_once_per_wait() {
        let since = DateTime::from_timestamp(1_764_000_000, 0).expect("time");
        let w = Waiting {
            id: Uuid::new_v4(),
            turn_id: "T-1".into(),
            property_name: "Oak".into(),
            approval_status: ApprovalStatus::DfoApprovalNeeded,
            since,
        };
        assert!(reminders(&w, since + Duration::hours(23)).is_empty());
        let day = reminders(&w, since + Duration::hours(25));
        assert_eq!(
            day.iter().map(|n| (n.to, n.kind)).collect::<Vec<_>>(),
            vec![(To::Approvers(ApprovalLevel::Dfo), Kind::ApprovalWaiting)]
        );
        let two = reminders(&w, since + Duration::hours(49));
        assert_eq!(two.len(), 2);
        assert_eq!(
            (two[1].to, two[1].kind),
            (To::Approvers(ApprovalLevel::Ho), Kind::Escalated)
        );
        // The same wait has the same keys (sent once); a new wait has new ones.
        assert_eq!(
            reminders(&w, since + Duration::hours(60))[0].key,
            day[0].key
        );
        let again = Waiting {
            since: since + Duration::hours(70),
            ..w.clone()
        };
        assert_ne!(
            reminders(&again, since + Duration::hours(99))[0].key,
            day[0].key
        );
        let ho = Waiting {
            approval_status: ApprovalStatus::HoApprovalNeeded,
            ..w
        };
        assert_eq!(
            reminders(&ho, since + Duration::hours(49))[1].to,
            To::Admins
        );
    }

    #[test]
    fn an_overdue_turn_tells_its_managers_and_its_vendor_once_per_date() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 2).expect("date");
        let mut t = card();
        t.vendor_id = Some(Uuid::new_v4());
        t.expected_completion_date = Some(today);
        assert!(overdue(&t, today).is_empty(), "due today is not late");
        t.expected_completion_date = today.pred_opt();
        let notices = overdue(&t, today);
        assert_eq!(notices.len(), 2);
        assert_eq!(notices[0].key, notices[1].key);
        t.turn_completion_date = Some(today);
        assert!(overdue(&t, today).is_empty(), "done is not late");
    }
}

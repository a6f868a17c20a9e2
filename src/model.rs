//! Read models shared by the server (which fills them) and the browser (which renders them).
use crate::{Actor, ApprovalStatus, Decimal, Role, Thresholds};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An open turn is overdue this many days after move-out (domain target: ≤ 14 days).
pub const OVERDUE_AFTER_DAYS: i64 = 14;
/// Completed turns stay on the board this long, so "Rent ready" shows recent wins.
pub const COMPLETED_VISIBLE_DAYS: i64 = 30;

/// The signed-in user as pages see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct SessionUser {
    pub id: Uuid,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub role: Role,
    pub vendor_id: Option<Uuid>,
    pub vendor_name: Option<String>,
}

impl SessionUser {
    pub fn actor(&self) -> Actor {
        Actor {
            user_id: self.id,
            role: self.role,
            vendor_id: self.vendor_id,
        }
    }

    pub fn display_name(&self) -> String {
        full_name(self.first_name.as_deref(), self.last_name.as_deref())
            .unwrap_or_else(|| self.email.clone())
    }
}

pub fn full_name(first: Option<&str>, last: Option<&str>) -> Option<String> {
    let name = [first, last]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    (!name.trim().is_empty()).then_some(name)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct Stage {
    pub id: Uuid,
    pub name: String,
    pub display_order: i32,
    pub color: String,
    pub is_amount_required: bool,
    pub is_vendor_required: bool,
    pub requires_approval: bool,
    pub is_complete_stage: bool,
    /// A turn enters this stage only after passing QC.
    #[serde(default)]
    pub requires_qc: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct PropertySummary {
    pub id: Uuid,
    pub property_id: String,
    pub name: String,
    pub street_address: String,
    pub city: Option<String>,
    pub state: Option<String>,
    pub is_core: bool,
    pub is_active: bool,
    pub property_manager_id: Option<Uuid>,
    pub pm_name: Option<String>,
    pub sr_pm_name: Option<String>,
    pub open_turns: i64,
}

/// One card on the turn board. Money fields are `None` where the viewer may not see them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct TurnCard {
    pub id: Uuid,
    pub turn_id: String,
    pub property_id: Uuid,
    pub property_code: String,
    pub property_name: String,
    pub stage_id: Uuid,
    pub pm_id: Option<Uuid>,
    pub pm_name: Option<String>,
    pub vendor_id: Option<Uuid>,
    pub vendor_name: Option<String>,
    pub wo_number: Option<String>,
    pub move_out_date: Option<NaiveDate>,
    pub expected_completion_date: Option<NaiveDate>,
    pub turn_completion_date: Option<NaiveDate>,
    pub turn_amount: Option<Decimal>,
    pub approved_turn_amount: Option<Decimal>,
    pub approval_status: Option<ApprovalStatus>,
    /// The row version (optimistic locking); edits carry it as their base.
    pub version: i32,
    /// The vendor accepted the work.
    #[serde(default)]
    pub vendor_accepted: bool,
    /// The last vendor who declined the work, and why (until another vendor is assigned).
    #[serde(default)]
    pub declined_vendor_id: Option<Uuid>,
    #[serde(default)]
    pub decline_reason: Option<String>,
    /// The turn passed QC (since it last went back to earlier work).
    #[serde(default)]
    pub qc_passed: bool,
    /// What failed at the last QC, until it passes.
    #[serde(default)]
    pub qc_failures: Option<String>,
    /// Why the approver rejected the amount, until it is submitted again.
    #[serde(default)]
    pub rejection_reason: Option<String>,
    /// Since when the turn waits for the approval level it is queued for (kept by the database:
    /// `turns.awaiting_since`); `None` when it waits for no one.
    #[serde(default)]
    pub awaiting_since: Option<DateTime<Utc>>,
}

impl TurnCard {
    /// Vacant days so far (open turn) or turn days (completed turn).
    pub fn days_vacant(&self, today: NaiveDate) -> Option<i64> {
        let end = self.turn_completion_date.unwrap_or(today);
        self.move_out_date.map(|d| (end - d).num_days().max(0))
    }

    pub fn is_overdue(&self, today: NaiveDate) -> bool {
        if self.turn_completion_date.is_some() {
            return false;
        }
        let late_vs_target = self
            .days_vacant(today)
            .is_some_and(|d| d > OVERDUE_AFTER_DAYS);
        let late_vs_plan = self.expected_completion_date.is_some_and(|d| d < today);
        late_vs_target || late_vs_plan
    }

    /// Blank out what this actor may not see (the policy decides, the server calls this).
    pub fn redact_for(mut self, actor: &Actor) -> Self {
        if !actor.sees_turn_financials() {
            self.turn_amount = None;
            self.approved_turn_amount = None;
            self.approval_status = None;
            self.awaiting_since = None;
        }
        self
    }
}

/// A person or company to filter by, as (id, name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Named {
    pub id: Uuid,
    pub name: String,
}

/// Everything the turn board renders, for one viewer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Board {
    /// The viewer (the device keeps a local copy per user).
    pub viewer: Uuid,
    /// The viewer's role (the page's heading and what the cards show depend on it).
    pub role: Role,
    pub stages: Vec<Stage>,
    pub turns: Vec<TurnCard>,
    pub managers: Vec<Named>,
    pub vendors: Vec<Named>,
    /// Vendors a turn may be assigned to (active and approved); empty for roles that cannot assign.
    pub assignable_vendors: Vec<Named>,
    /// The approval thresholds, for the rules the browser runs (defaults for roles that do not
    /// see approvals).
    #[serde(default)]
    pub thresholds: Thresholds,
    /// The board's non-core homes (they need head office sooner).
    #[serde(default)]
    pub non_core_properties: Vec<Uuid>,
    /// The server's date, so "days vacant" agrees between server render and hydration.
    pub today: NaiveDate,
    /// Whom to call about the board's homes: their property managers' work contacts (a vendor
    /// on site calls the manager, not the office).
    #[serde(default)]
    pub contacts: Vec<Contact>,
}

/// One of a user's sessions, as their account page lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct AccountSession {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The session the request came with.
    pub this_one: bool,
}

/// A property manager's work contact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct Contact {
    pub id: Uuid,
    pub name: String,
    pub phone: Option<String>,
    pub email: String,
}

/// Format money as US dollars with thousands separators, e.g. `$12,345.50`.
pub fn format_usd(amount: Decimal) -> String {
    let rounded = amount.round_dp(2);
    let negative = rounded.is_sign_negative() && !rounded.is_zero();
    let text = format!("{:.2}", rounded.abs());
    let (whole, cents) = text.split_once('.').unwrap_or((text.as_str(), "00"));
    let mut grouped = String::new();
    for (i, ch) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!("{}${grouped}.{cents}", if negative { "-" } else { "" })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn card() -> TurnCard {
        TurnCard {
            id: Uuid::nil(),
            turn_id: "T-1".into(),
            property_id: Uuid::nil(),
            property_code: "P-1".into(),
            property_name: "Elm".into(),
            stage_id: Uuid::nil(),
            pm_id: None,
            pm_name: None,
            vendor_id: None,
            vendor_name: None,
            wo_number: None,
            move_out_date: NaiveDate::from_ymd_opt(2026, 11, 1),
            expected_completion_date: None,
            turn_completion_date: None,
            turn_amount: Some(Decimal::new(150000, 2)),
            approved_turn_amount: Some(Decimal::new(140000, 2)),
            approval_status: Some(ApprovalStatus::DfoApproved),
            version: 1,
            ..TurnCard::default()
        }
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).expect("valid date")
    }

    #[test]
    fn overdue_after_the_target_or_the_planned_date() {
        let c = card();
        assert_eq!(c.days_vacant(day(15)), Some(14));
        assert!(!c.is_overdue(day(15)));
        assert!(c.is_overdue(day(16)));
        let planned = TurnCard {
            expected_completion_date: Some(day(5)),
            ..card()
        };
        assert!(planned.is_overdue(day(6)));
        let done = TurnCard {
            turn_completion_date: Some(day(20)),
            ..card()
        };
        assert!(!done.is_overdue(day(28)));
        assert_eq!(done.days_vacant(day(28)), Some(19));
    }

    #[test]
    fn vendors_see_no_money_and_no_approval_state() {
        let vendor = Actor {
            user_id: Uuid::nil(),
            role: Role::Vendor,
            vendor_id: None,
        };
        let pm = Actor {
            role: Role::PropertyManager,
            ..vendor
        };
        let v = card().redact_for(&vendor);
        assert!(card().approved_turn_amount.is_some());
        assert_eq!(
            (v.turn_amount, v.approved_turn_amount, v.approval_status),
            (None, None, None)
        );
        assert_eq!(card().redact_for(&pm), card());
    }

    #[test]
    fn usd_formatting() {
        assert_eq!(format_usd(Decimal::new(123456789, 2)), "$1,234,567.89");
        assert_eq!(format_usd(Decimal::new(5, 1)), "$0.50");
        assert_eq!(format_usd(Decimal::new(-100000, 2)), "-$1,000.00");
        assert_eq!(format_usd(Decimal::new(100, 0)), "$100.00");
    }
}

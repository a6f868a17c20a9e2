//! Approval statuses and the thresholds that decide which level must approve an amount.
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "ssr", derive(sqlx::Type))]
#[cfg_attr(
    feature = "ssr",
    sqlx(type_name = "approval_status", rename_all = "SCREAMING_SNAKE_CASE")
)]
pub enum ApprovalStatus {
    Pending,
    DfoApprovalNeeded,
    DfoApproved,
    HoApprovalNeeded,
    HoApproved,
    Rejected,
}

impl ApprovalStatus {
    pub const ALL: [ApprovalStatus; 6] = [
        ApprovalStatus::Pending,
        ApprovalStatus::DfoApprovalNeeded,
        ApprovalStatus::DfoApproved,
        ApprovalStatus::HoApprovalNeeded,
        ApprovalStatus::HoApproved,
        ApprovalStatus::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "PENDING",
            ApprovalStatus::DfoApprovalNeeded => "DFO_APPROVAL_NEEDED",
            ApprovalStatus::DfoApproved => "DFO_APPROVED",
            ApprovalStatus::HoApprovalNeeded => "HO_APPROVAL_NEEDED",
            ApprovalStatus::HoApproved => "HO_APPROVED",
            ApprovalStatus::Rejected => "REJECTED",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "Pending",
            ApprovalStatus::DfoApprovalNeeded => "Needs DFO approval",
            ApprovalStatus::DfoApproved => "DFO approved",
            ApprovalStatus::HoApprovalNeeded => "Needs HO approval",
            ApprovalStatus::HoApproved => "HO approved",
            ApprovalStatus::Rejected => "Rejected",
        }
    }

    /// The approval level whose queue a turn in this status sits in, if any.
    pub fn awaiting(self) -> Option<ApprovalLevel> {
        match self {
            ApprovalStatus::DfoApprovalNeeded => Some(ApprovalLevel::Dfo),
            ApprovalStatus::HoApprovalNeeded => Some(ApprovalLevel::Ho),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "ssr", derive(sqlx::Type))]
#[cfg_attr(
    feature = "ssr",
    sqlx(type_name = "approval_level", rename_all = "SCREAMING_SNAKE_CASE")
)]
pub enum ApprovalLevel {
    Dfo,
    Ho,
}

impl ApprovalLevel {
    /// The status a turn has while it waits for this level.
    pub fn needed_status(self) -> ApprovalStatus {
        match self {
            ApprovalLevel::Dfo => ApprovalStatus::DfoApprovalNeeded,
            ApprovalLevel::Ho => ApprovalStatus::HoApprovalNeeded,
        }
    }
}

/// Admin-editable limits (the `approval_thresholds` row). Defaults from the domain notes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thresholds {
    /// A PM approves up to this amount alone.
    pub pm_self_approve_limit: Decimal,
    /// Above this, head office approves after the DFO.
    pub ho_threshold: Decimal,
    /// Above this, a non-core home also needs head office.
    pub non_core_threshold: Decimal,
    /// How far (percent) the amount may rise above the approved amount before approval restarts.
    pub change_tolerance_pct: Decimal,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            pm_self_approve_limit: Decimal::new(1000, 0),
            ho_threshold: Decimal::new(5000, 0),
            non_core_threshold: Decimal::new(1000, 0),
            change_tolerance_pct: Decimal::new(10, 0),
        }
    }
}

impl Thresholds {
    /// The highest level that must approve `amount` on a home (`None`: the PM may self-approve).
    pub fn required_level(&self, amount: Decimal, is_core: bool) -> Option<ApprovalLevel> {
        if amount > self.ho_threshold || (!is_core && amount > self.non_core_threshold) {
            Some(ApprovalLevel::Ho)
        } else if amount > self.pm_self_approve_limit {
            Some(ApprovalLevel::Dfo)
        } else {
            None
        }
    }

    /// Whether a new amount has risen far enough above the approved one to need approval again.
    pub fn needs_reapproval(&self, approved: Decimal, new_amount: Decimal) -> bool {
        let allowed = approved + approved * self.change_tolerance_pct / Decimal::new(100, 0);
        new_amount > allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(v: i64) -> Decimal {
        Decimal::new(v, 0)
    }

    #[test]
    fn levels_follow_the_default_thresholds() {
        let t = Thresholds::default();
        assert_eq!(t.required_level(d(1000), true), None);
        assert_eq!(
            t.required_level(Decimal::new(100001, 2), true),
            Some(ApprovalLevel::Dfo)
        );
        assert_eq!(t.required_level(d(5000), true), Some(ApprovalLevel::Dfo));
        assert_eq!(t.required_level(d(5001), true), Some(ApprovalLevel::Ho));
        assert_eq!(t.required_level(d(1001), false), Some(ApprovalLevel::Ho));
        assert_eq!(t.required_level(d(900), false), None);
    }

    #[test]
    fn reapproval_only_beyond_the_tolerance() {
        let t = Thresholds::default();
        assert!(!t.needs_reapproval(d(2000), d(2200)));
        assert!(t.needs_reapproval(d(2000), Decimal::new(220001, 2)));
    }

    #[test]
    fn only_needed_statuses_wait_for_a_level() {
        for s in ApprovalStatus::ALL {
            match s.awaiting() {
                Some(level) => assert_eq!(level.needed_status(), s),
                None => assert!(!matches!(
                    s,
                    ApprovalStatus::DfoApprovalNeeded | ApprovalStatus::HoApprovalNeeded
                )),
            }
        }
    }
}

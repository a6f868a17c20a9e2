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

/// Ordered: a head-office approval is above a DFO approval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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

    /// The most a PM approves alone for a home (what `required_level` lets through).
    pub fn own_limit(&self, is_core: bool) -> Decimal {
        let limit = self.pm_self_approve_limit.min(self.ho_threshold);
        if is_core {
            limit
        } else {
            limit.min(self.non_core_threshold)
        }
    }

    /// Whether a new amount has risen far enough above the approved one to need approval again.
    pub fn needs_reapproval(&self, approved: Decimal, new_amount: Decimal) -> bool {
        let allowed = approved + approved * self.change_tolerance_pct / Decimal::new(100, 0);
        new_amount > allowed
    }

    /// Whether a turn's approval covers what will be spent on it: the larger of the approved and
    /// the current amount, within the tolerance, and approved by every level that amount needs.
    /// (An approver may approve less than was asked; the work still costs the current amount.)
    pub fn covers(
        &self,
        status: Option<ApprovalStatus>,
        approved: Option<Decimal>,
        amount: Option<Decimal>,
        is_core: bool,
    ) -> bool {
        let Some(approved) = approved else {
            return false;
        };
        let granted = match status {
            // An approved amount with no level's decision: the PM approved it within their limit.
            None | Some(ApprovalStatus::Pending) => None,
            Some(ApprovalStatus::DfoApproved) => Some(ApprovalLevel::Dfo),
            Some(ApprovalStatus::HoApproved) => Some(ApprovalLevel::Ho),
            Some(_) => return false,
        };
        let spend = amount.map_or(approved, |a| a.max(approved));
        !self.needs_reapproval(approved, spend) && self.required_level(spend, is_core) <= granted
    }

    /// Where approval stands after `level` approved `approved` on a turn whose amount is
    /// `amount`: a DFO approval of anything that will spend above the HO threshold goes on to
    /// head office.
    pub fn after_approval(
        &self,
        level: ApprovalLevel,
        approved: Decimal,
        amount: Option<Decimal>,
        is_core: bool,
    ) -> ApprovalStatus {
        let spend = amount.map_or(approved, |a| a.max(approved));
        match level {
            ApprovalLevel::Ho => ApprovalStatus::HoApproved,
            ApprovalLevel::Dfo
                if self.required_level(spend, is_core) == Some(ApprovalLevel::Ho) =>
            {
                ApprovalStatus::HoApprovalNeeded
            }
            ApprovalLevel::Dfo => ApprovalStatus::DfoApproved,
        }
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
    fn a_pm_s_own_limit_is_exactly_what_needs_no_level() {
        let cent = Decimal::new(1, 2);
        for (pm, ho, non_core) in [(1000, 5000, 1000), (2000, 5000, 1500), (6000, 5000, 9000)] {
            let t = Thresholds {
                pm_self_approve_limit: d(pm),
                ho_threshold: d(ho),
                non_core_threshold: d(non_core),
                ..Thresholds::default()
            };
            for core in [true, false] {
                let limit = t.own_limit(core);
                assert_eq!(t.required_level(limit, core), None, "{pm} {core}");
                assert!(
                    t.required_level(limit + cent, core).is_some(),
                    "{pm} {core}"
                );
            }
        }
    }

    #[test]
    fn reapproval_only_beyond_the_tolerance() {
        let t = Thresholds::default();
        assert!(!t.needs_reapproval(d(2000), d(2200)));
        assert!(t.needs_reapproval(d(2000), Decimal::new(220001, 2)));
    }

    #[test]
    fn a_dfo_approval_below_the_request_still_goes_to_head_office() {
        let t = Thresholds::default();
        // $9,000 asked, the DFO approves $4,000: the work will cost $9,000.
        let s = t.after_approval(ApprovalLevel::Dfo, d(4000), Some(d(9000)), true);
        assert_eq!(s, ApprovalStatus::HoApprovalNeeded);
        assert!(!t.covers(
            Some(ApprovalStatus::DfoApproved),
            Some(d(4000)),
            Some(d(9000)),
            true
        ));
        assert_eq!(
            t.after_approval(ApprovalLevel::Dfo, d(4000), Some(d(4000)), true),
            ApprovalStatus::DfoApproved
        );
    }

    #[test]
    fn an_increase_within_the_tolerance_that_crosses_a_threshold_needs_that_level() {
        let t = Thresholds::default();
        let dfo = Some(ApprovalStatus::DfoApproved);
        assert!(t.covers(dfo, Some(d(4900)), Some(d(4900)), true));
        // +2% stays within the 10% tolerance but crosses the $5,000 HO threshold.
        assert!(!t.covers(dfo, Some(d(4900)), Some(d(5000) + d(1)), true));
        // Self-approved $1,000 raised to $1,050: within tolerance, but above the PM's limit.
        assert!(!t.covers(
            Some(ApprovalStatus::Pending),
            Some(d(1000)),
            Some(d(1050)),
            true
        ));
        assert!(t.covers(
            Some(ApprovalStatus::Pending),
            Some(d(900)),
            Some(d(950)),
            true
        ));
        let ho = Some(ApprovalStatus::HoApproved);
        assert!(t.covers(ho, Some(d(9000)), Some(d(9900)), true));
        assert!(
            !t.covers(ho, Some(d(9000)), Some(d(9901)), true),
            "beyond the tolerance"
        );
        assert!(!t.covers(
            Some(ApprovalStatus::Rejected),
            Some(d(10)),
            Some(d(10)),
            true
        ));
        assert!(!t.covers(Some(ApprovalStatus::Pending), None, Some(d(10)), true));
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

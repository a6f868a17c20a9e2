//! What an approver needs before deciding: their queue in order, how long each turn has waited,
//! and what to be warned of before approving an amount. The browser shows these; the server's
//! rules (`rules::TurnRules::decide`) decide what an approval does.
use crate::model::TurnCard;
use crate::{ApprovalLevel, Decimal, Role, Thresholds};
use chrono::NaiveDate;

/// The approval level a role decides (admins decide any: they have no queue of their own).
pub fn level_of(role: Role) -> Option<ApprovalLevel> {
    match role {
        Role::DfoApprover => Some(ApprovalLevel::Dfo),
        Role::HoApprover => Some(ApprovalLevel::Ho),
        _ => None,
    }
}

/// Whole days a turn has waited for its approver by `today` (0 on the day it was asked).
pub fn days_waiting(card: &TurnCard, today: NaiveDate) -> Option<i64> {
    card.awaiting_since
        .map(|since| (today - since.date_naive()).num_days().max(0))
}

/// The turns waiting for `level`, oldest request first; among those asked the same day, the
/// longest vacant first (an empty home costs rent every day). A turn this device has just sent
/// for approval (no time from the server yet) comes last.
pub fn queue<'a>(
    cards: impl IntoIterator<Item = &'a TurnCard>,
    level: ApprovalLevel,
    today: NaiveDate,
) -> Vec<&'a TurnCard> {
    let mut waiting: Vec<&TurnCard> = cards
        .into_iter()
        .filter(|c| c.approval_status.and_then(|s| s.awaiting()) == Some(level))
        .collect();
    waiting.sort_by_key(|c| {
        (
            c.awaiting_since.is_none(),
            c.awaiting_since.map(|s| s.date_naive()),
            std::cmp::Reverse(c.days_vacant(today)),
            c.turn_id.clone(),
        )
    });
    waiting
}

/// Something an approver should know before approving an amount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caution {
    /// More than the manager asked for.
    AboveRequest { requested: Decimal, by: Decimal },
    /// What the turn will cost needs head office too: the DFO's approval sends it on.
    NeedsHeadOffice,
}

impl Caution {
    pub fn message(&self) -> String {
        match self {
            Caution::AboveRequest { requested, by } => format!(
                "This is {} more than the {} requested.",
                crate::model::format_usd(*by),
                crate::model::format_usd(*requested)
            ),
            Caution::NeedsHeadOffice => "Above your approval level: after you approve, it goes to \
                                         head office to decide."
                .into(),
        }
    }
}

/// What to warn `level` of before it approves `amount` on a turn whose amount is `requested`.
pub fn cautions(
    level: ApprovalLevel,
    amount: Decimal,
    requested: Option<Decimal>,
    thresholds: &Thresholds,
    is_core: bool,
) -> Vec<Caution> {
    let mut found = Vec::new();
    if let Some(requested) = requested.filter(|r| amount > *r) {
        found.push(Caution::AboveRequest {
            requested,
            by: amount - requested,
        });
    }
    // What will be spent is the larger of the two (see `Thresholds::covers`).
    let spend = requested.map_or(amount, |r| r.max(amount));
    if level < ApprovalLevel::Ho
        && thresholds.required_level(spend, is_core) == Some(ApprovalLevel::Ho)
    {
        found.push(Caution::NeedsHeadOffice);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ApprovalStatus;
    use chrono::{DateTime, Utc};

    fn d(v: i64) -> Decimal {
        Decimal::new(v, 0)
    }

    fn day(n: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, n).expect("date")
    }

    fn at(n: u32, hour: u32) -> Option<DateTime<Utc>> {
        day(n).and_hms_opt(hour, 0, 0).map(|t| t.and_utc())
    }

    fn waiting(id: &str, since: Option<DateTime<Utc>>, moved_out: u32) -> TurnCard {
        TurnCard {
            turn_id: id.into(),
            approval_status: Some(ApprovalStatus::DfoApprovalNeeded),
            awaiting_since: since,
            move_out_date: Some(day(moved_out)),
            ..TurnCard::default()
        }
    }

    #[test]
    fn the_queue_is_oldest_request_first_then_longest_vacant() {
        let cards = [
            waiting("new", at(9, 8), 1),
            waiting("just-sent", None, 1),
            waiting("old", at(2, 17), 2),
            waiting("same-day-vacant-longer", at(9, 7), 1),
            waiting("same-day", at(9, 6), 5),
            TurnCard {
                approval_status: Some(ApprovalStatus::HoApprovalNeeded),
                ..waiting("head-office", at(1, 1), 1)
            },
            TurnCard {
                approval_status: Some(ApprovalStatus::DfoApproved),
                ..waiting("decided", at(1, 1), 1)
            },
        ];
        let order: Vec<&str> = queue(&cards, ApprovalLevel::Dfo, day(10))
            .into_iter()
            .map(|c| c.turn_id.as_str())
            .collect();
        assert_eq!(
            order,
            [
                "old",
                "new",
                "same-day-vacant-longer",
                "same-day",
                "just-sent"
            ]
        );
        assert_eq!(days_waiting(&cards[2], day(10)), Some(8));
        assert_eq!(days_waiting(&cards[0], day(9)), Some(0));
        assert_eq!(days_waiting(&cards[1], day(9)), None);
    }

    #[test]
    fn approving_more_than_asked_or_above_the_dfo_level_warns() {
        let t = Thresholds::default();
        let dfo = ApprovalLevel::Dfo;
        assert_eq!(cautions(dfo, d(3000), Some(d(3457)), &t, true), vec![]);
        assert_eq!(
            cautions(dfo, d(9999), Some(d(3457)), &t, true),
            vec![
                Caution::AboveRequest {
                    requested: d(3457),
                    by: d(6542)
                },
                Caution::NeedsHeadOffice
            ]
        );
        // Approving less than a head-office-sized request still sends it on.
        assert_eq!(
            cautions(dfo, d(4000), Some(d(9000)), &t, true),
            vec![Caution::NeedsHeadOffice]
        );
        assert_eq!(
            cautions(dfo, d(1500), Some(d(1500)), &t, false),
            vec![Caution::NeedsHeadOffice],
            "a non-core home needs head office sooner"
        );
        assert_eq!(
            cautions(ApprovalLevel::Ho, d(9000), Some(d(9000)), &t, true),
            vec![]
        );
        assert_eq!(
            Caution::AboveRequest {
                requested: d(3457),
                by: d(6542)
            }
            .message(),
            "This is $6,542.00 more than the $3,457.00 requested."
        );
    }
}

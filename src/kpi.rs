//! The numbers the business runs on (see the domain notes): how long turns take, how long homes
//! stand empty, what turns cost, how long approvals wait, where work stands, which vendors finish
//! on time. The server computes them in SQL for a viewer's portfolio; the dashboard draws them.
use crate::Decimal;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How far back the dashboard looks when no range is asked for.
pub const DEFAULT_DAYS: u64 = 90;

/// Turn-day and vacancy buckets: a week, two (the target), three, a month, more.
pub const BUCKETS: [(i32, Option<i32>, &str); 5] = [
    (0, Some(7), "0–7 days"),
    (8, Some(14), "8–14 days"),
    (15, Some(21), "15–21 days"),
    (22, Some(30), "22–30 days"),
    (31, None, "31+ days"),
];

/// The dashboard's filters, as the URL carries them (`?pm=…&senior=…&core=…&from=…&to=…`).
/// They narrow the viewer's portfolio; they never widen it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KpiFilter {
    pub pm: Option<Uuid>,
    pub senior: Option<Uuid>,
    /// Core homes only (`Some(true)`), non-core only, or both.
    pub core: Option<bool>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

impl KpiFilter {
    /// The date range the numbers cover: the one asked for, else the last [`DEFAULT_DAYS`] to
    /// `today`; a range given backwards is read forwards.
    pub fn range(&self, today: NaiveDate) -> (NaiveDate, NaiveDate) {
        let to = self.to.unwrap_or(today);
        let from = self
            .from
            .unwrap_or_else(|| to - chrono::Days::new(DEFAULT_DAYS));
        (from.min(to), from.max(to))
    }
}

/// Counts per bucket of [`BUCKETS`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub counts: Vec<i64>,
    pub median: Option<f64>,
    pub average: Option<f64>,
}

impl Spread {
    pub fn total(&self) -> i64 {
        self.counts.iter().sum()
    }
}

/// One week of completed turns: their average turn days.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Week {
    /// The Monday the week starts.
    pub start: NaiveDate,
    pub turns: i64,
    pub average_days: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Completed turns with an amount.
    pub turns: i64,
    pub amount: Decimal,
    pub approved: Decimal,
    /// Amount above what was approved, summed over turns with both.
    pub variance: Decimal,
}

impl Cost {
    pub fn per_turn(&self) -> Option<Decimal> {
        (self.turns > 0).then(|| (self.amount / Decimal::from(self.turns)).round_dp(2))
    }
}

/// How long one approval level took to decide.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cycle {
    pub level: crate::ApprovalLevel,
    pub decisions: i64,
    pub median_hours: Option<f64>,
    pub average_hours: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageCount {
    pub stage: String,
    pub color: String,
    pub turns: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VendorOnTime {
    pub vendor: String,
    /// Completed turns that had an expected completion date.
    pub completed: i64,
    /// Of those, completed by it.
    pub on_time: i64,
}

impl VendorOnTime {
    pub fn rate(&self) -> f64 {
        if self.completed == 0 {
            0.0
        } else {
            self.on_time as f64 / self.completed as f64
        }
    }
}

/// Everything the dashboard shows, for one viewer and filter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dashboard {
    pub filter: KpiFilter,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Turn days (move-out → completion) of turns completed in the range.
    pub turn_days: Spread,
    pub trend: Vec<Week>,
    /// Days vacant so far of the open turns (today; the range does not apply).
    pub vacant: Spread,
    /// Open turns past the target or their expected date (as `TurnCard::is_overdue`).
    pub overdue: i64,
    pub cost: Cost,
    pub cycles: Vec<Cycle>,
    /// Open turns per stage, in stage order.
    pub stages: Vec<StageCount>,
    pub vendors: Vec<VendorOnTime>,
    /// Whom the viewer may filter by.
    pub managers: Vec<crate::model::Named>,
    pub seniors: Vec<crate::model::Named>,
}

/// The bucket of [`BUCKETS`] a number of days falls in.
pub fn bucket(days: i64) -> usize {
    BUCKETS
        .iter()
        .position(|(_, hi, _)| hi.is_none_or(|hi| days <= hi as i64))
        .unwrap_or(BUCKETS.len() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_day_once() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(7), 0);
        assert_eq!(bucket(8), 1);
        assert_eq!(bucket(14), 1);
        assert_eq!(bucket(30), 3);
        assert_eq!(bucket(31), 4);
        assert_eq!(bucket(400), 4);
    }

    #[test]
    fn the_range_defaults_to_the_last_ninety_days_and_reads_forwards() {
        let day = |m, d| NaiveDate::from_ymd_opt(2026, m, d).expect("date");
        assert_eq!(
            KpiFilter::default().range(day(12, 3)),
            (day(9, 4), day(12, 3))
        );
        let backwards = KpiFilter {
            from: Some(day(12, 1)),
            to: Some(day(11, 1)),
            ..KpiFilter::default()
        };
        assert_eq!(backwards.range(day(12, 3)), (day(11, 1), day(12, 1)));
    }
}

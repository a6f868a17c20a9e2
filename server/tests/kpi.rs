//! The dashboard's numbers against an independent reckoning: every turn (and decision) read
//! plainly and counted here in Rust, for an admin (the whole portfolio) and a property manager
//! (their homes), with and without filters, on the demo data plus generated turns.
use chrono::{Datelike, Days, NaiveDate, Utc};
use sqlx::PgPool;
use std::collections::BTreeMap;
use turns::kpi::{bucket, Dashboard, KpiFilter, Spread};
use turns::{Actor, ApprovalLevel, Decimal};
use turns_server::generate::{generate, GenerateOptions};
use turns_server::kpi::dashboard;
use turns_server::testing::{actor, demo_state};
use uuid::Uuid;

#[derive(sqlx::FromRow)]
struct Row {
    move_out: Option<NaiveDate>,
    done: Option<NaiveDate>,
    expected: Option<NaiveDate>,
    amount: Option<Decimal>,
    approved: Option<Decimal>,
    stage: String,
    stage_order: i32,
    complete_stage: bool,
    vendor: Option<String>,
    is_core: bool,
    pm: Option<Uuid>,
    sr: Option<Uuid>,
}

#[derive(sqlx::FromRow)]
struct Decision {
    level: ApprovalLevel,
    decided: chrono::DateTime<Utc>,
    asked: Option<chrono::DateTime<Utc>>,
    pm: Option<Uuid>,
    sr: Option<Uuid>,
    is_core: bool,
}

/// The portfolio a viewer sees, as the policy says (all, or a manager's homes).
fn sees(viewer: &Actor, pm: Option<Uuid>, sr: Option<Uuid>) -> bool {
    match viewer.role {
        turns::Role::PropertyManager => pm == Some(viewer.user_id),
        turns::Role::SrPropertyManager => pm == Some(viewer.user_id) || sr == Some(viewer.user_id),
        _ => true,
    }
}

fn kept(f: &KpiFilter, pm: Option<Uuid>, sr: Option<Uuid>, is_core: bool) -> bool {
    f.pm.is_none_or(|want| pm == Some(want))
        && f.senior.is_none_or(|want| sr == Some(want))
        && f.core.is_none_or(|want| is_core == want)
}

/// `percentile_cont(0.5)`: the middle value, or the mean of the two middle ones.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

fn spread_of(days: &[i64]) -> Spread {
    let mut counts = vec![0; 5];
    for d in days {
        counts[bucket(*d)] += 1;
    }
    let as_f64: Vec<f64> = days.iter().map(|d| *d as f64).collect();
    Spread {
        counts,
        median: median(as_f64.clone()),
        average: mean(&as_f64),
    }
}

fn close(a: Option<f64>, b: Option<f64>, what: &str) {
    match (a, b) {
        (Some(a), Some(b)) => assert!((a - b).abs() < 1e-6, "{what}: {a} vs {b}"),
        _ => assert_eq!(a.is_some(), b.is_some(), "{what}: {a:?} vs {b:?}"),
    }
}

fn same_spread(got: &Spread, want: &Spread, what: &str) {
    assert_eq!(got.counts, want.counts, "{what} buckets");
    close(got.median, want.median, what);
    close(got.average, want.average, what);
}

async fn check(pool: &PgPool, viewer: &Actor, filter: KpiFilter, today: NaiveDate) -> Dashboard {
    let d = dashboard(pool, viewer, filter.clone(), today)
        .await
        .expect("dashboard")
        .expect("a portfolio");
    let (from, to) = filter.range(today);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT t.move_out_date AS move_out, t.turn_completion_date AS done,
                t.expected_completion_date AS expected, t.turn_amount AS amount,
                t.approved_turn_amount AS approved, s.name AS stage, s.display_order AS stage_order,
                s.is_complete_stage AS complete_stage, v.name AS vendor, p.is_core,
                p.property_manager_id AS pm, p.sr_property_manager_id AS sr
           FROM turns t JOIN properties p ON p.id = t.property_id
           JOIN turn_stages s ON s.id = t.stage_id LEFT JOIN vendors v ON v.id = t.vendor_id
          WHERE t.is_active",
    )
    .fetch_all(pool)
    .await
    .expect("turns");
    let mine: Vec<&Row> = rows
        .iter()
        .filter(|r| sees(viewer, r.pm, r.sr) && kept(&filter, r.pm, r.sr, r.is_core))
        .collect();
    assert!(!mine.is_empty(), "the check has turns to count");
    let in_range = |r: &&&Row| r.done.is_some_and(|d| d >= from && d <= to);
    let completed: Vec<&&Row> = mine.iter().filter(in_range).collect();

    // Turn days and their weekly trend.
    let turn_days: Vec<(NaiveDate, i64)> = completed
        .iter()
        .filter_map(|r| Some((r.done?, (r.done? - r.move_out?).num_days().max(0))))
        .collect();
    let days: Vec<i64> = turn_days.iter().map(|(_, d)| *d).collect();
    same_spread(&d.turn_days, &spread_of(&days), "turn days");
    assert!(d.turn_days.total() > 0, "some turns completed in the range");
    let mut weeks: BTreeMap<NaiveDate, Vec<f64>> = BTreeMap::new();
    for (done, days) in &turn_days {
        let monday = *done - Days::new(done.weekday().num_days_from_monday() as u64);
        weeks.entry(monday).or_default().push(*days as f64);
    }
    assert_eq!(d.trend.len(), weeks.len(), "weeks");
    for (week, (start, values)) in d.trend.iter().zip(&weeks) {
        assert_eq!((week.start, week.turns), (*start, values.len() as i64));
        close(Some(week.average_days), mean(values), "a week's average");
    }

    // Open turns: days vacant, overdue.
    let open: Vec<&&Row> = mine.iter().filter(|r| r.done.is_none()).collect();
    let vacant: Vec<i64> = open
        .iter()
        .filter_map(|r| r.move_out.filter(|m| *m <= today))
        .map(|m| (today - m).num_days())
        .collect();
    same_spread(&d.vacant, &spread_of(&vacant), "days vacant");
    let overdue = open
        .iter()
        .filter(|r| {
            r.move_out.is_some_and(|m| (today - m).num_days() > 14)
                || r.expected.is_some_and(|e| e < today)
        })
        .count();
    assert_eq!(d.overdue, overdue as i64, "overdue");

    // Cost.
    let costed: Vec<&&&Row> = completed.iter().filter(|r| r.amount.is_some()).collect();
    assert_eq!(d.cost.turns, costed.len() as i64);
    let sum = |f: &dyn Fn(&Row) -> Option<Decimal>| -> Decimal {
        costed.iter().filter_map(|r| f(r)).sum()
    };
    assert_eq!(d.cost.amount, sum(&|r| r.amount));
    assert_eq!(d.cost.approved, sum(&|r| r.approved));
    assert_eq!(
        d.cost.variance,
        sum(&|r| Some(r.amount? - r.approved?)),
        "variance"
    );

    // Open turns per stage (every open stage, in order, even when empty).
    let stages: Vec<(String, i32)> =
        sqlx::query_as("SELECT name, display_order FROM turn_stages WHERE is_active AND NOT is_complete_stage ORDER BY display_order")
            .fetch_all(pool)
            .await
            .expect("stages");
    let per_stage: Vec<(String, i64)> = stages
        .iter()
        .map(|(name, order)| {
            let n = open
                .iter()
                .filter(|r| r.stage_order == *order && !r.complete_stage)
                .count();
            (name.clone(), n as i64)
        })
        .collect();
    let got: Vec<(String, i64)> = d
        .stages
        .iter()
        .map(|s| (s.stage.clone(), s.turns))
        .collect();
    assert_eq!(got, per_stage, "work in progress");
    assert!(mine.iter().all(|r| !r.stage.is_empty()));

    // Vendors on time.
    let mut vendors: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for r in &completed {
        if let (Some(v), Some(expected), Some(done)) = (&r.vendor, r.expected, r.done) {
            let e = vendors.entry(v.clone()).or_default();
            e.0 += 1;
            e.1 += i64::from(done <= expected);
        }
    }
    let got: BTreeMap<String, (i64, i64)> = d
        .vendors
        .iter()
        .map(|v| (v.vendor.clone(), (v.completed, v.on_time)))
        .collect();
    assert_eq!(got, vendors, "vendors on time");

    // Approval cycle time per level.
    let decisions: Vec<Decision> = sqlx::query_as(
        "SELECT d.level, d.decided_at AS decided, d.asked_at AS asked, p.property_manager_id AS pm,
                p.sr_property_manager_id AS sr, p.is_core
           FROM approval_decisions d JOIN turns t ON t.id = d.turn_id
           JOIN properties p ON p.id = t.property_id WHERE t.is_active",
    )
    .fetch_all(pool)
    .await
    .expect("decisions");
    for level in [ApprovalLevel::Dfo, ApprovalLevel::Ho] {
        let these: Vec<&Decision> = decisions
            .iter()
            .filter(|x| {
                x.level == level
                    && sees(viewer, x.pm, x.sr)
                    && kept(&filter, x.pm, x.sr, x.is_core)
                    && (from..=to).contains(&x.decided.date_naive())
            })
            .collect();
        let hours: Vec<f64> = these
            .iter()
            .filter_map(|x| Some((x.decided - x.asked?).num_milliseconds() as f64 / 3_600_000.0))
            .collect();
        let got = d.cycles.iter().find(|c| c.level == level);
        assert_eq!(
            got.map_or(0, |c| c.decisions),
            these.len() as i64,
            "{level:?} decisions"
        );
        if let Some(c) = got {
            close(c.median_hours, median(hours.clone()), "cycle median");
            close(c.average_hours, mean(&hours), "cycle average");
        }
    }
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_numbers_match_an_independent_count_for_two_roles() {
    let state = demo_state().await;
    let pool = &state.pool;
    let today = Utc::now().date_naive();
    let report = generate(
        pool,
        &GenerateOptions {
            properties: 150,
            turns: 1500,
            managers: 6,
            seed: 11,
        },
        today,
    )
    .await
    .expect("generate");

    let admin = actor(pool, "admin@turns.demo").await;
    // The last year, so generated history counts too.
    let year = KpiFilter {
        from: Some(today - Days::new(365)),
        ..KpiFilter::default()
    };
    let all = check(pool, &admin, year.clone(), today).await;
    assert!(
        all.cycles.iter().any(|c| c.decisions > 0),
        "the demo's decisions count"
    );
    assert!(
        all.vendors.iter().any(|v| v.on_time < v.completed),
        "someone was late"
    );
    // Narrowed: non-core homes, one senior PM's team.
    let senior = all.seniors.first().expect("a senior PM").id;
    check(
        pool,
        &admin,
        KpiFilter {
            core: Some(false),
            senior: Some(senior),
            ..year.clone()
        },
        today,
    )
    .await;
    // The default range.
    check(pool, &admin, KpiFilter::default(), today).await;

    // A generated PM sees their own homes only, whatever the URL asks.
    let pm = actor(pool, &report.first_manager).await;
    let own = check(pool, &pm, year.clone(), today).await;
    assert_eq!(
        own.managers.len(),
        1,
        "a PM's filter offers only themselves"
    );
    let others = KpiFilter {
        pm: Some(admin.user_id),
        ..year
    };
    let none = dashboard(pool, &pm, others, today)
        .await
        .expect("dashboard")
        .expect("a portfolio");
    assert_eq!(
        none.turn_days.total() + none.vacant.total(),
        0,
        "no widening"
    );

    // Vendors and approvers have no portfolio.
    for email in ["vendor@turns.demo", "dfo@turns.demo"] {
        let who = actor(pool, email).await;
        assert!(dashboard(pool, &who, KpiFilter::default(), today)
            .await
            .expect("dashboard")
            .is_none());
    }
}

//! Large data sets for benchmarks: properties and turns streamed in with `COPY`, spread over
//! generated property managers. Needs the stage list and vendors (the demo seed provides them).
use crate::auth::hash_password;
use crate::error::ApiError;
use crate::seed::DEMO_PASSWORD;
use chrono::{Days, NaiveDate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::PgPool;
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use uuid::Uuid;

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub properties: usize,
    pub turns: usize,
    pub managers: usize,
    pub seed: u64,
}

#[derive(Debug)]
pub struct GenerateReport {
    pub prefix: String,
    pub users: usize,
    pub properties: usize,
    pub turns: usize,
    pub open_turns: usize,
    pub elapsed: Duration,
    /// The first generated PM's email (password: the demo password), for benchmarks.
    pub first_manager: String,
}

impl GenerateReport {
    pub fn rows_per_sec(&self) -> f64 {
        (self.users + self.properties + self.turns) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// COPY text format: tab-separated, `\N` for NULL. Our values never contain tabs or newlines.
fn field<T: std::fmt::Display>(buf: &mut String, v: Option<T>, last: bool) {
    match v {
        Some(v) => {
            let _ = write!(buf, "{v}");
        }
        None => buf.push_str("\\N"),
    }
    buf.push(if last { '\n' } else { '\t' });
}

async fn copy_rows(pool: &PgPool, statement: &str, data: String) -> Result<(), ApiError> {
    let mut conn = pool.acquire().await?;
    let mut copy = conn.copy_in_raw(statement).await?;
    for chunk in data.as_bytes().chunks(1 << 20) {
        copy.send(chunk).await?;
    }
    copy.finish().await?;
    Ok(())
}

pub async fn generate(
    pool: &PgPool,
    opts: &GenerateOptions,
    today: NaiveDate,
) -> Result<GenerateReport, ApiError> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let prefix = format!("G{:04x}", rng.gen::<u16>());
    let stages: Vec<(Uuid, bool)> = sqlx::query_as(
        "SELECT id, is_complete_stage FROM turn_stages WHERE is_active ORDER BY display_order",
    )
    .fetch_all(pool)
    .await?;
    let vendors: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM vendors WHERE is_active AND is_approved")
            .fetch_all(pool)
            .await?;
    let Some(&(complete_stage, _)) = stages.iter().find(|(_, complete)| *complete) else {
        return Err(ApiError::BadRequest(
            "no complete stage: load the demo data first".into(),
        ));
    };
    let open_stages: Vec<Uuid> = stages
        .iter()
        .filter(|(_, c)| !c)
        .map(|(id, _)| *id)
        .collect();
    if vendors.is_empty() || open_stages.is_empty() {
        return Err(ApiError::BadRequest(
            "no vendors or stages: load the demo data first".into(),
        ));
    }

    // Managers: one senior PM per five PMs; all share one hash of the demo password.
    let hash = hash_password(DEMO_PASSWORD).await?;
    let managers = opts.managers.max(1);
    let seniors = managers.div_ceil(5);
    let mut users = String::new();
    let mut credentials = String::new();
    let mut pm_ids = Vec::new();
    let mut senior_ids = Vec::new();
    let lower = prefix.to_lowercase();
    for i in 0..seniors + managers {
        let id = Uuid::new_v4();
        let (role, email) = if i < seniors {
            senior_ids.push(id);
            (
                "SR_PROPERTY_MANAGER",
                format!("{lower}-srpm{}@turns.demo", i + 1),
            )
        } else {
            pm_ids.push(id);
            (
                "PROPERTY_MANAGER",
                format!("{lower}-pm{}@turns.demo", i - seniors + 1),
            )
        };
        for v in [
            id.to_string(),
            email,
            "Gen".into(),
            format!("Manager {}", i + 1),
        ] {
            field(&mut users, Some(v), false);
        }
        field(&mut users, Some(role), true);
        field(&mut credentials, Some(id), false);
        field(&mut credentials, Some(&hash), true);
    }
    copy_rows(
        pool,
        "COPY users (id, email, first_name, last_name, role) FROM STDIN",
        users,
    )
    .await?;
    copy_rows(
        pool,
        "COPY user_credentials (user_id, password_hash) FROM STDIN",
        credentials,
    )
    .await?;

    let mut props = String::new();
    let mut property_ids = Vec::with_capacity(opts.properties);
    for n in 0..opts.properties {
        let id = Uuid::new_v4();
        property_ids.push(id);
        let pm = n % pm_ids.len();
        field(&mut props, Some(id), false);
        field(&mut props, Some(format!("{prefix}-P{n:06}")), false);
        field(&mut props, Some(format!("Generated Home {n}")), false);
        field(&mut props, Some(format!("{} Bench St", 1 + n)), false);
        field(&mut props, Some("Benchville"), false);
        field(&mut props, Some(n % 6 != 0), false);
        field(&mut props, Some(pm_ids[pm]), false);
        field(&mut props, Some(senior_ids[pm / 5]), true);
    }
    copy_rows(
        pool,
        "COPY properties (id, property_id, name, street_address, city, is_core, property_manager_id, sr_property_manager_id) FROM STDIN",
        props,
    )
    .await?;

    // About one turn in ten is open (the newest of its home); the rest are history.
    let mut turns = String::new();
    let mut open_turns = 0;
    let per_property = opts.turns.div_ceil(opts.properties.max(1)).max(1);
    for n in 0..opts.turns {
        let property = property_ids[n % property_ids.len().max(1)];
        let generation = n / property_ids.len().max(1);
        let open = generation + 1 == per_property && rng.gen_bool(0.5);
        let days_ago = if open {
            rng.gen_range(1..30)
        } else {
            40 + (per_property - generation) as u64 * 60
        };
        let move_out = today - Days::new(days_ago);
        let amount = rng.gen_range(400..6000) * 100;
        // A finished turn was planned to take a week or two and took 3-19 days; its approval
        // was sometimes trimmed (the amount a little above what was approved).
        let (stage, completion, expected, approved, status) = if open {
            open_turns += 1;
            let stage = open_stages[rng.gen_range(0..open_stages.len())];
            (stage, None, None, None, "PENDING")
        } else {
            (
                complete_stage,
                Some(move_out + Days::new(rng.gen_range(3..20))),
                Some(move_out + Days::new(rng.gen_range(7..18))),
                Some(amount - rng.gen_range(0..4) * 2500),
                "DFO_APPROVED",
            )
        };
        field(&mut turns, Some(Uuid::new_v4()), false);
        field(&mut turns, Some(format!("{prefix}-T{n:07}")), false);
        field(&mut turns, Some(property), false);
        field(&mut turns, Some(stage), false);
        field(&mut turns, Some(move_out), false);
        field(
            &mut turns,
            Some(format!("{}.{:02}", amount / 100, amount % 100)),
            false,
        );
        field(
            &mut turns,
            approved.map(|a| format!("{}.{:02}", a / 100, a % 100)),
            false,
        );
        field(&mut turns, Some(vendors[n % vendors.len()]), false);
        field(&mut turns, completion, false);
        field(&mut turns, expected, false);
        field(&mut turns, Some(status), true);
    }
    copy_rows(
        pool,
        "COPY turns (id, turn_id, property_id, stage_id, move_out_date, turn_amount, approved_turn_amount, vendor_id, turn_completion_date, expected_completion_date, approval_status) FROM STDIN",
        turns,
    )
    .await?;
    sqlx::raw_sql("ANALYZE users; ANALYZE properties; ANALYZE turns")
        .execute(pool)
        .await?;

    Ok(GenerateReport {
        first_manager: format!("{lower}-pm1@turns.demo"),
        prefix,
        users: seniors + managers,
        properties: opts.properties,
        turns: opts.turns,
        open_turns,
        elapsed: started.elapsed(),
    })
}

//! The demo data set: one user per role, vendors with their users, the stage list, ~40 properties
//! over 3 PMs, ~60 turns across stages and approval states (a few overdue). Loaded once, into a
//! database with no users.
use crate::auth::hash_password;
use crate::error::ApiError;
use chrono::{Days, NaiveDate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use sqlx::{PgPool, Postgres, Transaction};
use turns::{ApprovalStatus, Role, Thresholds};
use uuid::Uuid;

/// Every demo user's password (documented in the README).
pub const DEMO_PASSWORD: &str = "turns-demo";

/// One login per role, printed at start.
pub const DEMO_LOGINS: [(&str, Role); 9] = [
    ("superadmin@turns.demo", Role::SuperAdmin),
    ("admin@turns.demo", Role::Admin),
    ("pm@turns.demo", Role::PropertyManager),
    ("srpm@turns.demo", Role::SrPropertyManager),
    ("vendor@turns.demo", Role::Vendor),
    ("inspector@turns.demo", Role::Inspector),
    ("dfo@turns.demo", Role::DfoApprover),
    ("ho@turns.demo", Role::HoApprover),
    ("user@turns.demo", Role::User),
];

/// Why the demo's rejected turn was rejected (on the turn and in its decision).
const REJECTION: &str = "Scope includes items the resident damage deposit should cover.";

/// (name, colour, amount required, vendor required, requires approval, complete)
pub const STAGES: [(&str, &str, bool, bool, bool, bool); 7] = [
    ("Notice", "#64748b", false, false, false, false),
    ("Move-out inspection", "#0ea5e9", false, false, false, false),
    ("Scope & bid", "#8b5cf6", false, false, false, false),
    ("Approval", "#f59e0b", true, false, true, false),
    ("In progress", "#3b82f6", true, true, false, false),
    ("QC inspection", "#14b8a6", true, true, false, false),
    ("Rent ready", "#22c55e", true, true, false, true),
];

/// (name, trade, approved)
const VENDORS: [(&str, &str, bool); 5] = [
    ("Brightline Painting", "Painting", true),
    ("FloorPro Flooring", "Flooring", true),
    ("Sparkle Make-Ready Cleaning", "Cleaning", true),
    ("Handy Fix Maintenance", "General maintenance", true),
    ("Pipeline Plumbing", "Plumbing", false),
];

const STREETS: [&str; 10] = [
    "Maple", "Oak", "Cedar", "Willow", "Birch", "Aspen", "Juniper", "Magnolia", "Sycamore",
    "Hickory",
];
const CITIES: [(&str, &str); 5] = [
    ("Atlanta", "GA"),
    ("Charlotte", "NC"),
    ("Tampa", "FL"),
    ("Dallas", "TX"),
    ("Phoenix", "AZ"),
];

/// Load the demo set if the database has no users yet. Returns whether it loaded.
pub async fn seed_demo_if_empty(pool: &PgPool, today: NaiveDate) -> Result<bool, ApiError> {
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(pool)
        .await?;
    if users > 0 {
        return Ok(false);
    }
    let mut tx = pool.begin().await?;
    // Serialise concurrent starters: the second one finds users and stops.
    sqlx::query("LOCK TABLE users IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&mut *tx)
        .await?;
    if users > 0 {
        return Ok(false);
    }
    seed(&mut tx, today).await?;
    tx.commit().await?;
    Ok(true)
}

/// (name, bedrooms, bathrooms, max sqft, lines: (category, description, quantity, unit cost))
type TemplateSpec = (
    &'static str,
    Option<i64>,
    Option<i64>,
    Option<i32>,
    &'static [(&'static str, &'static str, &'static str, &'static str)],
);

/// Cost templates by home size (bathrooms in tenths, as `numeric(3,1)` holds them).
const TEMPLATES: [TemplateSpec; 4] = [
    (
        "2 bed / 1 bath standard turn",
        Some(2),
        Some(10),
        Some(1400),
        &[
            ("Paint", "Interior walls and ceilings", "1", "1150.00"),
            ("Cleaning", "Deep clean, move-out", "1", "275.00"),
            ("Flooring", "Carpet, bedrooms (sq yd)", "40", "28.50"),
            ("Doors & hardware", "Re-key locks", "1", "95.00"),
        ],
    ),
    (
        "3 bed / 1.5 bath standard turn",
        Some(3),
        Some(15),
        None,
        &[
            ("Paint", "Interior walls and ceilings", "1", "1650.00"),
            ("Cleaning", "Deep clean, move-out", "1", "350.00"),
            ("Flooring", "Carpet, bedrooms (sq yd)", "60", "28.50"),
            (
                "Appliances",
                "Service range and refrigerator",
                "1",
                "180.00",
            ),
            ("Doors & hardware", "Re-key locks", "1", "95.00"),
        ],
    ),
    (
        "4 bed / 2 bath standard turn",
        Some(4),
        Some(20),
        None,
        &[
            ("Paint", "Interior walls and ceilings", "1", "2100.00"),
            ("Cleaning", "Deep clean, move-out", "1", "425.00"),
            ("Flooring", "Carpet, bedrooms (sq yd)", "80", "28.50"),
            ("Landscaping", "Yard clean-up", "1", "240.00"),
            ("Doors & hardware", "Re-key locks", "1", "95.00"),
        ],
    ),
    (
        "Light refresh (any home)",
        None,
        None,
        None,
        &[
            ("Paint", "Touch-up paint", "6", "45.00"),
            ("Cleaning", "Standard clean", "1", "185.00"),
        ],
    ),
];

/// What the demo's inspector checks in the QC stage.
const QC_CHECKLIST: [&str; 6] = [
    "Walls and ceilings painted, no marks",
    "Floors clean and undamaged",
    "Appliances work",
    "No leaks under sinks; toilets flush",
    "Locks re-keyed; keys work",
    "Smoke and CO detectors tested",
];

async fn seed_checklist(tx: &mut Transaction<'_, Postgres>, stage: Uuid) -> Result<(), ApiError> {
    for (i, label) in QC_CHECKLIST.iter().enumerate() {
        sqlx::query(
            "INSERT INTO qc_checklist_items (stage_id, position, label) VALUES ($1, $2, $3)",
        )
        .bind(stage)
        .bind(i as i32 + 1)
        .bind(label)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn seed_templates(tx: &mut Transaction<'_, Postgres>) -> Result<(), ApiError> {
    for (name, bedrooms, bathrooms, max_sqft, lines) in TEMPLATES {
        let items: Vec<serde_json::Value> = lines
            .iter()
            .map(|(category, description, quantity, unit_cost)| {
                serde_json::json!({"category": category, "description": description,
                                   "quantity": quantity, "unit_cost": unit_cost})
            })
            .collect();
        sqlx::query(
            "INSERT INTO cost_templates (name, bedrooms, bathrooms, max_sqft, items)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(name)
        .bind(bedrooms.map(|b| Decimal::new(b, 0)))
        .bind(bathrooms.map(|b| Decimal::new(b, 1)))
        .bind(max_sqft)
        .bind(serde_json::Value::Array(items))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// A scoped demo turn's line items, adding up to its amount.
async fn seed_scope(
    tx: &mut Transaction<'_, Postgres>,
    turn: Uuid,
    amount: Decimal,
    i: usize,
) -> Result<(), ApiError> {
    let paint = (amount * Decimal::new(55, 2)).round_dp(2);
    let cleaning = (amount * Decimal::new(15, 2)).round_dp(2);
    let lines = [
        ("Paint", "Interior walls and ceilings", paint),
        ("Cleaning", "Deep clean, move-out", cleaning),
        (
            ["Flooring", "Appliances", "Plumbing"][i % 3],
            [
                "Replace carpet, bedrooms",
                "Replace dishwasher",
                "Repair kitchen faucet",
            ][i % 3],
            amount - paint - cleaning,
        ),
    ];
    for (position, (category, description, cost)) in lines.into_iter().enumerate() {
        sqlx::query(
            "INSERT INTO turn_line_items (id, turn_id, position, category, description, quantity,
                                          unit_cost)
             VALUES ($1, $2, $3, $4, $5, 1, $6)",
        )
        .bind(Uuid::new_v4())
        .bind(turn)
        .bind(position as i32 + 1)
        .bind(category)
        .bind(description)
        .bind(cost)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn insert_user(
    tx: &mut Transaction<'_, Postgres>,
    email: &str,
    first: &str,
    last: &str,
    role: Role,
    vendor_id: Option<Uuid>,
) -> Result<Uuid, ApiError> {
    let hash = hash_password(DEMO_PASSWORD).await?;
    let id = sqlx::query_scalar(
        "WITH u AS (
           INSERT INTO users (email, first_name, last_name, role, vendor_id, email_verified)
           VALUES ($1, $3, $4, $5, $6, true) RETURNING id)
         INSERT INTO user_credentials (user_id, password_hash) SELECT id, $2 FROM u
      RETURNING user_id",
    )
    .bind(email)
    .bind(hash)
    .bind(first)
    .bind(last)
    .bind(role)
    .bind(vendor_id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}

/// Insert the stage list; returns the stage ids in display order.
pub async fn insert_stages(tx: &mut Transaction<'_, Postgres>) -> Result<Vec<Uuid>, ApiError> {
    let mut ids = Vec::new();
    for (i, (name, color, amount, vendor, approval, complete)) in STAGES.iter().enumerate() {
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO turn_stages (name, display_order, color, is_amount_required,
                 is_vendor_required, requires_approval, is_complete_stage, requires_qc)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
        )
        .bind(name)
        .bind((i as i32 + 1) * 10)
        .bind(color)
        .bind(amount)
        .bind(vendor)
        .bind(approval)
        .bind(complete)
        .fetch_one(&mut **tx)
        .await?;
        ids.push(id);
    }
    Ok(ids)
}

async fn seed(tx: &mut Transaction<'_, Postgres>, today: NaiveDate) -> Result<(), ApiError> {
    let mut rng = StdRng::seed_from_u64(20261126);
    let stages = insert_stages(tx).await?;
    seed_templates(tx).await?;
    seed_checklist(tx, stages[5]).await?;

    let mut vendors = Vec::new();
    for (i, (name, trade, approved)) in VENDORS.iter().enumerate() {
        let slug = name
            .split_whitespace()
            .next()
            .unwrap_or("vendor")
            .to_lowercase();
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO vendors (name, trade, contact_email, contact_phone, is_approved)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(name)
        .bind(trade)
        .bind(format!("office@{slug}.example"))
        .bind(format!("555-01{:02}", i + 10))
        .bind(approved)
        .fetch_one(&mut **tx)
        .await?;
        let email = if i == 0 {
            "vendor@turns.demo".to_string()
        } else {
            format!("vendor{}@turns.demo", i + 1)
        };
        insert_user(
            tx,
            &email,
            "Crew",
            &format!("Lead {}", i + 1),
            Role::Vendor,
            Some(id),
        )
        .await?;
        if *approved {
            vendors.push(id);
        }
    }

    let mut by_role = std::collections::HashMap::new();
    let names = [
        ("Sloane", "Adams"),
        ("Alex", "Reed"),
        ("Pat", "Morgan"),
        ("Sam", "Rivera"),
        ("", ""),
        ("Ivy", "Chen"),
        ("Dana", "Foster"),
        ("Harper", "Owens"),
        ("Uma", "Lee"),
    ];
    for ((email, role), (first, last)) in DEMO_LOGINS.iter().zip(names) {
        if *role != Role::Vendor {
            by_role.insert(
                *role,
                insert_user(tx, email, first, last, *role, None).await?,
            );
        }
    }
    let pm = by_role[&Role::PropertyManager];
    let senior = by_role[&Role::SrPropertyManager];
    let pm2 = insert_user(
        tx,
        "pm2@turns.demo",
        "Jordan",
        "Blake",
        Role::PropertyManager,
        None,
    )
    .await?;
    let pm3 = insert_user(
        tx,
        "pm3@turns.demo",
        "Casey",
        "Nguyen",
        Role::PropertyManager,
        None,
    )
    .await?;
    let senior2 = insert_user(
        tx,
        "srpm2@turns.demo",
        "Robin",
        "Hale",
        Role::SrPropertyManager,
        None,
    )
    .await?;
    // (PM, senior PM, number of properties)
    let portfolios = [(pm, senior, 15), (pm2, senior, 13), (pm3, senior2, 12)];

    let mut properties = Vec::new();
    let mut n = 0;
    for (manager, sr, count) in portfolios {
        for _ in 0..count {
            n += 1;
            let street = STREETS[n % STREETS.len()];
            let (city, state) = CITIES[n % CITIES.len()];
            let is_core = n % 7 != 3;
            let id: Uuid = sqlx::query_scalar(
                "INSERT INTO properties (property_id, name, street_address, city, state, zip_code,
                     year_built, area_sqft, bedrooms, bathrooms, is_core, property_manager_id,
                     sr_property_manager_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
            )
            .bind(format!("P-{:04}", 1000 + n))
            .bind(format!(
                "{street} {} #{}",
                if n % 2 == 0 { "Court" } else { "Grove" },
                n
            ))
            .bind(format!("{} {street} St", 100 + n * 7))
            .bind(city)
            .bind(state)
            .bind(format!("{:05}", 30000 + n * 11))
            .bind(1960 + (n as i32 * 3) % 60)
            .bind(900 + (n as i32 * 37) % 1400)
            .bind(Decimal::new(2 + (n as i64 % 3), 0))
            .bind(Decimal::new(10 + 5 * (n as i64 % 3), 1))
            .bind(is_core)
            .bind(manager)
            .bind(sr)
            .fetch_one(&mut **tx)
            .await?;
            properties.push((id, is_core));
        }
    }
    // How a vendor gets in, on some homes; and the managers' work phones (vendors call them).
    sqlx::query(
        "UPDATE properties SET access_notes = CASE n.k % 3
             WHEN 0 THEN 'Lockbox on the back door, code 4411. Alarm panel by the garage: 2580.'
             WHEN 1 THEN 'Key at the leasing office. Dog next door; keep the side gate shut.'
             END
           FROM (SELECT id, row_number() OVER (ORDER BY property_id) AS k FROM properties) n
          WHERE n.id = properties.id",
    )
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE users SET phone = '(704) 555-01' || lpad(n::text, 2, '0')
           FROM (SELECT id, row_number() OVER (ORDER BY email) AS n FROM users
                  WHERE role IN ('PROPERTY_MANAGER', 'SR_PROPERTY_MANAGER')) m
          WHERE m.id = users.id",
    )
    .execute(&mut **tx)
    .await?;

    let thresholds = Thresholds::default();
    let dfo = by_role[&Role::DfoApprover];
    let ho = by_role[&Role::HoApprover];
    for i in 0..60usize {
        let (property, is_core) = properties[(i * 7) % properties.len()];
        // Spread over the seven stages, with more turns in the middle of the flow.
        let stage = [0, 1, 2, 2, 3, 3, 3, 4, 4, 4, 5, 6][i % 12];
        let days_ago = [2u64, 5, 9, 12, 16, 21, 3, 7, 11, 25][i % 10] + (i as u64 % 3);
        let move_out = today - Days::new(days_ago);
        let amount = (stage >= 2).then(|| {
            let base: i64 = [650, 1800, 3400, 950, 7200, 2600, 1250][i % 7];
            Decimal::new(base * 100 + rng.gen_range(0..100) * 100, 2)
        });
        let needed = amount.and_then(|a| thresholds.required_level(a, is_core));
        let status = match (stage, needed) {
            (0..=2, _) => ApprovalStatus::Pending,
            (3, None) => ApprovalStatus::Pending,
            (3, Some(_)) if i % 9 == 4 => ApprovalStatus::Rejected,
            (3, Some(turns::ApprovalLevel::Ho)) if i % 2 == 0 => ApprovalStatus::HoApprovalNeeded,
            (3, Some(_)) => ApprovalStatus::DfoApprovalNeeded,
            (_, None) => ApprovalStatus::Pending,
            (_, Some(turns::ApprovalLevel::Dfo)) => ApprovalStatus::DfoApproved,
            (_, Some(turns::ApprovalLevel::Ho)) => ApprovalStatus::HoApproved,
        };
        let approved = (stage >= 4).then_some(amount).flatten();
        let vendor = (stage >= 4 || (stage == 3 && i % 2 == 1)).then(|| vendors[i % vendors.len()]);
        let complete = STAGES[stage].5;
        let completion = complete.then(|| (move_out + Days::new(6 + i as u64 % 5)).min(today));
        let expected = (stage >= 3).then(|| move_out + Days::new(10 + i as u64 % 6));
        // Asked a day or three after move-out, so the approvers' queues have an order to show.
        let asked = status.awaiting().and_then(|_| {
            let day = move_out + Days::new(1 + i as u64 % 3);
            let at = day.and_hms_opt(9, 0, 0)?.and_utc();
            Some(at.min(chrono::Utc::now()))
        });
        let turn: Uuid = sqlx::query_scalar(
            "INSERT INTO turns (turn_id, property_id, stage_id, wo_number, move_out_date, turn_amount,
                 approved_turn_amount, vendor_id, expected_completion_date, turn_completion_date,
                 approval_status, qc_passed_at, awaiting_since, rejection_reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $10::timestamptz, $12, $13)
             RETURNING id",
        )
        .bind(format!("T-{:05}", 20001 + i))
        .bind(property)
        .bind(stages[stage])
        .bind((stage >= 3).then(|| format!("WO-{}", 88000 + i)))
        .bind(move_out)
        .bind(amount)
        .bind(approved)
        .bind(vendor)
        .bind(expected)
        .bind(completion)
        .bind(status)
        .bind(asked)
        .bind((status == ApprovalStatus::Rejected).then_some(REJECTION))
        .fetch_one(&mut **tx)
        .await?;
        if let Some(amount) = amount {
            seed_scope(tx, turn, amount, i).await?;
        }
        // Decisions behind the approved and rejected states, so the history is consistent.
        let decisions: &[(&str, &str, Uuid, Role)] = match status {
            ApprovalStatus::DfoApproved => &[("DFO", "APPROVED", dfo, Role::DfoApprover)],
            ApprovalStatus::HoApprovalNeeded => &[("DFO", "APPROVED", dfo, Role::DfoApprover)],
            ApprovalStatus::HoApproved => &[
                ("DFO", "APPROVED", dfo, Role::DfoApprover),
                ("HO", "APPROVED", ho, Role::HoApprover),
            ],
            ApprovalStatus::Rejected => &[("DFO", "REJECTED", dfo, Role::DfoApprover)],
            _ => &[],
        };
        // The DFO is asked a day after move-out and decides two days later; head office is asked
        // then and decides the next day (never in the future).
        let at = |days: u64, hour: u32| {
            (move_out + Days::new(days))
                .and_hms_opt(hour, 0, 0)
                .map(|t| t.and_utc().min(chrono::Utc::now()))
        };
        for (level, decision, actor, role) in decisions {
            let (asked, decided) = if *level == "DFO" {
                (at(1, 9 + (i as u32 % 5)), at(3, 15))
            } else {
                (at(3, 15), at(4, 11 + (i as u32 % 3)))
            };
            sqlx::query(
                "INSERT INTO approval_decisions (turn_id, level, decision, amount, reason, actor_id,
                                                 actor_role, decided_at, asked_at)
                 VALUES ($1, $2::approval_level, $3::approval_decision, $4, $5, $6, $7, $8, $9)",
            )
            .bind(turn)
            .bind(level)
            .bind(decision)
            .bind(amount)
            .bind((*decision == "REJECTED").then_some(REJECTION))
            .bind(actor)
            .bind(role)
            .bind(decided)
            .bind(asked)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

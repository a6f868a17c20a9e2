//! A model-based, randomized sync test: simulated devices follow their authorized `turns` shape
//! and send queued edits through the write path while the test injects what the field does to
//! them — offline periods, lost responses (the edit applied, the device never heard: it sends
//! again), reloads (memory lost, storage kept, or storage lost and the shape refetched), raw-SQL
//! writers racing the devices, and shape-server restarts. At quiescence:
//! - every device's rows equal the server's authorized view for its user (ids and values);
//! - every mutation is applied exactly once (one receipt; one audit row when it wrote) or refused
//!   with a reason, however often it was sent;
//! - no device saw a change twice or out of order (the follower fails on an insert of a present
//!   key, an update or delete of a missing one, or a version going backwards).
//!
//! Seeded and replayable: `TURNS_MODEL_SEED=<n>`; `TURNS_MODEL_OPS=<n>` for a longer run (default
//! 10,000 operations in `tools/test`).
use chrono::{Days, NaiveDate, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use turns::mutation::{Change, Edit, Mutation, Outcome, TurnEdit};
use turns::policy::{PropertyFacts, TurnFacts};
use turns::{Actor, ApprovalStatus, Role};
use turns_server::mutations::apply_batch;
use turns_server::testing::{actor, demo_state, login, plain_router, Follower, Rng};
use turns_server::AppState;
use uuid::Uuid;

/// One simulated device.
struct Device {
    name: String,
    actor: Actor,
    follower: Follower,
    /// Queued edits, in order (the device's durable outbox).
    outbox: Vec<Mutation>,
    online: bool,
}

const SHAPE: &str = "/api/shapes/turns?";

impl Device {
    /// The value a field has on this device now: the last queued edit of it, else the row.
    fn current(&self, turn: Uuid, column: &str) -> Option<String> {
        for m in self.outbox.iter().rev() {
            if let Change::EditTurn { turn: t, edits } = &m.change {
                for e in edits.iter().rev() {
                    if *t == turn && e.column() == column {
                        return match e {
                            TurnEdit::WoNumber(e) => e.to.clone(),
                            TurnEdit::ExpectedCompletion(e) => e.to.map(|d| d.to_string()),
                            _ => None,
                        };
                    }
                }
            }
        }
        self.follower
            .rows
            .get(&row_key(turn))
            .and_then(|r| r.get(column))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    }
}

fn row_key(turn: Uuid) -> String {
    format!("\"public\".\"turns\"/\"{turn}\"")
}

#[derive(Default, Debug)]
struct Tally {
    operations: usize,
    edits: usize,
    sends: usize,
    lost_responses: usize,
    offline_periods: usize,
    reloads: usize,
    refetches: usize,
    sql_writes: usize,
    restarts: usize,
    polls: usize,
}

async fn start(state: AppState) -> (AppState, axum::Router) {
    let url = state.config.database_url.clone().expect("url");
    let state = state.start_shapes(&url).await.expect("shapes");
    let router = plain_router(state.clone());
    (state, router)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_converge_on_their_authorized_view_with_every_edit_applied_once() {
    let seed = Rng::seed_from_env("TURNS_MODEL_SEED");
    let target: usize = std::env::var("TURNS_MODEL_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    println!("model: seed {seed} (replay with TURNS_MODEL_SEED={seed}), {target} operations");
    let mut rng = Rng::seeded(seed);

    let mut base = demo_state().await;
    let mut config = (*base.config).clone();
    config.long_poll = Duration::from_secs(1);
    base.config = Arc::new(config);
    let pool = base.pool.clone();
    let (mut state, mut router) = start(base.clone()).await;

    // Two devices of one PM (they edit the same turns), their senior, another PM, a vendor and
    // an admin (who sees everything).
    let who = [
        "pm@turns.demo",
        "pm@turns.demo",
        "srpm@turns.demo",
        "pm2@turns.demo",
        "vendor@turns.demo",
        "admin@turns.demo",
    ];
    let mut devices = Vec::new();
    for (i, email) in who.iter().enumerate() {
        let cookie = login(&router, email).await;
        devices.push(Device {
            name: format!("{email}#{i}"),
            actor: actor(&pool, email).await,
            follower: Follower::start(&router, SHAPE, Some(&cookie)).await,
            outbox: Vec::new(),
            online: true,
        });
    }
    let all_turns: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM turns WHERE is_active")
        .fetch_all(&pool)
        .await
        .expect("turns");
    let mut outcomes: HashMap<Uuid, Outcome> = HashMap::new();
    let mut sent_times: HashMap<Uuid, usize> = HashMap::new();
    let mut tally = Tally::default();
    let today = Utc::now().date_naive();

    while tally.operations < target {
        tally.operations += 1;
        let step = tally.operations;
        let d = rng.below(devices.len() as u64) as usize;
        let roll = rng.below(100);
        let dev = &mut devices[d];
        match roll {
            // Edit a turn the device shows.
            0..=29 => {
                let keys: Vec<Uuid> = dev
                    .follower
                    .rows
                    .values()
                    .filter_map(|r| r.get("id")?.as_str()?.parse().ok())
                    .collect();
                if keys.is_empty() {
                    continue;
                }
                let turn = keys[rng.below(keys.len() as u64) as usize];
                let progress = dev.actor.role == Role::Vendor || rng.chance(40);
                let edit = if progress {
                    let from = dev
                        .current(turn, "expected_completion_date")
                        .and_then(|s| s.parse::<NaiveDate>().ok());
                    TurnEdit::ExpectedCompletion(Edit {
                        from,
                        to: Some(today + Days::new(1 + rng.below(60))),
                    })
                } else {
                    TurnEdit::WoNumber(Edit {
                        from: dev.current(turn, "wo_number"),
                        to: Some(format!("WO-{step}")),
                    })
                };
                dev.outbox.push(Mutation {
                    id: Uuid::new_v4(),
                    base_version: None,
                    device_time: Utc::now(),
                    change: Change::EditTurn {
                        turn,
                        edits: vec![edit],
                    },
                });
                tally.edits += 1;
            }
            // Send the outbox (online only); sometimes the answer is lost on the way back.
            30..=54 if dev.online && !dev.outbox.is_empty() => {
                let n = dev.outbox.len().min(1 + rng.below(50) as usize);
                let batch: Vec<Mutation> = dev.outbox[..n].to_vec();
                let answers = apply_batch(&pool, &dev.actor, &batch)
                    .await
                    .expect("the write path answers");
                for m in &batch {
                    *sent_times.entry(m.id).or_default() += 1;
                }
                tally.sends += 1;
                if rng.chance(10) {
                    tally.lost_responses += 1;
                    continue;
                }
                for (m, o) in batch.iter().zip(answers) {
                    if let Some(first) = outcomes.get(&m.id) {
                        assert_eq!(first, &o, "seed {seed}: a replay answered differently");
                    }
                    outcomes.insert(m.id, o);
                }
                dev.outbox.drain(..n);
            }
            // Read the shape (online only).
            55..=79 if dev.online => {
                dev.follower.poll(&router, false).await;
                tally.polls += 1;
            }
            80..=84 => {
                dev.online = !dev.online;
                if !dev.online {
                    tally.offline_periods += 1;
                }
            }
            // Reload: memory goes; storage (rows, position, outbox) stays — or, now and then,
            // storage of the rows is lost too and the shape is fetched again.
            85..=88 if dev.online => {
                tally.reloads += 1;
                if rng.chance(30) {
                    tally.refetches += 1;
                    let cookie = dev.follower.cookie.clone();
                    dev.follower = Follower::start(&router, SHAPE, cookie.as_deref()).await;
                }
            }
            // Someone with psql, racing the devices.
            89..=95 => {
                let turn = all_turns[rng.below(all_turns.len() as u64) as usize];
                sqlx::query("UPDATE turns SET wo_number = $2 WHERE id = $1")
                    .bind(turn)
                    .bind(format!("SQL-{step}"))
                    .execute(&pool)
                    .await
                    .expect("raw write");
                tally.sql_writes += 1;
            }
            // The shape server restarts (a deploy): handles and offsets must survive it.
            96 if rng.chance(5) => {
                if let Some(s) = &state.shapes {
                    s.stop();
                }
                state.live.stop();
                (state, router) = start(base.clone()).await;
                tally.restarts += 1;
            }
            _ => {}
        }
    }

    // Quiescence: everyone online, every outbox drained, every device caught up.
    for dev in devices.iter_mut() {
        dev.online = true;
        while !dev.outbox.is_empty() {
            let n = dev.outbox.len().min(50);
            let batch: Vec<Mutation> = dev.outbox[..n].to_vec();
            let answers = apply_batch(&pool, &dev.actor, &batch).await.expect("drain");
            for (m, o) in batch.iter().zip(answers) {
                *sent_times.entry(m.id).or_default() += 1;
                if let Some(first) = outcomes.get(&m.id) {
                    assert_eq!(first, &o, "seed {seed}: a replay answered differently");
                }
                outcomes.insert(m.id, o);
            }
            dev.outbox.drain(..n);
        }
    }
    for dev in devices.iter_mut() {
        dev.follower.catch_up(&state, &router).await;
    }

    // 1. Every device holds exactly its user's authorized view.
    type Truth = (
        Uuid,
        Option<Uuid>,
        Option<Uuid>,
        Option<Uuid>,
        ApprovalStatus,
        Option<String>,
        Option<String>,
        String,
    );
    let truth: Vec<Truth> = sqlx::query_as(
        "SELECT t.id, p.property_manager_id, p.sr_property_manager_id, t.vendor_id,
                t.approval_status, t.wo_number, t.expected_completion_date::text, t.version::text
           FROM turns t JOIN properties p ON p.id = t.property_id WHERE t.is_active",
    )
    .fetch_all(&pool)
    .await
    .expect("truth");
    for dev in &devices {
        let want: BTreeMap<String, (Option<String>, Option<String>, String)> = truth
            .iter()
            .filter(|(_, pm, sr, vendor_id, status, ..)| {
                dev.actor.can_read_turn(&TurnFacts {
                    property: PropertyFacts {
                        property_manager_id: *pm,
                        sr_property_manager_id: *sr,
                    },
                    vendor_id: *vendor_id,
                    approval_status: *status,
                })
            })
            .map(|(id, .., wo, expected, version)| {
                (
                    row_key(*id),
                    (wo.clone(), expected.clone(), version.clone()),
                )
            })
            .collect();
        let text = |r: &serde_json::Map<String, serde_json::Value>, c: &str| {
            r.get(c).and_then(|v| v.as_str()).map(str::to_string)
        };
        let got: BTreeMap<String, (Option<String>, Option<String>, String)> = dev
            .follower
            .rows
            .iter()
            .map(|(k, r)| {
                (
                    k.clone(),
                    (
                        text(r, "wo_number"),
                        text(r, "expected_completion_date"),
                        text(r, "version").unwrap_or_default(),
                    ),
                )
            })
            .collect();
        assert_eq!(got, want, "seed {seed}: {} diverged", dev.name);
    }

    // 2. Exactly once: one receipt per mutation, one audit row per write, none for refusals.
    let receipts: HashMap<Uuid, i64> = sqlx::query_as::<_, (Uuid, i64)>(
        "SELECT mutation_id, count(*) FROM mutation_receipts GROUP BY mutation_id",
    )
    .fetch_all(&pool)
    .await
    .expect("receipts")
    .into_iter()
    .collect();
    let audits: HashMap<Uuid, i64> = sqlx::query_as::<_, (Uuid, i64)>(
        "SELECT client_mutation_id, count(*) FROM audit_logs
          WHERE client_mutation_id IS NOT NULL GROUP BY client_mutation_id",
    )
    .fetch_all(&pool)
    .await
    .expect("audits")
    .into_iter()
    .collect();
    let (mut applied, mut refused, mut resent) = (0, 0, 0);
    for (id, outcome) in &outcomes {
        assert_eq!(
            receipts.get(id),
            Some(&1),
            "seed {seed}: {id} has one receipt"
        );
        let wrote = matches!(outcome, Outcome::Applied { txid: Some(_) });
        let want = i64::from(wrote);
        assert_eq!(
            audits.get(id).copied().unwrap_or(0),
            want,
            "seed {seed}: {id} ({outcome:?}) sent {} times",
            sent_times[id]
        );
        match outcome {
            Outcome::Applied { .. } => applied += 1,
            Outcome::Rejected(_) => refused += 1,
        }
        if sent_times[id] > 1 {
            resent += 1;
        }
    }
    assert_eq!(
        outcomes.len(),
        tally.edits,
        "every edit has its final answer"
    );
    println!(
        "model: {tally:?}; {} mutations: {applied} applied, {refused} refused with a reason, \
         {resent} sent more than once; 0 lost, 0 duplicated",
        outcomes.len()
    );
    assert!(applied > 0 && tally.polls > 0);
}

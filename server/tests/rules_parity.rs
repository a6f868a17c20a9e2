//! The browser's optimistic view and the server decide a turn's changes with the same core rules
//! (`turns::rules`), each with its own facts: the browser with the board it was given (stages,
//! thresholds, non-core homes, the server's date), the server with what it reads under its lock.
//! Random sequences of edits, submissions and approval decisions go through both. After every
//! step the server's turn must be what the browser showed, and a refusal must be the same refusal
//! on both sides. Replay a failure with `RULES_SEED=<seed printed>`.
use chrono::{Days, Utc};
use turns::model::{Board, TurnCard};
use turns::mutation::{Change, Edit, Mutation, Outcome, TurnEdit};
use turns::Decimal;
use turns_server::testing::{actor, demo_state, Rng};
use turns_server::{mutations, queries};
use uuid::Uuid;

const STEPS: usize = 400;

/// Amounts on and around every threshold (PM limit 1,000; HO 5,000; non-core 1,000; +10%).
const AMOUNTS: [i64; 12] = [
    400, 999, 1000, 1001, 1050, 1100, 2000, 4900, 5000, 5001, 5400, 12000,
];

fn amount(rng: &mut Rng) -> Decimal {
    Decimal::new(*rng.pick(&AMOUNTS), 0)
}

/// A change the admin may make to `card` (authorization is the policy's, tested elsewhere).
fn random_change(rng: &mut Rng, board: &Board, card: &TurnCard) -> Change {
    let turn = card.id;
    if let (Some(_), true) = (
        card.approval_status
            .and_then(turns::ApprovalStatus::awaiting),
        rng.chance(40),
    ) {
        let approve = rng.chance(75);
        return Change::DecideApproval {
            turn,
            approve,
            amount: (approve && rng.chance(30)).then(|| amount(rng)),
            reason: (!approve).then(|| "Too much for this home.".to_string()),
        };
    }
    if rng.chance(15) {
        return Change::SubmitForApproval { turn };
    }
    let today = board.today;
    let mut edits = Vec::new();
    for _ in 0..=rng.below(2) {
        let edit = match rng.below(5) {
            0 | 1 => TurnEdit::Stage(Edit {
                from: card.stage_id,
                to: rng.pick(&board.stages).id,
            }),
            2 => TurnEdit::Amount(Edit {
                from: card.turn_amount,
                to: (!rng.chance(5)).then(|| amount(rng)),
            }),
            3 => {
                let mut vendors: Vec<Option<Uuid>> = board
                    .assignable_vendors
                    .iter()
                    .map(|v| Some(v.id))
                    .collect();
                vendors.push(None);
                TurnEdit::Vendor(Edit {
                    from: card.vendor_id,
                    to: *rng.pick(&vendors),
                })
            }
            _ => TurnEdit::Completion(Edit {
                from: card.turn_completion_date,
                to: rng.chance(60).then(|| today - Days::new(rng.below(40))),
            }),
        };
        // One edit per field, as the drawer sends them.
        if !edits.iter().any(|e: &TurnEdit| e.column() == edit.column()) {
            edits.push(edit);
        }
    }
    Change::EditTurn { turn, edits }
}

/// What a step's outcome is compared on: the fields the rules decide (not the version the write
/// bumps, nor the names the board joins in).
fn decided(card: &TurnCard) -> TurnCard {
    TurnCard {
        id: card.id,
        stage_id: card.stage_id,
        vendor_id: card.vendor_id,
        turn_amount: card.turn_amount,
        approved_turn_amount: card.approved_turn_amount,
        approval_status: card.approval_status,
        turn_completion_date: card.turn_completion_date,
        expected_completion_date: card.expected_completion_date,
        move_out_date: card.move_out_date,
        wo_number: card.wo_number.clone(),
        ..TurnCard::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_and_the_server_decide_every_change_alike() {
    let state = demo_state().await;
    let pool = &state.pool;
    // Some non-core homes, so that their lower head-office threshold is exercised too.
    sqlx::query(
        "UPDATE properties SET is_core = false
          WHERE id IN (SELECT id FROM properties ORDER BY id LIMIT (SELECT count(*) / 3 FROM properties))",
    )
    .execute(pool)
    .await
    .expect("non-core homes");
    let admin = actor(pool, "admin@turns.demo").await;
    let seed = Rng::seed_from_env("RULES_SEED");
    let mut rng = Rng::seeded(seed);
    let today = Utc::now().date_naive();
    let (mut applied, mut refused, mut unchanged) = (0, 0, 0);
    for step in 0..STEPS {
        // The board exactly as the browser gets it.
        let board = queries::board(pool, &admin, today).await.expect("board");
        assert!(!board.non_core_properties.is_empty(), "non-core homes");
        let card = rng.pick(&board.turns).clone();
        let change = random_change(&mut rng, &board, &card);
        // The browser knows which turns have a scope from its copy of their line items.
        let scoped: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM turn_line_items WHERE turn_id = $1)")
                .bind(card.id)
                .fetch_one(pool)
                .await
                .expect("scope");
        let rules = turns::rules::TurnRules {
            scoped,
            ..board.rules_for(&card)
        };
        let shown = rules.apply(&card, &change);
        let m = Mutation {
            id: Uuid::new_v4(),
            base_version: Some(card.version),
            device_time: Utc::now(),
            change: change.clone(),
        };
        let outcome = mutations::apply(pool, &admin, &m).await.expect("apply");
        let now = queries::turns_in_scope(pool, &admin, None)
            .await
            .expect("turns")
            .into_iter()
            .find(|t| t.id == card.id)
            .expect("the turn");
        let context = || format!("seed {seed}, step {step}: {change:?} on {card:?}");
        match (shown, outcome) {
            (Ok(Some(after)), Outcome::Applied { txid: Some(_) }) => {
                assert_eq!(decided(&now), decided(&after), "{}", context());
                applied += 1;
            }
            (Ok(None), Outcome::Applied { txid: None }) => {
                assert_eq!(decided(&now), decided(&card), "{}", context());
                unchanged += 1;
            }
            (Err(browser), Outcome::Rejected(server)) => {
                assert_eq!(browser, server, "{}", context());
                assert_eq!(now.version, card.version, "{}", context());
                refused += 1;
            }
            (shown, outcome) => panic!(
                "{}:\n the browser showed {shown:?}\n the server answered {outcome:?}",
                context()
            ),
        }
    }
    println!(
        "rules parity (seed {seed}): {applied} applied, {unchanged} unchanged, {refused} refused"
    );
    assert!(
        applied > STEPS / 4 && refused > 10,
        "every kind of outcome occurs"
    );
}

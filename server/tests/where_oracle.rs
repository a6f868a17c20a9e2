//! Fuzzing the shape where clause against Postgres as the oracle: random clauses of the whole
//! documented subset (comparisons either way round, `$n` parameters, IN lists, NULL tests,
//! LIKE/ILIKE, BETWEEN, bare booleans, AND/OR/NOT), evaluated by our filter on every row of a
//! table of random values (a fifth of them NULL), and by Postgres itself; the matching rows must
//! be the same. And a row a clause selects carries one of the values the clause requires (what
//! the live index looks shapes up by).
//!
//! Seeded and replayable: `TURNS_FUZZ_SEED=<n>` replays a run, `TURNS_FUZZ_CASES=<n>` makes it
//! longer (default 1,500 clauses in `tools/test`). A failure prints the seed, the clause and both
//! answers; keep such a clause in `REGRESSIONS` below.
use sqlx::PgPool;
use std::collections::BTreeSet;
use turns_server::shapes::filter::{compile, lookup_key, ColType, Columns};
use turns_server::testing::{fresh_database, Rng};

/// Clauses a run once found to disagree (kept so they never come back).
const REGRESSIONS: &[&str] = &[];

const STATUSES: [&str; 6] = [
    "PENDING",
    "DFO_APPROVAL_NEEDED",
    "DFO_APPROVED",
    "HO_APPROVAL_NEEDED",
    "HO_APPROVED",
    "REJECTED",
];

const COLUMNS: [(&str, ColType); 8] = [
    ("id", ColType::Int),
    ("name", ColType::Text),
    ("amount", ColType::Numeric),
    ("n", ColType::Int),
    ("flag", ColType::Bool),
    ("status", ColType::Enum),
    ("day", ColType::Date),
    ("ts", ColType::TimestampTz),
];

/// A value of a column's type, as SQL text would spell it inside quotes (or bare for numbers).
fn raw_value(rng: &mut Rng, ty: ColType) -> String {
    match ty {
        ColType::Int => (rng.below(101) as i64 - 50).to_string(),
        ColType::Numeric => {
            let cents = rng.below(20_001) as i64 - 10_000;
            match rng.below(3) {
                0 => (cents / 100).to_string(),
                1 => format!("{:.1}", cents as f64 / 100.0),
                _ => format!("{}.{:02}", cents / 100, (cents % 100).abs()),
            }
        }
        ColType::Text => (0..rng.below(4))
            .map(|_| *rng.pick(&['a', 'b', 'c']))
            .collect(),
        ColType::Bool => rng.pick(&["true", "false"]).to_string(),
        ColType::Enum => rng.pick(&STATUSES).to_string(),
        ColType::Date => format!("2026-11-{:02}", 1 + rng.below(9)),
        ColType::TimestampTz => format!(
            "2026-11-0{} {:02}:{:02}:00+00",
            1 + rng.below(3),
            rng.below(24),
            rng.below(4) * 15
        ),
        _ => unreachable!("no such column"),
    }
}

/// The literal as a clause writes it.
fn literal(ty: ColType, raw: &str) -> String {
    match ty {
        ColType::Int | ColType::Numeric | ColType::Bool => raw.to_string(),
        _ => format!("'{raw}'"),
    }
}

/// One clause, in two spellings: ours (may use `$n`) and Postgres' (literals inline).
struct Clause {
    ours: String,
    theirs: String,
    params: Vec<String>,
}

impl Clause {
    fn both(&mut self, s: &str) {
        self.ours.push_str(s);
        self.theirs.push_str(s);
    }

    /// A value: a `$n` parameter for us, the literal for Postgres.
    fn value(&mut self, rng: &mut Rng, ty: ColType) {
        let raw = raw_value(rng, ty);
        let lit = literal(ty, &raw);
        if rng.chance(25) {
            self.params.push(raw);
            self.ours.push_str(&format!("${}", self.params.len()));
        } else {
            self.ours.push_str(&lit);
        }
        self.theirs.push_str(&lit);
    }

    fn atom(&mut self, rng: &mut Rng) {
        let (col, ty) = *rng.pick(&COLUMNS);
        let ordered = !matches!(ty, ColType::Enum);
        match rng.below(9) {
            0 | 1 => {
                let ops: &[&str] = if ordered {
                    &["=", "<>", "!=", "<", "<=", ">", ">="]
                } else {
                    &["=", "<>", "!="]
                };
                let op = *rng.pick(ops);
                if rng.chance(20) {
                    self.value(rng, ty);
                    self.both(&format!(" {op} {col}"));
                } else {
                    self.both(&format!("{col} {op} "));
                    self.value(rng, ty);
                }
            }
            2 => {
                let not = if rng.chance(30) { " NOT" } else { "" };
                self.both(&format!("{col}{not} IN ("));
                for i in 0..1 + rng.below(3) {
                    if i > 0 {
                        self.both(", ");
                    }
                    self.value(rng, ty);
                }
                self.both(")");
            }
            3 => {
                let not = if rng.chance(50) { " NOT" } else { "" };
                self.both(&format!("{col} IS{not} NULL"));
            }
            4 | 5 => {
                let op = *rng.pick(&["LIKE", "NOT LIKE", "ILIKE", "NOT ILIKE"]);
                let pattern: String = (0..rng.below(6))
                    .map(|_| *rng.pick(&['a', 'b', 'c', 'A', '%', '_']))
                    .collect();
                self.both(&format!("name {op} "));
                if rng.chance(25) {
                    self.params.push(pattern.clone());
                    self.ours.push_str(&format!("${}", self.params.len()));
                    self.theirs.push_str(&format!("'{pattern}'"));
                } else {
                    self.both(&format!("'{pattern}'"));
                }
            }
            6 if ordered && ty != ColType::Bool => {
                let not = if rng.chance(30) { " NOT" } else { "" };
                self.both(&format!("{col}{not} BETWEEN "));
                self.value(rng, ty);
                self.both(" AND ");
                self.value(rng, ty);
            }
            7 => self.both(if rng.chance(50) { "flag" } else { "NOT flag" }),
            _ => self.both(if rng.chance(50) { "TRUE" } else { "FALSE" }),
        }
    }

    fn expr(&mut self, rng: &mut Rng, depth: u32) {
        if depth == 0 || rng.chance(35) {
            return self.atom(rng);
        }
        match rng.below(3) {
            0 => {
                self.both("NOT (");
                self.expr(rng, depth - 1);
                self.both(")");
            }
            n => {
                self.both("(");
                self.expr(rng, depth - 1);
                self.both(if n == 1 { ") AND (" } else { ") OR (" });
                self.expr(rng, depth - 1);
                self.both(")");
            }
        }
    }
}

async fn table(pool: &PgPool, rng: &mut Rng) -> Vec<(i64, Vec<Option<String>>)> {
    sqlx::query(
        "CREATE TABLE oracle (id bigint PRIMARY KEY, name text, amount numeric(10,2), n int,
                              flag boolean, status approval_status, day date, ts timestamptz)",
    )
    .execute(pool)
    .await
    .expect("table");
    for id in 1..=48i64 {
        let mut v = |ty| (!rng.chance(20)).then(|| raw_value(rng, ty));
        let (name, amount, n, flag, status, day, ts) = (
            v(ColType::Text),
            v(ColType::Numeric),
            v(ColType::Int),
            v(ColType::Bool),
            v(ColType::Enum),
            v(ColType::Date),
            v(ColType::TimestampTz),
        );
        // Some names with capitals, for ILIKE.
        let name = name.map(|s| if id % 5 == 0 { s.to_uppercase() } else { s });
        sqlx::query(
            "INSERT INTO oracle VALUES ($1, $2, $3::numeric, $4::int, $5::boolean,
                                        $6::approval_status, $7::date, $8::timestamptz)",
        )
        .bind(id)
        .bind(name)
        .bind(amount)
        .bind(n)
        .bind(flag)
        .bind(status)
        .bind(day)
        .bind(ts)
        .execute(pool)
        .await
        .expect("row");
    }
    let rows: Vec<(i64, Vec<Option<String>>)> = sqlx::query_as(
        "SELECT id, ARRAY[id::text, name, amount::text, n::text, flag::text, status::text,
                          day::text, ts::text]
           FROM oracle ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .expect("rows");
    rows
}

#[tokio::test]
async fn where_clauses_select_the_rows_postgres_selects() {
    let seed = Rng::seed_from_env("TURNS_FUZZ_SEED");
    let cases: usize = std::env::var("TURNS_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500);
    println!("where oracle: seed {seed} (replay with TURNS_FUZZ_SEED={seed}), {cases} clauses");
    let mut rng = Rng::seeded(seed);
    let (pool, _) = fresh_database().await;
    let rows = table(&pool, &mut rng).await;
    let columns: Vec<(String, ColType)> =
        COLUMNS.iter().map(|(n, t)| (n.to_string(), *t)).collect();
    let types: Vec<ColType> = COLUMNS.iter().map(|(_, t)| *t).collect();

    let mut clauses: Vec<Clause> = REGRESSIONS
        .iter()
        .map(|c| Clause {
            ours: c.to_string(),
            theirs: c.to_string(),
            params: vec![],
        })
        .collect();
    for _ in 0..cases {
        let mut c = Clause {
            ours: String::new(),
            theirs: String::new(),
            params: vec![],
        };
        c.expr(&mut rng, 3);
        clauses.push(c);
    }
    let mut matched_rows = 0usize;
    let mut indexable = 0usize;
    for c in &clauses {
        let filter = compile(&c.ours, &Columns(&columns), &c.params)
            .unwrap_or_else(|e| panic!("seed {seed}: ours refused {:?}: {e}", c.ours));
        let ours: BTreeSet<i64> = rows
            .iter()
            .filter(|(_, values)| {
                let row: Vec<Option<&str>> = values.iter().map(|v| v.as_deref()).collect();
                filter.matches(&row, &types)
            })
            .map(|(id, _)| *id)
            .collect();
        let theirs: BTreeSet<i64> =
            sqlx::query_scalar::<_, i64>(&format!("SELECT id FROM oracle WHERE {}", c.theirs))
                .fetch_all(&pool)
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: Postgres refused {:?}: {e}", c.theirs))
                .into_iter()
                .collect();
        assert_eq!(
            ours, theirs,
            "seed {seed}: {:?} with {:?} (Postgres: {:?})",
            c.ours, c.params, c.theirs
        );
        matched_rows += ours.len();
        // The live index finds a shape by the values its clause requires: every row the clause
        // selects must carry one of them, or a change to that row would miss its shape.
        if let Some(required) = filter.required_values() {
            indexable += 1;
            for (id, values) in rows.iter().filter(|(id, _)| theirs.contains(id)) {
                let found = required.iter().any(|(col, key)| {
                    values[*col]
                        .as_deref()
                        .and_then(|text| lookup_key(types[*col], text))
                        .as_ref()
                        == Some(key)
                });
                assert!(
                    found,
                    "seed {seed}: {:?} selects row {id} {values:?}, which has none of the values it requires: {required:?}",
                    c.ours
                );
            }
        }
    }
    println!(
        "where oracle: {} clauses × {} rows agreed ({} matches)",
        clauses.len(),
        rows.len(),
        matched_rows
    );
    assert!(matched_rows > 0, "the clauses select something");
    println!("where oracle: {indexable} clauses found by the values they require");
    assert!(indexable > 0, "some clauses require values");
}

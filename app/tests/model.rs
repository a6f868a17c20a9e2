//! A model-based, randomized fault test of the whole write-and-sync loop. The app runs as its own
//! process; simulated devices reach it through a fault proxy, and it reaches PostgreSQL through
//! another. Devices follow their authorized `turns` shape and send queued edits to the mutation
//! endpoint while the test does what the field and the data centre do to them:
//! - offline periods, lost responses (the edit applied, the device never heard: it sends again),
//!   reloads (memory lost, storage kept; or storage lost too and the shape fetched again);
//! - raw-SQL writers racing the devices;
//! - TCP cuts (devices ↔ app, app ↔ PostgreSQL) and delays;
//! - `kill -9` of the app and a restart; PostgreSQL restarts, fast or immediate (a crash).
//!
//! At quiescence:
//! - every device's rows equal the server's authorized view for its user (ids and values);
//! - every mutation is applied exactly once (one receipt; one audit row when it wrote) or refused
//!   with a reason, however often it was sent, and every replay got the first answer;
//! - no device saw a change twice or out of order (the follower fails on an insert of a present
//!   key, an update or delete of a missing one, or a version going backwards).
//!
//! The operations are seeded (`TURNS_MODEL_SEED=<n>` replays a run's sequence; where a fault
//! lands in flight depends on timing) and `TURNS_MODEL_OPS=<n>` sets the length (default 10,000
//! operations, as `tools/test` runs it).
use chrono::{Days, NaiveDate, Utc};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};
use turns::mutation::{Change, Edit, Mutation, Outcome, TurnEdit};
use turns::policy::{PropertyFacts, TurnFacts};
use turns::shape_follower::{ResponseHead, Step};
use turns::{Actor, ApprovalStatus, Role};
use turns_server::pg::{ClusterOptions, LocalPostgres};
use turns_server::testing::fault_proxy::FaultProxy;
use turns_server::testing::http::{self, start_app, Client};
use turns_server::testing::{actor, free_addr, private_database, Follower, Rng};
use uuid::Uuid;

const SHAPE: &str = "/api/shapes/turns?";
/// How long one request may take before the device gives up on it (a hung connection).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One simulated device.
struct Device {
    name: String,
    actor: Actor,
    client: Client,
    cookie: String,
    follower: Follower,
    /// Queued edits, in order (the device's durable outbox).
    outbox: Vec<Mutation>,
    online: bool,
    /// Server errors answered to this device, by status.
    server_errors: BTreeMap<u16, usize>,
}

#[derive(Default, Debug)]
struct Tally {
    operations: usize,
    edits: usize,
    sends: usize,
    failed_sends: usize,
    lost_responses: usize,
    polls: usize,
    failed_polls: usize,
    must_refetch: usize,
    offline_periods: usize,
    reloads: usize,
    refetches: usize,
    sql_writes: usize,
    client_cuts: usize,
    database_cuts: usize,
    delays: usize,
    app_kills: usize,
    database_restarts: usize,
    database_crashes: usize,
    /// Wall time spent per kind of operation.
    time: BTreeMap<&'static str, Duration>,
}

enum Poll {
    UpToDate,
    More,
    Failed,
}

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
            .rows()
            .get(&row_key(turn))
            .and_then(|r| r.get(column))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    }

    async fn request(&mut self, method: &str, path: &str, body: &str) -> Option<http::Reply> {
        let user = self.actor.user_id.to_string();
        let headers = [
            ("Cookie", self.cookie.as_str()),
            ("X-Turns-User", user.as_str()),
            ("Content-Type", "application/json"),
        ];
        let call = self.client.request(method, path, &headers, body);
        match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
            Ok(Ok(reply)) => {
                if reply.status >= 500 {
                    *self.server_errors.entry(reply.status).or_default() += 1;
                }
                Some(reply)
            }
            _ => {
                // Connection refused, reset or hung: start over on a new connection, after a
                // pause (as a client backs off).
                self.client = Client::new(&self.client_addr());
                tokio::time::sleep(Duration::from_millis(20)).await;
                None
            }
        }
    }

    fn client_addr(&self) -> String {
        self.client.addr().to_string()
    }

    /// Send up to `n` queued mutations; their answers, or `None` when none came back.
    async fn send(&mut self, n: usize) -> Option<Vec<Outcome>> {
        let n = n.min(self.outbox.len());
        let body = serde_json::json!({ "batch": &self.outbox[..n] }).to_string();
        let reply = self.request("POST", "/api/mutate", &body).await?;
        if reply.status != 200 {
            return None;
        }
        let answers: Vec<Outcome> = serde_json::from_str(&reply.body)
            .unwrap_or_else(|e| panic!("mutate answered ({e}): {}", reply.body));
        assert_eq!(answers.len(), n, "one answer per mutation");
        Some(answers)
    }

    /// One shape request from where the device is (the start, after a reload that lost it).
    async fn poll(&mut self, tally: &mut Tally) -> Poll {
        let path = self.follower.url(false);
        let reply = self.request("GET", &path, "").await;
        let Some(reply) = reply else {
            return Poll::Failed;
        };
        let head = ResponseHead::read(reply.status, |name| reply.headers.get(name).cloned());
        match self.follower.read(&head, &reply.body) {
            Ok(true) => Poll::UpToDate,
            Ok(false) => Poll::More,
            Err(Step::Refetch) => {
                // The shape was rotated: start over, as the official client does.
                tally.must_refetch += 1;
                Poll::Failed
            }
            Err(_) => Poll::Failed,
        }
    }
}

fn empty_follower(cookie: &str) -> Follower {
    Follower::new(SHAPE, Some(cookie))
}

fn row_key(turn: Uuid) -> String {
    format!("\"public\".\"turns\"/\"{turn}\"")
}

/// The app as a separate process: killed with SIGKILL, started again on the same address.
struct App {
    addr: String,
    database_url: String,
    /// Each start's log goes to `app-<n>.log` in this directory.
    logs: PathBuf,
    starts: usize,
    child: Option<Child>,
}

impl App {
    /// Start it, trying again while the database is still coming back.
    async fn start(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            self.starts += 1;
            let log = self.logs.join(format!("app-{}.log", self.starts));
            let env = [("SHAPE_LONG_POLL_SECS", "1"), ("DB_MAX_CONNECTIONS", "8")];
            match start_app(
                env!("CARGO_BIN_EXE_turns-app"),
                &self.database_url,
                &self.addr,
                &env,
                &log,
            )
            .await
            {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(e) => assert!(Instant::now() < deadline, "the app did not start: {e}"),
            }
        }
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }
}

/// What the faults act on; one fault of these at a time holds it.
struct Services {
    app: App,
    database: Option<LocalPostgres>,
    database_dir: PathBuf,
    database_port: u16,
}

impl Services {
    async fn restart_database(&mut self, crash: bool) {
        let cluster = self.database.take().expect("running");
        let dir = self.database_dir.clone();
        let port = self.database_port;
        let cluster = tokio::task::spawn_blocking(move || {
            if crash {
                cluster.crash();
            } else {
                cluster.stop();
            }
            start_cluster(dir, Some(port))
        })
        .await
        .expect("join");
        self.database = Some(cluster);
    }
}

fn start_cluster(dir: PathBuf, port: Option<u16>) -> LocalPostgres {
    LocalPostgres::start(&ClusterOptions {
        dir,
        port,
        durable: false,
    })
    .unwrap_or_else(|e| panic!("cluster: {e}"))
}

async fn login(addr: &str, email: &str) -> String {
    let body = serde_json::json!({"email": email, "password": turns_server::seed::DEMO_PASSWORD})
        .to_string();
    let reply = Client::new(addr)
        .request(
            "POST",
            "/auth/login",
            &[("Content-Type", "application/json")],
            &body,
        )
        .await
        .expect("login");
    assert_eq!(reply.status, 200, "login {email}: {}", reply.body);
    let cookies = reply.headers.get("set-cookie").expect("cookies");
    cookies
        .lines()
        .find(|c| c.starts_with(turns_server::auth::SESSION_COOKIE))
        .and_then(|c| c.split(';').next())
        .expect("session cookie")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_converge_through_cuts_kills_and_database_restarts() {
    let seed = Rng::seed_from_env("TURNS_MODEL_SEED");
    let target: usize = std::env::var("TURNS_MODEL_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    println!("model: seed {seed} (replay with TURNS_MODEL_SEED={seed}), {target} operations");
    let mut rng = Rng::seeded(seed);

    // PostgreSQL, private to this test so that it can be restarted.
    let tmp = tempfile::tempdir().expect("tmp");
    let (cluster, pool, direct_url) = private_database(tmp.path(), "model").await;
    let database_dir = tmp.path().join("pg");
    let database_port = cluster.port();
    turns_server::seed::seed_demo_if_empty(&pool, Utc::now().date_naive())
        .await
        .expect("seed");

    // The app reaches PostgreSQL through one proxy; the devices reach the app through another.
    let database_addr: SocketAddr = ([127, 0, 0, 1], database_port).into();
    let database_proxy = FaultProxy::start(database_addr).await.expect("proxy");
    let app_url = direct_url.replace(
        &format!(":{database_port}/"),
        &format!(":{}/", database_proxy.addr().port()),
    );
    assert_ne!(app_url, direct_url, "the app goes through the proxy");
    // The app's logs stay after the run (a failure's cause is in them).
    let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("model");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).expect("log dir");
    println!("model: the app's logs are in {}", logs.display());
    let app_addr = free_addr();
    let mut app = App {
        addr: app_addr.clone(),
        database_url: app_url,
        logs: logs.clone(),
        starts: 0,
        child: None,
    };
    app.start().await;
    let app_proxy = FaultProxy::start(app_addr.parse().expect("addr"))
        .await
        .expect("proxy");
    let device_addr = app_proxy.addr().to_string();
    let services = Arc::new(tokio::sync::Mutex::new(Services {
        app,
        database: Some(cluster),
        database_dir,
        database_port,
    }));

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
        let cookie = login(&device_addr, email).await;
        devices.push(Device {
            name: format!("{email}#{i}"),
            actor: actor(&pool, email).await,
            client: Client::new(&device_addr),
            follower: empty_follower(&cookie),
            cookie,
            outbox: Vec::new(),
            online: true,
            server_errors: BTreeMap::new(),
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
    let started = Instant::now();
    let database_proxy = Arc::new(database_proxy);
    let app_proxy = Arc::new(app_proxy);

    let record =
        |outcomes: &mut HashMap<Uuid, Outcome>, batch: &[Mutation], answers: Vec<Outcome>| {
            for (m, o) in batch.iter().zip(answers) {
                if let Some(first) = outcomes.get(&m.id) {
                    assert_eq!(first, &o, "seed {seed}: a replay answered differently");
                }
                outcomes.insert(m.id, o);
            }
        };

    while tally.operations < target {
        tally.operations += 1;
        let step = tally.operations;
        let d = rng.below(devices.len() as u64) as usize;
        let roll = rng.below(100);
        let dev = &mut devices[d];
        let op_started = Instant::now();
        let kind = match roll {
            0..=19 => "edit",
            20..=44 => "send",
            45..=79 => "poll",
            89..=94 => "sql",
            95..=99 => "fault",
            _ => "other",
        };
        'op: {
            match roll {
                // Edit a turn the device shows.
                0..=19 => {
                    let keys: Vec<Uuid> = dev
                        .follower
                        .rows()
                        .values()
                        .filter_map(|r| r.get("id")?.as_str()?.parse().ok())
                        .collect();
                    if keys.is_empty() {
                        break 'op;
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
                20..=44 if dev.online && !dev.outbox.is_empty() => {
                    let n = dev.outbox.len().min(1 + rng.below(50) as usize);
                    for m in &dev.outbox[..n] {
                        *sent_times.entry(m.id).or_default() += 1;
                    }
                    tally.sends += 1;
                    let Some(answers) = dev.send(n).await else {
                        tally.failed_sends += 1;
                        break 'op;
                    };
                    if rng.chance(10) {
                        tally.lost_responses += 1;
                        break 'op;
                    }
                    let batch: Vec<Mutation> = dev.outbox.drain(..n).collect();
                    record(&mut outcomes, &batch, answers);
                }
                // Read the shape (online only).
                45..=79 if dev.online => {
                    tally.polls += 1;
                    if let Poll::Failed = dev.poll(&mut tally).await {
                        tally.failed_polls += 1;
                    }
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
                    dev.client = Client::new(&device_addr);
                    if rng.chance(30) {
                        tally.refetches += 1;
                        dev.follower = empty_follower(&dev.cookie);
                    }
                }
                // Someone with psql, racing the devices (while the database is up).
                89..=94 => {
                    let turn = all_turns[rng.below(all_turns.len() as u64) as usize];
                    let wrote = sqlx::query("UPDATE turns SET wo_number = $2 WHERE id = $1")
                        .bind(turn)
                        .bind(format!("SQL-{step}"))
                        .execute(&pool)
                        .await;
                    tally.sql_writes += usize::from(wrote.is_ok());
                }
                // The network: a cut between devices and app or app and database, a few
                // milliseconds from now (while the next requests are in flight), or a slow link.
                95..=97 => {
                    let after = Duration::from_millis(rng.below(30));
                    // Database cuts are rarer: each one sends the replication stream through its
                    // reconnect, and devices starting a shape wait for it to catch up.
                    match rng.below(10) {
                        0..=3 => {
                            tally.client_cuts += 1;
                            let proxy = app_proxy.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(after).await;
                                proxy.cut();
                            });
                        }
                        4 => {
                            tally.database_cuts += 1;
                            let proxy = database_proxy.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(after).await;
                                proxy.cut();
                            });
                        }
                        _ => {
                            tally.delays += 1;
                            // A slow phone link, or a database a little further away (every
                            // query of a batch pays it, so it is kept small).
                            let slow = rng.chance(50);
                            let (link, database) = if slow {
                                (rng.below(25), rng.below(3))
                            } else {
                                (0, 0)
                            };
                            app_proxy.set_delay(Duration::from_millis(link));
                            database_proxy.set_delay(Duration::from_millis(database));
                        }
                    }
                }
                // The app dies (kill -9) mid-whatever and comes back; or PostgreSQL restarts,
                // cleanly or after a crash. One such fault at a time; devices carry on meanwhile.
                98 | 99 if rng.chance(6) => {
                    let Ok(mut services) = services.clone().try_lock_owned() else {
                        break 'op;
                    };
                    let after = Duration::from_millis(rng.below(50));
                    let kill = roll == 98;
                    let crash = rng.chance(50);
                    if kill {
                        tally.app_kills += 1;
                    } else if crash {
                        tally.database_crashes += 1;
                    } else {
                        tally.database_restarts += 1;
                    }
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        if kill {
                            services.app.kill9();
                            services.app.start().await;
                        } else {
                            services.restart_database(crash).await;
                        }
                    });
                }
                _ => {}
            }
        }
        *tally.time.entry(kind).or_default() += op_started.elapsed();
    }
    let operations_took = started.elapsed();

    // Quiescence: faults over, links fast, everyone online, every outbox drained, every device
    // caught up.
    let mut services = services.lock().await;
    let quiet = Instant::now();
    app_proxy.set_delay(Duration::ZERO);
    database_proxy.set_delay(Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(120);
    for dev in devices.iter_mut() {
        dev.online = true;
        while !dev.outbox.is_empty() {
            let n = dev.outbox.len().min(50);
            for m in &dev.outbox[..n] {
                *sent_times.entry(m.id).or_default() += 1;
            }
            match dev.send(n).await {
                Some(answers) => {
                    let batch: Vec<Mutation> = dev.outbox.drain(..n).collect();
                    record(&mut outcomes, &batch, answers);
                }
                None => {
                    assert!(
                        Instant::now() < deadline,
                        "seed {seed}: the outbox never drained"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    // 1. Every device holds exactly its user's authorized view (once the stream delivered
    // everything committed: read until it does, or the deadline).
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
    type View = BTreeMap<String, (Option<String>, Option<String>, String)>;
    let truth: Vec<Truth> = sqlx::query_as(
        "SELECT t.id, p.property_manager_id, p.sr_property_manager_id, t.vendor_id,
                t.approval_status, t.wo_number, t.expected_completion_date::text, t.version::text
           FROM turns t JOIN properties p ON p.id = t.property_id WHERE t.is_active",
    )
    .fetch_all(&pool)
    .await
    .expect("truth");
    let text = |r: &serde_json::Map<String, serde_json::Value>, c: &str| {
        r.get(c).and_then(|v| v.as_str()).map(str::to_string)
    };
    for dev in devices.iter_mut() {
        let want: View = truth
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
        loop {
            let up_to_date = matches!(dev.poll(&mut tally).await, Poll::UpToDate);
            let got: View = dev
                .follower
                .rows()
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
            if up_to_date && got == want {
                break;
            }
            if up_to_date {
                tokio::time::sleep(Duration::from_millis(50)).await; // the stream lags
            }
            if Instant::now() > deadline {
                assert_eq!(got, want, "seed {seed}: {} diverged", dev.name);
            }
        }
    }

    let converged_in = quiet.elapsed();
    let mut server_errors: BTreeMap<u16, usize> = BTreeMap::new();
    for dev in &devices {
        for (status, n) in &dev.server_errors {
            *server_errors.entry(*status).or_default() += n;
        }
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
        assert_eq!(
            audits.get(id).copied().unwrap_or(0),
            i64::from(wrote),
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
        "model: {tally:?}; operations took {:.0?}, converging {:.0?}; proxied connections: {} device, {} database; \
         server errors by status {server_errors:?}; {} mutations: {applied} applied, {refused} \
         refused with a reason, {resent} sent more than once; 0 lost, 0 duplicated",
        operations_took,
        converged_in,
        app_proxy.connections(),
        database_proxy.connections(),
        outcomes.len()
    );
    assert!(applied > 0 && tally.polls > tally.failed_polls);
    // A fault is "not now" (503, retried), never an internal error.
    assert_eq!(
        server_errors.get(&500),
        None,
        "seed {seed}: 500s answered during faults (see the app's logs)"
    );
    services.app.kill9();
    pool.close().await;
    if let Some(cluster) = services.database.take() {
        tokio::task::spawn_blocking(move || cluster.stop())
            .await
            .expect("stop");
    }
}

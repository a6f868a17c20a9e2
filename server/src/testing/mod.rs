//! Test support: one private PostgreSQL cluster per test process, a fresh database per test.
use crate::config::Config;
use crate::db::{connect, create_database_if_missing, MIGRATOR};
use crate::pg::{ClusterOptions, LocalPostgres};
use crate::AppState;
use serde_json::Value;
use sqlx::PgPool;
use std::path::PathBuf;
use std::sync::OnceLock;
use turns::shape_follower::{Columns, ResponseHead, ShapeFollower, Step};
use turns::shape_protocol::{header as wire, Operation};
use turns::shape_rows::ShapeRows;

pub mod fault_proxy;
pub mod http;
pub mod nginx;

static CLUSTER: OnceLock<LocalPostgres> = OnceLock::new();

fn cluster() -> &'static LocalPostgres {
    CLUSTER.get_or_init(|| {
        let root = std::env::temp_dir();
        // Clusters of earlier test processes die with them; remove their directories.
        if let Ok(entries) = std::fs::read_dir(&root) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if let Some(pid) = name.strip_prefix("turns-test-pg-") {
                    if !PathBuf::from(format!("/proc/{pid}")).exists() {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let dir = root.join(format!("turns-test-pg-{}", std::process::id()));
        LocalPostgres::start(&ClusterOptions {
            dir,
            port: None,
            durable: false,
        })
        .unwrap_or_else(|e| panic!("test cluster: {e}"))
    })
}

/// A new, migrated database in the test cluster, and its URL.
pub async fn fresh_database() -> (PgPool, String) {
    let cluster = tokio::task::spawn_blocking(cluster)
        .await
        .unwrap_or_else(|e| panic!("start test cluster: {e}"));
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    migrated_database(cluster, &name).await
}

/// Create database `name` in `cluster` and migrate it; a pool on it, and its URL.
async fn migrated_database(cluster: &LocalPostgres, name: &str) -> (PgPool, String) {
    create_database_if_missing(&cluster.url("postgres"), name)
        .await
        .unwrap_or_else(|e| panic!("create database: {e}"));
    let url = cluster.url(name);
    let pool = connect(&url, 5)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    MIGRATOR
        .run(&pool)
        .await
        .unwrap_or_else(|e| panic!("migrate: {e}"));
    (pool, url)
}

/// A cluster of a test's own (one it may stop, restart or crash), in `root/pg`, with one
/// migrated database `name`. `root` (a temporary directory) is opened to the cluster's user.
pub async fn private_database(
    root: &std::path::Path,
    name: &str,
) -> (LocalPostgres, PgPool, String) {
    std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", root.display()));
    let dir = root.join("pg");
    let cluster = tokio::task::spawn_blocking(move || {
        LocalPostgres::start(&ClusterOptions {
            dir,
            port: None,
            durable: false,
        })
        .unwrap_or_else(|e| panic!("cluster: {e}"))
    })
    .await
    .unwrap_or_else(|e| panic!("start cluster: {e}"));
    let (pool, url) = migrated_database(&cluster, name).await;
    (cluster, pool, url)
}

/// A free loopback address for a server a test starts.
pub fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.to_string())
        .unwrap_or_else(|e| panic!("free address: {e}"))
}

/// App state on a fresh database with the demo data loaded (`config.database_url` is its URL).
pub async fn demo_state() -> AppState {
    let (pool, url) = fresh_database().await;
    crate::seed::seed_demo_if_empty(&pool, chrono::Utc::now().date_naive())
        .await
        .unwrap_or_else(|e| panic!("seed: {e}"));
    AppState::new(
        pool,
        Config {
            database_url: Some(url),
            ..Config::for_tests()
        },
    )
}

/// The plain routes behind the session layer and the shape routes beside them, as the app mounts
/// them (without Leptos).
pub fn plain_router(state: AppState) -> axum::Router {
    let plain = crate::http::routes()
        .merge(crate::photos::routes())
        .merge(crate::export::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::http::session_layer,
        ))
        .layer(axum::middleware::from_fn(crate::http::same_origin_writes))
        .with_state(state.clone());
    crate::shapes::http::beside(state, plain)
}

/// A response read whole.
pub struct Reply {
    pub status: axum::http::StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The session cookie's `name=value` this response sets, if any.
    pub fn session_cookie(&self) -> Option<String> {
        self.headers
            .get_all(axum::http::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(crate::auth::SESSION_COOKIE))
            .and_then(|v| v.split(';').next())
            .map(str::to_string)
    }

    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(axum::http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
    }
}

/// Send one request through a router in-process.
pub async fn send(
    router: &axum::Router,
    method: &str,
    uri: &str,
    cookie: Option<&str>,
    body: Option<(&str, String)>,
) -> Reply {
    let cookie: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
    send_with(router, method, uri, &cookie, body).await
}

/// Send one request with the given headers through a router in-process.
pub async fn send_with(
    router: &axum::Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, String)>,
) -> Reply {
    use tower::ServiceExt;
    let mut req = axum::http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let body = match body {
        Some((content_type, b)) => {
            req = req.header(axum::http::header::CONTENT_TYPE, content_type);
            axum::body::Body::from(b)
        }
        None => axum::body::Body::empty(),
    };
    let req = req.body(body).unwrap_or_else(|e| panic!("request: {e}"));
    let res = router
        .clone()
        .oneshot(req)
        .await
        .unwrap_or_else(|e| match e {});
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap_or_else(|e| panic!("body: {e}"));
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Log in through the JSON login endpoint; returns the cookie pair to send back.
pub async fn login(router: &axum::Router, email: &str) -> String {
    let body =
        serde_json::json!({"email": email, "password": crate::seed::DEMO_PASSWORD}).to_string();
    let reply = send(
        router,
        "POST",
        "/auth/login",
        None,
        Some(("application/json", body)),
    )
    .await;
    assert_eq!(reply.status, 200, "login {email}: {}", reply.body);
    reply
        .session_cookie()
        .unwrap_or_else(|| panic!("no session cookie for {email}"))
}

/// The actor for a user, by email (tests act as the demo users).
pub async fn actor(pool: &PgPool, email: &str) -> turns::Actor {
    let (user_id, role, vendor_id) =
        sqlx::query_as("SELECT id, role, vendor_id FROM users WHERE email = $1")
            .bind(email)
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| panic!("user {email}: {e}"));
    turns::Actor {
        user_id,
        role,
        vendor_id,
    }
}

/// Every property's facts for the policy (tests compare the server with the policy on them).
pub async fn property_facts(pool: &PgPool) -> Vec<(uuid::Uuid, turns::policy::PropertyFacts)> {
    sqlx::query_as::<_, (uuid::Uuid, Option<uuid::Uuid>, Option<uuid::Uuid>)>(
        "SELECT id, property_manager_id, sr_property_manager_id FROM properties",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_else(|e| panic!("properties: {e}"))
    .into_iter()
    .map(|(id, pm, sr)| {
        let facts = turns::policy::PropertyFacts {
            property_manager_id: pm,
            sr_property_manager_id: sr,
        };
        (id, facts)
    })
    .collect()
}

/// A benchmark's database: a fresh, durable private cluster in `dir` (wiped first), migrated,
/// with the demo data. Keep `cluster` alive while the benchmark runs.
pub struct BenchDatabase {
    pub cluster: LocalPostgres,
    pub url: String,
    pub pool: PgPool,
}

pub async fn bench_database(
    dir: &std::path::Path,
    connections: u32,
) -> Result<BenchDatabase, Box<dyn std::error::Error + Send + Sync>> {
    let _ = std::fs::remove_dir_all(dir);
    let pg_dir = dir.join("pg");
    let cluster = tokio::task::spawn_blocking(move || {
        LocalPostgres::start(&ClusterOptions {
            dir: pg_dir,
            port: None,
            durable: true,
        })
    })
    .await??;
    create_database_if_missing(&cluster.url("postgres"), "bench").await?;
    let url = cluster.url("bench");
    let pool = connect(&url, connections).await?;
    MIGRATOR.run(&pool).await?;
    crate::seed::seed_demo_if_empty(&pool, chrono::Utc::now().date_naive())
        .await
        .map_err(|e| e.to_string())?;
    Ok(BenchDatabase { cluster, url, pool })
}

/// A client that materialises a shape (the core's follower and rows, as the browser does).
/// It fails loudly on what a correct server never sends: an insert of a key it has, an update
/// or delete of one it lacks, a row that does not read, or a row going back to an older version.
pub struct Follower {
    pub base: String,
    pub cookie: Option<String>,
    pub stream: ShapeFollower,
    rows: ShapeRows<Columns>,
}

impl Follower {
    /// A follower that has not asked yet; `base` ends in `?` or `&`.
    pub fn new(base: &str, cookie: Option<&str>) -> Follower {
        Follower {
            base: base.to_string(),
            cookie: cookie.map(str::to_string),
            stream: ShapeFollower::new(),
            rows: ShapeRows::default(),
        }
    }

    /// Start at `offset=-1` (one request).
    pub async fn start(router: &axum::Router, base: &str, cookie: Option<&str>) -> Follower {
        let mut f = Follower::new(base, cookie);
        let r = f.send(router, false).await;
        assert!(r.headers.contains_key(wire::SCHEMA));
        f.apply(&r);
        f
    }

    /// The rows held (as of the last up-to-date), by key.
    pub fn rows(&self) -> &std::collections::BTreeMap<String, Columns> {
        self.rows.columns()
    }

    pub fn handle(&self) -> String {
        self.stream
            .request()
            .handle
            .map(|h| h.to_string())
            .unwrap_or_default()
    }

    pub fn offset(&self) -> String {
        self.stream.request().offset.to_string()
    }

    /// Where it stands (after its first answer).
    pub fn position(&self) -> Option<turns::shape_follower::Position> {
        self.stream.position()
    }

    /// The URL of the next request (`live`: wait for changes, once up to date).
    pub fn url(&self, live: bool) -> String {
        let mut request = self.stream.request();
        request.live &= live;
        format!("{}{}", self.base, request.query(None))
    }

    async fn send(&self, router: &axum::Router, live: bool) -> Reply {
        let url = self.url(live);
        let r = send(router, "GET", &url, self.cookie.as_deref(), None).await;
        assert_eq!(r.status, 200, "{url}: {}", r.body);
        r
    }

    pub fn apply(&mut self, r: &Reply) -> bool {
        let head = ResponseHead::read(r.status.as_u16(), |name| {
            r.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        });
        self.receive(&head, &r.body)
    }

    /// Read one answer; returns whether it ended up to date.
    pub fn receive(&mut self, head: &ResponseHead, body: &str) -> bool {
        self.read(head, body)
            .unwrap_or_else(|step| panic!("{}: {step:?} for {body}", self.base))
    }

    /// Read one answer: whether it ended up to date, or what else it meant (a refetch, say).
    pub fn read(&mut self, head: &ResponseHead, body: &str) -> Result<bool, Step> {
        let batch = match self.stream.receive(head, body) {
            Step::Changes(batch) => batch,
            other => return Err(other),
        };
        let version = |c: &Columns| -> Option<i64> {
            match c.get("version")? {
                Value::String(s) => s.parse().ok(),
                v => v.as_i64(),
            }
        };
        let mut before = std::collections::BTreeMap::new();
        for m in &batch.changes {
            if m.operation == Operation::Update {
                if let Some(v) = self.rows.columns().get(&m.key).and_then(version) {
                    before.entry(m.key.clone()).or_insert(v);
                }
            }
        }
        let up_to_date = batch.up_to_date;
        if let Some(applied) = self.rows.add(batch) {
            assert!(
                applied.anomalies.is_empty(),
                "{}: {:?}",
                self.base,
                applied.anomalies
            );
            for (key, before) in before {
                let after = self.rows.columns().get(&key).and_then(version);
                assert!(
                    after.is_none_or(|after| after > before),
                    "{key}: version {before} then {after:?}"
                );
            }
        }
        Ok(up_to_date)
    }

    /// One request from the current position; returns whether it ended up to date.
    pub async fn poll(&mut self, router: &axum::Router, live: bool) -> bool {
        let r = self.send(router, live).await;
        self.apply(&r)
    }

    /// Read until up to date with everything committed so far.
    pub async fn catch_up(&mut self, state: &AppState, router: &axum::Router) {
        state
            .shapes
            .as_ref()
            .expect("shapes")
            .caught_up()
            .await
            .expect("log caught up");
        while !self.poll(router, false).await {}
    }
}

/// A small seeded generator for randomized tests (xorshift64*, seeded through splitmix64 so
/// that nearby seeds start far apart): replayable from the seed a failing run prints.
pub struct Rng(u64);

impl Rng {
    pub fn seeded(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// The seed from `var` when set (to replay a run), else from the clock.
    pub fn seed_from_env(var: &str) -> u64 {
        std::env::var(var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            })
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough in `0..n` (`n` of 0 counts as 1).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

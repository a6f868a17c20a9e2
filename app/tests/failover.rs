//! More than one app instance on one database. Three app processes share a PostgreSQL: one leads
//! the change log (it holds the replication slot and writes `sync_log`), the others follow
//! `sync_log`. Clients follow one shape on every instance while a writer commits rows; the leader
//! is killed with SIGKILL mid-stream. Its clients move to another instance with the same handle
//! and offset (as behind a load balancer), another instance takes the lead, and the killed one
//! comes back as a follower, where new clients start. At the end every client holds every row
//! exactly once, received in commit order, and no request was answered 409 (must refetch).
use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use turns::shape_follower::ResponseHead;
use turns_server::testing::http::{get, start_app, Client};
use turns_server::testing::{free_addr, private_database, Follower};

const SECRET: &str = "failover-test-secret";
const INSTANCES: usize = 3;
const CLIENTS_PER_INSTANCE: usize = 3;
/// Rows written while all three run, the leader killed after `KILL_AFTER` of them.
const ROWS: usize = 240;
const KILL_AFTER: usize = 80;
/// Rows written after the killed instance is back.
const MORE_ROWS: usize = 40;
const SHAPE: &str =
    "/v1/shape?secret=failover-test-secret&table=vendors&where=trade%20%3D%20%27failover%27";

struct Instance {
    addr: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn start(instance: &mut Instance, database_url: &str) {
    let child = start_app(
        env!("CARGO_BIN_EXE_turns-app"),
        database_url,
        &instance.addr,
        &[("SHAPE_SECRET", SECRET), ("SHAPE_LONG_POLL_SECS", "10")],
        &instance.log,
    )
    .await
    .unwrap_or_else(|e| panic!("start {}: {e}", instance.addr));
    instance.child = Some(child);
}

/// The instance's role, from `/v1/health` (`None` when it does not answer).
async fn role(addr: &str) -> Option<String> {
    let r = get(addr, "/v1/health").await.ok()?;
    let health: serde_json::Value = serde_json::from_str(&r.body).ok()?;
    health["role"].as_str().map(str::to_string)
}

/// Wait until exactly one of the running instances leads; its index.
async fn the_leader(instances: &[Instance]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut leaders = Vec::new();
        for (i, inst) in instances.iter().enumerate() {
            if inst.child.is_some() && role(&inst.addr).await.as_deref() == Some("leader") {
                leaders.push(i);
            }
        }
        if let [one] = leaders[..] {
            return one;
        }
        assert!(Instant::now() < deadline, "leaders: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one client received: the row numbers of its snapshot (in table order) and of the
/// changes after it (in arrival order).
#[derive(Default)]
struct Received {
    snapshot: Vec<usize>,
    changes: Vec<usize>,
    moves: usize,
}

impl Received {
    fn rows(&self) -> usize {
        self.snapshot.len() + self.changes.len()
    }
}

/// Follow the shape from `addrs[first]`, moving to the next instance whenever one stops
/// answering, with the same handle and offset.
fn spawn_client(
    addrs: Arc<Vec<String>>,
    first: usize,
    received: Arc<Mutex<Received>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut at = first;
        let mut client = Client::new(&addrs[at]);
        let mut follower = Follower::new(&format!("{SHAPE}&"), None);
        loop {
            let path = follower.url(true);
            let r = match client.get(&path).await {
                Ok(r) if r.status < 500 => r,
                _ => {
                    // This instance is gone (or not ready): the next one, same handle and offset.
                    at = (at + 1) % addrs.len();
                    client = Client::new(&addrs[at]);
                    received.lock().expect("received").moves += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            assert_eq!(r.status, 200, "{path} on {}: {}", addrs[at], r.body);
            let snapshot = follower.stream.wants_snapshot();
            // Panics on an insert of a row it has: a change delivered twice.
            follower.receive(
                &ResponseHead::read(r.status, |name| r.headers.get(name).cloned()),
                &r.body,
            );
            let messages: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
            let mut got = received.lock().expect("received");
            for m in messages.as_array().into_iter().flatten() {
                if let Some(name) = m["value"]["name"].as_str() {
                    let n = name[2..].parse().expect("row number");
                    if snapshot {
                        got.snapshot.push(n);
                    } else {
                        got.changes.push(n);
                    }
                }
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_every_instance_converge_when_the_leader_is_killed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_cluster, pool, url) = private_database(tmp.path(), "failover").await;

    let mut instances: Vec<Instance> = (0..INSTANCES)
        .map(|i| Instance {
            addr: free_addr(),
            log: tmp.path().join(format!("app-{i}.log")),
            child: None,
        })
        .collect();
    for inst in &mut instances {
        start(inst, &url).await;
    }
    let leader = the_leader(&instances).await;
    let addrs = Arc::new(instances.iter().map(|i| i.addr.clone()).collect::<Vec<_>>());

    let insert = |n: usize| {
        sqlx::query("INSERT INTO vendors (name, trade, is_approved) VALUES ($1, 'failover', true)")
            .bind(format!("F-{n:04}"))
            .execute(&pool)
    };
    // A first row, so that the snapshots are not empty; then clients on every instance.
    insert(0).await.expect("insert");
    let mut clients = Vec::new();
    let mut received = Vec::new();
    for i in 0..INSTANCES * CLIENTS_PER_INSTANCE {
        let r = Arc::new(Mutex::new(Received::default()));
        clients.push(spawn_client(addrs.clone(), i % INSTANCES, r.clone()));
        received.push(r);
    }

    let mut takeover: Option<tokio::task::JoinHandle<Duration>> = None;
    for n in 1..ROWS {
        insert(n).await.expect("insert");
        if n == KILL_AFTER {
            // SIGKILL: no shutdown; its lock and replication connections just close.
            let mut child = instances[leader].child.take().expect("leader runs");
            child.kill().expect("kill");
            child.wait().expect("wait");
            // How long until another instance leads (measured beside the writes).
            let others: Vec<String> = (0..INSTANCES)
                .filter(|&i| i != leader)
                .map(|i| instances[i].addr.clone())
                .collect();
            takeover = Some(tokio::spawn(async move {
                let killed = Instant::now();
                loop {
                    for addr in &others {
                        if role(addr).await.as_deref() == Some("leader") {
                            return killed.elapsed();
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let new_leader = the_leader(&instances).await;
    assert_ne!(new_leader, leader);
    let takeover = takeover.expect("killed").await.expect("takeover");

    // The killed instance comes back, as a follower; new clients start there.
    start(&mut instances[leader], &url).await;
    assert_eq!(
        role(&instances[leader].addr).await.as_deref(),
        Some("follower")
    );
    for _ in 0..CLIENTS_PER_INSTANCE {
        let r = Arc::new(Mutex::new(Received::default()));
        clients.push(spawn_client(addrs.clone(), leader, r.clone()));
        received.push(r);
    }
    for n in ROWS..ROWS + MORE_ROWS {
        insert(n).await.expect("insert");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let total = ROWS + MORE_ROWS;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = received
            .iter()
            .filter(|r| r.lock().expect("r").rows() >= total)
            .count();
        if done == received.len() {
            break;
        }
        for c in &clients {
            assert!(!c.is_finished(), "a client failed (see its panic above)");
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = instances
                .iter()
                .map(|i| std::fs::read_to_string(&i.log).unwrap_or_default())
                .collect();
            panic!(
                "{done} of {} clients have all {total} rows; app logs:\n{}",
                received.len(),
                logs.join("\n---\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for c in &clients {
        c.abort();
    }
    let mut moved = 0;
    for (i, r) in received.iter().enumerate() {
        let r = r.lock().expect("r");
        // The rows committed before the snapshot (one writer: a prefix), then every later one
        // once, in commit order.
        let mut snapshot = r.snapshot.clone();
        snapshot.sort_unstable();
        let k = snapshot.len();
        assert_eq!(snapshot, (0..k).collect::<Vec<_>>(), "client {i}: snapshot");
        assert_eq!(
            r.changes,
            (k..total).collect::<Vec<_>>(),
            "client {i}: the changes after its snapshot, once each, in commit order"
        );
        moved += usize::from(r.moves > 0);
    }
    // The killed instance's clients had to move (the others may have too, while it restarted).
    assert!(moved >= CLIENTS_PER_INSTANCE, "{moved} clients moved");
    println!(
        "failover: {} clients on {INSTANCES} instances, {total} rows each, {moved} moved; leader {leader} killed, {new_leader} led {} ms later",
        received.len(),
        takeover.as_millis()
    );
}

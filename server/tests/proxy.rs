//! The caching proxy in front of the generic shape endpoint (`deploy/nginx.conf`, Debian's
//! nginx): many clients following one shape through it all receive every change, while the
//! origin answers about one live request per change, not one per client.
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use turns_server::serve::{serve, Limits};
use turns_server::testing::http::{get, Client};
use turns_server::testing::nginx::Nginx;
use turns_server::testing::{demo_state, plain_router};

const SECRET: &str = "proxy-test-secret";
const CLIENTS: usize = 200;
const CHANGES: usize = 5;

/// One of the origin's counters.
async fn counter(origin: &str, name: &str) -> u64 {
    let m = get(origin, &format!("/metrics?secret={SECRET}"))
        .await
        .expect("metrics");
    m.body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// The origin's count of live requests it answered.
async fn live_answered(origin: &str) -> u64 {
    counter(origin, "turns_shape_live_requests_answered_total").await
}

async fn wait_until(what: &str, nginx: &Nginx, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out: {what}\nnginx: {}",
            nginx.error_log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_on_one_shape_cost_the_origin_one_request_per_change() {
    let mut state = demo_state().await;
    let mut config = (*state.config).clone();
    config.shape_secret = Some(SECRET.into());
    config.long_poll = Duration::from_secs(20);
    state.config = Arc::new(config);
    let url = state.config.database_url.clone().expect("url");
    let state = state.start_shapes(&url).await.expect("shapes");
    let pool = state.pool.clone();
    sqlx::query(
        "INSERT INTO vendors (name, trade, is_approved, contact_phone)
         VALUES ('Proxy Test Co', 'proxy-test', true, 'start')",
    )
    .execute(&pool)
    .await
    .expect("row");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let origin = listener.local_addr().expect("addr").to_string();
    tokio::spawn(serve(
        listener,
        plain_router(state.clone()),
        Limits::default(),
        std::future::pending(),
    ));
    let prefix = std::env::temp_dir().join(format!("turns-nginx-{}", std::process::id()));
    let nginx = Nginx::start(&prefix, &origin)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let proxy = nginx.addr().to_string();

    let base =
        format!("/v1/shape?secret={SECRET}&table=vendors&where=trade%20%3D%20%27proxy-test%27");
    let asking = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<HashMap<usize, Vec<String>>>> = Arc::default();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let (proxy, base, asking, seen) =
            (proxy.clone(), base.clone(), asking.clone(), seen.clone());
        clients.push(tokio::spawn(async move {
            let mut client = Client::new(&proxy);
            let r = client
                .get(&format!("{base}&offset=-1"))
                .await
                .expect("snapshot");
            assert_eq!(r.status, 200, "{}", r.body);
            let header = |r: &turns_server::testing::http::Reply, k: &str| {
                r.headers
                    .get(k)
                    .cloned()
                    .unwrap_or_else(|| panic!("no {k}: {:?}", r.headers))
            };
            let (handle, mut offset) =
                (header(&r, "electric-handle"), header(&r, "electric-offset"));
            let mut cursor: Option<String> = None;
            let mut live = false;
            loop {
                let mut url = format!("{base}&handle={handle}&offset={offset}");
                if live {
                    url.push_str("&live=true");
                    if let Some(c) = &cursor {
                        url.push_str(&format!("&cursor={c}"));
                    }
                    asking.fetch_add(1, Ordering::SeqCst);
                }
                let r = client.get(&url).await;
                if live {
                    asking.fetch_sub(1, Ordering::SeqCst);
                }
                let r = r.expect("shape request");
                assert_eq!(r.status, 200, "{}", r.body);
                offset = header(&r, "electric-offset");
                cursor = r.headers.get("electric-cursor").cloned();
                live = live || r.headers.contains_key("electric-up-to-date");
                let body: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
                for m in body.as_array().into_iter().flatten() {
                    if let Some(phone) = m["value"]["contact_phone"].as_str() {
                        seen.lock()
                            .expect("seen")
                            .entry(i)
                            .or_default()
                            .push(phone.to_string());
                    }
                }
            }
        }));
    }

    let all_live = || asking.load(Ordering::SeqCst) == CLIENTS;
    wait_until("every client live", &nginx, all_live).await;
    let before = live_answered(&origin).await;
    for round in 0..CHANGES {
        sqlx::query("UPDATE vendors SET contact_phone = $1 WHERE trade = 'proxy-test'")
            .bind(format!("round-{round}"))
            .execute(&pool)
            .await
            .expect("change");
        let wanted = format!("round-{round}");
        let seen = seen.clone();
        wait_until(&format!("every client got {wanted}"), &nginx, || {
            let seen = seen.lock().expect("seen");
            (0..CLIENTS).all(|i| seen.get(&i).is_some_and(|v| v.contains(&wanted)))
        })
        .await;
        // Everyone is back in line for the next change before it is made.
        wait_until("every client live again", &nginx, all_live).await;
    }
    let answered = live_answered(&origin).await - before;
    for c in clients {
        c.abort();
    }
    let seen = seen.lock().expect("seen");
    for i in 0..CLIENTS {
        let rounds: Vec<&String> = seen[&i]
            .iter()
            .filter(|p| p.starts_with("round-"))
            .collect();
        assert_eq!(
            rounds.len(),
            CHANGES,
            "client {i} got each change once: {rounds:?}"
        );
    }
    println!("proxy: {CLIENTS} clients × {CHANGES} changes; the origin answered {answered} live requests");
    // One per change, and at most one more per change for a request that reached the origin
    // between two cache entries.
    assert!(
        answered <= 2 * CHANGES as u64,
        "the origin answered {answered} live requests for {CHANGES} changes to {CLIENTS} clients"
    );
    assert!(
        answered >= CHANGES as u64,
        "every change went through the origin"
    );
}

//! Talking to the app as a separate process (the load-generating binaries and the fault test):
//! a keep-alive HTTP/1.1 client (as browsers use), starting the app, and reading its memory.
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use turns::shape_follower::{ResponseHead, ShapeFollower, Step};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// A keep-alive HTTP/1.1 connection (as browsers use); bodies by content-length or chunked.
pub struct Client {
    addr: String,
    conn: Option<tokio::io::BufReader<TcpStream>>,
}

impl Client {
    pub fn new(addr: &str) -> Client {
        Client {
            addr: addr.to_string(),
            conn: None,
        }
    }

    /// The `host:port` it connects to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub async fn get(&mut self, path: &str) -> Result<Reply, Error> {
        self.request("GET", path, &[], "").await
    }

    /// One request, retried once on a fresh connection if the kept-alive one was closed.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Reply, Error> {
        match self.try_request(method, path, headers, body).await {
            Ok(r) => Ok(r),
            Err(_) => {
                self.conn = None;
                self.try_request(method, path, headers, body).await
            }
        }
    }

    async fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Reply, Error> {
        use tokio::io::AsyncBufReadExt;
        if self.conn.is_none() {
            self.conn = Some(tokio::io::BufReader::new(
                TcpStream::connect(&self.addr).await?,
            ));
        }
        let conn = self.conn.as_mut().ok_or("no connection")?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: bench\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        head.push_str(body);
        conn.get_mut().write_all(head.as_bytes()).await?;
        let mut line = String::new();
        conn.read_line(&mut line).await?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("status")?;
        let mut headers = HashMap::new();
        loop {
            line.clear();
            if conn.read_line(&mut line).await? == 0 {
                return Err("closed".into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_lowercase(), v.trim().to_string());
                // Several Set-Cookie headers: keep them all, one per line.
                headers
                    .entry(k)
                    .and_modify(|old: &mut String| {
                        old.push('\n');
                        old.push_str(&v);
                    })
                    .or_insert(v);
            }
        }
        let chunked = headers
            .get("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let mut body = Vec::new();
        if chunked {
            // Chunks of `{hex size}\r\n{data}\r\n`, ending with a zero-size chunk and a blank line.
            loop {
                line.clear();
                conn.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| format!("bad chunk size {line:?}"))?;
                if size == 0 {
                    line.clear();
                    conn.read_line(&mut line).await?;
                    break;
                }
                let at = body.len();
                body.resize(at + size, 0);
                conn.read_exact(&mut body[at..]).await?;
                line.clear();
                conn.read_line(&mut line).await?;
            }
        } else {
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            body.resize(len, 0);
            conn.read_exact(&mut body).await?;
        }
        Ok(Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// One request of a shape follower: `shape` (the shape's URL with its own query: table, where…)
/// and the follower's next position; the follower reads the answer. Returns what it meant, and
/// the answer.
pub async fn follow(
    client: &mut Client,
    shape: &str,
    follower: &mut ShapeFollower,
) -> Result<(Step, Reply), Error> {
    let r = client
        .get(&format!("{shape}&{}", follower.query(None)))
        .await?;
    let head = ResponseHead::read(r.status, |name| r.headers.get(name).cloned());
    Ok((follower.receive(&head, &r.body), r))
}

/// Follow a shape from its snapshot until up to date (the follower is then live).
pub async fn follow_to_now(client: &mut Client, shape: &str) -> Result<ShapeFollower, Error> {
    let mut follower = ShapeFollower::new();
    loop {
        match follow(client, shape, &mut follower).await? {
            (Step::Changes(b), _) if b.up_to_date => return Ok(follower),
            (Step::Changes(_) | Step::Refetch, _) => {}
            (other, r) => return Err(format!("{shape}: {other:?}: {}", r.body).into()),
        }
    }
}

pub async fn get(addr: &str, path: &str) -> Result<Reply, Error> {
    Client::new(addr).get(path).await
}

/// Start the app (the release build, or the test's) on `addr` against `database_url` (no demo data), with extra
/// environment, its log (warnings and errors) going to `log`; returns once `/v1/health`
/// answers; an error as soon as it exits instead.
pub async fn start_app(
    app: &str,
    database_url: &str,
    addr: &str,
    env: &[(&str, &str)],
    log: &std::path::Path,
) -> Result<Child, Error> {
    let mut cmd = Command::new(app);
    cmd.env("DATABASE_URL", database_url)
        .env("SEED_DEMO", "false")
        .env("DB_MAX_CONNECTIONS", "20")
        .env("LEPTOS_OUTPUT_NAME", "turns")
        .env("LEPTOS_SITE_ROOT", "target/site")
        .env("LEPTOS_SITE_PKG_DIR", "pkg")
        .env("LEPTOS_SITE_ADDR", addr)
        .env("LEPTOS_ENV", "PROD")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::from(std::fs::File::create(log)?));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut server = cmd.spawn()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(addr, "/v1/health")
        .await
        .map(|r| r.status != 200)
        .unwrap_or(true)
    {
        if let Some(status) = server.try_wait()? {
            return Err(format!("the server exited: {status}").into());
        }
        if Instant::now() > deadline {
            let _ = server.kill();
            return Err("server did not start".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(server)
}

pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

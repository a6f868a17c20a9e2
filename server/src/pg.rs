//! A private PostgreSQL cluster started from the system's binaries, for development and tests.
//!
//! Used when `DATABASE_URL` is unset. The cluster lives in a data directory of ours (initdb once,
//! then reused), listens on a free loopback port with `wal_level=logical` (the shape server needs
//! it), and runs as an unprivileged user when we are root (initdb refuses root). The postmaster is
//! our child with a parent-death signal, so it never outlives us, and [`LocalPostgres::stop`] shuts
//! it down cleanly (fast shutdown).
use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("PostgreSQL binaries not found (looked in $PG_BINDIR, `pg_config --bindir`, /usr/lib/postgresql/*/bin); install the `postgresql` package")]
    NoBinaries,
    #[error("running as root and there is no `postgres` user to run the cluster as (install the `postgresql` package)")]
    NoUnprivilegedUser,
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PgError {
    let what = what.into();
    move |source| PgError::Io { what, source }
}

/// Options for a private cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Directory that holds `pgdata/`, the password file and the server log.
    pub dir: PathBuf,
    /// Port to listen on; `None` picks a free one.
    pub port: Option<u16>,
    /// Durable (fsync) or fast (tests, benchmarks of throwaway data).
    pub durable: bool,
}

pub struct LocalPostgres {
    pid: u32,
    keeper: Option<JoinHandle<()>>,
    // Mutex only to make the cluster Sync (tests share one in a static).
    exited: std::sync::Mutex<mpsc::Receiver<()>>,
    port: u16,
    password: String,
    dir: PathBuf,
}

struct RunAs {
    uid: u32,
    gid: u32,
}

impl LocalPostgres {
    /// Start (and on first use create) the cluster; returns once it accepts connections.
    pub fn start(opts: &ClusterOptions) -> Result<Self, PgError> {
        let bindir = find_bindir().ok_or(PgError::NoBinaries)?;
        let run_as = run_as()?;
        let dir = absolute(&opts.dir)?;
        let pgdata = dir.join("pgdata");
        fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(io("chmod data dir"))?;
        chown(&dir, &run_as)?;
        let password = ensure_password(&dir, &run_as)?;
        if !pgdata.join("PG_VERSION").exists() {
            init_cluster(&bindir, &dir, &pgdata, &run_as, opts.durable)?;
        }
        let port = match opts.port {
            Some(p) => p,
            None => free_port()?,
        };
        let log_path = dir.join("postgres.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io("open postgres.log"))?;
        let log_err = log.try_clone().map_err(io("clone log handle"))?;

        let mut cmd = as_user(Command::new(bindir.join("postgres")), &run_as);
        cmd.arg("-D").arg(&pgdata).arg("-p").arg(port.to_string());
        let mut settings = vec![
            "listen_addresses=127.0.0.1".to_string(),
            format!("unix_socket_directories={}", dir.display()),
            "wal_level=logical".into(),
            "max_replication_slots=64".into(),
            "max_wal_senders=64".into(),
            "max_connections=300".into(),
        ];
        if !opts.durable {
            settings.extend(["fsync=off".into(), "full_page_writes=off".into()]);
        }
        for s in settings {
            cmd.arg("-c").arg(s);
        }
        cmd.stdin(Stdio::null()).stdout(log).stderr(log_err);
        // SAFETY: prctl and getppid are async-signal-safe; nothing here allocates.
        unsafe {
            cmd.pre_exec(|| {
                // Die with the thread that spawned us (the keeper below lives as long as we run).
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }

        // The keeper thread owns the child: PDEATHSIG fires when the spawning *thread* exits, so
        // spawning from a short-lived (test or runtime) thread would kill the cluster early.
        let (started_tx, started_rx) = mpsc::channel();
        let (exited_tx, exited_rx) = mpsc::channel();
        let keeper = std::thread::Builder::new()
            .name("postgres-keeper".into())
            .spawn(move || match cmd.spawn() {
                Ok(mut child) => {
                    let _ = started_tx.send(Ok(child.id()));
                    let _ = child.wait();
                    let _ = exited_tx.send(());
                }
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                }
            })
            .map_err(io("spawn keeper thread"))?;
        let pid = started_rx
            .recv()
            .map_err(|_| PgError::Failed("postgres keeper thread died".into()))?
            .map_err(io("start postgres"))?;
        let pg = LocalPostgres {
            pid,
            keeper: Some(keeper),
            exited: std::sync::Mutex::new(exited_rx),
            port,
            password,
            dir,
        };
        pg.wait_ready(&bindir, &log_path)?;
        Ok(pg)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// Connection URL for a database in this cluster (superuser `turns`, replication allowed).
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://turns:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    fn wait_ready(&self, bindir: &Path, log_path: &Path) -> Result<(), PgError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.exited_within(Duration::ZERO) {
                return Err(PgError::Failed(format!(
                    "postgres exited during start-up; its log ({}) ends with:\n{}",
                    log_path.display(),
                    tail(log_path)
                )));
            }
            let ready = Command::new(bindir.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(PgError::Failed(format!(
                    "postgres did not accept connections within 60 s; log:\n{}",
                    tail(log_path)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn exited_within(&self, wait: Duration) -> bool {
        let rx = self.exited.lock().unwrap_or_else(|e| e.into_inner());
        rx.recv_timeout(wait).is_ok()
    }

    /// Fast shutdown: roll back open transactions, checkpoint, exit. Waits up to 30 s.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(keeper) = self.keeper.take() else {
            return;
        };
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGINT);
        }
        if !self.exited_within(Duration::from_secs(30)) {
            // SAFETY: as above; immediate shutdown as the last resort.
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGQUIT);
            }
        }
        let _ = keeper.join();
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn find_bindir() -> Option<PathBuf> {
    let has_initdb = |p: &Path| p.join("initdb").is_file();
    if let Some(dir) = std::env::var_os("PG_BINDIR").map(PathBuf::from) {
        return has_initdb(&dir).then_some(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_initdb(&dir) {
            return Some(dir);
        }
    }
    // Debian keeps the server binaries out of PATH, one directory per major version.
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_initdb(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}

/// When root, the cluster runs as `postgres`; otherwise as ourselves.
fn run_as() -> Result<Option<RunAs>, PgError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = c"postgres";
    // SAFETY: getpwnam returns a pointer into static storage or null; we copy out at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(PgError::NoUnprivilegedUser);
    }
    // SAFETY: pw is non-null and points to a valid passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some(RunAs { uid, gid }))
}

fn as_user(mut cmd: Command, run_as: &Option<RunAs>) -> Command {
    if let Some(u) = run_as {
        cmd.uid(u.uid).gid(u.gid);
        // The target user cannot read root's home; keep tools from trying.
        cmd.env("HOME", "/tmp");
    }
    cmd
}

fn chown(path: &Path, run_as: &Option<RunAs>) -> Result<(), PgError> {
    if let Some(u) = run_as {
        std::os::unix::fs::chown(path, Some(u.uid), Some(u.gid))
            .map_err(io(format!("chown {}", path.display())))?;
    }
    Ok(())
}

/// The superuser password, made once and kept beside the cluster (mode 0600).
fn ensure_password(dir: &Path, run_as: &Option<RunAs>) -> Result<String, PgError> {
    let path = dir.join("superuser-password");
    if let Ok(pw) = fs::read_to_string(&path) {
        let pw = pw.trim().to_string();
        if !pw.is_empty() {
            return Ok(pw);
        }
    }
    let pw = hex::encode(rand::random::<[u8; 16]>());
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(io("write superuser-password"))?;
    std::io::Write::write_all(&mut f, pw.as_bytes()).map_err(io("write superuser-password"))?;
    chown(&path, run_as)?;
    Ok(pw)
}

fn init_cluster(
    bindir: &Path,
    dir: &Path,
    pgdata: &Path,
    run_as: &Option<RunAs>,
    durable: bool,
) -> Result<(), PgError> {
    // A half-made directory from an interrupted initdb would make initdb refuse; start over.
    if pgdata.exists() {
        fs::remove_dir_all(pgdata).map_err(io("remove incomplete pgdata"))?;
    }
    let mut cmd = as_user(Command::new(bindir.join("initdb")), run_as);
    cmd.arg("-D")
        .arg(pgdata)
        .args(["-U", "turns", "-E", "UTF8", "--no-locale"])
        .args(["--auth-local=scram-sha-256", "--auth-host=scram-sha-256"])
        .arg(format!(
            "--pwfile={}",
            dir.join("superuser-password").display()
        ));
    if !durable {
        cmd.arg("--no-sync");
    }
    let out = cmd.output().map_err(io("run initdb"))?;
    if !out.status.success() {
        return Err(PgError::Failed(format!(
            "initdb failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

fn free_port() -> Result<u16, PgError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("find a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io("find a free port"))?
        .port();
    Ok(port)
}

fn absolute(p: &Path) -> Result<PathBuf, PgError> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    Ok(std::env::current_dir().map_err(io("current dir"))?.join(p))
}

fn tail(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

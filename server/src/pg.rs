//! A private PostgreSQL cluster started from the system's binaries, for development and tests.
//!
//! Used when `DATABASE_URL` is unset. The cluster lives in a data directory of ours (initdb once,
//! then reused), listens on a free loopback port with `wal_level=logical` (the shape server needs
//! it), and runs as an unprivileged user when we are root (initdb refuses root). The postmaster is
//! our child with a parent-death signal, so it never outlives us, and [`LocalPostgres::stop`] shuts
//! it down cleanly (fast shutdown).
//!
//! As root, the cluster's files must be reachable by that user. A checkout under `/root` (or below
//! any 0700 directory) is not, so then the cluster lives under [`RELOCATED_ROOT`] instead, keyed
//! by the data directory's path; the password file and the log stay in the data directory, where
//! the tools look for them.
use sha2::{Digest, Sha256};
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
    #[error(
        "as root the cluster runs as the `postgres` user, and it cannot enter {dir} (a parent \
         directory is closed to others: a checkout under /root, or a 0700 parent); {problem}. \
         Fix: set TURNS_DATA_DIR to a directory every user can enter (e.g. after \
         `mkdir -m 755 /var/tmp/turns`), or run as a normal user"
    )]
    Unreachable { dir: PathBuf, problem: String },
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
    /// Directory that holds `pgdata/`, the password file and the server log (as root, `pgdata/`
    /// moves under [`RELOCATED_ROOT`] when the `postgres` user cannot reach this directory).
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
    cluster_dir: PathBuf,
}

/// Where a cluster goes when its data directory is out of the `postgres` user's reach.
pub const RELOCATED_ROOT: &str = "/var/lib/turns";

/// A file in the data directory saying where a relocated cluster is, for whoever looks there.
const LOCATION_NOTE: &str = "pgdata-location";

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
        fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
        let cluster_dir = place_cluster(&dir, &run_as)?;
        let pgdata = cluster_dir.join("pgdata");
        let password = ensure_password(&dir)?;
        if password.is_new && cluster_dir != dir && pgdata.exists() {
            // Its password went with the data directory (deleted or recreated): nobody can log in.
            tracing::warn!(
                cluster = %pgdata.display(),
                "the relocated cluster belonged to an earlier {} (its password file is gone); \
                 starting a new one",
                dir.display()
            );
            fs::remove_dir_all(&pgdata).map_err(io("remove orphaned relocated pgdata"))?;
        }
        if !pgdata.join("PG_VERSION").exists() {
            init_cluster(
                &bindir,
                &cluster_dir,
                &password.value,
                &run_as,
                opts.durable,
            )?;
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
            format!("unix_socket_directories={}", cluster_dir.display()),
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
            password: password.value,
            dir,
            cluster_dir,
        };
        pg.wait_ready(&bindir, &log_path)?;
        Ok(pg)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory the cluster was asked to live in (password file, server log).
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// Where `pgdata/` and the socket are: [`Self::data_dir`], or a relocated directory.
    pub fn cluster_dir(&self) -> &Path {
        &self.cluster_dir
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

    /// Immediate shutdown, as in a crash: no checkpoint, open connections cut; the next start
    /// recovers from the WAL.
    pub fn crash(mut self) {
        if let Some(keeper) = self.keeper.take() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGQUIT);
            }
            let _ = keeper.join();
        }
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
    match run_as {
        Some(user) => chown_to(path, user),
        None => Ok(()),
    }
}

fn chown_to(path: &Path, user: &RunAs) -> Result<(), PgError> {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
        .map_err(io(format!("chown {}", path.display())))
}

/// Where the cluster's own files go: `dir` itself unless we are root and the `postgres` user
/// cannot reach it, then a directory of ours under [`RELOCATED_ROOT`]. Never loosens the
/// permissions of the user's directories.
fn place_cluster(dir: &Path, run_as: &Option<RunAs>) -> Result<PathBuf, PgError> {
    let Some(user) = run_as else {
        set_mode(dir, 0o700)?;
        return Ok(dir.to_path_buf());
    };
    // `dir` itself becomes the user's; what must already be open to it is the way there.
    if can_enter(dir.parent().unwrap_or(dir), user)? {
        set_mode(dir, 0o700)?;
        chown_to(dir, user)?;
        let _ = fs::remove_file(dir.join(LOCATION_NOTE));
        return Ok(dir.to_path_buf());
    }
    let unreachable = |problem: String| PgError::Unreachable {
        dir: dir.to_path_buf(),
        problem,
    };
    if dir.join("pgdata").join("PG_VERSION").exists() {
        return Err(unreachable(format!(
            "{} holds a cluster made before it became unreachable, so it is not moved \
             (make its parents enterable, or remove it to start a new cluster elsewhere)",
            dir.join("pgdata").display()
        )));
    }
    let cluster_dir = relocated_dir(dir, user).map_err(|e| {
        unreachable(format!(
            "the fallback under {RELOCATED_ROOT} could not be used: {e}"
        ))
    })?;
    tracing::warn!(
        data_dir = %dir.display(),
        cluster = %cluster_dir.display(),
        "the `postgres` user cannot enter the data directory (a parent is closed to others), so \
         the cluster lives elsewhere; set TURNS_DATA_DIR to an enterable directory to keep it there"
    );
    let note = format!(
        "This cluster's data lives in {}: the `postgres` user cannot enter this directory.\n",
        cluster_dir.join("pgdata").display()
    );
    fs::write(dir.join(LOCATION_NOTE), note).map_err(io(format!("write {LOCATION_NOTE}")))?;
    Ok(cluster_dir)
}

/// `RELOCATED_ROOT/<hash of dir>/postgres`: parents root's and world-enterable (0755), the
/// cluster directory the user's own (0700), so other users still cannot read the data.
fn relocated_dir(dir: &Path, user: &RunAs) -> Result<PathBuf, PgError> {
    let canonical = fs::canonicalize(dir).map_err(io(format!("resolve {}", dir.display())))?;
    let digest = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    let root = PathBuf::from(RELOCATED_ROOT);
    let parent = root.join(&hex::encode(digest)[..16]);
    let cluster_dir = parent.join("postgres");
    fs::create_dir_all(&cluster_dir).map_err(io(format!("create {}", cluster_dir.display())))?;
    // Explicit modes: root's umask is often 077, which would lock the user out again.
    set_mode(&root, 0o755)?;
    set_mode(&parent, 0o755)?;
    set_mode(&cluster_dir, 0o700)?;
    chown_to(&cluster_dir, user)?;
    if !can_enter(&parent, user)? {
        return Err(PgError::Failed(format!(
            "the `postgres` user cannot enter {} (check the modes of its parents)",
            parent.display()
        )));
    }
    Ok(cluster_dir)
}

/// Whether `user` can enter `dir`, asked of the kernel as that user: every parent's mode, owner,
/// group and ACL counts, with the same credentials (no supplementary groups) the cluster gets.
fn can_enter(dir: &Path, user: &RunAs) -> Result<bool, PgError> {
    let mut test = Command::new("test");
    test.arg("-x").arg(dir).uid(user.uid).gid(user.gid);
    let status = test
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(io("run `test -x` as the postgres user"))?;
    Ok(status.success())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), PgError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(io(format!("chmod {mode:o} {}", path.display())))
}

struct Password {
    value: String,
    /// Made just now: no existing cluster knows it.
    is_new: bool,
}

/// The superuser password, made once and kept in the data directory (mode 0600), where the tools
/// (`tools/bench`, the Playwright config) read it.
fn ensure_password(dir: &Path) -> Result<Password, PgError> {
    let path = dir.join("superuser-password");
    if let Ok(pw) = fs::read_to_string(&path) {
        let pw = pw.trim().to_string();
        if !pw.is_empty() {
            return Ok(Password {
                value: pw,
                is_new: false,
            });
        }
    }
    let pw = hex::encode(rand::random::<[u8; 16]>());
    write_private(&path, &pw)?;
    Ok(Password {
        value: pw,
        is_new: true,
    })
}

/// Write a file only its owner may read (mode 0600 from the start, never briefly wider).
fn write_private(path: &Path, contents: &str) -> Result<(), PgError> {
    let what = || format!("write {}", path.display());
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io(what()))?;
    std::io::Write::write_all(&mut f, contents.as_bytes()).map_err(io(what()))
}

fn init_cluster(
    bindir: &Path,
    cluster_dir: &Path,
    password: &str,
    run_as: &Option<RunAs>,
    durable: bool,
) -> Result<(), PgError> {
    let pgdata = cluster_dir.join("pgdata");
    // A half-made directory from an interrupted initdb would make initdb refuse; start over.
    if pgdata.exists() {
        fs::remove_dir_all(&pgdata).map_err(io("remove incomplete pgdata"))?;
    }
    // initdb reads the password as the cluster's user, who may not reach the data directory's
    // copy; hand it one beside the cluster for the moment initdb needs it.
    let pwfile = cluster_dir.join("initdb-password");
    let _ = fs::remove_file(&pwfile);
    write_private(&pwfile, password)?;
    chown(&pwfile, run_as)?;
    let mut cmd = as_user(Command::new(bindir.join("initdb")), run_as);
    cmd.arg("-D")
        .arg(&pgdata)
        .args(["-U", "turns", "-E", "UTF8", "--no-locale"])
        .args(["--auth-local=scram-sha-256", "--auth-host=scram-sha-256"])
        .arg(format!("--pwfile={}", pwfile.display()));
    if !durable {
        cmd.arg("--no-sync");
    }
    let out = cmd.output();
    let _ = fs::remove_file(&pwfile);
    let out = out.map_err(io("run initdb"))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{ConnectOptions, Connection};
    use std::str::FromStr;

    /// Connect (as the superuser, with the password from the data directory) and run `sql`.
    fn execute(url: &str, sql: &str) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut conn = sqlx::postgres::PgConnectOptions::from_str(url)
                .expect("url")
                .connect()
                .await
                .unwrap_or_else(|e| panic!("connect {url}: {e}"));
            sqlx::query(sql)
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            conn.close().await.expect("close");
        })
    }

    /// A clone under /root (or any 0700 parent) must still get a working cluster when we are
    /// root and the cluster runs as `postgres`.
    #[test]
    fn a_data_dir_the_postgres_user_cannot_reach_still_gets_a_cluster() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: only root runs the cluster as another user");
            return;
        }
        let tmp = tempfile::tempdir().expect("tmp");
        let locked = tmp.path().join("locked");
        fs::create_dir(&locked).expect("mkdir locked");
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o700)).expect("chmod");
        let dir = locked.join("checkout/.data/postgres");
        let opts = ClusterOptions {
            dir: dir.clone(),
            port: None,
            durable: false,
        };

        let pg = LocalPostgres::start(&opts).unwrap_or_else(|e| panic!("start: {e}"));
        let cluster_dir = pg.cluster_dir().to_path_buf();
        // Removes the relocated cluster even when an assertion below fails.
        struct Cleanup(PathBuf);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                if let Some(keyed) = self.0.parent() {
                    let _ = fs::remove_dir_all(keyed);
                }
            }
        }
        let _cleanup = Cleanup(cluster_dir.clone());
        assert!(cluster_dir.starts_with(RELOCATED_ROOT), "{cluster_dir:?}");
        assert_eq!(pg.data_dir(), dir);
        execute(&pg.url("postgres"), "CREATE DATABASE kept");
        pg.stop();
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(
            mode(&locked),
            0o700,
            "the user's directories stay as they were"
        );
        assert_eq!(
            mode(&cluster_dir),
            0o700,
            "only postgres reads the relocated data"
        );
        assert!(
            dir.join("superuser-password").is_file(),
            "where the tools read it"
        );
        assert!(dir.join("postgres.log").is_file());
        assert!(dir.join(LOCATION_NOTE).is_file());

        // The second start finds the same cluster, with the same password.
        let pg = LocalPostgres::start(&opts).unwrap_or_else(|e| panic!("restart: {e}"));
        assert_eq!(pg.cluster_dir(), cluster_dir);
        execute(&pg.url("kept"), "SELECT 1");
        pg.stop();

        // A new data directory at the same path (its password gone) gets a new cluster.
        fs::remove_dir_all(&dir).expect("rm data dir");
        let pg = LocalPostgres::start(&opts).unwrap_or_else(|e| panic!("fresh: {e}"));
        assert_eq!(pg.cluster_dir(), cluster_dir);
        execute(&pg.url("postgres"), "CREATE DATABASE kept");
        pg.stop();
    }

    /// The common case stays as it was: the cluster lives in the data directory itself.
    #[test]
    fn a_data_dir_the_postgres_user_can_reach_keeps_its_cluster() {
        let tmp = tempfile::tempdir().expect("tmp");
        // tempdir makes 0700; open it the way a checkout under /home or /work usually is.
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let dir = tmp.path().join(".data/postgres");
        let pg = LocalPostgres::start(&ClusterOptions {
            dir: dir.clone(),
            port: None,
            durable: false,
        })
        .unwrap_or_else(|e| panic!("start: {e}"));
        assert_eq!(pg.cluster_dir(), dir);
        execute(&pg.url("postgres"), "SELECT 1");
        pg.stop();
        assert!(dir.join("pgdata/PG_VERSION").is_file());
        assert!(!dir.join(LOCATION_NOTE).exists());
    }
}

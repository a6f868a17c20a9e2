//! nginx (Debian's `nginx-light`) as the caching proxy of `deploy/nginx.conf`, for the proxy test
//! and the shape benchmark: started on a free port in front of one origin, stopped when dropped.
use super::http::Error;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TEMPLATE: &str = include_str!("../../../deploy/nginx.conf");

pub struct Nginx {
    child: Child,
    addr: String,
    prefix: PathBuf,
}

impl Nginx {
    /// Start nginx in `prefix` (created; its cache starts empty) in front of `origin`
    /// (`host:port`).
    pub async fn start(prefix: &Path, origin: &str) -> Result<Nginx, Error> {
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or("nginx is not installed (apt-get install nginx-light; tools/setup does)")?;
        let _ = std::fs::remove_dir_all(prefix);
        std::fs::create_dir_all(prefix)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let conf = TEMPLATE
            .replace("@PREFIX@", &prefix.display().to_string())
            .replace("@LISTEN@", &addr)
            .replace("@ORIGIN@", origin);
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new(binary)
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(
                prefix.join("stderr.log"),
            )?))
            .spawn()?;
        let mut nginx = Nginx {
            child,
            addr,
            prefix: prefix.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(&nginx.addr).await.is_err() {
            if let Some(status) = nginx.child.try_wait()? {
                let log = std::fs::read_to_string(prefix.join("stderr.log")).unwrap_or_default();
                return Err(format!("nginx exited ({status}): {log}").into());
            }
            if Instant::now() > deadline {
                return Err("nginx did not start listening".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(nginx)
    }

    /// Where it listens (`host:port`).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Its error log, for a failing test's message.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master then stops its workers (killed, it would orphan them).
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

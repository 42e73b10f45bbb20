//! A real `redis-server` for tests and benchmarks: started on a free loopback port with
//! its data in a temporary folder (AOF on, so a restart keeps what was written), stopped
//! by its pid when dropped. Debian's `redis-server` must be installed (the test command,
//! `deploy/test.sh`, installs it).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A running Redis, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    /// Addresses it listens on besides 127.0.0.1 (a test network's, for nodes in
    /// network namespaces).
    also_on: Vec<std::net::IpAddr>,
}

/// Why a Redis could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RedisServerError {
    /// The binary is missing or would not start.
    #[error("cannot start redis-server (install Debian's redis-server; deploy/test.sh does): {0}")]
    Spawn(std::io::Error),
    /// It started but never answered.
    #[error("redis-server on port {0} did not answer within 10 s; its log: {1}")]
    NoAnswer(u16, String),
    /// Files or ports.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl RedisServer {
    /// Start one on a free port.
    pub fn start() -> Result<Self, RedisServerError> {
        Self::start_on(&[])
    }

    /// Start one on a free port that also listens on `also_on` (addresses of this
    /// machine, such as the host side of a test's veth pair).
    pub fn start_on(also_on: &[std::net::IpAddr]) -> Result<Self, RedisServerError> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "chorus-redis-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut server = Self {
            child: None,
            port: free_port()?,
            dir,
            also_on: also_on.to_vec(),
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), RedisServerError> {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))?;
        let child = Command::new("redis-server")
            .arg("--bind")
            .arg("127.0.0.1")
            .args(self.also_on.iter().map(|ip| ip.to_string()))
            // Clients from a test network are not loopback: no protected mode.
            .args(["--protected-mode", "no", "--port"])
            .arg(self.port.to_string())
            .args(["--save", "", "--appendonly", "yes", "--dir"])
            .arg(&self.dir)
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .map_err(RedisServerError::Spawn)?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(RedisServerError::NoAnswer(
            self.port,
            std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default(),
        ))
    }

    /// Whether it answers PING now.
    fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut reply = [0u8; 7];
        s.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }

    /// `redis://127.0.0.1:PORT/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `redis://IP:PORT/0`, for one of the addresses of [`RedisServer::start_on`].
    pub fn url_on(&self, ip: std::net::IpAddr) -> String {
        format!("redis://{ip}:{}/0", self.port)
    }

    /// Stop it (SIGKILL: nothing is flushed beyond what AOF already has).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port and data (after [`RedisServer::kill`]).
    pub fn restart(&mut self) -> Result<(), RedisServerError> {
        self.kill();
        self.spawn()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

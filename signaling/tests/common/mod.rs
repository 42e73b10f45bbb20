//! Test support: the real `chorus` binary as a child process, on loopback ports it picks.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A running `chorus` (signaling + in-process SFU), killed on drop.
pub struct ChorusServer {
    child: Child,
    /// `http://127.0.0.1:PORT/`
    pub url: String,
    /// `ws://127.0.0.1:PORT/ws`
    pub ws_url: String,
    /// `127.0.0.1:PORT`
    pub addr: String,
    data_dir: PathBuf,
}

impl ChorusServer {
    /// Start the binary with fresh data and wait for its "open <url>" line.
    pub fn spawn() -> Self {
        Self::spawn_with(&[])
    }

    /// [`ChorusServer::spawn`] with more command-line arguments.
    pub fn spawn_with(extra_args: &[&str]) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let data_dir = std::env::temp_dir().join(format!(
            "chorus-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&data_dir).unwrap();
        Self::start(data_dir, extra_args)
    }

    fn start(data_dir: PathBuf, extra_args: &[&str]) -> Self {
        let stderr = std::fs::File::options()
            .create(true)
            .append(true)
            .open(data_dir.join("stderr.log"))
            .unwrap();
        // CHORUS_TEST_BIN runs the tests against another build (e.g. to see a test fail
        // on the code before a fix).
        let bin = std::env::var_os("CHORUS_TEST_BIN").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_chorus")),
            PathBuf::from,
        );
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--udp-port", "0", "--data-dir"])
            .arg(&data_dir)
            .args(extra_args)
            .env("RUST_LOG", "info,str0m=warn")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start the chorus binary");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("Chorus is running: open ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let log = std::fs::read_to_string(data_dir.join("stderr.log")).unwrap_or_default();
                panic!("chorus did not print its address within 30 s; its stderr:\n{log}");
            }
        };
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let ws_url = format!("ws://{addr}/ws");
        Self {
            child,
            url,
            ws_url,
            addr,
            data_dir,
        }
    }

    /// Start again on the same data folder (a restart after a crash: SIGKILL), on new
    /// ports.
    pub fn restart(self) -> Self {
        self.restart_with(&[])
    }

    /// The server's data folder.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// The server API key it made for itself.
    pub fn api_key(&self) -> chorus_proto::api_key::ApiKey {
        chorus_bench::rest::api_key_in(&self.data_dir).unwrap()
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("stderr.log")).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process id of the server (this test started it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send SIGTERM, as systemd does to stop a service, and wait up to `within` for the
    /// process to exit; its exit status, or `None` if it is still running.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start again on the same data folder after the process has stopped (or kill it
    /// first), on new ports, with `extra_args`.
    pub fn restart_with(mut self, extra_args: &[&str]) -> Self {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let data_dir = std::mem::take(&mut self.data_dir);
        std::mem::forget(self);
        Self::start(data_dir, extra_args)
    }

    /// Resident memory of the server process, in KiB (Linux `/proc`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for ChorusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

//! A fleet on loopback for tests: a real `redis-server`, `chorus-sfu` and
//! `chorus-signaling` processes (the binaries of this workspace), each on ports it picks,
//! each stopped by its pid (SIGKILL when a test kills it, and on drop).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub use chorus_bench::redis_server::RedisServer;

pub mod netns;
pub mod s3;

fn temp_dir(what: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "chorus-fleet-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `target/debug/<name>`: a binary of another package of the workspace, built by the
/// same `cargo test`/`nextest` run (the SFU's binary lives in `chorus-sfu`).
fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/<test> → target/debug/<name>
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace (`cargo build --workspace`) before these tests",
        path.display()
    );
    path
}

/// Read a child's stdout until a line starts with `prefix`; the rest of that line.
fn wait_line(child: &mut Child, prefix: &'static str, log: &Path, what: &str) -> String {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix(prefix) {
                let _ = tx.send(rest.trim().to_owned());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(rest) => rest,
        Err(_) => {
            let _ = child.kill();
            panic!(
                "{what} did not print '{prefix}' within 30 s; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

/// The shared room-token key of a fleet: signaling nodes sign with it, SFUs verify with
/// its public half.
pub struct TokenKey {
    pub path: PathBuf,
    pub public_hex: String,
}

impl Drop for TokenKey {
    fn drop(&mut self) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A client of an SFU node's control port, its calls signed with the fleet's key.
pub type ControlClient = chorus_proto::sfu::sfu_control_client::SfuControlClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        chorus_proto::token::ControlBearer,
    >,
>;

impl TokenKey {
    /// The signing key itself, as signaling loads it.
    pub fn issuer(&self) -> chorus_proto::token::TokenIssuer {
        let pem = std::fs::read(&self.path).expect("read the token key");
        chorus_proto::token::TokenIssuer::from_pem(&pem).expect("a token key")
    }

    /// A control client of the SFU node whose gRPC is at `grpc` (`host:port`).
    pub async fn control(&self, grpc: &str) -> Result<ControlClient, String> {
        let bearer =
            chorus_proto::token::ControlBearer::mint(&self.issuer(), Duration::from_secs(300))
                .map_err(|e| e.to_string())?;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("gRPC {grpc}: {e}"))?;
        Ok(
            chorus_proto::sfu::sfu_control_client::SfuControlClient::with_interceptor(
                channel, bearer,
            ),
        )
    }

    pub fn make() -> Self {
        let dir = temp_dir("key");
        let path = dir.join("token-key.pem");
        let out = Command::new(env!("CARGO_BIN_EXE_chorus-signaling"))
            .arg("--token-key")
            .arg(&path)
            .arg("public-key")
            .output()
            .expect("chorus-signaling public-key");
        assert!(out.status.success(), "public-key: {out:?}");
        Self {
            path,
            public_hex: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        }
    }
}

/// A `chorus-sfu` process in the fleet.
pub struct SfuNode {
    child: Child,
    pub id: String,
    pub grpc: String,
    dir: PathBuf,
}

impl SfuNode {
    pub fn start(redis: &str, key: &TokenKey, id: &str) -> Self {
        Self::start_with(key, id, &["--redis", redis])
    }

    /// A node with more arguments (none: a node driven by one signaling, no Redis).
    pub fn start_with(key: &TokenKey, id: &str, args: &[&str]) -> Self {
        Self::spawn(
            Command::new(workspace_binary("chorus-sfu")),
            "127.0.0.1",
            key,
            id,
            args,
        )
    }

    /// A node on a host of its own (a network namespace), at its address there.
    pub fn start_in(net: &netns::TestNet, key: &TokenKey, id: &str, args: &[&str]) -> Self {
        let command = net.command(&workspace_binary("chorus-sfu"));
        Self::spawn(command, &net.ns_ip.to_string(), key, id, args)
    }

    /// A node whose gRPC and media listen on `ip`.
    pub fn start_on(ip: &str, key: &TokenKey, id: &str, args: &[&str]) -> Self {
        Self::spawn(
            Command::new(workspace_binary("chorus-sfu")),
            ip,
            key,
            id,
            args,
        )
    }

    fn spawn(mut command: Command, ip: &str, key: &TokenKey, id: &str, args: &[&str]) -> Self {
        let dir = temp_dir(id);
        let log = dir.join("stderr.log");
        let mut child = command
            .args(["--grpc", &format!("{ip}:0"), "--udp", &format!("{ip}:0")])
            .args(["--token-public-key", &key.public_hex])
            .args(["--node-id", id])
            .args(args)
            .env("RUST_LOG", "info,str0m=warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start chorus-sfu");
        let grpc = wait_line(&mut child, "grpc ", &log, id);
        Self {
            child,
            id: id.to_owned(),
            grpc,
            dir,
        }
    }

    /// SIGKILL: the node dies without leaving the fleet.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGUSR1: drain (no new rooms).
    pub fn drain(&self) {
        let status = Command::new("kill")
            .args(["-USR1", &self.child.id().to_string()])
            .status()
            .expect("kill -USR1");
        assert!(status.success(), "kill -USR1 {}", self.child.id());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for SfuNode {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A `chorus-signaling` process in the fleet.
pub struct SignalingNode {
    child: Child,
    pub id: String,
    pub url: String,
    pub ws_url: String,
    pub data_dir: PathBuf,
}

impl SignalingNode {
    /// Start a node. `api_key_from`: copy the server API key of another node, so that one
    /// key signs requests to the whole fleet.
    pub fn start(redis: &str, key: &TokenKey, id: &str, api_key_from: Option<&Path>) -> Self {
        Self::start_with(redis, key, id, api_key_from, &[], &[])
    }

    /// [`SignalingNode::start`] with more command-line arguments and environment.
    pub fn start_with(
        redis: &str,
        key: &TokenKey,
        id: &str,
        api_key_from: Option<&Path>,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        let data_dir = temp_dir(id);
        if let Some(from) = api_key_from {
            std::fs::copy(from.join("api-key.json"), data_dir.join("api-key.json")).unwrap();
        }
        let mut args = vec!["--redis", redis];
        args.extend_from_slice(extra);
        let mut command = Command::new(env!("CARGO_BIN_EXE_chorus-signaling"));
        command.envs(envs.iter().copied());
        Self::spawn_with(command, "127.0.0.1:0", key, id, data_dir, &args)
    }

    /// A node on a host of its own (a network namespace), on Redis at `redis`.
    pub fn start_in(
        net: &netns::TestNet,
        redis: &str,
        key: &TokenKey,
        id: &str,
        api_key_from: &Path,
    ) -> Self {
        let data_dir = temp_dir(id);
        std::fs::copy(
            api_key_from.join("api-key.json"),
            data_dir.join("api-key.json"),
        )
        .unwrap();
        let command = net.command(Path::new(env!("CARGO_BIN_EXE_chorus-signaling")));
        let listen = format!("{}:0", net.ns_ip);
        let args = ["--redis", redis, "--plain-http"];
        Self::spawn_with(command, &listen, key, id, data_dir, &args)
    }

    /// A node alone (embedded store) driving the SFU at `sfu_url`.
    pub fn start_alone(key: &TokenKey, id: &str, sfu_url: &str) -> Self {
        Self::spawn(key, id, temp_dir(id), &["--sfu", sfu_url])
    }

    fn spawn(key: &TokenKey, id: &str, data_dir: PathBuf, args: &[&str]) -> Self {
        let command = Command::new(env!("CARGO_BIN_EXE_chorus-signaling"));
        Self::spawn_with(command, "127.0.0.1:0", key, id, data_dir, args)
    }

    fn spawn_with(
        mut command: Command,
        listen: &str,
        key: &TokenKey,
        id: &str,
        data_dir: PathBuf,
        args: &[&str],
    ) -> Self {
        let log = data_dir.join("stderr.log");
        // Sessions wait 5 s for a resume (not 30): a test that lets one lapse need not
        // wait long. `--resume-grace-secs` in `args` wins.
        let mut child = command
            .env("CHORUS_RESUME_GRACE_SECS", "5")
            .args(["--listen", listen, "--data-dir"])
            .arg(&data_dir)
            .arg("--token-key")
            .arg(&key.path)
            .args(["--node-id", id])
            .args(args)
            .env("RUST_LOG", "info,str0m=warn")
            .stdout(Stdio::piped())
            .stderr(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .expect("start chorus-signaling");
        let url = wait_line(&mut child, "Chorus signaling is running: open ", &log, id);
        let addr = url.trim_start_matches("http://").trim_end_matches('/');
        Self {
            ws_url: format!("ws://{addr}/ws"),
            url,
            child,
            id: id.to_owned(),
            data_dir,
        }
    }

    /// SIGKILL: the node dies with its sessions, leaving its presences behind.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start the node again (after [`Self::kill`]) on the same address and data folder,
    /// alone in front of the SFU at `sfu_url`, with `extra` arguments.
    pub fn start_again_alone(&mut self, key: &TokenKey, sfu_url: &str, extra: &[&str]) {
        let listen = self
            .url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let mut args = vec!["--sfu", sfu_url];
        args.extend_from_slice(extra);
        // The port was this node's a moment ago; a new listener may need a few tries.
        for attempt in 0.. {
            let command = Command::new(env!("CARGO_BIN_EXE_chorus-signaling"));
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Self::spawn_with(
                    command,
                    &listen,
                    key,
                    &self.id,
                    self.data_dir.clone(),
                    &args,
                )
            }));
            match result {
                Ok(mut node) => {
                    std::mem::swap(&mut self.child, &mut node.child);
                    // `node` now holds the dead child; its folder is ours: keep it.
                    node.data_dir = temp_dir(&format!("{}-spent", self.id));
                    return;
                }
                Err(_) if attempt < 20 => std::thread::sleep(std::time::Duration::from_millis(250)),
                Err(e) => std::panic::resume_unwind(e),
            }
        }
    }

    /// The server API key of this node.
    pub fn api_key(&self) -> chorus_proto::api_key::ApiKey {
        chorus_bench::rest::api_key_in(&self.data_dir).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for SignalingNode {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// Redis, two SFU nodes and two signaling nodes, started in that order.
pub struct Fleet {
    pub redis: RedisServer,
    pub key: TokenKey,
    pub sfus: Vec<SfuNode>,
    pub nodes: Vec<SignalingNode>,
}

impl Fleet {
    pub fn start(sfus: usize, signaling: usize) -> Self {
        Self::start_with(sfus, signaling, &[])
    }

    /// A fleet whose SFU nodes get `sfu_args` too.
    pub fn start_with(sfus: usize, signaling: usize, sfu_args: &[&str]) -> Self {
        let redis = RedisServer::start().expect("redis-server");
        let url = redis.url();
        let key = TokenKey::make();
        let sfus = (0..sfus)
            .map(|i| {
                let id = format!("sfu-{}", char::from(b'a' + i as u8));
                let mut args = vec!["--redis", url.as_str()];
                args.extend_from_slice(sfu_args);
                SfuNode::start_with(&key, &id, &args)
            })
            .collect();
        let mut nodes: Vec<SignalingNode> = Vec::new();
        for i in 0..signaling {
            let id = format!("sig-{}", char::from(b'a' + i as u8));
            let from = nodes.first().map(|n| n.data_dir.clone());
            nodes.push(SignalingNode::start(&url, &key, &id, from.as_deref()));
        }
        Self {
            redis,
            key,
            sfus,
            nodes,
        }
    }

    /// Every process's log, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for s in &self.sfus {
            out.push_str(&format!("==== {} ====\n{}\n", s.id, tail(&s.log())));
        }
        for n in &self.nodes {
            out.push_str(&format!("==== {} ====\n{}\n", n.id, tail(&n.log())));
        }
        out
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The room "Ear" listens in and "Voice" (a 440 Hz tone) speaks in lost its SFU node:
/// wait until both are told `reconnect_media`, then move their media the way these test
/// clients do — joining again as the same users (a new peer connection, which lands on a
/// live node) — and seat the voice again. How long after `since` both were told.
pub async fn rejoin_after_media_loss(
    peers: &mut Vec<chorus_bench::webrtc_peer::WebrtcPeer>,
    ws: &str,
    room: &chorus_proto::RoomId,
    since: std::time::Instant,
    within: Duration,
) -> Result<Duration, String> {
    use crate::support::{close_all, join_connected, peer_config};
    for peer in peers.iter() {
        peer.wait_for("reconnect_media", within, |v| {
            (v.media_reconnects > 0).then_some(())
        })
        .await
        .map_err(|e| format!("told to reconnect media: {e}"))?;
    }
    let told = since.elapsed();
    let tokens: Vec<(String, Option<f32>)> = vec![
        (peers[0].user_token().to_owned(), None),
        (peers[1].user_token().to_owned(), Some(440.0)),
    ];
    close_all(peers).await;
    peers.clear();
    for ((token, tone), name) in tokens.into_iter().zip(["Ear", "Voice"]) {
        peers.push(join_connected(peer_config(ws, room, name, tone, Some(&token)), within).await?);
    }
    peers[1]
        .send(&chorus_proto::signal::ClientMessage::RequestSeat)
        .map_err(|e| e.to_string())?;
    Ok(told)
}

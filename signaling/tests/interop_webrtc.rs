//! Interop with an independent WebRTC stack: `webrtc` 0.21 peers (chorus-bench) join the
//! real all-in-one `chorus` binary, publish one tone each, and must hear exactly the
//! others' tones through the SFU; a listener's RTP is dropped; departures are announced.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use chorus_bench::rest;
use chorus_bench::webrtc_peer::{HearReport, PeerConfig, WebrtcPeer};
use chorus_proto::signal::LeftReason;

/// Tones of the three speakers and of the listener that publishes anyway: 110 Hz apart,
/// none a harmonic of another that is in play.
const SPEAKER_TONES: [f32; 3] = [330.0, 440.0, 550.0];
const LISTENER_TONE: f32 = 770.0;
/// 100 ms windows a tone must be heard in: a second of clean audio.
const HEARD_WINDOWS: u64 = 10;
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on the whole scenario, whatever step hangs (it takes ≈ 2 s).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(40);

/// The `chorus` binary on loopback, with a fresh data folder; killed on drop.
struct Server {
    child: Child,
    url: String,
    stderr: Arc<Mutex<Vec<String>>>,
    data_dir: PathBuf,
}

impl Server {
    fn start() -> Server {
        let data_dir = std::env::temp_dir().join(format!(
            "chorus-interop-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&data_dir).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_chorus"))
            .args(["--listen", "127.0.0.1:0", "--udp-port", "0", "--data-dir"])
            .arg(&data_dir)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info,str0m=warn".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the chorus binary");

        // Drain both pipes for the server's whole life, or it blocks on a full pipe.
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let err_pipe = child.stderr.take().unwrap();
        let err_lines = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                let mut lines = err_lines.lock().unwrap();
                if lines.len() >= 400 {
                    lines.remove(0);
                }
                lines.push(line);
            }
        });
        let (url_tx, url_rx) = mpsc::channel();
        let out_pipe = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut out = BufReader::new(out_pipe);
            let mut line = String::new();
            while out.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(url) = line.trim().strip_prefix("Chorus is running: open ") {
                    let _ = url_tx.send(url.trim_end_matches('/').to_owned());
                    break;
                }
                line.clear();
            }
            let _ = std::io::copy(&mut out, &mut std::io::sink());
        });

        let mut server = Server {
            child,
            url: String::new(),
            stderr,
            data_dir,
        };
        match url_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => server.url = url,
            Err(_) => {
                let status = server.child.try_wait().ok().flatten();
                panic!(
                    "chorus did not print its address within 30 s (exit status: {status:?}); stderr:\n{}",
                    server.stderr_tail()
                );
            }
        }
        server
    }

    fn stderr_tail(&self) -> String {
        let lines = self.stderr.lock().unwrap();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
        if std::thread::panicking() {
            eprintln!("--- chorus stderr (tail) ---\n{}", self.stderr_tail());
        }
    }
}

fn summary(name: &str, heard: &HearReport) -> String {
    let tones: Vec<String> = heard
        .tones
        .iter()
        .filter(|t| t.windows > 0)
        .map(|t| format!("{}Hz×{}", t.hz, t.windows))
        .collect();
    format!(
        "{name}: tracks {} packets {} lost {} windows {} first packet {:?} tones [{}]",
        heard.tracks,
        heard.packets,
        heard.lost,
        heard.windows,
        heard.first_packet_after,
        tones.join(" ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_peers_hear_each_other_and_not_the_listener() {
    let started = Instant::now();
    let server = tokio::task::spawn_blocking(Server::start).await.unwrap();
    let ws_url = rest::ws_url(&server.url).unwrap();
    let room = rest::create_room(&server.url, "Interop").await.unwrap();
    eprintln!("server up and room created after {:?}", started.elapsed());

    // Peers live outside the checks so that every one is closed whatever happens.
    let mut peers: Vec<WebrtcPeer> = Vec::new();
    let outcome = tokio::time::timeout(
        SCENARIO_TIMEOUT,
        scenario(&ws_url, &room.id, &mut peers, started),
    )
    .await
    .unwrap_or_else(|_| Err(format!("the scenario took more than {SCENARIO_TIMEOUT:?}")));
    for peer in &mut peers {
        peer.close().await;
    }
    if let Err(message) = outcome {
        panic!(
            "{message}\n--- chorus stderr (tail) ---\n{}",
            server.stderr_tail()
        );
    }
    eprintln!("done after {:?}", started.elapsed());
}

/// The checks; an `Err` carries what went wrong, in words.
async fn scenario(
    ws_url: &str,
    room: &chorus_proto::RoomId,
    peers: &mut Vec<WebrtcPeer>,
    started: Instant,
) -> Result<(), String> {
    let names = ["Ada", "Ben", "Cai"];
    for (name, hz) in names.iter().zip(SPEAKER_TONES) {
        let config = PeerConfig {
            tone_hz: Some(hz),
            ..PeerConfig::new(ws_url, room.clone(), *name)
        };
        let peer = WebrtcPeer::join(config)
            .await
            .map_err(|e| format!("{name} could not join: {e}"))?;
        peers.push(peer);
    }
    let listener = PeerConfig {
        tone_hz: Some(LISTENER_TONE),
        listener: true,
        publish_anyway: true,
        ..PeerConfig::new(ws_url, room.clone(), "Lis")
    };
    peers.push(
        WebrtcPeer::join(listener)
            .await
            .map_err(|e| format!("the listener could not join: {e}"))?,
    );
    for (peer, name) in peers.iter().zip(names.iter().chain(["Lis"].iter())) {
        peer.wait_connected(STEP_TIMEOUT)
            .await
            .map_err(|e| format!("{name}'s media did not connect: {e}"))?;
    }
    eprintln!("4 peers joined and connected after {:?}", started.elapsed());

    // Everyone (the listener too) should hear the three speakers; wait until they do.
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let done = peers.iter().enumerate().all(|(i, peer)| {
            let heard = peer.heard();
            SPEAKER_TONES
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .all(|(_, hz)| heard.windows_with(*hz) >= HEARD_WINDOWS)
        });
        if done || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A little more time for anything that should not be heard to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    eprintln!("media checked after {:?}", started.elapsed());

    let reports: Vec<HearReport> = peers.iter().map(WebrtcPeer::heard).collect();
    let all_names: Vec<&str> = names.iter().copied().chain(["Lis"]).collect();
    let table: Vec<String> = all_names
        .iter()
        .zip(&reports)
        .map(|(name, heard)| summary(name, heard))
        .collect();
    let table = table.join("\n");
    eprintln!("{table}");
    let listener_sent = peers[3].sent().await;
    eprintln!("listener published anyway: {listener_sent:?}");

    let mut failures = Vec::new();
    for (i, heard) in reports.iter().enumerate() {
        for (j, hz) in SPEAKER_TONES.iter().enumerate() {
            let windows = heard.windows_with(*hz);
            if i == j && windows > 0 {
                failures.push(format!(
                    "{} hears its own tone {hz} Hz ({windows} windows)",
                    all_names[i]
                ));
            }
            if i != j && windows < HEARD_WINDOWS {
                failures.push(format!(
                    "{} hears {} ({hz} Hz) in only {windows} windows (< {HEARD_WINDOWS})",
                    all_names[i], all_names[j]
                ));
            }
        }
        let leaked = heard.windows_with(LISTENER_TONE);
        if leaked > 0 {
            failures.push(format!(
                "{} hears the listener's {LISTENER_TONE} Hz in {leaked} windows: its RTP was forwarded",
                all_names[i]
            ));
        }
        if heard.undecodable > 0 {
            failures.push(format!(
                "{} got {} undecodable packets",
                all_names[i], heard.undecodable
            ));
        }
    }
    // `speaking` comes from the audio levels the SFU reads on forwarded packets: the three
    // speakers should show up in it, the listener never.
    let ids: Vec<_> = peers.iter().map(|p| p.id().clone()).collect();
    for (peer, name) in peers.iter().zip(&all_names) {
        let spoke = peer.view().ever_spoke;
        if let Some(level) = spoke.get(&ids[3]) {
            failures.push(format!(
                "{name} was told the listener speaks (level {level})"
            ));
        }
        let silent: Vec<&str> = (0..3)
            .filter(|i| !spoke.contains_key(&ids[*i]))
            .map(|i| all_names[i])
            .collect();
        if !silent.is_empty() {
            failures.push(format!("{name} was never told that {silent:?} speak"));
        }
    }
    if listener_sent.rtp_packets < 50 {
        failures.push(format!(
            "the listener did not really publish ({listener_sent:?}): grant enforcement was not exercised"
        ));
    }
    if !failures.is_empty() {
        return Err(format!("{}\n{table}", failures.join("\n")));
    }

    // Ada leaves: the others are told.
    let ada = peers[0].id().clone();
    let reason = peers[0]
        .leave()
        .await
        .map_err(|e| format!("Ada's leave was not answered: {e}"))?;
    if reason != LeftReason::Left {
        return Err(format!("Ada was answered `left` with reason {reason:?}"));
    }
    for (peer, name) in peers.iter().zip(&all_names).skip(1) {
        let reason = peer
            .wait_for_departure(&ada, STEP_TIMEOUT)
            .await
            .map_err(|e| format!("{name} was not told that Ada left: {e}"))?;
        if reason != LeftReason::Left {
            return Err(format!(
                "{name} was told Ada left with reason {reason:?}, not `left`"
            ));
        }
        if peer.participants().iter().any(|p| p.id == ada) {
            return Err(format!("{name} still lists Ada after participant_left"));
        }
    }
    eprintln!("departure seen by all after {:?}", started.elapsed());

    // Ben just goes away (socket and media closed, no `leave`): `disconnected`.
    let ben = peers[1].id().clone();
    peers[1].close().await;
    for (peer, name) in peers.iter().zip(&all_names).skip(2) {
        let reason = peer
            .wait_for_departure(&ben, STEP_TIMEOUT)
            .await
            .map_err(|e| format!("{name} was not told that Ben went away: {e}"))?;
        if reason != LeftReason::Disconnected {
            return Err(format!(
                "{name} was told Ben left with reason {reason:?}, not `disconnected`"
            ));
        }
    }
    eprintln!("disconnection seen by all after {:?}", started.elapsed());
    Ok(())
}

//! Interop with an independent WebRTC stack: `webrtc` 0.21 peers (chorus-bench) join the
//! real all-in-one `chorus` binary, publish one tone each, and must hear exactly the
//! others' tones through the SFU; a listener's RTP is dropped; departures are announced.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::time::{Duration, Instant};

use chorus_bench::webrtc_peer::{HearReport, PeerConfig, WebrtcPeer};
use chorus_proto::signal::{ClientMessage, ErrorCode, LeftReason};
use common::ChorusServer;
use serde_json::json;
use support::{Api, summary, wait_self_connected};

/// Tones of the three speakers and of the listener that publishes anyway: 110 Hz apart,
/// none a harmonic of another that is in play.
const SPEAKER_TONES: [f32; 3] = [330.0, 440.0, 550.0];
const LISTENER_TONE: f32 = 770.0;
/// 100 ms windows a tone must be heard in: a second of clean audio.
const HEARD_WINDOWS: u64 = 10;
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on the whole scenario, whatever step hangs (it takes ≈ 2 s).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_peers_hear_each_other_and_not_the_listener() {
    let started = Instant::now();
    let server = ChorusServer::spawn();
    let ws_url = server.ws_url.clone();
    // Open seats, 4 of them: the absent owner's and one per speaker. The fourth joiner
    // finds none free and stays a listener.
    let room = Api::of(&server)
        .create_room(
            json!({"name": "Interop", "owner_name": "Host", "capacity": 10,
                            "seats": 4, "seat_mode": "open"}),
        )
        .await
        .room;
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
        let log = server.log();
        let lines: Vec<&str> = log.lines().collect();
        panic!(
            "{message}\n--- chorus stderr (tail) ---\n{}",
            lines[lines.len().saturating_sub(60)..].join("\n")
        );
    }
    eprintln!("done after {:?}", started.elapsed());
}

/// Take a seat in an open room once this peer's own `participant_updated` says it is
/// connected (its membership is confirmed then); wait until it is a speaker.
async fn take_seat(peer: &WebrtcPeer, name: &str) -> Result<(), String> {
    wait_self_connected(peer, name, STEP_TIMEOUT).await?;
    let me = peer.id().clone();
    peer.send(&ClientMessage::RequestSeat)
        .map_err(|e| format!("{name} could not send request_seat: {e}"))?;
    let seated = peer
        .wait_for("own participant_updated speaker", STEP_TIMEOUT, |v| {
            if v.participants.get(&me).is_some_and(|p| p.speaker) {
                Some(Ok(()))
            } else {
                v.errors.last().map(|e| Err(e.clone()))
            }
        })
        .await
        .map_err(|e| format!("{name} never became a speaker: {e}"))?;
    seated.map_err(|(code, message)| match code {
        ErrorCode::NotInRoom => format!(
            "{name} asked for a seat after being told it is connected and was refused \
             ({code:?}: {message}): its membership was not confirmed yet"
        ),
        _ => format!("{name}'s request_seat was refused: {code:?} {message}"),
    })
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
        take_seat(peers.last().unwrap(), name).await?;
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
        wait_self_connected(peer, name, STEP_TIMEOUT).await?;
    }
    let lis = peers[3].id().clone();
    if peers[0]
        .participants()
        .iter()
        .any(|p| p.id == lis && p.speaker)
    {
        return Err("the fourth joiner holds a seat although every seat was taken".into());
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

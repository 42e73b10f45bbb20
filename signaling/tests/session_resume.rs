//! Sessions that survive (`chorus_proto::session`), in a split deployment: one
//! `chorus-sfu`, one `chorus-signaling` in front of it, real UDP, DTLS and decoding
//! peers of an independent WebRTC stack.
//!
//! - Signaling is SIGKILLed mid-call and started again: the media never stops (no gap
//!   of 100 ms in any listener's stream), each client resumes with its sealed state into
//!   the same participant, seat and role, and nobody sees anyone leave. A client that
//!   never comes back is taken out once the resume grace is over.
//! - A socket that drops while signaling stays up resumes the same way; one not resumed
//!   in time leaves as `disconnected`.
//! - Tampered, cut, expired, replayed, other-session and other-user blobs are refused
//!   with their own codes, and nothing in the room changes because of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fleet_support;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chorus_bench::webrtc_peer::{PeerError, WebrtcPeer};
use chorus_proto::session::{InRoom, Sealer, SessionState};
use chorus_proto::signal::{ClientMessage, ErrorCode, LeftReason};
use chorus_proto::{ParticipantId, SessionId};
use fleet_support::{SfuNode, SignalingNode, TokenKey};
use serde_json::json;
use support::{
    Api, close_all, join_connected, longest_gap, missing_frames, peer_config, wait_info,
};

const STEP: Duration = Duration::from_secs(20);
/// Audio a listener may miss across the outage: 100 ms (5 frames of 20 ms per speaker).
/// Counted in frames received against frames sent, not as a pause in arrival times: on
/// a busy 2-core machine a packet may arrive late without being missed.
const MAX_MISSING_FRAMES: i64 = 5;
/// A pause in arrivals this long is a stall whatever the machine's load.
const MAX_GAP: Duration = Duration::from_millis(1000);
/// The resume grace the restarted node runs with (short, so the test is too).
const GRACE_SECS: &str = "5";

/// Who is present and seated, as a peer sees the room.
fn roster(peer: &WebrtcPeer) -> BTreeMap<ParticipantId, (String, bool)> {
    peer.view()
        .participants
        .into_values()
        .map(|p| (p.id, (p.name, p.speaker)))
        .collect()
}

async fn wait_sealed(peer: &WebrtcPeer, name: &str) -> Result<(), String> {
    peer.wait_for("a sealed session state", STEP, |v| {
        v.sealed.as_ref().map(|_| ())
    })
    .await
    .map_err(|e| format!("{name} was never sent its session state: {e}"))
}

/// A room of three: Host (owner, speaking), Bo (took a seat, speaking), Cy (listening).
async fn build_room(node: &SignalingNode, peers: &mut Vec<WebrtcPeer>) -> Result<(), String> {
    let api = Api::new(&node.url, node.api_key());
    let created = api
        .create_room(json!({"name": "Resume", "owner_name": "Host", "capacity": 10, "seats": 3, "seat_mode": "open"}))
        .await;
    let room = created.room.id.clone();
    let config = |name: &str, tone: Option<f32>, token: Option<&str>| {
        peer_config(&node.ws_url, &room, name, tone, token)
    };
    peers.push(
        join_connected(
            config("Host", Some(440.0), Some(&created.owner_token)),
            STEP,
        )
        .await?,
    );
    peers.push(join_connected(config("Bo", Some(660.0), None), STEP).await?);
    peers.push(join_connected(config("Cy", None, None), STEP).await?);
    peers[1]
        .send(&ClientMessage::RequestSeat)
        .map_err(|e| e.to_string())?;
    let bo = peers[1].id().clone();
    for peer in peers.iter() {
        wait_info(peer, &bo, "Bo seated", STEP, |p| p.speaker && p.connected).await?;
    }
    // Everyone hears the others who speak.
    let deadline = Instant::now() + STEP;
    loop {
        let heard: Vec<(u64, u64)> = peers
            .iter()
            .map(|p| (p.heard().windows_with(440.0), p.heard().windows_with(660.0)))
            .collect();
        if heard[0].1 > 0 && heard[1].0 > 0 && heard[2].0 > 0 && heard[2].1 > 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not everyone hears the speakers: (440 Hz, 660 Hz) windows {heard:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (peer, name) in peers.iter().zip(["Host", "Bo", "Cy"]) {
        wait_sealed(peer, name).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signaling_killed_mid_call_resumes_without_a_gap() {
    let key = TokenKey::make();
    let sfu = SfuNode::start_with(&key, "sfu-resume", &[]);
    let sfu_url = format!("http://{}", sfu.grpc);
    let mut node = SignalingNode::start_alone(&key, "sig-resume", &sfu_url);
    let mut peers = Vec::new();
    let outcome = killed_and_resumed(&key, &sfu_url, &mut node, &mut peers).await;
    close_all(&mut peers).await;
    if let Err(message) = outcome {
        panic!(
            "{message}\n--- SFU ---\n{}\n--- signaling (both runs) ---\n{}",
            sfu.log(),
            node.log()
        );
    }
}

async fn killed_and_resumed(
    key: &TokenKey,
    sfu_url: &str,
    node: &mut SignalingNode,
    peers: &mut Vec<WebrtcPeer>,
) -> Result<(), String> {
    build_room(node, peers).await?;
    // A fourth who will not come back after the restart.
    let room = peers[0].room().id.clone();
    peers.push(join_connected(peer_config(&node.ws_url, &room, "Dee", None, None), STEP).await?);
    let dee = peers[3].id().clone();
    wait_info(&peers[0], &dee, "Dee connected", STEP, |p| p.connected).await?;
    let before: Vec<_> = peers[..3].iter().map(roster).collect();
    // Everyone has heard a second of audio before the kill (the window judged starts
    // half a second before it).
    tokio::time::sleep(Duration::from_secs(1)).await;

    let killed = Instant::now();
    node.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    node.start_again_alone(key, sfu_url, &["--resume-grace-secs", GRACE_SECS]);
    let started = Instant::now();
    let mut resumed_after = Vec::new();
    for (peer, name) in peers[..3].iter_mut().zip(["Host", "Bo", "Cy"]) {
        peer.resume(&node.ws_url)
            .await
            .map_err(|e| format!("{name} could not resume: {e}"))?;
        resumed_after.push(started.elapsed());
    }
    eprintln!(
        "signaling down {:?}; resumed after start: {resumed_after:?}",
        started.duration_since(killed)
    );
    // Listen on for a while after everyone is back.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let until = Instant::now();
    let from = killed - Duration::from_millis(500);
    let gaps: Vec<_> = peers[..3]
        .iter()
        .map(|peer| longest_gap(peer, from, until))
        .collect();
    eprintln!(
        "longest gaps (length, start after kill − 500 ms) Host/Bo/Cy: {gaps:?}; restarted at {:?}",
        started.duration_since(from)
    );
    let missing: Vec<i64> = peers[..3]
        .iter()
        .zip([1, 1, 2])
        .map(|(peer, speakers)| missing_frames(peer, speakers, from, until))
        .collect();
    eprintln!("frames missed across the outage Host/Bo/Cy: {missing:?}");
    for (missed, name) in missing.iter().zip(["Host", "Bo", "Cy"]) {
        if *missed > MAX_MISSING_FRAMES {
            return Err(format!(
                "{name} missed {missed} frames of 20 ms during the signaling restart"
            ));
        }
    }
    for ((gap, at), name) in gaps.iter().zip(["Host", "Bo", "Cy"]) {
        if *gap > MAX_GAP {
            return Err(format!(
                "{name}'s audio paused for {gap:?} ({at:?} after kill − 500 ms) during the signaling restart"
            ));
        }
    }
    for ((peer, name), before) in peers[..3].iter().zip(["Host", "Bo", "Cy"]).zip(&before) {
        let view = peer.view();
        if view.resumes != 1 {
            return Err(format!("{name} resumed {} times", view.resumes));
        }
        if !view.departures.is_empty() {
            return Err(format!("{name} saw departures: {:?}", view.departures));
        }
        let now = roster(peer);
        if &now != before {
            return Err(format!("{name}'s room changed: {before:?} → {now:?}"));
        }
    }
    // Dee's media is still at the SFU, but Dee never resumes: once the grace is over it
    // is taken out, and everyone is told.
    for (peer, name) in peers[..3].iter().zip(["Host", "Bo", "Cy"]) {
        let reason = peer
            .wait_for_departure(&dee, STEP)
            .await
            .map_err(|e| format!("{name} never saw Dee, who did not come back, leave: {e}"))?;
        if reason != LeftReason::Disconnected {
            return Err(format!("Dee left as {reason:?}"));
        }
    }
    // The resumed sessions are whole: the owner still moderates (moves Bo off the seat),
    // and a leave is seen by everyone.
    let bo = peers[1].id().clone();
    peers[0]
        .send(&ClientMessage::RevokeSeat {
            participant: bo.clone(),
        })
        .map_err(|e| e.to_string())?;
    wait_info(&peers[2], &bo, "Bo moved to the audience", STEP, |p| {
        !p.speaker
    })
    .await?;
    let cy = peers[2].id().clone();
    let reason = peers[2]
        .leave()
        .await
        .map_err(|e| format!("Cy's leave: {e}"))?;
    if reason != LeftReason::Left {
        return Err(format!("Cy's leave answered {reason:?}"));
    }
    peers[0]
        .wait_for_departure(&cy, STEP)
        .await
        .map_err(|e| format!("Host never saw Cy leave: {e}"))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_socket_resumes_and_bad_blobs_change_nothing() {
    let key = TokenKey::make();
    let sfu = SfuNode::start_with(&key, "sfu-drop", &[]);
    let sfu_url = format!("http://{}", sfu.grpc);
    let mut node = SignalingNode::start_alone(&key, "sig-drop", &sfu_url);
    node.kill();
    node.start_again_alone(&key, &sfu_url, &["--resume-grace-secs", GRACE_SECS]);
    let mut peers = Vec::new();
    let outcome = dropped_and_refused(&key, &node, &mut peers).await;
    close_all(&mut peers).await;
    if let Err(message) = outcome {
        panic!(
            "{message}\n--- SFU ---\n{}\n--- signaling ---\n{}",
            sfu.log(),
            node.log()
        );
    }
}

fn refused_with(result: Result<(), PeerError>, code: ErrorCode, what: &str) -> Result<(), String> {
    match result {
        Err(PeerError::Server { code: got, message }) if got == code => {
            eprintln!("{what}: refused as {code:?}: {message}");
            Ok(())
        }
        other => Err(format!("{what}: expected {code:?}, got {other:?}")),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn dropped_and_refused(
    key: &TokenKey,
    node: &SignalingNode,
    peers: &mut Vec<WebrtcPeer>,
) -> Result<(), String> {
    build_room(node, peers).await?;
    let before = roster(&peers[0]);
    let bo = peers[1].id().clone();
    let (session, state) = peers[1].sealed().ok_or("Bo holds no state")?;
    let url = node.ws_url.clone();

    // Bo's network goes away: no close frame.
    peers[1].cut_socket();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Bad blobs first, each on a fresh socket; none may change the room.
    let mut bytes: Vec<char> = state.chars().collect();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == 'A' { 'B' } else { 'A' };
    let tampered: String = bytes.into_iter().collect();
    refused_with(
        peers[1].resume_with(&url, session.clone(), tampered).await,
        ErrorCode::SessionInvalid,
        "a tampered blob",
    )?;
    refused_with(
        peers[1]
            .resume_with(&url, session.clone(), state[..state.len() - 5].to_owned())
            .await,
        ErrorCode::SessionInvalid,
        "a truncated blob",
    )?;
    refused_with(
        peers[1]
            .resume_with(&url, SessionId::random(), state.clone())
            .await,
        ErrorCode::SessionInvalid,
        "another session's blob",
    )?;
    // Sealed with the cluster's own key, but long ago / already expired.
    let sealer = Sealer::new(key.issuer().session_secret());
    let latest = sealer
        .open(&session, &state, unix_now())
        .map_err(|e| format!("Bo's own blob does not open with the cluster key: {e}"))?
        .counter;
    let old = SessionState {
        session: session.clone(),
        counter: latest - 1,
        expires: unix_now() + 3600,
        user: peers[1].user().clone(),
        name: "Bo".into(),
        signed_in: false,
        room: Some(InRoom {
            room: peers[1].room().id.clone(),
            participant: bo.clone(),
            sfu: chorus_proto::NodeId::random(),
            muted: false,
        }),
        call: None,
    };
    let three_days_ago = unix_now() - 3 * 24 * 3600;
    refused_with(
        peers[1]
            .resume_with(
                &url,
                session.clone(),
                sealer.seal(&old, three_days_ago).unwrap(),
            )
            .await,
        ErrorCode::SessionExpired,
        "a blob sealed with a retired key",
    )?;
    let lapsed = SessionState {
        expires: unix_now() - 1,
        ..old.clone()
    };
    refused_with(
        peers[1]
            .resume_with(
                &url,
                session.clone(),
                sealer.seal(&lapsed, unix_now()).unwrap(),
            )
            .await,
        ErrorCode::SessionExpired,
        "an expired blob",
    )?;
    // A well-sealed blob whose counter is not the latest: a replay.
    refused_with(
        peers[1]
            .resume_with(
                &url,
                session.clone(),
                sealer.seal(&old, unix_now()).unwrap(),
            )
            .await,
        ErrorCode::SessionReplayed,
        "an older blob",
    )?;
    // Cy presents Bo's blob: someone else's.
    let mut cy_socket = peers.remove(2);
    let stolen = cy_socket
        .resume_with(&url, session.clone(), state.clone())
        .await;
    peers.insert(2, cy_socket);
    refused_with(stolen, ErrorCode::SessionInvalid, "another user's blob")?;

    if roster(&peers[0]) != before || !peers[0].view().departures.is_empty() {
        return Err(format!(
            "the refusals changed the room: {before:?} → {:?}, departures {:?}",
            roster(&peers[0]),
            peers[0].view().departures
        ));
    }

    // The right blob resumes: same participant, still seated; once only.
    peers[1]
        .resume(&url)
        .await
        .map_err(|e| format!("Bo could not resume: {e}"))?;
    let me = peers[1].view().participants.get(&bo).cloned();
    if !me.as_ref().is_some_and(|p| p.speaker && p.connected) {
        return Err(format!("Bo resumed as {me:?}"));
    }
    refused_with(
        peers[1]
            .resume_with(&url, session.clone(), state.clone())
            .await,
        ErrorCode::SessionReplayed,
        "the same blob twice",
    )?;
    // (The refusal came on a socket of its own: the resumed session goes on.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    if !peers[0].view().departures.is_empty() || roster(&peers[0]) != before {
        return Err(format!(
            "the others saw Bo's drop: departures {:?}",
            peers[0].view().departures
        ));
    }
    let heard_before = peers[1].heard().windows_with(440.0);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let heard_after = peers[1].heard().windows_with(440.0);
    if heard_after <= heard_before {
        return Err("Bo hears nothing after resuming".into());
    }

    // Cy's network goes away and Cy never comes back: after the grace, Cy leaves.
    let cy = peers[2].id().clone();
    peers[2].cut_socket();
    let reason = peers[0]
        .wait_for_departure(&cy, STEP)
        .await
        .map_err(|e| format!("Cy's dropped socket never ended its place: {e}"))?;
    if reason != LeftReason::Disconnected {
        return Err(format!("Cy left as {reason:?}"));
    }
    Ok(())
}

//! Audio truth with decoding `webrtc` peers, each publishing its own tone, in a moderated
//! room: what the SFU forwards follows the seats and the moderators, as a listener's
//! ears would notice.
//!
//! Cast: Host (the owner, joining with the `owner_token` of the server API; holds the
//! first seat; 330 Hz), Lea (a member; 440 Hz, published from the start even without a
//! seat), Obs (a silent member: the ear), Rem (a member seated over the server API;
//! 550 Hz; later removed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::time::{Duration, Instant};

use chorus_bench::webrtc_peer::{PeerError, WebrtcPeer};
use chorus_proto::signal::{ClientMessage, ErrorCode, LeftReason};
use common::ChorusServer;
use serde_json::json;
use support::{Api, close_all, join_connected, peer_config, summary, wait_info};

const HOST_HZ: f32 = 330.0;
const LEA_HZ: f32 = 440.0;
const REM_HZ: f32 = 550.0;
const STEP: Duration = Duration::from_secs(15);
/// How soon a change must be audible (the issue asks for a second; loaded CI gets 3).
const AUDIBLE_WITHIN: Duration = Duration::from_secs(3);
/// After a change that silences someone: time for packets in flight, then the window
/// in which not one 100 ms window of the tone may be heard.
const SETTLE: Duration = Duration::from_millis(800);
const SILENT_FOR: Duration = Duration::from_secs(2);

/// Index of each peer in the vector.
const HOST: usize = 0;
const LEA: usize = 1;
const OBS: usize = 2;
const REM: usize = 3;
const NAMES: [&str; 4] = ["Host", "Lea", "Obs", "Rem"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seats_mute_and_removal_decide_what_is_heard() {
    let started = Instant::now();
    let server = ChorusServer::spawn();
    let mut peers = Vec::new();
    let outcome = scenario(&server, &mut peers, started).await;
    let table: Vec<String> = peers
        .iter()
        .zip(NAMES)
        .map(|(p, n)| summary(n, &p.heard()))
        .collect();
    close_all(&mut peers).await;
    if let Err(message) = outcome {
        let log = server.log();
        let lines: Vec<&str> = log.lines().collect();
        panic!(
            "{message}\n--- what each heard ---\n{}\n--- server log (tail) ---\n{}",
            table.join("\n"),
            lines[lines.len().saturating_sub(40)..].join("\n")
        );
    }
    eprintln!("{}\ndone after {:?}", table.join("\n"), started.elapsed());
}

/// Wait until each of `ears` has heard `hz` in `more` windows beyond what it had heard
/// when called; returns how long that took.
async fn heard_within(
    peers: &[WebrtcPeer],
    ears: &[usize],
    hz: f32,
    more: u64,
    within: Duration,
    what: &str,
) -> Result<Duration, String> {
    let since = Instant::now();
    let before: Vec<u64> = ears
        .iter()
        .map(|&i| peers[i].heard().windows_with(hz))
        .collect();
    loop {
        let gains: Vec<u64> = ears
            .iter()
            .zip(&before)
            .map(|(&i, b)| peers[i].heard().windows_with(hz) - b)
            .collect();
        if gains.iter().all(|g| *g >= more) {
            return Ok(since.elapsed());
        }
        if since.elapsed() >= within {
            let who: Vec<String> = ears
                .iter()
                .zip(&gains)
                .map(|(&i, g)| format!("{} heard {g} new windows", NAMES[i]))
                .collect();
            return Err(format!(
                "{what}: {hz} Hz not heard within {within:?} (needs {more} windows): {}",
                who.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// After `SETTLE`, not one window of `hz` may reach any of `ears` for `SILENT_FOR`.
async fn silent(peers: &[WebrtcPeer], ears: &[usize], hz: f32, what: &str) -> Result<(), String> {
    tokio::time::sleep(SETTLE).await;
    let before: Vec<u64> = ears
        .iter()
        .map(|&i| peers[i].heard().windows_with(hz))
        .collect();
    tokio::time::sleep(SILENT_FOR).await;
    for (&i, b) in ears.iter().zip(&before) {
        let leaked = peers[i].heard().windows_with(hz) - b;
        if leaked > 0 {
            return Err(format!(
                "{what}: {} still hears {hz} Hz ({leaked} windows in {SILENT_FOR:?}, {SETTLE:?} after the change)",
                NAMES[i]
            ));
        }
    }
    Ok(())
}

async fn scenario(
    server: &ChorusServer,
    peers: &mut Vec<WebrtcPeer>,
    started: Instant,
) -> Result<(), String> {
    let api = Api::of(server);
    let created = api
        .create_room(
            json!({"name": "Stage", "owner_name": "Host", "capacity": 10,
                            "seats": 3, "seat_mode": "moderated"}),
        )
        .await;
    let room = created.room.id.clone();
    let ws = &server.ws_url;
    peers.push(
        join_connected(
            peer_config(ws, &room, "Host", Some(HOST_HZ), Some(&created.owner_token)),
            STEP,
        )
        .await?,
    );
    if peers[HOST].user().to_string() != created.owner {
        return Err(format!(
            "the owner token made user {}, not the owner {}",
            peers[HOST].user(),
            created.owner
        ));
    }
    peers.push(join_connected(peer_config(ws, &room, "Lea", Some(LEA_HZ), None), STEP).await?);
    peers.push(join_connected(peer_config(ws, &room, "Obs", None, None), STEP).await?);
    peers.push(join_connected(peer_config(ws, &room, "Rem", Some(REM_HZ), None), STEP).await?);
    api.wait_members(&room, "owner + 3 confirmed members", STEP, |m| m.len() == 4)
        .await?;
    let ids: Vec<_> = peers.iter().map(|p| p.id().clone()).collect();
    let lea_user = peers[LEA].user().to_string();
    let rem_user = peers[REM].user().to_string();

    // Rem is seated over the server API.
    let (status, body) = api
        .call(
            "PATCH",
            &format!("/api/v1/rooms/{room}/members/{rem_user}"),
            Some(json!({"seated": true})),
        )
        .await;
    if status != 200 {
        return Err(format!(
            "PATCH seated:true for Rem answered {status}: {body}"
        ));
    }
    wait_info(
        &peers[OBS],
        &ids[REM],
        "Rem seated (seen by Obs)",
        STEP,
        |p| p.speaker,
    )
    .await?;
    let t = heard_within(
        peers,
        &[LEA, OBS, REM],
        HOST_HZ,
        10,
        STEP,
        "the owner speaks",
    )
    .await?;
    heard_within(
        peers,
        &[HOST, LEA, OBS],
        REM_HZ,
        5,
        AUDIBLE_WITHIN,
        "Rem seated over the API",
    )
    .await?;
    eprintln!(
        "owner heard by all after {t:?}; Rem seated and heard ({:?})",
        started.elapsed()
    );

    // 1. A listener's tone is never heard, although it is sent.
    silent(peers, &[HOST, OBS, REM], LEA_HZ, "Lea, a listener").await?;
    let lea_total = [HOST, OBS, REM].map(|i| peers[i].heard().windows_with(LEA_HZ));
    if lea_total.iter().any(|w| *w > 0) {
        return Err(format!(
            "Lea's tone, a listener's, reached someone: windows {lea_total:?}"
        ));
    }
    let sent = peers[LEA].sent().await;
    if sent.rtp_packets < 50 {
        return Err(format!(
            "Lea did not really publish ({sent:?}): nothing was dropped"
        ));
    }

    // 2. Lea raises a hand (moderated room), the owner grants the seat: heard.
    peers[LEA]
        .send(&ClientMessage::RequestSeat)
        .map_err(|e| e.to_string())?;
    wait_info(
        &peers[HOST],
        &ids[LEA],
        "Lea's hand raised (seen by Host)",
        STEP,
        |p| p.hand_raised && !p.speaker,
    )
    .await?;
    silent(peers, &[OBS], LEA_HZ, "Lea with a raised hand").await?;
    peers[HOST]
        .send(&ClientMessage::GrantSeat {
            participant: ids[LEA].clone(),
        })
        .map_err(|e| e.to_string())?;
    wait_info(
        &peers[LEA],
        &ids[LEA],
        "Lea told she is a speaker",
        STEP,
        |p| p.speaker && !p.hand_raised,
    )
    .await?;
    let t = heard_within(
        peers,
        &[HOST, OBS, REM],
        LEA_HZ,
        5,
        AUDIBLE_WITHIN,
        "after grant_seat",
    )
    .await?;
    eprintln!("Lea heard {t:?} after grant_seat");

    // 3. Revoked: silent again.
    peers[HOST]
        .send(&ClientMessage::RevokeSeat {
            participant: ids[LEA].clone(),
        })
        .map_err(|e| e.to_string())?;
    wait_info(
        &peers[LEA],
        &ids[LEA],
        "Lea told her seat is revoked",
        STEP,
        |p| !p.speaker,
    )
    .await?;
    silent(peers, &[HOST, OBS, REM], LEA_HZ, "after revoke_seat").await?;

    // 4. Seated again over the server API: heard; then muted by a moderator: silent,
    // and Lea is told; unmuted: heard again.
    let (status, body) = api
        .call(
            "PATCH",
            &format!("/api/v1/rooms/{room}/members/{lea_user}"),
            Some(json!({"seated": true})),
        )
        .await;
    if status != 200 {
        return Err(format!(
            "PATCH seated:true for Lea answered {status}: {body}"
        ));
    }
    let t = heard_within(
        peers,
        &[OBS],
        LEA_HZ,
        5,
        AUDIBLE_WITHIN,
        "after PATCH seated:true",
    )
    .await?;
    eprintln!("Lea heard {t:?} after the API seated her");
    peers[HOST]
        .send(&ClientMessage::Mute {
            participant: ids[LEA].clone(),
            muted: true,
        })
        .map_err(|e| e.to_string())?;
    wait_info(
        &peers[LEA],
        &ids[LEA],
        "Lea told a moderator muted her",
        STEP,
        |p| p.muted_by_moderator && p.speaker,
    )
    .await?;
    silent(peers, &[HOST, OBS, REM], LEA_HZ, "after mute").await?;
    let members = api.members(&room).await;
    if support::member(&members, &lea_user).is_none_or(|m| m["muted_by_moderator"] != true) {
        return Err(format!(
            "the server API does not show Lea muted by a moderator: {members:?}"
        ));
    }
    peers[HOST]
        .send(&ClientMessage::Mute {
            participant: ids[LEA].clone(),
            muted: false,
        })
        .map_err(|e| e.to_string())?;
    wait_info(
        &peers[LEA],
        &ids[LEA],
        "Lea told she is unmuted",
        STEP,
        |p| !p.muted_by_moderator,
    )
    .await?;
    heard_within(peers, &[OBS], LEA_HZ, 5, AUDIBLE_WITHIN, "after unmute").await?;

    // 5. Rem is removed: told `removed`, the others see `participant_left removed`,
    // Rem's tone stops, Rem is no member, and Rem's user cannot come back.
    peers[HOST]
        .send(&ClientMessage::Remove {
            participant: ids[REM].clone(),
        })
        .map_err(|e| e.to_string())?;
    let reason = peers[REM]
        .wait_for("left after removal", STEP, |v| v.left)
        .await
        .map_err(|e| format!("Rem was never told it left: {e}"))?;
    if reason != LeftReason::Removed {
        return Err(format!(
            "Rem was told `left` with reason {reason:?}, not removed"
        ));
    }
    for i in [HOST, LEA, OBS] {
        let why = peers[i]
            .wait_for_departure(&ids[REM], STEP)
            .await
            .map_err(|e| format!("{} was not told Rem left: {e}", NAMES[i]))?;
        if why != LeftReason::Removed {
            return Err(format!(
                "{} was told Rem left with reason {why:?}, not removed",
                NAMES[i]
            ));
        }
    }
    silent(peers, &[HOST, LEA, OBS], REM_HZ, "after removing Rem").await?;
    let members = api.members(&room).await;
    if support::member(&members, &rem_user).is_some() {
        return Err(format!("Rem is still a member after removal: {members:?}"));
    }
    let rem_token = peers[REM].user_token().to_owned();
    match WebrtcPeer::join(peer_config(
        ws,
        &room,
        "Rem again",
        Some(REM_HZ),
        Some(&rem_token),
    ))
    .await
    {
        Ok(mut back) => {
            let user = back.user().clone();
            back.close().await;
            return Err(format!(
                "Rem's user ({user}) joined again after being removed"
            ));
        }
        Err(PeerError::Server { code, message }) => {
            if code != ErrorCode::Forbidden || !message.contains("removed") {
                return Err(format!(
                    "Rem coming back was refused with {code:?} {message:?}, expected forbidden saying removed"
                ));
            }
            eprintln!("Rem coming back: {code:?} {message:?}");
        }
        Err(e) => {
            return Err(format!(
                "Rem coming back failed without a server error: {e}"
            ));
        }
    }
    if api.members(&room).await.len() != 3 {
        return Err("the refused comeback changed the members".into());
    }
    eprintln!("all checked after {:?}", started.elapsed());
    Ok(())
}

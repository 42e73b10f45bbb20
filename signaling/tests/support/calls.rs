//! Calls over the protocol for tests: accounts, ringing, answering and the frames of a
//! call, and two `webrtc` peers that talk browser to browser over a call's signals.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use chorus_bench::webrtc_peer::{MediaConfig, MediaPeer};
use chorus_proto::CallId;
use chorus_proto::people::{
    CallEnd, CallInfo, CallRecord, PersonInfo, SdpType, SessionDescription,
};
use chorus_proto::signal::{ClientMessage, ErrorCode, ServerMessage};

use super::{Api, RawClient};

pub const WAIT: Duration = Duration::from_secs(10);

/// A fresh session that registers `handle`; its `user_token` is the account's.
pub async fn account(ws_url: &str, name: &str, handle: &str) -> RawClient {
    let mut client = RawClient::hello_taking_calls(ws_url, name, None).await;
    client
        .send(&ClientMessage::Register {
            handle: handle.into(),
            password: format!("{handle} secret words"),
        })
        .await;
    let token = client
        .expect("account", WAIT, |m| match m {
            ServerMessage::Account {
                user_token,
                account,
            } => {
                assert_eq!(account.handle, handle);
                Some(user_token.clone())
            }
            ServerMessage::Error { code, message } => {
                panic!("register {handle}: {code:?} {message}")
            }
            _ => None,
        })
        .await
        .unwrap();
    client.user_token = token;
    client
}

/// Another device of the account whose token `of` holds.
pub async fn device(ws_url: &str, of: &RawClient, name: &str) -> RawClient {
    RawClient::hello_taking_calls(ws_url, name, Some(&of.user_token)).await
}

pub async fn send(client: &mut RawClient, message: ClientMessage) {
    client.send(&message).await;
}

/// `caller` calls `handle`; it rings, and `callee` (one of that account's sessions) is
/// rung.
pub async fn ring(caller: &mut RawClient, handle: &str, callee: &mut RawClient) -> CallInfo {
    send(
        caller,
        ClientMessage::Call {
            handle: handle.into(),
        },
    )
    .await;
    let call = ringing(caller).await;
    assert_eq!(incoming(callee).await.id, call.id);
    call
}

pub async fn accept(client: &mut RawClient, call: &CallId) {
    let call = call.clone();
    send(client, ClientMessage::AcceptCall { call }).await;
}

pub async fn decline(client: &mut RawClient, call: &CallId) {
    let call = call.clone();
    send(client, ClientMessage::DeclineCall { call }).await;
}

pub async fn hang_up(client: &mut RawClient, call: &CallId) {
    let call = call.clone();
    send(client, ClientMessage::HangUp { call }).await;
}

/// The room `call` moved into.
pub async fn relayed(client: &mut RawClient, call: &CallId) -> chorus_proto::RoomId {
    client
        .expect("call_relayed", WAIT, |m| match m {
            ServerMessage::CallRelayed { call: id, room } if id == call => Some(room.clone()),
            _ => None,
        })
        .await
        .unwrap()
}

pub async fn ringing(client: &mut RawClient) -> CallInfo {
    client
        .expect("call_ringing", WAIT, |m| match m {
            ServerMessage::CallRinging { call } => Some(call.clone()),
            _ => None,
        })
        .await
        .unwrap()
}

pub async fn incoming(client: &mut RawClient) -> CallInfo {
    client
        .expect("call_incoming", WAIT, |m| match m {
            ServerMessage::CallIncoming { call } => Some(call.clone()),
            _ => None,
        })
        .await
        .unwrap()
}

pub async fn accepted(client: &mut RawClient) -> CallInfo {
    client
        .expect("call_accepted", WAIT, |m| match m {
            ServerMessage::CallAccepted { call, .. } => Some(call.clone()),
            _ => None,
        })
        .await
        .unwrap()
}

pub async fn ended(client: &mut RawClient, within: Duration) -> (CallId, CallEnd) {
    client
        .expect("call_ended", within, |m| match m {
            ServerMessage::CallEnded { call, reason } => Some((call.clone(), *reason)),
            _ => None,
        })
        .await
        .unwrap()
}

pub async fn sdp(client: &mut RawClient) -> SessionDescription {
    client
        .expect("call_signal with an SDP", WAIT, |m| match m {
            ServerMessage::CallSignal {
                description: Some(d),
                ..
            } => Some(d.clone()),
            _ => None,
        })
        .await
        .unwrap()
}

pub async fn contacts(client: &mut RawClient) -> (Vec<PersonInfo>, Vec<CallRecord>) {
    send(client, ClientMessage::Contacts).await;
    client
        .expect("contacts", WAIT, |m| match m {
            ServerMessage::Contacts { people, calls, .. } => Some((people.clone(), calls.clone())),
            _ => None,
        })
        .await
        .unwrap()
}

/// Nothing rang `client` so far: a ping's pong comes after every frame sent before it.
pub async fn never_rang(client: &mut RawClient) {
    send(client, ClientMessage::Ping).await;
    client
        .expect("pong", WAIT, |m| match m {
            ServerMessage::CallIncoming { call } => panic!("{} rang a room page", call.caller.name),
            ServerMessage::Pong => Some(()),
            _ => None,
        })
        .await
        .unwrap();
}

pub async fn error(client: &mut RawClient, what: &str) -> ErrorCode {
    client.expect_error(what).await.unwrap().0
}

/// Whether `call_accepted` said the call goes through the SFU from the start.
pub async fn accepted_relay(client: &mut RawClient) -> bool {
    client
        .expect("call_accepted", WAIT, |m| match m {
            ServerMessage::CallAccepted { relay, .. } => Some(*relay),
            _ => None,
        })
        .await
        .unwrap()
}

/// The app backend puts the accounts of `a` and `b` in one group chat: they are
/// contacts, whose calls go browser to browser.
pub async fn make_contacts(api: &Api, a: &RawClient, b: &RawClient) {
    let made = api
        .create_room(serde_json::json!({"name": "Friends", "owner_name": "A", "owner": a.user}))
        .await;
    let (status, body) = api
        .call(
            "PUT",
            &format!("/api/v1/rooms/{}/members/{}", made.room.id, b.user),
            Some(serde_json::json!({"name": "B"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        super::member(body["members"].as_array().unwrap(), &b.user).is_some(),
        "{body}"
    );
}

/// `client`'s account as the server says it now (after `set_call_privacy`).
pub async fn account_info(client: &mut RawClient) -> chorus_proto::people::AccountInfo {
    client
        .expect("account", WAIT, |m| match m {
            ServerMessage::Account { account, .. } => Some(account.clone()),
            _ => None,
        })
        .await
        .unwrap()
}

/// The caller's and the callee's `webrtc` peers connect to each other over the call's
/// signals (the caller offers, the callee answers, both say `call_connected`), and each
/// hears the other's tone (440 Hz from the caller, 660 Hz from the callee) decoded in at
/// least 10 windows. The peers are handed back to be closed.
pub async fn talk_directly(
    caller_client: &mut RawClient,
    callee_client: &mut RawClient,
    call: &CallId,
) -> (Result<(), String>, MediaPeer, MediaPeer) {
    let peer = |hz| MediaConfig {
        tone_hz: Some(hz),
        slots: 0,
        ..MediaConfig::default()
    };
    let mut caller = MediaPeer::new(&peer(440.0)).await.unwrap();
    let mut callee = MediaPeer::new(&peer(660.0)).await.unwrap();
    let outcome = async {
        let offer = caller.create_offer(WAIT).await.map_err(|e| e.to_string())?;
        send(
            caller_client,
            ClientMessage::CallSignal {
                call: call.clone(),
                description: Some(SessionDescription {
                    kind: SdpType::Offer,
                    sdp: offer,
                }),
                candidate: None,
            },
        )
        .await;
        let offer = sdp(callee_client).await;
        assert_eq!(offer.kind, SdpType::Offer);
        let answer = callee
            .answer(offer.sdp, WAIT)
            .await
            .map_err(|e| e.to_string())?;
        send(
            callee_client,
            ClientMessage::CallSignal {
                call: call.clone(),
                description: Some(SessionDescription {
                    kind: SdpType::Answer,
                    sdp: answer,
                }),
                candidate: None,
            },
        )
        .await;
        let answer = sdp(caller_client).await;
        caller
            .apply_answer(answer.sdp)
            .await
            .map_err(|e| e.to_string())?;
        caller.start_publishing();
        callee.start_publishing();
        caller
            .wait_connected(WAIT)
            .await
            .map_err(|e| e.to_string())?;
        callee
            .wait_connected(WAIT)
            .await
            .map_err(|e| e.to_string())?;
        send(
            caller_client,
            ClientMessage::CallConnected { call: call.clone() },
        )
        .await;
        send(
            callee_client,
            ClientMessage::CallConnected { call: call.clone() },
        )
        .await;
        // Each hears the other's tone (decoded), within a bound for "never".
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (a, b) = (caller.heard(), callee.heard());
            if a.windows_with(660.0) >= 10 && b.windows_with(440.0) >= 10 {
                if a.windows_with(440.0) != 0 {
                    return Err("the caller hears itself".into());
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not both hearing: caller {a:?}, callee {b:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    .await;
    (outcome, caller, callee)
}

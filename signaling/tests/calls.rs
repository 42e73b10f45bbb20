//! 1:1 calls against the real binary: accounts made over the protocol, two `webrtc`-crate
//! peers that call each other by handle and connect browser to browser (the server relays
//! only SDP), and every way a call ends, in the right words on both sides.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::time::{Duration, Instant};

use chorus_proto::CallId;
use chorus_proto::people::{CallEnd, Presence, SdpType, SessionDescription};
use chorus_proto::signal::{ClientMessage, ErrorCode, ServerMessage};
use common::ChorusServer;
use support::RawClient;
use support::calls::*;

/// Join `room` as the account whose token `client` holds, sending `tone`.
async fn join_as(
    server: &ChorusServer,
    room: &chorus_proto::RoomId,
    name: &str,
    token: Option<&str>,
    tone: Option<f32>,
) -> chorus_bench::webrtc_peer::WebrtcPeer {
    support::join_connected(
        support::peer_config(&server.ws_url, room, name, tone, token),
        WAIT,
    )
    .await
    .unwrap_or_else(|e| panic!("{name} joins {room}: {e}\n{}", server.log()))
}

/// Ada calls Bo, who has two devices: both ring, the first accepts, the second hears
/// "answered elsewhere". The two `webrtc` peers connect to each other (the server relays
/// their SDP) and each hears the other's tone; the SFU forwards nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_by_handle_goes_browser_to_browser() {
    let server = ChorusServer::spawn();
    let mut ada = account(&server.ws_url, "Ada", "ada").await;
    let bo_phone = account(&server.ws_url, "Bo", "bo").await;
    let mut bo_phone = bo_phone;
    let mut bo_laptop = device(&server.ws_url, &bo_phone, "Bo").await;
    make_contacts(&support::Api::of(&server), &ada, &bo_phone).await;

    let asked = Instant::now();
    send(
        &mut ada,
        ClientMessage::Call {
            handle: "@Bo".into(),
        },
    )
    .await;
    let call = ringing(&mut ada).await;
    assert_eq!(
        (call.caller.handle.as_str(), call.callee.handle.as_str()),
        ("ada", "bo")
    );
    assert_eq!(incoming(&mut bo_phone).await, call);
    assert_eq!(incoming(&mut bo_laptop).await, call);
    accept(&mut bo_phone, &call.id).await;
    assert!(
        !accepted_relay(&mut ada).await,
        "contacts: browser to browser"
    );
    assert_eq!(accepted(&mut bo_phone).await.id, call.id);
    assert_eq!(
        ended(&mut bo_laptop, WAIT).await,
        (call.id.clone(), CallEnd::AnsweredElsewhere)
    );
    // The laptop's late accept changes nothing.
    accept(&mut bo_laptop, &call.id).await;
    assert_eq!(
        ended(&mut bo_laptop, WAIT).await,
        (call.id.clone(), CallEnd::AnsweredElsewhere)
    );

    let (outcome, mut caller, mut callee) = talk_directly(&mut ada, &mut bo_phone, &call.id).await;
    if outcome.is_ok() {
        println!("call {}: ask → both hearing {:?}", call.id, asked.elapsed());
    }
    let metrics = support::metrics(&server.url).await;
    caller.close().await;
    callee.close().await;
    if let Err(e) = outcome {
        panic!("{e}\n{}", server.log());
    }
    assert_eq!(
        support::metric(&metrics, "chorus_sfu_packets_forwarded_total"),
        Some(0.0),
        "the SFU carried none of the call:\n{metrics}"
    );
    assert_eq!(
        support::metric(&metrics, "chorus_calls_direct_total"),
        Some(1.0)
    );
    assert_eq!(support::metric(&metrics, "chorus_calls_active"), Some(1.0));

    // Presence: Bo is in a call, to anyone who knows his handle.
    send(
        &mut ada,
        ClientMessage::FindPerson {
            handle: "bo".into(),
        },
    )
    .await;
    let bo = ada
        .expect("person", WAIT, |m| match m {
            ServerMessage::Person { person } => Some(person.clone()),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(bo.presence, Presence::InCall);
    hang_up(&mut bo_phone, &call.id).await;
    assert_eq!(
        ended(&mut ada, WAIT).await,
        (call.id.clone(), CallEnd::HungUp)
    );
    assert_eq!(
        ended(&mut bo_phone, WAIT).await,
        (call.id.clone(), CallEnd::HungUp)
    );
    // The laptop, answered elsewhere long ago, is told the call's record when it ends;
    // so is each side.
    for (client, outgoing) in [(&mut bo_laptop, false), (&mut ada, true)] {
        let record = client
            .expect("call_recorded", WAIT, |m| match m {
                ServerMessage::CallRecorded { record } if record.id == call.id => {
                    Some(record.clone())
                }
                _ => None,
            })
            .await
            .unwrap();
        assert_eq!(
            (record.end, record.outgoing, record.missed, record.path),
            (
                CallEnd::HungUp,
                outgoing,
                false,
                Some(chorus_proto::people::MediaPath::Direct)
            )
        );
    }
    // Now they have called each other: Bo is Ada's contact, online; she follows his
    // presence, which is per user: one of his two devices leaving changes nothing, the
    // last one makes him offline.
    let (people, _) = contacts(&mut ada).await;
    let bo = people
        .iter()
        .find(|p| p.handle == "bo")
        .expect("Bo is a contact now");
    assert_eq!(bo.presence, Presence::Online);
    let (_, calls) = contacts(&mut bo_phone).await;
    let record = &calls[0];
    assert_eq!(record.id, call.id);
    assert!(!record.outgoing && !record.missed);
    assert_eq!(record.end, CallEnd::HungUp);
    assert_eq!(record.path, Some(chorus_proto::people::MediaPath::Direct));
    assert_eq!(record.peer.handle, "ada");
    bo_laptop.close().await;
    bo_phone.close().await;
    let offline = ada
        .expect("presence", WAIT, |m| match m {
            ServerMessage::Presence { user, presence } => Some((user.clone(), *presence)),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(
        offline,
        (call.callee.user.clone(), Presence::Offline),
        "one change, after the last device"
    );
}

/// Declined, busy, cancelled, no answer, unavailable: each ends with its reason on both
/// sides, and the callee's list shows what it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_a_call_ends() {
    let server = ChorusServer::spawn_with(&["--call-ring-secs", "2"]);
    let mut ada = account(&server.ws_url, "Ada", "ada").await;
    let mut bo = account(&server.ws_url, "Bo", "bo").await;
    let mut cy = account(&server.ws_url, "Cy", "cy").await;

    // Declined.
    let call = ring(&mut ada, "bo", &mut bo).await;
    decline(&mut bo, &call.id).await;
    assert_eq!(
        ended(&mut ada, WAIT).await,
        (call.id.clone(), CallEnd::Declined)
    );
    assert_eq!(
        ended(&mut bo, WAIT).await,
        (call.id.clone(), CallEnd::Declined)
    );

    // Busy: Bo is in a call with Cy when Ada rings.
    let with_cy = ring(&mut cy, "bo", &mut bo).await;
    accept(&mut bo, &with_cy.id).await;
    accepted(&mut cy).await;
    send(
        &mut ada,
        ClientMessage::Call {
            handle: "bo".into(),
        },
    )
    .await;
    let (busy, reason) = ended(&mut ada, WAIT).await;
    assert_eq!(reason, CallEnd::Busy);
    // Ada, while in no call, may not hang up Cy's call; Cy's own hang-up ends it for both.
    hang_up(&mut ada, &with_cy.id).await;
    assert_eq!(
        error(&mut ada, "hang up someone else's call").await,
        ErrorCode::CallNotFound
    );
    hang_up(&mut cy, &with_cy.id).await;
    assert_eq!(
        ended(&mut bo, WAIT).await,
        (with_cy.id.clone(), CallEnd::HungUp)
    );
    assert_eq!(
        ended(&mut cy, WAIT).await,
        (with_cy.id.clone(), CallEnd::HungUp)
    );

    // Cancelled by the caller; then accepting it is refused and changes nothing.
    let cancelled = ring(&mut ada, "bo", &mut bo).await;
    hang_up(&mut ada, &cancelled.id).await;
    assert_eq!(
        ended(&mut bo, WAIT).await,
        (cancelled.id.clone(), CallEnd::Cancelled)
    );
    assert_eq!(
        ended(&mut ada, WAIT).await,
        (cancelled.id.clone(), CallEnd::Cancelled)
    );
    accept(&mut bo, &cancelled.id).await;
    assert_eq!(
        error(&mut bo, "accept a cancelled call").await,
        ErrorCode::CallNotFound
    );

    // No answer: the ring time (2 s here) passes.
    let unanswered = ring(&mut ada, "bo", &mut bo).await;
    assert_eq!(
        ended(&mut ada, Duration::from_secs(12)).await,
        (unanswered.id.clone(), CallEnd::NoAnswer)
    );
    assert_eq!(
        ended(&mut bo, WAIT).await,
        (unanswered.id.clone(), CallEnd::NoAnswer)
    );

    // Unavailable: Bo has no device connected.
    let bo_token = bo.user_token.clone();
    bo.close().await;
    let bo_gone = Instant::now();
    let offline = loop {
        send(
            &mut ada,
            ClientMessage::Call {
                handle: "bo".into(),
            },
        )
        .await;
        let reason = ada
            .expect("the call's first answer", WAIT, |m| match m {
                ServerMessage::CallRinging { call } => Some(Err(call.id.clone())),
                ServerMessage::CallEnded { call, reason } => Some(Ok((call.clone(), *reason))),
                _ => None,
            })
            .await
            .unwrap();
        match reason {
            Ok(found) => break found,
            // The server had not seen the socket close yet: this call rang nobody.
            Err(id) => {
                send(&mut ada, ClientMessage::HangUp { call: id }).await;
                ended(&mut ada, WAIT).await;
                assert!(bo_gone.elapsed() < WAIT, "a closed session stays online");
            }
        }
    };
    assert_eq!(offline.1, CallEnd::Unavailable);

    // Bo comes back and finds what he missed: the cancelled call, the unanswered one,
    // the busy one and the one while offline, each marked missed; the declined one not.
    let mut bo = RawClient::hello_taking_calls(&server.ws_url, "Bo", Some(&bo_token)).await;
    let (people, calls) = contacts(&mut bo).await;
    let missed: Vec<_> = calls
        .iter()
        .filter(|c| c.missed)
        .map(|c| c.id.clone())
        .collect();
    assert!(missed.contains(&cancelled.id) && missed.contains(&unanswered.id));
    assert!(missed.contains(&busy) && missed.contains(&offline.0));
    let declined = calls
        .iter()
        .find(|c| c.id == call.id)
        .expect("declined call listed");
    assert!(!declined.missed && declined.end == CallEnd::Declined);
    let with_cy = calls
        .iter()
        .find(|c| c.id == with_cy.id)
        .expect("Cy's call listed");
    assert_eq!((with_cy.end, with_cy.outgoing), (CallEnd::HungUp, false));
    let mut handles: Vec<_> = people.iter().map(|p| p.handle.as_str()).collect();
    handles.sort_unstable();
    assert_eq!(
        handles,
        ["ada", "cy"],
        "people Bo has called with are his contacts"
    );
}

/// Bad requests get a typed error and change nothing: guests, oneself, unknown handles,
/// blocked callers, forged ids, two accepts racing, an invite storm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_call_requests_change_nothing() {
    let server = ChorusServer::spawn();
    let mut guest = RawClient::hello(&server.ws_url, "Guest", None).await;
    send(
        &mut guest,
        ClientMessage::Call {
            handle: "ada".into(),
        },
    )
    .await;
    assert_eq!(
        error(&mut guest, "a guest's call").await,
        ErrorCode::NotSignedIn
    );

    let mut ada = account(&server.ws_url, "Ada", "ada").await;
    let mut bo = account(&server.ws_url, "Bo", "bo").await;
    let mut other = RawClient::hello_taking_calls(&server.ws_url, "Ada again", None).await;
    send(
        &mut other,
        ClientMessage::Register {
            handle: "ADA".into(),
            password: "another password".into(),
        },
    )
    .await;
    assert_eq!(
        error(&mut other, "a taken handle").await,
        ErrorCode::HandleTaken
    );
    send(
        &mut other,
        ClientMessage::Register {
            handle: "x y".into(),
            password: "long enough".into(),
        },
    )
    .await;
    assert_eq!(
        error(&mut other, "a bad handle").await,
        ErrorCode::InvalidInput
    );
    send(
        &mut other,
        ClientMessage::Register {
            handle: "cyd".into(),
            password: "short".into(),
        },
    )
    .await;
    assert_eq!(
        error(&mut other, "a short password").await,
        ErrorCode::InvalidInput
    );
    send(
        &mut other,
        ClientMessage::SignIn {
            handle: "ada".into(),
            password: "wrong words".into(),
        },
    )
    .await;
    assert_eq!(
        error(&mut other, "a wrong password").await,
        ErrorCode::Unauthorized
    );
    send(
        &mut other,
        ClientMessage::SignIn {
            handle: "nobody".into(),
            password: "wrong words".into(),
        },
    )
    .await;
    assert_eq!(
        error(&mut other, "an unknown handle").await,
        ErrorCode::Unauthorized
    );
    // The right password signs this session in as Ada (a second device).
    send(
        &mut other,
        ClientMessage::SignIn {
            handle: "ada".into(),
            password: "ada secret words".into(),
        },
    )
    .await;
    let signed_in = other
        .expect("account", WAIT, |m| match m {
            ServerMessage::Account { account, .. } => Some(account.user.clone()),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(signed_in.as_str(), ada.user);

    send(
        &mut ada,
        ClientMessage::Call {
            handle: "ada".into(),
        },
    )
    .await;
    assert_eq!(
        error(&mut ada, "calling oneself").await,
        ErrorCode::InvalidInput
    );
    send(
        &mut ada,
        ClientMessage::Call {
            handle: "nobody".into(),
        },
    )
    .await;
    assert_eq!(
        error(&mut ada, "an unknown handle").await,
        ErrorCode::UserNotFound
    );
    send(
        &mut ada,
        ClientMessage::FindPerson {
            handle: "bo".into(),
        },
    )
    .await;
    let bo_person = ada
        .expect("person", WAIT, |m| match m {
            ServerMessage::Person { person } => Some(person.clone()),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(
        (bo_person.name.as_str(), bo_person.presence),
        ("Bo", Presence::Online)
    );
    let forged = CallId::random();
    for message in [
        ClientMessage::AcceptCall {
            call: forged.clone(),
        },
        ClientMessage::DeclineCall {
            call: forged.clone(),
        },
        ClientMessage::HangUp {
            call: forged.clone(),
        },
        ClientMessage::CallSignal {
            call: forged.clone(),
            description: Some(SessionDescription {
                kind: SdpType::Offer,
                sdp: "v=0".into(),
            }),
            candidate: None,
        },
    ] {
        send(&mut bo, message).await;
        assert_eq!(
            error(&mut bo, "a forged call id").await,
            ErrorCode::CallNotFound
        );
    }

    // Two accepts racing on Ada's two devices: exactly one wins.
    let call = ring(&mut bo, "ada", &mut ada).await;
    incoming(&mut other).await;
    // Signals before the answer are refused in words.
    send(
        &mut bo,
        ClientMessage::CallSignal {
            call: call.id.clone(),
            description: Some(SessionDescription {
                kind: SdpType::Offer,
                sdp: "v=0".into(),
            }),
            candidate: None,
        },
    )
    .await;
    assert_eq!(
        error(&mut bo, "a signal before the answer").await,
        ErrorCode::InvalidInput
    );
    let (a, b) = tokio::join!(
        send(
            &mut ada,
            ClientMessage::AcceptCall {
                call: call.id.clone()
            }
        ),
        send(
            &mut other,
            ClientMessage::AcceptCall {
                call: call.id.clone()
            }
        )
    );
    let _ = (a, b);
    let outcome = |m: &ServerMessage| match m {
        ServerMessage::CallAccepted { .. } => Some(true),
        ServerMessage::CallEnded {
            reason: CallEnd::AnsweredElsewhere,
            ..
        } => Some(false),
        _ => None,
    };
    let first = ada
        .expect("accepted or answered elsewhere", WAIT, outcome)
        .await
        .unwrap();
    let second = other
        .expect("accepted or answered elsewhere", WAIT, outcome)
        .await
        .unwrap();
    assert!(first != second, "exactly one device wins: {first} {second}");
    accepted(&mut bo).await;
    hang_up(&mut bo, &call.id).await;
    ended(&mut bo, WAIT).await;

    // Blocked: Bo blocks Ada; her call is refused, nothing rings.
    send(
        &mut bo,
        ClientMessage::Block {
            user: signed_in.clone(),
            blocked: true,
        },
    )
    .await;
    let blocked = bo
        .expect("contacts after block", WAIT, |m| match m {
            ServerMessage::Contacts { blocked, .. } => Some(blocked.clone()),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].user, signed_in);
    send(
        &mut ada,
        ClientMessage::Call {
            handle: "bo".into(),
        },
    )
    .await;
    assert_eq!(
        error(&mut ada, "calling someone who blocked you").await,
        ErrorCode::Forbidden
    );

    // An invite storm: Bo calls Ada over and over; after 5 a minute he is refused.
    let mut refused = None;
    for i in 0..8 {
        send(
            &mut bo,
            ClientMessage::Call {
                handle: "ada".into(),
            },
        )
        .await;
        let answer = bo
            .expect("a call's answer", WAIT, |m| match m {
                ServerMessage::CallRinging { call } => Some(Ok(call.id.clone())),
                ServerMessage::Error { code, .. } => Some(Err(*code)),
                _ => None,
            })
            .await
            .unwrap();
        match answer {
            Ok(id) => {
                send(&mut bo, ClientMessage::HangUp { call: id }).await;
                ended(&mut bo, WAIT).await;
            }
            Err(code) => {
                refused = Some((i, code));
                break;
            }
        }
    }
    // One call (the raced one) was made in this minute already.
    assert_eq!(refused, Some((4, ErrorCode::RateLimited)));
    guest.close().await;
}

/// A session that does not take calls (a room page) makes its account `online`, but a
/// call never rings it: with no session that takes calls, the call is `unavailable` at
/// once; a calls screen opened beside it rings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_page_counts_for_presence_but_never_rings() {
    let server = ChorusServer::spawn();
    let mut ada = account(&server.ws_url, "Ada", "ada").await;
    let bo = account(&server.ws_url, "Bo", "bo").await;
    let bo_token = bo.user_token.clone();
    bo.close().await;
    let mut room_page = RawClient::hello(&server.ws_url, "Bo", Some(&bo_token)).await;

    // Bo's room page is all he has open: online, yet nothing to ring. (The account's
    // calls-screen session may still be closing: ask until presence says online.)
    let deadline = Instant::now() + WAIT;
    loop {
        send(
            &mut ada,
            ClientMessage::FindPerson {
                handle: "bo".into(),
            },
        )
        .await;
        let presence = ada
            .expect("person", WAIT, |m| match m {
                ServerMessage::Person { person } => Some(person.presence),
                _ => None,
            })
            .await
            .unwrap();
        if presence == Presence::Online {
            break;
        }
        assert!(Instant::now() < deadline, "Bo's room page is not online");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = loop {
        send(
            &mut ada,
            ClientMessage::Call {
                handle: "bo".into(),
            },
        )
        .await;
        let answer = ada
            .expect("the call's first answer", WAIT, |m| match m {
                ServerMessage::CallRinging { call } => Some(Err(call.id.clone())),
                ServerMessage::CallEnded { reason, .. } => Some(Ok(*reason)),
                _ => None,
            })
            .await
            .unwrap();
        match answer {
            Ok(reason) => break reason,
            // The closed calls screen had not gone yet: this call rang nobody.
            Err(id) => {
                send(&mut ada, ClientMessage::HangUp { call: id }).await;
                ended(&mut ada, WAIT).await;
                assert!(Instant::now() < deadline, "a closed session still rings");
            }
        }
    };
    assert_eq!(first, CallEnd::Unavailable);
    never_rang(&mut room_page).await;

    // A calls screen beside the room page rings; the room page still does not.
    let mut calls_screen =
        RawClient::hello_taking_calls(&server.ws_url, "Bo", Some(&bo_token)).await;
    send(
        &mut ada,
        ClientMessage::Call {
            handle: "bo".into(),
        },
    )
    .await;
    ringing(&mut ada).await;
    incoming(&mut calls_screen).await;
    never_rang(&mut room_page).await;
}

/// An app backend that owns identity: `POST /api/v1/users` with a handle makes its user
/// an account others can call (no password signs it in), and a one-time link signs that
/// account in on a new device — once; a used, forged or garbled link is refused in words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_signs_its_users_in_with_one_time_links() {
    let server = ChorusServer::spawn();
    let api = support::Api::of(&server);
    let (status, made) = api
        .call(
            "POST",
            "/api/v1/users",
            Some(serde_json::json!({"name": "Cy", "user": "backend-cy", "handle": "@Cy", "link": true})),
        )
        .await;
    assert_eq!(status, 200, "{made}");
    assert_eq!(made["account"]["handle"], "cy");
    let code = made["sign_in_link"]["code"].as_str().unwrap().to_owned();
    assert_eq!(
        made["sign_in_link"]["path"].as_str().unwrap(),
        format!("/#sign_in={code}")
    );

    // The handle is the backend's user's; someone else's user may not take it, nor may
    // a link be had for a user without an account.
    let (status, taken) = api
        .call(
            "POST",
            "/api/v1/users",
            Some(serde_json::json!({"name": "Other", "user": "backend-other", "handle": "cy"})),
        )
        .await;
    assert_eq!(
        (status, taken["code"].as_str()),
        (409, Some("handle_taken")),
        "{taken}"
    );
    let (status, no_account) = api
        .call(
            "POST",
            "/api/v1/users",
            Some(serde_json::json!({"name": "Dee", "link": true})),
        )
        .await;
    assert_eq!(status, 400, "{no_account}");

    // The link signs a fresh browser in as @cy, once.
    let mut phone = RawClient::hello_taking_calls(&server.ws_url, "Cy", None).await;
    send(
        &mut phone,
        ClientMessage::SignInWithLink { code: code.clone() },
    )
    .await;
    let signed_in = phone
        .expect("account", WAIT, |m| match m {
            ServerMessage::Account { account, .. } => Some(account.clone()),
            ServerMessage::Error { code, message } => panic!("the link: {code:?} {message}"),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(
        (signed_in.handle.as_str(), signed_in.user.as_str()),
        ("cy", "backend-cy")
    );
    let mut again = RawClient::hello(&server.ws_url, "Someone", None).await;
    for (link, what) in [
        (code.clone(), "a used link"),
        (format!("{code}x"), "a forged link"),
        ("not a link".to_owned(), "a garbled link"),
        (
            made["user_token"].as_str().unwrap().to_owned(),
            "a user token as a link",
        ),
    ] {
        send(&mut again, ClientMessage::SignInWithLink { code: link }).await;
        assert_eq!(
            error(&mut again, what).await,
            ErrorCode::Unauthorized,
            "{what}"
        );
    }
    // No password signs a backend's account in.
    send(
        &mut again,
        ClientMessage::SignIn {
            handle: "cy".into(),
            password: String::new(),
        },
    )
    .await;
    assert_eq!(
        error(&mut again, "an empty password").await,
        ErrorCode::Unauthorized
    );

    // Cy is callable by handle like anyone: Ada rings the phone the link signed in.
    let mut ada = account(&server.ws_url, "Ada", "ada").await;
    send(
        &mut ada,
        ClientMessage::Call {
            handle: "cy".into(),
        },
    )
    .await;
    ringing(&mut ada).await;
    assert_eq!(incoming(&mut phone).await.caller.handle, "ada");
}

/// The direct path fails (these two peers never even try it): the caller asks for the
/// SFU, both sides are told the call's room, join it as the accounts they are and hear
/// each other through the SFU; the call goes on under the same id, and hanging up ends
/// the room too. A third user cannot come in, and a relay before the answer is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_direct_path_fails_goes_on_through_the_sfu() {
    let server = ChorusServer::spawn();
    let mut ada = account(&server.ws_url, "Ada", "ada").await;
    let mut bo = account(&server.ws_url, "Bo", "bo").await;
    make_contacts(&support::Api::of(&server), &ada, &bo).await;
    let call = ring(&mut ada, "bo", &mut bo).await;
    send(
        &mut ada,
        ClientMessage::RelayCall {
            call: call.id.clone(),
        },
    )
    .await;
    assert_eq!(
        error(&mut ada, "a relay before the answer").await,
        ErrorCode::InvalidInput
    );
    accept(&mut bo, &call.id).await;
    assert!(!accepted_relay(&mut ada).await);
    accepted(&mut bo).await;
    // Their direct path worked for a while (the caller said so), then failed.
    send(
        &mut ada,
        ClientMessage::CallConnected {
            call: call.id.clone(),
        },
    )
    .await;

    // Both ask at once, as two browsers whose ICE failed would: one room.
    send(
        &mut ada,
        ClientMessage::RelayCall {
            call: call.id.clone(),
        },
    )
    .await;
    send(
        &mut bo,
        ClientMessage::RelayCall {
            call: call.id.clone(),
        },
    )
    .await;
    let room = relayed(&mut ada, &call.id).await;
    assert_eq!(relayed(&mut bo, &call.id).await, room);

    let join = |name: &str, token: &str, tone: f32| {
        support::join_connected(
            support::peer_config(&server.ws_url, &room, name, Some(tone), Some(token)),
            WAIT,
        )
    };
    let mut peers = vec![
        join("Ada", &ada.user_token, 440.0).await.unwrap(),
        join("Bo", &bo.user_token, 660.0).await.unwrap(),
    ];
    let heard = async {
        support::hears(&peers[0], 660.0, 5, WAIT).await?;
        support::hears(&peers[1], 440.0, 5, WAIT).await
    }
    .await;
    if let Err(e) = heard {
        support::close_all(&mut peers).await;
        panic!("{e}\n{}", server.log());
    }
    // Nobody else comes into a call's room.
    let stranger = account(&server.ws_url, "Cy", "cy").await;
    let refused = chorus_bench::webrtc_peer::WebrtcPeer::join(support::peer_config(
        &server.ws_url,
        &room,
        "Cy",
        None,
        Some(&stranger.user_token),
    ))
    .await;
    assert!(refused.is_err(), "a stranger joined a call's room");

    let metrics = support::metrics(&server.url).await;
    assert_eq!(
        support::metric(&metrics, "chorus_calls_relayed_total"),
        Some(1.0)
    );
    assert!(
        support::metric(&metrics, "chorus_sfu_packets_forwarded_total").unwrap_or(0.0) > 0.0,
        "the SFU carried the call:\n{metrics}"
    );

    assert_eq!(
        support::metric(&metrics, "chorus_calls_sfu_bytes_total"),
        Some(0.0),
        "counted when the call ends"
    );

    hang_up(&mut ada, &call.id).await;
    assert_eq!(
        ended(&mut bo, WAIT).await,
        (call.id.clone(), CallEnd::HungUp)
    );
    for peer in &peers {
        let left = peer.wait_for("left", WAIT, |v| v.left).await.unwrap();
        assert_eq!(left, chorus_proto::signal::LeftReason::RoomClosed);
    }
    support::close_all(&mut peers).await;
    let (_, calls) = contacts(&mut bo).await;
    assert_eq!(
        calls[0].path,
        Some(chorus_proto::people::MediaPath::Relayed)
    );
    // What the SFU carried for the call: at least the tones both ways (5+ frames each
    // were heard), and no more than the node's whole traffic.
    let metrics = support::metrics(&server.url).await;
    let carried = support::metric(&metrics, "chorus_calls_sfu_bytes_total").unwrap_or(0.0);
    let node_total = support::metric(&metrics, "chorus_sfu_bytes_in_total").unwrap_or(0.0)
        + support::metric(&metrics, "chorus_sfu_bytes_out_total").unwrap_or(0.0);
    assert!(
        carried > 20.0 * 60.0 && carried <= node_total,
        "bytes carried for the call: {carried} (node in + out: {node_total})\n{metrics}"
    );
}

/// Strangers (no group chat, no answered call between them) never learn each other's
/// address: the call goes through the SFU from the start, made by the server without
/// either side asking, and a signal between them is refused. Once answered, they are
/// contacts: the next call goes browser to browser — unless one of them always relays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_with_strangers_or_by_choice_go_through_the_sfu() {
    let server = ChorusServer::spawn();
    let mut ada = account(&server.ws_url, "Ada", "ada").await;
    let mut bo = account(&server.ws_url, "Bo", "bo").await;
    let call = ring(&mut ada, "bo", &mut bo).await;
    accept(&mut bo, &call.id).await;
    assert!(accepted_relay(&mut ada).await, "strangers: through the SFU");
    assert!(accepted_relay(&mut bo).await);
    let room = relayed(&mut ada, &call.id).await;
    assert_eq!(relayed(&mut bo, &call.id).await, room);
    // Made by the server unasked; and no candidate passes between them.
    send(
        &mut ada,
        ClientMessage::CallSignal {
            call: call.id.clone(),
            description: None,
            candidate: Some(chorus_proto::people::IceCandidate {
                candidate: "candidate:1 1 udp 2122260223 192.0.2.7 50000 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_m_line_index: Some(0),
                username_fragment: None,
            }),
        },
    )
    .await;
    assert_eq!(
        error(&mut ada, "a candidate between strangers").await,
        ErrorCode::Forbidden
    );
    let mut peers = vec![
        join_as(&server, &room, "Ada", Some(&ada.user_token), Some(440.0)).await,
        join_as(&server, &room, "Bo", Some(&bo.user_token), Some(660.0)).await,
    ];
    let heard = async {
        support::hears(&peers[0], 660.0, 5, WAIT).await?;
        support::hears(&peers[1], 440.0, 5, WAIT).await
    }
    .await;
    if let Err(e) = heard {
        support::close_all(&mut peers).await;
        panic!("{e}\n{}", server.log());
    }
    hang_up(&mut bo, &call.id).await;
    assert_eq!(
        ended(&mut ada, WAIT).await,
        (call.id.clone(), CallEnd::HungUp)
    );
    support::close_all(&mut peers).await;
    assert!(
        !bo.seen
            .iter()
            .chain(ada.seen.iter())
            .any(|m| matches!(m, ServerMessage::CallSignal { .. })),
        "no signal passed between strangers"
    );
    let metrics = support::metrics(&server.url).await;
    assert_eq!(
        support::metric(&metrics, "chorus_calls_relayed_total"),
        Some(1.0)
    );
    assert!(support::metric(&metrics, "chorus_calls_sfu_bytes_total").unwrap_or(0.0) > 0.0);

    // Answered once: contacts now, the next call is direct.
    let call = ring(&mut ada, "bo", &mut bo).await;
    accept(&mut bo, &call.id).await;
    assert!(
        !accepted_relay(&mut ada).await,
        "contacts after an answered call"
    );
    hang_up(&mut ada, &call.id).await;
    ended(&mut bo, WAIT).await;

    // Bo wants every call relayed: said back in his account, kept for his other devices.
    send(
        &mut bo,
        ClientMessage::SetCallPrivacy { always_relay: true },
    )
    .await;
    assert!(account_info(&mut bo).await.always_relay);
    let mut bo_again = device(&server.ws_url, &bo, "Bo").await;
    let call = ring(&mut ada, "bo", &mut bo_again).await;
    accept(&mut bo_again, &call.id).await;
    assert!(accepted_relay(&mut ada).await, "the callee always relays");
    relayed(&mut ada, &call.id).await;
    hang_up(&mut ada, &call.id).await;
    ended(&mut bo_again, WAIT).await;
    send(
        &mut bo,
        ClientMessage::SetCallPrivacy {
            always_relay: false,
        },
    )
    .await;
    assert!(!account_info(&mut bo).await.always_relay);

    // A stranger hangs up right after the answer, while the server makes the room: the
    // callee is told how it ended, and no error — unless the hang-up came first, which
    // makes the answer one to a cancelled call (`call_not_found`).
    let mut cy = account(&server.ws_url, "Cy", "cy").await;
    let call = ring(&mut cy, "ada", &mut ada).await;
    tokio::join!(accept(&mut ada, &call.id), hang_up(&mut cy, &call.id));
    let mut errors = Vec::new();
    let reason = loop {
        match ada.next(WAIT).await {
            Some(ServerMessage::CallEnded { call: id, reason }) if id == call.id => break reason,
            Some(ServerMessage::Error { code, .. }) => errors.push(code),
            Some(_) => {}
            None => panic!("the callee was never told the call ended"),
        }
    };
    match reason {
        CallEnd::HungUp => assert!(errors.is_empty(), "{errors:?}"),
        CallEnd::Cancelled => assert!(
            errors.iter().all(|c| *c == ErrorCode::CallNotFound),
            "{errors:?}"
        ),
        other => panic!("ended {other:?}"),
    }
}

/// "Add someone": a call becomes an open voice room, both on seats (the caller owns it,
/// the callee moderates it); both are told, the call ends `grown`, and a guest with the
/// link joins and hears the caller. Before the answer it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_grows_into_a_room_others_join() {
    let server = ChorusServer::spawn();
    let mut ada = account(&server.ws_url, "Ada", "ada").await;
    let mut bo = account(&server.ws_url, "Bo", "bo").await;
    make_contacts(&support::Api::of(&server), &ada, &bo).await;
    let call = ring(&mut ada, "bo", &mut bo).await;
    send(
        &mut ada,
        ClientMessage::GrowCall {
            call: call.id.clone(),
        },
    )
    .await;
    assert_eq!(
        error(&mut ada, "add someone before the answer").await,
        ErrorCode::InvalidInput
    );
    accept(&mut bo, &call.id).await;
    accepted(&mut ada).await;
    accepted(&mut bo).await;
    // Both ask at once: one room, no error for either.
    tokio::join!(
        send(
            &mut bo,
            ClientMessage::GrowCall {
                call: call.id.clone(),
            },
        ),
        send(
            &mut ada,
            ClientMessage::GrowCall {
                call: call.id.clone(),
            },
        )
    );
    let grown = |m: &ServerMessage| match m {
        ServerMessage::Error { code, message } => panic!("add someone: {code:?} {message}"),
        ServerMessage::CallGrown { room, .. } => Some(room.clone()),
        _ => None,
    };
    let room = ada.expect("call_grown", WAIT, grown).await.unwrap();
    assert_eq!(bo.expect("call_grown", WAIT, grown).await.unwrap(), room);
    assert_eq!(
        ended(&mut ada, WAIT).await,
        (call.id.clone(), CallEnd::Grown)
    );
    assert_eq!(
        ended(&mut bo, WAIT).await,
        (call.id.clone(), CallEnd::Grown)
    );

    let api = support::Api::of(&server);
    let (status, view) = api.room(&room).await;
    assert_eq!(status, 200, "{view}");
    let members = view["members"].as_array().unwrap();
    let role_seat = |user: &str| {
        let m = support::member(members, user).unwrap_or_else(|| panic!("{user} in {view}"));
        (
            m["role"].as_str().unwrap().to_owned(),
            m["seated"].as_bool(),
        )
    };
    assert_eq!(role_seat(&ada.user), ("owner".into(), Some(true)));
    assert_eq!(role_seat(&bo.user), ("moderator".into(), Some(true)));
    assert_eq!(view["room"]["locked"].as_bool(), Some(false), "{view}");

    let mut peers = vec![
        join_as(&server, &room, "Ada", Some(&ada.user_token), Some(440.0)).await,
        join_as(&server, &room, "Bo", Some(&bo.user_token), Some(660.0)).await,
        join_as(&server, &room, "Cy", None, None).await,
    ];
    let heard = async {
        support::hears(&peers[2], 440.0, 5, WAIT).await?;
        support::hears(&peers[2], 660.0, 5, WAIT).await
    }
    .await;
    support::close_all(&mut peers).await;
    if let Err(e) = heard {
        panic!("the guest hears both: {e}\n{}", server.log());
    }
    let (_, calls) = contacts(&mut ada).await;
    assert_eq!(
        (calls[0].id.clone(), calls[0].end),
        (call.id, CallEnd::Grown)
    );
    let metrics = support::metrics(&server.url).await;
    assert_eq!(
        support::metric(&metrics, "chorus_calls_grown_total"),
        Some(1.0)
    );
}

//! 1:1 calls across the fleet: the caller on one signaling node, the callee's devices on
//! both, real processes on one Redis. The call rings everywhere, is answered on the other
//! node, its SDP crosses the nodes and the two `webrtc` peers hear each other directly;
//! presence and "busy" hold across nodes, and a device that closes on the other node ends
//! the call it was ringing for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fleet_support;
mod support;

use chorus_proto::people::{CallEnd, Presence};
use chorus_proto::signal::{ClientMessage, ServerMessage};
use fleet_support::Fleet;
use support::calls::*;
use support::{Api, RawClient};

fn fail(fleet: &Fleet, message: String) -> ! {
    panic!("{message}\n--- logs (tails) ---\n{}", fleet.logs());
}

/// `client` learns `handle`'s presence by exact handle.
async fn presence_of(client: &mut RawClient, handle: &str) -> Presence {
    send(
        client,
        ClientMessage::FindPerson {
            handle: handle.into(),
        },
    )
    .await;
    client
        .expect("person", WAIT, |m| match m {
            ServerMessage::Person { person } => Some(person.presence),
            _ => None,
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_rings_and_connects_across_signaling_nodes() {
    let fleet = Fleet::start(1, 2);
    let (a, b) = (&fleet.nodes[0], &fleet.nodes[1]);
    // Ada on node A; Bo's phone on node B and his laptop on node A.
    let mut ada = account(&a.ws_url, "Ada", "ada").await;
    let mut bo_phone = account(&b.ws_url, "Bo", "bo").await;
    let mut bo_laptop = device(&a.ws_url, &bo_phone, "Bo").await;
    let mut cy = account(&b.ws_url, "Cy", "cy").await;
    make_contacts(&Api::new(&a.url, a.api_key()), &ada, &bo_phone).await;
    assert_eq!(presence_of(&mut ada, "bo").await, Presence::Online);
    // Bo's phone follows Ada's presence (on the other node).
    let (people, _) = contacts(&mut bo_phone).await;
    assert!(people.iter().any(|p| p.handle == "ada"), "{people:?}");

    let call = ring(&mut ada, "bo", &mut bo_phone).await;
    assert_eq!(incoming(&mut bo_laptop).await.id, call.id);
    accept(&mut bo_phone, &call.id).await;
    assert!(!accepted_relay(&mut ada).await, "contacts: direct");
    assert_eq!(accepted(&mut bo_phone).await.id, call.id);
    assert_eq!(
        ended(&mut bo_laptop, WAIT).await,
        (call.id.clone(), CallEnd::AnsweredElsewhere)
    );
    let in_call = bo_phone
        .expect("Ada in a call, told on the other node", WAIT, |m| match m {
            ServerMessage::Presence { presence, .. } if *presence == Presence::InCall => Some(()),
            _ => None,
        })
        .await;
    if let Err(e) = in_call {
        fail(&fleet, e);
    }

    let (talked, mut caller, mut callee) = talk_directly(&mut ada, &mut bo_phone, &call.id).await;
    caller.close().await;
    callee.close().await;
    if let Err(e) = talked {
        fail(&fleet, format!("the call across nodes: {e}"));
    }
    // Busy across nodes: Cy, on node B, calls Ada, in a call on node A.
    send(
        &mut cy,
        ClientMessage::Call {
            handle: "ada".into(),
        },
    )
    .await;
    assert_eq!(ended(&mut cy, WAIT).await.1, CallEnd::Busy);
    assert_eq!(presence_of(&mut cy, "bo").await, Presence::InCall);

    // Bo hangs up on node B: both sides are told, both lists have it.
    hang_up(&mut bo_phone, &call.id).await;
    assert_eq!(
        ended(&mut ada, WAIT).await,
        (call.id.clone(), CallEnd::HungUp)
    );
    assert_eq!(
        ended(&mut bo_phone, WAIT).await,
        (call.id.clone(), CallEnd::HungUp)
    );
    let (_, calls) = contacts(&mut bo_phone).await;
    assert_eq!(
        (calls[0].id.clone(), calls[0].end),
        (call.id, CallEnd::HungUp)
    );

    // Free again on every node: Cy's call to Ada rings now.
    let again = ring(&mut cy, "ada", &mut ada).await;
    hang_up(&mut cy, &again.id).await;
    assert_eq!(ended(&mut ada, WAIT).await.1, CallEnd::Cancelled);

    // Bo's laptop closes; his phone on node B rings and closes too: the call ends, not
    // available.
    bo_laptop.close().await;
    let last = ring(&mut ada, "bo", &mut bo_phone).await;
    bo_phone.close().await;
    let gone = ada
        .expect(
            "the end of a call whose last device closed",
            WAIT,
            |m| match m {
                ServerMessage::CallEnded { call, reason } if *call == last.id => Some(*reason),
                _ => None,
            },
        )
        .await;
    match gone {
        Ok(reason) => assert_eq!(reason, CallEnd::Unavailable),
        Err(e) => fail(&fleet, e),
    }
    let offline = async {
        for _ in 0..50 {
            if presence_of(&mut ada, "bo").await == Presence::Offline {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err("Bo is still shown online with no device anywhere".to_owned())
    }
    .await;
    if let Err(e) = offline {
        fail(&fleet, e);
    }
}

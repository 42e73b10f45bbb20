//! The group chat across the fleet: two members on two signaling nodes (real processes,
//! one Redis) follow one chat; what one writes, edits or deletes on one node reaches the
//! other live, and both read the same history.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fleet_support;
mod support;

use std::time::Duration;

use chorus_proto::chat::ChatMessage;
use chorus_proto::signal::{ClientMessage, ServerMessage};
use fleet_support::Fleet;
use serde_json::json;
use support::{Api, RawClient};

const WAIT: Duration = Duration::from_secs(10);

async fn told(
    client: &mut RawClient,
    pick: impl Fn(&ChatMessage) -> bool,
) -> Result<ChatMessage, String> {
    client
        .expect("chat news from the other node", WAIT, |m| match m {
            ServerMessage::ChatMessage { message, .. } if pick(message) => Some(message.clone()),
            _ => None,
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_two_nodes_share_one_chat() {
    let fleet = Fleet::start(1, 2);
    let (a, b) = (&fleet.nodes[0], &fleet.nodes[1]);
    let api = Api::new(&a.url, a.api_key());
    let made = api
        .create_room(json!({"name": "Across", "owner_name": "Ada", "owner": "backend-ada"}))
        .await;
    let room = made.room.id.clone();
    api.add_member(&room, "backend-bo", "Bo").await;
    let mut ada = RawClient::hello(
        &a.ws_url,
        "Ada",
        Some(&api.user_token("backend-ada", "Ada").await),
    )
    .await;
    let mut bo = RawClient::hello(
        &b.ws_url,
        "Bo",
        Some(&api.user_token("backend-bo", "Bo").await),
    )
    .await;
    for client in [&mut ada, &mut bo] {
        client
            .send(&ClientMessage::ChatOpen { room: room.clone() })
            .await;
        client
            .expect("chat_history", WAIT, |m| {
                matches!(m, ServerMessage::ChatHistory { .. }).then_some(())
            })
            .await
            .unwrap();
    }
    let outcome = async {
        bo.send(&ClientMessage::ChatSend {
            room: room.clone(),
            text: "from node B".into(),
            attachment: None,
            nonce: None,
        })
        .await;
        let heard = told(&mut ada, |m| m.text == "from node B").await?;
        ada.send(&ClientMessage::ChatDelete {
            room: room.clone(),
            seq: heard.seq,
            nonce: None,
        })
        .await;
        told(&mut bo, |m| m.seq == heard.seq && m.deleted).await?;
        ada.send(&ClientMessage::ChatSend {
            room: room.clone(),
            text: "from node A".into(),
            attachment: None,
            nonce: None,
        })
        .await;
        told(&mut bo, |m| m.text == "from node A").await?;
        bo.send(&ClientMessage::ChatHistory {
            room: room.clone(),
            before: None,
            limit: None,
        })
        .await;
        let history = bo
            .expect("chat_history", WAIT, |m| match m {
                ServerMessage::ChatHistory { messages, .. } => Some(messages.clone()),
                _ => None,
            })
            .await?;
        let kept: Vec<(u64, bool, &str)> = history
            .iter()
            .map(|m| (m.seq, m.deleted, m.text.as_str()))
            .collect();
        if kept != [(1, true, ""), (2, false, "from node A")] {
            return Err(format!("node B's history: {kept:?}"));
        }
        Ok::<_, String>(())
    }
    .await;
    if let Err(e) = outcome {
        panic!("{e}\n--- logs (tails) ---\n{}", fleet.logs());
    }
}

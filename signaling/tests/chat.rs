//! The group chat beside a room, against the real binary: members of a room's group chat
//! (put in by the app backend, no live room needed) write, page back, edit and delete;
//! a moderator deletes and mutes; a burst is rate limited; unread counts follow what was
//! read; outsiders and bad input are refused in words and change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::time::Duration;

use chorus_proto::chat::ChatMessage;
use chorus_proto::signal::{ClientMessage, ErrorCode, ServerMessage};
use chorus_proto::{RoomId, UserId};
use common::ChorusServer;
use serde_json::json;
use support::{Api, RawClient};

const WAIT: Duration = Duration::from_secs(10);

/// A session of the backend's user `user` (made now).
async fn member(server: &ChorusServer, api: &Api, user: &str, name: &str) -> RawClient {
    let (status, made) = api
        .call(
            "POST",
            "/api/v1/users",
            Some(json!({"name": name, "user": user})),
        )
        .await;
    assert_eq!(status, 200, "{made}");
    RawClient::hello(&server.ws_url, name, made["user_token"].as_str()).await
}

/// The next page of history `client` is sent.
async fn page(client: &mut RawClient) -> (Vec<ChatMessage>, bool, u64, Vec<UserId>) {
    client
        .expect("chat_history", WAIT, |m| match m {
            ServerMessage::ChatHistory {
                messages,
                more,
                read_up_to,
                muted,
                ..
            } => Some((messages.clone(), *more, *read_up_to, muted.clone())),
            _ => None,
        })
        .await
        .unwrap()
}

/// The next chat message (new or changed) `client` is told.
async fn told(client: &mut RawClient) -> ChatMessage {
    client
        .expect("chat_message", WAIT, |m| match m {
            ServerMessage::ChatMessage { message, .. } => Some(message.clone()),
            _ => None,
        })
        .await
        .unwrap()
}

/// The first news `client` is told of message `seq` that `pick` accepts (others skipped).
async fn told_of(
    client: &mut RawClient,
    seq: u64,
    pick: impl Fn(&ChatMessage) -> bool,
) -> ChatMessage {
    client
        .expect("news of a message", WAIT, |m| match m {
            ServerMessage::ChatMessage { message, .. } if message.seq == seq && pick(message) => {
                Some(message.clone())
            }
            _ => None,
        })
        .await
        .unwrap()
}

async fn refused(
    client: &mut RawClient,
    message: ClientMessage,
    what: &str,
) -> (ErrorCode, String) {
    client.send(&message).await;
    client.expect_error(what).await.unwrap()
}

fn say(room: &RoomId, text: &str) -> ClientMessage {
    ClientMessage::ChatSend {
        room: room.clone(),
        text: text.into(),
        attachment: None,
        nonce: None,
    }
}

fn seqs(messages: &[ChatMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_write_read_back_edit_and_delete_and_moderators_keep_order() {
    let server = ChorusServer::spawn();
    let api = Api::of(&server);
    let made = api
        .create_room(json!({"name": "Book club", "owner_name": "Ada", "owner": "backend-ada"}))
        .await;
    let room = made.room.id.clone();
    for (user, name) in [("backend-bo", "Bo"), ("backend-cy", "Cy")] {
        let (status, body) = api
            .call(
                "PUT",
                &format!("/api/v1/rooms/{room}/members/{user}"),
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let mut ada = member(&server, &api, "backend-ada", "Ada").await;
    let mut bo = member(&server, &api, "backend-bo", "Bo").await;
    let mut cy = member(&server, &api, "backend-cy", "Cy").await;
    let mut outsider = RawClient::hello(&server.ws_url, "Eve", None).await;

    // Outsiders read nothing and write nothing.
    for message in [
        ClientMessage::ChatOpen { room: room.clone() },
        say(&room, "let me in"),
    ] {
        let (code, words) = refused(&mut outsider, message, "an outsider in the chat").await;
        assert_eq!(code, ErrorCode::Forbidden, "{words}");
        assert!(words.contains("only members"), "{words}");
    }

    for client in [&mut ada, &mut bo] {
        client
            .send(&ClientMessage::ChatOpen { room: room.clone() })
            .await;
        let (messages, more, _, _) = page(client).await;
        assert!(messages.is_empty() && !more);
    }
    ada.send(&ClientMessage::ChatSend {
        room: room.clone(),
        text: "  hello <b>Bo</b>  ".into(),
        attachment: None,
        nonce: Some("ada-1".into()),
    })
    .await;
    for client in [&mut ada, &mut bo] {
        let (first, nonce) = client
            .expect("chat_message", WAIT, |m| match m {
                ServerMessage::ChatMessage { message, nonce, .. } => {
                    Some((message.clone(), nonce.clone()))
                }
                _ => None,
            })
            .await
            .unwrap();
        assert_eq!(
            (first.seq, first.text.as_str(), first.name.as_str()),
            (1, "hello <b>Bo</b>", "Ada"),
            "trimmed, and markup kept as text"
        );
        assert_eq!(
            nonce.as_deref(),
            Some("ada-1"),
            "the request's label comes back"
        );
    }
    for n in 1..=5 {
        ada.send(&say(&room, &format!("a{n}"))).await;
        bo.send(&say(&room, &format!("b{n}"))).await;
    }
    let mut seen_by_bo = Vec::new();
    while seen_by_bo.len() < 10 {
        seen_by_bo.push(told(&mut bo).await.seq);
    }
    // Cy writes without following the chat; the last two.
    cy.send(&say(&room, "c1")).await;
    cy.send(&say(&room, "c2")).await;
    while seen_by_bo.len() < 12 {
        seen_by_bo.push(told(&mut bo).await.seq);
    }
    seen_by_bo.sort_unstable();
    assert_eq!(seen_by_bo, (2..=13).collect::<Vec<u64>>());

    // Paging back, five at a time.
    let history = |before: Option<u64>| ClientMessage::ChatHistory {
        room: room.clone(),
        before,
        limit: Some(5),
    };
    bo.send(&history(None)).await;
    let (newest, more, _, _) = page(&mut bo).await;
    assert_eq!((seqs(&newest), more), (vec![9, 10, 11, 12, 13], true));
    bo.send(&history(Some(9))).await;
    let (older, more, _, _) = page(&mut bo).await;
    assert_eq!((seqs(&older), more), (vec![4, 5, 6, 7, 8], true));
    bo.send(&history(Some(4))).await;
    let (oldest, more, _, _) = page(&mut bo).await;
    assert_eq!((seqs(&oldest), more), (vec![1, 2, 3], false));
    let everything: Vec<&ChatMessage> = oldest.iter().chain(&older).chain(&newest).collect();
    assert_eq!(everything.len(), 13);
    let b1 = everything.iter().find(|m| m.text == "b1").unwrap().seq;
    let a1 = everything.iter().find(|m| m.text == "a1").unwrap().seq;

    // Edits by the author only; deletes by the author or a moderator.
    let (code, _) = refused(
        &mut ada,
        ClientMessage::ChatEdit {
            room: room.clone(),
            seq: b1,
            text: "not mine".into(),
            nonce: None,
        },
        "editing someone else's message",
    )
    .await;
    assert_eq!(code, ErrorCode::Forbidden);
    bo.send(&ClientMessage::ChatEdit {
        room: room.clone(),
        seq: b1,
        text: "b1, corrected".into(),
        nonce: None,
    })
    .await;
    let edited = told_of(&mut ada, b1, |m| m.edited_at_ms.is_some()).await;
    assert_eq!((edited.seq, edited.text.as_str()), (b1, "b1, corrected"));
    assert!(edited.edited_at_ms.is_some());
    let (code, _) = refused(
        &mut cy,
        ClientMessage::ChatDelete {
            room: room.clone(),
            seq: a1,
            nonce: None,
        },
        "a member deleting someone else's message",
    )
    .await;
    assert_eq!(code, ErrorCode::Forbidden);
    ada.send(&ClientMessage::ChatDelete {
        room: room.clone(),
        seq: b1,
        nonce: None,
    })
    .await;
    let deleted = told_of(&mut bo, b1, |m| m.deleted).await;
    assert_eq!(
        (deleted.seq, deleted.deleted, deleted.text.as_str()),
        (b1, true, "")
    );

    // A moderator mutes Cy in the chat: Cy reads but does not write, until let again.
    let cy_user = UserId::parse("backend-cy").unwrap();
    let (code, _) = refused(
        &mut bo,
        ClientMessage::ChatMute {
            room: room.clone(),
            user: cy_user.clone(),
            muted: true,
        },
        "a member muting another",
    )
    .await;
    assert_eq!(code, ErrorCode::Forbidden);
    ada.send(&ClientMessage::ChatMute {
        room: room.clone(),
        user: cy_user.clone(),
        muted: true,
    })
    .await;
    let muted = bo
        .expect("chat_muted", WAIT, |m| match m {
            ServerMessage::ChatMuted { user, muted, .. } => Some((user.clone(), *muted)),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(muted, (cy_user.clone(), true));
    let (code, words) = refused(&mut cy, say(&room, "can I?"), "a muted member writing").await;
    assert_eq!(code, ErrorCode::Forbidden);
    assert!(words.contains("muted"), "{words}");
    cy.send(&ClientMessage::ChatOpen { room: room.clone() })
        .await;
    let (_, _, cy_read, muted_list) = page(&mut cy).await;
    assert_eq!(muted_list, vec![cy_user.clone()]);
    assert_eq!(cy_read, 13, "Cy's own last message counts as read");

    // Unread counts: Bo read up to 8; Ada and Cy wrote after (Cy's 12 and 13; Ada's
    // a5 at 11; Bo's own b5 and the deleted b1 never count).
    bo.send(&ClientMessage::ChatRead {
        room: room.clone(),
        seq: 8,
    })
    .await;
    bo.send(&ClientMessage::ChatUnread).await;
    let groups = bo
        .expect("chat_unread", WAIT, |m| match m {
            ServerMessage::ChatUnread { groups } => Some(groups.clone()),
            _ => None,
        })
        .await
        .unwrap();
    let club = groups
        .iter()
        .find(|g| g.room == room)
        .expect("the club is listed");
    // Messages 9..=13 are a4 b4 a5 b5 c1 c2 in some interleaving: count those not Bo's.
    bo.send(&history(Some(14))).await;
    let (last5, _, _, _) = page(&mut bo).await;
    // Writing counts as having read up to one's own message.
    let read = everything
        .iter()
        .filter(|m| m.name == "Bo")
        .map(|m| m.seq)
        .chain([8])
        .max()
        .unwrap();
    let expected = last5
        .iter()
        .filter(|m| m.seq > read && m.name != "Bo" && !m.deleted)
        .count();
    assert_eq!((club.unread as usize, club.latest), (expected, 13));

    // Bad input: words, nothing changes.
    for (message, what) in [
        (say(&room, "   "), "an empty message"),
        (say(&room, &"x".repeat(2001)), "a message too long"),
        (
            ClientMessage::ChatEdit {
                room: room.clone(),
                seq: 999,
                text: "?".into(),
                nonce: None,
            },
            "editing a message that does not exist",
        ),
        (
            ClientMessage::ChatHistory {
                room: room.clone(),
                before: None,
                limit: Some(0),
            },
            "a page of nothing",
        ),
    ] {
        let (code, words) = refused(&mut bo, message, what).await;
        assert_eq!(code, ErrorCode::InvalidInput, "{what}: {words}");
        assert!(!words.is_empty());
    }

    // A burst is cut off in words: at most the burst allowance (and what refills while
    // it is sent) gets through.
    let mut accepted = 0;
    let mut limited = 0;
    for n in 0..30 {
        bo.send(&say(&room, &format!("burst {n}"))).await;
    }
    bo.send(&ClientMessage::Ping).await;
    loop {
        match bo.next(WAIT).await.expect("the burst's answers") {
            ServerMessage::ChatMessage { message, .. } if message.text.starts_with("burst") => {
                accepted += 1;
            }
            ServerMessage::Error { code, message } => {
                assert_eq!(code, ErrorCode::RateLimited, "{message}");
                assert!(message.contains("too fast"), "{message}");
                limited += 1;
            }
            ServerMessage::Pong => break,
            _ => {}
        }
    }
    assert_eq!(accepted + limited, 30);
    // Bo had spent some of his allowance already: at least one gets through, never
    // all of it.
    assert!(
        (1..20).contains(&accepted) && limited > 0,
        "{accepted} of the burst got through"
    );
}

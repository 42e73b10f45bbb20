//! The group chat beside each room: members write plain text, read it back a page at a
//! time, edit and delete their own messages; moderators delete anyone's and mute members
//! in the chat. The chat exists whether or not its room is live. `docs/protocol.md`,
//! "Group chat".
//!
//! Messages are durable in the store (`store::chat`), numbered per group chat. Sessions
//! that opened a chat follow it: each node tells its own followers, and what changes is
//! published to the other nodes of a fleet on the room bus (`BusEvent::Chat`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chorus_proto::attachments::AttachmentRef;
use chorus_proto::chat::{self, ChatMessage, UnreadCount};
use chorus_proto::fleet::unix_ms;
use chorus_proto::signal::{ErrorCode, ServerMessage};
use chorus_proto::{RoomId, UserId};

use crate::attachments::Attachments;
use crate::people::directory::DeviceId;
use crate::rooms::bus::ChatNews;
use crate::rooms::group_chat::{Actor, GroupChat};
use crate::rooms::service::{Failure, RoomService, store_failure};
use crate::store::chat::SharedChatStore;
use crate::ws::outbox::Outbox;

/// Messages one user may send at once...
pub const BURST: f64 = 10.0;
/// ...and then per second.
pub const PER_SEC: f64 = 2.0;

/// Senders tracked for the rate limit before the idle ones are forgotten.
const SENDERS_KEPT: usize = 10_000;

/// A token bucket per sender.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The group chats of this node's sessions.
pub struct ChatService {
    store: SharedChatStore,
    rooms: Arc<RoomService>,
    attachments: Arc<Attachments>,
    /// Sessions following each room's chat.
    followers: Mutex<HashMap<RoomId, HashMap<DeviceId, Outbox>>>,
    senders: Mutex<HashMap<UserId, Bucket>>,
}

fn not_member() -> Failure {
    (
        ErrorCode::Forbidden,
        "only members of this group chat can read and write in it".into(),
    )
}

fn no_message(seq: u64) -> Failure {
    (
        ErrorCode::InvalidInput,
        format!("there is no message {seq} in this chat"),
    )
}

fn text_failure(e: chat::TextError) -> Failure {
    (ErrorCode::InvalidInput, e.to_string())
}

/// Most characters of a request's `nonce`.
pub const MAX_NONCE_CHARS: usize = 64;

/// A request's label, if it has a fitting one.
pub fn check_nonce(nonce: Option<String>) -> Result<Option<String>, Failure> {
    match nonce {
        Some(n) if n.chars().count() > MAX_NONCE_CHARS => Err((
            ErrorCode::InvalidInput,
            format!("a nonce is at most {MAX_NONCE_CHARS} characters"),
        )),
        other => Ok(other),
    }
}

impl ChatService {
    /// The chats of `rooms`' group chats, kept in `store`, their files in `attachments`;
    /// news from other nodes arrives through the room service.
    pub fn new(
        store: SharedChatStore,
        rooms: Arc<RoomService>,
        attachments: Arc<Attachments>,
    ) -> Arc<Self> {
        let service = Arc::new(Self {
            store,
            rooms: rooms.clone(),
            attachments,
            followers: Mutex::default(),
            senders: Mutex::default(),
        });
        let weak = Arc::downgrade(&service);
        rooms.on_chat(Box::new(move |room, news| {
            if let Some(service) = weak.upgrade() {
                service.tell_here(room, news);
            }
        }));
        service
    }

    fn followers(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, HashMap<DeviceId, Outbox>>> {
        self.followers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The group chat of `room` if `user` is a member of it.
    async fn as_member(&self, room: &RoomId, user: &UserId) -> Result<GroupChat, Failure> {
        let group = self.rooms.resolve(room).await?;
        if group.member(user).is_none() {
            return Err(not_member());
        }
        Ok(group)
    }

    /// `user`'s session `follower` opens `room`'s chat: the newest page, and the chat's
    /// news from now on (instead of the chat it followed before).
    pub async fn open(
        &self,
        room: &RoomId,
        user: &UserId,
        follower: DeviceId,
        outbox: &Outbox,
    ) -> Result<ServerMessage, Failure> {
        let group = self.as_member(room, user).await?;
        self.close(follower);
        self.followers()
            .entry(room.clone())
            .or_default()
            .insert(follower, outbox.clone());
        self.page_of(&group, user, None, chat::PAGE).await
    }

    /// `follower` follows no chat any more (it opened another, or its session ended).
    pub fn close(&self, follower: DeviceId) {
        self.followers().retain(|_, sessions| {
            sessions.remove(&follower);
            !sessions.is_empty()
        });
    }

    /// An older page of `room`'s chat for `user`.
    pub async fn history(
        &self,
        room: &RoomId,
        user: &UserId,
        before: Option<u64>,
        limit: Option<u32>,
    ) -> Result<ServerMessage, Failure> {
        let limit = match limit {
            None => chat::PAGE,
            Some(n) if (1..=chat::MAX_PAGE).contains(&(n as usize)) => n as usize,
            Some(n) => {
                return Err((
                    ErrorCode::InvalidInput,
                    format!("a page holds 1 to {} messages, not {n}", chat::MAX_PAGE),
                ));
            }
        };
        let group = self.as_member(room, user).await?;
        self.page_of(&group, user, before, limit).await
    }

    async fn page_of(
        &self,
        group: &GroupChat,
        user: &UserId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<ServerMessage, Failure> {
        let messages = self
            .store
            .page(&group.id, before, limit)
            .await
            .map_err(store_failure)?;
        let more = messages.first().is_some_and(|m| m.seq > 1);
        let read_up_to = self
            .store
            .read_up_to(&group.id, user)
            .await
            .map_err(store_failure)?;
        Ok(ServerMessage::ChatHistory {
            room: group.room.clone(),
            messages,
            more,
            read_up_to,
            muted: group.chat_muted.clone(),
        })
    }

    /// One more message from `user`, if within the rate.
    fn allow_send(&self, user: &UserId) -> Result<(), Failure> {
        let now = Instant::now();
        let mut senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        if senders.len() > SENDERS_KEPT {
            senders.retain(|_, b| now.duration_since(b.at).as_secs_f64() * PER_SEC < BURST);
        }
        let bucket = senders.entry(user.clone()).or_insert(Bucket {
            tokens: BURST,
            at: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * PER_SEC).min(BURST);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return Err((
                ErrorCode::RateLimited,
                "you are sending messages too fast; wait a moment".into(),
            ));
        }
        bucket.tokens -= 1.0;
        Ok(())
    }

    /// `user` (named `name`) writes `text` in `room`'s chat, with a file uploaded before.
    pub async fn send(
        &self,
        room: &RoomId,
        user: &UserId,
        name: &str,
        text: &str,
        attachment: Option<AttachmentRef>,
        nonce: Option<String>,
    ) -> Result<(), Failure> {
        let nonce = check_nonce(nonce)?;
        let text = match chat::clean_text(text) {
            Err(chat::TextError::Empty) if attachment.is_some() => String::new(),
            cleaned => cleaned.map_err(text_failure)?,
        };
        let group = self.as_member(room, user).await?;
        if group.chat_muted.contains(user) {
            return Err((
                ErrorCode::Forbidden,
                "a moderator muted you in this chat".into(),
            ));
        }
        self.allow_send(user)?;
        let attachment = match &attachment {
            Some(posted) => Some(Box::new(self.attachments.attach(&group.id, posted).await?)),
            None => None,
        };
        let message = ChatMessage {
            seq: 0,
            author: user.clone(),
            name: name.to_owned(),
            text,
            sent_at_ms: unix_ms(),
            edited_at_ms: None,
            deleted: false,
            attachment,
        };
        let posted = message.attachment.as_ref().map(|a| a.hash.clone());
        let kept = match self.store.post(&group.id, message).await {
            Ok(kept) => kept,
            Err(e) => {
                if let Some(hash) = posted {
                    self.attachments.release(&group.id, &hash).await;
                }
                return Err(store_failure(e));
            }
        };
        // The author has read what it wrote.
        if let Err(e) = self.store.mark_read(&group.id, user, kept.seq).await {
            tracing::debug!(error = %e, "could not mark an author's own message read");
        }
        self.tell(
            room,
            ChatNews::Message {
                message: kept,
                nonce,
            },
        );
        Ok(())
    }

    /// The author changes a message's text.
    pub async fn edit(
        &self,
        room: &RoomId,
        user: &UserId,
        seq: u64,
        text: &str,
        nonce: Option<String>,
    ) -> Result<(), Failure> {
        let nonce = check_nonce(nonce)?;
        let text = chat::clean_text(text).map_err(text_failure)?;
        let group = self.as_member(room, user).await?;
        let mut message = self.stored(&group, seq).await?;
        if &message.author != user {
            return Err((
                ErrorCode::Forbidden,
                "only its author can edit a message".into(),
            ));
        }
        if message.deleted {
            return Err((ErrorCode::InvalidInput, "that message was deleted".into()));
        }
        message.text = text;
        message.edited_at_ms = Some(unix_ms());
        self.store
            .replace(&group.id, &message)
            .await
            .map_err(store_failure)?;
        self.tell(room, ChatNews::Message { message, nonce });
        Ok(())
    }

    /// The author, or a moderator, deletes a message: its place stays, its text goes.
    pub async fn delete(
        &self,
        room: &RoomId,
        user: &UserId,
        seq: u64,
        nonce: Option<String>,
    ) -> Result<(), Failure> {
        let nonce = check_nonce(nonce)?;
        let group = self.as_member(room, user).await?;
        let mut message = self.stored(&group, seq).await?;
        let moderates = group.member(user).is_some_and(|m| m.role.moderates());
        if &message.author != user && !moderates {
            return Err((
                ErrorCode::Forbidden,
                "only its author or a moderator can delete a message".into(),
            ));
        }
        if message.deleted {
            return Ok(());
        }
        message.deleted = true;
        message.text.clear();
        let posted = message.attachment.take();
        self.store
            .replace(&group.id, &message)
            .await
            .map_err(store_failure)?;
        if let Some(posted) = posted {
            self.attachments.release(&group.id, &posted.hash).await;
        }
        self.tell(room, ChatNews::Message { message, nonce });
        Ok(())
    }

    async fn stored(&self, group: &GroupChat, seq: u64) -> Result<ChatMessage, Failure> {
        self.store
            .message(&group.id, seq)
            .await
            .map_err(store_failure)?
            .ok_or_else(|| no_message(seq))
    }

    /// A moderator mutes `target` in the chat, or lets them write again.
    pub async fn mute(
        &self,
        room: &RoomId,
        user: &UserId,
        target: &UserId,
        muted: bool,
    ) -> Result<(), Failure> {
        self.as_member(room, user).await?;
        self.rooms
            .set_chat_muted(room, &Actor::Member(user.clone()), target, muted)
            .await?;
        self.tell(
            room,
            ChatNews::Muted {
                user: target.clone(),
                muted,
            },
        );
        Ok(())
    }

    /// `user` has read `room`'s chat up to `seq`.
    pub async fn read(&self, room: &RoomId, user: &UserId, seq: u64) -> Result<(), Failure> {
        let group = self.as_member(room, user).await?;
        self.store
            .mark_read(&group.id, user, seq)
            .await
            .map_err(store_failure)
    }

    /// The unread counts of every group chat `user` is a member of.
    pub async fn unread(&self, user: &UserId) -> Result<Vec<UnreadCount>, Failure> {
        let mut counts = Vec::new();
        for group in self.rooms.all().await? {
            if group.member(user).is_none() {
                continue;
            }
            let read = self
                .store
                .read_up_to(&group.id, user)
                .await
                .map_err(store_failure)?;
            let newest = self
                .store
                .page(&group.id, None, chat::MAX_UNREAD as usize + 1)
                .await
                .map_err(store_failure)?;
            let unread = newest
                .iter()
                .filter(|m| m.seq > read && &m.author != user && !m.deleted)
                .count();
            counts.push(UnreadCount {
                room: group.room.clone(),
                name: group.name.clone(),
                unread: u32::try_from(unread).unwrap_or(u32::MAX),
                latest: newest.last().map_or(0, |m| m.seq),
            });
        }
        Ok(counts)
    }

    /// Tell every session following `room`'s chat, on this node and the others.
    fn tell(&self, room: &RoomId, news: ChatNews) {
        self.tell_here(room, news.clone());
        self.rooms.publish_chat(room, news);
    }

    /// Tell this node's sessions following `room`'s chat.
    fn tell_here(&self, room: &RoomId, news: ChatNews) {
        let frame = news.frame(room);
        for outbox in self
            .followers()
            .get(room)
            .into_iter()
            .flat_map(HashMap::values)
        {
            outbox.send(frame.clone());
        }
    }
}

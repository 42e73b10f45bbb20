//! Rooms across signaling nodes: the events every node with a session in a room must
//! hear, and who is present in it on any node.
//!
//! Each node keeps its own sessions (presences with an outbox) in the
//! [`RoomRegistry`](super::RoomRegistry). What another node must learn goes over the
//! [`RoomBus`] as a [`BusEvent`]; who is present elsewhere is in its presence directory.
//! [`LocalBus`] is the bus of a node alone (the embedded default): nobody else to tell,
//! every presence is its own. [`RedisBus`] is the fleet's: Redis pub/sub for events, a
//! hash per room for presences, node heartbeats so that a node that dies takes its
//! presences with it within a few seconds.

mod redis;

use chorus_proto::fleet::PresenceRecord;
use chorus_proto::signal::{LeftReason, ParticipantInfo};
use chorus_proto::{NodeId, ParticipantId, RoomId};
use serde::{Deserialize, Serialize};

pub use self::redis::{Inbound, RedisBus};
use super::group_chat::GroupChat;

/// What happened in a room that every node must act on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BusEvent {
    /// The group chat record changed: take it, and re-announce one's own presences.
    Group {
        /// The record as saved.
        group: Box<GroupChat>,
    },
    /// Tell the room's sessions (all but `except`) this.
    Tell {
        /// The news.
        news: RoomNews,
        /// A session that must not be told (the subject, which learns otherwise).
        except: Option<ParticipantId>,
    },
    /// The node holding `participant` takes it out of the room.
    Remove {
        /// Who.
        participant: ParticipantId,
        /// Why, as the others are told.
        reason: LeftReason,
        /// Whether its own session is told `left`.
        tell_self: bool,
    },
    /// The room is closed: every node ends its sessions in it.
    Close {
        /// Why.
        reason: LeftReason,
    },
    /// The room's group chat changed: every node tells the sessions following it.
    Chat {
        /// What changed.
        news: ChatNews,
    },
}

/// A change in a group chat, for the sessions that follow it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChatNews {
    /// A message was written, edited or deleted: as it is now.
    Message {
        /// The message.
        message: chorus_proto::chat::ChatMessage,
        /// The label of the request that caused it.
        #[serde(default)]
        nonce: Option<String>,
    },
    /// A member was muted in the chat, or may write again.
    Muted {
        /// The member.
        user: chorus_proto::UserId,
        /// Muted or not.
        muted: bool,
    },
}

impl ChatNews {
    /// The protocol frame for a session following `room`'s chat.
    pub fn frame(self, room: &RoomId) -> chorus_proto::signal::ServerMessage {
        use chorus_proto::signal::ServerMessage;
        match self {
            ChatNews::Message { message, nonce } => ServerMessage::ChatMessage {
                room: room.clone(),
                message,
                nonce,
            },
            ChatNews::Muted { user, muted } => ServerMessage::ChatMuted {
                room: room.clone(),
                user,
                muted,
            },
        }
    }
}

/// Room news for sessions: domain events, turned into protocol messages only at the
/// WebSocket edge (`From<RoomNews> for ServerMessage`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RoomNews {
    /// A participant arrived or changed.
    Participant {
        /// As everyone sees it.
        participant: ParticipantInfo,
    },
    /// A participant left.
    Left {
        /// Who.
        participant: ParticipantId,
        /// Why.
        reason: LeftReason,
    },
}

impl From<RoomNews> for chorus_proto::signal::ServerMessage {
    fn from(news: RoomNews) -> Self {
        match news {
            RoomNews::Participant { participant } => Self::ParticipantUpdated { participant },
            RoomNews::Left {
                participant,
                reason,
            } => Self::ParticipantLeft {
                participant,
                reason,
            },
        }
    }
}

/// A [`BusEvent`] as it travels: which room, from which node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// The node that published it (which applied it already).
    pub origin: NodeId,
    /// The room.
    pub room: RoomId,
    /// What happened.
    pub event: BusEvent,
}

/// A presence left behind by a node that died, claimed for clean-up by exactly one node.
#[derive(Debug, Clone)]
pub struct Orphan {
    /// Its room.
    pub room: RoomId,
    /// The participant.
    pub participant: ParticipantId,
    /// What was known of it.
    pub record: PresenceRecord,
}

/// The bus failed (Redis down); the caller decides whether that stops what it does.
#[derive(Debug, thiserror::Error)]
#[error("the room bus is temporarily unavailable: {0}")]
pub struct BusError(pub String);

/// How a node reaches the other nodes of its rooms.
#[async_trait::async_trait]
pub trait RoomBus: Send + Sync + 'static {
    /// This node.
    fn node(&self) -> &NodeId;
    /// Whether other nodes exist at all (false: nothing is ever published).
    fn is_shared(&self) -> bool;
    /// Send an event to the other nodes that follow the room.
    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError>;
    /// Record (or update) one of this node's presences in the directory.
    async fn put_presence(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
        record: &PresenceRecord,
    ) -> Result<(), BusError>;
    /// Take a presence out of the directory. False when it was not there.
    async fn remove_presence(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
    ) -> Result<bool, BusError>;
    /// Everyone present in a room on any node (this node's own included).
    async fn presences(
        &self,
        room: &RoomId,
    ) -> Result<Vec<(ParticipantId, PresenceRecord)>, BusError>;
    /// Presences whose node is gone, each claimed by exactly one caller.
    async fn claim_orphans(&self) -> Result<Vec<Orphan>, BusError>;
    /// Take one presence of another node out of the directory if that node is gone (its
    /// heartbeat expired): for a session resuming here before any sweep claimed it.
    /// `Some` with what was known of it when this caller won; `None` when its node is
    /// alive, or the presence was already claimed.
    async fn take_over(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
    ) -> Result<Option<PresenceRecord>, BusError>;
}

/// The bus of a node alone: every presence is local, nobody else to tell.
pub struct LocalBus {
    node: NodeId,
}

impl LocalBus {
    /// A bus for a node alone.
    pub fn new(node: NodeId) -> Self {
        Self { node }
    }
}

#[async_trait::async_trait]
impl RoomBus for LocalBus {
    fn node(&self) -> &NodeId {
        &self.node
    }

    fn is_shared(&self) -> bool {
        false
    }

    async fn publish(&self, _envelope: &Envelope) -> Result<(), BusError> {
        Ok(())
    }

    async fn put_presence(
        &self,
        _room: &RoomId,
        _participant: &ParticipantId,
        _record: &PresenceRecord,
    ) -> Result<(), BusError> {
        Ok(())
    }

    async fn remove_presence(
        &self,
        _room: &RoomId,
        _participant: &ParticipantId,
    ) -> Result<bool, BusError> {
        Ok(true)
    }

    async fn presences(
        &self,
        _room: &RoomId,
    ) -> Result<Vec<(ParticipantId, PresenceRecord)>, BusError> {
        // The registry holds them all.
        Ok(Vec::new())
    }

    async fn claim_orphans(&self) -> Result<Vec<Orphan>, BusError> {
        Ok(Vec::new())
    }

    async fn take_over(
        &self,
        _room: &RoomId,
        _participant: &ParticipantId,
    ) -> Result<Option<PresenceRecord>, BusError> {
        Ok(None)
    }
}

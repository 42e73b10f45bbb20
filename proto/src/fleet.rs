//! What the nodes of a fleet share in Redis: every key name, in one place, and the
//! records SFU and signaling nodes publish about themselves.
//!
//! Nothing here talks to Redis; the SFU (registration) and signaling (store, router,
//! room bus) both build their commands from these names, so that a key is spelled once.
//! Every key starts with [`PREFIX`], so one Redis can be shared with other applications
//! (or, with a different prefix in future, several Chorus fleets).

use serde::{Deserialize, Serialize};

use crate::{GroupId, NodeId, ParticipantId, RoomId, UserId};

/// The prefix of every key Chorus writes.
pub const PREFIX: &str = "chorus";

/// How often a node refreshes its record.
pub const HEARTBEAT_MS: u64 = 1_000;
/// How long a node's record lives without a refresh: a node that died (or is cut off
/// from Redis) is gone from placement within this time.
pub const NODE_TTL_MS: u64 = 4_000;

/// Key names. Each function says what the key holds and its Redis type.
pub mod keys {
    use super::*;

    /// STRING: a group chat record (JSON, `signaling::rooms::group_chat::GroupChat`).
    pub fn group(id: &GroupId) -> String {
        format!("{PREFIX}:group:{id}")
    }

    /// SET: the ids of every group chat (for listing).
    pub fn groups() -> String {
        format!("{PREFIX}:groups")
    }

    /// STRING: the group id a room belongs to.
    pub fn room_group(room: &RoomId) -> String {
        format!("{PREFIX}:room-group:{room}")
    }

    /// STRING with TTL [`NODE_TTL_MS`]: an SFU node's [`SfuNodeRecord`] (JSON).
    pub fn sfu_node(node: &NodeId) -> String {
        format!("{PREFIX}:sfu:{node}")
    }

    /// SET: ids of SFU nodes that registered; a member whose [`sfu_node`] key expired is
    /// dead and is pruned by whoever notices.
    pub fn sfu_nodes() -> String {
        format!("{PREFIX}:sfu-nodes")
    }

    /// STRING: the SFU node a room is placed on (its id). Set once by placement
    /// (`SET NX`), replaced only by compare-and-set when that node is gone.
    pub fn room_node(room: &RoomId) -> String {
        format!("{PREFIX}:room-node:{room}")
    }

    /// SET: the other SFU nodes of a room bigger than one node (its own node is
    /// [`room_node`]); deleted with the binding.
    pub fn room_span(room: &RoomId) -> String {
        format!("{PREFIX}:room-span:{room}")
    }

    /// SET: the rooms bound to an SFU node (kept beside [`room_node`] by the same
    /// script), to count them for placement and to find them when the node dies.
    pub fn sfu_node_rooms(node: &NodeId) -> String {
        format!("{PREFIX}:sfu-rooms:{node}")
    }

    /// STRING with TTL [`NODE_TTL_MS`]: a signaling node's [`SignalingNodeRecord`].
    pub fn signaling_node(node: &NodeId) -> String {
        format!("{PREFIX}:signaling:{node}")
    }

    /// SET: ids of signaling nodes that registered (pruned like [`sfu_nodes`]).
    pub fn signaling_nodes() -> String {
        format!("{PREFIX}:signaling-nodes")
    }

    /// HASH: participant id → [`PresenceRecord`] (JSON) of everyone present in a room,
    /// whichever signaling node holds their session.
    pub fn presences(room: &RoomId) -> String {
        format!("{PREFIX}:presences:{room}")
    }

    /// SET: `room/participant` of every presence a signaling node holds, so that the
    /// presences of a node that died are found and cleared without a scan.
    pub fn node_presences(node: &NodeId) -> String {
        format!("{PREFIX}:node-presences:{node}")
    }

    /// PUB/SUB channel: the room's events between signaling nodes.
    pub fn room_channel(room: &RoomId) -> String {
        format!("{PREFIX}:room-events:{room}")
    }

    /// HASH: device id → `{node, takes_calls}` (JSON) of an account's connected devices
    /// (sessions), on whichever signaling node; entries of a node whose record expired
    /// are ignored by readers and pruned by whoever sees them.
    pub fn user_devices(user: &UserId) -> String {
        format!("{PREFIX}:user-devices:{user}")
    }

    /// SET: `<user> <device>` of every device a signaling node recorded in
    /// [`user_devices`], so that a node starting again under the same id clears what
    /// its previous run left.
    pub fn node_devices(node: &NodeId) -> String {
        format!("{PREFIX}:node-devices:{node}")
    }

    /// STRING with a TTL the call's node refreshes: the call a user is in (ringing or
    /// answered), `SET NX` so that a user is in one call at a time across the fleet.
    pub fn user_call(user: &UserId) -> String {
        format!("{PREFIX}:user-call:{user}")
    }

    /// PUB/SUB: frames for one signaling node's devices and calls (people and calls
    /// across nodes).
    pub fn people_channel(node: &NodeId) -> String {
        format!("{PREFIX}:people-events:{node}")
    }

    /// PUB/SUB: presence changes, for every signaling node's followers.
    pub fn presence_channel() -> String {
        format!("{PREFIX}:people-presence")
    }

    /// STRING (counter): the newest message `seq` of a group chat.
    pub fn chat_seq(group: &GroupId) -> String {
        format!("{PREFIX}:chat-seq:{group}")
    }

    /// HASH: `seq` → message (JSON, `chorus_proto::chat::ChatMessage`) of a group chat.
    pub fn chat_messages(group: &GroupId) -> String {
        format!("{PREFIX}:chat:{group}")
    }

    /// HASH: user → the `seq` it read up to, in a group chat.
    pub fn chat_read(group: &GroupId) -> String {
        format!("{PREFIX}:chat-read:{group}")
    }

    /// STRING: an attachment's record (JSON, `BlobRecord` in signaling's store): size,
    /// type, picture, thumbnail, first uploader.
    pub fn blob(hash: &crate::attachments::ContentHash) -> String {
        format!("{PREFIX}:blob:{hash}")
    }

    /// HASH: content hash → the messages (of every group chat) referencing it.
    pub const BLOB_REFS: &str = "chorus:blob-refs";

    /// ZSET: content hashes no message references, scored by the unix ms since when
    /// (garbage, once old enough).
    pub const BLOBS_UNREFERENCED: &str = "chorus:blobs-unreferenced";

    /// HASH: content hash → the messages of one group chat referencing it (a member may
    /// download what their chat posted).
    pub fn group_blobs(group: &GroupId) -> String {
        format!("{PREFIX}:group-blobs:{group}")
    }

    /// The pattern every signaling node subscribes to: all rooms' channels.
    pub fn room_channel_pattern() -> String {
        format!("{PREFIX}:room-events:*")
    }

    /// ZSET: timers any live signaling node may fire (score: due time in Unix ms;
    /// member: the timer as JSON). Whoever removes a member fires it.
    pub fn timers() -> String {
        format!("{PREFIX}:timers")
    }

    /// STRING with TTL: a token used once (a server-API request's `key:nonce`), kept as
    /// long as a replay of it could be accepted.
    pub fn used_once(token: &str) -> String {
        format!("{PREFIX}:used-once:{token}")
    }

    /// STRING with TTL: the latest counter sealed into a session's state (resume
    /// refuses any other; a resume takes it one further, so a blob resumes once).
    pub fn session_counter(session: &crate::SessionId) -> String {
        format!("{PREFIX}:session:{session}")
    }

    /// STRING: an account (JSON) by its handle.
    pub fn account(handle: &str) -> String {
        format!("{PREFIX}:account:{handle}")
    }

    /// STRING: the handle of a user's account.
    pub fn account_of_user(user: &UserId) -> String {
        format!("{PREFIX}:account-of:{user}")
    }

    /// LIST: a user's call records (JSON), newest first, trimmed to the newest 100.
    pub fn calls(user: &UserId) -> String {
        format!("{PREFIX}:calls:{user}")
    }

    /// The `room/participant` member of [`node_presences`].
    pub fn presence_member(room: &RoomId, participant: &ParticipantId) -> String {
        format!("{room}/{participant}")
    }
}

/// What an SFU node says about itself, refreshed every [`HEARTBEAT_MS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SfuNodeRecord {
    /// The node.
    pub id: NodeId,
    /// Where signaling reaches its gRPC control, e.g. `http://10.0.0.5:7881`.
    pub grpc_url: String,
    /// The media addresses it announces (ICE host candidates).
    #[serde(default)]
    pub media: Vec<String>,
    /// A region label for placement, if configured.
    #[serde(default)]
    pub region: Option<String>,
    /// Rooms with at least one participant.
    pub rooms: u32,
    /// Participants admitted and not yet gone.
    pub participants: u32,
    /// Most participants it takes (`--max-participants`); 0: no limit.
    #[serde(default)]
    pub max_participants: u32,
    /// Packets forwarded per second over the last heartbeat.
    pub forwarded_per_sec: f64,
    /// CPU used by the process, in cores, over the last heartbeat.
    pub cpu_cores: f64,
    /// Draining: takes no new rooms; existing ones finish.
    #[serde(default)]
    pub draining: bool,
    /// When this record was written (Unix ms).
    pub updated_ms: u64,
}

impl SfuNodeRecord {
    /// The figure placement minimises: participants, with forwarding load as the
    /// tie-breaker (a room of listeners costs by packets, not by heads).
    pub fn load(&self) -> f64 {
        f64::from(self.participants) + self.forwarded_per_sec / 1_000.0
    }

    /// Holds as many participants as it takes (by its last heartbeat).
    pub fn is_full(&self) -> bool {
        self.max_participants > 0 && self.participants >= self.max_participants
    }

    /// The media address other nodes relay a spanning room's speakers to: its first
    /// announced one.
    pub fn relay_addr(&self) -> Option<&str> {
        self.media.first().map(String::as_str)
    }
}

/// What a signaling node says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalingNodeRecord {
    /// The node.
    pub id: NodeId,
    /// Where browsers reach it, if known.
    #[serde(default)]
    pub url: Option<String>,
    /// When this record was written (Unix ms).
    pub updated_ms: u64,
}

/// One participant present in a room, as every signaling node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceRecord {
    /// The user behind it.
    pub user: crate::UserId,
    /// Display name.
    pub name: String,
    /// Muted by its own user.
    pub self_muted: bool,
    /// Media connected to the SFU.
    pub connected: bool,
    /// The signaling node holding its session.
    pub node: NodeId,
    /// The SFU node its media is on, once admitted.
    #[serde(default)]
    pub sfu: Option<NodeId>,
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_prefix_and_name_their_subject() {
        let room = RoomId::random();
        assert_eq!(keys::room_node(&room), format!("chorus:room-node:{room}"));
        assert!(keys::presences(&room).starts_with("chorus:"));
        assert_ne!(keys::presences(&room), keys::room_channel(&room));
    }

    #[test]
    fn load_prefers_fewer_participants() {
        let mut a = SfuNodeRecord {
            id: NodeId::random(),
            grpc_url: "http://a".into(),
            media: vec![],
            region: None,
            rooms: 1,
            participants: 10,
            max_participants: 0,
            forwarded_per_sec: 0.0,
            cpu_cores: 0.0,
            draining: false,
            updated_ms: 0,
        };
        let mut b = a.clone();
        b.participants = 11;
        assert!(a.load() < b.load());
        a.forwarded_per_sec = 500.0;
        assert!(a.load() < b.load());
    }
}

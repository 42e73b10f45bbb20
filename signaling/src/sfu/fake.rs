//! An SFU in the test process: it checks room tokens like a real node, answers offers
//! with a fixed SDP, and reports media connected or gone when the test says so. Room
//! logic runs against it without UDP, DTLS or a second process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chorus_proto::sfu::room_event::Kind;
use chorus_proto::sfu::{
    LeaveReason, NodeStatsResponse, ParticipantConnected, ParticipantLeft, ParticipantState,
    RoomEvent,
};
use chorus_proto::signal::ErrorCode;
use chorus_proto::token::{Grants, TokenVerifier};
use chorus_proto::{NodeId, ParticipantId, RoomId};
use tokio::sync::broadcast;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use super::{EventStream, Failure, RelayPeer, Sfu, SfuConnector, SfuControl};
use crate::routing::RouteError;

/// The answer every offer gets.
pub const FAKE_ANSWER: &str = "v=0\r\ns=chorus-fake-sfu\r\n";

/// What the fake holds about one participant.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeParticipant {
    /// Grants now (from the token, then `update_grants`).
    pub grants: Grants,
    /// Muted by a moderator.
    pub muted: bool,
    /// The test said its media connected.
    pub connected: bool,
}

#[derive(Default)]
struct State {
    participants: HashMap<(RoomId, ParticipantId), FakeParticipant>,
    refuse: Option<Failure>,
}

/// The fake node. Cheap to clone; clones share the node.
#[derive(Clone)]
pub struct FakeSfu {
    id: NodeId,
    verifier: Arc<TokenVerifier>,
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<RoomEvent>,
}

impl FakeSfu {
    /// A node that trusts tokens signed for `verifier`.
    pub fn new(id: NodeId, verifier: TokenVerifier) -> Self {
        Self {
            id,
            verifier: Arc::new(verifier),
            state: Arc::default(),
            events: broadcast::channel(1024).0,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuse every admission from now on with this failure (`None`: admit again).
    pub fn refuse_admissions(&self, failure: Option<Failure>) {
        self.state().refuse = failure;
    }

    /// The participant's media is up: a `connected` event.
    pub fn connect(&self, room: &RoomId, participant: &ParticipantId) -> bool {
        let known = match self
            .state()
            .participants
            .get_mut(&(room.clone(), participant.clone()))
        {
            Some(p) => {
                p.connected = true;
                true
            }
            None => false,
        };
        if known {
            let _ = self.events.send(RoomEvent {
                room_id: room.to_string(),
                kind: Some(Kind::Connected(ParticipantConnected {
                    participant_id: participant.to_string(),
                })),
            });
        }
        known
    }

    /// The participant's connection is lost: a `left` event.
    pub fn lose(&self, room: &RoomId, participant: &ParticipantId) {
        if self
            .state()
            .participants
            .remove(&(room.clone(), participant.clone()))
            .is_some()
        {
            self.left(room, participant, LeaveReason::ConnectionLost);
        }
    }

    fn left(&self, room: &RoomId, participant: &ParticipantId, reason: LeaveReason) {
        let _ = self.events.send(RoomEvent {
            room_id: room.to_string(),
            kind: Some(Kind::Left(ParticipantLeft {
                participant_id: participant.to_string(),
                reason: reason as i32,
            })),
        });
    }

    /// What the node holds about a participant.
    pub fn participant(&self, room: &RoomId, id: &ParticipantId) -> Option<FakeParticipant> {
        self.state()
            .participants
            .get(&(room.clone(), id.clone()))
            .cloned()
    }

    /// Everyone the node holds in a room.
    pub fn in_room(&self, room: &RoomId) -> Vec<ParticipantId> {
        self.state()
            .participants
            .keys()
            .filter(|(r, _)| r == room)
            .map(|(_, p)| p.clone())
            .collect()
    }
}

#[async_trait::async_trait]
impl SfuControl for FakeSfu {
    fn url(&self) -> &str {
        "fake://sfu"
    }

    async fn admit(&self, room_token: String, _sdp_offer: String) -> Result<String, Failure> {
        let claims = self
            .verifier
            .verify(&room_token)
            .map_err(|e| (ErrorCode::Unauthorized, e.to_string()))?;
        let mut state = self.state();
        if let Some(failure) = state.refuse.clone() {
            return Err(failure);
        }
        let key = (claims.room, claims.sub);
        if state.participants.contains_key(&key) {
            return Err((ErrorCode::Internal, "already admitted".into()));
        }
        state.participants.insert(
            key,
            FakeParticipant {
                grants: claims.grants,
                muted: false,
                connected: false,
            },
        );
        Ok(FAKE_ANSWER.to_owned())
    }

    async fn update_grants(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
        grants: Grants,
        muted: bool,
    ) -> Result<(), Failure> {
        match self
            .state()
            .participants
            .get_mut(&(room.clone(), participant.clone()))
        {
            Some(p) => {
                p.grants = grants;
                p.muted = muted;
                Ok(())
            }
            None => Err((ErrorCode::NotInRoom, "not on this node".into())),
        }
    }

    async fn remove(&self, room: &RoomId, participant: &ParticipantId) -> Result<bool, Failure> {
        let removed = self
            .state()
            .participants
            .remove(&(room.clone(), participant.clone()))
            .is_some();
        if removed {
            self.left(room, participant, LeaveReason::Removed);
        }
        Ok(removed)
    }

    async fn close_room(&self, room: &RoomId) -> Result<u64, Failure> {
        let gone: Vec<ParticipantId> = {
            let mut state = self.state();
            let keys: Vec<_> = state
                .participants
                .keys()
                .filter(|(r, _)| r == room)
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|k| state.participants.remove(&k).map(|_| k.1))
                .collect()
        };
        for p in &gone {
            self.left(room, p, LeaveReason::RoomClosed);
        }
        Ok(0) // no media here
    }

    async fn set_relays(&self, _room: &RoomId, _peers: &[RelayPeer]) -> Result<(), Failure> {
        Ok(()) // no media here to relay
    }

    async fn node_stats(&self) -> Result<NodeStatsResponse, Failure> {
        let state = self.state();
        let rooms: std::collections::HashSet<&RoomId> =
            state.participants.keys().map(|(r, _)| r).collect();
        Ok(NodeStatsResponse {
            node_id: self.id.to_string(),
            rooms: u32::try_from(rooms.len()).unwrap_or(u32::MAX),
            participants: u32::try_from(state.participants.len()).unwrap_or(u32::MAX),
            ..Default::default()
        })
    }

    async fn participants(&self) -> Result<Vec<ParticipantState>, Failure> {
        Ok(self
            .state()
            .participants
            .iter()
            .map(|((room, id), p)| ParticipantState {
                room_id: room.to_string(),
                participant_id: id.to_string(),
                connected: p.connected,
            })
            .collect())
    }

    async fn events(&self) -> Result<EventStream, Failure> {
        let stream = BroadcastStream::new(self.events.subscribe()).map(|item| {
            item.map_err(|_| (ErrorCode::Internal, "fake SFU events lagged".to_owned()))
        });
        Ok(Box::pin(stream))
    }
}

/// Every node record connects to the same fake.
impl SfuConnector for FakeSfu {
    fn connect(&self, _node: &chorus_proto::fleet::SfuNodeRecord) -> Result<Sfu, RouteError> {
        Ok(Arc::new(self.clone()))
    }
}

//! The gRPC face of the node: `SfuControl` over the engine loop. Each call checks and
//! parses its input at the edge (sizes, ids, token), sends one command to the loop and
//! waits for its oneshot reply. Events are a broadcast that never stalls the engine: a
//! watcher too slow to keep up has its stream ended with DATA_LOSS (never a silent gap),
//! subscribes again and re-syncs from `Participants`.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use chorus_proto::sfu::sfu_control_server::SfuControl;
use chorus_proto::sfu::{
    AdmitRequest, AdmitResponse, CloseRoomRequest, CloseRoomResponse, EventsRequest,
    LeaveReason as ProtoLeaveReason, NodeStatsRequest, NodeStatsResponse, ParticipantConnected,
    ParticipantLeft, ParticipantLevel, ParticipantState, ParticipantsRequest, ParticipantsResponse,
    RemoveParticipantRequest, RemoveParticipantResponse, RoomEvent, SetRelaysRequest,
    SetRelaysResponse, SpeakingLevels, UpdateGrantsRequest, UpdateGrantsResponse, room_event,
};
use chorus_proto::token::{CONTROL_METADATA, Grants, TokenError, TokenVerifier};
use chorus_proto::{NodeId, ParticipantId, RoomId};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::auth::Authenticator;
use crate::engine::{EngineEvent, LeaveReason, MAX_OFFER_BYTES};
use crate::error::SfuError;
use crate::net::Command;

/// The `SfuControl` implementation.
pub(crate) struct ControlService {
    pub node_id: NodeId,
    pub auth: Authenticator,
    pub commands: mpsc::Sender<Command>,
    /// Weak: the media loop holds the only strong sender, so every Events stream ends
    /// when the loop stops (and graceful gRPC shutdown does not wait forever).
    pub events: broadcast::WeakSender<EngineEvent>,
}

impl ControlService {
    /// Send a command built around a fresh reply channel and await the reply.
    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Status> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| to_status(SfuError::ShuttingDown))?;
        rx.await.map_err(|_| to_status(SfuError::ShuttingDown))
    }
}

/// The check every control call passes before it reaches [`ControlService`]: a control
/// token (`authorization: Bearer …`) signed by the deployment's token key, which only
/// signaling holds. The last token verified is remembered until it expires, so a
/// signaling node's calls cost one signature check per token, not per call.
#[derive(Clone)]
pub(crate) struct ControlGate {
    verifier: Arc<TokenVerifier>,
    last: Arc<Mutex<Option<(String, u64)>>>,
}

impl ControlGate {
    pub fn new(public_key: &[u8]) -> Result<Self, SfuError> {
        let verifier = TokenVerifier::from_public_key(public_key)
            .map_err(|e| SfuError::Config(format!("token public key: {e}")))?;
        Ok(Self {
            verifier: Arc::new(verifier),
            last: Arc::default(),
        })
    }

    fn check(&self, metadata: &tonic::metadata::MetadataMap) -> Result<(), Status> {
        let refuse = |why: &str| {
            Status::unauthenticated(format!(
                "this SFU's control port needs a control token from signaling: {why}"
            ))
        };
        let value = metadata
            .get(CONTROL_METADATA)
            .ok_or_else(|| refuse("none was sent"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| refuse("the authorization is not 'Bearer <token>'"))?;
        let now = unix_now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((known, exp)) = last.as_ref()
            && known == token
            && *exp > now
        {
            return Ok(());
        }
        let claims = self
            .verifier
            .verify_control(token)
            .map_err(|e| refuse(&e.to_string()))?;
        *last = Some((token.to_owned(), claims.exp));
        Ok(())
    }
}

impl tonic::service::Interceptor for ControlGate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check(request.metadata())?;
        Ok(request)
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The node's counters as `NodeStats` reports them (also for its own `/metrics`).
pub(crate) fn stats_response(
    node_id: &NodeId,
    s: &crate::engine::EngineStats,
) -> NodeStatsResponse {
    let m = s.metrics;
    NodeStatsResponse {
        node_id: node_id.to_string(),
        rooms: u32::try_from(s.rooms).unwrap_or(u32::MAX),
        participants: u32::try_from(s.participants).unwrap_or(u32::MAX),
        packets_in: m.packets_in,
        packets_out: m.packets_out,
        packets_forwarded: m.packets_forwarded,
        packets_dropped: m.packets_dropped,
        bytes_in: m.bytes_in,
        bytes_out: m.bytes_out,
        packets_relayed_out: m.packets_relayed_out,
        packets_relayed_in: m.packets_relayed_in,
        packets_dropped_by_reason: m
            .drops()
            .iter()
            .map(|(reason, n)| ((*reason).to_owned(), *n))
            .collect(),
    }
}

fn to_status(e: SfuError) -> Status {
    let message = e.to_string();
    match e {
        SfuError::Token(TokenError::TooLarge) => Status::invalid_argument(message),
        SfuError::Token(_) => Status::unauthenticated(message),
        SfuError::Revoked { .. } => Status::permission_denied(message),
        SfuError::AlreadyAdmitted { .. } => Status::already_exists(message),
        SfuError::BadOffer(_) | SfuError::InvalidArgument(_) => Status::invalid_argument(message),
        SfuError::NotFound(_) => Status::not_found(message),
        SfuError::NodeFull { .. } => Status::resource_exhausted(message),
        SfuError::ShuttingDown => Status::unavailable(message),
        _ => Status::internal(message),
    }
}

fn parse_room(s: String) -> Result<RoomId, Status> {
    RoomId::parse(s).map_err(|e| Status::invalid_argument(format!("room_id: {e}")))
}

fn parse_participant(s: String) -> Result<ParticipantId, Status> {
    ParticipantId::parse(s).map_err(|e| Status::invalid_argument(format!("participant_id: {e}")))
}

fn to_proto(event: EngineEvent) -> Option<RoomEvent> {
    let (room, kind) = match event {
        EngineEvent::Connected { room, participant } => (
            room,
            room_event::Kind::Connected(ParticipantConnected {
                participant_id: participant.into(),
            }),
        ),
        EngineEvent::Left {
            room,
            participant,
            reason,
        } => {
            let reason = match reason {
                LeaveReason::Removed => ProtoLeaveReason::Removed,
                LeaveReason::ConnectionLost => ProtoLeaveReason::ConnectionLost,
                LeaveReason::RoomClosed => ProtoLeaveReason::RoomClosed,
                LeaveReason::ConnectTimeout => ProtoLeaveReason::ConnectTimeout,
            };
            (
                room,
                room_event::Kind::Left(ParticipantLeft {
                    participant_id: participant.into(),
                    reason: reason.into(),
                }),
            )
        }
        EngineEvent::Speaking { room, levels } => (
            room,
            room_event::Kind::Speaking(SpeakingLevels {
                levels: levels
                    .into_iter()
                    .map(|(p, level)| ParticipantLevel {
                        participant_id: p.into(),
                        level,
                    })
                    .collect(),
            }),
        ),
        #[allow(unreachable_patterns)]
        _ => return None,
    };
    Some(RoomEvent {
        room_id: room.into(),
        kind: Some(kind),
    })
}

type EventStream = Pin<Box<dyn Stream<Item = Result<RoomEvent, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl SfuControl for ControlService {
    async fn admit(
        &self,
        request: Request<AdmitRequest>,
    ) -> Result<Response<AdmitResponse>, Status> {
        let AdmitRequest {
            room_token,
            sdp_offer,
        } = request.into_inner();
        if sdp_offer.len() > MAX_OFFER_BYTES {
            return Err(Status::invalid_argument(format!(
                "sdp_offer is {} bytes, more than the {MAX_OFFER_BYTES} allowed",
                sdp_offer.len()
            )));
        }
        if sdp_offer.trim().is_empty() {
            return Err(Status::invalid_argument("sdp_offer is empty"));
        }
        if room_token.is_empty() {
            return Err(Status::unauthenticated("room_token is missing"));
        }
        // The room and participant come from the verified claims, never from the caller.
        let claims = self.auth.verify(&room_token).map_err(to_status)?;
        let (room, participant) = (claims.room.clone(), claims.sub.clone());
        let answer = self
            .call(|reply| Command::Admit {
                claims,
                offer: sdp_offer,
                reply,
            })
            .await?
            .map_err(to_status)?;
        Ok(Response::new(AdmitResponse {
            sdp_answer: answer,
            room_id: room.into(),
            participant_id: participant.into(),
        }))
    }

    async fn update_grants(
        &self,
        request: Request<UpdateGrantsRequest>,
    ) -> Result<Response<UpdateGrantsResponse>, Status> {
        let r = request.into_inner();
        let room = parse_room(r.room_id)?;
        let participant = parse_participant(r.participant_id)?;
        let g = r
            .grants
            .ok_or_else(|| Status::invalid_argument("grants is required"))?;
        let grants = Grants {
            publish: g.publish,
            subscribe: g.subscribe,
            admin: g.admin,
        };
        self.call(|reply| Command::UpdateGrants {
            room,
            participant,
            grants,
            muted: r.muted,
            reply,
        })
        .await?
        .map_err(to_status)?;
        Ok(Response::new(UpdateGrantsResponse {}))
    }

    async fn remove_participant(
        &self,
        request: Request<RemoveParticipantRequest>,
    ) -> Result<Response<RemoveParticipantResponse>, Status> {
        let r = request.into_inner();
        let room = parse_room(r.room_id)?;
        let participant = parse_participant(r.participant_id)?;
        let removed = self
            .call(|reply| Command::Remove {
                room,
                participant,
                reply,
            })
            .await?;
        Ok(Response::new(RemoveParticipantResponse { removed }))
    }

    async fn close_room(
        &self,
        request: Request<CloseRoomRequest>,
    ) -> Result<Response<CloseRoomResponse>, Status> {
        let room = parse_room(request.into_inner().room_id)?;
        let closed = self
            .call(|reply| Command::CloseRoom { room, reply })
            .await?;
        Ok(Response::new(CloseRoomResponse {
            participants_removed: closed.participants,
            bytes_carried: closed.bytes,
        }))
    }

    async fn set_relays(
        &self,
        request: Request<SetRelaysRequest>,
    ) -> Result<Response<SetRelaysResponse>, Status> {
        let SetRelaysRequest { room_id, peers } = request.into_inner();
        let room = parse_room(room_id)?;
        let peers = peers
            .iter()
            .map(|p| {
                p.parse::<std::net::SocketAddr>().map_err(|_| {
                    Status::invalid_argument(format!("peers: '{p}' is not an ip:port address"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.call(|reply| Command::SetRelays { room, peers, reply })
            .await?
            .map_err(to_status)?;
        Ok(Response::new(SetRelaysResponse {}))
    }

    type EventsStream = EventStream;

    async fn events(
        &self,
        _request: Request<EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        let receiver = self
            .events
            .upgrade()
            .map(|sender| sender.subscribe())
            .ok_or_else(|| to_status(SfuError::ShuttingDown))?;
        // A lag ends the stream: the watcher must know it missed lifecycle events, so it
        // re-subscribes and diffs against `Participants` instead of carrying a ghost.
        let stream = BroadcastStream::new(receiver)
            .map_while(|item| match item {
                Ok(event) => Some(event),
                Err(BroadcastStreamRecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "an Events watcher is too slow; ending its stream so that it re-syncs"
                    );
                    None
                }
            })
            .filter_map(|event| to_proto(event).map(Ok::<RoomEvent, Status>))
            .chain(tokio_stream::once(Err(Status::data_loss(
                "events were dropped for this watcher (or the node is stopping); subscribe again and re-sync with Participants",
            ))));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn participants(
        &self,
        _request: Request<ParticipantsRequest>,
    ) -> Result<Response<ParticipantsResponse>, Status> {
        let list = self.call(|reply| Command::Participants { reply }).await?;
        Ok(Response::new(ParticipantsResponse {
            participants: list
                .into_iter()
                .map(|p| ParticipantState {
                    room_id: p.room.into(),
                    participant_id: p.participant.into(),
                    connected: p.connected,
                })
                .collect(),
        }))
    }

    async fn node_stats(
        &self,
        _request: Request<NodeStatsRequest>,
    ) -> Result<Response<NodeStatsResponse>, Status> {
        let s = self.call(|reply| Command::Stats { reply }).await?;
        Ok(Response::new(stats_response(&self.node_id, &s)))
    }
}

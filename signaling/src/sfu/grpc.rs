//! [`SfuControl`] over gRPC: the client of an SFU node, with its errors turned into
//! words for the user.

use chorus_proto::sfu::sfu_control_client::SfuControlClient;
use chorus_proto::sfu::{
    AdmitRequest, CloseRoomRequest, EventsRequest, Grants as ProtoGrants, NodeStatsRequest,
    NodeStatsResponse, ParticipantState, ParticipantsRequest, RemoveParticipantRequest,
    SetRelaysRequest, UpdateGrantsRequest,
};
use chorus_proto::signal::ErrorCode;
use chorus_proto::token::{CONTROL_METADATA, Grants, TokenIssuer, control_bearer};
use chorus_proto::{ParticipantId, RoomId};
use futures_util::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use super::{EventStream, Failure, RelayPeer, SfuControl};
use crate::error::SignalingError;

/// How long a control token lives, and how long before its end a new one is minted.
const CONTROL_TTL: Duration = Duration::from_secs(600);
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// The control token every call to an SFU node carries (`authorization: Bearer …`),
/// signed with the room-token key, which the nodes verify with the public half they
/// already hold. One token serves every node and is renewed well before it expires.
/// Cheap to clone; clones share the token.
#[derive(Clone)]
pub struct ControlTokens {
    issuer: TokenIssuer,
    current: Arc<Mutex<Option<Bearer>>>,
}

/// A minted `Bearer …` value and when to mint the next.
type Bearer = (MetadataValue<Ascii>, Instant);

impl ControlTokens {
    /// Tokens signed by `issuer`.
    pub fn new(issuer: TokenIssuer) -> Self {
        Self {
            issuer,
            current: Arc::default(),
        }
    }

    fn bearer(&self) -> Result<MetadataValue<Ascii>, Status> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((value, renew_at)) = current.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(value.clone());
        }
        let token = self
            .issuer
            .mint_control(CONTROL_TTL)
            .map_err(|e| Status::internal(format!("cannot mint a control token: {e}")))?;
        let value: MetadataValue<Ascii> = control_bearer(&token)
            .parse()
            .map_err(|_| Status::internal("a control token is not valid metadata"))?;
        *current = Some((value.clone(), Instant::now() + (CONTROL_TTL - RENEW_BEFORE)));
        Ok(value)
    }
}

impl Interceptor for ControlTokens {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let bearer = self.bearer()?;
        request.metadata_mut().insert(CONTROL_METADATA, bearer);
        Ok(request)
    }
}

type Client = SfuControlClient<InterceptedService<Channel, ControlTokens>>;

/// A connection to one SFU node over gRPC. Cheap to clone.
#[derive(Clone)]
pub struct GrpcSfu {
    client: Client,
    url: String,
}

impl GrpcSfu {
    /// A client that connects on first use and reconnects by itself; its calls carry
    /// `tokens`.
    pub fn connect_lazy(url: &str, tokens: ControlTokens) -> Result<Self, SignalingError> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|_| SignalingError::SfuUrl(url.to_owned()))?
            .connect_timeout(Duration::from_secs(3))
            .tcp_nodelay(true);
        Ok(Self {
            client: SfuControlClient::with_interceptor(endpoint.connect_lazy(), tokens),
            url: url.to_owned(),
        })
    }

    fn client(&self) -> Client {
        self.client.clone()
    }
}

#[async_trait::async_trait]
impl SfuControl for GrpcSfu {
    fn url(&self) -> &str {
        &self.url
    }

    async fn admit(&self, room_token: String, sdp_offer: String) -> Result<String, Failure> {
        let request = AdmitRequest {
            room_token,
            sdp_offer,
        };
        let response = self.client().admit(request).await.map_err(user_error)?;
        Ok(response.into_inner().sdp_answer)
    }

    async fn update_grants(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
        grants: Grants,
        muted: bool,
    ) -> Result<(), Failure> {
        let request = UpdateGrantsRequest {
            room_id: room.to_string(),
            participant_id: participant.to_string(),
            grants: Some(ProtoGrants {
                publish: grants.publish,
                subscribe: grants.subscribe,
                admin: grants.admin,
            }),
            muted,
        };
        self.client()
            .update_grants(request)
            .await
            .map_err(user_error)?;
        Ok(())
    }

    async fn remove(&self, room: &RoomId, participant: &ParticipantId) -> Result<bool, Failure> {
        let request = RemoveParticipantRequest {
            room_id: room.to_string(),
            participant_id: participant.to_string(),
        };
        let response = self
            .client()
            .remove_participant(request)
            .await
            .map_err(user_error)?;
        Ok(response.into_inner().removed)
    }

    async fn close_room(&self, room: &RoomId) -> Result<u64, Failure> {
        let request = CloseRoomRequest {
            room_id: room.to_string(),
        };
        let response = self
            .client()
            .close_room(request)
            .await
            .map_err(user_error)?;
        Ok(response.into_inner().bytes_carried)
    }

    async fn set_relays(&self, room: &RoomId, peers: &[RelayPeer]) -> Result<(), Failure> {
        let request = SetRelaysRequest {
            room_id: room.to_string(),
            peers: peers.iter().map(|p| p.addr.clone()).collect(),
        };
        self.client()
            .set_relays(request)
            .await
            .map_err(user_error)?;
        Ok(())
    }

    async fn node_stats(&self) -> Result<NodeStatsResponse, Failure> {
        let response = self
            .client()
            .node_stats(NodeStatsRequest {})
            .await
            .map_err(user_error)?;
        Ok(response.into_inner())
    }

    async fn participants(&self) -> Result<Vec<ParticipantState>, Failure> {
        let response = self
            .client()
            .participants(ParticipantsRequest {})
            .await
            .map_err(user_error)?;
        Ok(response.into_inner().participants)
    }

    async fn events(&self) -> Result<EventStream, Failure> {
        let stream = self
            .client()
            .events(EventsRequest {})
            .await
            .map_err(user_error)?
            .into_inner();
        Ok(Box::pin(stream.map(|item| item.map_err(user_error))))
    }
}

/// What a user is told when the SFU refuses or fails.
fn user_error(status: Status) -> Failure {
    match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => (
            ErrorCode::Unauthorized,
            format!("the media server refused entry: {}", status.message()),
        ),
        Code::InvalidArgument => (
            ErrorCode::BadOffer,
            format!(
                "the media server could not use this connection offer: {}",
                status.message()
            ),
        ),
        Code::NotFound => (ErrorCode::NotInRoom, status.message().to_owned()),
        // A node that is full (`--max-participants`): another node may take the room on.
        Code::ResourceExhausted => (ErrorCode::MediaUnavailable, status.message().to_owned()),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => (
            ErrorCode::MediaUnavailable,
            "the media server cannot be reached right now; try again in a moment".to_owned(),
        ),
        _ => (
            ErrorCode::Internal,
            format!("the media server failed: {}", status.message()),
        ),
    }
}

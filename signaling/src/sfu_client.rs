//! The gRPC client of an SFU node, with its errors turned into words for the user.

use chorus_proto::sfu::sfu_control_client::SfuControlClient;
use chorus_proto::sfu::{
    AdmitRequest, CloseRoomRequest, EventsRequest, Grants as ProtoGrants, RemoveParticipantRequest,
    RoomEvent, UpdateGrantsRequest,
};
use chorus_proto::signal::ErrorCode;
use chorus_proto::token::Grants;
use chorus_proto::{ParticipantId, RoomId};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};

use crate::error::SignalingError;

/// A connection to one SFU node. Cheap to clone.
#[derive(Clone)]
pub struct SfuClient {
    client: SfuControlClient<Channel>,
    url: String,
}

impl SfuClient {
    /// A client that connects on first use and reconnects by itself.
    pub fn connect_lazy(url: &str) -> Result<Self, SignalingError> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|_| SignalingError::SfuUrl(url.to_owned()))?
            .connect_timeout(std::time::Duration::from_secs(3))
            .tcp_nodelay(true);
        Ok(Self {
            client: SfuControlClient::new(endpoint.connect_lazy()),
            url: url.to_owned(),
        })
    }

    /// Where this SFU is.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Admit a participant: the SFU checks the token and answers the offer.
    pub async fn admit(
        &self,
        room_token: String,
        sdp_offer: String,
    ) -> Result<String, (ErrorCode, String)> {
        let request = AdmitRequest {
            room_token,
            sdp_offer,
        };
        self.client
            .clone()
            .admit(request)
            .await
            .map(|r| r.into_inner().sdp_answer)
            .map_err(|status| user_error(&status))
    }

    /// Change a participant's grants and server-side mute; effective on the next packet.
    pub async fn update_grants(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
        grants: Grants,
        muted: bool,
    ) -> Result<(), (ErrorCode, String)> {
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
        self.client
            .clone()
            .update_grants(request)
            .await
            .map(|_| ())
            .map_err(|s| user_error(&s))
    }

    /// Disconnect everyone in a room.
    pub async fn close_room(&self, room: &RoomId) -> Result<u32, Status> {
        let request = CloseRoomRequest {
            room_id: room.to_string(),
        };
        Ok(self
            .client
            .clone()
            .close_room(request)
            .await?
            .into_inner()
            .participants_removed)
    }

    /// Disconnect a participant from its room.
    pub async fn remove(&self, room: &RoomId, participant: &ParticipantId) -> Result<bool, Status> {
        let request = RemoveParticipantRequest {
            room_id: room.to_string(),
            participant_id: participant.to_string(),
        };
        Ok(self
            .client
            .clone()
            .remove_participant(request)
            .await?
            .into_inner()
            .removed)
    }

    /// The node's counters.
    pub async fn node_stats(&self) -> Result<chorus_proto::sfu::NodeStatsResponse, Status> {
        let request = chorus_proto::sfu::NodeStatsRequest {};
        Ok(self.client.clone().node_stats(request).await?.into_inner())
    }

    /// Every participant on the node and whether its media is connected.
    pub async fn participants(&self) -> Result<Vec<chorus_proto::sfu::ParticipantState>, Status> {
        let request = chorus_proto::sfu::ParticipantsRequest {};
        Ok(self
            .client
            .clone()
            .participants(request)
            .await?
            .into_inner()
            .participants)
    }

    /// Subscribe to every room event of this node.
    pub async fn events(&self) -> Result<Streaming<RoomEvent>, Status> {
        Ok(self
            .client
            .clone()
            .events(EventsRequest {})
            .await?
            .into_inner())
    }
}

/// What a user is told when the SFU refuses or fails.
fn user_error(status: &Status) -> (ErrorCode, String) {
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
        Code::ResourceExhausted => (ErrorCode::RoomFull, status.message().to_owned()),
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

//! The SFU's event stream, applied to the rooms: media connected, participant gone,
//! who is speaking. Reconnects by itself when the stream breaks.

use std::sync::Arc;
use std::time::Duration;

use chorus_proto::sfu::room_event::Kind;
use chorus_proto::sfu::{LeaveReason, RoomEvent};
use chorus_proto::signal::{LeftReason, SpeakerLevel};
use chorus_proto::{ParticipantId, RoomId};
use tokio::sync::oneshot;

use crate::rooms::service::RoomService;
use crate::sfu_client::SfuClient;

/// Follow the SFU's events for as long as the process lives. `subscribed` fires once the
/// first subscription stands, so that no event of an early join is missed.
pub fn spawn(sfu: SfuClient, rooms: Arc<RoomService>, subscribed: oneshot::Sender<()>) {
    tokio::spawn(async move {
        let mut subscribed = Some(subscribed);
        loop {
            match sfu.events().await {
                Ok(mut stream) => {
                    if let Some(tx) = subscribed.take() {
                        let _ = tx.send(());
                    }
                    tracing::info!(sfu = sfu.url(), "following SFU events");
                    loop {
                        match stream.message().await {
                            Ok(Some(event)) => apply(&rooms, event).await,
                            Ok(None) => break,
                            Err(status) => {
                                tracing::warn!(sfu = sfu.url(), error = %status.message(), "SFU event stream broke");
                                break;
                            }
                        }
                    }
                }
                Err(status) => {
                    tracing::warn!(sfu = sfu.url(), error = %status.message(), "cannot follow SFU events");
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

async fn apply(rooms: &RoomService, event: RoomEvent) {
    let Ok(room) = RoomId::parse(event.room_id) else {
        return;
    };
    match event.kind {
        Some(Kind::Connected(c)) => {
            if let Ok(p) = ParticipantId::parse(c.participant_id) {
                rooms.on_connected(&room, &p).await;
            }
        }
        Some(Kind::Left(left)) => {
            let reason = match LeaveReason::try_from(left.reason) {
                Ok(LeaveReason::Removed) => LeftReason::Removed,
                Ok(LeaveReason::RoomClosed) => LeftReason::RoomClosed,
                _ => LeftReason::ConnectionLost,
            };
            if let Ok(p) = ParticipantId::parse(left.participant_id) {
                rooms.on_left(&room, &p, reason).await;
            }
        }
        Some(Kind::Speaking(speaking)) => {
            let levels = speaking
                .levels
                .into_iter()
                .filter_map(|l| {
                    let participant = ParticipantId::parse(l.participant_id).ok()?;
                    Some(SpeakerLevel {
                        participant,
                        level: l.level.clamp(0.0, 1.0),
                    })
                })
                .collect();
            rooms.registry.speaking(&room, levels);
        }
        None => {}
    }
}

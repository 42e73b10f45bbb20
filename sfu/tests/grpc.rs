//! The real node over real gRPC on loopback: bad tokens and bad offers are refused with
//! clear statuses, and a str0m client really connects over UDP (Connected on Events).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chorus_proto::sfu::sfu_control_client::SfuControlClient;
use chorus_proto::sfu::{
    AdmitRequest, EventsRequest, NodeStatsRequest, RemoveParticipantRequest, UpdateGrantsRequest,
    room_event,
};
use chorus_proto::token::{ControlBearer, Grants, ISSUER, RoomClaims, TokenIssuer};
use chorus_proto::{ParticipantId, RoomId};
use chorus_sfu::{SfuConfig, SfuHandle, start};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

type Client = SfuControlClient<InterceptedService<Channel, ControlBearer>>;

/// A client of `handle`'s control port whose calls carry `bearer`.
async fn client_with(handle: &SfuHandle, bearer: ControlBearer) -> Client {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", handle.grpc_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    SfuControlClient::with_interceptor(channel, bearer)
}

async fn node(issuer: &TokenIssuer) -> (SfuHandle, Client) {
    let mut config = SfuConfig::new(issuer.public_key().to_vec());
    config.udp_listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let handle = start(config).await.unwrap();
    let bearer = ControlBearer::mint(issuer, Duration::from_secs(300)).unwrap();
    let client = client_with(&handle, bearer).await;
    (handle, client)
}

#[tokio::test]
async fn every_control_call_needs_a_control_token_signed_by_signaling() {
    let issuer = TokenIssuer::generate().unwrap();
    let (handle, mut good) = node(&issuer).await;
    good.node_stats(NodeStatsRequest {}).await.unwrap();
    let (room, p) = (RoomId::random(), ParticipantId::random());
    let room_token = issuer
        .mint(&room, &p, "Eve", Grants::SPEAKER, Duration::from_secs(60))
        .unwrap();
    let forged =
        ControlBearer::mint(&TokenIssuer::generate().unwrap(), Duration::from_secs(60)).unwrap();
    let wrong = [
        ("a control token of another key", forged),
        (
            "a room token",
            ControlBearer::from_token(&room_token).unwrap(),
        ),
        ("garbage", ControlBearer::from_token("not-a-token").unwrap()),
    ];
    for (what, bearer) in wrong {
        let mut client = client_with(&handle, bearer).await;
        let status = client.node_stats(NodeStatsRequest {}).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
        let status = client
            .remove_participant(RemoveParticipantRequest {
                room_id: room.to_string(),
                participant_id: p.to_string(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
        let status = client.events(EventsRequest {}).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
    }
    // No token at all.
    let mut bare = SfuControlClient::connect(format!("http://{}", handle.grpc_addr()))
        .await
        .unwrap();
    let status = bare.node_stats(NodeStatsRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("control token"), "{status:?}");
    handle.shutdown().await;
}

fn offer() -> (Rtc, String, str0m::change::SdpPendingOffer, UdpSocket) {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let mut rtc = Rtc::builder().build(Instant::now());
    rtc.add_local_candidate(Candidate::host(socket.local_addr().unwrap(), "udp").unwrap());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    for _ in 0..3 {
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    }
    let (offer, pending) = api.apply().unwrap();
    (rtc, offer.to_sdp_string(), pending, socket)
}

async fn admit(client: &mut Client, token: &str, sdp: &str) -> tonic::Status {
    client
        .admit(AdmitRequest {
            room_token: token.into(),
            sdp_offer: sdp.into(),
        })
        .await
        .expect_err("admission must be refused")
}

#[tokio::test]
async fn bad_tokens_are_unauthenticated() {
    let issuer = TokenIssuer::generate().unwrap();
    let (handle, mut client) = node(&issuer).await;
    let (_rtc, sdp, _, _) = offer();
    let room = RoomId::random();
    let p = ParticipantId::random();

    let other = TokenIssuer::generate().unwrap();
    let forged = other
        .mint(&room, &p, "Eve", Grants::SPEAKER, Duration::from_secs(60))
        .unwrap();
    let s = admit(&mut client, &forged, &sdp).await;
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    assert!(
        s.message().contains("not signed by this server"),
        "{}",
        s.message()
    );

    // Expired: signed with the right key, exp in the past (beyond the 5 s leeway).
    let der = chorus_proto::token::generate_pkcs8().unwrap();
    let issuer2 = TokenIssuer::from_pkcs8_der(&der).unwrap();
    let (handle2, mut client2) = node(&issuer2).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = RoomClaims {
        sub: p.clone(),
        room: room.clone(),
        name: "Old".into(),
        grants: Grants::SPEAKER,
        iat: now - 600,
        exp: now - 300,
        iss: ISSUER.into(),
    };
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(&der),
    )
    .unwrap();
    let s = admit(&mut client2, &expired, &sdp).await;
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    assert!(s.message().contains("expired"), "{}", s.message());

    let s = admit(&mut client, "not.a.token", &sdp).await;
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    assert!(s.message().contains("malformed"), "{}", s.message());
    let s = admit(&mut client, "", &sdp).await;
    assert_eq!(s.code(), Code::Unauthenticated);
    let s = admit(&mut client, &"a".repeat(5000), &sdp).await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");

    // The node is still healthy.
    let stats = client
        .node_stats(NodeStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.participants, 0);
    handle.shutdown().await;
    handle2.shutdown().await;
}

#[tokio::test]
async fn bad_offers_and_ids_are_invalid_argument() {
    let issuer = TokenIssuer::generate().unwrap();
    let (handle, mut client) = node(&issuer).await;
    let room = RoomId::random();
    let token = |p: &ParticipantId| {
        issuer
            .mint(&room, p, "Ada", Grants::SPEAKER, Duration::from_secs(60))
            .unwrap()
    };

    for bad in ["garbage", "v=0\r\n", "\0\u{7f}", "  "] {
        let s = admit(&mut client, &token(&ParticipantId::random()), bad).await;
        assert_eq!(s.code(), Code::InvalidArgument, "{bad:?}: {s:?}");
        assert!(
            s.message().contains("sdp") || s.message().contains("SDP"),
            "{}",
            s.message()
        );
    }
    let s = admit(
        &mut client,
        &token(&ParticipantId::random()),
        &"v".repeat(70 * 1024),
    )
    .await;
    assert_eq!(s.code(), Code::InvalidArgument);

    let s = client
        .update_grants(UpdateGrantsRequest {
            room_id: "../x".into(),
            participant_id: "p".into(),
            grants: None,
            muted: false,
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    let s = client
        .update_grants(UpdateGrantsRequest {
            room_id: room.to_string(),
            participant_id: ParticipantId::random().to_string(),
            grants: Some(chorus_proto::sfu::Grants {
                publish: true,
                subscribe: true,
                admin: false,
            }),
            muted: false,
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::NotFound, "{s:?}");
    handle.shutdown().await;
}

#[tokio::test]
async fn client_connects_over_udp_and_removed_token_is_refused() {
    let issuer = TokenIssuer::generate().unwrap();
    let (handle, mut client) = node(&issuer).await;
    assert!(!handle.udp_addrs().is_empty());
    let mut events = client.events(EventsRequest {}).await.unwrap().into_inner();

    let room = RoomId::random();
    let p = ParticipantId::random();
    let token = issuer
        .mint(&room, &p, "Ada", Grants::SPEAKER, Duration::from_secs(60))
        .unwrap();
    let (mut rtc, sdp, pending, socket) = offer();
    let answer = client
        .admit(AdmitRequest {
            room_token: token.clone(),
            sdp_offer: sdp.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.room_id, room.to_string());
    assert_eq!(answer.participant_id, p.to_string());
    rtc.sdp_api()
        .accept_answer(
            pending,
            SdpAnswer::from_sdp_string(&answer.sdp_answer).unwrap(),
        )
        .unwrap();

    // Drive the client on a real socket in a blocking thread until connected.
    let local = socket.local_addr().unwrap();
    let connected = tokio::task::spawn_blocking(move || {
        socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let mut buf = vec![0u8; 2000];
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            loop {
                match rtc.poll_output().unwrap() {
                    Output::Transmit(t) => {
                        socket.send_to(&t.contents, t.destination).unwrap();
                    }
                    Output::Event(Event::Connected) => return true,
                    Output::Event(_) => {}
                    Output::Timeout(_) => break,
                }
            }
            match socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let r = Receive::new(Protocol::Udp, from, local, &buf[..n]).unwrap();
                    rtc.handle_input(Input::Receive(Instant::now(), r)).unwrap();
                }
                Err(_) => rtc.handle_input(Input::Timeout(Instant::now())).unwrap(),
            }
        }
        false
    })
    .await
    .unwrap();
    assert!(connected, "client did not connect over UDP");

    let event = tokio::time::timeout(Duration::from_secs(5), events.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(event.room_id, room.to_string());
    assert!(
        matches!(event.kind, Some(room_event::Kind::Connected(ref c)) if c.participant_id == p.to_string()),
        "{event:?}"
    );

    let removed = client
        .remove_participant(RemoveParticipantRequest {
            room_id: room.to_string(),
            participant_id: p.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(removed.removed);
    let s = admit(&mut client, &token, &sdp).await;
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    assert!(
        s.message().contains("no longer accepted"),
        "{}",
        s.message()
    );

    let stats = client
        .node_stats(NodeStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(stats.packets_in > 0 && stats.packets_out > 0, "{stats:?}");
    handle.shutdown().await;
}

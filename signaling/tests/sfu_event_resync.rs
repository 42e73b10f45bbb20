//! SFU lifecycle events are never lost for good: signaling's gRPC connection to the SFU
//! goes through a TCP proxy the test cuts and restores. While it is cut, a participant's
//! media dies and the SFU drops it — an event signaling cannot receive. When the link
//! comes back, signaling re-syncs from the SFU's `Participants` snapshot: the others see
//! the participant leave exactly once, and it is told itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fleet_support;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chorus_bench::webrtc_peer::WebrtcPeer;
use chorus_proto::signal::LeftReason;
use fleet_support::{SfuNode, SignalingNode, TokenKey};
use serde_json::json;
use support::{Api, close_all, join_connected, peer_config, wait_info};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

const STEP: Duration = Duration::from_secs(20);

/// A TCP proxy that can cut every connection and refuse new ones until restored.
struct Proxy {
    addr: std::net::SocketAddr,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (cut, links) = (cut.clone(), links.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        continue; // dropped: the link is down
                    }
                    let upstream = upstream.clone();
                    links.lock().await.push(tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    }));
                }
            }
        });
        Self {
            addr,
            cut,
            links,
            accept,
        }
    }

    async fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_departure_missed_while_the_event_stream_was_down_is_recovered() {
    let key = TokenKey::make();
    let sfu = SfuNode::start_with(&key, "sfu-alone", &[]);
    let proxy = Proxy::start(sfu.grpc.clone()).await;
    let node = SignalingNode::start_alone(&key, "sig-alone", &format!("http://{}", proxy.addr));
    let mut peers = Vec::new();
    let outcome = scenario(&key, &sfu, &node, &proxy, &mut peers).await;
    close_all(&mut peers).await;
    if let Err(message) = outcome {
        panic!(
            "{message}\n--- SFU ---\n{}\n--- signaling ---\n{}",
            sfu.log(),
            node.log()
        );
    }
}

async fn sfu_has(key: &TokenKey, sfu: &SfuNode, participant: &str) -> bool {
    use chorus_proto::sfu::ParticipantsRequest;
    let Ok(mut client) = key.control(&sfu.grpc).await else {
        return true; // unknown: keep waiting
    };
    match client.participants(ParticipantsRequest {}).await {
        Ok(list) => list
            .into_inner()
            .participants
            .iter()
            .any(|p| p.participant_id == participant),
        Err(_) => true,
    }
}

async fn scenario(
    key: &TokenKey,
    sfu: &SfuNode,
    node: &SignalingNode,
    proxy: &Proxy,
    peers: &mut Vec<WebrtcPeer>,
) -> Result<(), String> {
    let api = Api::new(&node.url, node.api_key());
    let created = api
        .create_room(json!({"name": "Resync", "owner_name": "Host"}))
        .await;
    let room = created.room.id.clone();
    peers.push(join_connected(peer_config(&node.ws_url, &room, "Stays", None, None), STEP).await?);
    peers.push(join_connected(peer_config(&node.ws_url, &room, "Drops", None, None), STEP).await?);
    let drops = peers[1].id().clone();
    wait_info(&peers[0], &drops, "Stays sees Drops connected", STEP, |p| {
        p.connected
    })
    .await?;

    // The link to the SFU goes down; then Drops's media dies (its socket stays open).
    proxy.cut().await;
    peers[1].close_media().await;
    let deadline = Instant::now() + STEP;
    while sfu_has(key, sfu, drops.as_str()).await {
        if Instant::now() > deadline {
            return Err("the SFU never noticed Drops's media died".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The SFU's `left` could not reach signaling: Drops is still listed (a ghost, until
    // the re-sync) — proof that this test exercises the lost event.
    if !peers[0].view().participants.contains_key(&drops) {
        return Err(
            "Drops vanished while the event stream was down: the test did not lose the event"
                .into(),
        );
    }

    proxy.restore();
    let reason = peers[0]
        .wait_for_departure(&drops, STEP)
        .await
        .map_err(|e| format!("after the link came back, Stays never saw Drops leave: {e}"))?;
    if reason != LeftReason::ConnectionLost {
        return Err(format!("Drops left as {reason:?}, not connection_lost"));
    }
    let told = peers[1]
        .wait_for("Drops told it left", STEP, |v| v.left)
        .await
        .map_err(|e| format!("Drops itself: {e}"))?;
    if told != LeftReason::ConnectionLost {
        return Err(format!("Drops was told {told:?}"));
    }
    // Exactly once, and nobody else touched.
    let view = peers[0].view();
    let times = view
        .departures
        .iter()
        .filter(|(id, _)| id == &drops)
        .count();
    if times != 1 {
        return Err(format!("Drops's departure was announced {times} times"));
    }
    if !view.participants.contains_key(peers[0].id()) {
        return Err("Stays lost itself in the re-sync".into());
    }
    Ok(())
}

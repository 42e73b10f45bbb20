//! The WebRTC half of a synthetic peer, without signaling: one `webrtc` 0.21 peer
//! connection that publishes a tone on its first audio m-line and decodes every remote
//! track it is given. [`MediaPeer`] exchanges SDP as strings, so the same code serves a
//! peer joining through Chorus and two peers wired to each other in memory.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rtc::ice::mdns::MulticastDnsMode;
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sdp::extmap::{AUDIO_LEVEL_URI, SDES_MID_URI};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription,
    Registry, SettingEngineBuilder, StatsSelector, register_default_interceptors,
};
use webrtc::rtp_transceiver::RtpSender;

use super::PeerError;
use crate::tone::{DEFAULT_CANDIDATES, FRAME_SAMPLES, SAMPLE_RATE, ToneEncoder, ToneListener};

/// Opus as browsers offer it; the SFU expects exactly this.
const OPUS_PAYLOAD_TYPE: u8 = 111;
const OPUS_FMTP: &str = "minptime=10;useinbandfec=1";
/// 20 ms between connectivity checks instead of 200 ms: loopback connects in < 100 ms.
const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(20);
/// With the short interval, allow ≈ 2 s of checks per pair for a loaded test machine.
const ICE_MAX_BINDING_REQUESTS: u16 = 100;
const FRAME_DURATION: Duration = Duration::from_millis(20);

/// What a [`MediaPeer`] offers and does.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Tone to publish on the send m-line; `None` publishes nothing.
    pub tone_hz: Option<f32>,
    /// Receive-only audio m-lines after the send m-line (audio slots).
    pub slots: usize,
    /// Frequencies the receiving side looks for.
    pub candidates: Vec<f32>,
    /// The local address media is sent from (its one host candidate).
    pub ip: std::net::IpAddr,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            tone_hz: None,
            slots: 3,
            candidates: DEFAULT_CANDIDATES.to_vec(),
            ip: std::net::Ipv4Addr::LOCALHOST.into(),
        }
    }
}

/// What a peer has received so far, summed over all remote tracks.
#[derive(Debug, Clone, PartialEq)]
pub struct HearReport {
    /// Per candidate frequency: the 100 ms windows in which it was heard.
    pub tones: Vec<ToneCount>,
    /// 100 ms windows analysed, all tracks together.
    pub windows: u64,
    /// RTP packets received.
    pub packets: u64,
    /// Packets missing from the sequence numbers (gaps; reordering is not counted).
    pub lost: u64,
    /// Packets that did not decode as Opus.
    pub undecodable: u64,
    /// Remote tracks that appeared.
    pub tracks: usize,
    /// Time from the peer's creation to its first received packet.
    pub first_packet_after: Option<Duration>,
}

/// One candidate frequency and how often it was heard.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToneCount {
    /// The frequency, Hz.
    pub hz: f32,
    /// 100 ms windows in which it was present.
    pub windows: u64,
}

impl HearReport {
    /// Windows in which `hz` was heard (0 when `hz` is not a candidate).
    pub fn windows_with(&self, hz: f32) -> u64 {
        self.tones
            .iter()
            .find(|t| t.hz == hz)
            .map_or(0, |t| t.windows)
    }
}

/// What a peer has published so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Opus frames handed to the connection (one RTP packet each).
    pub frames: u64,
    /// Frames the connection refused.
    pub errors: u64,
    /// RTP packets the connection reports sent (its outbound-rtp statistics): proof that
    /// media left, not only that it was handed over.
    pub rtp_packets: u64,
}

#[derive(Debug, Default)]
struct Received {
    heard: Vec<u64>,
    windows: u64,
    packets: u64,
    lost: u64,
    undecodable: u64,
    tracks: usize,
    first_packet: Option<Instant>,
    /// When each of the last [`ARRIVALS_KEPT`] payloads arrived (by a hash of its bytes):
    /// the same frame heard by two peers of one process tells what one path adds.
    arrivals: std::collections::VecDeque<(u64, Instant)>,
}

/// Payload arrival times kept per peer (a minute of one stream).
const ARRIVALS_KEPT: usize = 3_000;

fn payload_hash(payload: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    payload.hash(&mut h);
    h.finish()
}

type Shared<T> = Arc<Mutex<T>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Callbacks run on the connection's driver loop: record, spawn, return.
struct Handler {
    gathering: watch::Sender<RTCIceGatheringState>,
    connection: watch::Sender<RTCPeerConnectionState>,
    candidates: Arc<[f32]>,
    received: Shared<Received>,
    tasks: Shared<Vec<JoinHandle<()>>>,
}

type Callback<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

// Written out rather than through `#[async_trait]` to spare a dependency: these are the
// signatures the macro generates, and each body finishes at once.
impl PeerConnectionEventHandler for Handler {
    fn on_ice_gathering_state_change<'life0, 'async_trait>(
        &'life0 self,
        state: RTCIceGatheringState,
    ) -> Callback<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.gathering.send_replace(state);
        Box::pin(std::future::ready(()))
    }

    fn on_connection_state_change<'life0, 'async_trait>(
        &'life0 self,
        state: RTCPeerConnectionState,
    ) -> Callback<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        tracing::debug!(?state, "peer connection state");
        self.connection.send_replace(state);
        Box::pin(std::future::ready(()))
    }

    fn on_track<'life0, 'async_trait>(
        &'life0 self,
        track: Arc<dyn TrackRemote>,
    ) -> Callback<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        lock(&self.received).tracks += 1;
        let task = tokio::spawn(receive_track(
            track,
            Arc::clone(&self.candidates),
            Arc::clone(&self.received),
        ));
        lock(&self.tasks).push(task);
        Box::pin(std::future::ready(()))
    }
}

/// Poll one remote track until it ends (an unpolled track drops media): count, check
/// sequence numbers, decode, detect tones.
async fn receive_track(
    track: Arc<dyn TrackRemote>,
    candidates: Arc<[f32]>,
    received: Shared<Received>,
) {
    if track.kind().await != RtpCodecKind::Audio {
        // Not expected from Chorus; drain so nothing piles up.
        while track.poll().await.is_some() {}
        return;
    }
    let mut listener = match ToneListener::new(&candidates) {
        Ok(listener) => Some(listener),
        Err(error) => {
            tracing::warn!(%error, "no Opus decoder: counting packets only");
            None
        }
    };
    let mut last_seq: Option<u16> = None;
    while let Some(event) = track.poll().await {
        let packet = match event {
            TrackRemoteEvent::OnRtpPacket(packet) => packet,
            TrackRemoteEvent::OnEnded => break,
            _ => continue,
        };
        let seq = packet.header.sequence_number;
        let gap = last_seq.map_or(1, |last| seq.wrapping_sub(last));
        let mut r = lock(&received);
        r.packets += 1;
        r.first_packet.get_or_insert_with(Instant::now);
        if gap == 0 || gap >= 0x8000 {
            // Duplicate or late (reordered) packet: already accounted as lost, if at all.
            continue;
        }
        r.lost += u64::from(gap - 1);
        last_seq = Some(seq);
        if packet.payload.is_empty() {
            continue;
        }
        if r.arrivals.len() == ARRIVALS_KEPT {
            r.arrivals.pop_front();
        }
        r.arrivals
            .push_back((payload_hash(&packet.payload), Instant::now()));
        let Some(listener) = listener.as_mut() else {
            continue;
        };
        let windows_before = listener.windows();
        match listener.push_packet(&packet.payload) {
            Ok(present) => {
                if r.heard.len() < candidates.len() {
                    r.heard.resize(candidates.len(), 0);
                }
                for i in present {
                    r.heard[i] += 1;
                }
                r.windows += listener.windows() - windows_before;
            }
            Err(_) => r.undecodable += 1,
        }
    }
}

/// One `webrtc` peer connection set up the way Chorus expects a browser's: a send audio
/// m-line first, then `slots` receive-only audio m-lines. Always [`close`](Self::close) it.
pub struct MediaPeer {
    pc: Arc<dyn PeerConnection>,
    gathering: watch::Receiver<RTCIceGatheringState>,
    connection: watch::Receiver<RTCPeerConnectionState>,
    candidates: Arc<[f32]>,
    received: Shared<Received>,
    sent: Shared<SendReport>,
    tasks: Shared<Vec<JoinHandle<()>>>,
    track: Option<Arc<TrackLocalStaticSample>>,
    sender: Option<Arc<dyn RtpSender>>,
    tone_hz: Option<f32>,
    created: Instant,
    closed: bool,
}

impl MediaPeer {
    /// A connection bound to `config.ip` with its transceivers in place. With `slots == 0` and
    /// no tone it has no transceivers at all: an answerer that takes what it is offered.
    pub async fn new(config: &MediaConfig) -> Result<Self, PeerError> {
        let mut media_engine = MediaEngine::default();
        media_engine.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type: OPUS_PAYLOAD_TYPE,
            },
            RtpCodecKind::Audio,
        )?;
        // As browsers do: the mid lets the SFU route before SSRCs are known, the audio level
        // is what it ranks speakers by (it never decodes audio).
        for uri in [SDES_MID_URI, AUDIO_LEVEL_URI] {
            media_engine.register_header_extension(
                RTCRtpHeaderExtensionCapability {
                    uri: uri.to_owned(),
                },
                RtpCodecKind::Audio,
                None,
            )?;
        }
        let registry = register_default_interceptors(Registry::new(), &mut media_engine)?;
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), Some(ICE_MAX_BINDING_REQUESTS))
            .build();
        let (gathering_tx, gathering) = watch::channel(RTCIceGatheringState::New);
        let (connection_tx, connection) = watch::channel(RTCPeerConnectionState::New);
        let candidates: Arc<[f32]> = config.candidates.clone().into();
        let received = Arc::new(Mutex::new(Received {
            heard: vec![0; candidates.len()],
            ..Received::default()
        }));
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let handler = Handler {
            gathering: gathering_tx,
            connection: connection_tx,
            candidates: Arc::clone(&candidates),
            received: Arc::clone(&received),
            tasks: Arc::clone(&tasks),
        };
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .with_setting_engine(settings)
            .with_handler(Arc::new(handler))
            // An explicit address (loopback by default): a wildcard bind skips loopback
            // interfaces in 0.21.
            .with_udp_addrs(vec![std::net::SocketAddr::new(config.ip, 0).to_string()])
            .build()
            .await?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let mut peer = Self {
            pc,
            gathering,
            connection,
            candidates,
            received,
            sent: Arc::default(),
            tasks,
            track: None,
            sender: None,
            tone_hz: config.tone_hz,
            created: Instant::now(),
            closed: false,
        };
        if let Err(error) = peer.add_transceivers(config).await {
            peer.close().await;
            return Err(error);
        }
        Ok(peer)
    }

    async fn add_transceivers(&mut self, config: &MediaConfig) -> Result<(), PeerError> {
        if config.tone_hz.is_none() && config.slots == 0 {
            return Ok(());
        }
        let ssrc = rand_ssrc();
        let track = Arc::new(TrackLocalStaticSample::new(
            Instant::now(),
            MediaStreamTrack::new(
                format!("chorus-bench-{ssrc:08x}"),
                format!("mic-{ssrc:08x}"),
                "mic".to_owned(),
                RtpCodecKind::Audio,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: opus_codec(),
                    ..Default::default()
                }],
            ),
        )?);
        // Sendrecv like a browser's microphone m-line; the SFU decides what comes back.
        let transceiver = self
            .pc
            .add_transceiver_from_track(
                Arc::clone(&track) as Arc<dyn TrackLocal>,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendrecv,
                    ..Default::default()
                }),
            )
            .await?;
        self.sender = transceiver.sender().await?;
        self.track = Some(track);
        for _ in 0..config.slots {
            self.pc
                .add_transceiver_from_kind(
                    RtpCodecKind::Audio,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Recvonly,
                        ..Default::default()
                    }),
                )
                .await?;
        }
        Ok(())
    }

    /// Create the offer, apply it, wait for ICE gathering to complete (no trickle) and
    /// return the complete SDP.
    pub async fn create_offer(&mut self, timeout: Duration) -> Result<String, PeerError> {
        let offer = self.pc.create_offer(None).await?;
        self.pc.set_local_description(offer).await?;
        self.local_sdp(timeout).await
    }

    /// Answer a complete remote offer: apply it, create and apply the answer, wait for
    /// gathering and return the complete SDP.
    pub async fn answer(&mut self, offer: String, timeout: Duration) -> Result<String, PeerError> {
        self.pc
            .set_remote_description(RTCSessionDescription::offer(offer)?)
            .await?;
        let answer = self.pc.create_answer(None).await?;
        self.pc.set_local_description(answer).await?;
        self.local_sdp(timeout).await
    }

    /// Apply the remote answer to our offer.
    pub async fn apply_answer(&mut self, answer: String) -> Result<(), PeerError> {
        self.pc
            .set_remote_description(RTCSessionDescription::answer(answer)?)
            .await?;
        Ok(())
    }

    async fn local_sdp(&mut self, timeout: Duration) -> Result<String, PeerError> {
        let gathered = self
            .gathering
            .wait_for(|s| *s == RTCIceGatheringState::Complete);
        match tokio::time::timeout(timeout, gathered).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(PeerError::Closed),
            Err(_) => return Err(PeerError::Timeout("ICE gathering")),
        }
        let local = self.pc.local_description().await.ok_or(PeerError::Closed)?;
        Ok(local.sdp)
    }

    /// Start publishing the configured tone, 20 ms frames, once media is connected. Does
    /// nothing without a tone or a send m-line.
    pub fn start_publishing(&mut self) {
        let (Some(hz), Some(track), Some(sender)) =
            (self.tone_hz, self.track.clone(), self.sender.clone())
        else {
            return;
        };
        let task = tokio::spawn(publish(
            hz,
            track,
            sender,
            self.connection.clone(),
            Arc::clone(&self.sent),
        ));
        lock(&self.tasks).push(task);
    }

    /// Wait until the connection is connected (ICE and DTLS).
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), PeerError> {
        let mut connection = self.connection.clone();
        let done = connection.wait_for(|s| {
            matches!(
                s,
                RTCPeerConnectionState::Connected
                    | RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Closed
            )
        });
        let state = match tokio::time::timeout(timeout, done).await {
            Ok(Ok(state)) => *state,
            Ok(Err(_)) => return Err(PeerError::Closed),
            Err(_) => return Err(PeerError::Timeout("media connection")),
        };
        match state {
            RTCPeerConnectionState::Connected => Ok(()),
            other => Err(PeerError::MediaFailed(format!("connection state {other}"))),
        }
    }

    /// The connection's current state.
    pub fn state(&self) -> RTCPeerConnectionState {
        *self.connection.borrow()
    }

    /// When the payloads received lately arrived: (hash of the payload's bytes, instant),
    /// oldest first.
    pub fn arrivals(&self) -> Vec<(u64, Instant)> {
        lock(&self.received).arrivals.iter().copied().collect()
    }

    /// Everything received so far.
    pub fn heard(&self) -> HearReport {
        let r = lock(&self.received);
        HearReport {
            tones: self
                .candidates
                .iter()
                .zip(r.heard.iter().chain(std::iter::repeat(&0)))
                .map(|(hz, windows)| ToneCount {
                    hz: *hz,
                    windows: *windows,
                })
                .collect(),
            windows: r.windows,
            packets: r.packets,
            lost: r.lost,
            undecodable: r.undecodable,
            tracks: r.tracks,
            first_packet_after: r
                .first_packet
                .map(|t| t.saturating_duration_since(self.created)),
        }
    }

    /// Everything published so far.
    pub async fn sent(&self) -> SendReport {
        let stats = self.pc.get_stats(Instant::now(), StatsSelector::None).await;
        let rtp_packets = stats
            .outbound_rtp_streams()
            .map(|s| s.sent_rtp_stream_stats.packets_sent)
            .sum();
        SendReport {
            rtp_packets,
            ..*lock(&self.sent)
        }
    }

    /// Close the connection and stop its tasks. Idempotent. Dropping an unclosed peer
    /// leaks the connection's driver and socket (`webrtc` 0.21), hence this.
    pub async fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if let Err(error) = self.pc.close().await {
            tracing::debug!(%error, "closing the peer connection");
        }
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

impl Drop for MediaPeer {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        // Last resort so that a forgotten close (or a panicking test) leaks nothing.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let pc = Arc::clone(&self.pc);
            runtime.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

/// Write one Opus frame every 20 ms once the connection is up, until it goes away.
async fn publish(
    hz: f32,
    track: Arc<TrackLocalStaticSample>,
    sender: Arc<dyn RtpSender>,
    mut connection: watch::Receiver<RTCPeerConnectionState>,
    sent: Shared<SendReport>,
) {
    if connection
        .wait_for(|s| *s == RTCPeerConnectionState::Connected)
        .await
        .is_err()
    {
        return;
    }
    let payload_type = match sender.get_parameters().await {
        Ok(params) => params
            .rtp_parameters
            .codecs
            .first()
            .map_or(OPUS_PAYLOAD_TYPE, |c| c.payload_type),
        Err(_) => OPUS_PAYLOAD_TYPE,
    };
    let Some(ssrc) = track.ssrcs().await.first().copied() else {
        return;
    };
    let mut encoder = match ToneEncoder::new(Some(hz)) {
        Ok(encoder) => encoder,
        Err(error) => {
            tracing::warn!(%error, "no Opus encoder: not publishing");
            return;
        }
    };
    let mut ticker = tokio::time::interval(FRAME_DURATION);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    debug_assert_eq!(
        FRAME_DURATION.as_micros(),
        (FRAME_SAMPLES as u128 * 1_000_000) / u128::from(SAMPLE_RATE)
    );
    loop {
        ticker.tick().await;
        if matches!(
            *connection.borrow(),
            RTCPeerConnectionState::Closed | RTCPeerConnectionState::Failed
        ) {
            return;
        }
        let frame = match encoder.next_frame() {
            Ok(frame) => frame,
            Err(error) => {
                tracing::warn!(%error, "Opus encoding failed: not publishing");
                return;
            }
        };
        let sample = Sample {
            data: frame.into(),
            duration: FRAME_DURATION,
            ..Sample::new(Instant::now())
        };
        let level = AudioLevelExtension {
            level: encoder.last_level(),
            voice: true,
        };
        let result = track
            .sample_writer(ssrc, payload_type)
            .with_audio_level(level)
            .write_sample(&sample)
            .await;
        let mut s = lock(&sent);
        match result {
            Ok(()) => s.frames += 1,
            Err(_) => s.errors += 1,
        }
    }
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: SAMPLE_RATE,
        channels: 2,
        sdp_fmtp_line: OPUS_FMTP.to_owned(),
        rtcp_feedback: vec![],
    }
}

/// An SSRC that differs between peers of one process (no `rand` dependency needed).
fn rand_ssrc() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    (hasher.finish() as u32).max(1)
}

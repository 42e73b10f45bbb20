//! Counters of the forwarding path. Plain integers owned by the engine loop (no atomics,
//! no locks on the hot path); a snapshot is copied out on request for `NodeStats`.

/// Why a packet (or datagram) was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The datagram came from an address no participant owns (and was not a STUN check
    /// we could attribute).
    UnknownSource,
    /// Not STUN, DTLS, RTP or RTCP, or refused by the WebRTC stack.
    Malformed,
    /// The sender's grants lack `publish`.
    NotPublisher,
    /// The sender is muted by a moderator.
    Muted,
    /// Every audio slot of a subscriber was held by a louder or newer speaker.
    NoFreeSlot,
    /// The subscriber's media line cannot carry the sender's codec.
    CodecMismatch,
    /// Media arrived on a media line the participant is not meant to send on.
    WrongMediaLine,
    /// The kernel would not take an outgoing datagram (send buffer full) or it failed.
    SendFailed,
}

/// Counters since start. Packets are datagrams on the media sockets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Datagrams received on the media sockets.
    pub packets_in: u64,
    /// Bytes received on the media sockets.
    pub bytes_in: u64,
    /// Datagrams handed to the media sockets.
    pub packets_out: u64,
    /// Bytes handed to the media sockets.
    pub bytes_out: u64,
    /// Audio frames written to a subscriber (one per subscriber per frame).
    pub packets_forwarded: u64,
    /// Frames of this node's speakers sent to another node of a room that spans nodes
    /// (one per speaker frame per peer node).
    pub packets_relayed_out: u64,
    /// Frames other nodes relayed here (each then forwarded to local subscribers).
    pub packets_relayed_in: u64,
    /// Total of all `dropped_*` counters.
    pub packets_dropped: u64,
    /// See [`DropReason::UnknownSource`].
    pub dropped_unknown_source: u64,
    /// See [`DropReason::Malformed`].
    pub dropped_malformed: u64,
    /// See [`DropReason::NotPublisher`].
    pub dropped_not_publisher: u64,
    /// See [`DropReason::Muted`].
    pub dropped_muted: u64,
    /// See [`DropReason::NoFreeSlot`].
    pub dropped_no_free_slot: u64,
    /// See [`DropReason::CodecMismatch`].
    pub dropped_codec_mismatch: u64,
    /// See [`DropReason::WrongMediaLine`].
    pub dropped_wrong_media_line: u64,
    /// See [`DropReason::SendFailed`].
    pub dropped_send_failed: u64,
}

impl Metrics {
    /// Dropped packets by reason, with the reasons' snake_case names (the `reason` label
    /// of `chorus_sfu_packets_dropped_total`).
    pub fn drops(&self) -> [(&'static str, u64); 8] {
        [
            ("unknown_source", self.dropped_unknown_source),
            ("malformed", self.dropped_malformed),
            ("not_publisher", self.dropped_not_publisher),
            ("muted", self.dropped_muted),
            ("no_free_slot", self.dropped_no_free_slot),
            ("codec_mismatch", self.dropped_codec_mismatch),
            ("wrong_media_line", self.dropped_wrong_media_line),
            ("send_failed", self.dropped_send_failed),
        ]
    }

    /// Count one dropped packet.
    pub fn drop_packet(&mut self, reason: DropReason) {
        self.packets_dropped += 1;
        let c = match reason {
            DropReason::UnknownSource => &mut self.dropped_unknown_source,
            DropReason::Malformed => &mut self.dropped_malformed,
            DropReason::NotPublisher => &mut self.dropped_not_publisher,
            DropReason::Muted => &mut self.dropped_muted,
            DropReason::NoFreeSlot => &mut self.dropped_no_free_slot,
            DropReason::CodecMismatch => &mut self.dropped_codec_mismatch,
            DropReason::WrongMediaLine => &mut self.dropped_wrong_media_line,
            DropReason::SendFailed => &mut self.dropped_send_failed,
        };
        *c += 1;
    }
}

// Microphone, the peer connection to the SFU, and the <audio> elements that play it.
// The offer shape is the protocol's contract: one send m-line (the mic) first, then
// AUDIO_SLOTS receive-only m-lines that the SFU fills with the loudest speakers.

export const AUDIO_SLOTS = 3;
const ICE_GATHER_CAP_MS = 2000;

const MIC_CONSTRAINTS = {
  audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
  video: false,
};

/**
 * Playback unlocked by a user gesture. Mobile browsers only let audio play once the user
 * has tapped, and (Safari) only on elements that were play()ed inside that tap, so the
 * tap handler calls unlock() synchronously and the remote tracks later reuse its elements.
 */
export class AudioOut {
  constructor(sink) {
    this.sink = sink;
    this.ctx = null;
    this.free = [];
    this.used = new Map(); // track id -> <audio>
  }

  /** Must run inside a click/tap handler, before any await. */
  unlock() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (Ctx && !this.ctx) {
      this.ctx = new Ctx();
    }
    if (this.ctx && this.ctx.state !== 'running') {
      this.ctx.resume().catch(() => {});
    }
    const silence = this.ctx && this.ctx.createMediaStreamDestination
      ? this.ctx.createMediaStreamDestination().stream
      : null;
    while (this.free.length + this.used.size < AUDIO_SLOTS) {
      this.free.push(this.makeElement());
    }
    for (const el of this.free) {
      if (silence) {
        el.srcObject = silence;
      }
      el.play().catch(() => {});
    }
  }

  makeElement() {
    const el = document.createElement('audio');
    el.autoplay = true;
    el.setAttribute('playsinline', '');
    this.sink.appendChild(el);
    return el;
  }

  /** Play one remote track in its own element. */
  play(track) {
    if (this.used.has(track.id)) {
      return this.used.get(track.id);
    }
    const el = this.free.shift() || this.makeElement();
    el.srcObject = new MediaStream([track]);
    el.dataset.track = track.id;
    this.used.set(track.id, el);
    el.play().catch((e) => console.warn('chorus: audio playback blocked', e));
    track.addEventListener('ended', () => this.release(track.id));
    return el;
  }

  release(trackId) {
    const el = this.used.get(trackId);
    if (!el) {
      return;
    }
    this.used.delete(trackId);
    el.pause();
    el.srcObject = null;
    delete el.dataset.track;
    this.free.push(el);
  }

  releaseAll() {
    for (const id of [...this.used.keys()]) {
      this.release(id);
    }
  }
}

/** Ask for the microphone; errors become sentences for the user. */
export async function openMic() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error(window.isSecureContext
      ? 'This browser cannot use a microphone.'
      : 'The microphone needs a secure page: open this room over https.');
  }
  try {
    return await navigator.mediaDevices.getUserMedia(MIC_CONSTRAINTS);
  } catch (e) {
    const words = {
      NotAllowedError: 'Microphone access was refused. Allow it in the browser, then join again.',
      NotFoundError: 'No microphone was found.',
      NotReadableError: 'The microphone is busy in another app.',
    };
    throw new Error(words[e.name] || `Could not open the microphone (${e.name || e.message}).`);
  }
}

/**
 * A peer connection with the mic on the first transceiver and AUDIO_SLOTS receive slots,
 * and its complete offer (gathering finished or capped: there is no trickle).
 */
export async function createPeer(micTrack, micStream, onTrack) {
  const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
  pc.addTransceiver(micTrack, { direction: 'sendonly', streams: [micStream] });
  for (let i = 0; i < AUDIO_SLOTS; i += 1) {
    pc.addTransceiver('audio', { direction: 'recvonly' });
  }
  pc.addEventListener('track', (ev) => onTrack(ev.track, ev.transceiver));
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  await gatheringDone(pc, ICE_GATHER_CAP_MS);
  return { pc, offer: pc.localDescription.sdp };
}

function gatheringDone(pc, capMs) {
  if (pc.iceGatheringState === 'complete') {
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === 'complete') {
        done();
      }
    };
    const timer = setTimeout(done, capMs);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

export function stopStream(stream) {
  if (stream) {
    for (const t of stream.getTracks()) {
      t.stop();
    }
  }
}

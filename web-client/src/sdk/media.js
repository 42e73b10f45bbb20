// Microphone and the peer connection to the SFU; no DOM. The offer shape is the
// protocol's contract: one send m-line (the mic) first, then AUDIO_SLOTS receive-only
// m-lines that the SFU fills with the loudest speakers.

export const AUDIO_SLOTS = 3;
const ICE_GATHER_CAP_MS = 2000;

const VOICE = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

/**
 * Ask for the microphone (`deviceId` picks one of `listMicrophones()`); errors become
 * sentences for the user.
 * @param {string} [deviceId]
 * @returns {Promise<MediaStream>}
 */
export async function openMic(deviceId) {
  if (!globalThis.navigator || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error(globalThis.isSecureContext === false
      ? 'The microphone needs a secure page: open this room over https.'
      : 'This browser cannot use a microphone.');
  }
  const audio = deviceId ? { ...VOICE, deviceId: { exact: deviceId } } : VOICE;
  try {
    return await navigator.mediaDevices.getUserMedia({ audio, video: false });
  } catch (e) {
    const words = {
      NotAllowedError: 'Microphone access was refused. Allow it in the browser, then join again.',
      NotFoundError: 'No microphone was found.',
      NotReadableError: 'The microphone is busy in another app.',
      OverconstrainedError: 'That microphone is no longer available.',
    };
    throw new Error(words[e.name] || `Could not open the microphone (${e.name || e.message}).`);
  }
}

/**
 * The microphones the browser offers: [{ deviceId, label }]. Labels are empty until
 * the page has been allowed the microphone once (browsers hide them before).
 */
export async function listMicrophones() {
  if (!globalThis.navigator || !navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) {
    return [];
  }
  const all = await navigator.mediaDevices.enumerateDevices();
  return all.filter((d) => d.kind === 'audioinput')
    .map((d, i) => ({ deviceId: d.deviceId, label: d.label || `Microphone ${i + 1}` }));
}

/**
 * A peer connection with the mic on the first transceiver and AUDIO_SLOTS receive slots,
 * and its complete offer (gathering finished or capped: there is no trickle).
 * `onTrack(track, slot)` is called for each remote track (slot 0..AUDIO_SLOTS-1).
 */
export async function createPeer(micTrack, micStream, onTrack) {
  const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
  pc.addTransceiver(micTrack, { direction: 'sendonly', streams: [micStream] });
  const slots = [];
  for (let i = 0; i < AUDIO_SLOTS; i += 1) {
    slots.push(pc.addTransceiver('audio', { direction: 'recvonly' }));
  }
  pc.addEventListener('track', (ev) => onTrack(ev.track, slots.indexOf(ev.transceiver)));
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

/**
 * Resolves when the peer connection's ICE/DTLS is connected; rejects if it fails, is
 * closed, or takes longer than `capMs`.
 */
export function mediaConnected(pc, capMs) {
  return new Promise((resolve, reject) => {
    const done = (err) => {
      clearTimeout(timer);
      pc.removeEventListener('connectionstatechange', check);
      if (err) {
        reject(err);
      } else {
        resolve();
      }
    };
    const check = () => {
      const s = pc.connectionState;
      if (s === 'connected') {
        done();
      } else if (s === 'failed' || s === 'closed') {
        done(new Error(`the audio connection ${s}`));
      }
    };
    const timer = setTimeout(() => done(new Error('the audio connection did not connect in time')), capMs);
    pc.addEventListener('connectionstatechange', check);
    check();
  });
}

export function stopStream(stream) {
  if (stream) {
    for (const t of stream.getTracks()) {
      t.stop();
    }
  }
}

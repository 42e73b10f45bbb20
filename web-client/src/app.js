// The page's flow: the landing page creates a room; the room page (/r/<id>) joins it,
// keeps the participant list and speaking indicators, and handles mute, leave and loss.
// State lives here; protocol.js talks to the server, media.js to the browser's media.

import { Signal, ServerError, describeError, fetchRoom } from './protocol.js';
import { AudioOut, openMic, createPeer, stopStream } from './media.js';
import * as ui from './ui.js';

const { el } = ui;
const NAME_KEY = 'chorus.name';
const SPEAKING_HOLD_MS = 400;
const MAX_NAME_CHARS = 40;

const state = {
  roomId: null,
  room: null, // RoomInfo
  you: null, // our participant id while in the room
  people: new Map(), // id -> ParticipantInfo
  levels: new Map(), // id -> { level, at }
  signal: null,
  pc: null,
  mic: null, // MediaStream
  muted: false,
  phase: 'out', // out | joining | in | leaving | left
};

const audio = new AudioOut(el.audioSink);

// For tests and debugging: the live peer connection (for getStats) and a state snapshot.
window.chorus = {
  get pc() { return state.pc; },
  get you() { return state.you; },
  get phase() { return state.phase; },
  get participants() { return [...state.people.values()]; },
};

// ---------------------------------------------------------------- start-up

function roomIdFromPath(pathname) {
  const m = /^\/r\/([A-Za-z0-9_-]{1,64})\/?$/.exec(pathname);
  return m ? m[1] : null;
}

function savedName() {
  try {
    return localStorage.getItem(NAME_KEY) || '';
  } catch {
    return '';
  }
}

function saveName(name) {
  try {
    localStorage.setItem(NAME_KEY, name);
  } catch {
    // Private mode: the name is just not remembered.
  }
}

/** The same rules as the server (proto::signal::clean_name), so errors come early. */
function checkName(raw, what) {
  const name = raw.trim();
  if (!name) {
    return { error: `Please enter ${what}.` };
  }
  if ([...name].length > MAX_NAME_CHARS) {
    return { error: `${what[0].toUpperCase()}${what.slice(1)} may be at most ${MAX_NAME_CHARS} characters.` };
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) {
    return { error: `${what[0].toUpperCase()}${what.slice(1)} holds characters that cannot be shown.` };
  }
  return { name };
}

function start() {
  const id = roomIdFromPath(window.location.pathname);
  if (window.location.pathname.startsWith('/r/') && !id) {
    ui.showView('landing');
    ui.showToast('This room link is not valid. Create a new room below.', { code: 'invalid_link' });
  } else if (id) {
    startRoomPage(id);
  } else {
    startLanding();
  }
}

// ---------------------------------------------------------------- landing

function startLanding() {
  ui.showView('landing');
  document.title = 'Chorus';
  el.createName.value = savedName();
  el.createForm.addEventListener('submit', onCreate);
}

async function onCreate(ev) {
  ev.preventDefault();
  ui.hideToast();
  const who = checkName(el.createName.value, 'your name');
  const title = checkName(el.createTitle.value, 'a room title');
  const problem = who.error || title.error;
  if (problem) {
    ui.showToast(problem, { code: 'invalid_input' });
    (who.error ? el.createName : el.createTitle).focus();
    return;
  }
  saveName(who.name);
  ui.setBusy(el.createBtn, true, 'Creating…');
  const signal = new Signal();
  try {
    await signal.open(who.name);
    const created = await signal.request({ type: 'create_room', name: title.name }, 'room_created');
    signal.close();
    window.location.assign(created.room.link);
  } catch (e) {
    signal.close();
    ui.setBusy(el.createBtn, false);
    ui.showToast(describeError(e), { code: e.code || '' });
  }
}

// ---------------------------------------------------------------- room page

function startRoomPage(id) {
  state.roomId = id;
  ui.showView('room');
  ui.showRoomPhase('out');
  el.roomTitle.textContent = 'Voice room';
  el.shareLink.value = new URL(`/r/${id}`, window.location.origin).href;
  el.joinName.value = savedName();
  if (typeof navigator.share === 'function') {
    el.shareBtn.hidden = false;
  }
  el.copyBtn.addEventListener('click', onCopy);
  el.shareBtn.addEventListener('click', onShare);
  el.joinForm.addEventListener('submit', onJoin);
  el.muteBtn.addEventListener('click', onMute);
  el.leaveBtn.addEventListener('click', onLeave);
  setInterval(expireLevels, 100);

  fetchRoom(id).then((found) => {
    if (found) {
      setRoomInfo(found.room);
      const n = Number(found.participants) || 0;
      el.roomNote.hidden = state.phase === 'in';
      el.roomNote.textContent = n === 0 ? 'Nobody is here yet.' : `${n} ${n === 1 ? 'person is' : 'people are'} here.`;
    } else if (state.phase !== 'in') {
      el.roomTitle.textContent = 'Room not found';
      el.roomNote.hidden = false;
      el.roomNote.textContent = 'No room on this server has this link. It may have ended.';
    }
  }).catch(() => {
    // The socket will tell the real story when the user joins.
  });
}

function setRoomInfo(room) {
  state.room = room;
  el.roomTitle.textContent = room.name;
  document.title = `${room.name} · Chorus`;
  el.shareLink.value = new URL(room.link, window.location.origin).href;
}

async function onCopy() {
  const url = el.shareLink.value;
  try {
    await navigator.clipboard.writeText(url);
  } catch {
    el.shareLink.select();
    // eslint-disable-next-line no-restricted-syntax
    document.execCommand && document.execCommand('copy');
  }
  el.copyBtn.textContent = 'Copied';
  setTimeout(() => { el.copyBtn.textContent = 'Copy'; }, 1500);
}

async function onShare() {
  try {
    await navigator.share({ title: state.room ? state.room.name : 'Chorus room', url: el.shareLink.value });
  } catch {
    // Cancelled by the user.
  }
}

// ---------------------------------------------------------------- joining

function onJoin(ev) {
  ev.preventDefault();
  // Unlock playback first, synchronously, while the tap still counts as a user gesture.
  audio.unlock();
  if (state.phase === 'joining' || state.phase === 'in') {
    return;
  }
  ui.hideToast();
  const who = checkName(el.joinName.value, 'your name');
  if (who.error) {
    ui.showToast(who.error, { code: 'invalid_input' });
    el.joinName.focus();
    return;
  }
  saveName(who.name);
  join(who.name);
}

async function ensureSignal(name) {
  if (state.signal && state.signal.isOpen && state.signal.name === name) {
    return state.signal;
  }
  if (state.signal) {
    state.signal.close();
  }
  const signal = new Signal();
  state.signal = signal;
  signal.addEventListener('message', (ev) => { if (state.signal === signal) onServerMessage(ev.detail); });
  signal.addEventListener('server-error', (ev) => {
    ui.showToast(describeError(ev.detail), { code: ev.detail.code });
  });
  signal.addEventListener('closed', (ev) => { if (state.signal === signal) onSocketClosed(ev.detail); });
  await signal.open(name);
  ui.setNetStatus('', 'online');
  return signal;
}

async function join(name) {
  state.phase = 'joining';
  ui.setBusy(el.joinBtn, true, 'Joining…');
  try {
    const signal = await ensureSignal(name);
    state.mic = await openMic();
    const [track] = state.mic.getAudioTracks();
    track.enabled = !state.muted;
    const { pc, offer } = await createPeer(track, state.mic, (t) => audio.play(t));
    state.pc = pc;
    pc.addEventListener('connectionstatechange', () => onPeerState(pc));
    const joined = await signal.request({ type: 'join', room: state.roomId, offer }, 'joined', 20_000);
    // Take the room in before awaiting anything, so updates that follow land on it.
    state.you = joined.you;
    state.people = new Map(joined.participants.map((p) => [p.id, p]));
    state.levels.clear();
    setRoomInfo(joined.room);
    state.phase = 'in';
    el.roomNote.hidden = true;
    ui.showRoomPhase('in');
    ui.setMuteButton(state.muted);
    render();
    onPeerState(pc);
    await pc.setRemoteDescription({ type: 'answer', sdp: joined.answer });
    if (state.muted) {
      signal.send({ type: 'set_muted', muted: true });
    }
  } catch (e) {
    console.warn('chorus: join failed', e);
    if (state.phase === 'in' && state.signal) {
      state.signal.send({ type: 'leave' });
    }
    teardownMedia();
    state.phase = 'out';
    ui.showRoomPhase('out');
    const words = e instanceof ServerError ? describeError(e) : (e.message || String(e));
    ui.showToast(words, { code: e.code || 'join_failed' });
  } finally {
    ui.setBusy(el.joinBtn, false);
  }
}

function onPeerState(pc) {
  if (pc !== state.pc || state.phase !== 'in') {
    return;
  }
  const words = {
    new: 'Connecting audio…',
    connecting: 'Connecting audio…',
    connected: 'Connected',
    disconnected: 'Audio interrupted, reconnecting…',
    failed: 'Audio connection failed.',
    closed: 'Audio closed.',
  };
  el.roomStatus.textContent = words[pc.connectionState] || '';
  el.roomStatus.dataset.state = pc.connectionState;
  if (pc.connectionState === 'failed') {
    ui.showToast('Could not connect audio to the server. A firewall may block it; try another network.', { code: 'media_failed' });
  }
}

// ---------------------------------------------------------------- in the room

function onServerMessage(msg) {
  switch (msg.type) {
    case 'participant_updated':
      if (state.phase === 'in') {
        if (!state.people.has(msg.participant.id)) {
          ui.announce(`${msg.participant.name} joined`);
        }
        state.people.set(msg.participant.id, msg.participant);
        if (msg.participant.id === state.you && msg.participant.muted !== state.muted) {
          // The server is the authority on what others see; keep the button honest.
          ui.setMuteButton(msg.participant.muted);
        }
        render();
      }
      break;
    case 'participant_left':
      if (state.phase === 'in' && msg.participant === state.you) {
        leaveLocally(leftReasonWords(msg.reason));
      } else if (state.phase === 'in') {
        const gone = state.people.get(msg.participant);
        if (gone) {
          ui.announce(`${gone.name} left`);
        }
        state.people.delete(msg.participant);
        state.levels.delete(msg.participant);
        render();
      }
      break;
    case 'speaking':
      if (state.phase === 'in') {
        const now = performance.now();
        for (const { participant, level } of msg.levels || []) {
          state.levels.set(participant, { level: Number(level) || 0, at: now });
        }
        render();
      }
      break;
    case 'left':
      if (state.phase === 'in') {
        leaveLocally(leftReasonWords(msg.reason));
      }
      break;
    default:
      break;
  }
}

function leftReasonWords(reason) {
  return {
    left: 'You left the room.',
    connection_lost: 'Your audio connection was lost.',
    removed: 'You were removed from the room.',
    room_closed: 'The room was closed.',
    disconnected: 'You were disconnected.',
  }[reason] || 'You are no longer in the room.';
}

function expireLevels() {
  const now = performance.now();
  let changed = false;
  for (const [id, { at }] of state.levels) {
    if (now - at > SPEAKING_HOLD_MS) {
      state.levels.delete(id);
      changed = true;
    }
  }
  if (changed && state.phase === 'in') {
    render();
  }
}

function render() {
  const levels = new Map([...state.levels].map(([id, v]) => [id, v.level]));
  ui.renderParticipants([...state.people.values()], state.you, levels);
}

function onMute() {
  if (state.phase !== 'in') {
    return;
  }
  state.muted = !state.muted;
  if (state.mic) {
    for (const t of state.mic.getAudioTracks()) {
      t.enabled = !state.muted;
    }
  }
  state.signal.send({ type: 'set_muted', muted: state.muted });
  const me = state.people.get(state.you);
  if (me) {
    state.people.set(state.you, { ...me, muted: state.muted });
  }
  ui.setMuteButton(state.muted);
  render();
}

async function onLeave() {
  if (state.phase !== 'in') {
    return;
  }
  state.phase = 'leaving';
  el.leaveBtn.disabled = true;
  try {
    await state.signal.request({ type: 'leave' }, 'left', 3000);
  } catch {
    // Leaving locally is what matters; the server also drops us when the socket goes.
  }
  leaveLocally('You left the room.');
  el.leaveBtn.disabled = false;
}

function leaveLocally(note) {
  teardownMedia();
  state.phase = 'left';
  state.you = null;
  state.people.clear();
  state.levels.clear();
  ui.showRoomPhase('left', note);
}

function teardownMedia() {
  if (state.pc) {
    state.pc.close();
    state.pc = null;
  }
  stopStream(state.mic);
  state.mic = null;
  audio.releaseAll();
}

function onSocketClosed() {
  ui.setNetStatus('Offline', 'offline');
  if (state.phase === 'in' || state.phase === 'leaving' || state.phase === 'joining') {
    if (state.phase !== 'joining') {
      leaveLocally('The connection to the server was lost.');
    }
    ui.showToast('Lost the connection to the server. Check your network, then rejoin.', { code: 'disconnected' });
  }
}

start();

// The page's flow. The landing page creates a room with the creator's media (the room is
// pending until that media connects); the room page (/r/<id>) joins it as a listener,
// shows the stage and the audience, and offers seats, hands, mute and moderation.
// State lives here; protocol.js talks to the server, media.js to the browser's media.

import { Signal, ServerError, describeError, fetchRoom } from './protocol.js';
import { AudioOut, openMic, createPeer, stopStream } from './media.js';
import * as ui from './ui.js';

const { el } = ui;
const NAME_KEY = 'chorus.name';
// The server's user token: sent in every hello so we stay the same user (and keep our
// roles, e.g. owner) across reloads.
const TOKEN_KEY = 'chorus.user_token';
const SPEAKING_HOLD_MS = 400;
const MAX_NAME_CHARS = 40;
const ENTER_TIMEOUT_MS = 20_000;

const state = {
  roomId: null,
  room: null, // RoomInfo
  user: null, // our user id (from welcome)
  you: null, // our participant id while in the room
  people: new Map(), // id -> ParticipantInfo
  levels: new Map(), // id -> { level, at }
  signal: null,
  pc: null,
  mic: null, // MediaStream
  selfMuted: false,
  phase: 'out', // out | joining | in | leaving | left | final
  rollback: null, // the server's words when our pending room was rolled back
  sheetFor: null, // whose moderator sheet is open
};

const audio = new AudioOut(el.audioSink);

// For tests and debugging: the live peer connection (for getStats) and a state snapshot.
window.chorus = {
  get pc() { return state.pc; },
  get you() { return state.you; },
  get user() { return state.user; },
  get phase() { return state.phase; },
  get room() { return state.room; },
  get participants() { return [...state.people.values()]; },
};

// ---------------------------------------------------------------- start-up

function roomIdFromPath(pathname) {
  const m = /^\/r\/([A-Za-z0-9_-]{1,64})\/?$/.exec(pathname);
  return m ? m[1] : null;
}

function stored(key) {
  try {
    return localStorage.getItem(key) || '';
  } catch {
    return '';
  }
}

function store(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    // Private mode: not remembered, which only costs a new guest identity next time.
  }
}

/** The same rules as the server (proto::signal::clean_name), so errors come early. */
function checkName(raw, what) {
  const name = raw.trim();
  const What = `${what[0].toUpperCase()}${what.slice(1)}`;
  if (!name) {
    return { error: `Please enter ${what}.` };
  }
  if ([...name].length > MAX_NAME_CHARS) {
    return { error: `${What} may be at most ${MAX_NAME_CHARS} characters.` };
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) {
    return { error: `${What} holds characters that cannot be shown.` };
  }
  return { name };
}

/** A whole number in [min, max], or an error in words. */
function checkCount(raw, what, min, max) {
  const text = String(raw).trim();
  if (!/^\d+$/.test(text)) {
    return { error: `${what} must be a whole number from ${min} to ${max}.` };
  }
  const n = Number(text);
  if (n < min || n > max) {
    return { error: `${what} must be from ${min} to ${max}.` };
  }
  return { n };
}

function start() {
  bindRoomControls();
  const id = roomIdFromPath(window.location.pathname);
  if (window.location.pathname.startsWith('/r/') && !id) {
    startLanding();
    ui.showToast('This room link is not valid. Create a new room below.', { code: 'invalid_link' });
  } else if (id) {
    startRoomPage(id);
  } else {
    startLanding();
  }
  setInterval(expireLevels, 100);
}

function bindRoomControls() {
  el.copyBtn.addEventListener('click', onCopy);
  el.shareBtn.addEventListener('click', onShare);
  if (typeof navigator.share === 'function') {
    el.shareBtn.hidden = false;
  }
  el.joinForm.addEventListener('submit', onJoin);
  el.muteBtn.addEventListener('click', onMute);
  el.handBtn.addEventListener('click', onHand);
  el.seatLeaveBtn.addEventListener('click', () => send({ type: 'leave_seat' }));
  el.leaveBtn.addEventListener('click', onLeave);
  el.endBtn.addEventListener('click', onEndRoom);
  el.leaveGroupBtn.addEventListener('click', onLeaveGroup);
  for (const b of el.sheet.querySelectorAll('.sheet-act')) {
    b.addEventListener('click', () => onSheetAction(b.dataset.act));
  }
}

// ---------------------------------------------------------------- landing: create

function startLanding() {
  ui.showView('landing');
  document.title = 'Chorus';
  el.createName.value = stored(NAME_KEY);
  el.createForm.addEventListener('submit', onCreate);
}

async function onCreate(ev) {
  ev.preventDefault();
  // Unlock playback and ask for the mic while the tap still counts as a user gesture.
  audio.unlock();
  if (state.phase === 'joining' || state.phase === 'in') {
    return;
  }
  ui.hideToast();
  const who = checkName(el.createName.value, 'your name');
  const title = checkName(el.createTitle.value, 'a room title');
  const capacity = checkCount(el.createCapacity.value, 'People at most', 2, 10000);
  const seats = checkCount(el.createSeats.value, 'Mic seats', 1, 50);
  const problems = [
    [who, el.createName], [title, el.createTitle], [capacity, el.createCapacity], [seats, el.createSeats],
  ].filter(([r]) => r.error);
  if (!problems.length && seats.n > capacity.n) {
    problems.push([{ error: 'A room cannot have more mic seats than people.' }, el.createSeats]);
  }
  if (problems.length) {
    ui.showToast(problems[0][0].error, { code: 'invalid_input' });
    problems[0][1].focus();
    return;
  }
  store(NAME_KEY, who.name);
  const seatMode = el.createForm.querySelector('input[name="seat_mode"]:checked')?.value || 'moderated';
  state.phase = 'joining';
  state.rollback = null;
  ui.setBusy(el.createBtn, true, 'Creating…');
  try {
    const signal = await ensureSignal(who.name);
    const offer = await startMedia();
    const joined = await signal.request({
      type: 'create_room', name: title.name, capacity: capacity.n, seats: seats.n, seat_mode: seatMode, offer,
    }, 'joined', ENTER_TIMEOUT_MS);
    // The room page's address, without a reload: this page holds the live media.
    window.history.replaceState(null, '', joined.room.link);
    state.roomId = joined.room.id;
    ui.showView('room');
    await enterRoom(joined);
  } catch (e) {
    failEntering(e);
    ui.showView('landing');
  } finally {
    ui.setBusy(el.createBtn, false);
  }
}

// ---------------------------------------------------------------- room page

function startRoomPage(id) {
  state.roomId = id;
  ui.showView('room');
  ui.showRoomPhase('out');
  el.roomTitle.textContent = 'Voice room';
  el.shareLink.value = new URL(`/r/${id}`, window.location.origin).href;
  el.joinName.value = stored(NAME_KEY);

  fetchRoom(id).then((found) => {
    if (state.phase !== 'out') {
      return; // the socket tells the story now
    }
    if (!found) {
      el.roomTitle.textContent = 'Room not found';
      showFinal('not_found', 'This room is not open: no room on this server has this link. It may have ended.');
      return;
    }
    setRoomInfo(found.room);
    if (found.room.state === 'ended') {
      showFinal('room_closed', 'This room has ended. Its link no longer works.');
    } else if (found.room.state === 'pending') {
      el.roomNote.hidden = false;
      el.roomNote.textContent = 'This room is starting: try again in a moment.';
    } else {
      const n = Number(found.participants) || 0;
      el.roomNote.hidden = false;
      el.roomNote.textContent = n === 0 ? 'Nobody is here yet.' : `${n} ${n === 1 ? 'person is' : 'people are'} here.`;
    }
  }).catch(() => {
    // The socket will tell the real story when the user joins.
  });
}

function setRoomInfo(room) {
  state.room = room;
  ui.renderRoomHead(room);
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
  if (state.phase === 'joining' || state.phase === 'in' || state.phase === 'final') {
    return;
  }
  ui.hideToast();
  const who = checkName(el.joinName.value, 'your name');
  if (who.error) {
    ui.showToast(who.error, { code: 'invalid_input' });
    el.joinName.focus();
    return;
  }
  store(NAME_KEY, who.name);
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
  signal.addEventListener('server-error', (ev) => { if (state.signal === signal) onServerError(ev.detail); });
  signal.addEventListener('closed', (ev) => { if (state.signal === signal) onSocketClosed(ev.detail); });
  const welcome = await signal.open(name, stored(TOKEN_KEY));
  store(TOKEN_KEY, welcome.user_token);
  state.user = welcome.user;
  ui.setNetStatus('', 'online');
  return signal;
}

/**
 * Microphone and peer connection, for speakers and listeners alike: the mic is taken
 * now (inside the tap) so a later seat needs no renegotiation; its track stays disabled
 * while we listen. Resolves with the complete offer.
 */
async function startMedia() {
  state.mic = await openMic();
  const [track] = state.mic.getAudioTracks();
  track.enabled = false;
  const { pc, offer } = await createPeer(track, state.mic, (t) => audio.play(t));
  state.pc = pc;
  pc.addEventListener('connectionstatechange', () => onPeerState(pc));
  return offer;
}

async function join(name) {
  state.phase = 'joining';
  ui.setBusy(el.joinBtn, true, 'Joining…');
  try {
    const signal = await ensureSignal(name);
    const offer = await startMedia();
    const joined = await signal.request({ type: 'join', room: state.roomId, offer }, 'joined', ENTER_TIMEOUT_MS);
    await enterRoom(joined);
  } catch (e) {
    failEntering(e);
  } finally {
    ui.setBusy(el.joinBtn, false);
  }
}

/** Take in a `joined` frame (after create_room or join) and apply the SFU's answer. */
async function enterRoom(joined) {
  // Take the room in before awaiting anything, so updates that follow land on it.
  state.you = joined.you;
  state.people = new Map(joined.participants.map((p) => [p.id, p]));
  state.levels.clear();
  setRoomInfo(joined.room);
  state.phase = 'in';
  el.roomNote.hidden = true;
  ui.showRoomPhase('in');
  applyMic();
  render();
  onPeerState(state.pc);
  const pc = state.pc;
  await pc.setRemoteDescription({ type: 'answer', sdp: joined.answer });
  if (state.selfMuted) {
    state.signal.send({ type: 'set_muted', muted: true });
  }
}

function failEntering(e) {
  console.warn('chorus: could not enter the room', e);
  if (state.phase === 'in' && state.signal) {
    state.signal.send({ type: 'leave' });
  }
  teardownMedia();
  if (state.phase !== 'final') {
    state.phase = 'out';
    state.you = null;
    state.people.clear();
    ui.showRoomPhase('out');
  }
  const words = e instanceof ServerError ? describeError(e) : (e.message || String(e));
  ui.showToast(words, { code: e.code || 'join_failed' });
}

function onPeerState(pc) {
  if (!pc || pc !== state.pc || state.phase !== 'in') {
    return;
  }
  const words = {
    new: 'Connecting audio…',
    connecting: 'Connecting audio…',
    connected: 'Audio connected',
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

function me() {
  return state.people.get(state.you) || null;
}

/** Our mic is live only while we hold a seat and have not muted ourselves. */
function applyMic() {
  const p = me();
  const live = Boolean(p && p.speaker && !state.selfMuted);
  if (state.mic) {
    for (const t of state.mic.getAudioTracks()) {
      t.enabled = live;
    }
  }
}

function onServerMessage(msg) {
  switch (msg.type) {
    case 'room_updated':
      if (state.phase === 'in' || state.phase === 'joining') {
        const was = state.room && state.room.state;
        setRoomInfo(msg.room);
        if (was === 'pending' && msg.room.state === 'active') {
          ui.announce('Your room is live. Share its link.');
        }
        if (state.phase === 'in') {
          render();
        }
      }
      break;
    case 'participant_updated':
      if (state.phase === 'in') {
        const p = msg.participant;
        const before = state.people.get(p.id);
        if (!before) {
          ui.announce(`${p.name} joined`);
        }
        state.people.set(p.id, p);
        if (p.id === state.you) {
          noticeMyChanges(before, p);
          applyMic();
        } else if (before && !before.hand_raised && p.hand_raised) {
          ui.announce(`${p.name} raised a hand`);
        }
        if (state.sheetFor === p.id) {
          ui.openSheet(p, me()?.role);
        }
        render();
      }
      break;
    case 'participant_left':
      if (state.phase === 'in' && msg.participant === state.you) {
        onLeft(msg.reason);
      } else if (state.phase === 'in') {
        const gone = state.people.get(msg.participant);
        if (gone) {
          ui.announce(msg.reason === 'removed' ? `${gone.name} was removed` : `${gone.name} left`);
        }
        state.people.delete(msg.participant);
        state.levels.delete(msg.participant);
        if (state.sheetFor === msg.participant) {
          closeSheet();
        }
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
      if (state.phase === 'in' || state.phase === 'leaving') {
        onLeft(msg.reason);
      }
      break;
    default:
      break;
  }
}

function noticeMyChanges(before, now) {
  if (!before) {
    return;
  }
  if (!before.speaker && now.speaker) {
    ui.announce('You are on stage: everyone hears you.');
  } else if (before.speaker && !now.speaker) {
    ui.announce('You moved to the audience.');
  }
  if (!before.hand_raised && now.hand_raised && state.room && state.room.seat_mode === 'open') {
    // An open room raises the hand when no seat is free (seats may be held by people
    // who stepped out, which the stage cannot show).
    ui.showToast('No mic seat was free, so your hand is raised: you get a seat when one frees up or a moderator invites you.',
      { kind: 'info', code: 'hand_raised' });
  }
  if (!before.muted_by_moderator && now.muted_by_moderator) {
    ui.showToast('A moderator muted you.', { kind: 'info', code: 'muted_by_moderator' });
  } else if (before.muted_by_moderator && !now.muted_by_moderator) {
    ui.showToast('A moderator unmuted you.', { kind: 'info', code: 'unmuted_by_moderator' });
  }
  if (before.role !== now.role) {
    ui.announce(now.role === 'moderator' ? 'You are now a moderator.' : 'You are no longer a moderator.');
  }
}

function onServerError(err) {
  // The rollback of our pending room comes as media_unavailable, then `left`.
  if (err.code === 'media_unavailable' && state.phase === 'in' && state.room && state.room.state === 'pending') {
    state.rollback = err.message;
    return;
  }
  ui.showToast(describeError(err), { code: err.code });
}

function onLeft(reason) {
  const pending = state.room && state.room.state === 'pending';
  if (state.rollback || (pending && reason !== 'left')) {
    const why = state.rollback ? ` (${state.rollback})` : '';
    leaveLocally();
    el.roomState.hidden = true;
    el.share.hidden = true;
    showFinal('not_created', `The room was not created: your audio never connected to the server${why}. `
      + 'Check your network, then try again.');
    return;
  }
  switch (reason) {
    case 'removed':
      leaveLocally();
      showFinal('removed', 'You were removed from this room by a moderator. You cannot rejoin it.');
      break;
    case 'room_closed':
      leaveLocally();
      if (state.room) {
        setRoomInfo({ ...state.room, state: 'ended' });
      }
      el.share.hidden = true;
      showFinal('room_closed', 'This room has ended.');
      break;
    default:
      leaveLocally();
      ui.showRoomPhase('left', {
        left: 'You left the room.',
        connection_lost: 'Your audio connection was lost.',
        disconnected: 'You were disconnected.',
        replaced: 'You joined this room from another tab or device.',
      }[reason] || 'You are no longer in the room.');
      break;
  }
}

function showFinal(reason, text) {
  state.phase = 'final';
  el.roomNote.hidden = true;
  ui.showRoomPhase('final', { reason, text });
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
  if (state.phase !== 'in' || !state.room) {
    return;
  }
  const people = [...state.people.values()];
  const mine = me();
  const canModerate = Boolean(mine && (mine.role === 'owner' || mine.role === 'moderator'));
  const levels = new Map([...state.levels].map(([id, v]) => [id, v.level]));
  ui.renderPeople({ people, you: state.you, levels, room: state.room, canModerate, onActions: openActions });
  const speakers = people.filter((p) => p.speaker).length;
  ui.renderControls({ me: mine, room: state.room, selfMuted: state.selfMuted, freeSeats: state.room.seats - speakers });
  if (!canModerate && state.sheetFor) {
    closeSheet();
  }
}

function send(msg) {
  if (state.phase !== 'in' || !state.signal || !state.signal.send(msg)) {
    ui.showToast('Not connected to the server.', { code: 'disconnected' });
  }
}

function onMute() {
  if (state.phase !== 'in') {
    return;
  }
  state.selfMuted = !state.selfMuted;
  applyMic();
  send({ type: 'set_muted', muted: state.selfMuted });
  const p = me();
  if (p) {
    state.people.set(state.you, { ...p, muted: state.selfMuted });
  }
  render();
}

function onHand() {
  const action = el.handBtn.dataset.action;
  send({ type: action === 'lower' ? 'lower_hand' : 'request_seat' });
}

// ---------------------------------------------------------------- moderation

function openActions(p) {
  state.sheetFor = p.id;
  ui.openSheet(state.people.get(p.id) || p, me()?.role);
}

function closeSheet() {
  state.sheetFor = null;
  ui.closeSheet();
}

el.sheet.addEventListener('close', () => { state.sheetFor = null; });

async function onSheetAction(act) {
  const id = state.sheetFor;
  const p = id && state.people.get(id);
  closeSheet();
  if (!p) {
    return;
  }
  switch (act) {
    case 'grant_seat':
    case 'revoke_seat':
      send({ type: act, participant: id });
      break;
    case 'mute':
    case 'unmute':
      send({ type: 'mute', participant: id, muted: act === 'mute' });
      break;
    case 'make_moderator':
    case 'unmake_moderator':
      send({ type: 'set_moderator', participant: id, moderator: act === 'make_moderator' });
      break;
    case 'remove':
      if (await ui.confirmAction(`Remove ${p.name} from the room? They cannot come back.`, 'Remove')) {
        send({ type: 'remove', participant: id });
      }
      break;
    default:
      break;
  }
}

async function onEndRoom() {
  if (state.phase !== 'in') {
    return;
  }
  if (await ui.confirmAction('End the room for everyone? Its link stops working.', 'End room')) {
    send({ type: 'end_room' });
  }
}

// ---------------------------------------------------------------- leaving

/** Leave the room and give up membership of its group chat, freeing the place. */
async function onLeaveGroup() {
  if (state.phase !== 'in') {
    return;
  }
  if (!(await ui.confirmAction('Leave the group? Your place goes to someone else; joining again needs a free place.', 'Leave the group'))) {
    return;
  }
  state.phase = 'leaving';
  try {
    await state.signal.request({ type: 'leave_group' }, 'left', 3000);
  } catch (e) {
    state.phase = 'in';
    ui.showToast(e.message, { code: e.code });
    return;
  }
  leaveLocally();
  ui.showRoomPhase('left', 'You left the group: your place is free for someone else.');
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
  if (state.phase === 'leaving') {
    leaveLocally();
    ui.showRoomPhase('left', 'You left the room.');
  }
  el.leaveBtn.disabled = false;
}

function leaveLocally() {
  closeSheet();
  if (el.confirm.open) {
    el.confirm.close();
  }
  teardownMedia();
  state.phase = 'left';
  state.you = null;
  state.people.clear();
  state.levels.clear();
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
      leaveLocally();
      ui.showRoomPhase('left', 'The connection to the server was lost.');
    }
    ui.showToast('Lost the connection to the server. Check your network, then rejoin.', { code: 'disconnected' });
  }
}

start();

// The Chorus page. The session (socket, media, the room's people, reconnecting) is the
// SDK's (sdk/chorus.js, the same module other apps embed); this file keeps the page's
// one store (which screen, what the room lookup said, the session's last snapshot),
// derives what to show from it, and turns taps into SDK calls. 1:1 calls (/#calls) are
// drawn by calls-ui.js; the store knows only their snapshot (screen, title, net), and a
// call that becomes a voice room ("Add someone") is opened here as that room's page.

import { ChorusClient, TOKEN_KEY, describeError, fetchRoom } from './sdk/chorus.js';
import { GroupChat } from './sdk/chat.js';
import { Attachments } from './sdk/attachments.js';
import { AudioOut } from './sdk/playback.js';
import { ACTIVE_PHASES } from './sdk/calls.js';
import { startCalls, showCalls } from './calls-ui.js';
import { createStore } from './store.js';
import * as ui from './ui.js';

const { el } = ui;
const NAME_KEY = 'chorus.name';
const REMOVED_KEY = 'chorus.removed_from';
const MAX_NAME_CHARS = 40;

// ---------------------------------------------------------------- storage

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
    // Private mode: not remembered, which only costs typing the name again.
  }
}

/** Rooms this browser was removed from (the server refuses them anyway; we say so first). */
function removedFrom() {
  try {
    return JSON.parse(stored(REMOVED_KEY) || '[]');
  } catch {
    return [];
  }
}

// ---------------------------------------------------------------- the store

const client = new ChorusClient();
const chat = new GroupChat(client);
/** Files in the chat (HTTP, with the same user token as the socket). */
const attachments = new Attachments({ server: client.server, token: () => client.storage.get(TOKEN_KEY) || '' });
const audio = new AudioOut(el.audioSink, { onBlocked: (b) => page.dispatch('audioBlocked', b) });

const page = createStore({
  screen: 'landing', // landing | calls | room | missing
  calls: null, // the CallClient's last snapshot (calls-ui.js)
  roomId: null,
  lookup: { status: 'none', room: null, present: 0 }, // none | loading | found | missing | failed
  session: client.state,
  media: 'new', // the peer connection's state
  audioBlocked: false,
  removed: false, // this browser was removed from this room before
  online: navigator.onLine !== false,
  chat: chat.state, // the group chat's last snapshot (sdk/chat.js)
  chatDivider: null, // the seq "New messages" stands before, fixed when the chat opens
  chatFolded: true, // phones: the chat pane is folded away (wide screens always show it)
  upload: null, // a file on its way to the chat: { name, phase, loaded, total }
  attachStatus: '', // a line under the composer about the last file ("already uploaded")
}, {
  showLanding: (s) => ({ ...s, screen: 'landing', roomId: null }),
  showCalls: (s) => ({ ...s, screen: 'calls', roomId: null }),
  calls: (s, calls) => ({ ...s, calls }),
  showMissing: (s) => ({ ...s, screen: 'missing', roomId: null }),
  openRoom: (s, id) => ({
    ...s, screen: 'room', roomId: id, removed: removedFrom().includes(id), lookup: { status: 'loading', room: null, present: 0 },
  }),
  lookedUp: (s, found) => (found
    ? { ...s, lookup: { status: 'found', room: found.room, present: Number(found.participants) || 0 } }
    : { ...s, lookup: { status: 'missing', room: null, present: 0 } }),
  lookupFailed: (s) => ({ ...s, lookup: { ...s.lookup, status: 'failed' } }),
  // A room created on the landing page: the page is now that room's page.
  entered: (s, room) => ({ ...s, screen: 'room', roomId: room.id, lookup: { status: 'found', room, present: 1 } }),
  session: (s, session) => ({ ...s, session, media: session.phase === 'live' ? s.media : 'new' }),
  media: (s, state) => (s.media === state ? s : { ...s, media: state }),
  audioBlocked: (s, blocked) => (s.audioBlocked === blocked ? s : { ...s, audioBlocked: blocked }),
  removed: (s) => ({ ...s, removed: true }),
  online: (s, online) => (s.online === online ? s : { ...s, online }),
  chat: (s, { state, transition }) => ({
    ...s, chat: state, chatDivider: transition === 'opened' ? firstUnread(state) : s.chatDivider,
  }),
  foldChat: (s, folded) => (s.chatFolded === folded ? s : { ...s, chatFolded: folded }),
  upload: (s, upload) => (s.upload === upload ? s : { ...s, upload }),
  attachStatus: (s, text) => (s.attachStatus === text ? s : { ...s, attachStatus: text }),
});

/** The first message by someone else after our read mark, or null. */
function firstUnread(c) {
  const m = c.messages.find((x) => x.seq > c.readUpTo && x.author !== c.me && !x.deleted);
  return m ? m.seq : null;
}

/** Messages by others after our read mark (deleted ones not counted), as the server counts. */
function unreadCount(c) {
  return c.messages.filter((x) => x.seq > c.readUpTo && x.author !== c.me && !x.deleted).length;
}

// For tests and debugging: the live peer connection (for getStats) and a state snapshot.
window.chorus = {
  client,
  get pc() { return client.pc; },
  get you() { return client.state.you; },
  get user() { return client.state.user; },
  get phase() { return client.state.phase; },
  get room() { return client.state.room; },
  get participants() { return [...client.people.values()]; },
  /** How many times the session resumed over the same peer connection, and the last refusal's code. */
  get resumes() { return client.resumes; },
  get lastResumeError() { return client.lastResumeError; },
  get state() { return page.state; },
  chat,
  attachments,
};

// ---------------------------------------------------------------- what to show

const STATE_WORDS = { pending: 'Starting…', active: 'Live', ended: 'Ended' };
const MEDIA_WORDS = {
  new: 'Connecting audio…',
  connecting: 'Connecting audio…',
  connected: 'Audio connected',
  disconnected: 'Audio interrupted, reconnecting…',
  failed: 'Audio connection failed.',
  closed: 'Audio closed.',
};
const LEFT_WORDS = {
  left: 'You left the room.',
  left_group: 'You left the group: your place is free for someone else.',
  connection_lost: 'Your audio connection was lost.',
  disconnected: 'You were disconnected.',
  replaced: 'You joined this room from another tab or device.',
  resumed_elsewhere: 'This session was taken up in another tab or window.',
  room_full: 'The room filled up while your audio was connecting: others got in first. Try again in a moment.',
};

/** Everything the page shows, derived from the store alone. */
export function viewOf(s) {
  const ses = s.session;
  let net = { text: '', state: ses.net };
  // Only the audio is moving to another media server (the socket is fine): every badge
  // says so, none says "Live".
  const movingAudio = ses.phase === 'reconnecting' && ses.reason === 'media_moved';
  if (!s.online) {
    net = { text: 'Offline', state: 'offline' };
  } else if (ses.phase === 'reconnecting') {
    net = { text: movingAudio ? 'Reconnecting audio…' : 'Reconnecting…', state: 'reconnecting' };
  } else if (ses.phase === 'idle' && ses.error && ses.error.code === 'unreachable') {
    net = { text: 'Offline', state: 'offline' };
  }
  const call = s.calls && s.calls.call;
  const callOn = Boolean(call && ACTIVE_PHASES.includes(call.phase));
  if (s.screen === 'calls') {
    return callsView(s.calls, s.online);
  }
  if (s.screen !== 'room') {
    return {
      screen: s.screen, title: s.screen === 'missing' ? 'Page not found · Chorus' : 'Chorus', net, callReturn: callOn,
    };
  }
  const inSession = ses.roomId === s.roomId || (ses.phase === 'joining' && !ses.roomId);
  const room = (inSession && ses.room) || s.lookup.room;
  const v = {
    screen: 'room',
    net,
    title: room ? `${room.name} · Chorus` : 'Chorus',
    roomTitle: room ? room.name : s.lookup.status === 'missing' ? 'Room not found' : 'Voice room',
    badge: null,
    roomNote: '',
    shareUrl: '',
    part: 'out',
    finalReason: '',
    finalText: '',
    leftNote: '',
    status: { text: '', state: '' },
    audioBlocked: s.audioBlocked,
    knocking: ses.phase === 'joining' && Boolean(ses.knocking),
    door: ses.phase === 'live' ? (ses.knocks || []) : [],
    callReturn: callOn,
  };
  const phase = inSession ? ses.phase : 'idle';
  if (phase === 'live' || phase === 'reconnecting') {
    v.part = 'in';
  } else if (phase === 'ended') {
    v.part = 'final';
    v.finalReason = ses.reason;
    v.finalText = {
      removed: 'You were removed from this room by a moderator. You cannot rejoin it.',
      room_closed: 'This room has ended.',
      not_created: 'The room was not created: your audio never connected to the server'
        + `${ses.error && ses.error.message ? ` (${ses.error.message})` : ''}. Check your network, then try again.`,
    }[ses.reason] || 'This room is over.';
  } else if (s.removed) {
    v.part = 'final';
    v.finalReason = 'removed';
    v.finalText = 'You were removed from this room by a moderator. You cannot rejoin it.';
  } else if (s.lookup.status === 'missing') {
    v.part = 'final';
    v.finalReason = 'not_found';
    v.finalText = 'This room is not open: no room on this server has this link. It may have ended.';
  } else if (room && room.state === 'ended') {
    v.part = 'final';
    v.finalReason = 'room_closed';
    v.finalText = 'This room has ended. Its link no longer works.';
  } else if (phase === 'left') {
    v.part = 'left';
    v.leftNote = LEFT_WORDS[ses.reason] || 'You are no longer in the room.';
  }
  if (phase === 'reconnecting' && movingAudio) {
    v.badge = { text: 'Reconnecting audio…', state: 'reconnecting' };
    v.status = { text: 'Reconnecting audio: the media server changed. You keep your place.', state: 'reconnecting' };
  } else if (phase === 'reconnecting') {
    v.badge = { text: 'Reconnecting…', state: 'reconnecting' };
    v.status = { text: `Reconnecting to the server${ses.attempt > 1 ? ` (attempt ${ses.attempt})` : ''}…`, state: 'reconnecting' };
  } else if (room && !(v.part === 'final' && v.finalReason === 'not_created')) {
    const words = STATE_WORDS[room.state] || room.state;
    v.badge = room.state === 'active' && room.locked
      ? { text: `${words} · locked`, state: 'locked' }
      : { text: words, state: room.state };
  }
  if (v.part === 'in' && phase === 'live') {
    v.status = { text: MEDIA_WORDS[s.media] || '', state: s.media };
  }
  if (room && room.state === 'active' && v.part !== 'final') {
    v.shareUrl = new URL(room.link, window.location.origin).href;
  }
  if (v.part === 'out' && s.lookup.status === 'found' && room) {
    if (v.knocking) {
      v.roomNote = 'You asked to come in. A moderator will let you in, or not: please wait.';
    } else if (room.state === 'pending') {
      v.roomNote = 'This room is starting: try again in a moment.';
    } else if (room.locked) {
      v.roomNote = 'This room is locked: only its members can come in.';
    } else {
      const n = s.lookup.present;
      v.roomNote = n === 0 ? 'Nobody is here yet.' : `${n} ${n === 1 ? 'person is' : 'people are'} here.`;
    }
  }
  return v;
}

/** The chat pane, derived from the store: shown to a member, folded on phones in a room. */
export function chatPaneOf(s) {
  const c = s.chat;
  const v = viewOf(s);
  const shown = s.screen === 'room' && c.room === s.roomId && c.status === 'open'
    && !(v.part === 'final' && v.finalReason === 'removed') && !s.removed;
  const inRoom = v.part === 'in';
  return {
    shown,
    inRoom,
    folded: inRoom && s.chatFolded,
    unread: unreadCount(c),
    mutedMe: Boolean(c.me && c.muted.includes(c.me)),
    more: c.more,
    loadingOlder: c.loadingOlder,
    empty: c.messages.length === 0,
    upload: s.upload,
    attachStatus: s.attachStatus,
  };
}

/** The calls screen's title and connection badge (its content is calls-ui.js's). */
function callsView(calls, online) {
  const call = calls && calls.call;
  const who = call && call.peer ? call.peer.name || `@${call.peer.handle}` : '';
  const title = {
    incoming: `Incoming call · ${who}`,
    calling: `Calling ${who}…`,
    ringing: `Calling ${who}…`,
    accepting: `Call · ${who}`,
    connecting: `Call · ${who}`,
    connected: `In call · ${who}`,
    interrupted: `In call · ${who}`,
  }[call ? call.phase : ''] || 'Calls · Chorus';
  let net = { text: '', state: 'online' };
  if (!online) {
    net = { text: 'Offline', state: 'offline' };
  } else if (calls && calls.account && calls.net !== 'online') {
    // Signed in but not reachable: the client reconnects by itself.
    net = { text: calls.net === 'connecting' ? 'Connecting…' : 'Offline: reconnecting…', state: 'reconnecting' };
  }
  return { screen: 'calls', title, net, callReturn: false };
}

// ---------------------------------------------------------------- rendering

const people = new ui.PeopleView({ onActions: (id) => openActions(id) });

let frame = 0;
/** People and controls at most once per frame, however many updates arrive. */
function schedulePeople() {
  if (frame) {
    return;
  }
  const run = () => {
    if (!frame) {
      return;
    }
    frame = 0;
    renderPeople();
  };
  frame = requestAnimationFrame(run);
  // rAF waits while a tab is hidden; the lists should still be right when it returns.
  setTimeout(run, 100);
}

function renderPeople() {
  const ses = client.state;
  if (ses.phase !== 'live' && ses.phase !== 'reconnecting') {
    people.clear();
    return;
  }
  const room = ses.room;
  const mine = client.me();
  const canModerate = client.canModerate && ses.phase === 'live';
  people.render(client.people, client.levels, { you: ses.you, canModerate, room });
  let speakers = 0;
  for (const p of client.people.values()) {
    speakers += p.speaker ? 1 : 0;
  }
  ui.renderControls({ me: mine, room, selfMuted: ses.selfMuted, freeSeats: room.seats - speakers, live: ses.phase === 'live' });
  renderChatMessages(); // roles decide who may delete and mute
  if (sheetFor) {
    const p = client.people.get(sheetFor);
    if (!p || !canModerate) {
      closeSheet();
    } else {
      ui.openSheet(p, mine && mine.role);
    }
  }
}

page.subscribe((s, prev) => {
  ui.renderPage(viewOf(s));
  renderChat(s, prev);
  followChat(s);
  if (s.screen !== prev.screen) {
    showCalls(s.screen === 'calls');
  }
  if (s.session !== prev.session) {
    onSessionChanged(s.session, prev.session);
  }
});

// ---------------------------------------------------------------- session events

client.addEventListener('statechange', (ev) => page.dispatch('session', ev.detail.state));
client.addEventListener('participants', schedulePeople);
client.addEventListener('speaking', (ev) => {
  for (const id of ev.detail.changed) {
    people.speaking(id, client.levels.get(id) || 0);
  }
  announceSpeakers();
});
client.addEventListener('media', (ev) => {
  page.dispatch('media', ev.detail.connectionState);
  if (ev.detail.connectionState === 'failed') {
    ui.showToast('Could not connect audio to the server. A firewall may block it; try another network.', { code: 'media_failed' });
  }
});
client.addEventListener('track', (ev) => audio.play(ev.detail.track));
client.addEventListener('peerclosed', () => audio.releaseAll());
client.addEventListener('servererror', (ev) => {
  const e = ev.detail.error;
  // "Not now" (e.g. temporarily_unavailable) is a notice to try again, not a failure.
  ui.showToast(describeError(e), { code: e.code, kind: e.retryable ? 'info' : 'error' });
});
client.addEventListener('notice', (ev) => {
  const { code, text, quiet } = ev.detail;
  ui.announce(text);
  if (!quiet && code !== 'room_live' && code !== 'to_audience' && code !== 'moderator' && code !== 'not_moderator'
    && code !== 'on_stage') {
    ui.showToast(text, { kind: 'info', code });
  }
});

function onSessionChanged(ses, prev) {
  schedulePeople();
  if (ses.phase === 'ended' && ses.reason === 'removed' && ses.roomId) {
    const list = removedFrom().filter((id) => id !== ses.roomId).slice(-49);
    store(REMOVED_KEY, JSON.stringify([...list, ses.roomId]));
    page.dispatch('removed');
  }
  if (ses.phase !== 'live' && ses.phase !== 'reconnecting') {
    closeSheet();
    if (el.confirm.open) {
      el.confirm.close();
    }
  }
  if (ses.phase === 'reconnecting' && ses.reason === 'media_moved' && prev.reason !== 'media_moved') {
    ui.announce('The media server changed. Reconnecting audio…');
  } else if (ses.phase === 'reconnecting' && prev.phase === 'live') {
    ui.announce('Lost the connection to the server. Reconnecting…');
  } else if (ses.phase === 'live' && prev.phase === 'reconnecting') {
    ui.announce(prev.reason === 'media_moved' ? 'Audio reconnected.' : 'Reconnected.');
    if (el.toast.dataset.code === 'disconnected') {
      ui.hideToast();
    }
  }
  keepAwake(ses.phase === 'live' || ses.phase === 'reconnecting');
  showOnLockScreen(ses);
}

let lastSpeakingWords = '';
let speakingTimer = null;
/** Speakers heard since the last announcement (a short phrase must not be missed). */
const heardSince = new Set();
/** "Ada is speaking" for screen readers, at most every two seconds. */
function announceSpeakers() {
  for (const id of client.levels.keys()) {
    heardSince.add(id);
  }
  if (speakingTimer) {
    return;
  }
  speakingTimer = setTimeout(() => {
    speakingTimer = null;
    const names = [...heardSince].map((id) => client.people.get(id)).filter((p) => p && p.speaker)
      .map((p) => (p.id === client.state.you ? 'You' : p.name));
    heardSince.clear();
    let words = '';
    if (names.length === 1) {
      words = names[0] === 'You' ? 'You are speaking' : `${names[0]} is speaking`;
    } else if (names.length > 1) {
      words = `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]} are speaking`;
    }
    if (words && words !== lastSpeakingWords) {
      el.speakingNow.textContent = words;
    }
    lastSpeakingWords = words;
  }, 2000);
}

// ---------------------------------------------------------------- the group chat

/**
 * Thumbnails by room and hash, the newest used last: the same picture posted again (or
 * drawn again after a reload of the list) is not fetched again.
 */
const thumbnails = new Map();
const THUMBNAILS_KEPT = 100;
function loadAttachment(hash, { thumbnail }) {
  const room = chat.state.room;
  if (!thumbnail) {
    return attachments.fetchBlob(room, hash);
  }
  const key = `${room}/${hash}`;
  let blob = thumbnails.get(key);
  if (blob) {
    thumbnails.delete(key);
  } else {
    blob = attachments.fetchBlob(room, hash, { thumbnail: true });
    blob.catch(() => { if (thumbnails.get(key) === blob) thumbnails.delete(key); });
  }
  thumbnails.set(key, blob);
  while (thumbnails.size > THUMBNAILS_KEPT) {
    thumbnails.delete(thumbnails.keys().next().value);
  }
  return blob;
}
const chatView = new ui.ChatView(el.chatLog, { load: loadAttachment, onError: (e) => chatFailed(e) });
/** The upload in flight (its AbortController), or null: one at a time. */
let uploadCtl = null;
/** The seq of our message being edited in the composer, or 0. */
let chatEditing = 0;
/** Scroll to the divider (or the end) once the pane can be measured. */
let chatScrollPending = false;
/** The last room and reason we asked to follow a chat for (each asks once). */
let chatAttempt = '';
const NEAR_PX = 48;

chat.addEventListener('statechange', (ev) => {
  const log = el.chatLog;
  const wasAtBottom = chatAtBottom();
  const { scrollHeight, scrollTop } = log;
  page.dispatch('chat', ev.detail);
  const { transition } = ev.detail;
  if (transition === 'opened') {
    chatScrollPending = true;
  }
  renderChatMessages();
  if (transition === 'older') {
    log.scrollTop = scrollTop + (log.scrollHeight - scrollHeight); // the same message stays in view
  } else if (wasAtBottom && transition === 'message') {
    log.scrollTop = log.scrollHeight;
  }
  settleChatScroll();
});

function chatAtBottom() {
  const log = el.chatLog;
  return log.scrollHeight - log.scrollTop - log.clientHeight < NEAR_PX;
}

/** Whether the user can see the chat now (not folded away, the tab in front). */
function chatVisible() {
  return !el.chat.hidden && el.chat.getClientRects().length > 0 && document.visibilityState === 'visible';
}

/** After opening: the "New messages" divider in view, or the newest message. */
function settleChatScroll() {
  if (chatScrollPending && chatVisible()) {
    chatScrollPending = false;
    const divider = el.chatLog.querySelector('.chat-divider');
    if (divider) {
      el.chatLog.scrollTop = divider.offsetTop - el.chatLog.offsetTop - 8;
    } else {
      el.chatLog.scrollTop = el.chatLog.scrollHeight;
    }
  }
  markChatRead();
}

/** Seen: the chat is in view and scrolled to its end, so the newest message is read. */
function markChatRead() {
  const c = chat.state;
  const last = c.messages[c.messages.length - 1];
  if (last && c.status === 'open' && chatVisible() && chatAtBottom()) {
    chat.markRead(last.seq);
  }
}

function renderChat(s, prev) {
  ui.renderChatPane(chatPaneOf(s));
  if (s.chatFolded !== prev.chatFolded || s.screen !== prev.screen || s.session.phase !== prev.session.phase) {
    queueMicrotask(settleChatScroll); // after this render: it may move the read mark
  }
}

function renderChatMessages() {
  const s = page.state;
  const c = chat.state;
  if (c.status !== 'open' && c.status !== 'opening') {
    chatView.clear();
    return;
  }
  const canModerate = client.canModerate && client.state.phase === 'live' && client.state.roomId === c.room;
  const unmutable = new Set([...client.people.values()].filter((p) => p.role === 'owner' || p.role === 'moderator')
    .map((p) => p.user));
  chatView.render(c.messages, {
    me: c.me, canModerate, mutedUsers: c.muted, unmutable, dividerSeq: s.chatDivider,
  });
  if (chatEditing && !c.messages.some((m) => m.seq === chatEditing && !m.deleted)) {
    stopEditing();
  }
}

/**
 * Follow the room's chat when we are a member: in the room once our media connected (a
 * guest becomes a member then), or outside it (ended, left, not joined yet) when this
 * browser has been here before. A refusal just leaves the chat hidden.
 */
function followChat(s) {
  if (s.screen !== 'room' || !s.roomId) {
    return;
  }
  const ses = s.session;
  const inRoom = ses.roomId === s.roomId && (ses.phase === 'live' || ses.phase === 'reconnecting');
  // Outside a live room, only a room that exists and went live has a chat to show (one
  // whose creator's audio never connected was rolled back: there is nothing to ask for).
  const room = (ses.roomId === s.roomId && ses.room) || s.lookup.room;
  const existed = Boolean(room) && room.state !== 'pending' && s.lookup.status !== 'missing';
  let why = '';
  if (inRoom) {
    why = s.media === 'connected' ? 'member' : '';
  } else if (ses.phase !== 'joining' && existed && !s.removed && client.storage.get(TOKEN_KEY)) {
    why = 'outside';
  }
  const c = s.chat;
  if (!why || (c.room === s.roomId && (c.status === 'open' || c.status === 'opening'))) {
    return;
  }
  const attempt = `${s.roomId}:${why}`;
  if (attempt === chatAttempt) {
    return;
  }
  chatAttempt = attempt;
  openChat(s.roomId, why === 'member' ? 3 : 0);
}

/** `chat_open`; as a new member, again a few times while the server counts our media in. */
async function openChat(room, retries) {
  for (let left = retries; ; left -= 1) {
    try {
      await chat.open(room, { name: stored(NAME_KEY) || 'Guest' });
      return;
    } catch (e) {
      if (e.code !== 'forbidden' || left <= 0 || page.state.roomId !== room) {
        if (e.code !== 'forbidden') {
          console.warn('chorus: the chat did not open', e);
        }
        return;
      }
      await new Promise((r) => { setTimeout(r, 1000); });
    }
  }
}

function bindChat() {
  el.chatForm.addEventListener('submit', onChatSubmit);
  el.chatInput.addEventListener('keydown', (ev) => {
    // Enter sends, Shift+Enter is a new line.
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      el.chatForm.requestSubmit();
    } else if (ev.key === 'Escape' && chatEditing) {
      stopEditing();
    }
  });
  el.chatEditCancel.addEventListener('click', stopEditing);
  el.chatLog.addEventListener('scroll', () => {
    if (el.chatLog.scrollTop < NEAR_PX) {
      loadOlder();
    }
    markChatRead();
  });
  el.chatOlder.addEventListener('click', loadOlder);
  el.chatLog.addEventListener('click', (ev) => {
    const b = ev.target.closest('button[data-act]');
    const row = b && b.closest('.chat-msg');
    if (row) {
      onChatAction(b.dataset.act, Number(row.dataset.seq));
    }
  });
  el.chatAttach.addEventListener('click', () => el.chatFile.click());
  el.chatFile.addEventListener('change', onFileChosen);
  el.chatUploadCancel.addEventListener('click', () => { if (uploadCtl) uploadCtl.abort(); });
  el.chatToggle.addEventListener('click', () => page.dispatch('foldChat', !page.state.chatFolded));
  el.chatClose.addEventListener('click', () => page.dispatch('foldChat', true));
  document.addEventListener('visibilitychange', markChatRead);
}

function chatFailed(e) {
  ui.showToast(describeError(e), { code: e.code || 'chat', kind: e.retryable ? 'info' : 'error' });
}

function loadOlder() {
  chat.older().catch(chatFailed);
}

async function onChatSubmit(ev) {
  ev.preventDefault();
  const text = el.chatInput.value.trim();
  if (!text) {
    return;
  }
  if ([...text].length > 2000) {
    ui.showToast('A message may be at most 2,000 characters.', { code: 'invalid_input' });
    return;
  }
  const editing = chatEditing;
  el.chatSend.disabled = true;
  try {
    await (editing ? chat.edit(editing, text) : chat.send(text));
    el.chatInput.value = '';
    page.dispatch('attachStatus', '');
    if (editing) {
      stopEditing();
    }
    el.chatLog.scrollTop = el.chatLog.scrollHeight;
    markChatRead();
  } catch (e) {
    chatFailed(e);
  } finally {
    ui.renderChatPane(chatPaneOf(page.state));
  }
}

/**
 * A file chosen with Attach: hash it, ask the server, upload what it lacks (progress bar,
 * Cancel), then post it with the composer's words. A file the server holds already is
 * not uploaded again: "already uploaded", and the message goes at once.
 */
async function onFileChosen() {
  const file = el.chatFile.files && el.chatFile.files[0];
  el.chatFile.value = ''; // choosing the same file again is a new choice
  const c = chat.state;
  if (!file || uploadCtl || c.status !== 'open' || !c.room) {
    return;
  }
  const room = c.room;
  const text = chatEditing ? '' : el.chatInput.value.trim();
  if ([...text].length > 2000) {
    ui.showToast('A message may be at most 2,000 characters.', { code: 'invalid_input' });
    return;
  }
  const ctl = new AbortController();
  uploadCtl = ctl;
  const name = file.name || 'file';
  page.dispatch('attachStatus', '');
  page.dispatch('upload', { name, phase: 'hashing', loaded: 0, total: file.size });
  try {
    const up = await attachments.upload(room, file, {
      signal: ctl.signal,
      onProgress: ({ phase, loaded, total }) => {
        if (uploadCtl === ctl) page.dispatch('upload', { name, phase, loaded, total });
      },
      onKnown: () => page.dispatch('attachStatus', 'already uploaded'),
    });
    page.dispatch('upload', null);
    if (chat.state.room !== room) {
      return;
    }
    await chat.send(text, { attachment: { hash: up.hash, name: up.name } });
    if (text && !chatEditing && el.chatInput.value.trim() === text) {
      el.chatInput.value = '';
    }
    el.chatLog.scrollTop = el.chatLog.scrollHeight;
    markChatRead();
  } catch (e) {
    if (e && e.name === 'AbortError') {
      page.dispatch('attachStatus', `${name}: upload cancelled.`);
    } else {
      page.dispatch('attachStatus', '');
      chatFailed(e);
    }
  } finally {
    if (uploadCtl === ctl) {
      uploadCtl = null;
    }
    page.dispatch('upload', null);
  }
}

function startEditing(m) {
  chatEditing = m.seq;
  el.chatInput.value = m.text;
  ui.setHidden(el.chatEditing, false);
  el.chatSend.textContent = 'Save';
  el.chatInput.focus();
}

function stopEditing() {
  chatEditing = 0;
  el.chatInput.value = '';
  ui.setHidden(el.chatEditing, true);
  el.chatSend.textContent = 'Send';
}

async function onChatAction(act, seq) {
  const m = chat.state.messages.find((x) => x.seq === seq);
  if (!m) {
    return;
  }
  try {
    if (act === 'edit') {
      startEditing(m);
    } else if (act === 'delete') {
      const whose = m.author === chat.state.me ? 'your message' : `the message from ${m.name}`;
      if (await ui.confirmAction(`Delete ${whose}? Everyone sees that a message was deleted here.`, 'Delete')) {
        await chat.remove(seq);
      }
    } else if (act === 'mute' || act === 'unmute') {
      await chat.mute(m.author, act === 'mute');
      ui.announce(act === 'mute' ? `${m.name} can no longer write in the chat.` : `${m.name} can write in the chat again.`);
    }
  } catch (e) {
    chatFailed(e);
  }
}

// ---------------------------------------------------------------- wake lock, lock screen

let wakeLock = null;
let wantAwake = false;
async function keepAwake(on) {
  wantAwake = on;
  if (!navigator.wakeLock) {
    return; // not in every browser (Safari 16.4+ has it; Firefox 126+)
  }
  if (on && !wakeLock && document.visibilityState === 'visible') {
    try {
      wakeLock = await navigator.wakeLock.request('screen');
      wakeLock.addEventListener('release', () => { wakeLock = null; });
    } catch {
      wakeLock = null; // refused (battery saver, not visible): the screen may sleep
    }
  } else if (!on && wakeLock) {
    wakeLock.release().catch(() => {});
    wakeLock = null;
  }
}
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && wantAwake) {
    keepAwake(true);
  }
});

function showOnLockScreen(ses) {
  const ms = navigator.mediaSession;
  if (!ms) {
    return;
  }
  const inRoom = (ses.phase === 'live' || ses.phase === 'reconnecting') && ses.room;
  if (!inRoom) {
    ms.metadata = null;
    return;
  }
  const mine = client.me();
  if (typeof window.MediaMetadata === 'function') {
    const artist = mine && mine.speaker ? 'Chorus · on stage' : 'Chorus · listening';
    if (!ms.metadata || ms.metadata.title !== ses.room.name || ms.metadata.artist !== artist) {
      ms.metadata = new window.MediaMetadata({
        title: ses.room.name,
        artist,
        artwork: [{ src: '/icons/icon-192.png', sizes: '192x192', type: 'image/png' },
          { src: '/icons/icon-512.png', sizes: '512x512', type: 'image/png' }],
      });
    }
  }
  const handlers = {
    hangup: () => onLeave(),
    togglemicrophone: () => onMute(),
    pause: () => onLeave(),
  };
  for (const [action, fn] of Object.entries(handlers)) {
    try {
      ms.setActionHandler(action, fn);
    } catch {
      // This browser does not know the action.
    }
  }
  if (typeof ms.setMicrophoneActive === 'function' && mine) {
    try {
      Promise.resolve(ms.setMicrophoneActive(Boolean(mine.speaker && !ses.selfMuted))).catch(() => {});
    } catch {
      // not allowed here
    }
  }
}

// ---------------------------------------------------------------- start-up

function roomIdFromPath(pathname) {
  const m = /^\/r\/([A-Za-z0-9_-]{1,64})\/?$/.exec(pathname);
  return m ? m[1] : null;
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

/** `/#calls` is the calls screen: a fragment, so the page (and a live call) stays loaded. */
function callsInHash() {
  return window.location.hash === '#calls';
}

/**
 * The code of a one-time sign-in link (`/#sign_in=<code>`, from the app's backend), taken
 * off the address at once so that neither history nor a shared screen keeps it.
 */
function takeSignInLink() {
  const prefix = '#sign_in=';
  if (!window.location.hash.startsWith(prefix)) {
    return '';
  }
  const code = decodeURIComponent(window.location.hash.slice(prefix.length));
  window.history.replaceState(null, '', '/#calls');
  return code;
}

function start() {
  bindControls();
  el.createName.value = stored(NAME_KEY);
  el.joinName.value = stored(NAME_KEY);
  const path = window.location.pathname;
  const id = roomIdFromPath(path);
  const home = path === '/' || path === '/index.html';
  const signInLink = home ? takeSignInLink() : '';
  // Reachable for calls wherever the page is not in a room (a room holds its own socket).
  const callClient = startCalls({
    connect: !id,
    signInLink,
    onRing: () => { if (!id) openCalls(); },
    // A room's hello with the account's token renames the account: keep the names one.
    onAccount: (account) => {
      store(NAME_KEY, account.name);
      el.createName.value = account.name;
      el.joinName.value = account.name;
    },
    onGrown: (roomId, account) => enterGrownRoom(roomId, account),
    onGesture: () => audio.unlock(),
  });
  page.dispatch('calls', callClient.state);
  callClient.addEventListener('statechange', (ev) => page.dispatch('calls', ev.detail.state));
  if (id) {
    openRoomPage(id);
  } else if (path.startsWith('/r/')) {
    page.dispatch('showLanding');
    ui.showToast('This room link is not valid. Create a new room below.', { code: 'invalid_link' });
  } else if (home && callsInHash()) {
    page.dispatch('showCalls');
  } else if (home) {
    page.dispatch('showLanding');
  } else {
    page.dispatch('showMissing');
  }
  const followHash = () => {
    const s = page.state.screen;
    if (home && (s === 'landing' || s === 'calls')) {
      page.dispatch(callsInHash() ? 'showCalls' : 'showLanding');
    }
  };
  window.addEventListener('hashchange', followHash);
  window.addEventListener('popstate', followHash);
  // The brand link from the calls screen: back to the landing without a reload (which
  // would end a call).
  document.querySelector('.brand').addEventListener('click', (ev) => {
    if (home && page.state.screen === 'calls') {
      ev.preventDefault();
      window.history.pushState(null, '', '/');
      page.dispatch('showLanding');
    }
  });
  ui.renderPage(viewOf(page.state));
  window.addEventListener('online', () => page.dispatch('online', true));
  window.addEventListener('offline', () => page.dispatch('online', false));
  window.addEventListener('pagehide', (ev) => { if (!ev.persisted) client.close(); });
  if ('serviceWorker' in navigator && window.isSecureContext) {
    navigator.serviceWorker.register('/sw.js', { scope: '/' }).catch(() => {
      // No offline shell; the page works the same.
    });
  }
  // The dock is fixed at the bottom: the page keeps room for it above.
  if (typeof ResizeObserver === 'function') {
    new ResizeObserver(() => {
      document.documentElement.style.setProperty('--dock-h', `${el.dock.offsetHeight}px`);
    }).observe(el.dock);
  }
}

function bindControls() {
  bindChat();
  el.createForm.addEventListener('submit', onCreate);
  el.copyBtn.addEventListener('click', onCopy);
  el.shareBtn.addEventListener('click', onShare);
  el.shareBtn.hidden = typeof navigator.share !== 'function';
  el.joinForm.addEventListener('submit', onJoin);
  el.muteBtn.addEventListener('click', onMute);
  el.handBtn.addEventListener('click', onHand);
  el.seatLeaveBtn.addEventListener('click', () => client.leaveSeat());
  el.leaveBtn.addEventListener('click', onLeave);
  el.endBtn.addEventListener('click', onEndRoom);
  el.lockBtn.addEventListener('click', onLock);
  el.knockCancel.addEventListener('click', () => client.stopKnocking());
  el.doorList.addEventListener('click', (ev) => {
    const button = ev.target.closest('button[data-admit]');
    const li = button && button.closest('li[data-user]');
    if (li) {
      button.disabled = true;
      client.admit(li.dataset.user, button.dataset.admit === 'true');
    }
  });
  el.leaveGroupBtn.addEventListener('click', onLeaveGroup);
  el.audioUnlock.addEventListener('click', () => audio.unlock());
  el.micSettings.addEventListener('toggle', () => { if (el.micSettings.open) fillMicrophones(); });
  el.micSelect.addEventListener('change', onMicrophone);
  for (const b of el.sheet.querySelectorAll('.sheet-act')) {
    b.addEventListener('click', () => onSheetAction(b.dataset.act));
  }
  el.sheet.addEventListener('close', () => { sheetFor = null; });
}

/** Bring the calls screen forward (a call rings here). */
function openCalls() {
  if (page.state.screen !== 'calls') {
    window.history.pushState(null, '', '/#calls');
    page.dispatch('showCalls');
  }
}

function openRoomPage(id) {
  page.dispatch('openRoom', id);
  fetchRoom(id).then((found) => {
    if (page.state.roomId === id) {
      page.dispatch('lookedUp', found);
    }
  }).catch(() => {
    // The socket will tell the real story when the user joins.
    page.dispatch('lookupFailed');
  });
}

// ---------------------------------------------------------------- creating, joining

async function onCreate(ev) {
  ev.preventDefault();
  // Unlock playback and ask for the mic while the tap still counts as a user gesture.
  audio.unlock();
  const phase = client.state.phase;
  if (phase === 'joining' || phase === 'live' || phase === 'reconnecting') {
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
  el.joinName.value = who.name;
  const seatMode = el.createForm.querySelector('input[name="seat_mode"]:checked')?.value || 'moderated';
  const entry = el.createForm.querySelector('input[name="entry"]:checked')?.value || 'anyone';
  ui.setBusy(el.createBtn, true, 'Creating…');
  const entered = (e) => {
    const room = e.detail.state.room;
    if (e.detail.state.phase === 'live' && room) {
      client.removeEventListener('statechange', entered);
      // The room page's address, without a reload: this page holds the live media.
      window.history.replaceState(null, '', room.link);
      page.dispatch('entered', room);
    }
  };
  client.addEventListener('statechange', entered);
  try {
    await client.create({ name: who.name, title: title.name, capacity: capacity.n, seats: seats.n, seatMode, entry });
  } catch (e) {
    failEntering(e);
  } finally {
    client.removeEventListener('statechange', entered);
    ui.setBusy(el.createBtn, false);
  }
}

async function onJoin(ev) {
  ev.preventDefault();
  // Unlock playback first, synchronously, while the tap still counts as a user gesture.
  audio.unlock();
  const phase = client.state.phase;
  if (phase === 'joining' || phase === 'live' || phase === 'reconnecting' || viewOf(page.state).part === 'final') {
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
  ui.setBusy(el.joinBtn, true, 'Joining…');
  try {
    await client.join(page.state.roomId, { name: who.name });
  } catch (e) {
    failEntering(e);
  } finally {
    ui.setBusy(el.joinBtn, false);
    ui.renderPage(viewOf(page.state));
  }
}

/**
 * The call became the voice room `id` (either side's "Add someone"): this page becomes the
 * room's page and joins it as the account, a member on a seat, as if the user had opened
 * its link and pressed Join. The address is the room's link, without a reload (which
 * would drop the microphone and the audio the user's taps unlocked).
 */
async function enterGrownRoom(id, account) {
  if (['joining', 'live', 'reconnecting'].includes(client.state.phase)) {
    await client.leave().catch(() => {}); // one room at a time: the one the call became
  }
  window.history.replaceState(null, '', `/r/${id}`);
  openRoomPage(id);
  const name = (account && account.name) || stored(NAME_KEY) || 'Guest';
  el.joinName.value = name;
  ui.setBusy(el.joinBtn, true, 'Joining…');
  try {
    await client.join(id, { name });
  } catch (e) {
    failEntering(e);
  } finally {
    ui.setBusy(el.joinBtn, false);
    ui.renderPage(viewOf(page.state));
  }
}

function failEntering(e) {
  console.warn('chorus: could not enter the room', e);
  if (e.code === 'cancelled') {
    return;
  }
  ui.showToast(e.code ? describeError(e) : (e.message || String(e)),
    { code: e.code || 'join_failed', kind: e.retryable ? 'info' : 'error' });
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
    await navigator.share({ title: client.state.room ? client.state.room.name : 'Chorus room', url: el.shareLink.value });
  } catch {
    // Cancelled by the user.
  }
}

// ---------------------------------------------------------------- in the room

/** The microphones, listed when the user opens the choice (labels need the permission). */
async function fillMicrophones() {
  const mics = await client.listMicrophones();
  const pc = client.pc;
  const current = pc && pc.getSenders()[0] && pc.getSenders()[0].track;
  const now = current && current.getSettings ? current.getSettings().deviceId : '';
  el.micSelect.replaceChildren(...mics.map((m) => {
    const o = document.createElement('option');
    o.value = m.deviceId;
    o.textContent = m.label;
    o.selected = m.deviceId === now;
    return o;
  }));
}

async function onMicrophone() {
  try {
    await client.setMicrophone(el.micSelect.value);
  } catch (e) {
    ui.showToast(e.message || String(e), { code: 'microphone' });
  }
}

function onMute() {
  if (client.state.phase !== 'live') {
    return;
  }
  client.setMuted(!client.state.selfMuted);
}

function onHand() {
  if (el.handBtn.dataset.action === 'lower') {
    client.lowerHand();
  } else {
    client.requestSeat();
  }
}

let sheetFor = null;

function openActions(id) {
  const p = client.people.get(id);
  if (!p || !client.canModerate) {
    return;
  }
  sheetFor = id;
  ui.openSheet(p, client.me()?.role);
}

function closeSheet() {
  sheetFor = null;
  ui.closeSheet();
}

async function onSheetAction(act) {
  const id = sheetFor;
  const p = id && client.people.get(id);
  closeSheet();
  if (!p) {
    return;
  }
  switch (act) {
    case 'grant_seat':
      client.grantSeat(id);
      break;
    case 'revoke_seat':
      client.revokeSeat(id);
      break;
    case 'mute':
    case 'unmute':
      client.muteParticipant(id, act === 'mute');
      break;
    case 'make_moderator':
    case 'unmake_moderator':
      client.setModerator(id, act === 'make_moderator');
      break;
    case 'remove':
      if (await ui.confirmAction(`Remove ${p.name} from the room? This account cannot come back. A guest could `
        + 'return under a new name: lock the room to keep newcomers out.', 'Remove')) {
        client.remove(id);
      }
      break;
    default:
      break;
  }
}

function onLock() {
  const { phase, room } = client.state;
  if (phase === 'live' && room) {
    client.setAccess({ locked: !room.locked });
  }
}

async function onEndRoom() {
  if (client.state.phase !== 'live') {
    return;
  }
  if (await ui.confirmAction('End the room for everyone? Its link stops working.', 'End room')) {
    client.endRoom();
  }
}

/** Leave the room and give up membership of its group chat, freeing the place. */
async function onLeaveGroup() {
  if (client.state.phase !== 'live') {
    return;
  }
  const words = 'Give up your place in this room\'s group? You leave the room now, and someone else can take '
    + 'your place. To come back later you would need a free place, like a newcomer.';
  if (!(await ui.confirmAction(words, 'Give up my place'))) {
    return;
  }
  try {
    await client.leaveGroup();
  } catch (e) {
    ui.showToast(describeError(e), { code: e.code, kind: e.retryable ? 'info' : 'error' });
  }
}

async function onLeave() {
  el.leaveBtn.disabled = true;
  try {
    await client.leave();
  } finally {
    el.leaveBtn.disabled = false;
  }
}

start();

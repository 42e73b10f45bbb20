// The Calls screen (/#calls): sign up or sign in; then the people (find by handle,
// contacts with presence, recent calls with the missed ones marked) and the call itself
// (outgoing, incoming with a ring tone, in call, "Add someone"), drawn from the
// CallClient's state (sdk/calls.js). app.js decides when the screen shows, and opens the
// room a call becomes; this file draws what is in it.

import {
  CallClient, ACTIVE_PHASES, ACCOUNT_KEY, describeCallError, handleProblem, passwordProblem, normalHandle,
} from './sdk/calls.js';
import { AudioOut } from './sdk/playback.js';
import { Ringer } from './ringtone.js';
import {
  setText, setHidden, setData, setAttr, initials, showToast, hideToast, announce, setBusy,
} from './ui.js';

const $ = (id) => document.getElementById(id);

/**
 * "Add someone", shown with the in-call controls: a secondary action, on its own line
 * above the ones every call has (three big buttons in a row would not fit a phone).
 */
function growButton(screen) {
  const b = document.createElement('button');
  b.id = 'call-grow';
  b.type = 'button';
  b.className = 'btn call-grow';
  b.hidden = true;
  b.textContent = 'Add someone';
  b.title = 'Turn this call into a voice room others can join by link';
  screen.querySelector('.call-actions').before(b);
  return b;
}

const el = {
  auth: $('calls-auth'),
  signupForm: $('signup-form'),
  signupHandle: $('signup-handle'),
  signupName: $('signup-name'),
  signupPassword: $('signup-password'),
  signupBtn: $('signup-btn'),
  signinForm: $('signin-form'),
  signinHandle: $('signin-handle'),
  signinPassword: $('signin-password'),
  signinBtn: $('signin-btn'),
  showSignin: $('show-signin'),
  showSignup: $('show-signup'),
  home: $('calls-home'),
  me: $('calls-me'),
  signoutBtn: $('signout-btn'),
  ended: $('call-ended'),
  endedText: $('call-ended-text'),
  again: $('call-again'),
  done: $('call-done'),
  findForm: $('find-form'),
  findHandle: $('find-handle'),
  findBtn: $('find-btn'),
  findResult: $('find-result'),
  contactList: $('contact-list'),
  contactsCount: $('contacts-count'),
  contactsEmpty: $('contacts-empty'),
  recentList: $('recent-list'),
  recentEmpty: $('recent-empty'),
  screen: $('call-screen'),
  kind: $('call-kind'),
  peer: $('call-peer'),
  avatar: $('call-avatar'),
  name: $('call-name'),
  handle: $('call-handle'),
  status: $('call-status'),
  timer: $('call-timer'),
  speaking: $('call-speaking'),
  quality: $('call-quality'),
  unlock: $('call-unlock'),
  accept: $('call-accept'),
  decline: $('call-decline'),
  mute: $('call-mute'),
  cancel: $('call-cancel'),
  hangup: $('call-hangup'),
  grow: growButton($('call-screen')),
  settings: $('call-settings'),
  relayAlways: $('relay-always'),
};

/**
 * Where this browser once kept "always route my calls through the server"; the account
 * keeps it on the server now (`account.always_relay`), so an old value is dropped.
 */
const OLD_RELAY_KEY = 'chorus.calls.relay';

const MAX_NAME_CHARS = 40;
const RECENT_SHOWN = 30;
const PRESENCE_WORDS = { online: 'online', in_call: 'in a call', offline: 'offline' };
const QUALITY_WORDS = { good: 'Good connection', fair: 'Fair connection', poor: 'Poor connection' };
/** How a call in the list ended, in a few words. */
const END_WORDS = {
  hung_up: 'ended',
  cancelled: 'cancelled',
  declined: 'declined',
  busy: 'busy',
  no_answer: 'no answer',
  unavailable: 'not available',
  answered_elsewhere: 'answered on another device',
  disconnected: 'cut off',
  grown: 'moved to a voice room',
};

const client = new CallClient();
const ringer = new Ringer();
let audioBlocked = false;
const audio = new AudioOut($('call-audio-sink'), {
  onBlocked: (b) => { audioBlocked = b; renderCall(); },
});

let shown = false; // the calls screen is on
let authMode = 'signup';
let found = null; // the PersonInfo the last search found
let timer = null;
let onRing = () => {};
let onAccount = () => {};
let onGesture = () => {};
let relaySaving = false; // set_call_privacy in flight

// For tests and debugging: the call's peer connection (getStats) and the SDK state.
window.chorusCalls = {
  client,
  ringer,
  get pc() { return client.pc; },
  get state() { return client.state; },
};

// ---------------------------------------------------------------- words

/** 0:42, 12:05, 1:02:09. */
export function clock(secs) {
  const s = Math.max(0, Math.floor(secs));
  const two = (n) => String(n).padStart(2, '0');
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h}:${two(m)}:${two(s % 60)}` : `${m}:${two(s % 60)}`;
}

function nameOf(p) {
  return (p && (p.name || (p.handle && `@${p.handle}`))) || 'Someone';
}

/** How a call ended, as a sentence for the one who sees it. */
export function endedSentence(call) {
  const name = nameOf(call.peer);
  const took = call.durationSecs ? ` (${clock(call.durationSecs)})` : '';
  switch (call.reason) {
    case 'hung_up':
      return call.byUs ? `Call with ${name} ended${took}.` : `${name} ended the call${took}.`;
    case 'cancelled':
      return call.outgoing ? 'Call cancelled.' : `Missed call from ${name}.`;
    case 'declined':
      return call.outgoing ? `${name} declined the call.` : 'You declined the call.';
    case 'busy':
      return `${name} is busy on another call. Try again later.`;
    case 'no_answer':
      return call.outgoing ? `No answer from ${name}.` : `Missed call from ${name}.`;
    case 'unavailable':
      return call.outgoing ? `${name} is not available right now: none of their devices is online.`
        : `Missed call from ${name}.`;
    case 'answered_elsewhere':
      return 'Answered on another device.';
    case 'disconnected':
      return call.local ? 'The call was cut off: your connection to the server was lost.'
        : `The call was cut off: ${name} lost their connection.`;
    case 'media_failed':
      return `The call with ${name} could not connect: the audio could not get through. A firewall may block it; try another network.`;
    case 'grown':
      return `The call with ${name} moved to a voice room${took}.`;
    default:
      return 'The call ended.';
  }
}

function when(ms) {
  const d = new Date(ms);
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (d.toDateString() === today.toDateString()) return `today ${time}`;
  if (d.toDateString() === yesterday.toDateString()) return `yesterday ${time}`;
  return `${d.toLocaleDateString([], { day: 'numeric', month: 'short' })} ${time}`;
}

// ---------------------------------------------------------------- drawing

/** The calls screen: which part shows, then that part. */
export function render() {
  const { account, call } = client.state;
  const phase = call ? call.phase : 'none';
  const inCall = ACTIVE_PHASES.includes(phase);
  setHidden(el.auth, Boolean(account));
  setHidden(el.signupForm, authMode !== 'signup');
  setHidden(el.signinForm, authMode !== 'signin');
  setHidden(el.home, !account || inCall);
  setHidden(el.screen, !inCall);
  if (account) {
    setText(el.me, `Signed in as ${account.name} (@${account.handle}).`);
  }
  renderEnded(call);
  renderCall();
  renderSettings();
}

/** "Always route my calls through the server": the account's setting, kept by the server. */
function renderSettings() {
  const { account, net } = client.state;
  if (!relaySaving) {
    el.relayAlways.checked = Boolean(account && account.always_relay);
  }
  el.relayAlways.disabled = relaySaving || !account || net !== 'online';
}

function renderEnded(call) {
  const ended = call && call.phase === 'ended';
  setHidden(el.ended, !ended);
  setData(el.ended, 'reason', ended ? call.reason : '');
  setText(el.endedText, ended ? endedSentence(call) : '');
  if (ended) {
    const again = !['answered_elsewhere', 'hung_up', 'grown'].includes(call.reason)
      && Boolean(call.peer && call.peer.handle) && !(call.reason === 'declined' && !call.outgoing);
    setHidden(el.again, !again);
    setText(el.again, call.outgoing ? 'Call again' : 'Call back');
    setAttr(el.again, 'aria-label', `${call.outgoing ? 'Call again' : 'Call back'}: ${nameOf(call.peer)}`);
  }
}

function renderCall() {
  const call = client.state.call;
  const phase = call ? call.phase : 'none';
  setData(el.screen, 'phase', ACTIVE_PHASES.includes(phase) ? phase : '');
  setData(el.screen, 'ring', ringer.kind);
  setData(el.screen, 'ringAudible', String(ringer.audible));
  if (!call || !ACTIVE_PHASES.includes(phase)) {
    return;
  }
  const name = nameOf(call.peer);
  setText(el.avatar, initials(call.peer.name || call.peer.handle || '?'));
  setText(el.name, name);
  setText(el.handle, call.peer.handle ? `@${call.peer.handle}` : '');
  const words = {
    calling: ['Outgoing call', `Calling ${name}…`],
    ringing: ['Outgoing call · ringing', `Calling ${name}…`],
    incoming: ['Incoming call', `${name} is calling you.`],
    accepting: ['Call', 'Connecting…'],
    connecting: ['Call', call.relaying ? 'Connecting through the server…' : 'Connecting…'],
    connected: ['In call', call.muted ? 'Connected. You are muted.' : 'Connected.'],
    interrupted: ['In call', 'Connection lost: reconnecting…'],
  }[phase];
  setText(el.kind, words[0]);
  setText(el.status, words[1]);
  const live = phase === 'connected' || phase === 'interrupted';
  setHidden(el.timer, !live);
  if (live) {
    setText(el.timer, clock(client.duration));
  }
  setHidden(el.accept, phase !== 'incoming');
  setHidden(el.decline, phase !== 'incoming');
  setAttr(el.accept, 'aria-label', `Accept call from ${name}`);
  setAttr(el.decline, 'aria-label', `Decline call from ${name}`);
  setHidden(el.cancel, phase !== 'calling' && phase !== 'ringing');
  setAttr(el.cancel, 'aria-label', `Cancel call to ${name}`);
  const answered = ['accepting', 'connecting', 'connected', 'interrupted'].includes(phase);
  setHidden(el.mute, !answered);
  setHidden(el.hangup, !answered);
  setHidden(el.grow, !answered || phase === 'accepting');
  if (el.grow.getAttribute('aria-busy') !== String(Boolean(call.growing))) {
    setBusy(el.grow, Boolean(call.growing), 'Making a room…');
  }
  setText(el.mute, call.muted ? 'Unmute' : 'Mute');
  setAttr(el.mute, 'aria-pressed', String(Boolean(call.muted)));
  el.mute.classList.toggle('is-muted', Boolean(call.muted));
  setHidden(el.unlock, !(answered && audioBlocked));
  renderLevel();
  renderQuality();
}

function renderLevel() {
  const live = client.phase === 'connected';
  const speaking = live && client.remoteSpeaking;
  setData(el.peer, 'speaking', String(speaking));
  setHidden(el.speaking, !speaking);
  const ring = speaking ? String(Math.min(1, 0.4 + 3 * client.remoteLevel)) : '0';
  if (el.peer.style.getPropertyValue('--level') !== ring) {
    el.peer.style.setProperty('--level', ring);
  }
}

function renderQuality() {
  const q = client.quality;
  const phase = client.phase;
  let text = '';
  if (phase === 'interrupted') {
    text = 'Reconnecting…';
  } else if (q && (phase === 'connected' || phase === 'connecting')) {
    const parts = [QUALITY_WORDS[q.grade]];
    if (q.rttMs !== null) parts.push(`${q.rttMs} ms`);
    parts.push(`${q.lossPct}% loss`);
    parts.push({ sfu: 'through the server', turn: 'through a relay' }[q.via] || (q.path === 'relayed' ? 'through a relay' : 'direct'));
    text = parts.join(' · ');
  }
  setText(el.quality, text);
  setData(el.quality, 'grade', q ? q.grade : '');
}

/** A keyed list: one <li> per key, reused and moved only when out of place. */
function renderList(list, items, keyOf, make, fill) {
  const old = new Map([...list.children].map((li) => [li.dataset.key, li]));
  let cursor = list.firstChild;
  for (const item of items) {
    const key = keyOf(item);
    let li = old.get(key);
    old.delete(key);
    if (!li) {
      li = make();
      li.dataset.key = key;
    }
    fill(li, item);
    if (li === cursor) {
      cursor = cursor.nextSibling;
    } else {
      list.insertBefore(li, cursor);
    }
  }
  for (const li of old.values()) {
    li.remove();
  }
}

function makeRow(kind) {
  const li = document.createElement('li');
  li.className = `person ${kind}`;
  li.innerHTML = '<span class="avatar" aria-hidden="true"></span>'
    + '<span class="who"><span class="name"><span class="label"></span><span class="tag missed-tag" hidden>missed</span></span>'
    + '<span class="sub"><span class="presence-dot" aria-hidden="true"></span><span class="sub-text"></span></span></span>'
    + '<button type="button" class="btn call-btn">Call</button>';
  return li;
}

function fillPerson(li, p) {
  const busy = ACTIVE_PHASES.includes(client.phase);
  setData(li, 'user', p.user);
  setData(li, 'handle', p.handle);
  setData(li, 'presence', p.presence);
  setText(li.querySelector('.avatar'), initials(p.name || p.handle));
  setText(li.querySelector('.label'), p.name);
  setAttr(li.querySelector('.label'), 'title', p.name);
  setText(li.querySelector('.sub-text'), `@${p.handle} · ${PRESENCE_WORDS[p.presence] || p.presence}`);
  const b = li.querySelector('.call-btn');
  setData(b, 'handle', p.handle);
  setAttr(b, 'aria-label', `Call ${p.name}`);
  b.disabled = busy;
}

function fillRecent(li, r) {
  setData(li, 'call', r.id);
  setData(li, 'missed', String(Boolean(r.missed)));
  setData(li, 'end', r.end);
  setData(li, 'outgoing', String(Boolean(r.outgoing)));
  setData(li, 'handle', r.peer.handle);
  setData(li, 'presence', r.peer.presence);
  li.classList.toggle('missed', Boolean(r.missed));
  setText(li.querySelector('.avatar'), initials(r.peer.name || r.peer.handle));
  setText(li.querySelector('.label'), r.peer.name);
  setAttr(li.querySelector('.label'), 'title', r.peer.name);
  setHidden(li.querySelector('.missed-tag'), !r.missed);
  // A missed call says so in its tag; the others say how long, or how they ended (a call
  // that became a room says both).
  const how = r.duration_secs ? clock(r.duration_secs) : (r.missed ? '' : END_WORDS[r.end] || r.end);
  const moved = r.end === 'grown' && r.duration_secs ? END_WORDS.grown : '';
  setText(li.querySelector('.sub-text'),
    [r.outgoing ? '↗ Outgoing' : '↙ Incoming', when(r.started_at_ms), how, moved].filter(Boolean).join(' · '));
  const b = li.querySelector('.call-btn');
  setData(b, 'handle', r.peer.handle);
  setText(b, r.missed ? 'Call back' : 'Call');
  setAttr(b, 'aria-label', `${r.missed ? 'Call back' : 'Call'} ${r.peer.name}`);
  b.disabled = ACTIVE_PHASES.includes(client.phase);
}

function renderPeople() {
  const people = [...client.people.values()];
  renderList(el.contactList, people, (p) => p.user, () => makeRow('contact'), fillPerson);
  setText(el.contactsCount, people.length ? String(people.length) : '');
  setHidden(el.contactsEmpty, people.length > 0);
  const recent = client.calls.slice(0, RECENT_SHOWN);
  renderList(el.recentList, recent, (r) => r.id, () => makeRow('recent'), fillRecent);
  setHidden(el.recentEmpty, recent.length > 0);
  const f = found && (client.people.get(found.user) || found);
  setHidden(el.findResult, !f);
  renderList(el.findResult, f ? [f] : [], (p) => p.user, () => makeRow('contact found'), fillPerson);
}

// ---------------------------------------------------------------- the call's sounds and focus

function followPhase(state, prev) {
  const phase = state.call ? state.call.phase : 'none';
  const before = prev.call ? prev.call.phase : 'none';
  if (phase === 'incoming') {
    ringer.start('incoming');
  } else if (phase === 'ringing') {
    ringer.start('outgoing');
  } else {
    ringer.stop(); // any end of the ring: answered, declined, cancelled, missed
  }
  const relaying = Boolean(state.call && state.call.relaying);
  if (relaying && !(prev.call && prev.call.relaying) && ACTIVE_PHASES.includes(phase)) {
    announce(phase === 'connected' ? 'The call now goes through the server.' : 'Connecting through the server…');
  }
  if (phase === before) {
    return;
  }
  clearInterval(timer);
  timer = null;
  if (phase === 'connected' || phase === 'interrupted') {
    timer = setInterval(() => setText(el.timer, clock(client.duration)), 1000);
  }
  if (phase === 'incoming' || phase === 'calling') {
    onRing();
  }
  if (phase === 'ended') {
    audio.releaseAll();
    audioBlocked = false;
    announce(endedSentence(state.call));
  } else if (phase === 'incoming') {
    announce(`Incoming call from ${nameOf(state.call.peer)}.`);
  } else if (phase === 'connected' && before === 'connecting') {
    announce(state.call.path === 'relayed'
      ? `Connected to ${nameOf(state.call.peer)} through the server.` : `Connected to ${nameOf(state.call.peer)}.`);
  }
  // Keep the keyboard where the user can act: the control that matters now.
  queueMicrotask(() => {
    const target = {
      incoming: el.accept, calling: el.cancel, ringing: el.cancel, connecting: el.hangup, connected: el.hangup, ended: el.done,
    }[phase];
    const a = document.activeElement;
    const lost = !a || a === document.body || a.closest('[hidden]') || a.disabled;
    if (target && shown && (lost || phase === 'incoming') && !target.closest('[hidden]')) {
      target.focus();
    }
  });
}

// ---------------------------------------------------------------- taps

/**
 * In a tap, before any await: let the call's audio and the ring tone play later (and the
 * page's room audio: a call may become a room).
 */
function unlockAudio() {
  audio.unlock();
  ringer.prime();
  onGesture();
}

function fail(e) {
  console.warn('chorus calls:', e);
  showToast(describeCallError(e), { code: e.code || 'call_failed', kind: e.retryable ? 'info' : 'error' });
}

function checkName(raw) {
  const name = raw.trim();
  if (!name) return { error: 'Please enter a display name: it is what people see when you call.' };
  if ([...name].length > MAX_NAME_CHARS) return { error: `A display name may be at most ${MAX_NAME_CHARS} characters.` };
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) return { error: 'The display name holds characters that cannot be shown.' };
  return { name };
}

async function onSignup(ev) {
  ev.preventDefault();
  unlockAudio();
  hideToast();
  const name = checkName(el.signupName.value);
  const problems = [
    [handleProblem(el.signupHandle.value), el.signupHandle],
    [name.error, el.signupName],
    [passwordProblem(el.signupPassword.value), el.signupPassword],
  ].filter(([p]) => p);
  if (problems.length) {
    showToast(problems[0][0], { code: 'invalid_input' });
    problems[0][1].focus();
    return;
  }
  setBusy(el.signupBtn, true, 'Signing up…');
  try {
    const account = await client.register({
      handle: el.signupHandle.value, name: name.name, password: el.signupPassword.value,
    });
    el.signupPassword.value = '';
    announce(`Signed up: you are @${account.handle}.`);
  } catch (e) {
    fail(e);
    (e.code === 'handle_taken' ? el.signupHandle : el.signupPassword).focus();
  } finally {
    setBusy(el.signupBtn, false);
  }
}

async function onSignin(ev) {
  ev.preventDefault();
  unlockAudio();
  hideToast();
  if (!normalHandle(el.signinHandle.value) || !el.signinPassword.value) {
    showToast('Enter your handle and your password.', { code: 'invalid_input' });
    (normalHandle(el.signinHandle.value) ? el.signinPassword : el.signinHandle).focus();
    return;
  }
  setBusy(el.signinBtn, true, 'Signing in…');
  try {
    const account = await client.signIn({ handle: el.signinHandle.value, password: el.signinPassword.value });
    el.signinPassword.value = '';
    announce(`Signed in as @${account.handle}.`);
  } catch (e) {
    fail(e);
    el.signinPassword.focus();
  } finally {
    setBusy(el.signinBtn, false);
  }
}

async function onFind(ev) {
  ev.preventDefault();
  hideToast();
  const raw = el.findHandle.value;
  const problem = handleProblem(raw);
  if (problem) {
    showToast(problem, { code: 'invalid_input' });
    el.findHandle.focus();
    return;
  }
  setBusy(el.findBtn, true, 'Finding…');
  try {
    const me = client.state.account;
    if (me && normalHandle(raw) === me.handle) {
      found = null;
      showToast('That is you: find someone else by their handle.', { code: 'invalid_input', kind: 'info' });
    } else {
      found = await client.findPerson(raw);
      announce(`Found ${found.name}, ${PRESENCE_WORDS[found.presence]}.`);
    }
  } catch (e) {
    found = null;
    fail(e);
  } finally {
    setBusy(el.findBtn, false);
    renderPeople();
  }
}

async function callHandle(handle) {
  unlockAudio();
  hideToast();
  try {
    await client.call(handle);
  } catch (e) {
    fail(e);
  }
}

function onListClick(ev) {
  const b = ev.target.closest('button.call-btn[data-handle]');
  if (b && !b.disabled) {
    callHandle(b.dataset.handle);
  }
}

async function onAccept() {
  unlockAudio();
  hideToast();
  el.accept.disabled = true;
  try {
    await client.accept();
  } catch (e) {
    fail(e);
  } finally {
    el.accept.disabled = false;
  }
}

/** "Add someone": the call becomes a voice room (the `grown` event opens it). */
async function onGrow() {
  unlockAudio();
  hideToast();
  announce('Making a voice room for this call…');
  try {
    await client.growCall();
  } catch (e) {
    fail(e);
  }
}

async function onRelayAlways() {
  const on = el.relayAlways.checked;
  relaySaving = true;
  renderSettings();
  try {
    await client.setAlwaysRelay(on);
    announce(on ? 'Your calls will go through the server, on all your devices.'
      : 'Your calls with people you know will go direct when they can.');
  } catch (e) {
    fail(e);
  } finally {
    relaySaving = false;
    renderSettings(); // the account's value, whether or not it changed
  }
}

// ---------------------------------------------------------------- start

/**
 * Bind the screen. `onRing()` is called when a call starts ringing here (incoming, or
 * placed), so the page can bring the calls screen forward; `onAccount(account)` when
 * this browser signs in (the page uses the account's name in rooms too); `onGrown(room,
 * account)` when the call became the voice room `room` (the page opens and joins it);
 * `onGesture()` inside each of the user's taps here, before any await (the page unlocks
 * its room audio). `connect`: be reachable now (when this browser keeps an account).
 */
export function startCalls({
  onRing: ring = () => {}, onAccount: signedIn = () => {}, onGrown = () => {}, onGesture: gesture = () => {},
  connect = true, signInLink = '',
} = {}) {
  onRing = ring;
  onAccount = signedIn;
  onGesture = gesture;
  el.signupForm.addEventListener('submit', onSignup);
  el.signinForm.addEventListener('submit', onSignin);
  el.showSignin.addEventListener('click', () => { authMode = 'signin'; render(); el.signinHandle.focus(); });
  el.showSignup.addEventListener('click', () => { authMode = 'signup'; render(); el.signupHandle.focus(); });
  el.signoutBtn.addEventListener('click', () => {
    client.signOut();
    found = null;
    authMode = 'signin';
    announce('Signed out.');
  });
  el.findForm.addEventListener('submit', onFind);
  for (const list of [el.contactList, el.recentList, el.findResult]) {
    list.addEventListener('click', onListClick);
  }
  el.accept.addEventListener('click', onAccept);
  el.decline.addEventListener('click', () => client.decline());
  el.cancel.addEventListener('click', () => client.hangUp());
  el.hangup.addEventListener('click', () => client.hangUp());
  el.grow.addEventListener('click', onGrow);
  el.mute.addEventListener('click', () => {
    const call = client.state.call;
    if (call) client.setMuted(!call.muted);
  });
  el.unlock.addEventListener('click', () => audio.unlock());
  el.again.addEventListener('click', () => {
    const call = client.state.call;
    if (call && call.peer && call.peer.handle) callHandle(call.peer.handle);
  });
  el.done.addEventListener('click', () => client.dismiss());
  // The setting is the account's (the server keeps it); it applies from the next call.
  setHidden(el.settings, typeof RTCPeerConnection !== 'function');
  el.relayAlways.addEventListener('change', onRelayAlways);
  try {
    localStorage.removeItem(OLD_RELAY_KEY);
  } catch {
    // private mode: nothing was kept
  }

  client.addEventListener('statechange', (ev) => {
    const { account } = ev.detail.state;
    if (account && account !== ev.detail.prev.account) {
      onAccount(account);
    }
    followPhase(ev.detail.state, ev.detail.prev);
    render();
    if (ev.detail.state.call !== ev.detail.prev.call) {
      renderPeople(); // call buttons are disabled while a call is on
    }
  });
  client.addEventListener('contacts', renderPeople);
  client.addEventListener('track', (ev) => audio.play(ev.detail.track));
  client.addEventListener('level', renderLevel);
  client.addEventListener('quality', renderQuality);
  client.addEventListener('servererror', (ev) => fail(ev.detail.error));
  client.addEventListener('grown', (ev) => onGrown(ev.detail.room, client.state.account));
  window.addEventListener('pagehide', (ev) => { if (!ev.persisted) client.close(); });
  // Another tab of this browser signed in or out: one account per browser, so follow it.
  window.addEventListener('storage', (ev) => {
    if (ev.key !== ACCOUNT_KEY || !connect) return;
    if (!ev.newValue && client.state.account) {
      client.signOut();
      authMode = 'signin';
    } else if (ev.newValue && !client.state.account) {
      client.connect().catch(() => {});
    }
  });
  render();
  renderPeople();
  if (signInLink) {
    authMode = 'signin';
    client.signInWithLink(signInLink)
      .then((account) => announce(`Signed in as @${account.handle}.`))
      .catch(fail);
  } else if (connect) {
    client.connect().catch(() => {}); // offline now: the page says so, and retries on open
  }
  return client;
}

/** The calls screen is shown (or not): be reachable when shown. */
export function showCalls(on) {
  shown = on;
  if (on) {
    if (client.state.account && client.state.net === 'offline') {
      client.connect().catch(() => {});
    }
    render();
  }
}

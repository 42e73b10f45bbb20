// 1:1 calls SDK (no DOM): an account (sign up, sign in, sign out), the people it knows
// with their presence and its recent calls, and one call at a time whose audio goes
// straight from this browser to the other (an RTCPeerConnection with trickled ICE), or
// through the SFU: from the start when the server says so (strangers, or a side that hides
// its address), or when the direct path does not connect or is lost. That is the call's
// own two-seat room, joined with the room SDK. An answered call can also become a voice
// room others join by link ("Add someone"). docs/protocol.md, "Calls".
//
// A call is a small state machine: `state.call.phase` changes only along CALL_PHASE_EDGES
// and every change is a `statechange` event, so a page draws from one snapshot.

import { Signal, ServerError, describeError, socketUrl } from './signal.js';
import { openMic, stopStream } from './media.js';
import { ChorusClient, TOKEN_KEY, defaultStorage } from './chorus.js';

export { ServerError };

/**
 * The life of a call (`none`: there is none):
 * - `calling`: `call` sent, not yet ringing (the microphone is already open);
 * - `ringing`: outgoing, the callee's devices ring;
 * - `incoming`: someone calls us; `accepting` once we said yes;
 * - `connecting`: answered, the two browsers are connecting;
 * - `connected`: audio flows; `interrupted`: the path was lost, ICE tries again;
 * - `ended`: over, `call.reason` says how (the server's reasons, or `media_failed`);
 *   `grown`: the call became the voice room `call.room` (open `/r/<room>`).
 * A call refused before it rang (`user_not_found`, `forbidden`, …) goes back to `none`,
 * and so does one that rings here when this client closes or signs out (the others ring on).
 */
export const CALL_PHASE_EDGES = Object.freeze({
  none: ['calling', 'incoming'],
  calling: ['ringing', 'ended', 'none'],
  ringing: ['connecting', 'ended'],
  incoming: ['accepting', 'ended', 'none'],
  accepting: ['connecting', 'ended'],
  connecting: ['connected', 'ended'],
  connected: ['interrupted', 'ended'],
  interrupted: ['connected', 'ended'],
  ended: ['none', 'calling', 'incoming'],
});

/** Phases in which a call holds the microphone and can be hung up. */
export const ACTIVE_PHASES = Object.freeze(['calling', 'ringing', 'incoming', 'accepting', 'connecting', 'connected', 'interrupted']);

/**
 * Where the account `{user, handle, name, always_relay}` is kept beside the token (other
 * tabs watch it).
 */
export const ACCOUNT_KEY = 'chorus.account';
const REQUEST_TIMEOUT_MS = 10_000;
/** Reconnect delays (ms) of the signaling socket; the last repeats. ±20 % jitter. */
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 10_000];
/** An answered call whose audio does not (re)connect within this is given up. */
const MEDIA_TIMEOUT_MS = 20_000;
/**
 * An answered call whose direct path has not connected by then goes through the SFU; so
 * does one whose direct path was lost and did not come back this long after its ICE restart.
 */
const DIRECT_TIMEOUT_MS = 5000;
/** The phases of an answered call (it can go through the SFU, or become a room). */
const ANSWERED_PHASES = Object.freeze(['connecting', 'connected', 'interrupted']);
/** How often the peer connection's stats are read (speaking level, quality). */
const STATS_EVERY_MS = 250;
/** Quality is judged over this window. */
const QUALITY_EVERY_MS = 1000;
/** Below this level (≈ -40 dBFS) nobody hears it as talking. */
export const SPEAKING_FLOOR = 0.01;
/** "Speaking" lasts this long after the last level above the floor. */
const SPEAKING_HOLD_MS = 400;

/** Sentences for the errors of accounts and calls; anything else as signal.js says it. */
const CALL_WORDS = {
  handle_taken: 'That handle is taken: choose another one.',
  unauthorized: 'Wrong handle or password.',
  user_not_found: 'Nobody has that handle. Check the spelling: handles are exact.',
  forbidden: 'This person does not take calls from you.',
  already_in_call: 'You are in a call already: hang up first.',
  not_signed_in: 'Calls need an account: sign up or sign in first.',
  call_not_found: 'That call has ended.',
  unreachable: 'Could not reach the Chorus server. Check your connection and try again.',
  disconnected: 'Not connected to the server. Try again in a moment.',
  timeout: 'The server did not answer in time. Try again.',
};

/** Words for an error of this SDK (a ServerError, or a microphone Error). */
export function describeCallError(err) {
  const code = err && err.code;
  const server = (err && err.message) || '';
  const sentence = server ? describeError({ message: server }) : '';
  if (code === 'rate_limited' || code === 'invalid_input' || code === 'handle_taken') {
    // The server's words say what is wrong (which limit, how long to wait, which handle).
    return sentence || CALL_WORDS[code] || 'Too many tries: wait a moment, then try again.';
  }
  if (code === 'user_not_found' && /@\S+/.test(server)) {
    return `${sentence.replace(/^Nobody is called/, 'Nobody has the handle')} Handles are exact.`;
  }
  if ((code === 'forbidden' || code === 'unauthorized') && /sign-in link/.test(server)) {
    return sentence; // a link refused: used already, expired, not this server's
  }
  if (code === 'forbidden' && server) {
    return sentence;
  }
  if (CALL_WORDS[code]) {
    return CALL_WORDS[code];
  }
  return code ? describeError(err) : (server || 'Something went wrong.');
}

/** Tidy a handle as the server does (a leading `@` dropped, lower case). */
export function normalHandle(raw) {
  return String(raw || '').trim().replace(/^@/, '').toLowerCase();
}

/** Why a handle would be refused, in words, or '' (the rules of proto::people::parse_handle). */
export function handleProblem(raw) {
  const h = normalHandle(raw);
  if (h.length < 2 || h.length > 20) {
    return 'A handle has 2 to 20 characters.';
  }
  if (!/^[a-z0-9_.]+$/.test(h)) {
    return 'A handle may hold only letters a–z, digits, _ and dots.';
  }
  if (h.startsWith('.') || h.endsWith('.') || h.includes('..')) {
    return 'A handle may not start or end with a dot, nor have two in a row.';
  }
  return '';
}

/** Why a new password would be refused, in words, or ''. */
export function passwordProblem(password) {
  if ([...String(password || '')].length < 8) {
    return 'A password has at least 8 characters.';
  }
  if (new TextEncoder().encode(password).length > 256) {
    return 'A password may be at most 256 bytes.';
  }
  return '';
}

const wait = (ms, wake) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  wake.now = () => { clearTimeout(t); resolve(); };
});

/** `RTCIceCandidate.toJSON()`, keeping only the fields the protocol carries. */
function candidateJson(c) {
  const j = typeof c.toJSON === 'function' ? c.toJSON() : c;
  const out = { candidate: j.candidate || '' };
  if (j.sdpMid !== null && j.sdpMid !== undefined) out.sdpMid = j.sdpMid;
  if (j.sdpMLineIndex !== null && j.sdpMLineIndex !== undefined) out.sdpMLineIndex = j.sdpMLineIndex;
  if (j.usernameFragment) out.usernameFragment = j.usernameFragment;
  return out;
}

/**
 * Calls of one account.
 *
 * Events (`CustomEvent`s; read `event.detail`):
 * - `statechange` `{ state, prev, transition }` — net, account or call changed;
 * - `contacts` `{}` — `client.people`, `client.calls` or `client.blocked` changed
 *   (a `presence` frame included);
 * - `track` `{ track, stream }` — the other side's audio (play it in an `<audio>`; the
 *   `audioElement` option does that for you);
 * - `level` `{ level, speaking }` — the other side's speaking level (0..1);
 * - `quality` `{ quality }` — round-trip time, loss, jitter, path (`client.quality`);
 * - `grown` `{ call, room }` — the call became the voice room `room` (ours or the other
 *   side's "Add someone"): open `/r/<room>` and join it as any room; the call is `ended`
 *   (`grown`);
 * - `servererror` `{ error }` — a refusal that answered no request of ours.
 *
 * @example
 * const calls = new CallClient({ audioElement: document.querySelector('audio') });
 * await calls.connect();                       // signed in already? (stored token)
 * await calls.signIn({ handle: 'ada', password: '…' });
 * calls.addEventListener('statechange', (e) => draw(e.detail.state));
 * await calls.call('bo');                      // rings Bo's devices
 */
export class CallClient extends EventTarget {
  /**
   * @param {object} [options]
   * @param {string} [options.server] base URL of the Chorus server (default: this page's)
   * @param {{get(k:string):string, set(k:string,v:string):void}} [options.storage] where
   *   the user token and the account are kept (default: localStorage)
   * @param {HTMLAudioElement} [options.audioElement] plays the other side's audio
   * @param {boolean} [options.reconnect] reconnect the socket by itself (default true)
   * @param {'auto'|'always'} [options.relay] `auto` (default): as the server says (straight
   *   to the other browser between contacts, through the SFU for strangers or when either
   *   side's account set `setAlwaysRelay`), and through the SFU if the direct path does
   *   not connect; `always`: also through the SFU from the start for this client alone
   *   (no direct peer connection here). A local extra: the account's setting
   *   (`setAlwaysRelay`) holds on every device and stops the other side's candidates too
   * @param {number} [options.directTimeoutMs] how long the direct path may take to
   *   connect before the call moves to the SFU (default 5000)
   */
  constructor({
    server, storage, audioElement = null, reconnect = true, relay = 'auto', directTimeoutMs = DIRECT_TIMEOUT_MS,
  } = {}) {
    super();
    /** `auto` or `always`; may change between calls (it is read when a call is answered). */
    this.relay = relay;
    this.directTimeoutMs = directTimeoutMs;
    this.server = server || globalThis.location.href;
    this.storage = storage || defaultStorage();
    this.audioElement = audioElement;
    this.autoReconnect = reconnect;
    /** @type {Map<string, object>} user id -> PersonInfo (contacts, with presence) */
    this.people = new Map();
    /** @type {object[]} CallRecords, newest first */
    this.calls = [];
    /** Records pushed (`call_recorded`) that no `contacts` answer has listed yet. */
    this._pushed = new Map();
    /** @type {object[]} PersonInfo of whom this account blocked */
    this.blocked = [];
    /** The other side's level (0..1) and whether it speaks now. */
    this.remoteLevel = 0;
    this.remoteSpeaking = false;
    /**
     * { grade: good|fair|poor, rttMs, lossPct, jitterMs, path: direct|relayed,
     *   via: sfu|turn|null, local, remote } or null
     */
    this.quality = null;
    this._signal = null;
    this._pc = null;
    this._room = null; // the ChorusClient carrying a relayed call
    this._directTimer = null;
    this._directUp = false; // the direct peer connection reached ICE connected
    this._relayAsked = false;
    this._rescuing = false; // the direct path was lost after it worked: one ICE restart under way
    this._deviceId = undefined;
    this._mic = null;
    this._remoteStream = null;
    this._pendingCandidates = [];
    this._signalChain = Promise.resolve();
    this._statsTimer = null;
    this._mediaTimer = null;
    this._heardAt = 0;
    this._energy = null; // the last energy sample, where there is no audioLevel
    this._statsBusy = false;
    this._window = null; // the last quality sample
    this._attempt = 0; // bumps with every outgoing attempt
    this._cancelled = 0; // the attempt hung up before it rang
    this._wake = {};
    this._reconnecting = false;
    this._found = new Map(); // handle -> PersonInfo from findPerson (names a call that ends at once)
    this._gone = []; // ids of calls ended here (their late frames are not a new call's)
    this._placing = null; // the `call` request in flight
    this._requests = Promise.resolve(); // the queue of requests (one in flight)
    const account = this._storedAccount();
    this._state = Object.freeze({
      net: 'offline', // offline | connecting | online
      account: account && this.storage.get(TOKEN_KEY) ? account : null,
      call: null,
    });
    if (globalThis.addEventListener) {
      globalThis.addEventListener('online', () => this._wake.now && this._wake.now());
    }
  }

  /**
   * A frozen snapshot: `{ net, account: {user, handle, name, always_relay} | null, call }`
   * (`always_relay`: the account's calls all go through the SFU, `setAlwaysRelay`).
   */
  get state() { return this._state; }

  /** The call's RTCPeerConnection (the direct one, or the room's when relayed), or null (for stats). */
  get pc() { return this._pc || (this._room && this._room.pc) || null; }

  /** The room SDK's client while the call goes through the SFU, else null. */
  get room() { return this._room; }

  /** The other side's audio as a MediaStream while a call has it (also in `track` events). */
  get remoteStream() { return this._remoteStream; }

  /** The phase of the call, `none` without one. */
  get phase() { return this._state.call ? this._state.call.phase : 'none'; }

  // ------------------------------------------------------------------ state

  _set(patch, transition) {
    const prev = this._state;
    this._state = Object.freeze({ ...prev, ...patch });
    this._emit('statechange', { state: this._state, prev, transition });
  }

  /** Move the call to `phase` (checked against CALL_PHASE_EDGES), with `patch`. */
  _toCall(phase, patch, transition) {
    const from = this.phase;
    if (phase !== from && !CALL_PHASE_EDGES[from].includes(phase)) {
      throw new Error(`chorus calls: no transition ${from} -> ${phase} (${transition})`);
    }
    const call = phase === 'none' ? null : Object.freeze({ ...(this._state.call || {}), ...patch, phase });
    this._set({ call }, transition);
  }

  _patchCall(patch, transition) {
    this._toCall(this.phase, patch, transition);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _storedAccount() {
    try {
      const a = JSON.parse(this.storage.get(ACCOUNT_KEY) || 'null');
      return a && a.user && a.handle ? a : null;
    } catch {
      return null;
    }
  }

  _keepAccount(account, token) {
    this.storage.set(TOKEN_KEY, token);
    this.storage.set(ACCOUNT_KEY, JSON.stringify(account));
  }

  // ------------------------------------------------------------------ the socket

  /**
   * Be reachable: if this browser keeps an account (its token), open the socket as that
   * account and load its contacts. Resolves with the account, or null when signed out.
   */
  async connect() {
    if (!this._state.account && this.storage.get(TOKEN_KEY) && this._storedAccount()) {
      // Another tab of this browser signed in meanwhile.
      this._set({ account: this._storedAccount() }, 'account_stored');
    }
    const account = this._state.account;
    if (!account) {
      return null;
    }
    if (this._signal && this._signal.isOpen) {
      return this._state.account;
    }
    let welcome;
    try {
      welcome = await this._open(account.name);
    } catch (e) {
      if (this.autoReconnect) {
        this._reconnect(); // keep trying: being reachable is the point
      }
      throw e;
    }
    if (!welcome.account) {
      // The server no longer knows this token as an account (e.g. its data was reset).
      this.storage.set(ACCOUNT_KEY, '');
      this._set({ account: null }, 'signed_out');
      return null;
    }
    this._keepAccount(welcome.account, welcome.user_token);
    this._set({ account: welcome.account }, 'signed_in');
    await this.refreshContacts().catch(() => {});
    return welcome.account;
  }

  /** Open the socket and say hello as `name` (with the stored token). */
  async _open(name) {
    if (this._signal && this._signal.isOpen && this._signal.name === name) {
      return this._signal.welcome;
    }
    if (this._signal) {
      this._dropSignal();
    }
    const signal = new Signal(socketUrl(this.server));
    this._signal = signal;
    signal.addEventListener('message', (ev) => { if (this._signal === signal) this._onMessage(ev.detail); });
    signal.addEventListener('server-error', (ev) => {
      if (this._signal === signal) this._emit('servererror', { error: ev.detail });
    });
    signal.addEventListener('closed', (ev) => { if (this._signal === signal) this._onClosed(ev.detail); });
    this._set({ net: 'connecting' }, 'connecting');
    try {
      const welcome = await signal.open(name, this.storage.get(TOKEN_KEY), { takesCalls: true });
      this.storage.set(TOKEN_KEY, welcome.user_token);
      if (this._signal === signal) {
        this._set({ net: 'online' }, 'welcome');
      }
      return welcome;
    } catch (e) {
      if (this._signal === signal) {
        this._signal = null;
        this._set({ net: 'offline' }, 'unreachable');
      }
      throw e;
    }
  }

  _dropSignal() {
    const signal = this._signal;
    this._signal = null;
    if (signal) {
      signal.close();
    }
  }

  /**
   * One request at a time: an `error` answers the request in flight, so two in flight
   * could take each other's refusals.
   */
  _request(msg, answer) {
    const run = () => {
      if (!this._signal || !this._signal.isOpen) {
        throw new ServerError('disconnected', 'Not connected to the server.');
      }
      return this._signal.request(msg, answer, REQUEST_TIMEOUT_MS);
    };
    const p = this._requests.then(run, run);
    this._requests = p.catch(() => {});
    return p;
  }

  _send(msg) {
    return Boolean(this._signal && this._signal.send(msg));
  }

  _onClosed() {
    this._signal = null;
    this._set({ net: 'offline' }, 'socket_closed');
    // The server ends a call whose session closes (`disconnected`, or `cancelled`).
    if (ACTIVE_PHASES.includes(this.phase)) {
      this._end('disconnected', { byUs: false, local: true }, 'socket_closed');
    }
    if (this.autoReconnect && this._state.account) {
      this._reconnect();
    }
  }

  async _reconnect() {
    if (this._reconnecting) {
      return;
    }
    this._reconnecting = true;
    try {
      for (let attempt = 1; this._state.account && !(this._signal && this._signal.isOpen); attempt += 1) {
        const base = BACKOFF_MS[Math.min(attempt - 1, BACKOFF_MS.length - 1)];
        await wait(Math.round(base * (0.8 + 0.4 * Math.random())), this._wake);
        if (!this._state.account || (this._signal && this._signal.isOpen)) {
          return;
        }
        try {
          await this.connect();
        } catch {
          // next attempt
        }
      }
    } finally {
      this._reconnecting = false;
    }
  }

  /** Close the socket and any call (e.g. when the page goes away). */
  close() {
    this.autoReconnect = false;
    this._leaveCall();
    this._dropSignal();
  }

  /**
   * Going away: hang up a call of ours. A call that only rings here is not declined for
   * every device: this one just stops ringing (the server drops it with the socket).
   */
  _leaveCall() {
    if (this.phase === 'incoming') {
      this._toCall('none', {}, 'left_ringing');
    } else if (ACTIVE_PHASES.includes(this.phase)) {
      this.hangUp();
    }
  }

  // ------------------------------------------------------------------ the account

  /**
   * Make this browser's user an account: `handle` (unique, how people find you), `name`
   * (shown to them) and `password`. Resolves with the account `{user, handle, name}`.
   */
  async register({ handle, name, password }) {
    if (this._state.account) {
      throw new ServerError('invalid_input', `you are signed in as @${this._state.account.handle} already; sign out first`);
    }
    const problem = handleProblem(handle) || passwordProblem(password);
    if (problem) {
      throw new ServerError('invalid_input', problem);
    }
    const welcome = await this._open(name);
    if (welcome.account) {
      // The token is an account's already (another tab signed in): that is who we are.
      return this._signedIn(welcome.account, welcome.user_token);
    }
    const { account, user_token: token } = await this._request(
      { type: 'register', handle: normalHandle(handle), password }, 'account');
    return this._signedIn(account, token);
  }

  /** Sign in to an account (on any number of devices). Resolves with the account. */
  async signIn({ handle, password }) {
    if (this._state.account) {
      throw new ServerError('invalid_input', `you are signed in as @${this._state.account.handle} already; sign out first`);
    }
    if (!normalHandle(handle) || !password) {
      throw new ServerError('unauthorized', 'wrong handle or password');
    }
    // The name of a guest who signs in does not matter: the account keeps its own.
    const welcome = this._signal && this._signal.isOpen ? this._signal.welcome : await this._open('Guest');
    if (welcome && welcome.account) {
      return this._signedIn(welcome.account, welcome.user_token);
    }
    const { account, user_token: token } = await this._request(
      { type: 'sign_in', handle: normalHandle(handle), password }, 'account');
    return this._signedIn(account, token);
  }

  /**
   * Sign in with a one-time link from the app's backend (the code after `#sign_in=`;
   * `POST /api/v1/users` with `link: true`). The link says who this browser is now:
   * whoever it was signed in as before is signed out first. A link works once.
   */
  async signInWithLink(code) {
    if (!code) {
      throw new ServerError('unauthorized', 'this sign-in link is incomplete; ask for a new one');
    }
    if (this._state.account || this.storage.get(ACCOUNT_KEY)) {
      this.signOut();
    }
    let welcome = this._signal && this._signal.isOpen ? this._signal.welcome : await this._open('Guest');
    if (welcome.account) {
      this.signOut(); // the stored token was an account's: start over as a guest
      welcome = await this._open('Guest');
    }
    const { account, user_token: token } = await this._request({ type: 'sign_in_with_link', code }, 'account');
    return this._signedIn(account, token);
  }

  async _signedIn(account, token) {
    this._keepAccount(account, token);
    // Our next hello (a reconnect) must carry the account's name, or it would rename it.
    if (this._signal) {
      this._signal.name = account.name;
    }
    this._set({ account }, 'signed_in');
    await this.refreshContacts().catch(() => {});
    return account;
  }

  /** Forget the account on this browser: hang up, close the socket, drop the token. */
  signOut() {
    this._leaveCall();
    this._dropSignal();
    this.storage.set(TOKEN_KEY, '');
    this.storage.set(ACCOUNT_KEY, '');
    this.people = new Map();
    this.calls = [];
    this._pushed = new Map();
    this.blocked = [];
    this._set({ account: null, net: 'offline', call: null }, 'signed_out');
    this._emit('contacts', {});
  }

  /**
   * Route every call of this account through the server (the SFU), also with contacts, or
   * not (the default: contacts talk browser to browser). Kept by the server for all the
   * account's devices; the other side of such a call never sees our network address, nor
   * we theirs. Applies from the next call. Resolves with the account
   * (`state.account.always_relay`).
   */
  async setAlwaysRelay(on) {
    if (!this._state.account) {
      throw new ServerError('not_signed_in', 'sign up or sign in first');
    }
    const { account, user_token: token } = await this._request(
      { type: 'set_call_privacy', always_relay: Boolean(on) }, 'account');
    if (!this._state.account || this._state.account.user !== account.user) {
      return account; // signed out meanwhile
    }
    this._keepAccount(account, token);
    this._set({ account }, 'call_privacy');
    return account;
  }

  // ------------------------------------------------------------------ people

  /** Someone by their exact handle: PersonInfo `{user, handle, name, presence}`. */
  async findPerson(handle) {
    const problem = handleProblem(handle);
    if (problem) {
      throw new ServerError('invalid_input', problem);
    }
    const { person } = await this._request({ type: 'find_person', handle: normalHandle(handle) }, 'person');
    this._found.set(person.handle, person);
    return person;
  }

  /** Load the contacts (with presence), the recent calls and whom we blocked. */
  async refreshContacts() {
    let msg;
    try {
      msg = await this._request({ type: 'contacts' }, 'contacts');
    } catch (e) {
      if (e.code !== 'call_not_found') {
        throw e;
      }
      // A late candidate of a call that just ended was refused meanwhile: ask again.
      msg = await this._request({ type: 'contacts' }, 'contacts');
    }
    this._takeContacts(msg);
  }

  /** Refuse (or allow again) someone's calls. */
  async block(user, blocked = true) {
    this._takeContacts(await this._request({ type: 'block', user, blocked: Boolean(blocked) }, 'contacts'));
  }

  _takeContacts(msg) {
    this.people = new Map(msg.people.map((p) => [p.user, p]));
    // An answer read before a call's record was written must not drop a record pushed
    // since (`call_recorded` can overtake it): keep those until an answer has them.
    const listed = new Set(msg.calls.map((c) => c.id));
    for (const id of [...this._pushed.keys()]) {
      if (listed.has(id)) this._pushed.delete(id);
    }
    // Those are newer than all the answer holds (the list is in the order calls ended).
    this.calls = [...[...this._pushed.values()].reverse(), ...msg.calls];
    this.blocked = msg.blocked;
    this._emit('contacts', {});
  }

  /** A call of ours ended (on any device): it heads the recent calls. */
  _takeRecord(record) {
    this._pushed.set(record.id, record);
    this.calls = [record, ...this.calls.filter((c) => c.id !== record.id)];
    if (!this.people.has(record.peer.user) && this._signal && this._signal.isOpen) {
      this.refreshContacts().catch(() => {}); // a new contact: the list says it
    }
    this._emit('contacts', {});
  }

  // ------------------------------------------------------------------ a call

  /**
   * Ring the account with `handle` on all its devices. Takes the microphone first (call
   * it inside the user's tap). Resolves once it rings (or ended at once: `busy`,
   * `unavailable`, see `state.call.reason`); rejects when refused (`user_not_found`,
   * `forbidden`, `already_in_call`, `rate_limited`), the call gone back to `none`.
   */
  async call(handle, { deviceId } = {}) {
    if (ACTIVE_PHASES.includes(this.phase)) {
      throw new ServerError('already_in_call', 'you are in a call already; hang up first');
    }
    const problem = handleProblem(handle);
    if (problem) {
      throw new ServerError('invalid_input', problem);
    }
    const h = normalHandle(handle);
    // An attempt cancelled before it rang is hung up when its answer comes: let that
    // answer come first, so it is not taken for this call's.
    if (this._placing) {
      await this._placing.catch(() => {});
    }
    if (ACTIVE_PHASES.includes(this.phase)) {
      throw new ServerError('already_in_call', 'you are in a call already; hang up first');
    }
    // Whom we call, by name, before the server says (a call may end without ringing).
    const known = [...this.people.values()].find((p) => p.handle === h) || this._found.get(h)
      || this.calls.map((c) => c.peer).find((p) => p.handle === h);
    const attempt = ++this._attempt;
    this._toCall('calling', {
      id: null, outgoing: true, peer: known || { user: null, handle: h, name: h, presence: 'online' },
      reason: null, byUs: false, local: false, muted: false, connectedAt: 0, endedAt: 0, durationSecs: 0, error: null,
      path: null, relaying: false, growing: false, room: null,
    }, 'call');
    try {
      this._mic = await openMic(deviceId);
      this._deviceId = deviceId;
      if (attempt !== this._attempt || this.phase !== 'calling') {
        this._stopMic();
        return;
      }
      const placing = this._request({ type: 'call', handle: h }, ['call_ringing', 'call_ended']);
      this._placing = placing;
      try {
        await placing;
      } finally {
        if (this._placing === placing) this._placing = null;
      }
    } catch (e) {
      if (attempt === this._attempt && this.phase === 'calling') {
        this._stopMic();
        this._toCall('none', {}, 'call_refused');
      }
      throw e;
    }
  }

  /** Take the incoming call on this device. Takes the microphone (call it inside the tap). */
  async accept({ deviceId } = {}) {
    const call = this._state.call;
    if (!call || call.phase !== 'incoming') {
      throw new ServerError('call_not_found', 'there is no call to answer');
    }
    const mic = await openMic(deviceId);
    const now = this._state.call;
    if (!now || now.id !== call.id || now.phase !== 'incoming') {
      stopStream(mic); // it ended (or was answered elsewhere) while the microphone opened
      return;
    }
    this._mic = mic;
    this._deviceId = deviceId;
    this._toCall('accepting', {}, 'accept');
    try {
      await this._request({ type: 'accept_call', call: call.id }, ['call_accepted', 'call_ended']);
    } catch (e) {
      if (this._state.call && this._state.call.id === call.id && this.phase === 'accepting') {
        this._end(e.code === 'call_not_found' ? 'cancelled' : 'disconnected', { error: e }, 'accept_failed');
      }
      throw e;
    }
  }

  /** Refuse the incoming call (every device of ours stops ringing). */
  decline() {
    const call = this._state.call;
    if (!call || call.phase !== 'incoming') {
      return;
    }
    this._send({ type: 'decline_call', call: call.id });
    this._end('declined', { byUs: true }, 'decline');
  }

  /** End the call: cancel it while it rings, or hang up. */
  hangUp(reason) {
    const call = this._state.call;
    if (!call || !ACTIVE_PHASES.includes(call.phase)) {
      return;
    }
    if (call.phase === 'incoming') {
      this.decline();
      return;
    }
    const answered = !['calling', 'ringing'].includes(call.phase);
    if (call.id) {
      this._send({ type: 'hang_up', call: call.id });
    } else {
      this._cancelled = this._attempt; // hang up as soon as it rings
    }
    this._end(reason || (answered ? 'hung_up' : 'cancelled'), { byUs: true }, 'hang_up');
  }

  /** Mute or unmute our microphone (no renegotiation: the track sends silence). */
  setMuted(muted) {
    if (!this._state.call) {
      return;
    }
    for (const t of this._mic ? this._mic.getAudioTracks() : []) {
      t.enabled = !muted;
    }
    if (this._room) {
      this._room.setMuted(Boolean(muted)); // the SFU is told too: it stops forwarding us
    }
    this._patchCall({ muted: Boolean(muted) }, 'mute');
  }

  /**
   * Add someone: turn the answered call into a voice room that anyone with its link joins
   * (an open room; we and the other side on its seats, the caller its owner, the callee a
   * moderator). Both sides get the room (`grown` event, `state.call.room`) and the call
   * ends `grown` on both; open `/r/<room>` then. `state.call.growing` is true while the
   * server makes it. Resolves with the room id; rejects when refused (`invalid_input`
   * before the answer, `call_not_found` once the call ended).
   */
  async growCall() {
    const call = this._state.call;
    if (!call || !call.id || !ANSWERED_PHASES.includes(call.phase)) {
      throw new ServerError('invalid_input', 'a call can become a room once it is answered');
    }
    const mine = () => this._state.call && this._state.call.id === call.id;
    this._patchCall({ growing: true }, 'grow_asked');
    try {
      const { room } = await this._request({ type: 'grow_call', call: call.id }, 'call_grown');
      return room;
    } catch (e) {
      if (mine() && ACTIVE_PHASES.includes(this.phase)) {
        this._patchCall({ growing: false }, 'grow_refused');
      }
      throw e;
    }
  }

  /** Forget an ended call (the page has shown how it ended). */
  dismiss() {
    if (this.phase === 'ended') {
      this._toCall('none', {}, 'dismiss');
    }
  }

  /** Seconds since the call connected (0 before). */
  get duration() {
    const c = this._state.call;
    if (!c || !c.connectedAt) {
      return 0;
    }
    return Math.max(0, Math.floor(((c.endedAt || Date.now()) - c.connectedAt) / 1000));
  }

  _end(reason, patch, transition) {
    const call = this._state.call;
    if (!call || call.phase === 'ended') {
      return;
    }
    const endedAt = Date.now();
    if (call.id) {
      this._gone = [...this._gone.slice(-19), call.id];
    }
    this._closePeer();
    this._stopMic();
    this._toCall('ended', {
      reason,
      endedAt,
      durationSecs: call.connectedAt ? Math.round((endedAt - call.connectedAt) / 1000) : 0,
      ...patch,
    }, transition);
    // Its record follows (`call_recorded`, also for a call another device of ours took,
    // once that one ends); contacts may have changed too (a first call makes a contact).
    if (reason !== 'answered_elsewhere' && this._signal && this._signal.isOpen) {
      this.refreshContacts().catch(() => {});
    }
  }

  // ------------------------------------------------------------------ frames

  _onMessage(msg) {
    const call = this._state.call;
    const mine = (id) => call && call.id === id;
    switch (msg.type) {
      case 'presence': {
        const p = this.people.get(msg.user);
        if (p) {
          this.people.set(msg.user, { ...p, presence: msg.presence });
          this._emit('contacts', { presence: msg.user });
        }
        if (call && call.peer && call.peer.user === msg.user) {
          this._patchCall({ peer: { ...call.peer, presence: msg.presence } }, 'presence');
        }
        break;
      }
      case 'call_ringing':
        if (this.phase === 'calling') {
          this._patchCall({ id: msg.call.id, peer: msg.call.callee }, 'ringing_id');
          this._toCall('ringing', {}, 'ringing');
        } else if (this._cancelled === this._attempt) {
          // We hung up before it rang: end it on the server too.
          this._send({ type: 'hang_up', call: msg.call.id });
        }
        break;
      case 'call_incoming':
        if (!ACTIVE_PHASES.includes(this.phase)) {
          this._toCall('incoming', {
            id: msg.call.id, outgoing: false, peer: msg.call.caller, reason: null, byUs: false, local: false,
            muted: false, connectedAt: 0, endedAt: 0, durationSecs: 0, error: null, path: null, relaying: false,
            growing: false, room: null,
          }, 'incoming');
        }
        break;
      case 'call_accepted':
        if (mine(msg.call.id) && (call.phase === 'ringing' || call.phase === 'accepting')) {
          this._toCall('connecting', {
            peer: call.outgoing ? msg.call.callee : msg.call.caller, relaying: Boolean(msg.relay),
          }, 'accepted');
          this._relayAsked = false;
          this._directUp = false;
          if (msg.relay) {
            // Strangers, or a side that hides its address: the server moves the call to the
            // SFU by itself (`call_relayed` follows). No direct peer connection: the server
            // would refuse its call_signal anyway.
            this._relayAsked = true;
            this._armMediaTimer();
          } else if (this.relay === 'always') {
            // No direct peer connection at all: no candidate of ours reaches the other side.
            this._armMediaTimer();
            this._askRelay();
          } else {
            this._startPeer(msg.ice_servers || []);
            this._armDirectTimer();
          }
        }
        break;
      case 'call_recorded':
        this._takeRecord(msg.record);
        break;
      case 'call_grown':
        // `call_ended` (`grown`) follows: this end is ours already, so that one is ignored.
        if (mine(msg.call) && ACTIVE_PHASES.includes(call.phase)) {
          this._end('grown', { room: msg.room, byUs: Boolean(call.growing), growing: false }, 'grown');
          this._emit('grown', { call: msg.call, room: msg.room });
        }
        break;
      case 'call_relayed':
        if (mine(msg.call) && ANSWERED_PHASES.includes(call.phase) && !this._room) {
          this._joinRoom(msg.room);
        }
        break;
      case 'call_signal':
        if (mine(msg.call) && this._pc) {
          const pc = this._pc;
          this._signalChain = this._signalChain
            .then(() => this._takeSignal(pc, msg))
            .catch((e) => console.warn('chorus calls: could not apply a signal', e));
        }
        break;
      case 'call_ended':
        if (this._gone.includes(msg.call)) {
          break; // the server confirms what we ended already
        }
        if (mine(msg.call)) {
          this._end(msg.reason, {}, 'ended');
        } else if (this.phase === 'calling' && !call.id) {
          // Ended at once (busy, unavailable): it never rang.
          this._patchCall({ id: msg.call }, 'ended_id');
          this._end(msg.reason, {}, 'ended');
        }
        break;
      default:
        break;
    }
  }

  // ------------------------------------------------------------------ media

  _startPeer(iceServers) {
    this._closePeer();
    const pc = new RTCPeerConnection({ iceServers, bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    this._pc = pc;
    this._pendingCandidates = [];
    this._signalChain = Promise.resolve();
    this._rescuing = false;
    const call = this._state.call;
    if (this._mic) {
      for (const t of this._mic.getAudioTracks()) {
        t.enabled = !call.muted;
        pc.addTrack(t, this._mic);
      }
    }
    pc.addEventListener('icecandidate', (ev) => {
      if (pc !== this._pc) return;
      // No candidate: the end of the trickle (for the bundled first m-line).
      const candidate = ev.candidate ? candidateJson(ev.candidate) : { candidate: '', sdpMLineIndex: 0 };
      this._send({ type: 'call_signal', call: call.id, candidate });
    });
    pc.addEventListener('track', (ev) => {
      if (pc !== this._pc) return;
      const stream = ev.streams[0] || new MediaStream([ev.track]);
      this._remoteStream = stream;
      if (this.audioElement) {
        this.audioElement.srcObject = stream;
        Promise.resolve(this.audioElement.play()).catch(() => {});
      }
      this._emit('track', { track: ev.track, stream });
    });
    pc.addEventListener('connectionstatechange', () => this._onConnectionState(pc));
    pc.addEventListener('iceconnectionstatechange', () => {
      if (pc !== this._pc) return;
      const s = pc.iceConnectionState;
      if (s === 'connected' || s === 'completed') {
        this._directUp = true;
        this._clearDirectTimer();
      } else if (s === 'failed' && !this._directUp) {
        this._askRelay();
      }
    });
    this._armMediaTimer();
    this._startStats(pc);
    if (call.outgoing) {
      // The caller makes the offer (docs/protocol.md).
      this._signalChain = this._signalChain.then(() => this._offer(pc, {}))
        .catch((e) => console.warn('chorus calls: could not make the offer', e));
    }
  }

  async _offer(pc, options) {
    const offer = await pc.createOffer(options);
    if (pc !== this._pc) return;
    await pc.setLocalDescription(offer);
    const d = pc.localDescription;
    this._send({ type: 'call_signal', call: this._state.call.id, description: { type: d.type, sdp: d.sdp } });
  }

  async _takeSignal(pc, msg) {
    if (pc !== this._pc) return;
    if (msg.description) {
      await pc.setRemoteDescription(msg.description);
      if (msg.description.type === 'offer') {
        const answer = await pc.createAnswer();
        await pc.setLocalDescription(answer);
        const d = pc.localDescription;
        this._send({ type: 'call_signal', call: this._state.call.id, description: { type: d.type, sdp: d.sdp } });
      }
      const queued = this._pendingCandidates;
      this._pendingCandidates = [];
      for (const c of queued) {
        await this._addCandidate(pc, c);
      }
    }
    if (msg.candidate) {
      if (!pc.remoteDescription) {
        this._pendingCandidates.push(msg.candidate);
      } else {
        await this._addCandidate(pc, msg.candidate);
      }
    }
  }

  async _addCandidate(pc, candidate) {
    try {
      if (!candidate.candidate) {
        await pc.addIceCandidate(); // the end of the other side's trickle
      } else {
        await pc.addIceCandidate(candidate);
      }
    } catch (e) {
      // One unusable candidate (e.g. an address family we lack) spoils nothing.
      if (candidate.candidate) console.warn('chorus calls: a candidate was refused', e);
    }
  }

  _onConnectionState(pc) {
    if (pc !== this._pc) return;
    const s = pc.connectionState;
    const phase = this.phase;
    if (s === 'failed' && !this._directUp) {
      this._askRelay(); // the direct path never worked: through the SFU
    }
    if (s === 'connected') {
      this._directUp = true;
      this._rescuing = false;
      this._clearDirectTimer();
      this._clearMediaTimer();
      if (phase === 'connecting') {
        this._toCall('connected', { connectedAt: Date.now(), path: 'direct' }, 'media_connected');
        this._send({ type: 'call_connected', call: this._state.call.id });
      } else if (phase === 'interrupted') {
        this._toCall('connected', {}, 'media_reconnected');
      }
    } else if (s === 'disconnected' || s === 'failed') {
      if (phase === 'connected') {
        this._toCall('interrupted', {}, 'media_interrupted');
      }
      this._armMediaTimer();
      if (s === 'failed' && this._directUp) {
        this._rescueDirect(pc);
      }
    } else if (s === 'closed') {
      this._clearMediaTimer();
    }
  }

  /**
   * The direct path worked, then failed: one ICE restart (the caller offers again, the
   * callee answers it). If that does not bring it back within `directTimeoutMs`, or the
   * path fails again meanwhile, the call goes on through the SFU. Both sides watch, so
   * either may ask (the server makes the call's room once).
   */
  _rescueDirect(pc) {
    if (this._rescuing) {
      this._askRelay(); // failed again after the restart
      return;
    }
    this._rescuing = true;
    this._armDirectTimer(() => pc === this._pc && pc.connectionState !== 'connected');
    if (this._state.call.outgoing) {
      this._signalChain = this._signalChain.then(() => this._offer(pc, { iceRestart: true }))
        .catch((e) => console.warn('chorus calls: ICE restart failed', e));
    }
  }

  _armMediaTimer() {
    if (this._mediaTimer) return;
    this._mediaTimer = setTimeout(() => {
      this._mediaTimer = null;
      if (!['connecting', 'interrupted'].includes(this.phase)) {
        return;
      }
      if (this._pc && this._directUp && !this._relayAsked) {
        // A direct path that worked is gone and the browser has not even called it failed
        // yet: go on through the SFU rather than hang up (the room gets its own allowance).
        this._askRelay();
        this._armMediaTimer();
        return;
      }
      this.hangUp('media_failed');
    }, MEDIA_TIMEOUT_MS);
  }

  _clearMediaTimer() {
    clearTimeout(this._mediaTimer);
    this._mediaTimer = null;
  }

  _closePeer() {
    this._clearMediaTimer();
    this._clearDirectTimer();
    clearInterval(this._statsTimer);
    this._statsTimer = null;
    if (this._pc) {
      this._pc.close();
      this._pc = null;
    }
    if (this._room) {
      const room = this._room;
      this._room = null;
      room.close(); // the call's end ends its room on the server
    }
    if (this.audioElement) {
      this.audioElement.srcObject = null;
    }
    this._remoteStream = null;
    this._pendingCandidates = [];
    this._window = null;
    this._energy = null;
    if (this.remoteLevel || this.remoteSpeaking) {
      this.remoteLevel = 0;
      this.remoteSpeaking = false;
      this._emit('level', { level: 0, speaking: false });
    }
    if (this.quality) {
      this.quality = null;
      this._emit('quality', { quality: null });
    }
  }

  _stopMic() {
    stopStream(this._mic);
    this._mic = null;
  }

  // ------------------------------------------------------------------ through the SFU

  /**
   * Through the SFU unless the direct path is up within `directTimeoutMs`: `stillDown()`
   * says whether it is not (default: it has never connected).
   */
  _armDirectTimer(stillDown = () => !this._directUp && this.phase === 'connecting') {
    this._clearDirectTimer();
    this._directTimer = setTimeout(() => {
      this._directTimer = null;
      if (stillDown()) {
        this._askRelay();
      }
    }, this.directTimeoutMs);
  }

  _clearDirectTimer() {
    clearTimeout(this._directTimer);
    this._directTimer = null;
  }

  /** Ask the server to carry the call through the SFU (once a call; either side may). */
  _askRelay() {
    const call = this._state.call;
    if (this._relayAsked || this._room || !call || !call.id || !ACTIVE_PHASES.includes(call.phase)) {
      return;
    }
    this._relayAsked = true;
    this._clearDirectTimer();
    this._send({ type: 'relay_call', call: call.id });
    this._patchCall({ relaying: true }, 'relay_asked');
  }

  /**
   * `call_relayed`: the call goes on in `roomId`, joined as any room from a second socket
   * of this account (the same stored token). The direct peer connection is dropped even
   * if it came up meanwhile: the server counts the call as relayed, and the other side
   * follows the same frame, so both end up on one path.
   */
  async _joinRoom(roomId) {
    const call = this._state.call;
    const account = this._state.account;
    this._closePeer();
    // The room SDK opens the microphone itself (the same device): ours would be a second capture.
    this._stopMic();
    this._armMediaTimer(); // a fresh allowance for the room's connection
    const room = new ChorusClient({ server: this.server, storage: this.storage });
    this._room = room;
    this._patchCall({ relaying: true, path: 'relayed' }, 'relayed');
    const tracks = [];
    room.addEventListener('track', (ev) => {
      if (room !== this._room) return;
      tracks.push(ev.detail.track);
      const stream = new MediaStream(tracks);
      this._remoteStream = stream;
      if (this.audioElement) {
        this.audioElement.srcObject = stream;
        Promise.resolve(this.audioElement.play()).catch(() => {});
      }
      this._emit('track', { track: ev.detail.track, stream });
    });
    const connected = () => {
      if (room !== this._room || !room.pc || room.pc.connectionState !== 'connected') return;
      this._clearMediaTimer();
      if (this.phase === 'connecting') {
        this._toCall('connected', { connectedAt: Date.now() }, 'media_connected');
      } else if (this.phase === 'interrupted') {
        this._toCall('connected', {}, 'media_reconnected');
      }
    };
    room.addEventListener('media', connected);
    room.addEventListener('peer', (ev) => {
      if (room === this._room) this._startStats(ev.detail.pc);
    });
    room.addEventListener('statechange', (ev) => {
      if (room !== this._room) return;
      if (ev.detail.state.phase === 'reconnecting' && this.phase === 'connected') {
        this._toCall('interrupted', {}, 'media_interrupted');
        this._armMediaTimer();
      }
      // `ended` (room_closed): the call's end, which the calls socket tells as well.
    });
    try {
      await room.join(roomId, { name: (account && account.name) || 'Guest', deviceId: this._deviceId });
      if (room !== this._room) return;
      if (this._state.call && this._state.call.muted) {
        room.setMuted(true); // muted before the room was joined (a join starts unmuted)
      }
      connected();
    } catch (e) {
      if (room !== this._room || !call || !this._state.call || this._state.call.id !== call.id) return;
      console.warn('chorus calls: could not join the call\'s room', e);
      this.hangUp('media_failed');
    }
  }

  // ------------------------------------------------------------------ stats

  _startStats(pc) {
    clearInterval(this._statsTimer);
    this._statsBusy = false;
    this._statsTimer = setInterval(async () => {
      if (this._statsBusy || pc !== this.pc) return;
      this._statsBusy = true;
      try {
        await this._sample(pc);
      } catch {
        // a closed connection: the next tick stops
      } finally {
        this._statsBusy = false;
      }
    }, STATS_EVERY_MS);
  }

  async _sample(pc) {
    const report = await pc.getStats();
    if (pc !== this.pc) return;
    const all = new Map();
    report.forEach((s) => all.set(s.id, s));
    let inbound = null;
    let remoteInbound = null;
    let pair = null;
    for (const s of all.values()) {
      if (s.type === 'inbound-rtp' && (s.kind || s.mediaType) === 'audio') {
        // The room's peer connection has several receive slots: the one that carries the other side.
        if (!inbound || (s.packetsReceived || 0) > (inbound.packetsReceived || 0)) inbound = s;
      }
      else if (s.type === 'remote-inbound-rtp' && (s.kind || s.mediaType) === 'audio') remoteInbound = s;
      else if (s.type === 'transport' && s.selectedCandidatePairId) pair = all.get(s.selectedCandidatePairId) || pair;
    }
    if (!pair) {
      // Firefox has no transport stats: the pair it marks selected, else a nominated one.
      const pairs = [...all.values()].filter((s) => s.type === 'candidate-pair');
      pair = pairs.find((s) => s.selected) || pairs.find((s) => s.nominated && s.state === 'succeeded') || null;
    }
    const now = Date.now();
    this._sampleLevel(inbound, now);
    const w = this._window;
    if (!w || now - w.at >= QUALITY_EVERY_MS) {
      this._sampleQuality(inbound, remoteInbound, pair, all, now);
    }
  }

  _sampleLevel(inbound, now) {
    let level = 0;
    if (inbound && typeof inbound.audioLevel === 'number') {
      level = inbound.audioLevel;
    } else if (inbound && typeof inbound.totalAudioEnergy === 'number') {
      const prev = this._energy;
      this._energy = { e: inbound.totalAudioEnergy, d: inbound.totalSamplesDuration || 0 };
      if (prev && this._energy.d > prev.d) {
        level = Math.sqrt(Math.max(0, (this._energy.e - prev.e) / (this._energy.d - prev.d)));
      }
    }
    if (level >= SPEAKING_FLOOR) {
      this._heardAt = now;
    }
    const speaking = now - this._heardAt < SPEAKING_HOLD_MS;
    const rounded = Math.round(level * 100) / 100;
    if (rounded !== this.remoteLevel || speaking !== this.remoteSpeaking) {
      this.remoteLevel = rounded;
      this.remoteSpeaking = speaking;
      this._emit('level', { level: rounded, speaking });
    }
  }

  _sampleQuality(inbound, remoteInbound, pair, all, now) {
    const prev = this._window;
    const cur = {
      at: now,
      received: inbound ? inbound.packetsReceived || 0 : 0,
      lost: inbound ? Math.max(0, inbound.packetsLost || 0) : 0,
    };
    this._window = cur;
    if (!pair) {
      return;
    }
    const local = all.get(pair.localCandidateId);
    const remote = all.get(pair.remoteCandidateId);
    let rtt = typeof pair.currentRoundTripTime === 'number' ? pair.currentRoundTripTime : null;
    if (rtt === null && remoteInbound && typeof remoteInbound.roundTripTime === 'number') {
      rtt = remoteInbound.roundTripTime;
    }
    let lossPct = 0;
    if (prev) {
      const got = cur.received - prev.received;
      const lost = cur.lost - prev.lost;
      lossPct = got + lost > 0 ? (100 * Math.max(0, lost)) / (got + lost) : 0;
      // Nothing in a whole window is loss on a direct path; through the SFU it may be
      // silence (the SFU forwards only who speaks).
      if (got <= 0 && this.phase === 'connected' && !this._room) {
        lossPct = 100;
      }
    }
    const rttMs = rtt === null ? null : Math.round(rtt * 1000);
    const jitterMs = inbound && typeof inbound.jitter === 'number' ? Math.round(inbound.jitter * 1000) : null;
    let grade = 'good';
    if (lossPct > 8 || (rttMs !== null && rttMs > 500) || (jitterMs !== null && jitterMs > 80)) {
      grade = 'poor';
    } else if (lossPct > 2 || (rttMs !== null && rttMs > 250) || (jitterMs !== null && jitterMs > 40)) {
      grade = 'fair';
    }
    const localType = local ? local.candidateType : null;
    const remoteType = remote ? remote.candidateType : null;
    const quality = Object.freeze({
      grade,
      rttMs,
      lossPct: Math.round(lossPct * 10) / 10,
      jitterMs,
      path: this._room || localType === 'relay' || remoteType === 'relay' ? 'relayed' : 'direct',
      via: this._room ? 'sfu' : (localType === 'relay' || remoteType === 'relay' ? 'turn' : null),
      local: localType,
      remote: remoteType,
    });
    const q = this.quality;
    if (!q || q.grade !== quality.grade || q.rttMs !== quality.rttMs || q.lossPct !== quality.lossPct
      || q.path !== quality.path || q.jitterMs !== quality.jitterMs) {
      this.quality = quality;
      this._emit('quality', { quality });
    }
  }
}

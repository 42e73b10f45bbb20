// Chorus client SDK: one voice-room session (the signaling WebSocket and one peer
// connection to the SFU) as an event target, with no DOM of its own. The Chorus page is
// built on it; docs/embedding.md shows another app embedding a room with it.
//
// The session is a small state machine. `state.phase` changes only through the named
// transitions below (PHASE_EDGES says which are legal), and every change is announced
// with a `statechange` event, so a page renders from one source of truth.

import { Signal, ServerError, RETRYABLE_CODES, describeError, fetchRoom, socketUrl } from './signal.js';
import {
  openMic, createPeer, mediaConnected, stopStream, listMicrophones, AUDIO_SLOTS,
} from './media.js';

export { ServerError, RETRYABLE_CODES, describeError, fetchRoom, listMicrophones, AUDIO_SLOTS };
// Chat attachments (HTTP, same user token): see attachments.js and chat.js.
export { Attachments, AttachmentError, humanSize } from './attachments.js';
export { hashFile } from './sha256.js';

/**
 * The life of a session:
 * - `idle`: not in a room (a failed join comes back here, with `state.error`);
 * - `joining`: socket, microphone, offer, `join`/`create_room` in flight;
 * - `live`: in the room (its `room.state` may still be `pending` for a new room);
 * - `reconnecting`: the socket or the media was lost; the client rejoins by itself with
 *   back-off, as the same user (stored token), into the same seat and role. After a lost
 *   socket it first `resume`s the session with its latest sealed state while the peer
 *   connection keeps flowing (transition `resumed`: same participant, seat and role, the
 *   audio never stopped); only if that is refused does it make a new peer connection and
 *   `join` again (transition `rejoined`). With
 *   `state.reason` `media_moved` the socket is fine and only the audio is moving to
 *   another SFU node (the server's `reconnect_media`): the session keeps its place, seat
 *   and role, the room's updates keep coming, and it is `live` again once the new peer
 *   connection's ICE connects (transition `media_reconnected`);
 * - `left`: we left, or another tab took our place (`state.reason`);
 * - `ended`: the room is over for us: `removed`, `room_closed`, `not_created`.
 */
export const PHASE_EDGES = Object.freeze({
  idle: ['joining'],
  joining: ['live', 'idle', 'ended'],
  live: ['live', 'reconnecting', 'left', 'ended'],
  reconnecting: ['reconnecting', 'live', 'left', 'ended'],
  left: ['joining'],
  ended: ['joining'],
});

/** Where the user token is kept: shared by rooms and calls (sdk/calls.js), one user per browser. */
export const TOKEN_KEY = 'chorus.user_token';
/**
 * Where the latest sealed session state is mirrored (sessionStorage: one per tab):
 * `{ session, state, expires, room }`.
 */
export const SESSION_KEY = 'chorus.session';
/** `error` codes that refuse a `resume`: the client then joins again with a fresh offer. */
export const RESUME_REFUSALS = Object.freeze(['session_expired', 'session_invalid', 'session_replayed', 'resume_failed']);
const ENTER_TIMEOUT_MS = 20_000;
/** A knock waits this long for a moderator (the server's own limit is 5 minutes). */
const KNOCK_WAIT_MS = 5 * 60_000 + 10_000;
const REQUEST_TIMEOUT_MS = 5_000;
/** Reconnect delays (ms) before each attempt; the last repeats. ±20 % jitter. */
const BACKOFF_MS = [250, 1000, 2000, 4000, 8000, 10_000];
/** A speaker stays "speaking" this long after the last level above the floor. */
const SPEAKING_HOLD_MS = 400;
/**
 * The server lists room noise too (levels around 0.004 for a quiet mic); below about
 * -40 dBFS nobody reads it as talking.
 */
export const SPEAKING_FLOOR = 0.01;
/** Notices about our own changes wait this long, so that a removal cancels them. */
const NOTICE_DELAY_MS = 250;

/** localStorage when it works (private modes may refuse), else memory. */
export function defaultStorage() {
  const memory = new Map();
  return {
    get(key) {
      try {
        return globalThis.localStorage.getItem(key) || '';
      } catch {
        return memory.get(key) || '';
      }
    },
    set(key, value) {
      try {
        globalThis.localStorage.setItem(key, value);
      } catch {
        memory.set(key, value);
      }
    },
  };
}

/** The session state mirrored in sessionStorage (this tab only), or null. */
function readSession() {
  try {
    const raw = globalThis.sessionStorage && globalThis.sessionStorage.getItem(SESSION_KEY);
    const s = raw ? JSON.parse(raw) : null;
    return s && typeof s.session === 'string' && typeof s.state === 'string' ? s : null;
  } catch {
    return null;
  }
}

function writeSession(s) {
  try {
    if (!globalThis.sessionStorage) {
      return;
    }
    if (s) {
      globalThis.sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
    } else {
      globalThis.sessionStorage.removeItem(SESSION_KEY);
    }
  } catch {
    // private modes may refuse: memory is enough
  }
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal.wake = () => { clearTimeout(t); resolve(); };
});

/**
 * One voice-room session.
 *
 * Events (all `CustomEvent`s; read `event.detail`):
 * - `statechange` `{ state, prev, transition }` — the phase, room or own flags changed;
 * - `participants` `{ updated: string[], removed: string[] }` — people to re-draw;
 * - `speaking` `{ changed: string[] }` — whose speaking level changed (`client.levels`);
 * - `notice` `{ code, text }` — something happened to us: `on_stage`, `invited`,
 *   `to_audience`, `muted_by_moderator`, `unmuted_by_moderator`, `moderator`,
 *   `not_moderator`, `hand_raised_no_seat`, `room_live`, `joined:<name>`, …;
 * - `servererror` `{ error }` — a request was refused (`error.code`, words in `describeError`);
 * - `track` `{ track, slot }` — a remote audio track to play (one per audio slot);
 * - `peer` `{ pc }` / `peerclosed` — a peer connection started / was closed;
 * - `media` `{ connectionState }` — the peer connection's state changed;
 * - `signal` `{ signal }` — a new signaling socket is open (sdk/chat.js follows it);
 * - `mediareconnect` `{ status, reason, error }` — the SFU node carrying the room's media
 *   went away (`reconnect_media`): `status` is `started` (phase `reconnecting`, reason
 *   `media_moved`; the old peer connection is closed, `peerclosed` fires), then
 *   `connected` (a new peer connection is live: new `track` events, play them as at
 *   join) or `failed` (`error`; the client falls back to rejoining, as after a lost
 *   socket).
 * - `resume` `{ status, error }` — after a lost socket: `resumed` (the same peer connection
 *   goes on, no new `track`s) or `refused` (`error.code`: `session_expired`,
 *   `session_invalid`, `session_replayed`, `resume_failed`; the client joins again with a
 *   new peer connection).
 *
 * @example
 * const client = new ChorusClient();
 * client.addEventListener('track', (e) => { audioEl.srcObject = new MediaStream([e.detail.track]); });
 * await client.join('room-id', { name: 'Ada' });
 */
export class ChorusClient extends EventTarget {
  /**
   * @param {object} [options]
   * @param {string} [options.server] base URL of the Chorus server (default: this page's)
   * @param {{get(k:string):string, set(k:string,v:string):void}} [options.storage] where
   *   the user token is kept (default: localStorage)
   * @param {string} [options.userToken] a token your backend minted (server API); it wins
   *   over the stored one
   * @param {boolean} [options.reconnect] rejoin by itself after a loss (default true)
   */
  constructor({ server, storage, userToken, reconnect = true } = {}) {
    super();
    this.server = server || globalThis.location.href;
    this.storage = storage || defaultStorage();
    this.autoReconnect = reconnect;
    if (userToken) {
      this.storage.set(TOKEN_KEY, userToken);
    }
    /** @type {Map<string, object>} participant id -> ParticipantInfo (docs/protocol.md) */
    this.people = new Map();
    /** @type {Map<string, number>} who is speaking now: participant id -> level 0..1 */
    this.levels = new Map();
    this._heard = new Map(); // id -> last time above the floor
    this._expiry = null;
    this._signal = null;
    this._pc = null;
    this._mic = null;
    this._deviceId = '';
    this._rollback = null;
    this._mediaMove = 0; // the run of a media move in progress (reconnect_media), or 0
    this._notices = [];
    this._noticeTimer = null;
    this._run = 0; // bumps on every entry/exit, so stale async work knows it is stale
    this._sleeper = {};
    /** The latest sealed session state: { session, state, expires, room }, or null. */
    this._session = readSession();
    /** How many times the session was resumed with its media untouched. */
    this.resumes = 0;
    /** The code of the last refused `resume` (e.g. `resume_failed`), or null: kept after later resumes. */
    this.lastResumeError = null;
    this._state = Object.freeze({
      phase: 'idle',
      net: 'offline', // offline | connecting | online
      roomId: null,
      room: null,
      you: null,
      user: null,
      name: '',
      selfMuted: false,
      reason: null,
      error: null,
      attempt: 0,
      knocking: false, // our join waits at the door of a room whose entry is `knock`
      knocks: [], // moderators: who waits at the door, [{user, name}]
    });
    if (globalThis.addEventListener) {
      // Back online: try now rather than at the end of the current back-off.
      globalThis.addEventListener('online', () => this._sleeper.wake && this._sleeper.wake());
    }
  }

  /** The session's state (a frozen snapshot; replaced, never changed in place). */
  get state() { return this._state; }

  /** The open signaling socket, or null (the group chat, sdk/chat.js, rides it). */
  get signal() { return this._signal && this._signal.isOpen ? this._signal : null; }

  /**
   * The open socket, or a new one introduced as `name` (default: the session's) with the
   * stored token: for what needs the server outside a room, such as a room's group chat.
   * @returns {Promise<import('./signal.js').Signal>}
   */
  connect(name) {
    return this.signal ? Promise.resolve(this._signal) : this._ensureSignal(name || this._state.name || 'Guest');
  }

  /** The live RTCPeerConnection, or null (for stats). */
  get pc() { return this._pc; }

  /** Our own ParticipantInfo while in a room. */
  me() { return this.people.get(this._state.you) || null; }

  /** Whether we may moderate (owner or moderator). */
  get canModerate() {
    const m = this.me();
    return Boolean(m && (m.role === 'owner' || m.role === 'moderator'));
  }

  // ------------------------------------------------------------------ transitions

  _to(phase, patch, transition) {
    const prev = this._state;
    if (phase !== prev.phase && !PHASE_EDGES[prev.phase].includes(phase)) {
      throw new Error(`chorus: no transition ${prev.phase} -> ${phase} (${transition})`);
    }
    this._state = Object.freeze({ ...prev, ...patch, phase });
    this._emit('statechange', { state: this._state, prev, transition });
  }

  /** Change fields without changing the phase. */
  _patch(patch, transition) {
    this._to(this._state.phase, patch, transition);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // ------------------------------------------------------------------ entering

  /**
   * Create a room (you become its owner, on the first seat) and enter it. The room is
   * `pending` until your media connects, then `active` (a `room_live` notice).
   * @returns {Promise<object>} the RoomInfo
   */
  create({ name, title, capacity, seats, seatMode = 'moderated', entry = 'anyone', deviceId } = {}) {
    return this._enter(null, name, deviceId, {
      type: 'create_room', name: title, capacity, seats, seat_mode: seatMode, entry,
    });
  }

  /**
   * Join a room by id, as a listener (or in the seat and role you hold there).
   * @returns {Promise<object>} the RoomInfo
   */
  join(roomId, { name, deviceId } = {}) {
    return this._enter(roomId, name, deviceId, { type: 'join', room: roomId });
  }

  async _enter(roomId, name, deviceId, request) {
    const phase = this._state.phase;
    if (phase === 'joining' || phase === 'live' || phase === 'reconnecting') {
      throw new ServerError('already_in_room', 'Already in a room.');
    }
    const run = ++this._run;
    this._rollback = null;
    this._session = null; // a new session: its own state comes after `joined`
    if (deviceId !== undefined) {
      this._deviceId = deviceId;
    }
    this._to('joining', {
      roomId, name, reason: null, error: null, attempt: 0, selfMuted: false, room: null, you: null,
      knocking: false, knocks: [],
    }, 'join');
    try {
      const signal = await this._ensureSignal(name);
      const offer = await this._newPeer();
      const joined = await signal.request({ ...request, offer }, 'joined', ENTER_TIMEOUT_MS);
      if (run !== this._run) {
        throw new ServerError('cancelled', 'Cancelled.');
      }
      await this._takeJoined(joined, 'joined');
      return joined.room;
    } catch (e) {
      if (run === this._run) {
        this._closePeer();
        this._stopMic();
        if (this._state.phase === 'live' && this._signal) {
          this._signal.send({ type: 'leave' });
        }
        if (this._state.phase === 'joining' || this._state.phase === 'live') {
          this._to(this._state.phase === 'live' ? 'left' : 'idle', { error: e, you: null, knocking: false }, 'join_failed');
        }
      }
      throw e;
    }
  }

  async _ensureSignal(name) {
    if (this._signal && this._signal.isOpen && this._signal.name === name) {
      return this._signal;
    }
    if (this._signal) {
      this._signal.close();
    }
    const signal = new Signal(socketUrl(this.server));
    this._signal = signal;
    signal.addEventListener('message', (ev) => { if (this._signal === signal) this._onMessage(ev.detail, signal); });
    signal.addEventListener('server-error', (ev) => { if (this._signal === signal) this._onServerError(ev.detail); });
    signal.addEventListener('closed', (ev) => { if (this._signal === signal) this._onSocketClosed(ev.detail); });
    this._patch({ net: 'connecting' }, 'connecting');
    try {
      const welcome = await signal.open(name, this.storage.get(TOKEN_KEY));
      this.storage.set(TOKEN_KEY, welcome.user_token);
      if (this._signal === signal) {
        this._patch({ net: 'online', user: welcome.user }, 'welcome');
        this._emit('signal', { signal });
      }
      return signal;
    } catch (e) {
      if (this._signal === signal) {
        this._signal = null;
        this._patch({ net: 'offline' }, 'unreachable');
      }
      throw e;
    }
  }

  /** The microphone (taken once per session: a seat later needs no renegotiation). */
  async _ensureMic() {
    const live = this._mic && this._mic.getAudioTracks().some((t) => t.readyState === 'live');
    if (!live) {
      this._mic = await openMic(this._deviceId || undefined);
    }
    return this._mic;
  }

  async _newPeer() {
    this._closePeer();
    const mic = await this._ensureMic();
    const [track] = mic.getAudioTracks();
    track.enabled = false; // on only while we hold a seat (applyMic)
    const { pc, offer } = await createPeer(track, mic, (t, slot) => this._emit('track', { track: t, slot }));
    this._pc = pc;
    pc.addEventListener('connectionstatechange', () => {
      if (pc === this._pc) {
        this._emit('media', { connectionState: pc.connectionState });
      }
    });
    this._emit('peer', { pc });
    return offer;
  }

  /** Take in a `joined` frame and apply the SFU's answer. */
  async _takeJoined(joined, transition) {
    // Take the room in before awaiting anything, so the updates that follow land on it.
    this.people = new Map(joined.participants.map((p) => [p.id, p]));
    this._clearLevels();
    this._to('live', {
      room: joined.room, roomId: joined.room.id, you: joined.you, attempt: 0, error: null, knocking: false, knocks: [],
    }, transition);
    this._emit('participants', { updated: [...this.people.keys()], removed: [], reset: true });
    this._applyMic();
    const pc = this._pc;
    await pc.setRemoteDescription({ type: 'answer', sdp: joined.answer });
    if (this._state.selfMuted) {
      this._signal.send({ type: 'set_muted', muted: true });
    }
  }

  // ------------------------------------------------------------------ leaving

  /** Leave the room (you stay a member of its group and may come back). */
  async leave() {
    const { phase } = this._state;
    if (phase === 'reconnecting') {
      if (this._mediaMove && this._signal) {
        this._signal.send({ type: 'leave' }); // still in the room on the server
      }
      this._run += 1;
      this._finish('left', { reason: 'left' }, 'leave');
      return;
    }
    if (phase !== 'live') {
      return;
    }
    const run = this._run;
    try {
      await this._signal.request({ type: 'leave' }, 'left', REQUEST_TIMEOUT_MS);
    } catch {
      // Leaving locally is what matters; the server drops us when the socket goes too.
    }
    if (run === this._run && this._state.phase === 'live') {
      this._finish('left', { reason: 'left' }, 'leave');
    }
  }

  /** Leave the room and give up your place in its group chat (not for the owner). */
  async leaveGroup() {
    if (this._state.phase !== 'live') {
      throw new ServerError('not_in_room', 'You are not in the room.');
    }
    // The server's `left` (reason `left`) arrives before this request settles.
    this._leavingGroup = true;
    try {
      await this._signal.request({ type: 'leave_group' }, 'left', REQUEST_TIMEOUT_MS);
    } finally {
      this._leavingGroup = false;
    }
    if (this._state.phase === 'live') {
      this._finish('left', { reason: 'left_group' }, 'leave_group');
    }
  }

  /** Close everything (e.g. when the page goes away). */
  close() {
    this._run += 1;
    if (this._signal) {
      this._signal.close();
      this._signal = null;
    }
    this._closePeer();
    this._stopMic();
  }

  /** Out of the room: media closed, people cleared, pending notices dropped. */
  _finish(phase, patch, transition) {
    this._run += 1;
    this._mediaMove = 0;
    this._dropNotices();
    this._closePeer();
    this._stopMic();
    this.people = new Map();
    this._clearLevels();
    this._to(phase, { you: null, attempt: 0, ...patch }, transition);
    this._emit('participants', { updated: [], removed: [], reset: true });
  }

  _closePeer() {
    if (this._pc) {
      this._pc.close();
      this._pc = null;
      this._emit('peerclosed', {});
    }
  }

  _stopMic() {
    stopStream(this._mic);
    this._mic = null;
  }

  // ------------------------------------------------------------------ reconnecting

  _onSocketClosed(detail) {
    this._signal = null;
    this._patch({ net: 'offline' }, 'socket_closed');
    const { phase } = this._state;
    if (detail && detail.code === 4003 && (phase === 'live' || phase === 'reconnecting')) {
      // Another connection took this session up (resumed elsewhere): not ours to reconnect.
      this._session = null;
      writeSession(null);
      this._finish('left', { reason: 'resumed_elsewhere' }, 'resumed_elsewhere');
      return;
    }
    if (phase === 'live') {
      this._startReconnect('socket_lost');
    }
  }

  /**
   * A `session` frame: the latest sealed state of this socket's session. Its id is the
   * one `welcome` gave, or the one this socket took up with `resume`.
   */
  _keepSession(msg, signal) {
    const session = signal && (signal.sessionId || (signal.welcome && signal.welcome.session));
    if (!session || typeof msg.state !== 'string') {
      return;
    }
    this._session = { session, state: msg.state, expires: Number(msg.expires) || 0, room: this._state.roomId };
    writeSession(this._session);
  }

  /** The state to present in `resume`, when it may still take our media up again. */
  _resumable() {
    const s = this._session;
    const pc = this._pc;
    if (!s || !pc || pc.connectionState === 'failed' || pc.connectionState === 'closed') {
      return null;
    }
    if (s.room !== this._state.roomId || (s.expires && s.expires * 1000 <= Date.now())) {
      return null;
    }
    return s;
  }

  _startReconnect(why) {
    this._mediaMove = 0;
    if (!this.autoReconnect) {
      this._finish('left', { reason: why === 'media_lost' ? 'connection_lost' : 'disconnected' }, why);
      return;
    }
    this._dropNotices();
    // Only a lost socket leaves the media as it was: the session resumes over it. The
    // media lost (or the server taking us off the SFU) means a new peer connection.
    if (why !== 'socket_lost') {
      this._closePeer();
    }
    this._clearLevels();
    const mine = this.me();
    this._wasSpeaker = Boolean(mine && mine.speaker);
    const run = ++this._run;
    this._to('reconnecting', { attempt: 0, reason: why }, why);
    this._reconnectLoop(run);
  }

  async _reconnectLoop(run) {
    for (let attempt = 1; ; attempt += 1) {
      const base = BACKOFF_MS[Math.min(attempt - 1, BACKOFF_MS.length - 1)];
      const delay = Math.round(base * (0.8 + 0.4 * Math.random()));
      this._patch({ attempt, retryInMs: delay }, 'retry_scheduled');
      await sleep(delay, this._sleeper);
      if (run !== this._run || this._state.phase !== 'reconnecting') {
        return;
      }
      try {
        const signal = await this._ensureSignal(this._state.name);
        if (run !== this._run || this._state.phase !== 'reconnecting') {
          return;
        }
        const saved = this._resumable();
        if (saved) {
          const resumed = await this._tryResume(signal, saved, run);
          if (resumed === 'stale') {
            return;
          }
          if (resumed) {
            return;
          }
        }
        const offer = await this._newPeer();
        const joined = await signal.request({ type: 'join', room: this._state.roomId, offer }, 'joined', ENTER_TIMEOUT_MS);
        if (run !== this._run || this._state.phase !== 'reconnecting') {
          signal.send({ type: 'leave' }); // the user left meanwhile: leave no presence behind
          return;
        }
        await this._takeJoined(joined, 'rejoined');
        this._restoreSeat();
        return;
      } catch (e) {
        if (run !== this._run || this._state.phase !== 'reconnecting') {
          return;
        }
        if (!this._resumable()) {
          this._closePeer(); // a half-made rejoin; a resumable pc is kept for the next try
        }
        if (e.code === 'room_not_found') {
          this._finish('ended', { reason: 'room_closed' }, 'rejoin_refused');
          return;
        }
        if (e.code === 'forbidden') {
          this._finish('ended', { reason: 'removed', error: e }, 'rejoin_refused');
          return;
        }
        this._patch({ error: e }, 'retry_failed');
      }
    }
  }

  /**
   * Present the saved state on the new socket. Resolves true once `resumed` is taken in
   * (phase `live`, the same peer connection), false when the server refused it (the
   * caller then closes the peer and joins again, in this same attempt), 'stale' when the
   * user left meanwhile. Other failures (the socket dropped again, no answer) throw, and
   * the next attempt presents the state again with the peer connection still kept.
   */
  async _tryResume(signal, saved, run) {
    let resumed;
    try {
      resumed = await signal.request({ type: 'resume', session: saved.session, state: saved.state },
        'resumed', ENTER_TIMEOUT_MS);
    } catch (e) {
      if (run !== this._run || this._state.phase !== 'reconnecting') {
        return 'stale';
      }
      if (!RESUME_REFUSALS.includes(e.code)) {
        throw e;
      }
      this.lastResumeError = e.code;
      if (e.code === 'resume_failed') {
        signal.sessionId = saved.session; // the socket took that session up, without a place
      }
      this._emit('resume', { status: 'refused', error: e });
      this._closePeer();
      return false;
    }
    signal.sessionId = saved.session;
    if (run !== this._run || this._state.phase !== 'reconnecting') {
      signal.send({ type: 'leave' }); // the user left meanwhile: leave no presence behind
      return 'stale';
    }
    this._takeResumed(resumed);
    return true;
  }

  /** Take in a `resumed` frame: the same participant and media; keep whom we knew. */
  _takeResumed(resumed) {
    // Those listed are present now; others may still be resuming: a `participant_left`
    // takes them out, nothing else does.
    for (const p of resumed.participants || []) {
      this.people.set(p.id, p);
    }
    this.resumes += 1;
    this._to('live', {
      room: resumed.room, roomId: resumed.room.id, you: resumed.you, attempt: 0, error: null, reason: null,
      knocking: false,
    }, 'resumed');
    this._emit('participants', { updated: [...this.people.keys()], removed: [] });
    this._emit('resume', { status: 'resumed' });
    this._applyMic();
    if (this._state.selfMuted) {
      this._signal.send({ type: 'set_muted', muted: true });
    }
  }

  /**
   * After a rejoin (never after a resume, which keeps the seat): a seat survives a server
   * restart (it is in the group's record), but it may be gone when the session could not
   * be resumed (the grace ran out, the socket was closed with a close frame). In an open
   * room we take a free seat again; in a moderated one we say so.
   */
  _restoreSeat() {
    const mine = this.me();
    if (!this._wasSpeaker || !mine || mine.speaker) {
      return;
    }
    if (this._state.room && this._state.room.seat_mode === 'open') {
      this._send({ type: 'request_seat' });
    } else {
      this._notice('seat_lost', 'The connection dropped and your mic seat was given up. Raise your hand to ask for it again.');
    }
  }

  /**
   * The server's `reconnect_media`: the SFU node carrying our media is gone, the session
   * (place, seat, role) is not. Make a new peer connection exactly as for a join (the
   * same microphone track, 1 send + 3 receive-only m-lines, gathering complete), send
   * its offer in `media_offer`, apply the `media_answer`, and be `live` again once ICE
   * connects. Any failure (an `error` answer, no answer, ICE never connecting) falls
   * back to the rejoin path with a fresh socket.
   */
  async _moveMedia(reason) {
    const run = ++this._run;
    this._mediaMove = run;
    this._closePeer();
    this._clearLevels();
    this._to('reconnecting', { attempt: 0, reason: 'media_moved', error: null }, 'reconnect_media');
    this._emit('mediareconnect', { status: 'started', reason });
    const stale = () => run !== this._run || this._mediaMove !== run;
    try {
      const offer = await this._newPeer();
      if (stale()) {
        return;
      }
      const signal = this._signal;
      if (!signal) {
        throw new ServerError('disconnected', 'Not connected to the server.');
      }
      const { answer } = await signal.request({ type: 'media_offer', offer }, 'media_answer', ENTER_TIMEOUT_MS);
      if (stale()) {
        return;
      }
      const pc = this._pc;
      this._applyMic();
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      await mediaConnected(pc, ENTER_TIMEOUT_MS);
      if (stale()) {
        return;
      }
      this._mediaMove = 0;
      this._to('live', { attempt: 0, error: null, reason: null }, 'media_reconnected');
      this._emit('mediareconnect', { status: 'connected', reason });
    } catch (e) {
      if (stale()) {
        return;
      }
      this._mediaMove = 0;
      this._emit('mediareconnect', { status: 'failed', reason, error: e });
      // Rejoin from scratch: a fresh socket drops whatever the server still holds of
      // this session (a `join` on the old one would be `already_in_room`).
      const signal = this._signal;
      this._signal = null;
      if (signal) {
        signal.close();
      }
      this._patch({ net: 'offline', error: e }, 'media_offer_failed');
      this._startReconnect('media_lost');
    }
  }

  // ------------------------------------------------------------------ in the room

  /** Mute or unmute yourself (a speaker; a listener's mic is off anyway). */
  setMuted(muted) {
    this._patch({ selfMuted: Boolean(muted) }, 'self_mute');
    this._applyMic();
    const mine = this.me();
    if (mine) {
      this.people.set(mine.id, { ...mine, muted: Boolean(muted) });
      this._emit('participants', { updated: [mine.id], removed: [] });
    }
    return this._send({ type: 'set_muted', muted: Boolean(muted) });
  }

  /** Take a free seat (open rooms) or raise your hand. */
  requestSeat() { return this._send({ type: 'request_seat' }); }

  lowerHand() { return this._send({ type: 'lower_hand' }); }

  leaveSeat() { return this._send({ type: 'leave_seat' }); }

  /** Moderators: invite a listener to speak (needs a free seat). */
  grantSeat(participant) { return this._send({ type: 'grant_seat', participant }); }

  /** Moderators: move a speaker to the audience. */
  revokeSeat(participant) { return this._send({ type: 'revoke_seat', participant }); }

  /** Moderators: mute or unmute someone (enforced at the SFU). */
  muteParticipant(participant, muted) { return this._send({ type: 'mute', participant, muted: Boolean(muted) }); }

  /** Moderators: remove someone from the room for good. */
  remove(participant) { return this._send({ type: 'remove', participant }); }

  /** The owner: name or un-name a moderator. */
  setModerator(participant, moderator) {
    return this._send({ type: 'set_moderator', participant, moderator: Boolean(moderator) });
  }

  /** Moderators: end the room for everyone. */
  endRoom() { return this._send({ type: 'end_room' }); }
  /** Moderators: let someone waiting at the door in (`admit`), or not. */
  admit(user, admit = true) { return this._send({ type: 'admit', user, admit }); }

  /** Stop waiting at the door of a room that asks newcomers to knock. */
  stopKnocking() {
    if (this._state.phase !== 'joining' || !this._state.knocking || !this._signal) {
      return;
    }
    this._signal.send({ type: 'leave' });
    this._signal.cancel('joined', new ServerError('cancelled', 'You stopped waiting to be let in.'));
  }
  /** Moderators: lock or unlock the room (`locked`), and say who may join (`entry`:
   * `anyone` or `signed_in`); absent fields stay as they are. */
  setAccess({ locked, entry } = {}) { return this._send({ type: 'set_access', locked, entry }); }

  /** The microphones to choose from: [{ deviceId, label }]. */
  listMicrophones() { return listMicrophones(); }

  /** Switch microphones without renegotiating (the sender's track is replaced). */
  async setMicrophone(deviceId) {
    this._deviceId = deviceId || '';
    if (!this._pc || !this._mic) {
      return;
    }
    const next = await openMic(deviceId || undefined);
    const [track] = next.getAudioTracks();
    const sender = this._pc.getSenders()[0];
    await sender.replaceTrack(track);
    stopStream(this._mic);
    this._mic = next;
    this._applyMic();
  }

  _send(msg) {
    if (this._state.phase !== 'live' || !this._signal || !this._signal.send(msg)) {
      const e = new ServerError('disconnected', 'Not connected to the server.');
      this._emit('servererror', { error: e });
      return false;
    }
    return true;
  }

  /** Our mic is live only while we hold a seat and have not muted ourselves. */
  _applyMic() {
    const p = this.me();
    const on = Boolean(p && p.speaker && !this._state.selfMuted);
    if (this._mic) {
      for (const t of this._mic.getAudioTracks()) {
        t.enabled = on;
      }
    }
  }

  _onMessage(msg, signal) {
    const { phase } = this._state;
    if (msg.type === 'session') {
      this._keepSession(msg, signal);
      return;
    }
    if (msg.type === 'knocking' && phase === 'joining') {
      // The join waits at the door: as long as a moderator may take to answer.
      this._signal.extend('joined', KNOCK_WAIT_MS);
      this._patch({ knocking: true, room: msg.room }, 'knocking');
      this._notice('knocking', 'Waiting for a moderator to let you in…', { now: true, quiet: true });
      return;
    }
    // While the media moves the session is still in the room: its news keep coming.
    if (phase !== 'live' && !(phase === 'reconnecting' && this._mediaMove)) {
      return;
    }
    switch (msg.type) {
      case 'reconnect_media':
        this._moveMedia(msg.reason || '');
        break;
      case 'knocks': {
        const before = new Set(this._state.knocks.map((k) => k.user));
        this._patch({ knocks: msg.knocks || [] }, 'knocks');
        for (const k of msg.knocks || []) {
          if (!before.has(k.user)) {
            this._notice(`knock:${k.user}`, `${k.name} is asking to come in`, { now: true });
          }
        }
        break;
      }
      case 'room_updated': {
        const was = this._state.room && this._state.room.state;
        this._patch({ room: msg.room }, 'room_updated');
        if (was === 'pending' && msg.room.state === 'active') {
          this._notice('room_live', 'Your room is live. Share its link.', { now: true });
        }
        break;
      }
      case 'participant_updated': {
        const p = msg.participant;
        const before = this.people.get(p.id);
        this.people.set(p.id, p);
        if (p.id === this._state.you) {
          this._noticeMine(before, p);
          this._applyMic();
        } else if (!before) {
          this._notice(`joined:${p.id}`, `${p.name} joined`, { now: true, quiet: true });
        } else if (!before.hand_raised && p.hand_raised) {
          this._notice(`hand:${p.id}`, `${p.name} raised a hand`, { now: true, quiet: true });
        }
        this._emit('participants', { updated: [p.id], removed: [] });
        break;
      }
      case 'participant_left': {
        if (msg.participant === this._state.you) {
          this._onLeft(msg.reason);
          break;
        }
        const gone = this.people.get(msg.participant);
        this.people.delete(msg.participant);
        this._heard.delete(msg.participant);
        const wasSpeaking = this.levels.delete(msg.participant);
        if (gone) {
          this._notice(`left:${gone.id}`, msg.reason === 'removed' ? `${gone.name} was removed` : `${gone.name} left`,
            { now: true, quiet: true });
        }
        this._emit('participants', { updated: [], removed: [msg.participant] });
        if (wasSpeaking) {
          this._emit('speaking', { changed: [msg.participant] });
        }
        break;
      }
      case 'speaking':
        this._onLevels(msg.levels || []);
        break;
      case 'left':
        this._onLeft(msg.reason);
        break;
      default:
        break;
    }
  }

  _onLeft(reason) {
    const pending = this._state.room && this._state.room.state === 'pending';
    if (this._rollback || (pending && reason !== 'left')) {
      this._finish('ended', { reason: 'not_created', error: this._rollback }, 'rolled_back');
      return;
    }
    switch (reason) {
      case 'removed':
        this._finish('ended', { reason: 'removed' }, 'removed');
        break;
      case 'room_closed':
        this._finish('ended', { reason: 'room_closed', room: this._state.room && { ...this._state.room, state: 'ended' } },
          'room_closed');
        break;
      case 'connection_lost':
        this._startReconnect('media_lost');
        break;
      case 'server_restarting':
        // A clean restart (or a node going away): the seat and role are kept in the
        // record; come back by ourselves, to this node or another.
        this._startReconnect('server_restarting');
        break;
      case 'replaced':
        this._finish('left', { reason: 'replaced' }, 'replaced');
        break;
      default:
        if (reason === 'left' && this._leavingGroup) {
          this._finish('left', { reason: 'left_group' }, 'leave_group');
        } else {
          this._finish('left', { reason: reason || 'left' }, 'left');
        }
        break;
    }
  }

  _onServerError(err) {
    // The rollback of our pending room comes as media_unavailable, then `left`.
    if (err.code === 'media_unavailable' && this._state.phase === 'live'
      && this._state.room && this._state.room.state === 'pending') {
      this._rollback = err;
      return;
    }
    this._emit('servererror', { error: err });
  }

  // ------------------------------------------------------------------ speaking levels

  _onLevels(levels) {
    const now = performance.now();
    const changed = [];
    for (const { participant, level } of levels) {
      const p = this.people.get(participant);
      const v = Number(level) || 0;
      if (!p || v < SPEAKING_FLOOR) {
        continue;
      }
      this._heard.set(participant, now);
      // Levels in tenths: a ring that moves, without an event per tiny change.
      const q = Math.min(1, Math.round(v * 10) / 10 || 0.1);
      if (this.levels.get(participant) !== q) {
        this.levels.set(participant, q);
        changed.push(participant);
      }
    }
    if (changed.length) {
      this._emit('speaking', { changed });
    }
    this._scheduleExpiry();
  }

  _scheduleExpiry() {
    if (this._expiry || this._heard.size === 0) {
      return;
    }
    this._expiry = setTimeout(() => {
      this._expiry = null;
      const now = performance.now();
      const changed = [];
      for (const [id, at] of this._heard) {
        if (now - at >= SPEAKING_HOLD_MS) {
          this._heard.delete(id);
          this.levels.delete(id);
          changed.push(id);
        }
      }
      if (changed.length) {
        this._emit('speaking', { changed });
      }
      this._scheduleExpiry();
    }, SPEAKING_HOLD_MS / 2);
  }

  _clearLevels() {
    const changed = [...this.levels.keys()];
    this.levels.clear();
    this._heard.clear();
    if (changed.length) {
      this._emit('speaking', { changed });
    }
  }

  // ------------------------------------------------------------------ notices

  _noticeMine(before, now) {
    if (!before) {
      return;
    }
    if (!before.speaker && now.speaker) {
      // In a moderated room only a moderator seats anyone; in an open room we took it.
      const invited = this._state.room?.seat_mode !== 'open';
      this._notice(invited ? 'invited' : 'on_stage', invited
        ? 'You were invited to speak: you are on stage and everyone hears you.'
        : 'You are on stage: everyone hears you.');
    } else if (before.speaker && !now.speaker) {
      this._notice('to_audience', 'You moved to the audience.');
    }
    if (!before.hand_raised && now.hand_raised && this._state.room && this._state.room.seat_mode === 'open') {
      // An open room raises the hand when no seat is free (seats may be held by people
      // who stepped out, which the stage cannot show).
      this._notice('hand_raised_no_seat', 'No mic seat was free, so your hand is raised: you get a seat when one frees up '
        + 'or a moderator invites you.');
    }
    if (!before.muted_by_moderator && now.muted_by_moderator) {
      this._notice('muted_by_moderator', 'A moderator muted you.');
    } else if (before.muted_by_moderator && !now.muted_by_moderator) {
      this._notice('unmuted_by_moderator', 'A moderator unmuted you.');
    }
    if (before.role !== now.role) {
      this._notice(now.role === 'moderator' ? 'moderator' : 'not_moderator',
        now.role === 'moderator' ? 'You are now a moderator.' : 'You are no longer a moderator.');
    }
  }

  /**
   * Tell the page. Notices about ourselves wait a moment: when a moderator removes us the
   * server first sends our record as it is without membership (seat, mute and role
   * cleared) and then `left removed`; only the removal should reach the user.
   */
  _notice(code, text, { now = false, quiet = false } = {}) {
    if (now) {
      this._emit('notice', { code, text, quiet });
      return;
    }
    this._notices.push({ code, text, quiet });
    if (!this._noticeTimer) {
      this._noticeTimer = setTimeout(() => {
        this._noticeTimer = null;
        const due = this._notices;
        this._notices = [];
        for (const n of due) {
          this._emit('notice', n);
        }
      }, NOTICE_DELAY_MS);
    }
  }

  _dropNotices() {
    clearTimeout(this._noticeTimer);
    this._noticeTimer = null;
    this._notices = [];
  }
}

export { fetchRoom as lookupRoom };

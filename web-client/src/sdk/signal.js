// The signaling socket: one WebSocket at /ws speaking docs/protocol.md (version 1).
// Requests are answered in order and an `error` frame answers the request in flight,
// so a request is a promise settled by the next answer of its type or the next error.

export const PROTOCOL_VERSION = 1;
const KEEPALIVE_MS = 25_000;

/**
 * Error codes that say "not now" rather than "no": nothing was changed and the same
 * request may succeed in a moment (`temporarily_unavailable`: a service the server
 * depends on, such as the fleet's Redis, is down). Pages show them as a notice to try
 * again, not as a failure.
 */
export const RETRYABLE_CODES = Object.freeze(['temporarily_unavailable']);

/** An `error` frame from the server (or a local failure), with words for the user. */
export class ServerError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }

  /** Whether trying the same thing again shortly may work (see RETRYABLE_CODES). */
  get retryable() {
    return RETRYABLE_CODES.includes(this.code);
  }
}

/** The WebSocket URL of a Chorus server (default: this page's): `wss:` for https. */
export function socketUrl(base = globalThis.location.href) {
  const url = new URL('/ws', base);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

export class Signal extends EventTarget {
  constructor(url = socketUrl()) {
    super();
    this.url = url;
    this.ws = null;
    this.name = null;
    this.pending = []; // [{ type, resolve, reject, timer }]
    this.keepalive = null;
    this.closedByUs = false;
    this.welcome = null;
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN && this.name !== null;
  }

  /**
   * Open the socket and introduce ourselves, as the user of `userToken` when given (a
   * token the server no longer accepts just makes us a new guest). Resolves with the
   * `welcome` frame: accepted name, user id and the user token to keep for next time.
   * `takesCalls`: this session rings when the account is called (a calls screen; a
   * room page only counts for presence).
   */
  async open(name, userToken, { takesCalls = false } = {}) {
    if (this.isOpen) {
      return this.welcome;
    }
    this.closedByUs = false;
    await new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      const fail = () => reject(new ServerError('unreachable', 'Could not reach the Chorus server.'));
      ws.addEventListener('open', () => { ws.removeEventListener('error', fail); resolve(); }, { once: true });
      ws.addEventListener('error', fail, { once: true });
      ws.addEventListener('message', (ev) => this.onFrame(ev.data));
      ws.addEventListener('close', (ev) => this.onClose(ws, ev));
    });
    const hello = { type: 'hello', version: PROTOCOL_VERSION, name };
    if (takesCalls) {
      hello.takes_calls = true;
    }
    if (userToken) {
      hello.user_token = userToken;
    }
    const welcome = await this.request(hello, 'welcome');
    this.name = welcome.name;
    this.welcome = welcome;
    this.keepalive = setInterval(() => this.send({ type: 'ping' }), KEEPALIVE_MS);
    return welcome;
  }

  close() {
    this.closedByUs = true;
    if (this.ws) {
      this.ws.close(1000);
    }
  }

  send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      return false;
    }
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  /**
   * Send `msg` and wait for the answer of type `answerType` (or an `error`). A request
   * that may be answered in more than one way (`call`: `call_ringing` or `call_ended`)
   * names them all in an array; the first that comes settles it. `matches` (optional)
   * must also accept the answer: a frame of that type for someone else's request (a chat
   * message another member wrote) is left for the others.
   */
  request(msg, answerType, timeoutMs = 15_000, matches = null) {
    const types = Array.isArray(answerType) ? answerType : [answerType];
    return new Promise((resolve, reject) => {
      const entry = { type: types[0], types, matches, resolve, reject, timer: null };
      entry.timer = setTimeout(() => {
        this.pending = this.pending.filter((e) => e !== entry);
        reject(new ServerError('timeout', 'The server did not answer in time.'));
      }, timeoutMs);
      this.pending.push(entry);
      if (!this.send(msg)) {
        this.settle(entry);
        reject(new ServerError('disconnected', 'Not connected to the server.'));
      }
    });
  }

  /** Give the pending request answered by `answerType` `ms` more from now. */
  extend(answerType, ms) {
    const entry = this.pending.find((e) => e.types.includes(answerType));
    if (entry) {
      clearTimeout(entry.timer);
      entry.timer = setTimeout(() => {
        this.pending = this.pending.filter((e) => e !== entry);
        entry.reject(new ServerError('timeout', 'The server did not answer in time.'));
      }, ms);
    }
  }

  /** Give up the pending request answered by `answerType`, with `error`. */
  cancel(answerType, error) {
    const entry = this.pending.find((e) => e.types.includes(answerType));
    if (entry) {
      this.settle(entry);
      entry.reject(error);
    }
  }

  settle(entry) {
    clearTimeout(entry.timer);
    this.pending = this.pending.filter((e) => e !== entry);
  }

  onFrame(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      console.warn('chorus: unreadable frame from server', data);
      return;
    }
    if (!msg || typeof msg.type !== 'string') {
      return;
    }
    if (msg.type === 'error') {
      const err = new ServerError(msg.code || 'internal', msg.message || 'Something went wrong.');
      const entry = this.pending[0];
      if (entry) {
        this.settle(entry);
        entry.reject(err);
      } else {
        this.dispatchEvent(new CustomEvent('server-error', { detail: err }));
      }
      return;
    }
    const entry = this.pending.find((e) => e.types.includes(msg.type) && (!e.matches || e.matches(msg)));
    if (entry) {
      this.settle(entry);
      entry.resolve(msg);
    }
    if (msg.type !== 'pong') {
      this.dispatchEvent(new CustomEvent('message', { detail: msg }));
    }
  }

  onClose(ws, ev) {
    if (ws !== this.ws) {
      return;
    }
    clearInterval(this.keepalive);
    this.keepalive = null;
    this.ws = null;
    this.name = null;
    const err = new ServerError('disconnected', 'The connection to the server was lost.');
    for (const entry of [...this.pending]) {
      this.settle(entry);
      entry.reject(err);
    }
    this.dispatchEvent(new CustomEvent('closed', { detail: { byUs: this.closedByUs, code: ev.code } }));
  }
}

/** Words for an error code: our own sentence for the common ones, then the server's. */
const HINTS = {
  room_not_found: 'This room is not open: check the link, or create a new room.',
  media_unavailable: 'The media server is unavailable right now. Try again in a moment.',
  bad_offer: 'The media server could not set up audio with this browser.',
  unsupported_version: 'This page is out of date: reload it.',
  temporarily_unavailable: 'The server is briefly unable to do this. Nothing was changed: try again in a moment.',
};

export function describeError(err) {
  const message = (err && err.message) || '';
  const hint = HINTS[err && err.code];
  if (!hint) {
    // The server's words are meant for the user (e.g. "you were removed from this room").
    if (!message) {
      return 'Something went wrong.';
    }
    const sentence = message[0].toUpperCase() + message.slice(1);
    return /[.!?)]$/.test(sentence) ? sentence : `${sentence}.`;
  }
  return message && message !== hint ? `${hint} (${message})` : hint;
}

/** Look a room up over REST: `{ room, participants, members }`, or null when there is none. */
export async function fetchRoom(id, base = globalThis.location.href) {
  const url = new URL(`/api/rooms/${encodeURIComponent(id)}`, base);
  const res = await fetch(url, { headers: { accept: 'application/json' } });
  if (res.status === 404) {
    return null;
  }
  if (!res.ok) {
    throw new Error(`room lookup failed: HTTP ${res.status}`);
  }
  return res.json();
}

// The group chat beside a room (docs/protocol.md, "Group chat"), with no DOM of its own.
// It rides the ChorusClient's socket (opening one when the page is not in the room, e.g.
// a room that has ended), follows one chat at a time, and keeps its messages in order.

import { ServerError } from './signal.js';

// Files in the chat: upload with `Attachments`, then `send(text, { attachment })`.
export { Attachments, AttachmentError, humanSize } from './attachments.js';
export { Sha256, hashFile } from './sha256.js';

const REQUEST_TIMEOUT_MS = 10_000;
/** The server's own bounds for a page of history. */
const MAX_PAGE = 100;

/**
 * The life of the followed chat (`state.status`):
 * - `closed`: no chat followed;
 * - `opening`: `chat_open` in flight;
 * - `open`: followed: new, edited and deleted messages and mutes keep coming;
 * - `refused`: the server said no (`state.error`; `forbidden` for a non-member).
 */
export const CHAT_STATUSES = Object.freeze(['closed', 'opening', 'open', 'refused']);

/** Messages by `seq`, oldest first: a changed message replaces the one it changes. */
function merge(messages, incoming) {
  const bySeq = new Map(messages.map((m) => [m.seq, m]));
  for (const m of incoming) {
    bySeq.set(m.seq, m);
  }
  return [...bySeq.values()].sort((a, b) => a.seq - b.seq);
}

/**
 * One room's group chat.
 *
 * Events (`CustomEvent`s; read `event.detail`):
 * - `statechange` `{ state, prev, transition }` — anything in `state` changed;
 *   `transition` says what: `opening`, `opened`, `refused`, `older`, `message`, `muted`,
 *   `read`, `lost` (the socket went; the chat is opened again on the next one), `closed`.
 * - `message` `{ message, isNew }` — a message came or changed (`isNew`: not seen before).
 *
 * Sending is confirmed by the server's `chat_message` to every follower (the sender too),
 * carrying the request's `nonce`, which is what `send`/`edit`/`remove` resolve with; a
 * refusal rejects with a `ServerError` whose words are for the user (`describeError`).
 *
 * @example
 * const chat = new GroupChat(client);
 * chat.addEventListener('statechange', (e) => render(e.detail.state.messages));
 * await chat.open('room-id');
 * await chat.send('Hello');
 * const files = new Attachments({ server, token: () => client.storage.get(TOKEN_KEY) });
 * const { hash } = await files.upload('room-id', file);
 * await chat.send('', { attachment: { hash, name: file.name } });
 */
export class GroupChat extends EventTarget {
  /**
   * @param {import('./chorus.js').ChorusClient} client the room session whose socket to use
   * @param {object} [options]
   * @param {number} [options.pageSize] messages per page of history, 1–100 (default 50)
   */
  constructor(client, { pageSize = 50 } = {}) {
    super();
    this.client = client;
    this.pageSize = Math.max(1, Math.min(MAX_PAGE, Math.round(pageSize)));
    this._signal = null;
    this._state = Object.freeze({
      room: null,
      status: 'closed',
      error: null,
      messages: [],
      more: false,
      readUpTo: 0,
      muted: [],
      me: null, // our user id
      loadingOlder: false,
    });
    client.addEventListener('signal', (ev) => this._follow(ev.detail.signal));
    if (client.signal) {
      this._follow(client.signal);
    }
  }

  /** The chat's state (a frozen snapshot; replaced, never changed in place). */
  get state() { return this._state; }

  /** Whether we may not write: a moderator muted us in this chat. */
  get mutedMe() { return Boolean(this._state.me && this._state.muted.includes(this._state.me)); }

  _set(patch, transition) {
    const prev = this._state;
    this._state = Object.freeze({ ...prev, ...patch });
    this.dispatchEvent(new CustomEvent('statechange', { detail: { state: this._state, prev, transition } }));
  }

  /**
   * Follow the chat of `room` (and stop following any other): resolves with the state
   * once the newest page is in. A guest is a member only once its media connected in the
   * room; before that this rejects with `forbidden` (state `refused`): open again later.
   * @param {string} room the room id
   * @param {object} [options]
   * @param {string} [options.name] the name to introduce ourselves with when no socket is open
   */
  async open(room, { name } = {}) {
    this._set({
      room, status: 'opening', error: null, messages: room === this._state.room ? this._state.messages : [],
      ...(room === this._state.room ? {} : { more: false, readUpTo: 0, muted: [] }),
    }, 'opening');
    try {
      const signal = await this.client.connect(name);
      this._follow(signal);
      const page = await signal.request({ type: 'chat_open', room }, 'chat_history', REQUEST_TIMEOUT_MS);
      if (this._state.room !== room) {
        return this._state;
      }
      this._takePage(page, 'opened', { reset: true, me: signal.welcome && signal.welcome.user });
      return this._state;
    } catch (e) {
      if (this._state.room === room && this._state.status === 'opening') {
        this._set({ status: 'refused', error: e }, 'refused');
      }
      throw e;
    }
  }

  /**
   * Load the page before the oldest message we have (when `state.more`). Resolves with
   * how many messages were added.
   * @returns {Promise<number>}
   */
  async older() {
    const { room, status, messages, more, loadingOlder } = this._state;
    if (status !== 'open' || !more || loadingOlder || !messages.length) {
      return 0;
    }
    this._set({ loadingOlder: true }, 'loading_older');
    try {
      const page = await this._request({
        type: 'chat_history', room, before: messages[0].seq, limit: this.pageSize,
      }, 'chat_history');
      if (this._state.room !== room) {
        return 0;
      }
      const before = this._state.messages.length;
      this._takePage(page, 'older', { reset: false });
      return this._state.messages.length - before;
    } finally {
      if (this._state.loadingOlder) {
        this._set({ loadingOlder: false }, 'older_done');
      }
    }
  }

  /**
   * Write `text` (trimmed, 1–2,000 characters) in the chat; with `attachment` (a file
   * the server holds: `Attachments.upload` first, see attachments.js) the text may be
   * empty. The echoed message then has `attachment: {hash, name, size, type, image?}`.
   * @param {string} text
   * @param {object} [options]
   * @param {{hash: string, name: string}} [options.attachment]
   * @returns {Promise<object>} the message, as the server echoed it
   */
  send(text, { attachment } = {}) {
    const msg = { type: 'chat_send', text: String(text ?? '').trim() };
    if (attachment) {
      msg.attachment = { hash: attachment.hash, name: attachment.name };
    }
    return this._write(msg);
  }

  /**
   * Change the text of one of our messages.
   * @returns {Promise<object>} the changed message
   */
  edit(seq, text) {
    return this._write({ type: 'chat_edit', seq, text: String(text).trim() });
  }

  /**
   * Delete a message (ours, or anyone's for a moderator): it keeps its place, `deleted`.
   * @returns {Promise<object>} the deleted message
   */
  remove(seq) {
    return this._write({ type: 'chat_delete', seq });
  }

  /**
   * Moderators: stop (`muted` true) or let again `user` (a user id) write in this chat.
   * @returns {Promise<object>} the server's `chat_muted`
   */
  mute(user, muted) {
    return this._request({ type: 'chat_mute', room: this._state.room, user, muted: Boolean(muted) }, 'chat_muted');
  }

  /** Move our read mark forward to `seq` (never back; nothing is sent when it would not move). */
  markRead(seq) {
    const { room, status, readUpTo } = this._state;
    if (status !== 'open' || !(seq > readUpTo) || !this._signal || !this._signal.isOpen) {
      return false;
    }
    this._signal.send({ type: 'chat_read', room, seq });
    this._set({ readUpTo: seq }, 'read');
    return true;
  }

  /**
   * How many unread messages each group chat we belong to holds.
   * @returns {Promise<Array<{room: string, name: string, unread: number, latest: number}>>}
   */
  async unread() {
    const answer = await this._request({ type: 'chat_unread' }, 'chat_unread');
    return answer.groups || [];
  }

  /** Stop showing the chat here (the server stops with the next `chat_open` or the socket). */
  close() {
    this._set({
      room: null, status: 'closed', error: null, messages: [], more: false, readUpTo: 0, muted: [],
    }, 'closed');
  }

  // ------------------------------------------------------------------ the socket

  async _write(msg) {
    // Our label comes back in the chat_message this request causes: the answer is ours,
    // not a message someone else wrote meanwhile.
    this._nonces = (this._nonces || 0) + 1;
    const nonce = `w${this._nonces}`;
    const answer = await this._request({ ...msg, room: this._state.room, nonce }, 'chat_message',
      (frame) => frame.nonce === nonce);
    return answer.message;
  }

  _request(msg, answerType, matches = null) {
    const signal = this._signal;
    if (this._state.status !== 'open' || !signal || !signal.isOpen) {
      return Promise.reject(new ServerError('disconnected', 'The chat is not connected: try again in a moment.'));
    }
    return signal.request(msg, answerType, REQUEST_TIMEOUT_MS, matches);
  }

  _follow(signal) {
    if (!signal || signal === this._signal) {
      return;
    }
    this._signal = signal;
    signal.addEventListener('message', (ev) => { if (this._signal === signal) this._onFrame(ev.detail); });
    signal.addEventListener('closed', () => { if (this._signal === signal) this._onLost(); });
    // A new socket (a rejoin, another name): follow the chat again, with what we missed.
    if (this._state.status === 'open') {
      this.open(this._state.room).catch(() => {});
    }
  }

  _onLost() {
    this._signal = null;
    if (this._state.status === 'open' || this._state.status === 'opening') {
      this._set({ status: 'open', loadingOlder: false }, 'lost');
    }
  }

  _onFrame(msg) {
    if (msg.room !== this._state.room || this._state.status !== 'open') {
      return;
    }
    if (msg.type === 'chat_message' && msg.message) {
      const isNew = !this._state.messages.some((m) => m.seq === msg.message.seq);
      const patch = { messages: merge(this._state.messages, [msg.message]) };
      if (isNew && msg.message.author === this._state.me && msg.message.seq > this._state.readUpTo) {
        patch.readUpTo = msg.message.seq; // writing counts as reading up to it
      }
      this._set(patch, 'message');
      this.dispatchEvent(new CustomEvent('message', { detail: { message: msg.message, isNew } }));
    } else if (msg.type === 'chat_muted') {
      const others = this._state.muted.filter((u) => u !== msg.user);
      this._set({ muted: msg.muted ? [...others, msg.user] : others }, 'muted');
    }
  }

  _takePage(page, transition, { reset, me }) {
    const messages = reset ? merge([], page.messages || []) : merge(this._state.messages, page.messages || []);
    const patch = {
      status: 'open',
      error: null,
      messages,
      readUpTo: Math.max(Number(page.read_up_to) || 0, reset ? 0 : this._state.readUpTo),
      muted: page.muted || [],
    };
    // `more` says whether anything is older than the oldest message we now hold.
    if (reset || (page.messages || []).length) {
      patch.more = Boolean(page.more);
    } else {
      patch.more = false;
    }
    if (reset && me) {
      patch.me = me;
    }
    this._set(patch, transition);
  }
}

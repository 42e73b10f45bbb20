// Optional helper for pages (the SDK core has no DOM): plays the room's remote tracks in
// <audio> elements that were unlocked by the user's tap, and says when the browser still
// blocks playback so the page can offer "Tap to enable audio".

import { AUDIO_SLOTS } from './media.js';

/**
 * Playback unlocked by a user gesture. Mobile browsers only let audio play once the user
 * has tapped, and iOS Safari only on elements that were play()ed inside that tap, so the
 * tap handler calls unlock() synchronously and the remote tracks later reuse its elements.
 * `onBlocked(blocked)` tells whether some audio is waiting for a tap.
 */
export class AudioOut {
  /** @param {HTMLElement} sink where the <audio> elements live (hidden) */
  constructor(sink, { onBlocked = () => {} } = {}) {
    this.sink = sink;
    this.ctx = null;
    this.free = [];
    this.used = new Map(); // track id -> <audio>
    this.blocked = new Set();
    this.onBlocked = onBlocked;
  }

  /** Must run inside a click/tap handler, before any await. */
  unlock() {
    const Ctx = globalThis.AudioContext || globalThis.webkitAudioContext;
    if (Ctx && !this.ctx) {
      try {
        this.ctx = new Ctx();
      } catch {
        this.ctx = null;
      }
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
      if (silence && !el.srcObject) {
        el.srcObject = silence;
      }
      el.play().catch(() => {});
    }
    // A second chance for elements the browser refused before this tap.
    for (const el of this.blocked) {
      this.start(el);
    }
  }

  makeElement() {
    const el = document.createElement('audio');
    el.autoplay = true;
    el.setAttribute('playsinline', '');
    this.sink.appendChild(el);
    return el;
  }

  start(el) {
    el.play().then(() => {
      if (this.blocked.delete(el)) {
        this.onBlocked(this.blocked.size > 0);
      }
    }, (e) => {
      if (e && e.name === 'NotAllowedError') {
        this.blocked.add(el);
        this.onBlocked(true);
      }
    });
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
    this.start(el);
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
    if (this.blocked.delete(el)) {
      this.onBlocked(this.blocked.size > 0);
    }
    this.free.push(el);
  }

  releaseAll() {
    for (const id of [...this.used.keys()]) {
      this.release(id);
    }
  }
}

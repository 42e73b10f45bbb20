// Ring tones drawn with WebAudio, no sound files: the callee hears a double ring (two
// mixed tones, on-off-on, a pause), the caller a softer ringback; on phones an incoming
// call also vibrates. Browsers start audio only after a tap, so `prime()` runs in taps.

/** The shape of each tone: frequencies (Hz), the on/off steps (s), the loudness. */
const TONES = {
  incoming: { freqs: [400, 450], steps: [0.4, 0.2, 0.4, 2.0], gain: 0.18 },
  outgoing: { freqs: [440, 480], steps: [1.5, 3.0], gain: 0.06 },
};
/** How far ahead the on/off envelope is written (re-written before it runs out). */
const AHEAD_S = 12;
const VIBRATE = [400, 200, 400];
const VIBRATE_EVERY_MS = 3000;

export class Ringer {
  constructor() {
    this.ctx = null;
    /** What rings now: 'incoming', 'outgoing' or ''. */
    this.kind = '';
    this.nodes = null;
    this.timer = null;
    this.buzz = null;
  }

  /** Create or wake the audio context; call inside a tap so later rings are heard. */
  prime() {
    const Ctx = globalThis.AudioContext || globalThis.webkitAudioContext;
    if (!this.ctx && Ctx) {
      try {
        this.ctx = new Ctx();
      } catch {
        this.ctx = null;
      }
    }
    if (this.ctx && this.ctx.state === 'suspended') {
      this.ctx.resume().catch(() => {});
    }
  }

  /** Whether the tone can be heard (the browser let audio start). */
  get audible() {
    return Boolean(this.kind && this.ctx && this.ctx.state === 'running');
  }

  /** Ring (`incoming` or `outgoing`) until `stop()`; the same kind again changes nothing. */
  start(kind) {
    if (this.kind === kind) {
      return;
    }
    this.stop();
    this.kind = kind;
    this.prime();
    const tone = TONES[kind];
    if (this.ctx && tone) {
      const ctx = this.ctx;
      const gain = ctx.createGain();
      gain.gain.value = 0;
      gain.connect(ctx.destination);
      const oscillators = tone.freqs.map((f) => {
        const o = ctx.createOscillator();
        o.type = 'sine';
        o.frequency.value = f;
        o.connect(gain);
        o.start();
        return o;
      });
      this.nodes = { gain, oscillators, until: ctx.currentTime };
      this.schedule(tone);
      this.timer = setInterval(() => this.schedule(tone), (AHEAD_S / 2) * 1000);
    }
    if (kind === 'incoming') {
      this.vibrate();
    }
  }

  /** Write the on/off envelope up to AHEAD_S seconds from now. */
  schedule(tone) {
    const { ctx, nodes } = this;
    if (!nodes) {
      return;
    }
    let t = Math.max(nodes.until, ctx.currentTime + 0.05);
    const end = ctx.currentTime + AHEAD_S;
    const g = nodes.gain.gain;
    while (t < end) {
      tone.steps.forEach((len, i) => {
        const on = i % 2 === 0;
        // Short ramps: no clicks at the edges.
        g.setValueAtTime(on ? 0 : tone.gain, t);
        g.linearRampToValueAtTime(on ? tone.gain : 0, t + 0.02);
        t += len;
      });
    }
    nodes.until = t;
  }

  /** On phones (where the browser has it): buzz with the ring. */
  vibrate() {
    const nav = globalThis.navigator;
    const phone = globalThis.matchMedia && globalThis.matchMedia('(pointer: coarse)').matches;
    if (!nav || typeof nav.vibrate !== 'function' || !phone) {
      return;
    }
    const buzz = () => {
      try {
        nav.vibrate(VIBRATE);
      } catch {
        // not allowed before the user tapped: the ring still shows
      }
    };
    buzz();
    this.buzz = setInterval(buzz, VIBRATE_EVERY_MS);
  }

  /** Silence (on any end of a ring: answered, declined, cancelled, missed). */
  stop() {
    clearInterval(this.timer);
    this.timer = null;
    if (this.nodes) {
      const { gain, oscillators } = this.nodes;
      for (const o of oscillators) {
        try {
          o.stop();
        } catch {
          // already stopped
        }
        o.disconnect();
      }
      gain.disconnect();
      this.nodes = null;
    }
    if (this.buzz) {
      clearInterval(this.buzz);
      this.buzz = null;
      try {
        globalThis.navigator.vibrate(0);
      } catch {
        // nothing to stop
      }
    }
    this.kind = '';
  }
}

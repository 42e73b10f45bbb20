// Small helpers shared by the browser tests: waiting, what the page shows, and the
// user's steps (create a room on the landing page, join by the link, use the sheet).

import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ENGINES, inboundAudio, sleep } from './browser.mjs';
import { startServer } from './server.mjs';

/** Screenshots for reviewers (not committed): web-client/test-results/screens/. */
export const SCREENS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'test-results', 'screens');

/**
 * The same test once per engine: `body(engine, t)`, named "… [chromium]" / "… [firefox]"
 * (`t` is node:test's context, e.g. for `t.skip(why)`).
 */
export function engineTest(name, options, body) {
  for (const engine of ENGINES) {
    test(`${name} [${engine}]`, options, (t) => body(engine, t));
  }
}

/** Keep a screenshot of `page` as test-results/screens/<engine>-<name>.png. */
export async function snap(page, engine, name, { fullPage = false } = {}) {
  await mkdir(SCREENS_DIR, { recursive: true });
  await page.screenshot({ path: path.join(SCREENS_DIR, `${engine}-${name}.png`), fullPage });
}

/**
 * Record the frames the page's WebSocket receives (window.__frames) and sends
 * (window.__sent), and keep its sockets
 * (window.__sockets), so a test can read the protocol or add synthetic frames. Works in
 * every engine (the page's WebSocket is subclassed before the page's own code runs).
 */
export function recordSocket(page) {
  return page.addInitScript(() => {
    const Native = window.WebSocket;
    window.__frames = [];
    window.__sent = [];
    window.__sockets = [];
    window.WebSocket = class extends Native {
      send(data) {
        try { window.__sent.push(JSON.parse(data)); } catch { /* not JSON */ }
        return super.send(data);
      }

      constructor(...args) {
        super(...args);
        window.__sockets.push(this);
        this.addEventListener('message', (e) => {
          try { window.__frames.push(JSON.parse(e.data)); } catch { /* not JSON */ }
        });
      }
    };
  });
}

/** Poll `probe` until it returns a truthy value; fail with `what` and the last value. */
export async function waitFor(probe, { timeoutMs = 15_000, intervalMs = 250, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await probe();
    if (last && (!Array.isArray(last) || last.length > 0)) {
      return last;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last value: ${JSON.stringify(last)}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Names shown in the room (stage then audience), in order. */
export function listedNames(page) {
  return page.evaluate(() => [...document.querySelectorAll('#in-room .person .name .label')].map((e) => e.textContent.trim()));
}

/** Names on the stage and in the audience. */
export function stageAndAudience(page) {
  return page.evaluate(() => {
    const names = (sel) => [...document.querySelectorAll(`${sel} .person .name .label`)].map((e) => e.textContent.trim());
    const free = document.querySelector('#stage-list .seat-free');
    return { stage: names('#stage-list'), audience: names('#audience-list'), free: free ? Number(free.dataset.count) : 0 };
  });
}

/** Tap on a phone page, click on a desktop one. */
export function press(page, selector, touch) {
  return touch ? page.tap(selector) : page.click(selector);
}

/**
 * Create a room on the landing page: fill the form, press Create, wait until the room is
 * live (the creator's media connected). Resolves with the room id and link.
 */
export async function createRoomFromLanding(page, baseUrl, {
  name, title, seatMode = 'moderated', entry = 'anyone', capacity, seats, touch = false, open = true,
}) {
  if (open) {
    await page.goto(`${baseUrl}/`);
  }
  await page.fill('#create-name', name);
  await page.fill('#create-title', title);
  if (capacity !== undefined) await page.fill('#create-capacity', String(capacity));
  if (seats !== undefined) await page.fill('#create-seats', String(seats));
  await press(page, seatMode === 'open' ? '#mode-open' : '#mode-moderated', touch);
  await press(page, entry === 'knock' ? '#entry-knock' : '#entry-anyone', touch);
  await press(page, '#create-btn', touch);
  await page.waitForURL(/\/r\/[A-Za-z0-9_-]+$/, { timeout: 15_000 });
  await waitInRoom(page, name);
  await page.waitForSelector('#room-state[data-state="active"]', { timeout: 15_000 });
  const id = new URL(await page.href()).pathname.split('/')[2];
  return { id, link: `/r/${id}`, url: `${baseUrl}/r/${id}` };
}

/** Open a room link and join it. */
export async function joinByLink(page, url, name, { touch = false } = {}) {
  await page.goto(url);
  await page.fill('#join-name', name);
  await press(page, '#join-btn', touch);
  await waitInRoom(page, name);
}

/** Wait until the page is in the room; fail at once with the user's alert if one shows. */
export async function waitInRoom(page, name) {
  const outcome = await page.waitForFunction(() => {
    if (!document.getElementById('in-room').hidden) return 'in';
    const toast = document.getElementById('toast');
    if (!toast.hidden && toast.dataset.kind !== 'info') {
      return `alert: ${document.getElementById('toast-text').textContent.trim()}`;
    }
    const fin = document.getElementById('final');
    return fin.hidden ? null : `final: ${document.getElementById('final-text').textContent.trim()}`;
  }, null, { timeout: 20_000, polling: 100 });
  const what = outcome;
  assert.equal(what, 'in', `${name} could not enter the room: ${what}`);
}

/** Open the moderator sheet on `name` and press the action button `act` (e.g. '#act-grant'). */
export async function moderate(page, name, act, { touch = false } = {}) {
  await press(page, `#in-room .person[data-name="${name}"] .person-menu`, touch);
  await page.waitForSelector('#sheet[open]', { timeout: 5_000 });
  await press(page, act, touch);
}

/** The participant's id as the page knows it (by display name). */
export function participantId(page, name) {
  return page.evaluate((n) => window.chorus.participants.find((p) => p.name === n)?.id, name);
}

/**
 * Sample inbound audio for `ms`: per stream (by mid), packets gained and the highest
 * audioLevel seen. The fake microphone beeps, so poll rather than read once.
 */
export async function sampleInbound(page, ms, stepMs = 250) {
  const first = new Map((await inboundAudio(page)).map((s) => [s.mid, s]));
  const out = new Map();
  const end = Date.now() + ms;
  let last = [];
  while (Date.now() < end) {
    await sleep(stepMs);
    last = await inboundAudio(page);
    for (const s of last) {
      const o = out.get(s.mid) || { mid: s.mid, maxLevel: 0, mimeType: s.mimeType };
      o.maxLevel = Math.max(o.maxLevel, s.audioLevel);
      o.gained = s.packetsReceived - (first.get(s.mid)?.packetsReceived ?? 0);
      o.energy = s.totalAudioEnergy - (first.get(s.mid)?.totalAudioEnergy ?? 0);
      o.mimeType = s.mimeType || o.mimeType;
      out.set(s.mid, o);
    }
  }
  return [...out.values()];
}

/**
 * Decoded energy (Σ level² × seconds, getStats' totalAudioEnergy) a stream must gain in a
 * sample to count as heard. Measured here: a speaker's fake microphone adds 0.01–0.2 in
 * a second that holds a beep; Opus packets of digital silence (a muted or listening
 * sender still sends them) decode to level 1/32768 and add ≈ 1e-10. Packets alone, or
 * any level above 0, prove nothing.
 */
export const HEARD_ENERGY = 1e-4;
/** Where an engine reports no energy at all: the loudest level seen must reach this. */
const HEARD_LEVEL = 1e-3;

/** Audible streams: Opus, packets growing, and decoded sound, not digital silence. */
export function audible(samples) {
  return samples.filter((s) => s.gained > 0 && s.mimeType === 'audio/opus'
    && (s.energy >= HEARD_ENERGY || (!(s.energy > 0) && s.maxLevel >= HEARD_LEVEL)));
}

/** Wait (up to `timeoutMs`) until the page hears at least `n` audible streams. */
export async function waitHearing(page, n, what, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  let last = [];
  while (Date.now() < deadline) {
    last = await sampleInbound(page, 1000);
    if (audible(last).length >= n) {
      return audible(last);
    }
  }
  assert.fail(`${what}: expected ${n} audible inbound Opus stream(s) within ${timeoutMs / 1000} s; `
    + `streams: ${JSON.stringify(last)}`);
}

/** No horizontal scrolling on the page (phones). */
export async function assertNoOverflow(page, what) {
  const o = await page.evaluate(() => ({
    scrollWidth: document.scrollingElement.scrollWidth,
    innerWidth: window.innerWidth,
  }));
  assert.ok(o.scrollWidth <= o.innerWidth, `no horizontal overflow ${what}: ${JSON.stringify(o)}`);
}

/** What a failing test should print: each browser's console and the server's output. */
export function diagnostics(server, browsers) {
  const parts = browsers.map((b, i) => `--- browser ${i} console ---\n${b.logs.join('\n')}`);
  if (server) {
    parts.push(server.output());
  }
  return parts.join('\n');
}

/**
 * Run `body({ server, browsers })` against a fresh server; push every browser opened onto
 * `browsers`. A failure carries the server's log and the pages' state; browsers and server
 * are always stopped.
 */
export async function withServer(options, body) {
  const server = await startServer(options);
  const browsers = [];
  try {
    await body({ server, browsers });
  } catch (e) {
    e.message += `\n${diagnostics(server, browsers)}`;
    throw e;
  } finally {
    await Promise.all(browsers.map((b) => b.close()));
    await server.stop();
  }
}

/**
 * Answer an open confirmation with Enter, as a keyboard user would (focus is on Cancel).
 * Firefox over WebDriver BiDi delivers the key events but not a key's default action (a
 * focused button is not activated), so there the test presses the focused button itself.
 */
export async function pressEnterOnConfirm(page, engine) {
  if (engine === 'firefox') {
    const focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
    await page.click(`#${focused}`);
  } else {
    await page.press('Enter');
  }
}

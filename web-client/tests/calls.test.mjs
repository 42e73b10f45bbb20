// 1:1 calls, driven through the page as people use it: sign up and sign in, find someone
// by handle, ring them, answer on one of several devices, talk (between contacts audio
// goes straight from one browser to the other: the selected ICE pair is host to host, and
// each side decodes the other's fake microphone), mute, hang up; every other way a call
// ends, in words, and the records in the recent calls. Strangers, and accounts that hide
// their address, talk through the SFU; a call can become a voice room ("Add someone").
// Chromium (Debian's) for the flows, then Firefox ↔ Chromium.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { ENGINES, openBrowser, sleep } from './browser.mjs';
import { contrastFailures } from './contrast.mjs';
import { signedRequest } from './fleet-server.mjs';
import {
  HEARD_ENERGY, assertNoOverflow, joinByLink, press, recordSocket, snap, stageAndAudience, waitFor, waitHearing,
  waitInRoom, withServer,
} from './util.mjs';

const PASSWORD = 'correct horse battery';

/**
 * Open browsers at once, each pushed onto `browsers` (the test's to close) as soon as it is
 * open: if one fails to start, the others are still closed (a live browser would keep the
 * test process from ever exiting).
 */
async function openBrowsers(browsers, ...options) {
  const opened = await Promise.allSettled(options.map((o) => openBrowser(o)));
  browsers.push(...opened.filter((r) => r.status === 'fulfilled').map((r) => r.value));
  const failed = opened.find((r) => r.status === 'rejected');
  if (failed) {
    throw failed.reason;
  }
}

// ---------------------------------------------------------------- the user's steps

/** From the landing page, the "Calls" entry. */
async function openCalls(page, baseUrl, touch) {
  await page.goto(`${baseUrl}/`);
  await press(page, '#calls-entry', touch);
  await page.waitForSelector('#view-calls', { timeout: 10_000 });
}

/** Fail at once with the page's alert, if it shows one, else wait for `selector`. */
async function waitOrAlert(page, selector, what, timeout = 15_000) {
  const outcome = await page.waitForFunction((sel) => {
    const el = document.querySelector(sel);
    if (el && !el.closest('[hidden]')) return 'ok';
    const toast = document.getElementById('toast');
    if (!toast.hidden && toast.dataset.kind !== 'info') {
      return `alert (${toast.dataset.code}): ${document.getElementById('toast-text').textContent.trim()}`;
    }
    return null;
  }, selector, { timeout, polling: 100 });
  assert.equal(outcome, 'ok', `${what}: ${outcome}`);
}

async function signUp(page, { handle, name, password = PASSWORD, touch = false }) {
  await page.waitForSelector('#signup-form');
  await page.fill('#signup-handle', handle);
  await page.fill('#signup-name', name);
  await page.fill('#signup-password', password);
  await press(page, '#signup-btn', touch);
  await waitOrAlert(page, '#calls-home', `${name} signs up as @${handle}`);
  assert.match(await page.textContent('#calls-me'), new RegExp(`@${handle}\\b`));
}

/** Ada and Bo, each on a calls page of their own, signed up. */
async function adaAndBo(ada, bo, baseUrl) {
  await openCalls(ada, baseUrl, false);
  await signUp(ada, { handle: 'ada', name: 'Ada Lovelace' });
  await openCalls(bo, baseUrl, false);
  await signUp(bo, { handle: 'bo', name: 'Bo Ek' });
}

/** The account a signed-up calls page holds: `{user, handle, name, always_relay}`. */
function accountOf(page) {
  return page.evaluate(() => window.chorusCalls.state.account);
}

/**
 * Make two signed-up pages' accounts contacts, as a group chat they share does: through
 * the server API, a room owned by the first with the second added as a member. (Strangers
 * talk through the SFU from the start; contacts go browser to browser.) Resolves once each
 * lists the other among their people.
 */
async function makeContacts(server, a, b) {
  const apiKey = JSON.parse(await readFile(path.join(server.dataDir, 'api-key.json'), 'utf8'));
  const [x, y] = [await accountOf(a), await accountOf(b)];
  assert.ok(x && y, `both signed up: ${JSON.stringify([x, y])}`);
  const made = await signedRequest(server.url, apiKey, 'POST', '/api/v1/rooms',
    { name: `${x.name} and ${y.name}`, owner_name: x.name, owner: x.user });
  assert.equal(made.status, 201, `a group chat of @${x.handle}: ${JSON.stringify(made.body)}`);
  const room = made.body.room.id;
  const added = await signedRequest(server.url, apiKey, 'PUT', `/api/v1/rooms/${room}/members/${y.user}`,
    { name: y.name });
  assert.equal(added.status, 200, `@${y.handle} in the group chat: ${JSON.stringify(added.body)}`);
  for (const [page, other] of [[a, y], [b, x]]) {
    await waitFor(() => page.evaluate(async (user) => {
      await window.chorusCalls.client.refreshContacts();
      return window.chorusCalls.client.people.has(user);
    }, other.user), { timeoutMs: 5_000, what: `@${other.handle} among the contacts` });
  }
}

/**
 * Count the peer connections a page makes (before its code runs): `window.__directPcs`,
 * the call's own ones (made by sdk/calls.js, told apart by their caller in the stack;
 * Chromium's stack format), and `window.__pcs`, all of them.
 */
function countPeerConnections(page) {
  return page.addInitScript(() => {
    const Native = window.RTCPeerConnection;
    window.__directPcs = 0;
    window.__pcs = [];
    window.RTCPeerConnection = class extends Native {
      constructor(config) {
        const caller = (new Error().stack || '').split('\n')[2] || '';
        super(config);
        window.__pcs.push(this);
        if (caller.includes('/sdk/calls.js')) window.__directPcs += 1;
      }
    };
  });
}

/** The frames of `type` a page received (recordSocket). */
function framesOf(page, type) {
  return page.evaluate((t) => window.__frames.filter((f) => f.type === t), type);
}

async function signIn(page, { handle, password = PASSWORD, touch = false }) {
  if (await page.isVisible('#show-signin')) {
    await press(page, '#show-signin', touch);
  }
  await page.waitForSelector('#signin-form');
  await page.fill('#signin-handle', handle);
  await page.fill('#signin-password', password);
  await press(page, '#signin-btn', touch);
}

/** Find `handle` with the search box and press its Call button. */
async function callByHandle(page, handle, { touch = false, name } = {}) {
  await page.fill('#find-handle', handle);
  await press(page, '#find-btn', touch);
  const h = handle.replace(/^@/, '').toLowerCase();
  await waitOrAlert(page, `#find-result li[data-handle="${h}"]`, `find ${handle}`, 10_000);
  if (name) {
    assert.equal((await page.textContent('#find-result .label')).trim(), name);
  }
  await press(page, '#find-result .call-btn', touch);
}

function waitPhase(page, phase, what, timeout = 15_000) {
  return waitOrAlert(page, `#call-screen[data-phase="${phase}"]`, what, timeout);
}

/** The ended card with `reason`; resolves with its sentence. */
async function waitEnded(page, reason, what, timeout = 15_000) {
  await waitOrAlert(page, `#call-ended[data-reason="${reason}"]`, what, timeout);
  return (await page.textContent('#call-ended-text')).trim();
}

/** The call's peer connection, as getStats tells it: inbound audio and the selected pair. */
function callStats(page) {
  return page.evaluate(async () => {
    const pc = window.chorusCalls && window.chorusCalls.pc;
    if (!pc) return null;
    const all = new Map();
    (await pc.getStats()).forEach((s) => all.set(s.id, s));
    let inbound = null;
    let pair = null;
    for (const s of all.values()) {
      if (s.type === 'inbound-rtp' && (s.kind || s.mediaType) === 'audio') inbound = s;
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = all.get(s.selectedCandidatePairId);
    }
    // Firefox has no transport stats: the pair it marks selected, else a nominated one.
    const pairs = [...all.values()].filter((s) => s.type === 'candidate-pair');
    pair = pair || pairs.find((s) => s.selected) || pairs.find((s) => s.nominated && s.state === 'succeeded') || null;
    const cand = (id) => {
      const c = id && all.get(id);
      return c ? { type: c.candidateType, address: c.address || c.ip, port: c.port, protocol: c.protocol } : null;
    };
    const codec = inbound && inbound.codecId ? all.get(inbound.codecId) : null;
    return {
      connectionState: pc.connectionState,
      packetsReceived: inbound ? inbound.packetsReceived || 0 : 0,
      audioLevel: inbound ? inbound.audioLevel || 0 : 0,
      totalAudioEnergy: inbound ? inbound.totalAudioEnergy || 0 : 0,
      mimeType: codec ? codec.mimeType : null,
      pair: pair ? { state: pair.state, local: cand(pair.localCandidateId), remote: cand(pair.remoteCandidateId) } : null,
    };
  });
}

/** One second of inbound audio: packets and decoded energy gained, loudest level seen. */
async function sampleCall(page, ms = 1000) {
  const first = await callStats(page);
  let maxLevel = first ? first.audioLevel : 0;
  let last = first;
  const end = Date.now() + ms;
  while (Date.now() < end) {
    await sleep(200);
    last = await callStats(page);
    if (last) maxLevel = Math.max(maxLevel, last.audioLevel);
  }
  if (!first || !last) return null;
  return {
    gained: last.packetsReceived - first.packetsReceived,
    energy: last.totalAudioEnergy - first.totalAudioEnergy,
    maxLevel,
    mimeType: last.mimeType,
    pair: last.pair,
  };
}

const heard = (s) => Boolean(s && s.gained > 0 && s.mimeType === 'audio/opus'
  && (s.energy >= HEARD_ENERGY || (!(s.energy > 0) && s.maxLevel >= 1e-3)));

/** Wait (bounded) until the page decodes real sound from the other side. */
async function waitHeard(page, what, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  let last = null;
  while (Date.now() < deadline) {
    last = await sampleCall(page);
    if (heard(last)) return last;
  }
  return assert.fail(`${what}: no audible Opus from the other side within ${timeoutMs / 1000} s; last: ${JSON.stringify(last)}`);
}

/** Wait (bounded) until two seconds in a row carry no sound from the other side. */
async function waitSilent(page, what, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  let last = null;
  while (Date.now() < deadline) {
    last = await sampleCall(page, 2000);
    if (last && last.gained > 0 && !heard(last)) return last;
  }
  return assert.fail(`${what}: still sound (or no packets) after ${timeoutMs / 1000} s; last: ${JSON.stringify(last)}`);
}

/** The selected ICE pair once connected (bounded wait). */
async function selectedPair(page, what) {
  const s = await waitFor(async () => {
    const st = await callStats(page);
    return st && st.pair && st.pair.state === 'succeeded' && st.pair.local && st.pair.remote ? st : null;
  }, { timeoutMs: 10_000, what: `${what}: a selected ICE pair` });
  return s.pair;
}

function assertHostToHost(pair, what) {
  assert.equal(pair.local.type, 'host', `${what}: local candidate is a host one: ${JSON.stringify(pair)}`);
  assert.equal(pair.remote.type, 'host', `${what}: remote candidate is a host one: ${JSON.stringify(pair)}`);
  assert.equal(pair.local.protocol, 'udp', `${what}: UDP: ${JSON.stringify(pair)}`);
}

/**
 * Media straight between two pages, whatever the candidate types say: each side's remote
 * endpoint is the other side's local host candidate (a peer-reflexive remote is the other
 * side's host address learnt from its connectivity check before its trickled candidate;
 * Chromium's stats leave such an address out, so then its port must be the other's).
 */
function assertDirectBetween(a, b, what) {
  const ends = `${JSON.stringify(a)} / ${JSON.stringify(b)}`;
  for (const [p, q] of [[a, b], [b, a]]) {
    assert.equal(p.local.type, 'host', `${what}: local host candidates: ${ends}`);
    assert.ok(['host', 'prflx'].includes(p.remote.type), `${what}: no relay: ${ends}`);
    const hidden = p.remote.type === 'prflx' && !p.remote.address;
    assert.equal(`${hidden ? q.local.address : p.remote.address}:${p.remote.port}`, `${q.local.address}:${q.local.port}`,
      `${what}: each side talks to the other's own address: ${ends}`);
  }
}

/**
 * The two pages' selected pairs, read until both name the same path: on a host with
 * several addresses (IPv4 and IPv6) ICE may still switch pairs between the two reads,
 * each a direct one. Then asserted as `assertDirectBetween`.
 */
async function directBetween(pageA, pageB, whatA, whatB) {
  const same = (a, b) => {
    try {
      assertDirectBetween(a, b, '');
      return true;
    } catch {
      return false;
    }
  };
  let a = await selectedPair(pageA, whatA);
  let b = await selectedPair(pageB, whatB);
  const deadline = Date.now() + 10_000;
  while (!same(a, b) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    [a, b] = [await selectedPair(pageA, whatA), await selectedPair(pageB, whatB)];
  }
  assertDirectBetween(a, b, `${whatA} ↔ ${whatB}`);
  return [a, b];
}

/** The recent calls as the page lists them. */
function recentCalls(page) {
  return page.evaluate(() => [...document.querySelectorAll('#recent-list li')].map((li) => ({
    name: li.querySelector('.label').textContent.trim(),
    handle: li.dataset.handle,
    end: li.dataset.end,
    missed: li.dataset.missed === 'true',
    outgoing: li.dataset.outgoing === 'true',
    missedTag: !li.querySelector('.missed-tag').hidden,
    text: li.querySelector('.sub-text').textContent.trim(),
  })));
}

function presenceOf(page, handle) {
  return page.evaluate((h) => {
    const li = document.querySelector(`#contact-list li[data-handle="${h}"]`);
    return li ? `${li.dataset.presence}: ${li.querySelector('.sub-text').textContent}` : null;
  }, handle);
}

// ---------------------------------------------------------------- the tests

test('the calls SDK uses no DOM', async () => {
  const src = await readFile(new URL('../src/sdk/calls.js', import.meta.url), 'utf8');
  assert.ok(!/\bdocument\b|\bwindow\b/.test(src.replace(/\/\/.*$/gm, '').replace(/\/\*[\s\S]*?\*\//g, '')),
    'src/sdk/calls.js uses no DOM');
});

test('a desktop calls a phone by handle: ring, answer, direct audio both ways, mute, hang up, recent calls',
  { timeout: 180_000 }, async () => {
    await withServer({}, async ({ server, browsers }) => {
      await openBrowsers(browsers,
        { engine: 'chromium' }, { engine: 'chromium', device: 'Pixel 7', colorScheme: 'dark' });
      const [adaPage, boPage] = browsers.map((b) => b.page);

      // The phone's vibrations, as the page asks for them.
      await boPage.addInitScript(() => {
        window.__vibrations = [];
        navigator.vibrate = (pattern) => { window.__vibrations.push(pattern); return true; };
      });
      // Both sign up (the phone with taps). Contrast of the sign-up screen, light and dark.
      await openCalls(adaPage, server.url, false);
      await openCalls(boPage, server.url, true);
      const contrast = {
        signupLight: await adaPage.evaluate(contrastFailures, '#main'),
        signupDark: await boPage.evaluate(contrastFailures, '#main'),
      };
      await snap(boPage, 'chromium', 'phone-calls-signup');
      await assertNoOverflow(boPage, 'on the phone sign-up');
      await signUp(adaPage, { handle: 'ada', name: 'Ada Lovelace' });
      await signUp(boPage, { handle: 'bo', name: 'Bo Ek', touch: true });
      contrast.peopleDark = await boPage.evaluate(contrastFailures, '#main');
      assert.equal(await adaPage.evaluate(() => document.title), 'Calls · Chorus');
      await makeContacts(server, adaPage, boPage); // they share a group chat: the call goes direct

      // Ada finds Bo by his exact handle: name and presence, then calls.
      await callByHandle(adaPage, '@Bo', { name: 'Bo Ek' });
      assert.match(await adaPage.textContent('#find-result .sub-text'), /@bo · online/);
      await waitPhase(adaPage, 'ringing', 'Ada rings Bo');
      assert.equal((await adaPage.textContent('#call-status')).trim(), 'Calling Bo Ek…');
      assert.equal(await adaPage.getAttribute('#call-status', 'aria-live'), 'polite');
      assert.equal(await adaPage.getAttribute('#call-screen', 'data-ring'), 'outgoing', 'Ada hears the ringback');
      assert.equal(await adaPage.isVisible('#call-cancel'), true, 'Ada can cancel');

      // Bo's phone rings: caller's name and initials, Accept and Decline, a ring tone.
      await waitPhase(boPage, 'incoming', 'Bo is rung');
      assert.equal((await boPage.textContent('#call-name')).trim(), 'Ada Lovelace');
      assert.equal((await boPage.textContent('#call-avatar')).trim(), 'AL');
      assert.match(await boPage.textContent('#call-status'), /Ada Lovelace is calling you/);
      assert.equal(await boPage.getAttribute('#call-accept', 'aria-label'), 'Accept call from Ada Lovelace');
      assert.equal(await boPage.getAttribute('#call-decline', 'aria-label'), 'Decline call from Ada Lovelace');
      assert.equal(await boPage.getAttribute('#call-screen', 'data-ring'), 'incoming');
      assert.equal(await boPage.getAttribute('#call-screen', 'data-ring-audible'), 'true',
        'the ring tone plays (WebAudio started by the earlier tap)');
      assert.equal(await boPage.evaluate(() => document.activeElement.id), 'call-accept', 'focus on Accept');
      assert.match(await boPage.evaluate(() => document.title), /Incoming call · Ada Lovelace/);
      contrast.incomingDark = await boPage.evaluate(contrastFailures, '#main');
      await snap(boPage, 'chromium', 'phone-call-incoming');
      await assertNoOverflow(boPage, 'on the phone incoming screen');

      assert.deepEqual(await boPage.evaluate(() => window.__vibrations[0]), [400, 200, 400], 'the phone vibrates');
      await boPage.tap('#call-accept');
      await waitPhase(boPage, 'connected', 'Bo in the call');
      assert.equal(await boPage.evaluate(() => window.__vibrations.at(-1)), 0, 'the vibration stops on answer');
      await waitPhase(adaPage, 'connected', 'Ada in the call');
      for (const [page, who] of [[adaPage, 'Ada'], [boPage, 'Bo']]) {
        assert.equal(await page.getAttribute('#call-screen', 'data-ring'), '', `${who}: the ring stopped`);
        assert.equal(await page.evaluate(() => window.chorusCalls.ringer.kind), '', `${who}: no tone playing`);
        assert.equal(await page.isVisible('#call-hangup'), true, `${who} can hang up`);
        assert.equal(await page.isVisible('#call-mute'), true, `${who} can mute`);
      }
      assert.equal((await adaPage.textContent('#call-name')).trim(), 'Bo Ek');

      // Media straight between the two browsers: host candidate to host candidate.
      const [adaPair, boPair] = await directBetween(adaPage, boPage, 'Ada', 'Bo');
      assertHostToHost(adaPair, 'Ada');
      assertHostToHost(boPair, 'Bo');
      // Each decodes the other's (fake, beeping) microphone.
      await Promise.all([waitHeard(adaPage, 'Ada hears Bo'), waitHeard(boPage, 'Bo hears Ada')]);

      // The in-call screen: a running timer, the other's speaking shown, the connection's quality.
      const t0 = (await adaPage.textContent('#call-timer')).trim();
      assert.match(t0, /^\d+:\d\d$/);
      await waitFor(async () => (await adaPage.textContent('#call-timer')).trim() !== t0,
        { timeoutMs: 3_000, what: 'the call timer to tick' });
      await waitFor(() => adaPage.getAttribute('#call-peer', 'data-speaking').then((v) => v === 'true'),
        { timeoutMs: 8_000, intervalMs: 50, what: 'Ada sees Bo speaking' });
      await waitFor(() => boPage.getAttribute('#call-peer', 'data-speaking').then((v) => v === 'true'),
        { timeoutMs: 8_000, intervalMs: 50, what: 'Bo sees Ada speaking' });
      const quality = await waitFor(() => adaPage.textContent('#call-quality').then((t) => t.trim()),
        { timeoutMs: 5_000, what: 'a connection quality line' });
      assert.match(quality, /^(Good|Fair|Poor) connection · \d+ ms · [\d.]+% loss · direct$/);
      contrast.inCallLight = await adaPage.evaluate(contrastFailures, '#main');
      contrast.inCallDark = await boPage.evaluate(contrastFailures, '#main');
      await snap(adaPage, 'chromium', 'desktop-call-connected');
      await snap(boPage, 'chromium', 'phone-call-connected');
      // On the phone the call's controls are on screen, nothing scrolls sideways.
      const layout = await boPage.evaluate(() => ({
        innerHeight, hangup: document.getElementById('call-hangup').getBoundingClientRect().bottom,
      }));
      assert.ok(layout.hangup <= layout.innerHeight, `hang up on screen: ${JSON.stringify(layout)}`);
      await assertNoOverflow(boPage, 'on the phone in a call');

      // Bo mutes: Ada's side goes silent; unmutes: heard again.
      await boPage.tap('#call-mute');
      assert.equal(await boPage.getAttribute('#call-mute', 'aria-pressed'), 'true');
      assert.match(await boPage.textContent('#call-status'), /You are muted/);
      await waitSilent(adaPage, 'Bo muted: Ada hears nothing');
      await boPage.tap('#call-mute');
      assert.equal(await boPage.getAttribute('#call-mute', 'aria-pressed'), 'false');
      await waitHeard(adaPage, 'Bo unmuted: Ada hears him again');

      // Ada hangs up: both are told, both peer connections close.
      await adaPage.click('#call-hangup');
      const adaEnd = await waitEnded(adaPage, 'hung_up', 'Ada hung up');
      const boEnd = await waitEnded(boPage, 'hung_up', 'Bo told the call ended');
      assert.match(adaEnd, /^Call with Bo Ek ended \(\d+:\d\d\)\.$/);
      assert.match(boEnd, /^Ada Lovelace ended the call \(\d+:\d\d\)\.$/);
      for (const page of [adaPage, boPage]) {
        assert.equal(await page.evaluate(() => window.chorusCalls.pc), null, 'peer connection closed');
        assert.equal(await page.isVisible('#call-screen'), false);
      }

      // The record: in both lists, not missed, with its length; the server saw it go direct.
      const adaCalls = await waitFor(async () => {
        const list = await recentCalls(adaPage);
        return list.length === 1 ? list : null;
      }, { timeoutMs: 5_000, what: "the call in Ada's recent calls" });
      assert.equal(adaCalls[0].name, 'Bo Ek');
      assert.equal(adaCalls[0].outgoing, true);
      assert.equal(adaCalls[0].missed, false);
      assert.equal(adaCalls[0].end, 'hung_up');
      assert.match(adaCalls[0].text, /^↗ Outgoing · today \d\d?:\d\d.* · \d+:\d\d$/);
      const boCalls = await waitFor(async () => {
        const list = await recentCalls(boPage);
        return list.length === 1 ? list : null;
      }, { timeoutMs: 5_000, what: "the call in Bo's recent calls" });
      assert.equal(boCalls[0].name, 'Ada Lovelace');
      assert.equal(boCalls[0].outgoing, false);
      assert.equal(boCalls[0].missed, false);
      const record = await adaPage.evaluate(() => window.chorusCalls.client.calls[0]);
      assert.equal(record.path, 'direct', `the server recorded a direct path: ${JSON.stringify(record)}`);
      assert.ok(record.duration_secs >= 1, `the record has the call's length: ${JSON.stringify(record)}`);

      // Now each is the other's contact, with presence: Bo leaves, Ada sees him offline.
      await waitFor(() => presenceOf(adaPage, 'bo').then((p) => p && p.startsWith('online')),
        { timeoutMs: 5_000, what: 'Bo online in Ada\'s contacts' });
      await snap(adaPage, 'chromium', 'desktop-calls-people');
      await browsers[1].close();
      await waitFor(() => presenceOf(adaPage, 'bo').then((p) => p === 'offline: @bo · offline'),
        { timeoutMs: 10_000, what: 'Bo offline in Ada\'s contacts' });

      const all = Object.entries(contrast).flatMap(([where, list]) => list.map((f) => `${where}: ${f}`));
      assert.deepEqual(all, [], 'texts below WCAG AA on the calls screens');
    });
  });

test('a callee with two tabs and a phone: all ring, the phone signs in and answers, the tabs say answered elsewhere',
  { timeout: 180_000 }, async () => {
    await withServer({}, async ({ server, browsers }) => {
      await openBrowsers(browsers,
        { engine: 'chromium' }, { engine: 'chromium' }, { engine: 'chromium', device: 'Pixel 7' });
      const [ada, boTab1, boPhone] = browsers.map((b) => b.page);
      await adaAndBo(ada, boTab1, server.url);
      await makeContacts(server, ada, boTab1);
      // A second tab of the same browser keeps the account: signed in already.
      const boTab2 = await browsers[1].newTab();
      await boTab2.goto(`${server.url}/#calls`);
      await waitOrAlert(boTab2, '#calls-home', "Bo's second tab is signed in");
      assert.match(await boTab2.textContent('#calls-me'), /Bo Ek \(@bo\)/);

      // The phone: a taken handle, a wrong password, then the right one; in words.
      await openCalls(boPhone, server.url, true);
      await boPhone.fill('#signup-handle', 'bo');
      await boPhone.fill('#signup-name', 'Bo again');
      await boPhone.fill('#signup-password', PASSWORD);
      await boPhone.tap('#signup-btn');
      await boPhone.waitForSelector('#toast[data-code="handle_taken"]', { timeout: 10_000 });
      assert.match(await boPhone.textContent('#toast-text'), /@bo is taken/);
      await signIn(boPhone, { handle: 'bo', password: 'not the password', touch: true });
      await boPhone.waitForSelector('#toast[data-code="unauthorized"]', { timeout: 10_000 });
      assert.equal((await boPhone.textContent('#toast-text')).trim(), 'Wrong handle or password.');
      await signIn(boPhone, { handle: 'BO', touch: true });
      await waitOrAlert(boPhone, '#calls-home', 'Bo signs in on the phone');
      assert.match(await boPhone.textContent('#calls-me'), /Bo Ek \(@bo\)/, 'the account keeps its name');

      // Ada calls: every tab and the phone ring.
      await callByHandle(ada, 'bo');
      await waitPhase(ada, 'ringing', 'Ada rings Bo');
      for (const [page, where] of [[boTab1, 'tab 1'], [boTab2, 'tab 2'], [boPhone, 'phone']]) {
        await waitPhase(page, 'incoming', `Bo's ${where} rings`);
        assert.equal(await page.getAttribute('#call-screen', 'data-ring'), 'incoming', `${where} plays the ring`);
        assert.equal((await page.textContent('#call-name')).trim(), 'Ada Lovelace');
      }
      await boPhone.tap('#call-accept');
      for (const [page, where] of [[boTab1, 'tab 1'], [boTab2, 'tab 2']]) {
        const text = await waitEnded(page, 'answered_elsewhere', `${where} told it was answered elsewhere`);
        assert.equal(text, 'Answered on another device.');
        assert.equal(await page.getAttribute('#call-screen', 'data-ring'), '', `${where} stopped ringing`);
        assert.equal(await page.isVisible('#call-again'), false);
      }
      await snap(boTab1, 'chromium', 'desktop-call-answered-elsewhere');
      await waitPhase(boPhone, 'connected', "Bo's phone in the call");
      await waitPhase(ada, 'connected', 'Ada in the call');
      await Promise.all([waitHeard(ada, 'Ada hears the phone'), waitHeard(boPhone, 'the phone hears Ada')]);
      assertHostToHost(await selectedPair(boPhone, 'Bo (phone)'), 'Bo (phone)');

      // The phone hangs up this time.
      await boPhone.tap('#call-hangup');
      assert.match(await waitEnded(ada, 'hung_up', 'Ada told'), /^Bo Ek ended the call/);
      assert.match(await waitEnded(boPhone, 'hung_up', 'the phone hung up'), /^Call with Ada Lovelace ended/);
      // Every device of Bo's has the call in its list (answered, so not missed): the tabs
      // that did not take it are told its record when it ends (call_recorded).
      for (const [page, where] of [[boPhone, 'phone'], [boTab1, 'tab 1'], [boTab2, 'tab 2']]) {
        const list = await waitFor(async () => {
          const l = await recentCalls(page);
          return l.length ? l : null;
        }, { timeoutMs: 5_000, what: `the call in Bo's ${where} list` });
        assert.equal(list[0].missed, false, `${where}: ${JSON.stringify(list)}`);
      }
    });
  });

test('declined, busy, cancelled (missed), no answer (missed), not available; errors in words',
  { timeout: 180_000 }, async () => {
    await withServer({ extraArgs: ['--call-ring-secs', '8'] }, async ({ server, browsers }) => {
      await openBrowsers(browsers,
        { engine: 'chromium' }, { engine: 'chromium', device: 'Pixel 7' }, { engine: 'chromium' });
      const [ada, bo, cy] = browsers.map((b) => b.page);
      await openCalls(ada, server.url, false);
      await openCalls(bo, server.url, true);
      await openCalls(cy, server.url, false);
      // Refused before anything is sent: a bad handle, a short password.
      await ada.fill('#signup-handle', 'a..da');
      await ada.fill('#signup-name', 'Ada Lovelace');
      await ada.fill('#signup-password', PASSWORD);
      await ada.click('#signup-btn');
      await ada.waitForSelector('#toast[data-code="invalid_input"]', { timeout: 5_000 });
      assert.match(await ada.textContent('#toast-text'), /dot/);
      assert.equal(await ada.evaluate(() => document.activeElement.id), 'signup-handle');
      await ada.fill('#signup-handle', 'ada');
      await ada.fill('#signup-password', 'short');
      await ada.click('#signup-btn');
      await waitFor(() => ada.textContent('#toast-text').then((t) => /at least 8 characters/.test(t)),
        { timeoutMs: 5_000, what: 'the short password refused' });
      await signUp(ada, { handle: 'ada', name: 'Ada Lovelace' });
      await signUp(bo, { handle: 'bo', name: 'Bo Ek', touch: true });
      await signUp(cy, { handle: 'cy', name: 'Cy Twombly' });

      // Nobody has that handle.
      await ada.fill('#find-handle', 'nobody');
      await ada.click('#find-btn');
      await ada.waitForSelector('#toast[data-code="user_not_found"]', { timeout: 10_000 });
      assert.match(await ada.textContent('#toast-text'), /Nobody has the handle @nobody/);

      // 1. Ada calls; while Bo's phone rings, Cy calls him too: busy. Bo declines Ada.
      await callByHandle(ada, 'bo');
      await waitPhase(bo, 'incoming', 'Bo rung by Ada');
      await callByHandle(cy, 'bo');
      assert.equal(await waitEnded(cy, 'busy', 'Cy finds Bo busy'), 'Bo Ek is busy on another call. Try again later.');
      await bo.tap('#call-decline');
      assert.equal(await waitEnded(ada, 'declined', 'Ada declined'), 'Bo Ek declined the call.');
      assert.equal(await waitEnded(bo, 'declined', 'Bo declined'), 'You declined the call.');
      assert.equal(await bo.getAttribute('#call-screen', 'data-ring'), '', 'the ring stopped');
      assert.equal(await ada.evaluate(() => window.chorusCalls.pc), null, 'Ada holds no peer connection');
      await snap(ada, 'chromium', 'desktop-call-declined');

      // 2. "Call again", then Ada cancels while it rings: a missed call for Bo.
      await ada.click('#call-again');
      await waitPhase(ada, 'ringing', 'Ada rings Bo again');
      await waitPhase(bo, 'incoming', 'Bo rung again');
      await ada.click('#call-cancel');
      assert.equal(await waitEnded(ada, 'cancelled', 'Ada cancelled'), 'Call cancelled.');
      assert.equal(await waitEnded(bo, 'cancelled', 'Bo missed it'), 'Missed call from Ada Lovelace.');
      assert.equal(await bo.getAttribute('#call-screen', 'data-ring'), '');
      const missed = await waitFor(async () => {
        const l = await recentCalls(bo);
        return l.find((c) => c.end === 'cancelled') ? l : null;
      }, { timeoutMs: 5_000, what: "the missed call in Bo's list" });
      const cancelled = missed.find((c) => c.end === 'cancelled');
      assert.equal(cancelled.missed, true);
      assert.equal(cancelled.missedTag, true, 'marked missed');
      assert.equal(cancelled.name, 'Ada Lovelace');
      assert.match(cancelled.text, /^↙ Incoming · today \d\d?:\d\d/);
      await snap(bo, 'chromium', 'phone-calls-missed');

      // 3. Nobody answers (the server rings 8 s here): missed on Bo's side too.
      await ada.click('#call-again');
      await waitPhase(bo, 'incoming', 'Bo rung a third time');
      assert.equal(await waitEnded(ada, 'no_answer', 'Ada: no answer', 20_000), 'No answer from Bo Ek.');
      assert.equal(await waitEnded(bo, 'no_answer', 'Bo: missed', 5_000), 'Missed call from Ada Lovelace.');
      assert.equal(await bo.getAttribute('#call-screen', 'data-ring'), '', 'the ring stopped after no answer');

      // 4. Cy signs out (no device of Cy's is connected): Cy is not available.
      await cy.click('#call-done');
      await cy.click('#signout-btn');
      await cy.waitForSelector('#calls-auth');
      assert.equal(await cy.evaluate(() => localStorage.getItem('chorus.user_token')), '', 'the token is forgotten');
      await ada.click('#call-done');
      await callByHandle(ada, 'cy', { name: 'Cy Twombly' });
      assert.equal(await waitEnded(ada, 'unavailable', 'Cy not available'),
        'Cy Twombly is not available right now: none of their devices is online.');

      // The lists: Ada's four calls, Bo's missed ones marked.
      const adaList = await waitFor(async () => {
        const l = await recentCalls(ada);
        return l.length === 4 ? l : null;
      }, { timeoutMs: 5_000, what: "Ada's four calls" });
      assert.deepEqual(adaList.map((c) => `${c.handle}:${c.end}:${c.outgoing}:${c.missed}`),
        ['cy:unavailable:true:false', 'bo:no_answer:true:false', 'bo:cancelled:true:false', 'bo:declined:true:false']);
      const boList = await waitFor(async () => {
        const l = await recentCalls(bo);
        return l.length === 4 ? l : null;
      }, { timeoutMs: 5_000, what: "Bo's four calls" });
      assert.deepEqual(boList.map((c) => `${c.handle}:${c.end}:${c.missed}:${c.missedTag}`),
        ['ada:no_answer:true:true', 'ada:cancelled:true:true', 'ada:declined:false:false', 'cy:busy:true:true']);
      await assertNoOverflow(bo, 'on the phone with recent calls');
    });
  });

test('Firefox calls Chromium: direct audio both ways, then Chromium hangs up', {
  timeout: 180_000,
  skip: ENGINES.includes('firefox') ? false : 'CHORUS_ENGINES leaves Firefox out',
}, async () => {
  await withServer({}, async ({ server, browsers }) => {
    await openBrowsers(browsers, { engine: 'firefox' }, { engine: 'chromium' });
    const [fx, cr] = browsers.map((b) => b.page);
    await adaAndBo(fx, cr, server.url);
    await makeContacts(server, fx, cr);
    await callByHandle(fx, 'bo');
    await waitPhase(cr, 'incoming', 'Chromium rung by Firefox');
    await cr.click('#call-accept');
    await waitPhase(fx, 'connected', 'Firefox in the call', 20_000);
    await waitPhase(cr, 'connected', 'Chromium in the call', 20_000);
    assertHostToHost(await selectedPair(cr, 'Chromium'), 'Chromium');
    await directBetween(cr, fx, 'Chromium', 'Firefox');
    await Promise.all([waitHeard(cr, 'Chromium hears Firefox'), waitHeard(fx, 'Firefox hears Chromium')]);
    await snap(fx, 'firefox', 'desktop-call-connected');
    await cr.click('#call-hangup');
    assert.match(await waitEnded(fx, 'hung_up', 'Firefox told'), /^Bo Ek ended the call/);
    await waitEnded(cr, 'hung_up', 'Chromium hung up');
  });
});

test('after the server restarts, a signed-in page is reachable again by itself', { timeout: 120_000 }, async () => {
  await withServer({}, async ({ server, browsers }) => {
    await openBrowsers(browsers, { engine: 'chromium' }, { engine: 'chromium' });
    const [ada, bo] = browsers.map((b) => b.page);
    await adaAndBo(ada, bo, server.url);
    await server.kill('SIGKILL');
    await bo.waitForFunction(() => /reconnecting/i.test(document.getElementById('net-status').textContent),
      null, { timeout: 10_000 });
    await server.start();
    // Both come back as their accounts (the same name: a reconnect must not rename it).
    for (const page of [ada, bo]) {
      await page.waitForFunction(() => window.chorusCalls.state.net === 'online', null, { timeout: 20_000 });
      assert.equal((await page.textContent('#net-status')).trim(), '');
    }
    assert.match(await bo.textContent('#calls-me'), /Bo Ek \(@bo\)/);
    await callByHandle(ada, 'bo', { name: 'Bo Ek' });
    await waitPhase(bo, 'incoming', 'Bo rung after the restart');
    assert.equal((await bo.textContent('#call-name')).trim(), 'Ada Lovelace');
    await bo.click('#call-decline');
    await waitEnded(ada, 'declined', 'Ada told');
  });
});

test('a one-time sign-in link from the app backend signs a phone in, once; the link leaves the address', {
  timeout: 90_000,
}, async () => {
  await withServer({}, async ({ server, browsers }) => {
    const apiKey = JSON.parse(await readFile(path.join(server.dataDir, 'api-key.json'), 'utf8'));
    const made = await signedRequest(server.url, apiKey, 'POST', '/api/v1/users',
      { name: 'Cy Twain', user: 'shop-cy', handle: 'cy', link: true });
    assert.equal(made.status, 200, JSON.stringify(made.body));
    const link = `${server.url}${made.body.sign_in_link.path}`;
    await openBrowsers(browsers, { engine: 'chromium', device: 'Pixel 7' }, { engine: 'chromium' });
    const [phone, other] = browsers.map((b) => b.page);

    await phone.goto(link);
    await waitOrAlert(phone, '#calls-home', 'the link signs the phone in');
    assert.match(await phone.textContent('#calls-me'), /Cy Twain \(@cy\)/);
    assert.equal(new URL(await phone.href()).hash, '#calls', 'the code is gone from the address');
    // Signed in for good on this phone: a reload keeps the account, without the link.
    await phone.reload();
    await waitOrAlert(phone, '#calls-home', 'still signed in after a reload');
    assert.match(await phone.textContent('#calls-me'), /@cy\b/);

    // The same link in another browser: refused in words, nobody signed in.
    await other.goto(link);
    await other.waitForFunction(() => !document.getElementById('toast').hidden, null, { timeout: 15_000 });
    assert.match(await other.textContent('#toast-text'), /sign-in link was used already/i);
    assert.equal(await other.evaluate(() => window.chorusCalls.state.account), null);
  });
});

// ---------------------------------------------------------------- through the SFU

/**
 * The relayed call's room peer connection (`chorusCalls.client.room.pc`), as getStats
 * tells it: the receive slot that carries the other side (most packets) and the selected
 * pair with both ends' addresses.
 */
function relayStats(page) {
  return page.evaluate(async () => {
    const room = window.chorusCalls.client.room;
    const pc = room && room.pc;
    if (!pc) return null;
    const all = new Map();
    (await pc.getStats()).forEach((s) => all.set(s.id, s));
    let inbound = null;
    let pair = null;
    for (const s of all.values()) {
      if (s.type === 'inbound-rtp' && (s.kind || s.mediaType) === 'audio'
        && (!inbound || (s.packetsReceived || 0) > (inbound.packetsReceived || 0))) inbound = s;
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = all.get(s.selectedCandidatePairId);
    }
    const cand = (id) => {
      const c = id && all.get(id);
      return c ? { type: c.candidateType, address: c.address || c.ip, port: c.port, protocol: c.protocol } : null;
    };
    const codec = inbound && inbound.codecId ? all.get(inbound.codecId) : null;
    return {
      connectionState: pc.connectionState,
      packetsReceived: inbound ? inbound.packetsReceived || 0 : 0,
      totalAudioEnergy: inbound ? inbound.totalAudioEnergy || 0 : 0,
      audioLevel: inbound ? inbound.audioLevel || 0 : 0,
      mimeType: codec ? codec.mimeType : null,
      pair: pair ? { state: pair.state, local: cand(pair.localCandidateId), remote: cand(pair.remoteCandidateId) } : null,
    };
  });
}

/** Wait (bounded) until the relayed call's page decodes real sound from the other side. */
async function waitRelayHeard(page, what, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  let last = null;
  while (Date.now() < deadline) {
    const first = await relayStats(page);
    await sleep(1000);
    const now = await relayStats(page);
    if (first && now) {
      last = {
        gained: now.packetsReceived - first.packetsReceived,
        energy: now.totalAudioEnergy - first.totalAudioEnergy,
        maxLevel: Math.max(first.audioLevel, now.audioLevel),
        mimeType: now.mimeType,
        pair: now.pair,
      };
      if (heard(last)) return last;
    }
  }
  return assert.fail(`${what}: no audible Opus through the SFU within ${timeoutMs / 1000} s; last: ${JSON.stringify(last)}`);
}

/** Both pages' room connections: each talks to the SFU (one address), never to the other page. */
async function assertThroughSfu(a, b, what) {
  const pairs = [];
  for (const page of [a, b]) {
    const s = await waitFor(async () => {
      const st = await relayStats(page);
      return st && st.pair && st.pair.state === 'succeeded' && st.pair.local && st.pair.remote ? st : null;
    }, { timeoutMs: 10_000, what: `${what}: a selected ICE pair to the SFU` });
    pairs.push(s.pair);
  }
  const [x, y] = pairs;
  const ends = `${JSON.stringify(x)} / ${JSON.stringify(y)}`;
  const addr = (c) => `${c.address}:${c.port}`;
  assert.equal(addr(x.remote), addr(y.remote), `${what}: both sides talk to one address, the SFU's: ${ends}`);
  assert.notEqual(addr(x.remote), addr(y.local), `${what}: not to the other page's own address: ${ends}`);
  assert.notEqual(addr(y.remote), addr(x.local), `${what}: not to the other page's own address: ${ends}`);
  return x.remote;
}

test('the direct path is blocked on one side: the call goes through the SFU, both hear, hang up ends both, recorded relayed',
  { timeout: 180_000 }, async () => {
    await withServer({}, async ({ server, browsers }) => {
      await openBrowsers(browsers, { engine: 'chromium' }, { engine: 'chromium' });
      const [ada, bo] = browsers.map((b) => b.page);
      // Ada's network lets no direct path through, as a strict firewall would: her call's
      // own peer connection (the one sdk/calls.js makes, told apart by its caller in the
      // stack) may use TURN only, and there is no TURN server, so it gathers no candidate
      // at all; Bo's candidates reach it but it has nothing to check them from, and Bo
      // gets nothing to check. The room SDK's peer connection (sdk/media.js) is left as
      // it is: the SFU path stays open.
      await ada.addInitScript(() => {
        const Native = window.RTCPeerConnection;
        window.__directStates = [];
        window.__directPcs = 0;
        window.RTCPeerConnection = class extends Native {
          constructor(config = {}) {
            const caller = (new Error().stack || '').split('\n')[2] || '';
            const direct = caller.includes('/sdk/calls.js');
            super(direct ? { ...config, iceTransportPolicy: 'relay' } : config);
            if (direct) {
              window.__directPcs += 1;
              this.addEventListener('iceconnectionstatechange', () => window.__directStates.push(this.iceConnectionState));
            }
          }
        };
      });
      await adaAndBo(ada, bo, server.url);
      await makeContacts(server, ada, bo); // contacts: the call tries the direct path first
      await callByHandle(ada, 'bo');
      await waitPhase(bo, 'incoming', 'Bo rung');
      await bo.click('#call-accept');

      // Within the fallback time (5 s) plus the room's join, both are in the call again.
      await waitFor(() => ada.evaluate(() => window.chorusCalls.state.call.relaying),
        { timeoutMs: 10_000, what: 'Ada asks for the SFU' });
      await waitPhase(ada, 'connected', 'Ada in the call through the SFU', 30_000);
      await waitPhase(bo, 'connected', 'Bo in the call through the SFU', 30_000);
      assert.equal(await ada.evaluate(() => window.__directPcs), 1, 'Ada made one direct peer connection');
      const states = await ada.evaluate(() => window.__directStates);
      assert.ok(!states.includes('connected') && !states.includes('completed'),
        `Ada's direct path never connected: ${JSON.stringify(states)}`);
      for (const page of [ada, bo]) {
        const st = await page.evaluate(() => ({
          path: window.chorusCalls.state.call.path,
          direct: window.chorusCalls.client._pc,
          room: window.chorusCalls.client.room && window.chorusCalls.client.room.state.phase,
        }));
        assert.deepEqual(st, { path: 'relayed', direct: null, room: 'live' }, 'the call is in its room, no direct pc');
      }
      const sfu = await assertThroughSfu(ada, bo, 'Ada ↔ SFU ↔ Bo');
      assert.equal(sfu.protocol, 'udp', `the SFU over UDP: ${JSON.stringify(sfu)}`);
      assert.notEqual(sfu.port, server.port, 'the SFU port is not the HTTP one');
      await Promise.all([waitRelayHeard(ada, 'Ada hears Bo'), waitRelayHeard(bo, 'Bo hears Ada')]);
      const quality = await waitFor(() => ada.textContent('#call-quality').then((t) => t.trim()),
        { timeoutMs: 5_000, what: 'a connection quality line' });
      assert.match(quality, /· through the server$/);
      await waitFor(() => bo.getAttribute('#call-peer', 'data-speaking').then((v) => v === 'true'),
        { timeoutMs: 8_000, intervalMs: 50, what: 'Bo sees Ada speaking' });
      // Mute reaches the room client (and so the SFU).
      await bo.click('#call-mute');
      assert.equal(await bo.evaluate(() => window.chorusCalls.client.room.state.selfMuted), true, 'muted in the room');
      await bo.click('#call-mute');
      assert.equal(await bo.evaluate(() => window.chorusCalls.client.room.state.selfMuted), false, 'unmuted in the room');
      await snap(ada, 'chromium', 'desktop-call-relayed');

      await ada.click('#call-hangup');
      await waitEnded(ada, 'hung_up', 'Ada hung up');
      assert.match(await waitEnded(bo, 'hung_up', 'Bo told'), /^Ada Lovelace ended the call/);
      for (const page of [ada, bo]) {
        assert.equal(await page.evaluate(() => window.chorusCalls.client.room), null, 'the room client is closed');
        assert.equal(await page.evaluate(() => window.chorusCalls.pc), null, 'no peer connection left');
      }
      const record = await waitFor(() => ada.evaluate(() => window.chorusCalls.client.calls[0] || null),
        { timeoutMs: 5_000, what: "the call in Ada's list" });
      assert.equal(record.path, 'relayed', `recorded relayed: ${JSON.stringify(record)}`);
      assert.equal(record.end, 'hung_up');
    });
  });


/** Ada calls Bo (by handle, or with the button `from`), Bo answers: both in the call. */
async function answeredCall(ada, bo, { from } = {}) {
  if (from) {
    await ada.click(from);
  } else {
    await callByHandle(ada, 'bo');
  }
  await waitPhase(bo, 'incoming', 'Bo rung');
  await bo.click('#call-accept');
  await waitPhase(bo, 'connected', 'Bo in the call', 30_000);
  await waitPhase(ada, 'connected', 'Ada in the call', 30_000);
  return ada.evaluate(() => window.chorusCalls.state.call.id);
}

/** `page` hangs up; both are told. */
async function hangUpBoth(page, other) {
  await page.click('#call-hangup');
  await waitEnded(page, 'hung_up', 'hung up');
  await waitEnded(other, 'hung_up', 'the other side told');
}

/** The record of call `id` in the page's recent calls (call_recorded, or contacts). */
function recordOf(page, id) {
  return waitFor(() => page.evaluate((c) => window.chorusCalls.client.calls.find((r) => r.id === c) || null, id),
    { timeoutMs: 5_000, what: `the record of call ${id}` });
}

/** What the page made and was sent for its calls: peer connections, the accepts' relay flags, signals. */
function callTraffic(page) {
  return page.evaluate(() => {
    const room = window.chorusCalls.client.room;
    return {
      direct: window.__directPcs,
      pcs: window.__pcs.length,
      onlyRoom: Boolean(room && room.pc) && window.__pcs.every((pc) => pc === room.pc),
      path: window.chorusCalls.state.call.path,
      accepted: window.__frames.filter((f) => f.type === 'call_accepted').map((f) => Boolean(f.relay)),
      signals: window.__frames.filter((f) => f.type === 'call_signal').length,
    };
  });
}

/** Both pages' direct call: host to host between them, each hears the other. */
async function assertDirectCall(ada, bo) {
  await directBetween(ada, bo, 'Ada', 'Bo');
  await Promise.all([waitHeard(ada, 'Ada hears Bo'), waitHeard(bo, 'Bo hears Ada')]);
}

test('strangers: the first call goes through the SFU from the start, no direct peer connection; answered, they are contacts and the next call goes direct',
  { timeout: 180_000 }, async () => {
    await withServer({}, async ({ server, browsers }) => {
      await openBrowsers(browsers, { engine: 'chromium' }, { engine: 'chromium' });
      const [ada, bo] = browsers.map((b) => b.page);
      for (const page of [ada, bo]) {
        await countPeerConnections(page);
        await recordSocket(page);
      }
      await adaAndBo(ada, bo, server.url);
      assert.equal(await ada.evaluate(() => window.chorusCalls.client.people.size), 0, 'Ada knows nobody yet');

      // They share no group chat and never talked: neither sees the other's address.
      const first = await answeredCall(ada, bo);
      for (const [page, who] of [[ada, 'Ada'], [bo, 'Bo']]) {
        assert.deepEqual(await callTraffic(page),
          { direct: 0, pcs: 1, onlyRoom: true, path: 'relayed', accepted: [true], signals: 0 },
          `${who}: told the call is relayed, no direct peer connection, no candidate either way`);
      }
      await assertThroughSfu(ada, bo, 'Ada ↔ SFU ↔ Bo');
      await Promise.all([waitRelayHeard(ada, 'Ada hears Bo'), waitRelayHeard(bo, 'Bo hears Ada')]);
      assert.match(await waitFor(() => bo.textContent('#call-quality').then((t) => t.trim()),
        { timeoutMs: 5_000, what: 'a connection quality line' }), /· through the server$/);
      await hangUpBoth(ada, bo);
      const firstRecord = await recordOf(ada, first);
      assert.equal(firstRecord.path, 'relayed', `recorded relayed: ${JSON.stringify(firstRecord)}`);
      assert.equal((await recordOf(bo, first)).path, 'relayed');

      // The answered call made them contacts: Bo is in Ada's people, and the next call goes direct.
      await waitFor(() => ada.isVisible('#contact-list li[data-handle="bo"] .call-btn'),
        { timeoutMs: 5_000, what: "Bo among Ada's people" });
      const second = await answeredCall(ada, bo, { from: '#contact-list li[data-handle="bo"] .call-btn' });
      for (const [page, who] of [[ada, 'Ada'], [bo, 'Bo']]) {
        const t = await callTraffic(page);
        assert.deepEqual({ direct: t.direct, path: t.path, accepted: t.accepted },
          { direct: 1, path: 'direct', accepted: [true, false] },
          `${who}: one direct peer connection, for the second call: ${JSON.stringify(t)}`);
      }
      await assertDirectCall(ada, bo);
      await hangUpBoth(bo, ada);
      assert.equal((await recordOf(ada, second)).path, 'direct');
    });
  });

test('"always route my calls through the server", kept by the server: no direct peer connection, no address seen, also between contacts',
  { timeout: 180_000 }, async () => {
    await withServer({}, async ({ server, browsers }) => {
      await openBrowsers(browsers, { engine: 'chromium' }, { engine: 'chromium' });
      const [ada, bo] = browsers.map((b) => b.page);
      for (const page of [ada, bo]) {
        await countPeerConnections(page);
        await recordSocket(page);
      }
      await adaAndBo(ada, bo, server.url);
      await makeContacts(server, ada, bo);
      const setting = (page) => page.evaluate(() => ({
        checked: document.getElementById('relay-always').checked,
        disabled: document.getElementById('relay-always').disabled,
        always: window.chorusCalls.state.account.always_relay,
      }));
      await bo.waitForSelector('#relay-always');
      assert.deepEqual(await setting(bo), { checked: false, disabled: false, always: false }, 'off by default');

      // Bo ticks it: his account's setting, which the server keeps. What this browser once
      // kept for itself is not read any more (and is dropped at the next load).
      await bo.evaluate(() => localStorage.setItem('chorus.calls.relay', 'always'));
      await bo.click('#relay-always');
      await waitFor(() => setting(bo).then((s) => s.always === true && s.checked && !s.disabled),
        { timeoutMs: 5_000, what: 'the server to keep the setting' });
      assert.equal((await framesOf(bo, 'account')).at(-1).account.always_relay, true, 'the account says so');
      await bo.reload();
      await waitOrAlert(bo, '#calls-home', 'Bo signed in after the reload');
      const welcome = await waitFor(() => framesOf(bo, 'welcome'), { timeoutMs: 10_000, what: 'the welcome' });
      assert.equal(welcome[0].account.always_relay, true, 'the server says it at the next hello');
      await waitFor(() => setting(bo).then((s) => s.checked && !s.disabled),
        { timeoutMs: 5_000, what: 'the box ticked after the reload' });
      assert.deepEqual(await bo.evaluate(() => [localStorage.getItem('chorus.calls.relay'), window.chorusCalls.client.relay]),
        [null, 'auto'], 'the old browser-only setting is gone');

      // Ada (his contact) calls: through the SFU from the start, for both sides.
      const first = await answeredCall(ada, bo);
      for (const [page, who] of [[ada, 'Ada'], [bo, 'Bo']]) {
        assert.deepEqual(await callTraffic(page),
          { direct: 0, pcs: 1, onlyRoom: true, path: 'relayed', accepted: [true], signals: 0 },
          `${who}: the only peer connection is the room's; no candidate reached this page`);
      }
      await assertThroughSfu(ada, bo, 'Ada ↔ SFU ↔ Bo');
      await Promise.all([waitRelayHeard(ada, 'Ada hears Bo'), waitRelayHeard(bo, 'Bo hears Ada')]);
      await hangUpBoth(bo, ada);
      assert.equal(await bo.evaluate(() => window.__pcs.length), 1, 'still no direct peer connection');
      assert.equal((await recordOf(bo, first)).path, 'relayed');

      // Unticked: contacts go direct again.
      await bo.click('#relay-always');
      await waitFor(() => setting(bo).then((s) => s.always === false && !s.checked && !s.disabled),
        { timeoutMs: 5_000, what: 'the setting off again' });
      await answeredCall(ada, bo, { from: '#contact-list li[data-handle="bo"] .call-btn' });
      for (const page of [ada, bo]) {
        assert.equal(await page.evaluate(() => window.__directPcs), 1, 'a direct peer connection now');
      }
      await assertDirectCall(ada, bo);
      await hangUpBoth(ada, bo);
    });
  });

test('add someone: the call becomes a voice room, both in it on seats; a guest joins by the link and hears them; recorded as moved',
  { timeout: 180_000 }, async () => {
    await withServer({}, async ({ server, browsers }) => {
      await openBrowsers(browsers,
        { engine: 'chromium' }, { engine: 'chromium' }, { engine: 'chromium', device: 'Pixel 7' });
      const [ada, bo, guest] = browsers.map((b) => b.page);
      await adaAndBo(ada, bo, server.url);
      await makeContacts(server, ada, bo);
      const callId = await answeredCall(ada, bo);
      assert.equal(await ada.evaluate(() => window.chorusCalls.state.call.path), 'direct');
      for (const [page, who] of [[ada, 'Ada'], [bo, 'Bo']]) {
        assert.equal(await page.isVisible('#call-grow'), true, `${who} can add someone`);
        assert.equal((await page.textContent('#call-grow')).trim(), 'Add someone');
        assert.equal(await page.getAttribute('#call-grow', 'title'), 'Turn this call into a voice room others can join by link');
      }
      assert.deepEqual(await ada.evaluate(contrastFailures, '#call-screen'), [],
        'the in-call screen with "Add someone" meets WCAG AA');

      await ada.click('#call-grow');
      // Both pages become the room's page, joined as their accounts, on seats.
      const ids = [];
      for (const [page, name] of [[ada, 'Ada Lovelace'], [bo, 'Bo Ek']]) {
        await page.waitForURL(/\/r\/[A-Za-z0-9_-]+$/, { timeout: 20_000 });
        await waitInRoom(page, name);
        ids.push(new URL(await page.href()).pathname.split('/')[2]);
      }
      assert.equal(ids[0], ids[1], 'one room for both');
      const room = ids[0];
      for (const [page, who] of [[ada, 'Ada'], [bo, 'Bo']]) {
        const call = await page.evaluate(() => {
          const c = window.chorusCalls.state.call;
          return { phase: c.phase, reason: c.reason, room: c.room, pc: window.chorusCalls.pc };
        });
        assert.deepEqual(call, { phase: 'ended', reason: 'grown', room, pc: null }, `${who}: the call ended in the room`);
        assert.match(await page.textContent('#call-ended-text'), /moved to a voice room/);
        await waitFor(() => stageAndAudience(page).then((s) => s.stage.includes('Ada Lovelace') && s.stage.includes('Bo Ek')),
          { timeoutMs: 10_000, what: `${who} sees both on the stage` });
        await page.waitForSelector('#room-state[data-state="active"]', { timeout: 10_000 });
      }
      const roles = await ada.evaluate(() => Object.fromEntries(
        window.chorus.participants.map((p) => [p.name, [p.role, p.speaker]])));
      assert.deepEqual(roles, { 'Ada Lovelace': ['owner', true], 'Bo Ek': ['moderator', true] },
        'the caller owns it, the callee moderates (both on seats)');

      // A guest with the link (a phone): in the audience, hears both.
      await joinByLink(guest, `${server.url}/r/${room}`, 'Cy Guest', { touch: true });
      const seen = await waitFor(() => stageAndAudience(guest).then((s) => (s.stage.length === 2 ? s : null)),
        { timeoutMs: 10_000, what: 'the guest sees the two on the stage' });
      assert.deepEqual({ stage: [...seen.stage].sort(), audience: seen.audience },
        { stage: ['Ada Lovelace', 'Bo Ek'], audience: ['Cy Guest'] });
      await waitHearing(guest, 2, 'the guest hears Ada and Bo');
      await waitHearing(ada, 1, 'Ada hears Bo in the room');

      // Both have the call in their recent calls, moved to a room.
      for (const [page, who] of [[ada, 'Ada'], [bo, 'Bo']]) {
        const record = await recordOf(page, callId);
        assert.equal(record.end, 'grown', `${who}: ${JSON.stringify(record)}`);
        const listed = await waitFor(async () => (await recentCalls(page)).find((c) => c.end === 'grown'),
          { timeoutMs: 5_000, what: `the call in ${who}'s recent calls` });
        assert.match(listed.text, /moved to a voice room$/, `${who}: ${JSON.stringify(listed)}`);
        assert.equal(listed.missed, false);
      }
    });
  });

test('a direct path that worked is lost: after its ICE restart fails the call goes on through the SFU, not hung up',
  { timeout: 180_000 }, async () => {
    await withServer({}, async ({ server, browsers }) => {
      await openBrowsers(browsers, { engine: 'chromium' }, { engine: 'chromium' });
      const [ada, bo] = browsers.map((b) => b.page);
      await adaAndBo(ada, bo, server.url);
      await makeContacts(server, ada, bo);
      const callId = await answeredCall(ada, bo);
      assert.equal(await ada.evaluate(() => window.chorusCalls.state.call.path), 'direct');
      await waitHeard(ada, 'Ada hears Bo direct');
      await ada.evaluate(() => {
        window.__transitions = [];
        window.chorusCalls.client.addEventListener('statechange', (e) => window.__transitions.push(e.detail.transition));
      });
      // Bo's end of the direct path vanishes, as when a NAT forgets the mapping: his page's
      // peer connection closes underneath the SDK (close() fires no event). Ada's checks go
      // unanswered: her path is interrupted, then failed; her ICE restart reaches nobody.
      await bo.evaluate(() => window.chorusCalls.client.pc.close());
      await waitFor(() => ada.evaluate(() => window.__transitions.includes('media_interrupted')),
        { timeoutMs: 15_000, what: "Ada's direct path interrupted" });
      await waitFor(() => ada.evaluate(() => window.chorusCalls.state.call.path === 'relayed'),
        { timeoutMs: 40_000, what: 'the call moved to the SFU' });
      await waitPhase(ada, 'connected', 'Ada in the call again, through the SFU', 20_000);
      await waitPhase(bo, 'connected', 'Bo still in the call', 5_000);
      for (const page of [ada, bo]) {
        const st = await page.evaluate(() => ({
          path: window.chorusCalls.state.call.path,
          direct: window.chorusCalls.client._pc,
          room: window.chorusCalls.client.room && window.chorusCalls.client.room.state.phase,
        }));
        assert.deepEqual(st, { path: 'relayed', direct: null, room: 'live' }, 'in the call\'s room, no direct pc');
      }
      await assertThroughSfu(ada, bo, 'Ada ↔ SFU ↔ Bo');
      await Promise.all([waitRelayHeard(ada, 'Ada hears Bo'), waitRelayHeard(bo, 'Bo hears Ada')]);
      const transitions = await ada.evaluate(() => window.__transitions);
      assert.ok(!transitions.includes('hang_up') && transitions.includes('media_reconnected'),
        `interrupted, then back through the SFU: ${JSON.stringify(transitions)}`);
      await hangUpBoth(ada, bo);
      assert.equal((await recordOf(ada, callId)).path, 'relayed');
    });
  });

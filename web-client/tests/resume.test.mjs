// Sessions that survive (Chromium): a split deployment without Redis (`chorus-sfu` and
// `chorus-signaling --sfu` in front of it, tests/fleet-server.mjs `startSplit`).
// 1. Signaling is SIGKILLed and started again on the same port 1.5 s later: both pages
//    say "Reconnecting…", then are live by themselves over the SAME peer connection
//    (`resume` answered `resumed`, no new offer, no `join`), the audio never stalls
//    (inbound packets grow in every 250 ms sample through the outage), the room is as it
//    was (names, seats, the owner still owns) and nobody was told anyone left.
// 2. One page's network alone drops (a TCP relay in front of the server breaks its
//    connections: no WebSocket close frame, as when a phone changes networks): it resumes
//    over the same peer connection and the other page sees nobody leave.

import assert from 'node:assert/strict';
import { appendFile } from 'node:fs/promises';
import { test } from 'node:test';
import { openBrowser, sleep } from './browser.mjs';
import { startSplit } from './fleet-server.mjs';
import { startProxy } from './tcp-proxy.mjs';
import {
  waitFor, stageAndAudience, createRoomFromLanding, joinByLink, press, waitHearing, recordSocket, diagnostics,
} from './util.mjs';

const OUTAGE_MS = 1500;
const SAMPLE_MS = 250;

/** Run `body({ split, browsers })` against a fresh split deployment; always stop it all. */
async function withSplit(body) {
  const split = await startSplit();
  const browsers = [];
  const extra = [];
  try {
    await body({ split, browsers, extra });
  } catch (e) {
    e.message += `\n${diagnostics(null, browsers)}\n${split.output()}`;
    throw e;
  } finally {
    if (process.env.CHORUS_TEST_LOGS) {
      // Keep the servers' logs of a passing run too (for reading what the server did).
      await appendFile(process.env.CHORUS_TEST_LOGS, `${split.output()}\n`);
    }
    await Promise.all(browsers.map((b) => b.close()));
    for (const p of extra) {
      await p.close();
    }
    await split.stop();
  }
}

/** Ada creates an open room, Bo (at `boBase`, default the server) joins and takes a seat; both hear each other. */
async function roomOfTwo(split, browsers, boBase = split.url) {
  browsers.push(...await Promise.all([openBrowser({ engine: 'chromium' }), openBrowser({ engine: 'chromium' })]));
  const [{ page: ada }, { page: bo }] = browsers;
  await Promise.all([recordSocket(ada), recordSocket(bo)]);
  const room = await createRoomFromLanding(ada, split.url, { name: 'Ada', title: 'Survive me', seatMode: 'open', seats: 3 });
  await joinByLink(bo, `${boBase}${room.link}`, 'Bo');
  await waitFor(() => bo.textContent('#hand-btn').then((t) => t.trim() === 'Take a seat'),
    { timeoutMs: 5_000, what: '"Take a seat" for Bo' });
  await press(bo, '#hand-btn', false);
  for (const page of [ada, bo]) {
    await waitFor(async () => {
      const v = await stageAndAudience(page);
      return v.stage.includes('Ada') && v.stage.includes('Bo');
    }, { timeoutMs: 10_000, what: 'Ada and Bo on stage' });
  }
  await Promise.all([waitHearing(ada, 1, 'Ada hears Bo'), waitHearing(bo, 1, 'Bo hears Ada')]);
  // Wait for the session state of the latest change (Bo's seat needs none: joined's will do).
  for (const [name, page] of [['Ada', ada], ['Bo', bo]]) {
    await waitFor(() => page.evaluate(() => window.__frames.some((f) => f.type === 'session')),
      { timeoutMs: 5_000, what: `${name}'s first session frame` });
  }
  return { ada, bo, room };
}

/**
 * In the page: remember the peer connection, watch the session's transitions and the
 * badge, and sample inbound packets of that peer connection every 250 ms.
 */
function watch(page) {
  return page.evaluate((stepMs) => {
    const pc = window.chorus.pc;
    window.__pc0 = pc;
    window.__transitions = [];
    window.__badges = [];
    window.__samples = [];
    window.__framesBefore = window.__frames.length;
    window.__sentBefore = window.__sent.length;
    window.chorus.client.addEventListener('statechange', (e) => {
      window.__transitions.push({ t: Date.now(), transition: e.detail.transition, phase: e.detail.state.phase });
    });
    const badge = document.getElementById('room-state');
    new MutationObserver(() => {
      const last = window.__badges[window.__badges.length - 1];
      const text = badge.textContent.trim();
      if (!last || last.text !== text) window.__badges.push({ t: Date.now(), text, state: badge.dataset.state });
    }).observe(badge, { childList: true, characterData: true, subtree: true, attributes: true });
    window.__sampler = setInterval(async () => {
      const report = await pc.getStats();
      let packets = 0;
      report.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'audio') packets += s.packetsReceived || 0; });
      window.__samples.push({ t: Date.now(), packets });
    }, stepMs);
  }, SAMPLE_MS);
}

/** What a page saw since `watch`. */
function seen(page) {
  return page.evaluate(() => {
    clearInterval(window.__sampler);
    return {
      samePc: window.chorus.pc === window.__pc0 && window.__pc0 !== null,
      pcState: window.chorus.pc && window.chorus.pc.connectionState,
      resumes: window.chorus.resumes,
      lastResumeError: window.chorus.lastResumeError,
      transitions: window.__transitions,
      badges: window.__badges,
      samples: window.__samples,
      framesAfter: window.__frames.slice(window.__framesBefore).map((f) => f.type),
      sentAfter: window.__sent.slice(window.__sentBefore).map((f) => f.type),
      allFrames: window.__frames.map((f) => f.type),
    };
  });
}

const people = (page) => page.evaluate(() => window.chorus.participants
  .map((p) => ({ name: p.name, speaker: p.speaker, role: p.role, id: p.id })).sort((a, b) => a.name.localeCompare(b.name)));

/** Wait until the page is live again (badge "Live"), and fail at once if it got there other than by a resume. */
async function backLive(page, what) {
  await page.waitForFunction(() => window.chorus.phase === 'live'
    && document.getElementById('room-state').dataset.state === 'active', null, { timeout: 30_000, polling: 100 })
    .catch((e) => { throw new Error(`${what} not back live: ${e.message}`); });
  const s = await page.evaluate(() => ({ resumes: window.chorus.resumes, err: window.chorus.lastResumeError,
    transitions: window.__transitions.map((t) => t.transition) }));
  assert.ok(s.resumes > 0, `${what} came back without resuming: ${JSON.stringify(s)}`);
}

/** Packets of the kept peer connection grew in every sample from `from` to `to`; the longest gap between increases. */
function assertNoStall(name, samples, from, to) {
  const inside = samples.filter((s) => s.t >= from && s.t <= to);
  assert.ok(inside.length >= Math.floor((to - from) / SAMPLE_MS) - 2,
    `${name}: samples every ${SAMPLE_MS} ms through the outage (${inside.length} of ${to - from} ms)`);
  let prev = samples.filter((s) => s.t < from).pop() || inside.shift();
  let lastRise = prev.t;
  let longest = 0;
  const flat = [];
  for (const s of inside) {
    if (s.packets > prev.packets) {
      longest = Math.max(longest, s.t - lastRise);
      lastRise = s.t;
    } else {
      flat.push(s);
    }
    prev = s;
  }
  longest = Math.max(longest, to - lastRise > SAMPLE_MS * 2 ? to - lastRise : 0);
  assert.deepEqual(flat, [], `${name}: inbound packets grew in every ${SAMPLE_MS} ms sample during the outage`);
  return longest;
}

test('signaling dies and comes back: both pages resume over the same peer connection, the audio never stops [chromium]',
  { timeout: 120_000 }, async () => {
    await withSplit(async ({ split, browsers }) => {
      const { ada, bo } = await roomOfTwo(split, browsers);
      const before = await Promise.all([people(ada), people(bo)]);
      const users = await Promise.all([ada, bo].map((p) => p.evaluate(() => window.chorus.user)));
      await Promise.all([watch(ada), watch(bo)]);
      await sleep(4 * SAMPLE_MS); // samples before the outage, to compare with

      const killedAt = Date.now();
      await split.killSignaling('SIGKILL');
      for (const [name, page] of [['Ada', ada], ['Bo', bo]]) {
        await page.waitForSelector('#room-state[data-state="reconnecting"]', { timeout: 10_000 });
        assert.equal((await page.textContent('#room-state')).trim(), 'Reconnecting…', `${name}: the badge says so`);
        assert.equal((await page.textContent('#net-status')).trim(), 'Reconnecting…', `${name}: the bar agrees`);
        assert.equal(await page.isVisible('#join-form'), false, `${name}: no Rejoin`);
      }
      await sleep(Math.max(0, OUTAGE_MS - (Date.now() - killedAt))); // the outage itself
      await split.startSignaling();
      const startedAt = split.startedAt;
      await Promise.all([backLive(ada, 'Ada'), backLive(bo, 'Bo')]);
      const resumedAt = await Promise.all([ada, bo].map((p) => p.evaluate(
        () => window.__transitions.find((t) => t.transition === 'resumed').t)));
      await sleep(4 * SAMPLE_MS); // samples after, to see the audio go on
      const [sa, sb] = await Promise.all([seen(ada), seen(bo)]);

      const figures = {};
      for (const [name, s, at] of [['Ada', sa, resumedAt[0]], ['Bo', sb, resumedAt[1]]]) {
        assert.equal(s.samePc, true, `${name}: the same RTCPeerConnection as before the outage`);
        assert.equal(s.pcState, 'connected', `${name}: still connected`);
        assert.equal(s.resumes, 1, `${name}: resumed once (last refusal: ${s.lastResumeError})`);
        assert.ok(s.framesAfter.includes('resumed'), `${name}: the server answered resume with resumed`);
        assert.ok(!s.framesAfter.includes('joined'), `${name}: no joined: ${s.framesAfter}`);
        assert.ok(s.sentAfter.includes('resume'), `${name}: sent resume`);
        assert.ok(!s.sentAfter.includes('join') && !s.sentAfter.includes('media_offer'), `${name}: no new offer: ${s.sentAfter}`);
        assert.ok(!s.allFrames.includes('participant_left'), `${name}: nobody left, for this page: ${s.allFrames}`);
        const texts = s.badges.map((b) => b.text);
        const r = texts.indexOf('Reconnecting…');
        assert.ok(r >= 0 && texts.indexOf('Live', r) > r, `${name}: Reconnecting…, then Live: ${JSON.stringify(texts)}`);
        const transitions = s.transitions.map((x) => x.transition);
        assert.ok(transitions.includes('socket_lost') && transitions.includes('resumed') && !transitions.includes('rejoined'),
          `${name}: socket_lost, then resumed: ${transitions}`);
        const longest = assertNoStall(name, s.samples, killedAt, at + 2 * SAMPLE_MS);
        figures[name] = { longestGapMs: longest, signalingStartToResumedMs: at - startedAt, killToResumedMs: at - killedAt };
      }
      console.log(`# resume figures: ${JSON.stringify(figures)}`);

      const after = await Promise.all([people(ada), people(bo)]);
      assert.deepEqual(after, before, 'the same participants (ids, names, seats, roles) on both pages');
      const again = await Promise.all([ada, bo].map((p) => p.evaluate(() => window.chorus.user)));
      assert.deepEqual(again, users, 'the same users');
      for (const page of [ada, bo]) {
        const v = await stageAndAudience(page);
        assert.deepEqual(v.stage.slice().sort(), ['Ada', 'Bo'], 'both still on stage');
        assert.equal((await page.textContent('#room-state')).trim(), 'Live');
        assert.equal((await page.textContent('#net-status')).trim(), '');
      }
      assert.equal(await ada.textContent('#stage-list .person[data-name="Ada"] .tag.role'), 'owner', 'Ada still owns');
      assert.equal(after[0].find((p) => p.name === 'Ada').role, 'owner');
      // Still heard both ways after it all.
      await Promise.all([waitHearing(ada, 1, 'Ada hears Bo after the resume'), waitHearing(bo, 1, 'Bo hears Ada after the resume')]);
      // And the room's news flow over the resumed session: Bo mutes, Ada sees it.
      await press(bo, '#mute-btn', false);
      await waitFor(() => ada.evaluate(() => window.chorus.participants.find((p) => p.name === 'Bo')?.muted === true),
        { timeoutMs: 5_000, what: 'Ada sees Bo muted after the resume' });
    });
  });

test('one page\'s network drops (server up): it resumes over the same peer connection, the other sees nobody leave [chromium]',
  { timeout: 120_000 }, async () => {
    await withSplit(async ({ split, browsers, extra }) => {
      const proxy = await startProxy(split.port);
      extra.push(proxy);
      const { ada, bo } = await roomOfTwo(split, browsers, proxy.url);
      const before = await Promise.all([people(ada), people(bo)]);
      await Promise.all([watch(ada), watch(bo)]);
      await sleep(2 * SAMPLE_MS);

      const droppedAt = Date.now();
      assert.ok(proxy.drop() > 0, 'Bo had connections through the relay');
      await bo.waitForSelector('#room-state[data-state="reconnecting"]', { timeout: 10_000 });
      await backLive(bo, 'Bo');
      const at = await bo.evaluate(() => window.__transitions.find((t) => t.transition === 'resumed').t);
      await sleep(2 * SAMPLE_MS);
      const [sa, sb] = await Promise.all([seen(ada), seen(bo)]);
      assert.equal(sb.samePc, true, 'Bo: the same RTCPeerConnection');
      assert.equal(sb.resumes, 1, `Bo resumed (last refusal: ${sb.lastResumeError})`);
      assert.ok(!sb.sentAfter.includes('join') && !sb.sentAfter.includes('media_offer'), `Bo: no new offer: ${sb.sentAfter}`);
      assert.equal(sa.resumes, 0, 'Ada never lost anything');
      assert.deepEqual(sa.transitions.filter((x) => x.phase !== 'live'), [], 'Ada stayed live');
      assert.ok(!sa.allFrames.includes('participant_left'), `Ada saw nobody leave: ${sa.allFrames}`);
      assert.ok(!sb.allFrames.includes('participant_left'), `Bo saw nobody leave: ${sb.allFrames}`);
      assertNoStall('Bo', sb.samples, droppedAt, at + SAMPLE_MS);
      assertNoStall('Ada', sa.samples, droppedAt, at + SAMPLE_MS);
      console.log(`# socket drop: Bo resumed ${at - droppedAt} ms after the drop`);
      assert.deepEqual(await Promise.all([people(ada), people(bo)]), before, 'the same participants, seats and roles');
      await waitHearing(ada, 1, 'Ada hears Bo after his resume');
      await waitHearing(bo, 1, 'Bo hears Ada after his resume');
    });
  });

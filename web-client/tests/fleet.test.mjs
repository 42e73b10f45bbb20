// The web client on a fleet (fleet-server.mjs: its own redis-server, two chorus-sfu
// --redis, two chorus-signaling --redis, all on loopback).
// 1. Two Chromium pages on DIFFERENT signaling nodes, both on mic seats in one open room:
//    each lists the other and hears the other (decoded audio energy rising).
// 2. The SFU node carrying the room is SIGKILLed (by its pid): both pages show that their
//    audio is reconnecting (the server's `reconnect_media`, the page's `media_offer`), the
//    room moves to the surviving node, and each page hears the other again within a bound.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openBrowser } from './browser.mjs';
import { startFleet } from './fleet-server.mjs';
import {
  waitFor, stageAndAudience, createRoomFromLanding, joinByLink, press, diagnostics, HEARD_ENERGY,
} from './util.mjs';

/** From SIGKILL of the room's SFU to audio heard again on a page (a correctness bound). */
const FAILOVER_BOUND_MS = 15_000;

/** Run `body({ fleet, pages })` on a fresh fleet with two Chromium pages; always clean up. */
async function withFleet(body) {
  const fleet = await startFleet();
  const browsers = [];
  try {
    browsers.push(...await Promise.all([openBrowser({ engine: 'chromium' }), openBrowser({ engine: 'chromium' })]));
    await body({ fleet, pages: browsers.map((b) => b.page) });
  } catch (e) {
    e.message += `\n${diagnostics(fleet, browsers)}`;
    throw e;
  } finally {
    await Promise.all(browsers.map((b) => b.close()));
    await fleet.stop();
  }
}

/**
 * Ada creates an open room on signaling A; Bo joins it through signaling B and takes a
 * seat. Resolves once both pages list both on stage.
 */
async function twoSpeakersOnTwoNodes(fleet, [ada, bo]) {
  const [sigA, sigB] = fleet.signaling;
  const room = await createRoomFromLanding(ada, sigA.url, {
    name: 'Ada', title: 'Across the fleet', seatMode: 'open', seats: 3, capacity: 10,
  });
  await joinByLink(bo, `${sigB.url}${room.link}`, 'Bo');
  const origins = await Promise.all([ada, bo].map((p) => p.evaluate(() => window.location.origin)));
  assert.deepEqual(origins, [sigA.url, sigB.url], 'each page talks to its own signaling node');
  await waitFor(() => bo.textContent('#hand-btn').then((t) => t.trim() === 'Take a seat'),
    { timeoutMs: 10_000, what: '"Take a seat" for Bo' });
  await press(bo, '#hand-btn');
  for (const [name, page] of [['Ada', ada], ['Bo', bo]]) {
    const view = await waitFor(async () => {
      const v = await stageAndAudience(page);
      return v.stage.includes('Ada') && v.stage.includes('Bo') ? v : null;
    }, { timeoutMs: 10_000, what: `Ada and Bo both on stage in ${name}'s page` });
    assert.deepEqual([...view.stage].sort(), ['Ada', 'Bo'], `${name}'s page lists the two of them`);
    assert.equal(await page.isVisible('#mute-btn'), true, `${name} is a speaker (offers mute)`);
  }
  return room;
}

/**
 * One look at the page's inbound audio: the peer connection (tagged so a new one is told
 * apart) and per stream its packets, decoded energy and level.
 */
function inboundNow(page) {
  return page.evaluate(async () => {
    const pc = window.chorus && window.chorus.pc;
    if (!pc) {
      return null;
    }
    if (!pc.__tag) {
      window.__pcCount = (window.__pcCount || 0) + 1;
      pc.__tag = window.__pcCount;
    }
    const report = await pc.getStats();
    const all = new Map();
    report.forEach((s) => all.set(s.id, s));
    const streams = [];
    for (const s of all.values()) {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        const codec = s.codecId ? all.get(s.codecId) : null;
        streams.push({
          id: s.id,
          packets: s.packetsReceived || 0,
          energy: s.totalAudioEnergy || 0,
          level: s.audioLevel || 0,
          mimeType: codec ? codec.mimeType : null,
        });
      }
    }
    return { pc: pc.__tag, state: pc.connectionState, streams };
  });
}

/**
 * Poll (every 200 ms, up to `timeoutMs`) until one inbound Opus stream of the page's
 * current peer connection gains packets AND at least HEARD_ENERGY of decoded audio
 * energy between two looks.
 * Only looks taken after this call count, and none of the peer connection tagged `notPc`.
 * Resolves with the time it took (ms).
 */
async function waitEnergyRising(page, what, timeoutMs, { notPc = null } = {}) {
  const start = Date.now();
  const deadline = start + timeoutMs;
  let prev = null;
  let last = null;
  for (;;) {
    last = await inboundNow(page);
    if (last && prev && last.pc === prev.pc && last.pc !== notPc) {
      const before = new Map(prev.streams.map((s) => [s.id, s]));
      const rising = last.streams.find((s) => {
        const b = before.get(s.id);
        return b && s.mimeType === 'audio/opus' && s.packets > b.packets && s.energy - b.energy >= HEARD_ENERGY;
      });
      if (rising) {
        return Date.now() - start;
      }
    }
    prev = last;
    if (Date.now() > deadline) {
      assert.fail(`${what}: no inbound Opus stream gained packets and ${HEARD_ENERGY} of decoded energy within `
        + `${timeoutMs / 1000} s; last look: ${JSON.stringify(last)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The room as the server API shows it (any signaling node), with the SFU node it is on. */
async function roomView(fleet, id) {
  const res = await fleet.api('GET', `/api/v1/rooms/${id}`);
  assert.equal(res.status, 200, `GET room: ${JSON.stringify(res.body)}`);
  return res.body;
}

/**
 * Keep, in the page, every session transition (the SDK's `statechange`) and every state
 * the room badge shows (#room-state), so a short state cannot be missed by polling.
 */
function recordStates(page) {
  return page.evaluate(() => {
    window.__transitions = [];
    window.chorus.client.addEventListener('statechange', (e) => {
      const { state, transition } = e.detail;
      window.__transitions.push({ t: Date.now(), transition, phase: state.phase, reason: state.reason });
    });
    const badge = document.getElementById('room-state');
    window.__badges = [{ t: Date.now(), state: badge.dataset.state, text: badge.textContent.trim() }];
    new MutationObserver(() => {
      const last = window.__badges[window.__badges.length - 1];
      const now = { t: Date.now(), state: badge.dataset.state, text: badge.textContent.trim() };
      if (now.state !== last.state || now.text !== last.text) {
        window.__badges.push(now);
      }
    }).observe(badge, { attributes: true, childList: true, characterData: true, subtree: true });
  });
}

test('two pages on two signaling nodes, both on mic seats in one room, list and hear each other', { timeout: 90_000 }, async () => {
  await withFleet(async ({ fleet, pages }) => {
    const [ada, bo] = pages;
    const room = await twoSpeakersOnTwoNodes(fleet, pages);
    const [adaHears, boHears] = await Promise.all([
      waitEnergyRising(ada, 'Ada (signaling A) hears Bo (signaling B)', 15_000),
      waitEnergyRising(bo, 'Bo (signaling B) hears Ada (signaling A)', 15_000),
    ]);
    const view = await roomView(fleet, room.id);
    assert.ok(fleet.sfus.some((s) => s.id === view.node), `the room is on one of the fleet's SFU nodes: ${view.node}`);
    assert.equal(view.present, 2, 'both present, across the two signaling nodes');
    assert.deepEqual(view.members.filter((m) => m.seated).map((m) => m.name).sort(), ['Ada', 'Bo']);
    console.log(`room on ${view.node}; audio heard after seating: Ada ${adaHears} ms, Bo ${boHears} ms`);
  });
});

test('the SFU node carrying the room is SIGKILLed: both pages reconnect their audio and hear each other again', { timeout: 120_000 }, async () => {
  await withFleet(async ({ fleet, pages }) => {
    const [ada, bo] = pages;
    const room = await twoSpeakersOnTwoNodes(fleet, pages);
    await Promise.all([waitEnergyRising(ada, 'Ada hears Bo', 15_000), waitEnergyRising(bo, 'Bo hears Ada', 15_000)]);
    const before = await roomView(fleet, room.id);
    const victim = fleet.sfus.find((s) => s.id === before.node);
    assert.ok(victim, `the room is bound to one of our SFU nodes: ${JSON.stringify(before.node)}`);
    const survivor = fleet.sfus.find((s) => s !== victim);
    const usersBefore = await Promise.all(pages.map((p) => p.evaluate(() => window.chorus.user)));
    await Promise.all(pages.map(recordStates));
    await Promise.all(pages.map((p) => p.evaluate(() => { window.__oldPc = window.chorus.pc; })));
    // The peer connections to the doomed node: what they still receive does not count.
    const [adaOld, boOld] = (await Promise.all(pages.map(inboundNow))).map((x) => x.pc);

    const killedAt = Date.now();
    await victim.kill('SIGKILL');

    // Each page hears the other again: energy rising on a stream, measured from the kill.
    const [adaBack, boBack] = await Promise.all([
      waitEnergyRising(ada, `Ada hears Bo again after ${victim.id} was killed`, FAILOVER_BOUND_MS, { notPc: adaOld }),
      waitEnergyRising(bo, `Bo hears Ada again after ${victim.id} was killed`, FAILOVER_BOUND_MS, { notPc: boOld }),
    ]);
    const sinceKill = Date.now() - killedAt;
    console.log(`SIGKILL ${victim.id} (pid ${victim.pid}) → audio back: Ada ${adaBack} ms, Bo ${boBack} ms `
      + `(both within ${sinceKill} ms of the kill; bound ${FAILOVER_BOUND_MS} ms)`);

    for (const [name, page] of [['Ada', ada], ['Bo', bo]]) {
      const { transitions, badges, newPc, phase } = await page.evaluate(() => ({
        transitions: window.__transitions,
        badges: window.__badges,
        newPc: window.chorus.pc !== null && window.chorus.pc !== window.__oldPc,
        phase: window.chorus.phase,
      }));
      const seen = transitions.map((x) => x.transition);
      // The designed path: the socket stays, only the media moves (reconnect_media →
      // media_offer → media_answer → ICE connected).
      const moved = seen.indexOf('reconnect_media');
      assert.ok(moved >= 0, `${name}: the page was told to move its audio (reconnect_media); transitions ${JSON.stringify(transitions)}`);
      assert.ok(seen.indexOf('media_reconnected') > moved, `${name}: and was live again after it; transitions ${JSON.stringify(transitions)}`);
      assert.ok(!seen.includes('socket_closed'), `${name}: the socket stayed up; transitions ${JSON.stringify(transitions)}`);
      const shown = badges.find((b) => b.state === 'reconnecting');
      assert.ok(shown, `${name}: the page showed its reconnecting state; badges ${JSON.stringify(badges)}`);
      assert.equal(shown.text, 'Reconnecting audio…', `${name}: the badge says the audio is reconnecting`);
      assert.equal(badges[badges.length - 1].state, 'active', `${name}: the badge is back to Live; badges ${JSON.stringify(badges)}`);
      assert.equal(phase, 'live', `${name}: live again`);
      assert.equal(newPc, true, `${name}: on a new peer connection`);
      const r = badges.find((b) => b.state === 'reconnecting');
      const back = badges.findLast((b) => b.state === 'active');
      console.log(`${name}: "Reconnecting audio…" shown ${r.t - killedAt} ms after the kill, Live again at ${back.t - killedAt} ms`);
    }

    // Same people, same seats, on the surviving node.
    const after = await roomView(fleet, room.id);
    assert.equal(after.node, survivor.id, `the room moved to ${survivor.id}`);
    assert.equal(after.present, 2, 'both still present');
    assert.deepEqual(await Promise.all(pages.map((p) => p.evaluate(() => window.chorus.user))), usersBefore, 'same users');
    for (const [name, page] of [['Ada', ada], ['Bo', bo]]) {
      const v = await stageAndAudience(page);
      assert.deepEqual([...v.stage].sort(), ['Ada', 'Bo'], `${name}'s page still lists both on stage`);
    }
  });
});

// Three Chromium pages (one a phone) join one room by its link and hear each other:
// each page's peer connection receives Opus from the two others, with sound in it;
// everyone sees three names; when one leaves, the other two see it go.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, createRoom } from './server.mjs';
import { openBrowser, inboundAudio, sleep } from './browser.mjs';
import { waitFor, listedNames, diagnostics } from './util.mjs';

const PEOPLE = [
  { name: 'Ada', device: undefined },
  { name: 'Grace', device: undefined },
  { name: 'Linus', device: 'Pixel 7' },
];

test('three browsers join one room by its link and hear each other', { timeout: 60_000 }, async () => {
  const server = await startServer();
  const browsers = [];
  try {
    const room = await createRoom(server.url, 'Browser test');
    assert.match(room.link, /^\/r\/[A-Za-z0-9_-]+$/, 'RoomInfo.link is /r/<id>');

    browsers.push(...await Promise.all(PEOPLE.map((p) => openBrowser({ device: p.device }))));
    const phone = browsers[2];
    try {
      // Join one after another, each by the room's link, the way people arrive.
      for (const [i, { name, device }] of PEOPLE.entries()) {
        const { page } = browsers[i];
        await page.goto(`${server.url}${room.link}`);
        await page.fill('#join-name', name);
        if (device) {
          await page.tap('#join-btn');
        } else {
          await page.click('#join-btn');
        }
        await waitInRoom(page, name);
      }

      // Everyone lists the three of us.
      for (const [i, { page }] of browsers.entries()) {
        const names = await waitFor(async () => {
          const n = await listedNames(page);
          return n.length === 3 ? n : null;
        }, { timeoutMs: 10_000, what: `three names in page ${i}` });
        assert.deepEqual([...names].sort(), PEOPLE.map((p) => p.name).sort(), `page ${i} lists everyone`);
        assert.equal(await page.textContent('#participants .person:first-child .you'), 'you');
      }

      // Each page receives Opus from the two others, flowing and with sound in it.
      await Promise.all(browsers.map(({ page }, i) => hearsTwoOthers(page, i)));

      // Each received track plays in its own <audio> element.
      for (const [i, { page }] of browsers.entries()) {
        const playing = await page.$$eval('#audio-sink audio[data-track]',
          (els) => els.filter((a) => !a.paused && a.srcObject).map((a) => a.dataset.track));
        assert.ok(new Set(playing).size >= 2, `page ${i} plays two remote tracks: ${playing}`);
      }

      // The speaking indicator follows the server's levels (the fake mics beep).
      await waitFor(() => browsers[0].page.$$eval('#participants .person.speaking', (els) => els.length > 0),
        { timeoutMs: 8_000, what: 'someone shown speaking in page 0' });

      // The phone layout never scrolls sideways.
      const overflow = await phone.page.evaluate(() => ({
        scrollWidth: document.scrollingElement.scrollWidth,
        innerWidth: window.innerWidth,
      }));
      assert.ok(overflow.scrollWidth <= overflow.innerWidth,
        `no horizontal overflow on the phone: ${JSON.stringify(overflow)}`);

      // Grace mutes: her track stops sending sound, and the others see her muted.
      await browsers[1].page.click('#mute-btn');
      assert.equal(await browsers[1].page.getAttribute('#mute-btn', 'aria-pressed'), 'true');
      assert.equal(await browsers[1].page.evaluate(
        () => window.chorus.pc.getSenders().every((s) => !s.track || !s.track.enabled)), true,
      'muting disables the microphone track');
      for (const i of [0, 2]) {
        await waitFor(() => mutedNames(browsers[i].page).then((m) => m.includes('Grace')),
          { timeoutMs: 5_000, what: `Grace shown muted in page ${i}` });
      }
      await browsers[1].page.click('#mute-btn');
      for (const i of [0, 2]) {
        await waitFor(() => mutedNames(browsers[i].page).then((m) => !m.includes('Grace')),
          { timeoutMs: 5_000, what: `Grace shown unmuted in page ${i}` });
      }

      // Ada leaves; Grace and Linus see her go; Ada sees that she left.
      await browsers[0].page.click('#leave-btn');
      await browsers[0].page.waitForSelector('#join-btn', { state: 'visible', timeout: 5_000 });
      assert.equal((await browsers[0].page.textContent('#join-btn')).trim(), 'Rejoin');
      assert.equal(await browsers[0].page.evaluate(() => window.chorus.pc), null, 'peer connection closed');
      for (const i of [1, 2]) {
        const names = await waitFor(async () => {
          const n = await listedNames(browsers[i].page);
          return n.length === 2 ? n : null;
        }, { timeoutMs: 10_000, what: `Ada gone from page ${i}` });
        assert.ok(!names.includes('Ada'), `page ${i} no longer lists Ada: ${names}`);
      }

      // Ada rejoins on the same page: the others list three people again.
      await browsers[0].page.click('#join-btn');
      await waitInRoom(browsers[0].page, 'Ada (rejoining)');
      for (const [i, { page }] of browsers.entries()) {
        await waitFor(async () => (await listedNames(page)).length === 3,
          { timeoutMs: 10_000, what: `three names again in page ${i}` });
      }
    } catch (e) {
      e.message += `\n${diagnostics(server, browsers)}`;
      throw e;
    }
  } finally {
    await Promise.all(browsers.map((b) => b.close()));
    await server.stop();
  }
});

/** Wait until the page is in the room; fail at once with the user's alert if one shows. */
async function waitInRoom(page, name) {
  const outcome = await page.waitForFunction(() => {
    if (!document.getElementById('in-room').hidden) return 'in';
    const toast = document.getElementById('toast');
    return toast.hidden ? null : `alert: ${document.getElementById('toast-text').textContent.trim()}`;
  }, null, { timeout: 15_000, polling: 100 });
  const what = await outcome.jsonValue();
  assert.equal(what, 'in', `${name} could not join: ${what}`);
}

/** Names shown with the muted icon. */
function mutedNames(page) {
  return page.$$eval('#participants .person', (els) => els
    .filter((e) => e.querySelector('.mic-off'))
    .map((e) => e.querySelector('.name .label').textContent.trim()));
}

/**
 * At least two inbound audio streams, codec Opus, whose packetsReceived grows between two
 * samples ~1 s apart and whose audioLevel has been above 0 (the fake mic beeps, so poll).
 */
async function hearsTwoOthers(page, i) {
  const deadline = Date.now() + 15_000;
  const maxLevel = new Map();
  let prev = new Map((await inboundAudio(page)).map((s) => [s.id, s]));
  let last = [];
  while (Date.now() < deadline) {
    await sleep(1000);
    const now = await inboundAudio(page);
    last = now.map((s) => ({ ...s, grew: s.packetsReceived - (prev.get(s.id)?.packetsReceived ?? 0) }));
    for (const s of now) {
      maxLevel.set(s.id, Math.max(maxLevel.get(s.id) || 0, s.audioLevel));
    }
    const good = last.filter((s) => s.grew > 0 && maxLevel.get(s.id) > 0 && s.mimeType === 'audio/opus');
    if (good.length >= 2) {
      return good;
    }
    prev = new Map(now.map((s) => [s.id, s]));
  }
  assert.fail(`page ${i} did not receive audible Opus from two others within 15 s; `
    + `streams: ${JSON.stringify(last.map((s) => ({ ...s, maxLevel: maxLevel.get(s.id) })))}`);
}

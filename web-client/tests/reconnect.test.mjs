// Recovering by itself: the server dies and starts again (same port, same data folder);
// one page's socket drops while the server stays up; the server is restarted cleanly.
// Every page says "Reconnecting…" (never "Live" beside "Offline"), rejoins as the same
// user into the same seat and role with a fresh offer, and hears the others again — with
// no click, no name typed.

import assert from 'node:assert/strict';
import { openBrowser } from './browser.mjs';
import {
  waitFor, stageAndAudience, createRoomFromLanding, joinByLink, press, waitHearing, withServer, engineTest, snap,
  recordSocket,
} from './util.mjs';

/** Remember the page's peer connection: `live` then waits for a new one. */
const mark = (page) => page.evaluate(() => { window.__before = window.chorus.pc; });

async function live(page, what) {
  await page.waitForFunction(() => window.chorus.phase === 'live' && window.chorus.pc !== window.__before
    && document.getElementById('room-state').dataset.state === 'active'
    && window.chorus.pc && window.chorus.pc.connectionState === 'connected', null, { timeout: 30_000, polling: 200 })
    .catch((e) => { throw new Error(`${what} not back live: ${e.message}`); });
}

engineTest('after the server restarts, pages rejoin by themselves: same seat and role, audio back, no click', { timeout: 120_000 }, async (engine) => {
  await withServer({}, async ({ server, browsers }) => {
    browsers.push(...await Promise.all([openBrowser({ engine }), openBrowser({ engine, device: 'Pixel 7' })]));
    const [{ page: owner }, { page: phone }] = browsers;
    const room = await createRoomFromLanding(owner, server.url, {
      name: 'Ada', title: 'Restart me', seatMode: 'open', seats: 3,
    });
    await recordSocket(phone);
    await joinByLink(phone, room.url, 'Bo', { touch: true });
    await waitFor(() => phone.textContent('#hand-btn').then((t) => t.trim() === 'Take a seat'),
      { timeoutMs: 5_000, what: '"Take a seat" for Bo' });
    await press(phone, '#hand-btn', true);
    await waitFor(async () => (await stageAndAudience(owner)).stage.includes('Bo'),
      { timeoutMs: 5_000, what: 'Bo on stage' });
    await Promise.all([waitHearing(owner, 1, 'Ada hears Bo'), waitHearing(phone, 1, 'Bo hears Ada')]);
    const users = await Promise.all([owner, phone].map((p) => p.evaluate(() => window.chorus.user)));

    // The server dies (as in a crash or an OOM kill).
    await Promise.all([mark(owner), mark(phone)]);
    await server.kill('SIGKILL');
    for (const [name, page] of [['Ada', owner], ['Bo', phone]]) {
      await page.waitForSelector('#room-state[data-state="reconnecting"]', { timeout: 10_000 });
      assert.equal((await page.textContent('#room-state')).trim(), 'Reconnecting…', `${name}: the badge says so`);
      assert.equal((await page.textContent('#net-status')).trim(), 'Reconnecting…', `${name}: the bar agrees`);
      assert.equal(await page.isVisible('#join-form'), false, `${name}: no Rejoin, no name to type`);
      assert.equal(await page.isVisible('#in-room'), true, `${name}: the room stays in view`);
    }
    await snap(phone, engine, 'phone-reconnecting');

    // Back on the same port with the same data: both pages are live again by themselves.
    await server.start();
    await Promise.all([live(owner, 'Ada'), live(phone, 'Bo')]);
    const again = await Promise.all([owner, phone].map((p) => p.evaluate(() => window.chorus.user)));
    assert.deepEqual(again, users, 'the same users (the stored identity)');
    for (const page of [owner, phone]) {
      await waitFor(async () => {
        const v = await stageAndAudience(page);
        return v.stage.includes('Ada') && v.stage.includes('Bo') ? v : null;
      }, { timeoutMs: 10_000, what: 'Ada and Bo back on stage' });
      assert.equal((await page.textContent('#net-status')).trim(), '');
      assert.equal((await page.textContent('#room-state')).trim(), 'Live');
    }
    assert.equal(await owner.textContent('#stage-list .person[data-name="Ada"] .tag.role'), 'owner');
    assert.equal(await phone.isVisible('#mute-btn'), true, 'Bo is a speaker again');
    await Promise.all([waitHearing(owner, 1, 'Ada hears Bo after the restart'),
      waitHearing(phone, 1, 'Bo hears Ada after the restart')]);

    // Only Bo's socket drops (a network blip; the server stays up). The server gives a
    // member's seat up when its socket closes; in an open room the page takes a seat again.
    await mark(phone);
    await phone.evaluate(() => window.__sockets[window.__sockets.length - 1].close());
    await live(phone, 'Bo after a dropped socket');
    await waitFor(async () => (await stageAndAudience(owner)).stage.includes('Bo'),
      { timeoutMs: 10_000, what: 'Bo on stage again after the dropped socket' });
    await waitHearing(owner, 1, 'Ada hears Bo after the dropped socket');

    // A clean restart (an upgrade: Ctrl-C, then start) is survived the same way.
    await Promise.all([mark(owner), mark(phone)]);
    await server.restart({ signal: 'SIGINT' });
    await Promise.all([live(owner, 'Ada'), live(phone, 'Bo')]);
    await waitFor(async () => (await stageAndAudience(owner)).stage.includes('Bo'),
      { timeoutMs: 10_000, what: 'Bo on stage after the clean restart' });
    await Promise.all([waitHearing(owner, 1, 'Ada hears Bo after the clean restart'),
      waitHearing(phone, 1, 'Bo hears Ada after the clean restart')]);
  });
});

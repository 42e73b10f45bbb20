// Recovering by itself, against the all-in-one `chorus` (its SFU dies with it): the server
// dies and starts again (same port, same data folder); one page's network drops while the
// server stays up; the server is restarted cleanly. Every page says "Reconnecting…"
// (never "Live" beside "Offline") and is back as the same user in the same seat and role,
// hearing the others — with no click, no name typed. After a restart the page's `resume`
// is refused (`resume_failed`: the media died with the server), so it rejoins with a
// fresh offer (a new peer connection); after a dropped network it resumes over the SAME
// peer connection and nobody in the room sees it leave.

import assert from 'node:assert/strict';
import { openBrowser } from './browser.mjs';
import { startProxy } from './tcp-proxy.mjs';
import {
  waitFor, stageAndAudience, createRoomFromLanding, joinByLink, press, waitHearing, withServer, engineTest, snap,
  recordSocket,
} from './util.mjs';

/** Remember the page's peer connection: `live` then waits for a new one. */
const mark = (page) => page.evaluate(() => {
  window.__before = window.chorus.pc;
  window.__sentMark = window.__sent.length;
  window.__framesMark = window.__frames.length;
});

async function live(page, what) {
  await page.waitForFunction(() => window.chorus.phase === 'live' && window.chorus.pc !== window.__before
    && document.getElementById('room-state').dataset.state === 'active'
    && window.chorus.pc && window.chorus.pc.connectionState === 'connected', null, { timeout: 30_000, polling: 200 })
    .catch((e) => { throw new Error(`${what} not back live: ${e.message}`); });
}

/**
 * How the page came back since `mark`: what it sent, the refusal of its `resume`, the
 * `left` reason the server gave, and how many times it resumed.
 */
function howBack(page) {
  return page.evaluate(() => {
    const frames = window.__frames.slice(window.__framesMark);
    return {
      sent: window.__sent.slice(window.__sentMark).map((f) => f.type).filter((x) => x !== 'ping'),
      refused: frames.filter((f) => f.type === 'error').map((f) => f.code),
      left: frames.filter((f) => f.type === 'left').map((f) => f.reason),
      resumes: window.chorus.resumes,
    };
  });
}

/**
 * After a crash of the all-in-one server its SFU is gone too: the page presents its
 * session (`resume`), is refused (`resume_failed`) and joins again with a fresh offer.
 */
async function resumeRefusedThenJoined(page, what, resumesBefore) {
  const b = await howBack(page);
  assert.equal(b.resumes, resumesBefore, `${what}: not resumed (the SFU restarted with the server): ${JSON.stringify(b)}`);
  assert.deepEqual(b.refused, ['resume_failed'], `${what}: resume refused as resume_failed: ${JSON.stringify(b)}`);
  const r = b.sent.indexOf('resume');
  assert.ok(r >= 0 && b.sent.indexOf('join', r) > r, `${what}: resume, then join: ${JSON.stringify(b)}`);
}

engineTest('after the server restarts, pages rejoin by themselves: same seat and role, audio back, no click', { timeout: 120_000 }, async (engine, t) => {
  await withServer({}, async ({ server, browsers }) => {
    browsers.push(...await Promise.all([openBrowser({ engine }), openBrowser({ engine, device: 'Pixel 7' })]));
    const [{ page: owner }, { page: phone }] = browsers;
    // Bo's page goes through a TCP relay that can break its connections (the network
    // dropping: no WebSocket close frame), with the server up.
    const proxy = await startProxy(server.port);
    t.after(() => proxy.close());
    await Promise.all([recordSocket(owner), recordSocket(phone)]);
    const room = await createRoomFromLanding(owner, server.url, {
      name: 'Ada', title: 'Restart me', seatMode: 'open', seats: 3,
    });
    await joinByLink(phone, `${proxy.url}${room.link}`, 'Bo', { touch: true });
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
    await resumeRefusedThenJoined(owner, 'Ada', 0);
    await resumeRefusedThenJoined(phone, 'Bo', 0);
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

    // Only Bo's network drops (a blip; the server stays up): the page resumes its session
    // over the same peer connection, in the same seat; Ada is told nothing.
    const pcBefore = await phone.evaluate(() => { window.__before = window.chorus.pc; return window.chorus.resumes; });
    const ownerFrames = await owner.evaluate(() => window.__frames.length);
    const phoneSent = await phone.evaluate(() => window.__sent.length);
    assert.ok(proxy.drop() > 0, 'Bo had connections through the relay');
    await phone.waitForSelector('#room-state[data-state="reconnecting"]', { timeout: 10_000 });
    await phone.waitForFunction(() => window.chorus.phase === 'live'
      && document.getElementById('room-state').dataset.state === 'active', null, { timeout: 30_000, polling: 100 });
    const r = await phone.evaluate(() => ({ same: window.chorus.pc === window.__before, resumes: window.chorus.resumes,
      code: window.chorus.lastResumeError, pc: window.chorus.pc && window.chorus.pc.connectionState }));
    assert.equal(r.resumes, pcBefore + 1, `Bo resumed after the dropped network: ${JSON.stringify(r)}`);
    assert.equal(r.same, true, 'Bo: the same peer connection (no new offer)');
    assert.equal(r.pc, 'connected');
    const sentSince = await phone.evaluate((n) => window.__sent.slice(n).map((f) => f.type), phoneSent);
    assert.ok(sentSince.includes('resume') && !sentSince.includes('join') && !sentSince.includes('request_seat'),
      `Bo: resume, no join, no new seat request: ${sentSince}`);
    const toOwner = await owner.evaluate((n) => window.__frames.slice(n).map((f) => f.type), ownerFrames);
    assert.ok(!toOwner.includes('participant_left'), `Ada saw Bo leave: ${toOwner}`);
    assert.ok((await stageAndAudience(owner)).stage.includes('Bo'), 'Bo still on stage for Ada');
    assert.equal(await phone.isVisible('#mute-btn'), true, 'Bo is still a speaker');
    await waitHearing(owner, 1, 'Ada hears Bo after the dropped network');

    // A clean restart (an upgrade: Ctrl-C, then start) is survived the same way.
    await Promise.all([mark(owner), mark(phone)]);
    await server.restart({ signal: 'SIGINT' });
    await Promise.all([live(owner, 'Ada'), live(phone, 'Bo')]);
    // The all-in-one server says `left server_restarting` first (it takes everyone off
    // its SFU, which stops with it): the pages join again with a fresh offer at once.
    for (const [name, page, resumes] of [['Ada', owner, 0], ['Bo', phone, 1]]) {
      const b = await howBack(page);
      assert.equal(b.resumes, resumes, `${name}: not resumed after the clean restart: ${JSON.stringify(b)}`);
      console.log(`# clean restart, ${name}: ${JSON.stringify(b)}`);
      if (b.left.includes('server_restarting')) {
        assert.ok(b.sent.includes('join') && !b.sent.includes('resume'), `${name}: joined again: ${JSON.stringify(b)}`);
      } else {
        await resumeRefusedThenJoined(page, `${name} (clean restart)`, resumes);
      }
    }
    await waitFor(async () => (await stageAndAudience(owner)).stage.includes('Bo'),
      { timeoutMs: 10_000, what: 'Bo on stage after the clean restart' });
    await Promise.all([waitHearing(owner, 1, 'Ada hears Bo after the clean restart'),
      waitHearing(phone, 1, 'Bo hears Ada after the clean restart')]);
  });
});

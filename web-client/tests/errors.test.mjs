// What the user is told when things go wrong: a link to a room that does not exist, a
// server that goes away during a call, and a new room whose audio never connects (the
// server rolls it back and its link leads nowhere).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, getRoom } from './server.mjs';
import { openBrowser } from './browser.mjs';
import { createRoomFromLanding, diagnostics, withServer } from './util.mjs';

test('a link to an unknown room says the room is not open', { timeout: 60_000 }, async () => {
  await withServer({}, async ({ server, browsers }) => {
    browsers.push(await openBrowser());
    const { page } = browsers[0];
    await page.goto(`${server.url}/r/no-such-room-42`);
    await page.waitForSelector('#final[data-reason="not_found"]', { state: 'visible', timeout: 10_000 });
    assert.match(await page.textContent('#final-text'), /not open/i);
    assert.equal((await page.textContent('#room-title')).trim(), 'Room not found');
    // Nothing to join, no media: a way to start a new room instead.
    assert.equal(await page.isVisible('#join-btn'), false);
    assert.equal(await page.isVisible('#final-home'), true);
    assert.equal(await page.evaluate(() => window.chorus.pc), null);
  });
});

test('losing the server during a call is said, and leaves the room', { timeout: 60_000 }, async () => {
  const server = await startServer();
  const browsers = [];
  let stopped = false;
  try {
    browsers.push(await openBrowser());
    const { page } = browsers[0];
    try {
      await createRoomFromLanding(page, server.url, { name: 'Ada', title: 'Short call' });

      await server.stop();
      stopped = true;
      const toast = await page.waitForSelector('#toast[data-code="disconnected"]', { state: 'visible', timeout: 10_000 });
      assert.match(await toast.textContent(), /lost the connection/i);
      assert.equal((await page.textContent('#net-status')).trim(), 'Offline');
      assert.equal(await page.isVisible('#in-room'), false);
      assert.equal((await page.textContent('#join-btn')).trim(), 'Rejoin');
      assert.equal(await page.evaluate(() => window.chorus.pc), null, 'peer connection closed');
    } catch (e) {
      e.message += `\n${diagnostics(server, browsers)}`;
      throw e;
    }
  } finally {
    await Promise.all(browsers.map((b) => b.close()));
    if (!stopped) {
      await server.stop();
    }
  }
});

test('a room whose creator audio never connects is rolled back, and the user is told', { timeout: 60_000 }, async () => {
  await withServer({ extraArgs: ['--pending-timeout-secs', '3'] }, async ({ server, browsers }) => {
    browsers.push(await openBrowser());
    const { page } = browsers[0];
    // Media blocked, as by a firewall dropping UDP: the browser never learns the SFU's
    // candidates (the SFU is ICE-lite and never calls out), so ICE cannot connect.
    await page.addInitScript(() => {
      const original = RTCPeerConnection.prototype.setRemoteDescription;
      RTCPeerConnection.prototype.setRemoteDescription = function blocked(desc) {
        const sdp = desc.sdp.split('\r\n').filter((l) => !l.startsWith('a=candidate')).join('\r\n');
        return original.call(this, { type: desc.type, sdp });
      };
    });
    // The frames the server sends, to check the rollback follows docs/protocol.md.
    const frames = [];
    page.on('websocket', (ws) => ws.on('framereceived', (f) => {
      try { frames.push(JSON.parse(f.payload)); } catch { /* not JSON */ }
    }));
    await page.goto(`${server.url}/`);
    await page.fill('#create-name', 'Ada');
    await page.fill('#create-title', 'Never live');
    await page.click('#create-btn');
    await page.waitForURL(/\/r\/[A-Za-z0-9_-]+$/, { timeout: 15_000 });
    const id = new URL(page.url()).pathname.split('/')[2];
    // While the creator's media connects the room is "Starting…", its link not shown.
    await page.waitForSelector('#room-state[data-state="pending"]', { timeout: 5_000 });
    assert.equal((await page.textContent('#room-state')).trim(), 'Starting…');
    assert.equal(await page.isVisible('#share'), false, 'no link to share before the room is live');

    const started = Date.now();
    await page.waitForSelector('#final[data-reason="not_created"]', { state: 'visible', timeout: 15_000 });
    const waited = Date.now() - started;
    assert.match(await page.textContent('#final-text'), /room was not created/i);
    assert.equal(await page.isVisible('#in-room'), false);
    assert.equal(await page.isVisible('#share'), false);
    assert.equal(await page.evaluate(() => window.chorus.pc), null, 'peer connection closed');
    assert.ok(waited < 10_000, `rolled back after the 3 s wait, not much later (${waited} ms)`);

    // The protocol's rollback: error media_unavailable, then left room_closed.
    const tail = frames.filter((f) => f.type === 'error' || f.type === 'left')
      .map((f) => `${f.type}:${f.code || f.reason}`);
    assert.deepEqual(tail, ['error:media_unavailable', 'left:room_closed'], `frames: ${JSON.stringify(frames)}`);

    const api = await getRoom(server.url, id);
    assert.equal(api.status, 404, `nothing left behind: ${JSON.stringify(api)}`);
  });
});

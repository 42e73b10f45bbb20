// What the user is told when things go wrong: a link to a room that does not exist, an
// address that is no Chorus page, and a new room whose audio never connects (the server
// rolls it back and its link leads nowhere).

import assert from 'node:assert/strict';
import { getRoom } from './server.mjs';
import { openBrowser } from './browser.mjs';
import { recordSocket, withServer, engineTest, snap } from './util.mjs';

engineTest('a link to an unknown room says the room is not open; a bad address is a Chorus page', { timeout: 60_000 }, async (engine) => {
  await withServer({}, async ({ server, browsers }) => {
    browsers.push(await openBrowser({ engine }));
    const { page } = browsers[0];
    await page.goto(`${server.url}/r/no-such-room-42`);
    await page.waitForSelector('#final[data-reason="not_found"]', { timeout: 10_000 });
    assert.match(await page.textContent('#final-text'), /not open/i);
    assert.equal((await page.textContent('#room-title')).trim(), 'Room not found');
    // Nothing to join, no media: a way to start a new room instead.
    assert.equal(await page.isVisible('#join-btn'), false);
    assert.equal(await page.isVisible('#final-home'), true);
    assert.equal(await page.evaluate(() => window.chorus.pc), null);

    // A room link with characters no room id has: the landing page, told why.
    await page.goto(`${server.url}/r/not%20a%20room`);
    await page.waitForSelector('#toast[data-code="invalid_link"]', { timeout: 5_000 });
    assert.equal(await page.isVisible('#view-landing'), true);

    // Addresses the server does not know. The server answers them 404 itself; once the
    // page has been opened, its service worker answers them with the Chorus page instead.
    await page.goto(`${server.url}/`);
    await page.waitForFunction(() => Boolean(navigator.serviceWorker && navigator.serviceWorker.controller),
      null, { timeout: 10_000 });
    for (const bad of ['/no/such/page', '/rooms']) {
      await page.goto(`${server.url}${bad}`);
      await page.waitForSelector('#view-missing', { timeout: 5_000 });
      assert.match(await page.textContent('#missing-title'), /page not found/i, bad);
    }
    // A room link with more after the id: a Chorus page that says the link is not valid.
    await page.goto(`${server.url}/r/abc/def`);
    await page.waitForSelector('#toast[data-code="invalid_link"]', { timeout: 5_000 });
    await snap(page, engine, 'desktop-not-found');
  });
});

engineTest('a room whose creator audio never connects is rolled back, and the user is told', { timeout: 60_000 }, async (engine) => {
  await withServer({ extraArgs: ['--pending-timeout-secs', '3'] }, async ({ server, browsers }) => {
    browsers.push(await openBrowser({ engine }));
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
    await recordSocket(page);
    await page.goto(`${server.url}/`);
    await page.fill('#create-name', 'Ada');
    await page.fill('#create-title', 'Never live');
    await page.click('#create-btn');
    await page.waitForURL(/\/r\/[A-Za-z0-9_-]+$/, { timeout: 15_000 });
    const id = new URL(await page.href()).pathname.split('/')[2];
    // While the creator's media connects the room is "Starting…", its link not shown.
    await page.waitForSelector('#room-state[data-state="pending"]', { timeout: 5_000 });
    assert.equal((await page.textContent('#room-state')).trim(), 'Starting…');
    assert.equal(await page.isVisible('#share'), false, 'no link to share before the room is live');

    await page.waitForSelector('#final[data-reason="not_created"]', { timeout: 15_000 });
    assert.match(await page.textContent('#final-text'), /room was not created/i);
    assert.equal(await page.isVisible('#in-room'), false);
    assert.equal(await page.isVisible('#share'), false);
    assert.equal(await page.isVisible('#room-state'), false, 'no badge for a room that does not exist');
    assert.equal(await page.evaluate(() => window.chorus.pc), null, 'peer connection closed');

    // The protocol's rollback: error media_unavailable, then left room_closed.
    const frames = await page.evaluate(() => window.__frames);
    const tail = frames.filter((f) => f.type === 'error' || f.type === 'left')
      .map((f) => `${f.type}:${f.code || f.reason}`);
    assert.deepEqual(tail, ['error:media_unavailable', 'left:room_closed'], `frames: ${JSON.stringify(frames)}`);

    const api = await getRoom(server.url, id);
    assert.equal(api.status, 404, `nothing left behind: ${JSON.stringify(api)}`);
  });
});

// What the user is told when things go wrong: a link to a room that does not exist,
// and a server that goes away during a call.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, createRoom } from './server.mjs';
import { openBrowser } from './browser.mjs';
import { diagnostics } from './util.mjs';

test('joining an unknown room says the room was not found', { timeout: 60_000 }, async () => {
  const server = await startServer();
  const browsers = [];
  try {
    browsers.push(await openBrowser());
    const { page } = browsers[0];
    try {
      await page.goto(`${server.url}/r/no-such-room-42`);
      await page.fill('#join-name', 'Ada');
      await page.click('#join-btn');
      // The server's `error` (room_not_found) reaches the user as words in the alert.
      const toast = await page.waitForSelector('#toast[data-code="room_not_found"]', { state: 'visible', timeout: 15_000 });
      const words = await toast.textContent();
      assert.match(words, /not found/i, `the alert says the room was not found: ${words}`);
      assert.equal(await page.getAttribute('#toast', 'role'), 'alert');
      // Nothing was left half-joined: still on the join form, no peer connection.
      assert.equal(await page.isVisible('#in-room'), false);
      assert.equal(await page.isVisible('#join-btn'), true);
      assert.equal(await page.evaluate(() => window.chorus.pc), null);
    } catch (e) {
      e.message += `\n${diagnostics(server, browsers)}`;
      throw e;
    }
  } finally {
    await Promise.all(browsers.map((b) => b.close()));
    await server.stop();
  }
});

test('losing the server during a call is said, and leaves the room', { timeout: 60_000 }, async () => {
  const server = await startServer();
  const browsers = [];
  let stopped = false;
  try {
    const room = await createRoom(server.url, 'Short call');
    browsers.push(await openBrowser());
    const { page } = browsers[0];
    try {
      await page.goto(`${server.url}${room.link}`);
      await page.fill('#join-name', 'Ada');
      await page.click('#join-btn');
      await page.waitForSelector('#in-room', { state: 'visible', timeout: 15_000 });

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

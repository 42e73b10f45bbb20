// What the user is told when things go wrong: a link to a room that does not exist.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './server.mjs';
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

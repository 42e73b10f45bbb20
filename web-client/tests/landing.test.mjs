// The landing page creates a room over the socket and lands on its link, ready to share.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './server.mjs';
import { openBrowser } from './browser.mjs';
import { diagnostics } from './util.mjs';

test('the landing page creates a room and opens its link', { timeout: 60_000 }, async () => {
  const server = await startServer();
  const browsers = [];
  try {
    browsers.push(await openBrowser({ device: 'Pixel 7' }));
    const { page } = browsers[0];
    try {
      await page.goto(`${server.url}/`);
      await page.fill('#create-name', 'Ada');
      await page.fill('#create-title', 'Friday call');
      await page.tap('#create-btn');
      await page.waitForURL(/\/r\/[A-Za-z0-9_-]+$/, { timeout: 15_000 });
      const id = new URL(page.url()).pathname.split('/')[2];

      await page.waitForFunction(() => document.getElementById('room-title').textContent === 'Friday call',
        null, { timeout: 5_000 });
      assert.equal(await page.inputValue('#share-link'), `${server.url}/r/${id}`);
      // The name typed on the landing page is remembered for joining.
      assert.equal(await page.inputValue('#join-name'), 'Ada');

      const res = await fetch(`${server.url}/api/rooms/${id}`);
      assert.equal(res.status, 200);
      const body = await res.json();
      assert.equal(body.room.name, 'Friday call');

      const overflow = await page.evaluate(() => document.scrollingElement.scrollWidth <= window.innerWidth);
      assert.ok(overflow, 'no horizontal overflow on the phone');
    } catch (e) {
      e.message += `\n${diagnostics(server, browsers)}`;
      throw e;
    }
  } finally {
    await Promise.all(browsers.map((b) => b.close()));
    await server.stop();
  }
});

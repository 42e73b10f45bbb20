// The SDK is what other apps embed (docs/embedding.md): an app page with none of the
// Chorus page's code creates a room with `ChorusClient` alone, sees a person who joins
// from the Chorus page, is heard by them, and ends the room. Its core modules touch no DOM.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { openBrowser } from './browser.mjs';
import { joinByLink, waitFor, waitHearing, withServer, engineTest } from './util.mjs';

engineTest('an app embeds a room with the SDK alone', { timeout: 90_000 }, async (engine) => {
  for (const f of ['chorus.js', 'signal.js', 'media.js']) {
    const src = await readFile(new URL(`../src/sdk/${f}`, import.meta.url), 'utf8');
    assert.ok(!/\bdocument\b|\bwindow\b/.test(src.replace(/\/\/.*$/gm, '')), `src/sdk/${f} uses no DOM`);
  }
  await withServer({}, async ({ server, browsers }) => {
    browsers.push(...await Promise.all([openBrowser({ engine }), openBrowser({ engine, device: 'Pixel 7' })]));
    const [{ page: app }, { page: bo }] = browsers;
    // A page of the server's origin without the Chorus app on it.
    await app.goto(`${server.url}/404.html`);
    const room = await app.evaluate(async () => {
      const { ChorusClient } = await import('/src/sdk/chorus.js');
      const client = new ChorusClient();
      window.sdk = client;
      window.seen = [];
      client.addEventListener('participants', () => {
        window.seen = [...client.people.values()].map((p) => p.name);
      });
      const info = await client.create({ name: 'App', title: 'Embedded', seats: 2, seatMode: 'open' });
      return info;
    });
    assert.equal(room.name, 'Embedded');
    await app.waitForFunction(() => window.sdk.state.phase === 'live' && window.sdk.state.room.state === 'active',
      null, { timeout: 15_000 });

    await joinByLink(bo, `${server.url}${room.link}`, 'Bo', { touch: true });
    await waitFor(() => app.evaluate(() => window.seen.includes('Bo')), { timeoutMs: 10_000, what: 'the app sees Bo' });
    // The Chorus page hears the app's owner on stage.
    await waitHearing(bo, 1, 'Bo hears the embedding app');
    assert.equal(await bo.textContent('#stage-list .person[data-name="App"] .tag.role'), 'owner');

    await app.evaluate(() => window.sdk.endRoom());
    await bo.waitForSelector('#final[data-reason="room_closed"]', { timeout: 10_000 });
    await app.waitForFunction(() => window.sdk.state.phase === 'ended' && window.sdk.state.reason === 'room_closed',
      null, { timeout: 10_000 });
  });
});

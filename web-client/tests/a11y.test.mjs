// Accessible and mobile first: WCAG AA contrast of every visible text in light and dark
// mode (computed colours, the speaking avatar and the Live badge included), a confirm
// dialog that starts on Cancel, the live region that says who speaks; on phone screens
// (Pixel 7, iPhone 14) a 30-seat room fits one screen with the controls pinned at the
// bottom; the page is installable (manifest, icons, service worker) and shows the room
// on the lock screen (Media Session).

import assert from 'node:assert/strict';
import { openBrowser } from './browser.mjs';
import { createRoomFromLanding, recordSocket, withServer, engineTest, snap, pressEnterOnConfirm } from './util.mjs';
import { contrastFailures } from './contrast.mjs';

for (const scheme of ['light', 'dark']) {
  engineTest(`WCAG AA contrast in ${scheme} mode; confirmations start on Cancel; who speaks is announced`, { timeout: 90_000 }, async (engine) => {
    await withServer({}, async ({ server, browsers }) => {
      browsers.push(await openBrowser({ engine, colorScheme: scheme }));
      const { page } = browsers[0];
      await recordSocket(page);
      await page.goto(`${server.url}/`);
      assert.equal(await page.evaluate(() => matchMedia('(prefers-color-scheme: dark)').matches), scheme === 'dark');
      const failures = { landing: await page.evaluate(contrastFailures, null) };
      await createRoomFromLanding(page, server.url, { name: 'Ada Lovelace', title: 'Contrast check', open: false });
      // Speaking now (as the server would say): the green avatar with its initials.
      failures.room = await page.evaluate((check) => {
        const ws = window.__sockets[window.__sockets.length - 1];
        ws.dispatchEvent(new MessageEvent('message', {
          data: JSON.stringify({ type: 'speaking', levels: [{ participant: window.chorus.you, level: 0.3 }] }),
        }));
        if (!document.querySelector('#stage-list .person.speaking')) return ['the speaking tile did not show'];
        // eslint-disable-next-line no-new-func
        return new Function(`return (${check})`)()(null);
      }, contrastFailures.toString());
      await snap(page, engine, `desktop-room-${scheme}`);
      // Seat tiles show whole names and "N free seats" (they wrap, never cut).
      const cut = await page.evaluate(() => [...document.querySelectorAll('#stage-list .label')]
        .filter((l) => l.scrollWidth > l.clientWidth + 1 || l.scrollHeight > l.clientHeight + 1).map((l) => l.textContent));
      assert.deepEqual(cut, [], 'no seat label is cut');
      await page.waitForFunction(() => /speaking/.test(document.getElementById('speaking-now').textContent),
        null, { timeout: 5_000 });
      assert.equal(await page.getAttribute('#speaking-now', 'aria-live'), 'polite');

      await page.click('#end-btn');
      await page.waitForSelector('#confirm[open]', { timeout: 5_000 });
      assert.equal(await page.evaluate(() => document.activeElement.id), 'confirm-no', 'Cancel has the focus');
      failures.confirm = await page.evaluate(contrastFailures, '#confirm');
      await pressEnterOnConfirm(page, engine);
      await page.waitForSelector('#confirm', { state: 'hidden', timeout: 5_000 });
      assert.equal(await page.evaluate(() => window.chorus.phase), 'live', 'Enter did not end the room');

      const all = Object.entries(failures).flatMap(([where, list]) => list.map((f) => `${where}: ${f}`));
      assert.deepEqual(all, [], `texts below WCAG AA in ${scheme} mode`);
    });
  });
}

for (const device of ['Pixel 7', 'iPhone 14']) {
  engineTest(`on a ${device} a 30-seat room fits one screen, controls pinned at the bottom; installable; lock screen`, { timeout: 90_000 }, async (engine) => {
    await withServer({}, async ({ server, browsers }) => {
      browsers.push(await openBrowser({ engine, device }));
      const { page } = browsers[0];
      await createRoomFromLanding(page, server.url, {
        name: 'Ada', title: 'Thirty seats', capacity: 100, seats: 30, touch: true,
      });
      const layout = await page.evaluate(() => {
        const rect = (id) => {
          const r = document.getElementById(id).getBoundingClientRect();
          return { top: r.top, bottom: r.bottom };
        };
        return {
          innerHeight,
          scrollHeight: document.scrollingElement.scrollHeight,
          dockPosition: getComputedStyle(document.getElementById('dock')).position,
          leave: rect('leave-btn'),
          mute: rect('mute-btn'),
          stage: rect('stage-list'),
          dock: rect('dock'),
          freeSeats: document.querySelector('#stage-list .seat-free').textContent,
        };
      });
      assert.equal(layout.dockPosition, 'fixed', 'the controls are pinned');
      for (const b of ['leave', 'mute']) {
        assert.ok(layout[b].top >= 0 && layout[b].bottom <= layout.innerHeight, `${b} on screen without scrolling: ${JSON.stringify(layout)}`);
      }
      assert.ok(layout.stage.top < layout.dock.top, 'the stage is above the controls');
      assert.ok(layout.scrollHeight <= layout.innerHeight + 1, `the room fits one screen: ${JSON.stringify(layout)}`);
      assert.match(layout.freeSeats, /29 free seats/);
      await snap(page, engine, `phone-${device.replace(/\s+/g, '-').toLowerCase()}-30-seats`);

      // The room on the lock screen, while in it.
      const meta = await page.evaluate(() => navigator.mediaSession && navigator.mediaSession.metadata
        && { title: navigator.mediaSession.metadata.title, artist: navigator.mediaSession.metadata.artist });
      assert.deepEqual(meta, { title: 'Thirty seats', artist: 'Chorus · on stage' });

      // Installable: a manifest with icons that load, and a service worker for the shell.
      const pwa = await page.evaluate(async () => {
        const link = document.querySelector('link[rel="manifest"]');
        const manifest = await (await fetch(link.href)).json();
        const icons = await Promise.all(manifest.icons.map(async (i) => (await fetch(i.src)).status));
        const reg = await navigator.serviceWorker.getRegistration('/');
        return { name: manifest.name, display: manifest.display, icons, sw: Boolean(reg) };
      });
      assert.equal(pwa.display, 'standalone');
      assert.deepEqual(pwa.icons, pwa.icons.map(() => 200));
      assert.equal(pwa.sw, true, 'a service worker keeps the shell');
    });
  });
}

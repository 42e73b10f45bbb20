// A room near its capacity stays interactive. The owner's page is in a real room; the
// test adds 1,999 synthetic people to its socket (participant_updated frames, as the
// server sends them) and has five synthetic speakers and the owner "speak" ten times a
// second (speaking frames with moving levels). Then, like a person, it presses and holds
// (120 ms) the ⋯ button of speakers and listeners ten times and counts how often the
// moderator's sheet opens for the right person; and checks that keyboard focus stays.

import assert from 'node:assert/strict';
import { openBrowser } from './browser.mjs';
import { createRoomFromLanding, recordSocket, withServer, engineTest, snap } from './util.mjs';

const PRESENT = 2000;
const SPEAKERS = 5;

engineTest(`a room of ${PRESENT} present with ${SPEAKERS} speakers stays interactive: menus open 10 of 10`, { timeout: 120_000 }, async (engine) => {
  await withServer({}, async ({ server, browsers }) => {
    browsers.push(await openBrowser({ engine }));
    const { page } = browsers[0];
    await recordSocket(page);
    await createRoomFromLanding(page, server.url, {
      name: 'Ada', title: 'Town square', capacity: 10000, seats: SPEAKERS + 1,
    });

    // The crowd arrives, then keeps speaking until the test stops it.
    await page.evaluate(({ present, speakers }) => {
      const ws = window.__sockets[window.__sockets.length - 1];
      const feed = (msg) => ws.dispatchEvent(new MessageEvent('message', { data: JSON.stringify(msg) }));
      for (let i = 0; i < present - 1; i += 1) {
        feed({
          type: 'participant_updated',
          participant: {
            id: `p_syn${i}`, user: `u_syn${i}`, name: `Person ${String(i).padStart(4, '0')}`, muted: false,
            speaker: i < speakers, connected: true, role: 'member', hand_raised: i % 150 === 149,
            muted_by_moderator: false,
          },
        });
      }
      const talking = [window.chorus.you, ...Array.from({ length: speakers }, (_, i) => `p_syn${i}`)];
      window.__crowd = setInterval(() => {
        feed({ type: 'speaking', levels: talking.map((id) => ({ participant: id, level: 0.05 + 0.5 * Math.random() })) });
      }, 100);
    }, { present: PRESENT, speakers: SPEAKERS });
    await page.waitForFunction((n) => document.getElementById('audience-count').textContent === String(n),
      PRESENT - SPEAKERS - 1, { timeout: 30_000 });
    await page.waitForFunction(() => document.querySelectorAll('#stage-list .person.speaking').length >= 3,
      null, { timeout: 10_000 });
    await snap(page, engine, 'desktop-crowd-2000');

    // While they speak, the lists are not rebuilt: no row is added or removed.
    await page.evaluate(() => {
      window.__rebuilt = 0;
      window.__ringMoves = 0;
      const o = new MutationObserver((records) => {
        for (const r of records) {
          if (r.type === 'childList') window.__rebuilt += r.addedNodes.length + r.removedNodes.length;
          else window.__ringMoves += 1;
        }
      });
      for (const id of ['stage-list', 'audience-list']) {
        o.observe(document.getElementById(id), { childList: true, attributes: true, attributeFilter: ['class', 'style'], subtree: true });
      }
      window.__observer = o;
    });

    const targets = [];
    for (let i = 0; i < 10; i += 1) {
      // Alternate: a speaker's tile on the stage, a listener's row in the audience.
      const id = i % 2 === 0 ? `p_syn${i % SPEAKERS}` : `p_syn${SPEAKERS + 10 + i}`;
      targets.push(id);
    }
    let opened = 0;
    const misses = [];
    for (const id of targets) {
      const name = await page.evaluate((pid) => window.chorus.client.people.get(pid).name, id);
      await page.click(`.person[data-id="${id}"] .person-menu`, { delay: 120 });
      const ok = await page.waitForFunction((n) => {
        const sheet = document.getElementById('sheet');
        return sheet.open && document.getElementById('sheet-title').textContent === n;
      }, name, { timeout: 2_000 }).then(() => true, () => false);
      if (ok) {
        opened += 1;
        await page.click('#sheet-close');
        await page.waitForSelector('#sheet', { state: 'hidden', timeout: 2_000 });
      } else {
        misses.push(id);
      }
    }

    // Keyboard focus stays on a menu button while everyone speaks.
    await page.focus('#stage-list .person[data-id="p_syn1"] .person-menu');
    await page.waitForFunction(() => window.__ringMoves > 20, null, { timeout: 10_000 });
    const focus = await page.evaluate(() => {
      const a = document.activeElement;
      return a && a.classList.contains('person-menu') && a.isConnected ? a.closest('.person').dataset.id : null;
    });
    const churn = await page.evaluate(() => {
      clearInterval(window.__crowd);
      window.__observer.disconnect();
      return { rebuilt: window.__rebuilt, ringMoves: window.__ringMoves };
    });
    console.log(`[${engine}] menu opened ${opened}/10 with ${PRESENT} present and ${SPEAKERS + 1} speaking; `
      + `rows added/removed while speaking: ${churn.rebuilt}; speaking-ring updates seen: ${churn.ringMoves}`);
    assert.equal(opened, 10, `the ⋯ menu opened ${opened} of 10 times; missed ${misses.join(', ')}`);
    assert.equal(focus, 'p_syn1', 'keyboard focus stays on the menu button while people speak');
    assert.equal(churn.rebuilt, 0, 'speaking never rebuilds a list');
    assert.ok(churn.ringMoves > 0, 'the speaking rings did move meanwhile (the load was real)');
  });
});

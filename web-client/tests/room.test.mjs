// Three Chromium pages (one a phone) in an open-seat room: the owner creates it on the
// landing page, the two others join by its link and take seats themselves; then each
// page hears the two others, sees a mute, and sees one leave and come back.

import assert from 'node:assert/strict';
import { openBrowser } from './browser.mjs';
import {
  waitFor, listedNames, stageAndAudience, createRoomFromLanding, joinByLink, waitInRoom, press,
  waitHearing, assertNoOverflow, withServer, engineTest, snap,
} from './util.mjs';

const PEOPLE = [
  { name: 'Ada', device: undefined },
  { name: 'Grace', device: undefined },
  { name: 'Linus', device: 'Pixel 7' },
];

engineTest('three browsers take seats in an open room and hear each other; leave and rejoin', { timeout: 120_000 }, async (engine) => {
  await withServer({}, async ({ server, browsers }) => {
    browsers.push(...await Promise.all(PEOPLE.map((p) => openBrowser({ engine, device: p.device }))));
    const pages = browsers.map((b) => b.page);
    const phone = pages[2];
    const room = await createRoomFromLanding(pages[0], server.url, {
      name: 'Ada', title: 'Open mic', seatMode: 'open', seats: 3, capacity: 10,
    });
    for (const i of [1, 2]) {
      const touch = Boolean(PEOPLE[i].device);
      await joinByLink(pages[i], room.url, PEOPLE[i].name, { touch });
      // An open room offers a free seat to take, no hand to raise.
      await waitFor(() => pages[i].textContent('#hand-btn').then((t) => t.trim() === 'Take a seat'),
        { timeoutMs: 5_000, what: `"Take a seat" for ${PEOPLE[i].name}` });
      await press(pages[i], '#hand-btn', touch);
      await waitFor(async () => (await stageAndAudience(pages[i])).stage.includes(PEOPLE[i].name),
        { timeoutMs: 5_000, what: `${PEOPLE[i].name} on stage` });
    }

    // Everyone shows the three of us on stage, no free seat left.
    for (const [i, page] of pages.entries()) {
      const view = await waitFor(async () => {
        const v = await stageAndAudience(page);
        return v.stage.length === 3 ? v : null;
      }, { timeoutMs: 10_000, what: `three on stage in page ${i}` });
      assert.deepEqual([...view.stage].sort(), ['Ada', 'Grace', 'Linus'], `page ${i} stage`);
      assert.equal(view.free, 0, `page ${i}: no free seat`);
      assert.equal(await page.isVisible('#mute-btn'), true, `page ${i} offers mute`);
    }
    // The owner is marked on every page.
    assert.equal(await pages[2].textContent('#stage-list .person[data-name="Ada"] .tag.role'), 'owner');

    // Each page receives audible Opus from the two others.
    await Promise.all(pages.map((page, i) => waitHearing(page, 2, `page ${i} hears two others`)));

    // The speaking ring follows the server's levels (the fake mics beep).
    await waitFor(() => pages[0].count('#stage-list .person.speaking').then((n) => n > 0),
      { timeoutMs: 8_000, what: 'someone shown speaking in page 0' });
    await assertNoOverflow(phone, 'on the phone');
    await snap(pages[0], engine, 'desktop-room-speaking');
    await snap(phone, engine, 'phone-room-on-stage');

    // Grace picks a microphone: the sender's track is replaced (no renegotiation).
    await pages[1].click('#mic-settings summary');
    await waitFor(() => pages[1].count('#mic-select option'), { timeoutMs: 5_000, what: 'microphones listed' });
    const mic = await pages[1].evaluate(() => {
      const sel = document.getElementById('mic-select');
      sel.selectedIndex = sel.options.length - 1;
      sel.dispatchEvent(new Event('change'));
      return sel.value;
    });
    await pages[1].waitForFunction((id) => {
      const t = window.chorus.pc.getSenders()[0].track;
      return t && t.readyState === 'live' && t.enabled && t.getSettings().deviceId === id;
    }, mic, { timeout: 5_000 });

    // Grace mutes: her track stops, and the others see her muted.
    await pages[1].click('#mute-btn');
    assert.equal(await pages[1].getAttribute('#mute-btn', 'aria-pressed'), 'true');
    assert.equal(await pages[1].evaluate(
      () => window.chorus.pc.getSenders().every((s) => !s.track || !s.track.enabled)), true,
    'muting disables the microphone track');
    for (const i of [0, 2]) {
      await pages[i].waitForSelector('#stage-list .person[data-name="Grace"] .mic-off', { timeout: 5_000 });
    }
    await pages[1].click('#mute-btn');
    for (const i of [0, 2]) {
      await pages[i].waitForSelector('#stage-list .person[data-name="Grace"] .mic-off', { state: 'detached', timeout: 5_000 });
    }

    // Linus (phone) leaves; the others see him go; his page offers to rejoin.
    await phone.tap('#leave-btn');
    await phone.waitForSelector('#join-btn', { state: 'visible', timeout: 5_000 });
    assert.equal((await phone.textContent('#join-btn')).trim(), 'Rejoin');
    assert.match(await phone.textContent('#left-note'), /you left/i);
    assert.equal(await phone.evaluate(() => window.chorus.pc), null, 'peer connection closed');
    for (const i of [0, 1]) {
      const names = await waitFor(async () => {
        const n = await listedNames(pages[i]);
        return n.length === 2 ? n : null;
      }, { timeoutMs: 10_000, what: `Linus gone from page ${i}` });
      assert.ok(!names.includes('Linus'), `page ${i} no longer lists Linus: ${names}`);
    }

    // Linus rejoins from the same page: everyone lists three again, and he hears the two.
    await phone.tap('#join-btn');
    await waitInRoom(phone, 'Linus (rejoining)');
    for (const [i, page] of pages.entries()) {
      await waitFor(async () => (await listedNames(page)).length === 3,
        { timeoutMs: 10_000, what: `three names again in page ${i}` });
    }
    await waitHearing(phone, 2, 'Linus hears Ada and Grace after rejoining');
  });
});

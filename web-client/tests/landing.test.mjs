// The landing page: checks the settings before asking anything, creates a room with the
// creator's media, lands on the room's link without a reload, and the creator stays the
// owner after reloading the page (the user token kept in localStorage).

import assert from 'node:assert/strict';
import { getRoom } from './server.mjs';
import { openBrowser } from './browser.mjs';
import {
  stageAndAudience, createRoomFromLanding, waitInRoom, assertNoOverflow, withServer, engineTest, snap,
} from './util.mjs';

engineTest('the landing page creates a live room, and its creator stays the owner after a reload', { timeout: 90_000 }, async (engine) => {
  await withServer({}, async ({ server, browsers }) => {
    browsers.push(await openBrowser({ engine, device: 'Pixel 7' }));
    const { page } = browsers[0];
    // Bad settings are refused in words before anything is sent.
    await page.goto(`${server.url}/`);
    await snap(page, engine, 'phone-landing');
    await page.fill('#create-name', 'Ada');
    await page.fill('#create-title', 'Friday call');
    await page.fill('#create-capacity', '5');
    await page.fill('#create-seats', '10');
    await page.tap('#create-btn');
    await page.waitForSelector('#toast[data-code="invalid_input"]', { timeout: 5_000 });
    assert.match(await page.textContent('#toast'), /more mic seats than people/i);
    assert.equal(new URL(await page.href()).pathname, '/');
    await assertNoOverflow(page, 'on the phone landing page');

    await page.evaluate(() => { window.sameDocument = true; });
    const room = await createRoomFromLanding(page, server.url, {
      name: 'Ada', title: 'Friday call', capacity: 20, seats: 4, touch: true, open: false,
    });
    assert.equal(await page.evaluate(() => window.sameDocument), true, 'the room opened without a reload');
    assert.equal((await page.textContent('#room-title')).trim(), 'Friday call');
    assert.equal((await page.textContent('#room-state')).trim(), 'Live');
    assert.equal(await page.inputValue('#share-link'), room.url);
    assert.equal(await page.isVisible('#copy-btn'), true);
    // The creator holds the first seat, as owner; the other three seats are free.
    const view = await stageAndAudience(page);
    assert.deepEqual(view, { stage: ['Ada'], audience: [], free: 3 });
    assert.equal(await page.textContent('#stage-list .person[data-name="Ada"] .tag.role'), 'owner');
    assert.equal(await page.isVisible('#end-btn'), true, 'the owner may end the room');
    // The owner cannot give up its place in the group: no such section.
    assert.equal(await page.isVisible('#group-info'), false);

    const api = await getRoom(server.url, room.id);
    assert.equal(api.status, 200);
    assert.equal(api.body.room.name, 'Friday call');
    assert.equal(api.body.room.state, 'active');
    assert.equal(api.body.room.capacity, 20);
    assert.equal(api.body.room.seats, 4);
    assert.equal(api.body.room.seat_mode, 'moderated');
    await assertNoOverflow(page, 'in the room on the phone');

    // Reload: the page is the room's link; joining again, Ada is still the owner.
    await page.reload();
    await page.waitForFunction(() => document.getElementById('room-title').textContent === 'Friday call',
      null, { timeout: 5_000 });
    assert.equal(await page.inputValue('#join-name'), 'Ada', 'the name is remembered');
    await snap(page, engine, 'phone-join');
    await page.tap('#join-btn');
    await waitInRoom(page, 'Ada (after reload)');
    await page.waitForSelector('#in-room .person[data-name="Ada"] .tag.role', { timeout: 5_000 });
    assert.equal(await page.textContent('#in-room .person[data-name="Ada"] .tag.role'), 'owner');
    assert.equal(await page.isVisible('#end-btn'), true);
  });
});

// A member gives up its place: in a full room (owner + 1), a third person is refused in
// words; once the member taps "Leave the group", the third person gets in.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openBrowser } from './browser.mjs';
import { createRoomFromLanding, joinByLink, waitInRoom, withServer } from './util.mjs';

test('leaving the group frees a place in a full room', { timeout: 60_000 }, async () => {
  await withServer({}, async ({ server, browsers }) => {
    browsers.push(await openBrowser(), await openBrowser(), await openBrowser({ device: 'Pixel 7' }));
    const [{ page: owner }, { page: bo }, { page: cy }] = browsers;
    const room = await createRoomFromLanding(owner, server.url, {
      name: 'Ada', title: 'Two seats', capacity: 2, seats: 1,
    });
    await joinByLink(bo, room.url, 'Bo');
    // The owner cannot leave its group: no such button for it.
    assert.equal(await owner.isVisible('#leave-group-btn'), false);

    // Full: Cy is told so, in words, and is not in the room.
    await cy.goto(room.url);
    await cy.fill('#join-name', 'Cy');
    await cy.tap('#join-btn');
    await cy.waitForSelector('#toast:not([hidden])', { timeout: 15_000 });
    assert.match(await cy.textContent('#toast-text'), /full/i);
    assert.equal(await cy.isVisible('#in-room'), false);

    // Bo gives the place up (with a confirmation).
    await bo.click('#leave-group-btn');
    await bo.waitForSelector('#confirm[open]', { timeout: 5_000 });
    await bo.click('#confirm-yes');
    // Bo is out, told why, and its media is closed.
    await bo.waitForSelector('#in-room', { state: 'hidden', timeout: 10_000 });
    assert.match(await bo.textContent('#left-note'), /left the group/i);
    assert.equal(await bo.evaluate(() => window.chorus.pc), null, 'Bo\'s peer connection closed');

    // Now Cy gets in.
    await cy.reload();
    await cy.fill('#join-name', 'Cy');
    await cy.tap('#join-btn');
    await waitInRoom(cy, 'Cy');
  });
});

// A member gives up its place: in a full room (owner + 1), a third person is refused in
// words; once the member gives up its place in the group (explained in plain words, and
// confirmed), the third person gets in.

import assert from 'node:assert/strict';
import { openBrowser } from './browser.mjs';
import { createRoomFromLanding, joinByLink, waitInRoom, withServer, engineTest } from './util.mjs';

engineTest('giving up a place in the group frees it in a full room', { timeout: 90_000 }, async (engine) => {
  await withServer({}, async ({ server, browsers }) => {
    browsers.push(...await Promise.all([
      openBrowser({ engine }), openBrowser({ engine }), openBrowser({ engine, device: 'Pixel 7' }),
    ]));
    const [{ page: owner }, { page: bo }, { page: cy }] = browsers;
    const room = await createRoomFromLanding(owner, server.url, {
      name: 'Ada', title: 'Two seats', capacity: 2, seats: 1,
    });
    await joinByLink(bo, room.url, 'Bo');
    // The owner cannot leave its group: no such section for it.
    assert.equal(await owner.isVisible('#group-info'), false);
    // A member sees no red "leave the group" beside Leave: it is folded away below the
    // audience, under a plain-words heading.
    assert.equal(await bo.isVisible('#leave-group-btn'), false, 'folded away until asked for');
    assert.equal(await bo.isVisible('#group-info summary'), true);

    // Full: Cy is told so, in words, and is not in the room.
    await cy.goto(room.url);
    await cy.fill('#join-name', 'Cy');
    await cy.tap('#join-btn');
    await cy.waitForSelector('#toast:not([hidden])', { timeout: 15_000 });
    assert.match(await cy.textContent('#toast-text'), /full/i);
    assert.equal(await cy.isVisible('#in-room'), false);

    // Bo opens the explanation and gives the place up (with a confirmation, Cancel first).
    await bo.click('#group-info summary');
    assert.match(await bo.textContent('#group-text'), /belongs to a group/i);
    await bo.click('#leave-group-btn');
    await bo.waitForSelector('#confirm[open]', { timeout: 5_000 });
    assert.equal(await bo.evaluate(() => document.activeElement && document.activeElement.id), 'confirm-no',
      'the confirmation starts on Cancel');
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

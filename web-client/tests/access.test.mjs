// Who may come in, as users see it: the owner locks the room; everyone present sees that
// it is locked; a newcomer opening the link is told so, and a join is refused in words;
// unlocked, the newcomer gets in. A member has no lock control.

import assert from 'node:assert/strict';
import { openBrowser } from './browser.mjs';
import {
  waitFor, createRoomFromLanding, joinByLink, press, waitInRoom, withServer, engineTest, snap,
} from './util.mjs';

engineTest('the owner locks the room: newcomers are refused in words until it is unlocked', { timeout: 90_000 }, async (engine) => {
  await withServer({}, async ({ server, browsers }) => {
    browsers.push(await openBrowser({ engine }), await openBrowser({ engine }), await openBrowser({ engine, device: 'Pixel 7' }));
    const [owner, grace, newcomer] = browsers.map((b) => b.page);
    const room = await createRoomFromLanding(owner, server.url, { name: 'Ada', title: 'Quiet room', seats: 2 });
    await joinByLink(grace, room.url, 'Grace');
    assert.equal(await grace.isVisible('#lock-btn'), false, 'no lock for a member');
    assert.equal(await owner.textContent('#lock-btn'), 'Lock room');

    await owner.click('#lock-btn');
    for (const [who, page] of [['Ada', owner], ['Grace', grace]]) {
      await waitFor(async () => /locked/i.test(await page.textContent('#room-state')),
        { timeoutMs: 5_000, what: `the locked badge on ${who}'s page` });
    }
    assert.equal(await owner.textContent('#lock-btn'), 'Unlock room');
    assert.equal(await owner.getAttribute('#lock-btn', 'aria-pressed'), 'true');

    // A newcomer opening the link is told before trying; a join is refused in words.
    await newcomer.goto(room.url);
    await newcomer.waitForSelector('#room-note:not([hidden])', { timeout: 5_000 });
    assert.match(await newcomer.textContent('#room-note'), /locked/i);
    await newcomer.fill('#join-name', 'Linus');
    await press(newcomer, '#join-btn', true);
    await newcomer.waitForSelector('#toast:not([hidden])', { timeout: 10_000 });
    assert.match(await newcomer.textContent('#toast-text'), /locked/i);
    assert.equal(await newcomer.isVisible('#in-room'), false, 'not in the room');
    await snap(newcomer, engine, 'phone-room-locked');

    // Unlocked: the newcomer gets in.
    await owner.click('#lock-btn');
    await waitFor(async () => !/locked/i.test(await grace.textContent('#room-state')),
      { timeoutMs: 5_000, what: 'the locked badge gone' });
    await newcomer.click('#toast-close');
    await press(newcomer, '#join-btn', true);
    await waitInRoom(newcomer, 'Linus');
  });
});

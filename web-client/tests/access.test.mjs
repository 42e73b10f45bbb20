// Who may come in, as users see it: the owner locks the room; everyone present sees that
// it is locked; a newcomer opening the link is told so, and a join is refused in words;
// unlocked, the newcomer gets in. A member has no lock control. In a room whose
// newcomers knock, the owner sees who is at the door and lets one in, and not another.

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
    // The controls are drawn with the people, at the next animation frame after the badge.
    await waitFor(async () => (await owner.textContent('#lock-btn')) === 'Unlock room',
      { timeoutMs: 5_000, what: "the owner's Unlock button" });
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

engineTest('newcomers knock: the owner lets one in and not another', { timeout: 90_000 }, async (engine) => {
  await withServer({}, async ({ server, browsers }) => {
    browsers.push(await openBrowser({ engine }), await openBrowser({ engine, device: 'Pixel 7' }), await openBrowser({ engine }));
    const [owner, grace, linus] = browsers.map((b) => b.page);
    const room = await createRoomFromLanding(owner, server.url, { name: 'Ada', title: 'Door', seats: 2, entry: 'knock' });
    // Grace knocks: her page says she waits; the owner sees her at the door.
    await grace.goto(room.url);
    await grace.fill('#join-name', 'Grace');
    await press(grace, '#join-btn', true);
    await grace.waitForSelector('#knock-cancel:not([hidden])', { timeout: 10_000 });
    assert.match(await grace.textContent('#room-note'), /asked to come in/i);
    assert.match(await grace.textContent('#join-btn'), /waiting/i);
    await owner.waitForSelector('#door-list li[data-user] .name', { timeout: 10_000 });
    assert.equal((await owner.textContent('#door-list li .name')).trim(), 'Grace');
    await snap(owner, engine, 'owner-at-the-door');
    await owner.click('#door-list li button[data-admit="true"]');
    await waitInRoom(grace, 'Grace');
    await owner.waitForSelector('#door', { state: 'hidden', timeout: 5_000 });
    // Linus knocks and is not let in: told so in words, not in the room.
    await linus.goto(room.url);
    await linus.fill('#join-name', 'Linus');
    await press(linus, '#join-btn', false);
    await owner.waitForSelector('#door-list li[data-user] .name', { timeout: 10_000 });
    assert.equal(await grace.isVisible('#door'), false, 'a member is not shown the door');
    await owner.click('#door-list li button[data-admit="false"]');
    await linus.waitForSelector('#toast:not([hidden])', { timeout: 10_000 });
    assert.match(await linus.textContent('#toast-text'), /did not let you in/i);
    assert.equal(await linus.isVisible('#in-room'), false);
    assert.equal(await linus.isVisible('#knock-cancel'), false, 'no longer waiting');
    await waitFor(async () => (await owner.isVisible('#door')) === false,
      { timeoutMs: 5_000, what: 'the door empty again' });
  });
});

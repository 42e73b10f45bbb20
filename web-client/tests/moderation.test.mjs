// Moderation as users see it: the owner mutes a speaker (enforced at the SFU: the owner
// stops hearing it), removes a listener (who cannot come back), and ends the room.

import assert from 'node:assert/strict';
import { getRoom } from './server.mjs';
import { openBrowser, sleep } from './browser.mjs';
import {
  waitFor, listedNames, stageAndAudience, createRoomFromLanding, joinByLink, moderate,
  sampleInbound, audible, waitHearing, withServer, engineTest, snap, pressEnterOnConfirm,
} from './util.mjs';

engineTest('the owner mutes a speaker, removes a listener and ends the room', { timeout: 120_000 }, async (engine) => {
  await withServer({}, async ({ server, browsers }) => {
    browsers.push(await openBrowser({ engine }), await openBrowser({ engine }), await openBrowser({ engine, device: 'Pixel 7' }));
    const [owner, grace, linus] = browsers.map((b) => b.page);
    const room = await createRoomFromLanding(owner, server.url, { name: 'Ada', title: 'Panel', seats: 2 });
    await joinByLink(grace, room.url, 'Grace');
    await joinByLink(linus, room.url, 'Linus', { touch: true });
    await waitFor(async () => (await stageAndAudience(owner)).audience.length === 2,
      { timeoutMs: 10_000, what: 'two listeners on the owner page' });

    // A member has no moderator controls.
    assert.equal(await grace.count('.person-menu'), 0, 'no actions for a member');
    assert.equal(await grace.isVisible('#end-btn'), false, 'no End room for a member');

    // Grace gets a seat and is heard.
    await moderate(owner, 'Grace', '#act-grant');
    await waitHearing(owner, 1, 'the owner hears Grace once seated', 8_000);

    // The owner mutes Grace: her page says so, and her audio stops at the SFU.
    await moderate(owner, 'Grace', '#act-mute');
    await grace.waitForSelector('#me-status[data-state="muted_by_moderator"]', { timeout: 5_000 });
    assert.match(await grace.textContent('#me-status'), /moderator muted you/i);
    assert.equal(await grace.getAttribute('#stage-list .person[data-name="Grace"] .mod-muted', 'aria-label'),
      'muted by moderator');
    await owner.waitForSelector('#stage-list .person[data-name="Grace"] .mod-muted', { timeout: 5_000 });
    // Give the SFU a moment, then nothing audible reaches the owner for two seconds.
    const silent = await waitFor(async () => {
      const s = await sampleInbound(owner, 2000);
      return s.every((x) => x.gained === 0 || x.maxLevel === 0) ? s : null;
    }, { timeoutMs: 8_000, intervalMs: 0, what: 'Grace silent at the owner after the mute' });
    assert.equal(audible(silent).length, 0);
    // Unmuted: heard again.
    await moderate(owner, 'Grace', '#act-unmute');
    await grace.waitForSelector('#me-status[data-state="speaker"]', { timeout: 5_000 });
    await waitHearing(owner, 1, 'the owner hears Grace after the unmute', 8_000);

    // The owner makes Grace a moderator: her page gains the moderator controls; and back.
    await moderate(owner, 'Grace', '#act-mod');
    await grace.waitForSelector('#end-btn', { state: 'visible', timeout: 5_000 });
    await grace.waitForSelector('#in-room .person[data-name="Linus"] .person-menu', { timeout: 5_000 });
    assert.equal(await owner.textContent('#stage-list .person[data-name="Grace"] .tag.role'), 'moderator');
    await moderate(owner, 'Grace', '#act-unmod');
    await grace.waitForSelector('#end-btn', { state: 'hidden', timeout: 5_000 });
    assert.equal(await grace.count('.person-menu'), 0, 'no actions once unmade');

    // Both seats are taken: inviting Linus is refused in words, and nothing changes.
    await moderate(owner, 'Linus', '#act-grant');
    await owner.waitForSelector('#toast[data-code="no_free_seat"]', { timeout: 5_000 });
    assert.match(await owner.textContent('#toast'), /mic seat/i);
    assert.deepEqual((await stageAndAudience(owner)).audience, ['Linus']);
    await owner.click('#toast-close');

    // The owner removes Linus (with a confirmation that starts on Cancel: Enter keeps him).
    await moderate(owner, 'Linus', '#act-remove');
    await owner.waitForSelector('#confirm[open]', { timeout: 5_000 });
    assert.match(await owner.textContent('#confirm-text'), /Remove Linus/);
    assert.equal(await owner.evaluate(() => document.activeElement && document.activeElement.id), 'confirm-no');
    await pressEnterOnConfirm(owner, engine);
    await owner.waitForSelector('#confirm', { state: 'hidden', timeout: 5_000 });
    assert.ok((await listedNames(owner)).includes('Linus'), 'Enter on the confirmation cancelled the removal');
    await moderate(owner, 'Linus', '#act-remove');
    await owner.waitForSelector('#confirm[open]', { timeout: 5_000 });
    await owner.click('#confirm-yes');
    await linus.waitForSelector('#final[data-reason="removed"]', { timeout: 5_000 });
    assert.match(await linus.textContent('#final-text'), /removed from this room/i);
    assert.equal(await linus.isVisible('#join-btn'), false, 'no way back in from the removed page');
    assert.equal(await linus.evaluate(() => window.chorus.pc), null, 'peer connection closed');
    for (const page of [owner, grace]) {
      await waitFor(async () => !(await listedNames(page)).includes('Linus'),
        { timeoutMs: 5_000, what: 'Linus gone' });
    }
    // Linus reloads (same identity, kept in localStorage): the page says at once that he
    // was removed, with no join form to try.
    await linus.reload();
    await linus.waitForSelector('#final[data-reason="removed"]', { timeout: 5_000 });
    assert.equal(await linus.isVisible('#join-form'), false);

    // A speaker muted by a moderator and then removed sees the removal and nothing else
    // (no "A moderator unmuted you" as her membership is cleared).
    await moderate(owner, 'Grace', '#act-mute');
    await grace.waitForSelector('#toast[data-code="muted_by_moderator"]', { timeout: 5_000 });
    await grace.click('#toast-close');
    await grace.evaluate(() => {
      window.__toasts = [];
      const t = document.getElementById('toast');
      new MutationObserver(() => { if (!t.hidden) window.__toasts.push(t.dataset.code); })
        .observe(t, { attributes: true, childList: true, subtree: true, characterData: true });
    });
    await moderate(owner, 'Grace', '#act-remove');
    await owner.waitForSelector('#confirm[open]', { timeout: 5_000 });
    await owner.click('#confirm-yes');
    await grace.waitForSelector('#final[data-reason="removed"]', { timeout: 5_000 });
    await sleep(1000); // an absence: give a false notice the time it would take to show
    const toasts = await grace.evaluate(() => window.__toasts);
    assert.ok(!toasts.some((c) => c && c !== 'removed'), `only the removal is shown: ${JSON.stringify(toasts)}`);

    // The owner ends the room for everyone (with a confirmation).
    await owner.click('#end-btn');
    await owner.waitForSelector('#confirm[open]', { timeout: 5_000 });
    await owner.click('#confirm-yes');
    await owner.waitForSelector('#final[data-reason="room_closed"]', { timeout: 5_000 });
    assert.match(await owner.textContent('#final-text'), /room has ended/i, 'the owner is told');
    assert.equal(await owner.evaluate(() => window.chorus.pc), null, 'peer connection closed');
    // The link now says the room is not open.
    const api = await getRoom(server.url, room.id);
    assert.ok(api.status === 404 || api.body.room.state === 'ended', `the API no longer offers the room: ${JSON.stringify(api)}`);
    await linus.goto(room.url);
    await linus.waitForSelector('#final', { timeout: 5_000 });
    assert.match(await linus.textContent('#final-text'), /ended|not open|removed/i);
    assert.equal(await linus.isVisible('#join-btn'), false);
  });
});

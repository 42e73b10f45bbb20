// The browser test: a phone listener joins by the room link, is not heard, raises
// a hand, the owner (desktop) invites it to speak, and then the owner hears it.

import assert from 'node:assert/strict';
import { openBrowser } from './browser.mjs';
import {
  waitFor, stageAndAudience, createRoomFromLanding, joinByLink, moderate, sampleInbound,
  audible, waitHearing, assertNoOverflow, withServer, engineTest, snap,
} from './util.mjs';

engineTest('a phone listener raises a hand, gets a seat from the owner, and is then heard', { timeout: 120_000 }, async (engine) => {
  await withServer({}, async ({ server, browsers }) => {
    browsers.push(await openBrowser({ engine }), await openBrowser({ engine, device: 'Pixel 7' }));
    const [{ page: owner }, { page: phone }] = browsers;
    const room = await createRoomFromLanding(owner, server.url, { name: 'Ada', title: 'Town hall', seatMode: 'moderated' });
    // The share box shows the link once the room is live.
    assert.equal(await owner.inputValue('#share-link'), room.url);
    assert.equal(await owner.isVisible('#share'), true);

    await joinByLink(phone, room.url, 'Bo', { touch: true });
    // Bo is in the audience, not sending: no mute button, the mic track disabled.
    await waitFor(async () => (await stageAndAudience(owner)).audience.includes('Bo'),
      { timeoutMs: 10_000, what: 'Bo in the audience on the owner page' });
    const phoneView = await stageAndAudience(phone);
    assert.deepEqual(phoneView.stage, ['Ada'], `phone shows Ada on stage: ${JSON.stringify(phoneView)}`);
    assert.deepEqual(phoneView.audience, ['Bo']);
    assert.equal(phoneView.free, 4, 'four free seats of five');
    assert.equal(await phone.isVisible('#mute-btn'), false, 'a listener has no mute button');
    assert.equal((await phone.textContent('#hand-btn')).trim(), 'Raise hand');
    assert.equal(await phone.evaluate(() => window.chorus.pc.getSenders().every((s) => !s.track || !s.track.enabled)),
      true, 'a listener keeps its mic track disabled');
    await waitFor(() => phone.evaluate(() => window.chorus.pc.connectionState === 'connected'),
      { timeoutMs: 10_000, what: 'phone media connected' });

    // The owner hears nothing from a listener (Bo is the only other participant), even
    // when Bo's microphone track is forced on: the SFU drops a listener's audio.
    await phone.evaluate(() => { window.chorus.pc.getSenders()[0].track.enabled = true; });
    const before = await sampleInbound(owner, 3000);
    assert.equal(audible(before).length, 0, `the owner hears no listener: ${JSON.stringify(before)}`);

    // Bo raises a hand; the owner sees it and invites Bo to speak.
    await phone.tap('#hand-btn');
    await waitFor(() => phone.textContent('#hand-btn').then((t) => t.trim() === 'Lower hand'),
      { timeoutMs: 5_000, what: 'Lower hand offered on the phone' });
    await owner.waitForSelector('#audience-list .person.hand[data-name="Bo"] .hand-icon', { timeout: 5_000 });
    // Lowered and raised again: the owner's page follows.
    await phone.tap('#hand-btn');
    await owner.waitForSelector('#audience-list .person[data-name="Bo"] .hand-icon', { state: 'detached', timeout: 5_000 });
    await phone.tap('#hand-btn');
    await owner.waitForSelector('#audience-list .person.hand[data-name="Bo"] .hand-icon', { timeout: 5_000 });
    await snap(phone, engine, 'phone-room-listener-hand-raised');
    await owner.click('#in-room .person[data-name="Bo"] .person-menu');
    await owner.waitForSelector('#sheet[open]', { timeout: 5_000 });
    await snap(owner, engine, 'desktop-moderator-sheet');
    await owner.click('#sheet-close');
    await owner.waitForSelector('#sheet', { state: 'hidden', timeout: 5_000 });
    await moderate(owner, 'Bo', '#act-grant');

    // Bo is told, on screen and to screen readers.
    await phone.waitForSelector('#toast[data-code="invited"]', { timeout: 5_000 });
    assert.match(await phone.textContent('#announcer'), /invited to speak/i);

    // Within a few seconds the owner hears Bo: Opus, packets growing, level above 0.
    const heard = await waitHearing(owner, 1, 'the owner hears Bo after the grant', 8_000);
    assert.ok(heard.length >= 1);

    // Bo's page shows Bo on stage, with a mute button and a live mic.
    await waitFor(async () => (await stageAndAudience(phone)).stage.includes('Bo'),
      { timeoutMs: 5_000, what: 'Bo on stage on the phone' });
    assert.equal(await phone.getAttribute('#me-status', 'data-state'), 'speaker');
    assert.match(await phone.textContent('#me-status'), /on stage/i);
    assert.equal(await phone.isVisible('#mute-btn'), true);
    assert.equal(await phone.isVisible('#hand-btn'), false);
    assert.equal(await phone.evaluate(() => window.chorus.pc.getSenders().some((s) => s.track && s.track.enabled)),
      true, 'a speaker sends its mic');
    assert.deepEqual((await stageAndAudience(owner)).stage.sort(), ['Ada', 'Bo']);

    await assertNoOverflow(phone, 'on the phone');

    // Bo leaves the seat: back in the audience, mic off, and the owner stops hearing Bo.
    await phone.tap('#seat-leave-btn');
    await waitFor(async () => (await stageAndAudience(phone)).audience.includes('Bo'),
      { timeoutMs: 5_000, what: 'Bo back in the audience' });
    assert.equal(await phone.isVisible('#mute-btn'), false);
    assert.equal(await phone.evaluate(() => window.chorus.pc.getSenders().every((s) => !s.track || !s.track.enabled)),
      true, 'back in the audience, the mic track is disabled again');
    await waitFor(async () => audible(await sampleInbound(owner, 2000)).length === 0,
      { timeoutMs: 8_000, intervalMs: 0, what: 'the owner no longer hears Bo' });
  });
});

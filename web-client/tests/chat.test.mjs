// The group chat beside a room, as users see it: two pages write live (text only, never
// markup), edit and delete, a moderator deletes and mutes in chat; history pages in order
// after a reload; the "New messages" divider and unread counts after being away; and the
// chat of a room that has ended still works for its members. The SDK uses no DOM.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { openBrowser } from './browser.mjs';
import { createRoomFromLanding, joinByLink, waitFor, withServer, engineTest, press } from './util.mjs';

/** What the chat pane shows, oldest first. */
function shown(page) {
  return page.evaluate(() => [...document.querySelectorAll('#chat-log .chat-msg')].map((m) => ({
    seq: Number(m.dataset.seq),
    name: m.querySelector('.chat-name').textContent,
    text: m.querySelector('.chat-text').textContent,
    edited: !m.querySelector('.chat-edited').hidden,
    deleted: m.dataset.deleted === 'true',
  })));
}

/** Wait until the pane shows a message for which `match(message)` holds. */
function waitMessage(page, match, what) {
  return waitFor(async () => (await shown(page)).find(match), { timeoutMs: 10_000, what });
}

/** Type and send in the composer, as a user would; resolves when our own echo shows. */
async function write(page, text, { touch = false } = {}) {
  await page.fill('#chat-input', text);
  await press(page, '#chat-send', touch);
  await waitMessage(page, (m) => m.text === text.trim(), `"${text}" shown to its writer`);
}

/** Open the chat pane on a phone (folded there so the stage fits). */
async function unfold(page) {
  await page.waitForSelector('#chat-toggle', { state: 'visible', timeout: 15_000 });
  await page.tap('#chat-toggle');
  await page.waitForSelector('#chat-log', { state: 'visible', timeout: 5_000 });
}

/** Press an action on the newest message matching `text`. */
async function act(page, text, action, { confirm = false, touch = false } = {}) {
  const seq = (await waitMessage(page, (m) => m.text === text, `"${text}" to act on`)).seq;
  await press(page, `#chat-log .chat-msg[data-seq="${seq}"] button[data-act="${action}"]`, touch);
  if (confirm) {
    await page.waitForSelector('#confirm[open]', { timeout: 5_000 });
    await press(page, '#confirm-yes', touch);
  }
  return seq;
}

/** Send through the page's SDK, paced under the server's limit (10 at once, then 2/s). */
function sendPaced(page, prefix, from, to) {
  return page.evaluate(async ({ prefix, from, to }) => {
    for (let i = from; i <= to; i += 1) {
      for (;;) {
        try {
          await window.chorus.chat.send(`${prefix} ${i}`);
          break;
        } catch (e) {
          if (e.code !== 'rate_limited') throw e;
          await new Promise((r) => { setTimeout(r, 600); });
        }
      }
      if (i - from >= 8) await new Promise((r) => { setTimeout(r, 520); });
    }
  }, { prefix, from, to });
}

test('the chat SDK uses no DOM', async () => {
  const src = await readFile(new URL('../src/sdk/chat.js', import.meta.url), 'utf8');
  assert.ok(!/\bdocument\b|\bwindow\b/.test(src.replace(/\/\/.*$/gm, '').replace(/\/\*[\s\S]*?\*\//g, '')),
    'src/sdk/chat.js uses no DOM');
});

engineTest('two pages chat live: text only, edit, delete, a moderator deletes and mutes in chat', { timeout: 120_000 }, async (engine) => {
  await withServer({}, async ({ server, browsers }) => {
    browsers.push(await openBrowser({ engine }), await openBrowser({ engine, device: 'Pixel 7' }));
    const [owner, guest] = browsers.map((b) => b.page);
    const room = await createRoomFromLanding(owner, server.url, { name: 'Ada', title: 'Chatty' });
    await joinByLink(guest, room.url, 'Grace', { touch: true });
    await owner.waitForSelector('#chat-log', { state: 'visible', timeout: 15_000 });
    assert.equal(await owner.getAttribute('#chat-log', 'role'), 'log');
    assert.equal(await owner.getAttribute('#chat-log', 'aria-live'), 'polite');
    // On the phone the chat is folded behind "Chat" until tapped.
    assert.equal(await guest.isVisible('#chat-log'), false, 'folded on the phone');
    await unfold(guest);

    const markup = '<img src=x onerror=alert(1)>';
    await write(owner, markup);
    await waitMessage(guest, (m) => m.text === markup && m.name === 'Ada', 'the markup as text at the guest');
    for (const page of [owner, guest]) {
      assert.equal(await page.count('#chat-log img'), 0, 'no element made from a message');
    }

    // The guest edits, then deletes its own message.
    await write(guest, 'helo all', { touch: true });
    await waitMessage(owner, (m) => m.text === 'helo all', 'the guest message at the owner');
    await act(guest, 'helo all', 'edit', { touch: true });
    assert.equal(await guest.inputValue('#chat-input'), 'helo all');
    await guest.fill('#chat-input', 'hello all');
    await guest.tap('#chat-send');
    const edited = await waitMessage(owner, (m) => m.text === 'hello all' && m.edited, '"(edited)" at the owner');
    assert.equal((await shown(owner)).filter((m) => m.seq === edited.seq).length, 1, 'replaced in place');
    await act(guest, 'hello all', 'delete', { confirm: true, touch: true });
    await waitMessage(owner, (m) => m.seq === edited.seq && m.deleted && m.text === 'Message deleted',
      '"Message deleted" at the owner');

    // The owner deletes the guest's message.
    await write(guest, 'spam spam', { touch: true });
    const spam = await act(owner, 'spam spam', 'delete', { confirm: true });
    await waitMessage(guest, (m) => m.seq === spam && m.deleted, 'the deletion at the guest');

    // The owner mutes the guest in chat: the composer is disabled with the words why.
    await act(owner, 'Message deleted', 'mute');
    await guest.waitForSelector('#chat-input:disabled', { timeout: 5_000 });
    assert.match(await guest.textContent('#chat-muted-note'), /A moderator muted you in this chat/);
    assert.equal(await guest.isVisible('#chat-muted-note'), true);
    const refused = await guest.evaluate(() => window.chorus.chat.send('let me talk').then(() => 'sent', (e) => e.code));
    assert.equal(refused, 'forbidden', 'the server refuses a muted member');
    assert.equal((await shown(owner)).some((m) => m.text === 'let me talk'), false);
    // Unmuted: the guest writes again.
    await act(owner, 'Message deleted', 'unmute');
    await guest.waitForSelector('#chat-input:enabled', { timeout: 5_000 });
    await write(guest, 'thanks', { touch: true });
    await waitMessage(owner, (m) => m.text === 'thanks' && m.name === 'Grace', 'the guest writes again');
  });
});

test('history: a reload shows the newest page, scrolling up loads older ones in order, no gap, no duplicate', { timeout: 120_000 }, async () => {
  await withServer({}, async ({ server, browsers }) => {
    browsers.push(await openBrowser(), await openBrowser());
    const [owner, guest] = browsers.map((b) => b.page);
    const room = await createRoomFromLanding(owner, server.url, { name: 'Ada', title: 'Long talk' });
    await joinByLink(guest, room.url, 'Grace');
    await guest.waitForSelector('#chat-log', { state: 'visible', timeout: 15_000 });
    // 64 messages from two writers: more than one page (50).
    await Promise.all([sendPaced(owner, 'ada', 1, 32), sendPaced(guest, 'grace', 1, 32)]);
    await waitFor(async () => (await shown(owner)).length === 64, { timeoutMs: 20_000, what: '64 messages live' });

    await owner.reload();
    await owner.waitForSelector('#chat-log .chat-msg', { timeout: 15_000 });
    const first = await shown(owner);
    assert.equal(first.length, 50, 'the newest page');
    assert.deepEqual(first.map((m) => m.seq), Array.from({ length: 50 }, (_, i) => 15 + i));
    // Scrolled to the top, the older ones come in above, in order.
    await owner.evaluate(() => { document.getElementById('chat-log').scrollTop = 0; });
    await waitFor(async () => (await shown(owner)).length === 64, { timeoutMs: 10_000, what: 'the older page' });
    const all = await shown(owner);
    assert.deepEqual(all.map((m) => m.seq), Array.from({ length: 64 }, (_, i) => 1 + i), 'every seq once, in order');
    assert.equal(await owner.isVisible('#chat-older'), false, 'nothing older left');
  });
});

test('away: the returning guest sees "New messages" before what it missed; read, unread is 0', { timeout: 120_000 }, async () => {
  await withServer({}, async ({ server, browsers }) => {
    browsers.push(await openBrowser());
    const owner = browsers[0].page;
    const room = await createRoomFromLanding(owner, server.url, { name: 'Ada', title: 'Back soon' });
    const guestBrowser = await openBrowser({ device: 'Pixel 7' });
    browsers.push(guestBrowser);
    const first = guestBrowser.page;
    await joinByLink(first, room.url, 'Grace', { touch: true });
    await unfold(first);
    await write(first, 'brb', { touch: true });
    await first.raw.close(); // the guest closes the page
    await waitFor(async () => (await owner.evaluate(() => window.chorus.participants.length)) === 1,
      { timeoutMs: 10_000, what: 'the guest gone from the room' });
    for (const text of ['one', 'two', 'three']) {
      await write(owner, text);
    }

    const again = await guestBrowser.newTab(); // and opens the room link again later
    await again.goto(room.url);
    // A member reads the chat before joining again: the divider stands before what it missed.
    await again.waitForSelector('#chat-log .chat-divider', { timeout: 15_000 });
    const order = await again.evaluate(() => [...document.querySelectorAll('#chat-log > *')]
      .map((n) => (n.classList.contains('chat-divider') ? '|new|' : n.querySelector('.chat-text').textContent)));
    assert.deepEqual(order.slice(-5), ['brb', '|new|', 'one', 'two', 'three']);
    await again.evaluate(() => { const log = document.getElementById('chat-log'); log.scrollTop = log.scrollHeight; });
    const unread = await waitFor(async () => {
      const groups = await again.evaluate(() => window.chorus.chat.unread());
      const mine = groups.find((g) => g.room === room.id);
      return mine && mine.unread === 0 ? mine : null;
    }, { timeoutMs: 10_000, what: 'unread 0 for the room' });
    assert.equal(unread.unread, 0);
  });
});

test('the chat of an ended room: the owner still reads and writes in it', { timeout: 90_000 }, async () => {
  await withServer({}, async ({ server, browsers }) => {
    browsers.push(await openBrowser());
    const owner = browsers[0].page;
    await createRoomFromLanding(owner, server.url, { name: 'Ada', title: 'Over soon' });
    await owner.waitForSelector('#chat-log', { state: 'visible', timeout: 15_000 });
    await write(owner, 'before the end');
    await owner.click('#end-btn');
    await owner.waitForSelector('#confirm[open]', { timeout: 5_000 });
    await owner.click('#confirm-yes');
    await owner.waitForSelector('#final:not([hidden])', { timeout: 10_000 });
    await owner.waitForSelector('#chat-log', { state: 'visible', timeout: 5_000 });
    await write(owner, 'after the end');
    await owner.reload();
    await owner.waitForSelector('#final:not([hidden])', { timeout: 10_000 });
    await waitMessage(owner, (m) => m.text === 'after the end', 'the chat after a reload of the ended room');
    assert.ok((await shown(owner)).some((m) => m.text === 'before the end'));
    await write(owner, 'still here');
  });
});

// Chat attachments, as users see them (Chromium): a picture posted by one page shows as a
// thumbnail at the other; the same picture sent again is "already uploaded" (no bytes
// sent, nothing fetched again anywhere) and the stored file is byte for byte the original;
// any other file is a download link "name (size)" that saves the same bytes; a file the
// server refuses shows the server's words and posts nothing.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { deflateSync } from 'node:zlib';
import { openBrowser } from './browser.mjs';
import { createRoomFromLanding, joinByLink, waitFor, withServer } from './util.mjs';

const sha = (buf) => createHash('sha256').update(buf).digest('hex');

// ------------------------------------------------------------------ a real PNG

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k += 1) {
    c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return c >>> 0;
});

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) {
    c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  }
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** A `width`×`height` RGB PNG: gradients with noise, so it is not constant and not tiny. */
function makePng(width, height, seed = 1) {
  let x = seed;
  const noise = () => {
    x = (x * 1103515245 + 12345) >>> 0;
    return (x >>> 16) & 0x3f;
  };
  const rows = [];
  for (let y = 0; y < height; y += 1) {
    const row = Buffer.alloc(1 + width * 3);
    row[0] = 0; // filter: none
    for (let i = 0; i < width; i += 1) {
      row[1 + i * 3] = (i * 255 / width + noise()) & 0xff;
      row[2 + i * 3] = (y * 255 / height + noise()) & 0xff;
      row[3 + i * 3] = ((i ^ y) + noise()) & 0xff;
    }
    rows.push(row);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: RGB
  ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.concat(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

// ------------------------------------------------------------------ the pages

/** Every request a page makes to the attachments API: { method, path }. */
function recordRequests(page) {
  const seen = [];
  page.raw.on('request', (r) => {
    const u = new URL(r.url());
    if (/^\/api\/rooms\/[^/]+\/attachments(\/|$)/.test(u.pathname)) {
      seen.push({ method: r.method(), path: u.pathname });
    }
  });
  return seen;
}

/** Keep, in the page, every state the upload area went through (window.__uploadStates). */
function watchUpload(page) {
  return page.evaluate(() => {
    window.__uploadStates = [];
    const box = document.getElementById('chat-upload');
    const take = () => {
      window.__uploadStates.push({
        visible: !box.hidden && box.getClientRects().length > 0,
        name: document.getElementById('chat-upload-name').textContent,
        pct: document.getElementById('chat-upload-pct').textContent,
        bar: document.getElementById('chat-upload-bar').tagName,
        cancel: !document.getElementById('chat-upload-cancel').hidden,
      });
    };
    new MutationObserver(take).observe(box, { subtree: true, childList: true, characterData: true, attributes: true });
  });
}

/** The messages shown, with what they carry. */
function shown(page) {
  return page.evaluate(() => [...document.querySelectorAll('#chat-log .chat-msg')].map((m) => {
    const img = m.querySelector('.chat-att img');
    const link = m.querySelector('.chat-att a.chat-att-file');
    return {
      seq: Number(m.dataset.seq),
      name: m.querySelector('.chat-name').textContent,
      text: m.querySelector('.chat-text').textContent,
      kind: m.dataset.attachment || '',
      img: img ? {
        alt: img.alt, src: img.src, naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight, complete: img.complete,
      } : null,
      link: link ? { text: link.textContent, download: link.getAttribute('download') } : null,
    };
  }));
}

function waitMessage(page, match, what) {
  return waitFor(async () => (await shown(page)).find(match), { timeoutMs: 15_000, what });
}

/** The page's message objects (from the chat SDK), with their attachments. */
function sdkMessages(page) {
  return page.evaluate(() => window.chorus.chat.state.messages);
}

/** Fetch the full file through the page's SDK and hash it there. */
function fetchedHash(page, room, hash) {
  return page.evaluate(async ({ room, hash }) => {
    const blob = await window.chorus.attachments.fetchBlob(room, hash);
    const digest = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer());
    return { size: blob.size, hash: [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('') };
  }, { room, hash });
}

function attach(page, file) {
  return page.raw.setInputFiles('[data-chat-file]', file);
}

async function twoInAChat(server, browsers) {
  browsers.push(await openBrowser(), await openBrowser({ device: 'Pixel 7' }));
  const [ada, grace] = browsers.map((b) => b.page);
  const room = await createRoomFromLanding(ada, server.url, { name: 'Ada', title: 'Pictures' });
  await joinByLink(grace, room.url, 'Grace', { touch: true });
  await ada.waitForSelector('#chat-log', { state: 'visible', timeout: 15_000 });
  // On the phone the chat is folded behind "Chat".
  await grace.waitForSelector('#chat-toggle', { state: 'visible', timeout: 15_000 });
  await grace.tap('#chat-toggle');
  await grace.waitForSelector('#chat-log', { state: 'visible', timeout: 5_000 });
  for (const page of [ada, grace]) {
    // A real, labelled button; the file input itself is hidden.
    await page.waitForSelector('#chat-attach', { state: 'visible', timeout: 5_000 });
    assert.equal(await page.evaluate(() => document.getElementById('chat-attach').tagName), 'BUTTON');
    assert.equal(await page.getAttribute('#chat-attach', 'aria-label'), 'Attach a file');
    assert.equal(await page.isVisible('[data-chat-file]'), false);
  }
  return { ada, grace, room };
}

test('a picture: a thumbnail at the other page; sent again it is "already uploaded", nothing sent or fetched again; the bytes are the same', { timeout: 120_000 }, async () => {
  await withServer({}, async ({ server, browsers }) => {
    const { ada, grace, room } = await twoInAChat(server, browsers);
    const adaRequests = recordRequests(ada);
    const graceRequests = recordRequests(grace);
    const png = makePng(200, 150);
    assert.ok(png.length > 4096, `a PNG of a few KB (${png.length} bytes)`);
    const hash = sha(png);

    await watchUpload(ada);
    await ada.fill('#chat-input', 'look at this');
    await attach(ada, { name: 'cat.png', mimeType: 'image/png', buffer: png });
    const atGrace = await waitFor(async () => (await shown(grace))
      .find((m) => m.name === 'Ada' && m.kind === 'image' && m.img && m.img.complete && m.img.naturalWidth > 0),
    { timeoutMs: 20_000, what: 'the thumbnail at Grace' });
    assert.equal(atGrace.img.alt, 'cat.png');
    assert.equal(atGrace.text, 'look at this', 'the composer words go with the file');
    assert.match(atGrace.img.src, /^blob:/, 'shown through an object URL');
    assert.ok(atGrace.img.naturalWidth <= 320 && atGrace.img.naturalHeight <= 320, 'a thumbnail, at most 320×320');
    const atAda = await waitMessage(ada, (m) => m.seq === atGrace.seq && m.img && m.img.naturalWidth > 0, 'the thumbnail at Ada');
    assert.equal(atAda.img.alt, 'cat.png');
    assert.equal(await ada.inputValue('#chat-input'), '', 'the composer is emptied');

    // Ada's upload: asked first, then sent bytes; the bar showed the name and a percent.
    assert.deepEqual(adaRequests.filter((r) => r.method !== 'GET').map((r) => r.method).slice(0, 2), ['POST', 'PATCH']);
    assert.ok(adaRequests.every((r) => r.path.startsWith(`/api/rooms/${room.id}/attachments`)));
    const states = await ada.evaluate(() => window.__uploadStates);
    assert.ok(states.some((st) => st.visible && st.name === 'cat.png' && /^\d+%$/.test(st.pct) && st.cancel),
      `a progress bar with the name and percent: ${JSON.stringify(states)}`);
    assert.equal(await ada.isVisible('#chat-upload'), false, 'gone once sent');
    assert.notEqual(await ada.textContent('#chat-attach-status'), 'already uploaded');

    const [message] = (await sdkMessages(grace)).filter((m) => m.seq === atGrace.seq);
    assert.deepEqual(message.attachment, {
      hash, name: 'cat.png', size: png.length, type: 'image/png', image: { width: 200, height: 150 },
    });
    assert.ok(graceRequests.some((r) => r.method === 'GET' && r.path === `/api/rooms/${room.id}/attachments/${hash}/thumbnail`));

    // Grace sends the same picture: the server has it, nothing is uploaded, it posts at once.
    const adaBefore = adaRequests.length;
    const graceBefore = graceRequests.length;
    await attach(grace, { name: 'same-cat.png', mimeType: 'image/png', buffer: png });
    await grace.waitForFunction(() => document.getElementById('chat-attach-status').textContent === 'already uploaded',
      null, { timeout: 15_000 });
    const again = await waitMessage(grace, (m) => m.name === 'Grace (you)' && m.kind === 'image' && m.img
      && m.img.naturalWidth > 0, 'the same picture from Grace, shown to her');
    assert.equal(again.img.alt, 'same-cat.png');
    await waitMessage(ada, (m) => m.seq === again.seq && m.img && m.img.naturalWidth > 0, 'the same picture from Grace at Ada');
    const graceNew = graceRequests.slice(graceBefore);
    assert.deepEqual(graceNew.filter((r) => r.method === 'PATCH'), [], 'Grace sent no bytes');
    assert.deepEqual(graceNew.map((r) => `${r.method} ${r.path}`), [`POST /api/rooms/${room.id}/attachments`],
      'Grace only asked (its thumbnail was at hand already)');
    assert.deepEqual(adaRequests.slice(adaBefore), [], 'Ada fetched nothing more for the same picture');

    // The stored file is the original, byte for byte.
    assert.deepEqual(await fetchedHash(grace, room.id, hash), { size: png.length, hash });
  });
});

test('any other file: a download link "name (size)" that saves the same bytes', { timeout: 120_000 }, async () => {
  await withServer({}, async ({ server, browsers }) => {
    const { ada, grace, room } = await twoInAChat(server, browsers);
    const data = randomBytes(300 * 1024 + 123);
    const hash = sha(data);
    await watchUpload(ada);
    await attach(ada, { name: 'data.bin', mimeType: 'application/octet-stream', buffer: data });
    const atGrace = await waitMessage(grace, (m) => m.name === 'Ada' && m.kind === 'file', 'the file at Grace');
    assert.deepEqual(atGrace.link, { text: 'data.bin (300 KB)', download: 'data.bin' });
    assert.equal(atGrace.img, null, 'no picture for a file');
    assert.equal(await grace.isVisible(`#chat-log .chat-msg[data-seq="${atGrace.seq}"] .chat-text`), false,
      'no empty line for a file sent without words');
    const states = await ada.evaluate(() => window.__uploadStates);
    assert.ok(states.some((st) => st.visible && st.name === 'data.bin' && /^\d+%$/.test(st.pct)), JSON.stringify(states));

    // The link saves the file under its name, the same bytes.
    const link = `#chat-log .chat-msg[data-seq="${atGrace.seq}"] a.chat-att-file`;
    const [download] = await Promise.all([
      grace.raw.waitForEvent('download', { timeout: 15_000 }),
      grace.raw.tap(link),
    ]);
    assert.equal(download.suggestedFilename(), 'data.bin');
    const saved = await readFile(await download.path());
    assert.equal(saved.length, data.length);
    assert.equal(sha(saved), hash, 'the download is byte-identical');
    assert.deepEqual(await fetchedHash(grace, room.id, hash), { size: data.length, hash });
    const [message] = (await sdkMessages(ada)).filter((m) => m.seq === atGrace.seq);
    assert.equal(message.attachment.type, 'application/octet-stream');
    assert.equal(message.attachment.image, undefined);
  });
});

test('a file the server refuses: its words are shown and nothing is posted', { timeout: 90_000 }, async () => {
  await withServer({}, async ({ server, browsers }) => {
    const { ada, grace } = await twoInAChat(server, browsers);
    const answers = [];
    ada.raw.on('response', async (r) => {
      if (/\/attachments(\/|$)/.test(new URL(r.url()).pathname) && r.status() >= 400) {
        answers.push({ status: r.status(), body: await r.json().catch(() => null) });
      }
    });
    // Declared a PNG, but not one: the server cannot decode it.
    await attach(ada, { name: 'broken.png', mimeType: 'image/png', buffer: randomBytes(5000) });
    await ada.waitForSelector('#toast:not([hidden])', { timeout: 15_000 });
    const refusal = await waitFor(() => answers[0], { what: 'the refusal' });
    assert.equal(refusal.status, 422);
    assert.equal(refusal.body.code, 'invalid_image');
    assert.equal(await ada.getAttribute('#toast', 'data-code'), 'invalid_image');
    const words = (await ada.textContent('#toast-text')).toLowerCase();
    assert.ok(words.includes(refusal.body.message.toLowerCase().replace(/[.!?]$/, '')),
      `the server's words (${refusal.body.message}) shown: ${words}`);
    assert.equal(await ada.isVisible('#chat-upload'), false);
    await ada.fill('#chat-input', 'after the refusal');
    await ada.click('#chat-send');
    await waitMessage(grace, (m) => m.text === 'after the refusal', 'the next message');
    assert.deepEqual((await shown(grace)).filter((m) => m.kind), [], 'no attachment was posted');
  });
});

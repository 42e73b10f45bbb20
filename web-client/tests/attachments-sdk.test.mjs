// The attachments SDK (src/sdk/attachments.js) against an in-process fake of the server's
// HTTP API (the SPEC flow): known files upload nothing; chunks go from the server's offset
// at most `chunk` bytes each; a 409 resumes from the server's offset; a network failure
// asks again (POST) where to resume; refusals carry the server's code and message.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { Attachments, AttachmentError, humanSize } from '../src/sdk/attachments.js';

const sha = (buf) => createHash('sha256').update(buf).digest('hex');

/** A fake server: `fetch(url, init)` as the browser would call it; `log` of requests. */
function fakeServer({ chunk = 1000, known = [], failPatch = () => null, limit = Infinity } = {}) {
  const stored = new Map(known.map((h) => [h, true]));
  const partial = new Map(); // hash -> Buffer so far
  const log = [];
  const json = (status, body) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
  const fetchImpl = async (url, init = {}) => {
    if (init.signal && init.signal.aborted) throw new DOMException('aborted', 'AbortError');
    const u = new URL(url);
    const method = init.method || 'GET';
    const headers = Object.fromEntries(Object.entries(init.headers || {}).map(([k, v]) => [k.toLowerCase(), v]));
    const entry = { method, path: u.pathname, headers };
    log.push(entry);
    if (headers.authorization !== 'Bearer tok') return json(401, { code: 'unauthorized', message: 'who are you' });
    const m = /^\/api\/rooms\/([^/]+)\/attachments(?:\/([0-9a-f]{64}))?(\/thumbnail)?$/.exec(u.pathname);
    if (!m) return json(404, { code: 'not_found', message: 'no' });
    const [, , hash] = m;
    if (method === 'POST') {
      const b = JSON.parse(init.body);
      entry.body = b;
      if (b.size > limit) return json(413, { code: 'too_large', message: 'The file is too large (at most 1 KB).' });
      if (stored.has(b.hash)) return json(200, { status: 'known', hash: b.hash, size: b.size });
      if (!partial.has(b.hash)) partial.set(b.hash, { bytes: Buffer.alloc(0), size: b.size });
      return json(200, { status: 'upload', hash: b.hash, offset: partial.get(b.hash).bytes.length, chunk });
    }
    if (method === 'PATCH') {
      const p = partial.get(hash);
      if (!p) return json(404, { code: 'attachment_not_found', message: 'POST first' });
      const off = Number(headers['upload-offset']);
      entry.offset = off;
      assert.equal(headers['content-type'], 'application/offset+octet-stream');
      const body = Buffer.from(await init.body.arrayBuffer());
      entry.len = body.length;
      assert.ok(body.length <= chunk, `chunk of ${body.length} > ${chunk}`);
      const injected = failPatch(entry, p);
      if (injected === 'network') throw new TypeError('Failed to fetch');
      if (injected === 'network-after') {
        // The bytes arrived, the answer was lost.
        if (off === p.bytes.length) p.bytes = Buffer.concat([p.bytes, body]);
        throw new TypeError('Failed to fetch');
      }
      if (off !== p.bytes.length) {
        return json(409, { code: 'upload_offset', message: 'wrong offset', offset: p.bytes.length });
      }
      p.bytes = Buffer.concat([p.bytes, body]);
      if (p.bytes.length >= p.size) {
        partial.delete(hash);
        if (sha(p.bytes) !== hash) return json(422, { code: 'hash_mismatch', message: 'The file arrived damaged.' });
        stored.set(hash, p.bytes);
        return json(200, { status: 'stored', hash, size: p.size });
      }
      return json(200, { status: 'upload', hash, offset: p.bytes.length });
    }
    if (method === 'GET') {
      const bytes = stored.get(hash);
      if (!bytes) return json(404, { code: 'attachment_not_found', message: 'no such attachment' });
      return new Response(m[3] ? Buffer.from('thumb') : bytes, { status: 200 });
    }
    return json(405, { code: 'method', message: 'no' });
  };
  return { fetchImpl, log, stored, partial };
}

const file = (buf, type = 'image/png', name = 'cat.png') => new File([buf], name, { type });

function client(server) {
  return new Attachments({ server: 'http://chorus.test/', token: () => 'tok', fetch: server.fetchImpl });
}

test('a new file: POST, then PATCHes of at most `chunk` bytes in order, progress = bytes acknowledged', async () => {
  const buf = randomBytes(4500);
  const srv = fakeServer({ chunk: 1000 });
  const seen = [];
  const out = await client(srv).upload('room1', file(buf), { onProgress: (p) => seen.push(p) });
  assert.deepEqual(out, { hash: sha(buf), size: 4500, type: 'image/png', name: 'cat.png', known: false });
  assert.deepEqual(srv.log.map((r) => r.method), ['POST', 'PATCH', 'PATCH', 'PATCH', 'PATCH', 'PATCH']);
  assert.deepEqual(srv.log[0].body, { hash: sha(buf), size: 4500, type: 'image/png', name: 'cat.png' });
  assert.equal(srv.log[0].path, '/api/rooms/room1/attachments');
  assert.deepEqual(srv.log.slice(1).map((r) => [r.offset, r.len]), [[0, 1000], [1000, 1000], [2000, 1000], [3000, 1000], [4000, 500]]);
  assert.ok(Buffer.from(srv.stored.get(sha(buf))).equals(buf));
  const uploading = seen.filter((p) => p.phase === 'uploading').map((p) => p.loaded);
  assert.deepEqual(uploading, [0, 1000, 2000, 3000, 4000]);
  assert.deepEqual(seen.at(-1), { phase: 'done', loaded: 4500, total: 4500 });
});

test('a known file: nothing uploaded, onKnown told', async () => {
  const buf = randomBytes(3000);
  const srv = fakeServer({ known: [sha(buf)] });
  let told = null;
  const out = await client(srv).upload('r', file(buf), { onKnown: (k) => { told = k; } });
  assert.equal(out.known, true);
  assert.deepEqual(told, { hash: sha(buf), size: 3000 });
  assert.deepEqual(srv.log.map((r) => r.method), ['POST']);
});

test('a type-less file is declared application/octet-stream', async () => {
  const srv = fakeServer();
  await client(srv).upload('r', new File([randomBytes(10)], 'x.bin'));
  assert.equal(srv.log[0].body.type, 'application/octet-stream');
});

test('an empty file still sends one PATCH, which stores it', async () => {
  const srv = fakeServer();
  const out = await client(srv).upload('r', new File([], 'empty.txt', { type: 'text/plain' }));
  assert.equal(out.known, false);
  assert.deepEqual(srv.log.map((r) => [r.method, r.len]), [['POST', undefined], ['PATCH', 0]]);
});

test('a resumed upload starts at the offset the POST names', async () => {
  const buf = randomBytes(2500);
  const srv = fakeServer({ chunk: 1000 });
  srv.partial.set(sha(buf), { bytes: buf.subarray(0, 1500), size: 2500 });
  await client(srv).upload('r', file(buf));
  assert.deepEqual(srv.log.filter((r) => r.method === 'PATCH').map((r) => [r.offset, r.len]), [[1500, 1000]]);
  assert.ok(Buffer.from(srv.stored.get(sha(buf))).equals(buf));
});

test('409 upload_offset: resume from the offset the server has', async () => {
  const buf = randomBytes(3000);
  const srv = fakeServer({ chunk: 1000 });
  // Another attempt of ours already got the first 2000 bytes there after our POST.
  let once = false;
  srv.fetchImpl = ((inner) => async (url, init) => {
    if (init && init.method === 'PATCH' && !once) {
      once = true;
      srv.partial.get(sha(buf)).bytes = buf.subarray(0, 2000);
    }
    return inner(url, init);
  })(srv.fetchImpl);
  await client(srv).upload('r', file(buf));
  assert.deepEqual(srv.log.filter((r) => r.method === 'PATCH').map((r) => r.offset), [0, 2000]);
  assert.ok(Buffer.from(srv.stored.get(sha(buf))).equals(buf));
});

test('a network failure mid-upload: POST again and go on from its offset', async () => {
  const buf = randomBytes(4000);
  let failures = 0;
  const srv = fakeServer({
    chunk: 1000,
    failPatch: (e) => {
      if (e.offset === 1000 && failures === 0) { failures += 1; return 'network-after'; }
      if (e.offset === 3000 && failures === 1) { failures += 1; return 'network'; }
      return null;
    },
  });
  await client(srv).upload('r', file(buf));
  assert.deepEqual(srv.log.map((r) => (r.method === 'PATCH' ? r.offset : r.method)),
    ['POST', 0, 1000, 'POST', 2000, 3000, 'POST', 3000]);
  assert.ok(Buffer.from(srv.stored.get(sha(buf))).equals(buf));
});

test('the network gone for good: a few retries, then an error', async () => {
  const buf = randomBytes(2000);
  const srv = fakeServer({ chunk: 1000, failPatch: () => 'network' });
  const c = new Attachments({ server: 'http://chorus.test/', token: () => 'tok', fetch: srv.fetchImpl, retries: 2 });
  await assert.rejects(c.upload('r', file(buf)), (e) => e instanceof AttachmentError && e.code === 'network');
  assert.equal(srv.log.filter((r) => r.method === 'PATCH').length, 3);
});

test('refusals carry the server code and message', async () => {
  const srv = fakeServer({ limit: 1024 });
  await assert.rejects(client(srv).upload('r', file(randomBytes(2000))), (e) => e instanceof AttachmentError
    && e.code === 'too_large' && e.status === 413 && e.message === 'The file is too large (at most 1 KB).');
  const noAuth = new Attachments({ server: 'http://chorus.test/', token: () => 'bad', fetch: srv.fetchImpl });
  await assert.rejects(noAuth.upload('r', file(randomBytes(10))), (e) => e.code === 'unauthorized' && e.message === 'who are you');
});

test('hash_mismatch is an error with the server words', async () => {
  const buf = randomBytes(1500);
  const srv = fakeServer({ chunk: 1000, failPatch: () => null });
  const damaged = new File([Buffer.concat([buf.subarray(0, 1000), randomBytes(500)])], 'x.png', { type: 'image/png' });
  // Declare the hash of `buf` but send other bytes: hash the real file, swap the slice.
  const c = client(srv);
  const real = file(buf);
  real.slice = (a, b) => damaged.slice(a, b);
  await assert.rejects(c.upload('r', real), (e) => e.code === 'hash_mismatch' && e.status === 422);
});

test('cancel: an AbortError, and nothing more is sent', async () => {
  const buf = randomBytes(5000);
  const ctl = new AbortController();
  const srv = fakeServer({ chunk: 1000, failPatch: (e) => { if (e.offset === 2000) ctl.abort(); return null; } });
  await assert.rejects(client(srv).upload('r', file(buf), { signal: ctl.signal }), (e) => e.name === 'AbortError');
  assert.equal(srv.log.filter((r) => r.method === 'PATCH').length, 3);
});

test('fetchBlob: the file and its thumbnail with the token; a refusal is an AttachmentError', async () => {
  const buf = randomBytes(1234);
  const srv = fakeServer({ chunk: 1000 });
  const c = client(srv);
  const { hash } = await c.upload('r', file(buf));
  const blob = await c.fetchBlob('r', hash);
  assert.ok(Buffer.from(await blob.arrayBuffer()).equals(buf));
  const thumb = await c.fetchBlob('r', hash, { thumbnail: true });
  assert.equal(await thumb.text(), 'thumb');
  assert.equal(srv.log.at(-1).path, `/api/rooms/r/attachments/${hash}/thumbnail`);
  assert.equal(srv.log.at(-1).headers.authorization, 'Bearer tok');
  await assert.rejects(c.fetchBlob('r', 'a'.repeat(64)), (e) => e.code === 'attachment_not_found' && e.status === 404);
});

test('humanSize', () => {
  assert.equal(humanSize(0), '0 B');
  assert.equal(humanSize(1023), '1023 B');
  assert.equal(humanSize(1024), '1 KB');
  assert.equal(humanSize(1536), '1.5 KB');
  assert.equal(humanSize(300 * 1024), '300 KB');
  assert.equal(humanSize(50 * 1024 * 1024), '50 MB');
  assert.equal(humanSize(3.4 * 1024 * 1024), '3.4 MB');
});

test('the attachments SDK uses no DOM', async () => {
  const src = await readFile(new URL('../src/sdk/attachments.js', import.meta.url), 'utf8');
  assert.ok(!/\bdocument\b|\bwindow\b/.test(src.replace(/\/\/.*$/gm, '').replace(/\/\*[\s\S]*?\*\//g, '')));
});

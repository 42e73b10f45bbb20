// The page's own SHA-256 (src/sdk/sha256.js) against node's: the padding edges (55, 56,
// 63, 64, 65 bytes), empty input, and megabytes fed in odd-sized pieces; and hashFile,
// both through WebCrypto (small files) and sliced through the incremental hash (big ones).

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { Sha256, hashFile, WHOLE_FILE_MAX, SLICE_BYTES } from '../src/sdk/sha256.js';

const nodeHex = (buf) => createHash('sha256').update(buf).digest('hex');

function ours(buf, pieces = [buf.length]) {
  const h = new Sha256();
  let at = 0;
  for (const n of pieces) {
    h.update(new Uint8Array(buf.buffer, buf.byteOffset + at, Math.min(n, buf.length - at)));
    at += n;
  }
  assert.equal(at >= buf.length, true, 'every byte fed');
  return h.digestHex();
}

test('known answers', () => {
  assert.equal(new Sha256().digestHex(), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  assert.equal(new Sha256().update(new TextEncoder().encode('abc')).digestHex(),
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});

test('the padding edges and small inputs match node', () => {
  for (const n of [0, 1, 2, 3, 31, 32, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000]) {
    const buf = randomBytes(n);
    assert.equal(ours(buf), nodeHex(buf), `${n} bytes in one piece`);
    // And byte by byte, which crosses every block boundary inside update().
    assert.equal(ours(buf, Array(n).fill(1)), nodeHex(buf), `${n} bytes one at a time`);
  }
  const same = Buffer.alloc(64, 0x61);
  assert.equal(ours(same), nodeHex(same), '64 x "a"');
});

test('a few random megabytes in odd-sized pieces match node', () => {
  const buf = randomBytes(3 * 1024 * 1024 + 17);
  const pieces = [];
  let left = buf.length;
  const sizes = [1, 63, 65, 7, 4096, 100_003, 13, 64, 1_000_001, 777];
  for (let i = 0; left > 0; i += 1) {
    const n = Math.min(left, sizes[i % sizes.length]);
    pieces.push(n);
    left -= n;
  }
  assert.equal(ours(buf, pieces), nodeHex(buf));
  assert.equal(ours(buf), nodeHex(buf), 'in one piece');
});

test('update accepts ArrayBuffers and other views; digest twice throws', () => {
  const buf = randomBytes(200);
  const h = new Sha256();
  h.update(buf.buffer.slice(buf.byteOffset, buf.byteOffset + 100));
  h.update(new DataView(buf.buffer, buf.byteOffset + 100, 100));
  assert.equal(h.digestHex(), nodeHex(buf));
  assert.throws(() => h.digestHex());
  assert.throws(() => h.update(new Uint8Array(1)));
});

/** A Blob that counts how many bytes any one read asked for. */
function countingBlob(buf) {
  const blob = new Blob([buf]);
  const reads = [];
  const wrap = (b, offset) => ({
    size: b.size,
    slice(start = 0, end = b.size) {
      return wrap(b.slice(start, end), offset + start);
    },
    async arrayBuffer() {
      reads.push(b.size);
      return b.arrayBuffer();
    },
  });
  return { file: wrap(blob, 0), reads };
}

test('hashFile: a small file through WebCrypto, in one read', async () => {
  const buf = randomBytes(100_000);
  const { file, reads } = countingBlob(buf);
  const seen = [];
  assert.equal(await hashFile(file, (loaded, total) => seen.push([loaded, total])), nodeHex(buf));
  assert.deepEqual(reads, [buf.length]);
  assert.deepEqual(seen.at(-1), [buf.length, buf.length]);
  assert.equal(await hashFile(new Blob([])), nodeHex(Buffer.alloc(0)), 'empty file');
});

test('hashFile: a file over 16 MiB is read 4 MiB at a time, never whole', async () => {
  const buf = randomBytes(WHOLE_FILE_MAX + 5 * 1024 * 1024 + 3);
  const { file, reads } = countingBlob(buf);
  const seen = [];
  assert.equal(await hashFile(file, (loaded) => seen.push(loaded)), nodeHex(buf));
  assert.ok(reads.length >= 6, `read in slices: ${reads}`);
  assert.ok(Math.max(...reads) <= SLICE_BYTES, 'no read bigger than a slice');
  assert.equal(reads.reduce((a, b) => a + b, 0), buf.length, 'every byte read once');
  assert.deepEqual(seen, [...seen].sort((a, b) => a - b), 'progress only grows');
  assert.equal(seen.at(-1), buf.length);
});

test('hashFile: stops when aborted', async () => {
  const buf = randomBytes(WHOLE_FILE_MAX + 1);
  const ctl = new AbortController();
  const p = hashFile(new Blob([buf]), () => ctl.abort(), { signal: ctl.signal });
  await assert.rejects(p, (e) => e.name === 'AbortError');
});

test('the hash module uses no DOM', async () => {
  const src = await readFile(new URL('../src/sdk/sha256.js', import.meta.url), 'utf8');
  assert.ok(!/\bdocument\b|\bwindow\b/.test(src.replace(/\/\/.*$/gm, '').replace(/\/\*[\s\S]*?\*\//g, '')));
});

// Draws the app icons (icons/icon-192.png, icons/icon-512.png) without an image library:
// three rounded voice bars on the accent blue, maskable (the bars sit in the safe zone).
// Run once with `node tools/make-icons.mjs`; the PNGs are committed.

import { writeFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';

const BG = [0x2f, 0x5b, 0xea];
const FG = [0xff, 0xff, 0xff];
// Bars as fractions of the size: [centre x, half height].
const BARS = [[0.34, 0.13], [0.5, 0.22], [0.66, 0.13]];
const HALF_WIDTH = 0.045;

function crc32(buf) {
  let c = ~0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k += 1) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

function inBar(x, y) {
  for (const [cx, hh] of BARS) {
    // A capsule: a vertical segment with round ends.
    const dy = Math.max(0, Math.abs(y - 0.5) - hh);
    const dx = x - cx;
    if (dx * dx + dy * dy <= HALF_WIDTH * HALF_WIDTH) return true;
  }
  return false;
}

function png(size) {
  const rows = [];
  for (let y = 0; y < size; y += 1) {
    const row = Buffer.alloc(1 + size * 3);
    for (let x = 0; x < size; x += 1) {
      // 4 samples per pixel for smooth edges.
      let on = 0;
      for (const [sx, sy] of [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]) {
        on += inBar((x + sx) / size, (y + sy) / size) ? 1 : 0;
      }
      const a = on / 4;
      for (let c = 0; c < 3; c += 1) row[1 + x * 3 + c] = Math.round(BG[c] * (1 - a) + FG[c] * a);
    }
    rows.push(row);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.concat(rows), { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const here = new URL('../icons/', import.meta.url);
for (const size of [192, 512]) {
  writeFileSync(new URL(`icon-${size}.png`, here), png(size));
}

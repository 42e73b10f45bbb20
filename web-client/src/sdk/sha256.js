// SHA-256 (FIPS 180-4) for attachments, with no DOM: the whole file's hash is what the
// server is asked about first (docs: web-client/README.md, "Attachments"). Small files
// go through WebCrypto in one call; big ones are read a slice at a time into the
// incremental hash below, so a 50 MB file is never held in memory at once.

/** The round constants: the first 32 bits of the cube roots' fractions of the first 64 primes. */
const K = Uint32Array.of(
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
);

/** The initial state: the first 32 bits of the square roots' fractions of the first 8 primes. */
const H0 = Uint32Array.of(0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19);

const BLOCK = 64;

/** Files up to this size are hashed by `crypto.subtle.digest` in one piece. */
export const WHOLE_FILE_MAX = 16 * 1024 * 1024;
/** Bigger files are read in slices of this size. */
export const SLICE_BYTES = 4 * 1024 * 1024;

const rotr = (x, n) => (x >>> n) | (x << (32 - n));

/**
 * An incremental SHA-256: `update()` with the bytes in any number of pieces, then
 * `digest()` (32 bytes) or `digestHex()` (64 lowercase hex digits), once.
 */
export class Sha256 {
  constructor() {
    this._h = Uint32Array.from(H0);
    this._w = new Uint32Array(64);
    this._block = new Uint8Array(BLOCK); // bytes waiting for a whole block
    this._filled = 0;
    this._bytes = 0; // total length so far (exact up to 2^53)
    this._done = false;
  }

  /** Add bytes (a Uint8Array, an ArrayBuffer or another typed-array view). */
  update(data) {
    if (this._done) {
      throw new Error('sha256: update() after digest()');
    }
    const bytes = data instanceof Uint8Array ? data
      : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
        : new Uint8Array(data);
    let at = 0;
    const n = bytes.length;
    this._bytes += n;
    if (this._filled > 0) {
      const take = Math.min(BLOCK - this._filled, n);
      this._block.set(bytes.subarray(0, take), this._filled);
      this._filled += take;
      at = take;
      if (this._filled < BLOCK) {
        return this;
      }
      this._compress(this._block, 0);
      this._filled = 0;
    }
    for (; at + BLOCK <= n; at += BLOCK) {
      this._compress(bytes, at);
    }
    if (at < n) {
      this._block.set(bytes.subarray(at), 0);
      this._filled = n - at;
    }
    return this;
  }

  /** The hash of everything given (32 bytes). The object is finished afterwards. */
  digest() {
    if (this._done) {
      throw new Error('sha256: digest() twice');
    }
    // Padding: 0x80, zeros up to 56 mod 64, then the length in bits, 64-bit big-endian.
    const bits = this._bytes * 8;
    const high = Math.floor(bits / 0x100000000);
    const low = bits >>> 0;
    const tail = new Uint8Array(this._filled < 56 ? BLOCK : 2 * BLOCK);
    tail.set(this._block.subarray(0, this._filled), 0);
    tail[this._filled] = 0x80;
    const end = tail.length;
    writeU32(tail, end - 8, high);
    writeU32(tail, end - 4, low);
    for (let at = 0; at < end; at += BLOCK) {
      this._compress(tail, at);
    }
    this._done = true;
    const out = new Uint8Array(32);
    for (let i = 0; i < 8; i += 1) {
      writeU32(out, i * 4, this._h[i]);
    }
    return out;
  }

  /** The hash as 64 lowercase hex digits. */
  digestHex() {
    return toHex(this.digest());
  }

  _compress(bytes, at) {
    const w = this._w;
    for (let i = 0; i < 16; i += 1) {
      const j = at + i * 4;
      w[i] = (bytes[j] << 24) | (bytes[j + 1] << 16) | (bytes[j + 2] << 8) | bytes[j + 3];
    }
    for (let i = 16; i < 64; i += 1) {
      const a = w[i - 15];
      const b = w[i - 2];
      const s0 = rotr(a, 7) ^ rotr(a, 18) ^ (a >>> 3);
      const s1 = rotr(b, 17) ^ rotr(b, 19) ^ (b >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    const h = this._h;
    let a = h[0]; let b = h[1]; let c = h[2]; let d = h[3];
    let e = h[4]; let f = h[5]; let g = h[6]; let k = h[7];
    for (let i = 0; i < 64; i += 1) {
      const sum1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
      const choose = (e & f) ^ (~e & g);
      const t1 = (k + sum1 + choose + K[i] + w[i]) | 0;
      const sum0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
      const majority = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (sum0 + majority) | 0;
      k = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d;
    h[4] += e; h[5] += f; h[6] += g; h[7] += k;
  }
}

function writeU32(out, at, v) {
  out[at] = v >>> 24;
  out[at + 1] = (v >>> 16) & 0xff;
  out[at + 2] = (v >>> 8) & 0xff;
  out[at + 3] = v & 0xff;
}

/** Bytes as lowercase hex. */
export function toHex(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let s = '';
  for (const b of u8) {
    s += b.toString(16).padStart(2, '0');
  }
  return s;
}

function aborted(signal) {
  if (signal && signal.aborted) {
    throw signal.reason instanceof Error ? signal.reason : new DOMException('The operation was aborted.', 'AbortError');
  }
}

/**
 * The SHA-256 of a `File` or `Blob`, as 64 lowercase hex digits. Up to 16 MiB it is read
 * at once and hashed by `crypto.subtle.digest`; above that (or where WebCrypto is missing:
 * a page served over plain http from another machine) it is read 4 MiB at a time into
 * `Sha256`, so memory stays flat whatever the size.
 * @param {Blob} file
 * @param {(loaded: number, total: number) => void} [onProgress] after each piece read
 * @param {{signal?: AbortSignal}} [options] stop reading (rejects with an AbortError)
 * @returns {Promise<string>}
 */
export async function hashFile(file, onProgress, { signal } = {}) {
  const total = file.size;
  const subtle = globalThis.crypto && globalThis.crypto.subtle;
  aborted(signal);
  if (total <= WHOLE_FILE_MAX && subtle) {
    const bytes = await file.arrayBuffer();
    aborted(signal);
    const hex = toHex(await subtle.digest('SHA-256', bytes));
    if (onProgress) onProgress(total, total);
    return hex;
  }
  const hash = new Sha256();
  let loaded = 0;
  while (loaded < total) {
    const end = Math.min(total, loaded + SLICE_BYTES);
    const piece = new Uint8Array(await file.slice(loaded, end).arrayBuffer());
    aborted(signal);
    hash.update(piece);
    loaded = end;
    if (onProgress) onProgress(loaded, total);
  }
  if (total === 0 && onProgress) onProgress(0, 0);
  return hash.digestHex();
}

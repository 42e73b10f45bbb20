// Chat attachments over HTTP, with no DOM: hash the file, ask the server whether it holds
// it already (then nothing is uploaded), else send it in resumable chunks; and fetch a
// stored file or its thumbnail as a Blob. Every request carries the user token
// (`Authorization: Bearer …`), so a page shows them through URL.createObjectURL.
// The posting itself is a chat message: `GroupChat.send(text, { attachment: {hash, name} })`.
//
// The API (web-client/README.md, "Attachments"):
//   POST  /api/rooms/{room}/attachments         {hash, size, type, name} → known | upload {offset, chunk}
//   PATCH /api/rooms/{room}/attachments/{hash}  Upload-Offset: N, body = bytes [N, N+len)
//          → upload {offset} | stored | 409 upload_offset {offset}
//   GET   /api/rooms/{room}/attachments/{hash}[/thumbnail]

import { ServerError } from './signal.js';
import { hashFile } from './sha256.js';

/** When the server names no chunk size. */
const DEFAULT_CHUNK = 1024 * 1024;
/** Network failures (and offset conflicts) in a row before an upload gives up. */
const MAX_RETRIES = 4;
const RETRY_BASE_MS = 400;

/** A refused attachment request: the server's `code` and `message` (for the user), and the HTTP status. */
export class AttachmentError extends ServerError {
  constructor(code, message, { status = 0, offset } = {}) {
    super(code, message);
    this.name = 'AttachmentError';
    this.status = status;
    if (offset !== undefined) {
      this.offset = offset;
    }
  }
}

function abortError(signal) {
  return signal && signal.reason instanceof Error ? signal.reason : new DOMException('The upload was cancelled.', 'AbortError');
}

function isAbort(e) {
  return e && e.name === 'AbortError';
}

function wait(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) {
      reject(abortError(signal));
      return;
    }
    const t = setTimeout(() => { if (signal) signal.removeEventListener('abort', onAbort); resolve(); }, ms);
    const onAbort = () => { clearTimeout(t); reject(abortError(signal)); };
    if (signal) signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** The JSON body of a response, or null. */
async function jsonOf(res) {
  const text = await res.text().catch(() => '');
  if (!text) {
    return null;
  }
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function refused(res, body) {
  const code = (body && body.code) || `http_${res.status}`;
  const message = (body && body.message) || `The server refused the attachment (HTTP ${res.status}).`;
  return new AttachmentError(code, message, { status: res.status, offset: body && body.offset });
}

/**
 * Attachments of one Chorus server.
 *
 * @example
 * const files = new Attachments({ server: 'https://chorus.example.com/', token: () => localStorage.getItem(TOKEN_KEY) });
 * const { hash } = await files.upload(room, file, { onProgress: ({ loaded, total }) => bar.value = loaded / total });
 * await chat.send('', { attachment: { hash, name: file.name } });
 * img.src = URL.createObjectURL(await files.fetchBlob(room, hash, { thumbnail: true }));
 */
export class Attachments {
  /**
   * @param {object} options
   * @param {string} [options.server] the server's base URL (default: this page's)
   * @param {() => string} options.token the user token to send (read at every request)
   * @param {typeof fetch} [options.fetch] for tests
   * @param {number} [options.retries] network failures in a row an upload survives (default 4)
   */
  constructor({ server, token, fetch: fetchImpl, retries = MAX_RETRIES } = {}) {
    this.server = server || globalThis.location.href;
    this.token = typeof token === 'function' ? token : () => token || '';
    this._fetch = fetchImpl || ((...a) => globalThis.fetch(...a));
    this.retries = retries;
  }

  _url(room, hash, tail = '') {
    let p = `/api/rooms/${encodeURIComponent(room)}/attachments`;
    if (hash) {
      p += `/${encodeURIComponent(hash)}${tail}`;
    }
    return new URL(p, this.server).href;
  }

  _headers(extra = {}) {
    const t = this.token();
    return t ? { authorization: `Bearer ${t}`, ...extra } : { ...extra };
  }

  /** `POST …/attachments`: the server's answer (`known` or `upload`), or an AttachmentError. */
  async ask(room, { hash, size, type, name }, { signal } = {}) {
    const res = await this._fetch(this._url(room), {
      method: 'POST',
      headers: this._headers({ 'content-type': 'application/json', accept: 'application/json' }),
      body: JSON.stringify({ hash, size, type, name }),
      signal,
    });
    const body = await jsonOf(res);
    if (!res.ok || !body) {
      throw refused(res, body);
    }
    return body;
  }

  /**
   * Put `file` on the server for `room`'s chat and resolve with `{ hash, size, type, name,
   * known }` (`known`: the server had it already and nothing was sent). Then post it with
   * `GroupChat.send(text, { attachment: { hash, name } })`.
   *
   * Chunks go from the offset the server names, at most its `chunk` bytes each; a `409
   * upload_offset` resumes from the server's offset; a network failure asks again (POST)
   * where to resume, a few times with back-off. A refusal rejects with an
   * `AttachmentError` carrying the server's `code` and `message` (`too_large`,
   * `unsupported_type`, `hash_mismatch`, `invalid_image`, `forbidden`, …); a cancel
   * (`signal`) rejects with an `AbortError`.
   *
   * @param {string} room the room id
   * @param {File|Blob} file (a Blob has no name: pass one in `name`)
   * @param {object} [options]
   * @param {(p: {phase: 'hashing'|'uploading'|'done', loaded: number, total: number}) => void} [options.onProgress]
   *   hashing: bytes read; uploading: bytes the server acknowledged
   * @param {(info: {hash: string, size: number}) => void} [options.onKnown] the server holds it already
   * @param {AbortSignal} [options.signal] cancel
   * @param {string} [options.name] the file name (default `file.name`)
   */
  async upload(room, file, { onProgress, onKnown, signal, name } = {}) {
    const size = file.size;
    const type = file.type || 'application/octet-stream';
    const fileName = name || file.name || 'file';
    const progress = (phase, loaded) => { if (onProgress) onProgress({ phase, loaded, total: size }); };
    progress('hashing', 0);
    const hash = await hashFile(file, (loaded) => progress('hashing', loaded), { signal });
    const info = { hash, size, type, name: fileName };

    let failures = 0;
    const retry = async (e) => {
      failures += 1;
      if (failures > this.retries) {
        throw e;
      }
      await wait(RETRY_BASE_MS * 2 ** (failures - 1), signal);
    };
    // A fetch that rejects (not an HTTP answer) is a network failure, unless we cancelled.
    const attempt = async (fn) => {
      if (signal && signal.aborted) {
        throw abortError(signal);
      }
      try {
        return { value: await fn() };
      } catch (e) {
        if (isAbort(e) || (signal && signal.aborted)) {
          throw abortError(signal);
        }
        if (e instanceof AttachmentError) {
          throw e;
        }
        await retry(new AttachmentError('network', 'The upload was interrupted: check the connection and try again.'));
        return null;
      }
    };

    for (;;) {
      const asked = await attempt(() => this.ask(room, info, { signal }));
      if (!asked) {
        continue;
      }
      let answer = asked.value;
      if (answer.status === 'known' || answer.status === 'stored') {
        const known = answer.status === 'known';
        if (known && onKnown) onKnown({ hash, size });
        progress('done', size);
        return { ...info, known };
      }
      if (answer.status !== 'upload') {
        throw new AttachmentError('internal', `Unexpected answer from the server: ${answer.status}.`);
      }
      const chunk = Math.max(1, Number(answer.chunk) || DEFAULT_CHUNK);
      let offset = Number(answer.offset) || 0;
      progress('uploading', offset);
      // At least one PATCH, even for an empty file: it is what completes the upload.
      for (;;) {
        const end = Math.min(size, offset + chunk);
        const sent = await attempt(() => this._patch(room, hash, offset, file.slice(offset, end), signal));
        if (!sent) {
          break; // ask the server (POST) where to resume
        }
        const { res, body } = sent.value;
        if (res.status === 409 && body && Number.isFinite(Number(body.offset))) {
          // Someone (an earlier attempt of ours) got further, or not as far: resume there.
          const k = Number(body.offset);
          if (k === offset) {
            await retry(refused(res, body));
          }
          offset = k;
          progress('uploading', offset);
          continue;
        }
        if (!res.ok || !body) {
          throw refused(res, body);
        }
        answer = body;
        if (answer.status === 'stored') {
          progress('done', size);
          return { ...info, known: false };
        }
        if (answer.status !== 'upload') {
          throw new AttachmentError('internal', `Unexpected answer from the server: ${answer.status}.`);
        }
        const next = Number(answer.offset);
        if (!(next > offset)) {
          // Nothing acknowledged: do not spin.
          await retry(new AttachmentError('internal', 'The server did not take the upload\'s bytes.'));
        } else {
          failures = 0;
        }
        offset = next;
        progress('uploading', offset);
      }
    }
  }

  async _patch(room, hash, offset, body, signal) {
    const res = await this._fetch(this._url(room, hash), {
      method: 'PATCH',
      headers: this._headers({
        'upload-offset': String(offset),
        'content-type': 'application/offset+octet-stream',
        accept: 'application/json',
      }),
      body,
      signal,
    });
    return { res, body: await jsonOf(res) };
  }

  /**
   * A stored attachment (or, `thumbnail: true`, its thumbnail: JPEG or PNG, at most
   * 320×320, only for an `attachment.image`) as a Blob; an `AttachmentError` when refused.
   * @returns {Promise<Blob>}
   */
  async fetchBlob(room, hash, { thumbnail = false, signal } = {}) {
    const res = await this._fetch(this._url(room, hash, thumbnail ? '/thumbnail' : ''), {
      headers: this._headers(),
      signal,
    });
    if (!res.ok) {
      throw refused(res, await jsonOf(res));
    }
    return res.blob();
  }
}

/** "12 KB", "3.4 MB": a size for people (1 KB = 1,024 bytes). */
export function humanSize(bytes) {
  const n = Number(bytes) || 0;
  if (n < 1024) {
    return `${n} B`;
  }
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v < 10 ? v.toFixed(1).replace(/\.0$/, '') : Math.round(v)} ${units[i]}`;
}

// Starts a small Chorus fleet for browser tests, all on 127.0.0.1 with ephemeral ports:
// its own redis-server, one token key, two SFU nodes (chorus-sfu --redis) and two
// signaling nodes (chorus-signaling --redis) sharing the first one's server-API key.
// Every process is stopped by its pid, also when a test fails or is cut short.

import { spawn } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const webClientDir = path.resolve(here, '..');
const START_TIMEOUT_MS = 30_000;

/** $CHORUS_SIGNALING_BIN / $CHORUS_SFU_BIN, else ../target/debug/… beside web-client/. */
export function fleetBins() {
  const bin = (env, name) => path.resolve(webClientDir, process.env[env] || `../target/debug/${name}`);
  return { signaling: bin('CHORUS_SIGNALING_BIN', 'chorus-signaling'), sfu: bin('CHORUS_SFU_BIN', 'chorus-sfu') };
}

const REDIS_BIN = process.env.REDIS_SERVER_BIN || 'redis-server';

/** A TCP port free on loopback now (redis-server cannot pick its own). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Spawn `bin args`; resolves with the process once a stdout line matches `ready` (the
 * match is kept in `proc.ready`). Its output is kept for diagnostics.
 */
function startProcess(name, bin, args, ready, { env = {} } = {}) {
  const child = spawn(bin, args, {
    cwd: webClientDir,
    env: { RUST_LOG: 'info', ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  child.once('exit', () => process.removeListener('exit', killOnExit));
  const proc = { name, child, pid: child.pid, stdout: '', stderr: '', ready: null };
  const cap = (s) => (s.length > 64 * 1024 ? s.slice(-64 * 1024) : s);
  proc.output = () => `--- ${name} (pid ${child.pid}) stdout ---\n${proc.stdout}\n--- ${name} stderr ---\n${proc.stderr}`;
  return new Promise((resolve, reject) => {
    let buffered = '';
    let done = false;
    const finish = (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        child.kill('SIGKILL');
        reject(err);
      } else {
        resolve(proc);
      }
    };
    const timer = setTimeout(() => finish(new Error(`${name} printed no ready line within `
      + `${START_TIMEOUT_MS / 1000} s\n${proc.output()}`)), START_TIMEOUT_MS);
    child.on('error', (e) => finish(new Error(`could not start ${name} (${bin}): ${e.message} — build it with `
      + '`cargo build -p chorus-signaling --bin chorus-signaling -p chorus-sfu --bin chorus-sfu`, '
      + 'or set CHORUS_SIGNALING_BIN / CHORUS_SFU_BIN')));
    // 'close' (not 'exit'): stdout is read to its end first, so a process that prints its
    // line and exits (public-key) is not taken for an early exit.
    child.on('close', (code, signal) => finish(new Error(`${name} exited early (code ${code}, signal ${signal})\n${proc.output()}`)));
    child.stderr.on('data', (d) => { proc.stderr = cap(proc.stderr + d); });
    child.stdout.on('data', (d) => {
      proc.stdout = cap(proc.stdout + d);
      buffered += d;
      const lines = buffered.split('\n');
      buffered = lines.pop();
      for (const line of lines) {
        const m = ready.exec(line);
        if (m && !done) {
          proc.ready = m;
          finish();
        }
      }
    });
  });
}

/** Send `signal` to a process we started (by its pid) and wait for it to exit. */
async function stopProcess(proc, signal = 'SIGTERM') {
  const { child } = proc;
  if (child.exitCode !== null || child.signalCode !== null) {
    return;
  }
  const exited = new Promise((r) => child.once('exit', r));
  process.kill(child.pid, signal);
  const t = setTimeout(() => { if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL'); }, 3000);
  await exited;
  clearTimeout(t);
}

/**
 * Start the fleet. Resolves with { redisUrl, sfus, signaling, apiKey, api, output, stop }:
 * `sfus` are { id, grpc, pid, kill(signal) }, `signaling` are { id, url } (no trailing
 * slash); `api(method, path, body)` is a signed server-API request (docs/api.md) to the
 * first signaling node. `stop()` stops everything still running and removes the folder.
 */
export async function startFleet() {
  const bins = fleetBins();
  const dir = await mkdtemp(path.join(tmpdir(), 'chorus-fleet-test-'));
  const procs = [];
  const fleet = { dir, procs, sfus: [], signaling: [] };
  fleet.output = () => procs.map((p) => p.output()).join('\n');
  fleet.stop = async () => {
    // Signaling first (it follows the SFUs), then the SFUs, Redis last.
    for (const p of [...procs].reverse()) {
      await stopProcess(p, p.name.startsWith('sig') ? 'SIGINT' : 'SIGTERM').catch(() => {});
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const port = await freePort();
    procs.push(await startProcess('redis', REDIS_BIN, ['--bind', '127.0.0.1', '--port', String(port), '--save', '',
      '--appendonly', 'yes', '--dir', dir], /Ready to accept connections/));
    fleet.redisUrl = `redis://127.0.0.1:${port}/0`;

    const keyFile = path.join(dir, 'token-key.pem');
    const pub = await startProcess('public-key', bins.signaling, ['--token-key', keyFile, 'public-key'], /^([0-9a-f]{64})\s*$/);
    const publicKey = pub.ready[1];

    for (const id of ['sfu-a', 'sfu-b']) {
      const p = await startProcess(id, bins.sfu, ['--grpc', '127.0.0.1:0', '--udp', '127.0.0.1:0',
        '--token-public-key', publicKey, '--redis', fleet.redisUrl, '--node-id', id], /^grpc (\S+)/);
      procs.push(p);
      fleet.sfus.push({ id, grpc: p.ready[1], pid: p.pid, proc: p, kill: (signal) => stopProcess(p, signal) });
    }

    for (const [i, id] of ['sig-a', 'sig-b'].entries()) {
      const dataDir = path.join(dir, id);
      await mkdir(dataDir);
      if (i > 0) {
        // One server-API key for the fleet: the first node made it.
        await copyFile(path.join(dir, 'sig-a', 'api-key.json'), path.join(dataDir, 'api-key.json'));
      }
      const p = await startProcess(id, bins.signaling, ['--listen', '127.0.0.1:0', '--data-dir', dataDir,
        '--token-key', keyFile, '--redis', fleet.redisUrl, '--node-id', id, '--web-dir', webClientDir],
      /Chorus signaling is running: open (https?:\/\/\S+?)\/?\s*$/, { env: { CHORUS_WEB_DIR: webClientDir } });
      procs.push(p);
      fleet.signaling.push({ id, url: p.ready[1].replace(/\/$/, ''), pid: p.pid });
    }
    fleet.apiKey = JSON.parse(await readFile(path.join(dir, 'sig-a', 'api-key.json'), 'utf8'));
    fleet.api = (method, apiPath, body) => signedRequest(fleet.signaling[0].url, fleet.apiKey, method, apiPath, body);
    return fleet;
  } catch (e) {
    await fleet.stop();
    throw e;
  }
}

/**
 * A split deployment without Redis: one `chorus-sfu` and one `chorus-signaling --sfu`
 * in front of it (its own data folder and token key), so that signaling can die and
 * start again while the SFU, and the audio it carries, go on. Resolves with
 * { dir, url, port, sfu: { grpc, pid }, signaling: { pid }, startedAt, killSignaling(signal),
 * startSignaling(), output, stop }: `startSignaling()` starts it again on the same port
 * with the same data folder and key (`startedAt` is then the Date.now() of its ready
 * line). Every process is stopped by its pid, also when starting fails.
 */
export async function startSplit({ extraArgs = [] } = {}) {
  const bins = fleetBins();
  const dir = await mkdtemp(path.join(tmpdir(), 'chorus-split-test-'));
  const dataDir = path.join(dir, 'signaling');
  await mkdir(dataDir);
  const keyFile = path.join(dir, 'token-key.pem');
  const logs = [];
  const split = { dir, dataDir, port: 0, url: null, sfu: null, signaling: null, sig: null, startedAt: 0 };
  let sfuProc = null;
  split.output = () => [sfuProc, ...logs].filter(Boolean).map((p) => p.output()).join('\n');
  split.stop = async () => {
    if (split.sig) {
      await stopProcess(split.sig, 'SIGINT').catch(() => {});
    }
    if (sfuProc) {
      await stopProcess(sfuProc, 'SIGTERM').catch(() => {});
    }
    await rm(dir, { recursive: true, force: true });
  };
  const spawnSignaling = (port) => startProcess(`signaling#${logs.length + 1}`, bins.signaling, [
    '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, '--token-key', keyFile, '--sfu', split.sfu.grpc,
    '--web-dir', webClientDir, ...extraArgs,
  ], /Chorus signaling is running: open (https?:\/\/\S+?)\/?\s*$/, { env: { CHORUS_WEB_DIR: webClientDir } });
  split.startSignaling = async () => {
    // The port was just ours; after a SIGKILL the listener may need a moment.
    let last;
    for (let i = 0; i < 20; i += 1) {
      try {
        const p = await spawnSignaling(split.port);
        split.startedAt = Date.now();
        logs.push(p);
        split.sig = p;
        split.signaling = { pid: p.pid };
        split.url = p.ready[1].replace(/\/$/, '');
        split.port = Number(new URL(split.url).port);
        return p;
      } catch (e) {
        last = e;
        if (!split.port) break;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    throw last;
  };
  split.killSignaling = async (signal = 'SIGKILL') => {
    if (split.sig) {
      await stopProcess(split.sig, signal);
    }
  };
  try {
    const pub = await startProcess('public-key', bins.signaling, ['--token-key', keyFile, 'public-key'], /^([0-9a-f]{64})\s*$/);
    sfuProc = await startProcess('sfu', bins.sfu, ['--grpc', '127.0.0.1:0', '--udp', '127.0.0.1:0',
      '--token-public-key', pub.ready[1]], /^grpc (\S+)/);
    const grpc = sfuProc.ready[1];
    split.sfu = { grpc: /^https?:\/\//.test(grpc) ? grpc : `http://${grpc}`, pid: sfuProc.pid };
    await split.startSignaling();
    return split;
  } catch (e) {
    e.message += `\n${split.output()}`;
    await split.stop();
    throw e;
  }
}

/** A server-API request signed as docs/api.md says; resolves with { status, body }. */
export async function signedRequest(baseUrl, { key, secret }, method, apiPath, body) {
  const text = body === undefined ? '' : JSON.stringify(body);
  const ts = Math.floor(Date.now() / 1000);
  const nonce = randomBytes(16).toString('hex');
  const hash = createHash('sha256').update(text).digest('hex');
  const sig = createHmac('sha256', Buffer.from(secret, 'hex')).update(`${method}\n${apiPath}\n${ts}\n${nonce}\n${hash}`).digest('hex');
  const res = await fetch(`${baseUrl}${apiPath}`, {
    method,
    headers: { authorization: `Chorus key=${key},ts=${ts},nonce=${nonce},sig=${sig}`, ...(text ? { 'content-type': 'application/json' } : {}) },
    body: text || undefined,
  });
  const raw = await res.text();
  let parsed = raw;
  try {
    parsed = JSON.parse(raw);
  } catch {
    // not JSON: keep the text for the message
  }
  return { status: res.status, body: parsed };
}

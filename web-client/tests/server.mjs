// Starts the real all-in-one Chorus server (signaling + embedded SFU) for browser tests,
// on 127.0.0.1 with ephemeral ports and a fresh data dir, and stops it afterwards.

import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const webClientDir = path.resolve(here, '..');
const READY = /Chorus is running: open (https?:\/\/\S+?)\/?\s*$/;
const START_TIMEOUT_MS = 30_000;

/** Path of the server binary: $CHORUS_BIN, else ../target/debug/chorus beside web-client/. */
export function chorusBin() {
  const bin = process.env.CHORUS_BIN || '../target/debug/chorus';
  return path.resolve(webClientDir, bin);
}

/**
 * Start the server; resolves once it prints its ready line with
 * { url, port, dataDir, stop, restart, output }. `url` has no trailing slash, e.g.
 * http://127.0.0.1:41234. `restart({ signal })` stops the process (SIGINT: a clean stop;
 * SIGKILL: a crash) and starts it again on the same port with the same data folder.
 */
export async function startServer({ extraArgs = [] } = {}) {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'chorus-web-test-'));
  const server = { dataDir, extraArgs, proc: null, url: null, port: 0, logs: [] };
  await spawnServer(server, 0);
  server.output = () => server.logs.map((l) => l()).join('\n');
  server.stop = async () => {
    await stopProcess(server.proc, 'SIGINT');
    await rm(dataDir, { recursive: true, force: true });
  };
  /** Start again on the same port with the same data (after `kill`). */
  server.start = async () => {
    // The port was just ours; a new listener may need a moment after a crash.
    let lastError;
    for (let i = 0; i < 20; i += 1) {
      try {
        await spawnServer(server, server.port);
        return;
      } catch (e) {
        lastError = e;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    throw lastError;
  };
  /** Stop without starting again (the pages should keep trying). */
  server.kill = (signal = 'SIGINT') => stopProcess(server.proc, signal);
  server.restart = async ({ signal = 'SIGINT' } = {}) => {
    await stopProcess(server.proc, signal);
    await server.start();
  };
  return server;
}

async function stopProcess(child, signal) {
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal); // the server stops cleanly on Ctrl-C
    const t = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(t);
  }
}

async function spawnServer(server, port) {
  const bin = chorusBin();
  const args = ['--listen', `127.0.0.1:${port}`, '--udp-port', '0', '--data-dir', server.dataDir,
    '--web-dir', webClientDir, ...server.extraArgs];
  const child = spawn(bin, args, {
    cwd: webClientDir,
    // Serve this checkout's web client, whatever folder the binary was built in.
    env: { RUST_LOG: 'info', ...process.env, CHORUS_WEB_DIR: webClientDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  server.proc = child;

  // Never leave a server behind, even when a test is cut short by its timeout.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  child.once('exit', () => process.removeListener('exit', killOnExit));

  let stdout = '';
  let stderr = '';
  const cap = (s) => (s.length > 64 * 1024 ? s.slice(-64 * 1024) : s);
  const output = () => `--- stdout (port ${port || 'new'}) ---\n${stdout}\n--- stderr ---\n${stderr}`;
  server.logs.push(output);

  const url = await new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${bin} did not print "Chorus is running: open http://…" within `
        + `${START_TIMEOUT_MS / 1000} s\n${output()}`));
    }, START_TIMEOUT_MS);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`could not start ${bin}: ${e.message} (build it with `
        + '`cargo build -p chorus-signaling --bin chorus`, or set CHORUS_BIN)'));
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${bin} exited early (code ${code}, signal ${signal})\n${output()}`));
    });
    child.stderr.on('data', (d) => { stderr = cap(stderr + d); });
    child.stdout.on('data', (d) => {
      stdout = cap(stdout + d);
      buffered += d;
      const lines = buffered.split('\n');
      buffered = lines.pop();
      for (const line of lines) {
        const m = READY.exec(line);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      }
    });
  });
  server.url = url.replace(/\/$/, '');
  server.port = Number(new URL(server.url).port);
}

/** `GET /api/rooms/<id>`: { status, body } (body parsed when JSON). */
export async function getRoom(baseUrl, id) {
  const res = await fetch(`${baseUrl}/api/rooms/${encodeURIComponent(id)}`);
  const text = await res.text();
  let body = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text for the message
  }
  return { status: res.status, body };
}

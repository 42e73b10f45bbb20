// Launches Debian's Chromium through playwright-core: headless, fake microphone (a beep),
// a fresh profile per browser, nothing fetched from outside.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, devices } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
];

/**
 * One browser with its own profile. `device` names a Playwright device profile
 * (e.g. 'Pixel 7') for a phone: viewport, user agent, isMobile, hasTouch.
 * Resolves with { context, page, close, logs }.
 */
export async function openBrowser({ device } = {}) {
  const profile = await mkdtemp(path.join(tmpdir(), 'chorus-chromium-'));
  let emulation = {};
  if (device) {
    const d = devices[device];
    if (!d) {
      throw new Error(`unknown Playwright device profile: ${device}`);
    }
    const { defaultBrowserType: _ignored, ...rest } = d;
    emulation = rest;
  }
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    ...emulation,
  });
  const page = context.pages()[0] || (await context.newPage());
  const logs = [];
  page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  const close = async () => {
    await context.close().catch(() => {});
    await rm(profile, { recursive: true, force: true }).catch(() => {});
  };
  return { context, page, close, logs };
}

/** Per inbound audio stream of the page's peer connection: packets, level, codec. */
export function inboundAudio(page) {
  return page.evaluate(async () => {
    const pc = window.chorus && window.chorus.pc;
    if (!pc) {
      return [];
    }
    const report = await pc.getStats();
    const all = new Map();
    report.forEach((s) => all.set(s.id, s));
    const out = [];
    for (const s of all.values()) {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        const codec = s.codecId ? all.get(s.codecId) : null;
        out.push({
          id: s.id,
          ssrc: s.ssrc,
          mid: s.mid,
          packetsReceived: s.packetsReceived || 0,
          audioLevel: s.audioLevel || 0,
          totalAudioEnergy: s.totalAudioEnergy || 0,
          mimeType: codec ? codec.mimeType : null,
        });
      }
    }
    return out;
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

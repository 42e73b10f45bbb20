// The browsers the tests drive, both Debian packages, nothing downloaded:
// - Chromium through playwright-core (CDP), fake microphone (a beep);
// - Firefox ESR through puppeteer-core over WebDriver BiDi, fake microphone (a tone),
//   with the prefs shared/TEST-PEERS.md lists (loopback ICE, microphone allowed).
// Each browser gets a fresh profile. Tests talk to one small page interface (`Page`
// below) so that every flow runs the same in both engines.

import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, devices } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
export const FIREFOX = process.env.FIREFOX_BIN || '/usr/bin/firefox-esr';

/** The engines to test: $CHORUS_ENGINES (comma-separated), default both. */
export const ENGINES = (process.env.CHORUS_ENGINES || 'chromium,firefox')
  .split(',').map((s) => s.trim()).filter(Boolean);

const CHROMIUM_ARGS = [
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

const FIREFOX_PREFS = {
  'media.navigator.streams.fake': true,
  'media.navigator.permission.disabled': true,
  'media.peerconnection.ice.loopback': true,
  'media.peerconnection.ice.obfuscate_host_addresses': false,
  'permissions.default.microphone': 1,
  // Quiet and local: no updates, telemetry or first-run pages.
  'app.update.enabled': false,
  'browser.shell.checkDefaultBrowser': false,
  'datareporting.policy.dataSubmissionEnabled': false,
  'toolkit.telemetry.enabled': false,
};

const DESKTOP = { width: 1280, height: 720 };

/** Playwright's device profiles are plain data; Firefox uses the same sizes. */
function deviceProfile(device) {
  if (!device) {
    return null;
  }
  const d = devices[device];
  if (!d) {
    throw new Error(`unknown device profile: ${device}`);
  }
  const { defaultBrowserType: _ignored, ...rest } = d;
  return rest;
}

/**
 * One browser with its own profile. `engine` is 'chromium' or 'firefox'; `device` names a
 * Playwright device profile (e.g. 'Pixel 7') for a phone's screen; `colorScheme` 'dark'
 * or 'light'. Resolves with { engine, page, close, logs }.
 */
export async function openBrowser({ engine = 'chromium', device, colorScheme, strictAutoplay = false } = {}) {
  return engine === 'firefox'
    ? openFirefox({ device, colorScheme, strictAutoplay })
    : openChromium({ device, colorScheme, strictAutoplay });
}

/**
 * `strictAutoplay`: audio may only start after a tap, as on iOS Safari (Chromium's
 * user-gesture policy; Firefox's "block audible" default, made explicit).
 */
async function openChromium({ device, colorScheme, strictAutoplay }) {
  const profile = await mkdtemp(path.join(tmpdir(), 'chorus-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: strictAutoplay ? [...CHROMIUM_ARGS, '--autoplay-policy=user-gesture-required'] : CHROMIUM_ARGS,
    viewport: DESKTOP,
    ...(deviceProfile(device) || {}),
    ...(colorScheme ? { colorScheme } : {}),
  });
  const raw = context.pages()[0] || (await context.newPage());
  const logs = [];
  raw.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  raw.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  const close = async () => {
    await context.close().catch(() => {});
    await rm(profile, { recursive: true, force: true }).catch(() => {});
  };
  /** Another tab of the same browser (same profile and storage), as a person opens one. */
  const newTab = async () => {
    const tab = await context.newPage();
    tab.on('console', (m) => logs.push(`[tab ${m.type()}] ${m.text()}`));
    tab.on('pageerror', (e) => logs.push(`[tab pageerror] ${e.message}`));
    return new ChromiumPage(tab);
  };
  return { engine: 'chromium', page: new ChromiumPage(raw), close, logs, newTab };
}

async function openFirefox({ device, colorScheme, strictAutoplay }) {
  if (!existsSync(FIREFOX)) {
    throw new Error(`${FIREFOX} not found: install Debian's firefox-esr (or set CHORUS_ENGINES=chromium)`);
  }
  const { default: puppeteer } = await import('puppeteer-core');
  const profile = await mkdtemp(path.join(tmpdir(), 'chorus-firefox-'));
  const prefs = { ...FIREFOX_PREFS };
  const d = deviceProfile(device);
  if (d && d.userAgent) {
    // Set at launch: Firefox ESR 140 over BiDi lacks emulation.setUserAgentOverride.
    prefs['general.useragent.override'] = d.userAgent;
  }
  if (colorScheme) {
    prefs['layout.css.prefers-color-scheme.content-override'] = colorScheme === 'dark' ? 0 : 1;
  }
  if (strictAutoplay) {
    prefs['media.autoplay.default'] = 1; // block audible
    prefs['media.autoplay.blocking_policy'] = 2; // only after a real tap on the page
  }
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    headless: true,
    userDataDir: profile,
    extraPrefsFirefox: prefs,
    protocolTimeout: 60_000,
  });
  let raw;
  try {
    raw = (await browser.pages())[0] || (await browser.newPage());
    await raw.setViewport(d
      ? { ...d.viewport, deviceScaleFactor: d.deviceScaleFactor, isMobile: d.isMobile, hasTouch: d.hasTouch }
      : DESKTOP).catch((e) => {
      // puppeteer sends emulation.setScreenOrientationOverride beside the viewport; Firefox
      // ESR 140 does not know it. The viewport itself is set.
      if (!/setScreenOrientationOverride/.test(e.message)) throw e;
    });
  } catch (e) {
    // Not handed to the test yet, so nobody else would close it (and a live Firefox keeps
    // the test process from exiting).
    await browser.close().catch(() => {});
    await rm(profile, { recursive: true, force: true }).catch(() => {});
    throw e;
  }
  const logs = [];
  raw.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  raw.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  const close = async () => {
    await browser.close().catch(() => {});
    await rm(profile, { recursive: true, force: true }).catch(() => {});
  };
  return { engine: 'firefox', page: new FirefoxPage(raw), close, logs };
}

// In-page predicates, the same in both engines (so "visible" means one thing).
function visible(el) {
  if (!el || !el.isConnected || el.getClientRects().length === 0) {
    return false;
  }
  // Inside a closed <details> an element still has boxes but is not rendered.
  if (typeof el.checkVisibility === 'function' && !el.checkVisibility({ visibilityProperty: true })) {
    return false;
  }
  const style = getComputedStyle(el);
  return style.visibility !== 'hidden' && style.display !== 'none';
}

function selectorState([selector, state, visibleSource]) {
  // eslint-disable-next-line no-new-func
  const isVisible = new Function(`return (${visibleSource})`)();
  const el = document.querySelector(selector);
  switch (state) {
    case 'attached': return Boolean(el);
    case 'detached': return !el;
    case 'hidden': return !el || !isVisible(el);
    default: return Boolean(el) && isVisible(el);
  }
}

/**
 * What a test may do with a page. The Chromium side passes through to Playwright; the
 * Firefox side maps the same calls onto puppeteer. Waits poll the page, never sleep.
 */
class BasePage {
  constructor(raw) {
    this.raw = raw;
  }

  /**
   * The page's address as the page itself has it (`location.href`): Firefox over
   * WebDriver BiDi does not report `history.pushState`/`replaceState` to puppeteer's
   * `page.url()`, and the app moves between screens that way.
   */
  href() { return this.evaluate(() => window.location.href); }

  async waitForURL(re, { timeout = 15_000 } = {}) {
    const deadline = Date.now() + timeout;
    let href = await this.href();
    while (!re.test(href)) {
      if (Date.now() > deadline) {
        throw new Error(`timed out after ${timeout} ms waiting for the URL to match ${re}; it is ${href}`);
      }
      await new Promise((r) => setTimeout(r, 50));
      href = await this.href();
    }
  }

  async waitForSelector(selector, { state = 'visible', timeout = 15_000 } = {}) {
    try {
      await this.waitForFunction(selectorState, [selector, state, visible.toString()], { timeout, polling: 100 });
    } catch (e) {
      throw new Error(`waiting for ${selector} to be ${state}: ${e.message}`);
    }
  }

  isVisible(selector) {
    return this.evaluate(([sel, src]) => {
      // eslint-disable-next-line no-new-func
      const isVisible = new Function(`return (${src})`)();
      return isVisible(document.querySelector(sel));
    }, [selector, visible.toString()]);
  }

  async textContent(selector) {
    await this.waitForSelector(selector, { state: 'attached' });
    return this.evaluate((sel) => document.querySelector(sel).textContent, selector);
  }

  async inputValue(selector) {
    await this.waitForSelector(selector, { state: 'attached' });
    return this.evaluate((sel) => document.querySelector(sel).value, selector);
  }

  async getAttribute(selector, name) {
    await this.waitForSelector(selector, { state: 'attached' });
    return this.evaluate(([sel, n]) => document.querySelector(sel).getAttribute(n), [selector, name]);
  }

  count(selector) {
    return this.evaluate((sel) => document.querySelectorAll(sel).length, selector);
  }
}

class ChromiumPage extends BasePage {
  goto(url) { return this.raw.goto(url); }

  reload() { return this.raw.reload(); }

  fill(selector, value) { return this.raw.fill(selector, value); }

  click(selector, { delay } = {}) { return this.raw.click(selector, { delay }); }

  tap(selector) { return this.raw.tap(selector); }

  focus(selector) { return this.raw.focus(selector); }

  press(key) { return this.raw.keyboard.press(key); }

  evaluate(fn, arg) { return this.raw.evaluate(fn, arg); }

  async waitForFunction(fn, arg, { timeout = 15_000, polling = 100 } = {}) {
    const handle = await this.raw.waitForFunction(fn, arg, { timeout, polling });
    return handle.jsonValue();
  }

  addInitScript(fn, arg) { return this.raw.addInitScript(fn, arg); }

  screenshot(options) { return this.raw.screenshot(options); }
}

class FirefoxPage extends BasePage {
  goto(url) { return this.raw.goto(url, { waitUntil: 'load' }); }

  reload() { return this.raw.reload({ waitUntil: 'load' }); }

  async fill(selector, value) {
    await this.waitForSelector(selector);
    await this.raw.evaluate(([sel, v]) => {
      const el = document.querySelector(sel);
      el.focus();
      el.value = v;
      el.dispatchEvent(new Event('input', { bubbles: true }));
      el.dispatchEvent(new Event('change', { bubbles: true }));
    }, [selector, value]);
  }

  // puppeteer clicks an element's centre once any part of it is in view; a person
  // would first scroll it clear of the pinned controls. So do that.
  async reveal(selector) {
    await this.waitForSelector(selector);
    await this.raw.evaluate((sel) => document.querySelector(sel).scrollIntoView({ block: 'center' }), selector);
  }

  async click(selector, { delay } = {}) {
    await this.reveal(selector);
    await this.raw.click(selector, delay ? { delay } : {});
  }

  async tap(selector) {
    await this.reveal(selector);
    await this.raw.tap(selector);
  }

  async focus(selector) {
    await this.waitForSelector(selector);
    await this.raw.focus(selector);
  }

  press(key) { return this.raw.keyboard.press(key); }

  evaluate(fn, arg) { return this.raw.evaluate(fn, arg); }

  async waitForFunction(fn, arg, { timeout = 15_000, polling = 100 } = {}) {
    const handle = await this.raw.waitForFunction(fn, { timeout, polling }, arg);
    const value = await handle.jsonValue();
    await handle.dispose().catch(() => {});
    return value;
  }

  addInitScript(fn, arg) { return this.raw.evaluateOnNewDocument(fn, arg); }

  screenshot(options) { return this.raw.screenshot(options); }
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

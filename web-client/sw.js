// The Chorus service worker: keeps the page's shell (HTML, CSS, modules, icons) so the
// app opens from the home screen and so that a bad link shows a Chorus page. It never
// touches the WebSocket, the API or media: those always go to the network.

const SHELL = 'chorus-shell-v3';
const FILES = [
  '/', '/style.css', '/manifest.webmanifest', '/icons/icon.svg', '/icons/icon-192.png',
  '/src/app.js', '/src/ui.js', '/src/store.js', '/src/calls-ui.js', '/src/ringtone.js',
  '/src/sdk/chorus.js', '/src/sdk/signal.js', '/src/sdk/media.js', '/src/sdk/playback.js', '/src/sdk/calls.js',
  '/src/sdk/chat.js', '/src/sdk/attachments.js', '/src/sdk/sha256.js',
];
const NEVER = /^\/(ws|api|metrics|healthz)(\/|$)/;

self.addEventListener('install', (ev) => {
  ev.waitUntil(caches.open(SHELL).then((c) => c.addAll(FILES)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (ev) => {
  ev.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== SHELL).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener('fetch', (ev) => {
  const req = ev.request;
  const url = new URL(req.url);
  if (req.method !== 'GET' || url.origin !== self.location.origin || NEVER.test(url.pathname)) {
    return; // the network, untouched
  }
  if (req.mode === 'navigate') {
    ev.respondWith(navigate(req));
    return;
  }
  // The shell: the network first (the page must match its server), the copy offline.
  ev.respondWith(fetch(req).then((res) => {
    if (res.ok && FILES.includes(url.pathname)) {
      const copy = res.clone();
      caches.open(SHELL).then((c) => c.put(req, copy));
    }
    return res;
  }).catch(() => caches.match(req).then((hit) => hit || Response.error())));
});

/**
 * A page: the server's answer, except that an address the server does not know (404)
 * gets the Chorus page, which says "Page not found" in its own words; offline, the kept
 * shell.
 */
async function navigate(req) {
  try {
    const res = await fetch(req);
    if (res.status !== 404) {
      return res;
    }
  } catch {
    // offline: the kept shell below
  }
  const shell = await caches.match('/');
  return shell || fetch('/');
}

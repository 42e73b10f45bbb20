// Small helpers shared by the browser tests.

/** Poll `probe` until it returns a truthy value; fail with `what` and the last value. */
export async function waitFor(probe, { timeoutMs = 15_000, intervalMs = 250, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await probe();
    if (last && (!Array.isArray(last) || last.length > 0)) {
      return last;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last value: ${JSON.stringify(last)}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Names in the page's participant list, in order. */
export function listedNames(page) {
  return page.$$eval('#participants .person .name .label', (els) => els.map((e) => e.textContent.trim()));
}

/** What a failing test should print: each browser's console and the server's output. */
export function diagnostics(server, browsers) {
  const parts = browsers.map((b, i) => `--- browser ${i} console ---\n${b.logs.join('\n')}`);
  if (server) {
    parts.push(server.output());
  }
  return parts.join('\n');
}

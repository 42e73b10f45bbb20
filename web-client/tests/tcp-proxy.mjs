// A TCP relay on loopback in front of a server, for "the network dropped" without the
// server going away: `drop()` destroys every relayed connection at once, so the browser
// sees its WebSocket break (1006) and the server sees the TCP connection end with no
// WebSocket close frame, as when a phone changes networks. (A page closing its own socket
// sends a close frame, which the server takes as leaving.) New connections are relayed
// again right away.

import { createServer, connect } from 'node:net';

/** Resolves with { port, url, drop(), close() } relaying 127.0.0.1:port → 127.0.0.1:targetPort. */
export function startProxy(targetPort) {
  const pairs = new Set();
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    const pair = { client, upstream };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({
        port,
        url: `http://127.0.0.1:${port}`,
        /** Break every relayed connection (both sides); returns how many there were. */
        drop() {
          const n = pairs.size;
          for (const { client, upstream } of [...pairs]) {
            client.resetAndDestroy ? client.resetAndDestroy() : client.destroy();
            upstream.resetAndDestroy ? upstream.resetAndDestroy() : upstream.destroy();
          }
          pairs.clear();
          return n;
        },
        close() {
          for (const { client, upstream } of pairs) {
            client.destroy();
            upstream.destroy();
          }
          pairs.clear();
          return new Promise((r) => server.close(() => r()));
        },
      });
    });
  });
}

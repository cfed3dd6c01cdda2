// The GCS provider's idle limit must hold for a response body as well as for the wait for headers:
// node-fetch (under the SDK) turns the request timeout off once the headers arrive, which left a
// body that stalled mid-way waiting for ever. A stub server on 127.0.0.1 sends the headers and a
// few bytes, then nothing.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { createObjectStore } from '../../../providers/gcp/index.ts';
import { isStoreError } from '../../../providers/object-store.ts';

let server: Server;
let endpoint = '';
const sockets = new Set<Socket>();

before(async () => {
  server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json; charset=UTF-8', 'content-length': '400' });
    res.write('{"kind": "storage#object", "name"');
    // ... and nothing more: the stall.
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const address = server.address();
  assert.ok(address !== null && typeof address === 'object');
  endpoint = `http://127.0.0.1:${address.port}`;
});
after(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

// Bounded, so that a regression fails here instead of hanging the run.
test('a response that stalls after its headers fails at the idle limit, as a retryable error', { timeout: 15_000 }, async () => {
  const store = await createObjectStore({
    destination: 'gs://bucket/prefix', endpointUrl: endpoint,
    multipart: { partSizeBytes: 1 << 20, concurrency: 1 }, connectTimeoutMs: 1_000, requestTimeoutMs: 300,
  });
  try {
    const started = performance.now();
    await assert.rejects(store.head('key'), (err) => isStoreError(err) && err.retryable);
    const took = performance.now() - started;
    // Well under the seconds a hang would take, but at least the idle limit.
    assert.ok(took >= 250 && took < 5_000, `gave up after ${Math.round(took)} ms`);
  } finally {
    await store.close();
  }
});

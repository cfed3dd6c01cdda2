// The fault proxy itself: its seeded schedule, and what each fault looks like on the wire, in front
// of a small HTTP server started here (no store server needed).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import { FAULT_KINDS, FaultSchedule, seededRandom, startFaultProxy, type FaultKind, type InjectedFault } from '../../servers/fault-proxy.ts';

describe('the seeded schedule', () => {
  it('gives the same verdicts for the same seed, and others for another seed', () => {
    const a = new FaultSchedule({ seed: 42, rate: 0.3 });
    const b = new FaultSchedule({ seed: 42, rate: 0.3 });
    const c = new FaultSchedule({ seed: 43, rate: 0.3 });
    const draw = (s: FaultSchedule) => Array.from({ length: 200 }, () => s.next());
    const [va, vb, vc] = [draw(a), draw(b), draw(c)];
    assert.deepEqual(va, vb);
    assert.notDeepEqual(va.map((d) => d.kind), vc.map((d) => d.kind));
    assert.deepEqual(va.map((d) => d.seq), Array.from({ length: 200 }, (_, i) => i));
  });

  it('faults about the given share of requests, with every kind', () => {
    const s = new FaultSchedule({ seed: 7, rate: 0.1 });
    const verdicts = Array.from({ length: 20_000 }, () => s.next());
    const faulted = verdicts.filter((d) => d.kind !== undefined);
    assert.ok(faulted.length > 1_800 && faulted.length < 2_200, `${faulted.length} of 20000`);
    assert.deepEqual(new Set(faulted.map((d) => d.kind)), new Set(FAULT_KINDS));
    // Only a 500 may come after the server applied the request.
    assert.ok(faulted.every((d) => !d.afterUpstream || d.kind === 'error-500'));
    assert.ok(faulted.some((d) => d.afterUpstream));
  });

  it('rate 0 passes everything, rate 1 faults everything, and kinds limits the choice', () => {
    const none = new FaultSchedule({ seed: 1, rate: 0 });
    const all = new FaultSchedule({ seed: 1, rate: 1, kinds: ['stall', 'truncate'] });
    for (let i = 0; i < 1_000; i++) {
      assert.equal(none.next().kind, undefined);
      assert.ok(['stall', 'truncate'].includes(all.next().kind ?? ''));
    }
    assert.throws(() => new FaultSchedule({ seed: 1, rate: 1.5 }), /not in 0\.\.1/);
  });

  it('a different rate faults a superset with the same kinds: later draws never shift', () => {
    const low = new FaultSchedule({ seed: 9, rate: 0.1 });
    const high = new FaultSchedule({ seed: 9, rate: 0.5 });
    for (let i = 0; i < 2_000; i++) {
      const l = low.next();
      const h = high.next();
      if (l.kind !== undefined) assert.equal(h.kind, l.kind);
      assert.equal(h.at, l.at);
    }
  });

  it('the PRNG is deterministic and spread over [0, 1)', () => {
    const r = seededRandom(123);
    const values = Array.from({ length: 10_000 }, r);
    assert.deepEqual(values.slice(0, 5), Array.from({ length: 5 }, seededRandom(123)));
    assert.ok(values.every((v) => v >= 0 && v < 1));
    const mean = values.reduce((s, v) => s + v, 0) / values.length;
    assert.ok(Math.abs(mean - 0.5) < 0.02, `mean ${mean}`);
  });
});

/** What the upstream test server saw. */
interface Seen { method: string; url: string; host: string | undefined; body: Buffer }

describe('faults on the wire', () => {
  let upstream: Server;
  let target = '';
  const seen: Seen[] = [];
  const BODY = Buffer.from('x'.repeat(10_000));

  before(async () => {
    upstream = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen.push({ method: req.method ?? '', url: req.url ?? '', host: req.headers.host, body: Buffer.concat(chunks) });
        if (req.url === '/redirect') {
          res.writeHead(200, { location: `${target}/upload?id=1`, 'content-length': '0' });
          res.end();
          return;
        }
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(BODY.length), etag: '"e"' });
        res.end(req.method === 'HEAD' ? undefined : BODY);
      });
    });
    await new Promise<void>((resolve) => upstream.listen({ host: '127.0.0.1', port: 0 }, resolve));
    const address = upstream.address();
    assert.ok(address !== null && typeof address === 'object');
    target = `http://127.0.0.1:${address.port}`;
  });
  after(async () => {
    upstream.closeAllConnections();
    await new Promise<void>((resolve) => upstream.close(() => resolve()));
  });

  /** One request through the proxy; resolves with what the client saw, never rejects. */
  function call(endpoint: string, opts: { method?: string; path?: string; body?: Buffer; timeoutMs?: number } = {}): Promise<{
    status?: number; headers?: IncomingHttpHeaders; body: Buffer; error?: NodeJS.ErrnoException;
  }> {
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let status: number | undefined;
      let headers: IncomingHttpHeaders | undefined;
      const done = (error?: NodeJS.ErrnoException) => resolve({ ...(status === undefined ? {} : { status }), ...(headers === undefined ? {} : { headers }), body: Buffer.concat(chunks), ...(error === undefined ? {} : { error }) });
      const req = request(`${endpoint}${opts.path ?? '/bucket/key'}`, { method: opts.method ?? 'GET', headers: { host: 'signed-host:1234' }, agent: false }, (res) => {
        status = res.statusCode;
        headers = res.headers;
        res.on('data', (c: Buffer) => chunks.push(c));
        res.once('end', () => done());
        res.once('error', (err) => done(err));
      });
      req.once('error', (err) => done(err));
      if (opts.timeoutMs !== undefined) req.setTimeout(opts.timeoutMs, () => req.destroy(Object.assign(new Error('client timeout'), { code: 'ETIMEDOUT' })));
      req.end(opts.body);
    });
  }

  async function withProxy(kind: FaultKind | undefined, fn: (endpoint: string, log: () => InjectedFault[]) => Promise<void>): Promise<void> {
    const proxy = await startFaultProxy({ target, seed: 5, rate: kind === undefined ? 0 : 1, ...(kind === undefined ? {} : { kinds: [kind] }), stallCapMs: 5_000 });
    try {
      await fn(proxy.endpoint, () => proxy.faults.slice());
    } finally {
      await proxy.stop();
    }
  }

  it('passes requests through unchanged, the Host header included, and points Location back at itself', async () => {
    await withProxy(undefined, async (endpoint) => {
      seen.length = 0;
      const put = await call(endpoint, { method: 'PUT', body: Buffer.from('payload') });
      assert.equal(put.status, 200);
      assert.ok(put.body.equals(BODY));
      assert.deepEqual(seen.map((s) => [s.method, s.url, s.host, s.body.toString()]), [['PUT', '/bucket/key', 'signed-host:1234', 'payload']]);
      const head = await call(endpoint, { method: 'HEAD' });
      assert.equal(head.headers?.['content-length'], String(BODY.length));
      const redirect = await call(endpoint, { path: '/redirect' });
      assert.equal(redirect.headers?.location, `${endpoint}/upload?id=1`);
    });
  });

  it('answers 500, 503 and SlowDown in the S3 dialect; a 500 may come after the server applied the request', async () => {
    for (const kind of ['error-500', 'error-503', 'slow-down'] as const) {
      await withProxy(kind, async (endpoint, log) => {
        seen.length = 0;
        const results = [];
        for (let i = 0; i < 6; i++) results.push(await call(endpoint, { method: 'PUT', body: Buffer.from(`v${i}`) }));
        const code = kind === 'error-500' ? 'InternalError' : kind === 'slow-down' ? 'SlowDown' : 'ServiceUnavailable';
        for (const r of results) {
          assert.equal(r.status, kind === 'error-500' ? 500 : 503);
          assert.match(r.body.toString(), new RegExp(`<Code>${code}</Code>`));
        }
        const faults = log();
        assert.equal(faults.length, 6);
        // The server saw exactly the requests applied before their error.
        assert.equal(seen.length, faults.filter((f) => f.afterUpstream).length);
        if (kind !== 'error-500') assert.equal(seen.length, 0);
      });
    }
  });

  it('a 503 or SlowDown carries Retry-After only when asked, as a fixed value or one made per answer', async () => {
    const plain = await startFaultProxy({ target, seed: 3, rate: 1, kinds: ['slow-down'] });
    let made = 0;
    const asked = await startFaultProxy({
      target, seed: 3, rate: 1, kinds: ['error-503', 'slow-down', 'error-500'], flavor: 'azure',
      throttleHeaders: () => ({ 'retry-after': String(++made), 'x-ms-retry-after-ms': '2500' }),
    });
    try {
      const none = await call(plain.endpoint);
      assert.equal(none.status, 503);
      assert.equal(none.headers?.['retry-after'], undefined);
      const statuses = new Set<number>();
      for (let i = 0; i < 12; i++) {
        const r = await call(asked.endpoint, { method: i % 2 === 0 ? 'GET' : 'HEAD' });
        statuses.add(r.status ?? 0);
        if (r.status === 500) {
          assert.equal(r.headers?.['retry-after'], undefined);
          continue;
        }
        assert.equal(r.status, 503);
        assert.equal(r.headers?.['x-ms-retry-after-ms'], '2500');
        assert.equal(r.headers?.['retry-after'], String(made));
      }
      assert.deepEqual([...statuses].sort(), [500, 503]);
    } finally {
      await Promise.all([plain.stop(), asked.stop()]);
    }
  });

  it('truncates a body short of its Content-Length, and the client notices', async () => {
    await withProxy('truncate', async (endpoint, log) => {
      const r = await call(endpoint);
      assert.equal(r.status, 200);
      assert.equal(r.headers?.['content-length'], String(BODY.length));
      assert.ok(r.body.length < BODY.length);
      assert.equal(r.error?.code, 'ECONNRESET'); // Node's "aborted": the connection ended early
      const [fault] = log();
      assert.equal(fault?.kind, 'truncate');
      assert.equal(fault?.bytes, r.body.length);
    });
  });

  it('resets the connection mid-response, or before the headers when there is no body', async () => {
    await withProxy('reset-response', async (endpoint) => {
      const get = await call(endpoint);
      assert.equal(get.error?.code, 'ECONNRESET');
      assert.ok(get.body.length < BODY.length);
      seen.length = 0;
      const head = await call(endpoint, { method: 'HEAD' });
      assert.equal(head.status, undefined);
      assert.equal(head.error?.code, 'ECONNRESET');
      // The server applied it: the client cannot know.
      assert.equal(seen.length, 1);
    });
  });

  it('resets the connection while the client uploads, and the server never sees the request', async () => {
    await withProxy('reset-request', async (endpoint, log) => {
      seen.length = 0;
      const r = await call(endpoint, { method: 'PUT', body: Buffer.alloc(2 << 20, 1) });
      assert.ok(r.error !== undefined, 'the upload failed');
      assert.equal(r.status, undefined);
      assert.equal(seen.length, 0);
      const [fault] = log();
      assert.equal(fault?.kind, 'reset-request');
      assert.ok((fault?.bytes ?? -1) < 2 << 20);
    });
  });

  it('stalls until the client gives up', async () => {
    await withProxy('stall', async (endpoint, log) => {
      const started = performance.now();
      const r = await call(endpoint, { timeoutMs: 300 });
      assert.equal(r.error?.code, 'ETIMEDOUT');
      assert.ok(performance.now() - started < 4_000, 'the client, not the proxy cap, ended the stall');
      assert.equal(log()[0]?.kind, 'stall');
    });
  });

  it('switches the rate after a chosen request', async () => {
    const proxy = await startFaultProxy({ target, seed: 1, rate: 0, kinds: ['error-503'] });
    try {
      proxy.switchRateAfter(/^PUT \/bucket\/marker$/, 1);
      assert.equal((await call(proxy.endpoint)).status, 200);
      assert.equal((await call(proxy.endpoint, { method: 'PUT', path: '/bucket/marker', body: Buffer.from('m') })).status, 200);
      assert.equal((await call(proxy.endpoint)).status, 503);
      assert.equal(proxy.requests, 3);
    } finally {
      await proxy.stop();
    }
  });
});

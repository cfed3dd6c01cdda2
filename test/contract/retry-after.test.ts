/**
 * Retry-After, end to end through each provider's real SDK: the fault proxy answers 503 (S3's
 * SlowDown, Azure's ServerBusy, GCS's rateLimitExceeded) with a Retry-After (seconds or an HTTP
 * date) or Azure's x-ms-retry-after-ms; the provider carries the wait on its StoreError, and the
 * retry policy waits at least that long, through an injected sleep and clock (nothing really
 * waits). A wait longer than the budget has left fails at once, saying so.
 */
import assert from 'node:assert/strict';
import type { OutgoingHttpHeaders } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { createS3Client } from '../../providers/aws/index.ts';
import { S3ObjectStore } from '../../providers/aws/object-store.ts';
import { createObjectStore as createAzureStore } from '../../providers/azure/index.ts';
import { createObjectStore as createGcsStore } from '../../providers/gcp/index.ts';
import { isStoreError } from '../../providers/object-store.ts';
import type { ObjectStore } from '../../providers/object-store.ts';
import { withRetries } from '../../providers/retrying-store.ts';
import type { RetryPolicy } from '../../providers/retrying-store.ts';
import type { StoreOptions } from '../../providers/store-options.ts';
import { startAzurite } from '../servers/azurite.ts';
import type { AzuriteHandle } from '../servers/azurite.ts';
import { startFaultProxy } from '../servers/fault-proxy.ts';
import type { FaultKind, FaultProxyHandle, ProxyFlavor } from '../servers/fault-proxy.ts';
import { startGcsServer } from '../servers/gcs/index.ts';
import type { GcsServerHandle } from '../servers/gcs/index.ts';
import { s3rverCredentials, startS3rver } from '../servers/s3rver.ts';
import type { S3rverHandle } from '../servers/s3rver.ts';

const BUCKET = 'retry-after';
const MiB = 1024 * 1024;

/** Tiny backoff, so that every recorded wait above a few milliseconds is the server's. */
const POLICY: RetryPolicy = { timeoutMs: 60_000, maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 2 };

type Provider = 's3' | 'azure' | 'gcs';

let s3: S3rverHandle | undefined;
let azurite: AzuriteHandle | undefined;
let gcs: GcsServerHandle | undefined;
const proxies: FaultProxyHandle[] = [];
const stores: ObjectStore[] = [];

before(async () => {
  await Promise.all([
    startS3rver({ buckets: [BUCKET] }).then((h) => { s3 = h; }),
    startAzurite({ containers: [BUCKET] }).then((h) => { azurite = h; }),
    startGcsServer({ buckets: [BUCKET] }).then((h) => { gcs = h; }),
  ]);
});
after(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await Promise.all(proxies.map((p) => p.stop()));
  await Promise.all([s3?.stop(), azurite?.stop(), gcs?.stop()]);
});

function required<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} did not start`);
  return value;
}

const FLAVOR: Record<Provider, ProxyFlavor> = { s3: 's3', azure: 'azure', gcs: 'gcs' };
/** The throttling answer each service really sends. */
const THROTTLE: Record<Provider, FaultKind> = { s3: 'slow-down', azure: 'error-503', gcs: 'error-503' };

function serverEndpoint(provider: Provider): string {
  switch (provider) {
    case 's3': return required(s3, 's3rver').endpoint;
    case 'azure': return required(azurite, 'azurite').endpoint;
    case 'gcs': return required(gcs, 'the GCS server').endpoint;
  }
}

/** The provider's real store, talking to the proxy. */
async function openStore(provider: Provider, endpoint: string): Promise<ObjectStore> {
  const base: StoreOptions = { destination: '', multipart: { partSizeBytes: 5 * MiB, concurrency: 2 }, connectTimeoutMs: 2_000, requestTimeoutMs: 10_000 };
  let store: ObjectStore;
  switch (provider) {
    case 's3': {
      const options = { ...base, destination: `s3://${BUCKET}/p`, endpointUrl: endpoint };
      store = new S3ObjectStore({ client: createS3Client(options, { credentials: s3rverCredentials }), bucket: BUCKET, keyPrefix: 'p/', partSizeBytes: 5 * MiB, concurrency: 2 });
      break;
    }
    case 'azure': {
      const server = required(azurite, 'azurite');
      store = await createAzureStore(
        { ...base, destination: `azure://${BUCKET}/p`, endpointUrl: `${endpoint}${new URL(server.endpoint).pathname}`, azure: { account: server.account, credential: 'default' } },
        { AZURE_STORAGE_KEY: server.accountKey },
      );
      break;
    }
    case 'gcs':
      store = await createGcsStore({ ...base, destination: `gs://${BUCKET}/p`, endpointUrl: endpoint });
      break;
  }
  stores.push(store);
  return store;
}

/** A proxy that throttles every request of the provider, with these headers on each answer. */
async function throttlingProxy(provider: Provider, headers: OutgoingHttpHeaders | (() => OutgoingHttpHeaders)): Promise<FaultProxyHandle> {
  const proxy = await startFaultProxy({
    target: new URL(serverEndpoint(provider)).origin, seed: 1, rate: 1, kinds: [THROTTLE[provider]], flavor: FLAVOR[provider], throttleHeaders: headers,
  });
  proxies.push(proxy);
  return proxy;
}

/** An injected clock and sleep: every wait is recorded and moves the clock, and nothing really waits. */
function fakeTime(onSleep: (ms: number) => void = () => undefined) {
  let now = 1_000_000;
  const waits: number[] = [];
  return {
    waits,
    env: {
      now: () => now,
      sleep: async (ms: number) => {
        waits.push(ms);
        now += ms;
        onSleep(ms);
      },
      random: () => 1,
    },
  };
}

const OPERATIONS: ReadonlyArray<{ name: string; run: (store: ObjectStore) => Promise<unknown> }> = [
  { name: 'head', run: (store) => store.head('missing') },
  { name: 'list', run: (store) => store.list('wals/') },
  { name: 'put', run: (store) => store.put('obj', Buffer.from('bytes')) },
];

for (const provider of ['s3', 'azure', 'gcs'] as const) {
  describe(`${provider}: Retry-After through the real SDK`, () => {
    for (const op of OPERATIONS) {
      it(`${op.name}: a 503 with Retry-After in seconds is retried after at least that wait, then succeeds`, async () => {
        const proxy = await throttlingProxy(provider, { 'retry-after': '3' });
        // The throttling ends while we wait: the next attempt goes through.
        const time = fakeTime(() => proxy.setRate(0));
        const store = withRetries(await openStore(provider, proxy.endpoint), POLICY, time.env);
        await op.run(store);
        assert.deepEqual(time.waits, [3_000]);
        assert.equal(proxy.faults.length, 1);
      });
    }

    it('a Retry-After HTTP date is a wait until that time', async () => {
      // toUTCString drops the milliseconds: the wait is between 9 and 10 s of the real clock.
      const proxy = await throttlingProxy(provider, () => ({ 'retry-after': new Date(Date.now() + 10_000).toUTCString() }));
      const time = fakeTime();
      const store = withRetries(await openStore(provider, proxy.endpoint), POLICY, time.env);
      const err = await store.head('missing').then(() => undefined, (e: unknown) => e);
      assert.ok(isStoreError(err, 'transient'), String(err));
      assert.equal(time.waits.length, POLICY.maxAttempts - 1);
      for (const wait of time.waits) assert.ok(wait >= 8_000 && wait <= 10_000, `waited ${wait} ms`);
      assert.equal(proxy.faults.length, POLICY.maxAttempts);
    });

    it('a wait longer than the budget has left fails at once, saying so', async () => {
      const proxy = await throttlingProxy(provider, { 'retry-after': '120' });
      const time = fakeTime();
      const store = withRetries(await openStore(provider, proxy.endpoint), POLICY, time.env);
      const err = await store.list('wals/').then(() => undefined, (e: unknown) => e);
      assert.ok(isStoreError(err, 'transient'), String(err));
      assert.match(err.message, /asked to retry after 120\.0 s, more than the 60\.0 s left of the retry budget; gave up after 1 attempt/);
      assert.deepEqual(time.waits, []);
      assert.equal(proxy.faults.length, 1);
    });
  });
}

describe('azure: x-ms-retry-after-ms', () => {
  it('is honoured in milliseconds, and wins over Retry-After', async () => {
    const proxy = await throttlingProxy('azure', { 'x-ms-retry-after-ms': '2500', 'retry-after': '9' });
    const time = fakeTime();
    const store = withRetries(await openStore('azure', proxy.endpoint), POLICY, time.env);
    const err = await store.head('missing').then(() => undefined, (e: unknown) => e);
    assert.ok(isStoreError(err, 'transient'), String(err));
    assert.deepEqual(time.waits, [2_500, 2_500]);
  });
});

// What the retry decorator may and may not retry: a create-if-absent put whose first attempt was
// applied, gets re-issued with the same range, bodies that break off or end short, idempotent
// deletes, and the bounds. Over the real local store behind a wrapper that injects the faults.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { randomBytes } from 'node:crypto';
import { StoreError, isStoreError } from '../../../providers/object-store.ts';
import type { LocalObjectStore } from '../../../providers/local/object-store.ts';
import { backoffDelay, withRetries, type RetryPolicy } from '../../../providers/retrying-store.ts';
import { FlakyStore, instantEnv, tempLocalStore } from './flaky-store.ts';

const policy: RetryPolicy = { timeoutMs: 60_000, maxAttempts: 6, baseDelayMs: 100, maxDelayMs: 1_000 };

let local: LocalObjectStore;
let remove: () => Promise<void>;
before(async () => ({ store: local, remove } = await tempLocalStore()));
after(() => remove());

let n = 0;
/** A fresh key per test, so that tests share one directory without meeting each other's objects. */
const fresh = (name: string): string => `t${++n}/${name}`;

describe('create-if-absent puts', () => {
  it('a put applied by an attempt that then failed is a success on the next attempt, not already-exists', async () => {
    const flaky = new FlakyStore(local);
    const store = withRetries(flaky, policy, instantEnv());
    const key = fresh('backup.json');
    flaky.fail('put', 'after');
    await store.put(key, Buffer.from('{"status":"STARTED"}'), { ifAbsent: true, metadata: { cb_format: '1' } });
    assert.deepEqual(flaky.calls.filter((c) => c.startsWith('put')), [`put ${key}`, `put ${key}`]);
    assert.equal((await buffer((await local.get(key)).body)).toString(), '{"status":"STARTED"}');
  });

  it('works for a stream-factory body as well, hashing the factory again', async () => {
    const flaky = new FlakyStore(local);
    const store = withRetries(flaky, policy, instantEnv());
    const key = fresh('wal');
    const bytes = randomBytes(100_000);
    flaky.fail('put', 'after');
    await store.put(key, () => Readable.from([bytes.subarray(0, 5), bytes.subarray(5)]), { ifAbsent: true });
    assert.ok((await buffer((await local.get(key)).body)).equals(bytes));
  });

  it('someone else\'s object (other bytes) stays a conflict, even after a doubtful attempt', async () => {
    const flaky = new FlakyStore(local);
    const store = withRetries(flaky, policy, instantEnv());
    const key = fresh('lease');
    await local.put(key, Buffer.from('theirs'));
    flaky.fail('put', 'before');
    await assert.rejects(store.put(key, Buffer.from('ours!!'), { ifAbsent: true }), (err) => isStoreError(err, 'already-exists'));
  });

  it('the same bytes with other metadata are not ours', async () => {
    const flaky = new FlakyStore(local);
    const store = withRetries(flaky, policy, instantEnv());
    const key = fresh('manifest');
    await local.put(key, Buffer.from('same'), { metadata: { cb_compression: 'gzip' } });
    flaky.fail('put', 'before');
    await assert.rejects(store.put(key, Buffer.from('same'), { ifAbsent: true, metadata: { cb_compression: 'zstd' } }), (err) => isStoreError(err, 'already-exists'));
  });

  it('without a doubtful attempt, an existing object is a conflict even with identical bytes', async () => {
    const flaky = new FlakyStore(local);
    const store = withRetries(flaky, policy, instantEnv());
    const key = fresh('segment');
    await local.put(key, Buffer.from('x'));
    await assert.rejects(store.put(key, Buffer.from('x'), { ifAbsent: true }), (err) => isStoreError(err, 'already-exists'));
    // The decision needs no download: no get was made.
    assert.deepEqual(flaky.calls, [`put ${key}`]);
  });

  it('a failure while checking the existing object retries the whole put', async () => {
    const flaky = new FlakyStore(local);
    const store = withRetries(flaky, policy, instantEnv());
    const key = fresh('entry');
    flaky.fail('put', 'after');
    flaky.fail('head', 'before');
    await store.put(key, Buffer.from('mine'), { ifAbsent: true });
    assert.deepEqual(flaky.calls, [`put ${key}`, `put ${key}`, `head ${key}`, `put ${key}`, `head ${key}`, `get ${key}`]);
  });
});

describe('gets', () => {
  it('a failed request is re-issued with the same range', async () => {
    const flaky = new FlakyStore(local);
    const store = withRetries(flaky, policy, instantEnv());
    const key = fresh('part');
    await local.put(key, Buffer.from('0123456789'));
    flaky.fail('get', 'before', 'after');
    const { body } = await store.get(key, { range: { start: 2, end: 7 } });
    assert.equal((await buffer(body)).toString(), '23456');
    assert.deepEqual(flaky.calls, [`get ${key} 2-7`, `get ${key} 2-7`, `get ${key} 2-7`]);
  });

  it('a body reset mid-way is resumed from the first missing byte, and the caller sees every byte once', async () => {
    const flaky = new FlakyStore(local);
    const store = withRetries(flaky, policy, instantEnv());
    const key = fresh('part');
    const bytes = randomBytes(300_000);
    await local.put(key, bytes);
    flaky.fail('get', { body: 'reset', after: 70_000 }, { body: 'reset', after: 1 });
    const { body, info } = await store.get(key);
    assert.equal(info.size, bytes.length);
    assert.ok((await buffer(body)).equals(bytes));
    assert.deepEqual(flaky.calls, [`get ${key}`, `get ${key} 70000-300000`, `get ${key} 70001-300000`]);
  });

  it('a body that ends cleanly but short of its length is resumed, never handed over short', async () => {
    const flaky = new FlakyStore(local);
    const store = withRetries(flaky, policy, instantEnv());
    const key = fresh('wal');
    const bytes = randomBytes(50_000);
    await local.put(key, bytes);
    flaky.fail('get', { body: 'short', after: 10_000 });
    const { body } = await store.get(key, { range: { start: 1_000 } });
    assert.ok((await buffer(body)).equals(bytes.subarray(1_000)));
    assert.deepEqual(flaky.calls, [`get ${key} 1000-`, `get ${key} 11000-50000`]);
  });

  it('a body that keeps breaking without progress ends in a retryable StoreError that says so, not in short data', async () => {
    const flaky = new FlakyStore(local);
    const store = withRetries(flaky, policy, instantEnv());
    const key = fresh('part');
    await local.put(key, randomBytes(1_000));
    flaky.fail('get', { body: 'reset', after: 500 }, ...Array<'before'>(10).fill('before'));
    const { body } = await store.get(key);
    await assert.rejects(buffer(body), (err) => isStoreError(err, 'transient') && /gave up after 6 attempts/.test(err.message));
  });

  it('resumes count toward the attempts even when each one made progress: a get stays bounded', async () => {
    const flaky = new FlakyStore(local);
    const store = withRetries(flaky, policy, instantEnv());
    const key = fresh('part');
    await local.put(key, randomBytes(1_000));
    flaky.fail('get', ...Array.from({ length: 20 }, () => ({ body: 'reset' as const, after: 10 })));
    const { body } = await store.get(key);
    await assert.rejects(buffer(body), (err) => isStoreError(err, 'transient') && /gave up after 6 attempts/.test(err.message));
    assert.equal(flaky.calls.length, 6);
  });

  it('an object replaced between two reads fails instead of splicing two objects', async () => {
    const flaky = new FlakyStore(local);
    const env = instantEnv();
    const key = fresh('part');
    await local.put(key, Buffer.alloc(1_000, 1));
    flaky.fail('get', { body: 'reset', after: 100 });
    // The replacement lands while the reader waits to resume.
    const store = withRetries(flaky, policy, { ...env, sleep: async () => { await local.put(key, Buffer.alloc(2_000, 2)); } });
    const { body } = await store.get(key);
    await assert.rejects(buffer(body), (err) => isStoreError(err, 'failed') && /changed while it was being read/.test(err.message));
  });

  it('a reader that stops early releases the body and no resume follows', async () => {
    const flaky = new FlakyStore(local);
    const store = withRetries(flaky, policy, instantEnv());
    const key = fresh('part');
    await local.put(key, randomBytes(200_000));
    const { body } = await store.get(key);
    for await (const _chunk of body) break;
    assert.ok(body.destroyed);
    assert.deepEqual(flaky.calls, [`get ${key}`]);
  });

  it('a body that already failed when it was handed over is resumed, not waited on for ever', async () => {
    const key = fresh('early');
    const bytes = randomBytes(5_000);
    await local.put(key, bytes);
    const flaky = new FlakyStore(local);
    const original = flaky.get.bind(flaky);
    let first = true;
    flaky.get = async (k, o) => {
      const result = await original(k, o);
      if (!first) return result;
      first = false;
      result.body.destroy(new StoreError('transient', 'reset before anyone listened'));
      // Let its error and close events go by with nobody listening.
      await new Promise((resolve) => setImmediate(resolve));
      return result;
    };
    const store = withRetries(flaky, policy, instantEnv());
    const { body } = await store.get(key);
    assert.ok((await buffer(body)).equals(bytes));
    assert.deepEqual(flaky.calls, [`get ${key}`, `get ${key} 0-5000`]);
  });

  it('errors that are not retryable pass through the body as they are', async () => {
    const key = fresh('x');
    const failing = new FlakyStore(local);
    await local.put(key, Buffer.alloc(10));
    const original = failing.get.bind(failing);
    failing.get = async (k, o) => {
      const result = await original(k, o);
      const body = new Readable({ read() { this.destroy(new StoreError('access-denied', 'no')); } });
      result.body.destroy();
      return { info: result.info, body };
    };
    const store = withRetries(failing, policy, instantEnv());
    const { body } = await store.get(key);
    await assert.rejects(buffer(body), (err) => isStoreError(err, 'access-denied') && err.message === 'no');
  });
});

describe('the other operations and the bounds', () => {
  it('a delete applied by an attempt that then failed is simply done again (idempotent)', async () => {
    const flaky = new FlakyStore(local);
    const store = withRetries(flaky, policy, instantEnv());
    const key = fresh('old');
    await local.put(key, Buffer.from('x'));
    flaky.fail('delete', 'after');
    await store.delete([key]);
    assert.equal(await local.head(key), undefined);
    assert.equal(flaky.calls.length, 2);
  });

  it('an aborted caller is not retried', async () => {
    const flaky = new FlakyStore(local);
    const store = withRetries(flaky, policy, instantEnv());
    const abort = new AbortController();
    abort.abort();
    flaky.fail('put', 'before', 'before');
    await assert.rejects(store.put(fresh('x'), Buffer.from('x'), { signal: abort.signal }), (err) => isStoreError(err, 'transient'));
    assert.equal(flaky.calls.length, 1);
  });

  it('the delay is full jitter under an exponential cap', () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6].map((a) => backoffDelay(policy, a, () => 1)), [100, 200, 400, 800, 1_000, 1_000]);
    assert.equal(backoffDelay(policy, 3, () => 0), 0);
    assert.equal(backoffDelay(policy, 3, () => 0.5), 200);
  });

  it('time counts: a store that fails slowly gives up at the time limit, however many attempts remain', async () => {
    const flaky = new FlakyStore(local);
    const env = instantEnv();
    const store = withRetries(flaky, { ...policy, timeoutMs: 1_000, maxAttempts: 100 }, env);
    const slow = flaky.head.bind(flaky);
    flaky.head = async (key) => {
      await env.sleep(300); // each attempt takes 300 ms of the clock
      flaky.fail('head', 'before');
      return slow(key);
    };
    await assert.rejects(store.head(fresh('y')), (err) => isStoreError(err, 'transient') && /gave up after \d attempts/.test(err.message));
    assert.ok(flaky.calls.length <= 4, `${flaky.calls.length} attempts in a 1 s budget of 300 ms attempts`);
  });
});

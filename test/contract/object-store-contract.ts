/**
 * The conformance suite for providers/object-store.ts: every provider runs these same tests, one
 * per documented edge case. An emulator's known deviation goes into `skips` with its reason.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { after, before, describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import { isStoreError, listAll } from '../../providers/object-store.ts';
import type { ObjectInfo, ObjectStore, StoreErrorKind } from '../../providers/object-store.ts';

/** What a provider's test file hands the suite: a fresh, empty-enough store and how to dispose of it. */
export interface ContractFixture {
  store: ObjectStore;
  cleanup(): Promise<void>;
}

/** Large enough to need several parts with any part size up to 6 MiB. */
const LARGE_BODY_BYTES = 20 * 1024 * 1024;
/** Where a large failing stream breaks: past the first part, so a multipart upload has begun. */
const LARGE_FAILURE_AT_BYTES = 12 * 1024 * 1024;
/** Bounds every paging loop, so a provider that never ends a listing fails instead of hanging. */
const MAX_PAGES = 1000;

/**
 * Registers the conformance suite for one provider. `skips` maps a test title to the documented
 * reason it cannot pass on this provider's emulator; such a test is reported as skipped with that reason.
 */
export function describeObjectStoreContract(
  name: string,
  setup: () => Promise<ContractFixture>,
  skips: Record<string, string> = {},
): void {
  describe(`ObjectStore contract: ${name}`, () => {
    let fixture: ContractFixture | undefined;
    // Every test writes under its own prefix, so tests never see each other's objects.
    const run = randomUUID().slice(0, 8);
    let counter = 0;
    const titles = new Set<string>();

    before(async () => {
      fixture = await setup();
    });
    after(async () => {
      await fixture?.cleanup();
    });

    /** Declares one contract test; the store and a fresh key prefix are passed in. */
    const check = (title: string, fn: (store: ObjectStore, prefix: string, t: TestContext) => Promise<void>): void => {
      titles.add(title);
      it(title, async (t) => {
        const reason = skips[title];
        if (reason !== undefined) {
          t.skip(reason);
          return;
        }
        assert.ok(fixture, 'setup did not provide a store');
        counter += 1;
        await fn(fixture.store, `contract-${run}/t${counter}/`, t);
      });
    };

    check('capabilities are declared as data', async (store) => {
      assert.equal(typeof store.capabilities.atomicCreateIfAbsent, 'boolean');
      assert.ok(Number.isInteger(store.capabilities.maxDeleteBatch) && store.capabilities.maxDeleteBatch >= 1);
      assert.equal(typeof store.url, 'string');
    });

    check('checkAccess succeeds on a usable store', async (store) => {
      await store.checkAccess();
    });

    check('put of bytes then get returns the same bytes', async (store, p) => {
      const bytes = randomBytes(1000);
      await store.put(`${p}obj`, bytes);
      const { info, body } = await store.get(`${p}obj`);
      assert.deepEqual(await buffer(body), bytes);
      assert.equal(info.key, `${p}obj`);
      assert.equal(info.size, bytes.length);
    });

    check('put of a factory stream stores its bytes, with or without contentLength', async (store, p) => {
      const chunks = [randomBytes(100), randomBytes(5000), randomBytes(1)];
      const whole = Buffer.concat(chunks);
      await store.put(`${p}unknown-length`, () => Readable.from(chunks));
      await store.put(`${p}known-length`, () => Readable.from(chunks), { contentLength: whole.length });
      assert.deepEqual(await readObject(store, `${p}unknown-length`), whole);
      assert.deepEqual(await readObject(store, `${p}known-length`), whole);
    });

    check('an empty body is stored as an empty object', async (store, p) => {
      await store.put(`${p}bytes`, new Uint8Array(0));
      await store.put(`${p}stream`, () => Readable.from([]));
      for (const key of [`${p}bytes`, `${p}stream`]) {
        assert.equal((await store.head(key))?.size, 0, key);
        assert.equal((await readObject(store, key)).length, 0, key);
      }
    });

    check('a large factory stream is stored exactly, in parts', async (store, p) => {
      const source = randomBytes(LARGE_BODY_BYTES);
      const digest = sha256(source);
      await store.put(`${p}unknown-length`, () => chunked(source, 1024 * 1024));
      await store.put(`${p}known-length`, () => chunked(source, 1024 * 1024), { contentLength: source.length });
      for (const key of [`${p}unknown-length`, `${p}known-length`]) {
        const { info, body } = await store.get(key);
        const stored = await buffer(body);
        assert.equal(info.size, source.length, key);
        assert.equal(stored.length, source.length, key);
        assert.equal(sha256(stored), digest, key);
      }
    });

    check('put replaces an existing object, metadata included', async (store, p) => {
      await store.put(`${p}obj`, Buffer.from('first version'), { metadata: { version: '1', only_first: 'x' } });
      await store.put(`${p}obj`, Buffer.from('second'), { metadata: { version: '2' } });
      const { info, body } = await store.get(`${p}obj`);
      assert.equal((await buffer(body)).toString(), 'second');
      assert.equal(info.size, 6);
      assert.deepEqual(info.metadata, { version: '2' });
    });

    check('put with ifAbsent creates a new object', async (store, p) => {
      await store.put(`${p}bytes`, Buffer.from('created'), { ifAbsent: true, metadata: { k: 'v' } });
      await store.put(`${p}stream`, () => Readable.from([Buffer.from('streamed')]), { ifAbsent: true });
      assert.equal((await readObject(store, `${p}bytes`)).toString(), 'created');
      assert.equal((await readObject(store, `${p}stream`)).toString(), 'streamed');
      assert.deepEqual((await store.head(`${p}bytes`))?.metadata, { k: 'v' });
    });

    check('put with ifAbsent on an existing key throws already-exists and keeps the original', async (store, p) => {
      await store.put(`${p}obj`, Buffer.from('original'), { metadata: { v: '1' } });
      await assertStoreError(store.put(`${p}obj`, Buffer.from('intruder'), { ifAbsent: true, metadata: { v: '2' } }), 'already-exists');
      await assertStoreError(
        store.put(`${p}obj`, () => Readable.from([Buffer.from('intruder stream')]), { ifAbsent: true }),
        'already-exists',
      );
      const { info, body } = await store.get(`${p}obj`);
      assert.equal((await buffer(body)).toString(), 'original');
      assert.deepEqual(info.metadata, { v: '1' });
    });

    check('concurrent puts with ifAbsent: exactly one wins', async (store, p, t) => {
      if (!store.capabilities.atomicCreateIfAbsent) {
        t.skip('capabilities.atomicCreateIfAbsent is false: a head then a put may race, as documented');
        return;
      }
      const contenders = Array.from({ length: 8 }, (_, i) => Buffer.from(`contender ${i}`));
      const results = await Promise.allSettled(contenders.map((body) => store.put(`${p}obj`, body, { ifAbsent: true })));
      const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
      assert.equal(winners.length, 1, `winners: ${winners.join(', ')}`);
      for (const r of results) {
        if (r.status === 'rejected') assert.ok(isStoreError(r.reason, 'already-exists'), String(r.reason));
      }
      const winner = contenders[winners[0] ?? -1];
      assert.deepEqual(await readObject(store, `${p}obj`), winner);
    });

    check('get of a missing key throws not-found', async (store, p) => {
      await assertStoreError(store.get(`${p}missing`), 'not-found');
      await assertStoreError(store.get(`${p}missing`, { range: { start: 1, end: 2 } }), 'not-found');
    });

    check('get with a range from a start to the end', async (store, p) => {
      await store.put(`${p}obj`, Buffer.from('0123456789'));
      const { info, body } = await store.get(`${p}obj`, { range: { start: 3 } });
      assert.equal((await buffer(body)).toString(), '3456789');
      assert.equal(info.size, 10, 'info.size is the size of the object, not of the range');
    });

    check('get with a start and an exclusive end', async (store, p) => {
      await store.put(`${p}obj`, Buffer.from('0123456789'));
      assert.equal((await readObject(store, `${p}obj`, { start: 2, end: 5 })).toString(), '234');
      assert.equal((await readObject(store, `${p}obj`, { start: 9, end: 10 })).toString(), '9');
      assert.equal((await readObject(store, `${p}obj`, { start: 4, end: 5 })).toString(), '4');
    });

    check('get of the first byte alone', async (store, p) => {
      await store.put(`${p}obj`, Buffer.from('0123456789'));
      assert.equal((await readObject(store, `${p}obj`, { start: 0, end: 1 })).toString(), '0');
    });

    check('get with a range covering the whole object', async (store, p) => {
      await store.put(`${p}obj`, Buffer.from('0123456789'));
      assert.equal((await readObject(store, `${p}obj`, { start: 0 })).toString(), '0123456789');
      assert.equal((await readObject(store, `${p}obj`, { start: 0, end: 10 })).toString(), '0123456789');
    });

    check('head of a missing key returns undefined', async (store, p) => {
      assert.equal(await store.head(`${p}missing`), undefined);
      assert.equal(await store.head(`${p}missing/deeper`), undefined);
    });

    check('head returns size, time and metadata', async (store, p) => {
      await store.put(`${p}obj`, randomBytes(777), { metadata: { checksum: 'sha256:abc' } });
      const info = await store.head(`${p}obj`);
      assert.ok(info);
      assert.equal(info.key, `${p}obj`);
      assert.equal(info.size, 777);
      assert.ok(info.lastModified instanceof Date && !Number.isNaN(info.lastModified.getTime()));
      assert.deepEqual(info.metadata, { checksum: 'sha256:abc' });
    });

    check('metadata round-trips through put, get and head', async (store, p) => {
      const metadata = { checksum: 'sha256:0f1e2d', size_bytes: '12345', note: 'printable ASCII: ~!@#$%^&*()[]{} ok', empty: '' };
      const expected = { ...metadata };
      await store.put(`${p}bytes`, Buffer.from('x'), { metadata });
      await store.put(`${p}stream`, () => Readable.from([Buffer.from('y')]), { metadata });
      for (const key of [`${p}bytes`, `${p}stream`]) {
        const { info, body } = await store.get(key);
        body.destroy();
        assert.deepEqual(normalizeMetadata(info.metadata), normalizeMetadata(expected), key);
        assert.deepEqual(normalizeMetadata((await store.head(key))?.metadata), normalizeMetadata(expected), key);
      }
      await store.put(`${p}none`, Buffer.from('z'));
      assert.deepEqual((await store.head(`${p}none`))?.metadata ?? {}, {});
    });

    check('list pages through every key exactly once', async (store, p) => {
      const keys = Array.from({ length: 7 }, (_, i) => `${p}k${i}`).concat([`${p}deep/er/k`, `${p}deep/k`]);
      await Promise.all(keys.map((key, i) => store.put(key, Buffer.alloc(i + 1))));
      const seen: ObjectInfo[] = [];
      let pageToken: string | undefined;
      let pages = 0;
      do {
        const page = await store.list(p, { pageSize: 2, ...(pageToken === undefined ? {} : { pageToken }) });
        assert.ok(page.items.length <= 2, `page of ${page.items.length} items exceeds pageSize 2`);
        seen.push(...page.items);
        pageToken = page.nextPageToken;
        pages += 1;
        assert.ok(pages <= MAX_PAGES, 'listing never ended');
      } while (pageToken !== undefined);
      assert.ok(pages >= 5, `9 keys at pageSize 2 came in ${pages} pages`);
      assert.deepEqual(seen.map((i) => i.key).sort(), [...keys].sort());
      for (const item of seen) assert.equal(item.size, keys.indexOf(item.key) + 1, item.key);
    });

    check('list uses plain string prefixes, not folders', async (store, p) => {
      // No key here is a "folder" of another ('a/b' beside 'a/b/c'): the layout never needs that, and
      // a directory-backed store cannot hold both.
      const keys = ['a/b', 'a/bc', 'a/bd/c', 'a/x', 'ab'].map((k) => `${p}${k}`);
      await Promise.all(keys.map((key) => store.put(key, Buffer.from(key))));
      assert.deepEqual(await listKeys(store, `${p}a/b`), [`${p}a/b`, `${p}a/bc`, `${p}a/bd/c`]);
      assert.deepEqual(await listKeys(store, `${p}a/bd/`), [`${p}a/bd/c`]);
      assert.deepEqual(await listKeys(store, `${p}a/bd`), [`${p}a/bd/c`]);
      assert.deepEqual(await listKeys(store, `${p}a`), [`${p}a/b`, `${p}a/bc`, `${p}a/bd/c`, `${p}a/x`, `${p}ab`]);
    });

    check('list of a prefix with no objects is empty, not an error', async (store, p) => {
      const page = await store.list(`${p}nothing-here/`);
      assert.deepEqual(page.items, []);
      assert.equal(page.nextPageToken, undefined);
      assert.deepEqual(await listKeys(store, `${p}nothing`), []);
    });

    check('delete removes a batch of keys and leaves the others', async (store, p) => {
      const keys = ['a', 'b', 'c/d', 'e'].map((k) => `${p}${k}`);
      await Promise.all(keys.map((key) => store.put(key, Buffer.from('x'))));
      await store.delete([`${p}a`, `${p}c/d`, `${p}e`]);
      assert.deepEqual(await listKeys(store, p), [`${p}b`]);
      assert.equal(await store.head(`${p}a`), undefined);
      await assertStoreError(store.get(`${p}c/d`), 'not-found');
    });

    check('delete is idempotent: missing keys and an empty list are not errors', async (store, p) => {
      await store.put(`${p}present`, Buffer.from('x'));
      await store.delete([`${p}missing`, `${p}present`, `${p}also/missing`]);
      await store.delete([`${p}present`]);
      await store.delete([]);
      assert.deepEqual(await listKeys(store, p), []);
    });

    check('delete splits more keys than maxDeleteBatch', async (store, p) => {
      // Only the keys past the first batch need to exist to prove the split; the rest are missing keys.
      const total = store.capabilities.maxDeleteBatch + 3;
      const keys = Array.from({ length: total }, (_, i) => `${p}k${String(i).padStart(5, '0')}`);
      const present = [...keys.slice(0, 3), ...keys.slice(-3)];
      // The untouched sentinel keeps the "directory" non-empty: s3rver's DeleteObjects races (HTTP 500)
      // when concurrent deletes empty a directory, which says nothing about the provider under test.
      await Promise.all([...present, `${p}sentinel`].map((key) => store.put(key, Buffer.from('x'))));
      await store.delete(keys);
      assert.deepEqual(await listKeys(store, p), [`${p}sentinel`]);
    });

    check('invalid keys are rejected as invalid', async (store) => {
      const bad = ['', '/abs', 'trailing/', 'a//b', 'a/./b', 'a/../b', '..', 'back\\slash', 'new\nline', 'x'.repeat(1025)];
      for (const key of bad) {
        await assertStoreError(store.put(key, Buffer.from('x')), 'invalid', JSON.stringify(key));
        await assertStoreError(store.get(key), 'invalid', JSON.stringify(key));
        await assertStoreError(store.head(key), 'invalid', JSON.stringify(key));
        await assertStoreError(store.delete([key]), 'invalid', JSON.stringify(key));
      }
    });

    check('invalid metadata is rejected as invalid and stores nothing', async (store, p) => {
      await assertStoreError(store.put(`${p}a`, Buffer.from('x'), { metadata: { 'Upper-Case': 'v' } }), 'invalid');
      await assertStoreError(store.put(`${p}b`, Buffer.from('x'), { metadata: { ok: 'caf\u00e9' } }), 'invalid');
      await assertStoreError(store.put(`${p}c`, Buffer.from('x'), { metadata: { ok: 'line\nbreak' } }), 'invalid');
      assert.deepEqual(await listKeys(store, p), []);
    });

    check('a body stream that fails midway leaves no object', async (store, p) => {
      const small = Buffer.alloc(64 * 1024, 1);
      await assert.rejects(store.put(`${p}small`, () => failingStream(small, 2 * small.length)));
      // Past the first part of any part size up to 6 MiB, so a multipart upload has begun and must be aborted.
      const part = randomBytes(1024 * 1024);
      await assert.rejects(store.put(`${p}large`, () => failingStream(part, LARGE_FAILURE_AT_BYTES)));
      await assertNothingAt(store, p, ['small', 'large']);
    });

    check('a body stream of declared length that fails midway leaves no object', async (store, p) => {
      const small = Buffer.alloc(64 * 1024, 1);
      await assert.rejects(
        store.put(`${p}small`, () => failingStream(small, 2 * small.length), { contentLength: 4 * small.length }),
      );
      const part = randomBytes(1024 * 1024);
      await assert.rejects(
        store.put(`${p}large`, () => failingStream(part, LARGE_FAILURE_AT_BYTES), { contentLength: LARGE_BODY_BYTES }),
      );
      await assertNothingAt(store, p, ['small', 'large']);
    });

    check('a body stream that fails midway keeps the previous object', async (store, p) => {
      const chunk = Buffer.alloc(64 * 1024, 2);
      await assertReplaceFailsCleanly(store, `${p}obj`, () => failingStream(chunk, 2 * chunk.length), undefined);
    });

    check('a body stream of declared length that fails midway keeps the previous object', async (store, p) => {
      const chunk = Buffer.alloc(64 * 1024, 2);
      await assertReplaceFailsCleanly(store, `${p}obj`, () => failingStream(chunk, 2 * chunk.length), 4 * chunk.length);
    });

    it('the skip list names only tests of this suite', () => {
      const unknown = Object.keys(skips).filter((title) => !titles.has(title));
      assert.deepEqual(unknown, [], 'a skip entry matches no test: stale or misspelled');
    });
  });
}

/** Asserts that a promise rejects with a StoreError of the given kind. */
async function assertStoreError(promise: Promise<unknown>, kind: StoreErrorKind, label = ''): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isStoreError(err, kind), `${label} expected StoreError '${kind}', got ${describeError(err)}`);
    return true;
  });
}

/** Asserts that none of the keys under prefix exists, by head, get and list. */
async function assertNothingAt(store: ObjectStore, prefix: string, keys: readonly string[]): Promise<void> {
  for (const key of keys) {
    assert.equal(await store.head(`${prefix}${key}`), undefined, key);
    await assertStoreError(store.get(`${prefix}${key}`), 'not-found', key);
  }
  assert.deepEqual(await listKeys(store, prefix), []);
}

/** Stores an object, tries to replace it with a failing body, and asserts the original is intact. */
async function assertReplaceFailsCleanly(
  store: ObjectStore,
  key: string,
  body: () => Readable,
  contentLength: number | undefined,
): Promise<void> {
  const original = Buffer.from('the original content');
  await store.put(key, original, { metadata: { v: '1' } });
  await assert.rejects(store.put(key, body, { metadata: { v: '2' }, ...(contentLength === undefined ? {} : { contentLength }) }));
  const { info, body: stored } = await store.get(key);
  assert.deepEqual(await buffer(stored), original);
  assert.deepEqual(info.metadata, { v: '1' });
}

/** Names an error for an assertion message. */
function describeError(err: unknown): string {
  return isStoreError(err) ? `StoreError '${err.kind}': ${err.message}` : String(err);
}

/** The whole object (or a range of it) as one buffer. */
async function readObject(store: ObjectStore, key: string, range?: { start: number; end?: number }): Promise<Buffer> {
  const { body } = await store.get(key, range === undefined ? {} : { range });
  return buffer(body);
}

/** Every key under a prefix, sorted (list order is unspecified). */
async function listKeys(store: ObjectStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const item of listAll(store, prefix)) keys.push(item.key);
  return keys.sort();
}

/** Metadata with an absent object and an absent value treated alike, as some stores drop empty values. */
function normalizeMetadata(metadata: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(metadata ?? {}).filter(([, v]) => v !== ''));
}

/** A stream of buf in chunks of the given size. */
function chunked(buf: Buffer, size: number): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
    })(),
  );
}

/** A stream that repeats chunk until failAt bytes have gone out, then errors. */
function failingStream(chunk: Buffer, failAt: number): Readable {
  return Readable.from(
    (async function* () {
      for (let sent = 0; sent < failAt; sent += chunk.length) yield chunk;
      // Past the async boundary, so the consumer has already started sending what it got.
      await Promise.resolve();
      throw new Error('source failed midway (injected by the contract suite)');
    })(),
  );
}

/** Hex SHA-256 of a buffer. */
function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

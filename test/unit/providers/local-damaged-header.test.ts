// One object whose metadata header is damaged must not break a listing of the others: list shows
// every key (with the payload sizes of the intact ones), and get/head of the damaged one fail as
// 'corrupt', naming it, which the core turns into an integrity error (exit 4).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, open, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { pathToFileURL } from 'node:url';
import { LocalObjectStore } from '../../../providers/local/object-store.ts';
import { isStoreError, listAll, type ObjectInfo } from '../../../providers/object-store.ts';
import { withRetries } from '../../../providers/retrying-store.ts';
import { storeFailure } from '../../../src/core/store/store-failure.ts';
import { exitCodeFor } from '../../../src/cli/exit-codes.ts';
import { makeTempDir, removeTempDir } from '../../helpers/tmp.ts';

/** Size of the fixed header part: the 8-byte magic and the uint32 length of the metadata JSON. */
const HEADER_FIXED = 12;

const KEYS = ['wals/0000000100000000/000000010000000000000001', 'wals/0000000100000000/000000010000000000000002', 'wals/0000000100000000/000000010000000000000003'];
const DAMAGED = KEYS[1] ?? '';

/** Each way the header can be damaged, applied to the file of an object stored with metadata. */
const DAMAGES: ReadonlyArray<{ name: string; apply: (path: string) => Promise<void>; message: RegExp }> = [
  {
    name: 'metadata JSON overwritten',
    apply: async (path) => {
      const handle = await open(path, 'r+');
      try {
        await handle.write(Buffer.from('#!'), 0, 2, HEADER_FIXED);
      } finally {
        await handle.close();
      }
    },
    message: /not valid JSON/,
  },
  {
    name: 'magic overwritten',
    apply: async (path) => {
      const bytes = await readFile(path);
      bytes.write('XXXXX', 0, 'latin1');
      await writeFile(path, bytes);
    },
    message: /no cloudbarman object header/,
  },
  {
    name: 'file cut inside the metadata',
    apply: (path) => truncate(path, HEADER_FIXED + 3),
    message: /truncated/,
  },
];

describe('local store: one object with a damaged metadata header', () => {
  let dir = '';
  before(async () => {
    dir = await makeTempDir('cloudbarman-local-damage');
  });
  after(async () => {
    await removeTempDir(dir);
  });

  for (const [i, damage] of DAMAGES.entries()) {
    it(`${damage.name}: list still returns every key; get and head fail as corrupt, naming it`, async () => {
      const root = join(dir, `case${i}`);
      await mkdir(root);
      const store = new LocalObjectStore(pathToFileURL(root).href);
      const payloads = KEYS.map((k, n) => Buffer.from(`payload ${n} of ${k}`.repeat(n + 1)));
      for (const [n, key] of KEYS.entries()) await store.put(key, payloads[n] ?? Buffer.alloc(0), { metadata: { cb_sha256: 'ab'.repeat(32), cb_size: String(n) } });

      await damage.apply(join(root, ...DAMAGED.split('/')));

      const listed = await collect(listAll(store, 'wals/'));
      assert.deepEqual(listed.map((i) => i.key), KEYS);
      // The intact objects keep their payload sizes; a listing never carries metadata.
      for (const [n, info] of listed.entries()) {
        if (info.key !== DAMAGED) assert.equal(info.size, payloads[n]?.length, info.key);
        assert.equal(info.metadata, undefined);
      }
      // Paging walks past the damaged object too.
      const page1 = await store.list('wals/', { pageSize: 1 });
      const page2 = await store.list('wals/', { pageSize: 1, ...(page1.nextPageToken === undefined ? {} : { pageToken: page1.nextPageToken }) });
      assert.deepEqual(page2.items.map((i) => i.key), [DAMAGED]);

      for (const op of [() => store.get(DAMAGED), () => store.head(DAMAGED)]) {
        await assert.rejects(op(), (err: unknown) => {
          assert.ok(isStoreError(err, 'corrupt'), String(err));
          assert.equal(err.retryable, false);
          assert.equal(err.target, DAMAGED);
          assert.match(err.message, damage.message);
          assert.ok(err.message.includes(DAMAGED), err.message);
          return true;
        });
      }
      // The intact neighbours still read back, metadata and all.
      const other = await store.get(KEYS[2] ?? '');
      assert.deepEqual(await buffer(other.body), payloads[2]);
      assert.equal(other.info.metadata?.['cb_size'], '2');
    });
  }

  it('through the retry policy, a corrupt object fails at once, and the core reports it as exit 4 naming it', async () => {
    const root = join(dir, 'retry');
    await mkdir(root);
    const inner = new LocalObjectStore(pathToFileURL(root).href);
    await inner.put(DAMAGED, Buffer.from('segment'), { metadata: { cb_format: '1' } });
    await (DAMAGES[0]?.apply ?? (async () => undefined))(join(root, ...DAMAGED.split('/')));
    let sleeps = 0;
    const store = withRetries(inner, undefined, { sleep: async () => { sleeps++; }, random: () => 0 });
    const err = await store.get(DAMAGED).then(() => undefined, (e: unknown) => e);
    assert.ok(isStoreError(err, 'corrupt'), String(err));
    assert.equal(sleeps, 0);
    const failure = storeFailure(err, 'reading a WAL segment', `${store.url} ${DAMAGED}`);
    assert.equal(failure.kind, 'integrity');
    assert.equal(exitCodeFor(failure.kind), 4);
    assert.ok(failure.message.includes(DAMAGED), failure.message);
  });
});

async function collect(items: AsyncIterable<ObjectInfo>): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const item of items) out.push(item);
  return out;
}

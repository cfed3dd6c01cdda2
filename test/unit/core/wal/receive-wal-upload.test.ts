// receive-wal's uploader against the real local provider in a temporary directory: complete
// segments stored as wal-upload stores them (and de-duplicated against it), the growing .partial
// replaced and then removed, foreign .partial objects left alone, and integrity errors fatal.
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { LocalObjectStore } from '../../../../providers/local/object-store.ts';
import { WalUploader, PARTIAL_SOURCE, PARTIAL_SOURCE_META, PARTIAL_END_META } from '../../../../src/core/wal/receive-wal-upload.ts';
import type { OpenSegment } from '../../../../src/core/wal/receive-wal-segments.ts';
import { uploadWal } from '../../../../src/core/wal/wal-upload.ts';
import { readWalObject } from '../../../../src/core/wal/wal-read.ts';
import { CloudbarmanError } from '../../../../src/core/errors.ts';
import { silentLogger } from '../../../../src/core/log.ts';

const SEG = 1024 * 1024;
const SERVER = 'pg1';
const S3 = '000000010000000000000003';
const BUCKET = `${SERVER}/wals/0000000100000000`;
let root: string;
let dir: string;
let store: LocalObjectStore;
let uploader: WalUploader | undefined;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'cb-rwup-'));
  dir = join(root, 'local');
  await mkdir(dir);
  await mkdir(join(root, 'store'));
  store = new LocalObjectStore(pathToFileURL(join(root, 'store')).href);
});
afterEach(async () => {
  await uploader?.stop();
  uploader = undefined;
  await rm(root, { recursive: true, force: true });
});

interface Harness {
  up: WalUploader;
  stored: Array<{ storedEnd: bigint; segment?: string }>;
  fatal: CloudbarmanError[];
  notices: string[];
  current: { segment: OpenSegment | undefined };
}

function harness(opts: { partialIntervalMs?: number } = {}): Harness {
  const h: Harness = { stored: [], fatal: [], notices: [], current: { segment: undefined }, up: undefined as unknown as WalUploader };
  h.up = new WalUploader({
    store, server: SERVER, compression: 'zstd', dir, segmentSize: SEG, now: Date.now,
    log: { ...silentLogger, notice: (m) => { h.notices.push(m); } },
    partialIntervalMs: opts.partialIntervalMs ?? 0,
    currentSegment: () => h.current.segment,
    onStored: (e) => { h.stored.push(e); },
    onFatal: (err) => { h.fatal.push(err); },
  });
  uploader = h.up;
  return h;
}

async function until(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(10);
  }
}

async function objects(): Promise<string[]> {
  const path = join(root, 'store', BUCKET);
  return existsSync(path) ? (await readdir(path)).sort() : [];
}

describe('WalUploader', () => {
  it('stores a complete segment exactly as wal-upload would, deletes it locally, and extends the stored range', async () => {
    const h = harness();
    const bytes = randomBytes(SEG);
    await writeFile(join(dir, S3), bytes);
    h.up.setStoredEnd(3n * BigInt(SEG));
    h.up.start();
    h.up.addSegment(S3);
    await until(() => h.stored.length > 0, 'the segment to be stored');
    assert.deepEqual(h.stored, [{ storedEnd: 4n * BigInt(SEG), segment: S3 }]);
    assert.equal(existsSync(join(dir, S3)), false);
    assert.deepEqual(await objects(), [`${S3}.zst`]);
    const back = await readWalObject(store, `${BUCKET}/${S3}.zst`);
    assert.equal(back.verified, true);
    assert.equal(back.sizeBytes, SEG);
    assert.deepEqual(h.up.stats, { segmentsUploaded: 1, segmentsAlreadyArchived: 0, historyFiles: 0, partialUploads: 0, partialsKept: 0, lastSegment: S3 });
  });

  it('takes a segment archive_command already stored with the same bytes as stored', async () => {
    const bytes = randomBytes(SEG);
    await mkdir(join(root, 'pg_wal'));
    await writeFile(join(root, 'pg_wal', S3), bytes);
    await uploadWal({ store, server: SERVER, walPath: join(root, 'pg_wal', S3), compression: 'gzip', log: silentLogger });
    const h = harness();
    await writeFile(join(dir, S3), bytes);
    h.up.start();
    h.up.addSegment(S3);
    await until(() => h.stored.length > 0, 'the segment to be confirmed');
    assert.equal(h.up.stats.segmentsAlreadyArchived, 1);
    assert.deepEqual(await objects(), [`${S3}.gz`], 'nothing new was written');
  });

  it('stops on a different segment already archived under the name, keeping the local file', async () => {
    await mkdir(join(root, 'pg_wal'));
    await writeFile(join(root, 'pg_wal', S3), randomBytes(SEG));
    await uploadWal({ store, server: SERVER, walPath: join(root, 'pg_wal', S3), compression: 'zstd', log: silentLogger });
    const h = harness();
    await writeFile(join(dir, S3), randomBytes(SEG));
    h.up.start();
    h.up.addSegment(S3);
    await until(() => h.fatal.length > 0, 'the integrity error');
    assert.equal(h.fatal[0]?.kind, 'integrity');
    assert.equal(existsSync(join(dir, S3)), true);
    assert.equal(h.stored.length, 0);
  });

  it('replaces the growing .partial, extends the stored range with it, and removes it once the segment is stored', async () => {
    const h = harness();
    const path = join(dir, `${S3}.partial`);
    const bytes = Buffer.alloc(SEG);
    randomBytes(1000).copy(bytes);
    await writeFile(path, bytes);
    const start = 3n * BigInt(SEG);
    h.current.segment = { name: S3, path, timeline: 1, start, written: start + 1000n };
    h.up.setStoredEnd(start);
    h.up.setSynchronous(true);
    h.up.start();
    await until(() => h.up.storedEnd === start + 1000n, 'the first .partial');
    const key = `${BUCKET}/${S3}.partial.zst`;
    assert.equal((await store.head(key))?.metadata?.[PARTIAL_SOURCE_META], PARTIAL_SOURCE);
    assert.equal((await store.head(key))?.metadata?.[PARTIAL_END_META], '0/3003E8');

    randomBytes(500).copy(bytes, 1000);
    await writeFile(path, bytes);
    h.current.segment = { ...h.current.segment, written: start + 1500n };
    h.up.poke();
    await until(() => h.up.storedEnd === start + 1500n, 'the replaced .partial');
    assert.equal(h.up.stats.partialUploads, 2);
    assert.ok((await (async () => { const r = await store.get(key); r.body.destroy(); return r.info.metadata?.[PARTIAL_END_META]; })()) === '0/3005DC');

    // The segment completes: renamed locally, stored, and its .partial object goes.
    randomBytes(SEG - 1500).copy(bytes, 1500);
    await writeFile(path, bytes);
    await rename(path, join(dir, S3));
    h.current.segment = undefined;
    h.up.addSegment(S3);
    await until(() => h.stored.some((e) => e.segment === S3), 'the complete segment');
    assert.deepEqual(await objects(), [`${S3}.zst`]);
    assert.equal(h.up.storedEnd, start + BigInt(SEG));
  });

  it('uploads the .partial only every interval in asynchronous mode, and on drain', async () => {
    const h = harness({ partialIntervalMs: 60_000 });
    const path = join(dir, `${S3}.partial`);
    await writeFile(path, Buffer.alloc(SEG, 1));
    const start = 3n * BigInt(SEG);
    h.current.segment = { name: S3, path, timeline: 1, start, written: start + 10n };
    h.up.start();
    h.up.poke();
    await delay(100);
    assert.equal(h.up.stats.partialUploads, 0, 'not due yet');
    assert.equal(await h.up.drain(10_000), true);
    assert.equal(h.up.stats.partialUploads, 1);
    assert.deepEqual(await objects(), [`${S3}.partial.zst`]);
  });

  it('leaves a .partial another tool stored alone', async () => {
    await mkdir(join(root, 'pg_wal'));
    await writeFile(join(root, 'pg_wal', `${S3}.partial`), Buffer.alloc(SEG, 3));
    await uploadWal({ store, server: SERVER, walPath: join(root, 'pg_wal', `${S3}.partial`), compression: 'none', log: silentLogger });
    const h = harness();
    const path = join(dir, `${S3}.partial`);
    await writeFile(path, Buffer.alloc(SEG, 4));
    const start = 3n * BigInt(SEG);
    h.current.segment = { name: S3, path, timeline: 1, start, written: start + 10n };
    h.up.setSynchronous(true);
    h.up.start();
    await until(() => h.notices.some((n) => /another source/.test(n)), 'the notice');
    assert.equal(h.up.idle, true, 'nothing is due for it any more');
    assert.deepEqual(await objects(), [`${S3}.partial`]);
    assert.ok((await readWalObject(store, `${BUCKET}/${S3}.partial`)).sha256 !== undefined);
    assert.equal(h.up.stats.partialUploads, 0);
  });

  it('stops replacing its .partial once another tool has stored one in its place', async () => {
    const h = harness();
    const path = join(dir, `${S3}.partial`);
    await writeFile(path, Buffer.alloc(SEG, 6));
    const start = 3n * BigInt(SEG);
    h.current.segment = { name: S3, path, timeline: 1, start, written: start + 10n };
    h.up.setSynchronous(true);
    h.up.start();
    await until(() => h.up.stats.partialUploads === 1, 'our first .partial');
    const key = `${BUCKET}/${S3}.partial.zst`;
    await store.put(key, Buffer.from('theirs'), { metadata: { cb_sha256: 'x' } });
    h.current.segment = { ...h.current.segment, written: start + 20n };
    h.up.poke();
    await until(() => h.notices.some((n) => /now in the store from another source/.test(n)), 'the notice');
    assert.equal(h.up.stats.partialUploads, 1);
    assert.equal((await store.head(key))?.metadata?.['cb_sha256'], 'x', 'their object is left as it is');
  });

  it('keeps the .partial of an ended timeline and deletes the local copy', async () => {
    const h = harness();
    const path = join(dir, `${S3}.partial`);
    await writeFile(path, Buffer.alloc(SEG, 5));
    const start = 3n * BigInt(SEG);
    h.up.start();
    h.up.addFinalPartial({ name: S3, path, timeline: 1, start, written: start + 100n }, start + 100n);
    await until(() => h.up.stats.partialsKept === 1, 'the kept .partial');
    assert.equal(existsSync(path), false);
    assert.deepEqual(await objects(), [`${S3}.partial.zst`]);
    assert.ok(h.notices.some((n) => /kept 000000010000000000000003\.partial.*up to 0\/300064/.test(n)));
  });
});

// Batch archiving and its spool records, against the real local provider in temporary directories.
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { LocalObjectStore } from '../../../../providers/local/object-store.ts';
import type { ObjectStore } from '../../../../providers/object-store.ts';
import { archiveOrder, archiveWal, selectBatch, type WalArchiveRequest } from '../../../../src/core/wal/wal-batch-upload.ts';
import {
  checkRecordLocally, decodeRecord, encodeRecord, fileFingerprint, readPostmasterBoot, recordPath, type ArchiveRecord,
} from '../../../../src/core/wal/archive-records.ts';
import { restoreWal } from '../../../../src/core/wal/wal-restore.ts';
import { CloudbarmanError } from '../../../../src/core/errors.ts';
import { silentLogger } from '../../../../src/core/log.ts';

let dir: string;
let pgdata: string;
let walDir: string;
let storeUrl: string;
let store: LocalObjectStore;
let storeOpened: number;

const seg = (n: number): string => `0000000100000000000000${n.toString(16).toUpperCase().padStart(2, '0')}`;
const spool = (): string => join(walDir, 'cloudbarman_spool', 'pg1', 'archive');

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cb-batch-'));
  pgdata = join(dir, 'data');
  walDir = join(pgdata, 'pg_wal');
  await mkdir(join(walDir, 'archive_status'), { recursive: true });
  await mkdir(join(dir, 'store'));
  storeUrl = pathToFileURL(join(dir, 'store')).href;
  store = new LocalObjectStore(storeUrl);
  storeOpened = 0;
  await bootPostmaster('4242', '1700000000');
});
afterEach(() => rm(dir, { recursive: true, force: true }));

async function bootPostmaster(pid: string, start: string): Promise<void> {
  await writeFile(join(pgdata, 'postmaster.pid'), `${pid}\n${pgdata}\n${start}\n5432\n/tmp\n*\n  1 2\nready   \n`);
}

/** Writes WAL files into pg_wal and marks them .ready, as PostgreSQL does. */
async function ready(...names: string[]): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const name of names) {
    const content = randomBytes(64 * 1024);
    await writeFile(join(walDir, name), content);
    await writeFile(join(walDir, 'archive_status', `${name}.ready`), '');
    out.set(name, content);
  }
  return out;
}

/** What PostgreSQL does after archive_command exited 0. */
async function markDone(name: string): Promise<void> {
  await rename(join(walDir, 'archive_status', `${name}.ready`), join(walDir, 'archive_status', `${name}.done`));
}

function request(name: string, over: Partial<WalArchiveRequest> = {}): WalArchiveRequest {
  return {
    server: 'pg1',
    walPath: join(walDir, name),
    compression: 'zstd',
    destination: storeUrl,
    batchSize: 4,
    parallel: 2,
    spoolDirectory: undefined,
    getStore: async () => {
      storeOpened++;
      return store;
    },
    log: silentLogger,
    now: () => new Date('2026-01-01T00:00:00Z'),
    ...over,
  };
}

async function restored(name: string): Promise<Buffer> {
  const dest = join(dir, `restored-${name}`);
  await restoreWal({ store, server: 'pg1', walName: name, destPath: dest, compression: 'zstd', log: silentLogger });
  return readFile(dest);
}

describe('archiveWal', () => {
  it('archives the asked file and the next .ready ones, and later calls confirm their records without the store', async () => {
    const files = await ready(seg(1), seg(2), seg(3), seg(4), seg(5), seg(6));
    const first = await archiveWal(request(seg(1)));
    assert.equal(first.via, 'upload');
    assert.deepEqual(first.batch, { files: 3, archived: 3, failed: 0 });
    assert.deepEqual((await readdir(spool())).sort(), [`${seg(2)}.ok`, `${seg(3)}.ok`, `${seg(4)}.ok`]);
    for (const n of [1, 2, 3, 4]) assert.ok((await restored(seg(n))).equals(files.get(seg(n))!), `${seg(n)} archived byte-identical`);
    await markDone(seg(1));

    storeOpened = 0;
    for (const n of [2, 3, 4]) {
      const r = await archiveWal(request(seg(n)));
      assert.equal(r.via, 'spool-record', seg(n));
      assert.equal(r.status, 'already-archived');
      await markDone(seg(n));
    }
    assert.equal(storeOpened, 0, 'confirmed from the records alone');
    assert.deepEqual(await readdir(spool()), [], 'each confirmed record is removed');

    const fifth = await archiveWal(request(seg(5)));
    assert.equal(fifth.via, 'upload');
    assert.deepEqual(fifth.batch, { files: 1, archived: 1, failed: 0 });
  });

  it('records a stat fingerprint for files settled long enough, and confirms with it', async () => {
    await ready(seg(1), seg(2), seg(3));
    // A clock ten seconds ahead: the files count as settled.
    const ahead = (): Date => new Date(Date.now() + 10_000);
    await archiveWal(request(seg(1), { now: ahead }));
    const text = await readFile(join(spool(), `${seg(2)}.ok`), 'utf8');
    const saved = decodeRecord(text, seg(2));
    assert.match(saved?.file ?? '', /^\d+:\d+:\d+:\d+:\d+$/, 'the record holds the fingerprint');
    await markDone(seg(1));
    const r = await archiveWal(request(seg(2), { now: ahead }));
    assert.equal(r.via, 'spool-record');
    // With the default test clock (2026-01-01, before the files existed) no fingerprint is recorded.
    await markDone(seg(2));
    assert.equal((await archiveWal(request(seg(3), { now: ahead }))).via, 'spool-record');
    await markDone(seg(3));
    await ready(seg(4), seg(5));
    assert.equal((await archiveWal(request(seg(4)))).via, 'upload');
    const plain = decodeRecord(await readFile(join(spool(), `${seg(5)}.ok`), 'utf8'), seg(5));
    assert.ok(plain !== undefined && plain.file === undefined, 'no fingerprint for a file changed just now');
  });

  it('takes timeline history files first, as PostgreSQL does, and at most batch size - 1 others', () => {
    const readyNames = [seg(9), '00000002.history', seg(3), seg(2), `${seg(4)}.00000028.backup`, seg(7), 'junk'];
    assert.deepEqual(selectBatch(readyNames, seg(2), new Set([seg(7)]), 3), ['00000002.history', seg(3), `${seg(4)}.00000028.backup`]);
    assert.deepEqual(selectBatch(readyNames, seg(2), new Set(), 0), []);
    assert.ok(archiveOrder('00000003.history', seg(1)) < 0);
  });

  it('with archive_batch_size 1, archives only the asked file', async () => {
    await ready(seg(1), seg(2));
    const r = await archiveWal(request(seg(1), { batchSize: 1 }));
    assert.equal(r.batch, undefined);
    assert.deepEqual(await readdir(join(dir, 'store', 'pg1', 'wals', '0000000100000000')), [`${seg(1)}.zst`]);
  });

  it('outside a pg_wal with archive_status, archives plainly and keeps no spool', async () => {
    const loose = join(dir, seg(8));
    await writeFile(loose, randomBytes(1024));
    const r = await archiveWal(request(seg(8), { walPath: loose }));
    assert.equal(r.via, 'upload');
    await assert.rejects(readdir(join(dir, 'cloudbarman_spool')), { code: 'ENOENT' });
  });

  it('never records a file whose archived copy differs, and the asked file still succeeds', async () => {
    await ready(seg(1), seg(2));
    // Another cluster archived something else under seg(2)'s name.
    const other = join(dir, 'other', seg(2));
    await mkdir(join(dir, 'other'));
    await writeFile(other, randomBytes(1024));
    await archiveWal(request(seg(2), { walPath: other, batchSize: 1 }));

    const r = await archiveWal(request(seg(1)));
    assert.equal(r.status, 'uploaded');
    assert.deepEqual(r.batch, { files: 1, archived: 0, failed: 1 });
    await assert.rejects(readFile(recordPath(spool(), seg(2))), { code: 'ENOENT' });
    // PostgreSQL's own call for it reports the conflict.
    await assert.rejects(archiveWal(request(seg(2))), (err: unknown) => err instanceof CloudbarmanError && err.kind === 'integrity');
  });

  it('reports the asked file\'s failure even when the others were archived, and records those', async () => {
    await ready(seg(1), seg(2), seg(3));
    const failing: ObjectStore = {
      capabilities: store.capabilities,
      url: store.url,
      put: async (key, body, options) => {
        if (key.includes(seg(1))) throw new CloudbarmanError('unreachable', 'injected failure');
        return store.put(key, body, options);
      },
      get: (key, options) => store.get(key, options),
      head: (key) => store.head(key),
      list: (prefix, options) => store.list(prefix, options),
      delete: (keys) => store.delete(keys),
      checkAccess: () => store.checkAccess(),
      close: () => store.close(),
    };
    await assert.rejects(archiveWal(request(seg(1), { getStore: async () => failing })), /injected failure/);
    assert.deepEqual((await readdir(spool())).sort(), [`${seg(2)}.ok`, `${seg(3)}.ok`]);
  });

  it('ignores a record whose file changed, and archives it the ordinary way (different content: integrity error)', async () => {
    await ready(seg(1), seg(2));
    await archiveWal(request(seg(1)));
    await writeFile(join(walDir, seg(2)), randomBytes(64 * 1024));
    await assert.rejects(archiveWal(request(seg(2))), (err: unknown) => err instanceof CloudbarmanError && err.kind === 'integrity');
    await assert.rejects(readFile(recordPath(spool(), seg(2))), { code: 'ENOENT' }, 'the stale record is gone');
  });

  it('ignores a truncated record', async () => {
    await ready(seg(1), seg(2));
    await archiveWal(request(seg(1)));
    const path = recordPath(spool(), seg(2));
    await writeFile(path, (await readFile(path, 'utf8')).slice(0, 40));
    storeOpened = 0;
    const r = await archiveWal(request(seg(2)));
    assert.equal(r.via, 'upload');
    assert.equal(r.status, 'already-archived', 'found archived by the ordinary check');
    assert.ok(storeOpened > 0, 'the store was asked');
  });

  it('after a postmaster restart, confirms a record only when the store still holds the object', async () => {
    await ready(seg(1), seg(2), seg(3));
    await archiveWal(request(seg(1)));
    await bootPostmaster('5151', '1700009999'); // a crash and restart
    // seg(3)'s object vanished (say the store lost it): the record must not vouch for it.
    await rm(join(dir, 'store', 'pg1', 'wals', '0000000100000000', `${seg(3)}.zst`));

    storeOpened = 0;
    const second = await archiveWal(request(seg(2), { batchSize: 1 }));
    assert.equal(second.via, 'spool-record');
    assert.equal(storeOpened, 1, 'the store was asked');
    const third = await archiveWal(request(seg(3), { batchSize: 1 }));
    assert.equal(third.via, 'upload');
    assert.equal(third.status, 'uploaded', 'uploaded again');
  });

  it('does not let a record vouch for another destination', async () => {
    await ready(seg(1), seg(2));
    await archiveWal(request(seg(1)));
    const elsewhere = await mkdtemp(join(dir, 'store2-'));
    const other = new LocalObjectStore(pathToFileURL(elsewhere).href);
    const r = await archiveWal(request(seg(2), { destination: pathToFileURL(elsewhere).href, getStore: async () => other, batchSize: 1 }));
    assert.equal(r.via, 'upload');
    assert.equal(r.status, 'uploaded');
  });

  it('prunes records of files PostgreSQL has already marked done', async () => {
    await ready(seg(1), seg(2), seg(3));
    await archiveWal(request(seg(1), { batchSize: 2 }));
    assert.deepEqual(await readdir(spool()), [`${seg(2)}.ok`]);
    await markDone(seg(1));
    await markDone(seg(2)); // e.g. marked done by another path, never asked again
    await ready(seg(4));
    await archiveWal(request(seg(3), { batchSize: 2 }));
    assert.deepEqual(await readdir(spool()), [`${seg(4)}.ok`]);
  });
});

describe('archive records', () => {
  const record: ArchiveRecord = {
    format: 1, name: '000000010000000000000002', size: 16, crc32: '0badf00d', sha256: 'a'.repeat(64),
    key: 'pg1/wals/0000000100000000/000000010000000000000002.zst', destination: 'file:///x', boot: '1@2', archivedAt: '2026-01-01T00:00:00.000Z',
  };

  it('round-trip, and reject anything incomplete or for another name', () => {
    assert.deepEqual(decodeRecord(encodeRecord(record), record.name), record);
    const text = encodeRecord(record);
    for (let cut = 0; cut < text.length - 2; cut += 7) assert.equal(decodeRecord(text.slice(0, cut), record.name), undefined, `cut at ${cut}`);
    assert.equal(decodeRecord(text, '000000010000000000000003'), undefined);
    assert.equal(decodeRecord(JSON.stringify({ ...record, format: 2 }), record.name), undefined);
    assert.equal(decodeRecord(JSON.stringify({ ...record, crc32: 'xyz' }), record.name), undefined);
  });

  it('a missing record is "none"; a missing WAL file makes a record invalid', async () => {
    const d = join(dir, 'records');
    await mkdir(d);
    assert.deepEqual(await checkRecordLocally(d, record.name, join(dir, 'nope'), { destination: 'file:///x', boot: '1@2' }), { verdict: 'none' });
    await writeFile(recordPath(d, record.name), encodeRecord(record));
    assert.equal((await checkRecordLocally(d, record.name, join(dir, 'nope'), { destination: 'file:///x', boot: '1@2' })).verdict, 'invalid');
  });

  it('a stat fingerprint vouches for an unchanged file without its CRC-32; any change falls back to the CRC-32', async () => {
    const d = join(dir, 'fingerprints');
    await mkdir(d);
    const wal = join(dir, record.name);
    await writeFile(wal, Buffer.alloc(16, 7));
    // A file changed in the last two seconds gets none (a change in the same timestamp tick could go unseen).
    assert.equal(await fileFingerprint(wal, Date.now()), undefined);
    const later = Date.now() + 10_000;
    const file = await fileFingerprint(wal, later);
    assert.match(file ?? '', /^\d+:\d+:16:\d+:\d+$/);
    // The recorded CRC-32 is wrong on purpose: only the fingerprint can confirm this record.
    await writeFile(recordPath(d, record.name), encodeRecord({ ...record, file: file ?? '' }));
    assert.equal((await checkRecordLocally(d, record.name, wal, { destination: 'file:///x', boot: '1@2' })).verdict, 'confirmed');
    // Rewritten (same size): mtime and ctime move, so the CRC-32 decides, and it does not match.
    await writeFile(wal, Buffer.alloc(16, 8));
    assert.equal((await checkRecordLocally(d, record.name, wal, { destination: 'file:///x', boot: '1@2' })).verdict, 'invalid');
    assert.equal(decodeRecord(JSON.stringify({ ...record, file: 'not-a-fingerprint' }), record.name), undefined);
  });

  it('reads the postmaster identity from postmaster.pid', async () => {
    assert.equal(await readPostmasterBoot(pgdata), '4242@1700000000');
    assert.equal(await readPostmasterBoot(join(dir, 'nowhere')), undefined);
    await writeFile(join(pgdata, 'postmaster.pid'), 'garbage');
    assert.equal(await readPostmasterBoot(pgdata), undefined);
  });
});

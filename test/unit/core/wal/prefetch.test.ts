// The restore prefetcher and wal-restore's side of the spool, in one process, against the real
// local provider in temporary directories: what lands in the spool, what is served, and when the
// prefetcher ends. Waits poll the spool with a bound; nothing sleeps for timing.
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { LocalObjectStore } from '../../../../providers/local/object-store.ts';
import { uploadWal } from '../../../../src/core/wal/wal-upload.ts';
import { runPrefetchWorker, type PrefetchExit, type PrefetchWorkerOptions } from '../../../../src/core/wal/prefetch-worker.ts';
import {
  entryFileName, fetchingFileName, listSpool, parseEntryFileName, readWant, writeOwner, writeWant,
} from '../../../../src/core/wal/prefetch-spool.ts';
import { restoreWalPrefetching, type PrefetchingRestoreRequest } from '../../../../src/core/wal/wal-restore-prefetch.ts';
import { crc32Hex } from '../../../../src/core/wal/spool-files.ts';
import { CloudbarmanError } from '../../../../src/core/errors.ts';
import { silentLogger, type Logger } from '../../../../src/core/log.ts';

const SEGMENT = 1024 * 1024; // wal_segment_size 1 MiB keeps the test small
let dir: string;
let pgdata: string;
let walDir: string;
let spoolDir: string;
let store: LocalObjectStore;
const contents = new Map<string, Buffer>();

const seg = (tli: number, n: number): string => `${tli.toString(16).toUpperCase().padStart(8, '0')}00000000${n.toString(16).toUpperCase().padStart(8, '0')}`;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cb-prefetch-'));
  pgdata = join(dir, 'data');
  walDir = join(pgdata, 'pg_wal');
  spoolDir = join(walDir, 'cloudbarman_spool', 'pg1', 'restore');
  await mkdir(spoolDir, { recursive: true });
  await mkdir(join(dir, 'store'));
  await mkdir(join(dir, 'src'));
  store = new LocalObjectStore(pathToFileURL(join(dir, 'store')).href);
  await writeFile(join(pgdata, 'postmaster.pid'), `1\n${pgdata}\n1700000000\n`);
  await writeFile(join(pgdata, 'recovery.signal'), '');
  contents.clear();
});
const running: Array<{ done: Promise<PrefetchExit>; abort: AbortController }> = [];
afterEach(async () => {
  // A failed test must not leave its prefetcher running.
  for (const run of running.splice(0)) {
    run.abort.abort();
    await run.done.catch(() => undefined);
  }
  await rm(dir, { recursive: true, force: true });
});

/** Archives a segment (or history file) the way wal-upload does. */
async function archive(name: string, content: Buffer = randomBytes(SEGMENT)): Promise<Buffer> {
  const path = join(dir, 'src', name);
  await writeFile(path, content);
  await uploadWal({ store, server: 'pg1', walPath: path, compression: 'zstd', log: silentLogger });
  contents.set(name, content);
  return content;
}

function workerOptions(over: Partial<PrefetchWorkerOptions> = {}): PrefetchWorkerOptions {
  return {
    store, server: 'pg1', compression: 'zstd', spoolDir, dataDir: pgdata, walDir,
    count: 3, parallel: 2, idleExitMs: 60_000, tickMs: 10, absentRetryMs: 20, ownerWaitMs: 2_000,
    pid: 4242, now: () => performance.now(), log: silentLogger, ...over,
  };
}

async function startWorker(over: Partial<PrefetchWorkerOptions> = {}): Promise<{ done: Promise<PrefetchExit>; abort: AbortController }> {
  const abort = new AbortController();
  await writeOwner(spoolDir, { pid: 4242, dataDir: pgdata });
  const done = runPrefetchWorker(workerOptions({ signal: abort.signal, ...over }));
  running.push({ done, abort });
  return { done, abort };
}

/** Polls until the spool holds exactly these segments (complete), at most 20 s. */
async function spoolHolds(names: string[]): Promise<void> {
  const want = [...names].sort().join(',');
  let seen = '';
  for (const deadline = performance.now() + 20_000; performance.now() < deadline; await delay(10)) {
    const { entries, fetching } = await listSpool(spoolDir);
    seen = entries.map((e) => e.name).sort().join(',');
    if (seen === want && fetching.size === 0) return;
  }
  assert.fail(`spool holds [${seen}], expected [${want}]`);
}

describe('prefetch worker', () => {
  it('keeps the next segments verified in the spool, moves on with recovery, and cleans up when recovery ends', async () => {
    for (let n = 1; n <= 8; n++) await archive(seg(1, n));
    await writeWant(spoolDir, { name: seg(1, 1), found: true });
    const { done } = await startWorker();
    await spoolHolds([seg(1, 2), seg(1, 3), seg(1, 4)]);
    for (const entry of (await listSpool(spoolDir)).entries) {
      const content = await readFile(join(spoolDir, entry.file));
      assert.ok(content.equals(contents.get(entry.name)!), `${entry.name} is the archived content`);
      assert.equal(entry.file, entryFileName(entry.name, content.length, crc32Hex(content)));
    }

    await writeWant(spoolDir, { name: seg(1, 3), found: true });
    // seg 3 is the one PostgreSQL is taking: kept; 2 is passed: removed; 4..6 ahead.
    await spoolHolds([seg(1, 3), seg(1, 4), seg(1, 5), seg(1, 6)]);

    await unlink(join(pgdata, 'recovery.signal'));
    assert.equal(await done, 'recovery-ended');
    await assert.rejects(readdir(spoolDir), { code: 'ENOENT' }, 'the spool folder is gone');
  });

  it('follows a timeline switch through the history file recovery restored', async () => {
    // Timeline 2 branched off timeline 1 inside segment 3 (0/3080000 with 1 MiB segments).
    for (const n of [1, 2, 3, 4, 5]) await archive(seg(1, n));
    for (const n of [3, 4, 5, 6]) await archive(seg(2, n));
    await writeFile(join(spoolDir, '00000002.history'), '1\t0/380000\tno recovery target specified\n');
    await writeWant(spoolDir, { name: seg(1, 1), found: true });
    const { done, abort } = await startWorker({ count: 4 });
    await spoolHolds([seg(1, 2), seg(2, 3), seg(2, 4), seg(2, 5)]);
    abort.abort();
    assert.equal(await done, 'aborted');
  });

  it('waits at the end of the archive and picks a segment up once it is archived (standby)', async () => {
    await archive(seg(1, 1));
    await archive(seg(1, 2));
    await writeWant(spoolDir, { name: seg(1, 1), found: true });
    const { done, abort } = await startWorker();
    await spoolHolds([seg(1, 2)]);
    await archive(seg(1, 3));
    await spoolHolds([seg(1, 2), seg(1, 3)]);
    abort.abort();
    assert.equal(await done, 'aborted');
  });

  it('ends when the postmaster is gone, when idle, and when another prefetcher took over', async () => {
    await archive(seg(1, 1));
    await writeWant(spoolDir, { name: seg(1, 1), found: true });
    let run = await startWorker();
    await unlink(join(pgdata, 'postmaster.pid'));
    assert.equal(await run.done, 'postmaster-gone');

    await mkdir(spoolDir, { recursive: true });
    await writeFile(join(pgdata, 'postmaster.pid'), `1\n${pgdata}\n1700000000\n`);
    run = await startWorker({ idleExitMs: 50 });
    assert.equal(await run.done, 'idle');

    await mkdir(spoolDir, { recursive: true });
    run = await startWorker();
    await writeOwner(spoolDir, { pid: 999_999, dataDir: pgdata });
    assert.equal(await run.done, 'replaced');
  });

  it('does not start when the folder belongs to another prefetcher', async () => {
    await writeOwner(spoolDir, { pid: 77, dataDir: pgdata });
    assert.equal(await runPrefetchWorker(workerOptions({ ownerWaitMs: 30 })), 'replaced');
  });
});

describe('wal-restore with prefetch', () => {
  let opened: number;
  let started: number;
  let warnings: string[];
  const log: Logger = { ...silentLogger, warn: (m) => { warnings.push(m); } };
  beforeEach(() => {
    opened = 0;
    started = 0;
    warnings = [];
  });

  function request(name: string, over: Partial<PrefetchingRestoreRequest['prefetch'] & object> = {}, alive = true): PrefetchingRestoreRequest {
    return {
      getStore: async () => {
        opened++;
        return store;
      },
      server: 'pg1',
      walName: name,
      destPath: join(walDir, 'RECOVERYXLOG'),
      compression: 'zstd',
      log,
      prefetch: {
        spoolDir,
        dataDir: pgdata,
        waitMs: 5_000,
        startWorker: async () => {
          started++;
          return 4242;
        },
        isAlive: async () => alive,
        ...over,
      },
    };
  }

  async function spoolEntry(name: string, content: Buffer): Promise<void> {
    await writeFile(join(spoolDir, entryFileName(name, content.length, crc32Hex(content))), content);
  }

  it('serves a prefetched segment without opening the store, and tells the prefetcher where recovery is', async () => {
    await writeOwner(spoolDir, { pid: 4242, dataDir: pgdata });
    const content = randomBytes(4096);
    await spoolEntry(seg(1, 5), content);
    const r = await restoreWalPrefetching(request(seg(1, 5)));
    assert.equal(r.source, 'prefetch');
    assert.equal(opened, 0);
    assert.ok((await readFile(join(walDir, 'RECOVERYXLOG'))).equals(content));
    assert.deepEqual(await readWant(spoolDir), { name: seg(1, 5), found: true });
    assert.deepEqual((await listSpool(spoolDir)).entries, []);
    assert.ok(!(await readdir(walDir)).some((f) => f.startsWith('.')), 'no temporaries left in pg_wal');
  });

  it('refuses a prefetched file that fails its check and restores from the store instead', async () => {
    await writeOwner(spoolDir, { pid: 4242, dataDir: pgdata });
    const archived = await archive(seg(1, 6), randomBytes(4096));
    const damaged = Buffer.from(archived);
    damaged[100] = (damaged[100] ?? 0) ^ 0xff;
    // Named after the good bytes, holding damaged ones (bit rot, a torn write).
    await writeFile(join(spoolDir, entryFileName(seg(1, 6), archived.length, crc32Hex(archived))), damaged);
    const r = await restoreWalPrefetching(request(seg(1, 6)));
    assert.equal(r.source, 'store');
    assert.ok((await readFile(join(walDir, 'RECOVERYXLOG'))).equals(archived));
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? '', /failed its check/);
  });

  it('waits for a segment the prefetcher is downloading right now', async () => {
    await writeOwner(spoolDir, { pid: 4242, dataDir: pgdata });
    await writeFile(join(spoolDir, fetchingFileName(seg(1, 7))), '');
    const content = randomBytes(4096);
    const pending = restoreWalPrefetching(request(seg(1, 7)));
    // The "download" completes while wal-restore waits.
    await spoolEntry(seg(1, 7), content);
    await unlink(join(spoolDir, fetchingFileName(seg(1, 7))));
    const r = await pending;
    assert.equal(r.source, 'prefetch');
    assert.equal(opened, 0);
  });

  it('starts a prefetcher when none is alive, without serving a dead one\'s leftovers', async () => {
    await writeOwner(spoolDir, { pid: 1234, dataDir: pgdata });
    await spoolEntry(seg(1, 8), randomBytes(4096)); // left by the dead prefetcher
    const archived = await archive(seg(1, 8), randomBytes(4096));
    const r = await restoreWalPrefetching(request(seg(1, 8), {}, false));
    assert.equal(r.source, 'store');
    assert.ok((await readFile(join(walDir, 'RECOVERYXLOG'))).equals(archived));
    assert.equal(started, 1);
    assert.deepEqual((await listSpool(spoolDir)).entries, [], 'leftovers cleared');
    assert.deepEqual(JSON.parse(await readFile(join(spoolDir, 'prefetch.pid'), 'utf8')), { pid: 4242, dataDir: pgdata });
    assert.deepEqual(await readWant(spoolDir), { name: seg(1, 8), found: true });
  });

  it('keeps the history copies this recovery made when it starts a prefetcher', async () => {
    await writeFile(join(spoolDir, '00000002.history'), '1\t0/380000\treason\n');
    await archive(seg(2, 4), randomBytes(1024));
    await restoreWalPrefetching(request(seg(2, 4), {}, false));
    assert.equal(started, 1);
    assert.equal(await readFile(join(spoolDir, '00000002.history'), 'utf8'), '1\t0/380000\treason\n');
  });

  it('leaves alone a prefetcher that serves another data directory through a shared spool_directory', async () => {
    await writeOwner(spoolDir, { pid: 4242, dataDir: '/somewhere/else' });
    const archived = await archive(seg(1, 11), randomBytes(1024));
    const r = await restoreWalPrefetching(request(seg(1, 11)));
    assert.equal(r.source, 'store');
    assert.ok((await readFile(join(walDir, 'RECOVERYXLOG'))).equals(archived));
    assert.equal(started, 0);
    assert.equal(await readWant(spoolDir), undefined, 'its position was not touched');
    assert.deepEqual(JSON.parse(await readFile(join(spoolDir, 'prefetch.pid'), 'utf8')), { pid: 4242, dataDir: '/somewhere/else' });
  });

  it('keeps the not-found exit and tells the prefetcher the segment is still needed', async () => {
    await writeOwner(spoolDir, { pid: 4242, dataDir: pgdata });
    await assert.rejects(restoreWalPrefetching(request(seg(1, 9))), (err: unknown) => err instanceof CloudbarmanError && err.kind === 'not-found');
    assert.deepEqual(await readWant(spoolDir), { name: seg(1, 9), found: false });
  });

  it('keeps a copy of each restored history file for the plan, and never serves history from the spool', async () => {
    const history = Buffer.from('1\t0/380000\tno recovery target specified\n');
    await archive('00000002.history', history);
    await writeFile(join(spoolDir, '00000002.history'), 'stale');
    const r = await restoreWalPrefetching({ ...request('00000002.history'), destPath: join(walDir, 'RECOVERYHISTORY') });
    assert.equal(r.source, 'store');
    assert.ok((await readFile(join(spoolDir, '00000002.history'))).equals(history));
    assert.equal(started, 0);
  });

  it('without prefetch settings, restores directly and leaves the spool alone', async () => {
    await archive(seg(1, 10), randomBytes(1024));
    const r = await restoreWalPrefetching({ ...request(seg(1, 10)), prefetch: undefined });
    assert.equal(r.source, 'store');
    assert.deepEqual(await readdir(spoolDir), []);
  });

  it('spool entry names carry size and CRC-32, and nothing else parses as one', () => {
    assert.deepEqual(parseEntryFileName(`${seg(1, 1)}.16777216.0badf00d`), { file: `${seg(1, 1)}.16777216.0badf00d`, name: seg(1, 1), size: 16777216, crc32: '0badf00d' });
    for (const bad of [`${seg(1, 1)}.fetching`, `.${seg(1, 1)}.download`, '00000002.history', 'want', `${seg(1, 1)}.16.0BADF00D`]) {
      assert.equal(parseEntryFileName(bad), undefined, bad);
    }
  });
});

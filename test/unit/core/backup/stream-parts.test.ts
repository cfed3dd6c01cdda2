// Parts built from streamed files (BASE_BACKUP): packed and split exactly as part-plan.ts plans the
// same files, pg_control alone in the last part, at most `jobs` parts stored at once while the writer
// waits (backpressure), and a failing or aborted store stops everything.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { ObjectStore, PutBody } from '../../../../providers/object-store.ts';
import { hashOnThisThread } from '../../../../src/io/part-workers.ts';
import { assembleManifest } from '../../../../src/core/backup/manifest-assembly.ts';
import { planParts } from '../../../../src/core/backup/part-plan.ts';
import { StreamParts } from '../../../../src/core/backup/stream-parts.ts';
import { archiveSink, storedLikeLocal } from '../../../../src/core/backup/take-postgres-backup.ts';
import { silentLogger } from '../../../../src/core/log.ts';
import type { TarEntry, TarSink } from '../../../../src/pg/tar-stream.ts';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** An in-memory store whose put waits for `gate` (when set) and counts puts in flight. */
class FakeStore {
  readonly url = 'memory://';
  readonly objects = new Map<string, Buffer>();
  inFlight = 0;
  maxInFlight = 0;
  delayMs = 0;
  fail: ((key: string) => Error | undefined) | undefined;
  readonly aborted: string[] = [];
  readonly waiting: Array<() => void> = [];
  gated = false;

  async put(key: string, body: PutBody, options?: { signal?: AbortSignal }): Promise<void> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      const failure = this.fail?.(key);
      if (failure !== undefined) throw failure;
      if (this.gated) await new Promise<void>((resolve) => this.waiting.push(resolve));
      if (this.delayMs > 0) {
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(resolve, this.delayMs);
          options?.signal?.addEventListener('abort', () => {
            clearTimeout(t);
            this.aborted.push(key);
            reject(options.signal?.reason);
          }, { once: true });
        });
      }
      this.objects.set(key, Buffer.from(body as Uint8Array));
    } finally {
      this.inFlight--;
    }
  }

  release(): void {
    this.gated = false;
    for (const w of this.waiting.splice(0)) w();
  }
}

function builder(store: FakeStore, jobs: number, partSize: number, signal = new AbortController().signal): StreamParts {
  return new StreamParts({
    jobs, partSize,
    ctx: { store: store as unknown as ObjectStore, prefix: 'pg1/base/X/', codec: 'none', hash: hashOnThisThread, signal, log: silentLogger },
  });
}

/** Streams the files in pieces of `piece` bytes. */
async function stream(parts: StreamParts, files: Array<{ path: string; data: Buffer }>, piece: number): Promise<void> {
  for (const f of files) {
    parts.startFile({ path: f.path, mode: 0o600, mtime: new Date(0) });
    for (let at = 0; at < f.data.length; at += piece) await parts.write(f.data.subarray(at, at + piece));
    parts.endFile();
  }
}

test('packs and splits exactly as planParts, pg_control alone and last, and the parts hold the files', async () => {
  const files = [
    { path: 'PG_VERSION', data: Buffer.from('17\n') },
    { path: 'base/1/1259', data: randomBytes(2500) },
    { path: 'base/1/empty', data: Buffer.alloc(0) },
    { path: 'global/pg_control', data: randomBytes(300) },
    { path: 'base/1/big', data: randomBytes(10_000) },
    { path: 'base/1/tail', data: randomBytes(999) },
  ];
  for (const piece of [1, 77, 4096, 1 << 20]) {
    const store = new FakeStore();
    const parts = builder(store, 3, 1000);
    await stream(parts, files, piece);
    const outcomes = await parts.finish();

    const plan = planParts(files.map((f) => ({ path: f.path, size: f.data.length })), 1000);
    const planned = [...plan.parts, ...(plan.finalPart === undefined ? [] : [plan.finalPart])]
      .flatMap((p) => p.chunks.map((c) => `${p.index}:${c.file}:${c.fileOffset}:${c.length}`));
    const got = [...outcomes].sort((a, b) => a.index - b.index).flatMap((o) => o.chunks.map((c) => `${o.index}:${c.file}:${c.fileOffset}:${c.length}`));
    assert.deepEqual(got, planned, `pieces of ${piece}`);

    const manifest = assembleManifest({ backupId: 'X', compression: 'none', files: parts.files, directories: [], outcomes });
    const control = manifest.files.find((f) => f.path === 'global/pg_control');
    assert.deepEqual(control?.chunks.map((c) => c.part), [manifest.parts.length - 1]);
    assert.equal(manifest.files.find((f) => f.path === 'base/1/empty')?.sha256, sha(Buffer.alloc(0)));
    for (const f of files) {
      const entry = manifest.files.find((m) => m.path === f.path);
      assert.ok(entry !== undefined, f.path);
      assert.equal(entry.size, f.data.length);
      const bytes = Buffer.concat(entry.chunks.map((c) => {
        const part = store.objects.get(`pg1/base/X/${manifest.parts[c.part]?.name ?? '?'}`);
        assert.ok(part !== undefined);
        assert.equal(sha(part.subarray(c.partOffset, c.partOffset + c.length)), c.sha256);
        return part.subarray(c.partOffset, c.partOffset + c.length);
      }));
      assert.ok(bytes.equals(f.data), `${f.path} reads back (pieces of ${piece})`);
    }
    assert.ok(manifest.parts.every((p) => p.rawSize <= 1000));
  }
});

test('backpressure: a write that fills a part waits while all jobs are storing', async () => {
  const store = new FakeStore();
  store.gated = true;
  const parts = builder(store, 2, 100);
  parts.startFile({ path: 'base/1/f', mode: 0o600, mtime: new Date(0) });
  await parts.write(randomBytes(100)); // part 0 storing
  await parts.write(randomBytes(100)); // part 1 storing
  let done = false;
  const third = parts.write(randomBytes(100)).then(() => { done = true; }); // part 2: both jobs busy
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  assert.equal(done, false, 'the third part waits for a free job');
  assert.equal(store.inFlight, 2);
  store.release();
  await third;
  assert.equal(done, true);
  parts.endFile();
  store.release();
  const finishing = parts.finish();
  for (let i = 0; i < 20 && store.waiting.length === 0; i++) await new Promise((r) => setImmediate(r));
  store.release();
  assert.equal((await finishing).length, 3);
  assert.ok(store.maxInFlight <= 2 && parts.maxInFlight <= 2);
});

test('a slow store: never more than jobs parts in flight, whatever the amount streamed', async () => {
  for (const jobs of [1, 3]) {
    const store = new FakeStore();
    store.delayMs = 3;
    const parts = builder(store, jobs, 4096);
    const files = Array.from({ length: 40 }, (_, i) => ({ path: `base/1/${i}`, data: randomBytes(1000 + i * 37) }));
    await stream(parts, files, 1500);
    const outcomes = await parts.finish();
    assert.equal(outcomes.length, Math.ceil(files.reduce((s, f) => s + f.data.length, 0) / 4096));
    assert.ok(store.maxInFlight <= jobs, `at most ${jobs} in flight, saw ${store.maxInFlight}`);
    assert.equal(parts.maxInFlight, store.maxInFlight);
    if (jobs > 1) assert.ok(store.maxInFlight > 1, 'parts are stored in parallel');
  }
});

test('a failing part stops the others and the writer gets the failure', async () => {
  const store = new FakeStore();
  store.delayMs = 200;
  store.fail = (key) => (key.endsWith('000002') ? new Error('disk on fire') : undefined);
  const parts = builder(store, 3, 100);
  await assert.rejects(async () => {
    await stream(parts, [{ path: 'base/1/f', data: randomBytes(10_000) }], 100);
    await parts.finish();
  }, /disk on fire/);
  await parts.abort(new Error('cleanup'));
  assert.ok(store.aborted.length >= 1, 'the parts in flight were aborted');
  assert.equal(store.inFlight, 0);
});

test('aborting the signal stops the stream', async () => {
  const store = new FakeStore();
  store.delayMs = 50;
  const ac = new AbortController();
  const parts = builder(store, 2, 100, ac.signal);
  parts.startFile({ path: 'base/1/f', mode: 0o600, mtime: new Date(0) });
  await parts.write(randomBytes(150));
  ac.abort(new Error('SIGTERM'));
  await assert.rejects(parts.write(randomBytes(100)), /SIGTERM/);
  await parts.abort(ac.signal.reason);
  assert.equal(store.inFlight, 0);
});

test('archiveSink: paths, directories and exclusions as backup_method local records them', async () => {
  const store = new FakeStore();
  const parts = builder(store, 2, 1000);
  const directories: Array<{ path: string; mode: number }> = [];
  const entry = (path: string, type: TarEntry['type'], size = 0): TarEntry => ({ path, type, size, mode: type === 'file' ? 0o600 : 0o700, mtime: new Date(0), linkTarget: '' });
  const feed = async (sink: TarSink, e: TarEntry, data?: Buffer): Promise<void> => {
    await sink.entry(e);
    if (data !== undefined) await sink.data(data);
    if (e.type === 'file') await sink.end(e);
  };
  const ts = archiveSink(parts, directories, 16384);
  await feed(ts, entry('PG_18_202506291', 'directory'));
  await feed(ts, entry('PG_18_202506291/5/16385', 'file', 3), Buffer.from('abc'));
  await feed(ts, entry('PG_18_202506291/5/pgsql_tmp', 'directory'));
  const base = archiveSink(parts, directories, undefined);
  await feed(base, entry('backup_label', 'file', 5), Buffer.from('label'));
  await feed(base, entry('pg_tblspc', 'directory'));
  await feed(base, entry('pg_tblspc/16384', 'symlink'));
  await feed(base, entry('pg_wal', 'directory'));
  await feed(base, entry('pg_wal/archive_status', 'directory'));
  await feed(base, entry('pg_wal/000000010000000000000001', 'file', 4), Buffer.from('wal!'));
  await feed(base, entry('base/5/pg_internal.init', 'file', 2), Buffer.from('xx'));
  await feed(base, entry('PG_VERSION', 'file', 3), Buffer.from('18\n'));
  await feed(base, entry('global/pg_control', 'file', 4), Buffer.from('ctrl'));
  const outcomes = await parts.finish();
  const manifest = assembleManifest({ backupId: 'X', compression: 'none', files: parts.files, directories, outcomes });
  assert.deepEqual(manifest.directories.map((d) => `${d.path} ${d.mode.toString(8)}`),
    ['pg_tblspc 700', 'pg_tblspc/16384 700', 'pg_tblspc/16384/PG_18_202506291 700', 'pg_wal 700', 'pg_wal/archive_status 700']);
  assert.deepEqual(manifest.files.map((f) => `${f.path} ${f.size}`), ['PG_VERSION 3', 'global/pg_control 4', 'pg_tblspc/16384/PG_18_202506291/5/16385 3']);
  assert.equal(storedLikeLocal('pg_stat_tmp/global.stat', 'file'), false);
  assert.equal(storedLikeLocal('pg_wal/summaries', 'directory'), true);
  assert.equal(storedLikeLocal('postmaster.pid', 'file'), false);
});

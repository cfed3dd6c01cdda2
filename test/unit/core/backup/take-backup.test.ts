// takeBackup's order of events and its failure paths, with a scripted database session, a fake clock and
// the real local provider in a temporary directory (no PostgreSQL; test/integration/backup-local covers that).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { pathToFileURL } from 'node:url';
import { LocalObjectStore } from '../../../../providers/local/object-store.ts';
import type { ObjectStore, PutBody, PutOptions } from '../../../../providers/object-store.ts';
import { takeBackup, type BackupRequest, type BackupSessionApi } from '../../../../src/core/backup/take-backup.ts';
import type { BackupClock } from '../../../../src/core/backup/wait-for-wal.ts';
import { readBackupInfo, readManifest } from '../../../../src/core/catalog/catalog.ts';
import { CloudbarmanError } from '../../../../src/core/errors.ts';
import { silentLogger } from '../../../../src/core/log.ts';
import type { ServerInfo } from '../../../../src/pg/backup-api.ts';

const SYSTEM_ID = '7311111111111111111';
const STOP_WAL = '000000010000000000000003';
const LABEL = 'START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\n' +
  'BACKUP FROM: primary\nSTART TIME: 2026-11-22 00:00:00 UTC\nLABEL: x\nSTART TIMELINE: 1\n';

let dir: string;
let pgdata: string;
let caseNo = 0;

async function file(rel: string, content: Buffer): Promise<void> {
  await mkdir(dirname(join(pgdata, rel)), { recursive: true });
  await writeFile(join(pgdata, rel), content);
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cb-takebackup-'));
  pgdata = join(dir, 'data');
  const control = Buffer.alloc(8192);
  control.writeBigUInt64LE(BigInt(SYSTEM_ID), 0);
  await file('global/pg_control', control);
  await file('PG_VERSION', Buffer.from('17\n'));
  await file('base/5/16384', randomBytes(300_000));
  await file('base/5/16385', Buffer.alloc(200_000, 3));
  await file('postmaster.pid', Buffer.from('123\n'));
  await file('pg_wal/000000010000000000000001', Buffer.alloc(1000));
});
after(() => rm(dir, { recursive: true, force: true }));

/** The local store, recording the order of puts. */
async function recordingStore(): Promise<{ store: ObjectStore; puts: string[] }> {
  const storeDir = join(dir, `store-${++caseNo}`);
  await mkdir(storeDir);
  const inner = new LocalObjectStore(pathToFileURL(storeDir).href);
  const puts: string[] = [];
  const store: ObjectStore = {
    capabilities: inner.capabilities, url: inner.url,
    put: async (key: string, body: PutBody, options?: PutOptions) => {
      await inner.put(key, body, options);
      puts.push(key);
    },
    get: (k, o) => inner.get(k, o), head: (k) => inner.head(k), list: (p, o) => inner.list(p, o),
    delete: (k) => inner.delete(k), checkAccess: () => inner.checkAccess(), close: () => inner.close(),
  };
  return { store, puts };
}

/** A scripted session; `archive` decides whether the stop segment shows up in the store. */
function fakeSession(opts: { store: ObjectStore; archive?: boolean; info?: Partial<ServerInfo>; stopFails?: boolean }): BackupSessionApi & { calls: string[] } {
  const calls: string[] = [];
  const info: ServerInfo = {
    versionNum: 170004, version: '17.4', systemIdentifier: SYSTEM_ID, catalogVersion: 202406281, dataDirectory: pgdata,
    walSegmentSize: 16 * 1024 * 1024, dataChecksums: false, inRecovery: false, archiveMode: 'on', role: 'postgres', mayBackup: true, tablespaces: [], ...opts.info,
  };
  return {
    calls,
    target: 'postgres@127.0.0.1:5432/postgres',
    onLost: () => undefined,
    serverInfo: async () => info,
    assertSupported: async () => undefined,
    start: async (label: string) => {
      calls.push(`start ${label}`);
      return { lsn: '0/2000028', timeline: 1, walFile: '000000010000000000000002', time: new Date('2026-11-22T00:00:01Z') };
    },
    stop: async () => {
      calls.push('stop');
      if (opts.stopFails === true) throw new CloudbarmanError('unreachable', 'stopping the backup (pg_backup_stop) failed: connection terminated');
      if (opts.archive !== false) await opts.store.put(`srv/wals/0000000100000000/${STOP_WAL}.zst`, Buffer.from('wal'));
      return { lsn: '0/3000100', walFile: STOP_WAL, labelFile: LABEL, spcmapFile: '', time: new Date('2026-11-22T00:00:09Z') };
    },
    archiverStatus: async () => ({ lastArchivedWal: '000000010000000000000002', lastFailedWal: STOP_WAL, failedCount: 3, lastFailedTime: null }),
    close: async () => {
      calls.push('close');
    },
  };
}

/** A clock whose sleep advances time at once. */
function fakeClock(): BackupClock & { slept: number } {
  let now = Date.parse('2026-11-22T00:00:00Z');
  const clock = {
    slept: 0,
    now: () => new Date(now),
    sleep: async (ms: number) => {
      now += ms;
      clock.slept += ms;
    },
  };
  return clock;
}

function request(store: ObjectStore, session: BackupSessionApi, extra: Partial<BackupRequest> = {}): BackupRequest {
  return {
    store, server: 'srv', conninfo: 'host=127.0.0.1', pgdata, compression: 'zstd', jobs: 2, partSize: 128 * 1024,
    walArchiveTimeoutMs: 60_000, connectTimeoutMs: 1000, hostname: 'db1', cloudbarmanVersion: '0.1.0',
    clock: fakeClock(), log: silentLogger, openSession: async () => session, ...extra,
  };
}

test('a backup is stored data first, pg_control last, then label, manifest and the DONE entry', async () => {
  const { store, puts } = await recordingStore();
  const session = fakeSession({ store });
  const progress: number[] = [];
  const info = await takeBackup(request(store, session, { name: 'nightly', onProgress: (p) => progress.push(p.partsDone) }));

  assert.equal(info.status, 'DONE');
  assert.equal(info.label, 'nightly');
  assert.equal(info.begin_lsn, '0/2000028');
  assert.equal(info.begin_wal, '000000010000000000000002');
  assert.equal(info.end_lsn, '0/3000100');
  assert.equal(info.end_wal, STOP_WAL);
  assert.equal(info.timeline, 1);
  assert.equal(info.begin_time, '2026-11-22T00:00:01.000Z');
  assert.equal(info.end_time, '2026-11-22T00:00:09.000Z');
  assert.equal(info.system_identifier, SYSTEM_ID);
  assert.equal(info.pg_version, 170004);
  assert.equal(info.file_count, 4);
  assert.equal(info.size_bytes, 300_000 + 200_000 + 3 + 8192);
  assert.deepEqual(session.calls, ['start nightly', 'stop', 'close']);

  const prefix = `srv/base/${info.id}/`;
  const order = puts.filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
  assert.deepEqual(order.slice(0, 2), ['backup.json', 'backup.json'], 'STARTED, then STARTED with the start LSN');
  const dataKeys = order.filter((k) => k.startsWith('data/'));
  assert.equal(dataKeys.length, info.part_count);
  assert.equal(dataKeys.at(-1), `data/${String(info.part_count - 1).padStart(6, '0')}.zst`, 'the last part stored is the last numbered');
  assert.deepEqual(order.slice(2 + dataKeys.length), ['backup_label', 'manifest.json.zst', 'backup.json'], 'then label, manifest, and DONE last');
  assert.deepEqual(progress, Array.from({ length: info.part_count }, (_, i) => i + 1));

  const manifest = await readManifest(store, 'srv', info.id);
  assert.deepEqual(manifest.files.map((f) => f.path), ['PG_VERSION', 'base/5/16384', 'base/5/16385', 'global/pg_control']);
  const control = manifest.files.find((f) => f.path === 'global/pg_control');
  assert.deepEqual(control?.chunks.map((c) => c.part), [manifest.parts.length - 1], 'pg_control alone in the last part');
  assert.ok(manifest.files.every((f) => f.chunks.every((c) => c.part < manifest.parts.length - 1 || f.path === 'global/pg_control')));
  assert.ok(manifest.parts.every((p) => p.rawSize <= 128 * 1024));
  assert.ok(manifest.directories.some((d) => d.path === 'pg_wal'));
  const label = await buffer((await store.get(`${prefix}backup_label`)).body);
  assert.equal(label.toString(), LABEL);
  assert.equal((await readBackupInfo(store, 'srv', info.id))?.status, 'DONE');
});

test('WAL that never arrives fails the backup after wal_archive_timeout, naming the segment and the archiver state', async () => {
  const { store, puts } = await recordingStore();
  const session = fakeSession({ store, archive: false });
  const clock = fakeClock();
  const warnings: string[] = [];
  const log = { ...silentLogger, warn: (m: string) => warnings.push(m) };
  await assert.rejects(takeBackup(request(store, session, { clock, log, walArchiveTimeoutMs: 30_000 })), (err: unknown) => {
    assert.ok(err instanceof CloudbarmanError);
    assert.equal(err.kind, 'failed');
    assert.match(err.message, new RegExp(`WAL segment ${STOP_WAL}.*within 30 s.*last failed ${STOP_WAL}`));
    assert.match(err.hint ?? '', /archive_command must be 'cloudbarman wal-upload srv %p'/);
    return true;
  });
  assert.ok(clock.slept >= 30_000 && clock.slept < 40_000, `waited ${clock.slept} ms of fake time`);
  assert.deepEqual(warnings.length, 1, 'one warning while waiting, not one per poll');
  assert.match(warnings[0] ?? '', new RegExp(`archive_command is failing: PostgreSQL reports 3 failures, the last on ${STOP_WAL}; still waiting`));
  const id = puts[0]?.split('/')[2] ?? '';
  const entry = await readBackupInfo(store, 'srv', id);
  assert.equal(entry?.status, 'FAILED');
  assert.match(entry?.error ?? '', /did not reach/);
  assert.equal(puts.at(-1), `srv/base/${id}/backup.json`, 'the FAILED entry is written last');
});

test('an interruption marks the backup FAILED with the reason and never calls pg_backup_stop', async () => {
  const { store, puts } = await recordingStore();
  const session = fakeSession({ store });
  const controller = new AbortController();
  const reason = new CloudbarmanError('failed', 'the backup was interrupted by SIGTERM');
  await assert.rejects(
    takeBackup(request(store, session, { signal: controller.signal, jobs: 1, onProgress: () => controller.abort(reason) })),
    (err: unknown) => err === reason,
  );
  assert.deepEqual(session.calls.filter((c) => c === 'stop'), []);
  assert.ok(session.calls.includes('close'));
  const entry = await readBackupInfo(store, 'srv', puts[0]?.split('/')[2] ?? '');
  assert.equal(entry?.status, 'FAILED');
  assert.equal(entry?.error, 'the backup was interrupted by SIGTERM');
});

test('a failing pg_backup_stop marks the backup FAILED and keeps the error kind', async () => {
  const { store, puts } = await recordingStore();
  const session = fakeSession({ store, stopFails: true });
  await assert.rejects(takeBackup(request(store, session)), (err: unknown) => err instanceof CloudbarmanError && err.kind === 'unreachable');
  const entry = await readBackupInfo(store, 'srv', puts[0]?.split('/')[2] ?? '');
  assert.equal(entry?.status, 'FAILED');
  assert.match(entry?.error ?? '', /pg_backup_stop/);
});

test('pgdata of another cluster is refused before anything is stored', async () => {
  const { store, puts } = await recordingStore();
  const session = fakeSession({ store, info: { systemIdentifier: '7300000000000000009' } });
  await assert.rejects(takeBackup(request(store, session)),
    (err: unknown) => err instanceof CloudbarmanError && err.kind === 'bad-input' && /belongs to database system 7311111111111111111.*7300000000000000009/.test(err.message));
  assert.deepEqual(puts, []);
  assert.deepEqual(session.calls, ['close']);
});

test('archive_mode off is refused before anything is stored', async () => {
  const { store, puts } = await recordingStore();
  const session = fakeSession({ store, info: { archiveMode: 'off' } });
  await assert.rejects(takeBackup(request(store, session)), (err: unknown) => err instanceof CloudbarmanError && err.kind === 'bad-input' && /archive_mode is off/.test(err.message));
  assert.deepEqual(puts, []);
});

test('with streaming_archiver on, archive_mode off is fine: the backup waits for receive-wal, and says so', async () => {
  const done = await recordingStore();
  const info = await takeBackup(request(done.store, fakeSession({ store: done.store, info: { archiveMode: 'off' } }), { streamingArchiver: true }));
  assert.equal(info.status, 'DONE');

  const { store } = await recordingStore();
  const clock = fakeClock();
  const warnings: string[] = [];
  const log = { ...silentLogger, warn: (m: string) => warnings.push(m) };
  await assert.rejects(takeBackup(request(store, fakeSession({ store, archive: false, info: { archiveMode: 'off' } }), { clock, log, walArchiveTimeoutMs: 30_000, streamingArchiver: true })),
    (err: unknown) => {
      assert.ok(err instanceof CloudbarmanError);
      assert.match(`${err.message} ${err.hint ?? ''}`, /receive-wal/);
      assert.doesNotMatch(`${err.message} ${err.hint ?? ''}`, /archive_command|pg_stat_archiver/);
      return true;
    });
  assert.deepEqual(warnings.filter((w) => /archive_command/.test(w)), [], 'no archive_command warnings in streaming mode');
});

test('a missing pgdata is bad input, found before connecting', async () => {
  const { store } = await recordingStore();
  let opened = false;
  const req = request(store, fakeSession({ store }), { pgdata: join(dir, 'nope'), openSession: async () => { opened = true; return fakeSession({ store }); } });
  await assert.rejects(takeBackup(req), (err: unknown) => err instanceof CloudbarmanError && err.kind === 'bad-input' && /pgdata .*nope does not exist/.test(err.message));
  assert.equal(opened, false);
});

test('a directory without pg_control is not a data directory', async () => {
  const { store } = await recordingStore();
  await mkdir(join(dir, 'empty'), { recursive: true });
  await assert.rejects(takeBackup(request(store, fakeSession({ store }), { pgdata: join(dir, 'empty') })),
    (err: unknown) => err instanceof CloudbarmanError && err.kind === 'bad-input' && /not a PostgreSQL data directory/.test(err.message));
});

test('a tablespace the server lists but pgdata lacks fails the backup rather than leaving it out', async () => {
  const { store, puts } = await recordingStore();
  const session = fakeSession({ store, info: { tablespaces: [{ name: 'ts1', oid: 99999, location: '/srv/ts1' }] } });
  await assert.rejects(takeBackup(request(store, session)),
    (err: unknown) => err instanceof CloudbarmanError && /tablespace ts1 \(99999\) has no pg_tblspc\/<oid> link/.test(err.message));
  assert.equal((await readBackupInfo(store, 'srv', puts[0]?.split('/')[2] ?? ''))?.status, 'FAILED');
  assert.deepEqual(session.calls.filter((c) => c === 'stop'), []);
});

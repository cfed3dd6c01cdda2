// takeSnapshotBackup's coordination, with a recording fake snapshotter, a scripted database session, a fake
// clock, real directories as the disks and the real local store: the order of calls, backup mode left before
// the snapshots complete, cleanup of every started snapshot on each kind of failure, and the timeouts.
// (test/integration/snapshot-local.test.ts runs the whole flow against PostgreSQL.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { pathToFileURL } from 'node:url';
import { LocalObjectStore } from '../../../../providers/local/object-store.ts';
import type { ObjectStore, PutBody, PutOptions } from '../../../../providers/object-store.ts';
import {
  SnapshotCreateError, SnapshotError,
  type DiskInfo, type InstanceInfo, type SnapshotInfo, type SnapshotRequest, type Snapshotter,
} from '../../../../providers/snapshotter.ts';
import type { BackupSessionApi } from '../../../../src/core/backup/take-backup.ts';
import type { BackupClock } from '../../../../src/core/backup/wait-for-wal.ts';
import { listBackups, readBackupInfo } from '../../../../src/core/catalog/catalog.ts';
import { CloudbarmanError } from '../../../../src/core/errors.ts';
import { silentLogger } from '../../../../src/core/log.ts';
import { takeSnapshotBackup, type SnapshotBackupRequest } from '../../../../src/core/snapshot/take-snapshot-backup.ts';
import type { ServerInfo } from '../../../../src/pg/backup-api.ts';

const SYSTEM_ID = '7311111111111111111';
const STOP_WAL = '000000010000000000000003';
const LABEL = 'START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\n' +
  'BACKUP FROM: primary\nSTART TIME: 2026-11-22 00:00:00 UTC\nLABEL: x\nSTART TIMELINE: 1\n';
const SPCMAP = '16400 /disks/b/ts\n';

let dir: string;
let diskA: string;
let diskB: string;
let diskC: string;
let pgdata: string;
let tablespace: string;
let caseNo = 0;

before(async () => {
  dir = await realpath(await mkdtemp(join(tmpdir(), 'cb-snapbackup-')));
  diskA = join(dir, 'disk-a');
  diskB = join(dir, 'disk-b');
  diskC = join(dir, 'disk-c');
  pgdata = join(diskA, 'pgdata');
  tablespace = join(diskB, 'ts');
  await mkdir(join(pgdata, 'global'), { recursive: true });
  await mkdir(join(pgdata, 'pg_wal'), { recursive: true });
  await mkdir(tablespace, { recursive: true });
  await mkdir(diskC, { recursive: true });
  const control = Buffer.alloc(8192);
  control.writeBigUInt64LE(BigInt(SYSTEM_ID), 0);
  await writeFile(join(pgdata, 'global', 'pg_control'), control);
});
after(() => rm(dir, { recursive: true, force: true }));

/** One ordered log shared by the session, the snapshotter and the store. */
type Events = string[];

/** How each fake snapshot behaves: polls (describeSnapshot calls) until its point in time is fixed and until it completes. */
interface Script {
  fixedAfter?: number;
  completeAfter?: number;
  /** The poll at which it turns failed. */
  failAt?: number;
  /** createSnapshots throws for this disk (after starting the ones before it). */
  createFails?: boolean;
  /** deleteSnapshot throws (not retryable). */
  deleteFails?: boolean;
}

/** A snapshotter whose disks are the test's directories (their own mount points), recording every call. */
function fakeSnapshotter(events: Events, scripts: Record<string, Script>, opts: { attached?: string[] } = {}): Snapshotter & { states: Map<string, SnapshotInfo>; deleted: string[] } {
  const attached = opts.attached ?? [diskA, diskB, diskC];
  const disk = (id: string): DiskInfo => ({ id, name: id.slice(id.lastIndexOf('/') + 1), device: id, sizeGiB: 10, zone: 'z1' });
  const states = new Map<string, SnapshotInfo>();
  const polls = new Map<string, number>();
  const deleted: string[] = [];
  const scriptOf = (diskId: string): Script => scripts[diskId.slice(diskId.lastIndexOf('/') + 1)] ?? {};
  return {
    provider: 'local',
    states,
    deleted,
    describeInstance: async (instance: string): Promise<InstanceInfo> => {
      events.push(`describeInstance ${instance}`);
      if (instance !== 'vm1') throw new SnapshotError('not-found', `instance ${instance} does not exist`, { target: instance });
      return { id: 'i-1', name: 'vm1', zone: 'z1', disks: attached.map(disk) };
    },
    createSnapshots: async (requests: readonly SnapshotRequest[]): Promise<SnapshotInfo[]> => {
      events.push(`createSnapshots ${requests.map((r) => r.name).join(' ')}`);
      const started: SnapshotInfo[] = [];
      for (const r of requests) {
        if (scriptOf(r.disk.id).createFails === true) throw new SnapshotCreateError(new SnapshotError('quota-exceeded', 'snapshot quota reached'), started);
        const info: SnapshotInfo = { id: `snap-${r.name}`, name: r.name, diskId: r.disk.id, state: 'pending', pointInTimeFixed: false };
        states.set(info.id, info);
        polls.set(info.id, 0);
        started.push(info);
      }
      return started;
    },
    describeSnapshot: async (id: string): Promise<SnapshotInfo | undefined> => {
      const s = states.get(id);
      if (s === undefined) return undefined;
      const n = (polls.get(id) ?? 0) + 1;
      polls.set(id, n);
      const script = scriptOf(s.diskId);
      let next: SnapshotInfo = { ...s };
      if (script.failAt !== undefined && n >= script.failAt) next = { ...s, state: 'failed', error: 'the volume went away' };
      else {
        if (n >= (script.fixedAfter ?? 1)) next.pointInTimeFixed = true;
        if (n >= (script.completeAfter ?? (script.fixedAfter ?? 1) + 1)) next = { ...next, state: 'completed', pointInTimeFixed: true };
      }
      states.set(id, next);
      events.push(`describe ${id} ${next.state}${next.pointInTimeFixed ? ' fixed' : ''}`);
      return next;
    },
    deleteSnapshot: async (id: string): Promise<void> => {
      events.push(`delete ${id}`);
      const s = states.get(id);
      if (s !== undefined && scriptOf(s.diskId).deleteFails === true) throw new SnapshotError('failed', 'snapshot is in use');
      states.delete(id);
      deleted.push(id);
    },
    createDisk: async () => { throw new Error('not used'); },
    attachDisk: async () => { throw new Error('not used'); },
    localDevicePaths: (d: DiskInfo) => [d.device ?? d.id],
    close: async () => { events.push('snapshotter close'); },
  };
}

/** The local store, logging puts of backup objects (not WAL) as events. */
async function recordingStore(events: Events): Promise<ObjectStore> {
  const storeDir = join(dir, `store-${++caseNo}`);
  await mkdir(storeDir);
  const inner = new LocalObjectStore(pathToFileURL(storeDir).href);
  return {
    capabilities: inner.capabilities, url: inner.url,
    put: async (key: string, body: PutBody, options?: PutOptions) => {
      await inner.put(key, body, options);
      if (key.includes('/base/')) {
        const name = key.slice(key.lastIndexOf('/') + 1);
        events.push(name === 'backup.json' ? `entry ${JSON.parse((await buffer((await inner.get(key)).body)).toString()).status as string}` : `put ${name}`);
      }
    },
    get: (k, o) => inner.get(k, o), head: (k) => inner.head(k), list: (p, o) => inner.list(p, o),
    delete: (k) => inner.delete(k), checkAccess: () => inner.checkAccess(), close: () => inner.close(),
  };
}

function fakeSession(events: Events, store: ObjectStore, opts: { archive?: boolean; info?: Partial<ServerInfo> } = {}): BackupSessionApi {
  const info: ServerInfo = {
    versionNum: 170004, version: '17.4', systemIdentifier: SYSTEM_ID, catalogVersion: 202406281, dataDirectory: pgdata,
    walSegmentSize: 16 * 1024 * 1024, dataChecksums: false, inRecovery: false, archiveMode: 'on', role: 'postgres', mayBackup: true,
    tablespaces: [{ oid: 16400, name: 'extra', location: tablespace }], ...opts.info,
  };
  return {
    target: 'postgres@127.0.0.1:5432/postgres',
    onLost: () => undefined,
    serverInfo: async () => info,
    assertSupported: async () => undefined,
    start: async (label: string) => {
      events.push(`pg_backup_start ${label}`);
      return { lsn: '0/2000028', timeline: 1, walFile: '000000010000000000000002', time: new Date('2026-11-22T00:00:01Z') };
    },
    stop: async () => {
      events.push('pg_backup_stop');
      if (opts.archive !== false) await store.put(`srv/wals/0000000100000000/${STOP_WAL}.zst`, Buffer.from('wal'));
      return { lsn: '0/3000100', walFile: STOP_WAL, labelFile: LABEL, spcmapFile: SPCMAP, time: new Date('2026-11-22T00:00:09Z') };
    },
    archiverStatus: async () => undefined,
    close: async () => { events.push('session close'); },
  };
}

function fakeClock(): BackupClock & { slept: number } {
  let now = Date.parse('2026-11-22T00:00:00Z');
  const clock = {
    slept: 0,
    now: () => new Date(now),
    sleep: async (ms: number, signal?: AbortSignal) => {
      signal?.throwIfAborted();
      now += ms;
      clock.slept += ms;
    },
  };
  return clock;
}

async function setup(scripts: Record<string, Script> = {}, opts: { attached?: string[]; archive?: boolean; info?: Partial<ServerInfo> } = {}) {
  const events: Events = [];
  const store = await recordingStore(events);
  const snapshotter = fakeSnapshotter(events, scripts, opts);
  const session = fakeSession(events, store, opts);
  const clock = fakeClock();
  const request = (extra: Partial<SnapshotBackupRequest> = {}): SnapshotBackupRequest => ({
    store, server: 'srv', conninfo: 'host=127.0.0.1', pgdata, snapshotter, instance: 'vm1', disks: ['disk-a', diskB],
    snapshotTimeoutMs: 600_000, walArchiveTimeoutMs: 60_000, connectTimeoutMs: 1000, hostname: 'db1', cloudbarmanVersion: '0.1.0',
    clock, log: silentLogger, openSession: async () => session, readMounts: async () => [], ...extra,
  });
  return { events, store, snapshotter, clock, request };
}

async function onlyEntry(store: ObjectStore) {
  const { backups } = await listBackups(store, 'srv');
  assert.equal(backups.length, 1);
  const entry = backups[0];
  assert.ok(entry !== undefined);
  return entry;
}

test('snapshots start inside the backup, backup mode ends once their points in time are fixed, DONE after they complete', async () => {
  const { events, store, snapshotter, request } = await setup({ 'disk-a': { fixedAfter: 2, completeAfter: 5 }, 'disk-b': { fixedAfter: 1, completeAfter: 3 } });
  const info = await takeSnapshotBackup(request({ name: 'nightly' }));

  assert.equal(info.status, 'DONE');
  assert.equal(info.method, 'snapshot');
  assert.equal(info.begin_lsn, '0/2000028');
  assert.equal(info.end_lsn, '0/3000100');
  assert.equal(info.end_wal, STOP_WAL);
  assert.equal(info.pgdata, pgdata);
  assert.equal(info.size_bytes, 20 * 1024 ** 3);
  const a = `snap-cb-srv-${info.id.toLowerCase()}-0`;
  const b = `snap-cb-srv-${info.id.toLowerCase()}-1`;
  assert.deepEqual(info.snapshots, [
    { id: a, name: a.slice(5), provider: 'local', disk_id: diskA, disk_name: 'disk-a', device: diskA, mount_point: diskA, zone: 'z1', contents: ['pgdata'] },
    { id: b, name: b.slice(5), provider: 'local', disk_id: diskB, disk_name: 'disk-b', device: diskB, mount_point: diskB, zone: 'z1', contents: ['tablespace extra'] },
  ]);

  const at = (e: string): number => {
    const i = events.indexOf(e);
    assert.ok(i >= 0, `${e} happened: ${events.join(' | ')}`);
    return i;
  };
  const firstCompleted = events.findIndex((e) => / completed/.test(e));
  assert.deepEqual(events.slice(0, 4), ['describeInstance vm1', 'entry STARTED', 'pg_backup_start nightly', 'entry STARTED']);
  assert.equal(events[4], `createSnapshots ${a.slice(5)} ${b.slice(5)}`, 'every snapshot started in one call, right after pg_backup_start');
  assert.equal(events[5], 'entry STARTED', 'the snapshot ids are recorded at once');
  assert.ok(at(`describe ${a} pending fixed`) < at('pg_backup_stop'), 'stop waits for every point in time');
  assert.ok(at('pg_backup_stop') < firstCompleted, 'backup mode ends before any snapshot completes');
  assert.ok(at('pg_backup_stop') < at('put backup_label') && at('put backup_label') < at('put tablespace_map'));
  assert.equal(events.at(-2), 'entry DONE', 'DONE last');
  assert.equal(events.at(-1), 'session close');
  assert.deepEqual(snapshotter.deleted, []);
  assert.equal((await buffer((await store.get(`srv/base/${info.id}/backup_label`)).body)).toString(), LABEL);
  assert.equal((await buffer((await store.get(`srv/base/${info.id}/tablespace_map`)).body)).toString(), SPCMAP);
  assert.equal((await readBackupInfo(store, 'srv', info.id))?.status, 'DONE');
});

test('a snapshot that fails before its point in time is fixed: backup mode aborted without pg_backup_stop, every snapshot deleted, FAILED', async () => {
  const { events, store, snapshotter, request } = await setup({ 'disk-a': { fixedAfter: 3 }, 'disk-b': { fixedAfter: 5, failAt: 2 } });
  await assert.rejects(takeSnapshotBackup(request()), (err: unknown) => {
    assert.ok(err instanceof CloudbarmanError);
    assert.equal(err.kind, 'failed');
    assert.match(err.message, /snapshot snap-\S+-1 of disk-b failed: the volume went away/);
    return true;
  });
  assert.ok(!events.includes('pg_backup_stop'));
  const close = events.indexOf('session close');
  const firstDelete = events.findIndex((e) => e.startsWith('delete '));
  assert.ok(close >= 0 && close < firstDelete, 'backup mode ends (session closed) before the cleanup');
  assert.equal(snapshotter.deleted.length, 2);
  const entry = await onlyEntry(store);
  assert.equal(entry.status, 'FAILED');
  assert.deepEqual(entry.snapshots, []);
  assert.match(entry.error ?? '', /disk-b failed/);
});

test('a snapshot that fails after pg_backup_stop, while completing: FAILED, every snapshot deleted', async () => {
  const { events, store, snapshotter, request } = await setup({ 'disk-b': { fixedAfter: 1, completeAfter: 10, failAt: 3 } });
  await assert.rejects(takeSnapshotBackup(request()), /failed: the volume went away/);
  assert.ok(events.includes('pg_backup_stop'));
  assert.equal(snapshotter.deleted.length, 2);
  assert.equal((await onlyEntry(store)).status, 'FAILED');
});

test('createSnapshots failing part way: the snapshots it started are deleted, and the error kind is kept', async () => {
  const { events, store, snapshotter, request } = await setup({ 'disk-b': { createFails: true } });
  await assert.rejects(takeSnapshotBackup(request()), (err: unknown) => {
    assert.ok(err instanceof CloudbarmanError);
    assert.equal(err.kind, 'failed');
    assert.match(err.message, /starting the snapshots failed: snapshot quota reached/);
    assert.match(err.hint ?? '', /quota/);
    return true;
  });
  assert.ok(!events.includes('pg_backup_stop'));
  assert.deepEqual(snapshotter.deleted.map((id) => id.slice(-2)), ['-0'], 'the one started before the failure');
  assert.equal((await onlyEntry(store)).status, 'FAILED');
});

test('snapshot_timeout while in backup mode: FAILED naming the snapshot, cleanup, no pg_backup_stop', async () => {
  const { events, store, snapshotter, clock, request } = await setup({ 'disk-a': { fixedAfter: 1_000_000 } });
  await assert.rejects(takeSnapshotBackup(request({ snapshotTimeoutMs: 30_000 })), (err: unknown) => {
    assert.ok(err instanceof CloudbarmanError);
    assert.match(err.message, /snap-\S+-0 of disk-a did not fix its point in time within snapshot_timeout \(30 s\)/);
    assert.match(err.hint ?? '', /raise snapshot_timeout/);
    return true;
  });
  assert.ok(clock.slept >= 30_000 && clock.slept < 35_000, `waited ${clock.slept} ms of fake time`);
  assert.ok(!events.includes('pg_backup_stop'));
  assert.equal(snapshotter.deleted.length, 2);
  assert.equal((await onlyEntry(store)).status, 'FAILED');
});

test('snapshot_timeout while completing, after pg_backup_stop: FAILED and cleaned up', async () => {
  const { events, snapshotter, request } = await setup({ 'disk-a': { fixedAfter: 1, completeAfter: 1_000_000 } });
  await assert.rejects(takeSnapshotBackup(request({ snapshotTimeoutMs: 120_000 })), /did not complete within snapshot_timeout \(120 s\)/);
  assert.ok(events.includes('pg_backup_stop'));
  assert.equal(snapshotter.deleted.length, 2);
});

test('an interruption (SIGTERM) while waiting: FAILED with the reason, snapshots deleted', async () => {
  const { events, store, snapshotter, request } = await setup({ 'disk-a': { fixedAfter: 1_000_000 } });
  const controller = new AbortController();
  const reason = new CloudbarmanError('failed', 'the backup was interrupted by SIGTERM');
  let polls = 0;
  const inner = snapshotter.describeSnapshot.bind(snapshotter);
  snapshotter.describeSnapshot = async (id: string) => {
    if (++polls === 5) controller.abort(reason);
    return inner(id);
  };
  await assert.rejects(takeSnapshotBackup(request({ signal: controller.signal })), (err: unknown) => err === reason);
  assert.ok(!events.includes('pg_backup_stop'));
  assert.equal(snapshotter.deleted.length, 2);
  const entry = await onlyEntry(store);
  assert.equal(entry.status, 'FAILED');
  assert.equal(entry.error, 'the backup was interrupted by SIGTERM');
});

test('WAL that never arrives after pg_backup_stop fails the backup, and its snapshots go', async () => {
  const { snapshotter, store, request } = await setup({}, { archive: false });
  await assert.rejects(takeSnapshotBackup(request({ walArchiveTimeoutMs: 20_000 })), new RegExp(`WAL segment ${STOP_WAL}.*within 20 s`));
  assert.equal(snapshotter.deleted.length, 2);
  assert.equal((await onlyEntry(store)).status, 'FAILED');
});

test('a snapshot that cannot be deleted stays recorded on the FAILED entry, for delete to find', async () => {
  const { store, snapshotter, request } = await setup({ 'disk-a': { failAt: 1 }, 'disk-b': { deleteFails: true } });
  await assert.rejects(takeSnapshotBackup(request()), /disk-a failed/);
  const entry = await onlyEntry(store);
  assert.equal(entry.status, 'FAILED');
  assert.deepEqual(entry.snapshots?.map((s) => s.disk_name), ['disk-b']);
  assert.match(entry.error ?? '', /snapshot snap-\S+-1 could not be deleted/);
  assert.equal(snapshotter.deleted.length, 1);
});

test('a disk that is not attached to the instance: bad input before anything starts', async () => {
  const { events, store, request } = await setup({}, { attached: [diskA, diskC] });
  await assert.rejects(takeSnapshotBackup(request()), (err: unknown) => {
    assert.ok(err instanceof CloudbarmanError);
    assert.equal(err.kind, 'bad-input');
    assert.match(err.message, new RegExp(`snapshot_disks ${diskB} is not attached to instance vm1 \\(attached: disk-a \\(${diskA}\\), disk-c`));
    return true;
  });
  assert.deepEqual(events.filter((e) => !e.startsWith('describeInstance')), ['session close']);
  assert.equal((await listBackups(store, 'srv')).backups.length, 0, 'no entry for a backup that never started');
});

test('a tablespace on a disk that is not snapshotted: bad input naming it, nothing started', async () => {
  const { events, request } = await setup();
  await assert.rejects(takeSnapshotBackup(request({ disks: ['disk-a', 'disk-c'] })), (err: unknown) => {
    assert.ok(err instanceof CloudbarmanError);
    assert.equal(err.kind, 'bad-input');
    assert.match(err.message, new RegExp(`tablespace extra ${tablespace} is on /?, which is not on any of snapshot_disks`.replace('/?', '\\?')));
    return true;
  });
  assert.ok(!events.some((e) => e.startsWith('pg_backup_start')));
});

test('an unknown instance is a config error (exit 3), and pgdata of another cluster is refused', async () => {
  const { request } = await setup();
  await assert.rejects(takeSnapshotBackup(request({ instance: 'vm9' })), (err: unknown) => err instanceof CloudbarmanError && err.kind === 'bad-input' && /describing instance vm9 failed/.test(err.message));
  const other = await setup({}, { info: { systemIdentifier: '42' } });
  await assert.rejects(takeSnapshotBackup(other.request()), /belongs to database system 7311111111111111111, but conninfo connects to system 42/);
});

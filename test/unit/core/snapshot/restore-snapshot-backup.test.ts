// Restoring a snapshot backup with the real local snapshotter on temporary directories and the real local
// store (no PostgreSQL): disks made from the snapshots onto a "fresh instance", the recovery files written as
// a file restore writes them, the source's runtime state cleared, the refusals, and the deletion of a snapshot
// backup's snapshots. The local snapshotter's own edge cases that restore relies on are checked here too.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { LocalObjectStore } from '../../../../providers/local/object-store.ts';
import { createSnapshotter } from '../../../../providers/local/snapshotter.ts';
import { SnapshotError, type SnapshotInfo, type Snapshotter } from '../../../../providers/snapshotter.ts';
import { BACKUP_FORMAT_VERSION, type BackupInfo } from '../../../../src/core/catalog/backup-info.ts';
import { readBackupInfo, writeBackupInfo } from '../../../../src/core/catalog/catalog.ts';
import { applyBackupDeletion } from '../../../../src/core/catalog/delete-backup.ts';
import { planBackupDeletion } from '../../../../src/core/catalog/delete-plan.ts';
import { CloudbarmanError } from '../../../../src/core/errors.ts';
import { silentLogger } from '../../../../src/core/log.ts';
import { parseRecoveryTarget } from '../../../../src/core/restore/recovery-target.ts';
import { INCOMPLETE_MARKER, restoreBackup, type RestoreRequest } from '../../../../src/core/restore/restore-backup.ts';
import { storeBackup, baseFiles } from '../restore/backup-fixture.ts';

const SYSTEM_ID = '7322222222222222222';
const CMD = '/opt/cloudbarman/bin/cloudbarman wal-restore pg1 %f %p';
const LABEL = 'START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nLABEL: x\nSTART TIMELINE: 1\n';

let root: string;
let counter = 0;

before(async () => { root = await realpath(await mkdtemp(join(tmpdir(), 'cb-snaprestore-'))); });
after(() => rm(root, { recursive: true, force: true }));

/** pg_control with the system identifier at 0 and the last checkpoint's LSN at 32, as ControlFileData lays them out. */
function pgControl(checkpoint: bigint): Buffer {
  const control = Buffer.alloc(8192);
  control.writeBigUInt64LE(BigInt(SYSTEM_ID), 0);
  control.writeBigUInt64LE(checkpoint, 32);
  return control;
}

async function put(path: string, content: string | Buffer): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, content);
}

async function poll<T>(probe: () => Promise<T | undefined>, what: string): Promise<T> {
  for (let i = 0; i < 500; i++) {
    const value = await probe();
    if (value !== undefined) return value;
    await delay(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** A source instance with pgdata on one directory disk, its snapshot taken, a DONE snapshot backup in the store; then the disk removed. */
async function snapshotBackup(opts: { keepDisk?: boolean } = {}) {
  const dir = join(root, `t${++counter}`);
  const storeDir = join(dir, 'store');
  await mkdir(storeDir, { recursive: true });
  const store = new LocalObjectStore(pathToFileURL(storeDir).href);
  const snapshotDir = join(storeDir, '.snapshots');
  const open = async (): Promise<Snapshotter> => createSnapshotter({ localSnapshotDir: snapshotDir, operationTimeoutMs: 60_000, sleep: (ms) => delay(ms) });
  const disk = join(dir, 'disk-a');
  const pgdata = join(disk, 'pgdata');
  await put(join(pgdata, 'PG_VERSION'), '17\n');
  await put(join(pgdata, 'global', 'pg_control'), pgControl(0x2000060n));
  await put(join(pgdata, 'base', '5', '16384'), Buffer.alloc(50_000, 9));
  await put(join(pgdata, 'postgresql.auto.conf'), "# Do not edit\nrecovery_target_name = 'old'\nwork_mem = '8MB'\n");
  await put(join(pgdata, 'postmaster.pid'), '4242\n');
  await put(join(pgdata, 'standby.signal'), '');
  await put(join(pgdata, 'pg_wal', '000000010000000000000002'), Buffer.alloc(1000, 1));
  await put(join(pgdata, 'pg_wal', 'archive_status', '000000010000000000000001.ready'), '');
  await put(join(pgdata, 'pg_replslot', 'slot1', 'state'), 'x');

  const snapshotter = await open();
  await snapshotter.attachDisk('src', disk);
  const [started] = await snapshotter.createSnapshots([{ disk: { id: disk, name: 'disk-a', device: disk }, name: 'cb-pg1-20261122t000000z-0', tags: { 'cloudbarman-server': 'pg1' } }]);
  assert.ok(started !== undefined);
  assert.equal(started.pointInTimeFixed, false, 'a directory copy has no point in time before it ends');
  const done = await poll(async () => {
    const s = await snapshotter.describeSnapshot(started.id);
    return s?.state === 'completed' ? s : undefined;
  }, 'the snapshot');
  assert.equal(done.pointInTimeFixed, true);
  await snapshotter.close();

  const info: BackupInfo = {
    format_version: BACKUP_FORMAT_VERSION, id: '20261122T000000Z', server: 'pg1', status: 'DONE', method: 'snapshot', label: 'x',
    begin_time: '2026-11-22T00:00:00.000Z', end_time: '2026-11-22T00:00:05.000Z', begin_lsn: '0/2000028', end_lsn: '0/2000100',
    begin_wal: '000000010000000000000002', end_wal: '000000010000000000000002', timeline: 1, size_bytes: 0, stored_bytes: 0,
    file_count: 0, part_count: 0, compression: 'none', pg_version: 170004, system_identifier: SYSTEM_ID, data_checksums: false,
    wal_segment_size: 16 * 1024 * 1024, tablespaces: [], error: null, cloudbarman_version: '0.1.0', hostname: 'db1', pgdata,
    snapshots: [{ id: done.id, name: done.name, provider: 'local', disk_id: disk, disk_name: 'disk-a', device: disk, mount_point: disk, zone: null, contents: ['pgdata'] }],
  };
  await writeBackupInfo(store, info);
  await store.put(`pg1/base/${info.id}/backup_label`, Buffer.from(LABEL));
  await store.put('pg1/wals/0000000100000000/000000010000000000000002.zst', Buffer.from('wal'));
  if (opts.keepDisk !== true) await rm(disk, { recursive: true });
  // The fresh instance exists (as a new VM would), with no disks yet.
  await mkdir(join(snapshotDir, 'instances', 'fresh'), { recursive: true });
  const request = (extra: Partial<RestoreRequest> = {}): RestoreRequest => ({
    store, server: 'pg1', backupId: 'latest', dest: pgdata, standby: false, relocations: new Map(), jobs: 2, restoreCommand: CMD,
    log: silentLogger, now: () => new Date('2026-11-22T12:00:00Z'),
    snapshots: { instance: 'fresh', createDisks: true, open }, ...extra,
  });
  return { store, info, disk, pgdata, snapshotDir, open, request, snapshotId: done.id };
}

function rejectsWith(kind: string, pattern: RegExp, hint?: RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof CloudbarmanError, String(err));
    assert.equal(err.kind, kind);
    assert.match(err.message, pattern);
    if (hint !== undefined) assert.match(err.hint ?? '', hint);
    return true;
  };
}

test('onto a fresh instance: disks made from the snapshots, recovery files written as a file restore writes them', async () => {
  const { request, pgdata, disk, snapshotId, open } = await snapshotBackup();
  const target = parseRecoveryTarget({ time: '2026-11-22 06:00:00+00' });
  const result = await restoreBackup(request({ action: 'promote', ...(target === undefined ? {} : { target }) }));

  assert.equal(result.method, 'snapshot');
  assert.equal(result.backup_id, '20261122T000000Z');
  assert.deepEqual(result.snapshot_disks, [{ snapshot_id: snapshotId, disk_id: disk, disk_name: 'cb-pg1-r20261122t120000-0', device: disk, mount_point: disk, contents: ['pgdata'], created: true }]);
  assert.deepEqual((await readFile(join(pgdata, 'base', '5', '16384'))), Buffer.alloc(50_000, 9), 'the data came back from the snapshot');
  assert.equal(await readFile(join(pgdata, 'backup_label'), 'utf8'), LABEL);
  const auto = await readFile(join(pgdata, 'postgresql.auto.conf'), 'utf8');
  assert.match(auto, /# disabled by cloudbarman restore: recovery_target_name = 'old'/);
  assert.match(auto, /work_mem = '8MB'/);
  assert.match(auto, new RegExp(`restore_command = '${CMD}'`));
  assert.match(auto, /recovery_target_time = '2026-11-22 06:00:00\+00:00'\nrecovery_target_action = 'promote'\narchive_command = 'false'\n$/);
  const top = (await readdir(pgdata)).sort();
  assert.deepEqual(top, ['PG_VERSION', 'backup_label', 'base', 'global', 'pg_replslot', 'pg_wal', 'postgresql.auto.conf', 'recovery.signal'],
    'no postmaster.pid, no standby.signal of the source, no marker');
  assert.deepEqual(await readdir(join(pgdata, 'pg_wal')), ['archive_status']);
  assert.deepEqual(await readdir(join(pgdata, 'pg_wal', 'archive_status')), []);
  assert.deepEqual(await readdir(join(pgdata, 'pg_replslot')), []);
  assert.deepEqual(await readdir(join(pgdata, 'global')), ['pg_control']);

  // The new instance now has the disk attached, made from the snapshot.
  const snapshotter = await open();
  const instance = await snapshotter.describeInstance('fresh');
  assert.deepEqual(instance.disks.map((d) => [d.id, d.sourceSnapshotId]), [[disk, snapshotId]]);
  await snapshotter.close();

  // The same restore again (say, with another target) finds the disk attached and rewrites the files.
  const again = await restoreBackup(request({ snapshots: { instance: 'fresh', createDisks: false, open } }));
  assert.equal(again.snapshot_disks?.[0]?.created, false);
  assert.doesNotMatch(await readFile(join(pgdata, 'postgresql.auto.conf'), 'utf8'), /^recovery_target_time/m);

  // Once PostgreSQL has run past the backup on these disks, they are no copy of the snapshot any more.
  await writeFile(join(pgdata, 'global', 'pg_control'), pgControl(0x5000028n));
  await assert.rejects(restoreBackup(request({ snapshots: { instance: 'fresh', createDisks: false, open } })),
    rejectsWith('bad-input', /has run past backup 20261122T000000Z: its last checkpoint \(0\/5000028\) is after the backup's end \(0\/2000100\)/, /fresh disks/));
});

test('refusals before anything is made: no --snapshot-recovery-instance, missing disks without --create-disks, another DEST, --tablespace', async () => {
  const { request, pgdata, disk, snapshotDir } = await snapshotBackup();
  const noOptions = request();
  delete noOptions.snapshots;
  await assert.rejects(restoreBackup(noOptions), rejectsWith('bad-input', /backup 20261122T000000Z is a snapshot backup: its data is in 1 snapshot/, /--snapshot-recovery-instance/));
  const open = async () => createSnapshotter({ localSnapshotDir: snapshotDir, operationTimeoutMs: 60_000, sleep: (ms) => delay(ms) });
  await assert.rejects(restoreBackup(request({ snapshots: { instance: 'fresh', createDisks: false, open } })),
    rejectsWith('bad-input', new RegExp(`no disk made from snapshot \\S+ \\(disk-a, mounted at ${disk}\\) is attached to instance fresh`), /--create-disks/));
  await assert.rejects(restoreBackup(request({ dest: join(root, 'elsewhere') })), rejectsWith('bad-input', /comes back at .*pgdata, where the disk made from its snapshot is mounted/, new RegExp(`give ${pgdata} as DEST_DIR`)));
  await assert.rejects(restoreBackup(request({ relocations: new Map([['extra', '/x']]) })), rejectsWith('bad-input', /--tablespace cannot move/));
  await assert.rejects(stat(disk), /ENOENT/, 'no disk was made by a refused restore');
});

test('--snapshot-recovery-instance with a file backup is refused', async () => {
  const { store, request } = await snapshotBackup();
  await storeBackup(store, { id: '20261123T000000Z', files: baseFiles() });
  await assert.rejects(restoreBackup(request({ backupId: '20261123T000000Z' })), rejectsWith('bad-input', /is a local backup, not a snapshot backup/));
});

test('a restore interrupted after pg_control was moved aside is finished by running it again', async () => {
  const { request, pgdata, open } = await snapshotBackup();
  await restoreBackup(request());
  // The state an interruption leaves: the marker, and pg_control under its pending name.
  await writeFile(join(pgdata, INCOMPLETE_MARKER), 'x');
  await rename(join(pgdata, 'global', 'pg_control'), join(pgdata, 'global', 'pg_control.cloudbarman_incomplete'));
  await restoreBackup(request({ snapshots: { instance: 'fresh', createDisks: false, open } }));
  assert.deepEqual(await readdir(join(pgdata, 'global')), ['pg_control']);
  await assert.rejects(stat(join(pgdata, INCOMPLETE_MARKER)), /ENOENT/);
});

test('delete of a snapshot backup deletes its snapshots first; without a snapshot deleter it is refused, untouched', async () => {
  const { store, info, snapshotDir, open, snapshotId } = await snapshotBackup();
  const plan = planBackupDeletion([info], info, []);
  await assert.rejects(applyBackupDeletion(store, plan, silentLogger), rejectsWith('failed', /has 1 snapshot .* that this command cannot delete; nothing was deleted/));
  assert.equal((await readBackupInfo(store, 'pg1', info.id))?.status, 'DONE');
  const snapshotter = await open();
  const deleted: string[] = [];
  const outcome = await applyBackupDeletion(store, plan, silentLogger, {
    deleteSnapshot: async (record) => { deleted.push(record.id); await snapshotter.deleteSnapshot(record.id); },
  });
  assert.deepEqual(deleted, [snapshotId]);
  assert.equal(outcome.snapshots, 1);
  assert.equal(await snapshotter.describeSnapshot(snapshotId), undefined);
  assert.deepEqual(await readdir(join(snapshotDir, 'snapshots')), []);
  assert.equal(await readBackupInfo(store, 'pg1', info.id), undefined);
  await snapshotter.deleteSnapshot(snapshotId); // idempotent
  await snapshotter.close();
});

test('local snapshotter: an abandoned copy reads as failed; a disk is never made over a non-empty directory; unknown instances', async () => {
  const { snapshotDir, disk, open } = await snapshotBackup({ keepDisk: true });
  const snapshotter = await open();
  const meta = { id: 'abandoned', name: 'abandoned', diskId: disk, state: 'pending', tags: {}, created: '2026-11-22T00:00:00Z', host: hostname(), pid: 2 ** 22 + 7 };
  await put(join(snapshotDir, 'snapshots', 'abandoned', 'snapshot.json'), JSON.stringify(meta));
  const info: SnapshotInfo | undefined = await snapshotter.describeSnapshot('abandoned');
  assert.equal(info?.state, 'failed');
  assert.match(info?.error ?? '', /abandoned/);
  await assert.rejects(snapshotter.createDisk({ snapshotId: 'cb-pg1-20261122t000000z-0', name: 'd', tags: {} }),
    (err: unknown) => err instanceof SnapshotError && err.kind === 'invalid' && /is not empty/.test(err.message));
  await assert.rejects(snapshotter.describeInstance('nobody'), (err: unknown) => err instanceof SnapshotError && err.kind === 'not-found');
  await assert.rejects(snapshotter.createDisk({ snapshotId: 'missing', name: 'd', tags: {} }), (err: unknown) => err instanceof SnapshotError && err.kind === 'not-found');
  await snapshotter.close();
});

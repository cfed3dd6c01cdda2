/**
 * `restore --snapshot-recovery-instance`: a snapshot backup back onto an instance. The data is
 * already on disks made from the backup's snapshots; what a restore adds is what makes those
 * crash-consistent disks recover correctly: backup_label, tablespace_map, the recovery settings
 * and the signal file, written exactly as a file-based restore writes them (recovery-files.ts).
 *
 * Order, chosen so that nothing half-done can start as a cluster:
 *  1. Everything in the store first: backup_label, tablespace_map, the WAL the backup needs.
 *  2. The recovery instance: a disk made from each snapshot must be attached (found by the
 *     snapshot it came from). With --create-disks, the missing ones are created and attached.
 *  3. Each such disk must be mounted where its snapshot's disk was, and the data directory and
 *     every tablespace must be on them (mount-check.ts). On a cloud, disks just created are not
 *     mounted yet: the restore stops there and says what to mount where; run it again after.
 *  4. pg_control must be the backup's cluster's, and must not be past the backup's end: a disk
 *     PostgreSQL has already run on is not a fresh copy of the snapshot.
 *  5. Writing: the marker file, global/pg_control moved aside, runtime state the snapshot caught
 *     removed (the same as a file backup leaves out: postmaster.pid, pg_wal, pg_replslot...), then
 *     the recovery files, and pg_control put back last. An interrupted restore leaves no
 *     pg_control, so PostgreSQL cannot start; running the same restore again finishes it.
 */
import { chown, lstat, open, readdir, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { join, resolve } from 'node:path';
import type { ObjectStore } from '../../../providers/object-store.ts';
import type { DiskInfo, Snapshotter } from '../../../providers/snapshotter.ts';
import { EXCLUDED_DIRECTORY_CONTENTS, EXCLUDED_FILES } from '../backup/exclusions.ts';
import type { BackupInfo, SnapshotRecord } from '../catalog/backup-info.ts';
import { CloudbarmanError, badInput } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { RecoveryConfig } from '../restore/recovery-config.ts';
import { INCOMPLETE_MARKER, autoConfHeader, checkWalArchived, readBackupLabel, readTablespaceMap, syncPath, writeRecoveryFiles } from '../restore/recovery-files.ts';
import { describeTarget, parseLsn, type RecoveryTarget } from '../restore/recovery-target.ts';
import { PG_CONTROL_PENDING_SUFFIX } from '../restore/restore-plan.ts';
import type { RestoreResult } from '../restore/restore-backup.ts';
import { checkRestoredLayout, nodePathProbe, type ClusterLocation, type PathProbe, type RestoredDisk } from './mount-check.ts';
import { readMountTable, type MountTableReader } from './mount-table.ts';
import { snapshotFailure } from './snapshot-failure.ts';
import { labelValue, restoredDiskName, snapshotTags } from './snapshot-names.ts';

/** How the operator asked for a snapshot backup to be restored. */
export interface SnapshotRestoreOptions {
  /** --snapshot-recovery-instance: the instance the restored cluster runs on. */
  instance: string;
  /** --create-disks: make and attach the disks that are missing. */
  createDisks: boolean;
  /** Opens the snapshotter that took the backup, by the provider its records name. */
  open: (provider: string) => Promise<Snapshotter>;
  readMounts?: MountTableReader;
  probe?: PathProbe;
  signal?: AbortSignal;
}

/** A disk of the restored cluster, in the summary (snake_case: printed as JSON). */
export interface SnapshotDiskResult {
  snapshot_id: string;
  disk_id: string;
  disk_name: string;
  device: string | null;
  mount_point: string;
  contents: string[];
  /** Made by this restore (--create-disks), rather than found attached. */
  created: boolean;
}

/** What restoreBackup hands over once it has chosen a snapshot backup. */
export interface SnapshotRestoreRequest {
  store: ObjectStore;
  server: string;
  backup: BackupInfo;
  reason: string;
  dest: string;
  relocations: ReadonlyMap<string, string>;
  recovery: RecoveryConfig;
  target?: RecoveryTarget;
  started: Date;
  /** Undefined when --snapshot-recovery-instance was not given: refused. */
  options: SnapshotRestoreOptions | undefined;
  log: Logger;
  now: () => Date;
}

/** Restores a snapshot backup; see the module comment. Throws CloudbarmanError. */
export async function restoreSnapshotBackup(req: SnapshotRestoreRequest): Promise<RestoreResult> {
  const { backup } = req;
  const records = backup.snapshots ?? [];
  const opts = req.options;
  if (opts === undefined) {
    throw badInput(`backup ${backup.id} is a snapshot backup: its data is in ${records.length} snapshot${records.length === 1 ? '' : 's'} (${records.map((r) => r.id).join(', ')}), not in the store`,
      'restore it on the new instance with --snapshot-recovery-instance INSTANCE, adding --create-disks to make the disks from the snapshots');
  }
  if (records.length === 0 || backup.pgdata === undefined) {
    throw new CloudbarmanError('integrity', `snapshot backup ${backup.id} records no ${records.length === 0 ? 'snapshots' : 'data directory'}`, { hint: 'the catalog entry is damaged; restore another backup' });
  }
  if (req.relocations.size > 0) {
    throw badInput('--tablespace cannot move the tablespaces of a snapshot backup', 'they come back where they were, on the disks made from the snapshots; leave out --tablespace');
  }
  const dest = resolve(req.dest);
  if (dest !== resolve(backup.pgdata)) {
    throw badInput(`backup ${backup.id} is a snapshot backup: its data directory comes back at ${backup.pgdata}, where the disk made from its snapshot is mounted, not at ${req.dest}`,
      `give ${backup.pgdata} as DEST_DIR`);
  }
  const providers = [...new Set(records.map((r) => r.provider))];
  const provider = providers[0];
  if (provider === undefined || providers.length > 1) {
    throw new CloudbarmanError('integrity', `snapshot backup ${backup.id} names snapshots of ${providers.join(' and ')}`, { hint: 'the catalog entry is damaged; restore another backup' });
  }

  // 1. The store.
  const label = await readBackupLabel(req.store, req.server, backup);
  const tablespaceMap = await readTablespaceMap(req.store, req.server, backup);
  await checkWalArchived(req.store, req.server, backup);

  // 2-3. The disks.
  const snapshotter = await opts.open(provider).catch((err: unknown) => { throw snapshotFailure(err, `opening the ${provider} snapshotter`); });
  let restored: Array<RestoredDisk & { created: boolean }>;
  try {
    restored = await findOrCreateDisks(req, opts, snapshotter, records);
    const locations: ClusterLocation[] = [
      { what: 'pgdata', path: dest },
      ...backup.tablespaces.filter((t) => t.location !== '').map((t) => ({ what: `tablespace ${t.name}`, path: t.location })),
    ];
    await checkRestoredLayout(restored, locations, (d) => snapshotter.localDevicePaths(d), await (opts.readMounts ?? readMountTable)(), opts.probe ?? nodePathProbe);
  } finally {
    await snapshotter.close();
  }

  // 4. The cluster on them.
  const control = await checkControlFile(dest, backup);

  // 5. Writing.
  const owner = await stat(dest);
  const own = async (path: string): Promise<void> => {
    await chown(path, owner.uid, owner.gid).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPERM') throw err;
    });
  };
  try {
    await writeFile(join(dest, INCOMPLETE_MARKER), markerText(req), { mode: 0o600 });
    if (control.path !== control.pending) await rename(control.path, control.pending);
    await syncPath(join(dest, 'global'));
    await clearRuntimeState(dest);
    await writeRecoveryFiles(dest, { label, tablespaceMap, recovery: req.recovery, header: autoConfHeader(req.server, backup.id, req.started), own });
    await syncPath(dest);
    await rename(control.pending, join(dest, 'global', 'pg_control'));
    await syncPath(join(dest, 'global'));
    await unlink(join(dest, INCOMPLETE_MARKER));
    await syncPath(dest);
  } catch (err) {
    const failure = err instanceof CloudbarmanError ? err : new CloudbarmanError('failed', `restoring into ${dest} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    throw new CloudbarmanError(failure.kind, failure.message, {
      hint: `${dest} holds ${INCOMPLETE_MARKER} and no global/pg_control, so PostgreSQL will not start there; fix the cause and run the same restore again`,
      cause: failure,
    });
  }

  const seconds = (req.now().getTime() - req.started.getTime()) / 1000;
  req.log.info(`restored snapshot backup ${backup.id} into ${dest} on instance ${opts.instance} in ${seconds.toFixed(1)} s`);
  return {
    server: req.server,
    backup_id: backup.id,
    reason: req.reason,
    dest,
    begin_time: backup.begin_time,
    end_time: backup.end_time,
    end_lsn: backup.end_lsn,
    timeline: backup.timeline,
    pg_version: backup.pg_version,
    size_bytes: backup.size_bytes,
    stored_bytes: 0,
    files: 0,
    parts: 0,
    seconds,
    recovery_target: req.target === undefined ? null : describeTarget(req.target),
    signal_file: req.recovery.signalFile,
    recovery_settings: Object.fromEntries(req.recovery.settings),
    tablespaces: backup.tablespaces.map((t) => ({ name: t.name, oid: t.oid, location: t.location === '' ? join(dest, 'pg_tblspc', String(t.oid)) : t.location, relocated: false })),
    method: 'snapshot',
    snapshot_disks: restored.map((r) => ({
      snapshot_id: r.record.id, disk_id: r.disk.id, disk_name: r.disk.name, device: r.disk.device ?? null,
      mount_point: r.record.mount_point, contents: r.record.contents, created: r.created,
    })),
  };
}

/** The disk made from each snapshot, attached to the recovery instance; with --create-disks, made and attached now. */
async function findOrCreateDisks(req: SnapshotRestoreRequest, opts: SnapshotRestoreOptions, snapshotter: Snapshotter, records: readonly SnapshotRecord[]): Promise<Array<RestoredDisk & { created: boolean }>> {
  const instance = await snapshotter.describeInstance(opts.instance).catch((err: unknown) => { throw snapshotFailure(err, `describing instance ${opts.instance}`); });
  const found = new Map<string, DiskInfo>();
  for (const r of records) {
    const disk = instance.disks.find((d) => d.sourceSnapshotId !== undefined && sameSnapshot(d.sourceSnapshotId, r.id));
    if (disk !== undefined) found.set(r.id, disk);
  }
  const missing = records.filter((r) => !found.has(r.id));
  if (missing.length > 0 && !opts.createDisks) {
    throw badInput(`no disk made from snapshot ${missing.map((r) => `${r.id} (${r.disk_name}, mounted at ${r.mount_point})`).join(', ')} is attached to instance ${opts.instance}`,
      'give --create-disks to create them from the snapshots and attach them, or create and attach them yourself');
  }
  const created = await Promise.all(missing.map(async (r) => {
    const snapshot = await snapshotter.describeSnapshot(r.id).catch((err: unknown) => { throw snapshotFailure(err, `describing snapshot ${r.id}`); });
    if (snapshot === undefined || snapshot.state !== 'completed') {
      throw new CloudbarmanError('integrity', `snapshot ${r.id} of backup ${req.backup.id} ${snapshot === undefined ? 'no longer exists' : `is ${snapshot.state}`}`, {
        hint: 'this backup cannot be restored; restore another backup',
      });
    }
    const zone = instance.zone ?? r.zone ?? undefined;
    const disk = await snapshotter.createDisk({
      snapshotId: r.id, name: restoredDiskName(req.server, req.started, records.indexOf(r)), ...(zone === undefined ? {} : { zone }),
      tags: { ...snapshotTags(req.server, req.backup.id), 'cloudbarman-snapshot': labelValue(r.id) },
    }, opts.signal).catch((err: unknown) => { throw snapshotFailure(err, `creating a disk from snapshot ${r.id}`); });
    const attached = await snapshotter.attachDisk(opts.instance, disk.id, opts.signal).catch((err: unknown) => { throw snapshotFailure(err, `attaching disk ${disk.name} to ${opts.instance}`); });
    req.log.info(`created disk ${attached.name} (${attached.id}) from snapshot ${r.id} and attached it to ${opts.instance}${attached.device === undefined ? '' : ` as ${attached.device}`}; it belongs at ${r.mount_point}`);
    return [r.id, { ...attached, sourceSnapshotId: attached.sourceSnapshotId ?? r.id }] as const;
  }));
  const made = new Map(created);
  return records.map((record) => {
    const disk = found.get(record.id) ?? made.get(record.id);
    if (disk === undefined) throw new Error(`internal: no disk for snapshot ${record.id}`);
    return { record, disk, created: made.has(record.id) };
  });
}

/** Where pg_control is now (or, after an interrupted restore, its pending name), checked against the backup. */
async function checkControlFile(dest: string, backup: BackupInfo): Promise<{ path: string; pending: string }> {
  const path = join(dest, 'global', 'pg_control');
  const pending = `${path}${PG_CONTROL_PENDING_SUFFIX}`;
  const resumed = (await lstat(path).catch(() => undefined)) === undefined && (await lstat(join(dest, INCOMPLETE_MARKER)).catch(() => undefined)) !== undefined;
  const current = resumed ? pending : path;
  let head: Buffer;
  try {
    const handle = await open(current, 'r');
    try {
      head = Buffer.alloc(40);
      const { bytesRead } = await handle.read(head, 0, 40, 0);
      if (bytesRead < 40) throw new Error('it is shorter than 40 bytes');
    } finally {
      await handle.close();
    }
  } catch (err) {
    throw new CloudbarmanError('integrity', `${current} cannot be read: ${err instanceof Error ? err.message : String(err)}`, {
      hint: 'the disk must be made from this backup\'s snapshot, with the data directory where it was', cause: err,
    });
  }
  // ControlFileData: system_identifier at 0, checkPoint (the last checkpoint's LSN) at 32, in the machine's byte order.
  const le = endianness() === 'LE';
  const systemId = (le ? head.readBigUInt64LE(0) : head.readBigUInt64BE(0)).toString();
  const checkpoint = le ? head.readBigUInt64LE(32) : head.readBigUInt64BE(32);
  if (backup.system_identifier !== null && systemId !== backup.system_identifier) {
    throw badInput(`${dest} holds database system ${systemId}, not ${backup.system_identifier} of backup ${backup.id}`,
      'the disks mounted there are not made from this backup\'s snapshots');
  }
  const end = backup.end_lsn === null ? undefined : parseLsn(backup.end_lsn);
  if (end !== undefined && checkpoint > end) {
    throw badInput(`${dest} has run past backup ${backup.id}: its last checkpoint (${lsnText(checkpoint)}) is after the backup's end (${backup.end_lsn ?? ''})`,
      'PostgreSQL has already run on these disks, so they are no longer copies of the snapshots: restore onto fresh disks (--create-disks on a new instance)');
  }
  return { path: current, pending };
}

/** Removes what the crash-consistent snapshot caught of the source's runtime state, as a file backup leaves it out. */
async function clearRuntimeState(dest: string): Promise<void> {
  // Signal files too: the one this restore asks for is written afresh, and a source standby's must not linger.
  for (const name of [...EXCLUDED_FILES, 'recovery.signal', 'standby.signal']) await rm(join(dest, name), { recursive: true, force: true });
  for (const dir of EXCLUDED_DIRECTORY_CONTENTS) {
    const path = join(dest, dir);
    const entries = await readdir(path, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [];
      throw err;
    });
    for (const entry of entries) {
      // pg_wal keeps its subdirectories (archive_status, summaries), emptied.
      if (dir === 'pg_wal' && entry.isDirectory()) {
        for (const inner of await readdir(join(path, entry.name))) await rm(join(path, entry.name, inner), { recursive: true, force: true });
      } else {
        await rm(join(path, entry.name), { recursive: true, force: true });
      }
    }
    if (entries.length > 0) await syncPath(path);
  }
}

/**
 * Whether a disk's source snapshot is this record's: clouds may spell one snapshot as an id, a
 * full resource path or a name, and ARM resource ids compare without regard to case.
 */
function sameSnapshot(source: string, id: string): boolean {
  const last = (s: string): string => s.slice(s.lastIndexOf('/') + 1).toLowerCase();
  return source.toLowerCase() === id.toLowerCase() || ((source.includes('/') !== id.includes('/')) && last(source) === last(id));
}

function lsnText(value: bigint): string {
  return `${(value >> 32n).toString(16).toUpperCase()}/${(value & 0xffffffffn).toString(16).toUpperCase()}`;
}

function markerText(req: SnapshotRestoreRequest): string {
  return [
    'This directory is an INCOMPLETE restore by cloudbarman.',
    `Snapshot backup ${req.backup.id} of server ${req.server}, restore started ${req.started.toISOString()}.`,
    'global/pg_control is held back (as global/pg_control.cloudbarman_incomplete) until the recovery files',
    'are written, so PostgreSQL refuses to start here. If this file is still here, the restore failed or',
    'was interrupted: run the same restore command again to finish it.',
    '',
  ].join('\n');
}

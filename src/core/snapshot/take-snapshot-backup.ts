/**
 * backup_method snapshot: crash-consistent snapshots of every disk that holds the cluster, taken
 * inside a non-exclusive backup, so that recovery from them starts at the backup's checkpoint
 * (backup_label) and replays WAL to a consistent state, whatever each disk caught.
 *
 * Order, and why:
 *   1. Checks first, before anything exists: the server (version, role, archive_mode), that pgdata
 *      is the cluster conninfo reaches, that every snapshot disk is attached to the instance and
 *      mounted here, and that pgdata, every tablespace and pg_wal lie on those disks (mount-check.ts).
 *   2. backup.json STARTED, then pg_backup_start (fast checkpoint) on one session held open.
 *   3. Every snapshot is started at once. Their ids go into backup.json straight away, so a run
 *      killed from here on leaves snapshots that `delete` finds, never invisible ones.
 *   4. As soon as every snapshot's point in time is fixed: pg_backup_stop. Backup mode lasts
 *      seconds on a cloud, not the hours a snapshot may take to complete (Barman waits in backup
 *      mode; this does not). backup_label and tablespace_map are stored.
 *   5. Out of backup mode, wait until every snapshot is complete and the stop segment is archived.
 *   6. backup.json DONE, last.
 * Any failure, a snapshot that fails, snapshot_timeout, or an abort (SIGTERM) ends backup mode if
 * it is still on (closing the session makes PostgreSQL abort the backup), deletes every snapshot
 * that was started, and rewrites the entry FAILED with the reason; snapshots that could not be
 * deleted stay recorded on the FAILED entry.
 */
import { join } from 'node:path';
import type { ObjectStore } from '../../../providers/object-store.ts';
import { SnapshotCreateError, type SnapshotInfo, type SnapshotRequest, type Snapshotter } from '../../../providers/snapshotter.ts';
import type { ServerInfo } from '../../pg/backup-api.ts';
import { parseBackupLabel } from '../../pg/backup-label.ts';
import type { ConnectOptions } from '../../pg/connection.ts';
import { readSystemIdentifier } from '../../pg/control-file.ts';
import { asFailure, throwIfAborted } from '../backup/abort.ts';
import { openGuardedSession, putText, startedEntry, type BackupSessionApi } from '../backup/take-backup.ts';
import { waitForWal, type BackupClock } from '../backup/wait-for-wal.ts';
import type { BackupInfo, SnapshotRecord } from '../catalog/backup-info.ts';
import { BACKUP_LABEL_NAME, TABLESPACE_MAP_NAME, backupPrefix } from '../catalog/backup-keys.ts';
import { createBackupEntry, writeBackupInfo } from '../catalog/catalog.ts';
import { CloudbarmanError, badInput } from '../errors.ts';
import type { Logger } from '../log.ts';
import { nodePathProbe, planSnapshotDisks, type ClusterLocation, type DiskPlan, type PathProbe } from './mount-check.ts';
import { readMountTable, type MountTableReader } from './mount-table.ts';
import { snapshotFailure } from './snapshot-failure.ts';
import { snapshotName, snapshotTags } from './snapshot-names.ts';
import { deleteSnapshots, waitForSnapshots } from './snapshot-wait.ts';

/** Everything one snapshot backup needs; the CLI fills it from ServerConfig. */
export interface SnapshotBackupRequest {
  store: ObjectStore;
  server: string;
  conninfo: string;
  /** The data directory as this host sees it; default: the server's data_directory. */
  pgdata?: string;
  snapshotter: Snapshotter;
  /** snapshot_instance: the instance this runs on, whose disks are snapshotted. */
  instance: string;
  /** snapshot_disks: ids or names of the disks to snapshot. */
  disks: readonly string[];
  /** The backup's label (--name); default "cloudbarman <id>". */
  name?: string;
  /** snapshot_timeout: from the start of the snapshots until every one is complete. */
  snapshotTimeoutMs: number;
  walArchiveTimeoutMs: number;
  connectTimeoutMs: number;
  applicationName?: string;
  hostname: string;
  cloudbarmanVersion: string;
  clock: BackupClock;
  log: Logger;
  /** Aborting it (SIGINT, SIGTERM) ends the backup as FAILED, its snapshots deleted. */
  signal?: AbortSignal;
  /** Opens the database session; openBackupSession unless a test injects one. */
  openSession?: (conninfo: string, opts: ConnectOptions) => Promise<BackupSessionApi>;
  /** The mount table; /proc/self/mountinfo unless a test gives its own. */
  readMounts?: MountTableReader;
  /** File-system questions about device paths and data paths; node:fs unless a test gives its own. */
  probe?: PathProbe;
}

/** pg_backup_start refuses longer labels (MAXPGPATH). */
const MAX_LABEL_BYTES = 1023;

/** Takes a snapshot backup and returns its DONE entry. Throws CloudbarmanError; the entry is then FAILED. */
export async function takeSnapshotBackup(req: SnapshotBackupRequest): Promise<BackupInfo> {
  if (req.name !== undefined && (req.name.trim() === '' || /[\r\n]/.test(req.name) || Buffer.byteLength(req.name) > MAX_LABEL_BYTES)) {
    throw badInput(`backup name ${JSON.stringify(req.name.slice(0, 40))} is not usable as a label`, `give a non-empty name of one line, at most ${MAX_LABEL_BYTES} bytes`);
  }
  if (req.disks.length === 0) throw badInput(`backup_method snapshot of ${req.server} needs snapshot_disks`, 'list the disks that hold the data directory and the tablespaces');
  const snapshotter = req.snapshotter;
  // Closing the session before pg_backup_stop is how PostgreSQL leaves backup mode on a failure.
  const { session, signal, close, release } = await openGuardedSession(req);

  let entry: BackupInfo | undefined;
  let plan: DiskPlan[] = [];
  let requests: SnapshotRequest[] = [];
  let snapshots: SnapshotInfo[] = [];
  try {
    await session.assertSupported();
    const info = await session.serverInfo();
    const pgdata = await checkCluster(req, info, session.target);
    const instance = await snapshotter.describeInstance(req.instance).catch((err: unknown) => {
      throw snapshotFailure(err, `describing instance ${req.instance}`);
    });
    plan = await planSnapshotDisks({
      instance, named: req.disks, devicePaths: (d) => snapshotter.localDevicePaths(d),
      table: await (req.readMounts ?? readMountTable)(), probe: req.probe ?? nodePathProbe,
      locations: await clusterLocations(pgdata, info, req.probe ?? nodePathProbe), log: req.log,
    });
    throwIfAborted(signal);

    entry = await createBackupEntry(req.store, (id) => snapshotEntry(req, id, info, pgdata), req.clock.now());
    req.log.info(`backup ${entry.id} of ${req.server} started: snapshots of ${plan.map((d) => `${d.disk.name} (${d.contents.join(', ') || 'nothing'} at ${d.mountPoint})`).join(', ')}`);
    const start = await session.start(entry.label, true);
    entry = { ...entry, begin_time: start.time.toISOString(), begin_lsn: start.lsn, begin_wal: start.walFile, timeline: start.timeline };
    await writeBackupInfo(req.store, entry);
    throwIfAborted(signal);

    const id = entry.id;
    requests = plan.map((d, i) => ({ disk: d.disk, name: snapshotName(req.server, id, i), tags: snapshotTags(req.server, id) }));
    const deadline = req.clock.now().getTime() + req.snapshotTimeoutMs;
    try {
      snapshots = await snapshotter.createSnapshots(requests, signal);
    } catch (err) {
      if (err instanceof SnapshotCreateError) snapshots = err.started;
      throw snapshotFailure(err, 'starting the snapshots');
    }
    const planOf = (s: SnapshotInfo): DiskPlan | undefined => diskPlanOf(plan, requests, s);
    entry = { ...entry, snapshots: recordsOf(planOf, snapshots, snapshotter.provider) };
    await writeBackupInfo(req.store, entry);
    req.log.info(`snapshots started: ${snapshots.map((s) => s.id).join(', ')}; waiting for their point in time, in backup mode`);

    const describe = (s: SnapshotInfo): string => planOf(s)?.disk.name ?? s.diskId;
    const wait = { snapshotter, deadline, timeoutMs: req.snapshotTimeoutMs, clock: req.clock, signal, log: req.log, describe };
    snapshots = await waitForSnapshots({ ...wait, snapshots, until: 'fixed' });

    const stop = await session.stop();
    const label = parseBackupLabel(stop.labelFile);
    req.log.info(`pg_backup_stop at ${stop.lsn}: the snapshots' points in time are fixed; waiting for them to complete and for WAL up to ${stop.walFile}`);
    const prefix = backupPrefix(req.server, id);
    await putText(req.store, `${prefix}${BACKUP_LABEL_NAME}`, stop.labelFile);
    if (stop.spcmapFile.trim() !== '') await putText(req.store, `${prefix}${TABLESPACE_MAP_NAME}`, stop.spcmapFile);

    // Both settle before anything is reported, so nothing is left polling behind a failure.
    const [completed, archived] = await Promise.allSettled([
      waitForSnapshots({ ...wait, snapshots, until: 'completed' }),
      waitForWal({
        store: req.store, server: req.server, walFile: stop.walFile, timeoutMs: req.walArchiveTimeoutMs, clock: req.clock, signal, log: req.log,
        explain: async () => {
          const a = await session.archiverStatus();
          return a === undefined ? undefined : `pg_stat_archiver: last archived ${a.lastArchivedWal ?? 'none'}, ${a.failedCount} failures, last failed ${a.lastFailedWal ?? 'none'}`;
        },
      }),
    ]);
    if (completed.status === 'rejected') throw completed.reason;
    if (archived.status === 'rejected') throw archived.reason;
    snapshots = completed.value;

    const sizes = plan.map((d) => d.disk.sizeGiB);
    const done: BackupInfo = {
      ...entry,
      status: 'DONE',
      end_time: stop.time.toISOString(),
      begin_lsn: label?.startLsn ?? entry.begin_lsn,
      begin_wal: label?.startWalFile ?? entry.begin_wal,
      timeline: label?.startTimeline ?? entry.timeline,
      end_lsn: stop.lsn,
      end_wal: stop.walFile,
      // What the snapshots cover: the disks' sizes, when the cloud reports every one.
      size_bytes: sizes.every((s) => s !== undefined) ? sizes.reduce<number>((sum, s) => sum + (s ?? 0) * 1024 ** 3, 0) : 0,
      snapshots: recordsOf(planOf, snapshots, snapshotter.provider),
    };
    await writeBackupInfo(req.store, done);
    req.log.info(`backup ${done.id} is DONE: ${snapshots.length} snapshot${snapshots.length === 1 ? '' : 's'} (${snapshots.map((s) => s.id).join(', ')})`);
    return done;
  } catch (err) {
    const failure = signal.aborted && !(err instanceof CloudbarmanError && err.kind === 'bad-input') ? asFailure(signal.reason) : asFailure(err);
    await close();
    const left = snapshots.length === 0 ? [] : await deleteSnapshots(snapshotter, snapshots.map((s) => s.id), req.clock, req.log);
    if (entry !== undefined) {
      const leftover = recordsOf((s) => diskPlanOf(plan, requests, s), snapshots.filter((s) => left.includes(s.id)), snapshotter.provider);
      const note = left.length === 0 ? '' : `; snapshot${left.length === 1 ? '' : 's'} ${left.join(', ')} could not be deleted (recorded here for "cloudbarman delete")`;
      const failed: BackupInfo = { ...entry, status: 'FAILED', end_time: req.clock.now().toISOString(), error: `${failure.message}${note}`, snapshots: leftover };
      await writeBackupInfo(req.store, failed).catch((e: unknown) => {
        req.log.warn(`could not mark backup ${failed.id} FAILED: ${e instanceof Error ? e.message : String(e)}; it stays STARTED`);
      });
    }
    throw failure;
  } finally {
    release();
    await close();
  }
}

/** The server can be backed up, and pgdata is its data directory; returns pgdata. */
async function checkCluster(req: SnapshotBackupRequest, info: ServerInfo, target: string): Promise<string> {
  if (info.archiveMode === 'off') {
    throw badInput(`archive_mode is off on ${target}: the backup could never be made consistent`,
      `set archive_mode = on and archive_command = 'cloudbarman wal-upload ${req.server} %p', then restart PostgreSQL`);
  }
  if (info.inRecovery && info.archiveMode !== 'always') {
    req.log.warn(`${target} is a standby with archive_mode = ${info.archiveMode}: the backup waits for the primary to archive its WAL`);
  }
  const pgdata = req.pgdata ?? info.dataDirectory;
  if (pgdata === undefined) {
    throw badInput(`backup_method snapshot of ${req.server} needs pgdata: the role may not read data_directory`, 'set pgdata to the data directory, as this host sees it');
  }
  let systemId: string;
  try {
    systemId = await readSystemIdentifier(pgdata);
  } catch (err) {
    throw new CloudbarmanError('bad-input', `cannot read ${join(pgdata, 'global/pg_control')}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, {
      hint: 'run the backup on the database instance, as root or PostgreSQL\'s OS user, with pgdata set to its data directory', cause: err,
    });
  }
  if (systemId !== info.systemIdentifier) {
    throw badInput(`pgdata ${pgdata} belongs to database system ${systemId}, but conninfo connects to system ${info.systemIdentifier} (${target})`,
      'pgdata and conninfo must name the same cluster: fix one of them');
  }
  return pgdata;
}

/** pgdata, every tablespace, and pg_wal when it is a link to somewhere else. */
async function clusterLocations(pgdata: string, info: ServerInfo, probe: PathProbe): Promise<ClusterLocation[]> {
  const locations: ClusterLocation[] = [{ what: 'pgdata', path: pgdata }];
  const wal = join(pgdata, 'pg_wal');
  const [realWal, realData] = await Promise.all([probe.realpath(wal), probe.realpath(pgdata)]);
  if (realWal !== undefined && realData !== undefined && realWal !== join(realData, 'pg_wal')) locations.push({ what: 'pg_wal', path: realWal });
  for (const ts of info.tablespaces) {
    // An in-place tablespace (empty location) lives inside pgdata.
    if (ts.location !== '') locations.push({ what: `tablespace ${ts.name}`, path: ts.location });
  }
  return locations;
}

/**
 * The disk a snapshot was taken of: by the name this backup gave it, else by disk id (a cloud may
 * report the disk as a full resource path where the instance listed a short id).
 */
function diskPlanOf(plan: readonly DiskPlan[], requests: readonly SnapshotRequest[], s: SnapshotInfo): DiskPlan | undefined {
  const index = requests.findIndex((r) => r.name === s.name);
  return plan[index] ?? plan.find((p) => p.disk.id === s.diskId) ?? plan.find((p) => s.diskId.endsWith(`/${p.disk.id}`) || s.diskId.endsWith(`/${p.disk.name}`));
}

/** The catalog records of started snapshots. */
function recordsOf(planOf: (s: SnapshotInfo) => DiskPlan | undefined, snapshots: readonly SnapshotInfo[], provider: string): SnapshotRecord[] {
  return snapshots.map((s) => {
    const d = planOf(s);
    return {
      id: s.id, name: s.name, provider,
      disk_id: d?.disk.id ?? s.diskId, disk_name: d?.disk.name ?? s.diskId, device: d?.disk.device ?? null,
      mount_point: d?.mountPoint ?? '', zone: d?.disk.zone ?? null, contents: d?.contents ?? [],
    };
  });
}

function snapshotEntry(req: SnapshotBackupRequest, id: string, info: ServerInfo, pgdata: string): BackupInfo {
  // Nothing is compressed: the data is in the cloud's snapshots.
  return { ...startedEntry({ ...req, compression: 'none' }, id, info), method: 'snapshot', snapshots: [], pgdata };
}

/**
 * `restore`: a backup from the store into an empty data directory, ready to start and recover.
 *
 * Order of work, chosen so that nothing half-done can be mistaken for a usable cluster:
 *  1. Decide and check everything before writing anything: the backup (select-backup.ts), the
 *     target timeline, the manifest (restore-plan.ts), the WAL the backup needs, empty targets.
 *  2. Create DEST (mode 0700) and the marker file `cloudbarman_restore_incomplete` in it.
 *  3. Directories, tablespace links, then the parts, `jobs` at a time, each chunk verified
 *     against its SHA-256. global/pg_control is written under a pending name. Each file gets its
 *     mode and mtime and is fsynced as soon as its last chunk is written (file-completion.ts).
 *  4. Empty files are created; then tablespace_map, backup_label, the recovery settings in
 *     postgresql.auto.conf and the signal file are written and fsynced.
 *  5. Only then is global/pg_control renamed into place and the marker removed.
 * Without global/pg_control PostgreSQL refuses to start, so a failed or interrupted restore
 * leaves a directory that cannot start by mistake; the marker says what happened and what to do.
 */
import { constants } from 'node:fs';
import { lstat, mkdir, chmod, open, readdir, rename, symlink, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ObjectStore } from '../../../providers/object-store.ts';
import { listAll } from '../../../providers/object-store.ts';
import { isBackupCodec, type BackupCodec } from '../../io/compression.ts';
import type { BackupInfo, BackupMethod } from '../catalog/backup-info.ts';
import { listBackups, readManifest } from '../catalog/catalog.ts';
import { CloudbarmanError, badInput } from '../errors.ts';
import type { Logger } from '../log.ts';
import { storeFailure } from '../store/store-failure.ts';
import { forEachBounded } from './bounded-pool.ts';
import { FileCompletion, finishFile } from './file-completion.ts';
import { PartWorkers } from '../../io/part-workers.ts';
import { BUFFERED_PART_LIMIT, PartBuffers, PartTransferError, restorePart, writeFailure } from './part-restore.ts';
import { buildRecoveryConfig } from './recovery-config.ts';
import { INCOMPLETE_MARKER, autoConfHeader, checkWalArchived, readBackupLabel, syncPath, writeRecoveryFiles } from './recovery-files.ts';
import { describeTarget, type RecoveryTarget, type TargetAction, type TargetTimeline } from './recovery-target.ts';
import { planRestore, type PlannedPart, type RestorePlan } from './restore-plan.ts';
import { selectBackup } from './select-backup.ts';
import { restoreSnapshotBackup, type SnapshotDiskResult, type SnapshotRestoreOptions } from '../snapshot/restore-snapshot-backup.ts';

export { INCOMPLETE_MARKER } from './recovery-files.ts';

/** Files or directories finished (mode, mtime, fsync) at once at the end; fsyncs overlap well on one disk. */
const FINISH_CONCURRENCY = 16;

/** Everything restore needs; the CLI builds it from the command line and the config. */
export interface RestoreRequest {
  store: ObjectStore;
  server: string;
  /** A backup id or 'latest'. */
  backupId: string;
  /** Absolute path of the data directory to create (absent or empty). */
  dest: string;
  target?: RecoveryTarget;
  timeline?: TargetTimeline;
  action?: TargetAction;
  /** standby.signal instead of recovery.signal. */
  standby: boolean;
  /** --tablespace relocations, by tablespace name (absolute paths). */
  relocations: ReadonlyMap<string, string>;
  /** Parts downloaded and written at once. */
  jobs: number;
  /** Parts up to this many raw bytes go through a shared buffer, larger ones stream (part-restore.ts); for tests. */
  bufferedPartLimit?: number;
  /** The restore_command for the restored cluster (restore-command.ts). */
  restoreCommand: string;
  /** --snapshot-recovery-instance: how a snapshot backup is restored; a snapshot backup is refused without it. */
  snapshots?: SnapshotRestoreOptions;
  log: Logger;
  now: () => Date;
}

/** What was restored, for the summary (snake_case: it is printed as JSON). */
export interface RestoreResult {
  server: string;
  backup_id: string;
  reason: string;
  dest: string;
  begin_time: string;
  end_time: string | null;
  end_lsn: string | null;
  timeline: number | null;
  pg_version: number | null;
  size_bytes: number;
  stored_bytes: number;
  files: number;
  parts: number;
  seconds: number;
  recovery_target: string | null;
  signal_file: string;
  recovery_settings: Record<string, string>;
  tablespaces: Array<{ name: string; oid: number; location: string; relocated: boolean }>;
  method: BackupMethod;
  /** A snapshot backup: the disks made from its snapshots (created now, or found attached). */
  snapshot_disks?: SnapshotDiskResult[];
}

/** Restores a backup into req.dest; throws CloudbarmanError, leaving DEST marked incomplete once writing began. */
export async function restoreBackup(req: RestoreRequest): Promise<RestoreResult> {
  const started = req.now();
  if (!Number.isSafeInteger(req.jobs) || req.jobs < 1) throw badInput(`--jobs ${req.jobs} must be a whole number of at least 1`);
  const recovery = buildRecoveryConfig({
    restoreCommand: req.restoreCommand, standby: req.standby,
    ...(req.target === undefined ? {} : { target: req.target }),
    ...(req.timeline === undefined ? {} : { timeline: req.timeline }),
    ...(req.action === undefined ? {} : { action: req.action }),
  });

  // 1. Decide and check everything.
  const available = typeof req.timeline === 'number' && await historyExists(req.store, req.server, req.timeline) ? [req.timeline] : [];
  const { backups, unreadable } = await listBackups(req.store, req.server);
  for (const u of unreadable) req.log.warn(`backup ${u.id} is skipped: its catalog entry cannot be read (${u.error})`);
  const selection = selectBackup(backups, {
    id: req.backupId,
    ...(req.target === undefined ? {} : { target: req.target }),
    ...(req.timeline === undefined ? {} : { timeline: req.timeline }),
  }, { available });
  if (!selection.ok) throw selection.error;
  const backup = selection.backup;
  req.log.info(`restoring ${selection.reason}`);
  if (backup.method === 'snapshot') {
    return restoreSnapshotBackup({
      store: req.store, server: req.server, backup, reason: selection.reason, dest: req.dest, relocations: req.relocations,
      recovery, ...(req.target === undefined ? {} : { target: req.target }), started, options: req.snapshots, log: req.log, now: req.now,
    });
  }
  if (req.snapshots !== undefined) {
    throw badInput(`backup ${backup.id} is a ${backup.method} backup, not a snapshot backup: --snapshot-recovery-instance does not apply`,
      'restore it without --snapshot-recovery-instance and --create-disks, or give the id of a snapshot backup');
  }
  const compression = codecOf(backup);
  const manifest = await readManifest(req.store, req.server, backup.id);
  const plan = planRestore({ server: req.server, backup, manifest, dest: req.dest, relocations: req.relocations });
  const label = await readBackupLabel(req.store, req.server, backup);
  await checkWalArchived(req.store, req.server, backup);
  await assertEmptyTarget(req.dest, 'the destination');
  for (const t of plan.tablespaces.filter((p) => !p.inPlace)) await assertEmptyTarget(t.location, `tablespace ${t.name}'s location`);
  req.log.debug(`checked: ${plan.files.length} files in ${plan.parts.length} parts, WAL archived, targets empty, after ${elapsed(req, started)}`);

  // 2-5. Write.
  let writing = false;
  try {
    await mkdir(req.dest, { recursive: true, mode: 0o700 });
    await chmod(req.dest, 0o700);
    writing = true;
    await writeFile(join(req.dest, INCOMPLETE_MARKER), markerText(req, backup, started), { flag: 'wx', mode: 0o600 });
    await createLayout(plan);
    req.log.debug(`${plan.directories.length} directories created after ${elapsed(req, started)}`);
    const completion = new FileCompletion(plan);
    await restoreParts(req, plan, compression, completion);
    req.log.debug(`parts written after ${elapsed(req, started)}`);
    if (!completion.complete) throw new Error('internal: the parts are restored but some file still misses chunks');
    await createEmptyFiles(plan, completion);
    await writeRecoveryFiles(req.dest, { label, tablespaceMap: plan.tablespaceMap, recovery, header: autoConfHeader(req.server, backup.id, started) });
    await syncDirectories(plan);
    const [pending, final] = plan.pgControl;
    await rename(pending, final);
    await syncPath(dirname(final));
    await unlink(join(req.dest, INCOMPLETE_MARKER));
    await syncPath(req.dest);
  } catch (err) {
    throw writing ? leftIncomplete(err, req.dest) : asFailure(err, req.dest);
  }

  const seconds = (req.now().getTime() - started.getTime()) / 1000;
  req.log.info(`restored backup ${backup.id} into ${req.dest}: ${plan.files.length} files, ${plan.rawBytes} bytes in ${seconds.toFixed(1)} s`);
  return {
    server: req.server,
    backup_id: backup.id,
    reason: selection.reason,
    dest: req.dest,
    begin_time: backup.begin_time,
    end_time: backup.end_time,
    end_lsn: backup.end_lsn,
    timeline: backup.timeline,
    pg_version: backup.pg_version,
    size_bytes: plan.rawBytes,
    stored_bytes: plan.storedBytes,
    files: plan.files.length,
    parts: plan.parts.length,
    seconds,
    recovery_target: req.target === undefined ? null : describeTarget(req.target),
    signal_file: recovery.signalFile,
    recovery_settings: Object.fromEntries(recovery.settings),
    tablespaces: plan.tablespaces.map((t) => ({ name: t.name, oid: t.oid, location: t.inPlace ? join(req.dest, 'pg_tblspc', String(t.oid)) : t.location, relocated: t.relocated })),
    method: backup.method,
  };
}

function codecOf(backup: BackupInfo): BackupCodec {
  const codec: string = backup.compression;
  if (isBackupCodec(codec)) return codec;
  throw new CloudbarmanError('integrity', `backup ${backup.id} is compressed with ${JSON.stringify(codec)}, which this version does not know`, {
    hint: 'upgrade cloudbarman, or restore another backup',
  });
}

/** True when the archive holds <server>/wals/<TTTTTTTT>.history (any codec). */
async function historyExists(store: ObjectStore, server: string, timeline: number): Promise<boolean> {
  if (timeline === 1) return true; // timeline 1 has no history file
  const base = `${server}/wals/${hex8(timeline)}.history`;
  try {
    for await (const item of listAll(store, base)) {
      if (item.key === base || /^\.[a-z0-9]+$/.test(item.key.slice(base.length))) return true;
    }
  } catch (err) {
    throw storeFailure(err, `looking for the history file of timeline ${timeline}`, `${store.url} ${base}`);
  }
  return false;
}

/** A restore target must be absent or an empty directory. */
async function assertEmptyTarget(path: string, what: string): Promise<void> {
  let entries: string[];
  try {
    const st = await lstat(path);
    if (!st.isDirectory()) throw badInput(`${what} ${path} exists and is not a directory`, 'restore into an empty or new directory');
    entries = await readdir(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    if (err instanceof CloudbarmanError) throw err;
    throw new CloudbarmanError('bad-input', `cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { hint: 'check its permissions', cause: err });
  }
  if (entries.includes(INCOMPLETE_MARKER)) {
    // A restore that failed or was killed: never resumed into, because nothing proves which files are whole.
    throw badInput(`${what} ${path} holds an interrupted restore (${INCOMPLETE_MARKER} is there): PostgreSQL cannot start on it, and restore does not resume it`,
      'delete that directory (and any tablespace directories the restore created), then run the restore again');
  }
  if (entries.length > 0) {
    const shown = entries.slice(0, 3).join(', ') + (entries.length > 3 ? ', ...' : '');
    throw badInput(`${what} ${path} is not empty (${shown})`, 'restore only writes into an empty or new directory: empty it, or choose another one');
  }
}

async function createLayout(plan: RestorePlan): Promise<void> {
  for (const dir of plan.directories) {
    try {
      await mkdir(dir.local, { recursive: true, mode: 0o700 });
      await chmod(dir.local, dir.mode);
    } catch (err) {
      throw writeFailure(dir, 'creating the directory', err);
    }
  }
  for (const [link, target] of plan.links) {
    await symlink(target, link).catch((err: unknown) => { throw writeFailure({ local: link }, 'linking', err); });
  }
}

async function restoreParts(req: RestoreRequest, plan: RestorePlan, compression: BackupCodec, completion: FileCompletion): Promise<void> {
  let written = 0;
  let reported = 0;
  const onBytes = (n: number): void => {
    written += n;
    const tenth = plan.rawBytes === 0 ? 10 : Math.floor((written * 10) / plan.rawBytes);
    if (tenth > reported && tenth < 10) {
      reported = tenth;
      req.log.info(`${tenth * 10}% restored (${mib(written)} of ${mib(plan.rawBytes)})`);
    }
  };
  const limit = req.bufferedPartLimit ?? BUFFERED_PART_LIMIT;
  const buffers = new PartBuffers(plan.parts.reduce((max, p) => (p.rawSize <= limit ? Math.max(max, p.rawSize) : max), 0), limit);
  // One hashing thread per job: each part in flight keeps one busy.
  const pool = new PartWorkers(req.jobs);
  try {
    // No retry here: the store's one retry policy already resumes a body that breaks off
    // (providers/retrying-store.ts), so a download that still fails has used up that budget.
    await forEachBounded(plan.parts, req.jobs, new AbortController(), async (part: PlannedPart, signal: AbortSignal) => {
      try {
        await restorePart({ store: req.store, files: plan.files, compression, completion, hash: pool.digest, buffers, signal, onBytes }, part);
      } catch (err) {
        if (!(err instanceof PartTransferError) || signal.aborted) throw err;
        throw new CloudbarmanError('unreachable', err.message, { hint: 'the store kept dropping the download (retry_timeout was used up); try again', cause: err });
      }
      req.log.debug(`part ${part.key} restored (${part.chunks.length} chunks, ${part.rawSize} bytes)`);
    });
  } finally {
    await pool.close();
  }
}

/** Files without chunks (empty ones): created here, with their mode and mtime, and fsynced. */
async function createEmptyFiles(plan: RestorePlan, completion: FileCompletion): Promise<void> {
  await forEachBounded(completion.chunkless, FINISH_CONCURRENCY, new AbortController(), async (index) => {
    const file = plan.files[index];
    if (file === undefined) throw new Error(`internal: no file ${index}`);
    let handle;
    try {
      handle = await open(file.local, constants.O_WRONLY | constants.O_CREAT, 0o600);
      await finishFile(handle, file);
    } catch (err) {
      throw writeFailure(file, 'creating', err);
    } finally {
      await handle?.close();
    }
  });
}

async function syncDirectories(plan: RestorePlan): Promise<void> {
  const dirs = [plan.dest, ...plan.directories.map((d) => d.local), ...new Set(plan.links.map(([link]) => dirname(link)))];
  await forEachBounded([...new Set(dirs)], FINISH_CONCURRENCY, new AbortController(), syncPath);
}

function markerText(req: RestoreRequest, backup: BackupInfo, started: Date): string {
  return [
    'This directory is an INCOMPLETE restore by cloudbarman.',
    `Backup ${backup.id} of server ${req.server}, restore started ${started.toISOString()}.`,
    'global/pg_control is held back (as global/pg_control.cloudbarman_incomplete) until every file',
    'is written and verified, so PostgreSQL refuses to start here.',
    'If this file is still here, the restore failed or was interrupted: delete this directory',
    '(and the tablespace directories the restore created) and run the restore again.',
    '',
  ].join('\n');
}

function leftIncomplete(err: unknown, dest: string): CloudbarmanError {
  const failure = asFailure(err, dest);
  const note = `${dest} is left incomplete (it holds ${INCOMPLETE_MARKER} and no global/pg_control, so PostgreSQL will not start there): delete it before restoring again`;
  return new CloudbarmanError(failure.kind, failure.message, { hint: failure.hint === undefined ? note : `${failure.hint}; ${note}`, cause: failure.cause ?? err });
}

function asFailure(err: unknown, dest: string): CloudbarmanError {
  if (err instanceof CloudbarmanError) return err;
  return writeFailure({ local: dest }, 'restoring into', err);
}

function elapsed(req: RestoreRequest, since: Date): string {
  return `${((req.now().getTime() - since.getTime()) / 1000).toFixed(2)} s`;
}

function hex8(n: number): string {
  return n.toString(16).toUpperCase().padStart(8, '0');
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

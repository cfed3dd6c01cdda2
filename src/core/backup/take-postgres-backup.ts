/**
 * backup_method postgres: BASE_BACKUP over a replication connection (streaming_conninfo), so
 * the data directory need not be readable here. The streamed archives (one per tablespace) are
 * parsed as they arrive and their files packed straight into parts (stream-parts.ts), with no
 * local disk: the same part format, manifest and object layout as backup_method local, so
 * restore, retention and verify read it unchanged, and the same exclusions (exclusions.ts) on top
 * of the server's own. At most `jobs` parts are stored at once; while all are busy the
 * replication socket is not read. The server's backup_manifest is stored beside the parts, and
 * every received file was checked against it. A regular session on conninfo supplies the server
 * facts of the catalog entry and pg_stat_archiver while waiting for the end WAL.
 */
import { PartWorkers } from '../../io/part-workers.ts';
import { openBackupSession, type ServerInfo } from '../../pg/backup-api.ts';
import type { BaseBackupOptions, BaseBackupResult } from '../../pg/base-backup.ts';
import { parseBackupLabel } from '../../pg/backup-label.ts';
import { parseLsn, walFileNameAt } from '../../pg/lsn.ts';
import type { TarEntry, TarSink } from '../../pg/tar-stream.ts';
import type { BackupInfo } from '../catalog/backup-info.ts';
import { BACKUP_LABEL_NAME, TABLESPACE_MAP_NAME, backupPrefix } from '../catalog/backup-keys.ts';
import { createBackupEntry, writeBackupInfo, writeManifest } from '../catalog/catalog.ts';
import type { ManifestDirectory } from '../catalog/manifest.ts';
import { CloudbarmanError, badInput } from '../errors.ts';
import { asFailure, throwIfAborted } from './abort.ts';
import { EXCLUDED_DIRECTORY_CONTENTS, isExcludedName } from './exclusions.ts';
import { assembleManifest } from './manifest-assembly.ts';
import { StreamParts } from './stream-parts.ts';
import { archivingProblem, putText, startedEntry, type BackupProgress, type BackupRequest } from './take-backup.ts';
import { waitForWal } from './wait-for-wal.ts';

/** The server's backup_manifest, stored as an object of the backup. */
export const SERVER_MANIFEST_NAME = 'backup_manifest';

/** A postgres-method backup: a BackupRequest without pgdata, plus the replication side. */
export interface PostgresBackupRequest extends Omit<BackupRequest, 'pgdata' | 'openSession'> {
  streamingConninfo: string;
  /** application_name of the replication connection (streaming_backup_name). */
  streamingApplicationName: string;
  /** Runs BASE_BACKUP (runBaseBackup from src/pg/base-backup.ts). */
  baseBackup: (opts: BaseBackupOptions) => Promise<BaseBackupResult>;
  /** streaming_archiver = on: receive-wal stores the WAL, so archive_mode may be off. */
  streamingArchiver?: boolean;
}

/** Takes a BASE_BACKUP and returns its DONE catalog entry; on failure the entry is FAILED. */
export async function takePostgresBackup(req: PostgresBackupRequest): Promise<BackupInfo> {
  const session = await openBackupSession(req.conninfo, { applicationName: req.applicationName ?? 'cloudbarman_backup', connectTimeoutMs: req.connectTimeoutMs });
  const signal = req.signal ?? new AbortController().signal;
  let parts: StreamParts | undefined;
  let workers: PartWorkers | undefined;
  let entry: BackupInfo | undefined;
  try {
    await session.assertSupported();
    const info = await session.serverInfo();
    if (info.archiveMode === 'off' && req.streamingArchiver !== true) {
      throw badInput(`archive_mode is off on ${session.target}: the backup could never be made consistent`,
        `set archive_mode = on and archive_command = 'cloudbarman wal-upload ${req.server} %p', then restart PostgreSQL; or set streaming_archiver = on and run cloudbarman receive-wal ${req.server}`);
    }
    entry = await createBackupEntry(req.store, (id) => ({ ...startedEntry(req, id, info), method: 'postgres' }), req.clock.now());
    req.log.info(`backup ${entry.id} of ${req.server} started with BASE_BACKUP (PostgreSQL ${info.version}, ${req.compression}, ${req.jobs} jobs)`);
    const prefix = backupPrefix(req.server, entry.id);
    workers = new PartWorkers(req.jobs);
    const progress: BackupProgress = { partsDone: 0, partsTotal: 0, bytesDone: 0, bytesTotal: 0, storedBytes: 0 };
    let received = 0;
    const building: StreamParts = parts = new StreamParts({
      jobs: req.jobs, partSize: req.partSize,
      ctx: { store: req.store, prefix, codec: req.compression, hash: workers.digest, lz4: workers.lz4, signal, log: req.log },
      onPart: (o) => {
        progress.partsDone++;
        progress.bytesDone += o.part.rawSize;
        progress.storedBytes += o.part.storedSize;
        // The total is not known before the stream ends: what has been received so far.
        progress.partsTotal = Math.max(progress.partsDone, building.partsStarted);
        progress.bytesTotal = Math.max(progress.bytesDone, received);
        req.onProgress?.({ ...progress });
      },
    });
    const directories: ManifestDirectory[] = [];
    const bb = await req.baseBackup({
      conninfo: req.streamingConninfo, applicationName: req.streamingApplicationName, connectTimeoutMs: req.connectTimeoutMs,
      label: entry.label, signal, onProgress: (bytes) => { received = bytes; },
      archive: (oid) => archiveSink(building, directories, oid),
    });
    throwIfAborted(signal);
    const endTime = req.clock.now();
    const label = parseBackupLabel(bb.labelFile);
    if (label === undefined) throw new CloudbarmanError('failed', 'BASE_BACKUP sent no readable backup_label');
    const endLsn = parseLsn(bb.endLsn);
    if (endLsn === undefined) throw new CloudbarmanError('failed', `BASE_BACKUP reported an end position ${bb.endLsn} that is not an LSN`);
    const endWal = walFileNameAt(endLsn, bb.endTimeline, info.walSegmentSize, true);
    checkTablespaces(info, directories);
    // Only now, with every other part stored: pg_control, in a part of its own.
    if (!building.hasLastFile) req.log.warn('BASE_BACKUP sent no global/pg_control');
    const outcomes = await building.finish();
    await workers.close();
    workers = undefined;
    entry = { ...entry, begin_lsn: label.startLsn, begin_wal: label.startWalFile, timeline: label.startTimeline };
    await writeBackupInfo(req.store, entry);
    req.log.info(`BASE_BACKUP received ${bb.fileCount} files, ${bb.startLsn} to ${bb.endLsn}, stored in ${outcomes.length} parts (at most ${building.maxInFlight} at once); the backup needs WAL up to ${endWal}`);

    const manifest = assembleManifest({ backupId: entry.id, compression: req.compression, files: building.files, directories, outcomes });
    const storing = (async () => {
      await putText(req.store, `${prefix}${BACKUP_LABEL_NAME}`, bb.labelFile);
      if (bb.spcmapFile.trim() !== '') await putText(req.store, `${prefix}${TABLESPACE_MAP_NAME}`, bb.spcmapFile);
      await putText(req.store, `${prefix}${SERVER_MANIFEST_NAME}`, bb.manifest.toString('utf8'));
      await writeManifest(req.store, req.server, manifest);
    })();
    const waiting = waitForWal({
      store: req.store, server: req.server, walFile: endWal, timeoutMs: req.walArchiveTimeoutMs, clock: req.clock, signal, log: req.log,
      ...(req.streamingArchiver === true ? { via: 'receive-wal' as const } : { failing: async () => archivingProblem(await session.archiverStatus(), endWal) }),
    });
    const [stored, waited] = await Promise.allSettled([storing, waiting]);
    if (stored.status === 'rejected') throw stored.reason;
    if (waited.status === 'rejected') throw waited.reason;
    const done: BackupInfo = {
      ...entry, status: 'DONE', end_time: endTime.toISOString(), end_lsn: bb.endLsn, end_wal: endWal,
      size_bytes: manifest.files.reduce((sum, f) => sum + f.size, 0),
      stored_bytes: manifest.parts.reduce((sum, p) => sum + p.storedSize, 0),
      file_count: manifest.files.length, part_count: manifest.parts.length,
    };
    await writeBackupInfo(req.store, done);
    req.log.info(`backup ${done.id} is DONE: ${done.file_count} files, ${done.size_bytes} bytes, ${done.stored_bytes} stored in ${done.part_count} parts`);
    return done;
  } catch (err) {
    // Once aborted, the reason (a signal) says more than the error it caused.
    const failure = signal.aborted ? asFailure(signal.reason) : asFailure(err);
    await parts?.abort(failure);
    if (entry !== undefined) {
      const failed: BackupInfo = { ...entry, status: 'FAILED', end_time: req.clock.now().toISOString(), error: failure.message };
      await writeBackupInfo(req.store, failed).catch((e: unknown) => {
        req.log.warn(`could not mark backup ${failed.id} FAILED: ${e instanceof Error ? e.message : String(e)}; it stays STARTED`);
      });
    }
    throw failure;
  } finally {
    await workers?.close();
    await session.close();
  }
}

/** Every tablespace the catalog knows came as an archive: otherwise restores would miss it. */
function checkTablespaces(info: ServerInfo, directories: readonly ManifestDirectory[]): void {
  const missing = info.tablespaces.filter((ts) => !directories.some((d) => d.path === `pg_tblspc/${ts.oid}`));
  if (missing.length > 0) {
    throw new CloudbarmanError('failed', `BASE_BACKUP sent no archive for tablespace ${missing.map((ts) => `${ts.name} (${ts.oid})`).join(', ')}`, {
      hint: 'a tablespace was dropped or created during the backup: run it again',
    });
  }
}

/** The mode recorded for pg_tblspc/<oid>: PostgreSQL makes a tablespace's location 0700. */
const TABLESPACE_DIRECTORY_MODE = 0o700;

/**
 * The sink of one archive: its files go into the parts, its directories into the manifest, under
 * the paths backup_method local records (tablespace members under pg_tblspc/<oid>/), minus what
 * backup_method local leaves out (the server leaves out the same, and sends backup_label and
 * tablespace_map, which are stored as objects of their own).
 */
export function archiveSink(parts: StreamParts, directories: ManifestDirectory[], oid: number | undefined): TarSink {
  const prefix = oid === undefined ? '' : `pg_tblspc/${oid}/`;
  const seen = new Set(directories.map((d) => d.path));
  const addDirectory = (path: string, mode: number): void => {
    if (seen.has(path)) return;
    seen.add(path);
    directories.push({ path, mode });
  };
  if (oid !== undefined) addDirectory(`pg_tblspc/${oid}`, TABLESPACE_DIRECTORY_MODE);
  let open = false;
  return {
    async entry(e: TarEntry): Promise<void> {
      const path = `${prefix}${e.path}`;
      if (!storedLikeLocal(path, e.type)) return;
      if (e.type === 'directory') addDirectory(path, e.mode);
      else if (e.type === 'symlink') {
        // A tablespace's link: the local method records pg_tblspc/<oid> as a directory.
        if (oid === undefined && /^pg_tblspc\/\d+$/.test(path)) addDirectory(path, TABLESPACE_DIRECTORY_MODE);
      } else if (e.type === 'file') {
        parts.startFile({ path, mode: e.mode, mtime: e.mtime });
        open = true;
      }
    },
    async data(chunk: Buffer): Promise<void> {
      if (open) await parts.write(chunk);
    },
    async end(): Promise<void> {
      if (!open) return;
      open = false;
      parts.endFile();
    },
  };
}

/** Whether backup_method local would store this path (walk.ts with exclusions.ts). */
export function storedLikeLocal(path: string, type: TarEntry['type']): boolean {
  const parts = path.split('/');
  if (parts.some(isExcludedName)) return false;
  const top = parts[0] ?? '';
  if (parts.length > 1 && EXCLUDED_DIRECTORY_CONTENTS.has(top)) {
    // Kept empty, except that pg_wal keeps its subdirectories (archive_status, summaries).
    return top === 'pg_wal' && parts.length === 2 && type === 'directory';
  }
  return type !== 'other';
}


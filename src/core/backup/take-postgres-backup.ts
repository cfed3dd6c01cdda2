/**
 * backup_method postgres: BASE_BACKUP over a replication connection (streaming_conninfo), so
 * the data directory need not be readable here. The streamed archives are unpacked into a
 * spool directory (disk, not memory) laid out like a data directory, then stored through the
 * same walk and part pipeline as backup_method local, so restore, retention and verify read it
 * unchanged. The server's backup_manifest is stored beside the parts, and every received file
 * was checked against it. A regular session on conninfo supplies the server facts of the
 * catalog entry and pg_stat_archiver while waiting for the end WAL.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openBackupSession } from '../../pg/backup-api.ts';
import type { BaseBackupOptions, BaseBackupResult } from '../../pg/base-backup.ts';
import { parseBackupLabel } from '../../pg/backup-label.ts';
import { parseLsn, walFileNameAt } from '../../pg/lsn.ts';
import type { BackupInfo } from '../catalog/backup-info.ts';
import { BACKUP_LABEL_NAME, TABLESPACE_MAP_NAME, backupPrefix } from '../catalog/backup-keys.ts';
import { createBackupEntry, writeBackupInfo, writeManifest } from '../catalog/catalog.ts';
import { CloudbarmanError, badInput } from '../errors.ts';
import { asFailure, throwIfAborted } from './abort.ts';
import { assembleManifest } from './manifest-assembly.ts';
import { archivingProblem, copyDataDirectory, putText, startedEntry, type BackupRequest } from './take-backup.ts';
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
  /** Where the spool directory goes; the OS temp directory by default. */
  spoolParent?: string;
}

/** Takes a BASE_BACKUP and returns its DONE catalog entry; on failure the entry is FAILED. */
export async function takePostgresBackup(req: PostgresBackupRequest): Promise<BackupInfo> {
  const session = await openBackupSession(req.conninfo, { applicationName: req.applicationName ?? 'cloudbarman_backup', connectTimeoutMs: req.connectTimeoutMs });
  const signal = req.signal ?? new AbortController().signal;
  const spool = await mkdtemp(join(req.spoolParent ?? tmpdir(), 'cloudbarman-basebackup-'));
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
    const bb = await req.baseBackup({
      conninfo: req.streamingConninfo, applicationName: req.streamingApplicationName, connectTimeoutMs: req.connectTimeoutMs,
      label: entry.label, dir: spool, signal,
    });
    throwIfAborted(signal);
    const endTime = req.clock.now();
    const label = parseBackupLabel(bb.labelFile);
    if (label === undefined) throw new CloudbarmanError('failed', 'BASE_BACKUP sent no readable backup_label');
    const endLsn = parseLsn(bb.endLsn);
    if (endLsn === undefined) throw new CloudbarmanError('failed', `BASE_BACKUP reported an end position ${bb.endLsn} that is not an LSN`);
    const endWal = walFileNameAt(endLsn, bb.endTimeline, info.walSegmentSize, true);
    entry = { ...entry, begin_lsn: label.startLsn, begin_wal: label.startWalFile, timeline: label.startTimeline };
    await writeBackupInfo(req.store, entry);
    req.log.info(`BASE_BACKUP received ${bb.fileCount} files, ${bb.startLsn} to ${bb.endLsn}; the backup needs WAL up to ${endWal}`);

    const outcomes = await copyDataDirectory({ ...req, pgdata: join(spool, 'data') }, entry.id, info, signal);
    const prefix = backupPrefix(req.server, entry.id);
    const manifest = assembleManifest({ backupId: entry.id, compression: req.compression, files: outcomes.files, directories: outcomes.directories, outcomes: outcomes.parts });
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
    if (entry !== undefined) {
      const failed: BackupInfo = { ...entry, status: 'FAILED', end_time: req.clock.now().toISOString(), error: failure.message };
      await writeBackupInfo(req.store, failed).catch((e: unknown) => {
        req.log.warn(`could not mark backup ${failed.id} FAILED: ${e instanceof Error ? e.message : String(e)}; it stays STARTED`);
      });
    }
    throw failure;
  } finally {
    await session.close();
    await rm(spool, { recursive: true, force: true });
  }
}


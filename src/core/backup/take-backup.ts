/**
 * backup_method local: a base backup read from the data directory on this host, between
 * pg_backup_start and pg_backup_stop on one session.
 *
 * Order, and why:
 *   1. backup.json STARTED (create-if-absent claims the id): a run killed from here on stays
 *      visible as STARTED, never as a backup.
 *   2. pg_backup_start, then the walk, then every part, then pg_control in a part of its own.
 *   3. pg_backup_stop; backup_label and tablespace_map from it, and the manifest, are stored
 *      beside the data while we wait until the stop segment is in the store: without it the
 *      backup cannot be made consistent.
 *   4. backup.json DONE: data first, catalog entry last.
 * Any failure or interruption closes the session (PostgreSQL then aborts the backup), rewrites
 * the entry as FAILED with the error, and rethrows.
 */
import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import type { ObjectStore } from '../../../providers/object-store.ts';
import type { BackupCodec } from '../../io/compression.ts';
import { PartWorkers, hashOnThisThread } from '../../io/part-workers.ts';
import { openBackupSession, type ArchiverStatus, type BackupSession, type ServerInfo } from '../../pg/backup-api.ts';
import { parseBackupLabel } from '../../pg/backup-label.ts';
import type { ConnectOptions } from '../../pg/connection.ts';
import { readSystemIdentifier } from '../../pg/control-file.ts';
import { BACKUP_FORMAT_VERSION, type BackupInfo } from '../catalog/backup-info.ts';
import { BACKUP_LABEL_NAME, TABLESPACE_MAP_NAME, backupPrefix } from '../catalog/backup-keys.ts';
import { createBackupEntry, writeBackupInfo, writeManifest } from '../catalog/catalog.ts';
import { CloudbarmanError, badInput } from '../errors.ts';
import type { Logger } from '../log.ts';
import { storeFailure } from '../store/store-failure.ts';
import { asFailure, throwIfAborted } from './abort.ts';
import { assembleManifest } from './manifest-assembly.ts';
import { planParts } from './part-plan.ts';
import { uploadPart, uploadParts, type PartContext, type PartOutcome } from './part-upload.ts';
import { waitForWal, type BackupClock } from './wait-for-wal.ts';
import { walkDataDirectory, type WalkResult } from './walk.ts';

/** The database side of a backup; BackupSession, or a fake in tests. */
export type BackupSessionApi = Pick<BackupSession, 'target' | 'onLost' | 'serverInfo' | 'assertSupported' | 'start' | 'stop' | 'archiverStatus' | 'close'>;

/** How far a backup has come, for a progress display. */
export interface BackupProgress {
  partsDone: number;
  partsTotal: number;
  /** Raw bytes read into stored parts, and the total planned. */
  bytesDone: number;
  bytesTotal: number;
  storedBytes: number;
}

/** Everything one backup needs; the CLI fills it from ServerConfig. */
export interface BackupRequest {
  store: ObjectStore;
  server: string;
  conninfo: string;
  pgdata: string;
  compression: BackupCodec;
  jobs: number;
  partSize: number;
  /** The backup's label (--name); default "cloudbarman <id>". */
  name?: string;
  walArchiveTimeoutMs: number;
  connectTimeoutMs: number;
  /** application_name of the session, unless conninfo sets one. */
  applicationName?: string;
  hostname: string;
  cloudbarmanVersion: string;
  clock: BackupClock;
  log: Logger;
  /** Aborting it (SIGINT, SIGTERM) ends the backup as FAILED with the signal's reason. */
  signal?: AbortSignal;
  onProgress?: (progress: BackupProgress) => void;
  /** Opens the database session; openBackupSession unless a test injects one. */
  openSession?: (conninfo: string, opts: ConnectOptions) => Promise<BackupSessionApi>;
  /** streaming_archiver = on: receive-wal stores the WAL, so archive_mode may be off. */
  streamingArchiver?: boolean;
}

/** pg_backup_start refuses longer labels (MAXPGPATH). */
const MAX_LABEL_BYTES = 1023;

/** Takes a base backup and returns its DONE catalog entry. Throws CloudbarmanError; the entry is then FAILED. */
export async function takeBackup(req: BackupRequest): Promise<BackupInfo> {
  if (req.name !== undefined) checkLabel(req.name);
  const localSystemId = await checkDataDirectory(req.pgdata);
  const { session, signal, close, release } = await openGuardedSession(req);

  let entry: BackupInfo | undefined;
  try {
    await session.assertSupported();
    const info = await session.serverInfo();
    checkSameCluster(req.pgdata, localSystemId, info, session.target);
    if (info.dataDirectory !== undefined && info.dataDirectory !== req.pgdata) {
      req.log.debug(`the server's data_directory is ${info.dataDirectory}; reading ${req.pgdata}, which holds the same system ${localSystemId}`);
    }
    if (info.archiveMode === 'off' && req.streamingArchiver !== true) {
      throw badInput(`archive_mode is off on ${session.target}: the backup could never be made consistent`,
        `set archive_mode = on and archive_command = 'cloudbarman wal-upload ${req.server} %p', then restart PostgreSQL; or set streaming_archiver = on and run cloudbarman receive-wal ${req.server}`);
    }
    if (info.inRecovery && info.archiveMode !== 'always') {
      req.log.warn(`${session.target} is a standby with archive_mode = ${info.archiveMode}: the backup waits for the primary to archive its WAL`);
    }

    entry = await createBackupEntry(req.store, (id) => startedEntry(req, id, info), req.clock.now());
    req.log.info(`backup ${entry.id} of ${req.server} started (PostgreSQL ${info.version}, ${req.compression}, ${req.jobs} jobs)`);

    const start = await session.start(entry.label, true);
    entry = { ...entry, begin_time: start.time.toISOString(), begin_lsn: start.lsn, begin_wal: start.walFile, timeline: start.timeline };
    await writeBackupInfo(req.store, entry);
    throwIfAborted(signal);

    const outcomes = await copyDataDirectory(req, entry.id, info, signal);

    const stop = await session.stop();
    const label = parseBackupLabel(stop.labelFile);
    const prefix = backupPrefix(req.server, entry.id);
    req.log.info(`pg_backup_stop at ${stop.lsn}; the backup needs WAL up to ${stop.walFile}`);
    const manifest = assembleManifest({ backupId: entry.id, compression: req.compression, files: outcomes.files, directories: outcomes.directories, outcomes: outcomes.parts });

    // The rest of the backup's objects go up while archive_command stores the last segment.
    const storing = (async () => {
      await putText(req.store, `${prefix}${BACKUP_LABEL_NAME}`, stop.labelFile);
      if (stop.spcmapFile.trim() !== '') await putText(req.store, `${prefix}${TABLESPACE_MAP_NAME}`, stop.spcmapFile);
      await writeManifest(req.store, req.server, manifest);
    })();
    const waiting = waitForWal({
      store: req.store, server: req.server, walFile: stop.walFile, timeoutMs: req.walArchiveTimeoutMs, clock: req.clock, signal, log: req.log,
      ...(req.streamingArchiver === true ? { via: 'receive-wal' as const } : {
        failing: async () => archivingProblem(await session.archiverStatus(), stop.walFile),
        explain: async () => {
          const a = await session.archiverStatus();
          if (a === undefined) return undefined;
          return `pg_stat_archiver: last archived ${a.lastArchivedWal ?? 'none'}, ${a.failedCount} failure${a.failedCount === 1 ? '' : 's'}` +
            (a.lastFailedWal === null ? '' : `, last failed ${a.lastFailedWal}${a.lastFailedTime === null ? '' : ` at ${a.lastFailedTime.toISOString()}`}`);
        },
      }),
    });
    // Both settle before anything is reported, so no store call is left running behind a failure.
    const [stored, waited] = await Promise.allSettled([storing, waiting]);
    if (stored.status === 'rejected') throw stored.reason;
    if (waited.status === 'rejected') throw waited.reason;

    const done: BackupInfo = {
      ...entry,
      status: 'DONE',
      end_time: stop.time.toISOString(),
      // The label is what recovery reads, so the catalog says what it says.
      begin_lsn: label?.startLsn ?? entry.begin_lsn,
      begin_wal: label?.startWalFile ?? entry.begin_wal,
      timeline: label?.startTimeline ?? entry.timeline,
      end_lsn: stop.lsn,
      end_wal: stop.walFile,
      size_bytes: manifest.files.reduce((sum, f) => sum + f.size, 0),
      stored_bytes: manifest.parts.reduce((sum, p) => sum + p.storedSize, 0),
      file_count: manifest.files.length,
      part_count: manifest.parts.length,
    };
    await writeBackupInfo(req.store, done);
    req.log.info(`backup ${done.id} is DONE: ${done.file_count} files, ${done.size_bytes} bytes, ${done.stored_bytes} stored in ${done.part_count} parts`);
    return done;
  } catch (err) {
    // Once aborted, the reason (the signal, a lost session) says more than the error it caused.
    const failure = signal.aborted && !(err instanceof CloudbarmanError && err.kind === 'bad-input') ? asFailure(signal.reason) : asFailure(err);
    await close();
    if (entry !== undefined) {
      const failed: BackupInfo = { ...entry, status: 'FAILED', end_time: req.clock.now().toISOString(), error: failure.message };
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

/** The walk and the parts, pg_control last. */
/** Walks pgdata and stores its files as parts, pg_control last. */
export async function copyDataDirectory(req: BackupRequest, id: string, info: ServerInfo, signal: AbortSignal): Promise<Omit<WalkResult, 'tablespaces'> & { parts: PartOutcome[] }> {
  const walk = await walkDataDirectory(req.pgdata, {
    tablespaceVersionDir: `PG_${Math.floor(info.versionNum / 10000)}_${info.catalogVersion}`,
    log: req.log,
  });
  // A tablespace the catalog knows but the walk did not find would be missing from every restore.
  const missing = info.tablespaces.filter((ts) => !walk.tablespaces.some((w) => w.oid === ts.oid));
  if (missing.length > 0) {
    throw new CloudbarmanError('failed', `tablespace ${missing.map((ts) => `${ts.name} (${ts.oid})`).join(', ')} has no pg_tblspc/<oid> link in ${req.pgdata}`, {
      hint: 'pgdata must be the data directory of the server conninfo reaches, with its tablespaces mounted; or a tablespace was dropped during the backup: run it again',
    });
  }
  const plan = planParts(walk.files, req.partSize);
  const partsTotal = plan.parts.length + (plan.finalPart === undefined ? 0 : 1);
  req.log.info(`${walk.files.length} files, ${walk.directories.length} directories, ${plan.totalBytes} bytes in ${partsTotal} parts`);

  const workers = new PartWorkers(req.jobs);
  const ctx: PartContext = {
    files: walk.files, store: req.store, prefix: backupPrefix(req.server, id), codec: req.compression,
    hash: workers.digest, lz4: workers.lz4, signal, log: req.log,
  };
  const outcomes: PartOutcome[] = [];
  const progress: BackupProgress = { partsDone: 0, partsTotal, bytesDone: 0, bytesTotal: plan.totalBytes, storedBytes: 0 };
  const record = (o: PartOutcome): void => {
    outcomes.push(o);
    progress.partsDone++;
    progress.bytesDone += o.part.rawSize;
    progress.storedBytes += o.part.storedSize;
    req.onProgress?.({ ...progress });
  };
  try {
    await uploadParts(plan.parts, req.jobs, ctx, record);
    // Only now, with every other part stored: pg_control.
    if (plan.finalPart !== undefined) {
      record(await uploadPart(plan.finalPart, { input: Buffer.allocUnsafe(plan.finalPart.rawSize) }, { ...ctx, hash: hashOnThisThread }));
    }
    else req.log.warn(`${req.pgdata} has no global/pg_control`);
  } finally {
    await workers.close();
  }
  return { files: walk.files, directories: walk.directories, parts: outcomes };
}

/**
 * What pg_stat_archiver says is holding walFile up, if anything: the latest archiving event is a
 * failure on a segment at or before it. Segment names of one timeline sort in WAL order, and
 * PostgreSQL archives in that order.
 */
export function archivingProblem(a: ArchiverStatus | undefined, walFile: string): string | undefined {
  const failed = a?.lastFailedWal?.slice(0, 24);
  if (a === undefined || failed === undefined || failed > walFile) return undefined;
  if (a.lastArchivedWal !== null && a.lastArchivedWal.slice(0, 24) >= failed) return undefined;
  return `archive_command is failing: PostgreSQL reports ${a.failedCount} failure${a.failedCount === 1 ? '' : 's'}, the last on ${a.lastFailedWal ?? failed}`;
}

/** A backup's database session, tied to one abort signal: the caller's, or the session dying. */
export interface GuardedSession {
  session: BackupSessionApi;
  signal: AbortSignal;
  /** Closes the session, once. Closing before pg_backup_stop makes PostgreSQL abort the backup. */
  close(): Promise<void>;
  /** Stops closing the session on abort (call before the final close). */
  release(): void;
}

/** Opens the backup session; an abort closes it at once, so a pending query (a slow start checkpoint) ends too. */
export async function openGuardedSession(req: Pick<BackupRequest, 'conninfo' | 'applicationName' | 'connectTimeoutMs' | 'signal' | 'openSession'>): Promise<GuardedSession> {
  const open = req.openSession ?? openBackupSession;
  const session = await open(req.conninfo, { applicationName: req.applicationName ?? 'cloudbarman_backup', connectTimeoutMs: req.connectTimeoutMs });
  const lost = new AbortController();
  session.onLost((err) => lost.abort(err));
  const signal = req.signal === undefined ? lost.signal : AbortSignal.any([req.signal, lost.signal]);
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => (closing ??= session.close());
  const onAbort = (): void => void close();
  signal.addEventListener('abort', onAbort, { once: true });
  return { session, signal, close, release: () => signal.removeEventListener('abort', onAbort) };
}

/** The STARTED catalog entry of a new backup. */
export function startedEntry(req: Pick<BackupRequest, 'server' | 'name' | 'clock' | 'compression' | 'cloudbarmanVersion' | 'hostname'>, id: string, info: ServerInfo): BackupInfo {
  return {
    format_version: BACKUP_FORMAT_VERSION,
    id,
    server: req.server,
    status: 'STARTED',
    method: 'local',
    label: req.name ?? `cloudbarman ${id}`,
    begin_time: req.clock.now().toISOString(),
    end_time: null,
    begin_lsn: null,
    end_lsn: null,
    begin_wal: null,
    end_wal: null,
    timeline: null,
    size_bytes: 0,
    stored_bytes: 0,
    file_count: 0,
    part_count: 0,
    compression: req.compression,
    pg_version: info.versionNum,
    system_identifier: info.systemIdentifier,
    data_checksums: info.dataChecksums,
    wal_segment_size: info.walSegmentSize,
    tablespaces: info.tablespaces,
    error: null,
    cloudbarman_version: req.cloudbarmanVersion,
    hostname: req.hostname,
  };
}

/** The data directory exists, can be read, and holds a cluster; returns its system identifier. */
async function checkDataDirectory(pgdata: string): Promise<string> {
  const hint = 'set pgdata (--pgdata, CLOUDBARMAN_PGDATA, or pgdata in the server\'s section) to the data directory of the server';
  const st = await stat(pgdata).catch((err: NodeJS.ErrnoException) => {
    throw new CloudbarmanError('bad-input', `pgdata ${pgdata} ${err.code === 'ENOENT' ? 'does not exist' : `cannot be read (${err.code ?? err.message})`}`, { hint, cause: err });
  });
  if (!st.isDirectory()) throw badInput(`pgdata ${pgdata} is not a directory`, hint);
  try {
    return await readSystemIdentifier(pgdata);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') {
      throw new CloudbarmanError('bad-input', `cannot read ${pgdata}/global/pg_control: permission denied`, {
        hint: 'run the backup as the PostgreSQL OS user (or root) on the database host', cause: err,
      });
    }
    throw new CloudbarmanError('bad-input', `pgdata ${pgdata} is not a PostgreSQL data directory (no readable global/pg_control)`, { hint, cause: err });
  }
}

/** Refuses to store one cluster's files under another's catalog entry. */
function checkSameCluster(pgdata: string, localSystemId: string, info: ServerInfo, target: string): void {
  if (localSystemId !== info.systemIdentifier) {
    throw badInput(`pgdata ${pgdata} belongs to database system ${localSystemId}, but conninfo connects to system ${info.systemIdentifier} (${target})`,
      'pgdata and conninfo must name the same cluster: fix one of them');
  }
}

function checkLabel(name: string): void {
  if (name.trim() === '' || /[\r\n]/.test(name) || Buffer.byteLength(name) > MAX_LABEL_BYTES) {
    throw badInput(`backup name ${JSON.stringify(name.slice(0, 40))} is not usable as a label`, `give a non-empty name of one line, at most ${MAX_LABEL_BYTES} bytes`);
  }
}

/** Stores a small text object of the backup, once. */
export async function putText(store: ObjectStore, key: string, text: string): Promise<void> {
  try {
    const body = Buffer.from(text);
    // cb_sha256: restore (recovery-files.ts) refuses a backup_label whose bytes changed.
    await store.put(key, body, { ifAbsent: true, metadata: { cb_sha256: createHash('sha256').update(body).digest('hex') } });
  } catch (err) {
    throw storeFailure(err, `storing ${key.slice(key.lastIndexOf('/') + 1)}`, `${store.url} ${key}`);
  }
}

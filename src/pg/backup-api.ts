/**
 * PostgreSQL's non-exclusive low-level backup API on one session: pg_backup_start() and
 * pg_backup_stop() (the 15+ names; 15 is the oldest version supported). The backup lives as
 * long as the session: closing it before stop() makes PostgreSQL abort the backup, which is
 * exactly what a failed or interrupted run needs, so the session stays open throughout.
 */
import type pg from 'pg';
import type { TablespaceInfo } from '../core/catalog/backup-info.ts';
import { CloudbarmanError, badInput } from '../core/errors.ts';
import { parseBackupLabel } from './backup-label.ts';
import { connect, describeTarget, type ConnectOptions } from './connection.ts';
import { parseLsn, walFileNameAt } from './lsn.ts';

/** The oldest server_version_num the backup API here speaks (pg_backup_start appeared in 15). */
export const MIN_SERVER_VERSION_NUM = 150000;

/** What a backup needs to know about the server before it starts. */
export interface ServerInfo {
  /** server_version_num, e.g. 170004. */
  versionNum: number;
  /** server_version, e.g. "17.4 (Debian 17.4-1)". */
  version: string;
  /** pg_control_system().system_identifier, decimal. */
  systemIdentifier: string;
  /** pg_control_system().catalog_version_no: names the tablespace subdirectory, PG_<major>_<catversion>. */
  catalogVersion: number;
  /** data_directory, for messages; undefined when the role may not read it (no pg_read_all_settings, which nothing else needs). */
  dataDirectory: string | undefined;
  walSegmentSize: number;
  dataChecksums: boolean;
  inRecovery: boolean;
  /** archive_mode: off, on or always. */
  archiveMode: string;
  /** The role the session runs as, for GRANT hints. */
  role: string;
  /** The role may run pg_backup_start and pg_backup_stop (superuser, or the GRANTs of grantsFor). */
  mayBackup: boolean;
  /** User tablespaces (not pg_default or pg_global), with pg_tablespace_location. */
  tablespaces: TablespaceInfo[];
}

/** Where the backup started. */
export interface BackupStart {
  lsn: string;
  timeline: number;
  /** The segment holding the start LSN. */
  walFile: string;
  /** The server's clock just after the start checkpoint. */
  time: Date;
}

/** Where the backup stopped, and the files recovery needs beside the data. */
export interface BackupStop {
  lsn: string;
  /** The last segment the backup needs to be consistent. */
  walFile: string;
  labelFile: string;
  /** Empty when there are no tablespaces. */
  spcmapFile: string;
  time: Date;
}

/** pg_stat_archiver, for messages when the backup's WAL does not arrive. */
export interface ArchiverStatus {
  lastArchivedWal: string | null;
  lastFailedWal: string | null;
  failedCount: number;
  lastFailedTime: Date | null;
}

/** One session holding one backup. Not reusable: start once, stop once, close. */
export class BackupSession {
  readonly #client: pg.Client;
  readonly #target: string;
  #info: ServerInfo | undefined;
  #startTimeline: number | undefined;
  #lost: CloudbarmanError | undefined;
  readonly #onLost: Array<(err: CloudbarmanError) => void> = [];
  #closed = false;

  /** Wraps an open client; prefer openBackupSession. */
  constructor(client: pg.Client) {
    this.#client = client;
    this.#target = describeTarget(client);
    const lose = (cause: unknown): void => {
      if (this.#closed || this.#lost !== undefined) return;
      this.#lost = new CloudbarmanError('unreachable', `the connection to PostgreSQL at ${this.#target} was lost; PostgreSQL aborted the backup`, {
        hint: 'check the server log for why the session ended (restart, pg_terminate_backend, idle timeouts)', cause,
      });
      for (const cb of this.#onLost) cb(this.#lost);
    };
    client.on('error', lose);
    client.on('end', () => lose(new Error('connection ended')));
  }

  /** "user@host:port/db", for messages. */
  get target(): string {
    return this.#target;
  }

  /** Calls back (once) when the connection drops: the backup is then already aborted server-side. */
  onLost(callback: (err: CloudbarmanError) => void): void {
    if (this.#lost !== undefined) callback(this.#lost);
    else this.#onLost.push(callback);
  }

  /** Reads version, identity, WAL settings and tablespaces. Cached after the first call. */
  async serverInfo(): Promise<ServerInfo> {
    if (this.#info !== undefined) return this.#info;
    const rows = await this.#query<{
      version_num: string; version: string; system_identifier: string; catalog_version: number; data_directory: string | null;
      wal_segment_size: string; data_checksums: string; in_recovery: boolean; archive_mode: string; role: string; may_backup: boolean;
    }>(`SELECT current_setting('server_version_num') AS version_num, current_setting('server_version') AS version,
              s.system_identifier::text AS system_identifier, s.catalog_version_no AS catalog_version,
              (SELECT setting FROM pg_settings WHERE name = 'data_directory') AS data_directory,
              (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') AS wal_segment_size,
              current_setting('data_checksums') AS data_checksums, pg_is_in_recovery() AS in_recovery,
              current_setting('archive_mode') AS archive_mode, current_user AS role,
              has_function_privilege('pg_backup_start(text, boolean)', 'EXECUTE')
                AND has_function_privilege('pg_backup_stop(boolean)', 'EXECUTE') AS may_backup
         FROM pg_control_system() s`, [], 'reading the server settings');
    const row = rows[0];
    if (row === undefined) throw new CloudbarmanError('failed', `PostgreSQL at ${this.#target} returned no settings`);
    const spaces = await this.#query<{ oid: number; name: string; location: string }>(
      `SELECT oid::int AS oid, spcname AS name, pg_tablespace_location(oid) AS location
         FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY oid`, [], 'listing tablespaces');
    this.#info = {
      versionNum: Number(row.version_num),
      version: row.version,
      systemIdentifier: row.system_identifier,
      catalogVersion: Number(row.catalog_version),
      dataDirectory: row.data_directory ?? undefined,
      walSegmentSize: Number(row.wal_segment_size),
      dataChecksums: row.data_checksums === 'on',
      inRecovery: row.in_recovery,
      archiveMode: row.archive_mode,
      role: row.role,
      mayBackup: row.may_backup,
      tablespaces: spaces.map((s) => ({ oid: s.oid, name: s.name, location: s.location })),
    };
    return this.#info;
  }

  /** Throws bad-input unless the server is a version this API speaks and the role may run a backup. */
  async assertSupported(): Promise<void> {
    const info = await this.serverInfo();
    if (info.versionNum < MIN_SERVER_VERSION_NUM) {
      throw badInput(`PostgreSQL ${info.version} at ${this.#target} is too old: cloudbarman backs up PostgreSQL 15 and later`,
        'upgrade the server, or use a tool that still supports it for its backups');
    }
    if (!info.mayBackup) {
      throw badInput(`role ${info.role} may not run pg_backup_start and pg_backup_stop on ${this.#target}`,
        `connect as a superuser, or as a superuser run: ${grantsFor(info.role).join('; ')}`);
    }
  }

  /** pg_backup_start(label, fast): fast asks for an immediate checkpoint instead of a spread one. */
  async start(label: string, fast = true): Promise<BackupStart> {
    await this.assertSupported();
    const info = await this.serverInfo();
    const started = await this.#query<{ lsn: string }>('SELECT pg_backup_start($1, $2)::text AS lsn', [label, fast], 'starting the backup (pg_backup_start)');
    const lsn = started[0]?.lsn;
    if (lsn === undefined) throw new CloudbarmanError('failed', 'pg_backup_start returned no LSN');
    // The start checkpoint has just completed, so pg_control's checkpoint timeline is the backup's.
    const rows = await this.#query<{ timeline: number; now: Date; walfile: string | null }>(
      `SELECT timeline_id AS timeline, now() AS now, CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name($1::pg_lsn) END AS walfile
         FROM pg_control_checkpoint()`, [lsn], 'reading the start checkpoint');
    const row = rows[0];
    if (row === undefined) throw new CloudbarmanError('failed', 'pg_control_checkpoint returned no row');
    this.#startTimeline = row.timeline;
    return { lsn, timeline: row.timeline, walFile: row.walfile ?? this.#walFile(lsn, row.timeline, info.walSegmentSize, false), time: row.now };
  }

  /** pg_backup_stop(wait_for_archive => false): the caller waits for the WAL in its own store. */
  async stop(): Promise<BackupStop> {
    const info = await this.serverInfo();
    const rows = await this.#query<{ lsn: string; labelfile: string; spcmapfile: string | null; now: Date; walfile: string | null }>(
      `SELECT s.lsn::text AS lsn, s.labelfile, s.spcmapfile, now() AS now,
              CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(s.lsn) END AS walfile
         FROM pg_backup_stop(false) s`, [], 'stopping the backup (pg_backup_stop)');
    const row = rows[0];
    if (row === undefined) throw new CloudbarmanError('failed', 'pg_backup_stop returned no row');
    const timeline = parseBackupLabel(row.labelfile)?.startTimeline ?? this.#startTimeline ?? 1;
    return {
      lsn: row.lsn,
      walFile: row.walfile ?? this.#walFile(row.lsn, timeline, info.walSegmentSize, true),
      labelFile: row.labelfile,
      spcmapFile: row.spcmapfile ?? '',
      time: row.now,
    };
  }

  /** pg_stat_archiver's view of archiving; undefined when it cannot be read. */
  async archiverStatus(): Promise<ArchiverStatus | undefined> {
    if (this.#lost !== undefined || this.#closed) return undefined;
    const rows = await this.#client.query<{ last_archived_wal: string | null; last_failed_wal: string | null; failed_count: string; last_failed_time: Date | null }>(
      'SELECT last_archived_wal, last_failed_wal, failed_count::text AS failed_count, last_failed_time FROM pg_stat_archiver',
    ).then((r) => r.rows, () => []);
    const row = rows[0];
    if (row === undefined) return undefined;
    return { lastArchivedWal: row.last_archived_wal, lastFailedWal: row.last_failed_wal, failedCount: Number(row.failed_count), lastFailedTime: row.last_failed_time };
  }

  /** Ends the session. Before stop(), PostgreSQL aborts the backup. Idempotent; never throws. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#client.end().catch(() => undefined);
  }

  #walFile(lsn: string, timeline: number, segmentSize: number, endOfRange: boolean): string {
    const value = parseLsn(lsn);
    if (value === undefined) throw new CloudbarmanError('failed', `PostgreSQL returned an LSN "${lsn}" that cannot be parsed`);
    return walFileNameAt(value, timeline, segmentSize, endOfRange);
  }

  async #query<R extends object>(sql: string, params: unknown[], what: string): Promise<R[]> {
    if (this.#lost !== undefined) throw this.#lost;
    try {
      return (await this.#client.query<R>(sql, params)).rows;
    } catch (err) {
      throw this.#lost ?? sqlFailure(err, what, this.#target, this.#info?.role);
    }
  }
}

/** Opens a session for one backup. */
export async function openBackupSession(conninfo: string, opts: ConnectOptions): Promise<BackupSession> {
  const client = await connect(conninfo, opts);
  const session = new BackupSession(client);
  try {
    // A backup may outlive every timeout an administrator set for ordinary sessions; the
    // session must not be ended while it sits idle during the upload.
    await client.query("SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0; SET idle_session_timeout = 0");
  } catch (err) {
    await session.close();
    throw sqlFailure(err, 'preparing the session', session.target, undefined);
  }
  return session;
}

/** The GRANTs a role without superuser needs for backup_method local. */
export function grantsFor(role: string): string[] {
  const r = quoteIdent(role);
  return [
    `GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean) TO ${r}`,
    `GRANT EXECUTE ON FUNCTION pg_backup_stop(boolean) TO ${r}`,
  ];
}

function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replaceAll('"', '""')}"`;
}

/** Classifies an SQL error during `what`. */
function sqlFailure(err: unknown, what: string, target: string, role: string | undefined): CloudbarmanError {
  if (err instanceof CloudbarmanError) return err;
  const e = err as { code?: string; message?: string };
  const message = e.message ?? String(err);
  if (e.code === '42501') {
    return new CloudbarmanError('bad-input', `${what} on ${target} failed: ${message}`, {
      hint: `a role without superuser needs, as a superuser: ${grantsFor(role ?? 'ROLE').join('; ')}`,
      cause: err,
    });
  }
  // object_not_in_prerequisite_state: wal_level minimal, a standby promoted mid-backup, ...
  if (e.code === '55000') {
    return new CloudbarmanError('bad-input', `${what} on ${target} failed: ${message}`, { hint: 'fix the server setting the message names (wal_level = replica, full_page_writes = on)', cause: err });
  }
  if (/^E[A-Z]+$/.test(e.code ?? '') || /terminated|not queryable|connection/i.test(message)) {
    return new CloudbarmanError('unreachable', `${what} on ${target} failed: ${message}`, { hint: 'the database connection failed; PostgreSQL aborted the backup', cause: err });
  }
  return new CloudbarmanError('failed', `${what} on ${target} failed: ${message}`, { hint: 'see the PostgreSQL server log', cause: err });
}

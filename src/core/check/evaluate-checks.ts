/**
 * The checks of `cloudbarman check`, in the style of `barman check`: one verdict per line, each
 * with a detail that says what was found. Pure: the facts are gathered elsewhere (gather-facts.ts)
 * and the time is passed in, so every verdict is tested with tables.
 */

/** One check's outcome: `name: OK (detail)` or `name: FAILED (detail)`. */
export interface CheckResult {
  name: string;
  ok: boolean;
  detail: string;
}

/** What the server's config asks of it. */
export interface CheckConfig {
  server: string;
  /** WAL arrives through archive_command (wal-upload) unless the streaming archiver replaces it. */
  streamingArchiver: boolean;
  slotName?: string;
  /** application_name of receive-wal's connection. */
  streamingArchiverName: string;
  minimumRedundancy: number;
  /** last_backup_maximum_age in ms; undefined: not checked. */
  lastBackupMaximumAgeMs?: number;
}

/** What one SQL session found out about the server. */
export interface PgFacts {
  versionNum: number;
  role: string;
  superuser: boolean;
  /** The role may run pg_backup_start and pg_backup_stop. */
  mayBackup: boolean;
  /** The role has REPLICATION (receive-wal, backup_method postgres). */
  replication: boolean;
  walLevel: string;
  archiveMode: string;
  archiveCommand: string;
  archiver: { archivedCount: number; failedCount: number; lastArchivedTime: string | null; lastFailedWal: string | null; lastFailedTime: string | null };
  /** The configured slot as pg_replication_slots shows it; undefined when it does not exist. */
  slot?: { type: string; active: boolean; restartLsn: string | null };
  /** application_name of every walsender client, with its sync state. */
  replicationClients: Array<{ applicationName: string; syncState: string }>;
}

/** What a replication connection on streaming_conninfo found (IDENTIFY_SYSTEM). */
export interface StreamingFacts {
  /** "user@host:port" of the replication connection. */
  target: string;
  systemId: string;
  timeline: number;
}

/** A fact that could not be gathered: the message says why. */
export interface Unavailable {
  error: string;
}

/** What the catalog says. */
export interface CatalogFacts {
  done: Array<{ id: string; endTime: string | null }>;
  failed: string[];
}

/** Everything the checks look at. */
export interface CheckFacts {
  pg: PgFacts | Unavailable;
  /** The store answered a listing. */
  storeReachable: true | Unavailable;
  /** A probe object was written and deleted. */
  storeWritable: true | Unavailable;
  catalog: CatalogFacts | Unavailable;
  /** A replication connection on streaming_conninfo; undefined when not tried (no streaming_conninfo,
   *  or neither streaming_archiver nor backup_method postgres needs one). */
  streaming?: StreamingFacts | Unavailable;
}

const MIN_VERSION_NUM = 150000;

function isUnavailable(value: unknown): value is Unavailable {
  return typeof value === 'object' && value !== null && 'error' in value;
}

/** Every check that applies to the server's config, in a fixed order. */
export function evaluateChecks(config: CheckConfig, facts: CheckFacts, now: Date): CheckResult[] {
  const results: CheckResult[] = [];
  const add = (name: string, ok: boolean, detail: string): void => {
    results.push({ name, ok, detail });
  };

  const pg = facts.pg;
  if (isUnavailable(pg)) {
    add('PostgreSQL', false, pg.error);
  } else {
    add('PostgreSQL', pg.versionNum >= MIN_VERSION_NUM, `version ${Math.floor(pg.versionNum / 10000)}${pg.versionNum >= MIN_VERSION_NUM ? '' : ', older than 15, which cloudbarman does not support'}`);
    add('superuser or backup privileges', pg.superuser || pg.mayBackup,
      pg.superuser ? `${pg.role} is a superuser` : pg.mayBackup ? `${pg.role} may run pg_backup_start and pg_backup_stop`
        : `${pg.role} may not run pg_backup_start/pg_backup_stop: GRANT EXECUTE on both to it`);
    add('wal_level', pg.walLevel === 'replica' || pg.walLevel === 'logical', `${pg.walLevel}${pg.walLevel === 'minimal' ? ': set wal_level = replica and restart' : ''}`);
    if (!config.streamingArchiver || pg.archiveMode !== 'off') {
      add('archive_mode', pg.archiveMode === 'on' || pg.archiveMode === 'always', `${pg.archiveMode}${pg.archiveMode === 'off' ? ': set archive_mode = on and restart, or use streaming_archiver' : ''}`);
      const ours = archiveCommandIsOurs(pg.archiveCommand, config.server);
      add('archive_command', ours, ours ? 'runs cloudbarman wal-upload for this server'
        : `"${pg.archiveCommand}" does not run "cloudbarman wal-upload ${config.server} %p"`);
      const a = pg.archiver;
      const failing = a.failedCount > 0 && a.lastFailedTime !== null && (a.lastArchivedTime === null || Date.parse(a.lastFailedTime) >= Date.parse(a.lastArchivedTime));
      add('continuous archiving', !failing, failing
        ? `the last attempt failed: ${a.lastFailedWal ?? '?'} at ${a.lastFailedTime ?? '?'} (${a.failedCount} failures); see the PostgreSQL log`
        : `${a.archivedCount} archived, ${a.failedCount} failed${a.lastArchivedTime === null ? '' : `, last at ${a.lastArchivedTime}`}`);
    }
    const streaming = facts.streaming;
    if (streaming !== undefined) {
      // What receive-wal and backup_method postgres really use: the role and pg_hba.conf line of streaming_conninfo.
      add('streaming connection', !isUnavailable(streaming), isUnavailable(streaming)
        ? `streaming_conninfo: ${streaming.error}`
        : `${streaming.target} (replication): system identifier ${streaming.systemId}, timeline ${streaming.timeline}`);
    }
    if (config.streamingArchiver) {
      if (streaming !== undefined) {
        add('replication privilege', !isUnavailable(streaming), isUnavailable(streaming)
          ? 'not verified: the replication connection on streaming_conninfo failed (see streaming connection); its role needs REPLICATION and a pg_hba.conf line for the database "replication"'
          : `${streaming.target.replace(/@.*$/, '')} may stream WAL (a replication connection was accepted)`);
      } else {
        add('replication privilege', pg.superuser || pg.replication, pg.replication || pg.superuser ? `${pg.role} may stream WAL` : `${pg.role} lacks REPLICATION: ALTER ROLE ${pg.role} REPLICATION`);
      }
      if (config.slotName !== undefined) {
        const slot = pg.slot;
        add('replication slot', slot !== undefined && slot.type === 'physical', slot === undefined
          ? `slot ${config.slotName} does not exist: run cloudbarman receive-wal ${config.server} --create-slot`
          : slot.type !== 'physical' ? `slot ${config.slotName} is ${slot.type}, not physical`
            : `${config.slotName} is ${slot.active ? 'active' : 'inactive'}, restart_lsn ${slot.restartLsn ?? 'none'}`);
      }
      const client = pg.replicationClients.find((c) => c.applicationName === config.streamingArchiverName);
      add('receive-wal running', client !== undefined, client !== undefined ? `streaming as ${config.streamingArchiverName} (${client.syncState})`
        : `no walsender for application_name ${config.streamingArchiverName}: start cloudbarman receive-wal ${config.server}, or the daemon`);
    }
  }

  add('object store', !isUnavailable(facts.storeReachable), isUnavailable(facts.storeReachable) ? facts.storeReachable.error : 'reachable');
  add('object store writable', !isUnavailable(facts.storeWritable), isUnavailable(facts.storeWritable) ? facts.storeWritable.error : 'a probe object was written and deleted');

  const catalog = facts.catalog;
  if (isUnavailable(catalog)) {
    add('backup catalog', false, catalog.error);
    return results;
  }
  if (config.lastBackupMaximumAgeMs !== undefined) {
    const newest = catalog.done.map((b) => (b.endTime === null ? Number.NaN : Date.parse(b.endTime))).filter((t) => Number.isFinite(t)).reduce((a, b) => Math.max(a, b), Number.NEGATIVE_INFINITY);
    const limit = formatAge(config.lastBackupMaximumAgeMs);
    if (!Number.isFinite(newest)) add('backup maximum age', false, `no DONE backup (last_backup_maximum_age ${limit})`);
    else {
      const age = now.getTime() - newest;
      add('backup maximum age', age <= config.lastBackupMaximumAgeMs, `the newest DONE backup ended ${formatAge(Math.max(0, age))} ago (last_backup_maximum_age ${limit})`);
    }
  }
  add('minimum redundancy requirements', catalog.done.length >= config.minimumRedundancy,
    `have ${catalog.done.length} DONE backup${catalog.done.length === 1 ? '' : 's'}, expected at least ${config.minimumRedundancy}`);
  add('failed backups', catalog.failed.length === 0, catalog.failed.length === 0 ? 'there are 0 failed backups'
    : `there ${catalog.failed.length === 1 ? 'is 1 failed backup' : `are ${catalog.failed.length} failed backups`} (${catalog.failed.join(', ')}); delete them or let retention clean them up`);
  return results;
}

/** archive_command runs cloudbarman's wal-upload for this server (any path to the binary, any flags before). */
export function archiveCommandIsOurs(command: string, server: string): boolean {
  const words = command.replace(/['"]/g, ' ').split(/\s+/).filter((w) => w !== '');
  const at = words.findIndex((w) => w === 'wal-upload');
  if (at < 0 || !words.slice(0, at).some((w) => /(^|\/)cloudbarman$/.test(w))) return false;
  return words.slice(at + 1).some((w) => w === server) && words.includes('%p');
}

/** "3 d 4 h", "2 h 5 min", "40 s": coarse, for messages. */
function formatAge(ms: number): string {
  const s = Math.round(ms / 1000);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d} d${h > 0 ? ` ${h} h` : ''}`;
  if (h > 0) return `${h} h${m > 0 ? ` ${m} min` : ''}`;
  if (m > 0) return `${m} min`;
  return `${s} s`;
}

/**
 * One base backup of a configured server into an open store: what `backup` and the scheduler
 * (`cron`, `daemon`) both run. Maps the config to takeBackup; the caller owns the store and output.
 */
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ObjectStore } from '../../providers/object-store.ts';
import type { ServerConfig } from '../config/load.ts';
import { envName, flagName } from '../config/options.ts';
import type { BackupInfo } from '../core/catalog/backup-info.ts';
import type { BackupProgress } from '../core/backup/take-backup.ts';
import { badInput } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';

/** How a backup run is driven from outside. */
export interface RunBackupOptions {
  signal: AbortSignal;
  version: string;
  name?: string;
  onProgress?: (p: BackupProgress) => void;
}

/** Takes the backup; resolves with its final catalog entry (DONE), throws when it failed. */
export async function runBackup(cfg: ServerConfig, store: ObjectStore, log: Logger, opts: RunBackupOptions): Promise<BackupInfo> {
  const { conninfo, pgdata } = requireLocalSettings(cfg);
  const { takeBackup } = await import('../core/backup/take-backup.ts');
  return takeBackup({
    store, server: cfg.server, conninfo, pgdata,
    compression: cfg.backupCompression, jobs: cfg.parallelJobs, partSize: cfg.partSizeBytes,
    ...(opts.name === undefined ? {} : { name: opts.name }),
    walArchiveTimeoutMs: cfg.walArchiveTimeoutMs, connectTimeoutMs: cfg.connectTimeoutMs,
    hostname: hostname(), cloudbarmanVersion: opts.version,
    clock: { now: () => new Date(), sleep: async (ms, signal) => { await sleep(ms, undefined, signal === undefined ? {} : { signal }); } },
    log, signal: opts.signal, ...(opts.onProgress === undefined ? {} : { onProgress: opts.onProgress }),
  });
}

/** backup_method local needs to connect and to read the data directory; anything else is not built yet. */
export function requireLocalSettings(cfg: ServerConfig): { conninfo: string; pgdata: string } {
  const inFile = (line: string): string => (cfg.configFile === undefined ? '' : `, or "${line}" in [${cfg.server}] of ${cfg.configFile}`);
  if (cfg.backupMethod !== 'local') {
    throw badInput(`backup_method ${cfg.backupMethod} is not supported yet (${cfg.locations['backup_method'] ?? 'default'})`,
      `use backup_method local (${flagName('backup_method')} local) on the database host`);
  }
  if (cfg.conninfo === undefined) {
    throw badInput(`backup of ${cfg.server} needs conninfo to reach PostgreSQL`,
      `give ${flagName('conninfo')} 'host=... user=... dbname=...', ${envName('conninfo')}${inFile('conninfo = ...')}`);
  }
  if (cfg.pgdata === undefined) {
    throw badInput(`backup_method local of ${cfg.server} needs pgdata, the data directory to read`,
      `give ${flagName('pgdata')} DIR, ${envName('pgdata')}${inFile('pgdata = DIR')}`);
  }
  return { conninfo: cfg.conninfo, pgdata: cfg.pgdata };
}

/**
 * One base backup of a configured server into an open store: what `backup` and the scheduler
 * (`cron`, `daemon`) both run. Maps the config to takeBackup (backup_method local),
 * takePostgresBackup (backup_method postgres) or takeSnapshotBackup (backup_method snapshot); the caller owns the store and output.
 */
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ObjectStore } from '../../providers/object-store.ts';
import type { ServerConfig } from '../config/load.ts';
import { envName, flagName } from '../config/options.ts';
import type { BackupInfo } from '../core/catalog/backup-info.ts';
import type { BackupProgress } from '../core/backup/take-backup.ts';
import type { BackupClock } from '../core/backup/wait-for-wal.ts';
import { badInput } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';

/** How a backup run is driven from outside. */
export interface RunBackupOptions {
  signal: AbortSignal;
  version: string;
  name?: string;
  onProgress?: (p: BackupProgress) => void;
}

/** What each backup method needs from the config, checked before anything is opened. */
export type BackupSettings =
  | { method: 'local'; conninfo: string; pgdata: string }
  | { method: 'postgres'; conninfo: string; streamingConninfo: string; applicationName: string }
  | { method: 'snapshot'; conninfo: string; pgdata: string | undefined; provider: string; instance: string; disks: string[] };

const clock: BackupClock = { now: () => new Date(), sleep: async (ms, signal) => { await sleep(ms, undefined, signal === undefined ? {} : { signal }); } };

/** Takes the backup; resolves with its final catalog entry (DONE), throws when it failed. */
export async function runBackup(cfg: ServerConfig, store: ObjectStore, log: Logger, opts: RunBackupOptions): Promise<BackupInfo> {
  const settings = requireBackupSettings(cfg);
  const common = {
    store, server: cfg.server, conninfo: settings.conninfo,
    ...(opts.name === undefined ? {} : { name: opts.name }),
    walArchiveTimeoutMs: cfg.walArchiveTimeoutMs, connectTimeoutMs: cfg.connectTimeoutMs,
    hostname: hostname(), cloudbarmanVersion: opts.version, clock, log, signal: opts.signal,
  };
  if (settings.method === 'snapshot') {
    const [{ takeSnapshotBackup }, { openServerSnapshotter }] = await Promise.all([
      import('../core/snapshot/take-snapshot-backup.ts'), import('./open-snapshotter.ts')]);
    const snapshotter = await openServerSnapshotter(cfg, settings.provider);
    try {
      return await takeSnapshotBackup({
        ...common, snapshotter, instance: settings.instance, disks: settings.disks, snapshotTimeoutMs: cfg.snapshotTimeoutMs,
        ...(settings.pgdata === undefined ? {} : { pgdata: settings.pgdata }),
      });
    } finally {
      await snapshotter.close();
    }
  }
  if (settings.method === 'postgres') {
    const [{ takePostgresBackup }, { runBaseBackup }] = await Promise.all([
      import('../core/backup/take-postgres-backup.ts'), import('../pg/base-backup.ts')]);
    return takePostgresBackup({
      ...common, streamingConninfo: settings.streamingConninfo, streamingApplicationName: settings.applicationName, baseBackup: runBaseBackup,
      streamingArchiver: cfg.streamingArchiver,
      compression: cfg.backupCompression, jobs: cfg.parallelJobs, partSize: cfg.partSizeBytes,
      ...(opts.onProgress === undefined ? {} : { onProgress: opts.onProgress }),
    });
  }
  const { takeBackup } = await import('../core/backup/take-backup.ts');
  return takeBackup({
    ...common, pgdata: settings.pgdata, streamingArchiver: cfg.streamingArchiver,
    compression: cfg.backupCompression, jobs: cfg.parallelJobs, partSize: cfg.partSizeBytes,
    ...(opts.onProgress === undefined ? {} : { onProgress: opts.onProgress }),
  });
}

/** The settings of the server's backup_method, or a bad-input error naming what is missing. */
export function requireBackupSettings(cfg: ServerConfig): BackupSettings {
  const inFile = (line: string): string => (cfg.configFile === undefined ? '' : `, or "${line}" in [${cfg.server}] of ${cfg.configFile}`);
  const need = (option: string, what: string, example: string): never => {
    throw badInput(`backup_method ${cfg.backupMethod} of ${cfg.server} needs ${option}, ${what}`, `give ${flagName(option)} ${example}, ${envName(option)}${inFile(`${option} = ${example}`)}`);
  };
  if (cfg.backupMethod !== 'local' && cfg.backupMethod !== 'snapshot' && cfg.backupMethod !== 'postgres') {
    throw badInput(`backup_method ${cfg.backupMethod} is not supported yet (${cfg.locations['backup_method'] ?? 'default'})`,
      `use backup_method local (${flagName('backup_method')} local) on the database host, or snapshot`);
  }
  if (cfg.conninfo === undefined) {
    throw badInput(`backup of ${cfg.server} needs conninfo to reach PostgreSQL`,
      `give ${flagName('conninfo')} 'host=... user=... dbname=...', ${envName('conninfo')}${inFile('conninfo = ...')}`);
  }
  if (cfg.backupMethod === 'snapshot') {
    const provider = cfg.snapshotProvider ?? need('snapshot_provider', 'the cloud whose snapshots it takes', 'aws|azure|gcp|local');
    const instance = cfg.snapshotInstance ?? need('snapshot_instance', 'the instance (VM) it runs on', 'NAME');
    const disks = cfg.snapshotDisks ?? need('snapshot_disks', 'the disks that hold the data directory and tablespaces', 'DISK1,DISK2');
    return { method: 'snapshot', conninfo: cfg.conninfo, pgdata: cfg.pgdata, provider, instance, disks };
  }
  if (cfg.backupMethod === 'postgres') {
    const streamingConninfo = cfg.streamingConninfo ?? need('streaming_conninfo', 'a replication connection for BASE_BACKUP', "'host=... user=...'");
    return { method: 'postgres', conninfo: cfg.conninfo, streamingConninfo, applicationName: cfg.streamingBackupName };
  }
  if (cfg.pgdata === undefined) {
    throw badInput(`backup_method local of ${cfg.server} needs pgdata, the data directory to read`,
      `give ${flagName('pgdata')} DIR, ${envName('pgdata')}${inFile('pgdata = DIR')}`);
  }
  return { method: 'local', conninfo: cfg.conninfo, pgdata: cfg.pgdata };
}

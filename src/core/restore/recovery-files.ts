/**
 * What every restore does the same way, whatever carried the data (parts from the store, or disks
 * made from snapshots): read the backup's backup_label and tablespace_map from the store, check
 * that the WAL the backup needs is archived, and write backup_label, tablespace_map, the recovery
 * settings and the signal file into the data directory, each fsynced.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import type { ObjectStore } from '../../../providers/object-store.ts';
import { isStoreError, listAll } from '../../../providers/object-store.ts';
import { decompressBuffer, isCompression } from '../../io/compression.ts';
import { nextSegmentName } from '../../pg/wal-names.ts';
import type { BackupInfo } from '../catalog/backup-info.ts';
import { PART_META } from '../catalog/backup-info.ts';
import { BACKUP_LABEL_NAME, TABLESPACE_MAP_NAME, backupPrefix } from '../catalog/backup-keys.ts';
import { CloudbarmanError } from '../errors.ts';
import { storeFailure } from '../store/store-failure.ts';
import { isWalVariant } from '../wal/wal-keys.ts';
import { checkBackupLabel } from './label-check.ts';
import { writeFailure } from './part-restore.ts';
import { renderAutoConf, type RecoveryConfig } from './recovery-config.ts';

/** The marker left in a data directory until a restore has finished: PostgreSQL cannot start there meanwhile. */
export const INCOMPLETE_MARKER = 'cloudbarman_restore_incomplete';

/** backup_label as pg_backup_stop returned it (stored beside the backup, maybe compressed), checked against the catalog (label-check.ts). */
export async function readBackupLabel(store: ObjectStore, server: string, backup: BackupInfo): Promise<Buffer> {
  const label = await readBackupObject(store, server, backup, BACKUP_LABEL_NAME);
  const where = `${store.url} ${backupPrefix(server, backup.id)}${BACKUP_LABEL_NAME}`;
  if (label === undefined) {
    throw new CloudbarmanError('integrity', `backup ${backup.id} has no backup_label at ${where}`, {
      hint: 'without it recovery would not start from the backup\'s checkpoint; restore another backup',
    });
  }
  checkBackupLabel(backup, label, where);
  return label;
}

/** tablespace_map as pg_backup_stop returned it; undefined when the backup had no tablespaces. */
export async function readTablespaceMap(store: ObjectStore, server: string, backup: BackupInfo): Promise<Buffer | undefined> {
  const map = await readBackupObject(store, server, backup, TABLESPACE_MAP_NAME);
  if (map === undefined && backup.tablespaces.some((t) => t.location !== '')) {
    throw new CloudbarmanError('integrity', `backup ${backup.id} has tablespaces but no tablespace_map at ${store.url} ${backupPrefix(server, backup.id)}${TABLESPACE_MAP_NAME}`, {
      hint: 'recovery could not link the tablespaces; restore another backup',
    });
  }
  return map;
}

/**
 * One small object of a backup's folder, decompressed; undefined when absent. When the object
 * carries the SHA-256 of its stored bytes (cb_sha256), the bytes must match it.
 */
async function readBackupObject(store: ObjectStore, server: string, backup: BackupInfo, name: string): Promise<Buffer | undefined> {
  const key = `${backupPrefix(server, backup.id)}${name}`;
  let raw: Buffer;
  let codec: string | undefined;
  let sha256: string | undefined;
  try {
    const { body, info } = await store.get(key);
    raw = await buffer(body);
    codec = info.metadata?.[PART_META.compression];
    sha256 = info.metadata?.[PART_META.sha256];
  } catch (err) {
    if (isStoreError(err, 'not-found')) return undefined;
    throw storeFailure(err, `reading the ${name} of ${backup.id}`, `${store.url} ${key}`);
  }
  const damaged = (why: string, cause?: unknown): CloudbarmanError => new CloudbarmanError('integrity', `${name} ${store.url} ${key} of backup ${backup.id} is damaged: ${why}`, {
    hint: 'restore another backup, and check the store', ...(cause === undefined ? {} : { cause }),
  });
  if (sha256 !== undefined && createHash('sha256').update(raw).digest('hex') !== sha256) throw damaged('its SHA-256 does not match the one recorded when it was stored');
  if (codec === undefined || !isCompression(codec)) return raw;
  try {
    return decompressBuffer(raw, codec);
  } catch (err) {
    throw damaged(`it does not decompress as ${codec}`, err);
  }
}

/**
 * Every WAL segment from the backup's start to its end must be archived, or recovery can never
 * reach a consistent state: better to say so now than after hours of download.
 */
export async function checkWalArchived(store: ObjectStore, server: string, backup: BackupInfo): Promise<void> {
  if (backup.begin_wal === null || backup.end_wal === null) return;
  const segmentSize = backup.wal_segment_size ?? 16 * 1024 * 1024;
  const needed: string[] = [backup.begin_wal];
  while (needed.at(-1) !== backup.end_wal) {
    if (needed.length > 1_000_000 || (needed.at(-1) ?? '') > backup.end_wal) {
      throw new CloudbarmanError('integrity', `backup ${backup.id} has a WAL range ${backup.begin_wal}..${backup.end_wal} that does not make sense`, { hint: 'the catalog entry is damaged; restore another backup' });
    }
    needed.push(nextSegmentName(needed.at(-1) ?? backup.begin_wal, segmentSize));
  }
  const archived = new Set<string>();
  for (const bucket of new Set(needed.map((n) => n.slice(0, 16)))) {
    const prefix = `${server}/wals/${bucket}/`;
    try {
      for await (const item of listAll(store, prefix)) {
        // Only the segment itself counts, not its .partial or .backup file, nor anything else named after it.
        const name = item.key.slice(prefix.length, prefix.length + 24);
        if (isWalVariant(`${prefix}${name}`, item.key)) archived.add(name);
      }
    } catch (err) {
      throw storeFailure(err, 'checking the WAL the backup needs', `${store.url} ${prefix}`);
    }
  }
  const missing = needed.filter((n) => !archived.has(n));
  if (missing.length > 0) {
    const first = missing[0] ?? '';
    throw new CloudbarmanError('integrity', `WAL segment ${first} is not archived (no ${store.url} ${server}/wals/${first.slice(0, 16)}/${first}[.ext]), and backup ${backup.id} needs ${backup.begin_wal}..${backup.end_wal} to become consistent`, {
      hint: 'the archive is incomplete for this backup; restore another backup',
    });
  }
}

/** The comment above the recovery settings in postgresql.auto.conf. */
export function autoConfHeader(server: string, backupId: string, started: Date): string {
  return `recovery settings written by cloudbarman restore of ${server} backup ${backupId} at ${started.toISOString()}`;
}

/** What goes into the data directory for recovery to start. */
export interface RecoveryFiles {
  label: Buffer;
  tablespaceMap: string | Buffer | undefined;
  recovery: RecoveryConfig;
  /** One line for postgresql.auto.conf, above the settings. */
  header: string;
  /** Gives each file written an owner (the data directory's, when restoring as root onto PostgreSQL's disk). */
  own?: (path: string) => Promise<void>;
}

/** tablespace_map, backup_label, the recovery settings in postgresql.auto.conf and the signal file, each fsynced. */
export async function writeRecoveryFiles(dest: string, files: RecoveryFiles): Promise<void> {
  const write = async (name: string, data: string | Buffer): Promise<void> => {
    await writeDurable(join(dest, name), data);
    await files.own?.(join(dest, name));
  };
  if (files.tablespaceMap !== undefined) await write('tablespace_map', files.tablespaceMap);
  await write('backup_label', files.label);
  const autoConf = join(dest, 'postgresql.auto.conf');
  const existing = await readFile(autoConf, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw writeFailure({ local: autoConf }, 'reading', err);
  });
  await write('postgresql.auto.conf', renderAutoConf(existing, files.recovery, files.header));
  await write(files.recovery.signalFile, '');
}

/** Writes a whole file and fsyncs it. */
export async function writeDurable(path: string, data: string | Buffer): Promise<void> {
  let handle;
  try {
    handle = await open(path, 'w', 0o600);
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    throw writeFailure({ local: path }, 'writing', err);
  } finally {
    await handle?.close();
  }
}

/** fsync of a directory, so that the names in it (new files, the pg_control rename) are durable. */
export async function syncPath(path: string): Promise<void> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_DIRECTORY);
    await handle.sync();
  } catch (err) {
    throw writeFailure({ local: path }, 'syncing', err);
  } finally {
    await handle?.close();
  }
}

/**
 * Reading and writing the backup catalog in a store: backup.json entries and manifests.
 * Write-once: the entry is created with create-if-absent (which claims the backup id) and
 * rewritten only by the run that created it, to DONE or FAILED, after all its data is stored.
 */
import { createHash } from 'node:crypto';
import { buffer } from 'node:stream/consumers';
import type { ObjectStore } from '../../../providers/object-store.ts';
import { isStoreError, listAll } from '../../../providers/object-store.ts';
import { compressBuffer, decompressBuffer, EXTENSIONS, isCompression } from '../../io/compression.ts';
import { CloudbarmanError } from '../errors.ts';
import { clientEncryptionOf } from '../crypto/encrypting-store.ts';
import { storeFailure } from '../store/store-failure.ts';
import { BACKUP_FORMAT_VERSION, PART_META, type BackupInfo } from './backup-info.ts';
import { BACKUP_INFO_NAME, MANIFEST_BASENAME, backupIdFor, backupPrefix, backupsPrefix, isBackupId } from './backup-keys.ts';
import type { Manifest } from './manifest.ts';
import { KEEP_ANNOTATION_NAME, readKeep } from './keep-store.ts';
import type { KeepAnnotation } from '../retention/retention-policy.ts';

/** What listBackups found: entries, their keep annotations, and what could not be read. */
export interface BackupListing {
  /** Oldest first. */
  backups: BackupInfo[];
  /** Keep annotations by backup id. */
  keeps: Map<string, KeepAnnotation>;
  /** Entries (or annotations) that could not be read: reported, never skipped silently. */
  unreadable: Array<{ id: string; error: string }>;
}

/** Every backup of a server, oldest first, with its keep annotation. */
export async function listBackups(store: ObjectStore, server: string): Promise<BackupListing> {
  const ids: string[] = [];
  const annotated: string[] = [];
  try {
    for await (const item of listAll(store, backupsPrefix(server))) {
      const rest = item.key.slice(backupsPrefix(server).length);
      const slash = rest.indexOf('/');
      const id = rest.slice(0, slash);
      if (slash < 0 || !isBackupId(id)) continue;
      const name = rest.slice(slash + 1);
      if (name === BACKUP_INFO_NAME) ids.push(id);
      else if (name === KEEP_ANNOTATION_NAME) annotated.push(id);
    }
  } catch (err) {
    throw storeFailure(err, 'listing backups', `${store.url} ${backupsPrefix(server)}`);
  }
  ids.sort();
  const backups: BackupInfo[] = [];
  const unreadable: Array<{ id: string; error: string }> = [];
  await Promise.all(ids.map(async (id) => {
    try {
      const info = await readBackupInfo(store, server, id);
      if (info) backups.push(info);
    } catch (err) {
      unreadable.push({ id, error: err instanceof Error ? err.message : String(err) });
    }
  }));
  const keeps = new Map<string, KeepAnnotation>();
  await Promise.all(annotated.map(async (id) => {
    try {
      const keep = await readKeep(store, server, id);
      if (keep !== undefined) keeps.set(id, keep);
    } catch (err) {
      unreadable.push({ id, error: err instanceof Error ? err.message : String(err) });
    }
  }));
  backups.sort((a, b) => a.id.localeCompare(b.id));
  return { backups, keeps, unreadable };
}

/** One backup's entry, or undefined when there is none. */
export async function readBackupInfo(store: ObjectStore, server: string, id: string): Promise<BackupInfo | undefined> {
  const key = `${backupPrefix(server, id)}${BACKUP_INFO_NAME}`;
  let text: string;
  try {
    const { body } = await store.get(key);
    text = (await buffer(body)).toString('utf8');
  } catch (err) {
    if (isStoreError(err, 'not-found')) return undefined;
    throw storeFailure(err, `reading backup ${id}`, `${store.url} ${key}`);
  }
  let info: BackupInfo;
  try {
    info = JSON.parse(text) as BackupInfo;
  } catch (err) {
    throw new CloudbarmanError('integrity', `${store.url} ${key} is not valid JSON`, { hint: 'the catalog entry is damaged', cause: err });
  }
  if (info.format_version !== BACKUP_FORMAT_VERSION) {
    throw new CloudbarmanError('integrity', `${store.url} ${key} has format_version ${String(info.format_version)}, which this version does not know`, { hint: 'upgrade cloudbarman' });
  }
  return info;
}

/**
 * Creates the STARTED entry of a new backup under a fresh id (YYYYMMDDTHHMMSSZ, then -2, -3...
 * on a collision). The create-if-absent put is what makes the id unique.
 */
export async function createBackupEntry(store: ObjectStore, make: (id: string) => BackupInfo, now: Date): Promise<BackupInfo> {
  for (let attempt = 1; attempt <= 50; attempt++) {
    const info = await withEncryption(store, make(backupIdFor(now, attempt)));
    const key = `${backupPrefix(info.server, info.id)}${BACKUP_INFO_NAME}`;
    try {
      await store.put(key, encode(info), { ifAbsent: true, metadata: { cb_format: String(BACKUP_FORMAT_VERSION) } });
      return info;
    } catch (err) {
      if (!isStoreError(err, 'already-exists')) throw storeFailure(err, 'creating the backup entry', `${store.url} ${key}`);
    }
  }
  throw new CloudbarmanError('failed', `could not find a free backup id near ${backupIdFor(now)}`);
}

/** Rewrites a backup's entry (STARTED -> DONE or FAILED). */
export async function writeBackupInfo(store: ObjectStore, info: BackupInfo): Promise<void> {
  const key = `${backupPrefix(info.server, info.id)}${BACKUP_INFO_NAME}`;
  try {
    // As it is: a new entry got its encryption field from createBackupEntry, and an entry written
    // before cloudbarman recorded it stays without one (so delete and keep never need the key).
    await store.put(key, encode(info), { metadata: { cb_format: String(BACKUP_FORMAT_VERSION) } });
  } catch (err) {
    throw storeFailure(err, `writing the catalog entry of ${info.id}`, `${store.url} ${key}`);
  }
}

/** Stores the manifest, compressed with the backup's codec (lz4 falls back to zstd for JSON). */
export async function writeManifest(store: ObjectStore, server: string, manifest: Manifest): Promise<string> {
  const codec = manifest.compression === 'lz4' ? 'zstd' : manifest.compression;
  const key = `${backupPrefix(server, manifest.backup_id)}${MANIFEST_BASENAME}${EXTENSIONS[codec]}`;
  const body = await compressBuffer(Buffer.from(JSON.stringify(manifest)), codec);
  // Its own checksum, as parts have: readManifest refuses a manifest whose bytes changed.
  const sha256 = createHash('sha256').update(body).digest('hex');
  try {
    await store.put(key, body, { ifAbsent: true, metadata: { [PART_META.sha256]: sha256, [PART_META.compression]: codec, [PART_META.format]: String(BACKUP_FORMAT_VERSION) } });
  } catch (err) {
    throw storeFailure(err, `writing the manifest of ${manifest.backup_id}`, `${store.url} ${key}`);
  }
  return key;
}

/** Reads a backup's manifest, whatever codec stored it. */
export async function readManifest(store: ObjectStore, server: string, id: string): Promise<Manifest> {
  const prefix = `${backupPrefix(server, id)}${MANIFEST_BASENAME}`;
  let key: string | undefined;
  try {
    for await (const item of listAll(store, prefix)) key ??= item.key;
  } catch (err) {
    throw storeFailure(err, `finding the manifest of ${id}`, `${store.url} ${prefix}`);
  }
  if (key === undefined) {
    throw new CloudbarmanError('integrity', `backup ${id} has no manifest at ${store.url} ${prefix}*`, { hint: 'the backup is incomplete or damaged; use another backup' });
  }
  try {
    const { body, info } = await store.get(key);
    const codec = info.metadata?.[PART_META.compression] ?? 'none';
    const raw = await buffer(body);
    const recorded = info.metadata?.[PART_META.sha256];
    if (recorded !== undefined && createHash('sha256').update(raw).digest('hex') !== recorded) {
      throw new CloudbarmanError('integrity', `the manifest ${store.url} ${key} of backup ${id} is damaged: its SHA-256 does not match the one recorded when it was stored`, {
        hint: 'the manifest was altered or damaged in the store; restore another backup, and check the store',
      });
    }
    const json = decompressBuffer(raw, isCompression(codec) ? codec : 'none');
    const manifest = JSON.parse(json.toString('utf8')) as Manifest;
    if (manifest.format_version !== BACKUP_FORMAT_VERSION) {
      throw new CloudbarmanError('integrity', `${store.url} ${key} has format_version ${String(manifest.format_version)}, which this version does not know`, { hint: 'upgrade cloudbarman' });
    }
    return manifest;
  } catch (err) {
    if (err instanceof CloudbarmanError) throw err;
    if (err instanceof SyntaxError || (err as NodeJS.ErrnoException).code?.startsWith('Z')) {
      throw new CloudbarmanError('integrity', `${store.url} ${key} is corrupt`, { hint: 'the manifest is damaged; use another backup', cause: err });
    }
    throw storeFailure(err, `reading the manifest of ${id}`, `${store.url} ${key}`);
  }
}

/**
 * A new entry with its `encryption` field: what the store encrypts with. Asking the store loads
 * the key, so a backup without one fails before it starts.
 */
async function withEncryption(store: ObjectStore, info: BackupInfo): Promise<BackupInfo> {
  if (info.encryption !== undefined) return info;
  const enc = await clientEncryptionOf(store);
  return { ...info, encryption: enc === undefined ? null : { algorithm: enc.algorithm, key_id: enc.keyId } };
}

function encode(info: BackupInfo): Buffer {
  return Buffer.from(`${JSON.stringify(info, null, 2)}\n`);
}

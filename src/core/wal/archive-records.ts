/**
 * Records of WAL files a wal-upload batch archived ahead of PostgreSQL, one small JSON file per
 * WAL file in the archive spool. A record is written only after the store confirmed the put, and
 * atomically; it lets the later archive_command call for that file exit 0 without uploading again.
 *
 * A record is never trusted blindly. It counts only when the local file still has the size and
 * CRC-32 it had when it was uploaded, for the same destination. A record written before the
 * postmaster last started (a crash, a restore of the data directory, a restart) is confirmed
 * against the store as well: the object must exist with the recorded SHA-256 and size.
 */
import type { BigIntStats } from 'node:fs';
import { readdir, readFile, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { ObjectStore } from '../../../providers/object-store.ts';
import { crc32OfFile, errnoCode, isTempName, unlessMissing, writeFileAtomic } from './spool-files.ts';

/** What one record says. */
export interface ArchiveRecord {
  format: 1;
  /** The WAL file name. */
  name: string;
  /** Bytes archived (uncompressed). */
  size: number;
  crc32: string;
  sha256: string;
  /** The object that holds it. */
  key: string;
  /** The store it went to (URL without secrets), so a record never vouches for another destination. */
  destination: string;
  /** The postmaster that was running when it was written ("<pid>@<start epoch>"), or null when unknown. */
  boot: string | null;
  /** ISO 8601 UTC. */
  archivedAt: string;
  /**
   * The file's identity when it was archived (device, inode, size, mtime and ctime in ns), when it
   * was old enough to trust (see fileFingerprint): an equal stat vouches for unchanged content
   * without reading 16 MiB for the CRC-32. Absent: the CRC-32 is checked.
   */
  file?: string;
  /**
   * Present when the launcher may confirm the record in sh, without Node: see shellKey. Written only
   * when nothing but an unchanged config file decided the call's settings (no environment or flag
   * overrides) and the spool is in its default place, which is where the launcher looks.
   */
  sh?: string;
}

/**
 * A stat fingerprint of a file whose last change is at least FINGERPRINT_SETTLED_MS old, else
 * undefined. Any write moves mtime and ctime (ctime cannot be set back by anyone), a replacement
 * changes the inode; the age rule keeps a change within one timestamp tick of the fingerprint from
 * going unseen on file systems with coarse timestamps (git's "racy" rule).
 */
export async function fileFingerprint(path: string, nowMs: number): Promise<string | undefined> {
  const st = await settledStat(path, nowMs);
  return st === undefined ? undefined : fingerprintOf(st);
}

/** The file's stat when it is a regular file whose last change is at least FINGERPRINT_SETTLED_MS before nowMs. */
export async function settledStat(path: string, nowMs: number): Promise<BigIntStats | undefined> {
  const st = await stat(path, { bigint: true });
  if (!st.isFile() || nowMs - Number(st.ctimeMs) < FINGERPRINT_SETTLED_MS || nowMs - Number(st.mtimeMs) < FINGERPRINT_SETTLED_MS) return undefined;
  return st;
}

/** The record's `file` fingerprint of a stat. */
export function fingerprintOf(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

/**
 * The same identity as GNU stat prints it with `--printf '%d:%i:%s:%.9Y:%.9Z|'`: what the
 * launcher (bin/cloudbarman) computes in sh for its confirmations without Node.
 */
export function shellStatKey(st: BigIntStats): string {
  const ns = (t: bigint): string => `${t / 1_000_000_000n}.${String(t % 1_000_000_000n).padStart(9, '0')}`;
  return `${st.dev}:${st.ino}:${st.size}:${ns(st.mtimeNs)}:${ns(st.ctimeNs)}|`;
}

/**
 * The record's `sh` key: the postmaster identity, the WAL file's and the config file's
 * shellStatKey. The launcher confirms a record without starting Node only when it computes the
 * same string (see the launcher and docs/wal.md, "Confirmations without Node").
 */
export function shellKey(boot: string, walStatKey: string, configStatKey: string): string {
  return `${boot}|${walStatKey}${configStatKey}`;
}

/** How old a file's last change must be for its fingerprint to be recorded. */
const FINGERPRINT_SETTLED_MS = 2_000;

/** The suffix of record files. */
export const RECORD_SUFFIX = '.ok';

/** The record file of a WAL file. */
export function recordPath(dir: string, name: string): string {
  return join(dir, name + RECORD_SUFFIX);
}

/** The record's text. */
export function encodeRecord(record: ArchiveRecord): string {
  return `${JSON.stringify(record)}\n`;
}

/** Parses a record; undefined when it is not a complete, well-formed record for `name`. */
export function decodeRecord(text: string, name: string): ArchiveRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined; // truncated or garbled: not a record
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const r = value as Record<string, unknown>;
  const ok =
    r['format'] === 1 &&
    r['name'] === name &&
    Number.isSafeInteger(r['size']) && (r['size'] as number) >= 0 &&
    typeof r['crc32'] === 'string' && /^[0-9a-f]{8}$/.test(r['crc32']) &&
    typeof r['sha256'] === 'string' && /^[0-9a-f]{64}$/.test(r['sha256']) &&
    typeof r['key'] === 'string' && r['key'] !== '' &&
    typeof r['destination'] === 'string' &&
    (r['boot'] === null || typeof r['boot'] === 'string') &&
    typeof r['archivedAt'] === 'string' &&
    (r['file'] === undefined || (typeof r['file'] === 'string' && /^\d+:\d+:\d+:\d+:\d+$/.test(r['file']))) &&
    (r['sh'] === undefined || (typeof r['sh'] === 'string' && /^[0-9@|:.-]+$/.test(r['sh'])));
  return ok ? (value as ArchiveRecord) : undefined;
}

/** Writes a record durably (temp file, fsync, rename, fsync of the folder). */
export async function writeRecord(dir: string, record: ArchiveRecord): Promise<void> {
  await writeFileAtomic(recordPath(dir, record.name), encodeRecord(record), { durable: true });
}

/** Removes a record; a missing one is fine. */
export async function removeRecord(dir: string, name: string): Promise<void> {
  await unlessMissing(unlink(recordPath(dir, name)));
}

/** The outcome of checking a record without the store. */
export type LocalRecordCheck =
  | { verdict: 'none' }
  | { verdict: 'confirmed'; record: ArchiveRecord }
  /** The local file matches, but the record predates this postmaster: ask the store. */
  | { verdict: 'ask-store'; record: ArchiveRecord }
  | { verdict: 'invalid'; reason: string };

/**
 * Checks the record of the WAL file at walPath: present, well-formed, same destination, and the
 * local file still the one archived (size and CRC-32). `boot` is the running postmaster's.
 */
export async function checkRecordLocally(dir: string, name: string, walPath: string, expect: { destination: string; boot: string | undefined }): Promise<LocalRecordCheck> {
  const text = await unlessMissing(readFile(recordPath(dir, name), 'utf8'));
  if (text === undefined) return { verdict: 'none' };
  const record = decodeRecord(text, name);
  if (record === undefined) return { verdict: 'invalid', reason: 'the record is incomplete or malformed' };
  if (record.destination !== expect.destination) return { verdict: 'invalid', reason: `the record is for another destination (${record.destination})` };
  // The same file, unchanged since it was archived: its stat says so without reading it.
  const sameFile = record.file !== undefined && (await unlessMissing(stat(walPath, { bigint: true })).then((st) =>
    st !== undefined && fingerprintOf(st) === record.file));
  if (!sameFile) {
    const local = await unlessMissing(crc32OfFile(walPath));
    if (local === undefined) return { verdict: 'invalid', reason: 'the WAL file is gone' };
    if (local.size !== record.size || local.crc32 !== record.crc32) {
      return { verdict: 'invalid', reason: 'the WAL file is not the one that was archived (size or CRC-32 differs)' };
    }
  }
  if (record.boot === null || expect.boot === undefined || record.boot !== expect.boot) return { verdict: 'ask-store', record };
  return { verdict: 'confirmed', record };
}

/** True when the store holds the record's object with the recorded SHA-256 and size. */
export async function confirmRecordInStore(store: ObjectStore, record: ArchiveRecord): Promise<boolean> {
  // Loaded here, not up front: a call confirmed locally never needs the WAL object code.
  const { WAL_META } = await import('./wal-keys.ts');
  const head = await store.head(record.key);
  if (head === undefined) return false;
  const meta = head.metadata ?? {};
  return meta[WAL_META.sha256] === record.sha256 && meta[WAL_META.size] === String(record.size);
}

/** The WAL names that have a record in dir (any content). */
export async function listRecords(dir: string): Promise<Set<string>> {
  const names = (await unlessMissing(readdir(dir))) ?? [];
  return new Set(names.filter((n) => !isTempName(n) && n.endsWith(RECORD_SUFFIX)).map((n) => n.slice(0, -RECORD_SUFFIX.length)));
}

/**
 * Removes what the spool no longer needs: records of WAL files that PostgreSQL has marked done
 * or removed (no .ready left in archive_status), and temp files older than a minute (a crashed
 * writer's). Returns how many files went.
 */
export async function pruneRecords(dir: string, readyNames: ReadonlySet<string>, now: number, statMtime: (path: string) => Promise<number | undefined>): Promise<number> {
  const names = (await unlessMissing(readdir(dir))) ?? [];
  let removed = 0;
  for (const file of names) {
    let stale = false;
    if (isTempName(file)) {
      const mtime = await statMtime(join(dir, file));
      stale = mtime !== undefined && now - mtime > 60_000;
    } else if (file.endsWith(RECORD_SUFFIX)) {
      stale = !readyNames.has(file.slice(0, -RECORD_SUFFIX.length));
    }
    if (!stale) continue;
    try {
      await unlink(join(dir, file));
      removed++;
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
  }
  return removed;
}

/**
 * Identifies the running postmaster: pid and start time from the first and third lines of
 * <data directory>/postmaster.pid. Undefined when there is none (not a data directory).
 */
export async function readPostmasterBoot(dataDir: string): Promise<string | undefined> {
  const text = await unlessMissing(readFile(join(dataDir, 'postmaster.pid'), 'utf8')).catch(() => undefined);
  if (text === undefined) return undefined;
  const lines = text.split('\n');
  const pid = lines[0]?.trim() ?? '';
  const start = lines[2]?.trim() ?? '';
  return /^-?\d+$/.test(pid) && /^\d+$/.test(start) ? `${pid}@${start}` : undefined;
}

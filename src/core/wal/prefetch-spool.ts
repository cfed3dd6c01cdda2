/**
 * The restore spool: the folder the prefetcher fills and wal-restore serves from. Its layout is
 * the whole protocol between the two processes:
 *
 *   <segment>.<size>.<crc32>   a downloaded segment, verified against the object's SHA-256
 *                              and renamed into place complete; size and CRC-32 let wal-restore
 *                              re-check it before it moves it into pg_wal
 *   <segment>.fetching         the prefetcher is downloading that segment right now
 *   <TTTTTTTT>.history         copies of the history files wal-restore restored (the plan follows them)
 *   want                       the last segment PostgreSQL asked for (JSON), written by wal-restore
 *   prefetch.pid               the prefetcher that owns the folder (JSON: pid, data directory)
 *   prefetch.log               the prefetcher's log
 *   .*                         temporaries
 */
import { watch } from 'node:fs';
import { copyFile, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Logger } from '../log.ts';
import type { RecoveryPosition } from './prefetch-plan.ts';
import { crc32OfFile, errnoCode, isTempName, unlessMissing, writeFileAtomic } from './spool-files.ts';

export const WANT_FILE = 'want';
export const PID_FILE = 'prefetch.pid';
export const LOG_FILE = 'prefetch.log';
const FETCHING = '.fetching';

/** A downloaded segment in the spool. */
export interface SpoolEntry {
  file: string;
  name: string;
  size: number;
  crc32: string;
}

/** The file name of a downloaded segment. */
export function entryFileName(name: string, size: number, crc32: string): string {
  return `${name}.${size}.${crc32}`;
}

/** Parses a spool file name as a downloaded segment; undefined for anything else. */
export function parseEntryFileName(file: string): SpoolEntry | undefined {
  const match = /^([0-9A-F]{24})\.(\d{1,12})\.([0-9a-f]{8})$/.exec(file);
  if (match === null) return undefined;
  return { file, name: match[1] as string, size: Number(match[2]), crc32: match[3] as string };
}

/** The marker of a download in progress. */
export function fetchingFileName(name: string): string {
  return name + FETCHING;
}

/** The segment a marker is about, or undefined. */
export function parseFetchingFileName(file: string): string | undefined {
  return /^[0-9A-F]{24}\.fetching$/.test(file) ? file.slice(0, 24) : undefined;
}

/** The prefetcher that owns a spool folder. */
export interface SpoolOwner {
  pid: number;
  dataDir: string;
}

/** Reads the owner record; undefined when there is none or it is unreadable. */
export async function readOwner(dir: string): Promise<SpoolOwner | undefined> {
  const text = await unlessMissing(readFile(join(dir, PID_FILE), 'utf8')).catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    const value = JSON.parse(text) as Partial<SpoolOwner>;
    return Number.isSafeInteger(value.pid) && typeof value.dataDir === 'string' ? { pid: value.pid as number, dataDir: value.dataDir } : undefined;
  } catch {
    return undefined;
  }
}

/** Records the owner (replacing a dead one's record). */
export async function writeOwner(dir: string, owner: SpoolOwner): Promise<void> {
  await writeFileAtomic(join(dir, PID_FILE), JSON.stringify(owner), { durable: false });
}

/**
 * Whether a process is alive and, where /proc tells, still a cloudbarman prefetcher rather than
 * an unrelated process that got the pid after a crash.
 */
export async function isPrefetcherAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if (errnoCode(err) !== 'EPERM') return false;
  }
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined);
  return cmdline === undefined || cmdline.includes('--prefetch-worker');
}

/** Where recovery stands, as wal-restore last wrote it. */
export async function readWant(dir: string): Promise<RecoveryPosition | undefined> {
  const text = await unlessMissing(readFile(join(dir, WANT_FILE), 'utf8')).catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    const value = JSON.parse(text) as Partial<RecoveryPosition>;
    return typeof value.name === 'string' && /^[0-9A-F]{24}$/.test(value.name) && typeof value.found === 'boolean' ? { name: value.name, found: value.found } : undefined;
  } catch {
    return undefined;
  }
}

/** Tells the prefetcher where recovery stands. */
export async function writeWant(dir: string, position: RecoveryPosition): Promise<void> {
  await writeFileAtomic(join(dir, WANT_FILE), JSON.stringify(position), { durable: false });
}

/** The downloaded segments and the markers of downloads in progress. */
export async function listSpool(dir: string): Promise<{ entries: SpoolEntry[]; fetching: Set<string>; other: string[] }> {
  const files = (await unlessMissing(readdir(dir))) ?? [];
  const entries: SpoolEntry[] = [];
  const fetching = new Set<string>();
  const other: string[] = [];
  for (const file of files) {
    const entry = parseEntryFileName(file);
    if (entry !== undefined) entries.push(entry);
    else {
      const marked = parseFetchingFileName(file);
      if (marked !== undefined) fetching.add(marked);
      else other.push(file);
    }
  }
  return { entries, fetching, other };
}

/**
 * Removes everything but the owner record and the log: segments, markers, the position,
 * temporaries and (unless kept) history copies. Used by a prefetcher when it ends, and by
 * wal-restore when the folder's owner is dead (its leftovers are not served; the history
 * copies this recovery already made are kept for the new prefetcher's plan).
 */
export async function clearSpool(dir: string, opts: { keepHistory: boolean }): Promise<void> {
  const files = (await unlessMissing(readdir(dir))) ?? [];
  for (const file of files) {
    if (file === PID_FILE || file === LOG_FILE) continue;
    if (opts.keepHistory && /^[0-9A-F]{8}\.history$/.test(file)) continue;
    await unlessMissing(unlink(join(dir, file))).catch(() => undefined);
  }
}

/** How takeFromSpool ended. */
export type TakeResult =
  | { served: true; sizeBytes: number }
  | { served: false; why: 'absent' | 'corrupt' | 'vanished' | 'timed-out' };

/**
 * Moves a prefetched segment into destPath, after checking its size and CRC-32 against its spool
 * name. When the prefetcher is downloading it right now, waits for it, at most waitMs.
 */
export async function takeFromSpool(dir: string, name: string, destPath: string, opts: { waitMs: number; log: Logger }): Promise<TakeResult> {
  let entry = await findEntry(dir, name);
  if (entry === 'fetching') entry = await waitForEntry(dir, name, opts.waitMs);
  if (entry === 'fetching') return { served: false, why: 'timed-out' };
  if (entry === undefined) return { served: false, why: 'absent' };

  // Claim: out of the spool into a temp file beside the destination (same filesystem by default).
  const claimed = join(dirname(destPath), `.${basename(destPath)}.cbspool-${process.pid}`);
  try {
    await rename(join(dir, entry.file), claimed);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT') return { served: false, why: 'vanished' };
    if (code !== 'EXDEV') throw err;
    // spool_directory on another filesystem: copy, then drop the spool's copy.
    try {
      await copyFile(join(dir, entry.file), claimed);
    } catch (copyErr) {
      await unlessMissing(unlink(claimed)).catch(() => undefined);
      if (errnoCode(copyErr) === 'ENOENT') return { served: false, why: 'vanished' };
      throw copyErr;
    }
    await unlessMissing(unlink(join(dir, entry.file)));
  }
  try {
    const local = await crc32OfFile(claimed);
    if (local.size !== entry.size || local.crc32 !== entry.crc32) {
      opts.log.warn(`prefetched ${name} failed its check (size ${local.size} vs ${entry.size}, CRC-32 ${local.crc32} vs ${entry.crc32}); fetching it again from the store`);
      return { served: false, why: 'corrupt' };
    }
    await rename(claimed, destPath);
    return { served: true, sizeBytes: local.size };
  } finally {
    await unlessMissing(unlink(claimed)).catch(() => undefined);
  }
}

async function findEntry(dir: string, name: string): Promise<SpoolEntry | 'fetching' | undefined> {
  const { entries, fetching } = await listSpool(dir);
  const entry = entries.find((e) => e.name === name);
  if (entry !== undefined) return entry;
  return fetching.has(name) ? 'fetching' : undefined;
}

/** Waits until the download of `name` ends (entry present, or marker gone), at most timeoutMs. */
async function waitForEntry(dir: string, name: string, timeoutMs: number): Promise<SpoolEntry | 'fetching' | undefined> {
  const deadline = performance.now() + timeoutMs;
  let wake: (() => void) | undefined;
  // inotify wakes us at once; the short poll covers filesystems where watching does not work.
  let watcher: ReturnType<typeof watch> | undefined;
  try {
    watcher = watch(dir, () => wake?.());
    watcher.on('error', () => undefined);
  } catch {
    watcher = undefined;
  }
  try {
    for (;;) {
      const found = await findEntry(dir, name);
      if (found !== 'fetching') return found;
      const left = deadline - performance.now();
      if (left <= 0) return 'fetching';
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 100));
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
  } finally {
    watcher?.close();
  }
}

/** Keeps a copy of a restored timeline history file, for the plan to follow. */
export async function keepHistoryCopy(dir: string, name: string, restoredPath: string): Promise<void> {
  await writeFileAtomic(join(dir, name), await readFile(restoredPath), { durable: false });
}

/** The history files in the given folders (spool copies and pg_wal), by timeline, as text. */
export async function readHistoryFiles(dirs: readonly string[]): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  for (const dir of dirs) {
    const files = (await unlessMissing(readdir(dir)).catch(() => undefined)) ?? [];
    for (const file of files) {
      if (!/^[0-9A-F]{8}\.history$/.test(file) || isTempName(file)) continue;
      const timeline = Number.parseInt(file.slice(0, 8), 16);
      if (out.has(timeline)) continue;
      const text = await unlessMissing(readFile(join(dir, file), 'utf8')).catch(() => undefined);
      if (text !== undefined) out.set(timeline, text);
    }
  }
  return out;
}

/** True when the file exists. */
export async function exists(path: string): Promise<boolean> {
  return (await unlessMissing(stat(path)).catch(() => undefined)) !== undefined;
}

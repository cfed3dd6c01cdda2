/**
 * The WAL spool on local disk: where it lives, and the few file operations both of its users
 * (batch archiving and restore prefetch) need: atomic, durable writes and a fast whole-file checksum.
 *
 * By default the spool is a folder inside pg_wal. PostgreSQL only ever touches files there whose
 * names are WAL names, pg_basebackup and cloudbarman's own backups copy none of pg_wal's contents,
 * every cluster gets its own spool without configuration, the postgres user can always write
 * there, and a prefetched segment moves into pg_wal with a rename on the same filesystem.
 */
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { crc32 } from 'node:zlib';

/** The spool's folder name inside pg_wal when spool_directory is not set. */
export const SPOOL_DIR_NAME = 'cloudbarman_spool';

/** The spool root: spool_directory when set, otherwise <pg_wal>/cloudbarman_spool. */
export function spoolRoot(spoolDirectory: string | undefined, walDir: string): string {
  return spoolDirectory ?? join(walDir, SPOOL_DIR_NAME);
}

/** Where wal-upload keeps its records of segments archived ahead of PostgreSQL. */
export function archiveSpoolDir(root: string, server: string): string {
  return join(root, server, 'archive');
}

/** Where wal-restore's prefetcher keeps the segments it downloaded ahead of recovery. */
export function restoreSpoolDir(root: string, server: string): string {
  return join(root, server, 'restore');
}

/** Creates a spool folder (and its parents) readable by its owner only. */
export async function ensureSpoolDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
}

/**
 * Writes a file so that a reader sees the old file, nothing, or the whole new one, even after
 * a crash: temp file in the same folder, fsync, rename, fsync of the folder (when durable).
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, opts: { durable: boolean }): Promise<void> {
  const temp = tempPathFor(path);
  const handle = await open(temp, 'wx', 0o600);
  try {
    try {
      await handle.writeFile(data);
      if (opts.durable) await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  if (opts.durable) await syncDir(dirname(path));
}

let tempCounter = 0;

/** A unique temp name beside path; temp names start with "." so no spool reader mistakes them for data. */
export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${++tempCounter}`);
}

/** True for the names tempPathFor makes (and readWalObject's ".X.cbtmp-pid" temporaries). */
export function isTempName(name: string): boolean {
  return name.startsWith('.');
}

/** fsync of a folder, so that a rename in it survives a crash. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** CRC-32 of bytes as 8 lower-case hex digits. */
export function crc32Hex(bytes: Uint8Array, previous = 0): string {
  return crc32(bytes, previous).toString(16).padStart(8, '0');
}

/**
 * CRC-32 and size of a whole file. The spool re-checks local files with CRC-32 rather than
 * SHA-256: it runs on PostgreSQL's critical path, once per segment, and on CPUs without SHA
 * instructions SHA-256 of 16 MiB costs ~80 ms against ~10 ms. What it guards against is local
 * damage (a torn or truncated write after a crash, a changed file), not an adversary; the
 * SHA-256 in the object metadata is still what every upload and download is checked against.
 */
export async function crc32OfFile(path: string): Promise<{ crc32: string; size: number }> {
  const handle = await open(path, 'r');
  try {
    // Plain reads into one reused buffer: this runs once per archive_command/restore_command call,
    // where loading the stream machinery would cost more than the reads.
    const buf = Buffer.allocUnsafe(4 * 1024 * 1024);
    let crc = 0;
    let size = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buf, 0, buf.length, size);
      if (bytesRead === 0) break;
      crc = crc32(buf.subarray(0, bytesRead), crc);
      size += bytesRead;
    }
    return { crc32: crc.toString(16).padStart(8, '0'), size };
  } finally {
    await handle.close();
  }
}

/** The error code of a failed fs call ("ENOENT", ...), or undefined. */
export function errnoCode(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Runs an fs call, mapping ENOENT to undefined. */
export async function unlessMissing<T>(op: Promise<T>): Promise<T | undefined> {
  try {
    return await op;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

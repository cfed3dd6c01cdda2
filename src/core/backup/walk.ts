/**
 * Lists what a base backup stores from a data directory: every file (with size, mode and mtime
 * from one stat) and every directory, minus PostgreSQL's exclusions (exclusions.ts). Tablespaces
 * are followed through their pg_tblspc/<oid> symlinks and recorded under pg_tblspc/<oid>/...,
 * so a restore can relocate them. Files that vanish while the walk runs are skipped: the
 * server drops and creates files all the time, and WAL replay from the backup's start recreates
 * whatever it needs.
 */
import { lstat, readdir, realpath, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { join } from 'node:path';
import type { ManifestDirectory } from '../catalog/manifest.ts';
import { fileReadFailure } from './file-errors.ts';
import type { Logger } from '../log.ts';
import { EXCLUDED_DIRECTORY_CONTENTS, excludedRelationFiles, isDatabaseDirectory, isExcludedName } from './exclusions.ts';

/** One file to back up. */
export interface WalkedFile {
  /** Relative to the data directory, "/" separated; tablespace files are under pg_tblspc/<oid>/. */
  path: string;
  /** Where to read it. */
  absolutePath: string;
  size: number;
  /** Permission bits. */
  mode: number;
  mtime: Date;
}

/** A tablespace found behind pg_tblspc/<oid>. */
export interface WalkedTablespace {
  oid: number;
  /** The symlink's target, resolved. */
  location: string;
}

/** Everything the walk found, in path order. */
export interface WalkResult {
  files: WalkedFile[];
  directories: ManifestDirectory[];
  tablespaces: WalkedTablespace[];
}

/** How to walk. */
export interface WalkOptions {
  /**
   * The tablespace subdirectory of this server version (PG_<major>_<catversion>). A tablespace
   * directory may also hold other versions' subdirectories (after pg_upgrade); only this one
   * belongs to the cluster, as in basebackup.c. Undefined: take everything.
   */
  tablespaceVersionDir?: string;
  log: Logger;
}

// Enough stat calls in flight to keep the thread pool busy on directories of thousands of files.
const STAT_CONCURRENCY = 32;

/** Walks pgdata. Throws a CloudbarmanError when a directory or file cannot be read (other than vanishing). */
export async function walkDataDirectory(pgdata: string, opts: WalkOptions): Promise<WalkResult> {
  const result: WalkResult = { files: [], directories: [], tablespaces: [] };
  const visited = new Set<string>();
  await walkDirectory(pgdata, '', result, visited, opts);
  return result;
}

interface Entry {
  name: string;
  abs: string;
  rel: string;
  st: Stats;
}

async function walkDirectory(abs: string, rel: string, out: WalkResult, visited: Set<string>, opts: WalkOptions): Promise<void> {
  const names = await listNames(abs, rel, opts.log);
  if (names === undefined) return;
  const dirSt = await stat(abs).catch(ignoreVanished);
  if (dirSt === undefined) return;
  // A symlinked directory pointing back up the tree would otherwise be walked forever.
  const identity = `${dirSt.dev}:${dirSt.ino}`;
  if (visited.has(identity)) {
    opts.log.warn(`skipping ${rel === '' ? '.' : rel}: the directory was already backed up through another path (symlink loop)`);
    return;
  }
  visited.add(identity);

  const dropped = isDatabaseDirectory(rel) ? excludedRelationFiles(names) : new Set<string>();
  const wanted = names.filter((n) => !isExcludedName(n) && !dropped.has(n));
  const entries = await statAll(abs, rel, wanted, opts.log);

  for (const entry of entries) {
    if (entry.st.isFile()) {
      out.files.push({ path: entry.rel, absolutePath: entry.abs, size: entry.st.size, mode: entry.st.mode & 0o7777, mtime: entry.st.mtime });
      continue;
    }
    if (!entry.st.isDirectory()) continue; // sockets, fifos, devices: nothing PostgreSQL keeps
    out.directories.push({ path: entry.rel, mode: entry.st.mode & 0o7777 });
    if (rel === 'pg_tblspc') {
      await walkTablespace(entry, out, visited, opts);
    } else if (rel === '' && EXCLUDED_DIRECTORY_CONTENTS.has(entry.name)) {
      // The directory stays so PostgreSQL finds it; pg_wal keeps archive_status (and 17's summaries).
      if (entry.name === 'pg_wal') await keepSubdirectories(entry, out, opts.log);
    } else {
      await walkDirectory(entry.abs, entry.rel, out, visited, opts);
    }
  }
}

/** A tablespace: pg_tblspc/<oid> is a symlink (or, for in-place tablespaces, a directory). */
async function walkTablespace(entry: Entry, out: WalkResult, visited: Set<string>, opts: WalkOptions): Promise<void> {
  const oid = Number(entry.name);
  if (!/^\d+$/.test(entry.name)) {
    opts.log.warn(`skipping pg_tblspc/${entry.name}: not a tablespace oid`);
    return;
  }
  const location = await realpath(entry.abs).catch(ignoreVanished);
  if (location === undefined) return;
  out.tablespaces.push({ oid, location });
  if (opts.tablespaceVersionDir === undefined) {
    await walkDirectory(entry.abs, entry.rel, out, visited, opts);
    return;
  }
  const names = await listNames(entry.abs, entry.rel, opts.log);
  for (const name of names ?? []) {
    if (name !== opts.tablespaceVersionDir) {
      opts.log.debug(`skipping pg_tblspc/${entry.name}/${name}: not this server version's tablespace directory (${opts.tablespaceVersionDir})`);
      continue;
    }
    const abs = join(entry.abs, name);
    const st = await stat(abs).catch(ignoreVanished);
    if (st === undefined || !st.isDirectory()) continue;
    out.directories.push({ path: `${entry.rel}/${name}`, mode: st.mode & 0o7777 });
    await walkDirectory(abs, `${entry.rel}/${name}`, out, visited, opts);
  }
}

async function keepSubdirectories(entry: Entry, out: WalkResult, log: Logger): Promise<void> {
  const names = await listNames(entry.abs, entry.rel, log);
  const subs = await statAll(entry.abs, entry.rel, names ?? [], log);
  for (const sub of subs) {
    if (sub.st.isDirectory()) out.directories.push({ path: sub.rel, mode: sub.st.mode & 0o7777 });
  }
}

/** Sorted entry names; undefined when the directory vanished. */
async function listNames(abs: string, rel: string, log: Logger): Promise<string[] | undefined> {
  try {
    return (await readdir(abs)).sort();
  } catch (err) {
    if (isVanished(err)) {
      log.debug(`${rel === '' ? '.' : rel} vanished during the walk; skipped`);
      return undefined;
    }
    throw fileReadFailure(abs, err);
  }
}

/** Stats entries (following symlinks: pg_wal and tablespaces may be links), dropping those that vanished. */
async function statAll(dirAbs: string, dirRel: string, names: readonly string[], log: Logger): Promise<Entry[]> {
  const out: Array<Entry | undefined> = new Array<Entry | undefined>(names.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < names.length) {
      const i = next++;
      const name = names[i] ?? '';
      const abs = join(dirAbs, name);
      const rel = dirRel === '' ? name : `${dirRel}/${name}`;
      try {
        out[i] = { name, abs, rel, st: await stat(abs) };
      } catch (err) {
        if (!isVanished(err)) throw fileReadFailure(abs, err);
        // stat follows links: a dangling symlink reads as vanished too, so say which it was.
        const link = await lstat(abs).catch(ignoreVanished);
        log.debug(link?.isSymbolicLink() === true ? `${rel} is a dangling symlink; skipped` : `${rel} vanished during the walk; skipped`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(STAT_CONCURRENCY, names.length) }, worker));
  return out.filter((e): e is Entry => e !== undefined);
}

function isVanished(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function ignoreVanished(err: unknown): undefined {
  if (isVanished(err)) return undefined;
  throw err;
}


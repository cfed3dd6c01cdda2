/**
 * The plan of a restore: where every directory, file and chunk of a backup goes on this host,
 * checked before anything is written. Pure (no I/O), so every refusal is testable as data.
 *
 * The checks make the per-chunk SHA-256s a proof of every file: a file's chunks must tile it exactly
 * (no gap, no overlap, nothing past its size) and a part's chunks must tile the part's raw bytes,
 * so that a restore in which every chunk verified wrote exactly the bytes that were backed up. A
 * file's own SHA-256, recorded for files of at most one chunk, must equal its chunk's (or that of
 * no bytes); a file split across parts has none, and needs none: its verified chunks tile it. Paths must stay inside the data directory
 * (or a tablespace): a damaged or hostile manifest must not write elsewhere.
 */
import { isAbsolute, join, resolve } from 'node:path';
import type { BackupInfo, TablespaceInfo } from '../catalog/backup-info.ts';
import { backupPrefix } from '../catalog/backup-keys.ts';
import type { Manifest, ManifestFile } from '../catalog/manifest.ts';
import { CloudbarmanError, badInput } from '../errors.ts';

/** SHA-256 of no bytes: the checksum a backup records for an empty file. */
export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** pg_control is restored under this name and renamed last, so a half-restored directory never starts. */
export const PG_CONTROL_PENDING_SUFFIX = '.cloudbarman_incomplete';

/** A tablespace of the backup and where this restore puts it. */
export interface PlannedTablespace {
  name: string;
  oid: number;
  /** Where it lived on the source. */
  original: string;
  /** Where it goes now: the original location or the --tablespace path. */
  location: string;
  relocated: boolean;
  /** An in-place tablespace (a directory inside pg_tblspc) travels with the data directory. */
  inPlace: boolean;
}

export interface PlannedDirectory {
  /** Absolute path on this host. */
  local: string;
  mode: number;
}

export interface PlannedFile {
  path: string;
  /** Absolute path written to (pg_control: the pending name). */
  local: string;
  size: number;
  mode: number;
  mtime: Date;
  /** Present for a file of at most one chunk (see ManifestFile.sha256). */
  sha256: string | undefined;
}

export interface PlannedChunk {
  /** Unique within the plan, 0..chunkCount-1: lets a retried part's chunks be counted once. */
  id: number;
  /** Index into RestorePlan.files. */
  file: number;
  fileOffset: number;
  partOffset: number;
  length: number;
  sha256: string;
}

export interface PlannedPart {
  index: number;
  /** The object key in the store. */
  key: string;
  rawSize: number;
  storedSize: number;
  /** SHA-256 of the stored object, as the manifest records it. */
  sha256?: string;
  /** In partOffset order, tiling [0, rawSize). */
  chunks: PlannedChunk[];
}

export interface RestorePlan {
  dest: string;
  /** Parents before children. Tablespace locations are created with their parents. */
  directories: PlannedDirectory[];
  files: PlannedFile[];
  parts: PlannedPart[];
  tablespaces: PlannedTablespace[];
  /** pg_tblspc/<oid> links to create: [link, target]. */
  links: Array<readonly [string, string]>;
  /** tablespace_map contents with the final locations, or undefined without linked tablespaces. */
  tablespaceMap: string | undefined;
  /** [pending path, final path] of global/pg_control. */
  pgControl: readonly [string, string];
  /** Chunks in all parts (ids run 0..chunkCount-1). */
  chunkCount: number;
  rawBytes: number;
  storedBytes: number;
}

/** What the plan is built from. */
export interface PlanInput {
  server: string;
  backup: BackupInfo;
  manifest: Manifest;
  /** Absolute data directory to restore into. */
  dest: string;
  /** --tablespace NAME:PATH, by name; paths absolute. */
  relocations: ReadonlyMap<string, string>;
}

/** Builds and checks the plan; throws CloudbarmanError (integrity for a damaged manifest, bad-input for the request). */
export function planRestore(input: PlanInput): RestorePlan {
  const { backup, manifest, dest } = input;
  if (!isAbsolute(dest)) throw badInput(`the destination ${dest} is not an absolute path`);
  if (manifest.backup_id !== backup.id) damaged(backup.id, `the manifest is for backup ${manifest.backup_id}`);
  const tablespaces = planTablespaces(backup.tablespaces, input.relocations, dest);
  const linked = new Map(tablespaces.filter((t) => !t.inPlace).map((t) => [String(t.oid), t]));

  const local = (path: string): string => {
    checkRelativePath(backup.id, path);
    const parts = path.split('/');
    if (parts[0] === 'pg_tblspc' && parts[1] !== undefined) {
      const ts = linked.get(parts[1]);
      if (ts !== undefined) return join(ts.location, ...parts.slice(2));
    }
    return join(dest, path);
  };

  const directories = new Map<string, number>();
  const addDir = (path: string, mode: number): void => {
    if (path === '' || path === '.') return;
    directories.set(local(path), mode & 0o7777);
  };
  for (const dir of manifest.directories) addDir(dir.path, dir.mode);
  for (const t of linked.values()) {
    if (!directories.has(t.location)) directories.set(t.location, 0o700);
    if (!directories.has(join(dest, 'pg_tblspc'))) addDir('pg_tblspc', 0o700);
  }
  // PostgreSQL needs these; a backup leaves pg_wal's contents out and may leave the folders out too.
  for (const path of ['pg_wal', 'pg_wal/archive_status', ...(backup.pg_version !== null && backup.pg_version >= 170000 ? ['pg_wal/summaries'] : [])]) {
    if (!directories.has(join(dest, path))) addDir(path, 0o700);
  }

  const files: PlannedFile[] = [];
  const seen = new Set<string>();
  let pgControl: readonly [string, string] | undefined;
  const chunksByPart = new Map<number, PlannedChunk[]>();
  let chunkCount = 0;
  for (const f of manifest.files) {
    if (seen.has(f.path)) damaged(backup.id, `file ${f.path} is listed twice`);
    seen.add(f.path);
    checkFile(backup.id, f);
    let path = local(f.path);
    if (f.path === 'global/pg_control') {
      pgControl = [path + PG_CONTROL_PENDING_SUFFIX, path];
      path += PG_CONTROL_PENDING_SUFFIX;
    }
    const parent = f.path.includes('/') ? f.path.slice(0, f.path.lastIndexOf('/')) : '';
    for (let p = parent; p !== ''; p = p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '') {
      if (!directories.has(local(p))) addDir(p, 0o700);
    }
    const mtime = new Date(f.mtime);
    if (Number.isNaN(mtime.getTime())) damaged(backup.id, `file ${f.path} has no valid mtime (${JSON.stringify(f.mtime)})`);
    const index = files.length;
    files.push({ path: f.path, local: path, size: f.size, mode: f.mode & 0o7777, mtime, sha256: f.sha256 });
    for (const c of f.chunks) {
      const list = chunksByPart.get(c.part) ?? [];
      list.push({ id: chunkCount++, file: index, fileOffset: c.fileOffset, partOffset: c.partOffset, length: c.length, sha256: c.sha256 });
      chunksByPart.set(c.part, list);
    }
  }
  if (pgControl === undefined) damaged(backup.id, 'it has no global/pg_control');

  for (const index of chunksByPart.keys()) {
    if (!Number.isSafeInteger(index) || index < 0 || index >= manifest.parts.length) damaged(backup.id, `a chunk refers to part ${index}, which does not exist`);
  }
  const prefix = backupPrefix(input.server, backup.id);
  const parts: PlannedPart[] = manifest.parts.map((p, index) => {
    if (!/^data\/[A-Za-z0-9._-]+$/.test(p.name)) damaged(backup.id, `part ${index} has an unexpected name ${JSON.stringify(p.name)}`);
    const chunks = (chunksByPart.get(index) ?? []).sort((a, b) => a.partOffset - b.partOffset);
    let at = 0;
    for (const c of chunks) {
      if (c.partOffset !== at) damaged(backup.id, `part ${p.name}: the chunks do not cover its bytes contiguously at offset ${at}`);
      at += c.length;
    }
    if (at !== p.rawSize) damaged(backup.id, `part ${p.name}: its chunks hold ${at} bytes, its raw size is ${p.rawSize}`);
    return { index, key: `${prefix}${p.name}`, rawSize: p.rawSize, storedSize: p.storedSize, sha256: p.sha256, chunks };
  });

  const sortedDirs = [...directories].sort(([a], [b]) => depth(a) - depth(b) || a.localeCompare(b)).map(([l, mode]) => ({ local: l, mode }));
  const links = tablespaces.filter((t) => !t.inPlace).map((t) => [join(dest, 'pg_tblspc', String(t.oid)), t.location] as const);
  return {
    dest,
    directories: sortedDirs,
    files,
    parts,
    tablespaces,
    links,
    tablespaceMap: links.length === 0 ? undefined : tablespaces.filter((t) => !t.inPlace).map((t) => `${t.oid} ${escapeMapPath(t.location)}\n`).join(''),
    pgControl,
    chunkCount,
    rawBytes: manifest.parts.reduce((n, p) => n + p.rawSize, 0),
    storedBytes: manifest.parts.reduce((n, p) => n + p.storedSize, 0),
  };
}

/** Parses --tablespace NAME:PATH values (split at the first colon) into a map; relative paths are resolved against cwd. */
export function parseRelocations(values: readonly string[], cwd: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const value of values) {
    const colon = value.indexOf(':');
    const name = colon < 0 ? '' : value.slice(0, colon);
    const path = colon < 0 ? '' : value.slice(colon + 1);
    if (name === '' || path === '') throw badInput(`--tablespace ${JSON.stringify(value)} is not NAME:PATH`, 'e.g. --tablespace fast_ssd:/mnt/ssd/pg_tblspc_fast');
    if (map.has(name)) throw badInput(`--tablespace ${name} is given twice`);
    map.set(name, resolve(cwd, path));
  }
  return map;
}

function planTablespaces(infos: readonly TablespaceInfo[], relocations: ReadonlyMap<string, string>, dest: string): PlannedTablespace[] {
  const byName = new Map(infos.map((t) => [t.name, t]));
  for (const name of relocations.keys()) {
    if (!byName.has(name)) {
      throw badInput(`--tablespace ${name}: the backup has no tablespace of that name`,
        infos.length === 0 ? 'the backup has no tablespaces' : `its tablespaces: ${infos.map((t) => t.name).join(', ')}`);
    }
  }
  const planned = infos.map((t): PlannedTablespace => {
    const inPlace = !isAbsolute(t.location);
    const relocation = relocations.get(t.name);
    if (inPlace && relocation !== undefined) throw badInput(`--tablespace ${t.name}: it is an in-place tablespace, stored inside the data directory; it cannot be relocated`);
    const location = relocation ?? t.location;
    return { name: t.name, oid: t.oid, original: t.location, location, relocated: relocation !== undefined, inPlace };
  });
  const used = new Map<string, string>();
  for (const t of planned.filter((p) => !p.inPlace)) {
    const clash = used.get(t.location);
    if (clash !== undefined) throw badInput(`tablespaces ${clash} and ${t.name} would both go to ${t.location}`, 'relocate one of them with --tablespace NAME:PATH');
    if (t.location === dest || dest.startsWith(`${t.location}/`)) {
      throw badInput(`tablespace ${t.name} would go to ${t.location}, which contains the destination ${dest}`, 'relocate it with --tablespace NAME:PATH');
    }
    used.set(t.location, t.name);
  }
  return planned;
}

function checkRelativePath(id: string, path: string): void {
  if (path === '' || path.startsWith('/') || path.includes('\\') || /[\0\r\n]/.test(path) ||
      path.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    damaged(id, `it names the path ${JSON.stringify(path)}, which is not inside the data directory`);
  }
}

function checkFile(id: string, f: ManifestFile): void {
  if (!Number.isSafeInteger(f.size) || f.size < 0) damaged(id, `file ${f.path} has an invalid size`);
  const chunks = [...f.chunks].sort((a, b) => a.fileOffset - b.fileOffset);
  let at = 0;
  for (const c of chunks) {
    if (!Number.isSafeInteger(c.length) || c.length < 0 || c.fileOffset !== at) {
      damaged(id, `file ${f.path}: its chunks do not cover it contiguously at offset ${at}`);
    }
    at += c.length;
  }
  if (at !== f.size) damaged(id, `file ${f.path}: its chunks hold ${at} bytes, its size is ${f.size}`);
  if (f.size === 0 && f.sha256 !== undefined && f.sha256 !== EMPTY_SHA256) damaged(id, `file ${f.path} is empty but its SHA-256 is not that of no bytes`);
  const only = chunks.length === 1 ? chunks[0] : undefined;
  if (only !== undefined && f.sha256 !== undefined && only.sha256 !== f.sha256) damaged(id, `file ${f.path}: its one chunk's SHA-256 differs from the file's`);
}

/** tablespace_map escapes \n, \r and \ with a backslash (PostgreSQL 15+, do_pg_backup_start). */
function escapeMapPath(path: string): string {
  return path.replace(/[\\\n\r]/g, (c) => `\\${c}`);
}

function depth(path: string): number {
  return path.split('/').length;
}

function damaged(id: string, why: string): never {
  throw new CloudbarmanError('integrity', `the manifest of backup ${id} is inconsistent: ${why}`, { hint: 'the backup is damaged; restore another backup' });
}

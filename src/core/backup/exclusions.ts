/**
 * What a base backup leaves out of the data directory: the rules of PostgreSQL's own
 * basebackup.c (15-18), so that a restore holds what pg_basebackup's would. Runtime state is
 * skipped because PostgreSQL recreates or resets it at startup, and restoring it stale would
 * be wrong (postmaster.pid) or wasteful (pg_wal, which comes from the archive instead).
 */

/** Top-level directories kept empty: their contents are runtime state. pg_wal keeps its subdirectories (archive_status, summaries). */
export const EXCLUDED_DIRECTORY_CONTENTS: ReadonlySet<string> = new Set([
  'pg_wal',
  'pg_dynshmem',
  'pg_notify',
  'pg_replslot',
  'pg_serial',
  'pg_snapshots',
  'pg_stat_tmp',
  'pg_subtrans',
]);

/** Files skipped at any depth. */
export const EXCLUDED_FILES: ReadonlySet<string> = new Set([
  'postmaster.pid',
  'postmaster.opts',
  'postgresql.auto.conf.tmp',
  'current_logfiles.tmp',
  // Written by the backup itself (from pg_backup_stop), never copied from a running cluster.
  'backup_label',
  'tablespace_map',
  'backup_manifest',
  'backup_manifest.tmp',
  // cloudbarman's own WAL spool (a directory: archive records, prefetched segments), when
  // spool_directory puts it inside the data directory. Its default place, pg_wal, is skipped anyway.
  'cloudbarman_spool',
]);

/** Prefixes skipped at any depth: relcache init files (rebuilt at startup) and temporary files and directories. */
export const EXCLUDED_PREFIXES: readonly string[] = ['pg_internal.init', 'pgsql_tmp'];

/** True when a file or directory of this name is never backed up, wherever it is. */
export function isExcludedName(name: string): boolean {
  return EXCLUDED_FILES.has(name) || EXCLUDED_PREFIXES.some((p) => name.startsWith(p));
}

/** A relation data file name: <relfilenumber>[_<fork>][.<segment>], or a temporary relation's t<backend>_<relfilenumber>... */
export interface RelationFileName {
  relNumber: string;
  fork: 'main' | 'fsm' | 'vm' | 'init';
  temporary: boolean;
}

const RELATION_FILE = /^(t\d+_)?(\d+)(?:_(fsm|vm|init))?(?:\.\d+)?$/;

/** Parses a file name in a database directory; undefined for anything else (PG_VERSION, pg_filenode.map, ...). */
export function parseRelationFileName(name: string): RelationFileName | undefined {
  const match = RELATION_FILE.exec(name);
  if (match === null) return undefined;
  const fork = (match[3] ?? 'main') as RelationFileName['fork'];
  return { relNumber: match[2] ?? '', fork, temporary: match[1] !== undefined };
}

/**
 * The files of one database directory to leave out: temporary relations (they die with their
 * session), and every fork but the init fork of an unlogged relation, which recovery rebuilds
 * from the init fork; copying the rest would waste time on data that is reset anyway.
 */
export function excludedRelationFiles(names: readonly string[]): Set<string> {
  const unlogged = new Set<string>();
  const parsed = new Map<string, RelationFileName>();
  for (const name of names) {
    const rel = parseRelationFileName(name);
    if (rel === undefined) continue;
    parsed.set(name, rel);
    if (rel.fork === 'init' && !rel.temporary) unlogged.add(rel.relNumber);
  }
  const out = new Set<string>();
  for (const [name, rel] of parsed) {
    if (rel.temporary || (unlogged.has(rel.relNumber) && rel.fork !== 'init')) out.add(name);
  }
  return out;
}

/** True for a database directory (base/<oid>, or <tablespace>/<version dir>/<oid>), where relation rules apply. */
export function isDatabaseDirectory(relPath: string): boolean {
  return /^base\/\d+$/.test(relPath) || /^pg_tblspc\/\d+\/[^/]+\/\d+$/.test(relPath);
}

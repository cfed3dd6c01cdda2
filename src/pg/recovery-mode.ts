/**
 * Which kind of recovery PostgreSQL is running, read from the signal files in the data
 * directory. wal-restore's exit code on a storage failure depends on it (see DESIGN: exit codes).
 */
import { access } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

/** standby: standby.signal (keep retrying); targeted: recovery.signal (abort on doubt); none: neither. */
export type RecoveryMode = 'standby' | 'targeted' | 'none';

/**
 * The data directory of a restore_command call: the parent of pg_wal when %p points into it,
 * otherwise the working directory (PostgreSQL runs restore_command in the data directory).
 */
export function dataDirForRestorePath(destPath: string, cwd: string): string {
  const dir = dirname(resolve(cwd, destPath));
  return basename(dir) === 'pg_wal' ? dirname(dir) : cwd;
}

/** Reads the signal files; standby.signal wins when both exist, as in PostgreSQL. */
export async function detectRecoveryMode(dataDir: string): Promise<RecoveryMode> {
  const has = (f: string) => access(join(dataDir, f)).then(() => true, () => false);
  if (await has('standby.signal')) return 'standby';
  if (await has('recovery.signal')) return 'targeted';
  return 'none';
}

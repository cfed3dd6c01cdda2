// Fresh temporary directories for tests, optionally owned by another OS user (the PostgreSQL user).
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Creates a fresh directory under os.tmpdir() (mode 0700). With `owner` and when running as root, it is
 *  chowned to that uid/gid so a server running as that user can write into it. */
export async function makeTempDir(prefix: string, owner?: { uid: number; gid: number }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix.endsWith('-') ? prefix : `${prefix}-`));
  if (owner !== undefined && process.getuid?.() === 0) await chown(dir, owner.uid, owner.gid);
  return dir;
}

/** Removes a directory tree; a missing directory is not an error, so cleanup hooks can run twice. */
export async function removeTempDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
}

/**
 * receive-wal's local directory as a whole: where it is, the lock that keeps a second receive-wal
 * out of it, and the state file that ties it to one cluster (so that WAL of another cluster
 * found there is never continued or uploaded under this server's name).
 */
import { readFile, unlink, open } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { CloudbarmanError, badInput } from '../errors.ts';
import { ensureSpoolDir, spoolRoot, writeFileAtomic } from './spool-files.ts';

/** The lock file's name inside the directory. */
export const LOCK_FILE = 'receive-wal.lock';
/** The state file's name inside the directory. */
export const STATE_FILE = 'receive-wal.json';
const STATE_FORMAT_VERSION = 1;

/**
 * The directory for a server: <receive_wal_directory>/<server> when that option is set, else
 * receive-wal/ in the server's spool folder (spool_directory, or cloudbarman_spool in pg_wal),
 * else (a backup host with neither, as in a streaming-only setup) <stateHome>/cloudbarman/receive-wal/<server>,
 * where the CLI passes $XDG_STATE_HOME or ~/.local/state of the user running receive-wal.
 */
export function receiveWalDirectory(opts: { server: string; receiveWalDirectory?: string | undefined; spoolDirectory?: string | undefined; pgdata?: string | undefined; stateHome?: string | undefined }): string {
  if (opts.receiveWalDirectory !== undefined) return join(opts.receiveWalDirectory, opts.server);
  if (opts.spoolDirectory === undefined && opts.pgdata === undefined) {
    if (opts.stateHome !== undefined) return join(opts.stateHome, 'cloudbarman', 'receive-wal', opts.server);
    throw badInput(`receive-wal needs a local directory for server "${opts.server}"`, 'set receive_wal_directory (or spool_directory) in the config file');
  }
  return join(spoolRoot(opts.spoolDirectory, join(opts.pgdata ?? '', 'pg_wal')), opts.server, 'receive-wal');
}

/** What ties the directory to a cluster. */
export interface DirectoryState {
  systemId: string;
  segmentSize: number;
}

/** A held lock; release() removes it. */
export interface DirectoryLock {
  release(): Promise<void>;
}

/**
 * Creates the directory and takes its lock: a file naming this process. A lock whose process is
 * gone (same host, pid not running) is taken over; a live one is 'locked' (exit 5).
 */
export async function lockDirectory(dir: string, pid: number, isAlive: (pid: number) => boolean): Promise<DirectoryLock> {
  await ensureSpoolDir(dir);
  const path = join(dir, LOCK_FILE);
  const me = `${pid} ${hostname()}\n`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(path, 'wx', 0o600);
      try {
        await handle.writeFile(me);
      } finally {
        await handle.close();
      }
      return { release: async () => { await unlink(path).catch(() => undefined); } };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new CloudbarmanError('failed', `cannot create ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { hint: 'the directory must be writable by the user running receive-wal', cause: err });
      }
    }
    const text = await readFile(path, 'utf8').catch(() => '');
    const [pidText, host] = text.trim().split(' ');
    const holder = Number(pidText);
    if (host === hostname() && Number.isInteger(holder) && holder > 0 && holder !== pid && isAlive(holder)) {
      throw new CloudbarmanError('locked', `another receive-wal (pid ${holder}) is using ${dir}`, { hint: 'stop it first; only one receive-wal may stream a server into one directory' });
    }
    if (host !== undefined && host !== hostname()) {
      throw new CloudbarmanError('locked', `${path} names host ${host}: a receive-wal there may be using this directory`, { hint: `remove ${path} if no receive-wal runs on ${host}` });
    }
    await unlink(path).catch(() => undefined); // stale: its process is gone
  }
  throw new CloudbarmanError('locked', `cannot take the lock ${path}`, { hint: 'another receive-wal keeps starting in the same directory' });
}

/** The directory's state, or undefined for a fresh directory. */
export async function readDirectoryState(dir: string): Promise<DirectoryState | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, STATE_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let parsed: { format_version?: unknown; system_identifier?: unknown; wal_segment_size?: unknown };
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch (err) {
    throw new CloudbarmanError('failed', `${join(dir, STATE_FILE)} is not valid JSON`, { hint: 'move the directory away if it is not receive-wal\'s', cause: err });
  }
  if (parsed.format_version !== STATE_FORMAT_VERSION || typeof parsed.system_identifier !== 'string' || typeof parsed.wal_segment_size !== 'number') {
    throw new CloudbarmanError('failed', `${join(dir, STATE_FILE)} has a format this version does not know`, { hint: 'upgrade cloudbarman, or move the directory away' });
  }
  return { systemId: parsed.system_identifier, segmentSize: parsed.wal_segment_size };
}

/** Records the directory's cluster (durably, before any WAL of it is written there). */
export async function writeDirectoryState(dir: string, state: DirectoryState): Promise<void> {
  const body = JSON.stringify({ format_version: STATE_FORMAT_VERSION, system_identifier: state.systemId, wal_segment_size: state.segmentSize }, null, 2);
  await writeFileAtomic(join(dir, STATE_FILE), `${body}\n`, { durable: true });
}

/** Refuses a directory that holds WAL of another cluster or segment size. */
export function checkDirectoryState(dir: string, found: DirectoryState, server: DirectoryState): void {
  if (found.systemId !== server.systemId) {
    throw badInput(`${dir} holds WAL of the cluster with system identifier ${found.systemId}, but the server is ${server.systemId}`,
      'streaming_conninfo reaches another cluster than before; fix it, or move the directory away after storing what it holds');
  }
  if (found.segmentSize !== server.segmentSize) {
    throw badInput(`${dir} holds WAL segments of ${found.segmentSize} bytes, but the server's are ${server.segmentSize}`, 'move the directory away');
  }
}

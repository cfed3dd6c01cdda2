/**
 * The local snapshotter: directories play disks, so that the whole snapshot backup and restore can
 * run end to end against a real PostgreSQL on one machine, with no cloud account.
 *
 * The model, all under one directory (snapshot_local_directory; default .snapshots in a file://
 * destination):
 *   - A disk is a directory, and its own mount point: its id, and its device, is the absolute path.
 *   - An instance is a name. Its attached disks are the symbolic links in instances/<instance>/, each
 *     named after its disk and pointing at the disk's directory. attachDisk makes one; an operator
 *     can too (`ln -s /srv/pgdisk DIR/instances/pg1/pgdisk`), much as a cloud console attaches a volume.
 *     A link whose directory is gone is a detached disk.
 *   - A snapshot is a copy of the directory in snapshots/<name>/data, with snapshot.json beside it.
 *     Files are cloned where the filesystem supports it (COPYFILE_FICLONE: btrfs, XFS, ...) and copied
 *     otherwise, keeping modes, owners, times and symbolic links, and each is fsynced.
 *   - createDisk copies a snapshot back to the directory it was taken of (that path must be absent or
 *     empty): a local disk can only be "mounted" where it was. disks.json remembers which snapshot a
 *     directory came from, with its inode, so a directory made by hand later is not mistaken for it.
 *
 * Unlike a cloud snapshot, a directory copy has no point in time until it ends: a write made during
 * the copy may or may not be in it. So pointInTimeFixed turns true only when the copy is complete,
 * which keeps PostgreSQL in backup mode for the whole copy. That is what makes the copy restorable:
 * recovery replays WAL from the backup's start to its end over whatever the copy caught.
 * The copy runs in this process: a snapshot whose copying process is gone reads as failed.
 */
import { constants } from 'node:fs';
import {
  copyFile, lchown, lstat, lutimes, mkdir, open, readFile, readdir, readlink, realpath, rename, rm, rmdir, stat, symlink, unlink, utimes,
} from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, isAbsolute, join, resolve, sep } from 'node:path';
import {
  SnapshotCreateError, SnapshotError,
  type CreateDiskRequest, type DiskInfo, type InstanceInfo, type SnapshotInfo, type SnapshotRequest, type Snapshotter, type SnapshotterOptions,
} from '../snapshotter.ts';

/** Files copied at once by one snapshot or disk copy. */
const COPY_CONCURRENCY = 8;
const META_NAME = 'snapshot.json';
const DATA_NAME = 'data';
const DISKS_FILE = 'disks.json';
const TEMP_MARK = '.cbtmp-';
/** A snapshot or disk name: what the contract promises (lower-case letters, digits, '-'), or a local disk name. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** snapshot.json: the state of one local snapshot. */
interface SnapshotMeta {
  id: string;
  name: string;
  diskId: string;
  state: 'pending' | 'completed' | 'failed';
  tags: Record<string, string>;
  created: string;
  completed?: string;
  /** The process copying it, so that another process can tell an abandoned copy. */
  host: string;
  pid: number;
  bytes?: number;
  error?: string;
}

/** disks.json: directories made from snapshots, by path. */
interface DiskRecord {
  name: string;
  sourceSnapshotId: string;
  dev: number;
  ino: number;
}

/** Opens the local snapshotter; options.localSnapshotDir is required. */
export async function createSnapshotter(options: SnapshotterOptions): Promise<Snapshotter> {
  const root = options.localSnapshotDir;
  if (root === undefined || !isAbsolute(root)) {
    throw new SnapshotError('invalid', 'the local snapshotter needs an absolute directory for its snapshots: set snapshot_local_directory, or use a file:// destination');
  }
  return new LocalSnapshotter(resolve(root), options.operationTimeoutMs);
}

/** A copy running in this process. */
interface Copy {
  controller: AbortController;
  done: Promise<void>;
}

/** Snapshots of directories; see the module comment. */
export class LocalSnapshotter implements Snapshotter {
  readonly provider = 'local' as const;
  readonly #root: string;
  readonly #timeoutMs: number;
  readonly #copies = new Map<string, Copy>();

  constructor(root: string, operationTimeoutMs: number) {
    this.#root = root;
    this.#timeoutMs = operationTimeoutMs;
  }

  async describeInstance(instance: string): Promise<InstanceInfo> {
    const dir = this.#instanceDir(instance);
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (code(err) === 'ENOENT') {
        throw new SnapshotError('not-found', `local instance ${instance} does not exist (no ${dir}; create that directory to make an instance without disks)`, { target: instance, cause: err });
      }
      throw fsError(err, `reading local instance ${instance}`, instance);
    }
    const records = await this.#readDisks();
    const disks: DiskInfo[] = [];
    for (const entry of entries) {
      if (!entry.isSymbolicLink()) continue;
      const target = resolve(dir, await readlink(join(dir, entry.name)));
      const st = await stat(target).catch(() => undefined);
      if (st === undefined || !st.isDirectory()) continue; // detached: the directory is gone
      disks.push(this.#diskInfo(target, entry.name, st, records, true));
    }
    disks.sort((a, b) => a.id.localeCompare(b.id));
    return { id: instance, name: instance, disks };
  }

  async createSnapshots(requests: readonly SnapshotRequest[], signal?: AbortSignal): Promise<SnapshotInfo[]> {
    const started: SnapshotInfo[] = [];
    try {
      // Everything that can be refused is refused before the first copy starts.
      for (const request of requests) await this.#checkRequest(request, requests);
      for (const request of requests) {
        signal?.throwIfAborted();
        started.push(await this.#startCopy(request));
      }
      return started;
    } catch (err) {
      const cause = err instanceof SnapshotError ? err : fsError(err, 'starting a snapshot', requests[0]?.name ?? '');
      throw new SnapshotCreateError(cause, started);
    }
  }

  async describeSnapshot(id: string): Promise<SnapshotInfo | undefined> {
    checkName(id, 'snapshot id');
    const meta = await this.#readMeta(id);
    if (meta === undefined) return undefined;
    if (meta.state === 'pending' && !this.#copies.has(id) && !(await copierAlive(meta))) {
      return { ...infoOf(meta), state: 'failed', error: `the copy was abandoned: process ${meta.pid} on ${meta.host} is gone` };
    }
    return infoOf(meta);
  }

  async deleteSnapshot(id: string): Promise<void> {
    checkName(id, 'snapshot id');
    const copy = this.#copies.get(id);
    if (copy !== undefined) {
      copy.controller.abort(new SnapshotError('failed', `snapshot ${id} was deleted while it was being copied`));
      await copy.done;
    }
    try {
      await rm(this.#snapshotDir(id), { recursive: true, force: true, maxRetries: 3 });
    } catch (err) {
      throw fsError(err, `deleting snapshot ${id}`, id);
    }
  }

  async createDisk(request: CreateDiskRequest, signal?: AbortSignal): Promise<DiskInfo> {
    checkName(request.snapshotId, 'snapshot id');
    checkName(request.name, 'disk name');
    const meta = await this.#readMeta(request.snapshotId);
    if (meta === undefined) throw new SnapshotError('not-found', `snapshot ${request.snapshotId} does not exist in ${this.#root}`, { target: request.snapshotId });
    if (meta.state !== 'completed') {
      throw new SnapshotError('invalid', `snapshot ${request.snapshotId} is ${meta.state}, not completed: no disk can be made of it`, { target: request.snapshotId });
    }
    const target = meta.diskId;
    const existing = await readdir(target).catch((err: unknown) => {
      if (code(err) === 'ENOENT') return undefined;
      throw fsError(err, `reading ${target}`, target);
    });
    if (existing !== undefined && existing.length > 0) {
      throw new SnapshotError('invalid', `${target} is not empty: a local disk is made at the directory its snapshot was taken of, which must be absent or empty`, { target });
    }
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const all = signal === undefined ? timeout : AbortSignal.any([signal, timeout]);
    const temp = `${target}${TEMP_MARK}${process.pid}`;
    try {
      await rm(temp, { recursive: true, force: true });
      await mkdir(dirname(target), { recursive: true });
      await copyTree(join(this.#snapshotDir(meta.id), DATA_NAME), temp, all);
      if (existing !== undefined) await rmdir(target);
      await rename(temp, target);
      await syncDir(dirname(target));
    } catch (err) {
      await rm(temp, { recursive: true, force: true }).catch(() => undefined);
      if (timeout.aborted && !(signal?.aborted ?? false)) {
        throw new SnapshotError('timeout', `making a disk of snapshot ${meta.id} at ${target} took longer than ${Math.round(this.#timeoutMs / 1000)} s`, { target, cause: err });
      }
      throw err instanceof SnapshotError ? err : fsError(err, `making a disk of snapshot ${meta.id} at ${target}`, target);
    }
    const st = await stat(target);
    await this.#updateDisks((records) => {
      records[target] = { name: request.name, sourceSnapshotId: meta.id, dev: st.dev, ino: st.ino };
    });
    return this.#diskInfo(target, request.name, st, await this.#readDisks(), false);
  }

  async attachDisk(instance: string, diskId: string): Promise<DiskInfo> {
    const dir = this.#instanceDir(instance);
    const target = resolve(diskId);
    const st = await stat(target).catch(() => undefined);
    if (st === undefined || !st.isDirectory()) throw new SnapshotError('not-found', `local disk ${target} is not a directory`, { target });
    const records = await this.#readDisks();
    const entries = await readdir(dir, { withFileTypes: true }).catch((err: unknown) => {
      if (code(err) === 'ENOENT') return [];
      throw fsError(err, `reading local instance ${instance}`, instance);
    });
    for (const entry of entries) {
      if (entry.isSymbolicLink() && resolve(dir, await readlink(join(dir, entry.name))) === target) return this.#diskInfo(target, entry.name, st, records, true);
    }
    const wanted = sanitize(this.#recordFor(target, st, records)?.name ?? basename(target));
    let name = wanted;
    for (let n = 2; entries.some((e) => e.name === name); n++) name = `${wanted}-${n}`;
    try {
      await mkdir(dir, { recursive: true });
      await symlink(target, join(dir, name));
      await syncDir(dir);
    } catch (err) {
      throw fsError(err, `attaching ${target} to local instance ${instance}`, instance);
    }
    return this.#diskInfo(target, name, st, records, true);
  }

  localDevicePaths(disk: DiskInfo): string[] {
    return [disk.device ?? disk.id];
  }

  async close(): Promise<void> {
    for (const copy of this.#copies.values()) copy.controller.abort(new SnapshotError('failed', 'the snapshotter was closed during the copy'));
    await Promise.all([...this.#copies.values()].map((c) => c.done));
  }

  async #checkRequest(request: SnapshotRequest, all: readonly SnapshotRequest[]): Promise<void> {
    checkName(request.name, 'snapshot name');
    if (all.filter((r) => r.name === request.name).length > 1) throw new SnapshotError('invalid', `snapshot name ${request.name} is requested twice`, { target: request.name });
    const disk = resolve(request.disk.id);
    const st = await stat(disk).catch(() => undefined);
    if (st === undefined || !st.isDirectory()) throw new SnapshotError('not-found', `local disk ${disk} is not a directory`, { target: disk });
    const realDisk = await realpath(disk);
    const realRoot = await realpath(this.#root).catch(() => this.#root);
    if (realRoot === realDisk || realRoot.startsWith(`${realDisk}${sep}`)) {
      throw new SnapshotError('invalid', `the snapshot directory ${this.#root} is inside disk ${disk}: a snapshot would copy itself`, { target: disk });
    }
    if ((await this.#readMeta(request.name)) !== undefined || this.#copies.has(request.name)) {
      throw new SnapshotError('invalid', `snapshot ${request.name} already exists`, { target: request.name });
    }
  }

  async #startCopy(request: SnapshotRequest): Promise<SnapshotInfo> {
    const id = request.name;
    const dir = this.#snapshotDir(id);
    const meta: SnapshotMeta = {
      id, name: id, diskId: resolve(request.disk.id), state: 'pending', tags: { ...request.tags },
      created: new Date().toISOString(), host: hostname(), pid: process.pid,
    };
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeJson(join(dir, META_NAME), meta);
    const controller = new AbortController();
    const done = (async () => {
      try {
        const bytes = await copyTree(meta.diskId, join(dir, DATA_NAME), controller.signal);
        await writeJson(join(dir, META_NAME), { ...meta, state: 'completed', completed: new Date().toISOString(), bytes });
      } catch (err) {
        // A deleted snapshot has no state left to write.
        if (!controller.signal.aborted) {
          await writeJson(join(dir, META_NAME), { ...meta, state: 'failed', error: err instanceof Error ? err.message : String(err) }).catch(() => undefined);
        }
      } finally {
        this.#copies.delete(id);
      }
    })();
    this.#copies.set(id, { controller, done });
    return infoOf(meta);
  }

  #diskInfo(id: string, name: string, st: { dev: number; ino: number }, records: Record<string, DiskRecord>, attached: boolean): DiskInfo {
    const record = this.#recordFor(id, st, records);
    return {
      id, name,
      ...(attached ? { device: id } : {}),
      ...(record === undefined ? {} : { sourceSnapshotId: record.sourceSnapshotId }),
    };
  }

  /** The record of a directory made from a snapshot, unless the directory was replaced since. */
  #recordFor(id: string, st: { dev: number; ino: number }, records: Record<string, DiskRecord>): DiskRecord | undefined {
    const record = records[id];
    return record !== undefined && record.dev === st.dev && record.ino === st.ino ? record : undefined;
  }

  async #readMeta(id: string): Promise<SnapshotMeta | undefined> {
    try {
      return JSON.parse(await readFile(join(this.#snapshotDir(id), META_NAME), 'utf8')) as SnapshotMeta;
    } catch (err) {
      if (code(err) === 'ENOENT') return undefined;
      throw fsError(err, `reading snapshot ${id}`, id);
    }
  }

  async #readDisks(): Promise<Record<string, DiskRecord>> {
    try {
      return JSON.parse(await readFile(join(this.#root, DISKS_FILE), 'utf8')) as Record<string, DiskRecord>;
    } catch (err) {
      if (code(err) === 'ENOENT') return {};
      throw fsError(err, `reading ${DISKS_FILE}`, this.#root);
    }
  }

  async #updateDisks(change: (records: Record<string, DiskRecord>) => void): Promise<void> {
    const records = await this.#readDisks();
    change(records);
    await mkdir(this.#root, { recursive: true });
    await writeJson(join(this.#root, DISKS_FILE), records);
  }

  #snapshotDir(id: string): string {
    return join(this.#root, 'snapshots', id);
  }

  #instanceDir(instance: string): string {
    checkName(instance, 'instance name');
    return join(this.#root, 'instances', instance);
  }
}

function infoOf(meta: SnapshotMeta): SnapshotInfo {
  return {
    id: meta.id, name: meta.name, diskId: meta.diskId, state: meta.state,
    // A directory copy has no point in time before it ends (see the module comment).
    pointInTimeFixed: meta.state === 'completed',
    ...(meta.state === 'completed' ? { progress: 100 } : {}),
    ...(meta.error === undefined ? {} : { error: meta.error }),
  };
}

/** Whether the process that copies a pending snapshot still runs (another process on this host may be taking it). */
async function copierAlive(meta: SnapshotMeta): Promise<boolean> {
  if (meta.host !== hostname()) return true; // cannot tell: another host's copy
  if (meta.pid === process.pid) return false; // ours, but no copy of ours runs: a closed snapshotter's
  try {
    process.kill(meta.pid, 0);
    return true;
  } catch (err) {
    return code(err) === 'EPERM';
  }
}

function checkName(name: string, what: string): void {
  if (!NAME.test(name)) throw new SnapshotError('invalid', `${what} ${JSON.stringify(name)} is not valid here (letters, digits, '.', '_', '-')`, { target: name });
}

function sanitize(name: string): string {
  const s = name.replace(/[^A-Za-z0-9_.-]/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  return s === '' ? 'disk' : s.slice(0, 100);
}

function code(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

function fsError(err: unknown, what: string, target: string): SnapshotError {
  if (err instanceof SnapshotError) return err;
  const c = code(err);
  const kind = c === 'ENOENT' ? 'not-found' : c === 'EACCES' || c === 'EPERM' ? 'access-denied' : c === 'ENOSPC' || c === 'EDQUOT' ? 'quota-exceeded' : 'failed';
  return new SnapshotError(kind, `${what} failed: ${err instanceof Error ? err.message : String(err)}`, { target, cause: err });
}

/** Writes JSON durably: a temporary file, fsynced, renamed over the old one. */
async function writeJson(path: string, value: unknown): Promise<void> {
  const temp = `${path}${TEMP_MARK}${process.pid}`;
  const handle = await open(temp, 'w', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(value, null, 2)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, path);
  await syncDir(dirname(path));
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Copies a directory tree, keeping modes, owners (when allowed), times and symbolic links, and
 * fsyncs every file and directory; returns the bytes copied. An entry that vanishes while the tree
 * is copied is skipped: the running server deleted it, and WAL replay knows. Sockets and FIFOs are skipped.
 */
async function copyTree(from: string, to: string, signal: AbortSignal): Promise<number> {
  let bytes = 0;
  const directories: Array<{ from: string; to: string }> = [];
  const limit = limiter(COPY_CONCURRENCY);
  const walk = async (src: string, dst: string): Promise<void> => {
    signal.throwIfAborted();
    const st = await lstat(src).catch(vanished);
    if (st === undefined) return;
    await mkdir(dst, { mode: st.mode & 0o7777 });
    await keepOwner(dst, st);
    directories.push({ from: src, to: dst });
    const entries = await readdir(src, { withFileTypes: true }).catch(vanished) ?? [];
    // Settle every entry before failing, so nothing still writes into a tree the caller removes.
    const results = await Promise.allSettled(entries.map(async (entry) => {
      const s = join(src, entry.name);
      const d = join(dst, entry.name);
      if (entry.isDirectory()) return walk(s, d);
      if (entry.isSymbolicLink()) {
        const link = await readlink(s).catch(vanished);
        if (link === undefined) return;
        await symlink(link, d);
        const lst = await lstat(s).catch(vanished);
        if (lst !== undefined) {
          await keepOwner(d, lst);
          await lutimes(d, lst.atime, lst.mtime).catch(() => undefined);
        }
        return;
      }
      if (!entry.isFile()) return;
      await limit(async () => {
        signal.throwIfAborted();
        const fst = await lstat(s).catch(vanished);
        if (fst === undefined) return;
        try {
          // Clones where the filesystem can (copy-on-write), copies where it cannot.
          await copyFile(s, d, constants.COPYFILE_FICLONE | constants.COPYFILE_EXCL);
        } catch (err) {
          if (code(err) === 'ENOENT' && (await lstat(s).catch(vanished)) === undefined) {
            await unlink(d).catch(() => undefined);
            return;
          }
          throw err;
        }
        await keepOwner(d, fst);
        const handle = await open(d, 'r+');
        try {
          await handle.utimes(fst.atime, fst.mtime);
          bytes += (await handle.stat()).size;
          await handle.sync();
        } finally {
          await handle.close();
        }
      });
    }));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  };
  await walk(from, to);
  // Deepest first, so a directory's time is set after its last entry was made.
  for (const dir of directories.reverse()) {
    const st = await lstat(dir.from).catch(vanished);
    if (st !== undefined) await utimes(dir.to, st.atime, st.mtime);
    await syncDir(dir.to);
  }
  await syncDir(dirname(to));
  return bytes;
}

function vanished(err: unknown): undefined {
  if (code(err) === 'ENOENT') return undefined;
  throw err;
}

/** root copies keep each file's owner (PostgreSQL's files stay PostgreSQL's); others keep their own. */
async function keepOwner(path: string, st: { uid: number; gid: number }): Promise<void> {
  if (process.getuid?.() !== 0) return;
  await lchown(path, st.uid, st.gid);
}

/** Runs at most n tasks at once. */
function limiter(n: number): (task: () => Promise<void>) => Promise<void> {
  let active = 0;
  const waiting: Array<() => void> = [];
  return async (task) => {
    // A finishing task hands its slot straight to the next waiting one.
    if (active >= n) await new Promise<void>((r) => waiting.push(r));
    else active++;
    try {
      await task();
    } finally {
      const next = waiting.shift();
      if (next === undefined) active--;
      else next();
    }
  };
}

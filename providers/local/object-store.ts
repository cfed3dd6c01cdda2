/**
 * The local-directory provider: the embedded default, needing no cloud account.
 *
 * Each object is one file at <root>/<key>. Its metadata travels inside the file, in a small
 * header before the payload, so that an object and its checksum appear together in one atomic
 * rename: there is never a data file without its metadata, or metadata for other data.
 * Writes go to a temporary file beside the target, are fsynced, renamed (or hard-linked for
 * create-if-absent, which fails atomically when the name exists), and the directory is fsynced.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chown, link, mkdir, open, readdir, rename, stat, unlink, access, constants, type FileHandle } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import {
  StoreError, assertValidKey, assertValidMetadata, isStoreError,
  type GetOptions, type GetResult, type ListPage, type ObjectInfo, type ObjectMetadata, type ObjectStore,
  type PutBody, type PutOptions, type StoreCapabilities,
} from '../object-store.ts';
import { toStoreError } from './errors.ts';

/** File signature of a local object: "CBOBJ", a NUL, format 1, newline. */
const MAGIC = Buffer.from('CBOBJ\x00\x01\n', 'latin1');
const HEADER_FIXED = MAGIC.length + 4; // magic + uint32 metadata length
const TEMP_PREFIX = '.cbtmp-';
/**
 * A temporary file untouched for this long is an orphan of a killed writer (a live put writes to
 * its file all the time, which moves its mtime), and a listing that passes it removes it.
 */
const ORPHAN_AGE_MS = 60 * 60 * 1000;
/** At most this many orphans are removed per listing, so that one listing's cost stays bounded. */
const ORPHANS_PER_LIST = 100;
const DEFAULT_PAGE = 1000;

/** An object store in a directory of this machine. */
export class LocalObjectStore implements ObjectStore {
  readonly capabilities: StoreCapabilities = { atomicCreateIfAbsent: true, maxDeleteBatch: 1000 };
  readonly url: string;
  readonly #root: string;
  #rootChecked = false;
  /** Set when running as root in a directory someone else owns: new files and folders get that owner. */
  #owner: { uid: number; gid: number } | undefined;

  constructor(url: string) {
    const parsed = new URL(url);
    if (parsed.protocol !== 'file:' || (parsed.host !== '' && parsed.host !== 'localhost')) {
      throw new StoreError('invalid', `${url}: the local provider takes file:///absolute/path`, { target: url });
    }
    this.url = url;
    this.#root = fileURLToPath(parsed).replace(/\/+$/, '') || '/';
  }

  async put(key: string, body: PutBody, options: PutOptions = {}): Promise<void> {
    assertValidKey(key);
    assertLocalKey(key);
    assertValidMetadata(options.metadata);
    const path = this.#path(key);
    const dir = dirname(path);
    const temp = join(dir, `${TEMP_PREFIX}${randomBytes(6).toString('hex')}`);
    try {
      await this.#ensureRoot();
      await this.#makeDirs(dir);
      if (options.ifAbsent && (await exists(path))) throw alreadyExists(key);
      const header = encodeHeader(options.metadata ?? {});
      const handle = await open(temp, 'wx', 0o640);
      if (this.#owner) await handle.chown(this.#owner.uid, this.#owner.gid);
      try {
        await handle.write(header, 0, header.length, 0);
      } catch (err) {
        await handle.close();
        throw err;
      }
      // The stream owns the handle from here: flush fsyncs before it closes.
      const sink = handle.createWriteStream({ start: header.length, flush: true });
      const source = typeof body === 'function' ? body() : Readable.from([body]);
      await pipeline(source, sink, options.signal ? { signal: options.signal } : {});
      if (options.ifAbsent) {
        try {
          await link(temp, path);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw alreadyExists(key);
          throw err;
        }
        await unlink(temp);
      } else {
        await rename(temp, path);
      }
      await syncDir(dir);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw toStoreError(err, key);
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<GetResult> {
    assertValidKey(key);
    let handle: FileHandle | undefined;
    try {
      handle = await open(this.#path(key), 'r');
      const { metadata, offset, size, mtime } = await readHeader(handle, key);
      const start = Math.min(options.range?.start ?? 0, size);
      const end = Math.min(options.range?.end ?? size, size);
      const body = end > start
        ? createReadStream('', { fd: handle, start: offset + start, end: offset + end - 1, autoClose: true })
        : (await handle.close(), Readable.from([]));
      handle = undefined;
      return { info: { key, size, lastModified: mtime, metadata }, body };
    } catch (err) {
      await handle?.close().catch(() => undefined);
      throw toStoreError(err, key);
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    assertValidKey(key);
    return this.#withObjectFile(key, async (handle) => {
      const { metadata, size, mtime } = await readHeader(handle, key);
      return { key, size, lastModified: mtime, metadata };
    });
  }

  async list(prefix: string, options: { pageToken?: string; pageSize?: number } = {}): Promise<ListPage> {
    const pageSize = options.pageSize ?? DEFAULT_PAGE;
    const slash = prefix.lastIndexOf('/');
    const base = slash >= 0 ? prefix.slice(0, slash) : '';
    const keys: string[] = [];
    const orphans: string[] = [];
    await this.#walk(base, prefix, keys, orphans);
    await this.#removeOrphans(orphans);
    // An empty listing of a root that does not exist is a missing container, as on the clouds,
    // not "no backups": a typo in the destination must not look like an empty archive.
    if (keys.length === 0) await this.#assertRootExists();
    keys.sort();
    const after = options.pageToken;
    const from = after === undefined ? 0 : keys.findIndex((k) => k > after);
    const slice = from < 0 ? [] : keys.slice(from, from + pageSize);
    // Names, sizes and times only: a listing never reads an object's metadata, so one damaged
    // header cannot hide the other objects (get and head of that one report it as 'corrupt').
    const infos = await Promise.all(slice.map((key) => this.#listed(key)));
    const items = infos.filter((i): i is ObjectInfo => i !== undefined);
    const more = from >= 0 && from + pageSize < keys.length;
    const last = slice[slice.length - 1];
    return more && last !== undefined ? { items, nextPageToken: last } : { items };
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (const key of keys) assertValidKey(key);
    await Promise.all(keys.map(async (key) => {
      try {
        await unlink(this.#path(key));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT' && code !== 'ENOTDIR') throw toStoreError(err, key);
      }
    }));
    const dirs = new Set(keys.map((k) => dirname(this.#path(k))));
    await Promise.all([...dirs].map((d) => syncDir(d).catch(() => undefined)));
  }

  async checkAccess(): Promise<void> {
    try {
      const s = await stat(this.#root);
      if (!s.isDirectory()) throw new StoreError('container-not-found', `${this.#root} is not a directory`, { target: this.url });
      await access(this.#root, constants.R_OK | constants.W_OK | constants.X_OK);
    } catch (err) {
      const e = toStoreError(err, this.url);
      if (e.kind === 'not-found') throw new StoreError('container-not-found', `directory ${this.#root} does not exist`, { target: this.url, cause: err });
      throw e;
    }
  }

  async close(): Promise<void> {}

  async #assertRootExists(): Promise<void> {
    try {
      if ((await stat(this.#root)).isDirectory()) return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw toStoreError(err, this.url);
    }
    throw new StoreError('container-not-found', `directory ${this.#root} does not exist`, { target: this.url });
  }

  /** The root is the bucket: it must exist (we never create it, so a typo cannot start a new archive). */
  async #ensureRoot(): Promise<void> {
    if (this.#rootChecked) return;
    await this.checkAccess();
    // root writing into the postgres user's archive (a backup run as root, say) must not leave
    // folders that archive_command, running as postgres, can no longer write into.
    if (process.getuid?.() === 0) {
      const s = await stat(this.#root);
      if (s.uid !== 0) this.#owner = { uid: s.uid, gid: s.gid };
    }
    this.#rootChecked = true;
  }

  /**
   * What a listing says of one object: its payload size and time, from the file's size and the
   * fixed part of its header. A header too damaged to tell its length lists the whole file's size.
   * Undefined when the file went away since the walk.
   */
  async #listed(key: string): Promise<ObjectInfo | undefined> {
    return this.#withObjectFile(key, async (handle) => {
      const s = await handle.stat();
      if (!s.isFile()) return undefined;
      const fixed = Buffer.alloc(HEADER_FIXED);
      const { bytesRead } = await handle.read(fixed, 0, HEADER_FIXED, 0);
      const length = headerLength(fixed.subarray(0, bytesRead), s.size);
      return { key, size: length === undefined ? s.size : s.size - length, lastModified: s.mtime };
    });
  }

  /**
   * Runs read on the open file of key and closes it; undefined when there is no such object (no
   * file, or a directory where the key points), any other failure as a StoreError.
   */
  async #withObjectFile<T>(key: string, read: (handle: FileHandle) => Promise<T | undefined>): Promise<T | undefined> {
    let handle: FileHandle | undefined;
    try {
      handle = await open(this.#path(key), 'r');
      return await read(handle);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR' || isStoreError(err, 'not-found')) return undefined;
      throw toStoreError(err, key);
    } finally {
      await handle?.close().catch(() => undefined);
    }
  }

  #path(key: string): string {
    return join(this.#root, ...key.split('/'));
  }

  /** mkdir -p, then fsync the parent of every directory it created, so new names survive a crash. */
  async #makeDirs(dir: string): Promise<void> {
    const first = await mkdir(dir, { recursive: true, mode: 0o750 });
    if (first === undefined) return;
    for (let d = dir; d.length >= first.length; d = dirname(d)) {
      if (this.#owner) await chown(d, this.#owner.uid, this.#owner.gid);
      await syncDir(dirname(d));
      if (d === first) break;
    }
  }


  /**
   * Removes the temporary files a killed put left (SIGKILL, power loss) once they are old enough
   * that no writer can still own them. Best effort: a read-only user cannot, and need not.
   */
  async #removeOrphans(temps: readonly string[]): Promise<void> {
    const cutoff = Date.now() - ORPHAN_AGE_MS;
    let removed = 0;
    for (const path of temps) {
      if (removed >= ORPHANS_PER_LIST) break;
      try {
        const s = await stat(path);
        if (!s.isFile() || s.mtimeMs > cutoff) continue;
        await unlink(path);
        removed += 1;
      } catch {
        // Gone already, or not ours to remove.
      }
    }
  }

  async #walk(relDir: string, prefix: string, out: string[], temps: string[]): Promise<void> {
    const abs = relDir === '' ? this.#root : this.#path(relDir);
    let entries;
    try {
      entries = await readdir(abs, { withFileTypes: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw toStoreError(err, relDir || this.url);
    }
    for (const entry of entries) {
      if (entry.name.startsWith(TEMP_PREFIX)) {
        if (entry.isFile()) temps.push(join(abs, entry.name));
        continue;
      }
      const key = relDir === '' ? entry.name : `${relDir}/${entry.name}`;
      if (entry.isDirectory()) {
        // Descend only where keys below could still match the prefix.
        const asDir = `${key}/`;
        if (asDir.startsWith(prefix) || prefix.startsWith(asDir)) await this.#walk(key, prefix, out, temps);
      } else if (entry.isFile() && key.startsWith(prefix)) {
        out.push(key);
      }
    }
  }
}

function assertLocalKey(key: string): void {
  if (key.split('/').some((s) => s.startsWith(TEMP_PREFIX))) {
    throw new StoreError('invalid', `object key ${JSON.stringify(key)} uses the reserved prefix ${TEMP_PREFIX}`, { target: key });
  }
  if (key.includes(sep) && sep !== '/') throw new StoreError('invalid', `invalid object key ${JSON.stringify(key)}`, { target: key });
}

function alreadyExists(key: string): StoreError {
  return new StoreError('already-exists', `${key} already exists`, { target: key });
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

function encodeHeader(metadata: ObjectMetadata): Buffer {
  const json = Buffer.from(JSON.stringify(metadata), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(json.length);
  return Buffer.concat([MAGIC, len, json]);
}

/**
 * The whole header's length (fixed part plus metadata) from its fixed part, or undefined when
 * the bytes are not a valid header for a file of fileSize bytes.
 */
function headerLength(fixed: Buffer, fileSize: number): number | undefined {
  if (fixed.length < HEADER_FIXED || !fixed.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  const length = HEADER_FIXED + fixed.readUInt32BE(MAGIC.length);
  return length <= fileSize ? length : undefined;
}

/** A damaged object: exit 4 through the core's mapping, naming the object. */
function corrupt(key: string, what: string, cause?: unknown): StoreError {
  return new StoreError('corrupt', `${key} is damaged: ${what}`, { target: key, ...(cause === undefined ? {} : { cause }) });
}

async function readHeader(handle: FileHandle, key: string): Promise<{ metadata: ObjectMetadata; offset: number; size: number; mtime: Date }> {
  const s = await handle.stat();
  if (!s.isFile()) throw new StoreError('not-found', `${key} is not an object`, { target: key });
  const fixed = Buffer.alloc(HEADER_FIXED);
  const { bytesRead } = await handle.read(fixed, 0, HEADER_FIXED, 0);
  if (bytesRead < HEADER_FIXED || !fixed.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw corrupt(key, 'it has no cloudbarman object header (damaged, or written by another tool)');
  }
  const offset = headerLength(fixed, s.size);
  if (offset === undefined) throw corrupt(key, 'its metadata header is truncated');
  const json = Buffer.alloc(offset - HEADER_FIXED);
  await handle.read(json, 0, json.length, HEADER_FIXED);
  let metadata: unknown;
  try {
    metadata = JSON.parse(json.toString('utf8'));
  } catch (err) {
    throw corrupt(key, 'its metadata header is not valid JSON', err);
  }
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata) || !Object.values(metadata).every((v) => typeof v === 'string')) {
    throw corrupt(key, 'its metadata header is not a map of strings');
  }
  return { metadata: metadata as ObjectMetadata, offset, size: s.size - offset, mtime: s.mtime };
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

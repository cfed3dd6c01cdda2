/**
 * archive_command: stores one WAL file durably, never overwriting archived data.
 *
 * The same name with the same content (by SHA-256 of the uncompressed bytes, kept in the
 * object's metadata) is a success: PostgreSQL retries archive_command after a crash, so a
 * segment may arrive twice. Different content under the same name is an integrity error
 * and the archived object is left as it was.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import type { ObjectStore } from '../../../providers/object-store.ts';
import { isStoreError, listAll } from '../../../providers/object-store.ts';
import { compressBuffer, compressStream, type Compression } from '../../io/compression.ts';
import { parseWalFileName } from '../../pg/wal-names.ts';
import { CloudbarmanError, badInput } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { RangeHasher } from '../../io/part-workers.ts';
import { storeFailure } from '../store/store-failure.ts';
import { PARTIAL_SOURCE, PARTIAL_SOURCE_META, WAL_FORMAT_VERSION, WAL_META, isWalVariant, walBaseKey, walKey } from './wal-keys.ts';
import { readWalObject } from './wal-read.ts';
import { crc32Hex, crc32OfFile } from './spool-files.ts';

/** Files up to this size are compressed in memory; larger ones (big wal_segment_size) stream. */
const IN_MEMORY_LIMIT = 64 * 1024 * 1024;

export interface WalUploadRequest {
  store: ObjectStore;
  server: string;
  /** The %p path PostgreSQL passes (relative to the data directory, or absolute). */
  walPath: string;
  compression: Compression;
  log: Logger;
  /** Also report the CRC-32 of the archived bytes (for a spool record). */
  crc32?: boolean;
  /**
   * A batch's hashing threads (src/io/part-workers.ts): the segment is read into shared memory and
   * hashed there, so that the hashes of a batch's segments in flight do not queue on this thread.
   */
  hashPool?: { digest: RangeHasher; sharedBuffer: (size: number) => Buffer };
}

export interface WalUploadResult {
  name: string;
  key: string;
  status: 'uploaded' | 'already-archived';
  sizeBytes: number;
  storedBytes: number;
  /** SHA-256 of the archived (uncompressed) bytes, hex. */
  sha256: string;
  /** CRC-32 of the same bytes, 8 hex digits, when asked for. */
  crc32?: string;
}

/** Archives one WAL file; resolves only once it is durably stored. */
export async function uploadWal(req: WalUploadRequest): Promise<WalUploadResult> {
  const name = basename(req.walPath);
  const wal = parseWalFileName(name);
  if (wal === undefined) {
    throw badInput(`${req.walPath}: "${name}" is not a WAL file name`, 'wal-upload takes the %p path of a segment, .partial, .backup or .history file');
  }
  const info = await stat(req.walPath).catch((err: NodeJS.ErrnoException) => {
    throw new CloudbarmanError(err.code === 'ENOENT' ? 'bad-input' : 'failed', `cannot read ${req.walPath}: ${err.code ?? err.message}`, {
      hint: 'archive_command runs in the data directory; pass %p as it is', cause: err,
    });
  });
  const baseKey = walBaseKey(req.server, wal);
  const key = walKey(req.server, wal, req.compression);
  const where = `${req.store.url} ${key}`;

  const content = info.size <= IN_MEMORY_LIMIT ? await readWhole(req.walPath, info.size, req.hashPool?.sharedBuffer) : undefined;
  // Overlap the three slow steps: compression runs on the thread pool and the listing on the
  // network while this thread hashes. A compressed body that turns out unneeded is dropped.
  const compressed = content ? compressBuffer(content, req.compression) : undefined;
  compressed?.catch(() => undefined);
  const existingLookup = findExisting(req.store, baseKey);
  existingLookup.catch(() => undefined);
  const sha256 = content === undefined
    ? await hashFile(req.walPath)
    : req.hashPool === undefined
      ? createHash('sha256').update(content).digest('hex')
      : (await req.hashPool.digest(content, [{ offset: 0, length: content.length }]))[0] ?? '';
  const crc32 = req.crc32 !== true ? undefined : content ? crc32Hex(content) : (await crc32OfFile(req.walPath)).crc32;
  const checksums = { sha256, ...(crc32 === undefined ? {} : { crc32 }) };

  try {
    const existing = await existingLookup;
    if (existing !== undefined) {
      await refuseReceiveWalPartial(req, existing, name);
      return { ...(await compareExisting(req, existing, sha256, info.size, name)), ...checksums };
    }

    const metadata = {
      [WAL_META.sha256]: sha256,
      [WAL_META.size]: String(info.size),
      [WAL_META.compression]: req.compression,
      [WAL_META.format]: WAL_FORMAT_VERSION,
    };
    let storedBytes: number;
    if (compressed) {
      const body = await compressed;
      storedBytes = body.length;
      // Uncompressed, the body is the file: its hash is already known.
      const contentSha256 = req.compression === 'none' ? sha256 : undefined;
      await req.store.put(key, body, { metadata, ifAbsent: true, contentLength: body.length, ...(contentSha256 === undefined ? {} : { contentSha256 }) });
    } else {
      await req.store.put(key, () => createReadStream(req.walPath).pipe(compressStream(req.compression)), { metadata, ifAbsent: true });
      storedBytes = (await req.store.head(key))?.size ?? 0;
    }
    req.log.debug(`archived ${name} to ${where} (${info.size} bytes, ${storedBytes} stored)`);
    return { name, key, status: 'uploaded', sizeBytes: info.size, storedBytes, ...checksums };
  } catch (err) {
    // Someone stored this name between our check and our put (or our own earlier attempt did).
    if (isStoreError(err, 'already-exists')) {
      const existing = await findExisting(req.store, baseKey).catch((e: unknown) => { throw storeFailure(e, `archiving ${name}`, where); });
      if (existing !== undefined) {
        await refuseReceiveWalPartial(req, existing, name);
        return { ...(await compareExisting(req, existing, sha256, info.size, name)), ...checksums };
      }
    }
    throw storeFailure(err, `archiving ${name}`, where);
  }
}

/**
 * A .partial that receive-wal stored (cb_source) holds the name PostgreSQL archives at a promotion.
 * That copy is provisional: receive-wal replaces it as it grows and removes it once it reaches the
 * promoted server. Neither replacing it here nor accepting it as "already archived" is safe without
 * conditional writes (receive-wal could overwrite or delete PostgreSQL's copy a moment later), so
 * the call fails (exit 5) and PostgreSQL tries again; its next call after the removal stores it.
 */
async function refuseReceiveWalPartial(req: WalUploadRequest, key: string, name: string): Promise<void> {
  if (!name.endsWith('.partial')) return;
  const head = await req.store.head(key);
  if (head?.metadata?.[PARTIAL_SOURCE_META] !== PARTIAL_SOURCE) return;
  throw new CloudbarmanError('locked', `${name} is held by receive-wal's provisional copy at ${req.store.url} ${key}; PostgreSQL's copy is stored once receive-wal removes it`, {
    hint: 'receive-wal removes it when it reaches the promoted server, and PostgreSQL retries archive_command; if no receive-wal streams this server any more, delete that one object (its metadata has cb_source=receive-wal)',
  });
}

async function compareExisting(req: WalUploadRequest, existingKey: string, sha256: string, size: number, name: string): Promise<Omit<WalUploadResult, 'sha256' | 'crc32'>> {
  const where = `${req.store.url} ${existingKey}`;
  const head = await req.store.head(existingKey);
  let archivedSha = head?.metadata?.[WAL_META.sha256];
  if (archivedSha === undefined) {
    // Written by another tool or without metadata: compare by content.
    archivedSha = (await readWalObject(req.store, existingKey)).sha256;
  }
  if (archivedSha !== sha256) {
    throw new CloudbarmanError('integrity', `${name} is already archived at ${where} with different content (archived sha256 ${archivedSha.slice(0, 12)}…, local ${sha256.slice(0, 12)}…); nothing was overwritten`, {
      hint: 'two clusters may be archiving to the same server name, or the archive belongs to another cluster: check destination and server name',
    });
  }
  req.log.notice(`${name} is already archived with identical content at ${where}`);
  return { name, key: existingKey, status: 'already-archived', sizeBytes: size, storedBytes: head?.size ?? 0 };
}

/** The key of an archived variant of this WAL file (any codec), if there is one. */
export async function findExisting(store: ObjectStore, baseKey: string): Promise<string | undefined> {
  for await (const item of listAll(store, baseKey)) {
    if (isWalVariant(baseKey, item.key)) return item.key;
  }
  return undefined;
}

async function readWhole(path: string, size: number, allocate: (size: number) => Buffer = Buffer.allocUnsafe): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buf = allocate(size);
    let off = 0;
    while (off < size) {
      const { bytesRead } = await handle.read(buf, off, size - off, off);
      if (bytesRead === 0) break;
      off += bytesRead;
    }
    if (off !== size) throw new CloudbarmanError('failed', `${path} changed size while being read (${off} of ${size} bytes)`);
    return buf;
  } finally {
    await handle.close();
  }
}

async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

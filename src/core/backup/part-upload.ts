/**
 * Builds and uploads the planned parts, `jobs` at a time. Each job owns one buffer of the
 * largest part's size (in shared memory, so the hashing threads read it in place) and reuses
 * it for every part it builds: read the part's chunks into it, compress (libuv thread pool, or
 * part workers for LZ4) while the chunks are hashed (part workers), hash the stored bytes, put the object,
 * and only then take the next part. Memory is therefore about jobs x (part + compressed
 * part), whatever the size of the database, and the main thread only moves bytes.
 */
import { open } from 'node:fs/promises';
import type { ObjectStore } from '../../../providers/object-store.ts';
import { BACKUP_EXTENSIONS, PartOutput, compressPart, compressedBound, type BackupCodec } from '../../io/compression.ts';
import { lz4FrameBound } from '../../io/lz4.ts';
import { sharedBuffer, type RangeHasher } from '../../io/part-workers.ts';
import { BACKUP_FORMAT_VERSION, PART_META } from '../catalog/backup-info.ts';
import { partName } from '../catalog/backup-keys.ts';
import type { ManifestPart } from '../catalog/manifest.ts';
import { throwIfAborted } from './abort.ts';
import { fileReadFailure } from './file-errors.ts';
import type { Logger } from '../log.ts';
import { storeFailure } from '../store/store-failure.ts';
import type { PlannedChunk, PlannedPart } from './part-plan.ts';

/** A file a part reads from. */
export interface PartFile {
  path: string;
  absolutePath: string;
}

/** What every part needs. */
export interface PartContext {
  files: readonly PartFile[];
  store: ObjectStore;
  /** The backup's folder, with its trailing slash: <server>/base/<id>/ */
  prefix: string;
  codec: BackupCodec;
  /** SHA-256 of byte ranges: PartWorkers.digest in a backup, hashOnThisThread in small cases. */
  hash: RangeHasher;
  /** LZ4 off the main thread (PartWorkers.lz4), into PartBuffers.lz4Output; without either, LZ4 runs on this thread. */
  lz4?: (data: Uint8Array, into: Uint8Array) => Promise<Uint8Array>;
  signal: AbortSignal;
  log: Logger;
}

/** A chunk as stored: where its bytes ended up and their hash. */
export interface StoredChunk {
  file: number;
  fileOffset: number;
  length: number;
  partOffset: number;
  sha256: string;
}

/** One uploaded part and what it holds. */
export interface PartOutcome {
  index: number;
  part: ManifestPart;
  /** Chunks with at least one byte, in part order. */
  chunks: StoredChunk[];
  /** Files that disappeared before this part could read them. */
  vanished: number[];
}

// Reads in flight per part: small files are latency-bound (open, read, close each).
const READ_CONCURRENCY = 8;

/**
 * Uploads parts with `jobs` workers and calls onPart as each completes. On the first failure the
 * other workers stop at their next step and their uploads are aborted; it then rethrows that failure.
 */
export async function uploadParts(parts: readonly PlannedPart[], jobs: number, ctx: PartContext, onPart: (outcome: PartOutcome) => void): Promise<void> {
  const stop = new AbortController();
  const signal = AbortSignal.any([ctx.signal, stop.signal]);
  const workerCtx: PartContext = { ...ctx, signal };
  const bufferSize = parts.reduce((max, p) => Math.max(max, p.rawSize), 0);
  let next = 0;
  let failure: unknown;
  const worker = async (): Promise<void> => {
    const buffers = partBuffers(bufferSize, ctx);
    while (failure === undefined && next < parts.length) {
      const part = parts[next++];
      if (part === undefined) break;
      try {
        onPart(await uploadPart(part, buffers, workerCtx));
      } catch (err) {
        failure ??= err;
        stop.abort(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(jobs, parts.length)) }, worker));
  if (failure !== undefined) throw failure;
}

/** The memory a job builds its parts in, reused from part to part. */
export interface PartBuffers {
  /** At least the part's raw size; shared memory (sharedBuffer) lets the workers read it in place. */
  input: Buffer;
  /** For LZ4: at least lz4FrameBound of the input's size, shared too. */
  lz4Output?: Uint8Array;
  /** For gzip and zstd: where the compressed part goes, shared too. */
  output?: PartOutput;
}

/** One job's buffers for parts of up to bufferSize raw bytes. */
export function partBuffers(bufferSize: number, ctx: Pick<PartContext, 'codec' | 'lz4'>): PartBuffers {
  return {
    input: sharedBuffer(bufferSize),
    // LZ4 frames go into a buffer of this job's own, reused for every part like the input.
    ...(ctx.codec === 'lz4' && ctx.lz4 !== undefined ? { lz4Output: sharedBuffer(lz4FrameBound(bufferSize)) } : {}),
    // Sized for well-compressed data; it grows for data that compresses less.
    ...(ctx.codec === 'gzip' || ctx.codec === 'zstd' ? { output: new PartOutput(Math.ceil(bufferSize / 8), compressedBound(bufferSize), sharedBuffer) } : {}),
  };
}

/** Builds and uploads one part in `buffers`. */
export async function uploadPart(part: PlannedPart, buffers: PartBuffers, ctx: PartContext): Promise<PartOutcome> {
  const buffer = buffers.input;
  throwIfAborted(ctx.signal);
  const reads = await readChunks(part, buffer, ctx);
  throwIfAborted(ctx.signal);

  // Pack the chunks back to back: a vanished file or a file that ended early leaves a gap.
  const chunks: StoredChunk[] = [];
  const vanished: number[] = [];
  let cursor = 0;
  for (const read of reads) {
    if (read.vanished) {
      vanished.push(read.chunk.file);
      continue;
    }
    let length = read.bytes;
    if (length < read.chunk.length && !read.chunk.last) {
      // Later chunks of this file may still hold bytes: keep offsets true by padding with zeros.
      buffer.fill(0, read.start + length, read.start + read.chunk.length);
      ctx.log.debug(`${ctx.files[read.chunk.file]?.path ?? '?'} shrank while being read; padded ${read.chunk.length - length} bytes at offset ${read.chunk.fileOffset + length} with zeros`);
      length = read.chunk.length;
    }
    if (length === 0) continue;
    if (read.start !== cursor) buffer.copyWithin(cursor, read.start, read.start + length);
    chunks.push({ file: read.chunk.file, fileOffset: read.chunk.fileOffset, length, partOffset: cursor, sha256: '' });
    cursor += length;
  }
  return storePart(part.index, buffer.subarray(0, cursor), chunks, vanished, buffers, ctx);
}

/** What storing a built part needs: a PartContext without the files to read from. */
export type StoreContext = Omit<PartContext, 'files'>;

/**
 * Compresses, hashes and puts one part whose raw bytes are built: raw lies in buffers.input
 * (shared memory), chunks say where each piece of a file is in it (their sha256 is filled in here).
 * Used by uploadPart, and by stream-parts.ts for parts built from a BASE_BACKUP stream.
 */
export async function storePart(index: number, raw: Buffer, chunks: StoredChunk[], vanished: number[], buffers: PartBuffers, ctx: StoreContext): Promise<PartOutcome> {
  const cursor = raw.byteLength;
  // Compression and hashing run side by side, off the main thread.
  const [stored, digests] = await Promise.all([
    compressPart(raw, ctx.codec, {
      ...(ctx.lz4 !== undefined && buffers.lz4Output !== undefined ? { lz4: lz4Into(ctx.lz4, buffers.lz4Output) } : {}),
      ...(buffers.output === undefined ? {} : { output: buffers.output }),
    }),
    ctx.hash(raw, chunks.map((c) => ({ offset: c.partOffset, length: c.length }))),
  ]);
  chunks.forEach((c, i) => {
    c.sha256 = digests[i] ?? '';
  });
  const [sha256 = ''] = await ctx.hash(stored, [{ offset: 0, length: stored.byteLength }]);
  const name = partName(index, BACKUP_EXTENSIONS[ctx.codec]);
  const key = `${ctx.prefix}${name}`;
  throwIfAborted(ctx.signal);
  try {
    await ctx.store.put(key, stored, {
      contentLength: stored.byteLength,
      signal: ctx.signal,
      metadata: {
        [PART_META.sha256]: sha256,
        [PART_META.rawSize]: String(cursor),
        [PART_META.compression]: ctx.codec,
        [PART_META.format]: String(BACKUP_FORMAT_VERSION),
      },
    });
  } catch (err) {
    throwIfAborted(ctx.signal);
    throw storeFailure(err, `uploading part ${name}`, `${ctx.store.url} ${key}`);
  }
  ctx.log.debug(`stored ${name}: ${chunks.length} chunks, ${cursor} bytes, ${stored.byteLength} stored`);
  return { index, part: { name, rawSize: cursor, storedSize: stored.byteLength, sha256 }, chunks, vanished };
}

interface ChunkRead {
  chunk: PlannedChunk;
  /** Where the chunk was read to in the buffer (its planned place). */
  start: number;
  bytes: number;
  vanished: boolean;
}

/** Reads every chunk of a part to its planned place in the buffer, a few files at a time. */
async function readChunks(part: PlannedPart, buffer: Buffer, ctx: PartContext): Promise<ChunkRead[]> {
  const reads: ChunkRead[] = [];
  let offset = 0;
  for (const chunk of part.chunks) {
    reads.push({ chunk, start: offset, bytes: 0, vanished: false });
    offset += chunk.length;
  }
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < reads.length) {
      const read = reads[next++];
      if (read === undefined) break;
      throwIfAborted(ctx.signal);
      const file = ctx.files[read.chunk.file];
      if (file === undefined) throw new Error(`internal: part ${part.index} names file ${read.chunk.file}, which is not planned`);
      const got = await readRange(file.absolutePath, buffer, read.start, read.chunk.length, read.chunk.fileOffset);
      if (got === undefined) {
        read.vanished = true;
        ctx.log.debug(`${file.path} vanished before it was read; left out of the backup (WAL replay recreates it if needed)`);
      } else {
        read.bytes = got;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(READ_CONCURRENCY, reads.length) }, worker));
  return reads;
}

/** Reads up to length bytes at position into buffer[at...]; the bytes read, or undefined when the file is gone. */
async function readRange(path: string, buffer: Buffer, at: number, length: number, position: number): Promise<number | undefined> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fileReadFailure(path, err);
  }
  try {
    let done = 0;
    while (done < length) {
      const { bytesRead } = await handle.read(buffer, at + done, length - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done;
  } catch (err) {
    throw fileReadFailure(path, err);
  } finally {
    await handle.close();
  }
}

function lz4Into(encode: (data: Uint8Array, into: Uint8Array) => Promise<Uint8Array>, into: Uint8Array): (data: Uint8Array) => Promise<Uint8Array> {
  return (data) => encode(data, into);
}

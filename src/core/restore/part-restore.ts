/**
 * Restores one part object: downloads it, decompresses it, checks each chunk against its SHA-256
 * and writes it at its offset in its file. The writer of a file's last chunk finishes the file
 * (file-completion.ts).
 *
 * A part of up to BUFFERED_PART_LIMIT raw bytes (the default part_size is 32 MiB) is decompressed
 * into a buffer of shared memory that its job reuses for every part (PartBuffers), so memory is
 * about jobs x part_size whatever the backup's size, and nothing is allocated per part. Its chunks
 * are then hashed on worker threads (SHA-256 is the costliest step on CPUs without SHA extensions,
 * about 300 MB/s per core: on the main thread it would cap the restore at one core) while they are
 * written, several at once, which matters for parts holding hundreds of small files. A mismatch
 * fails the restore, whose marker and withheld pg_control keep the directory from being used.
 *
 * A larger part (a larger part_size) streams instead, hashed on the main thread, so that memory
 * stays bounded whatever part_size says: at most FLUSH_BYTES of one chunk wait for a write, and the
 * stream's backpressure holds the download.
 *
 * Writes are positional into files opened without truncation, so parts restore in any order and
 * in parallel, and a retried part rewrites the same bytes at the same offsets.
 */
import { createHash, type Hash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { Transform, Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ObjectStore } from '../../../providers/object-store.ts';
import { StoreError, isStoreError } from '../../../providers/object-store.ts';
import { decompressPart, decompressStream, isBackupCodec, isCompression, type BackupCodec } from '../../io/compression.ts';
import { sharedBuffer, type HashRange, type RangeHasher } from '../../io/part-workers.ts';
import { PART_META } from '../catalog/backup-info.ts';
import { CloudbarmanError } from '../errors.ts';
import { storeFailure } from '../store/store-failure.ts';
import { forEachBounded } from './bounded-pool.ts';
import { finishFile, type FileCompletion } from './file-completion.ts';
import type { PlannedChunk, PlannedFile, PlannedPart } from './restore-plan.ts';

/** Parts up to this many raw bytes are restored through a shared buffer (see the module comment). */
export const BUFFERED_PART_LIMIT = 64 * 1024 * 1024;
/** Chunks of one buffered part written at once: small files are bound by open/write/close latency. */
const WRITE_CONCURRENCY = 8;
/** Hash requests one buffered part is split into, so that a part with many chunks keeps two threads busy. */
const HASH_SPLIT = 2;
/** Bytes of one chunk gathered before one positional write (one writev call) when streaming. */
const FLUSH_BYTES = 1024 * 1024;

/** What every part of one restore shares. */
export interface PartRestoreContext {
  store: ObjectStore;
  files: readonly PlannedFile[];
  /** The backup's codec; a part's own cb_compression metadata wins when present. */
  compression: BackupCodec;
  completion: FileCompletion;
  /** SHA-256 of ranges of a shared buffer, off the main thread (PartWorkers.digest). */
  hash: RangeHasher;
  /** One reusable buffer per job, for parts up to the limit. */
  buffers: PartBuffers;
  signal: AbortSignal;
  /** Called with raw bytes as they are written, for progress. */
  onBytes?(bytes: number): void;
}

/**
 * The shared-memory buffers parts are decompressed into: at most as many as parts in flight,
 * each allocated once, at the size of the largest buffered part, and reused.
 */
export class PartBuffers {
  readonly limit: number;
  readonly #size: number;
  readonly #free: Buffer[] = [];

  /** size: the largest raw size of a part to buffer; parts above `limit` stream instead. */
  constructor(size: number, limit: number = BUFFERED_PART_LIMIT) {
    this.#size = size;
    this.limit = limit;
  }

  /** True when a part is restored through a buffer rather than streamed. */
  fits(part: Pick<PlannedPart, 'rawSize'>): boolean {
    return part.rawSize <= this.limit && part.rawSize <= this.#size;
  }

  acquire(): Buffer {
    return this.#free.pop() ?? sharedBuffer(Math.max(1, this.#size));
  }

  release(buffer: Buffer): void {
    this.#free.push(buffer);
  }
}

/**
 * A failure of the transfer itself (the connection dropped mid-body): the caller may fetch the
 * part again. Everything else (a checksum mismatch, a local write error) is final.
 */
export class PartTransferError extends Error {
  override readonly name = 'PartTransferError';
}

/** Downloads, decompresses, verifies and writes one part. */
export async function restorePart(ctx: PartRestoreContext, part: PlannedPart): Promise<void> {
  const where = `${ctx.store.url} ${part.key}`;
  let got;
  try {
    got = await ctx.store.get(part.key, { signal: ctx.signal });
  } catch (err) {
    if (isStoreError(err, 'not-found')) {
      throw new CloudbarmanError('integrity', `part ${where} of the backup is missing`, { hint: 'the backup is damaged; restore another backup', cause: err });
    }
    throw storeFailure(err, 'downloading a backup part', where);
  }
  const { body, info } = got;
  if (info.size !== part.storedSize) {
    body.destroy();
    throw corrupt(where, `it is ${info.size} bytes, the manifest recorded ${part.storedSize}`);
  }
  // The object's own record of its bytes, written with it, must agree with the manifest's.
  const recorded = info.metadata?.[PART_META.sha256];
  const recordedRaw = info.metadata?.[PART_META.rawSize];
  if ((recorded !== undefined && part.sha256 !== undefined && recorded !== part.sha256) || (recordedRaw !== undefined && recordedRaw !== String(part.rawSize))) {
    body.destroy();
    throw new CloudbarmanError('integrity', `backup part ${where} does not match the manifest: the part records ${recorded ?? '?'} (${recordedRaw ?? '?'} raw bytes), the manifest ${part.sha256 ?? '?'} (${part.rawSize})`, {
      hint: 'the part or the manifest was altered or replaced; restore another backup, and run cloudbarman verify on this one',
    });
  }
  const fromMeta = info.metadata?.[PART_META.compression];
  const codec = fromMeta !== undefined && isBackupCodec(fromMeta) ? fromMeta : ctx.compression;
  if (!ctx.buffers.fits(part)) {
    await transfer(body, decoderFor(codec), new ChunkWriter(part, ctx, where), codec, where, ctx.signal);
    return;
  }
  const buffer = ctx.buffers.acquire();
  try {
    if (codec === 'lz4') {
      // lz4 decodes whole frames only: the stored part is gathered, then decoded into the buffer.
      const stored = await readWhole(body, part.storedSize, where, ctx.signal);
      let raw: Uint8Array;
      try {
        raw = await decompressPart(stored, codec);
      } catch (err) {
        throw corrupt(where, `it does not decompress as ${codec}`, err);
      }
      if (raw.length !== part.rawSize) throw corrupt(where, `it decompressed to ${raw.length} bytes, the manifest recorded ${part.rawSize}`);
      buffer.set(raw);
    } else {
      const sink = new BufferWriter(buffer, part.rawSize, where);
      await transfer(body, codec === 'none' ? undefined : decompressStream(codec), sink, codec, where, ctx.signal);
      if (sink.filled !== part.rawSize) throw corrupt(where, `it ends after ${sink.filled} raw bytes, the manifest recorded ${part.rawSize}`);
    }
    await verifyAndWrite(ctx, part, buffer.subarray(0, part.rawSize), where);
  } finally {
    ctx.buffers.release(buffer);
  }
}

/**
 * Runs body [-> decoder] -> sink. Which stream failed first tells a dropped connection (a
 * PartTransferError, retried) from a damaged object (integrity, final).
 */
async function transfer(body: Readable, decoder: Transform | undefined, sink: Writable, codec: BackupCodec, where: string, signal: AbortSignal): Promise<void> {
  let failedFirst: 'body' | 'decoder' | undefined;
  body.once('error', () => { failedFirst ??= 'body'; });
  decoder?.once('error', () => { failedFirst ??= 'decoder'; });
  try {
    if (decoder === undefined) await pipeline(body, sink, { signal });
    else await pipeline(body, decoder, sink, { signal });
  } catch (err) {
    if (err instanceof CloudbarmanError || signal.aborted) throw err;
    if (failedFirst === 'decoder') throw corrupt(where, `it does not decompress as ${codec}`, err);
    if (err instanceof StoreError && !err.retryable) throw storeFailure(err, 'downloading a backup part', where);
    throw new PartTransferError(`downloading ${where} failed mid-way: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/** Hashes the chunks on the pool while writing them; any mismatch is an integrity error naming the file and the part. */
async function verifyAndWrite(ctx: PartRestoreContext, part: PlannedPart, raw: Buffer, where: string): Promise<void> {
  const groups = splitByBytes(part.chunks, HASH_SPLIT);
  const [hashed, written] = await Promise.allSettled([
    Promise.all(groups.map((group) => ctx.hash(raw, group.map((c): HashRange => ({ offset: c.partOffset, length: c.length }))))),
    forEachBounded(part.chunks, WRITE_CONCURRENCY, new AbortController(), async (chunk) => {
      ctx.signal.throwIfAborted();
      await writeChunk(ctx, chunk, raw.subarray(chunk.partOffset, chunk.partOffset + chunk.length));
    }),
  ]);
  if (hashed.status === 'rejected') throw hashed.reason;
  const digests = hashed.value.flat();
  part.chunks.forEach((chunk, i) => {
    if (digests[i] !== chunk.sha256) throw mismatch(fileOf(ctx.files, chunk), chunk, where);
  });
  if (written.status === 'rejected') throw written.reason;
}

/** One chunk to its file; the writer of a file's last chunk finishes the file. */
async function writeChunk(ctx: PartRestoreContext, chunk: PlannedChunk, bytes: Buffer): Promise<void> {
  const file = fileOf(ctx.files, chunk);
  let handle: FileHandle | undefined;
  try {
    handle = await openForWrite(file);
    await writeFully(handle, [bytes], chunk.fileOffset, chunk.length);
    if (ctx.completion.chunkWritten(chunk)) await finishFile(handle, file);
  } catch (err) {
    throw writeFailure(file, 'writing', err);
  } finally {
    await handle?.close();
  }
  ctx.onBytes?.(chunk.length);
}

/** Consecutive groups of chunks of about equal bytes, at most n of them. */
function splitByBytes(chunks: readonly PlannedChunk[], n: number): PlannedChunk[][] {
  const total = chunks.reduce((sum, c) => sum + c.length, 0);
  const groups: PlannedChunk[][] = [[]];
  let inGroup = 0;
  for (const chunk of chunks) {
    const current = groups.at(-1);
    if (current === undefined) break;
    if (current.length > 0 && inGroup >= total / n && groups.length < n) {
      groups.push([chunk]);
      inGroup = chunk.length;
    } else {
      current.push(chunk);
      inGroup += chunk.length;
    }
  }
  return groups.filter((g) => g.length > 0);
}

/** Copies a part's raw bytes into its buffer; more bytes than recorded is a damaged part. */
class BufferWriter extends Writable {
  filled = 0;
  readonly #buffer: Buffer;
  readonly #size: number;
  readonly #where: string;

  constructor(buffer: Buffer, size: number, where: string) {
    super();
    this.#buffer = buffer;
    this.#size = size;
    this.#where = where;
  }

  override _write(data: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    if (this.filled + data.length > this.#size) {
      done(corrupt(this.#where, `it holds more than its ${this.#size} raw bytes`));
      return;
    }
    data.copy(this.#buffer, this.filled);
    this.filled += data.length;
    done();
  }
}

/** The body into one buffer of the recorded size; a body that breaks off is a transfer failure (retried). */
async function readWhole(body: Readable, size: number, where: string, signal: AbortSignal): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(size);
  let at = 0;
  try {
    for await (const piece of body) {
      const data = piece as Buffer;
      if (at + data.length > size) throw corrupt(where, `it holds more than the ${size} bytes recorded`);
      data.copy(buffer, at);
      at += data.length;
    }
  } catch (err) {
    if (err instanceof CloudbarmanError || signal.aborted) throw err;
    if (err instanceof StoreError && !err.retryable) throw storeFailure(err, 'downloading a backup part', where);
    throw new PartTransferError(`downloading ${where} failed mid-way: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  } finally {
    body.destroy();
  }
  if (at !== size) throw new PartTransferError(`downloading ${where} ended after ${at} of ${size} bytes`);
  return buffer;
}

/**
 * The streaming decompressor of a codec, for parts too large to buffer. lz4 has only a
 * whole-frame decoder: such a part is gathered first (its stored plus raw bytes, once).
 */
function decoderFor(codec: BackupCodec): Transform {
  if (isCompression(codec)) return decompressStream(codec);
  const stored: Buffer[] = [];
  return new Transform({
    transform(data: Buffer, _encoding, done) {
      stored.push(data);
      done();
    },
    flush(done) {
      decompressPart(Buffer.concat(stored), codec).then((raw) => {
        stored.length = 0;
        done(null, raw);
      }, (err: unknown) => done(asError(err)));
    },
  });
}

/** State of the chunk being received. */
interface Receiving {
  chunk: PlannedChunk;
  hash: Hash;
  /** Bytes of the chunk received so far. */
  received: number;
  pending: Buffer[];
  pendingBytes: number;
  handle: FileHandle | undefined;
}

/** Splits a part's raw byte stream into its chunks and writes each at its offset. */
class ChunkWriter extends Writable {
  private readonly part: PlannedPart;
  private readonly ctx: PartRestoreContext;
  private readonly where: string;
  private next = 0;
  private current: Receiving | undefined;

  constructor(part: PlannedPart, ctx: PartRestoreContext, where: string) {
    super({ highWaterMark: FLUSH_BYTES });
    this.part = part;
    this.ctx = ctx;
    this.where = where;
  }

  override _write(data: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.consume(data).then(() => done(), (err: unknown) => done(asError(err)));
  }

  override _final(done: (error?: Error | null) => void): void {
    this.finish().then(() => done(), (err: unknown) => done(asError(err)));
  }

  override _destroy(error: Error | null, done: (error?: Error | null) => void): void {
    const handle = this.current?.handle;
    this.current = undefined;
    if (handle === undefined) {
      done(error);
      return;
    }
    handle.close().then(() => done(error), (closeErr: unknown) => done(error ?? asError(closeErr)));
  }

  private async consume(data: Buffer): Promise<void> {
    let offset = 0;
    while (offset < data.length) {
      const state = await this.receiving();
      if (state === undefined) throw corrupt(this.where, `it holds more than its ${this.part.rawSize} raw bytes`);
      const take = Math.min(state.chunk.length - state.received, data.length - offset);
      const piece = data.subarray(offset, offset + take);
      state.hash.update(piece);
      state.pending.push(piece);
      state.pendingBytes += take;
      state.received += take;
      offset += take;
      if (state.received === state.chunk.length) await this.complete(state);
      else if (state.pendingBytes >= FLUSH_BYTES) await this.flush(state);
    }
    this.ctx.onBytes?.(data.length);
  }

  private async finish(): Promise<void> {
    const state = await this.receiving();
    if (state !== undefined) {
      const at = state.chunk.partOffset + state.received;
      throw corrupt(this.where, `it ends after ${at} raw bytes, the manifest recorded ${this.part.rawSize}`);
    }
  }

  /** The chunk bytes go to next; empty chunks are completed on the way (their files still get created). */
  private async receiving(): Promise<Receiving | undefined> {
    while (this.current === undefined) {
      const chunk = this.part.chunks[this.next];
      if (chunk === undefined) return undefined;
      const state: Receiving = { chunk, hash: createHash('sha256'), received: 0, pending: [], pendingBytes: 0, handle: undefined };
      if (chunk.length > 0) {
        this.current = state;
      } else {
        await this.complete(state);
      }
    }
    return this.current;
  }

  private async complete(state: Receiving): Promise<void> {
    await this.flush(state);
    const file = fileOf(this.ctx.files, state.chunk);
    const handle = state.handle ?? await this.openFile(file); // an empty chunk
    state.handle = undefined;
    this.current = undefined;
    this.next++;
    const sha256 = state.hash.digest('hex');
    try {
      if (sha256 !== state.chunk.sha256) throw mismatch(file, state.chunk, this.where);
      if (this.ctx.completion.chunkWritten(state.chunk)) await finishFile(handle, file).catch((err: unknown) => { throw writeFailure(file, 'finishing', err); });
    } finally {
      await handle.close().catch((err: unknown) => { throw writeFailure(file, 'closing', err); });
    }
  }

  private async flush(state: Receiving): Promise<void> {
    if (state.pendingBytes === 0) return;
    const file = fileOf(this.ctx.files, state.chunk);
    state.handle ??= await this.openFile(file);
    const buffers = state.pending;
    const position = state.chunk.fileOffset + state.received - state.pendingBytes;
    const length = state.pendingBytes;
    state.pending = [];
    state.pendingBytes = 0;
    try {
      await writeFully(state.handle, buffers, position, length);
    } catch (err) {
      throw writeFailure(file, 'writing', err);
    }
  }

  private async openFile(file: PlannedFile): Promise<FileHandle> {
    try {
      return await openForWrite(file);
    } catch (err) {
      throw writeFailure(file, 'creating', err);
    }
  }
}

/** Opens a file for positional writes. No O_TRUNC: other parts may be writing other chunks of it. */
function openForWrite(file: PlannedFile): Promise<FileHandle> {
  return open(file.local, constants.O_WRONLY | constants.O_CREAT, 0o600);
}

/** Writes all `length` bytes of buffers at position, however short the single writes come out. */
async function writeFully(handle: FileHandle, buffers: Buffer[], position: number, length: number): Promise<void> {
  let left = length;
  let at = position;
  let rest = buffers;
  while (left > 0) {
    const { bytesWritten } = await handle.writev(rest, at);
    if (bytesWritten === 0) throw new Error('the write made no progress');
    left -= bytesWritten;
    at += bytesWritten;
    rest = dropBytes(rest, bytesWritten);
  }
}

function fileOf(files: readonly PlannedFile[], chunk: PlannedChunk): PlannedFile {
  const file = files[chunk.file];
  if (file === undefined) throw new Error(`internal: chunk refers to file ${chunk.file}`);
  return file;
}

function mismatch(file: PlannedFile, chunk: PlannedChunk, where: string): CloudbarmanError {
  return new CloudbarmanError('integrity', `${file.path}: the bytes at offset ${chunk.fileOffset} (${chunk.length} bytes) from ${where} do not match their SHA-256`, {
    hint: 'the backup object is damaged or was altered; restore another backup, and check the store',
  });
}

/** The buffers after the first n bytes (after a short write). */
function dropBytes(buffers: Buffer[], n: number): Buffer[] {
  const rest: Buffer[] = [];
  let skip = n;
  for (const b of buffers) {
    if (skip >= b.length) {
      skip -= b.length;
    } else {
      rest.push(skip === 0 ? b : b.subarray(skip));
      skip = 0;
    }
  }
  return rest;
}

/** A local file-system failure: final, with a hint for the usual causes. */
export function writeFailure(file: Pick<PlannedFile, 'local'>, doing: string, err: unknown): CloudbarmanError {
  if (err instanceof CloudbarmanError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const hint = code === 'ENOSPC' ? 'the file system is full: free space or restore elsewhere'
    : code === 'EACCES' || code === 'EPERM' ? 'check the permissions of the destination (run the restore as the PostgreSQL OS user)'
    : 'check the destination file system';
  return new CloudbarmanError('failed', `${doing} ${file.local} failed: ${code ?? (err instanceof Error ? err.message : String(err))}`, { hint, cause: err });
}

function corrupt(where: string, why: string, cause?: unknown): CloudbarmanError {
  return new CloudbarmanError('integrity', `backup part ${where} is corrupt: ${why}`, {
    hint: 'the backup object is damaged or was altered; restore another backup, and check the store',
    ...(cause === undefined ? {} : { cause }),
  });
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

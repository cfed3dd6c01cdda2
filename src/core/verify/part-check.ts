/**
 * Checks one backup part without restoring it. Quick: the object exists with the size the manifest
 * recorded, and the checksums written with it (cb_sha256, cb_size) are the manifest's. Full: the
 * object is also downloaded as a stream, its stored bytes hashed against the manifest's SHA-256,
 * then decompressed and every chunk hashed against its own SHA-256, as a restore would, without
 * writing anything. Memory stays bounded: one stream per part in flight (an LZ4 part, which only
 * decodes whole, is held once).
 *
 * When the stored bytes hash right but a chunk does not, the part is what was uploaded and the
 * manifest is what is wrong; when the bytes match the object's own cb_sha256 but not the
 * manifest's, the object was replaced. The problem says which.
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ObjectInfo, ObjectStore } from '../../../providers/object-store.ts';
import { StoreError, isStoreError } from '../../../providers/object-store.ts';
import { decompressPart, decompressStream, isBackupCodec, type BackupCodec } from '../../io/compression.ts';
import { PART_META } from '../catalog/backup-info.ts';
import { CloudbarmanError } from '../errors.ts';
import type { PlannedChunk, PlannedFile, PlannedPart } from '../restore/restore-plan.ts';
import { storeFailure } from '../store/store-failure.ts';

/** What every part check needs. */
export interface PartCheckContext {
  store: ObjectStore;
  /** The backup's codec; a part's own cb_compression wins. */
  compression: BackupCodec;
  files: readonly PlannedFile[];
  signal: AbortSignal;
}

/** The outcome of one part: a problem (undefined when it is sound) and the bytes downloaded. */
export interface PartOutcome {
  problem: string | undefined;
  bytesRead: number;
}

/** How often a download that broke off mid-way is tried. */
const ATTEMPTS = 3;

/** Existence, size and the part's own checksum records against the manifest; no download. */
export async function checkPartQuickly(ctx: PartCheckContext, part: PlannedPart): Promise<PartOutcome> {
  let info: ObjectInfo | undefined;
  try {
    info = await ctx.store.head(part.key);
  } catch (err) {
    throw storeFailure(err, 'checking a backup part', `${ctx.store.url} ${part.key}`);
  }
  if (info === undefined) return { problem: 'it is missing', bytesRead: 0 };
  return { problem: recordProblem(info, part), bytesRead: 0 };
}

/** Downloads the part and hashes it and every chunk in it. */
export async function checkPartFully(ctx: PartCheckContext, part: PlannedPart): Promise<PartOutcome> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await checkOnce(ctx, part);
    } catch (err) {
      // An encrypted part that does not authenticate: a finding about this part, like a checksum mismatch.
      if (err instanceof CloudbarmanError && err.kind === 'integrity' && !ctx.signal.aborted) {
        return { problem: `it does not decrypt: ${err.message.replace(/^.* is corrupt: /, '')}`, bytesRead: 0 };
      }
      if (!(err instanceof TransferError) || attempt >= ATTEMPTS || ctx.signal.aborted) {
        if (err instanceof TransferError) throw new CloudbarmanError('unreachable', err.message, { hint: 'the store kept dropping the download; try again', cause: err });
        throw err;
      }
    }
  }
}

/** A download that broke off: worth another try. */
class TransferError extends Error {
  override readonly name = 'TransferError';
}

async function checkOnce(ctx: PartCheckContext, part: PlannedPart): Promise<PartOutcome> {
  const where = `${ctx.store.url} ${part.key}`;
  let got;
  try {
    got = await ctx.store.get(part.key, { signal: ctx.signal });
  } catch (err) {
    if (isStoreError(err, 'not-found')) return { problem: 'it is missing', bytesRead: 0 };
    throw storeFailure(err, 'downloading a backup part', where);
  }
  const { body, info } = got;
  if (info.size !== part.storedSize) {
    body.destroy();
    return { problem: `it is ${info.size} bytes, the manifest recorded ${part.storedSize}`, bytesRead: 0 };
  }
  const fromMeta = info.metadata?.[PART_META.compression];
  const codec = fromMeta !== undefined && isBackupCodec(fromMeta) ? fromMeta : ctx.compression;
  const stored = createHash('sha256');
  let bytesRead = 0;
  const tap = new Transform({
    transform(data: Buffer, _encoding, done) {
      stored.update(data);
      bytesRead += data.length;
      done(null, data);
    },
  });
  const chunks = new ChunkHasher(part, ctx.files);
  let decodeError: unknown;
  if (codec === 'lz4') {
    const whole = await gather(body, tap, part.storedSize, ctx.signal);
    const raw = await decompressPart(whole, codec).catch((err: unknown) => {
      decodeError = err;
      return undefined;
    });
    if (raw !== undefined) await pipeline([raw], chunks, { signal: ctx.signal });
  } else {
    decodeError = await transfer(body, tap, codec === 'none' ? undefined : decompressStream(codec), chunks, where, ctx.signal);
  }
  const sha256 = stored.digest('hex');
  const recordProblemText = recordProblem(info, part);
  if (part.sha256 !== undefined && sha256 !== part.sha256) {
    const own = info.metadata?.[PART_META.sha256];
    if (own !== undefined && own === sha256) return { problem: 'it is not the object the manifest recorded (its bytes match its own cb_sha256, not the manifest\'s SHA-256): it was replaced', bytesRead };
    return { problem: 'its SHA-256 does not match the manifest\'s (the stored bytes changed)', bytesRead };
  }
  if (recordProblemText !== undefined) return { problem: `${recordProblemText} (its bytes match the manifest: the object's metadata is what changed)`, bytesRead };
  if (decodeError !== undefined) return { problem: `it does not decompress as ${codec}`, bytesRead };
  const chunkProblem = chunks.problem();
  if (chunkProblem !== undefined) {
    return { problem: part.sha256 === undefined ? chunkProblem : `${chunkProblem}; the stored bytes match the manifest's SHA-256, so the manifest's chunk checksums are what is wrong`, bytesRead };
  }
  return { problem: undefined, bytesRead };
}

/** The part's own records (cb_sha256, cb_size) against the manifest. */
function recordProblem(info: ObjectInfo, part: PlannedPart): string | undefined {
  if (info.size !== part.storedSize) return `it is ${info.size} bytes, the manifest recorded ${part.storedSize}`;
  const own = info.metadata?.[PART_META.sha256];
  if (own !== undefined && part.sha256 !== undefined && own !== part.sha256) return `its recorded SHA-256 (cb_sha256) is not the manifest's`;
  const raw = info.metadata?.[PART_META.rawSize];
  if (raw !== undefined && raw !== String(part.rawSize)) return `its recorded raw size (cb_size ${raw}) is not the manifest's ${part.rawSize}`;
  return undefined;
}

/**
 * body -> tap -> [decoder ->] chunks. Returns the decoder's error (the object does not decode); a
 * download that broke off is a TransferError. A decoder that fails does not stop the download: the
 * stored bytes are hashed to the end, so that the report can say whether they changed.
 */
async function transfer(body: Readable, tap: Transform, decoder: Transform | undefined, chunks: Writable, where: string, signal: AbortSignal): Promise<unknown> {
  let decodeError: unknown;
  const decoded = decoder === undefined ? undefined : pipeline(decoder, chunks, { signal }).catch((err: unknown) => { decodeError ??= err; });
  const settled = (): Promise<void> => new Promise((resolve) => {
    const go = (): void => {
      decoder?.off('drain', go);
      decoder?.off('close', go);
      resolve();
    };
    decoder?.on('drain', go);
    decoder?.on('close', go);
  });
  const sink = decoder === undefined ? chunks : new Writable({
    write(data: Buffer, _encoding, done) {
      if (decodeError !== undefined || decoder.destroyed || decoder.write(data)) {
        done();
        return;
      }
      void settled().then(() => done());
    },
    final(done) {
      if (decodeError === undefined && !decoder.destroyed) decoder.end();
      void (decoded ?? Promise.resolve()).then(() => done());
    },
  });
  try {
    await pipeline(body, tap, sink, { signal });
  } catch (err) {
    if (signal.aborted) throw err;
    decoder?.destroy();
    // The store's decryption found the object damaged (integrity) or the key wrong (bad-input): final, not a dropped download.
    if (err instanceof CloudbarmanError) throw err;
    if (err instanceof StoreError && !err.retryable) throw storeFailure(err, 'downloading a backup part', where);
    throw new TransferError(`downloading ${where} failed mid-way: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  await decoded;
  return decodeError;
}

/** The whole stored object through the tap, for codecs that only decode whole. */
async function gather(body: Readable, tap: Transform, size: number, signal: AbortSignal): Promise<Buffer> {
  const pieces: Buffer[] = [];
  const sink = new Writable({
    write(data: Buffer, _encoding, done) {
      pieces.push(data);
      done();
    },
  });
  try {
    await pipeline(body, tap, sink, { signal });
  } catch (err) {
    if (signal.aborted || err instanceof CloudbarmanError) throw err;
    throw new TransferError(`downloading a backup part failed mid-way: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const whole = Buffer.concat(pieces);
  if (whole.length !== size) throw new TransferError(`downloading a backup part ended after ${whole.length} of ${size} bytes`);
  return whole;
}

/** Splits a part's raw bytes into its chunks and hashes each; remembers what did not match. */
class ChunkHasher extends Writable {
  readonly #chunks: readonly PlannedChunk[];
  readonly #files: readonly PlannedFile[];
  readonly #rawSize: number;
  #index = 0;
  #hash: Hash | undefined;
  #received = 0;
  #total = 0;
  #mismatches = 0;
  #first: string | undefined;
  #overflow = false;

  constructor(part: PlannedPart, files: readonly PlannedFile[]) {
    super();
    this.#chunks = part.chunks;
    this.#files = files;
    this.#rawSize = part.rawSize;
    this.#skipEmpty();
  }

  override _write(data: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.#total += data.length;
    let offset = 0;
    while (offset < data.length) {
      const chunk = this.#chunks[this.#index];
      if (chunk === undefined) {
        this.#overflow = true;
        break;
      }
      this.#hash ??= createHash('sha256');
      const take = Math.min(chunk.length - this.#received, data.length - offset);
      this.#hash.update(data.subarray(offset, offset + take));
      this.#received += take;
      offset += take;
      if (this.#received === chunk.length) this.#complete(chunk);
    }
    done();
  }

  /** What was wrong, or undefined. */
  problem(): string | undefined {
    if (this.#overflow) return `it decompresses to more than the ${this.#rawSize} raw bytes the manifest recorded`;
    if (this.#total !== this.#rawSize) return `it decompresses to ${this.#total} bytes, the manifest recorded ${this.#rawSize}`;
    if (this.#mismatches > 0) return `${this.#mismatches} chunk${this.#mismatches === 1 ? '' : 's'} do not match their SHA-256 (first: ${this.#first ?? '?'})`;
    return undefined;
  }

  #complete(chunk: PlannedChunk): void {
    const digest = this.#hash?.digest('hex');
    if (digest !== chunk.sha256) {
      this.#mismatches++;
      this.#first ??= `${this.#files[chunk.file]?.path ?? `file ${chunk.file}`} at offset ${chunk.fileOffset}, ${chunk.length} bytes`;
    }
    this.#hash = undefined;
    this.#received = 0;
    this.#index++;
    this.#skipEmpty();
  }

  /** Empty chunks hash to the SHA-256 of nothing; checked as they are passed. */
  #skipEmpty(): void {
    while (this.#chunks[this.#index]?.length === 0) {
      this.#hash = createHash('sha256');
      const chunk = this.#chunks[this.#index];
      if (chunk !== undefined) this.#complete(chunk);
    }
  }
}

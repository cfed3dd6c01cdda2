/**
 * Compression codecs on Node's built-in zlib (gzip, zstd), plus LZ4 (frame format, lz4.ts) for
 * base backup parts. Each codec has the object-name extension it adds, so a reader can tell an
 * object's codec from its name as well as its metadata.
 */
import { constants, createGunzip, createGzip, createZstdCompress, createZstdDecompress, gunzip, gunzipSync, gzip, zstdCompress, zstdDecompress, zstdDecompressSync } from 'node:zlib';
import { promisify } from 'node:util';
import { PassThrough, type Transform } from 'node:stream';
import { lz4DecodeFrames, lz4EncodeFrame } from './lz4.ts';

/** Codecs for WAL and backup data; lz4 joins with base backups. */
export type Compression = 'none' | 'gzip' | 'zstd';

export const COMPRESSIONS: readonly Compression[] = ['none', 'gzip', 'zstd'];

/** The file-name extension each codec adds ('' for none). */
export const EXTENSIONS: Readonly<Record<Compression, string>> = { none: '', gzip: '.gz', zstd: '.zst' };

// Fast settings: WAL must keep up with a busy primary, and ratios barely improve above these.
const GZIP_LEVEL = 5;
// zstd level 1: on WAL it stores within 1% of level 3 in half the time (measured on 16 MiB segments).
const ZSTD_LEVEL = 1;
/** Output piece for whole-buffer compression: zlib's 16 KiB default nearly doubles the time on a segment. */
const BUFFER_CHUNK = 1024 * 1024;

const gzipAsync = promisify(gzip);
const zstdAsync = promisify(zstdCompress);
const gunzipAsync = promisify(gunzip);
const zstdDecompressAsync = promisify(zstdDecompress);

/** Compresses a whole buffer on the libuv thread pool (WAL segments are small enough to hold). */
export async function compressBuffer(data: Buffer, codec: Compression): Promise<Buffer> {
  switch (codec) {
    case 'none': return data;
    case 'gzip': return gzipAsync(data, { level: GZIP_LEVEL, chunkSize: BUFFER_CHUNK });
    case 'zstd': return zstdAsync(data, { chunkSize: BUFFER_CHUNK, params: { [constants.ZSTD_c_compressionLevel]: ZSTD_LEVEL } });
  }
}

/** Decompresses a whole buffer (small objects: manifests, catalog entries). */
export function decompressBuffer(data: Buffer, codec: Compression): Buffer {
  switch (codec) {
    case 'none': return data;
    case 'gzip': return gunzipSync(data);
    case 'zstd': return zstdDecompressSync(data);
  }
}

/** A streaming compressor. */
export function compressStream(codec: Compression): Transform {
  switch (codec) {
    case 'none': return new PassThrough();
    case 'gzip': return createGzip({ level: GZIP_LEVEL });
    case 'zstd': return createZstdCompress({ params: { [constants.ZSTD_c_compressionLevel]: ZSTD_LEVEL } });
  }
}

/** Output piece of the streaming decompressors: zlib's 16 KiB default doubles zstd's CPU on big parts. */
const DECOMPRESS_CHUNK = 256 * 1024;

/** A streaming decompressor. */
export function decompressStream(codec: Compression): Transform {
  switch (codec) {
    case 'none': return new PassThrough();
    case 'gzip': return createGunzip({ chunkSize: DECOMPRESS_CHUNK });
    case 'zstd': return createZstdDecompress({ chunkSize: DECOMPRESS_CHUNK });
  }
}

/** The codec for a stored name's extension, or undefined when it has none we know. */
export function compressionFromExtension(name: string): Compression | undefined {
  if (name.endsWith('.gz')) return 'gzip';
  if (name.endsWith('.zst')) return 'zstd';
  return undefined;
}

/** True when s names a codec. */
export function isCompression(s: string): s is Compression {
  return (COMPRESSIONS as readonly string[]).includes(s);
}

/** Codecs for base backup parts: the WAL codecs plus lz4, which WAL does not offer. */
export type BackupCodec = Compression | 'lz4';

export const BACKUP_CODECS: readonly BackupCodec[] = ['none', 'gzip', 'lz4', 'zstd'];

/** The object-name extension of each backup codec ('' for none). */
export const BACKUP_EXTENSIONS: Readonly<Record<BackupCodec, string>> = { ...EXTENSIONS, lz4: '.lz4' };

// Level 1, not the WAL's 3: a base backup reads the whole cluster at once, and on PostgreSQL
// pages level 1 runs up to twice as fast as 3 for about the same ratio (measured on pgbench and
// text tables: 2.3% vs 2.7%, 44% vs 47%). WAL is small per call, so it keeps its level.
const BACKUP_ZSTD_LEVEL = 1;

// zlib hands output back to the main thread one chunk at a time (16 KiB by default): a 32 MiB
// part then costs thousands of thread hops. 1 MiB chunks make it a few dozen.
const PART_OUTPUT_CHUNK = 1024 * 1024;

/** Where compressPart may put its output, and how it may run LZ4. */
export interface PartCompression {
  /** Runs LZ4 elsewhere (PartWorkers.lz4, bound to its output buffer); default: on this thread. */
  lz4?: (data: Uint8Array) => Promise<Uint8Array>;
  /** gzip and zstd write here instead of into new buffers, so that a job reuses one output. */
  output?: PartOutput;
}

/**
 * Compresses one backup part. zlib runs on the libuv thread pool; LZ4 (JavaScript, lz4.ts) runs
 * wherever opts.lz4 says. 'none' returns data itself. With opts.output, the result is a view of
 * that output, valid until its next use.
 */
export async function compressPart(data: Uint8Array, codec: BackupCodec, opts: PartCompression = {}): Promise<Uint8Array> {
  switch (codec) {
    case 'none': return data;
    case 'lz4': return opts.lz4 === undefined ? lz4EncodeFrame(data) : opts.lz4(data);
    case 'gzip':
      return opts.output === undefined
        ? gzipAsync(data, { level: GZIP_LEVEL, chunkSize: PART_OUTPUT_CHUNK })
        : streamInto(createGzip({ level: GZIP_LEVEL, chunkSize: PART_OUTPUT_CHUNK }), data, opts.output);
    case 'zstd': {
      const options = { chunkSize: PART_OUTPUT_CHUNK, params: { [constants.ZSTD_c_compressionLevel]: BACKUP_ZSTD_LEVEL } };
      return opts.output === undefined ? zstdAsync(data, options) : streamInto(createZstdCompress(options), data, opts.output);
    }
  }
}

/**
 * A reusable output buffer that grows to the largest output it has held. zlib's own results are
 * fresh buffers per call, freed only when V8 next collects garbage; copying zlib's chunks here
 * instead keeps a backup's memory flat whatever its size.
 */
export class PartOutput {
  #bytes: Uint8Array;
  #length = 0;
  readonly #allocate: (size: number) => Uint8Array;
  readonly #usualMax: number;

  /**
   * allocate makes the memory (shared memory, for hashing on worker threads). It starts at
   * initialSize and doubles as needed, but not past usualMax (the most a part compresses to)
   * unless an output really needs more.
   */
  constructor(initialSize: number, usualMax: number, allocate: (size: number) => Uint8Array = (n) => new Uint8Array(n)) {
    this.#allocate = allocate;
    this.#usualMax = usualMax;
    this.#bytes = allocate(Math.max(1, initialSize));
  }

  /** Forgets the content; the memory stays. */
  reset(): void {
    this.#length = 0;
  }

  /** Appends bytes, growing (by doubling) when full. */
  write(chunk: Uint8Array): void {
    if (this.#length + chunk.length > this.#bytes.length) {
      const bigger = this.#allocate(Math.max(Math.min(this.#bytes.length * 2, this.#usualMax), this.#length + chunk.length));
      bigger.set(this.#bytes.subarray(0, this.#length));
      this.#bytes = bigger;
    }
    this.#bytes.set(chunk, this.#length);
    this.#length += chunk.length;
  }

  /** The bytes written since the last reset. */
  view(): Uint8Array {
    return this.#bytes.subarray(0, this.#length);
  }
}

/** The most gzip or zstd output a part of n bytes can need (both add well under 1% to incompressible data). */
export function compressedBound(n: number): number {
  return n + Math.ceil(n / 128) + 65536;
}

/** Runs data through a compressor, collecting its output in `output`. */
function streamInto(compressor: Transform, data: Uint8Array, output: PartOutput): Promise<Uint8Array> {
  output.reset();
  return new Promise<Uint8Array>((resolve, reject) => {
    compressor.on('data', (chunk: Buffer) => output.write(chunk));
    compressor.once('error', reject);
    compressor.once('end', () => resolve(output.view()));
    compressor.end(data);
  });
}

/**
 * Decompresses one backup part. LZ4 parts are LZ4 frames, which the `lz4` command-line tool also
 * reads; they decode on this thread (JavaScript), at several hundred MB/s.
 */
export async function decompressPart(data: Uint8Array, codec: BackupCodec): Promise<Buffer> {
  switch (codec) {
    case 'none': return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    case 'gzip': return gunzipAsync(data);
    case 'zstd': return zstdDecompressAsync(data);
    case 'lz4': {
      const raw = lz4DecodeFrames(data);
      return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    }
  }
}

/** True when s names a backup codec. */
export function isBackupCodec(s: string): s is BackupCodec {
  return (BACKUP_CODECS as readonly string[]).includes(s);
}

/**
 * Compression codecs on Node's built-in zlib (gzip, zstd). Each codec has the object-name
 * extension it adds, so a reader can tell an object's codec from its name as well as its metadata.
 */
import { constants, createGunzip, createGzip, createZstdCompress, createZstdDecompress, gunzipSync, gzip, zstdCompress, zstdDecompressSync } from 'node:zlib';
import { promisify } from 'node:util';
import { PassThrough, type Transform } from 'node:stream';

/** Codecs for WAL and backup data; lz4 joins with base backups. */
export type Compression = 'none' | 'gzip' | 'zstd';

export const COMPRESSIONS: readonly Compression[] = ['none', 'gzip', 'zstd'];

/** The file-name extension each codec adds ('' for none). */
export const EXTENSIONS: Readonly<Record<Compression, string>> = { none: '', gzip: '.gz', zstd: '.zst' };

// Fast settings: WAL must keep up with a busy primary, and ratios barely improve above these.
const GZIP_LEVEL = 5;
const ZSTD_LEVEL = 3;

const gzipAsync = promisify(gzip);
const zstdAsync = promisify(zstdCompress);

/** Compresses a whole buffer on the libuv thread pool (WAL segments are small enough to hold). */
export async function compressBuffer(data: Buffer, codec: Compression): Promise<Buffer> {
  switch (codec) {
    case 'none': return data;
    case 'gzip': return gzipAsync(data, { level: GZIP_LEVEL });
    case 'zstd': return zstdAsync(data, { params: { [constants.ZSTD_c_compressionLevel]: ZSTD_LEVEL } });
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

/** A streaming decompressor. */
export function decompressStream(codec: Compression): Transform {
  switch (codec) {
    case 'none': return new PassThrough();
    case 'gzip': return createGunzip();
    case 'zstd': return createZstdDecompress();
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

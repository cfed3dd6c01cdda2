/**
 * Where WAL lives in the store: <server>/wals/<TTTTTTTTXXXXXXXX>/<segment>[.ext] for segments,
 * partial segments and backup history files, <server>/wals/<TTTTTTTT>.history[.ext] for timeline history.
 */
import type { WalFileName } from '../../pg/wal-names.ts';
import { EXTENSIONS, type Compression } from '../../io/compression.ts';

/** The key of a WAL file, without the compression extension. */
export function walBaseKey(server: string, wal: WalFileName): string {
  return wal.bucket === undefined ? `${server}/wals/${wal.name}` : `${server}/wals/${wal.bucket}/${wal.name}`;
}

/** The key of a WAL file stored with a codec. */
export function walKey(server: string, wal: WalFileName, compression: Compression): string {
  return walBaseKey(server, wal) + EXTENSIONS[compression];
}

/** True when key is the base key itself or the base key with one known codec extension. */
export function isWalVariant(baseKey: string, key: string): boolean {
  return Object.values(EXTENSIONS).some((ext) => key === baseKey + ext);
}

/** Metadata names on WAL objects. */
export const WAL_META = {
  sha256: 'cb_sha256', // SHA-256 of the uncompressed file, hex
  size: 'cb_size', // uncompressed size in bytes
  compression: 'cb_compression',
  format: 'cb_format',
} as const;

/** The object format written by this version; readers reject others. */
export const WAL_FORMAT_VERSION = '1';

/** Metadata that marks a .partial object as receive-wal's own, which it may replace and delete. */
export const PARTIAL_SOURCE_META = 'cb_source';
/** The value of PARTIAL_SOURCE_META on receive-wal's objects. */
export const PARTIAL_SOURCE = 'receive-wal';

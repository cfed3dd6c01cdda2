/**
 * Reads an archived WAL object back: decompresses it, hashes the bytes as they pass, and
 * checks them against the SHA-256 and size recorded at upload. A mismatch is an integrity
 * error that names the object; a destination file is only renamed into place when it matches.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32 } from 'node:zlib';
import type { ObjectStore } from '../../../providers/object-store.ts';
import { compressionFromExtension, decompressStream, isCompression, type Compression } from '../../io/compression.ts';
import { CloudbarmanError } from '../errors.ts';
import { WAL_FORMAT_VERSION, WAL_META } from './wal-keys.ts';

export interface WalReadResult {
  sha256: string;
  sizeBytes: number;
  /** False when the object carried no checksum to verify against (written by another tool). */
  verified: boolean;
  /** CRC-32 of the uncompressed bytes (8 hex digits), when asked for: the spool's local re-check. */
  crc32?: string;
}

export interface WalReadOptions {
  /** Also compute the CRC-32 of the uncompressed bytes as they pass. */
  crc32?: boolean;
}

/** Streams an archived WAL object into destPath (atomically) or, without one, only hashes it. */
export async function readWalObject(store: ObjectStore, key: string, destPath?: string, options: WalReadOptions = {}): Promise<WalReadResult> {
  const { body, info } = await store.get(key);
  const meta = info.metadata ?? {};
  const format = meta[WAL_META.format];
  if (format !== undefined && format !== WAL_FORMAT_VERSION) {
    body.destroy();
    throw new CloudbarmanError('integrity', `${store.url} ${key} has object format ${format}, which this version does not know`, {
      hint: 'upgrade cloudbarman to read this archive',
    });
  }
  const codec = codecOf(meta[WAL_META.compression], key);
  const hash = createHash('sha256');
  let sizeBytes = 0;
  let crc = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      if (options.crc32 === true) crc = crc32(chunk, crc);
      sizeBytes += chunk.length;
      done(null, chunk);
    },
  });
  const temp = destPath === undefined ? undefined : join(dirname(destPath), `.${basename(destPath)}.cbtmp-${process.pid}`);
  const sink = temp === undefined ? new Writable({ write(_c, _e, done) { done(); } }) : createWriteStream(temp, { mode: 0o600 });
  try {
    try {
      await pipeline(body, decompressStream(codec), tap, sink);
    } catch (err) {
      if (isDecodeError(err)) throw corrupt(store, key, `it does not decompress as ${codec}`, err);
      throw err;
    }
    const sha256 = hash.digest('hex');
    const wantSha = meta[WAL_META.sha256];
    const wantSize = meta[WAL_META.size];
    if (wantSize !== undefined && Number(wantSize) !== sizeBytes) {
      throw corrupt(store, key, `it decompressed to ${sizeBytes} bytes, ${wantSize} were archived`);
    }
    if (wantSha !== undefined && wantSha !== sha256) {
      throw corrupt(store, key, 'its SHA-256 does not match the one recorded at upload');
    }
    if (temp !== undefined && destPath !== undefined) await rename(temp, destPath);
    const result: WalReadResult = { sha256, sizeBytes, verified: wantSha !== undefined };
    if (options.crc32 === true) result.crc32 = crc.toString(16).padStart(8, '0');
    return result;
  } catch (err) {
    if (temp !== undefined) await unlink(temp).catch(() => undefined);
    throw err;
  }
}

function codecOf(fromMeta: string | undefined, key: string): Compression {
  if (fromMeta !== undefined && isCompression(fromMeta)) return fromMeta;
  return compressionFromExtension(key) ?? 'none';
}

function isDecodeError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? '';
  return code.startsWith('Z_') || code.startsWith('ZSTD_error');
}

function corrupt(store: ObjectStore, key: string, why: string, cause?: unknown): CloudbarmanError {
  return new CloudbarmanError('integrity', `${store.url} ${key} is corrupt: ${why}`, {
    hint: 'the archived copy is damaged; restore from another backup/archive copy, or investigate the store',
    cause,
  });
}

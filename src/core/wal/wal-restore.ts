/**
 * restore_command: fetches one archived WAL file, verifies it and writes it atomically.
 *
 * A file that is really absent is exit 1, which PostgreSQL reads as "end of archive". Any
 * doubt (the store unreachable after retries, a corrupt object) must not look like that in
 * targeted recovery, or PostgreSQL would end recovery early at the wrong point: there it
 * becomes 'abort-recovery'. A standby instead gets exit 2 and keeps retrying.
 */
import { basename } from 'node:path';
import type { ObjectStore } from '../../../providers/object-store.ts';
import { isStoreError, StoreError } from '../../../providers/object-store.ts';
import type { Compression } from '../../io/compression.ts';
import { parseWalFileName } from '../../pg/wal-names.ts';
import type { RecoveryMode } from '../../pg/recovery-mode.ts';
import { CloudbarmanError, badInput } from '../errors.ts';
import type { Logger } from '../log.ts';
import { storeFailure } from '../store/store-failure.ts';
import { walBaseKey, walKey } from './wal-keys.ts';
import { findExisting } from './wal-upload.ts';
import { readWalObject } from './wal-read.ts';

export interface WalRestoreRequest {
  store: ObjectStore;
  server: string;
  /** %f: the WAL file name PostgreSQL wants. */
  walName: string;
  /** %p: where to write it. */
  destPath: string;
  /** The codec tried first (the configured one); other codecs are found by listing. */
  compression: Compression;
  log: Logger;
}

export interface WalRestoreResult {
  name: string;
  key: string;
  sizeBytes: number;
}

/** Restores one WAL file into destPath. */
export async function restoreWal(req: WalRestoreRequest): Promise<WalRestoreResult> {
  const wal = parseWalFileName(req.walName);
  if (wal === undefined || basename(req.walName) !== req.walName) {
    throw badInput(`"${req.walName}" is not a WAL file name`, 'restore_command passes %f (the file name) and %p (the destination path)');
  }
  const preferred = walKey(req.server, wal, req.compression);
  try {
    let key = preferred;
    let result;
    try {
      result = await readWalObject(req.store, key, req.destPath);
    } catch (err) {
      if (!isStoreError(err, 'not-found')) throw err;
      const other = await findExisting(req.store, walBaseKey(req.server, wal));
      if (other === undefined) {
        throw new CloudbarmanError('not-found', `${req.walName} is not in the archive at ${req.store.url}`, {
          hint: 'normal when recovery reaches the end of the archived WAL',
        });
      }
      key = other;
      result = await readWalObject(req.store, key, req.destPath);
    }
    if (!result.verified) req.log.warn(`${key} carries no checksum (not written by cloudbarman); restored unverified`);
    req.log.debug(`restored ${req.walName} from ${req.store.url} ${key} (${result.sizeBytes} bytes)`);
    return { name: req.walName, key, sizeBytes: result.sizeBytes };
  } catch (err) {
    throw classify(err, req, preferred);
  }
}

function classify(err: unknown, req: WalRestoreRequest, key: string): CloudbarmanError {
  if (err instanceof CloudbarmanError) return err;
  // A failure mid-body arrives as a plain stream error: the store stopped answering.
  const storeErr = err instanceof StoreError ? err : new StoreError('transient', (err as Error)?.message ?? String(err), { cause: err });
  return storeFailure(storeErr, `restoring ${req.walName}`, `${req.store.url} ${key}`);
}

/**
 * The exit a restore_command failure must have in each recovery mode. Anything but a really
 * absent file aborts targeted recovery (even a config error: exit 3 would end it early too);
 * a standby keeps retrying what may pass.
 */
export function failureForRecoveryMode(failure: CloudbarmanError, mode: RecoveryMode): CloudbarmanError {
  if (failure.kind === 'not-found' || failure.kind === 'abort-recovery') return failure;
  if (mode === 'targeted') {
    return new CloudbarmanError('abort-recovery', `${failure.message}; aborting recovery rather than ending it early at the wrong point`, {
      hint: failure.hint ?? 'fix the cause, then start PostgreSQL again: recovery resumes where it stopped',
      cause: failure,
    });
  }
  if (mode === 'standby' && (failure.kind === 'unreachable' || failure.kind === 'failed')) {
    return new CloudbarmanError('unreachable', failure.message, { hint: 'the standby will retry', cause: failure });
  }
  return failure;
}

/**
 * Waits until a WAL segment is in the store. A base backup is only restorable with the WAL up to
 * its stop point, so a backup is not DONE before archive_command (or, with streaming_archiver,
 * receive-wal) has stored that segment.
 */
import type { ObjectStore } from '../../../providers/object-store.ts';
import { parseWalFileName } from '../../pg/wal-names.ts';
import { CloudbarmanError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { storeFailure } from '../store/store-failure.ts';
import { walBaseKey } from '../wal/wal-keys.ts';
import { findExisting } from '../wal/wal-upload.ts';

/** Time, injected so tests need not wait. */
export interface BackupClock {
  now(): Date;
  /** Resolves after ms, or rejects with the signal's reason once it aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** What to wait for. */
export interface WalWait {
  store: ObjectStore;
  server: string;
  walFile: string;
  timeoutMs: number;
  clock: BackupClock;
  signal: AbortSignal;
  log: Logger;
  /** Who stores WAL: archive_command (wal-upload, the default) or receive-wal (streaming_archiver = on).
   *  Only the messages differ. */
  via?: 'archive_command' | 'receive-wal';
  /** Explains a timeout (e.g. pg_stat_archiver's last failure); appended to the error. */
  explain?: () => Promise<string | undefined>;
  /** Says whether archiving of walFile is failing right now (a warning to log once), or undefined. */
  failing?: () => Promise<string | undefined>;
}

// A slow archive_command (or receive-wal upload) is normal for a few seconds; after this, failures are worth a warning.
const WARN_AFTER_MS = 10_000;

// archive_command usually stores the segment pg_backup_stop switched away from within a second;
// look often at first, then back off to spare the store.
const FIRST_POLL_MS = 100;
const MAX_POLL_MS = 5_000;

/** Resolves with the segment's key once it is stored; throws 'failed' after timeoutMs. */
export async function waitForWal(req: WalWait): Promise<string> {
  const wal = parseWalFileName(req.walFile);
  if (wal === undefined) throw new Error(`internal: ${req.walFile} is not a WAL file name`);
  const baseKey = walBaseKey(req.server, wal);
  const streaming = req.via === 'receive-wal';
  const started = req.clock.now().getTime();
  let delay = FIRST_POLL_MS;
  let warned = false;
  for (let polls = 1; ; polls++) {
    let key: string | undefined;
    try {
      key = await findExisting(req.store, baseKey);
    } catch (err) {
      throw storeFailure(err, `looking for WAL segment ${req.walFile}`, `${req.store.url} ${baseKey}`);
    }
    if (key !== undefined) {
      req.log.debug(`${req.walFile} is archived (${key}) after ${polls} look${polls === 1 ? '' : 's'}`);
      return key;
    }
    const elapsed = req.clock.now().getTime() - started;
    if (elapsed >= req.timeoutMs) {
      const detail = await req.explain?.();
      throw new CloudbarmanError('failed',
        `WAL segment ${req.walFile}, which the backup needs to be consistent, did not reach ${req.store.url} within ${Math.round(req.timeoutMs / 1000)} s${detail === undefined ? '' : ` (${detail})`}`, {
          hint: streaming
            ? `streaming_archiver is on: cloudbarman receive-wal ${req.server} (or the daemon) must be running with this destination and stream from this server; check its log and pg_stat_replication, or raise wal_archive_timeout`
            : `archive_command must be 'cloudbarman wal-upload ${req.server} %p' with this destination; check the PostgreSQL log for archive_command failures, or raise wal_archive_timeout`,
        });
    }
    if (polls === 1) req.log.info(`waiting for ${req.walFile} to be ${streaming ? 'stored by receive-wal' : 'archived'} (at most ${Math.round(req.timeoutMs / 1000)} s)`);
    if (!warned && elapsed >= WARN_AFTER_MS && req.failing !== undefined) {
      const problem = await req.failing();
      if (problem !== undefined) {
        warned = true;
        req.log.warn(`${problem}; still waiting for ${req.walFile}, at most ${Math.round((req.timeoutMs - elapsed) / 1000)} s more`);
      }
    }
    await req.clock.sleep(Math.min(delay, req.timeoutMs - elapsed), req.signal);
    delay = Math.min(MAX_POLL_MS, Math.round(delay * 1.5));
  }
}

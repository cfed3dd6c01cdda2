/**
 * restore_command with prefetch: serves a segment from the restore spool when the prefetcher
 * has it (after checking its size and CRC-32), and otherwise restores it from the store as
 * restoreWal always did. Either way it tells the prefetcher where recovery stands, and starts
 * one when none is running for this data directory.
 *
 * The spool only ever turns a call into a faster success. Every failure (a segment really
 * absent, the store unreachable, a corrupt object) comes from the direct path, so the exit codes
 * and their recovery.signal/standby.signal semantics stay exactly those of restoreWal. Trouble
 * with the spool itself (permissions, a full disk) costs a warning, never the restore.
 */
import { basename } from 'node:path';
import type { ObjectStore } from '../../../providers/object-store.ts';
import type { Compression } from '../../io/compression.ts';
import { parseWalFileName } from '../../pg/wal-names.ts';
import { CloudbarmanError } from '../errors.ts';
import type { Logger } from '../log.ts';
import {
  clearSpool, isPrefetcherAlive, keepHistoryCopy, readOwner, takeFromSpool, writeOwner, writeWant,
} from './prefetch-spool.ts';
import { ensureSpoolDir, errnoCode } from './spool-files.ts';
import type { WalRestoreResult } from './wal-restore.ts';

/** How this call takes part in prefetching; see wal-restore's CLI for where each comes from. */
export interface PrefetchSettings {
  /** The restore spool of this server. */
  spoolDir: string;
  /** The data directory being recovered (the prefetcher watches its signal files). */
  dataDir: string;
  /** Starts a prefetcher for this spool and resolves with its pid. */
  startWorker: () => Promise<number>;
  /** How long to wait for a segment the prefetcher is downloading right now. */
  waitMs: number;
  /** Injectable for tests; by default a live process whose command line is a prefetcher's. */
  isAlive?: (pid: number) => Promise<boolean>;
}

export interface PrefetchingRestoreRequest {
  /** Opens the store on first use: a segment served from the spool never needs one. */
  getStore: () => Promise<ObjectStore>;
  server: string;
  walName: string;
  destPath: string;
  compression: Compression;
  log: Logger;
  /** undefined: prefetch is off (restore_prefetch = 0, or not a recovery PostgreSQL runs). */
  prefetch: PrefetchSettings | undefined;
}

export interface PrefetchingRestoreResult extends Omit<WalRestoreResult, 'key'> {
  /** The object read; absent when the segment came from the spool. */
  key?: string;
  source: 'store' | 'prefetch';
}

/** Restores one WAL file into destPath, from the prefetch spool when it has it. */
export async function restoreWalPrefetching(req: PrefetchingRestoreRequest): Promise<PrefetchingRestoreResult> {
  const wal = parseWalFileName(req.walName);
  const prefetch = req.prefetch;
  if (prefetch === undefined || wal === undefined || basename(req.walName) !== req.walName) return direct(req);

  if (wal.kind === 'timeline-history') {
    const result = await direct(req);
    // The prefetcher follows timeline switches through the history files recovery restored.
    await ensureSpoolDir(prefetch.spoolDir)
      .then(() => keepHistoryCopy(prefetch.spoolDir, req.walName, req.destPath))
      .catch((err: unknown) => req.log.debug(`keeping a copy of ${req.walName} in ${prefetch.spoolDir}: ${describe(err)}`));
    return result;
  }
  if (wal.kind !== 'segment') return direct(req);

  let told = false;
  try {
    const outcome = await serveOrStart(req, prefetch);
    if (outcome.served !== undefined) return outcome.served;
    told = outcome.told;
  } catch (err) {
    req.log.warn(`prefetch spool ${prefetch.spoolDir} unusable (${errnoCode(err) ?? describe(err)}); restoring ${req.walName} directly`);
  }
  try {
    return await direct(req);
  } catch (err) {
    // Not archived (yet): it is still the next segment recovery needs.
    if (told && err instanceof CloudbarmanError && err.kind === 'not-found') {
      await writeWant(prefetch.spoolDir, { name: req.walName, found: false }).catch(() => undefined);
    }
    throw err;
  }
}

/** Serves the segment from the spool, or tells (or starts) the prefetcher where recovery stands. */
async function serveOrStart(req: PrefetchingRestoreRequest, prefetch: PrefetchSettings): Promise<{ served?: PrefetchingRestoreResult; told: boolean }> {
  const dir = prefetch.spoolDir;
  const position = { name: req.walName, found: true };
  await ensureSpoolDir(dir);
  const owner = await readOwner(dir);
  const alive = owner !== undefined && (await (prefetch.isAlive ?? isPrefetcherAlive)(owner.pid));
  if (alive && owner.dataDir !== prefetch.dataDir) {
    // Another recovery shares this spool_directory: leave its prefetcher alone.
    req.log.debug(`${dir} belongs to the prefetcher of ${owner.dataDir}; restoring ${req.walName} directly (give each cluster its own spool_directory)`);
    return { told: false };
  }
  if (!alive) {
    // A dead prefetcher's leftovers are not served: start from an empty spool.
    await clearSpool(dir, { keepHistory: true });
    await writeWant(dir, position);
    const pid = await prefetch.startWorker();
    await writeOwner(dir, { pid, dataDir: prefetch.dataDir });
    req.log.debug(`started prefetcher ${pid} for ${prefetch.dataDir} (spool ${dir})`);
    return { told: true };
  }
  // Position first: the prefetcher keeps the asked segment (never removes or re-fetches it) and plans past it.
  await writeWant(dir, position);
  const taken = await takeFromSpool(dir, req.walName, req.destPath, { waitMs: prefetch.waitMs, log: req.log });
  if (taken.served) {
    req.log.debug(`restored ${req.walName} from the prefetch spool (${taken.sizeBytes} bytes, CRC-32 checked)`);
    return { served: { name: req.walName, sizeBytes: taken.sizeBytes, source: 'prefetch' }, told: true };
  }
  req.log.debug(`${req.walName} not in the prefetch spool (${taken.why}); restoring it from the store`);
  return { told: true };
}

async function direct(req: PrefetchingRestoreRequest): Promise<PrefetchingRestoreResult> {
  // Loaded only here: a segment served from the spool needs neither the store nor the codecs.
  const { restoreWal } = await import('./wal-restore.ts');
  const store = await req.getStore();
  const result = await restoreWal({ store, server: req.server, walName: req.walName, destPath: req.destPath, compression: req.compression, log: req.log });
  return { ...result, source: 'store' };
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

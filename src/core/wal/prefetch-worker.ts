/**
 * The prefetcher: a background process, one per data directory, that keeps the next
 * restore_prefetch segments of recovery downloaded in the restore spool, archive_parallel at a
 * time, so that PostgreSQL's restore_command calls find them on local disk.
 *
 * It follows the position wal-restore writes (the `want` file) and the timeline history files
 * PostgreSQL restored. A segment enters the spool only once its SHA-256 matched the object's
 * metadata, under a name carrying its size and CRC-32. The spool never holds more than
 * restore_prefetch segments: anything outside the current plan is removed.
 *
 * It ends by itself, removing what it downloaded: when recovery is over (neither recovery.signal
 * nor standby.signal in the data directory), when the postmaster is gone, when PostgreSQL has
 * asked for nothing for idleExitMs, or when another prefetcher took the folder over.
 */
import { watch } from 'node:fs';
import { readdir, rename, rmdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { ObjectStore } from '../../../providers/object-store.ts';
import { isStoreError } from '../../../providers/object-store.ts';
import type { Compression } from '../../io/compression.ts';
import { parseWalFileName } from '../../pg/wal-names.ts';
import type { Logger } from '../log.ts';
import { isValidSegmentSize, planPrefetch, type RecoveryPosition } from './prefetch-plan.ts';
import {
  LOG_FILE, PID_FILE, WANT_FILE, clearSpool, entryFileName, exists, fetchingFileName, listSpool, readHistoryFiles, readOwner, readWant,
} from './prefetch-spool.ts';
import { isTempName, unlessMissing, writeFileAtomic } from './spool-files.ts';
import { chooseChain, parseTimelineHistory, type TimelineSpan } from './timeline-history.ts';
import { WAL_META, walBaseKey, walKey } from './wal-keys.ts';
import { readWalObject } from './wal-read.ts';
import { findExisting } from './wal-upload.ts';

export interface PrefetchWorkerOptions {
  store: ObjectStore;
  server: string;
  /** The configured codec, tried first; other codecs are found by listing. */
  compression: Compression;
  spoolDir: string;
  dataDir: string;
  /** pg_wal, where PostgreSQL may keep history files of its own. */
  walDir: string;
  /** restore_prefetch: segments kept ahead. */
  count: number;
  /** archive_parallel: downloads at once. */
  parallel: number;
  /** Ends after this long without a new request from PostgreSQL. */
  idleExitMs: number;
  /** How often the exit conditions are checked (and the spool re-read, when watching fails). */
  tickMs: number;
  /** Wait before asking again for a segment that was not archived yet. */
  absentRetryMs: number;
  /** How long the owner record may take to name this process (the spawner writes it). */
  ownerWaitMs: number;
  /** This process's pid, as the owner record names it. */
  pid: number;
  now: () => number;
  log: Logger;
  signal?: AbortSignal;
}

/** Why the prefetcher ended. */
export type PrefetchExit = 'recovery-ended' | 'postmaster-gone' | 'idle' | 'replaced' | 'aborted';

/** Runs until one of the exit conditions; cleans the spool up on the way out. */
export async function runPrefetchWorker(o: PrefetchWorkerOptions): Promise<PrefetchExit> {
  if (!(await waitForOwnership(o))) {
    o.log.debug(`${o.spoolDir} is owned by another prefetcher; not starting`);
    return 'replaced';
  }
  await removeLeftovers(o.spoolDir);
  const worker = new Worker(o);
  let exit: PrefetchExit;
  try {
    exit = await worker.run();
  } finally {
    worker.stop();
  }
  await worker.settle(5_000);
  if (exit !== 'replaced') await removeSpool(o, worker.warnings === 0);
  o.log.info(`prefetcher ended: ${exit}; ${worker.downloaded} segment(s) downloaded`);
  return exit;
}

class Worker {
  readonly #o: PrefetchWorkerOptions;
  readonly #inflight = new Map<string, Promise<void>>();
  /** Segments found absent (or failing), and when to ask again; nothing after them is fetched before. */
  readonly #retryAt = new Map<string, number>();
  /** Segments left to wal-restore's own download (objects without a checksum to verify against). */
  readonly #skip = new Set<string>();
  #segmentSize: number | undefined;
  #lastWantText = '';
  #lastActivity: number;
  #wake: (() => void) | undefined;
  #watcher: ReturnType<typeof watch> | undefined;
  #stopped = false;
  warnings = 0;
  downloaded = 0;

  constructor(o: PrefetchWorkerOptions) {
    this.#o = o;
    this.#lastActivity = o.now();
  }

  async run(): Promise<PrefetchExit> {
    const o = this.#o;
    try {
      this.#watcher = watch(o.spoolDir, (_event, file) => {
        if (file === WANT_FILE || (typeof file === 'string' && file.endsWith('.history'))) this.#wake?.();
      });
      this.#watcher.on('error', () => undefined);
    } catch {
      this.#watcher = undefined; // the tick still finds every change
    }
    o.signal?.addEventListener('abort', () => this.#wake?.(), { once: true });
    for (;;) {
      const exit = await this.#exitReason();
      if (exit !== undefined) return exit;
      await this.#step();
      await this.#sleep(o.tickMs);
    }
  }

  stop(): void {
    this.#stopped = true;
    this.#watcher?.close();
    this.#wake?.();
  }

  /** Waits for downloads in flight, at most ms. */
  async settle(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.#inflight.values()]),
      new Promise<void>((resolve) => { timer = setTimeout(resolve, ms); }),
    ]);
    clearTimeout(timer);
  }

  async #exitReason(): Promise<PrefetchExit | undefined> {
    const o = this.#o;
    if (o.signal?.aborted === true) return 'aborted';
    const owner = await readOwner(o.spoolDir);
    if (owner?.pid !== o.pid) return 'replaced';
    if (!(await exists(join(o.dataDir, 'postmaster.pid')))) return 'postmaster-gone';
    if (!(await exists(join(o.dataDir, 'recovery.signal'))) && !(await exists(join(o.dataDir, 'standby.signal')))) return 'recovery-ended';
    if (this.#inflight.size === 0 && o.now() - this.#lastActivity > o.idleExitMs) return 'idle';
    return undefined;
  }

  async #step(): Promise<void> {
    const o = this.#o;
    const want = await this.#readPosition();
    if (want === undefined) return;
    if (this.#segmentSize === undefined) {
      this.#segmentSize = await this.#learnSegmentSize(want.name);
      if (this.#segmentSize === undefined) return;
    }
    const chain = await this.#chain(Number.parseInt(want.name.slice(0, 8), 16));
    const plan = planPrefetch(want, o.count, this.#segmentSize, chain);
    const planned = new Set(plan);
    // The segment PostgreSQL just got (or is taking from the spool right now) is left alone.
    const taking = want.found ? want.name : undefined;

    // Bounded disk: whatever the plan no longer holds goes (a passed segment, a wrong guess).
    const { entries } = await listSpool(o.spoolDir);
    const present = new Set<string>();
    for (const entry of entries) {
      if (planned.has(entry.name)) present.add(entry.name);
      else if (entry.name !== taking) await unlessMissing(unlink(join(o.spoolDir, entry.file))).catch(() => undefined);
    }
    for (const name of this.#retryAt.keys()) if (!planned.has(name)) this.#retryAt.delete(name);
    for (const name of this.#skip) if (!planned.has(name)) this.#skip.delete(name);

    const now = o.now();
    for (const name of plan) {
      if (this.#inflight.size >= o.parallel) break;
      if (present.has(name) || this.#inflight.has(name) || this.#skip.has(name)) continue;
      const retryAt = this.#retryAt.get(name);
      // Nothing after a segment that is not archived yet: recovery cannot pass it either.
      if (retryAt !== undefined && retryAt > now) break;
      this.#start(name);
    }
  }

  async #readPosition(): Promise<RecoveryPosition | undefined> {
    const want = await readWant(this.#o.spoolDir);
    if (want === undefined) return undefined;
    const text = `${want.name}/${want.found}`;
    if (text !== this.#lastWantText) {
      this.#lastWantText = text;
      this.#lastActivity = this.#o.now();
    }
    return want;
  }

  async #chain(current: number): Promise<TimelineSpan[]> {
    const texts = await readHistoryFiles([this.#o.spoolDir, this.#o.walDir]);
    const chains = new Map<number, TimelineSpan[]>();
    for (const [timeline, text] of texts) {
      const chain = parseTimelineHistory(text, timeline);
      if (chain !== undefined) chains.set(timeline, chain);
      else this.#warnOnce(`history-${timeline}`, `timeline history file of timeline ${timeline} is malformed; not following it`);
    }
    return chooseChain(chains, current);
  }

  /** wal_segment_size, from the uncompressed size recorded on the object PostgreSQL just asked for. */
  async #learnSegmentSize(name: string): Promise<number | undefined> {
    const o = this.#o;
    const wal = parseWalFileName(name);
    if (wal === undefined) return undefined;
    try {
      let head = await o.store.head(walKey(o.server, wal, o.compression));
      if (head === undefined) {
        const other = await findExisting(o.store, walBaseKey(o.server, wal));
        head = other === undefined ? undefined : await o.store.head(other);
      }
      if (head === undefined) return undefined;
      const size = Number(head.metadata?.[WAL_META.size] ?? head.size);
      if (isValidSegmentSize(size)) {
        o.log.debug(`wal_segment_size is ${size} bytes (from ${head.key})`);
        return size;
      }
      this.#warnOnce('segment-size', `${head.key} does not have a valid WAL segment size (${size} bytes); not prefetching`);
    } catch (err) {
      this.#warnOnce('segment-size-error', `cannot read ${name} from ${o.store.url}: ${describe(err)}`);
    }
    return undefined;
  }

  #start(name: string): void {
    const task = this.#download(name).finally(() => {
      this.#inflight.delete(name);
      this.#wake?.();
    });
    this.#inflight.set(name, task);
  }

  async #download(name: string): Promise<void> {
    const o = this.#o;
    const wal = parseWalFileName(name);
    if (wal === undefined) return;
    const marker = join(o.spoolDir, fetchingFileName(name));
    const target = join(o.spoolDir, `.${name}.download`);
    await writeFileAtomic(marker, '', { durable: false });
    try {
      let key = walKey(o.server, wal, o.compression);
      let result;
      try {
        result = await readWalObject(o.store, key, target, { crc32: true });
      } catch (err) {
        if (!isStoreError(err, 'not-found')) throw err;
        const other = await findExisting(o.store, walBaseKey(o.server, wal));
        if (other === undefined) {
          this.#retryAt.set(name, o.now() + o.absentRetryMs);
          return;
        }
        key = other;
        result = await readWalObject(o.store, key, target, { crc32: true });
      }
      if (!result.verified || result.crc32 === undefined) {
        // No checksum to hold it to: leave it to wal-restore's own download, which says so.
        await unlessMissing(unlink(target));
        this.#skip.add(name);
        return;
      }
      if (this.#stopped) {
        await unlessMissing(unlink(target));
        return;
      }
      await rename(target, join(o.spoolDir, entryFileName(name, result.sizeBytes, result.crc32)));
      this.#retryAt.delete(name);
      this.downloaded++;
      o.log.debug(`prefetched ${name} from ${key} (${result.sizeBytes} bytes)`);
    } catch (err) {
      await unlessMissing(unlink(target)).catch(() => undefined);
      if (this.#stopped) return;
      this.warnings++;
      o.log.warn(`prefetching ${name} failed: ${describe(err)}; trying again shortly (wal-restore falls back to its own download)`);
      this.#retryAt.set(name, o.now() + Math.max(o.absentRetryMs, 2_000));
    } finally {
      await unlessMissing(unlink(marker)).catch(() => undefined);
    }
  }

  async #sleep(ms: number): Promise<void> {
    if (this.#stopped) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.#wake = undefined;
  }

  readonly #warned = new Set<string>();
  #warnOnce(key: string, message: string): void {
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    this.warnings++;
    this.#o.log.warn(message);
  }
}

/** Waits until the owner record names this process; false when it names another (live) one. */
async function waitForOwnership(o: PrefetchWorkerOptions): Promise<boolean> {
  const deadline = o.now() + o.ownerWaitMs;
  for (;;) {
    const owner = await readOwner(o.spoolDir);
    if (owner?.pid === o.pid) return true;
    if (o.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Removes what a crashed predecessor may have left mid-download: markers and temporaries. The
 * rest is this recovery's (wal-restore cleared the folder before starting this process).
 * Temporaries of the control files (owner, position) are left alone: wal-restore may be writing
 * one at this very moment, and removing it would make its rename fail.
 */
async function removeLeftovers(dir: string): Promise<void> {
  const files = (await unlessMissing(readdir(dir))) ?? [];
  for (const file of files) {
    if (isControlTemp(file)) continue;
    if (isTempName(file) || file.endsWith('.fetching')) await unlessMissing(unlink(join(dir, file))).catch(() => undefined);
  }
}

function isControlTemp(file: string): boolean {
  return [PID_FILE, WANT_FILE].some((name) => file.startsWith(`.${name}.tmp-`));
}

/** Removes the spool folder's contents, and the log too unless something went wrong. */
async function removeSpool(o: PrefetchWorkerOptions, dropLog: boolean): Promise<void> {
  await clearSpool(o.spoolDir, { keepHistory: false }).catch(() => undefined);
  const owner = await readOwner(o.spoolDir);
  if (owner?.pid === o.pid) await unlessMissing(unlink(join(o.spoolDir, PID_FILE))).catch(() => undefined);
  if (dropLog) await unlessMissing(unlink(join(o.spoolDir, LOG_FILE))).catch(() => undefined);
  const left = (await unlessMissing(readdir(o.spoolDir)).catch(() => undefined)) ?? [];
  if (left.filter((f) => !isTempName(f)).length === 0) await rmdir(o.spoolDir).catch(() => undefined);
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * archive_command with batching: the WAL file PostgreSQL asks for, plus up to
 * archive_batch_size - 1 others that archive_status already marks .ready, uploaded
 * archive_parallel at a time. Each extra file that the store confirmed gets a record in the
 * archive spool, so that PostgreSQL's later call for it only re-checks the record (see
 * archive-records.ts) and exits at once, without loading a cloud SDK.
 *
 * The asked file alone decides the exit code: it is reported archived only once its own put
 * resolved. The others are best-effort; one that fails simply has no record, and PostgreSQL's
 * own call for it later uploads it (or reports its error) the ordinary way.
 */
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { ObjectStore } from '../../../providers/object-store.ts';
import type { Compression } from '../../io/compression.ts';
import { parseWalFileName } from '../../pg/wal-names.ts';
import { CloudbarmanError } from '../errors.ts';
import { forEachBounded } from '../restore/bounded-pool.ts';
import type { Logger } from '../log.ts';
import {
  checkRecordLocally, confirmRecordInStore, fingerprintOf, listRecords, pruneRecords, readPostmasterBoot, removeRecord, settledStat,
  shellKey, shellStatKey, writeRecord, type ArchiveRecord,
} from './archive-records.ts';
import { archiveSpoolDir, ensureSpoolDir, errnoCode, spoolRoot, unlessMissing } from './spool-files.ts';
import type { RangeHasher } from '../../io/part-workers.ts';
import type { WalUploadRequest, WalUploadResult } from './wal-upload.ts';

export interface WalArchiveRequest {
  server: string;
  /** %p: relative to the data directory (the working directory), or absolute. */
  walPath: string;
  compression: Compression;
  /** The store's URL, recorded so that a record never vouches for another destination. */
  destination: string;
  /** archive_batch_size: files per call, the asked one included; 1 = no batch. */
  batchSize: number;
  /** archive_parallel: uploads at once. */
  parallel: number;
  /** spool_directory; undefined = cloudbarman_spool inside pg_wal. */
  spoolDirectory: string | undefined;
  /**
   * The config file's shellStatKey, when the launcher may confirm this call's records in sh: the
   * caller read its settings from that file alone, and the file had not changed for 2 s before it
   * was read. Undefined: records carry no `sh` key.
   */
  configStatKey?: string;
  /** Opens the store on first use: a call confirmed by its record never needs one. */
  getStore: () => Promise<ObjectStore>;
  log: Logger;
  now: () => Date;
}

export interface WalArchiveResult extends WalUploadResult {
  /** How the asked file was found archived: by this call, or by the record of an earlier batch. */
  via: 'upload' | 'spool-record';
  /** What the batch did with the other .ready files, when there was a batch. */
  batch?: { files: number; archived: number; failed: number };
}

/** Archives one WAL file, and a batch of the .ready files after it; resolves once the asked one is durable. */
export async function archiveWal(req: WalArchiveRequest): Promise<WalArchiveResult> {
  const name = basename(req.walPath);
  const wal = parseWalFileName(name);
  const walPath = resolve(req.walPath);
  const walDir = dirname(walPath);
  const statusDir = join(walDir, 'archive_status');
  // Only a real pg_wal (with archive_status) gets a spool; anything else is archived plainly.
  const isWalDir = wal !== undefined && (await unlessMissing(stat(statusDir)))?.isDirectory() === true;
  if (!isWalDir) {
    const { uploadWal } = await import('./wal-upload.ts');
    return { ...(await uploadWal(await uploadRequest(req, req.walPath))), via: 'upload' };
  }

  const spool = archiveSpoolDir(spoolRoot(req.spoolDirectory, walDir), req.server);
  const boot = await readPostmasterBoot(dirname(walDir));
  const confirmed = await confirmFromRecord(req, spool, name, walPath, boot);
  if (confirmed !== undefined) return confirmed;

  // The upload code (and what it loads: crypto, codecs) only when something is uploaded.
  const { uploadWal } = await import('./wal-upload.ts');

  if (req.batchSize <= 1) return { ...(await uploadWal(await uploadRequest(req, walPath))), via: 'upload' };

  const readyNames = await listReady(statusDir);
  const recorded = await listRecords(spool).catch(() => new Set<string>());
  const others = selectBatch([...readyNames], name, recorded, req.batchSize - 1);
  let spoolReady = others.length > 0;
  if (spoolReady) {
    try {
      await ensureSpoolDir(spool);
    } catch (err) {
      req.log.warn(`cannot create the archive spool ${spool} (${errnoCode(err) ?? String(err)}): archiving ${name} alone`);
      spoolReady = false;
    }
  }
  const batch = spoolReady ? others : [];
  // SHA-256 of 16 MiB takes ~50 ms here without SHA extensions; on this thread the hashes of the
  // segments in flight would queue behind each other while compression already runs on the thread
  // pool. One hashing thread (started once, ~20 ms) is worth it from a few segments on.
  const pool = batch.length >= HASH_THREAD_FROM && req.parallel > 1 ? await openHashPool() : undefined;
  let outcomes;
  try {
    outcomes = await runLimited([name, ...batch], req.parallel, async (file) => {
      const path = join(walDir, file);
      // Taken before the read and again after the upload: recorded only when the two agree.
      const before = file === name ? undefined : await settledStat(path, req.now().getTime()).catch(() => undefined);
      const result = await uploadWal({ ...(await uploadRequest(req, path)), crc32: file !== name, ...(pool === undefined ? {} : { hashPool: pool }) });
      if (file !== name) {
        const after = before === undefined ? undefined : await settledStat(path, req.now().getTime()).catch(() => undefined);
        const unchanged = before !== undefined && after !== undefined && fingerprintOf(before) === fingerprintOf(after) ? before : undefined;
        // The launcher looks for records only in the default spool, and needs the postmaster identity.
        const sh = unchanged !== undefined && boot !== undefined && req.configStatKey !== undefined && req.spoolDirectory === undefined
          ? shellKey(boot, shellStatKey(unchanged), req.configStatKey) : undefined;
        await writeRecord(spool, recordOf(req, result, boot, unchanged === undefined ? undefined : fingerprintOf(unchanged), sh));
      }
      return result;
    });
  } finally {
    await pool?.close();
  }

  let archived = 0;
  let failed = 0;
  for (let i = 1; i < outcomes.length; i++) {
    const outcome = outcomes[i];
    if (outcome?.ok === true) archived++;
    else {
      failed++;
      req.log.warn(`batch: ${batch[i - 1] ?? '?'} was not archived ahead (${describe(outcome?.error)}); PostgreSQL's own call for it will retry`);
    }
  }
  if (batch.length > 0) req.log.info(`archived ${archived} of ${batch.length} more .ready WAL files ahead of PostgreSQL`);
  if (spoolReady) {
    await pruneRecords(spool, readyNames, req.now().getTime(), mtimeOf).catch((err: unknown) => req.log.debug(`pruning ${spool}: ${describe(err)}`));
  }

  const asked = outcomes[0];
  if (asked === undefined || !asked.ok) throw asked?.error ?? new CloudbarmanError('failed', `archiving ${name} did not run`);
  const result: WalArchiveResult = { ...asked.value, via: 'upload' };
  if (batch.length > 0) result.batch = { files: batch.length, archived, failed };
  return result;
}

/**
 * The other WAL files to archive in this call, in the order PostgreSQL's archiver would ask for
 * them (timeline history files first, then by name), leaving out the asked file and the ones
 * already recorded. Pure, for tests.
 */
export function selectBatch(ready: readonly string[], asked: string, recorded: ReadonlySet<string>, limit: number): string[] {
  if (limit <= 0) return [];
  return ready
    .filter((n) => n !== asked && !recorded.has(n) && parseWalFileName(n) !== undefined)
    .sort(archiveOrder)
    .slice(0, limit);
}

/** PostgreSQL's archiver order (pgarch.c): timeline history files first, then by name. */
export function archiveOrder(a: string, b: string): number {
  const ah = a.endsWith('.history');
  const bh = b.endsWith('.history');
  if (ah !== bh) return ah ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

async function confirmFromRecord(req: WalArchiveRequest, spool: string, name: string, walPath: string, boot: string | undefined): Promise<WalArchiveResult | undefined> {
  let check;
  try {
    check = await checkRecordLocally(spool, name, walPath, { destination: req.destination, boot });
  } catch (err) {
    req.log.debug(`reading the spool record of ${name}: ${describe(err)}; archiving it the ordinary way`);
    return undefined;
  }
  if (check.verdict === 'none') return undefined;
  if (check.verdict === 'invalid') {
    req.log.notice(`ignoring the spool record of ${name}: ${check.reason}; archiving it the ordinary way`);
    await removeRecord(spool, name).catch(() => undefined);
    return undefined;
  }
  if (check.verdict === 'ask-store') {
    // Written before this postmaster started: perhaps before a crash. Trust only what the store shows.
    const store = await req.getStore();
    if (!(await confirmRecordInStore(store, check.record))) {
      req.log.notice(`the spool record of ${name} predates this postmaster and the store does not confirm it; archiving it the ordinary way`);
      await removeRecord(spool, name).catch(() => undefined);
      return undefined;
    }
  }
  // PostgreSQL marks the file done once we exit 0; the record has served its purpose.
  await removeRecord(spool, name).catch(() => undefined);
  req.log.debug(`${name} was archived ahead by an earlier batch (${check.record.key}); spool record confirmed`);
  const r = check.record;
  return { name, key: r.key, status: 'already-archived', sizeBytes: r.size, storedBytes: 0, sha256: r.sha256, crc32: r.crc32, via: 'spool-record' };
}

function recordOf(req: WalArchiveRequest, result: WalUploadResult, boot: string | undefined, file: string | undefined, sh: string | undefined): ArchiveRecord {
  if (result.crc32 === undefined) throw new Error(`internal: no CRC-32 for ${result.name}`);
  return {
    format: 1,
    name: result.name,
    size: result.sizeBytes,
    crc32: result.crc32,
    sha256: result.sha256,
    key: result.key,
    destination: req.destination,
    boot: boot ?? null,
    archivedAt: req.now().toISOString(),
    ...(file === undefined ? {} : { file }),
    ...(sh === undefined ? {} : { sh }),
  };
}

/** Batches of at least this many other segments hash on a worker thread. */
const HASH_THREAD_FROM = 3;

/** One hashing thread and shared-memory buffers for it (src/io/part-workers.ts), loaded only for a batch. */
async function openHashPool(): Promise<{ digest: RangeHasher; sharedBuffer: (size: number) => Buffer; close(): Promise<void> }> {
  const { PartWorkers, sharedBuffer } = await import('../../io/part-workers.ts');
  const workers = new PartWorkers(1);
  return { digest: workers.digest, sharedBuffer, close: () => workers.close() };
}

async function uploadRequest(req: WalArchiveRequest, walPath: string): Promise<WalUploadRequest> {
  return { store: await req.getStore(), server: req.server, walPath, compression: req.compression, log: req.log };
}

/** WAL names with a .ready file in archive_status. */
async function listReady(statusDir: string): Promise<Set<string>> {
  const names = (await unlessMissing(readdir(statusDir))) ?? [];
  return new Set(names.filter((n) => n.endsWith('.ready')).map((n) => n.slice(0, -'.ready'.length)));
}

async function mtimeOf(path: string): Promise<number | undefined> {
  return (await unlessMissing(stat(path)))?.mtimeMs;
}

type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** Runs fn over items, at most `limit` at once, in order of items; one failure does not stop the others. */
async function runLimited<T>(items: readonly string[], limit: number, fn: (item: string) => Promise<T>): Promise<Outcome<T>[]> {
  const outcomes: Outcome<T>[] = new Array<Outcome<T>>(items.length);
  await forEachBounded(items.map((item, index) => ({ item, index })), limit, new AbortController(), async ({ item, index }) => {
    try {
      outcomes[index] = { ok: true, value: await fn(item) };
    } catch (error) {
      outcomes[index] = { ok: false, error };
    }
  });
  return outcomes;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

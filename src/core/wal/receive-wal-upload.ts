/**
 * receive-wal's way into the store, one operation at a time in a background worker, so that a
 * slow or unreachable store never stalls the stream (the local directory absorbs the backlog).
 *
 * - A complete segment (and a timeline history file) goes through uploadWal, exactly as
 *   archive_command's wal-upload stores it: same key, same metadata, and the same rule that an
 *   object already there with the same SHA-256 is a success (archive_command may have stored it
 *   first) and one with different content is an integrity error. Then the local file is deleted.
 * - The segment being written is uploaded as <segment>.partial, every partial interval or, in
 *   synchronous mode, as soon as new WAL is there. That object is the one exception to
 *   write-once: it is replaced as it grows, and deleted once the complete segment is stored.
 *   It carries cb_source=receive-wal; a .partial without that mark (PostgreSQL archives one for
 *   the old timeline at a promotion) is never replaced or deleted.
 * - The .partial of a timeline that ended inside a segment is uploaded one last time and kept, as
 *   Barman keeps it: the WAL of the old timeline's last segment, up to where it ended.
 *
 * The worker also tracks how far the store holds WAL without a gap: in synchronous mode that is
 * the flush position reported to the server.
 */
import { createHash } from 'node:crypto';
import { open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { ObjectStore } from '../../../providers/object-store.ts';
import { listAll } from '../../../providers/object-store.ts';
import { compressBuffer, type Compression } from '../../io/compression.ts';
import { formatLsn } from '../../pg/lsn.ts';
import { parseWalFileName } from '../../pg/wal-names.ts';
import { segmentStartOf } from '../../pg/wal-position.ts';
import { CloudbarmanError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { storeFailure } from '../store/store-failure.ts';
import type { OpenSegment } from './receive-wal-segments.ts';
import { PARTIAL_SOURCE, PARTIAL_SOURCE_META, WAL_FORMAT_VERSION, WAL_META, isWalVariant, walBaseKey, walKey } from './wal-keys.ts';
import { uploadWal } from './wal-upload.ts';

export { PARTIAL_SOURCE, PARTIAL_SOURCE_META } from './wal-keys.ts';
/** Metadata on a .partial object: the LSN up to which it holds streamed WAL. */
export const PARTIAL_END_META = 'cb_partial_end';

/** What the uploader needs. */
export interface WalUploaderOptions {
  store: ObjectStore;
  server: string;
  compression: Compression;
  /** The local directory the files are in. */
  dir: string;
  segmentSize: number;
  log: Logger;
  now: () => number;
  /** Upload the open segment's .partial this often; 0 = only when stopping. */
  partialIntervalMs: number;
  /** The segment being written right now. */
  currentSegment: () => OpenSegment | undefined;
  /** Called after each store write that may have moved storedEnd, or stored a complete segment. */
  onStored: (event: { storedEnd: bigint; segment?: string }) => void;
  /** Called once with an error the stream must stop for (an integrity error). */
  onFatal: (err: CloudbarmanError) => void;
}

/** Counts for the summary. */
export interface UploadStats {
  segmentsUploaded: number;
  segmentsAlreadyArchived: number;
  historyFiles: number;
  partialUploads: number;
  partialsKept: number;
  /** The last complete segment stored. */
  lastSegment: string | undefined;
}

const MAX_BACKOFF_MS = 60_000;

/** The background worker; start() once, then enqueue; drain() and stop() at the end. */
export class WalUploader {
  readonly #o: WalUploaderOptions;
  readonly #history: string[] = [];
  readonly #segments: string[] = [];
  readonly #finals: { segment: OpenSegment; end: bigint | undefined; discard: boolean }[] = [];
  /** Per segment: how far its .partial in the store reaches, and whether a foreign one blocks it. */
  readonly #partials = new Map<string, { uploadedEnd: bigint; foreign: boolean; ourKeys: string[] }>();
  #storedEnd = 0n;
  #synchronous = false;
  #lastPartialAt: number;
  #backoffMs = 0;
  #retryAt = 0;
  #forcePartial = false;
  #stopped = false;
  #fatal = false;
  #waiter: (() => void) | undefined;
  /** Set by poke(): something may be due; the worker checks before it sleeps, so no wake-up is lost. */
  #poked = false;
  #loop: Promise<void> | undefined;
  readonly stats: UploadStats = { segmentsUploaded: 0, segmentsAlreadyArchived: 0, historyFiles: 0, partialUploads: 0, partialsKept: 0, lastSegment: undefined };

  constructor(options: WalUploaderOptions) {
    this.#o = options;
    this.#lastPartialAt = options.now();
  }

  /** Everything before this LSN is in the store (complete segments, or a .partial reaching it). */
  get storedEnd(): bigint {
    return this.#storedEnd;
  }

  /** Sets where the gap-free stored range ends (the start of the first WAL not known to be stored). */
  setStoredEnd(lsn: bigint): void {
    this.#storedEnd = lsn;
  }

  /** Synchronous mode: upload the open segment's .partial whenever it grew, not on the interval. */
  setSynchronous(on: boolean): void {
    this.#synchronous = on;
    this.poke();
  }

  /** Starts the worker. */
  start(): void {
    this.#loop ??= this.#run();
  }

  /** A timeline history file in the local directory, to store first. */
  addHistory(name: string): void {
    if (!this.#history.includes(name)) this.#history.push(name);
    this.poke();
  }

  /** A complete segment in the local directory. */
  addSegment(name: string): void {
    if (!this.#segments.includes(name)) this.#segments.push(name);
    this.poke();
  }

  /**
   * The .partial of an ended timeline (or one left behind by a fork or a gap): store it one last
   * time, keep it in the store, delete it locally. `end`: where its WAL ends, when known.
   */
  addFinalPartial(segment: OpenSegment, end: bigint | undefined): void {
    this.#finals.push({ segment, end, discard: false });
    this.poke();
  }

  /**
   * The same, when the server archives the old timeline's .partial itself (archive_mode on, at a
   * promotion): our .partial objects of the segment are removed rather than kept, so that
   * archive_command finds no other copy under its name; the local file goes too.
   */
  discardPartial(segment: OpenSegment): void {
    this.#finals.push({ segment, end: undefined, discard: true });
    this.poke();
  }

  /** New WAL was written (wakes the worker in synchronous mode). */
  poke(): void {
    this.#poked = true;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.();
  }

  /** True when nothing is waiting to be stored. */
  get idle(): boolean {
    return this.#history.length === 0 && this.#segments.length === 0 && this.#finals.length === 0 && !this.#partialDue(true);
  }

  /**
   * Stores everything pending, including the open segment's .partial, for at most timeoutMs.
   * True when all of it was stored; what was not stays in the local directory for the next run.
   */
  async drain(timeoutMs: number): Promise<boolean> {
    this.#forcePartial = true;
    this.#retryAt = 0;
    const deadline = this.#o.now() + timeoutMs;
    while (!this.#fatal && !this.idle && this.#o.now() < deadline) {
      this.poke();
      // A referenced timer: with the connection closed, it is what keeps the process alive meanwhile.
      await new Promise<void>((resolve) => setTimeout(resolve, 50));
    }
    return this.idle;
  }

  /** Stops the worker after its current operation. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.poke();
    await this.#loop;
  }

  async #run(): Promise<void> {
    while (!this.#stopped && !this.#fatal) {
      this.#poked = false;
      let worked = false;
      if (this.#o.now() >= this.#retryAt) {
        try {
          worked = await this.#step();
          this.#backoffMs = 0;
        } catch (err) {
          const failure = err instanceof CloudbarmanError ? err : storeFailure(err, 'storing streamed WAL', this.#o.store.url);
          if (failure.kind === 'integrity') {
            this.#fatal = true;
            this.#o.onFatal(failure);
            return;
          }
          this.#backoffMs = Math.min(MAX_BACKOFF_MS, this.#backoffMs === 0 ? 1000 : this.#backoffMs * 2);
          this.#retryAt = this.#o.now() + this.#backoffMs;
          this.#o.log.warn(`${failure.message}; retrying in ${Math.round(this.#backoffMs / 1000)} s (the WAL stays in ${this.#o.dir} meanwhile)`);
        }
      }
      if (!worked) await this.#wait();
    }
  }

  /** Does the most urgent pending thing; false when there was nothing to do. */
  async #step(): Promise<boolean> {
    const history = this.#history[0];
    if (history !== undefined) {
      await this.#storeFile(history);
      this.#history.shift();
      this.stats.historyFiles++;
      return true;
    }
    const segment = this.#segments[0];
    if (segment !== undefined) {
      await this.#storeSegment(segment);
      this.#segments.shift();
      return true;
    }
    const final = this.#finals[0];
    if (final !== undefined && final.discard) {
      await this.#removeOurPartials(final.segment.name, true);
      await unlink(final.segment.path).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'ENOENT') throw err; });
      this.#finals.shift();
      return true;
    }
    if (final !== undefined) {
      const { segment: kept, end } = final;
      await this.#uploadPartial(kept, { end });
      await unlink(kept.path).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'ENOENT') throw err; });
      this.#finals.shift();
      this.#partials.delete(kept.name);
      this.stats.partialsKept++;
      this.#o.log.notice(`kept ${kept.name}.partial in the store: the WAL of timeline ${kept.timeline} in that segment${end === undefined ? '' : `, up to ${formatLsn(end)}`}`);
      return true;
    }
    if (this.#partialDue(false)) {
      const current = this.#o.currentSegment();
      this.#lastPartialAt = this.#o.now();
      if (current !== undefined) await this.#uploadPartial(current);
      this.#forcePartial = false;
      return true;
    }
    this.#forcePartial = false;
    return false;
  }

  #partialDue(ignoreTime: boolean): boolean {
    const current = this.#o.currentSegment();
    if (current === undefined) return false;
    const known = this.#partials.get(current.name);
    if (known?.foreign === true) return false;
    if (current.written <= (known?.uploadedEnd ?? current.start)) return false;
    if (ignoreTime || this.#synchronous || this.#forcePartial) return true;
    return this.#o.partialIntervalMs > 0 && this.#o.now() - this.#lastPartialAt >= this.#o.partialIntervalMs;
  }

  async #wait(): Promise<void> {
    if (this.#poked || this.#stopped) return;
    let ms = 60_000;
    const now = this.#o.now();
    if (this.#retryAt > now) ms = this.#retryAt - now;
    else if (this.#o.partialIntervalMs > 0) ms = Math.max(10, this.#lastPartialAt + this.#o.partialIntervalMs - now);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => { this.#waiter = undefined; resolve(); }, Math.min(ms, 60_000));
      timer.unref();
      this.#waiter = () => { clearTimeout(timer); resolve(); };
    });
  }

  /** A complete segment: uploadWal (de-duplicated against archive_command), then our .partial and the local file go. */
  async #storeSegment(segment: string): Promise<void> {
    const result = await this.#storeFile(segment);
    if (result === 'already-archived') this.stats.segmentsAlreadyArchived++;
    else this.stats.segmentsUploaded++;
    this.stats.lastSegment = segment;
    await this.#removeOurPartials(segment);
    const start = segmentStartOf(segment, this.#o.segmentSize);
    if (start <= this.#storedEnd) {
      const end = start + BigInt(this.#o.segmentSize);
      if (end > this.#storedEnd) this.#storedEnd = end;
    }
    this.#o.onStored({ storedEnd: this.#storedEnd, segment });
  }

  async #storeFile(name: string): Promise<'uploaded' | 'already-archived'> {
    const path = join(this.#o.dir, name);
    const result = await uploadWal({ store: this.#o.store, server: this.#o.server, walPath: path, compression: this.#o.compression, log: this.#o.log });
    this.#o.log.info(result.status === 'uploaded' ? `stored ${name}` : `${name} was already archived with identical content`);
    await unlink(path).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'ENOENT') throw err; });
    return result.status;
  }

  /** Uploads (replacing) our .partial of a segment with its bytes as they are now; `final` for one that is kept. */
  async #uploadPartial(segment: OpenSegment, final?: { end: bigint | undefined }): Promise<void> {
    const fileName = `${segment.name}.partial`;
    const wal = parseWalFileName(fileName);
    if (wal === undefined) throw new Error(`internal: ${fileName} is not a WAL file name`);
    const baseKey = walBaseKey(this.#o.server, wal);
    const key = walKey(this.#o.server, wal, this.#o.compression);
    const where = `${this.#o.store.url} ${key}`;
    // A kept .partial is looked at afresh: PostgreSQL may have archived its own copy meanwhile.
    if (final !== undefined) this.#partials.delete(segment.name);
    let known = this.#partials.get(segment.name);
    if (known === undefined) {
      known = { uploadedEnd: 0n, foreign: false, ourKeys: [] };
      try {
        for await (const item of listAll(this.#o.store, baseKey)) {
          if (!isWalVariant(baseKey, item.key)) continue;
          const head = await this.#o.store.head(item.key);
          if (head?.metadata?.[PARTIAL_SOURCE_META] === PARTIAL_SOURCE) known.ourKeys.push(item.key);
          else known.foreign = true;
        }
      } catch (err) {
        throw storeFailure(err, `looking for ${fileName}`, where);
      }
      this.#partials.set(segment.name, known);
      if (known.foreign) this.#o.log.notice(`${fileName} is already in the store from another source (archive_command at a promotion?); receive-wal leaves it as it is`);
    }
    if (known.foreign) return;
    try {
      // The cheap re-check before each replacement: archive_command may have stored one since.
      const head = await this.#o.store.head(key);
      if (head !== undefined && head.metadata?.[PARTIAL_SOURCE_META] !== PARTIAL_SOURCE) {
        known.foreign = true;
        this.#o.log.notice(`${fileName} is now in the store from another source (archive_command at a promotion?); receive-wal leaves it as it is`);
        return;
      }
    } catch (err) {
      throw storeFailure(err, `looking for ${fileName}`, where);
    }

    // What was written before this point is complete in the file; anything later may be half-written,
    // which PostgreSQL's record CRCs catch. The object's metadata says where the streamed WAL ends.
    const end = final === undefined ? segment.written : final.end;
    const data = await readSegmentFile(segment.path, this.#o.segmentSize);
    if (data === undefined) return; // completed and renamed meanwhile: the segment itself is stored next
    const sha256 = createHash('sha256').update(data).digest('hex');
    const body = await compressBuffer(data, this.#o.compression);
    const metadata = {
      [WAL_META.sha256]: sha256,
      [WAL_META.size]: String(data.length),
      [WAL_META.compression]: this.#o.compression,
      [WAL_META.format]: WAL_FORMAT_VERSION,
      [PARTIAL_SOURCE_META]: PARTIAL_SOURCE,
      ...(end === undefined ? {} : { [PARTIAL_END_META]: formatLsn(end) }),
    };
    try {
      await this.#o.store.put(key, body, { metadata, contentLength: body.length, ...(this.#o.compression === 'none' ? { contentSha256: sha256 } : {}) });
      const stale = known.ourKeys.filter((k) => k !== key);
      if (stale.length > 0) await this.#o.store.delete(stale);
    } catch (err) {
      throw storeFailure(err, `uploading ${fileName}`, where);
    }
    known.ourKeys = [key];
    this.stats.partialUploads++;
    if (end === undefined || final !== undefined) return;
    known.uploadedEnd = end;
    this.#o.log.debug(`uploaded ${fileName} up to ${formatLsn(end)}`);
    // Only the segment still being streamed extends the stored range: a kept .partial may be a
    // fork's tail, and streaming may have moved to another timeline while this upload ran.
    if (this.#o.currentSegment()?.name === segment.name && segment.start <= this.#storedEnd && end > this.#storedEnd) {
      this.#storedEnd = end;
      this.#o.onStored({ storedEnd: this.#storedEnd });
    }
  }

  /** Deletes the .partial objects of a segment that receive-wal wrote (the segment is stored, or the server archives its own). */
  async #removeOurPartials(segment: string, mustLook = false): Promise<void> {
    const wal = parseWalFileName(`${segment}.partial`);
    if (wal === undefined) return;
    const baseKey = walBaseKey(this.#o.server, wal);
    const known = this.#partials.get(segment);
    this.#partials.delete(segment);
    if (!mustLook && known !== undefined && known.ourKeys.length === 0) return;
    try {
      const ours: string[] = [];
      for await (const item of listAll(this.#o.store, baseKey)) {
        if (!isWalVariant(baseKey, item.key)) continue;
        const head = await this.#o.store.head(item.key);
        if (head?.metadata?.[PARTIAL_SOURCE_META] === PARTIAL_SOURCE) ours.push(item.key);
      }
      if (ours.length > 0) await this.#o.store.delete(ours);
    } catch (err) {
      // The segment is safely stored; a leftover .partial beside it only costs space.
      this.#o.log.warn(`${storeFailure(err, `removing ${segment}.partial`, this.#o.store.url).message}; it stays beside the complete segment`);
    }
  }
}

/** Reads a whole segment file; undefined when it is gone (renamed to the complete segment). */
async function readSegmentFile(path: string, size: number): Promise<Buffer | undefined> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const buf = Buffer.alloc(size);
    let off = 0;
    while (off < size) {
      const { bytesRead } = await handle.read(buf, off, size - off, off);
      if (bytesRead === 0) break;
      off += bytesRead;
    }
    return buf;
  } finally {
    await handle.close();
  }
}

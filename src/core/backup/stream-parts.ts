/**
 * Parts built from files that arrive as a stream (the tar archives of BASE_BACKUP), with no
 * disk in between. Files are packed in arrival order into parts of part_size raw bytes, and a
 * file larger than the room left is split across parts, by the rule of part-plan.ts; then each
 * full part is compressed, hashed and stored by storePart (part-upload.ts), as for
 * backup_method local, so the manifest, restore, verify and retention see no difference.
 *
 * Bounded memory: at most `jobs` parts are being stored at once, plus the one being filled.
 * A write that fills a part waits while all jobs are busy; the caller (the tar reader) then
 * stops pulling from the replication connection, whose socket pauses. global/pg_control is held
 * back (8 KiB) and stored last, in a part of its own, once every other part is stored.
 */
import { throwIfAborted } from './abort.ts';
import type { AssemblyFile } from './manifest-assembly.ts';
import { LAST_FILE } from './part-plan.ts';
import { partBuffers, storePart, type PartBuffers, type PartOutcome, type StoreContext, type StoredChunk } from './part-upload.ts';

/** How to build parts. */
export interface StreamPartsOptions {
  jobs: number;
  partSize: number;
  ctx: StoreContext;
  /** Called as each part is stored. */
  onPart?: (outcome: PartOutcome) => void;
  /** The file stored alone in the last part; global/pg_control. */
  lastPath?: string;
}

interface Filling {
  buffers: PartBuffers;
  chunks: StoredChunk[];
  used: number;
}

interface OpenFile {
  index: number;
  offset: number;
  /** Bytes of the held-back last file (pg_control). */
  held?: Buffer[];
}

/** Packs streamed files into parts and stores them, `jobs` at a time. */
export class StreamParts {
  /** Every file started, in arrival order; PartOutcome chunks refer to these indexes. */
  readonly files: AssemblyFile[] = [];
  readonly #jobs: number;
  readonly #partSize: number;
  readonly #ctx: StoreContext;
  readonly #onPart: ((outcome: PartOutcome) => void) | undefined;
  readonly #lastPath: string;
  readonly #stop = new AbortController();
  readonly #outcomes: PartOutcome[] = [];
  readonly #inFlight = new Set<Promise<void>>();
  readonly #free: PartBuffers[] = [];
  #created = 0;
  #current: Filling | undefined;
  #file: OpenFile | undefined;
  #last: { index: number; bytes: Buffer } | undefined;
  #nextIndex = 0;
  #failure: unknown;
  #finished = false;
  /** The most parts ever stored at once (for tests and logs). */
  maxInFlight = 0;

  constructor(opts: StreamPartsOptions) {
    if (!Number.isSafeInteger(opts.partSize) || opts.partSize < 1) throw new RangeError(`part size ${opts.partSize} is not a positive byte count`);
    this.#jobs = Math.max(1, Math.floor(opts.jobs));
    this.#partSize = opts.partSize;
    this.#ctx = { ...opts.ctx, signal: AbortSignal.any([opts.ctx.signal, this.#stop.signal]) };
    this.#onPart = opts.onPart;
    this.#lastPath = opts.lastPath ?? LAST_FILE;
  }

  /** Parts stored so far. */
  get partsStored(): number {
    return this.#outcomes.length;
  }

  /** Parts numbered so far (stored, in flight, or sealed). */
  get partsStarted(): number {
    return this.#nextIndex;
  }

  /** Starts the next file; its bytes follow through write(), then endFile(). */
  startFile(file: AssemblyFile): void {
    if (this.#file !== undefined) throw new Error(`internal: ${file.path} started before ${this.files[this.#file.index]?.path ?? '?'} ended`);
    if (this.#finished) throw new Error('internal: a file was started after finish()');
    const index = this.files.push(file) - 1;
    this.#file = file.path === this.#lastPath ? { index, offset: 0, held: [] } : { index, offset: 0 };
  }

  /** The next bytes of the current file; waits while every job is busy. */
  async write(data: Buffer): Promise<void> {
    this.#check();
    const file = this.#file;
    if (file === undefined) throw new Error('internal: data before a file was started');
    if (file.held !== undefined) {
      file.held.push(Buffer.from(data));
      file.offset += data.length;
      return;
    }
    let at = 0;
    while (at < data.length) {
      const part = this.#current ?? (this.#current = await this.#acquire());
      const n = Math.min(data.length - at, this.#partSize - part.used);
      data.copy(part.buffers.input, part.used, at, at + n);
      const tail = part.chunks[part.chunks.length - 1];
      if (tail !== undefined && tail.file === file.index && tail.fileOffset + tail.length === file.offset) tail.length += n;
      else part.chunks.push({ file: file.index, fileOffset: file.offset, length: n, partOffset: part.used, sha256: '' });
      part.used += n;
      file.offset += n;
      at += n;
      if (part.used === this.#partSize) await this.#seal();
    }
  }

  /** The current file is complete. */
  endFile(): void {
    const file = this.#file;
    if (file === undefined) throw new Error('internal: endFile without a file');
    if (file.held !== undefined) {
      if (this.#last !== undefined) throw new Error(`internal: ${this.#lastPath} arrived twice`);
      this.#last = { index: file.index, bytes: Buffer.concat(file.held) };
    }
    this.#file = undefined;
  }

  /**
   * Stores the part being filled, waits for every part, then stores the held-back last file in a
   * part of its own. Returns every part's outcome (in completion order), for assembleManifest.
   */
  async finish(): Promise<PartOutcome[]> {
    if (this.#file !== undefined) throw new Error(`internal: finish() while ${this.files[this.#file.index]?.path ?? '?'} is open`);
    this.#check();
    this.#finished = true;
    if (this.#current !== undefined && this.#current.used > 0) await this.#seal();
    await this.#drain();
    this.#check();
    if (this.#last !== undefined) {
      const { index, bytes } = this.#last;
      const buffers = partBuffers(Math.max(1, bytes.length), this.#ctx);
      bytes.copy(buffers.input);
      const chunks: StoredChunk[] = bytes.length === 0 ? [] : [{ file: index, fileOffset: 0, length: bytes.length, partOffset: 0, sha256: '' }];
      this.#record(await storePart(this.#nextIndex++, buffers.input.subarray(0, bytes.length), chunks, [], buffers, this.#ctx));
    }
    return [...this.#outcomes];
  }

  /** True when the last file (pg_control) arrived. */
  get hasLastFile(): boolean {
    return this.#last !== undefined;
  }

  /** Stops every store in flight and waits for them to settle. */
  async abort(reason: unknown): Promise<void> {
    this.#failure ??= reason;
    this.#stop.abort(reason);
    await this.#drain();
  }

  /** Hands the part being filled to a job, once one is free. */
  async #seal(): Promise<void> {
    const part = this.#current;
    if (part === undefined) return;
    this.#current = undefined;
    while (this.#inFlight.size >= this.#jobs) {
      await Promise.race(this.#inFlight);
      this.#check();
    }
    const index = this.#nextIndex++;
    const storing = storePart(index, part.buffers.input.subarray(0, part.used), part.chunks, [], part.buffers, this.#ctx).then(
      (outcome) => {
        this.#record(outcome);
        this.#free.push(part.buffers);
      },
      (err: unknown) => {
        this.#failure ??= err;
        this.#stop.abort(err);
      },
    );
    const tracked = storing.finally(() => this.#inFlight.delete(tracked));
    this.#inFlight.add(tracked);
    this.maxInFlight = Math.max(this.maxInFlight, this.#inFlight.size);
  }

  /** A free set of buffers: at most jobs + 1 are ever made (jobs storing, one filling). */
  async #acquire(): Promise<Filling> {
    for (;;) {
      this.#check();
      const buffers = this.#free.pop() ?? (this.#created <= this.#jobs ? (this.#created++, partBuffers(this.#partSize, this.#ctx)) : undefined);
      if (buffers !== undefined) return { buffers, chunks: [], used: 0 };
      if (this.#inFlight.size === 0) throw new Error('internal: no part buffer is free and none is in flight');
      await Promise.race(this.#inFlight);
    }
  }

  async #drain(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  #record(outcome: PartOutcome): void {
    this.#outcomes.push(outcome);
    this.#onPart?.(outcome);
  }

  #check(): void {
    if (this.#failure !== undefined) throw this.#failure;
    throwIfAborted(this.#ctx.signal);
  }
}

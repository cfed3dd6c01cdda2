/**
 * Worker threads for the CPU-heavy steps of a backup part that Node does not already run off the
 * main thread: SHA-256 (about 300 MB/s per core on CPUs without SHA extensions) and LZ4, which is
 * JavaScript (lz4.ts). On the main thread either would cap the whole backup at one core whatever
 * --jobs says. Workers read the part from shared memory (a Buffer over a SharedArrayBuffer), so
 * nothing is copied; LZ4 writes its frame into a shared buffer the caller reuses. Any input that is not
 * shared memory is processed on the calling thread instead: a copy sent to a worker would linger in
 * that worker's heap until it happened to collect garbage, and memory would grow with the backup.
 *
 * This module is also the workers' entry point: loaded in a worker started by PartWorkers, it
 * serves requests instead of exporting anything useful.
 */
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { lz4EncodeFrame } from './lz4.ts';

/** A byte range of the buffer to hash. */
export interface HashRange {
  offset: number;
  length: number;
}

/** Hashes ranges of a buffer; resolves with one hex digest per range, in order. */
export type RangeHasher = (data: Uint8Array, ranges: readonly HashRange[]) => Promise<string[]>;

/** The same on the calling thread: for tiny inputs, and where no workers are wanted. */
export const hashOnThisThread: RangeHasher = async (data, ranges) => sha256Ranges(data, ranges);

/** A Buffer whose memory the workers can read without a copy. */
export function sharedBuffer(size: number): Buffer {
  return Buffer.from(new SharedArrayBuffer(size));
}

type Request =
  | { id: number; op: 'hash'; buffer: SharedArrayBuffer; byteOffset: number; ranges: readonly HashRange[] }
  | { id: number; op: 'lz4'; buffer: SharedArrayBuffer; byteOffset: number; length: number; into: SharedArrayBuffer; intoOffset: number; intoLength: number };

type Reply =
  | { id: number; digests: string[] }
  | { id: number; frameLength: number }
  | { id: number; error: string };

/** Marks a worker started by PartWorkers, so that loading this module there starts serving. */
const WORKER_ROLE = 'cloudbarman-part-worker';

interface Pending {
  resolve: (reply: Reply) => void;
  reject: (err: Error) => void;
}

interface Job {
  request: Request;
  pending: Pending;
}

/** A fixed set of worker threads; requests beyond them queue. Call close() when done. */
export class PartWorkers {
  readonly #idle: Worker[] = [];
  readonly #all: Worker[] = [];
  readonly #queue: Job[] = [];
  readonly #pending = new Map<number, Pending>();
  readonly #busy = new Map<Worker, number>();
  #nextId = 1;
  #closed = false;

  /** Starts `threads` workers (at least one). */
  constructor(threads: number) {
    const entry = fileURLToPath(import.meta.url);
    for (let i = 0; i < Math.max(1, threads); i++) {
      const worker = new Worker(entry, { workerData: { role: WORKER_ROLE } });
      // A pool left open must not keep the process alive; close() still ends it cleanly.
      worker.unref();
      worker.on('message', (reply: Reply) => this.#onReply(worker, reply));
      worker.on('error', (err) => this.#onFailure(worker, err));
      worker.on('exit', (code) => {
        if (!this.#closed) this.#onFailure(worker, new Error(`part worker exited with code ${code}`));
      });
      this.#all.push(worker);
      this.#idle.push(worker);
    }
  }

  /** SHA-256 of ranges of data: on a worker when data is shared memory (see sharedBuffer), otherwise here. */
  readonly digest: RangeHasher = async (data, ranges) => {
    if (!(data.buffer instanceof SharedArrayBuffer)) return sha256Ranges(data, ranges);
    const reply = await this.#run({ id: 0, op: 'hash', buffer: data.buffer, byteOffset: data.byteOffset, ranges });
    if (!('digests' in reply)) throw new Error('internal: a hash request got another reply');
    return reply.digests;
  };

  /**
   * An LZ4 frame of data, written into `into` (at least lz4FrameBound(data.length) bytes; the
   * caller reuses it, so memory stays flat): on a worker when both are shared memory, otherwise
   * here. Returns the view of `into` that holds the frame.
   */
  readonly lz4 = async (data: Uint8Array, into: Uint8Array): Promise<Uint8Array> => {
    if (!(data.buffer instanceof SharedArrayBuffer) || !(into.buffer instanceof SharedArrayBuffer)) return lz4EncodeFrame(data, into);
    const reply = await this.#run({
      id: 0, op: 'lz4', buffer: data.buffer, byteOffset: data.byteOffset, length: data.byteLength,
      into: into.buffer, intoOffset: into.byteOffset, intoLength: into.byteLength,
    });
    if (!('frameLength' in reply)) throw new Error('internal: an lz4 request got another reply');
    return into.subarray(0, reply.frameLength);
  };

  /** Stops the workers; pending requests fail. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const closed = new Error('the part workers were closed');
    for (const job of this.#queue.splice(0)) job.pending.reject(closed);
    for (const pending of this.#pending.values()) pending.reject(closed);
    this.#pending.clear();
    await Promise.all(this.#all.map((w) => w.terminate()));
  }

  #run(request: Request): Promise<Reply> {
    if (this.#closed) return Promise.reject(new Error('the part workers are closed'));
    if (this.#all.length > 0 && this.#busy.size === 0 && this.#idle.length === 0) {
      return Promise.reject(new Error('every part worker has failed'));
    }
    return new Promise<Reply>((resolve, reject) => {
      this.#queue.push({ request: { ...request, id: this.#nextId++ }, pending: { resolve, reject } });
      this.#dispatch();
    });
  }

  #dispatch(): void {
    while (this.#idle.length > 0 && this.#queue.length > 0) {
      const worker = this.#idle.pop();
      const job = this.#queue.shift();
      if (worker === undefined || job === undefined) return;
      try {
        worker.postMessage(job.request);
      } catch (err) {
        this.#idle.push(worker);
        job.pending.reject(err instanceof Error ? err : new Error(String(err)));
        continue;
      }
      this.#pending.set(job.request.id, job.pending);
      this.#busy.set(worker, job.request.id);
    }
  }

  #onReply(worker: Worker, reply: Reply): void {
    const pending = this.#pending.get(reply.id);
    this.#pending.delete(reply.id);
    this.#busy.delete(worker);
    this.#idle.push(worker);
    if ('error' in reply) pending?.reject(new Error(`part worker failed: ${reply.error}`));
    else pending?.resolve(reply);
    this.#dispatch();
  }

  #onFailure(worker: Worker, err: Error): void {
    const id = this.#busy.get(worker);
    this.#busy.delete(worker);
    const index = this.#idle.indexOf(worker);
    if (index >= 0) this.#idle.splice(index, 1);
    if (id !== undefined) {
      this.#pending.get(id)?.reject(err);
      this.#pending.delete(id);
    }
    // With no worker left, nothing would ever serve the queue.
    if (this.#busy.size === 0 && this.#idle.length === 0) {
      for (const job of this.#queue.splice(0)) job.pending.reject(err);
    }
  }
}

function sha256Ranges(data: Uint8Array, ranges: readonly HashRange[]): string[] {
  return ranges.map((r) => createHash('sha256').update(data.subarray(r.offset, r.offset + r.length)).digest('hex'));
}

/** The worker side: answers requests until terminated. */
function serve(port: NonNullable<typeof parentPort>): void {
  port.on('message', (request: Request) => {
    try {
      if (request.op === 'hash') {
        port.postMessage({ id: request.id, digests: sha256Ranges(new Uint8Array(request.buffer, request.byteOffset), request.ranges) } satisfies Reply);
      } else {
        const data = new Uint8Array(request.buffer, request.byteOffset, request.length);
        const frame = lz4EncodeFrame(data, new Uint8Array(request.into, request.intoOffset, request.intoLength));
        port.postMessage({ id: request.id, frameLength: frame.length } satisfies Reply);
      }
    } catch (err) {
      port.postMessage({ id: request.id, error: err instanceof Error ? err.message : String(err) } satisfies Reply);
    }
  });
}

if (!isMainThread && parentPort !== null && (workerData as { role?: unknown } | null)?.role === WORKER_ROLE) serve(parentPort);

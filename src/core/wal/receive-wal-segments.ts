/**
 * receive-wal's local directory: streamed WAL lands in <segment>.partial, a file of the full
 * segment size (sparse until written, as PostgreSQL reads a short segment as broken), written at
 * the offsets the server names. When the last byte of a segment arrives the file is fsynced and
 * renamed to <segment>; the uploader takes it from there and deletes it once it is stored.
 *
 * Every write lands on disk before the next message is read: memory never holds more than the
 * replication client's small read-ahead, whatever the WAL rate.
 */
import { open, readdir, rename, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { formatLsn } from '../../pg/lsn.ts';
import { parseWalFileName } from '../../pg/wal-names.ts';
import { segmentFloor, segmentNameAt } from '../../pg/wal-position.ts';
import { CloudbarmanError } from '../errors.ts';
import { isTempName, syncDir } from './spool-files.ts';

/** What the local directory held when receive-wal started. */
export interface LocalWal {
  /** Complete segments not yet uploaded, in WAL order. */
  complete: string[];
  /** Segment names with a .partial file, in WAL order (timeline, then position). */
  partial: string[];
  /** Timeline history files not yet uploaded. */
  history: string[];
}

/** The segment being written. */
export interface OpenSegment {
  /** The segment name, without .partial. */
  name: string;
  path: string;
  timeline: number;
  start: bigint;
  /** End of the bytes written so far (an LSN inside or at the end of the segment). */
  written: bigint;
}

/** Lists the local directory; removes leftover temporary files. */
export async function scanLocalWal(dir: string): Promise<LocalWal> {
  const local: LocalWal = { complete: [], partial: [], history: [] };
  for (const name of await readdir(dir)) {
    if (isTempName(name)) {
      await unlink(join(dir, name)).catch(() => undefined);
      continue;
    }
    const wal = parseWalFileName(name);
    if (wal?.kind === 'segment') local.complete.push(name);
    else if (wal?.kind === 'partial') local.partial.push(name.slice(0, 24));
    else if (wal?.kind === 'timeline-history') local.history.push(name);
  }
  // Within one segment size, names of a timeline sort in WAL order; order across timelines by
  // position first (the segment part), then timeline.
  const byPosition = (a: string, b: string): number => (a.slice(8) < b.slice(8) ? -1 : a.slice(8) > b.slice(8) ? 1 : a < b ? -1 : a > b ? 1 : 0);
  local.complete.sort(byPosition);
  local.partial.sort(byPosition);
  local.history.sort();
  return local;
}

/** The local path of a segment's .partial file. */
export function partialPath(dir: string, segment: string): string {
  return join(dir, `${segment}.partial`);
}

/**
 * Writes streamed WAL into segment files. Operations are serialised: a flush from a timer and a
 * write from the stream never interleave on the same file handle.
 */
export class SegmentWriter {
  readonly #dir: string;
  readonly #segmentSize: number;
  readonly #onComplete: (segment: string, end: bigint) => void;
  #handle: FileHandle | undefined;
  #current: OpenSegment | undefined;
  #timeline = 0;
  /** The next byte expected from the server. */
  #position = 0n;
  #flushed = 0n;
  #chain: Promise<unknown> = Promise.resolve();

  /** onComplete runs after a finished segment is durable under its final name. */
  constructor(dir: string, segmentSize: number, onComplete: (segment: string, end: bigint) => void) {
    this.#dir = dir;
    this.#segmentSize = segmentSize;
    this.#onComplete = onComplete;
  }

  /** The next byte expected: everything before it has been written. */
  get written(): bigint {
    return this.#position;
  }

  /** Everything before this is fsynced (or in a complete, fsynced segment file). */
  get flushed(): bigint {
    return this.#flushed;
  }

  /** The timeline being written. */
  get timeline(): number {
    return this.#timeline;
  }

  /** The segment file being written, if one is open. */
  get current(): OpenSegment | undefined {
    return this.#current === undefined ? undefined : { ...this.#current, written: this.#position };
  }

  /**
   * Positions the writer at `start` on `timeline`. Within the open segment of the same timeline,
   * at or before what it holds, writing simply continues there. Anywhere else the open segment
   * is closed and the one holding `start` opened (an existing .partial of it is reused, since
   * the server sends its bytes again from `start`); a start inside a segment needs that .partial.
   * Returns the segment closed unfinished, if that happened: the caller keeps it as a .partial.
   */
  async begin(start: bigint, timeline: number): Promise<OpenSegment | undefined> {
    return this.#serial(async () => {
      const open = this.#current;
      if (open !== undefined && open.timeline === timeline && start >= open.start && start < open.start + BigInt(this.#segmentSize) && start <= this.#position) {
        this.#position = start;
        if (this.#flushed > start) this.#flushed = start;
        return undefined;
      }
      const closed = open === undefined ? undefined : { ...open, written: this.#position };
      await this.#closeHandle(true);
      this.#timeline = timeline;
      this.#position = start;
      this.#flushed = start;
      if (start !== segmentFloor(start, this.#segmentSize)) await this.#openSegment(start, true);
      return closed;
    });
  }

  /** Writes one XLogData payload that begins at `start` (which must be the next byte expected). */
  async write(start: bigint, data: Buffer): Promise<void> {
    return this.#serial(async () => {
      if (start !== this.#position) {
        throw new CloudbarmanError('failed', `the server sent WAL at ${formatLsn(start)}, expected ${formatLsn(this.#position)}`, {
          hint: 'the stream is out of order; receive-wal reconnects and asks again from the last byte written',
        });
      }
      let offset = 0;
      const size = BigInt(this.#segmentSize);
      while (offset < data.length) {
        if (this.#current === undefined) await this.#openSegment(this.#position, false);
        const current = this.#current;
        const handle = this.#handle;
        if (current === undefined || handle === undefined) throw new Error('internal: no open segment');
        const inSegment = Number(this.#position - current.start);
        const chunk = Math.min(data.length - offset, this.#segmentSize - inSegment);
        let done = 0;
        while (done < chunk) {
          const { bytesWritten } = await handle.write(data, offset + done, chunk - done, inSegment + done);
          done += bytesWritten;
        }
        offset += chunk;
        this.#position += BigInt(chunk);
        if (this.#position === current.start + size) await this.#completeSegment();
      }
    });
  }

  /** fsyncs what has been written; returns the flushed position. */
  async flush(): Promise<bigint> {
    return this.#serial(async () => {
      const target = this.#position;
      if (this.#handle !== undefined && target > this.#flushed) await this.#handle.sync();
      if (target > this.#flushed) this.#flushed = target;
      return this.#flushed;
    });
  }

  /** fsyncs and closes the open segment, keeping it as a .partial. */
  async close(): Promise<void> {
    return this.#serial(() => this.#closeHandle(true));
  }

  /**
   * Closes the open segment of an ended timeline: it stays a .partial (the segment never
   * filled on that timeline). Returns it, or undefined when the timeline ended on a boundary.
   */
  async endTimeline(): Promise<OpenSegment | undefined> {
    return this.#serial(async () => {
      const open = this.#current === undefined ? undefined : { ...this.#current, written: this.#position };
      await this.#closeHandle(true);
      return open;
    });
  }

  async #openSegment(at: bigint, mustExist: boolean): Promise<void> {
    const start = segmentFloor(at, this.#segmentSize);
    const name = segmentNameAt(start, this.#timeline, this.#segmentSize);
    const path = partialPath(this.#dir, name);
    let handle: FileHandle;
    try {
      handle = await open(path, 'r+');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      if (mustExist) throw new Error(`internal: continuing inside ${name} needs its .partial file`);
      handle = await open(path, 'w+', 0o600);
    }
    try {
      const { size } = await handle.stat();
      if (size !== this.#segmentSize) await handle.truncate(this.#segmentSize);
    } catch (err) {
      await handle.close();
      throw err;
    }
    this.#handle = handle;
    this.#current = { name, path, timeline: this.#timeline, start, written: this.#position };
  }

  async #completeSegment(): Promise<void> {
    const current = this.#current;
    const handle = this.#handle;
    if (current === undefined || handle === undefined) return;
    await handle.sync();
    await handle.close();
    this.#handle = undefined;
    this.#current = undefined;
    await rename(current.path, join(this.#dir, current.name));
    await syncDir(this.#dir);
    this.#flushed = this.#position;
    this.#onComplete(current.name, this.#position);
  }

  async #closeHandle(sync: boolean): Promise<void> {
    const handle = this.#handle;
    this.#handle = undefined;
    this.#current = undefined;
    if (handle === undefined) return;
    try {
      if (sync) await handle.sync();
    } finally {
      await handle.close();
    }
  }

  #serial<T>(op: () => Promise<T>): Promise<T> {
    const result = this.#chain.then(op, op);
    this.#chain = result.catch(() => undefined);
    return result;
  }
}

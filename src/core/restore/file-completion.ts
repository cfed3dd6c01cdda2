/**
 * Knows when a restored file has all its bytes, so that the writer of its last chunk can finish it
 * on the handle it already holds: mode, mtime, then fsync. Finishing files while other parts are
 * still downloading overlaps the fsyncs with the transfer (as pgBackRest syncs each file as it
 * closes it), instead of reopening every file in a separate pass at the end.
 */
import type { FileHandle } from 'node:fs/promises';
import type { PlannedFile, RestorePlan } from './restore-plan.ts';

/** Counts the chunks still to be written, per file. */
export class FileCompletion {
  readonly #remaining: Int32Array;
  readonly #written: Uint8Array;
  readonly #chunkless: number[] = [];

  constructor(plan: Pick<RestorePlan, 'files' | 'parts' | 'chunkCount'>) {
    this.#remaining = new Int32Array(plan.files.length);
    this.#written = new Uint8Array(plan.chunkCount);
    for (const part of plan.parts) {
      for (const chunk of part.chunks) this.#remaining[chunk.file] = (this.#remaining[chunk.file] ?? 0) + 1;
    }
    this.#remaining.forEach((count, index) => {
      if (count === 0) this.#chunkless.push(index);
    });
  }

  /**
   * Records that a chunk is on disk. True exactly once per file: for the chunk that completed it.
   * A chunk written again (its part was fetched again after a broken download) counts once.
   */
  chunkWritten(chunk: { id: number; file: number }): boolean {
    if (this.#written[chunk.id] === 1) return false;
    this.#written[chunk.id] = 1;
    const left = (this.#remaining[chunk.file] ?? 0) - 1;
    this.#remaining[chunk.file] = left;
    return left === 0;
  }

  /** Files with no chunk at all (empty files): no part writes them, so the restore creates and finishes them. */
  get chunkless(): readonly number[] {
    return this.#chunkless;
  }

  /** True when every chunk has been written at least once. */
  get complete(): boolean {
    return this.#remaining.every((left) => left <= 0);
  }
}

/** Mode and mtime as backed up, then fsync: the file is final and durable. mtime goes last of the writes. */
export async function finishFile(handle: FileHandle, file: PlannedFile): Promise<void> {
  await handle.chmod(file.mode);
  await handle.utimes(file.mtime, file.mtime);
  await handle.sync();
}

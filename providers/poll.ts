/**
 * The time budget of one long-running snapshot operation (its retries and polls), shared by the
 * snapshotters. Waits go through the injected sleep (SnapshotterOptions.sleep), so tests never
 * wait; elapsed time is the larger of the wall clock and the time slept, so that a test's instant
 * sleep still runs the budget out.
 */
import type { SnapshotterOptions } from './snapshotter.ts';

export class OperationBudget {
  readonly #startedAt = performance.now();
  readonly #limitMs: number;
  readonly #sleep: SnapshotterOptions['sleep'];
  #sleptMs = 0;

  constructor(limitMs: number, sleep: SnapshotterOptions['sleep']) {
    this.#limitMs = limitMs;
    this.#sleep = sleep;
  }

  get elapsedMs(): number {
    return Math.max(performance.now() - this.#startedAt, this.#sleptMs);
  }

  get limitMs(): number {
    return this.#limitMs;
  }

  /** What is left of the limit (zero or less once it is spent). */
  get remainingMs(): number {
    return this.#limitMs - this.elapsedMs;
  }

  /** Whether sleeping `ms` more would pass the limit. */
  wouldExceed(ms: number): boolean {
    return this.elapsedMs + ms > this.#limitMs;
  }

  /** Sleeps through the injected sleep, counting the time slept. */
  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    await this.#sleep(ms, signal);
    this.#sleptMs += ms;
  }
}

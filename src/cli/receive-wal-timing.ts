/**
 * How long receive-wal may take to store what it holds after SIGTERM (its drain bound), and so how
 * long the daemon waits before SIGKILL: shared, so that the daemon never kills a child that is
 * still within its own bound.
 */

/** receive-wal's drain bound: the store's retry budget, at least 10 s. */
export function receiveWalDrainTimeoutMs(cfg: { retryTimeoutMs: number }): number {
  return Math.max(10_000, cfg.retryTimeoutMs);
}

/** The daemon's SIGTERM-to-SIGKILL wait: the drain bound plus time for the upload in flight and the exit. */
export function receiveWalStopTimeoutMs(cfg: { retryTimeoutMs: number; requestTimeoutMs: number }): number {
  return receiveWalDrainTimeoutMs(cfg) + Math.min(cfg.requestTimeoutMs, 60_000) + 5_000;
}

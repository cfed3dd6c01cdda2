/**
 * A fixed number of workers over a list: at most `limit` items are in flight, which is what bounds
 * a restore's memory whatever the backup's size. The first failure aborts the shared signal, no
 * new item starts, and the call settles only once every started item has settled, so nothing is
 * still writing when the caller reports the failure.
 */

/** Runs fn over items, `limit` at a time, in order of the list. Throws the first failure. */
export async function forEachBounded<T>(items: readonly T[], limit: number, controller: AbortController,
  fn: (item: T, signal: AbortSignal) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (failure === undefined && !controller.signal.aborted) {
      const index = next++;
      const item = items[index];
      if (index >= items.length || item === undefined) return;
      try {
        await fn(item, controller.signal);
      } catch (error) {
        // Later failures are usually consequences of the abort; the first one is the cause.
        failure ??= { error };
        controller.abort(error);
      }
    }
  };
  const workers = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, () => worker());
  await Promise.all(workers);
  if (failure !== undefined) throw failure.error;
  if (controller.signal.aborted) throw controller.signal.reason;
}

/**
 * The one retry policy for every store operation: exponential backoff with full jitter,
 * bounded by attempts and by total time, retrying only errors the provider marked retryable.
 * Providers set their SDK's own retries to one attempt so that retries never multiply.
 */
import type { GetOptions, ObjectStore, PutBody, PutOptions } from './object-store.ts';
import { StoreError } from './object-store.ts';

export interface RetryPolicy {
  /** Give up once this much time has passed since the first attempt. */
  timeoutMs: number;
  /** Give up after this many attempts in all. */
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

/** Defaults: about half a minute of retries, the first after ~200 ms. */
export const DEFAULT_RETRY_POLICY: RetryPolicy = { timeoutMs: 30_000, maxAttempts: 8, baseDelayMs: 200, maxDelayMs: 5_000 };

/** Injected so tests control time and randomness. */
export interface RetryEnv {
  now(): number;
  sleep(ms: number): Promise<void>;
  random(): number;
  /** Called before each retry, for logging. */
  onRetry?(operation: string, attempt: number, error: StoreError, delayMs: number): void;
}

const realEnv: RetryEnv = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  random: Math.random,
};

/** Runs fn under the policy; the last error is rethrown with the attempt count in its message. */
export async function retrying<T>(operation: string, policy: RetryPolicy, env: RetryEnv, fn: () => Promise<T>): Promise<T> {
  const started = env.now();
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof StoreError) || !err.retryable) throw err;
      const delay = Math.round(env.random() * Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1)));
      const elapsed = env.now() - started;
      if (attempt >= policy.maxAttempts || elapsed + delay > policy.timeoutMs) {
        throw new StoreError(err.kind, `${err.message} (gave up after ${attempt} attempt${attempt === 1 ? '' : 's'} in ${(elapsed / 1000).toFixed(1)} s)`, {
          ...(err.target === undefined ? {} : { target: err.target }),
          cause: err,
        });
      }
      env.onRetry?.(operation, attempt, err, delay);
      await env.sleep(delay);
    }
  }
}

/** Wraps a store so that each call retries under the policy. */
export function withRetries(store: ObjectStore, policy: RetryPolicy = DEFAULT_RETRY_POLICY, env: Partial<RetryEnv> = {}): ObjectStore {
  const e: RetryEnv = { ...realEnv, ...env };
  const run = <T>(op: string, fn: () => Promise<T>) => retrying(op, policy, e, fn);
  return {
    capabilities: store.capabilities,
    url: store.url,
    // A Uint8Array body or a body factory can be sent again as is.
    put: (key: string, body: PutBody, options?: PutOptions) => run(`put ${key}`, () => store.put(key, body, options)),
    get: (key: string, options?: GetOptions) => run(`get ${key}`, () => store.get(key, options)),
    head: (key: string) => run(`head ${key}`, () => store.head(key)),
    list: (prefix: string, options?: { pageToken?: string; pageSize?: number }) => run(`list ${prefix}`, () => store.list(prefix, options)),
    delete: (keys: readonly string[]) => run(`delete ${keys.length} objects`, () => store.delete(keys)),
    checkAccess: () => run('check access', () => store.checkAccess()),
    close: () => store.close(),
  };
}

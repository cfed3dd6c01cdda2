/**
 * The one retry policy for every store operation: exponential backoff with full jitter, bounded by
 * attempts and by total time, retrying only errors the provider marked retryable. It is the only
 * retry layer: providers set their SDK's own retries to one attempt (S3 maxAttempts 1, Azure
 * maxTries 1 and maxRetryRequests 0, GCS autoRetry false), so one attempt here is one request there.
 *
 * A service that answers with Retry-After (or Azure's x-ms-retry-after-ms) gets at least that
 * wait: providers carry it on the StoreError as retryAfterMs, and it is a floor under the backoff.
 * When it asks for more than the budget has left, the operation fails at once, saying so.
 *
 * What is safe to retry, per operation:
 * - head, list, delete, checkAccess: read-only or idempotent; retried as they are.
 * - put: a body is bytes or a factory of fresh streams, so it can be sent again. A create-if-absent
 *   put whose earlier attempt failed after the server may have applied it can find its own object
 *   on the next attempt; that is a success, not 'already-exists' (see putIfAbsent below).
 * - get: the request is retried with the same range. The body is the same operation: a body that
 *   breaks off or ends short of its length is resumed from the first byte not yet delivered, so a
 *   caller sees every byte once or a StoreError, never a silently short body. Resumes count toward
 *   the get's attempts; progress restarts only its clock.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { GetOptions, GetResult, ObjectInfo, ObjectStore, PutBody, PutOptions } from './object-store.ts';
import { isStoreError, StoreError } from './object-store.ts';

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

/** The wait before retry number `attempt` (1-based): full jitter under an exponential cap. */
export function backoffDelay(policy: RetryPolicy, attempt: number, random: () => number): number {
  return Math.round(random() * Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1)));
}

/**
 * The attempts and time one operation may still spend. Attempts count over the whole operation;
 * a body being resumed restarts the clock whenever it made progress, so that a long download is
 * bounded by its failures and by how long it goes without progress, not by its length.
 */
class RetryBudget {
  readonly #policy: RetryPolicy;
  readonly #env: RetryEnv;
  #started: number;
  #attempt = 0;

  constructor(policy: RetryPolicy, env: RetryEnv) {
    this.#policy = policy;
    this.#env = env;
    this.#started = env.now();
  }

  /** Failed attempts so far. */
  get attempts(): number {
    return this.#attempt;
  }

  /** Restarts the clock (not the attempt count), after progress. */
  progressed(): void {
    this.#started = this.#env.now();
  }

  /**
   * Counts a failed attempt. Returns the wait before the next attempt, or throws the error that
   * ends the operation: err as is when it is not retryable, otherwise err with the attempts made.
   */
  failed(operation: string, err: unknown, signal?: AbortSignal): number {
    if (!(err instanceof StoreError) || !err.retryable || signal?.aborted === true) throw err;
    this.#attempt++;
    // A wait the service asked for (Retry-After) is a floor under the backoff, never a reason to exceed the budget.
    const asked = err.retryAfterMs;
    const delay = Math.max(backoffDelay(this.#policy, this.#attempt, this.#env.random), Math.ceil(asked ?? 0));
    const elapsed = this.#env.now() - this.#started;
    const n = this.#attempt;
    const spent = `${n} attempt${n === 1 ? '' : 's'} in ${seconds(elapsed)} s`;
    const giveUp = (why: string): StoreError =>
      new StoreError(err.kind, `${err.message} (${why})`, { ...(err.target === undefined ? {} : { target: err.target }), cause: err });
    if (n >= this.#policy.maxAttempts) throw giveUp(`gave up after ${spent}`);
    if (elapsed + delay > this.#policy.timeoutMs) {
      if (asked !== undefined && elapsed + asked > this.#policy.timeoutMs) {
        const left = Math.max(0, this.#policy.timeoutMs - elapsed);
        throw giveUp(`the store asked to retry after ${seconds(asked)} s, more than the ${seconds(left)} s left of the retry budget; gave up after ${spent}`);
      }
      throw giveUp(`gave up after ${spent}`);
    }
    this.#env.onRetry?.(operation, this.#attempt, err, delay);
    return delay;
  }
}

/** Milliseconds as seconds with one decimal, for messages. */
function seconds(ms: number): string {
  return (ms / 1000).toFixed(1);
}

/** Runs fn under the policy; the last error is rethrown with the attempt count in its message. */
export async function retrying<T>(operation: string, policy: RetryPolicy, env: RetryEnv, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  const budget = new RetryBudget(policy, env);
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      await env.sleep(budget.failed(operation, err, signal));
    }
  }
}

/** Wraps a store so that each call retries under the policy. */
export function withRetries(store: ObjectStore, policy: RetryPolicy = DEFAULT_RETRY_POLICY, env: Partial<RetryEnv> = {}): ObjectStore {
  const e: RetryEnv = { ...realEnv, ...env };
  const run = <T>(op: string, fn: () => Promise<T>, signal?: AbortSignal) => retrying(op, policy, e, fn, signal);
  const resumable = (key: string, options: GetOptions, first: GetResult): GetResult => ({
    info: first.info,
    body: new ResumingBody({ store, key, options, first, policy, env: e }),
  });
  return {
    capabilities: store.capabilities,
    url: store.url,
    put: (key: string, body: PutBody, options: PutOptions = {}) => {
      if (options.ifAbsent !== true) return run(`put ${key}`, () => store.put(key, body, options), options.signal);
      return putIfAbsent(store, key, body, options, (fn) => run(`put ${key}`, fn, options.signal), (k, o, r) => resumable(k, o, r));
    },
    get: async (key: string, options: GetOptions = {}) => resumable(key, options, await run(`get ${key}`, () => store.get(key, options), options.signal)),
    head: (key: string) => run(`head ${key}`, () => store.head(key)),
    list: (prefix: string, options?: { pageToken?: string; pageSize?: number }) => run(`list ${prefix}`, () => store.list(prefix, options)),
    delete: (keys: readonly string[]) => run(`delete ${keys.length} objects`, () => store.delete(keys)),
    checkAccess: () => run('check access', () => store.checkAccess()),
    close: () => store.close(),
  };
}

/**
 * A create-if-absent put under the policy. When an attempt fails after the server may have
 * applied it (a reset, a timeout, a 500), the next attempt can meet the object that attempt
 * created. 'already-exists' is then checked against the object: if it holds exactly our bytes
 * and metadata, the put succeeded. Without an earlier doubtful attempt, 'already-exists' is final.
 */
async function putIfAbsent(
  store: ObjectStore,
  key: string,
  body: PutBody,
  options: PutOptions,
  run: (fn: () => Promise<void>) => Promise<void>,
  resumable: (key: string, options: GetOptions, first: GetResult) => GetResult,
): Promise<void> {
  let doubtful = false;
  await run(async () => {
    try {
      await store.put(key, body, options);
    } catch (err) {
      if (doubtful && isStoreError(err, 'already-exists') && (await holdsOurPut(store, key, body, options, resumable))) return;
      if (err instanceof StoreError && err.retryable) doubtful = true;
      throw err;
    }
  });
}

/**
 * Whether the object under key is the one this put would have written: the metadata we sent, the
 * size, and the SHA-256 of the content. Store errors propagate, so that the put is retried.
 */
async function holdsOurPut(
  store: ObjectStore,
  key: string,
  body: PutBody,
  options: PutOptions,
  resumable: (key: string, options: GetOptions, first: GetResult) => GetResult,
): Promise<boolean> {
  const info = await store.head(key);
  if (info === undefined || !sameMetadata(info, options)) return false;
  const length = body instanceof Uint8Array ? body.byteLength : options.contentLength;
  if (length !== undefined && info.size !== length) return false;
  const ours = body instanceof Uint8Array
    ? createHash('sha256').update(body).digest('hex')
    : options.contentSha256 ?? (await sha256Of(body()));
  let got: GetResult;
  try {
    got = await store.get(key, options.signal === undefined ? {} : { signal: options.signal });
  } catch (err) {
    // Deleted since the head: not ours to claim; the conflict stands.
    if (isStoreError(err, 'not-found')) return false;
    throw err;
  }
  const theirs = await sha256Of(resumable(key, {}, got).body);
  return theirs === ours;
}

/** Every metadata entry we sent is on the object (a store may drop empty values). */
function sameMetadata(info: ObjectInfo, options: PutOptions): boolean {
  return Object.entries(options.metadata ?? {}).every(([k, v]) => v === '' || info.metadata?.[k] === v);
}

async function sha256Of(stream: Readable): Promise<string> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of stream) hash.update(chunk as Uint8Array);
  } finally {
    stream.destroy();
  }
  return hash.digest('hex');
}

/** What a ResumingBody needs: where to read again, and the budget rules. */
interface ResumingBodyOptions {
  store: ObjectStore;
  key: string;
  options: GetOptions;
  first: GetResult;
  policy: RetryPolicy;
  env: RetryEnv;
}

/**
 * A get's body that survives a broken connection: on a retryable error, or an end before the
 * length the response promised, it waits under the policy and reads the rest with a ranged get
 * of the same object. The object must be unchanged (same size and time); otherwise it fails
 * rather than splice two objects. Errors that are not retryable pass through as they are.
 */
class ResumingBody extends Readable {
  readonly #o: ResumingBodyOptions;
  readonly #start: number;
  readonly #end: number;
  readonly #budget: RetryBudget;
  #source: Readable | undefined;
  #delivered = 0;
  /** Bytes delivered when the last failure happened: progress since then restarts the clock. */
  #deliveredAtFailure = 0;

  constructor(o: ResumingBodyOptions) {
    super();
    this.#o = o;
    const size = o.first.info.size;
    this.#start = o.options.range?.start ?? 0;
    this.#end = Math.max(this.#start, Math.min(o.options.range?.end ?? size, size));
    this.#budget = new RetryBudget(o.policy, o.env);
    this.#attach(o.first.body);
  }

  override _read(): void {
    this.#source?.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const source = this.#source;
    this.#source = undefined;
    source?.destroy();
    callback(error);
  }

  #attach(source: Readable): void {
    this.#source = source;
    let settled = false;
    const settle = (failure: unknown): void => {
      if (settled) return;
      settled = true;
      source.off('data', onData);
      if (this.#source !== source) return;
      this.#source = undefined;
      if (failure === undefined) {
        this.push(null);
        return;
      }
      source.destroy();
      this.#resume(failure);
    };
    const onData = (chunk: Buffer): void => {
      this.#delivered += chunk.length;
      if (!this.push(chunk)) source.pause();
    };
    source.on('data', onData);
    source.once('end', () => {
      const expected = this.#end - this.#start;
      settle(this.#delivered >= expected ? undefined : new StoreError('transient',
        `the body of ${this.#o.store.url} ${this.#o.key} ended after ${this.#delivered} of ${expected} bytes`, { target: this.#o.key }));
    });
    source.once('error', (err: unknown) => settle(err));
    // A stream destroyed without an error has not ended either: the rest is still owed.
    const closedEarly = (): StoreError => new StoreError('transient', `the body of ${this.#o.store.url} ${this.#o.key} closed early`, { target: this.#o.key });
    source.once('close', () => settle(closedEarly()));
    // A body that failed before it was handed over has already emitted its events.
    if (source.errored !== null) settle(source.errored);
    else if (source.destroyed && !source.readableEnded) settle(closedEarly());
  }

  #resume(failure: unknown): void {
    if (this.destroyed) return;
    if (this.#delivered > this.#deliveredAtFailure) this.#budget.progressed();
    this.#deliveredAtFailure = this.#delivered;
    let delay: number;
    try {
      delay = this.#budget.failed(`get ${this.#o.key} (resuming at byte ${this.#start + this.#delivered})`, failure, this.#o.options.signal);
    } catch (err) {
      this.destroy(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    void this.#o.env.sleep(delay).then(() => this.#reopen());
  }

  async #reopen(): Promise<void> {
    if (this.destroyed) return;
    const { store, key, options, first } = this.#o;
    let next: GetResult;
    try {
      next = await store.get(key, { ...options, range: { start: this.#start + this.#delivered, end: this.#end } });
    } catch (err) {
      this.#resume(err);
      return;
    }
    if (this.destroyed) {
      next.body.destroy();
      return;
    }
    if (next.info.size !== first.info.size || next.info.lastModified.getTime() !== first.info.lastModified.getTime()) {
      next.body.destroy();
      this.destroy(new StoreError('failed', `${store.url} ${key} changed while it was being read`, { target: key }));
      return;
    }
    this.#attach(next.body);
  }
}

/**
 * A store wrapper for unit tests that fails chosen calls the way a network does: before the
 * server applied the request, after it applied it (the client cannot tell), or partway through a
 * response body (a reset, or a clean end short of the length). Over a real local store, so that
 * what "applied" means is the provider's own behaviour.
 */
import { PassThrough, type Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { LocalObjectStore } from '../../../providers/local/object-store.ts';
import { StoreError } from '../../../providers/object-store.ts';
import type { GetOptions, GetResult, ListPage, ObjectInfo, ObjectStore, PutBody, PutOptions } from '../../../providers/object-store.ts';
import type { RetryEnv } from '../../../providers/retrying-store.ts';
import { makeTempDir, removeTempDir } from '../../helpers/tmp.ts';

/** What happens to one call. */
export type Fault =
  /** A retryable error; the request never reached the server. */
  | 'before'
  /** The request is applied, then a retryable error is reported. */
  | 'after'
  /** A get whose body breaks off with a reset after `after` bytes. */
  | { body: 'reset'; after: number }
  /** A get whose body ends cleanly after `after` bytes, short of its length. */
  | { body: 'short'; after: number };

type Op = 'put' | 'get' | 'head' | 'list' | 'delete';

/** The wrapper: queue faults per operation with fail(); every call is recorded in calls. */
export class FlakyStore implements ObjectStore {
  readonly inner: ObjectStore;
  readonly calls: string[] = [];
  readonly #plan = new Map<Op, Fault[]>();

  constructor(inner: ObjectStore) {
    this.inner = inner;
  }

  get capabilities() {
    return this.inner.capabilities;
  }

  get url(): string {
    return this.inner.url;
  }

  /** The next calls of op meet these faults, in order; later calls pass. */
  fail(op: Op, ...faults: Fault[]): void {
    this.#plan.set(op, [...(this.#plan.get(op) ?? []), ...faults]);
  }

  async put(key: string, body: PutBody, options?: PutOptions): Promise<void> {
    this.calls.push(`put ${key}`);
    await this.#around('put', key, () => this.inner.put(key, body, options));
  }

  async get(key: string, options?: GetOptions): Promise<GetResult> {
    const range = options?.range === undefined ? '' : ` ${options.range.start}-${options.range.end ?? ''}`;
    this.calls.push(`get ${key}${range}`);
    const fault = this.#take('get');
    if (fault === 'before') throw transient(key);
    const result = await this.inner.get(key, options);
    if (fault === 'after') {
      result.body.destroy();
      throw transient(key);
    }
    if (fault === undefined) return result;
    return { info: result.info, body: cut(result.body, fault.after, fault.body, key) };
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    this.calls.push(`head ${key}`);
    return this.#around('head', key, () => this.inner.head(key));
  }

  async list(prefix: string, options?: { pageToken?: string; pageSize?: number }): Promise<ListPage> {
    this.calls.push(`list ${prefix}`);
    return this.#around('list', prefix, () => this.inner.list(prefix, options));
  }

  async delete(keys: readonly string[]): Promise<void> {
    this.calls.push(`delete ${keys.join(',')}`);
    await this.#around('delete', keys.join(','), () => this.inner.delete(keys));
  }

  checkAccess(): Promise<void> {
    return this.inner.checkAccess();
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  #take(op: Op): Fault | undefined {
    return this.#plan.get(op)?.shift();
  }

  async #around<T>(op: Op, target: string, fn: () => Promise<T>): Promise<T> {
    const fault = this.#take(op);
    if (fault === 'before') throw transient(target);
    const value = await fn();
    if (fault === 'after') throw transient(target);
    return value;
  }
}

function transient(target: string): StoreError {
  return new StoreError('transient', `injected fault on ${target}`, { target });
}

/** The first `after` bytes of body, then a reset (a transient StoreError) or a clean end. */
function cut(body: Readable, after: number, how: 'reset' | 'short', key: string): Readable {
  const out = new PassThrough();
  let left = after;
  body.on('data', (chunk: Buffer) => {
    if (left <= 0) return;
    const piece = chunk.subarray(0, left);
    left -= piece.length;
    out.write(piece);
    if (left <= 0) {
      body.destroy();
      if (how === 'reset') out.destroy(new StoreError('transient', `connection reset reading ${key}`, { target: key, cause: Object.assign(new Error('aborted'), { code: 'ECONNRESET' }) }));
      else out.end();
    }
  });
  body.once('end', () => {
    if (left > 0) out.end();
  });
  body.once('error', (err) => out.destroy(err));
  return out;
}

/** A local store in a fresh temporary directory, and its removal. */
export async function tempLocalStore(): Promise<{ store: LocalObjectStore; remove(): Promise<void> }> {
  const dir = await makeTempDir('cloudbarman-flaky');
  const store = new LocalObjectStore(pathToFileURL(dir).href);
  return { store, remove: () => removeTempDir(dir) };
}

/** A retry env without waiting: sleeps advance a fake clock, jitter is fixed at half. */
export function instantEnv(): RetryEnv & { sleeps: number[] } {
  let clock = 0;
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => clock,
    sleep: async (ms: number) => {
      sleeps.push(ms);
      clock += ms;
    },
    random: () => 0.5,
  };
}

/**
 * The object-store contract: the one interface every storage provider implements.
 *
 * Keys are relative to the destination's prefix (the provider joins them), use "/" as the
 * separator, never start with "/", and contain no "." or ".." segments. Every method below
 * documents its edge cases; the conformance suite in test/contract/ holds each provider to them.
 */
import type { Readable } from 'node:stream';

/** User metadata: keys match /^[a-z0-9_]{1,64}$/ (valid on S3, Azure and GCS alike), values are printable ASCII. */
export type ObjectMetadata = Record<string, string>;

/** What a listing or head call knows about one object. */
export interface ObjectInfo {
  /** Key relative to the store's prefix. */
  key: string;
  /** Stored size in bytes. */
  size: number;
  lastModified: Date;
  /** Present on head and get; a listing may leave it out. */
  metadata?: ObjectMetadata;
}

/**
 * A request body. Bytes in memory, or a factory that returns a fresh stream each time it is
 * called, so that a retry can rewind. A factory body may be uploaded in several parts.
 */
export type PutBody = Uint8Array | (() => Readable);

export interface PutOptions {
  metadata?: ObjectMetadata;
  /**
   * Create only if no object exists under the key. Fails with StoreError kind 'already-exists'
   * when one does. Atomic when capabilities.atomicCreateIfAbsent, otherwise a head then a put.
   */
  ifAbsent?: boolean;
  /** The body's length when known; lets a provider choose a single request over multipart. */
  contentLength?: number;
  /**
   * SHA-256 (hex) of the body's bytes as sent, when the caller already has it. A provider may use
   * it instead of hashing the body again (S3 signs it as the payload hash, and S3 then rejects a
   * body that does not match it). MUST be right when given.
   */
  contentSha256?: string;
  signal?: AbortSignal;
}

export interface GetOptions {
  /** Inclusive start, exclusive end; end defaults to the object's end. */
  range?: { start: number; end?: number };
  signal?: AbortSignal;
}

export interface GetResult {
  info: ObjectInfo;
  /** The bytes (of the range, when given). The caller must consume or destroy it. */
  body: Readable;
}

export interface ListPage {
  items: ObjectInfo[];
  /** Present when there are more pages; pass back as pageToken. */
  nextPageToken?: string;
}

/** Capabilities are data: the core reads these, never a provider's name. */
export interface StoreCapabilities {
  /** put({ifAbsent}) is a single atomic request. */
  atomicCreateIfAbsent: boolean;
  /** At most this many keys go into one delete request. */
  maxDeleteBatch: number;
}

export interface ObjectStore {
  readonly capabilities: StoreCapabilities;
  /** The destination URL, for messages. Never contains a secret. */
  readonly url: string;

  /**
   * Stores an object. Resolves only once the object is durable (a later get on any client sees it).
   * MUST replace an existing object unless ifAbsent is set. MUST NOT leave a partial object visible
   * under the key when it fails: a reader sees the old object, nothing, or the complete new one.
   */
  put(key: string, body: PutBody, options?: PutOptions): Promise<void>;

  /** Reads an object. MUST throw StoreError 'not-found' when it does not exist. */
  get(key: string, options?: GetOptions): Promise<GetResult>;

  /** Size, time and metadata of an object; undefined when it does not exist (never throws not-found). */
  head(key: string): Promise<ObjectInfo | undefined>;

  /**
   * One page of the objects whose keys start with prefix (a plain string prefix, not a folder).
   * Order is unspecified. An empty result is not an error.
   */
  list(prefix: string, options?: { pageToken?: string; pageSize?: number }): Promise<ListPage>;

  /** Deletes keys. Idempotent: a key that does not exist is not an error. Batches are split as needed. */
  delete(keys: readonly string[]): Promise<void>;

  /**
   * Proves the destination is usable: the container exists and can be listed. Throws StoreError
   * 'container-not-found', 'access-denied' or 'unreachable' otherwise.
   */
  checkAccess(): Promise<void>;

  /** Releases sockets and handles. The store is unusable afterwards. */
  close(): Promise<void>;
}

/** Why a store operation failed; the core only ever sees these kinds. */
export type StoreErrorKind =
  | 'not-found' // the object does not exist
  | 'container-not-found' // the bucket / container / directory does not exist
  | 'already-exists' // ifAbsent put found an object
  | 'access-denied' // credentials missing, wrong, or not allowed
  | 'unreachable' // connection refused, DNS failure, timeout: the service could not be reached
  | 'transient' // the service answered with a retryable error (500, 503, throttling, reset mid-body)
  | 'invalid' // the request itself is wrong (bad key, bad argument): retrying will not help
  | 'corrupt' // the object is there but damaged (e.g. its metadata cannot be read): retrying will not help
  | 'failed'; // anything else

/** The typed error every provider throws. `cause` keeps the SDK's error. */
export class StoreError extends Error {
  override readonly name = 'StoreError';
  readonly kind: StoreErrorKind;
  /** The key (or container) the operation was about, for messages. */
  readonly target: string | undefined;
  /** Safe to try the same operation again. */
  readonly retryable: boolean;
  /**
   * How long the service asked the client to wait before trying again (Retry-After,
   * x-ms-retry-after-ms), in milliseconds, when it said. The retry policy waits at least this long.
   */
  readonly retryAfterMs: number | undefined;

  constructor(kind: StoreErrorKind, message: string, options: { target?: string; cause?: unknown; retryAfterMs?: number } = {}) {
    super(message, { cause: options.cause });
    this.kind = kind;
    this.target = options.target;
    this.retryable = kind === 'transient' || kind === 'unreachable';
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** True when err is a StoreError of the given kind. */
export function isStoreError(err: unknown, kind?: StoreErrorKind): err is StoreError {
  return err instanceof StoreError && (kind === undefined || err.kind === kind);
}

/** Every object under a prefix, page by page. */
export async function* listAll(store: ObjectStore, prefix: string): AsyncGenerator<ObjectInfo> {
  let pageToken: string | undefined;
  do {
    const page = await store.list(prefix, pageToken === undefined ? {} : { pageToken });
    yield* page.items;
    pageToken = page.nextPageToken;
  } while (pageToken !== undefined);
}

const METADATA_KEY = /^[a-z0-9_]{1,64}$/;
const METADATA_VALUE = /^[\x20-\x7e]*$/;

/** Rejects metadata that some provider could not store; providers call this before a put. */
export function assertValidMetadata(metadata: ObjectMetadata | undefined): void {
  for (const [k, v] of Object.entries(metadata ?? {})) {
    if (!METADATA_KEY.test(k)) throw new StoreError('invalid', `metadata key ${JSON.stringify(k)} must match [a-z0-9_]{1,64}`);
    if (!METADATA_VALUE.test(v)) throw new StoreError('invalid', `metadata value for ${k} must be printable ASCII`);
  }
}

/** Rejects keys that could escape the prefix or mean different things on different providers. */
export function assertValidKey(key: string): void {
  if (key.length === 0 || key.length > 1024 || key.startsWith('/') || key.endsWith('/') ||
      key.split('/').some((s) => s === '' || s === '.' || s === '..') || /[\x00-\x1f\x7f\\]/.test(key)) {
    throw new StoreError('invalid', `invalid object key ${JSON.stringify(key)}`, { target: key });
  }
}

/** Turns a body into a fresh stream (for providers that only take streams). */
export async function bodyToStream(body: PutBody): Promise<Readable> {
  if (typeof body === 'function') return body();
  const { Readable } = await import('node:stream');
  return Readable.from([body]);
}

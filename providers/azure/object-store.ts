/**
 * The object-store contract on Azure Blob Storage (block blobs). Each method maps to one Blob
 * service call, except a large put (Put Block × n, then Put Block List); every SDK error leaves
 * through toStoreError.
 */
import type {
  BlockBlobClient,
  BlockBlobCommitBlockListOptions,
  BlockBlobUploadOptions,
  ContainerClient,
} from '@azure/storage-blob';
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { assertValidKey, assertValidMetadata, StoreError } from '../object-store.ts';
import { assertContentLength, assertValidRange, mapBodyErrors, sendStream } from '../body.ts';
import type {
  GetOptions,
  GetResult,
  ListPage,
  ObjectInfo,
  ObjectMetadata,
  ObjectStore,
  PutBody,
  PutOptions,
  StoreCapabilities,
} from '../object-store.ts';
import { classifyAzureError, toStoreError } from './errors.ts';

/** Keys per delete() call: Blob Batch's limit, so each call stays short whatever the caller passes. */
const AZURE_DELETE_BATCH = 256;

/** Delete Blob requests in flight at once: Azure deletes one blob per request. */
const DELETE_CONCURRENCY = 16;

/** Azure's limit on maxresults per List Blobs page. */
const AZURE_MAX_PAGE_SIZE = 5000;

/** Azure's limit on one Put Block (4000 MiB); larger configured part sizes are clamped to it. */
const AZURE_MAX_BLOCK_SIZE = 4000 * 1024 * 1024;

/** Digits of the block number inside a block id; Azure allows 50,000 blocks per blob, which fits. */
const BLOCK_NUMBER_DIGITS = 6;

/** What AzureObjectStore needs; the client is injected so that tests and the factory choose the endpoint. */
export interface AzureObjectStoreOptions {
  client: ContainerClient;
  container: string;
  /** "" or a prefix ending in "/", joined in front of every key. */
  keyPrefix: string;
  /** Bytes per staged block; also the largest body sent as one Put Blob when its length is known. */
  partSizeBytes: number;
  /** Blocks in flight per upload: partSizeBytes × concurrency bounds the memory of one upload. */
  concurrency: number;
  /** Access tier of new blobs; the account's default when unset. */
  accessTier?: 'Hot' | 'Cool' | 'Cold';
  /** Encryption scope of new blobs; the container's default when unset. */
  encryptionScope?: string;
  /** Blob index tags set on every new blob. */
  tags?: Record<string, string>;
  /** Releases what the factory opened for this store (its sockets); called by close(). */
  dispose?: () => void;
}

/**
 * Azure metadata names are C# identifiers (no leading digit) while the contract allows [a-z0-9_]: a name
 * not starting with a letter gets one more leading "_" ("1x" → "_1x", "_x" → "__x"), which is reversible.
 */
export function encodeMetadataName(name: string): string {
  return /^[a-z]/i.test(name) ? name : `_${name}`;
}

/** The inverse of encodeMetadataName. Azure returns names lower-cased, which the contract's names already are. */
export function decodeMetadataName(name: string): string {
  return name.startsWith('_') ? name.slice(1) : name;
}

/** Contract metadata as Azure stores it. Empty values are left out: the contract lets a store drop them. */
function encodeMetadata(metadata: ObjectMetadata | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(metadata ?? {}).filter(([, v]) => v !== '').map(([k, v]) => [encodeMetadataName(k), v]));
}

/** Azure metadata as the contract sees it. */
function decodeMetadata(metadata: Record<string, string> | undefined): ObjectMetadata {
  return Object.fromEntries(Object.entries(metadata ?? {}).map(([k, v]) => [decodeMetadataName(k.toLowerCase()), v]));
}

/** The options every create request (Put Blob or Put Block List) carries. */
type WriteOptions = BlockBlobUploadOptions & BlockBlobCommitBlockListOptions;

/**
 * ObjectStore on Azure Blob Storage. Create-if-absent is atomic (If-None-Match: * on the creating request),
 * and a failed upload leaves only uncommitted blocks, which are invisible and which Azure discards after a week.
 */
export class AzureObjectStore implements ObjectStore {
  readonly capabilities: StoreCapabilities = { atomicCreateIfAbsent: true, maxDeleteBatch: AZURE_DELETE_BATCH };
  readonly url: string;
  readonly #client: ContainerClient;
  readonly #container: string;
  readonly #keyPrefix: string;
  readonly #partSize: number;
  readonly #concurrency: number;
  readonly #accessTier: 'Hot' | 'Cool' | 'Cold' | undefined;
  readonly #encryptionScope: string | undefined;
  readonly #tags: Record<string, string> | undefined;
  readonly #dispose: (() => void) | undefined;

  constructor(options: AzureObjectStoreOptions) {
    this.#client = options.client;
    this.#container = options.container;
    this.#keyPrefix = options.keyPrefix;
    this.#partSize = Math.min(AZURE_MAX_BLOCK_SIZE, Math.max(1, Math.floor(options.partSizeBytes)));
    this.#concurrency = Math.max(1, Math.floor(options.concurrency));
    this.#accessTier = options.accessTier;
    this.#encryptionScope = options.encryptionScope;
    this.#tags = options.tags;
    this.#dispose = options.dispose;
    this.url = `azure://${options.container}${options.keyPrefix === '' ? '' : `/${options.keyPrefix.slice(0, -1)}`}`;
  }

  async put(key: string, body: PutBody, options: PutOptions = {}): Promise<void> {
    // A body stream's own error is rethrown as is (it is the caller's, not the store's). contentSha256
    // goes unused: Azure verifies MD5 or CRC64, not SHA-256.
    assertValidKey(key);
    assertValidMetadata(options.metadata);
    const target = this.#target(key);
    const blob = this.#client.getBlockBlobClient(this.#keyPrefix + key);
    if (body instanceof Uint8Array) {
      try {
        if (body.byteLength <= this.#partSize) await blob.upload(body, body.byteLength, this.#writeOptions(options));
        else await this.#stageAndCommit(blob, sliceBlocks(body, this.#partSize), options);
      } catch (err) {
        throw toStoreError(err, target);
      }
      return;
    }
    const length = options.contentLength;
    assertContentLength(length, target);
    await sendStream(body(), length, target, toStoreError, async (stream) => {
      if (length !== undefined && length <= this.#partSize) {
        // One Put Blob streamed as is: the HTTP client aborts the request when the body fails, so
        // Azure, which needs every declared byte, stores nothing.
        await blob.upload(stream, length, this.#writeOptions(options));
      } else {
        await this.#stageAndCommit(blob, readBlocks(stream, this.#partSize), options);
      }
    });
  }

  async get(key: string, options: GetOptions = {}): Promise<GetResult> {
    assertValidKey(key);
    const target = this.#target(key);
    const range = options.range;
    assertValidRange(range, target);
    // A count of 0 means "to the end" to the SDK, so an empty range never reaches it.
    if (range !== undefined && range.end === range.start) return this.#emptyRead(key, target);
    let response;
    try {
      response = await this.#client.getBlobClient(this.#keyPrefix + key).download(
        range?.start ?? 0,
        range?.end === undefined ? undefined : range.end - range.start,
        // The SDK would otherwise re-request a broken body up to 5 times; retries belong to the decorator.
        { maxRetryRequests: 0, ...(options.signal === undefined ? {} : { abortSignal: options.signal }) },
      );
    } catch (err) {
      // Azure answers 416 for a range starting at or past the end; reading nothing there is not an error.
      if (range !== undefined && classifyAzureError(err).status === 416) return this.#emptyRead(key, target);
      throw toStoreError(err, target);
    }
    const body = response.readableStreamBody;
    if (body === undefined) throw new StoreError('failed', `Azure returned no body stream for ${target}`, { target });
    const stream = body instanceof Readable ? body : new Readable().wrap(body);
    const total = /\/(\d+)$/.exec(response.contentRange ?? '')?.[1];
    return {
      info: {
        key,
        size: total === undefined ? (response.contentLength ?? 0) : Number(total),
        lastModified: response.lastModified ?? new Date(0),
        metadata: decodeMetadata(response.metadata),
      },
      body: mapBodyErrors(stream, (err) => downloadError(err, target, options.signal)),
    };
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    assertValidKey(key);
    const target = this.#target(key);
    try {
      const response = await this.#client.getBlobClient(this.#keyPrefix + key).getProperties();
      return {
        key,
        size: response.contentLength ?? 0,
        lastModified: response.lastModified ?? new Date(0),
        metadata: decodeMetadata(response.metadata),
      };
    } catch (err) {
      const storeError = toStoreError(err, target);
      // Azure names a missing container even on HEAD (x-ms-error-code), so only a missing blob is "absent".
      if (storeError.kind === 'not-found') return undefined;
      throw storeError;
    }
  }

  async list(prefix: string, options: { pageToken?: string; pageSize?: number } = {}): Promise<ListPage> {
    const fullPrefix = this.#keyPrefix + prefix;
    const target = `azure://${this.#container}/${fullPrefix}`;
    const pageSize =
      options.pageSize === undefined ? undefined : Math.min(AZURE_MAX_PAGE_SIZE, Math.max(1, Math.floor(options.pageSize)));
    let page;
    try {
      const pages = this.#client.listBlobsFlat({ prefix: fullPrefix }).byPage({
        ...(options.pageToken === undefined ? {} : { continuationToken: options.pageToken }),
        ...(pageSize === undefined ? {} : { maxPageSize: pageSize }),
      });
      page = (await pages.next()).value;
    } catch (err) {
      throw toStoreError(err, target);
    }
    const items: ObjectInfo[] = [];
    for (const blob of page?.segment.blobItems ?? []) {
      // The destination's own "folder" blob, if someone made one, is not a key of this store.
      if (!blob.name.startsWith(this.#keyPrefix) || blob.name === this.#keyPrefix) continue;
      items.push({
        key: blob.name.slice(this.#keyPrefix.length),
        size: blob.properties.contentLength ?? 0,
        lastModified: blob.properties.lastModified,
      });
    }
    const next = page?.continuationToken;
    return next === undefined || next === '' ? { items } : { items, nextPageToken: next };
  }

  async delete(keys: readonly string[]): Promise<void> {
    keys.forEach(assertValidKey);
    const unique = [...new Set(keys)];
    const failures: StoreError[] = [];
    let nextIndex = 0;
    const worker = async (): Promise<void> => {
      // Stop taking new keys after the first failure: the caller will retry the whole batch.
      while (failures.length === 0 && nextIndex < unique.length) {
        const key = unique[nextIndex++] ?? '';
        try {
          // Snapshots would make Delete Blob fail (409 SnapshotsPresent); they go with their blob.
          await this.#client.getBlobClient(this.#keyPrefix + key).deleteIfExists({ deleteSnapshots: 'include' });
        } catch (err) {
          failures.push(toStoreError(err, this.#target(key)));
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(DELETE_CONCURRENCY, unique.length) }, worker));
    const first = failures[0];
    if (first === undefined) return;
    if (failures.length === 1) throw first;
    throw new StoreError(first.kind, `${failures.length} of ${unique.length} deletes failed; first: ${first.message}`, {
      ...(first.target === undefined ? {} : { target: first.target }),
      cause: failures,
    });
  }

  async checkAccess(): Promise<void> {
    try {
      // A listing under the prefix proves what backups need, even where a SAS allows only listing and writing.
      await this.#client.listBlobsFlat({ prefix: this.#keyPrefix }).byPage({ maxPageSize: 1 }).next();
    } catch (err) {
      const storeError = toStoreError(err, this.url);
      if (storeError.kind === 'not-found' || storeError.kind === 'container-not-found') {
        throw new StoreError('container-not-found', `the container does not exist: ${this.url}`, { target: this.url, cause: err });
      }
      throw storeError;
    }
  }

  async close(): Promise<void> {
    this.#dispose?.();
  }

  /** The full azure:// address of a key, for messages. */
  #target(key: string): string {
    return `azure://${this.#container}/${this.#keyPrefix}${key}`;
  }

  /** What every create request carries; a fresh object per request, since the SDK writes into it. */
  #writeOptions(options: PutOptions): WriteOptions {
    return {
      metadata: encodeMetadata(options.metadata),
      ...(this.#tags === undefined ? {} : { tags: { ...this.#tags } }),
      ...(this.#accessTier === undefined ? {} : { tier: this.#accessTier }),
      ...(this.#encryptionScope === undefined ? {} : { encryptionScope: this.#encryptionScope }),
      ...(options.ifAbsent === true ? { conditions: { ifNoneMatch: '*' } } : {}),
      ...(options.signal === undefined ? {} : { abortSignal: options.signal }),
    };
  }

  /** A read of zero bytes: still not-found when the object does not exist. */
  async #emptyRead(key: string, target: string): Promise<GetResult> {
    const info = await this.head(key);
    if (info === undefined) throw new StoreError('not-found', `no such blob: ${target}`, { target });
    return { info, body: Readable.from([]) };
  }

  /**
   * Uploads blocks of at most partSize bytes: a body that fits in one block goes as one Put Blob;
   * otherwise Put Block requests run while the next block is read, `concurrency` blocks at most
   * (the one being filled counts), then one Put Block List commits them. On any failure the staged
   * blocks are abandoned uncommitted, in-flight requests are aborted, and nothing becomes visible.
   */
  async #stageAndCommit(blob: BlockBlobClient, blocks: AsyncIterator<Buffer>, options: PutOptions): Promise<void> {
    let next = await blocks.next();
    if (next.done === true || next.value.length < this.#partSize) {
      const only = next.done === true ? Buffer.alloc(0) : next.value;
      await blob.upload(only, only.length, this.#writeOptions(options));
      return;
    }
    const abort = new AbortController();
    const signal = options.signal === undefined ? abort.signal : AbortSignal.any([abort.signal, options.signal]);
    // All block ids of a blob must have the same length; a fresh prefix keeps a retry's blocks apart.
    const idPrefix = randomUUID().replaceAll('-', '');
    const ids: string[] = [];
    const inFlight = new Set<Promise<void>>();
    let failure: { error: unknown } | undefined;
    const stage = (block: Buffer): void => {
      const id = Buffer.from(`${idPrefix}${String(ids.length).padStart(BLOCK_NUMBER_DIGITS, '0')}`).toString('base64');
      ids.push(id);
      const request: Promise<void> = blob
        .stageBlock(id, block, block.length, {
          abortSignal: signal,
          ...(this.#encryptionScope === undefined ? {} : { encryptionScope: this.#encryptionScope }),
        })
        .then(
          () => undefined,
          (err: unknown) => {
            failure ??= { error: err };
            abort.abort();
          },
        )
        .finally(() => inFlight.delete(request));
      inFlight.add(request);
    };
    try {
      while (next.done !== true && failure === undefined) {
        stage(next.value);
        // Wait for a free slot before reading the next block, so that at most `concurrency` blocks are held.
        while (inFlight.size >= this.#concurrency && failure === undefined) await Promise.race(inFlight);
        if (failure === undefined) next = await blocks.next();
      }
    } catch (err) {
      // The body failed: stop the blocks in flight, and let the caller see the body's own error.
      abort.abort();
      await Promise.all(inFlight);
      throw err;
    }
    await Promise.all(inFlight);
    if (failure !== undefined) {
      await blocks.return?.();
      throw failure.error;
    }
    await blob.commitBlockList(ids, this.#writeOptions(options));
  }
}

/** A byte array as blocks of `size` bytes (the last may be shorter), without copying. */
async function* sliceBlocks(bytes: Uint8Array, size: number): AsyncGenerator<Buffer> {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let offset = 0; offset < buffer.length; offset += size) yield buffer.subarray(offset, offset + size);
}

/** A stream as blocks of exactly `size` bytes (the last may be shorter); nothing for an empty stream. */
async function* readBlocks(source: Readable, size: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let filled = 0;
  for await (const chunk of source) {
    let rest = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array);
    while (rest.length > 0) {
      const take = Math.min(size - filled, rest.length);
      parts.push(rest.subarray(0, take));
      filled += take;
      rest = rest.subarray(take);
      if (filled === size) {
        yield Buffer.concat(parts, size);
        parts = [];
        filled = 0;
      }
    }
  }
  if (filled > 0) yield Buffer.concat(parts, filled);
}

/**
 * A download error as a StoreError. The SDK's wrapper reports a connection that broke mid-body as
 * a plain Error with no code; short of the caller's own abort, that is transient.
 */
function downloadError(err: unknown, target: string, signal: AbortSignal | undefined): StoreError {
  const mapped = toStoreError(err, target);
  const brokenOff = mapped.kind === 'failed' && signal?.aborted !== true;
  return brokenOff ? new StoreError('transient', `the download of ${target} broke off; safe to retry`, { target, cause: err }) : mapped;
}

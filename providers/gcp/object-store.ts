/**
 * The object-store contract on Google Cloud Storage, through the JSON API client. Bodies up to one
 * part go as one request; longer ones as a resumable upload, one part-sized chunk at a time, which
 * GCS makes visible only when the last chunk arrives. Every SDK error leaves through toStoreError.
 */
import type { Bucket, CreateWriteStreamOptions, File, FileMetadata, Storage } from '@google-cloud/storage';
import { Readable } from 'node:stream';
import { pipeline as pipelineAsync } from 'node:stream/promises';
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
import { toStoreError } from './errors.ts';

/** objects.list returns at most this many items per page, whatever maxResults asks for. */
const GCS_MAX_LIST = 1000;

/**
 * Keys per delete() call the core should send. GCS has no multi-object delete, so each key is one
 * request; 100 is the JSON API's batch limit and keeps a batch's failure report small.
 */
const DELETE_BATCH = 100;

/** Delete requests in flight at once within one delete() call. */
const DELETE_CONCURRENCY = 16;

/** Resumable upload chunks other than the last must be a multiple of 256 KiB. */
const CHUNK_MULTIPLE = 256 * 1024;

/** Listeners the SDK's layers attach to one download's response stream, with room to spare. */
const RESPONSE_LISTENERS = 20;

/** Set explicitly, or the SDK guesses a type from the key's extension (and loads a MIME table to do it). */
const CONTENT_TYPE = 'application/octet-stream';

/**
 * Runs store calls so that the HTTP requests they make can be watched (timeouts) and ended (close,
 * abort). index.ts provides the real one; a store built without it runs calls as they are.
 */
export interface RequestScope {
  /** Runs one store call; the requests it makes are watched, and ended when signal aborts. */
  run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T>;
  /** Ends every request still open and refuses further calls. */
  close(): void;
}

/** What GcsObjectStore needs; the client is injected so that tests and the factory choose the endpoint. */
export interface GcsObjectStoreOptions {
  storage: Storage;
  bucket: string;
  /** "" or a prefix ending in "/", joined in front of every key. */
  keyPrefix: string;
  /** The largest body sent as one request, and the chunk size (rounded to 256 KiB) of resumable uploads. */
  partSizeBytes: number;
  /** CMEK for new objects. */
  kmsKeyName?: string;
  /** Storage class for new objects; the bucket's default otherwise. */
  storageClass?: string;
  /** Add credentials to resumable uploads, which the SDK sends without any to a non-Google endpoint. */
  authorizeResumableUploads?: boolean;
  requests?: RequestScope;
}

/** The SDK's request interceptor. Its type promises a `uri`, but resumable uploads call it with `{}`. */
type Interceptor = Storage['interceptors'][number];

/**
 * An interceptor that adds request options (and headers) to every request the SDK makes through
 * the object it is pushed on; resumable uploads take them as their base request options.
 */
export function addRequestOptions(extra: { forever?: boolean; headers?: Record<string, string> }): Interceptor {
  return {
    request: (reqOpts) => {
      const { headers, ...rest } = extra;
      const merged = { ...reqOpts, ...rest, ...(headers === undefined ? {} : { headers: { ...reqOpts.headers, ...headers } }) };
      // The declared return type requires `uri`; the SDK passes one exactly when it has one.
      return merged as ReturnType<Interceptor['request']>;
    },
  };
}

/** The scope of a store built without one: calls run as they are, with the SDK's own behaviour. */
const UNWATCHED: RequestScope = {
  run: (fn) => fn(),
  close: () => undefined,
};

/**
 * ObjectStore on GCS. Create-if-absent is atomic (ifGenerationMatch=0). An error raised by a put's
 * body stream is rethrown as is: it belongs to the caller's source, not to the store.
 */
export class GcsObjectStore implements ObjectStore {
  readonly capabilities: StoreCapabilities = { atomicCreateIfAbsent: true, maxDeleteBatch: DELETE_BATCH };
  readonly url: string;
  readonly #storage: Storage;
  readonly #bucket: Bucket;
  readonly #keyPrefix: string;
  readonly #partSize: number;
  readonly #chunkSize: number;
  readonly #kmsKeyName: string | undefined;
  readonly #storageClass: string | undefined;
  readonly #authorizeResumableUploads: boolean;
  readonly #requests: RequestScope;

  constructor(options: GcsObjectStoreOptions) {
    this.#storage = options.storage;
    this.#bucket = options.storage.bucket(options.bucket);
    this.#keyPrefix = options.keyPrefix;
    this.#partSize = Math.max(1, Math.floor(options.partSizeBytes));
    this.#chunkSize = Math.max(CHUNK_MULTIPLE, Math.floor(options.partSizeBytes / CHUNK_MULTIPLE) * CHUNK_MULTIPLE);
    this.#kmsKeyName = options.kmsKeyName;
    this.#storageClass = options.storageClass;
    this.#authorizeResumableUploads = options.authorizeResumableUploads ?? false;
    this.#requests = options.requests ?? UNWATCHED;
    this.url = `gs://${options.bucket}${options.keyPrefix === '' ? '' : `/${options.keyPrefix.slice(0, -1)}`}`;
  }

  async put(key: string, body: PutBody, options: PutOptions = {}): Promise<void> {
    assertValidKey(key);
    assertValidMetadata(options.metadata);
    const target = this.#target(key);
    const length = options.contentLength;
    assertContentLength(length, target);
    await this.#requests.run(async () => {
      if (body instanceof Uint8Array) {
        try {
          await this.#save(key, toBuffer(body), options);
        } catch (err) {
          throw toStoreError(err, target);
        }
        return;
      }
      await sendStream(body(), length, target, toStoreError, async (stream) => {
        // An abort must also stop reading a slow source, before any request has been made.
        const signal = options.signal;
        const onAbort = (): void => {
          stream.destroy(new StoreError('failed', `the upload to ${target} was aborted`, { target, cause: signal?.reason }));
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        try {
          // A body that fits in one part goes as one request; reading it first also means a failing
          // source fails before anything is sent. Beyond one part, memory stays at about one chunk.
          const head = length !== undefined && length > this.#partSize ? { chunks: [], ended: false } : await readHead(stream, this.#partSize);
          if (head.ended) await this.#save(key, Buffer.concat(head.chunks), options);
          else await this.#uploadResumable(key, prepend(head.chunks, stream), options);
        } finally {
          signal?.removeEventListener('abort', onAbort);
        }
      });
    }, options.signal);
  }

  async get(key: string, options: GetOptions = {}): Promise<GetResult> {
    assertValidKey(key);
    const target = this.#target(key);
    const range = options.range;
    assertValidRange(range, target);
    const result = await this.#requests.run(async () => {
      // Metadata first: the contract's info (size, metadata) needs it, and the read then names the
      // generation it describes, so that the bytes and the info are of the same object.
      const metadata = await this.#metadata(key, target);
      const info = toInfo(key, metadata);
      const start = range?.start ?? 0;
      const end = Math.min(range?.end ?? info.size, info.size);
      if (start >= end) return { info, body: Readable.from([]) };
      const generation = metadata.generation;
      const file = this.#bucket.file(this.#keyPrefix + key, generation === undefined ? {} : { generation });
      // GCS's end is inclusive; a whole-object read has no range, so the SDK checks its CRC32C.
      const source = file.createReadStream(start === 0 && end === info.size ? {} : { start, end: end - 1 });
      const body = mapBodyErrors(source, (err) => toStoreError(err, target));
      // Until the body is handed out, its errors are the one `responded` rejects with below.
      const untilHandedOut = (): void => undefined;
      body.on('error', untilHandedOut);
      try {
        await responded(source);
      } catch (err) {
        body.destroy();
        const storeError = toStoreError(err, target);
        if (storeError.kind !== 'not-found') throw storeError;
        // That generation went away since the metadata was read: replaced or deleted. A retry sees which.
        throw new StoreError('transient', `the object changed while it was being read: ${target}`, { target, cause: err });
      } finally {
        body.off('error', untilHandedOut);
      }
      return { info, body };
    }, options.signal);
    const signal = options.signal;
    if (signal !== undefined && !result.body.destroyed) {
      const onAbort = (): void => void result.body.destroy(toStoreError(signal.reason, target));
      signal.addEventListener('abort', onAbort, { once: true });
      result.body.once('close', () => signal.removeEventListener('abort', onAbort));
    }
    return result;
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    assertValidKey(key);
    const target = this.#target(key);
    return this.#requests.run(async () => {
      try {
        return toInfo(key, await this.#metadata(key, target));
      } catch (err) {
        if (err instanceof StoreError && err.kind === 'not-found') return undefined;
        throw err;
      }
    });
  }

  async list(prefix: string, options: { pageToken?: string; pageSize?: number } = {}): Promise<ListPage> {
    const fullPrefix = this.#keyPrefix + prefix;
    const target = `gs://${this.#bucket.name}/${fullPrefix}`;
    const pageSize = options.pageSize === undefined ? undefined : Math.min(GCS_MAX_LIST, Math.max(1, Math.floor(options.pageSize)));
    return this.#requests.run(async () => {
      let files: File[];
      let next: { pageToken?: string } | undefined;
      try {
        [files, next] = await this.#bucket.getFiles({
          autoPaginate: false,
          ...(fullPrefix === '' ? {} : { prefix: fullPrefix }),
          ...(pageSize === undefined ? {} : { maxResults: pageSize }),
          ...(options.pageToken === undefined ? {} : { pageToken: options.pageToken }),
        });
      } catch (err) {
        throw missingBucket(toStoreError(err, target), this.url);
      }
      const items: ObjectInfo[] = [];
      for (const file of files) {
        // The destination's own "folder" object, if someone made one, is not a key of this store.
        if (!file.name.startsWith(this.#keyPrefix) || file.name === this.#keyPrefix) continue;
        items.push({
          key: file.name.slice(this.#keyPrefix.length),
          size: Number(file.metadata.size ?? 0),
          lastModified: toDate(file.metadata.updated),
        });
      }
      const token = next?.pageToken;
      return token === undefined || token === '' ? { items } : { items, nextPageToken: token };
    });
  }

  async delete(keys: readonly string[]): Promise<void> {
    keys.forEach(assertValidKey);
    const unique = [...new Set(keys)];
    await this.#requests.run(async () => {
      let next = 0;
      let failed = false;
      const worker = async (): Promise<void> => {
        for (let key = unique[next++]; key !== undefined && !failed; key = unique[next++]) {
          try {
            await this.#file(key).delete();
          } catch (err) {
            const storeError = toStoreError(err, this.#target(key));
            // Deleting what is already gone is the idempotent success the contract asks for.
            if (storeError.kind === 'not-found') continue;
            failed = true;
            throw storeError;
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(DELETE_CONCURRENCY, unique.length) }, worker));
    });
  }

  async checkAccess(): Promise<void> {
    await this.#requests.run(async () => {
      try {
        // A listing under the prefix proves what backups need, even where IAM allows only that prefix.
        await this.#bucket.getFiles({ autoPaginate: false, maxResults: 1, ...(this.#keyPrefix === '' ? {} : { prefix: this.#keyPrefix }) });
      } catch (err) {
        throw missingBucket(toStoreError(err, this.url), this.url);
      }
    });
  }

  async close(): Promise<void> {
    this.#requests.close();
  }

  /** The full gs:// address of a key, for messages. */
  #target(key: string): string {
    return `gs://${this.#bucket.name}/${this.#keyPrefix}${key}`;
  }

  /** The SDK's handle on a key; writes through it carry the CMEK key. */
  #file(key: string): File {
    return this.#bucket.file(this.#keyPrefix + key, this.#kmsKeyName === undefined ? {} : { kmsKeyName: this.#kmsKeyName });
  }

  /** The object's resource; not-found and container-not-found as StoreErrors. */
  async #metadata(key: string, target: string): Promise<FileMetadata> {
    try {
      const [metadata] = await this.#file(key).getMetadata();
      return metadata;
    } catch (err) {
      throw toStoreError(err, target);
    }
  }

  /** One multipart upload (metadata and bytes in one request): nothing is stored unless all of it arrives. */
  async #save(key: string, data: Buffer, options: PutOptions): Promise<void> {
    await this.#file(key).save(data, { ...this.#writeOptions(options), resumable: false });
  }

  /**
   * A resumable upload in part-sized chunks. GCS creates the object only when the chunk that
   * completes it arrives, and the SDK sends that one only after the source has ended: a source that
   * fails destroys the upload before that, and the abandoned session is cancelled.
   */
  async #uploadResumable(key: string, source: Readable, options: PutOptions): Promise<void> {
    const file = this.#file(key);
    if (this.#authorizeResumableUploads) {
      // Fetched once per upload: an upload longer than the token's hour would need a refresh.
      const headers = Object.fromEntries((await this.#storage.authClient.getRequestHeaders(this.#storage.apiEndpoint)).entries());
      file.interceptors.push(addRequestOptions({ headers }));
    }
    const upload = file.createWriteStream({ ...this.#writeOptions(options), resumable: true, chunkSize: this.#chunkSize });
    let session: string | undefined;
    upload.on('uri', (uri: string) => {
      session = uri;
    });
    try {
      await pipelineAsync(source, upload);
    } catch (err) {
      if (session !== undefined) await this.#cancelUpload(session);
      throw err;
    }
  }

  /**
   * Cancels a resumable session (GCS answers 499). Best effort: an uncancelled session is invisible
   * and expires after a week, so its failure must not hide the error that made the upload stop.
   */
  async #cancelUpload(session: string): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#storage.request({ uri: session, method: 'DELETE' }, () => resolve());
    });
  }

  /** What every write sends: content type, checksum validation, metadata, class and the create-if-absent precondition. */
  #writeOptions(options: PutOptions): CreateWriteStreamOptions {
    return {
      contentType: CONTENT_TYPE,
      // The SDK computes CRC32C while sending and compares it with the stored object's.
      validation: 'crc32c',
      metadata: {
        contentType: CONTENT_TYPE,
        ...(this.#storageClass === undefined ? {} : { storageClass: this.#storageClass }),
        ...(options.metadata === undefined ? {} : { metadata: { ...options.metadata } }),
      },
      // Generation 0 matches only "no live object": the atomic create-if-absent.
      ...(options.ifAbsent === true ? { preconditionOpts: { ifGenerationMatch: 0 } } : {}),
    };
  }
}

/** A listing's or check's 404 can only mean the bucket: say so, whatever the message was. */
function missingBucket(err: StoreError, url: string): StoreError {
  if (err.kind !== 'not-found') return err;
  return new StoreError('container-not-found', `the bucket does not exist: ${url}`, { target: url, cause: err.cause });
}

/** The contract's view of an object resource. */
function toInfo(key: string, metadata: FileMetadata): ObjectInfo {
  const user: ObjectMetadata = {};
  for (const [k, v] of Object.entries(metadata.metadata ?? {})) {
    if (v !== null && v !== undefined) user[k] = String(v);
  }
  return { key, size: Number(metadata.size ?? 0), lastModified: toDate(metadata.updated), metadata: user };
}

/** An RFC 3339 time from the JSON API, or the epoch when absent. */
function toDate(value: string | undefined): Date {
  return value === undefined ? new Date(0) : new Date(value);
}

/** The bytes as a Buffer without copying them. */
function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Reads from stream until more than limit bytes have come or it ends, leaving the rest unread.
 * `ended` tells which: the whole body, or the first part of a longer one.
 */
async function readHead(stream: Readable, limit: number): Promise<{ chunks: Buffer[]; ended: boolean }> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('error', onError);
    };
    const onReadable = (): void => {
      let chunk: unknown;
      while (bytes <= limit && (chunk = stream.read()) !== null) {
        const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
        chunks.push(buf);
        bytes += buf.length;
      }
      if (bytes > limit) {
        cleanup();
        resolve({ chunks, ended: false });
      }
    };
    const onEnd = (): void => {
      cleanup();
      resolve({ chunks, ended: true });
    };
    const onError = (err: unknown): void => {
      cleanup();
      reject(err);
    };
    stream.on('readable', onReadable);
    stream.once('end', onEnd);
    stream.once('error', onError);
  });
}

/** The chunks already read, then the rest of the stream; the stream's error ends it. */
function prepend(chunks: readonly Buffer[], rest: Readable): Readable {
  return Readable.from(
    (async function* () {
      yield* chunks;
      yield* rest;
    })(),
    { objectMode: false },
  );
}

/** Resolves when a read stream's response arrived with a 2xx status; rejects with the SDK's error otherwise. */
function responded(stream: Readable): Promise<void> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      stream.off('response', onResponse);
      stream.off('error', onError);
    };
    const onResponse = (response: { statusCode?: number; setMaxListeners?: (n: number) => unknown }): void => {
      // The response body is a stream the SDK and teeny-request attach 11 listeners to, which makes
      // Node warn of a leak on every large read; there is none, and there are no more than that.
      response.setMaxListeners?.(RESPONSE_LISTENERS);
      const status = response.statusCode ?? 0;
      // Otherwise the SDK reads the error body and then raises the error, which onError receives.
      if (status >= 200 && status < 300) {
        cleanup();
        resolve();
      }
    };
    const onError = (err: unknown): void => {
      cleanup();
      reject(err);
    };
    stream.on('response', onResponse);
    stream.once('error', onError);
    // The SDK sends the request on the first read; read(0) asks for it without consuming anything.
    stream.read(0);
  });
}

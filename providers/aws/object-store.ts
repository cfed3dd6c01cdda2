/**
 * The object-store contract on Amazon S3 and S3-compatible stores. Each method maps to one S3 call
 * (two for a multipart upload); every SDK error leaves through toStoreError.
 */
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import type { PutObjectCommandInput, S3Client } from '@aws-sdk/client-s3';
import { Readable } from 'node:stream';
import { assertValidKey, assertValidMetadata, StoreError } from '../object-store.ts';
import { assertContentLength, assertValidRange, mapBodyErrors, sendStream } from '../body.ts';
import type {
  GetOptions,
  GetResult,
  ListPage,
  ObjectInfo,
  ObjectStore,
  PutBody,
  PutOptions,
  StoreCapabilities,
} from '../object-store.ts';
import { classifyS3Error, toStoreError } from './errors.ts';

/** S3's limit on keys per DeleteObjects request and on MaxKeys per listing. */
const S3_MAX_BATCH = 1000;

/** S3 rejects non-final multipart parts below 5 MiB, so no configured part size goes below it. */
const S3_MIN_PART_SIZE = 5 * 1024 * 1024;

/** What S3ObjectStore needs; the client is injected so that tests and the factory choose the endpoint. */
export interface S3ObjectStoreOptions {
  client: S3Client;
  bucket: string;
  /** "" or a prefix ending in "/", joined in front of every key. */
  keyPrefix: string;
  /** Bytes per multipart part; also the largest body sent as one PutObject when its length is known. */
  partSizeBytes: number;
  /** Parts in flight per upload: partSizeBytes × concurrency bounds the memory of one upload. */
  concurrency: number;
  /** Object tags set on every new object (the tags option). */
  tags?: Record<string, string>;
}

/**
 * ObjectStore on S3. Create-if-absent is atomic (If-None-Match: *). An error raised by a put's
 * body stream is rethrown as is: it belongs to the caller's source, not to the store.
 */
export class S3ObjectStore implements ObjectStore {
  readonly capabilities: StoreCapabilities = { atomicCreateIfAbsent: true, maxDeleteBatch: S3_MAX_BATCH };
  readonly url: string;
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #keyPrefix: string;
  readonly #partSize: number;
  readonly #concurrency: number;
  /** x-amz-tagging: the tags as a URL query string, or undefined for none. */
  readonly #tagging: string | undefined;

  constructor(options: S3ObjectStoreOptions) {
    this.#client = options.client;
    this.#bucket = options.bucket;
    this.#keyPrefix = options.keyPrefix;
    this.#partSize = Math.max(S3_MIN_PART_SIZE, options.partSizeBytes);
    this.#concurrency = Math.max(1, options.concurrency);
    const tags = Object.entries(options.tags ?? {});
    // Percent-encoded rather than URLSearchParams' '+' for a space, which not every S3-compatible store decodes.
    this.#tagging = tags.length === 0 ? undefined : tags.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
    this.url = `s3://${options.bucket}${options.keyPrefix === '' ? '' : `/${options.keyPrefix.slice(0, -1)}`}`;
  }

  async put(key: string, body: PutBody, options: PutOptions = {}): Promise<void> {
    assertValidKey(key);
    assertValidMetadata(options.metadata);
    const target = this.#target(key);
    const params: PutObjectCommandInput = {
      Bucket: this.#bucket,
      Key: this.#keyPrefix + key,
      ...(options.metadata === undefined ? {} : { Metadata: options.metadata }),
      ...(options.ifAbsent === true ? { IfNoneMatch: '*' } : {}),
      ...(this.#tagging === undefined ? {} : { Tagging: this.#tagging }),
    };
    if (body instanceof Uint8Array) {
      try {
        const command = new PutObjectCommand({ ...params, Body: body, ContentLength: body.byteLength });
        if (options.contentSha256 !== undefined) withPayloadHash(command, options.contentSha256);
        await this.#client.send(command, sendOptions(options.signal));
      } catch (err) {
        throw toStoreError(err, target);
      }
      return;
    }
    const length = options.contentLength;
    assertContentLength(length, target);
    await sendStream(body(), length, target, toStoreError, (stream) =>
      length !== undefined && length <= this.#partSize
        ? this.#putStream(params, stream, length, options.signal)
        : this.#upload(params, stream, options.signal),
    );
  }

  async get(key: string, options: GetOptions = {}): Promise<GetResult> {
    assertValidKey(key);
    const target = this.#target(key);
    const range = options.range;
    assertValidRange(range, target);
    // "bytes=5-4" is not a range to S3, which would then send the whole object.
    if (range !== undefined && range.end === range.start) return this.#emptyRead(key, target);
    let response;
    try {
      response = await this.#client.send(
        new GetObjectCommand({
          Bucket: this.#bucket,
          Key: this.#keyPrefix + key,
          ...(range === undefined ? {} : { Range: `bytes=${range.start}-${range.end === undefined ? '' : range.end - 1}` }),
        }),
        sendOptions(options.signal),
      );
    } catch (err) {
      // S3 answers 416 for a range starting at or past the end; reading nothing there is not an error.
      if (range !== undefined && classifyS3Error(err).status === 416) return this.#emptyRead(key, target);
      throw toStoreError(err, target);
    }
    if (!(response.Body instanceof Readable)) {
      throw new StoreError('failed', `S3 returned no body stream for ${target}`, { target });
    }
    const total = /\/(\d+)$/.exec(response.ContentRange ?? '')?.[1];
    return {
      info: {
        key,
        size: total === undefined ? (response.ContentLength ?? 0) : Number(total),
        lastModified: response.LastModified ?? new Date(0),
        metadata: response.Metadata ?? {},
      },
      body: mapBodyErrors(response.Body, (err) => toStoreError(err, target)),
    };
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    assertValidKey(key);
    const target = this.#target(key);
    try {
      const response = await this.#client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: this.#keyPrefix + key }));
      return {
        key,
        size: response.ContentLength ?? 0,
        lastModified: response.LastModified ?? new Date(0),
        metadata: response.Metadata ?? {},
      };
    } catch (err) {
      const storeError = toStoreError(err, target);
      // A HEAD answer has no body, so a missing bucket looks like a missing object here as well.
      if (storeError.kind === 'not-found') return undefined;
      throw storeError;
    }
  }

  async list(prefix: string, options: { pageToken?: string; pageSize?: number } = {}): Promise<ListPage> {
    const fullPrefix = this.#keyPrefix + prefix;
    const target = `s3://${this.#bucket}/${fullPrefix}`;
    const pageSize = options.pageSize === undefined ? undefined : Math.min(S3_MAX_BATCH, Math.max(1, Math.floor(options.pageSize)));
    let response;
    try {
      response = await this.#client.send(
        new ListObjectsV2Command({
          Bucket: this.#bucket,
          Prefix: fullPrefix,
          ...(pageSize === undefined ? {} : { MaxKeys: pageSize }),
          ...(options.pageToken === undefined ? {} : { ContinuationToken: options.pageToken }),
        }),
      );
    } catch (err) {
      throw toStoreError(err, target);
    }
    const items: ObjectInfo[] = [];
    for (const object of response.Contents ?? []) {
      // The destination's own "folder" object, if someone made one, is not a key of this store.
      if (object.Key === undefined || !object.Key.startsWith(this.#keyPrefix) || object.Key === this.#keyPrefix) continue;
      items.push({
        key: object.Key.slice(this.#keyPrefix.length),
        size: object.Size ?? 0,
        lastModified: object.LastModified ?? new Date(0),
      });
    }
    const next = response.IsTruncated === true ? response.NextContinuationToken : undefined;
    return next === undefined || next === '' ? { items } : { items, nextPageToken: next };
  }

  async delete(keys: readonly string[]): Promise<void> {
    keys.forEach(assertValidKey);
    const unique = [...new Set(keys)];
    for (let i = 0; i < unique.length; i += S3_MAX_BATCH) {
      const batch = unique.slice(i, i + S3_MAX_BATCH);
      let response;
      try {
        response = await this.#client.send(
          new DeleteObjectsCommand({
            Bucket: this.#bucket,
            Delete: { Objects: batch.map((key) => ({ Key: this.#keyPrefix + key })), Quiet: true },
          }),
        );
      } catch (err) {
        throw toStoreError(err, batch.length === 1 ? this.#target(batch[0] ?? '') : this.url);
      }
      // Some S3-compatible stores report a missing key; deleting it is still a success.
      const failures = (response.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
      const first = failures[0];
      if (first !== undefined) {
        const target = `s3://${this.#bucket}/${first.Key ?? ''}`;
        const cause = toStoreError({ Code: first.Code }, target);
        throw new StoreError(cause.kind, `${failures.length} of ${batch.length} deletes failed; first: ${cause.message}`, {
          target,
          cause: failures,
        });
      }
    }
  }

  async checkAccess(): Promise<void> {
    try {
      // A listing under the prefix proves what backups need, even where a policy allows only that prefix.
      await this.#client.send(new ListObjectsV2Command({ Bucket: this.#bucket, Prefix: this.#keyPrefix, MaxKeys: 1 }));
    } catch (err) {
      const storeError = toStoreError(err, this.url);
      if (storeError.kind === 'not-found') {
        throw new StoreError('container-not-found', `the bucket does not exist: ${this.url}`, { target: this.url, cause: err });
      }
      throw storeError;
    }
  }

  async close(): Promise<void> {
    this.#client.destroy();
  }

  /** The full s3:// address of a key, for messages. */
  #target(key: string): string {
    return `s3://${this.#bucket}/${this.#keyPrefix}${key}`;
  }

  /** A read of zero bytes: still not-found when the object does not exist. */
  async #emptyRead(key: string, target: string): Promise<GetResult> {
    const info = await this.head(key);
    if (info === undefined) throw new StoreError('not-found', `no such object: ${target}`, { target });
    return { info, body: Readable.from([]) };
  }

  /** One PutObject with a stream of known length: no part buffering, one request. */
  async #putStream(params: PutObjectCommandInput, body: Readable, length: number, signal: AbortSignal | undefined): Promise<void> {
    // The HTTP handler pipe()s the body, which does not forward errors: without this abort, a failed
    // body would leave the request waiting for bytes until the idle timeout.
    const abort = new AbortController();
    body.once('error', () => abort.abort());
    await this.#client.send(
      new PutObjectCommand({ ...params, Body: body, ContentLength: length }),
      sendOptions(signal === undefined ? abort.signal : AbortSignal.any([abort.signal, signal])),
    );
  }

  /** A multipart upload (or one PutObject for a short stream) with at most `concurrency` parts in memory. */
  async #upload(params: PutObjectCommandInput, body: Readable, signal: AbortSignal | undefined): Promise<void> {
    // Loaded here so that WAL uploads, which send bytes, never load lib-storage.
    const { Upload } = await import('@aws-sdk/lib-storage');
    // A body error is not linked to this controller: lib-storage sees it through its own read
    // loop and aborts the multipart upload before done() settles, whereas an abort would settle
    // done() at once and leave the cleanup running in the background.
    const abort = new AbortController();
    const onAbort = (): void => abort.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted === true) abort.abort();
    const upload = new Upload({
      client: this.#client,
      params: { ...params, Body: body },
      partSize: this.#partSize,
      queueSize: this.#concurrency,
      // The parts of a failed upload are deleted, so nothing partial stays billable or visible.
      leavePartsOnError: false,
      abortController: abort,
    });
    try {
      await upload.done();
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }
}

/** The SDK's per-call options: only the abort signal, when there is one. */
function sendOptions(signal: AbortSignal | undefined): { abortSignal?: AbortSignal } {
  return signal === undefined ? {} : { abortSignal: signal };
}

/**
 * Sets x-amz-content-sha256 before signing, so SigV4 uses the caller's hash instead of hashing the
 * body again (for a 16 MiB WAL segment that is most of the CPU of an upload), and S3 verifies it.
 */
function withPayloadHash(command: PutObjectCommand, sha256Hex: string): void {
  command.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { headers?: Record<string, string> };
      if (request.headers !== undefined) request.headers['x-amz-content-sha256'] = sha256Hex;
      return next(args);
    },
    { step: 'build', name: 'cloudbarmanPayloadHash' },
  );
}

/**
 * The Cloud Storage provider's entry point: turns StoreOptions into a configured Storage client and
 * store. The CLI imports this file lazily, so nothing here runs unless the destination is gs://.
 */
import { Storage } from '@google-cloud/storage';
import type { StorageOptions } from '@google-cloud/storage';
import { AsyncLocalStorage } from 'node:async_hooks';
import diagnostics from 'node:diagnostics_channel';
import type { Agent, ClientRequest } from 'node:http';
import type { Socket } from 'node:net';
import { StoreError } from '../object-store.ts';
import type { ObjectStore } from '../object-store.ts';
import type { StoreOptions } from '../store-options.ts';
import { addRequestOptions, GcsObjectStore } from './object-store.ts';
import type { RequestScope } from './object-store.ts';

/** A parsed gs:// destination. */
export interface GcsLocation {
  bucket: string;
  /** "" or a prefix ending in "/", joined in front of every key. */
  keyPrefix: string;
}

/**
 * GCS bucket names: lowercase letters, digits, "-", "_" and "."; start and end with a letter or
 * digit; 3-63 characters, or up to 222 when dotted, with no dot-separated part over 63.
 */
const BUCKET_NAME = /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/;

/** Parses gs://bucket/optional/prefix; anything else is a StoreError 'invalid'. */
export function parseGsUrl(url: string): GcsLocation {
  const match = /^gs:\/\/([^/]*)(?:\/(.*))?$/.exec(url);
  const bucket = match?.[1] ?? '';
  const validBucket =
    BUCKET_NAME.test(bucket) &&
    (bucket.includes('.') ? bucket.split('.').every((part) => part.length > 0 && part.length <= 63) : bucket.length <= 63);
  if (match === null || !validBucket) {
    throw new StoreError('invalid', `destination ${JSON.stringify(url)} is not gs://bucket[/prefix] with a valid bucket name`, { target: url });
  }
  const segments = (match[2] ?? '').split('/').filter((s) => s !== '');
  if (segments.some((s) => s === '.' || s === '..') || /[?#\x00-\x1f\x7f\\]/.test(match[2] ?? '')) {
    throw new StoreError('invalid', `destination ${JSON.stringify(url)} has an invalid prefix`, { target: url });
  }
  return { bucket, keyPrefix: segments.length === 0 ? '' : `${segments.join('/')}/` };
}

/** Google's own hosts keep authentication on a custom endpoint (Private Service Connect, regional endpoints). */
function isGoogleHost(endpoint: string): boolean {
  try {
    const host = new URL(endpoint.includes('://') ? endpoint : `https://${endpoint}`).hostname;
    return host === 'googleapis.com' || host.endsWith('.googleapis.com');
  } catch {
    return false;
  }
}

/**
 * Builds the Storage client: no SDK retries (the retry decorator owns them), a key file when one
 * is configured, otherwise GOOGLE_APPLICATION_CREDENTIALS and Application Default Credentials.
 * On a custom endpoint the SDK sends no credentials (emulators want none) unless a key file is
 * given or the host is Google's. overrides replace any setting, e.g. in tests.
 */
export function createStorageClient(options: StoreOptions, overrides: StorageOptions = {}): Storage {
  const keyFile = options.gcp?.keyFile;
  const endpoint = options.endpointUrl;
  const storage = new Storage({
    ...(endpoint === undefined ? {} : { apiEndpoint: endpoint, useAuthWithCustomEndpoint: keyFile !== undefined || isGoogleHost(endpoint) }),
    ...(keyFile === undefined ? {} : { keyFilename: keyFile }),
    // autoRetry alone turns retries off; the SDK treats maxRetries 0 as "unset" (3), and some
    // paths consult retryableErrorFn directly, so it answers "never" as well.
    retryOptions: { autoRetry: false, maxRetries: 0, retryableErrorFn: () => false },
    // Passed on for completeness: with node-fetch 3 underneath, the SDK's JSON API requests
    // ignore it (googleapis/google-cloud-node#7998). RequestWatch below enforces the limits.
    timeout: options.requestTimeoutMs,
    ...overrides,
  });
  // Off the SDK's process-wide "forever" agent, onto Node's global keep-alive agent: when a read
  // ends early the SDK destroys the whole agent its request used, killing every other request on it.
  storage.interceptors.push(addRequestOptions({ forever: false }));
  return storage;
}

/**
 * Whether resumable uploads need credentials added by the store: the SDK's resumable uploader
 * sends none to a custom endpoint outside googleapis.com, even with useAuthWithCustomEndpoint.
 */
export function resumableUploadsNeedAuth(options: StoreOptions): boolean {
  return options.gcp?.keyFile !== undefined && options.endpointUrl !== undefined && !isGoogleHost(options.endpointUrl);
}

/** Opens the store for a gs:// destination; the client is created here and owned by the store. */
export async function createObjectStore(options: StoreOptions): Promise<ObjectStore> {
  const location = parseGsUrl(options.destination);
  return new GcsObjectStore({
    storage: createStorageClient(options),
    ...location,
    partSizeBytes: options.multipart.partSizeBytes,
    authorizeResumableUploads: resumableUploadsNeedAuth(options),
    ...(options.gcp?.kmsKeyName === undefined ? {} : { kmsKeyName: options.gcp.kmsKeyName }),
    ...(options.gcp?.storageClass === undefined ? {} : { storageClass: options.gcp.storageClass }),
    requests: new RequestWatch({ connectTimeoutMs: options.connectTimeoutMs, idleTimeoutMs: options.requestTimeoutMs }),
  });
}

/** One store call in progress: the watch it belongs to and the requests it has made. */
interface Operation {
  watch: RequestWatch;
  requests: Set<ClientRequest>;
  /** False once the call has returned: a request created later in its async context (by a
   *  caller's callback on a body stream, say) is not the store's. */
  open: boolean;
}

/** Node publishes every outgoing HTTP request here, in the async context of the code that made it. */
const REQUEST_CREATED = 'http.client.request.created';

/** Which store call, if any, the code running now belongs to. */
const operations = new AsyncLocalStorage<Operation>();

/** An Error with a Node-style code, which errors.ts classifies. */
function codedError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

/**
 * The HTTP requests of one store: a connect timeout and an idle timeout on each, an abort signal
 * per call, and close() ending them all. The SDK offers none of this: its request timeout is lost
 * on the way to node-fetch 3 and its keep-alive agents are process-wide. So each store call runs in
 * an AsyncLocalStorage context, and the requests created inside it (JSON API, uploads, token
 * refreshes) are found through Node's diagnostics channel and watched here.
 */
export class RequestWatch implements RequestScope {
  /** Watches not yet closed; the channel is subscribed only while there is one. */
  static #open = 0;
  readonly #connectTimeoutMs: number;
  readonly #idleTimeoutMs: number;
  readonly #live = new Set<ClientRequest>();
  /** Sockets this store's requests used, with the agent that may keep them alive between requests. */
  readonly #sockets = new Map<Socket, Agent | undefined>();
  #closed = false;

  constructor(options: { connectTimeoutMs: number; idleTimeoutMs: number }) {
    this.#connectTimeoutMs = options.connectTimeoutMs;
    this.#idleTimeoutMs = options.idleTimeoutMs;
    if (RequestWatch.#open++ === 0) diagnostics.subscribe(REQUEST_CREATED, RequestWatch.#onRequestCreated);
  }

  async run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.#closed) throw new StoreError('failed', 'the store is closed');
    const operation: Operation = { watch: this, requests: new Set(), open: true };
    const onAbort = (): void => {
      for (const request of operation.requests) request.destroy(codedError('ABORT_ERR', 'the operation was aborted'));
    };
    if (signal?.aborted === true) throw new StoreError('failed', 'the operation was aborted', { cause: signal.reason });
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return await operations.run(operation, fn);
    } finally {
      operation.open = false;
      signal?.removeEventListener('abort', onAbort);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const request of this.#live) request.destroy(codedError('ERR_STORE_CLOSED', 'the store was closed'));
    // Idle keep-alive sockets sit in the SDK's shared agent; only those are safe to end here.
    for (const [socket, agent] of this.#sockets) {
      if (agent !== undefined && Object.values(agent.freeSockets).some((free) => free?.includes(socket) === true)) socket.destroy();
    }
    this.#sockets.clear();
    if (--RequestWatch.#open === 0) diagnostics.unsubscribe(REQUEST_CREATED, RequestWatch.#onRequestCreated);
  }

  /** Adopts a request made inside one of this store's calls. */
  static #onRequestCreated = (message: unknown): void => {
    const operation = operations.getStore();
    const request = (message as { request?: ClientRequest }).request;
    if (operation?.open === true && request !== undefined) operation.watch.#track(request, operation);
  };

  #track(request: ClientRequest, operation: Operation): void {
    if (this.#closed) {
      request.destroy(codedError('ERR_STORE_CLOSED', 'the store was closed'));
      return;
    }
    this.#live.add(request);
    operation.requests.add(request);
    request.once('close', () => {
      this.#live.delete(request);
      operation.requests.delete(request);
    });
    // requestTimeoutMs is an idle limit (no bytes either way), so that large bodies still get through.
    request.setTimeout(this.#idleTimeoutMs, () => {
      request.destroy(codedError('ESOCKETTIMEDOUT', `no response activity for ${this.#idleTimeoutMs} ms`));
    });
    // node-fetch turns the timeout off once the headers are in (request.setTimeout(0) in its own
    // 'response' listener, which runs after this one), so a body that stalled mid-way would wait for
    // ever. Arming it again on the next tick, after node-fetch's listener, covers the body too.
    request.once('response', () => process.nextTick(() => {
      if (!request.destroyed) request.setTimeout(this.#idleTimeoutMs);
    }));
    request.once('socket', (socket: Socket) => {
      if (!this.#sockets.has(socket)) {
        // Once per socket, not per request: a keep-alive socket serves many requests.
        this.#sockets.set(socket, (request as ClientRequest & { agent?: Agent }).agent);
        socket.once('close', () => this.#sockets.delete(socket));
      }
      if (!socket.connecting) return;
      // A host that drops packets would otherwise take the kernel's minutes to give up.
      const timer = setTimeout(() => {
        request.destroy(codedError('ETIMEDOUT', `no connection within ${this.#connectTimeoutMs} ms`));
      }, this.#connectTimeoutMs);
      const clear = (): void => clearTimeout(timer);
      socket.once('connect', clear);
      request.once('close', clear);
    });
  }
}

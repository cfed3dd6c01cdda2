/**
 * The S3 provider's entry point: turns StoreOptions into a configured S3 client and store. The
 * CLI imports this file lazily, so nothing here runs unless the destination is s3://.
 */
import { S3Client } from '@aws-sdk/client-s3';
import type { S3ClientConfig } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { StoreError } from '../object-store.ts';
import type { ObjectStore } from '../object-store.ts';
import type { StoreOptions } from '../store-options.ts';
import { S3ObjectStore } from './object-store.ts';

/** Sockets per agent: enough for --jobs × multipart concurrency, bounded so a runaway caller queues instead. */
const MAX_SOCKETS = 64;

/** Region when neither the options nor the environment name one: the SDK's own historical default. */
const DEFAULT_REGION = 'us-east-1';

/** Discards the SDK's own console output (it warns on every failed streaming request); failures reach callers as StoreErrors. */
const SILENT_LOGGER: NonNullable<S3ClientConfig['logger']> = {
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

/** A parsed s3:// destination. */
export interface S3Location {
  bucket: string;
  /** "" or a prefix ending in "/", joined in front of every key. */
  keyPrefix: string;
}

/** Parses s3://bucket/optional/prefix; anything else is a StoreError 'invalid'. */
export function parseS3Url(url: string): S3Location {
  const match = /^s3:\/\/([^/]*)(?:\/(.*))?$/.exec(url);
  const bucket = match?.[1] ?? '';
  if (match === null || bucket === '' || /[?#@:\s]/.test(bucket)) {
    throw new StoreError('invalid', `destination ${JSON.stringify(url)} is not s3://bucket[/prefix]`, { target: url });
  }
  const segments = (match[2] ?? '').split('/').filter((s) => s !== '');
  if (segments.some((s) => s === '.' || s === '..') || /[?#\x00-\x1f\x7f\\]/.test(match[2] ?? '')) {
    throw new StoreError('invalid', `destination ${JSON.stringify(url)} has an invalid prefix`, { target: url });
  }
  return { bucket, keyPrefix: segments.length === 0 ? '' : `${segments.join('/')}/` };
}

/** The region to sign for: options, then the standard environment variables, then us-east-1. */
export function resolveRegion(options: StoreOptions, env: NodeJS.ProcessEnv = process.env): string {
  return options.aws?.region || env['AWS_REGION'] || env['AWS_DEFAULT_REGION'] || DEFAULT_REGION;
}

/**
 * Builds the S3 client: one attempt per call (the retry decorator owns retries), explicit timeouts.
 * overrides replace any setting, e.g. explicit credentials in tests.
 */
export function createS3Client(options: StoreOptions, overrides: S3ClientConfig = {}): S3Client {
  const agentOptions = { keepAlive: true, maxSockets: MAX_SOCKETS, maxFreeSockets: MAX_SOCKETS };
  return new S3Client({
    region: resolveRegion(options),
    ...(options.endpointUrl === undefined ? {} : { endpoint: options.endpointUrl }),
    forcePathStyle: options.aws?.forcePathStyle ?? options.endpointUrl !== undefined,
    ...(options.aws?.profile === undefined ? {} : { profile: options.aws.profile }),
    // Our retry decorator retries every store call; SDK retries on top would multiply attempts.
    maxAttempts: 1,
    // Most S3-compatible stores (and s3rver) store aws-chunked framing or reject flexible checksums.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // A wrong region answers 301; following it beats failing on a typo in aws_region.
    followRegionRedirects: true,
    logger: SILENT_LOGGER,
    requestHandler: new NodeHttpHandler({
      connectionTimeout: options.connectTimeoutMs,
      // requestTimeoutMs is an idle limit, which is the socket timeout: a total limit would cut off large bodies.
      socketTimeout: options.requestTimeoutMs,
      httpAgent: agentOptions,
      httpsAgent: agentOptions,
    }),
    ...overrides,
  });
}

/** Opens the store for an s3:// destination; the client is created here and owned by the store. */
export async function createObjectStore(options: StoreOptions): Promise<ObjectStore> {
  const location = parseS3Url(options.destination);
  return new S3ObjectStore({
    client: createS3Client(options),
    ...location,
    partSizeBytes: options.multipart.partSizeBytes,
    concurrency: options.multipart.concurrency,
    ...(options.tags === undefined ? {} : { tags: options.tags }),
  });
}

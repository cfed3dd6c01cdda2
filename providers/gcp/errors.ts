/**
 * Classifies what the Cloud Storage client throws into the contract's StoreError kinds. The SDK
 * throws several shapes (the JSON API's ApiError, gaxios errors from resumable uploads and the
 * token endpoint, node-fetch errors for the network); the tables below are data so that a new
 * shape or quirk is one line, not a new branch.
 */
import { StoreError } from '../object-store.ts';
import type { StoreErrorKind } from '../object-store.ts';
import { classifiedStoreError, kindOfStatus, STORE_NETWORK_KINDS, STORE_STATUS_KINDS } from '../network-errors.ts';
import type { ErrorClass } from '../network-errors.ts';

/**
 * Node network codes, the SDK's own codes, GCS error reasons (`errors[].reason`) and OAuth token
 * endpoint errors, by kind. Codes win over the HTTP status because they are more specific.
 */
const KIND_BY_CODE: Readonly<Record<string, StoreErrorKind>> = {
  // Node's network codes: not reached at all ('unreachable'; ETIMEDOUT is also the connect timeout
  // in index.ts), or broken mid-exchange ('transient').
  ...STORE_NETWORK_KINDS,
  TimeoutError: 'unreachable', // gaxios' name for its own request timeout
  ESOCKETTIMEDOUT: 'transient', // the connection went quiet: the idle timeout in index.ts
  CONTENT_DOWNLOAD_MISMATCH: 'transient', // a read whose CRC32C did not match: damaged in transit
  FILE_NO_UPLOAD: 'transient', // an upload whose CRC32C did not match; the SDK deleted the object
  FILE_NO_UPLOAD_DELETE: 'failed', // ... and could not delete it: someone must look
  // GCS reasons whose status alone would say less.
  rateLimitExceeded: 'transient',
  userRateLimitExceeded: 'transient',
  backendError: 'transient',
  conditionNotMet: 'already-exists',
  // The token endpoint refused the credentials (RFC 6749 section 5.2).
  invalid_grant: 'access-denied',
  invalid_client: 'access-denied',
  unauthorized_client: 'access-denied',
  access_denied: 'access-denied',
  // The key file named by gcp.keyFile does not exist: a configuration error.
  ENOENT: 'invalid',
};

/** HTTP statuses (the JSON API's `error.code`). 404 is refined by MESSAGE_RULES into container-not-found. */
const KIND_BY_STATUS: Readonly<Record<number, StoreErrorKind>> = {
  ...STORE_STATUS_KINDS,
  400: 'invalid',
  401: 'access-denied',
  409: 'transient', // a concurrent change to the same resource; GCS documents it as retryable
  416: 'invalid',
  499: 'failed', // client closed request: our own cancellation of a resumable upload
};

/**
 * Messages that carry what neither code nor status does. GCS answers 404 for a missing bucket and
 * a missing object alike; only the wording tells them apart. The SDK's "no credentials" error has
 * neither code nor status.
 */
const MESSAGE_RULES: readonly { pattern: RegExp; kind: StoreErrorKind }[] = [
  { pattern: /The specified bucket does not exist/i, kind: 'container-not-found' },
  { pattern: /^Could not load the default credentials/, kind: 'access-denied' },
];

/** A hint per kind, so that a one-line message says what to do next. */
const HINT: Readonly<Record<StoreErrorKind, string>> = {
  'not-found': 'no such object',
  'container-not-found': 'the bucket does not exist; check the destination URL and endpoint',
  'already-exists': 'an object already exists under this key',
  'access-denied': 'access denied; check the key file, GOOGLE_APPLICATION_CREDENTIALS and the bucket IAM policy',
  unreachable: 'Cloud Storage could not be reached; check the endpoint and network',
  transient: 'Cloud Storage answered with a temporary error; safe to retry',
  invalid: 'Cloud Storage rejected the request as invalid',
  corrupt: 'the object stored in Cloud Storage is damaged',
  failed: 'the Cloud Storage request failed',
};

/** The fields of the SDK's error shapes that classification reads; everything is optional. */
interface ErrorShape {
  code?: unknown;
  status?: unknown;
  message?: unknown;
  errors?: unknown;
  cause?: unknown;
  response?: { status?: unknown; statusCode?: unknown; data?: unknown; headers?: unknown };
}

/** What classification found: the kind, plus the code and status to name in a message. */
export type GcsErrorClass = ErrorClass;

/** Reads an error's fields without trusting its type. */
function shapeOf(err: unknown): ErrorShape {
  return typeof err === 'object' && err !== null ? (err as ErrorShape) : {};
}

/** The string codes an error carries, most specific first: its own, GCS reasons, an OAuth error, its cause's. */
function codesOf(shape: ErrorShape): string[] {
  const codes: unknown[] = [shape.code];
  if (Array.isArray(shape.errors)) for (const e of shape.errors) codes.push((shapeOf(e) as { reason?: unknown }).reason);
  // The token endpoint answers {"error": "invalid_grant", ...}; the JSON API nests an object there instead.
  codes.push((shapeOf(shape.response?.data) as { error?: unknown }).error);
  codes.push(shapeOf(shape.cause).code);
  return codes.filter((c): c is string => typeof c === 'string' && c.length > 0);
}

/** The HTTP status: ApiError keeps it in `code`, gaxios in `status`, raw responses in `response`. */
function statusOf(shape: ErrorShape): number | undefined {
  for (const value of [shape.code, shape.status, shape.response?.status, shape.response?.statusCode]) {
    if (typeof value === 'number' && Number.isInteger(value) && value >= 100 && value <= 599) return value;
  }
  return undefined;
}

/** The kind of an SDK error: message rules first (they refine a status), then codes, then the status and its class. */
export function classifyGcsError(err: unknown): GcsErrorClass {
  const shape = shapeOf(err);
  const codes = codesOf(shape);
  const status = statusOf(shape);
  const code = codes[0];
  const message = typeof shape.message === 'string' ? shape.message : '';
  for (const rule of MESSAGE_RULES) {
    if (rule.pattern.test(message)) return { kind: rule.kind, code, status };
  }
  for (const c of codes) {
    const kind = KIND_BY_CODE[c];
    if (kind !== undefined) return { kind, code: c, status };
  }
  return { kind: kindOfStatus(status, KIND_BY_STATUS, 'transient', 'invalid') ?? 'failed', code, status };
}

/**
 * Turns anything the SDK threw into a StoreError about target, keeping the original as `cause`
 * and the wait a throttling answer asked for (Retry-After). The message names the code and status
 * only: SDK and token-endpoint messages can echo request details, and a credential must never
 * reach a log.
 */
export function toStoreError(err: unknown, target: string): StoreError {
  if (err instanceof StoreError) return err;
  const found = classifyGcsError(err);
  return classifiedStoreError(found, HINT[found.kind], target, err, shapeOf(err).response?.headers);
}

/**
 * Classifies what the S3 SDK throws into the contract's StoreError kinds. The tables are data so
 * that a new S3-compatible store's quirk is one line, not a new branch.
 */
import { StoreError } from '../object-store.ts';
import type { StoreErrorKind } from '../object-store.ts';
import { classifiedStoreError, kindOfStatus, STORE_NETWORK_KINDS, STORE_STATUS_KINDS } from '../network-errors.ts';

/** S3 error codes (the SDK's `name`, or a DeleteObjects entry's `Code`) and Node error codes, by kind. */
const KIND_BY_CODE: Readonly<Record<string, StoreErrorKind>> = {
  // The object is missing; HEAD answers have no body, so the SDK names them after the status.
  NoSuchKey: 'not-found',
  NotFound: 'not-found',
  NoSuchBucket: 'container-not-found',
  // Conditional create lost: the object exists, or a concurrent conditional write won.
  PreconditionFailed: 'already-exists',
  ConditionalRequestConflict: 'already-exists',
  // Credentials missing, wrong or not allowed.
  AccessDenied: 'access-denied',
  AllAccessDisabled: 'access-denied',
  AccountProblem: 'access-denied',
  InvalidAccessKeyId: 'access-denied',
  InvalidToken: 'access-denied',
  SignatureDoesNotMatch: 'access-denied',
  ExpiredToken: 'access-denied',
  TokenRefreshRequired: 'access-denied',
  CredentialsProviderError: 'access-denied',
  Forbidden: 'access-denied',
  // Node's network codes: not reached at all ('unreachable'), or broken mid-exchange ('transient').
  ...STORE_NETWORK_KINDS,
  TimeoutError: 'unreachable',
  // The service answered (or was mid-answer) with something a retry can fix.
  InternalError: 'transient',
  ServiceUnavailable: 'transient',
  SlowDown: 'transient',
  Throttling: 'transient',
  ThrottlingException: 'transient',
  TooManyRequestsException: 'transient',
  RequestLimitExceeded: 'transient',
  RequestThrottled: 'transient',
  RequestTimeout: 'transient', // S3's 400 for a body that arrived too slowly
  RequestTimeTooSkewed: 'transient', // the SDK corrects its clock offset from this answer
  OperationAborted: 'transient', // a conflicting operation on the bucket is in progress
  BadDigest: 'transient', // the body was damaged in transit
  IncompleteBody: 'transient',
  XAmzContentSHA256Mismatch: 'transient',
  // The request itself is wrong.
  InvalidArgument: 'invalid',
  InvalidRequest: 'invalid',
  InvalidRange: 'invalid',
  InvalidBucketName: 'invalid',
  KeyTooLongError: 'invalid',
  MetadataTooLarge: 'invalid',
  MalformedXML: 'invalid',
  EntityTooLarge: 'invalid',
  EntityTooSmall: 'invalid',
  InvalidObjectState: 'invalid',
  PermanentRedirect: 'invalid',
  AuthorizationHeaderMalformed: 'invalid',
};

/** A hint per kind, so that a one-line message says what to do next. */
const HINT: Readonly<Record<StoreErrorKind, string>> = {
  'not-found': 'no such object',
  'container-not-found': 'the bucket does not exist; check the destination URL, region and endpoint',
  'already-exists': 'an object already exists under this key',
  'access-denied': 'access denied; check the credentials, profile and bucket policy',
  unreachable: 'S3 could not be reached; check the endpoint, network and region',
  transient: 'S3 answered with a temporary error; safe to retry',
  invalid: 'S3 rejected the request as invalid',
  corrupt: 'the object stored in S3 is damaged',
  failed: 'the S3 request failed',
};

/** The fields of an SDK or Node error that classification reads; everything is optional. */
interface ErrorShape {
  name?: unknown;
  code?: unknown;
  Code?: unknown;
  $retryable?: unknown;
  $metadata?: { httpStatusCode?: unknown };
  /** The raw answer; the SDK attaches it (not enumerable) to every service error. */
  $response?: { headers?: unknown };
}

/** The codes an error carries, most specific first (Node's `code` before the SDK's `name`). */
function codesOf(err: ErrorShape): string[] {
  return [err.code, err.Code, err.name].filter((c): c is string => typeof c === 'string' && c.length > 0);
}

/** The kind of an SDK error: its code first, then its HTTP status (the same on every store), then the status class. */
export function classifyS3Error(err: unknown): { kind: StoreErrorKind; code: string | undefined; status: number | undefined } {
  const shape: ErrorShape = typeof err === 'object' && err !== null ? (err as ErrorShape) : {};
  const codes = codesOf(shape);
  const rawStatus = shape.$metadata?.httpStatusCode;
  const status = typeof rawStatus === 'number' ? rawStatus : undefined;
  for (const code of codes) {
    const kind = KIND_BY_CODE[code];
    if (kind !== undefined) return { kind, code, status };
  }
  const code = codes[0];
  const byStatus = kindOfStatus(status, STORE_STATUS_KINDS, 'transient', 'invalid');
  if (byStatus !== undefined) return { kind: byStatus, code, status };
  if (shape.$retryable !== undefined && shape.$retryable !== null) return { kind: 'transient', code, status };
  return { kind: 'failed', code, status };
}

/**
 * Turns anything the SDK threw into a StoreError about target, keeping the original as `cause`
 * and the wait a throttling answer asked for (Retry-After). The message names the code and status
 * only: SDK messages can echo request details.
 */
export function toStoreError(err: unknown, target: string): StoreError {
  if (err instanceof StoreError) return err;
  const found = classifyS3Error(err);
  const response = typeof err === 'object' && err !== null ? (err as ErrorShape).$response : undefined;
  return classifiedStoreError(found, HINT[found.kind], target, err, response?.headers);
}

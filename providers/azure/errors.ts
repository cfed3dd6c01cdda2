/**
 * Classifies what the Azure Storage SDK (and @azure/identity) throws into the contract's StoreError
 * kinds. The tables are data so that a new service or emulator quirk is one line, not a new branch.
 */
import { StoreError } from '../object-store.ts';
import type { StoreErrorKind } from '../object-store.ts';
import { classifiedStoreError, kindOfStatus, STORE_NETWORK_KINDS, STORE_STATUS_KINDS } from '../network-errors.ts';

/**
 * Azure error codes (x-ms-error-code, the RestError's `code`), Node error codes and error names, by kind.
 * See https://learn.microsoft.com/rest/api/storageservices/blob-service-error-codes.
 */
const KIND_BY_CODE: Readonly<Record<string, StoreErrorKind>> = {
  BlobNotFound: 'not-found',
  ContainerNotFound: 'container-not-found',
  ContainerBeingDeleted: 'container-not-found',
  ContainerDisabled: 'container-not-found',
  // Conditional create lost (If-None-Match: *): the blob exists, or a concurrent create won.
  BlobAlreadyExists: 'already-exists',
  ConditionNotMet: 'already-exists',
  // Credentials missing, wrong, expired or without the role / SAS permission.
  AuthenticationFailed: 'access-denied',
  AuthorizationFailure: 'access-denied',
  AuthorizationPermissionMismatch: 'access-denied',
  AuthorizationProtocolMismatch: 'access-denied',
  AuthorizationResourceTypeMismatch: 'access-denied',
  AuthorizationServiceMismatch: 'access-denied',
  AuthorizationSourceIPMismatch: 'access-denied',
  InsufficientAccountPermissions: 'access-denied',
  AccountIsDisabled: 'access-denied',
  KeyBasedAuthenticationNotPermitted: 'access-denied',
  NoAuthenticationInformation: 'access-denied',
  InvalidAuthenticationInfo: 'access-denied',
  // @azure/identity: no token could be had (no login, no managed identity, refused).
  CredentialUnavailableError: 'access-denied',
  AuthenticationError: 'access-denied',
  AggregateAuthenticationError: 'access-denied',
  // Node's network codes: not reached at all ('unreachable'; ETIMEDOUT is also our own connect and
  // idle timeout), or broken mid-exchange ('transient').
  ...STORE_NETWORK_KINDS,
  // The service answered (or was mid-answer) with something a retry can fix.
  REQUEST_SEND_ERROR: 'transient', // the SDK's name for a request that broke off without a Node code
  // The answer's body broke off or arrived garbled ("Error reading response as text: aborted"): a
  // listing or an error body cut in transit. When an error status did arrive, it decides instead.
  PARSE_ERROR: 'transient',
  InternalError: 'transient',
  OperationTimedOut: 'transient',
  ServerBusy: 'transient',
  ServiceUnavailable: 'transient',
  Md5Mismatch: 'transient', // the body was damaged in transit
  Crc64Mismatch: 'transient',
  // A concurrent commit of the same blob discards our uncommitted blocks; sending them again fixes it.
  InvalidBlockList: 'transient',
  // The request itself is wrong.
  InvalidRange: 'invalid',
  InvalidBlockId: 'invalid',
  BlockCountExceedsLimit: 'invalid',
  BlockListTooLong: 'invalid',
  RequestBodyTooLarge: 'invalid',
  InvalidMetadata: 'invalid',
  EmptyMetadataKey: 'invalid',
  MetadataTooLarge: 'invalid',
  InvalidTag: 'invalid',
  InvalidBlobTier: 'invalid',
  InvalidHeaderValue: 'invalid',
  InvalidQueryParameterValue: 'invalid',
  InvalidInput: 'invalid',
  InvalidUri: 'invalid',
  InvalidResourceName: 'invalid',
  OutOfRangeInput: 'invalid',
  UnsupportedHeader: 'invalid',
  MissingRequiredHeader: 'invalid',
  InvalidBlobType: 'invalid',
  FeatureNotSupported: 'invalid',
};

/** HTTP statuses whose meaning does not depend on the code (used when the code is unknown). */
const KIND_BY_STATUS: Readonly<Record<number, StoreErrorKind>> = {
  ...STORE_STATUS_KINDS,
  401: 'access-denied',
};

/** A hint per kind, so that a one-line message says what to do next. */
const HINT: Readonly<Record<StoreErrorKind, string>> = {
  'not-found': 'no such blob',
  'container-not-found': 'the container does not exist; check the destination URL, the storage account and the endpoint',
  'already-exists': 'a blob already exists under this name',
  'access-denied':
    'access denied; check the storage account, its key or SAS token (and its permissions), or the Entra ID role assignment',
  unreachable: 'Azure Blob Storage could not be reached; check the storage account, the endpoint and the network',
  transient: 'Azure Blob Storage answered with a temporary error; safe to retry',
  invalid: 'Azure Blob Storage rejected the request as invalid',
  corrupt: 'the blob is damaged',
  failed: 'the Azure Blob Storage request failed',
};

/** The fields of an SDK, identity or Node error that classification reads; everything is optional. */
interface ErrorShape {
  name?: unknown;
  code?: unknown;
  statusCode?: unknown;
  /** A HEAD answer has no body, so the SDK puts x-ms-error-code only here. */
  details?: { errorCode?: unknown } | null;
  /** The answer, when one arrived: its headers carry Retry-After and x-ms-retry-after-ms. */
  response?: { headers?: unknown } | null;
}

/** The codes an error carries, most specific first (the service's or Node's code before the error's name). */
function codesOf(err: ErrorShape): string[] {
  const details = typeof err.details === 'object' && err.details !== null ? err.details.errorCode : undefined;
  return [err.code, details, err.name].filter((c): c is string => typeof c === 'string' && c.length > 0);
}

/** Codes that say the answer could not be read, not what it said: an error status, when one arrived, wins over them. */
const UNREADABLE_ANSWER = new Set(['PARSE_ERROR']);

/** The kind of an SDK error: its code first, then its HTTP status, then the status class. */
export function classifyAzureError(err: unknown): { kind: StoreErrorKind; code: string | undefined; status: number | undefined } {
  const shape: ErrorShape = typeof err === 'object' && err !== null ? (err as ErrorShape) : {};
  const codes = codesOf(shape);
  const status = typeof shape.statusCode === 'number' ? shape.statusCode : undefined;
  for (const code of codes) {
    const kind = KIND_BY_CODE[code];
    if (kind === undefined || (UNREADABLE_ANSWER.has(code) && status !== undefined && status >= 400 && status < 500)) continue;
    return { kind, code, status };
  }
  // 'RestError' and 'Error' name a class, not a condition: leave them out of the message.
  const code = codes.find((c) => c !== 'RestError' && c !== 'Error');
  return { kind: kindOfStatus(status, KIND_BY_STATUS, 'transient', 'invalid') ?? 'failed', code, status };
}

/**
 * Turns anything the SDK threw into a StoreError about target, keeping the original as `cause`
 * and the wait a throttling answer asked for (x-ms-retry-after-ms, Retry-After). The message names
 * the code and status only: SDK messages can echo request details.
 */
export function toStoreError(err: unknown, target: string): StoreError {
  if (err instanceof StoreError) return err;
  const found = classifyAzureError(err);
  const response = typeof err === 'object' && err !== null ? (err as ErrorShape).response : undefined;
  return classifiedStoreError(found, HINT[found.kind], target, err, response?.headers);
}

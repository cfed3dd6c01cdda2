/**
 * Classifies what the EC2 SDK throws into the snapshotter contract's SnapshotError kinds. The
 * table is data, so that a newly met EC2 code is one line. Codes are from
 * https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html.
 */
import { SnapshotError } from '../snapshotter.ts';
import type { SnapshotErrorKind } from '../snapshotter.ts';
import { kindOfStatus, SNAPSHOT_NETWORK_KINDS } from '../network-errors.ts';

/** EC2 error codes (the SDK's `name`) and Node/SDK error codes, by kind. */
const KIND_BY_CODE: Readonly<Record<string, SnapshotErrorKind>> = {
  // The instance, volume or snapshot does not exist. A malformed id cannot name one that does.
  'InvalidInstanceID.NotFound': 'not-found',
  'InvalidInstanceID.Malformed': 'not-found',
  'InvalidVolume.NotFound': 'not-found',
  'InvalidVolumeID.Malformed': 'not-found',
  'InvalidVolume.Malformed': 'not-found',
  'InvalidSnapshot.NotFound': 'not-found',
  'InvalidSnapshotID.Malformed': 'not-found',
  'InvalidSnapshot.Malformed': 'not-found',
  InvalidID: 'not-found',
  // The volume is not attached where the call needs it.
  'InvalidAttachment.NotFound': 'not-attached',
  IncorrectState: 'invalid', // e.g. a volume still creating, a snapshot still pending: the caller's order is wrong
  // The account may not have more.
  SnapshotLimitExceeded: 'quota-exceeded',
  ConcurrentSnapshotLimitExceeded: 'quota-exceeded',
  VolumeLimitExceeded: 'quota-exceeded',
  AttachmentLimitExceeded: 'quota-exceeded',
  MaxIOPSLimitExceeded: 'quota-exceeded',
  ResourceLimitExceeded: 'quota-exceeded',
  // The API asked to slow down.
  RequestLimitExceeded: 'throttled',
  SnapshotCreationPerVolumeRateExceeded: 'throttled',
  Throttling: 'throttled',
  ThrottlingException: 'throttled',
  RequestThrottled: 'throttled',
  TooManyRequestsException: 'throttled',
  // Credentials missing, wrong or not allowed.
  UnauthorizedOperation: 'access-denied',
  AuthFailure: 'access-denied',
  Blocked: 'access-denied',
  OptInRequired: 'access-denied',
  PendingVerification: 'access-denied',
  InvalidClientTokenId: 'access-denied',
  MissingAuthenticationToken: 'access-denied',
  SignatureDoesNotMatch: 'access-denied',
  IncompleteSignature: 'access-denied',
  ExpiredToken: 'access-denied',
  RequestExpired: 'access-denied',
  CredentialsProviderError: 'access-denied',
  // The API could not be reached, or could not answer: a retry may succeed.
  ...SNAPSHOT_NETWORK_KINDS,
  TimeoutError: 'unreachable',
  RequestTimeout: 'unreachable',
  InternalError: 'unreachable',
  InternalFailure: 'unreachable',
  Unavailable: 'unreachable',
  ServiceUnavailable: 'unreachable',
  // The request itself is wrong.
  InvalidParameterValue: 'invalid',
  InvalidParameter: 'invalid',
  InvalidParameterCombination: 'invalid',
  InvalidParameterDependency: 'invalid',
  MissingParameter: 'invalid',
  UnknownParameter: 'invalid',
  InvalidAction: 'invalid',
  MissingAction: 'invalid',
  NoSuchVersion: 'invalid',
  UnsupportedOperation: 'invalid',
  IdempotentParameterMismatch: 'invalid',
  InvalidPaginationToken: 'invalid',
  IncorrectInstanceState: 'invalid',
  VolumeInUse: 'invalid',
  'InvalidVolume.ZoneMismatch': 'invalid',
  'InvalidZone.NotFound': 'invalid',
  'InvalidSnapshot.InUse': 'invalid',
  TagLimitExceeded: 'invalid',
  DryRunOperation: 'invalid',
};

/** HTTP statuses whose meaning does not depend on the code (used when the code is unknown). */
const KIND_BY_STATUS: Readonly<Record<number, SnapshotErrorKind>> = {
  401: 'access-denied',
  403: 'access-denied',
  404: 'not-found',
  408: 'unreachable',
  429: 'throttled',
};

/** A hint per kind, so that a one-line message says what to do next. */
const HINT: Readonly<Record<SnapshotErrorKind, string>> = {
  'not-found': 'not found',
  'not-attached': 'the volume is not attached to the instance',
  'quota-exceeded': 'an EC2/EBS limit of the account was reached; delete old snapshots or volumes, or ask AWS for a higher quota',
  throttled: 'EC2 throttled the request; safe to retry',
  'access-denied': 'access denied; check the credentials, the IAM policy (ec2:CreateSnapshots, ec2:Describe*, ...) and aws_region',
  unreachable: 'EC2 could not be reached or did not answer; check the endpoint, network and aws_region',
  invalid: 'EC2 rejected the request as invalid',
  timeout: 'the operation did not finish in time',
  failed: 'the EC2 request failed',
};

/** The fields of an SDK or Node error that classification reads; everything is optional. */
interface ErrorShape {
  name?: unknown;
  code?: unknown;
  Code?: unknown;
  message?: unknown;
  $metadata?: { httpStatusCode?: unknown };
}

/** The classification of one error. */
export interface Ec2ErrorClass {
  kind: SnapshotErrorKind;
  code: string | undefined;
  status: number | undefined;
}

/** The kind of an SDK error: its code first (Node's `code` before the SDK's `name`), then its HTTP status. */
export function classifyEc2Error(err: unknown): Ec2ErrorClass {
  const shape: ErrorShape = typeof err === 'object' && err !== null ? (err as ErrorShape) : {};
  const codes = [shape.code, shape.Code, shape.name].filter((c): c is string => typeof c === 'string' && c.length > 0);
  const rawStatus = shape.$metadata?.httpStatusCode;
  const status = typeof rawStatus === 'number' ? rawStatus : undefined;
  for (const code of codes) {
    const kind = KIND_BY_CODE[code];
    if (kind !== undefined) return { kind, code, status };
  }
  const code = codes.find((c) => c !== 'Error' && c !== 'Unknown');
  return { kind: kindOfStatus(status, KIND_BY_STATUS, 'unreachable', 'invalid') ?? 'failed', code, status };
}

/**
 * Turns anything the SDK threw during `operation` on `target` into a SnapshotError, keeping the
 * original as `cause`. EC2's own message is kept (it names ids and states, never credentials).
 */
export function toSnapshotError(err: unknown, operation: string, target: string): SnapshotError {
  if (err instanceof SnapshotError) return err;
  const { kind, code, status } = classifyEc2Error(err);
  const detail = [code, status === undefined ? undefined : `HTTP ${status}`].filter((d) => d !== undefined).join(', ');
  const serviceMessage = code !== undefined && err instanceof Error && err.message !== '' && err.message !== code && err.message !== 'Unknown' ? `: ${err.message}` : '';
  const message = `${operation} ${target}: ${HINT[kind]}${detail === '' ? '' : ` (${detail}${serviceMessage})`}`;
  return new SnapshotError(kind, message, { target, cause: err });
}

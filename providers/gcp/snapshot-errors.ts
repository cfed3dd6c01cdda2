/**
 * Classifies what the Compute Engine client (@google-cloud/compute over REST) throws, and what a
 * failed operation reports, into the snapshotter contract's SnapshotError kinds. The rules are data
 * tables, so that a new reason or code is one line, not a new branch.
 *
 * Where the facts are: google-gax turns an HTTP error into a GoogleError whose `code` is a gRPC code,
 * `httpStatusCode` the HTTP status and `reason` the ErrorInfo reason, when the body has one. The
 * legacy `errors[].reason` (quotaExceeded, rateLimitExceeded, notFound), which Compute Engine always
 * sends and often sends alone, survives only in the raw body gax keeps under a global symbol, and for
 * 401/403 in the gaxios error under `cause`. So the raw body is read too.
 */
import { SnapshotError } from '../snapshotter.ts';
import type { SnapshotErrorKind } from '../snapshotter.ts';
import { kindOfStatus, SNAPSHOT_NETWORK_KINDS } from '../network-errors.ts';

/**
 * Reasons, from `errors[].reason` and ErrorInfo `reason`, by kind. They win over the HTTP status:
 * Compute Engine answers a rate limit and a quota with 403, the status of a permission error.
 */
const KIND_BY_REASON: Readonly<Record<string, SnapshotErrorKind>> = {
  notFound: 'not-found',
  quotaExceeded: 'quota-exceeded',
  QUOTA_EXCEEDED: 'quota-exceeded',
  rateLimitExceeded: 'throttled',
  userRateLimitExceeded: 'throttled',
  RATE_LIMIT_EXCEEDED: 'throttled',
  CONCURRENT_OPERATIONS_QUOTA_EXCEEDED: 'throttled', // concurrent-operation limits: wait for others to finish
  forbidden: 'access-denied',
  insufficientPermissions: 'access-denied',
  authError: 'access-denied',
  required: 'access-denied', // with a 401 only: "Login Required"; a missing field is 400 'required' below
  accessNotConfigured: 'access-denied', // the Compute Engine API is not enabled in the project
  SERVICE_DISABLED: 'access-denied',
  resourceNotReady: 'invalid',
  resourceInUseByAnotherResource: 'invalid',
  alreadyExists: 'invalid',
  invalid: 'invalid',
  invalidParameter: 'invalid',
  badRequest: 'invalid',
  parseError: 'invalid',
  backendError: 'unreachable',
};

/** `error.errors[].code` of a failed operation, by kind; any other code is 'failed'. */
const KIND_BY_OPERATION_CODE: Readonly<Record<string, SnapshotErrorKind>> = {
  QUOTA_EXCEEDED: 'quota-exceeded',
  RATE_LIMIT_EXCEEDED: 'throttled',
  CONCURRENT_OPERATIONS_QUOTA_EXCEEDED: 'throttled',
  RESOURCE_NOT_FOUND: 'not-found',
  RESOURCE_ALREADY_EXISTS: 'invalid',
  RESOURCE_IN_USE_BY_ANOTHER_RESOURCE: 'invalid',
  RESOURCE_NOT_READY: 'invalid',
  INVALID_FIELD_VALUE: 'invalid',
  PERMISSIONS_ERROR: 'access-denied',
};

/** Node network codes anywhere in the cause chain: the API could not be reached at all. */
const KIND_BY_NODE_CODE: Readonly<Record<string, SnapshotErrorKind>> = {
  ...SNAPSHOT_NETWORK_KINDS,
  // The token endpoint refused the credentials (RFC 6749 section 5.2).
  invalid_grant: 'access-denied',
  invalid_client: 'access-denied',
  unauthorized_client: 'access-denied',
};

/** HTTP statuses, when no reason said more. */
const KIND_BY_STATUS: Readonly<Record<number, SnapshotErrorKind>> = {
  400: 'invalid',
  401: 'access-denied',
  403: 'access-denied',
  404: 'not-found',
  409: 'invalid',
  412: 'invalid',
  429: 'throttled',
  502: 'unreachable',
  503: 'unreachable',
  504: 'unreachable',
};

/** gRPC codes (google.rpc.Code), for errors without an HTTP status: the request never got an answer. */
const KIND_BY_GRPC_CODE: Readonly<Record<number, SnapshotErrorKind>> = {
  1: 'failed', // CANCELLED: our own abort
  3: 'invalid', // INVALID_ARGUMENT
  4: 'unreachable', // DEADLINE_EXCEEDED: the request's own timeout
  5: 'not-found',
  7: 'access-denied',
  8: 'throttled', // RESOURCE_EXHAUSTED
  14: 'unreachable', // UNAVAILABLE: connection refused, reset, DNS
  16: 'access-denied',
};

/** Statuses worth another attempt: the service's own "try again". Throttling is retried as well. */
const RETRY_STATUSES: ReadonlySet<number> = new Set([429, 500, 502, 503, 504]);

/** Messages that carry what nothing else does. */
const MESSAGE_RULES: readonly { pattern: RegExp; kind: SnapshotErrorKind }[] = [
  { pattern: /^Could not load the default credentials/, kind: 'access-denied' },
  { pattern: /^Quota '[^']+' exceeded/, kind: 'quota-exceeded' },
];

/** A hint per kind, so that a one-line message says what to do next. */
const HINT: Readonly<Record<SnapshotErrorKind, string>> = {
  'not-found': 'not found; check snapshot_instance, snapshot_disks, snapshot_zone and snapshot_gcp_project',
  'not-attached': 'the disk is not attached to the instance',
  'quota-exceeded': 'a Compute Engine quota is used up; delete old snapshots or disks, or ask for more quota',
  throttled: 'Compute Engine asked to slow down (rate limit); safe to retry later',
  'access-denied': 'access denied; check Application Default Credentials and the IAM roles on the project',
  unreachable: 'the Compute Engine API could not be reached; check the endpoint and the network',
  invalid: 'Compute Engine rejected the request',
  timeout: 'the Compute Engine operation did not finish in time',
  failed: 'the Compute Engine request failed',
};

/** The API's error body, as far as classification reads it. */
interface ApiErrorBody {
  code?: unknown;
  message?: unknown;
  errors?: unknown;
  details?: unknown;
}

/** The fields of the client's error shapes that classification reads; all optional. */
interface ErrorShape {
  code?: unknown;
  status?: unknown;
  httpStatusCode?: unknown;
  reason?: unknown;
  message?: unknown;
  cause?: unknown;
}

/** What classification found. */
export interface ComputeErrorClass {
  kind: SnapshotErrorKind;
  /** Worth another attempt now (throttling, the service's 5xx); a network failure is not retried here. */
  retry: boolean;
  reason: string | undefined;
  status: number | undefined;
  /** The API's own message, when the error came from the Compute Engine API. */
  apiMessage: string | undefined;
}

/** Where google-gax keeps the raw body of an HTTP error (a registered symbol, so no import is needed). */
const RAW_PAYLOAD = Symbol.for('google-gax.rawHttpResponsePayload');

function shapeOf(err: unknown): ErrorShape {
  return typeof err === 'object' && err !== null ? (err as ErrorShape) : {};
}

/** Parses JSON that may be an API error body `{"error": {...}}`. */
function errorBodyOf(text: unknown): ApiErrorBody | undefined {
  if (typeof text !== 'string' || !text.startsWith('{')) return undefined;
  try {
    const parsed = JSON.parse(text) as { error?: unknown };
    return typeof parsed.error === 'object' && parsed.error !== null ? (parsed.error as ApiErrorBody) : undefined;
  } catch {
    return undefined;
  }
}

/** The API error body: gax's raw copy, or the message of the gaxios error (401/403) under cause. */
function apiBodyOf(err: unknown): ApiErrorBody | undefined {
  const raw = typeof err === 'object' && err !== null ? (err as Record<symbol, unknown>)[RAW_PAYLOAD] : undefined;
  const fromRaw = errorBodyOf(raw);
  if (fromRaw !== undefined) return fromRaw;
  for (let e = shapeOf(err).cause, depth = 0; e !== undefined && depth < 4; e = shapeOf(e).cause, depth++) {
    const body = errorBodyOf(shapeOf(e).message);
    if (body !== undefined) return body;
  }
  return undefined;
}

/** Reasons, most specific first: errors[].reason, then ErrorInfo reasons. */
function reasonsOf(err: unknown, body: ApiErrorBody | undefined): string[] {
  const reasons: unknown[] = [];
  if (Array.isArray(body?.errors)) for (const e of body.errors) reasons.push(shapeOf(e).reason);
  if (Array.isArray(body?.details)) for (const d of body.details) reasons.push(shapeOf(d).reason);
  reasons.push(shapeOf(err).reason);
  return reasons.filter((r): r is string => typeof r === 'string' && r.length > 0);
}

/** String codes along the cause chain (Node's network codes, OAuth errors). */
function nodeCodesOf(err: unknown): string[] {
  const codes: string[] = [];
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 6; e = shapeOf(e).cause, depth++) {
    const { code } = shapeOf(e);
    if (typeof code === 'string') codes.push(code);
    const data = (shapeOf(e) as { response?: { data?: unknown } }).response?.data;
    const oauth = shapeOf(data) as { error?: unknown };
    if (typeof oauth.error === 'string') codes.push(oauth.error);
  }
  return codes;
}

/** The HTTP status: gax's httpStatusCode, the body's code, or the gaxios error's status. */
function statusOf(err: unknown, body: ApiErrorBody | undefined): number | undefined {
  const candidates = [shapeOf(err).httpStatusCode, body?.code, shapeOf(shapeOf(err).cause).status];
  for (const value of candidates) {
    if (typeof value === 'number' && Number.isInteger(value) && value >= 100 && value <= 599) return value;
  }
  return undefined;
}

/** The kind of anything the client threw: message rules, then reasons, network codes, HTTP status, gRPC code. */
export function classifyComputeError(err: unknown): ComputeErrorClass {
  const shape = shapeOf(err);
  const body = apiBodyOf(err);
  const status = statusOf(err, body);
  const reasons = reasonsOf(err, body);
  const message = typeof shape.message === 'string' ? shape.message : '';
  const apiMessage = status !== undefined && typeof body?.message === 'string' ? body.message : status !== undefined ? message : undefined;
  const retryStatus = status !== undefined && RETRY_STATUSES.has(status);
  const result = (kind: SnapshotErrorKind, reason?: string): ComputeErrorClass => ({
    kind,
    retry: kind === 'throttled' || retryStatus,
    reason: reason ?? reasons[0],
    status,
    apiMessage,
  });
  for (const rule of MESSAGE_RULES) if (rule.pattern.test(message)) return result(rule.kind);
  for (const reason of reasons) {
    // 'required' means "Login Required" only on a 401; on a 400 it is a missing field.
    if (reason === 'required' && status !== 401) return result('invalid', reason);
    const kind = KIND_BY_REASON[reason];
    if (kind !== undefined) return result(kind, reason);
  }
  for (const code of nodeCodesOf(err)) {
    const kind = KIND_BY_NODE_CODE[code];
    if (kind !== undefined) return result(kind, code);
  }
  if (status !== undefined) {
    return result(kindOfStatus(status, KIND_BY_STATUS, 'failed', 'invalid') ?? 'failed');
  }
  const grpc = typeof shape.code === 'number' ? KIND_BY_GRPC_CODE[shape.code] : undefined;
  return result(grpc ?? 'failed');
}

/** A one-line detail: the reason and status, and the API's message cut to a sensible length. */
function detailOf(parts: (string | undefined)[]): string {
  const text = parts.filter((p): p is string => p !== undefined && p !== '').join(', ');
  return text === '' ? '' : ` (${text.length > 400 ? `${text.slice(0, 400)}...` : text})`;
}

/**
 * Turns anything the client threw into a SnapshotError about target, keeping the original as
 * `cause`. The message quotes the API's own message only when the Compute Engine API answered:
 * token-endpoint and transport messages can echo request details, and credentials never reach a log.
 */
export function toSnapshotError(err: unknown, target: string): SnapshotError {
  if (err instanceof SnapshotError) return err;
  const { kind, reason, status, apiMessage } = classifyComputeError(err);
  const detail = detailOf([apiMessage, reason, status === undefined ? undefined : `HTTP ${status}`]);
  return new SnapshotError(kind, `${HINT[kind]}: ${target}${detail}`, { target, cause: err });
}

/** What a DONE operation carries when it failed; the client's Operation type fits. */
export interface FailedOperation {
  name?: string | null;
  error?: { errors?: { code?: string | null; message?: string | null }[] | null } | null;
  httpErrorStatusCode?: number | null;
}

/** The error a DONE operation ended with, or undefined when it succeeded. */
export function operationError(op: FailedOperation, target: string): SnapshotError | undefined {
  const errors = op.error?.errors ?? [];
  if (errors.length === 0) return undefined;
  const codes = errors.map((e) => e.code ?? '').filter((c) => c !== '');
  const kind = codes.map((c) => KIND_BY_OPERATION_CODE[c]).find((k) => k !== undefined) ?? 'failed';
  const messages = errors.map((e) => e.message ?? '').filter((m) => m !== '');
  const status = typeof op.httpErrorStatusCode === 'number' && op.httpErrorStatusCode > 0 ? `HTTP ${op.httpErrorStatusCode}` : undefined;
  const detail = detailOf([messages.join('; '), codes.join(', '), status]);
  return new SnapshotError(kind, `${HINT[kind]}: ${target}${detail}`, { target, cause: op });
}

/** A SnapshotError of a kind this provider raises itself (timeout, not-attached, invalid options). */
export function snapshotError(kind: SnapshotErrorKind, target: string, why?: string): SnapshotError {
  return new SnapshotError(kind, `${HINT[kind]}: ${target}${why === undefined ? '' : ` (${why})`}`, { target });
}

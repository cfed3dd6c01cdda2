/**
 * What every provider's error classification shares: the kinds of Node's network error codes,
 * the fallback from an HTTP status to a kind, and the one-line message a classified error gets.
 * Each provider's errors.ts keeps its own codes, statuses and hints as data; SDK-free, so that no
 * provider loads another's SDK through it.
 */
import { StoreError } from './object-store.ts';
import type { StoreErrorKind } from './object-store.ts';
import type { SnapshotErrorKind } from './snapshotter.ts';
import { retryAfterOf } from './retry-after.ts';

/** Node codes of a service that could not be reached at all: refused, not resolved, no route, timed out. */
export const UNREACHABLE_CODES = ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT'] as const;

/** Node codes of a connection that broke mid-exchange. */
export const BROKEN_CONNECTION_CODES = ['ECONNRESET', 'EPIPE'] as const;

/** A table giving each of codes the same kind. */
export function kindsOf<K extends string>(codes: readonly string[], kind: K): Record<string, K> {
  return Object.fromEntries(codes.map((code) => [code, kind]));
}

/**
 * Object stores: a service not reached is 'unreachable'; a connection that broke, or a body stream
 * that closed before its end, is 'transient' (the request may have been applied; a retry is safe).
 */
export const STORE_NETWORK_KINDS: Readonly<Record<string, StoreErrorKind>> = {
  ...kindsOf(UNREACHABLE_CODES, 'unreachable'),
  ...kindsOf(BROKEN_CONNECTION_CODES, 'transient'),
  ERR_STREAM_PREMATURE_CLOSE: 'transient',
};

/** Snapshot APIs: any network failure means the API could not be reached (their contract has no 'transient'). */
export const SNAPSHOT_NETWORK_KINDS: Readonly<Record<string, SnapshotErrorKind>> = kindsOf(
  [...UNREACHABLE_CODES, ...BROKEN_CONNECTION_CODES],
  'unreachable',
);

/** HTTP statuses that mean the same on every object store (used when the service's code is unknown). */
export const STORE_STATUS_KINDS: Readonly<Record<number, StoreErrorKind>> = {
  403: 'access-denied',
  404: 'not-found',
  408: 'transient',
  412: 'already-exists', // only create-if-absent puts send a precondition
  429: 'transient',
};

/**
 * The kind an HTTP status means: the table's entry, else serverError for 5xx and clientError for
 * 4xx; undefined for anything else (or no status).
 */
export function kindOfStatus<K extends string>(
  status: number | undefined,
  table: Readonly<Record<number, K>>,
  serverError: K,
  clientError: K,
): K | undefined {
  if (status === undefined) return undefined;
  return table[status] ?? (status >= 500 ? serverError : status >= 400 ? clientError : undefined);
}

/** " (code, HTTP status)" for a message, or "" when neither is known. */
export function errorDetail(code: string | undefined, status: number | undefined): string {
  const detail = [code, status === undefined ? undefined : `HTTP ${status}`].filter((d) => d !== undefined).join(', ');
  return detail === '' ? '' : ` (${detail})`;
}

/** What a provider's classification found out about an SDK error. */
export interface ErrorClass {
  kind: StoreErrorKind;
  code: string | undefined;
  status: number | undefined;
}

/**
 * The StoreError for a classified SDK error: "hint: target (code, HTTP status)", the original as
 * `cause`, and the wait the answer asked for when its headers said (Retry-After and the like).
 * The message names the code and status only: SDK messages can echo request details.
 */
export function classifiedStoreError(found: ErrorClass, hint: string, target: string, cause: unknown, responseHeaders: unknown): StoreError {
  const retryAfterMs = retryAfterOf(responseHeaders);
  return new StoreError(found.kind, `${hint}: ${target}${errorDetail(found.code, found.status)}`, {
    target,
    cause,
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  });
}

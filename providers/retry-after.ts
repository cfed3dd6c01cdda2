/**
 * The wait a service asks for before the next attempt, read from an answer's headers: Azure's
 * x-ms-retry-after-ms (and retry-after-ms) in milliseconds, then the standard Retry-After, in
 * seconds or as an HTTP date (RFC 9110, 10.2.3). Providers put it on their StoreError
 * (`retryAfterMs`); the retry policy waits at least that long.
 */

/** A header lookup by lower-case name: the SDKs keep headers as plain objects or as Headers-like maps. */
export type HeaderLookup = (name: string) => string | undefined;

/** Headers in the millisecond forms, most specific first. */
const MS_HEADERS = ['x-ms-retry-after-ms', 'retry-after-ms'];

/**
 * Milliseconds asked for by a Retry-After value: seconds, or an HTTP date relative to nowMs (a date
 * in the past asks for no wait). Undefined for an empty or unreadable value.
 */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  const text = value?.trim() ?? '';
  if (text === '') return undefined;
  const seconds = Number(text);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(text);
  return Number.isFinite(date) ? Math.max(0, date - nowMs) : undefined;
}

/** The wait the headers ask for, in milliseconds, or undefined when they ask for none. */
export function retryAfterFromHeaders(lookup: HeaderLookup, nowMs: number = Date.now()): number | undefined {
  for (const name of MS_HEADERS) {
    const ms = Number(lookup(name)?.trim() || Number.NaN);
    if (Number.isFinite(ms)) return Math.max(0, ms);
  }
  return parseRetryAfter(lookup('retry-after'), nowMs);
}

/**
 * A lookup over whatever an SDK error keeps its response headers in: a Headers-like object with
 * get(), or a plain object (names compared without case). Undefined when there are none.
 */
export function headerLookup(headers: unknown): HeaderLookup | undefined {
  if (typeof headers !== 'object' || headers === null) return undefined;
  const getter = (headers as { get?: unknown }).get;
  if (typeof getter === 'function') {
    return (name) => {
      const value: unknown = getter.call(headers, name);
      return typeof value === 'string' ? value : undefined;
    };
  }
  const entries = Object.entries(headers as Record<string, unknown>);
  return (name) => {
    const value = entries.find(([k]) => k.toLowerCase() === name)?.[1];
    if (Array.isArray(value)) return typeof value[0] === 'string' ? value[0] : undefined;
    return typeof value === 'string' ? value : typeof value === 'number' ? String(value) : undefined;
  };
}

/** The wait asked for by the headers of an SDK error's response, when it kept them. */
export function retryAfterOf(headers: unknown, nowMs: number = Date.now()): number | undefined {
  const lookup = headerLookup(headers);
  return lookup === undefined ? undefined : retryAfterFromHeaders(lookup, nowMs);
}

// objects.list: lexicographic order, prefix/delimiter folding, maxResults pages and opaque page tokens.
// Reference: https://cloud.google.com/storage/docs/json_api/v1/objects/list
import { createHmac, timingSafeEqual } from 'node:crypto';
import { invalid } from './errors.ts';
import type { StoredObject } from './store.ts';

/** What one list request asks for. */
export interface ListRequest {
  prefix: string;
  delimiter: string | undefined;
  includeTrailingDelimiter: boolean;
  startOffset: string | undefined;
  endOffset: string | undefined;
  maxResults: number;
  pageToken: string | undefined;
}

/** One page: objects and folded prefixes, and where the next page starts. */
export interface ListResult {
  items: StoredObject[];
  prefixes: string[];
  nextPageToken: string | undefined;
}

/** The service caps a page at 1,000 entries, whatever maxResults asks for. */
export const MAX_PAGE = 1000;

/** Orders names as the service does: by their UTF-8 bytes, which differs from JavaScript's UTF-16
 *  comparison for characters outside the Basic Multilingual Plane. */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Lists one page. Objects and prefixes share one ordered stream: a prefix takes the place of the
 *  first object it folds, and maxResults counts both kinds, as the reference describes. */
export function listPage(objects: Iterable<StoredObject>, request: ListRequest, tokenKey: Buffer): ListResult {
  const resumeAfter = request.pageToken === undefined ? undefined : readPageToken(request.pageToken, request, tokenKey);
  const sorted = [...objects].filter((o) => o.name.startsWith(request.prefix)).sort((a, b) => compareNames(a.name, b.name));
  const items: StoredObject[] = [];
  const prefixes: string[] = [];
  let lastEntry: string | undefined;
  let count = 0;
  for (const object of sorted) {
    const name = object.name;
    if (request.startOffset !== undefined && compareNames(name, request.startOffset) < 0) continue;
    if (request.endOffset !== undefined && compareNames(name, request.endOffset) >= 0) continue;
    let entry = name;
    let isPrefix = false;
    if (request.delimiter !== undefined) {
      const at = name.indexOf(request.delimiter, request.prefix.length);
      if (at !== -1) {
        entry = name.slice(0, at + request.delimiter.length);
        isPrefix = true;
      }
    }
    // Entries up to and including the last one the previous page returned are skipped. A prefix sorts
    // before every name it folds, so "after the prefix" skips all of them.
    if (resumeAfter !== undefined && compareNames(entry, resumeAfter) <= 0) continue;
    if (isPrefix) {
      if (prefixes.at(-1) === entry) {
        // includeTrailingDelimiter: an object named exactly like the prefix is also an item.
        if (request.includeTrailingDelimiter && name === entry) items.push(object);
        continue;
      }
      if (count === request.maxResults) return { items, prefixes, nextPageToken: makePageToken(lastEntry, request, tokenKey) };
      prefixes.push(entry);
      if (request.includeTrailingDelimiter && name === entry) items.push(object);
      count++;
      lastEntry = entry;
      continue;
    }
    if (count === request.maxResults) return { items, prefixes, nextPageToken: makePageToken(lastEntry, request, tokenKey) };
    items.push(object);
    count++;
    lastEntry = entry;
  }
  return { items, prefixes, nextPageToken: undefined };
}

/** What a page token carries: the last entry returned and the listing it belongs to. */
interface TokenBody {
  after: string;
  prefix: string;
  delimiter: string | null;
}

/** An opaque, tamper-evident token: base64url JSON plus an HMAC under the server's own key. */
function makePageToken(after: string | undefined, request: ListRequest, key: Buffer): string | undefined {
  if (after === undefined) return undefined;
  const body: TokenBody = { after, prefix: request.prefix, delimiter: request.delimiter ?? null };
  const payload = Buffer.from(JSON.stringify(body)).toString('base64url');
  const mac = createHmac('sha256', key).update(payload).digest('base64url');
  return `${payload}.${mac}`;
}

/** Checks a token's MAC and that it belongs to this listing; any garbage is the service's 400. */
function readPageToken(token: string, request: ListRequest, key: Buffer): string {
  const bad = () => invalid('Invalid Value');
  const dot = token.indexOf('.');
  if (dot <= 0) throw bad();
  const payload = token.slice(0, dot);
  const mac = Buffer.from(token.slice(dot + 1), 'base64url');
  const expected = createHmac('sha256', key).update(payload).digest();
  if (mac.length !== expected.length || !timingSafeEqual(mac, expected)) throw bad();
  const body = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as TokenBody;
  // A token is only valid for the listing that produced it; changing prefix or delimiter mid-way
  // is a client bug this server reports rather than silently returning a mixed listing.
  if (body.prefix !== request.prefix || body.delimiter !== (request.delimiter ?? null)) {
    throw invalid('Invalid Value: the pageToken belongs to a listing with another prefix or delimiter.');
  }
  return body.after;
}

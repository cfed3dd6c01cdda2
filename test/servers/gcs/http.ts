// Small HTTP helpers the GCS test server's handlers share: query validation, JSON and error replies.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { GcsError, invalid } from './errors.ts';

/** Query parameters every JSON API method accepts ("standard parameters"):
 *  https://cloud.google.com/storage/docs/json_api/v1/parameters */
const STANDARD_PARAMS = ['alt', 'fields', 'key', 'prettyPrint', 'quotaUser', 'userIp', 'userProject'] as const;

/** The request's query, checked against the parameters one method accepts. */
export class Query {
  readonly #values = new Map<string, string>();
  readonly #search: URLSearchParams;

  /** Parses `search` and refuses a parameter the method does not know, or a repeated one that is
   *  not in `repeatable`. Stricter than the service, deliberately: a misspelt precondition
   *  (`ifGenerationMatches`) must fail a test, not be ignored and leave the write unconditional. */
  constructor(search: URLSearchParams, allowed: readonly string[], repeatable: readonly string[] = []) {
    this.#search = search;
    const known = new Set<string>([...STANDARD_PARAMS, ...allowed, ...repeatable]);
    for (const [key, value] of search) {
      if (!known.has(key)) throw invalid(`Unknown query parameter '${key}' (not accepted by this method in the GCS test server).`);
      if (this.#values.has(key) && !repeatable.includes(key)) throw invalid(`Query parameter '${key}' given more than once.`);
      this.#values.set(key, value);
    }
    const alt = this.#values.get('alt');
    if (alt !== undefined && alt !== 'json' && alt !== 'media') throw invalid(`Invalid value for alt: '${alt}'.`);
    const pretty = this.#values.get('prettyPrint');
    if (pretty !== undefined && pretty !== 'true' && pretty !== 'false') throw invalid(`Invalid value for prettyPrint: '${pretty}'.`);
  }

  /** A parameter's value, or undefined when absent. */
  get(name: string): string | undefined {
    return this.#values.get(name);
  }

  /** Every value of a repeatable parameter. */
  all(name: string): string[] {
    return this.#search.getAll(name);
  }

  /** An int64 parameter (generations and preconditions), normalised to its decimal form. */
  int64(name: string): string | undefined {
    const raw = this.#values.get(name);
    if (raw === undefined) return undefined;
    if (!/^-?\d{1,19}$/.test(raw)) throw invalid(`Invalid value for ${name}: '${raw}' is not an int64.`);
    const value = BigInt(raw);
    if (value < -(2n ** 63n) || value >= 2n ** 63n) throw invalid(`Invalid value for ${name}: '${raw}' is out of range.`);
    return value.toString();
  }

  /** A non-negative integer parameter such as maxResults. */
  uint32(name: string): number | undefined {
    const raw = this.#values.get(name);
    if (raw === undefined) return undefined;
    if (!/^\d{1,10}$/.test(raw) || Number(raw) > 0xffffffff) throw invalid(`Invalid value for ${name}: '${raw}'.`);
    return Number(raw);
  }

  /** A boolean parameter, "true" or "false" only. */
  bool(name: string): boolean | undefined {
    const raw = this.#values.get(name);
    if (raw === undefined) return undefined;
    if (raw !== 'true' && raw !== 'false') throw invalid(`Invalid value for ${name}: '${raw}' is not a boolean.`);
    return raw === 'true';
  }

  /** One of a fixed set of values (projection, predefinedAcl). */
  oneOf(name: string, values: readonly string[]): string | undefined {
    const raw = this.#values.get(name);
    if (raw !== undefined && !values.includes(raw)) throw invalid(`Invalid value for ${name}: '${raw}'.`);
    return raw;
  }
}

/** Values `projection` takes on every method that has it. */
export const PROJECTIONS = ['full', 'noAcl'] as const;

/** Values `predefinedAcl` takes on object writes. */
export const PREDEFINED_OBJECT_ACLS = [
  'authenticatedRead',
  'bucketOwnerFullControl',
  'bucketOwnerRead',
  'private',
  'projectPrivate',
  'publicRead',
] as const;

/** Reads the whole request body; every handler reads it first so that a refusal never races the
 *  client's upload (an early response to a half-sent body would reset the connection). */
export async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Sends a JSON body, pruned to the `fields` selection when the request had one. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  options: { fields?: string | undefined; headers?: Record<string, string> } = {},
): void {
  const selected = options.fields === undefined ? body : selectFields(body, parseFields(options.fields));
  const text = JSON.stringify(selected);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=UTF-8',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-cache, no-store, max-age=0, must-revalidate',
    ...options.headers,
  });
  res.end(text);
}

/** Sends a GcsError in the JSON API's error shape (a 304 has no body). */
export function sendError(res: ServerResponse, err: GcsError): void {
  if (err.status === 304) {
    res.writeHead(304, err.headers);
    res.end();
    return;
  }
  if (err.plainText) {
    res.writeHead(err.status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(err.message), ...err.headers });
    res.end(err.message);
    return;
  }
  sendJson(res, err.status, err.toJSON(), { headers: err.headers });
}

/** Sends a body-less response. */
export function sendEmpty(res: ServerResponse, status: number, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Length': '0', ...headers });
  res.end();
}

/** A parsed `fields` selector: each key maps to its sub-selection, or to `true` for the whole value. */
type FieldSelection = Map<string, FieldSelection | true>;

/** Parses the partial-response syntax (https://cloud.google.com/storage/docs/json_api#partial-response):
 *  `a,b/c,d(e,f)`. A malformed selector is a 400, as on the service. */
export function parseFields(spec: string): FieldSelection {
  let pos = 0;
  const parseList = (nested: boolean): FieldSelection => {
    const out: FieldSelection = new Map();
    for (;;) {
      const path: string[] = [];
      for (;;) {
        const match = /^[A-Za-z0-9_*]+/.exec(spec.slice(pos));
        if (match === null) throw invalid(`Invalid field selection '${spec}'.`);
        path.push(match[0]);
        pos += match[0].length;
        if (spec[pos] === '/') pos++;
        else break;
      }
      let leaf: FieldSelection | true = true;
      if (spec[pos] === '(') {
        pos++;
        leaf = parseList(true);
        if (spec[pos] !== ')') throw invalid(`Invalid field selection '${spec}'.`);
        pos++;
      }
      merge(out, path, leaf);
      if (spec[pos] === ',') {
        pos++;
        continue;
      }
      if (nested ? spec[pos] === ')' : pos === spec.length) return out;
      throw invalid(`Invalid field selection '${spec}'.`);
    }
  };
  const merge = (into: FieldSelection, path: string[], leaf: FieldSelection | true): void => {
    const [head, ...rest] = path;
    if (head === undefined) return;
    if (rest.length === 0) {
      into.set(head, leaf);
      return;
    }
    const existing = into.get(head);
    const child: FieldSelection = existing instanceof Map ? existing : new Map();
    if (existing !== true) into.set(head, child);
    merge(child, rest, leaf);
  };
  return parseList(false);
}

/** Keeps only the selected fields; arrays are filtered element by element, `*` keeps every key. */
function selectFields(value: unknown, selection: FieldSelection): unknown {
  if (Array.isArray(value)) return value.map((item) => selectFields(item, selection));
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [key, child] of Object.entries(value)) {
    const sel = selection.get(key) ?? selection.get('*');
    if (sel === undefined) continue;
    out[key] = sel === true ? child : selectFields(child, sel);
  }
  return out;
}

/** Decodes one percent-encoded path segment; a malformed escape is a 400. */
export function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw invalid(`Malformed percent-encoding in path segment '${segment}'.`);
  }
}

/** The first value of a request header, or undefined. */
export function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

/** Wraps an unexpected exception as a 500, so a server bug shows up in the test that hit it. */
export function internalError(err: unknown): GcsError {
  const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return new GcsError(500, 'backendError', `GCS test server internal error: ${message}`);
}

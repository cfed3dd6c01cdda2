/**
 * Parsers for option values, one per option type. Each returns a problem phrased to follow the
 * quoted value ("is not a whole number") instead of throwing, so that the caller can say where
 * the value came from (file and line, environment variable, flag) and hide it when it is secret.
 */
import { isAbsolute } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Cron } from 'croner';

/** A parsed value, or why the text is not one. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string; hint?: string };

function ok<T>(value: T): Parsed<T> {
  return { ok: true, value };
}

function fail<T>(problem: string, hint?: string): Parsed<T> {
  return hint === undefined ? { ok: false, problem } : { ok: false, problem, hint };
}

const BOOL_WORDS: Readonly<Record<string, boolean>> = {
  on: true,
  true: true,
  yes: true,
  '1': true,
  off: false,
  false: false,
  no: false,
  '0': false,
};

/** on/off, true/false, yes/no, 1/0, in any case (Barman's spellings, plus yes/no). */
export function parseBool(text: string): Parsed<boolean> {
  const value = BOOL_WORDS[text.toLowerCase()];
  return value === undefined ? fail('is not on or off', 'use on/off, true/false, yes/no or 1/0') : ok(value);
}

/** A whole number within [min, max]. */
export function parseWholeNumber(text: string, min?: number, max?: number): Parsed<number> {
  if (!/^-?\d+$/.test(text)) return fail('is not a whole number', 'use digits only, e.g. 4');
  const value = Number(text);
  if (!Number.isSafeInteger(value)) return fail('is too large');
  return checkRange(value, min, max, String);
}

function checkRange(value: number, min: number | undefined, max: number | undefined, show: (n: number) => string): Parsed<number> {
  if (min !== undefined && value < min) return fail(`is less than the minimum, ${show(min)}`);
  if (max !== undefined && value > max) return fail(`is more than the maximum, ${show(max)}`);
  return ok(value);
}

/**
 * Size units are powers of 1024 whichever way they are spelt, as in PostgreSQL's own settings
 * and the AWS CLI's multipart_chunksize: "16MB" and "16MiB" are both 16 × 1024 × 1024 bytes.
 */
const SIZE_UNITS: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1024 ** 4,
  tib: 1024 ** 4,
};

/** A byte count: "1048576", "64MiB", "16MB", "1 GiB". Limits are in bytes. */
export function parseSize(text: string, minBytes?: number, maxBytes?: number): Parsed<number> {
  const match = /^(\d+)\s*([a-z]*)$/i.exec(text);
  const factor = match === null ? undefined : SIZE_UNITS[(match[2] ?? '').toLowerCase()];
  if (match === null || factor === undefined) {
    return fail('is not a size', 'give bytes, or a whole number with a unit: kB, MB, GB, TB (or KiB, MiB, GiB, TiB; all powers of 1024), e.g. 64MiB');
  }
  const value = Number(match[1]) * factor;
  if (!Number.isSafeInteger(value)) return fail('is too large');
  return checkRange(value, minBytes, maxBytes, formatSize);
}

/** Bytes as the largest binary unit that divides them exactly: 67108864 -> "64MiB". */
export function formatSize(bytes: number): string {
  for (const [unit, factor] of [['TiB', 1024 ** 4], ['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (bytes >= factor && bytes % factor === 0) return `${bytes / factor}${unit}`;
  }
  return `${bytes} bytes`;
}

const DURATION_UNITS_MS: Readonly<Record<string, number>> = {
  ms: 1,
  '': 1000,
  s: 1000,
  min: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  // Barman's spelling, for last_backup_maximum_age and friends: "1 DAYS", "2 WEEKS", "1 MONTH" (31 days, as in Barman).
  day: 86_400_000,
  days: 86_400_000,
  week: 7 * 86_400_000,
  weeks: 7 * 86_400_000,
  month: 31 * 86_400_000,
  months: 31 * 86_400_000,
};

/** A duration in PostgreSQL's units ("30" seconds, "30s", "500ms", "5min", "2h", "1d") or Barman's ("1 DAYS", "2 WEEKS", "1 MONTHS"). Returns milliseconds; limits are in seconds. */
export function parseSeconds(text: string, minSeconds?: number, maxSeconds?: number): Parsed<number> {
  const match = /^(\d+)\s*([a-z]*)$/i.exec(text);
  const factor = match === null ? undefined : DURATION_UNITS_MS[(match[2] ?? '').toLowerCase()];
  if (match === null || factor === undefined) {
    return fail('is not a duration', 'give seconds, or a whole number with a unit: ms, s, min, h, d, or DAYS, WEEKS, MONTHS as Barman writes them, e.g. 30s or 1 DAYS');
  }
  const ms = Number(match[1]) * factor;
  if (!Number.isSafeInteger(ms)) return fail('is too large');
  const range = checkRange(ms / 1000, minSeconds, maxSeconds, (n) => `${n}s`);
  return range.ok ? ok(ms) : range;
}

/** One of a fixed set of words, matched case-insensitively; returns the canonical spelling. */
export function parseEnum(text: string, values: readonly string[]): Parsed<string> {
  const value = values.find((v) => v.toLowerCase() === text.toLowerCase());
  return value === undefined ? fail(`is not one of ${values.join(', ')}`) : ok(value);
}

/** A comma-separated list; items are trimmed and none may be empty. */
export function parseList(text: string): Parsed<string[]> {
  const items = text.split(',').map((item) => item.trim());
  if (items.some((item) => item === '')) return fail('has an empty item', 'separate items with single commas, e.g. disk-1,disk-2');
  return ok(items);
}

/**
 * Object tags: "key=value,key2=value2". Keys 1-128 and values 0-256 characters of letters, digits,
 * space and + - = . _ : / @ (the set both S3 tagging and Azure blob index tags accept), at most 10.
 */
export function parseTags(text: string): { value?: Record<string, string>; problem?: string } {
  const tags: Record<string, string> = {};
  const items = text.split(',').map((item) => item.trim());
  if (items.length > 10) return { problem: 'has more than 10 tags (the limit of S3 and Azure)' };
  for (const item of items) {
    const eq = item.indexOf('=');
    const key = eq < 0 ? item : item.slice(0, eq).trim();
    const value = eq < 0 ? '' : item.slice(eq + 1).trim();
    if (eq < 0 || !/^[A-Za-z0-9 +\-=._:/@]{1,128}$/.test(key) || !/^[A-Za-z0-9 +\-=._:/@]{0,256}$/.test(value)) {
      return { problem: `has a malformed tag ${JSON.stringify(item)} (write key=value, letters, digits, space and + - = . _ : / @)` };
    }
    if (key in tags) return { problem: `sets tag ${JSON.stringify(key)} twice` };
    tags[key] = value;
  }
  return { value: tags };
}

/** An absolute file-system path. Relative paths are refused: cron and archive_command run from other directories. */
export function parseAbsolutePath(text: string): Parsed<string> {
  return isAbsolute(text) ? ok(text) : fail('is not an absolute path', 'give the full path, starting with /');
}

/**
 * A URL whose scheme is one of `schemes` (with the colon: "s3:"). When "file:" is allowed, a
 * bare absolute path is accepted too and becomes a file:/// URL. Credentials and query strings
 * are refused: they would be printed wherever the destination is, and belong elsewhere.
 */
export function parseUrl(text: string, schemes: readonly string[]): Parsed<string> {
  const fileAllowed = schemes.includes('file:');
  if (fileAllowed && text.startsWith('/')) return ok(pathToFileURL(text).href);
  const examples = schemes.map((s) => URL_EXAMPLES[s] ?? `${s}//...`).join(', ');
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return fail('is not a URL', `e.g. ${examples}${fileAllowed ? ', or an absolute path' : ''}`);
  }
  if (!schemes.includes(url.protocol)) return fail(`has the scheme ${url.protocol} (expected ${schemes.join(' ')})`, `e.g. ${examples}`);
  if (url.username !== '' || url.password !== '') {
    return fail('contains credentials', 'remove user:password@ from the URL; credentials come from the provider\'s usual sources');
  }
  if (url.search !== '' || url.hash !== '') return fail('has a query or fragment', 'remove everything from ? or #');
  if (url.protocol === 'file:') {
    if (url.host !== '' && url.host !== 'localhost') return fail('names a host in a file: URL', 'use file:///absolute/path (three slashes)');
  } else if (url.host === '') {
    return fail(url.protocol === 'http:' || url.protocol === 'https:' ? 'has no host' : 'has no bucket or container', `e.g. ${examples}`);
  }
  return ok(text);
}

const URL_EXAMPLES: Readonly<Record<string, string>> = {
  's3:': 's3://bucket/prefix',
  'azure:': 'azure://container/prefix',
  'gs:': 'gs://bucket/prefix',
  'file:': 'file:///var/backups/cloudbarman',
  'http:': 'http://127.0.0.1:9000',
  'https:': 'https://s3.example.com',
};

/** A libpq connection string: a postgres[ql]:// URI, or keyword=value pairs. */
export type Conninfo = { form: 'uri'; uri: string } | { form: 'keywords'; params: Record<string, string> };

/**
 * Parses a libpq connection string. Keyword/value syntax follows libpq: values may be
 * single-quoted, and backslash escapes a quote or a backslash. Problems never quote the text,
 * because connection strings may hold a password.
 */
export function parseConninfo(text: string): Parsed<Conninfo> {
  if (/^postgres(ql)?:\/\//i.test(text)) return ok({ form: 'uri', uri: text });
  const hint = 'use keyword=value pairs separated by spaces (quote values with spaces in single quotes), or a postgresql:// URI';
  const params: Record<string, string> = {};
  let i = 0;
  const skipSpace = (): void => {
    while (i < text.length && /\s/.test(text[i] ?? '')) i++;
  };
  skipSpace();
  if (i === text.length) return fail('is empty');
  while (i < text.length) {
    const start = i;
    while (i < text.length && !/[\s=]/.test(text[i] ?? '')) i++;
    const keyword = text.slice(start, i);
    skipSpace();
    if (keyword === '' || text[i] !== '=') return fail(`is not a valid connection string: no "=" after the keyword at character ${start + 1}`, hint);
    i++;
    skipSpace();
    let value = '';
    if (text[i] === "'") {
      i++;
      let closed = false;
      while (i < text.length) {
        const ch = text[i] ?? '';
        if (ch === '\\' && i + 1 < text.length) {
          value += text[i + 1] ?? '';
          i += 2;
        } else if (ch === "'") {
          closed = true;
          i++;
          break;
        } else {
          value += ch;
          i++;
        }
      }
      if (!closed) return fail(`is not a valid connection string: unterminated quoted value at character ${start + 1}`, hint);
    } else {
      while (i < text.length && !/\s/.test(text[i] ?? '')) {
        if (text[i] === '\\' && i + 1 < text.length) i++;
        value += text[i] ?? '';
        i++;
      }
    }
    params[keyword] = value;
    skipSpace();
  }
  return ok({ form: 'keywords', params });
}

/** Barman's retention policy syntax, parsed. */
export type RetentionPolicy =
  | { kind: 'redundancy'; count: number }
  | { kind: 'recovery-window'; count: number; unit: 'days' | 'weeks' | 'months' };

/**
 * `REDUNDANCY n` or `RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS`, case-insensitive, the unit's
 * final S optional (Barman's grammar). Unlike Barman, n must be at least 1: a policy of 0
 * would make every backup obsolete.
 */
export function parseRetentionPolicy(text: string): Parsed<RetentionPolicy> {
  const hint = 'use REDUNDANCY n or RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS, e.g. RECOVERY WINDOW OF 7 DAYS';
  const redundancy = /^\s*redundancy\s+(\d+)\s*$/i.exec(text);
  const window = /^\s*recovery\s+window\s+of\s+(\d+)\s+(day|week|month)s?\s*$/i.exec(text);
  const count = Number((redundancy ?? window)?.[1]);
  if (redundancy === null && window === null) return fail('is not a retention policy', hint);
  if (!Number.isSafeInteger(count) || count < 1) return fail('keeps nothing: the number must be at least 1', hint);
  if (window === null) return ok({ kind: 'redundancy', count });
  const unit = `${(window[2] ?? '').toLowerCase()}s` as 'days' | 'weeks' | 'months';
  return ok({ kind: 'recovery-window', count, unit });
}

/** A retention policy in Barman's canonical spelling, e.g. "RECOVERY WINDOW OF 7 DAYS". */
export function formatRetentionPolicy(policy: RetentionPolicy): string {
  return policy.kind === 'redundancy' ? `REDUNDANCY ${policy.count}` : `RECOVERY WINDOW OF ${policy.count} ${policy.unit.toUpperCase()}`;
}

/**
 * A 5-field cron schedule ("minute hour day-of-month month day-of-week", with lists, ranges,
 * steps and names), checked by croner rather than a parser of our own. As in Vixie cron, when
 * both day fields are restricted a day matches if either does. Times are the host's local time
 * zone, as for the system cron, unless a zone is given.
 */
export function cronSchedule(text: string, timezone?: string): Cron {
  return new Cron(text.trim().split(/\s+/).join(' '), { mode: '5-part', domAndDow: false, paused: true, ...(timezone === undefined ? {} : { timezone }) });
}

/** A valid 5-field cron expression, normalised to single spaces. */
export function parseCronSchedule(text: string): Parsed<string> {
  const hint = 'use 5 fields: minute hour day-of-month month day-of-week, e.g. 0 3 * * * (03:00 every day)';
  const parts = text.trim().split(/\s+/);
  if (parts.length !== 5) return fail(`has ${parts.length} field${parts.length === 1 ? '' : 's'}, not 5`, hint);
  try {
    cronSchedule(text).stop();
  } catch (err) {
    const detail = err instanceof Error ? err.message.replace(/^CronPattern: /, '') : String(err);
    return fail(`is not a valid cron expression (${detail})`, hint);
  }
  return ok(parts.join(' '));
}

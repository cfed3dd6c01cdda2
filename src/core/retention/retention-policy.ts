/**
 * Everything retention decides with, in one value: Barman's retention_policy (parsed once, in
 * src/config/values.ts), minimum_redundancy, wal_retention_policy, the grandfather-father-son
 * counts cloudbarman adds, and the grace period before broken entries are cleaned up. Also the
 * keep annotation (base/<id>/annotations/keep) that takes a backup out of retention altogether.
 */
import { formatRetentionPolicy, parseWholeNumber, type Parsed, type RetentionPolicy } from '../../config/values.ts';

/** The inputs of planRetention besides the catalog; built from a ServerConfig by the caller. */
export interface RetentionRules {
  /** retention_policy: REDUNDANCY n or RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS. */
  retentionPolicy: RetentionPolicy;
  /** minimum_redundancy: DONE backups that remain whatever the policy says (0: no floor). */
  minimumRedundancy: number;
  /** wal_retention_policy: 'main' is Barman's only value: WAL follows the backups that remain. */
  walRetentionPolicy: 'main';
  /** keep_daily: also keep the newest DONE backup of each of this many most recent UTC days that have one. */
  keepDaily: number;
  /** keep_weekly: the same per ISO week (Monday to Sunday, UTC). */
  keepWeekly: number;
  /** keep_monthly: the same per UTC calendar month. */
  keepMonthly: number;
  /** keep_yearly: the same per UTC calendar year. */
  keepYearly: number;
  /** How long a FAILED, STARTED or DELETING entry is left alone after its begin_time, in milliseconds. */
  cleanupGraceMs: number;
}

/**
 * Default grace before an interrupted or failed entry is cleaned up. A day leaves time to look at
 * a failure, and a STARTED entry is only removed once a newer backup is DONE anyway.
 */
export const DEFAULT_CLEANUP_GRACE_MS = 24 * 3_600_000;

/** The grandfather-father-son periods, as data: option name, rule field, and the label used in reasons. */
export const GFS_PERIODS = [
  { option: 'keep_daily', field: 'keepDaily', label: 'daily' },
  { option: 'keep_weekly', field: 'keepWeekly', label: 'weekly' },
  { option: 'keep_monthly', field: 'keepMonthly', label: 'monthly' },
  { option: 'keep_yearly', field: 'keepYearly', label: 'yearly' },
] as const;

/** One of the GFS periods. */
export type GfsPeriod = (typeof GFS_PERIODS)[number]['label'];

/**
 * Rules with cloudbarman's defaults for everything but the policy, so that callers and tests
 * name only what they set: no minimum, no GFS, a one-day grace.
 */
export function retentionRules(retentionPolicy: RetentionPolicy, overrides: Partial<Omit<RetentionRules, 'retentionPolicy'>> = {}): RetentionRules {
  return {
    retentionPolicy,
    minimumRedundancy: 0,
    walRetentionPolicy: 'main',
    keepDaily: 0,
    keepWeekly: 0,
    keepMonthly: 0,
    keepYearly: 0,
    cleanupGraceMs: DEFAULT_CLEANUP_GRACE_MS,
    ...overrides,
  };
}

/**
 * A GFS count (keep_daily, keep_weekly, keep_monthly, keep_yearly): a whole number, 0 or more,
 * where 0 turns that period off. Problems follow the quoted value, as in src/config/values.ts.
 */
export function parseKeepCount(text: string): Parsed<number> {
  const hint = 'give how many periods to keep a backup for, e.g. 7; 0 turns this rule off';
  const trimmed = text.trim();
  if (/^-\d+$/.test(trimmed)) return { ok: false, problem: 'is negative: a keep count is 0 or more', hint };
  const parsed = parseWholeNumber(trimmed, 0);
  return parsed.ok ? parsed : { ok: false, problem: parsed.problem, hint };
}

/** The rules in one line, in the config file's words, for plans and logs. */
export function formatRetentionRules(rules: RetentionRules): string {
  const parts = [formatRetentionPolicy(rules.retentionPolicy)];
  if (rules.minimumRedundancy > 0) parts.push(`minimum_redundancy ${rules.minimumRedundancy}`);
  for (const period of GFS_PERIODS) {
    const count = rules[period.field];
    if (count > 0) parts.push(`${period.option} ${count}`);
  }
  return parts.join(', ');
}

/**
 * What a keep annotation keeps, as Barman names it. full: the backup and all WAL from its start
 * on, so it stays a starting point for point-in-time recovery. standalone: the backup and only the
 * WAL from begin_wal to end_wal, enough to restore it to a consistent state and no further.
 */
export type KeepTarget = 'full' | 'standalone';

/** The keep targets, for option validation and help text. */
export const KEEP_TARGETS: readonly KeepTarget[] = ['full', 'standalone'];

/** The body format of base/<id>/annotations/keep; readers reject versions they do not know. */
export const KEEP_FORMAT_VERSION = 1;

/** The JSON body of base/<id>/annotations/keep (snake_case, like backup.json). */
export interface KeepAnnotation {
  format_version: number;
  target: KeepTarget;
  /** When `keep` set it, ISO 8601 UTC; null when read from Barman's bare-word form, which has no time. */
  set_at: string | null;
}

/** The annotation `keep --target` writes, stamped with the injected clock. */
export function keepAnnotation(target: KeepTarget, now: Date): KeepAnnotation {
  return { format_version: KEEP_FORMAT_VERSION, target, set_at: now.toISOString() };
}

/** The object body of an annotation: one JSON document and a newline. */
export function encodeKeepAnnotation(annotation: KeepAnnotation): string {
  return `${JSON.stringify({ format_version: annotation.format_version, target: annotation.target, set_at: annotation.set_at })}\n`;
}

/** --target's value: full or standalone, case-insensitive. */
export function parseKeepTarget(text: string): Parsed<KeepTarget> {
  const target = KEEP_TARGETS.find((t) => t === text.trim().toLowerCase());
  return target === undefined ? { ok: false, problem: 'is not a keep target', hint: 'use full or standalone' } : { ok: true, value: target };
}

/**
 * Reads an annotation body. Besides cloudbarman's JSON it accepts the bare word Barman and
 * barman-cloud write ("full" or "standalone"), so that a store shared with them keeps its meaning.
 */
export function decodeKeepAnnotation(text: string): Parsed<KeepAnnotation> {
  const trimmed = text.trim();
  const bare = parseKeepTarget(trimmed);
  if (bare.ok) return { ok: true, value: { format_version: KEEP_FORMAT_VERSION, target: bare.value, set_at: null } };
  let json: unknown;
  try {
    json = JSON.parse(trimmed);
  } catch {
    return { ok: false, problem: 'is neither JSON nor a keep target', hint: 'rewrite it with "cloudbarman keep --target full|standalone"' };
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return { ok: false, problem: 'is not a JSON object' };
  const record = json as Record<string, unknown>;
  if (record['format_version'] !== KEEP_FORMAT_VERSION) {
    return { ok: false, problem: `has format_version ${JSON.stringify(record['format_version'])}, which this version does not know`, hint: 'upgrade cloudbarman' };
  }
  const target = typeof record['target'] === 'string' ? parseKeepTarget(record['target']) : undefined;
  if (target === undefined || !target.ok) return { ok: false, problem: `has target ${JSON.stringify(record['target'])}, not full or standalone` };
  const setAt = record['set_at'];
  if (setAt !== null && (typeof setAt !== 'string' || Number.isNaN(Date.parse(setAt)))) {
    return { ok: false, problem: `has set_at ${JSON.stringify(setAt)}, which is not an ISO 8601 time` };
  }
  return { ok: true, value: { format_version: KEEP_FORMAT_VERSION, target: target.value, set_at: setAt } };
}

/** What `keep --status` reports, in Barman's words: the target, or nokeep when there is no annotation. */
export function keepStatus(annotation: KeepAnnotation | undefined): KeepTarget | 'nokeep' {
  return annotation === undefined ? 'nokeep' : annotation.target;
}

/**
 * The retention planner: a pure function from the catalog, the WAL listing, the rules and the
 * time to a verdict with a reason for every backup and every run of WAL. No I/O and no clock: the
 * caller lists, `delete --retention --dry-run` prints the plan, and a separate step applies it.
 *
 * Backups follow Barman's semantics, which operators expect:
 * - REDUNDANCY n keeps the n newest DONE backups (newest by begin_time, as Barman orders by id).
 *   Annotated backups are kept anyway and, as in Barman, do not take one of the n places.
 * - RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS keeps every DONE backup that ended inside the window,
 *   plus the newest one that ended before the window starts: recovering to the window's first
 *   instant starts from it. The window starts at now minus n days (n × 24 h), weeks, or UTC
 *   calendar months (day of month clamped: 31 March minus one month is 28 or 29 February). All
 *   times are UTC instants, so a daylight-saving change never moves the window (Barman computes
 *   it in local time, where it does move by an hour).
 * - keep_daily/weekly/monthly/yearly (cloudbarman's addition) also keep the newest DONE backup of
 *   each of the N most recent UTC days, ISO weeks, months or years that have one (by begin_time).
 * - A keep annotation keeps a backup whatever the policy (kept-by-annotation).
 * - minimum_redundancy: when fewer DONE backups would remain, the newest obsolete ones are kept
 *   (kept-for-minimum-redundancy). Every remaining DONE backup counts, annotated ones included.
 * - FAILED, STARTED and DELETING entries are cleaned up only when they began before the newest
 *   DONE backup and (except DELETING, an interrupted delete to finish) longer ago than the grace period: a STARTED entry newer than the newest DONE
 *   backup may be a backup in progress.
 * - When any listing failed, nothing is deleted.
 *
 * WAL follows wal_retention_policy = main: everything before the begin_wal of the oldest kept
 * backup (that is not standalone-annotated) is obsolete, on every timeline; everything from that
 * position on is kept. A standalone-annotated backup keeps its begin_wal..end_wal. Recovery from a
 * backup only ever replays WAL at positions after its begin_wal, on its timeline or on timelines
 * that branched from it later, so this cut keeps all a kept backup can need, and WAL of timelines
 * no kept backup reaches is kept from that position on too, to be safe. With no kept DONE backup,
 * or one whose begin_wal is unknown, all WAL is kept. Timeline history files are always kept;
 * .partial and .backup files go with the segment they name.
 */
import type { RetentionPolicy } from '../../config/values.ts';
import { parseWalFileName } from '../../pg/wal-names.ts';
import type { BackupInfo, BackupStatus } from '../catalog/backup-info.ts';
import { GFS_PERIODS, formatRetentionRules, type GfsPeriod, type KeepTarget, type RetentionRules } from './retention-policy.ts';

/** What happens to a backup: only 'obsolete' is deleted; the kept-* verdicts say which rule saved it. */
export type RetentionVerdict = 'keep' | 'obsolete' | 'kept-by-annotation' | 'kept-for-minimum-redundancy';

/** What happens to a run of WAL files. */
export type WalVerdict = 'keep' | 'obsolete';

/** The part of a catalog entry retention looks at, plus its keep annotation (read by the caller). */
export type RetentionBackup = Pick<BackupInfo, 'id' | 'status' | 'begin_time' | 'end_time' | 'begin_wal' | 'end_wal' | 'timeline'> & {
  keep: KeepTarget | undefined;
};

/**
 * Where a timeline branched, from its <TTTTTTTT>.history file: the parent timeline and the segment
 * on the new timeline that holds the switch point (walFileNameAt(switchLsn, timeline, segmentSize)).
 */
export interface TimelineBranch {
  timeline: number;
  parent: number;
  switchWal: string;
}

/** The WAL archive as listed: every file name once, compression extension stripped, in any order. */
export interface WalInventory {
  /** Segments, .partial, .backup and .history files; other names are left alone and never deleted. */
  files: readonly string[];
  /** One entry per timeline above 1 whose history file could be read. */
  branches: readonly TimelineBranch[];
}

/** Everything the planner decides from; `now` is injected so that tests control time. */
export interface RetentionInput {
  backups: readonly RetentionBackup[];
  wal: WalInventory;
  policy: RetentionRules;
  now: Date;
  /** Listings that failed (backups, annotations, WAL, history files): when any did, nothing is deleted. */
  listingErrors: readonly string[];
}

/** One backup's fate. */
export interface BackupVerdict {
  id: string;
  status: BackupStatus;
  verdict: RetentionVerdict;
  reason: string;
}

/**
 * A run of WAL files on one timeline with one fate: every segment, .partial and .backup file of
 * `timeline` whose segment lies from `first` to `last` (segment names, inclusive).
 */
export interface WalRangeVerdict {
  timeline: number;
  first: string;
  last: string;
  /** How many listed files the run holds. */
  files: number;
  verdict: WalVerdict;
  reason: string;
}

/** A timeline history file: always kept, listed so that the plan accounts for every WAL file. */
export interface HistoryVerdict {
  name: string;
  verdict: 'keep';
  reason: string;
}

/** The plan: plain JSON, printed by --dry-run and --format json, and what the apply step follows. */
export interface RetentionPlan {
  /** The `now` it was planned for, ISO 8601 UTC. */
  now: string;
  /** The rules in the config file's words. */
  policy: string;
  /** Start of the recovery window, ISO 8601 UTC; null for REDUNDANCY. */
  windowStart: string | null;
  listingErrors: string[];
  /** Every backup, oldest first. */
  backups: BackupVerdict[];
  /** Where WAL is kept from, and the backup that starts there; null when all WAL is kept. */
  walCut: { backup: string; wal: string } | null;
  /** Runs of WAL by timeline, then position. */
  wal: WalRangeVerdict[];
  histories: HistoryVerdict[];
  summary: { obsoleteBackups: number; obsoleteWalFiles: number };
}

/**
 * The first instant of a recovery window. Days and weeks are exact multiples of 24 h; months are
 * UTC calendar months with the day clamped to the target month's length, like Barman's relativedelta.
 */
export function recoveryWindowStart(policy: Extract<RetentionPolicy, { kind: 'recovery-window' }>, now: Date): Date {
  const ms = now.getTime();
  if (policy.unit === 'days') return new Date(ms - policy.count * DAY_MS);
  if (policy.unit === 'weeks') return new Date(ms - policy.count * 7 * DAY_MS);
  const first = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - policy.count, 1));
  const daysInMonth = new Date(Date.UTC(first.getUTCFullYear(), first.getUTCMonth() + 1, 0)).getUTCDate();
  first.setUTCDate(Math.min(now.getUTCDate(), daysInMonth));
  first.setUTCHours(now.getUTCHours(), now.getUTCMinutes(), now.getUTCSeconds(), now.getUTCMilliseconds());
  return first;
}

/** Plans retention; see the module comment for the rules and the golden tables in the tests. */
export function planRetention(input: RetentionInput): RetentionPlan {
  const rules = input.policy;
  const nowMs = input.now.getTime();
  const policy = rules.retentionPolicy;
  const start = policy.kind === 'recovery-window' ? recoveryWindowStart(policy, input.now).getTime() : undefined;
  const entries = input.backups.map((backup): Entry => ({
    backup,
    begin: parseTime(backup.begin_time),
    end: parseTime(backup.end_time),
    verdict: 'keep',
    reason: '',
    gfs: [],
  })).sort(chronological);
  const listingErrors = [...input.listingErrors];

  if (listingErrors.length > 0) {
    const reason = `nothing is deleted because listing failed: ${listingErrors.join('; ')}`;
    for (const entry of entries) entry.reason = reason;
    return finish(input, start, entries, judgeAllWal(input.wal, reason), null);
  }

  judgeBackups(entries, rules, nowMs, start);
  const { ranges, cut } = judgeWal(entries, input.wal);
  return finish(input, start, entries, ranges, cut);
}

/** True when the plan deletes this WAL file (a name as planned, extension stripped). Unplanned names are kept. */
export function isObsoleteWal(plan: RetentionPlan, name: string): boolean {
  const parsed = parseWalFileName(name);
  if (parsed === undefined || parsed.kind === 'timeline-history') return false;
  const pos = position(name);
  let spans = obsoleteSpans.get(plan);
  if (spans === undefined) {
    spans = plan.wal.filter((r) => r.verdict === 'obsolete').map((r) => ({ timeline: r.timeline, from: position(r.first), to: position(r.last) }));
    obsoleteSpans.set(plan, spans);
  }
  return spans.some((r) => r.timeline === parsed.timeline && r.from <= pos && pos <= r.to);
}

/** The obsolete runs of a plan as numbers, computed once per plan: the apply step asks about every WAL object. */
const obsoleteSpans = new WeakMap<RetentionPlan, Array<{ timeline: number; from: bigint; to: bigint }>>();

/** The plan as text: the rules, one line per backup (id, status, verdict, reason), then the WAL runs. */
export function formatPlan(plan: RetentionPlan): string {
  const lines: string[] = [];
  lines.push(`retention: ${plan.policy}`);
  lines.push(`now: ${plan.now}${plan.windowStart === null ? '' : `, recovery window from ${plan.windowStart}`}`);
  if (plan.listingErrors.length > 0) {
    lines.push('listing failed, so nothing is deleted:');
    for (const error of plan.listingErrors) lines.push(`  ${error}`);
  }
  lines.push(`backups (${plan.backups.length}):`);
  const idWidth = Math.max(0, ...plan.backups.map((b) => b.id.length));
  const verdictWidth = Math.max(0, ...plan.backups.map((b) => b.verdict.length));
  for (const b of plan.backups) {
    lines.push(`  ${b.id.padEnd(idWidth)}  ${b.status.padEnd(8)}  ${b.verdict.padEnd(verdictWidth)}  ${b.reason}`);
  }
  lines.push(plan.walCut === null ? 'WAL: all kept' : `WAL: kept from ${plan.walCut.wal}, where backup ${plan.walCut.backup} starts`);
  for (const r of plan.wal) {
    const span = r.first === r.last ? r.first : `${r.first}..${r.last}`;
    lines.push(`  timeline ${r.timeline}  ${span}  ${r.files} file${r.files === 1 ? '' : 's'}  ${r.verdict}  ${r.reason}`);
  }
  for (const h of plan.histories) lines.push(`  ${h.name}  ${h.verdict}  ${h.reason}`);
  lines.push(`obsolete: ${plural(plan.summary.obsoleteBackups, 'backup')}, ${plural(plan.summary.obsoleteWalFiles, 'WAL file')}`);
  return `${lines.join('\n')}\n`;
}

const DAY_MS = 86_400_000;
const HISTORY_REASON = 'timeline history files are always kept: recovery follows timeline switches through them';

interface Entry {
  backup: RetentionBackup;
  /** Epoch milliseconds; NaN when unreadable. */
  begin: number;
  end: number;
  verdict: RetentionVerdict;
  reason: string;
  /** GFS periods this backup stands for, e.g. "monthly 2026-03". */
  gfs: string[];
}

/** Oldest first by begin_time, unreadable times last, then by id, so the order never depends on the input's. */
function chronological(a: Entry, b: Entry): number {
  const ka = Number.isFinite(a.begin) ? a.begin : Number.POSITIVE_INFINITY;
  const kb = Number.isFinite(b.begin) ? b.begin : Number.POSITIVE_INFINITY;
  if (ka !== kb) return ka < kb ? -1 : 1;
  return compareText(a.backup.id, b.backup.id);
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function parseTime(text: string | null): number {
  return text === null ? Number.NaN : Date.parse(text);
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace('.000Z', 'Z');
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function isUsableDone(e: Entry): boolean {
  return e.backup.status === 'DONE' && Number.isFinite(e.begin) && Number.isFinite(e.end);
}

function set(e: Entry, verdict: RetentionVerdict, reason: string): void {
  e.verdict = verdict;
  e.reason = reason;
}

/** Fills in every entry's verdict: annotations, the policy, GFS, minimum_redundancy, then the other statuses. */
function judgeBackups(entries: Entry[], rules: RetentionRules, nowMs: number, start: number | undefined): void {
  const done = entries.filter(isUsableDone);
  const candidates = done.filter((e) => e.backup.keep === undefined);

  for (const e of entries) {
    if (e.backup.keep !== undefined) {
      const target = e.backup.keep;
      set(e, 'kept-by-annotation', e.backup.status !== 'DONE'
        ? `keep ${target}: the annotation keeps this ${e.backup.status} entry, though it cannot be restored`
        : target === 'full'
          ? 'keep full: kept with all WAL from its start, whatever the policy'
          : 'keep standalone: kept with only the WAL from its begin_wal to its end_wal, whatever the policy');
    } else if (e.backup.status === 'DONE' && !isUsableDone(e)) {
      set(e, 'keep', `its begin_time or end_time cannot be read (${e.backup.begin_time}, ${String(e.backup.end_time)}): kept, and not counted by the policy`);
    }
  }

  const policy = rules.retentionPolicy;
  if (policy.kind === 'redundancy') {
    const newestFirst = [...candidates].reverse();
    newestFirst.forEach((e, i) => {
      if (i < policy.count) set(e, 'keep', `REDUNDANCY ${policy.count}: number ${i + 1} of the ${policy.count} newest DONE backups`);
      else set(e, 'obsolete', `REDUNDANCY ${policy.count}: older than the ${policy.count} newest DONE backups`);
    });
  } else if (start !== undefined) {
    const before = done.filter((e) => e.end < start && e.backup.keep !== 'standalone');
    const anchor = before.reduce<Entry | undefined>((best, e) => (best === undefined || e.end > best.end || (e.end === best.end && chronological(e, best) > 0) ? e : best), undefined);
    for (const e of candidates) {
      if (e.end >= start) set(e, 'keep', `RECOVERY WINDOW: ended ${iso(e.end)}, inside the window from ${iso(start)}`);
      else if (e === anchor) set(e, 'keep', `RECOVERY WINDOW: the newest backup that ended before the window starts (${iso(start)}): recovery to the window's start begins from it`);
      else set(e, 'obsolete', `RECOVERY WINDOW: ended ${iso(e.end)}, before the window starts (${iso(start)}), and ${anchor?.backup.id ?? '?'} is newer`);
    }
  }

  for (const period of GFS_PERIODS) {
    const count = rules[period.field];
    if (!(count > 0)) continue;
    const newestOf = new Map<string, Entry>();
    for (const e of done) newestOf.set(gfsLabel(period.label, e.begin), e); // done is oldest first: the last one wins
    const labels = [...newestOf.keys()].sort().reverse().slice(0, count);
    for (const label of labels) newestOf.get(label)?.gfs.push(`${period.label} ${label}`);
  }
  for (const e of done) {
    if (e.gfs.length === 0) continue;
    if (e.verdict === 'obsolete') set(e, 'keep', `gfs: ${e.gfs.join(', ')}`);
    else e.reason += `; also gfs: ${e.gfs.join(', ')}`;
  }

  let remaining = done.filter((e) => e.verdict !== 'obsolete').length;
  for (const e of [...done].reverse()) {
    if (remaining >= rules.minimumRedundancy) break;
    if (e.verdict !== 'obsolete') continue;
    set(e, 'kept-for-minimum-redundancy', `minimum_redundancy ${rules.minimumRedundancy}: without it only ${plural(remaining, 'DONE backup')} would remain`);
    remaining++;
  }

  const newestDone = done.at(-1);
  for (const e of entries) {
    if (e.backup.status === 'DONE' || e.backup.keep !== undefined) continue;
    const status = e.backup.status;
    if (!Number.isFinite(e.begin)) {
      set(e, 'keep', `${status}, and its begin_time (${e.backup.begin_time}) cannot be read: kept to be safe`);
    } else if (newestDone === undefined) {
      set(e, 'keep', `${status}: there is no DONE backup yet, so it is kept until there is one`);
    } else if (e.begin >= newestDone.begin) {
      set(e, 'keep', status === 'STARTED'
        ? `STARTED after the newest DONE backup ${newestDone.backup.id} began: it may be a backup in progress`
        : `${status}, newer than the newest DONE backup ${newestDone.backup.id}: kept until a newer backup is DONE`);
    } else if (status !== 'DELETING' && !(e.begin + rules.cleanupGraceMs < nowMs)) {
      // DELETING skips the grace: a delete already decided its fate, and a re-run after an interruption must finish it.
      set(e, 'keep', `${status} since ${iso(e.begin)}: within the cleanup grace period of ${formatDuration(rules.cleanupGraceMs)}`);
    } else {
      const why = `older than the newest DONE backup ${newestDone.backup.id} and than the grace period of ${formatDuration(rules.cleanupGraceMs)}`;
      set(e, 'obsolete', status === 'STARTED' ? `STARTED but never finished, ${why}: cleaned up`
        : status === 'DELETING' ? `an interrupted delete, older than the newest DONE backup ${newestDone.backup.id}: finished now`
        : `${status}, ${why}: cleaned up`);
    }
  }
}

/** The bucket of a GFS period that an instant falls in, as a label that sorts chronologically. */
function gfsLabel(period: GfsPeriod, ms: number): string {
  const d = new Date(ms);
  const year = String(d.getUTCFullYear()).padStart(4, '0');
  const month = String(d.getUTCMonth() + 1).padStart(2, '0');
  switch (period) {
    case 'daily':
      return `${year}-${month}-${String(d.getUTCDate()).padStart(2, '0')}`;
    case 'weekly':
      return isoWeek(d);
    case 'monthly':
      return `${year}-${month}`;
    case 'yearly':
      return year;
  }
}

/** ISO 8601 week, e.g. 2026-W13: weeks start on Monday and belong to the year of their Thursday. */
function isoWeek(d: Date): string {
  const day = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const weekday = day.getUTCDay() === 0 ? 7 : day.getUTCDay();
  day.setUTCDate(day.getUTCDate() + 4 - weekday);
  const year = day.getUTCFullYear();
  const week = Math.floor((day.getTime() - Date.UTC(year, 0, 1)) / DAY_MS / 7) + 1;
  return `${String(year).padStart(4, '0')}-W${String(week).padStart(2, '0')}`;
}

function formatDuration(ms: number): string {
  if (ms > 0 && ms % DAY_MS === 0) return plural(ms / DAY_MS, 'day');
  if (ms > 0 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms > 0 && ms % 60_000 === 0) return `${ms / 60_000}min`;
  return `${ms / 1000}s`;
}

/** WAL position of a segment-like name (log × 2^32 + segment), whatever the segment size. */
function position(name: string): bigint {
  return (BigInt(`0x${name.slice(8, 16)}`) << 32n) + BigInt(`0x${name.slice(16, 24)}`);
}

function isSegmentName(name: string | null): name is string {
  return name !== null && parseWalFileName(name)?.kind === 'segment';
}

interface WalFile {
  name: string;
  timeline: number;
  pos: bigint;
}

/** Every listed segment, .partial and .backup file (once each), and the history files. */
function walFiles(wal: WalInventory): { files: WalFile[]; histories: string[] } {
  const files: WalFile[] = [];
  const histories: string[] = [];
  for (const name of new Set(wal.files)) {
    const parsed = parseWalFileName(name);
    if (parsed === undefined) continue;
    if (parsed.kind === 'timeline-history') histories.push(name);
    else files.push({ name, timeline: parsed.timeline, pos: position(name) });
  }
  files.sort((a, b) => a.timeline - b.timeline || (a.pos < b.pos ? -1 : a.pos > b.pos ? 1 : compareText(a.name, b.name)));
  histories.sort(compareText);
  return { files, histories };
}

/** Groups consecutive files of one timeline with the same verdict and reason into runs. */
function toRanges(files: readonly WalFile[], judge: (f: WalFile) => { verdict: WalVerdict; reason: string }): WalRangeVerdict[] {
  const ranges: WalRangeVerdict[] = [];
  for (const f of files) {
    const { verdict, reason } = judge(f);
    const last = ranges.at(-1);
    const segment = f.name.slice(0, 24);
    if (last !== undefined && last.timeline === f.timeline && last.verdict === verdict && last.reason === reason) {
      last.last = segment;
      last.files++;
    } else {
      ranges.push({ timeline: f.timeline, first: segment, last: segment, files: 1, verdict, reason });
    }
  }
  return ranges;
}

function judgeAllWal(wal: WalInventory, reason: string): WalRangeVerdict[] {
  return toRanges(walFiles(wal).files, () => ({ verdict: 'keep', reason }));
}

/** A kept backup's claim on WAL: from `from` on (full), or `from` to `to` (standalone). */
interface Need {
  id: string;
  what: string;
  timeline: number;
  wal: string;
  from: bigint;
  to: bigint | undefined;
}

function judgeWal(entries: readonly Entry[], wal: WalInventory): { ranges: WalRangeVerdict[]; cut: { backup: string; wal: string } | null } {
  const keptDone = entries.filter((e) => e.backup.status === 'DONE' && e.verdict !== 'obsolete');
  const all = (reason: string) => ({ ranges: judgeAllWal(wal, reason), cut: null });
  if (keptDone.length === 0) return all('no DONE backup is kept: all WAL is kept, so that none is stranded');
  if (keptDone.every((e) => e.backup.keep === 'standalone')) {
    return all('every kept DONE backup is standalone: all WAL is kept, so that none is stranded');
  }

  const full: Need[] = [];
  const standalone: Need[] = [];
  for (const e of keptDone) {
    const { id, begin_wal: beginWal, end_wal: endWal } = e.backup;
    if (!isSegmentName(beginWal)) return all(`backup ${id} has no readable begin_wal (${String(beginWal)}): all WAL is kept, since its needs are unknown`);
    const need = { id, what: 'backup', timeline: Number.parseInt(beginWal.slice(0, 8), 16), wal: beginWal, from: position(beginWal), to: undefined };
    if (e.backup.keep === 'standalone' && isSegmentName(endWal)) standalone.push({ ...need, what: 'standalone backup', to: position(endWal) });
    else full.push(need);
  }
  // A backup in progress has not claimed its WAL through a DONE entry yet; protect it all the same.
  for (const e of entries) {
    const beginWal = e.backup.begin_wal;
    if (e.backup.status === 'STARTED' && e.verdict !== 'obsolete' && isSegmentName(beginWal)) {
      full.push({ id: e.backup.id, what: 'STARTED backup', timeline: Number.parseInt(beginWal.slice(0, 8), 16), wal: beginWal, from: position(beginWal), to: undefined });
    }
  }
  const cutNeed = full.reduce((best, n) => (n.from < best.from ? n : best));
  const cut = cutNeed.from;

  const { files } = walFiles(wal);
  const branches = new Map(wal.branches.map((b) => [b.timeline, b]));
  const reachCache = new Map<number, { need: Need; from: bigint } | undefined>();
  const reachOf = (timeline: number): { need: Need; from: bigint } | undefined => {
    if (!reachCache.has(timeline)) {
      let best: { need: Need; from: bigint } | undefined;
      for (const need of full) {
        const from = reachStart(timeline, need, branches);
        if (from !== undefined && (best === undefined || from < best.from)) best = { need, from };
      }
      reachCache.set(timeline, best);
    }
    return reachCache.get(timeline);
  };

  const ranges = toRanges(files, (f) => {
    const reach = reachOf(f.timeline);
    if (reach !== undefined && f.pos >= reach.from) {
      const { need } = reach;
      return { verdict: 'keep', reason: need.timeline === f.timeline
        ? `needed by ${need.what} ${need.id}, which starts at ${need.wal}`
        : `needed by ${need.what} ${need.id}: timeline ${f.timeline} branched from its timeline ${need.timeline} after it began` };
    }
    const own = standalone.find((n) => n.from <= f.pos && n.to !== undefined && f.pos <= n.to);
    if (own !== undefined) return { verdict: 'keep', reason: `needed by ${own.what} ${own.id} (its begin_wal to end_wal)` };
    if (f.pos >= cut) {
      return { verdict: 'keep', reason: `at or after ${cutNeed.wal}, where ${cutNeed.what} ${cutNeed.id} starts: no kept backup replays it, but it is kept to be safe` };
    }
    return { verdict: 'obsolete', reason: `before ${cutNeed.wal}, where the oldest kept ${cutNeed.what} ${cutNeed.id} starts` };
  });
  return { ranges, cut: { backup: cutNeed.id, wal: cutNeed.wal } };
}

/**
 * Where on `timeline` a recovery from `need` starts reading: its begin_wal on its own timeline;
 * on a descendant that branched (through its ancestors) from the backup's timeline at or after
 * the backup began, from the descendant's first segment; otherwise the backup never reads it.
 */
function reachStart(timeline: number, need: Need, branches: ReadonlyMap<number, TimelineBranch>): bigint | undefined {
  if (timeline === need.timeline) return need.from;
  const own = branches.get(timeline);
  if (own === undefined || !isSegmentName(own.switchWal)) return undefined;
  const seen = new Set<number>();
  let child = own;
  for (;;) {
    if (seen.has(child.timeline) || !isSegmentName(child.switchWal)) return undefined;
    seen.add(child.timeline);
    if (child.parent === need.timeline) {
      if (position(child.switchWal) < need.from) return undefined;
      const first = position(own.switchWal);
      return first > need.from ? first : need.from;
    }
    const up = branches.get(child.parent);
    if (up === undefined) return undefined;
    child = up;
  }
}

function finish(input: RetentionInput, start: number | undefined, entries: readonly Entry[], wal: WalRangeVerdict[], cut: { backup: string; wal: string } | null): RetentionPlan {
  const histories = walFiles(input.wal).histories.map((name): HistoryVerdict => ({ name, verdict: 'keep', reason: HISTORY_REASON }));
  const backups = entries.map((e): BackupVerdict => ({ id: e.backup.id, status: e.backup.status, verdict: e.verdict, reason: e.reason }));
  return {
    now: iso(input.now.getTime()),
    policy: formatRetentionRules(input.policy),
    windowStart: start === undefined ? null : iso(start),
    listingErrors: [...input.listingErrors],
    backups,
    walCut: cut,
    wal,
    histories,
    summary: {
      obsoleteBackups: backups.filter((b) => b.verdict === 'obsolete').length,
      obsoleteWalFiles: wal.filter((r) => r.verdict === 'obsolete').reduce((n, r) => n + r.files, 0),
    },
  };
}

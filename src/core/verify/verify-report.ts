/**
 * What `verify` reports: one check per line, "name: OK|FAILED (detail)" as `check` prints them,
 * each failed one followed by the objects it found damaged, named by key. The JSON document is
 * the same data (snake_case).
 */

/** One damaged, missing or unreadable object. */
export interface ObjectProblem {
  /** The object's key in the store (or the key prefix, when the object is absent and its name unknown). */
  key: string;
  problem: string;
}

/** One line of the report. */
export interface VerifyCheck {
  name: string;
  ok: boolean;
  detail: string;
  /** The objects behind a FAILED check (at most MAX_PROBLEMS; `problems_total` counts them all). */
  problems: ObjectProblem[];
  problems_total: number;
  /**
   * Set on a FAILED check that found no damage but could not run (the drill's PostgreSQL would not
   * start for a reason of its own host): it fails verify with exit 1 rather than 4.
   */
  cause?: 'environment';
}

/** The whole report. */
export interface VerifyReport {
  server: string;
  backup_id: string;
  /** full: every object read and hashed; quick: existence, sizes and recorded checksums only. */
  mode: 'full' | 'quick';
  ok: boolean;
  /** What the mode proves, in one sentence, so that a green report is not read as more than it is. */
  guarantee: string;
  checks: VerifyCheck[];
  /** Bytes downloaded to verify. */
  bytes_read: number;
  seconds: number;
  /** Set by verify --restore. */
  restore_drill?: RestoreDrillReport;
}

/** What verify --restore measured. */
export interface RestoreDrillReport {
  /** Seconds from the start of the restore to a consistent, promoted cluster whose checks passed: the measured RTO. */
  rto_seconds: number;
  /** The same, up to consistency only (what an incident waits for before the database serves). */
  rto_to_consistent_seconds: number;
  restore_seconds: number;
  recovery_seconds: number;
  check_seconds: number;
  bytes_restored: number;
  /** Where recovery reached consistency (from PostgreSQL's log), before it was promoted. */
  consistent_lsn: string | null;
  amcheck: AmcheckReport;
}

/** What amcheck found, or why it did not run. */
export interface AmcheckReport {
  available: boolean;
  /** Why not, when not available. */
  reason: string | null;
  databases: number;
  btree_indexes: number;
  /** Tables checked with verify_heapam (amcheck 1.3, PostgreSQL 14+). */
  tables: number;
  failures: Array<{ database: string; relation: string; problem: string }>;
}

/** Failed objects listed under one check at most. */
export const MAX_PROBLEMS = 20;

/** A check from its problems: OK with `okDetail` when there are none. */
export function checkFrom(name: string, problems: readonly ObjectProblem[], okDetail: string, failedDetail?: string): VerifyCheck {
  if (problems.length === 0) return { name, ok: true, detail: okDetail, problems: [], problems_total: 0 };
  const first = problems[0];
  const detail = failedDetail ?? (problems.length === 1 && first !== undefined ? describeProblem(first) : `${problems.length} objects damaged or missing`);
  return { name, ok: false, detail, problems: problems.slice(0, MAX_PROBLEMS), problems_total: problems.length };
}

/** A check that passed or failed without objects to name. */
export function plainCheck(name: string, ok: boolean, detail: string): VerifyCheck {
  return { name, ok, detail, problems: [], problems_total: 0 };
}

/** "key: problem", or the problem alone when it already names the key. */
export function describeProblem(p: ObjectProblem): string {
  return p.problem.includes(p.key) ? p.problem : `${p.key}: ${p.problem}`;
}

/** The text lines of a report. */
export function formatReport(report: VerifyReport): string[] {
  const lines = [`Backup ${report.backup_id} of ${report.server} (${report.mode} verify):`];
  for (const check of report.checks) {
    lines.push(`\t${check.name}: ${check.ok ? 'OK' : 'FAILED'} (${check.detail})`);
    if (check.ok || check.problems.length <= 1) continue;
    for (const p of check.problems) lines.push(`\t\t${describeProblem(p)}`);
    if (check.problems_total > check.problems.length) lines.push(`\t\t... and ${check.problems_total - check.problems.length} more`);
  }
  lines.push(`\t${report.guarantee}`);
  return lines;
}

/**
 * Which backup a restore starts from: a pure function of the catalog, the request and the
 * timelines known to exist, returning the choice with its reason or an error that says why no
 * backup fits. Everything impossible is refused here, before a byte is written.
 */
import type { BackupInfo } from '../catalog/backup-info.ts';
import { CloudbarmanError } from '../errors.ts';
import { formatTimestamp, parseLsn, parseTimestamp, type RecoveryTarget, type TargetTimeline } from './recovery-target.ts';

/** What the operator asked for. */
export interface BackupRequest {
  /** A backup id, or 'latest'. */
  id: string;
  target?: RecoveryTarget;
  timeline?: TargetTimeline;
}

/** The timelines whose history file is in the archive (a timeline above 1 needs one to be reachable). */
export interface KnownTimelines {
  available: readonly number[];
}

/** The chosen backup and why, or the reason there is none. */
export type BackupSelection =
  | { ok: true; backup: BackupInfo; reason: string }
  | { ok: false; error: CloudbarmanError };

/** Picks the backup for a restore; see the rules in the module comment and the golden table in the tests. */
export function selectBackup(backups: readonly BackupInfo[], request: BackupRequest, timelines: KnownTimelines): BackupSelection {
  const done = backups.filter((b) => b.status === 'DONE').sort((a, b) => a.id.localeCompare(b.id));
  const tli = typeof request.timeline === 'number' ? request.timeline : undefined;

  if (request.id !== 'latest') {
    const backup = backups.find((b) => b.id === request.id);
    if (backup === undefined) {
      return fail(`backup ${request.id} does not exist`, done.length === 0 ? 'there is no DONE backup of this server yet' : `run "cloudbarman list" to see the backups; the newest DONE one is ${lastOf(done).id}`);
    }
    if (backup.status !== 'DONE') {
      return fail(`backup ${backup.id} is ${backup.status}, not DONE: it cannot be restored`, backup.error !== null ? `it failed with: ${backup.error}` : 'choose a DONE backup from "cloudbarman list"');
    }
    const problem = targetProblem(backup, request.target);
    if (problem !== undefined) return fail(`the recovery target is before the end of the backup: ${problem}`, 'choose an older backup, or a later target');
    const tliProblem = timelineProblem(backup, tli, timelines);
    if (tliProblem !== undefined) return { ok: false, error: tliProblem };
    return { ok: true, backup, reason: `backup ${backup.id} as requested` };
  }

  if (done.length === 0) return fail('there is no DONE backup of this server to restore', 'take one with "cloudbarman backup"');
  let candidates = done;
  if (tli !== undefined) {
    candidates = candidates.filter((b) => b.timeline === null || b.timeline <= tli);
    if (candidates.length === 0) {
      const oldest = done[0];
      return fail(`no DONE backup is on timeline ${tli} or an earlier one (the oldest is on timeline ${String(oldest?.timeline)})`, 'give a later --target-tli, or latest');
    }
  }
  const fitting = candidates.filter((b) => targetProblem(b, request.target) === undefined);
  const chosen = fitting.at(-1);
  if (chosen === undefined) {
    const oldest = candidates[0] ?? lastOf(done);
    return fail(`the recovery target is before the end of the oldest backup: ${targetProblem(oldest, request.target) ?? ''}`,
      'no backup can reach that point; choose a later target');
  }
  const tliProblem = timelineProblem(chosen, tli, timelines);
  if (tliProblem !== undefined) return { ok: false, error: tliProblem };
  const why = request.target?.kind === 'time' ? 'the newest DONE backup that ends before the target time'
    : request.target?.kind === 'lsn' ? 'the newest DONE backup that ends before the target LSN'
    : 'the newest DONE backup';
  return { ok: true, backup: chosen, reason: `backup ${chosen.id}: ${why}` };
}

/** Why the backup cannot reach the target (it ends after it), or undefined when it can. */
function targetProblem(backup: BackupInfo, target: RecoveryTarget | undefined): string | undefined {
  if (target?.kind === 'time') {
    const end = backup.end_time === null ? undefined : parseTimestamp(backup.end_time);
    if (end === undefined) return `backup ${backup.id} has no valid end time (${String(backup.end_time)})`;
    if (end.micros > target.time.micros) return `target time ${formatTimestamp(target.time.micros)} is before backup ${backup.id} ended at ${formatTimestamp(end.micros)}`;
  }
  if (target?.kind === 'lsn') {
    const end = backup.end_lsn === null ? undefined : parseLsn(backup.end_lsn);
    const want = parseLsn(target.lsn);
    if (end === undefined || want === undefined) return `backup ${backup.id} has no valid end LSN (${String(backup.end_lsn)})`;
    if (end > want) return `target LSN ${target.lsn} is before backup ${backup.id} ended at LSN ${backup.end_lsn ?? ''}`;
  }
  return undefined;
}

/** A numeric target timeline must not precede the backup's and must have a history file unless it is the backup's own. */
function timelineProblem(backup: BackupInfo, tli: number | undefined, timelines: KnownTimelines): CloudbarmanError | undefined {
  if (tli === undefined || backup.timeline === null || tli === backup.timeline) return undefined;
  if (tli < backup.timeline) {
    return new CloudbarmanError('bad-input', `target timeline ${tli} is before backup ${backup.id}'s timeline ${backup.timeline}`,
      { hint: 'a restore can only follow the backup\'s timeline or a later one; choose an older backup or another --target-tli' });
  }
  if (!timelines.available.includes(tli)) {
    return new CloudbarmanError('bad-input', `timeline ${tli} does not exist in the archive: there is no ${tli.toString(16).toUpperCase().padStart(8, '0')}.history`,
      { hint: 'give an existing timeline, or latest' });
  }
  return undefined;
}

function fail(message: string, hint: string): BackupSelection {
  return { ok: false, error: new CloudbarmanError('bad-input', message, { hint }) };
}

function lastOf(done: readonly BackupInfo[]): BackupInfo {
  const last = done.at(-1);
  if (last === undefined) throw new Error('internal: lastOf on an empty list');
  return last;
}

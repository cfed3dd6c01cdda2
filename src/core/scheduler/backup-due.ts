/**
 * Whether the scheduler should take a backup now: pure, given the schedule, the catalog and the time.
 * A backup is due when the schedule fired at or before now and no backup began since that firing.
 * A missed firing (the scheduler was down) is caught up once, not once per missed firing.
 */
import type { Cron } from 'croner';
import type { BackupStatus } from '../catalog/backup-info.ts';

/** What the decision needs of a catalog entry. */
export interface ScheduledBackupView {
  id: string;
  status: BackupStatus;
  begin_time: string;
}

/** The decision, with the reason the cron pass prints. */
export interface BackupDue {
  due: boolean;
  reason: string;
  /** The firing the decision is about, when the schedule has fired. */
  firedAt?: Date;
  /** The next firing after now, for the message. */
  nextAt?: Date;
}

/**
 * Decides for one server. A FAILED attempt after the firing also counts as the firing's backup:
 * the scheduler does not retry every pass against a broken server; `check` reports the failure and
 * the next firing tries again.
 */
export function backupDue(schedule: Cron, backups: readonly ScheduledBackupView[], now: Date): BackupDue {
  // previousRuns excludes a firing exactly at the reference time, which is a firing that happened.
  const firedAt = schedule.previousRuns(1, new Date(now.getTime() + 1))[0];
  const nextAt = schedule.nextRun(now) ?? undefined;
  const next = nextAt === undefined ? {} : { nextAt };
  if (firedAt === undefined) return { due: false, reason: 'the schedule has not fired yet', ...next };
  const since = backups
    .filter((b) => Date.parse(b.begin_time) >= firedAt.getTime())
    .sort((a, b) => Date.parse(b.begin_time) - Date.parse(a.begin_time));
  const latest = since[0];
  if (latest === undefined) return { due: true, reason: `scheduled at ${firedAt.toISOString()} and no backup began since`, firedAt, ...next };
  const what = latest.status === 'DONE' ? 'was taken' : latest.status === 'STARTED' ? 'is running or was killed' : `ended ${latest.status}`;
  return { due: false, reason: `backup ${latest.id} for the firing at ${firedAt.toISOString()} ${what}`, firedAt, ...next };
}

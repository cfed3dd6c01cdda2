/**
 * Waiting on snapshots, and cleaning them up. A backup waits twice: in backup mode until every
 * snapshot's point in time is fixed (short: polled often), then, out of backup mode, until every
 * snapshot is complete (hours for a first snapshot of a large disk: polled with back-off).
 */
import type { SnapshotInfo, Snapshotter } from '../../../providers/snapshotter.ts';
import { isSnapshotError } from '../../../providers/snapshotter.ts';
import type { BackupClock } from '../backup/wait-for-wal.ts';
import { CloudbarmanError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { snapshotFailure } from './snapshot-failure.ts';

/** What a wait waits for. */
export type SnapshotMilestone = 'fixed' | 'completed';

/** One wait. */
export interface SnapshotWait {
  snapshotter: Snapshotter;
  snapshots: readonly SnapshotInfo[];
  until: SnapshotMilestone;
  /** Epoch milliseconds on clock after which the wait fails. */
  deadline: number;
  /** snapshot_timeout, for the message. */
  timeoutMs: number;
  clock: BackupClock;
  signal: AbortSignal;
  log: Logger;
  /** Names each snapshot in messages: its disk. */
  describe: (snapshot: SnapshotInfo) => string;
}

const FIRST_POLL_MS = 200;
const MAX_POLL_MS: Readonly<Record<SnapshotMilestone, number>> = { fixed: 2_000, completed: 15_000 };
const REPORT_EVERY_MS = 60_000;

/** Polls until every snapshot reached the milestone; throws 'failed' on a failed or vanished snapshot and on the deadline. */
export async function waitForSnapshots(req: SnapshotWait): Promise<SnapshotInfo[]> {
  let delay = FIRST_POLL_MS;
  let reported = req.clock.now().getTime();
  let current = [...req.snapshots];
  for (;;) {
    current = await Promise.all(current.map(async (s) => {
      if (reached(s, req.until)) return s;
      try {
        const now = await req.snapshotter.describeSnapshot(s.id);
        if (now === undefined) throw new CloudbarmanError('failed', `snapshot ${s.id} of ${req.describe(s)} disappeared while it was being taken`, { hint: 'someone or something deleted it; run the backup again' });
        return now;
      } catch (err) {
        // A throttled or unreachable API is asked again at the next poll; the deadline bounds it.
        if (isSnapshotError(err) && err.retryable) {
          req.log.debug(`describing snapshot ${s.id}: ${err.message}; asking again`);
          return s;
        }
        throw snapshotFailure(err, `describing snapshot ${s.id}`);
      }
    }));
    const failed = current.find((s) => s.state === 'failed');
    if (failed !== undefined) {
      throw new CloudbarmanError('failed', `snapshot ${failed.id} of ${req.describe(failed)} failed${failed.error === undefined ? '' : `: ${failed.error}`}`, {
        hint: 'the cloud gave up on the snapshot; look at its console for why, then run the backup again',
      });
    }
    const waiting = current.filter((s) => !reached(s, req.until));
    if (waiting.length === 0) return current;
    const now = req.clock.now().getTime();
    const what = req.until === 'fixed' ? 'fix its point in time' : 'complete';
    if (now >= req.deadline) {
      throw new CloudbarmanError('failed',
        `snapshot ${waiting.map((s) => `${s.id} of ${req.describe(s)}${s.progress === undefined ? '' : ` (${s.progress}%)`}`).join(', ')} did not ${what} within snapshot_timeout (${Math.round(req.timeoutMs / 1000)} s)`,
        { hint: 'raise snapshot_timeout, or look at the snapshot in the cloud console' });
    }
    if (now - reported >= REPORT_EVERY_MS) {
      reported = now;
      req.log.info(`waiting for ${waiting.length} snapshot${waiting.length === 1 ? '' : 's'} to ${what}: ${waiting.map((s) => `${s.id}${s.progress === undefined ? '' : ` ${s.progress}%`}`).join(', ')}`);
    }
    await req.clock.sleep(Math.min(delay, req.deadline - now), req.signal);
    delay = Math.min(MAX_POLL_MS[req.until], Math.round(delay * 1.5));
  }
}

function reached(s: SnapshotInfo, until: SnapshotMilestone): boolean {
  return until === 'fixed' ? s.pointInTimeFixed || s.state === 'completed' : s.state === 'completed';
}

/** Tries a deletion this many times when the API says to retry. */
const DELETE_ATTEMPTS = 3;

/**
 * Deletes snapshots, all at once, each retried while the API says it is retryable; never aborted
 * (cleanup runs after an abort too). Returns the ids that could not be deleted, each logged.
 */
export async function deleteSnapshots(snapshotter: Snapshotter, ids: readonly string[], clock: BackupClock, log: Logger): Promise<string[]> {
  const left: string[] = [];
  await Promise.all(ids.map(async (id) => {
    for (let attempt = 1; ; attempt++) {
      try {
        await snapshotter.deleteSnapshot(id);
        log.info(`deleted snapshot ${id}`);
        return;
      } catch (err) {
        if (isSnapshotError(err) && err.retryable && attempt < DELETE_ATTEMPTS) {
          await clock.sleep(1_000 * attempt);
          continue;
        }
        log.warn(`could not delete snapshot ${id}: ${err instanceof Error ? err.message : String(err)}; it stays recorded on the backup, so "cloudbarman delete" can remove it later`);
        left.push(id);
        return;
      }
    }
  }));
  return left;
}

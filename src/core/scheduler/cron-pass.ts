/**
 * One scheduler pass over every configured server: check the store, take a backup when the
 * schedule says one is due, apply retention when the server has a policy. Each server's steps run
 * under its leases, so two schedulers on two hosts never overlap; a failure on one server is
 * reported and the pass goes on with the next. Everything it touches is injected.
 */
import type { Cron } from 'croner';
import { CloudbarmanError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { backupDue, type ScheduledBackupView } from './backup-due.ts';

/** What the pass can do for one server; the CLI builds it from the server's config and store. */
export interface ServerTasks {
  server: string;
  /** The backup_schedule; undefined: the scheduler takes no backups of this server. */
  schedule: Cron | undefined;
  /** retention_policy is set and retention_policy_mode is auto. */
  applyRetention: boolean;
  /** Proves the store is reachable and the destination usable. */
  checkStore(): Promise<void>;
  listBackups(): Promise<ScheduledBackupView[]>;
  /** Runs fn holding the server's lease `name` (store-wide, so across hosts); 'locked' when another run holds it. */
  withLease<T>(name: 'backup' | 'retention', fn: (signal: AbortSignal) => Promise<T>): Promise<T>;
  /** Takes a backup; resolves with its id. */
  backup(signal: AbortSignal): Promise<string>;
  /** Applies retention; resolves with a one-line summary. */
  retention(signal: AbortSignal): Promise<string>;
  /** Releases what the tasks hold (the store). */
  close(): Promise<void>;
}

/** The outcome of one step of one server. */
export interface StepReport {
  server: string;
  step: 'config' | 'check' | 'backup' | 'retention';
  outcome: 'ok' | 'skipped' | 'failed' | 'locked';
  detail: string;
}

/** Runs the pass; servers whose tasks could not be built come in as failures already reported. */
export async function cronPass(servers: readonly ServerTasks[], now: () => Date, log: Logger, signal: AbortSignal): Promise<StepReport[]> {
  const reports: StepReport[] = [];
  const report = (r: StepReport): void => {
    reports.push(r);
    const line = `${r.server}: ${r.step}: ${r.outcome}${r.detail === '' ? '' : ` (${r.detail})`}`;
    if (r.outcome === 'failed' || r.outcome === 'locked') log.warn(line);
    else log.info(line);
  };
  for (const tasks of servers) {
    if (signal.aborted) break;
    try {
      await serverPass(tasks, now, signal, report);
    } finally {
      await tasks.close().catch(() => undefined);
    }
  }
  return reports;
}

async function serverPass(tasks: ServerTasks, now: () => Date, signal: AbortSignal, report: (r: StepReport) => void): Promise<void> {
  const { server } = tasks;
  const step = async (name: StepReport['step'], fn: () => Promise<string | undefined>): Promise<boolean> => {
    try {
      const detail = await fn();
      if (detail !== undefined) report({ server, step: name, outcome: 'ok', detail });
      return true;
    } catch (err) {
      const locked = err instanceof CloudbarmanError && err.kind === 'locked';
      report({ server, step: name, outcome: locked ? 'locked' : 'failed', detail: err instanceof Error ? err.message : String(err) });
      return false;
    }
  };
  if (!(await step('check', async () => { await tasks.checkStore(); return 'store reachable'; }))) return;
  if (tasks.schedule === undefined) {
    report({ server, step: 'backup', outcome: 'skipped', detail: 'no backup_schedule' });
  } else {
    const schedule = tasks.schedule;
    let due: ReturnType<typeof backupDue> | undefined;
    const listed = await step('backup', async () => {
      due = backupDue(schedule, await tasks.listBackups(), now());
      return undefined;
    });
    if (listed && due !== undefined) {
      if (!due.due) {
        report({ server, step: 'backup', outcome: 'skipped', detail: `not due: ${due.reason}${due.nextAt === undefined ? '' : `; next at ${due.nextAt.toISOString()}`}` });
      } else if (!signal.aborted) {
        await step('backup', () => tasks.withLease('backup', async (leaseSignal) => {
          // Decided again under the lease: another scheduler may have taken the backup meanwhile.
          const again = backupDue(schedule, await tasks.listBackups(), now());
          if (!again.due) return `not due any more: ${again.reason}`;
          return `backup ${await tasks.backup(AbortSignal.any([signal, leaseSignal]))} DONE; ${again.reason}`;
        }));
      }
    }
  }
  if (signal.aborted) return;
  if (!tasks.applyRetention) {
    report({ server, step: 'retention', outcome: 'skipped', detail: 'no retention_policy' });
  } else {
    await step('retention', () => tasks.withLease('retention', (leaseSignal) => tasks.retention(AbortSignal.any([signal, leaseSignal]))));
  }
}

/**
 * The exit kind of a pass: locked when a lease was held elsewhere and nothing else failed, failed on
 * any failure. The reports were printed as the result, so the error does not print a second document.
 */
export function passFailure(reports: readonly StepReport[]): CloudbarmanError | undefined {
  const failed = reports.filter((r) => r.outcome === 'failed');
  const locked = reports.filter((r) => r.outcome === 'locked');
  if (failed.length > 0) {
    return new CloudbarmanError('failed', `${failed.length} step(s) failed: ${failed.map((r) => `${r.server} ${r.step}`).join(', ')}`, {
      hint: 'the lines above say what failed and why; the next pass tries again', resultPrinted: true,
    });
  }
  if (locked.length > 0) {
    return new CloudbarmanError('locked', `${locked.map((r) => `${r.server} ${r.step}`).join(', ')}: held by another run`, {
      hint: 'another scheduler is working on these servers; this pass left them alone', resultPrinted: true,
    });
  }
  return undefined;
}

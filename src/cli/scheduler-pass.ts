/** One scheduler pass over every server in the config file: shared by `cron` and `daemon`. */
import { listConfiguredServers } from '../config/load.ts';
import { badInput } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { cronPass, type ServerTasks, type StepReport } from '../core/scheduler/cron-pass.ts';
import { serverTasks } from './scheduler-tasks.ts';

/** Runs the pass; `servers` narrows it to some of the configured servers. */
export async function schedulerPass(opts: Record<string, unknown>, log: Logger, command: string, version: string, signal: AbortSignal, only: readonly string[] = []): Promise<StepReport[]> {
  const configPath = typeof opts['config'] === 'string' ? opts['config'] : undefined;
  const configured = await listConfiguredServers({ ...(configPath === undefined ? {} : { configPath }), env: process.env });
  if (configured.length === 0) {
    throw badInput(`${command} found no servers to work on: it needs a config file with a [section] per server`, 'name it with -c FILE or CLOUDBARMAN_CONFIG, or create /etc/cloudbarman.conf');
  }
  const unknown = only.filter((s) => !configured.includes(s));
  if (unknown.length > 0) throw badInput(`${unknown.join(', ')} ${unknown.length === 1 ? 'is' : 'are'} not configured`, `configured servers: ${configured.join(', ')}`);
  const chosen = only.length === 0 ? configured : configured.filter((s) => only.includes(s));
  const reports: StepReport[] = [];
  const tasks: ServerTasks[] = [];
  for (const server of chosen) {
    try {
      tasks.push(await serverTasks(server, opts, log, command, version));
    } catch (err) {
      const r: StepReport = { server, step: 'config', outcome: 'failed', detail: err instanceof Error ? err.message : String(err) };
      log.warn(`${server}: config: failed (${r.detail})`);
      reports.push(r);
    }
  }
  reports.push(...await cronPass(tasks, () => new Date(), log, signal));
  return reports;
}

/** The pass as text, one line per step. */
export function formatReports(reports: readonly StepReport[]): string[] {
  return reports.map((r) => `${r.server}: ${r.step}: ${r.outcome}${r.detail === '' ? '' : ` (${r.detail})`}`);
}

/**
 * Which of the configured servers (narrowed to `only`) have streaming_archiver on, for the
 * daemon's receive-wal supervision. Servers whose config does not load are returned apart, so
 * that a typo made while the daemon runs does not stop a receive-wal that is streaming fine.
 */
export async function streamingServers(
  opts: Record<string, unknown>,
  only: readonly string[] = [],
): Promise<{ on: string[]; unreadable: string[]; stopTimeoutMs: Map<string, number> }> {
  const configPath = typeof opts['config'] === 'string' ? opts['config'] : undefined;
  const configured = await listConfiguredServers({ ...(configPath === undefined ? {} : { configPath }), env: process.env });
  const chosen = only.length === 0 ? configured : configured.filter((s) => only.includes(s));
  const { loadConfig } = await import('./context.ts');
  const { receiveWalStopTimeoutMs } = await import('./receive-wal-timing.ts');
  const on: string[] = [];
  const unreadable: string[] = [];
  const stopTimeoutMs = new Map<string, number>();
  for (const server of chosen) {
    try {
      const cfg = await loadConfig(server, opts);
      if (!cfg.streamingArchiver) continue;
      on.push(server);
      stopTimeoutMs.set(server, receiveWalStopTimeoutMs(cfg));
    } catch {
      unreadable.push(server); // the pass reports the config error itself
    }
  }
  return { on, unreadable, stopTimeoutMs };
}

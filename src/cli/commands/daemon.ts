/** `daemon [SERVER...]`: scheduler passes forever, until SIGTERM or SIGINT. */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Register } from '../program.ts';
import type { Output } from '../output.ts';
import { badInput } from '../../core/errors.ts';

export const registerDaemon: Register = (program, run) => {
  program.command('daemon')
    .summary('run scheduler passes forever (cron in a loop)')
    .description('Run what `cron` does in a loop, one pass every --interval seconds (default 60), re-reading the ' +
      'config file at each pass. SIGTERM or SIGINT stops it gracefully: no new step starts, a running backup ' +
      'is interrupted and marked FAILED, leases are released, and it exits 0. Failures of a pass are logged ' +
      'and the next pass tries again. Meant for a systemd service or a Kubernetes Deployment.')
    .argument('[servers...]', 'only these servers (default: every [section] of the config file)')
    .option('--interval <seconds>', 'seconds between the starts of two passes', '60')
    .option('--max-passes <n>', 'stop after this many passes (for tests and one-off runs)')
    .action(run('daemon', async (output: Output, ...args: unknown[]) => {
      const [servers, opts] = args as [string[], Record<string, unknown>];
      const interval = Number(opts['interval']);
      if (!Number.isInteger(interval) || interval < 1) throw badInput(`--interval ${String(opts['interval'])} is not a whole number of seconds >= 1`, 'e.g. --interval 60');
      const maxPasses = opts['maxPasses'] === undefined ? Infinity : Number(opts['maxPasses']);
      if (!(maxPasses >= 1)) throw badInput(`--max-passes ${String(opts['maxPasses'])} is not a number >= 1`, 'e.g. --max-passes 1');
      const { schedulerPass } = await import('../scheduler-pass.ts');
      const stop = new AbortController();
      const onSignal = (signal: NodeJS.Signals): void => {
        output.log.notice(`${signal} received: stopping after cleaning up`);
        stop.abort();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      let passes = 0;
      try {
        output.log.notice(`started: a pass every ${interval} s${servers.length > 0 ? ` over ${servers.join(', ')}` : ''}`);
        while (!stop.signal.aborted && passes < maxPasses) {
          const started = Date.now();
          passes++;
          try {
            await schedulerPass({ ...program.opts(), ...opts }, output.log, 'daemon', program.version() ?? '0.1.0', stop.signal, servers);
          } catch (err) {
            // A bad config file is logged, not fatal: the operator can fix it while the daemon waits.
            output.log.warn(`pass ${passes} failed: ${err instanceof Error ? err.message : String(err)}`);
          }
          if (passes >= maxPasses) break;
          const wait = Math.max(0, interval * 1000 - (Date.now() - started));
          await sleep(wait, undefined, { signal: stop.signal }).catch(() => undefined);
        }
        output.result({ passes, stopped_by_signal: stop.signal.aborted }, [`stopped after ${passes} pass${passes === 1 ? '' : 'es'}`]);
      } finally {
        process.removeListener('SIGINT', onSignal);
        process.removeListener('SIGTERM', onSignal);
      }
    }));
};

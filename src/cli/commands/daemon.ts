/** `daemon [SERVER...]`: scheduler passes forever, plus receive-wal supervision, until SIGTERM or SIGINT. */
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Register } from '../program.ts';
import type { ReceiverProcess } from '../../core/scheduler/wal-receivers.ts';
import type { Output } from '../output.ts';
import { badInput } from '../../core/errors.ts';

export const registerDaemon: Register = (program, run) => {
  program.command('daemon')
    .summary('run scheduler passes forever (cron in a loop)')
    .description('Run what `cron` does in a loop, one pass every --interval seconds (default 60), re-reading the ' +
      'config file at each pass. SIGTERM or SIGINT stops it gracefully: no new step starts, a running backup ' +
      'is interrupted and marked FAILED, leases are released, and it exits 0. Failures of a pass are logged ' +
      'and the next pass tries again. For every server with streaming_archiver = on it also keeps a ' +
      '`cloudbarman receive-wal SERVER` process running: started before the first pass, started again after ' +
      'it exits (pauses growing from 1 s to 60 s), stopped when the server leaves the config, and sent SIGTERM ' +
      'when the daemon stops. Meant for a systemd service or a Kubernetes Deployment.')
    .argument('[servers...]', 'only these servers (default: every [section] of the config file)')
    .option('--interval <seconds>', 'seconds between the starts of two passes', '60')
    .option('--max-passes <n>', 'stop after this many passes (for tests and one-off runs)')
    .action(run('daemon', async (output: Output, ...args: unknown[]) => {
      const [servers, opts] = args as [string[], Record<string, unknown>];
      const interval = Number(opts['interval']);
      if (!Number.isInteger(interval) || interval < 1) throw badInput(`--interval ${String(opts['interval'])} is not a whole number of seconds >= 1`, 'e.g. --interval 60');
      const maxPasses = opts['maxPasses'] === undefined ? Infinity : Number(opts['maxPasses']);
      if (!(maxPasses >= 1)) throw badInput(`--max-passes ${String(opts['maxPasses'])} is not a number >= 1`, 'e.g. --max-passes 1');
      const [{ schedulerPass, streamingServers }, { WalReceiverSupervisor }] = await Promise.all([
        import('../scheduler-pass.ts'), import('../../core/scheduler/wal-receivers.ts')]);
      const stop = new AbortController();
      const globals = { ...program.opts(), ...opts };
      // Per server: how long its receive-wal may take to stop (its drain bound comes from its config).
      const stopTimeouts = new Map<string, number>();
      const receivers = new WalReceiverSupervisor({
        start: (server) => startReceiver(server, globals, stopTimeouts.get(server)),
        now: () => Date.now(),
        sleep: (ms, signal) => sleep(ms, undefined, { signal }).catch(() => undefined),
        log: output.log,
      });
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
            const streaming = await streamingServers(globals, servers);
            for (const [server, ms] of streaming.stopTimeoutMs) stopTimeouts.set(server, ms);
            await receivers.reconcile([...streaming.on, ...receivers.servers.filter((s) => streaming.unreadable.includes(s))]);
          } catch (err) {
            output.log.warn(`pass ${passes}: receive-wal supervision: ${err instanceof Error ? err.message : String(err)}`);
          }
          try {
            await schedulerPass(globals, output.log, 'daemon', program.version() ?? '0.1.0', stop.signal, servers);
          } catch (err) {
            // A bad config file is logged, not fatal: the operator can fix it while the daemon waits.
            output.log.warn(`pass ${passes} failed: ${err instanceof Error ? err.message : String(err)}`);
          }
          if (passes >= maxPasses) break;
          const wait = Math.max(0, interval * 1000 - (Date.now() - started));
          await sleep(wait, undefined, { signal: stop.signal }).catch(() => undefined);
        }
        await receivers.stopAll();
        output.result({ passes, stopped_by_signal: stop.signal.aborted, receive_wal_started: receivers.starts }, [`stopped after ${passes} pass${passes === 1 ? '' : 'es'}`]);
      } finally {
        await receivers.stopAll();
        process.removeListener('SIGINT', onSignal);
        process.removeListener('SIGTERM', onSignal);
      }
    }));
};

/**
 * `cloudbarman receive-wal SERVER` as a child of this process, with the daemon's config and
 * verbosity. Its stdin is a pipe the daemon never writes to: when the daemon dies, even by SIGKILL,
 * the pipe closes and the child stops as on SIGTERM (--stop-on-stdin-eof), so no receive-wal is
 * left running unsupervised.
 */
function startReceiver(server: string, globals: Record<string, unknown>, stopTimeoutMs: number | undefined): ReceiverProcess {
  const args = [...process.execArgv, process.argv[1] ?? '', ...(typeof globals['config'] === 'string' ? ['--config', globals['config']] : [])];
  if (globals['verbose'] === true) args.push('--verbose');
  else if (globals['quiet'] === true) args.push('--quiet');
  // Its log lines go to the daemon's stderr; its closing summary (stdout) is not the daemon's output.
  const child = spawn(process.execPath, [...args, 'receive-wal', '--stop-on-stdin-eof', server], { stdio: ['pipe', 'ignore', 'inherit'] });
  child.stdin?.on('error', () => undefined); // EPIPE once the child is gone: nothing was to be written anyway
  const exited = new Promise<number | null>((resolve) => {
    child.once('error', () => resolve(127));
    child.once('close', (code) => resolve(code));
  });
  return {
    pid: child.pid,
    exited,
    terminate: () => { child.kill('SIGTERM'); },
    kill: () => { child.kill('SIGKILL'); },
    ...(stopTimeoutMs === undefined ? {} : { stopTimeoutMs }),
  };
}

/** `cron [SERVER...]`: one scheduler pass over every configured server. */
import type { Register } from '../program.ts';
import type { Output } from '../output.ts';

export const registerCron: Register = (program, run) => {
  program.command('cron')
    .summary('one scheduler pass: scheduled backups and retention for every server')
    .description('Make one pass over every server of the config file (or the SERVERs named): check that its store is ' +
      'reachable; take a backup when backup_schedule (5-field cron, host time zone) has fired since the last ' +
      'backup began; apply the retention policy when retention_policy is set (retention_policy_mode = auto). ' +
      'Backups and retention run under leases in the store (locks/), so two schedulers on two hosts never ' +
      'overlap on a server. A failure on one server does not stop the others. Exit 0 when every step ' +
      'succeeded or had nothing to do, 5 when a lease was held by another run, 1 when a step failed. ' +
      'Run it every minute from cron or a Kubernetes CronJob, or run `cloudbarman daemon` instead.')
    .argument('[servers...]', 'only these servers (default: every [section] of the config file)')
    .action(run('cron', async (output: Output, ...args: unknown[]) => {
      const [servers, opts] = args as [string[], Record<string, unknown>];
      const [{ schedulerPass, formatReports }, { passFailure }] = await Promise.all([import('../scheduler-pass.ts'), import('../../core/scheduler/cron-pass.ts')]);
      const interrupt = new AbortController();
      const onSignal = (signal: NodeJS.Signals): void => {
        output.log.warn(`${signal} received: stopping the pass; a running backup will be marked FAILED`);
        interrupt.abort();
      };
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        const reports = await schedulerPass({ ...program.opts(), ...opts }, output.log, 'cron', program.version() ?? '0.1.0', interrupt.signal, servers);
        output.result(reports, formatReports(reports));
        const failure = passFailure(reports);
        if (failure !== undefined) throw failure;
      } finally {
        process.removeListener('SIGINT', onSignal);
        process.removeListener('SIGTERM', onSignal);
      }
    }));
};

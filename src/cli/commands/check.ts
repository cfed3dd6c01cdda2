/** `check SERVER|all [--nagios]`: is the server set up, and are its backups healthy? In the style of `barman check`. */
import type { Register } from '../program.ts';
import type { Output } from '../output.ts';
import { addConfigFlags } from '../config-flags.ts';
import { CloudbarmanError, badInput } from '../../core/errors.ts';
import type { CheckResult } from '../../core/check/evaluate-checks.ts';

export const registerCheck: Register = (program, run) => {
  addConfigFlags(program.command('check')
    .summary('check a server\'s setup and backups (barman check style)')
    .description('Print one check per line as "name: OK|FAILED (detail)": PostgreSQL reachable, role privileges, ' +
      'wal_level, archive_mode and archive_command running cloudbarman wal-upload for this server, pg_stat_archiver ' +
      'failures (not asked when streaming_archiver is on and archive_mode is off: streaming-only), with streaming_archiver or ' +
      'backup_method postgres a replication connection on streaming_conninfo (IDENTIFY_SYSTEM), and with streaming_archiver ' +
      'the REPLICATION privilege, the replication slot and receive-wal running (a walsender named streaming_archiver_name); ' +
      'the store reachable and writable (a probe object is written and deleted); last_backup_maximum_age, ' +
      'minimum_redundancy and FAILED backups. "all" checks every server of the config file. Exit 0 when every check ' +
      'passed, 1 when one failed. With --nagios, one Nagios line on stdout and exit 0 (OK) or 2 (CRITICAL).')
    .argument('<server>', 'server name: a [section] of the config file, or all')
    .option('--nagios', 'Nagios plugin output and exit codes'))
    .action(run('check', async (output: Output, ...args: unknown[]) => {
      const [server, opts] = args as [string, Record<string, unknown>];
      const globals = { ...program.opts(), ...opts };
      const [{ loadConfig, openStore }, { listConfiguredServers }, { gatherFacts }, { evaluateChecks }] = await Promise.all([
        import('../context.ts'), import('../../config/load.ts'), import('../../core/check/gather-facts.ts'), import('../../core/check/evaluate-checks.ts')]);
      let servers = [server];
      if (server === 'all') {
        const configPath = typeof globals['config'] === 'string' ? globals['config'] : undefined;
        servers = await listConfiguredServers({ ...(configPath === undefined ? {} : { configPath }), env: process.env });
        if (servers.length === 0) throw badInput('check all found no servers: it needs a config file with a [section] per server', 'name it with -c FILE or CLOUDBARMAN_CONFIG');
      }
      const report: Array<{ server: string; checks: CheckResult[] }> = [];
      for (const name of servers) {
        const cfg = await loadConfig(name, globals);
        const store = await openStore(cfg, output.log);
        try {
          const facts = await gatherFacts({
            server: cfg.server, conninfo: cfg.conninfo, slotName: cfg.slotName, store,
            connect: { applicationName: 'cloudbarman check', connectTimeoutMs: cfg.connectTimeoutMs },
            // receive-wal and backup_method postgres connect on streaming_conninfo: try it the same way.
            ...((cfg.streamingArchiver || cfg.backupMethod === 'postgres') && cfg.streamingConninfo !== undefined
              ? { streaming: { conninfo: cfg.streamingConninfo, applicationName: 'cloudbarman check', connectTimeoutMs: cfg.connectTimeoutMs } } : {}),
          });
          report.push({
            server: cfg.server,
            checks: evaluateChecks({
              server: cfg.server, streamingArchiver: cfg.streamingArchiver, streamingArchiverName: cfg.streamingArchiverName,
              minimumRedundancy: cfg.minimumRedundancy,
              ...(cfg.slotName === undefined ? {} : { slotName: cfg.slotName }),
              ...(cfg.lastBackupMaximumAgeMs === undefined ? {} : { lastBackupMaximumAgeMs: cfg.lastBackupMaximumAgeMs }),
            }, facts, new Date()),
          });
        } finally {
          await store.close();
        }
      }
      const failing = report.map((r) => ({ server: r.server, failed: r.checks.filter((c) => !c.ok) })).filter((r) => r.failed.length > 0);
      if (opts['nagios'] === true) {
        const line = failing.length === 0
          ? `CLOUDBARMAN OK - Ready to serve the backups of ${report.length} server${report.length === 1 ? '' : 's'}`
          : `CLOUDBARMAN CRITICAL - ${failing.length} server${failing.length === 1 ? '' : 's'} with issues: ${failing.map((f) => `${f.server} (${f.failed.map((c) => c.name).join(', ')})`).join('; ')}`;
        const details = failing.flatMap((f) => f.failed.map((c) => `${f.server} ${c.name}: ${c.detail}`));
        output.result({ status: failing.length === 0 ? 'OK' : 'CRITICAL', servers: report }, [line, ...details]);
        if (failing.length > 0) throw new CloudbarmanError('unreachable', `${failing.length} server(s) failed checks`, { hint: 'Nagios CRITICAL (exit 2)', resultPrinted: true });
        return;
      }
      const text = report.flatMap((r) => [`Server ${r.server}:`, ...r.checks.map((c) => `\t${c.name}: ${c.ok ? 'OK' : 'FAILED'} (${c.detail})`)]);
      output.result(report.length === 1 ? report[0] : report, text);
      if (failing.length > 0) {
        throw new CloudbarmanError('failed', `${failing.map((f) => `${f.server}: ${f.failed.map((c) => c.name).join(', ')}`).join('; ')} failed`, {
          hint: 'each FAILED line above says what is wrong and how to fix it', resultPrinted: true,
        });
      }
    }));
};

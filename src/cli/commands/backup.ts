/** `backup SERVER`: a base backup. Maps options to takeBackup, shows progress, prints the result. */
import { formatBytes } from '../format.ts';
import type { Register } from '../program.ts';
import type { Output } from '../output.ts';
import { BACKUP_FLAG_RENAMES, addConfigFlags } from '../config-flags.ts';
import { CloudbarmanError } from '../../core/errors.ts';
import type { BackupInfo } from '../../core/catalog/backup-info.ts';
import type { BackupProgress } from '../../core/backup/take-backup.ts';

export const registerBackup: Register = (program, run) => {
  addConfigFlags(program.command('backup')
    .summary('take a base backup')
    .description('Take a base backup of SERVER into its destination: the data directory (pgdata) read on this host ' +
      'between pg_backup_start and pg_backup_stop, in compressed parts uploaded --jobs at a time, pg_control last. ' +
      'With --method snapshot (run on the database instance): snapshots of snapshot_disks of snapshot_instance, ' +
      'which must hold pgdata and every tablespace, started inside the backup; backup mode ends as soon as their ' +
      'points in time are fixed, and backup_label, tablespace_map and the snapshot ids go to the destination ' +
      '(docs/snapshots.md). The backup is DONE only once the WAL it needs is archived (wal_archive_timeout) and ' +
      'every snapshot is complete (snapshot_timeout). An interrupted or failed backup is marked FAILED, its ' +
      'snapshots deleted, and one killed outright stays STARTED: neither is ever used as a backup.')
    .argument('<server>', 'server name: a [section] of the config file')
    .option('--name <name>', 'label of the backup (pg_backup_start\'s label; default "cloudbarman <id>")'), BACKUP_FLAG_RENAMES)
    .action(run('backup', async (output: Output, ...args: unknown[]) => {
      const [server, opts] = args as [string, Record<string, unknown>];
      const globals = { ...program.opts(), ...opts };
      const [{ loadConfig, openStore }, { runBackup, requireBackupSettings }] = await Promise.all([
        import('../context.ts'), import('../run-backup.ts'),
      ]);
      const cfg = await loadConfig(server, globals, BACKUP_FLAG_RENAMES);
      requireBackupSettings(cfg);

      const interrupt = new AbortController();
      const onSignal = (signal: NodeJS.Signals): void => {
        output.log.warn(`${signal} received: stopping; the backup will be marked FAILED`);
        interrupt.abort(new CloudbarmanError('failed', `the backup was interrupted by ${signal}`, { hint: 'run it again' }));
      };
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      const progress = progressReporter(output);
      const store = await openStore(cfg, output.log);
      const started = performance.now();
      try {
        const info = await runBackup(cfg, store, output.log, {
          signal: interrupt.signal, onProgress: progress.update, version: program.version() ?? '0.1.0',
          ...(typeof opts['name'] === 'string' ? { name: opts['name'] } : {}),
        });
        progress.finish();
        output.result(info, summary(info, (performance.now() - started) / 1000));
      } finally {
        progress.finish();
        process.removeListener('SIGINT', onSignal);
        process.removeListener('SIGTERM', onSignal);
        await store.close();
      }
    }));
};

function summary(info: BackupInfo, seconds: number): string[] {
  if (info.method === 'snapshot') {
    return [
      `backup ${info.id} ${info.status}`,
      `  server ${info.server}, PostgreSQL ${info.pg_version ?? '?'}, timeline ${info.timeline ?? '?'}`,
      `  LSN ${info.begin_lsn ?? '?'} .. ${info.end_lsn ?? '?'} (WAL ${info.begin_wal ?? '?'} .. ${info.end_wal ?? '?'})`,
      ...(info.snapshots ?? []).map((s) => `  snapshot ${s.id} of ${s.disk_name} (${s.contents.join(', ') || 'mounted'} at ${s.mount_point})`),
      `  ${seconds.toFixed(1)} s`,
    ];
  }
  return [
    `backup ${info.id} ${info.status}`,
    `  server ${info.server}, PostgreSQL ${info.pg_version ?? '?'}, timeline ${info.timeline ?? '?'}`,
    `  LSN ${info.begin_lsn ?? '?'} .. ${info.end_lsn ?? '?'} (WAL ${info.begin_wal ?? '?'} .. ${info.end_wal ?? '?'})`,
    `  ${info.file_count} files, ${formatBytes(info.size_bytes)} read, ${formatBytes(info.stored_bytes)} stored (${info.compression}) in ${info.part_count} parts, ${seconds.toFixed(1)} s`,
  ];
}

// Plain lines, when stderr is not a terminal, come at most this often.
const PLAIN_INTERVAL_MS = 10_000;

/** A bar on a terminal (bytes, rate, ETA); plain log lines otherwise; nothing with -q. */
function progressReporter(output: Output): { update: (p: BackupProgress) => void; finish: () => void } {
  const tty = process.stderr.isTTY && output.verbosity !== 'quiet' && output.format === 'text';
  const started = performance.now();
  let lastPlain = started;
  let drawn = false;
  const describe = (p: BackupProgress): string => {
    const seconds = (performance.now() - started) / 1000;
    const rate = seconds > 0 ? p.bytesDone / seconds : 0;
    const eta = rate > 0 ? Math.max(0, (p.bytesTotal - p.bytesDone) / rate) : undefined;
    const pct = p.bytesTotal > 0 ? Math.floor((100 * p.bytesDone) / p.bytesTotal) : 100;
    return `${pct}% ${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)}, part ${p.partsDone}/${p.partsTotal}, ${formatBytes(rate)}/s` +
      (eta === undefined ? '' : `, ETA ${Math.ceil(eta)} s`);
  };
  return {
    update(p) {
      if (tty) {
        const width = 24;
        const filled = p.bytesTotal > 0 ? Math.round((width * p.bytesDone) / p.bytesTotal) : width;
        process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${describe(p)}\x1b[K`);
        drawn = true;
      } else if (performance.now() - lastPlain >= PLAIN_INTERVAL_MS || p.partsDone === p.partsTotal) {
        lastPlain = performance.now();
        output.log.info(`progress: ${describe(p)}`);
      }
    },
    finish() {
      if (drawn) process.stderr.write('\n');
      drawn = false;
    },
  };
}

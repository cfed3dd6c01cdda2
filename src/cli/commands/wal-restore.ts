/** `wal-restore SERVER WAL_NAME DEST_PATH`: the restore_command. Maps options to restoreWal. */
import type { Register } from '../program.ts';
import type { Output } from '../output.ts';
import { addConfigFlags } from '../config-flags.ts';
import { CloudbarmanError } from '../../core/errors.ts';

export const registerWalRestore: Register = (program, run) => {
  addConfigFlags(program.command('wal-restore')
    .summary('restore one WAL file (restore_command)')
    .description('Restore one WAL file: restore_command = \'cloudbarman wal-restore SERVER %f %p\'.\n' +
      'Exit 1 means the file is not in the archive. With recovery.signal in the data directory (targeted recovery),\n' +
      'any other failure exits 128 so that PostgreSQL aborts recovery instead of ending it early; with\n' +
      'standby.signal, storage failures exit 2 and the standby retries.')
    .argument('<server>', 'server name: a [section] of the config file')
    .argument('<wal_name>', 'WAL file name (%f)')
    .argument('<dest_path>', 'where to write it (%p)'))
    .action(run('wal-restore', async (output: Output, ...args: unknown[]) => {
      const [server, walName, destPath, opts] = args as [string, string, string, Record<string, unknown>];
      const { dataDirForRestorePath, detectRecoveryMode } = await import('../../pg/recovery-mode.ts');
      const mode = await detectRecoveryMode(dataDirForRestorePath(destPath, process.cwd()));
      const { restoreWal, failureForRecoveryMode } = await import('../../core/wal/wal-restore.ts');
      try {
        const { loadConfig, openStore } = await import('../context.ts');
        const cfg = await loadConfig(server, { ...program.opts(), ...opts });
        const store = await openStore(cfg, output.log);
        try {
          const result = await restoreWal({ store, server: cfg.server, walName, destPath, compression: cfg.compression, log: output.log });
          output.result(result, '');
        } finally {
          await store.close();
        }
      } catch (err) {
        const failure = err instanceof CloudbarmanError ? err
          : new CloudbarmanError('failed', err instanceof Error ? err.message : String(err), { cause: err });
        throw failureForRecoveryMode(failure, mode);
      }
    }));
};

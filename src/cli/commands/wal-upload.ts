/** `wal-upload SERVER WAL_PATH`: the archive_command. Maps options to archiveWal. */
import type { Register } from '../program.ts';
import type { Output } from '../output.ts';
import { addConfigFlags } from '../config-flags.ts';
import type { ObjectStore } from '../../../providers/object-store.ts';
import type { ServerConfig } from '../../config/load.ts';

export const registerWalUpload: Register = (program, run) => {
  addConfigFlags(program.command('wal-upload')
    .summary('archive one WAL file (archive_command)')
    .description('Archive one WAL file: archive_command = \'cloudbarman wal-upload SERVER %p\'.\n' +
      'Exits 0 only once the file is durably stored. A file already archived with identical content is a success;\n' +
      'different content under the same name exits 4 and nothing is overwritten.\n' +
      'Each call also archives up to archive_batch_size - 1 other files PostgreSQL has marked .ready, and records\n' +
      'them in the spool so that PostgreSQL\'s own calls for them return at once (docs/wal.md).')
    .argument('<server>', 'server name: a [section] of the config file')
    .argument('<wal_path>', 'path of the WAL file (%p)'))
    .action(run('wal-upload', async (output: Output, ...args: unknown[]) => {
      const [server, walPath, opts] = args as [string, string, Record<string, unknown>];
      await walUpload(output, server, walPath, { ...program.opts(), ...opts });
    }));
};

/**
 * The command's work, apart from commander: the WAL fast path (src/cli/fast-path.ts) calls it too.
 * opts: the global and the command's options, keyed as commander's opts() keys them.
 */
export async function walUpload(output: Output, server: string, walPath: string, opts: Record<string, unknown>): Promise<void> {
  const [{ loadConfig, openStore }, { archiveWal }] = await Promise.all([import('../context.ts'), import('../../core/wal/wal-batch-upload.ts')]);
  const readStart = Date.now();
  const cfg = await loadConfig(server, opts);
  // Opened on first use: a file an earlier batch archived is confirmed without the store.
  let store: Promise<ObjectStore> | undefined;
  try {
    const result = await archiveWal({
      server: cfg.server,
      walPath,
      compression: cfg.compression,
      destination: cfg.destination,
      batchSize: cfg.archiveBatchSize,
      parallel: cfg.archiveParallel,
      spoolDirectory: cfg.spoolDirectory,
      configStatKey: await launcherConfigKey(cfg, readStart),
      getStore: () => (store ??= openStore(cfg, output.log)),
      log: output.log,
      now: () => new Date(),
    });
    output.result(result, '');
  } finally {
    if (store !== undefined) await (await store.catch(() => undefined))?.close();
  }
}

/**
 * The config file's stat key for records the launcher may confirm in sh (bin/cloudbarman), or
 * undefined. The launcher cannot read the config, so it trusts a record only while the config file
 * is the same, unchanged file. That stands for "the same settings" only when the file alone decided
 * them: no option from the environment or a flag, and the file had not changed for 2 s when it was
 * read (a change after that moves its ctime, so the launcher's stat differs).
 */
export async function launcherConfigKey(cfg: ServerConfig, readStart: number): Promise<string | undefined> {
  if (cfg.configFile === undefined) return undefined;
  if (Object.values(cfg.origins).some((origin) => origin === 'env' || origin === 'flag')) return undefined;
  const { settledStat, shellStatKey } = await import('../../core/wal/archive-records.ts');
  const st = await settledStat(cfg.configFile, readStart).catch(() => undefined);
  return st === undefined ? undefined : shellStatKey(st);
}

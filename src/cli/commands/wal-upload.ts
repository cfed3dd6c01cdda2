/** `wal-upload SERVER WAL_PATH`: the archive_command. Maps options to uploadWal. */
import type { Register } from '../program.ts';
import type { Output } from '../output.ts';
import { addConfigFlags } from '../config-flags.ts';

export const registerWalUpload: Register = (program, run) => {
  addConfigFlags(program.command('wal-upload')
    .summary('archive one WAL file (archive_command)')
    .description('Archive one WAL file: archive_command = \'cloudbarman wal-upload SERVER %p\'.\n' +
      'Exits 0 only once the file is durably stored. A file already archived with identical content is a success;\n' +
      'different content under the same name exits 4 and nothing is overwritten.')
    .argument('<server>', 'server name: a [section] of the config file')
    .argument('<wal_path>', 'path of the WAL file (%p)'))
    .action(run('wal-upload', async (output: Output, ...args: unknown[]) => {
      const [server, walPath, opts] = args as [string, string, Record<string, unknown>];
      const [{ loadConfig, openStore }, { uploadWal }] = await Promise.all([import('../context.ts'), import('../../core/wal/wal-upload.ts')]);
      const cfg = await loadConfig(server, { ...program.opts(), ...opts });
      const store = await openStore(cfg, output.log);
      try {
        const result = await uploadWal({ store, server: cfg.server, walPath, compression: cfg.compression, log: output.log });
        output.result(result, '');
      } finally {
        await store.close();
      }
    }));
};

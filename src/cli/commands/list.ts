/** `list SERVER`: every backup in the catalog, oldest first. */
import type { Register } from '../program.ts';
import type { Output } from '../output.ts';
import { addConfigFlags } from '../config-flags.ts';

export const registerList: Register = (program, run) => {
  addConfigFlags(program.command('list')
    .summary('list the backups of a server')
    .description('List every backup of SERVER, oldest first: id, status, times, LSNs, timeline and sizes.\n' +
      'STARTED means running or killed; FAILED and DELETING entries stay visible until deleted.')
    .argument('<server>', 'server name: a [section] of the config file'))
    .action(run('list', async (output: Output, ...args: unknown[]) => {
      const [server, opts] = args as [string, Record<string, unknown>];
      const [{ loadConfig, openStore }, { listBackups }, { formatBytes, formatTable }] = await Promise.all([
        import('../context.ts'), import('../../core/catalog/catalog.ts'), import('../format.ts')]);
      const cfg = await loadConfig(server, { ...program.opts(), ...opts });
      const store = await openStore(cfg, output.log);
      try {
        const { backups, keeps, unreadable } = await listBackups(store, cfg.server);
        for (const u of unreadable) output.log.warn(`backup ${u.id} cannot be read: ${u.error}`);
        const rows = backups.map((b) => [b.id, b.status, b.begin_time, b.end_time ?? '-', b.begin_lsn ?? '-', b.end_lsn ?? '-',
          b.timeline === null ? '-' : String(b.timeline), formatBytes(b.size_bytes), formatBytes(b.stored_bytes), b.method, keeps.get(b.id)?.target ?? '-']);
        const entries = backups.map((b) => ({ ...b, keep: keeps.get(b.id)?.target ?? null }));
        output.result(entries, backups.length === 0 ? [`no backups of ${cfg.server} in ${store.url}`]
          : formatTable(['id', 'status', 'begin_time', 'end_time', 'begin_lsn', 'end_lsn', 'tli', 'size', 'stored', 'method', 'keep'], rows));
      } finally {
        await store.close();
      }
    }));
};

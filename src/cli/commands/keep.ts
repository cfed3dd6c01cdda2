/** `keep SERVER BACKUP_ID --target full|standalone | --release | --status`: Barman's keep annotations. */
import type { Register } from '../program.ts';
import type { Output } from '../output.ts';
import { addConfigFlags } from '../config-flags.ts';
import { CloudbarmanError, badInput } from '../../core/errors.ts';

export const registerKeep: Register = (program, run) => {
  addConfigFlags(program.command('keep')
    .summary('keep a backup out of retention, or release it')
    .description('Mark a DONE backup so that retention never deletes it, as Barman\'s keep does. ' +
      '--target full keeps the backup and all WAL from its start on, so it stays a starting point for ' +
      'point-in-time recovery; --target standalone keeps the backup and only the WAL that makes it consistent. ' +
      '--release removes the mark; --status prints it (full, standalone or nokeep).')
    .argument('<server>', 'server name: a [section] of the config file')
    .argument('<backup_id>', 'backup id, or latest')
    .option('--target <target>', 'full or standalone')
    .option('--release', 'remove the keep mark')
    .option('--status', 'print the keep mark'))
    .action(run('keep', async (output: Output, ...args: unknown[]) => {
      const [server, id, opts] = args as [string, string, Record<string, unknown>];
      const chosen = ['target', 'release', 'status'].filter((k) => opts[k] !== undefined);
      if (chosen.length !== 1) throw badInput('keep needs exactly one of --target, --release and --status', 'e.g. cloudbarman keep pg1 latest --target full');
      const [{ loadConfig, openStore }, { listBackups }, keepStore, policy] = await Promise.all([
        import('../context.ts'), import('../../core/catalog/catalog.ts'), import('../../core/catalog/keep-store.ts'),
        import('../../core/retention/retention-policy.ts')]);
      let target: 'full' | 'standalone' | undefined;
      if (typeof opts['target'] === 'string') {
        const parsed = policy.parseKeepTarget(opts['target']);
        if (!parsed.ok) throw badInput(`--target ${JSON.stringify(opts['target'])} ${parsed.problem}`, parsed.hint ?? 'use full or standalone');
        target = parsed.value;
      }
      const cfg = await loadConfig(server, { ...program.opts(), ...opts });
      const store = await openStore(cfg, output.log);
      try {
        const { backups, keeps } = await listBackups(store, cfg.server);
        const backup = id === 'latest' ? backups.filter((b) => b.status === 'DONE').at(-1) : backups.find((b) => b.id === id);
        if (backup === undefined) {
          throw new CloudbarmanError('bad-input', id === 'latest' ? `${cfg.server} has no DONE backup in ${store.url}` : `backup ${id} of ${cfg.server} is not in ${store.url}`, {
            hint: `\`cloudbarman list ${cfg.server}\` shows the backups there are`,
          });
        }
        if (opts['status'] !== undefined) {
          const status = policy.keepStatus(keeps.get(backup.id));
          output.result({ backup: backup.id, keep: status }, [status]);
          return;
        }
        if (opts['release'] !== undefined) {
          await keepStore.releaseKeep(store, cfg.server, backup.id);
          output.result({ backup: backup.id, keep: 'nokeep' }, [`backup ${backup.id}: keep released; retention applies to it again`]);
          return;
        }
        if (backup.status !== 'DONE') {
          throw badInput(`backup ${backup.id} is ${backup.status}: only a DONE backup can be kept`, 'keep a DONE backup; `cloudbarman list` shows them');
        }
        const annotation = policy.keepAnnotation(target ?? 'full', new Date());
        await keepStore.writeKeep(store, cfg.server, backup.id, annotation);
        output.result({ backup: backup.id, keep: annotation.target }, [`backup ${backup.id}: kept (${annotation.target}); retention will not delete it`]);
      } finally {
        await store.close();
      }
    }));
};

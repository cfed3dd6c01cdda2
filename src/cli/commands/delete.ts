/** `delete SERVER BACKUP_ID [--dry-run]`: removes one backup and the WAL only it needed. */
import type { Register } from '../program.ts';
import type { Output } from '../output.ts';
import { addConfigFlags } from '../config-flags.ts';
import { CloudbarmanError } from '../../core/errors.ts';

export const registerDelete: Register = (program, run) => {
  addConfigFlags(program.command('delete')
    .summary('delete one backup')
    .description('Delete one backup, and the WAL that only it needed: when it is the oldest DONE backup, the WAL\n' +
      'before the next backup\'s start goes too. The catalog entry is marked DELETING first and removed last,\n' +
      'so an interrupted delete stays visible; run it again to finish it. --dry-run prints the plan.')
    .argument('<server>', 'server name: a [section] of the config file')
    .argument('<backup_id>', 'backup id')
    .option('--dry-run', 'print what would be deleted, delete nothing'))
    .action(run('delete', async (output: Output, ...args: unknown[]) => {
      const [server, id, opts] = args as [string, string, Record<string, unknown>];
      const [{ loadConfig, openStore }, { listBackups }, { planBackupDeletion }, { applyBackupDeletion }, { listAll }] = await Promise.all([
        import('../context.ts'), import('../../core/catalog/catalog.ts'), import('../../core/catalog/delete-plan.ts'),
        import('../../core/catalog/delete-backup.ts'), import('../../../providers/object-store.ts')]);
      const cfg = await loadConfig(server, { ...program.opts(), ...opts });
      const store = await openStore(cfg, output.log);
      try {
        const { backups, keeps, unreadable } = await listBackups(store, cfg.server);
        if (unreadable.length > 0) {
          throw new CloudbarmanError('failed', `the catalog of ${cfg.server} has unreadable entries (${unreadable.map((u) => u.id).join(', ')}); nothing was deleted`, {
            hint: 'deleting with an incomplete view of the backups could remove WAL another backup needs',
          });
        }
        const target = backups.find((b) => b.id === id);
        if (target === undefined) throw new CloudbarmanError('bad-input', `backup ${id} of ${cfg.server} is not in ${store.url}`, { hint: `\`cloudbarman list ${cfg.server}\` shows the backups there are` });
        const kept = keeps.get(id);
        if (kept !== undefined) {
          throw new CloudbarmanError('bad-input', `backup ${id} of ${cfg.server} is kept (${kept.target}); it was not deleted`, {
            hint: `release it first: cloudbarman keep ${cfg.server} ${id} --release`,
          });
        }
        const walKeys: string[] = [];
        for await (const item of listAll(store, `${cfg.server}/wals/`)) walKeys.push(item.key);
        const plan = planBackupDeletion(backups, target, walKeys);
        const summary = [`backup ${id} (${target.status}): delete`, `WAL: ${plan.wal.length} objects (${plan.walReason})`];
        if (opts['dryRun'] === true) {
          output.result({ dry_run: true, backup: id, wal: plan.wal, wal_reason: plan.walReason }, [...summary, ...plan.wal.map((w) => `  ${w.key}`), '(dry run: nothing deleted)']);
          return;
        }
        const { objects } = await applyBackupDeletion(store, plan, output.log);
        output.result({ dry_run: false, backup: id, deleted_objects: objects, wal: plan.wal, wal_reason: plan.walReason }, [...summary, `deleted ${objects} objects`]);
      } finally {
        await store.close();
      }
    }));
};

/**
 * `delete SERVER BACKUP_ID [--dry-run]`: removes one backup and the WAL only it needed.
 * `delete SERVER --retention [--dry-run]`: applies the server's retention policy.
 */
import type { Register } from '../program.ts';
import type { Output } from '../output.ts';
import { addConfigFlags } from '../config-flags.ts';
import { CloudbarmanError, badInput } from '../../core/errors.ts';
import type { ServerConfig } from '../../config/load.ts';
import type { ObjectStore } from '../../../providers/object-store.ts';

export const registerDelete: Register = (program, run) => {
  addConfigFlags(program.command('delete')
    .summary('delete one backup, or apply the retention policy')
    .description('Delete one backup, and the WAL that only it needed: when it is the oldest DONE backup, the WAL ' +
      'before the next backup\'s start goes too. The catalog entry is marked DELETING first and removed last, ' +
      'so an interrupted delete stays visible; run it again to finish it. A kept backup (see keep) is refused.\n\n' +
      'With --retention instead of a backup id, apply retention_policy, minimum_redundancy, keep_daily/weekly/' +
      'monthly/yearly and keep annotations: obsolete WAL first, then obsolete backups oldest first. It takes the ' +
      'server\'s retention lease (exit 5 when another run holds it), deletes nothing when any listing failed, ' +
      'and is safe to re-run after an interruption. --dry-run prints the plan with a reason for every verdict.')
    .argument('<server>', 'server name: a [section] of the config file')
    .argument('[backup_id]', 'backup id (not with --retention)')
    .option('--retention', 'apply the retention policy instead of deleting one backup')
    .option('--dry-run', 'print what would be deleted, delete nothing'))
    .action(run('delete', async (output: Output, ...args: unknown[]) => {
      const [server, id, opts] = args as [string, string | undefined, Record<string, unknown>];
      const { loadConfig, openStore } = await import('../context.ts');
      if (opts['retention'] === true && id !== undefined) throw badInput('give either a backup id or --retention, not both', `cloudbarman delete ${server} --retention`);
      if (opts['retention'] !== true && id === undefined) throw badInput('delete needs a backup id, or --retention', `cloudbarman list ${server} shows the backup ids`);
      const cfg = await loadConfig(server, { ...program.opts(), ...opts });
      const store = await openStore(cfg, output.log);
      try {
        if (id === undefined) await deleteByRetention(cfg, store, output, opts['dryRun'] === true);
        else await deleteOne(cfg, store, id, output, opts['dryRun'] === true);
      } finally {
        await store.close();
      }
    }));
};

async function deleteOne(cfg: ServerConfig, store: ObjectStore, id: string, output: Output, dryRun: boolean): Promise<void> {
  const [{ listBackups }, { planBackupDeletion }, { applyBackupDeletion }, { listAll }] = await Promise.all([
    import('../../core/catalog/catalog.ts'), import('../../core/catalog/delete-plan.ts'),
    import('../../core/catalog/delete-backup.ts'), import('../../../providers/object-store.ts')]);
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
  if (dryRun) {
    output.result({ dry_run: true, backup: id, wal: plan.wal, wal_reason: plan.walReason }, [...summary, ...plan.wal.map((w) => `  ${w.key}`), '(dry run: nothing deleted)']);
    return;
  }
  const { snapshotDeleter } = await import('../open-snapshotter.ts');
  const snaps = snapshotDeleter(cfg);
  let objects: number;
  try {
    ({ objects } = await applyBackupDeletion(store, plan, output.log, { deleteSnapshot: snaps.deleteSnapshot }));
  } finally {
    await snaps.close();
  }
  output.result({ dry_run: false, backup: id, deleted_objects: objects, wal: plan.wal, wal_reason: plan.walReason }, [...summary, `deleted ${objects} objects`]);
}

async function deleteByRetention(cfg: ServerConfig, store: ObjectStore, output: Output, dryRun: boolean): Promise<void> {
  const [{ planServerRetention, applyRetention }, { formatPlan }, { rulesFromConfig }, { withLease, DEFAULT_LEASE_TIMING }, { leaseOwner, holderGone }] = await Promise.all([
    import('../../core/retention/apply-retention.ts'), import('../../core/retention/retention-plan.ts'),
    import('../retention-rules.ts'), import('../../core/locks/lease.ts'), import('../lease-holder.ts')]);
  const rules = rulesFromConfig(cfg);
  const now = (): Date => new Date();
  if (dryRun) {
    const planned = await planServerRetention(store, cfg.server, rules, now());
    output.result({ dry_run: true, plan: planned.plan, obsolete_wal: planned.obsoleteWal }, [formatPlan(planned.plan), '(dry run: nothing deleted)']);
    return;
  }
  const owner = leaseOwner('delete --retention');
  await withLease(store, cfg.server, 'retention', owner, { ...DEFAULT_LEASE_TIMING, now, holderGone }, async (signal) => {
    const planned = await planServerRetention(store, cfg.server, rules, now());
    const { snapshotDeleter } = await import('../open-snapshotter.ts');
    const snaps = snapshotDeleter(cfg);
    let outcome;
    try {
      outcome = await applyRetention(store, planned, output.log, signal, { deleteSnapshot: snaps.deleteSnapshot });
    } finally {
      await snaps.close();
    }
    const done = planned.plan.listingErrors.length > 0 ? 'nothing deleted: a listing failed' :
      `deleted ${outcome.backupsDeleted.length} backups${outcome.backupsDeleted.length > 0 ? ` (${outcome.backupsDeleted.join(', ')})` : ''} and ${outcome.walDeleted} WAL objects`;
    output.result({ dry_run: false, plan: planned.plan, deleted_backups: outcome.backupsDeleted, deleted_wal: outcome.walDeleted }, [formatPlan(planned.plan), done]);
    if (planned.plan.listingErrors.length > 0) {
      throw new CloudbarmanError('failed', `retention of ${cfg.server} deleted nothing: ${planned.plan.listingErrors[0] ?? 'a listing failed'}`, { hint: 'fix the unreadable objects named above, then run it again', resultPrinted: true });
    }
  });
}

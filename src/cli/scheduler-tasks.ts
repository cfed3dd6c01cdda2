/** The scheduler's view of one configured server (ServerTasks), built from its config and store. */
import { holderGone, leaseOwner } from './lease-holder.ts';
import type { ServerConfig } from '../config/load.ts';
import { cronSchedule } from '../config/values.ts';
import type { Logger } from '../core/log.ts';
import type { ServerTasks } from '../core/scheduler/cron-pass.ts';
import { loadConfig, openStore } from './context.ts';

/** Loads the server's config and opens its store; the tasks own the store until close(). */
export async function serverTasks(server: string, opts: Record<string, unknown>, log: Logger, command: string, version: string): Promise<ServerTasks> {
  const cfg: ServerConfig = await loadConfig(server, opts);
  const store = await openStore(cfg, log);
  const [{ listBackups }, { withLease, DEFAULT_LEASE_TIMING }] = await Promise.all([
    import('../core/catalog/catalog.ts'), import('../core/locks/lease.ts')]);
  const now = (): Date => new Date();
  const owner = leaseOwner(command);
  return {
    server: cfg.server,
    schedule: cfg.backupSchedule === undefined ? undefined : cronSchedule(cfg.backupSchedule),
    applyRetention: cfg.retentionPolicy !== undefined && cfg.retentionPolicyMode === 'auto',
    checkStore: () => store.checkAccess(),
    listBackups: async () => (await listBackups(store, cfg.server)).backups,
    withLease: (name, fn) => withLease(store, cfg.server, name, owner, { ...DEFAULT_LEASE_TIMING, now, holderGone }, fn),
    async backup(signal) {
      const { runBackup } = await import('./run-backup.ts');
      return (await runBackup(cfg, store, log, { signal, version })).id;
    },
    async retention(signal) {
      const [{ planServerRetention, applyRetention }, { rulesFromConfig }] = await Promise.all([
        import('../core/retention/apply-retention.ts'), import('./retention-rules.ts')]);
      const planned = await planServerRetention(store, cfg.server, rulesFromConfig(cfg), now());
      if (planned.plan.listingErrors.length > 0) throw new Error(`nothing deleted: ${planned.plan.listingErrors.join('; ')}`);
      const { snapshotDeleter } = await import('./open-snapshotter.ts');
      const snaps = snapshotDeleter(cfg);
      let outcome;
      try {
        outcome = await applyRetention(store, planned, log, signal, { deleteSnapshot: snaps.deleteSnapshot });
      } finally {
        await snaps.close();
      }
      return `deleted ${outcome.backupsDeleted.length} backups${outcome.backupsDeleted.length > 0 ? ` (${outcome.backupsDeleted.join(', ')})` : ''} and ${outcome.walDeleted} WAL objects`;
    },
    close: () => store.close(),
  };
}

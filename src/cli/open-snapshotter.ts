/**
 * Opening a server's snapshotter: the one place that turns the snapshot_* options into
 * SnapshotterOptions, for backup, restore, and the deletion of snapshot backups. The provider comes
 * from snapshot_provider when taking a backup, and from the backup's own records afterwards.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { openSnapshotter } from '../../providers/snapshot-registry.ts';
import { SnapshotError, type Snapshotter, type SnapshotterOptions } from '../../providers/snapshotter.ts';
import { PROVIDER_SCHEMES, type ProviderName } from '../../providers/store-options.ts';
import type { ServerConfig } from '../config/load.ts';
import type { SnapshotDeleter } from '../core/catalog/delete-backup.ts';
import { snapshotFailure } from '../core/snapshot/snapshot-failure.ts';

/** Where the local snapshotter keeps snapshots of a file:// destination when snapshot_local_directory is not set. */
export const LOCAL_SNAPSHOT_FOLDER = '.snapshots';

/** The snapshotter options of a server. */
export function snapshotterOptions(cfg: ServerConfig): SnapshotterOptions {
  const local = cfg.snapshotLocalDirectory
    ?? (cfg.destination.startsWith('file:') ? join(fileURLToPath(cfg.destination), LOCAL_SNAPSHOT_FOLDER) : undefined);
  return {
    ...(cfg.snapshotZone === undefined ? {} : { zone: cfg.snapshotZone }),
    ...(cfg.awsRegion === undefined ? {} : { region: cfg.awsRegion }),
    ...(cfg.snapshotGcpProject === undefined ? {} : { gcpProject: cfg.snapshotGcpProject }),
    ...(cfg.azureSubscriptionId === undefined ? {} : { azureSubscriptionId: cfg.azureSubscriptionId }),
    ...(cfg.azureResourceGroup === undefined ? {} : { azureResourceGroup: cfg.azureResourceGroup }),
    ...(cfg.snapshotEndpointUrl === undefined ? {} : { endpointUrl: cfg.snapshotEndpointUrl }),
    ...(local === undefined ? {} : { localSnapshotDir: local }),
    operationTimeoutMs: cfg.snapshotTimeoutMs,
    sleep: async (ms, signal) => { await sleep(ms, undefined, signal === undefined ? {} : { signal }); },
  };
}

/** Opens the snapshotter of `provider` (a snapshot_provider, or the provider a backup's records name) with the server's settings. */
export async function openServerSnapshotter(cfg: ServerConfig, provider: string): Promise<Snapshotter> {
  if (!Object.hasOwn(PROVIDER_SCHEMES, provider)) {
    throw snapshotFailure(new SnapshotError('invalid', `snapshot provider ${JSON.stringify(provider)} is not one of aws, azure, gcp, local`), 'opening the snapshotter');
  }
  try {
    return await openSnapshotter(provider as ProviderName, snapshotterOptions(cfg));
  } catch (err) {
    throw snapshotFailure(err, `opening the ${provider} snapshotter`);
  }
}

/**
 * The snapshot deleter `delete` and retention hand to applyBackupDeletion: it opens each provider's
 * snapshotter on first use; close() closes what it opened.
 */
export function snapshotDeleter(cfg: ServerConfig): { deleteSnapshot: SnapshotDeleter; close(): Promise<void> } {
  const opened = new Map<string, Promise<Snapshotter>>();
  const get = (provider: string): Promise<Snapshotter> => {
    let snapshotter = opened.get(provider);
    if (snapshotter === undefined) {
      snapshotter = openServerSnapshotter(cfg, provider);
      opened.set(provider, snapshotter);
    }
    return snapshotter;
  };
  return {
    deleteSnapshot: async (record) => (await get(record.provider)).deleteSnapshot(record.id),
    close: async () => {
      await Promise.all([...opened.values()].map(async (s) => (await s.catch(() => undefined))?.close()));
    },
  };
}

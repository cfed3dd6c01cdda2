/**
 * Applies a delete plan: the entry is first rewritten DELETING (so an interrupted delete
 * never leaves a DONE entry pointing at missing data), then the WAL, the backup's snapshots (a
 * snapshot backup) and the backup's objects go, and the catalog entry goes last. Re-running a
 * delete finishes an interrupted one.
 */
import type { ObjectStore } from '../../../providers/object-store.ts';
import { listAll } from '../../../providers/object-store.ts';
import { CloudbarmanError } from '../errors.ts';
import { snapshotFailure } from '../snapshot/snapshot-failure.ts';
import { storeFailure } from '../store/store-failure.ts';
import type { Logger } from '../log.ts';
import { BACKUP_INFO_NAME, backupPrefix } from './backup-keys.ts';
import { writeBackupInfo } from './catalog.ts';
import type { SnapshotRecord } from './backup-info.ts';
import type { DeletePlan } from './delete-plan.ts';

/**
 * Deletes one snapshot of a snapshot backup; idempotent (an absent snapshot is deleted). The CLI
 * makes it from the snapshotter of the record's provider: the core never picks a provider.
 */
export type SnapshotDeleter = (snapshot: SnapshotRecord) => Promise<void>;

/** What a deletion may need beside the store. */
export interface DeletionOptions {
  /** Needed for a backup that records snapshots; without it such a backup is refused, untouched. */
  deleteSnapshot?: SnapshotDeleter;
}

/** Deletes in batches of the store's size; returns the number of objects (and snapshots) deleted. */
export async function applyBackupDeletion(store: ObjectStore, plan: DeletePlan, log: Logger, options: DeletionOptions = {}): Promise<{ objects: number; snapshots: number }> {
  const { backup } = plan;
  const prefix = backupPrefix(backup.server, backup.id);
  const snapshots = backup.snapshots ?? [];
  const deleteSnapshot = options.deleteSnapshot;
  // Checked before anything changes: deleting the entry and leaving its snapshots would make them invisible orphans.
  if (snapshots.length > 0 && deleteSnapshot === undefined) {
    throw new CloudbarmanError('failed', `backup ${backup.id} of ${backup.server} has ${snapshots.length} snapshot${snapshots.length === 1 ? '' : 's'} (${snapshots.map((s) => s.id).join(', ')}) that this command cannot delete; nothing was deleted`, {
      hint: 'this command cannot reach the snapshot API yet; the snapshots carry the tags cloudbarman-server and cloudbarman-backup (docs/snapshots.md)',
    });
  }
  if (backup.status !== 'DELETING') await writeBackupInfo(store, { ...backup, status: 'DELETING' });
  let objects = 0;
  const batch = store.capabilities.maxDeleteBatch;
  const remove = async (keys: string[], what: string) => {
    for (let i = 0; i < keys.length; i += batch) {
      const slice = keys.slice(i, i + batch);
      try {
        await store.delete(slice);
      } catch (err) {
        throw storeFailure(err, `deleting ${what} of ${backup.id}`, `${store.url} ${slice[0] ?? prefix}`);
      }
      objects += slice.length;
    }
  };
  await remove(plan.wal.map((w) => w.key), 'WAL');
  // Snapshots before the objects: the entry that names them stays until every one is gone.
  for (const snapshot of snapshots) {
    try {
      await deleteSnapshot?.(snapshot);
    } catch (err) {
      throw snapshotFailure(err, `deleting snapshot ${snapshot.id} of ${backup.id}`);
    }
  }
  if (snapshots.length > 0) log.info(`deleted ${snapshots.length} snapshot${snapshots.length === 1 ? '' : 's'} of ${backup.id}: ${snapshots.map((s) => s.id).join(', ')}`);
  const keys: string[] = [];
  try {
    for await (const item of listAll(store, prefix)) if (item.key !== `${prefix}${BACKUP_INFO_NAME}`) keys.push(item.key);
  } catch (err) {
    throw storeFailure(err, `listing ${backup.id}`, `${store.url} ${prefix}`);
  }
  await remove(keys, 'data');
  await remove([`${prefix}${BACKUP_INFO_NAME}`], 'the catalog entry');
  log.info(`deleted backup ${backup.id}: ${keys.length + 1} backup objects, ${plan.wal.length} WAL objects`);
  return { objects, snapshots: snapshots.length };
}

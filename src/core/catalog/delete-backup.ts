/**
 * Applies a delete plan: the entry is first rewritten DELETING (so an interrupted delete
 * never leaves a DONE entry pointing at missing data), then the WAL and the backup's objects go,
 * and the catalog entry goes last. Re-running a delete finishes an interrupted one.
 */
import type { ObjectStore } from '../../../providers/object-store.ts';
import { listAll } from '../../../providers/object-store.ts';
import { storeFailure } from '../store/store-failure.ts';
import type { Logger } from '../log.ts';
import { BACKUP_INFO_NAME, backupPrefix } from './backup-keys.ts';
import { writeBackupInfo } from './catalog.ts';
import type { DeletePlan } from './delete-plan.ts';

/** Deletes in batches of the store's size; returns the number of objects deleted. */
export async function applyBackupDeletion(store: ObjectStore, plan: DeletePlan, log: Logger): Promise<{ objects: number }> {
  const { backup } = plan;
  const prefix = backupPrefix(backup.server, backup.id);
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
  const keys: string[] = [];
  try {
    for await (const item of listAll(store, prefix)) if (item.key !== `${prefix}${BACKUP_INFO_NAME}`) keys.push(item.key);
  } catch (err) {
    throw storeFailure(err, `listing ${backup.id}`, `${store.url} ${prefix}`);
  }
  await remove(keys, 'data');
  await remove([`${prefix}${BACKUP_INFO_NAME}`], 'the catalog entry');
  log.info(`deleted backup ${backup.id}: ${keys.length + 1} backup objects, ${plan.wal.length} WAL objects`);
  return { objects };
}

/**
 * Retention against a store: gather what the planner needs (catalog, keep annotations, WAL
 * listing, timeline history), plan with planRetention, and apply the plan. Applying marks every
 * obsolete backup DELETING, then deletes WAL, then the backups oldest first, each backup's catalog
 * entry last (applyBackupDeletion), so an interrupted run leaves DELETING entries and extra WAL,
 * never a DONE backup without its data or its WAL.
 * A re-run plans again from what is left and finishes the work.
 */
import { buffer } from 'node:stream/consumers';
import type { ObjectStore } from '../../../providers/object-store.ts';
import { listAll } from '../../../providers/object-store.ts';
import { decompressBuffer, EXTENSIONS, isCompression } from '../../io/compression.ts';
import { parseLsn, walFileNameAt } from '../../pg/lsn.ts';
import { parseWalFileName } from '../../pg/wal-names.ts';
import type { BackupInfo } from '../catalog/backup-info.ts';
import { listBackups, writeBackupInfo } from '../catalog/catalog.ts';
import { applyBackupDeletion, type DeletionOptions } from '../catalog/delete-backup.ts';
import type { Logger } from '../log.ts';
import { storeFailure } from '../store/store-failure.ts';
import { isObsoleteWal, planRetention } from './retention-plan.ts';
import type { RetentionPlan, TimelineBranch } from './retention-plan.ts';
import type { RetentionRules } from './retention-policy.ts';

/** The default WAL segment size, for timelines whose backups do not record theirs. */
const DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024;

/** A plan with what applying it touches. */
export interface PlannedRetention {
  plan: RetentionPlan;
  /** WAL object keys the plan makes obsolete. */
  obsoleteWal: string[];
  /** Backups the plan makes obsolete, oldest first. */
  obsoleteBackups: BackupInfo[];
}

/** What applying a plan did. */
export interface RetentionOutcome {
  walDeleted: number;
  backupsDeleted: string[];
}

/**
 * Reads the server's catalog and WAL and plans retention at `now`. Anything that cannot be read
 * becomes a listing error, which makes the planner keep everything.
 */
export async function planServerRetention(store: ObjectStore, server: string, rules: RetentionRules, now: Date): Promise<PlannedRetention> {
  const listingErrors: string[] = [];
  const { backups, keeps, unreadable } = await listBackups(store, server);
  for (const u of unreadable) listingErrors.push(`backup ${u.id}: ${u.error}`);

  const walPrefix = `${server}/wals/`;
  const walObjects: Array<{ key: string; name: string }> = [];
  const histories: string[] = [];
  try {
    for await (const item of listAll(store, walPrefix)) {
      const name = stripExtension(item.key.slice(item.key.lastIndexOf('/') + 1));
      const parsed = parseWalFileName(name);
      if (parsed === undefined) continue; // not ours to judge: never deleted
      if (parsed.kind === 'timeline-history') histories.push(item.key);
      else walObjects.push({ key: item.key, name });
    }
  } catch (err) {
    throw storeFailure(err, 'listing WAL', `${store.url} ${walPrefix}`);
  }

  const segmentSize = backups.find((b) => b.wal_segment_size !== null)?.wal_segment_size ?? DEFAULT_SEGMENT_SIZE;
  const branches: TimelineBranch[] = [];
  for (const key of histories) {
    try {
      const branch = await readBranch(store, key, segmentSize);
      if (branch !== undefined) branches.push(branch);
    } catch (err) {
      listingErrors.push(`history file ${key}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  const plan = planRetention({
    backups: backups.map((b) => ({
      id: b.id, status: b.status, begin_time: b.begin_time, end_time: b.end_time, begin_wal: b.begin_wal, end_wal: b.end_wal,
      timeline: b.timeline, keep: keeps.get(b.id)?.target,
    })),
    wal: { files: walObjects.map((w) => w.name), branches },
    policy: rules,
    now,
    listingErrors,
  });
  const obsoleteIds = new Set(plan.backups.filter((b) => b.verdict === 'obsolete').map((b) => b.id));
  return {
    plan,
    obsoleteWal: walObjects.filter((w) => isObsoleteWal(plan, w.name)).map((w) => w.key),
    obsoleteBackups: backups.filter((b) => obsoleteIds.has(b.id)).sort((a, b) => a.id.localeCompare(b.id)),
  };
}

/**
 * Applies a plan: obsolete backups marked DELETING, then WAL, then the backups oldest first, each
 * catalog entry last. Stops at the first
 * failure. `deletion.deleteSnapshot` deletes the volume snapshots of snapshot backups.
 */
export async function applyRetention(store: ObjectStore, planned: PlannedRetention, log: Logger, signal?: AbortSignal, deletion: DeletionOptions = {}): Promise<RetentionOutcome> {
  if (planned.plan.listingErrors.length > 0) return { walDeleted: 0, backupsDeleted: [] };
  // Every obsolete backup is marked DELETING before any WAL goes: the WAL deleted below is what the
  // obsolete backups needed, so a run interrupted after it must not leave them listed as DONE.
  const obsolete: BackupInfo[] = [];
  for (const backup of planned.obsoleteBackups) {
    signal?.throwIfAborted();
    // A snapshot backup that this run cannot delete is left as it is; applyBackupDeletion refuses it below.
    const refused = (backup.snapshots?.length ?? 0) > 0 && deletion.deleteSnapshot === undefined;
    if (backup.status === 'DELETING' || refused) {
      obsolete.push(backup);
      continue;
    }
    const marked: BackupInfo = { ...backup, status: 'DELETING' };
    await writeBackupInfo(store, marked);
    obsolete.push(marked);
  }
  const batch = Math.max(1, store.capabilities.maxDeleteBatch);
  let walDeleted = 0;
  for (let i = 0; i < planned.obsoleteWal.length; i += batch) {
    signal?.throwIfAborted();
    const slice = planned.obsoleteWal.slice(i, i + batch);
    try {
      await store.delete(slice);
    } catch (err) {
      throw storeFailure(err, 'deleting obsolete WAL', `${store.url} ${slice[0] ?? ''}`);
    }
    walDeleted += slice.length;
  }
  if (walDeleted > 0) log.info(`retention: deleted ${walDeleted} obsolete WAL objects`);
  const backupsDeleted: string[] = [];
  for (const backup of obsolete) {
    signal?.throwIfAborted();
    await applyBackupDeletion(store, { backup, wal: [], walReason: 'retention deleted the obsolete WAL first' }, log, deletion);
    backupsDeleted.push(backup.id);
  }
  return { walDeleted, backupsDeleted };
}

/** The timeline a history file describes, its parent and the segment where it branched. */
async function readBranch(store: ObjectStore, key: string, segmentSize: number): Promise<TimelineBranch | undefined> {
  const name = stripExtension(key.slice(key.lastIndexOf('/') + 1));
  const timeline = Number.parseInt(name.slice(0, 8), 16);
  const { body, info } = await store.get(key);
  const raw = await buffer(body);
  const codec = info.metadata?.['cb_compression'] ?? 'none';
  const text = decompressBuffer(raw, isCompression(codec) ? codec : 'none').toString('utf8');
  // Each line: parentTLI <tab> switchpoint LSN <tab> reason; the last line is the direct parent.
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  const last = lines.at(-1);
  if (last === undefined) return undefined;
  const [parentText, lsnText] = last.split(/\s+/);
  const parent = Number(parentText);
  const lsn = parseLsn(lsnText ?? '');
  if (!Number.isInteger(parent) || lsn === undefined) throw new Error(`line "${last}" is not "parent-timeline switch-lsn reason"`);
  return { timeline, parent, switchWal: walFileNameAt(lsn, timeline, segmentSize) };
}

function stripExtension(name: string): string {
  for (const ext of Object.values(EXTENSIONS)) {
    if (ext !== '' && name.endsWith(ext)) return name.slice(0, -ext.length);
  }
  return name;
}

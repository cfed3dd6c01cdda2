/**
 * What deleting one backup removes: a pure plan, with a reason for each item, that `delete`
 * prints under --dry-run and otherwise applies.
 *
 * WAL goes only when the deleted backup is the oldest DONE backup and a newer DONE backup
 * remains: then the segments before that newer backup's start were needed by the deleted one
 * alone. Deleting any other backup leaves WAL alone, since an older backup still replays
 * through it. Timeline history files are always kept.
 */
import { parseWalFileName } from '../../pg/wal-names.ts';
import type { BackupInfo } from './backup-info.ts';

export interface DeletePlan {
  backup: BackupInfo;
  /** WAL object keys to delete, each with why. */
  wal: Array<{ key: string; reason: string }>;
  /** Why WAL is (not) removed, for the operator. */
  walReason: string;
}

/** Position of a WAL file name (log * 2^32 + seg), ignoring the timeline. */
function position(name: string): bigint {
  return (BigInt(`0x${name.slice(8, 16)}`) << 32n) + BigInt(`0x${name.slice(16, 24)}`);
}

/** Plans the deletion of `target` given every backup of the server and every WAL object key. */
export function planBackupDeletion(backups: readonly BackupInfo[], target: BackupInfo, walKeys: readonly string[]): DeletePlan {
  const done = backups.filter((b) => b.status === 'DONE').sort((a, b) => a.id.localeCompare(b.id));
  if (target.status !== 'DONE') {
    return { backup: target, wal: [], walReason: `backup is ${target.status}: it never needed WAL of its own` };
  }
  if (done[0]?.id !== target.id) {
    return { backup: target, wal: [], walReason: `an older backup (${done[0]?.id ?? '?'}) still needs the WAL after it` };
  }
  const next = done[1];
  if (next === undefined || next.begin_wal === null || next.timeline === null) {
    return { backup: target, wal: [], walReason: 'no newer DONE backup remains: WAL is kept' };
  }
  const limit = position(next.begin_wal);
  const wal: Array<{ key: string; reason: string }> = [];
  for (const key of walKeys) {
    const base = key.slice(key.lastIndexOf('/') + 1).replace(/\.(gz|zst|lz4)$/, '');
    const parsed = parseWalFileName(base);
    if (parsed === undefined || parsed.kind === 'timeline-history') continue;
    if (parsed.timeline <= next.timeline && position(base) < limit) {
      wal.push({ key, reason: `before ${next.begin_wal}, where the oldest remaining backup ${next.id} starts` });
    }
  }
  return { backup: target, wal, walReason: `WAL before ${next.begin_wal} (start of ${next.id}) was needed only by ${target.id}` };
}

/**
 * The backup_label file pg_backup_stop() returns. Its START lines are authoritative for where
 * recovery of the backup begins, so the catalog takes the start LSN, WAL file and timeline from it.
 */

/** What a backup_label says about the start of the backup. */
export interface BackupLabel {
  /** "START WAL LOCATION": the redo point recovery starts from. */
  startLsn: string;
  /** The segment named beside it: "(file 000000010000000000000002)". */
  startWalFile: string;
  checkpointLsn: string | undefined;
  /** "START TIMELINE". */
  startTimeline: number;
  /** "BACKUP FROM": primary or standby. */
  backupFrom: string | undefined;
  label: string | undefined;
}

/** Parses a backup_label; undefined when its START lines are missing or malformed. */
export function parseBackupLabel(text: string): BackupLabel | undefined {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(': ');
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 2).trim());
  }
  const start = /^([0-9A-F]+\/[0-9A-F]+) \(file ([0-9A-F]{24})\)$/.exec(fields.get('START WAL LOCATION') ?? '');
  const timeline = Number(fields.get('START TIMELINE'));
  if (start === null || !Number.isInteger(timeline) || timeline < 1) return undefined;
  return {
    startLsn: start[1] ?? '',
    startWalFile: start[2] ?? '',
    checkpointLsn: fields.get('CHECKPOINT LOCATION'),
    startTimeline: timeline,
    backupFrom: fields.get('BACKUP FROM'),
    label: fields.get('LABEL'),
  };
}

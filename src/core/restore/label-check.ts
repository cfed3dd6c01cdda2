/**
 * Checks a stored backup_label before a restore writes it. backup_label is where recovery starts,
 * and the store records no checksum of it (only the parts and the manifest carry SHA-256s), so its
 * text is checked against what the catalog entry recorded from it at the end of the backup: the
 * start LSN, its WAL file and the timeline must be the catalog's, every line must have PostgreSQL's
 * "KEY: value" shape, the text must be whole (valid UTF-8, ending with a newline), and the fields
 * PostgreSQL acts on must be well-formed and in range. A damaged label is refused here, before
 * anything is written; what this cannot see (a different digit in the CHECKPOINT LOCATION inside
 * the backup's WAL range) PostgreSQL refuses when it finds no checkpoint record there. Pure.
 */
import { parseLsn, walFileNameAt } from '../../pg/lsn.ts';
import type { BackupInfo } from '../catalog/backup-info.ts';
import { CloudbarmanError } from '../errors.ts';

const LINE = /^([A-Z][A-Z ]*[A-Z]): (.*)$/;
const START = /^([0-9A-F]{1,8}\/[0-9A-F]{1,8}) \(file ([0-9A-F]{24})\)$/;
const START_TIME = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}( \S+)?$/;
const DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024;

/** Why the label cannot be the one of this backup, or undefined when it can. */
export function backupLabelProblem(backup: BackupInfo, label: Uint8Array): string | undefined {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(label);
  } catch {
    return 'it is not valid UTF-8';
  }
  if (text === '') return 'it is empty';
  if (!text.endsWith('\n')) return 'it ends in the middle of a line';
  const fields = new Map<string, string>();
  for (const [i, line] of text.slice(0, -1).split('\n').entries()) {
    const match = LINE.exec(line);
    if (match === null || /[\x00-\x1f\x7f]/.test(line)) return `line ${i + 1} is not a "KEY: value" line`;
    const [, key = '', value = ''] = match;
    if (fields.has(key)) return `${key} appears twice`;
    fields.set(key, value);
  }

  const start = START.exec(fields.get('START WAL LOCATION') ?? '');
  if (start === null) return 'it has no valid START WAL LOCATION';
  const [, startText = '', startFile = ''] = start;
  const startLsn = parseLsn(startText);
  if (startLsn === undefined) return `START WAL LOCATION ${startText} is not an LSN`;
  if (backup.begin_lsn !== null && startText !== backup.begin_lsn) return `START WAL LOCATION is ${startText}, the catalog recorded ${backup.begin_lsn}`;
  if (backup.begin_wal !== null && startFile !== backup.begin_wal) return `START WAL LOCATION names file ${startFile}, the catalog recorded ${backup.begin_wal}`;
  const fileTimeline = Number.parseInt(startFile.slice(0, 8), 16);
  if (startFile !== walFileNameAt(startLsn, fileTimeline, backup.wal_segment_size ?? DEFAULT_SEGMENT_SIZE)) {
    return `START WAL LOCATION ${startText} is not in file ${startFile}`;
  }

  const timelineText = fields.get('START TIMELINE');
  if (timelineText !== undefined) {
    if (!/^[1-9]\d{0,9}$/.test(timelineText)) return `START TIMELINE ${JSON.stringify(timelineText)} is not a timeline`;
    if (Number(timelineText) !== fileTimeline) return `START TIMELINE ${timelineText} differs from the timeline of ${startFile}`;
  }
  if (backup.timeline !== null && fileTimeline !== backup.timeline) return `it starts on timeline ${fileTimeline}, the catalog recorded ${backup.timeline}`;

  const checkpointText = fields.get('CHECKPOINT LOCATION');
  // PostgreSQL writes START TIMELINE after the other lines: a label cut short at a line end lacks it
  // (and one cut before CHECKPOINT LOCATION, PostgreSQL itself refuses).
  if (checkpointText !== undefined && timelineText === undefined) return 'it has no START TIMELINE line: it was cut short';
  if (checkpointText !== undefined) {
    const checkpoint = parseLsn(checkpointText);
    const end = backup.end_lsn === null ? undefined : parseLsn(backup.end_lsn);
    if (checkpoint === undefined) return `CHECKPOINT LOCATION ${JSON.stringify(checkpointText)} is not an LSN`;
    if (checkpoint < startLsn) return `CHECKPOINT LOCATION ${checkpointText} is before START WAL LOCATION ${startText}`;
    if (end !== undefined && checkpoint > end) return `CHECKPOINT LOCATION ${checkpointText} is after the end of the backup (${backup.end_lsn ?? ''})`;
  }
  const method = fields.get('BACKUP METHOD');
  if (method !== undefined && method !== 'streamed' && method !== 'pg_start_backup') return `BACKUP METHOD ${JSON.stringify(method)} is not one PostgreSQL writes`;
  const from = fields.get('BACKUP FROM');
  if (from !== undefined && from !== 'primary' && from !== 'standby') return `BACKUP FROM ${JSON.stringify(from)} is neither primary nor standby`;
  const time = fields.get('START TIME');
  if (time !== undefined && !START_TIME.test(time)) return `START TIME ${JSON.stringify(time)} is not a time`;
  const incrementalLsn = fields.get('INCREMENTAL FROM LSN');
  if (incrementalLsn !== undefined && parseLsn(incrementalLsn) === undefined) return `INCREMENTAL FROM LSN ${JSON.stringify(incrementalLsn)} is not an LSN`;
  return undefined;
}

/** Throws an integrity error naming the object when the label cannot be this backup's. */
export function checkBackupLabel(backup: BackupInfo, label: Uint8Array, where: string): void {
  const problem = backupLabelProblem(backup, label);
  if (problem !== undefined) {
    throw new CloudbarmanError('integrity', `backup_label ${where} of backup ${backup.id} is damaged: ${problem}`, {
      hint: 'recovery would not start from the backup\'s checkpoint; restore another backup, and check the store',
    });
  }
}

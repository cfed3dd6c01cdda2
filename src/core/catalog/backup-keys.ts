/** Where a base backup lives in the store: <server>/base/<backup_id>/... */

/** The folder of one backup (with a trailing slash). */
export function backupPrefix(server: string, id: string): string {
  return `${server}/base/${id}/`;
}

/** The folder holding every backup of a server. */
export function backupsPrefix(server: string): string {
  return `${server}/base/`;
}

export const BACKUP_INFO_NAME = 'backup.json';
export const BACKUP_LABEL_NAME = 'backup_label';
export const TABLESPACE_MAP_NAME = 'tablespace_map';
/** manifest.json plus the compression extension. */
export const MANIFEST_BASENAME = 'manifest.json';
export const DATA_FOLDER = 'data';

/** The part object name for a part number: data/000042.zst */
export function partName(index: number, extension: string): string {
  return `${DATA_FOLDER}/${String(index).padStart(6, '0')}${extension}`;
}

/** Backup ids sort by time and are unique: YYYYMMDDTHHMMSSZ in UTC, with -2, -3... on a collision. */
export function backupIdFor(date: Date, attempt = 1): string {
  const iso = date.toISOString(); // 2026-11-22T00:41:07.123Z
  const base = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}T${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
  return attempt <= 1 ? base : `${base}-${attempt}`;
}

const ID = /^\d{8}T\d{6}Z(-\d+)?$/;

/** True when s has the shape of a backup id. */
export function isBackupId(s: string): boolean {
  return ID.test(s);
}

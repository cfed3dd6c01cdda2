/**
 * The mount table of this host, from /proc/self/mountinfo: which device is mounted where. A snapshot
 * backup uses it to prove that the data directory and every tablespace live on the disks it
 * snapshots, and a snapshot restore to prove that the disks made from the snapshots are mounted
 * where the data lived. Parsing is pure; reading is injected so tests give their own table.
 */
import { readFile } from 'node:fs/promises';

/** One line of mountinfo. */
export interface MountEntry {
  /** Where it is mounted (octal escapes decoded). */
  mountPoint: string;
  /** What is mounted: /dev/nvme1n1p1, a by-id path, tmpfs, server:/export... */
  source: string;
  /** The st_dev of files on it, "major:minor". */
  device: string;
  fsType: string;
  /** The directory of the filesystem that is mounted here: "/" unless a bind mount of a subdirectory. */
  root: string;
}

/** Reads the mount table; readMountTable unless a test gives its own. */
export type MountTableReader = () => Promise<MountEntry[]>;

/** Parses /proc/<pid>/mountinfo (proc(5)); lines that do not have its shape are skipped. */
export function parseMountInfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    // id parent major:minor root mount-point options [optional fields...] - fstype source super-options
    const fields = line.trim().split(' ');
    const dash = fields.indexOf('-', 6);
    const device = fields[2];
    const root = fields[3];
    const mountPoint = fields[4];
    const fsType = fields[dash + 1];
    const source = fields[dash + 2];
    if (dash < 0 || device === undefined || root === undefined || mountPoint === undefined || fsType === undefined || source === undefined) continue;
    if (!/^\d+:\d+$/.test(device)) continue;
    entries.push({ mountPoint: unescape(mountPoint), source: unescape(source), device, fsType, root: unescape(root) });
  }
  return entries;
}

/** This process's mount table. */
export const readMountTable: MountTableReader = async () => parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8'));

/** mountinfo writes space, tab, newline and backslash as \040, \011, \012 and \134. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

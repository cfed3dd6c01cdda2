/**
 * Names and tags of the snapshots and disks cloudbarman makes. One shape valid on every cloud:
 * Compute Engine is the strictest (names ^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$; label values lower-case
 * letters, digits, '_' and '-', at most 63), and EC2 and Azure accept what it accepts.
 */

/** The longest name every cloud accepts. */
const MAX_NAME = 63;

/** Lower-case letters, digits and single '-', trimmed of '-' at both ends. */
function slug(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
}

/** A name from parts, cut to fit: the later parts (backup id, index) are kept whole, the first are shortened. */
function fit(parts: readonly string[]): string {
  const cleaned = parts.map(slug).filter((p) => p !== '');
  let name = cleaned.join('-');
  for (let i = 1; name.length > MAX_NAME && i < cleaned.length; i++) {
    const over = name.length - MAX_NAME;
    const part = cleaned[i] ?? '';
    cleaned[i] = part.slice(0, Math.max(1, part.length - over)).replace(/-+$/, '');
    name = cleaned.join('-');
  }
  name = name.slice(0, MAX_NAME).replace(/-+$/, '');
  return /^[a-z]/.test(name) ? name : `cb-${name}`.slice(0, MAX_NAME);
}

/** The snapshot of disk `index` of a backup: cb-<server>-<backup id>-<index>, e.g. cb-pg1-20261122t004107z-0. */
export function snapshotName(server: string, backupId: string, index: number): string {
  return fit(['cb', server, backupId, String(index)]);
}

/** A disk made from a snapshot by a restore at `at`: cb-<server>-r<time>-<index>. */
export function restoredDiskName(server: string, at: Date, index: number): string {
  const stamp = at.toISOString().replace(/[-:]/g, '').slice(0, 15); // 20261122T004107
  return fit(['cb', server, `r${stamp}`, String(index)]);
}

/** A label value every cloud accepts. */
export function labelValue(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9_-]+/g, '-').slice(0, MAX_NAME);
}

/** The tags on everything a backup makes, so that orphans can be found by server and backup. */
export function snapshotTags(server: string, backupId: string): Record<string, string> {
  return { 'cloudbarman-server': labelValue(server), 'cloudbarman-backup': labelValue(backupId) };
}

/**
 * Which disk holds which path, on this host. A snapshot backup is only a backup when every piece
 * of the cluster is on a disk it snapshots: the data directory, every tablespace, and pg_wal when
 * it is linked elsewhere. A snapshot restore is only right when the disks made from the snapshots
 * are mounted exactly where those pieces lived. Both questions are answered here, from the
 * snapshotter's device paths and the mount table, before anything is started or written.
 *
 * A device path that is a block device is found in the mount table (itself or one of its
 * partitions: /dev/nvme1n1p1 of /dev/nvme1n1). A device path that is a directory is its own mount
 * point (the local snapshotter's disks). A path belongs to the innermost mount that contains it, so
 * a directory mounted from another disk inside a snapshotted one is caught.
 */
import { realpath, stat } from 'node:fs/promises';
import type { DiskInfo, InstanceInfo } from '../../../providers/snapshotter.ts';
import type { SnapshotRecord } from '../catalog/backup-info.ts';
import { badInput } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { MountEntry } from './mount-table.ts';

/** What a path is, following symbolic links. */
export type PathKind = { type: 'directory' } | { type: 'block'; device: string } | { type: 'other' };

/** File-system questions, injected so tests can describe block devices they do not have. */
export interface PathProbe {
  /** The canonical path, or undefined when nothing is there. */
  realpath(path: string): Promise<string | undefined>;
  /** What is at a path, or undefined when nothing is. Block devices carry their "major:minor". */
  kind(path: string): Promise<PathKind | undefined>;
}

/** The probe of this host's file system. */
export const nodePathProbe: PathProbe = {
  realpath: async (path) => realpath(path).catch(() => undefined),
  async kind(path) {
    const st = await stat(path, { bigint: true }).catch(() => undefined);
    if (st === undefined) return undefined;
    if (st.isDirectory()) return { type: 'directory' };
    if (st.isBlockDevice()) return { type: 'block', device: majorMinor(st.rdev) };
    return { type: 'other' };
  },
};

/** Linux's dev_t encoding (glibc gnu_dev_major/minor). */
function majorMinor(rdev: bigint): string {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/** A disk and where this host mounts it. */
export interface MountedDisk {
  disk: DiskInfo;
  devicePaths: string[];
  /** Empty when the disk is not visible or not mounted here. */
  mountPoints: string[];
}

/** Where each disk is mounted on this host. */
export async function mountsOfDisks(disks: readonly DiskInfo[], devicePaths: (disk: DiskInfo) => string[], table: readonly MountEntry[], probe: PathProbe): Promise<MountedDisk[]> {
  const sources = new Map<string, string | undefined>();
  const realSource = async (source: string): Promise<string | undefined> => {
    if (!source.startsWith('/')) return undefined;
    if (!sources.has(source)) sources.set(source, await probe.realpath(source));
    return sources.get(source);
  };
  const result: MountedDisk[] = [];
  for (const disk of disks) {
    const paths = devicePaths(disk);
    const points = new Set<string>();
    for (const path of paths) {
      const kind = await probe.kind(path);
      if (kind === undefined || kind.type === 'other') continue;
      const real = await probe.realpath(path);
      if (real === undefined) continue;
      if (kind.type === 'directory') {
        points.add(real);
        continue;
      }
      for (const entry of table) {
        const source = await realSource(entry.source);
        if (entry.device === kind.device || (source !== undefined && (source === real || isPartitionOf(source, real)))) points.add(entry.mountPoint);
      }
    }
    result.push({ disk, devicePaths: paths, mountPoints: [...points] });
  }
  return result;
}

/** /dev/sdf1 of /dev/sdf, /dev/nvme1n1p2 of /dev/nvme1n1: the kernel adds "p" after a name ending in a digit. */
function isPartitionOf(candidate: string, device: string): boolean {
  if (!candidate.startsWith(device)) return false;
  const rest = candidate.slice(device.length);
  return /\d$/.test(device) ? /^p\d+$/.test(rest) : /^\d+$/.test(rest);
}

/** A piece of the cluster that must be on a snapshotted disk. */
export interface ClusterLocation {
  /** "pgdata", "pg_wal", "tablespace NAME". */
  what: string;
  path: string;
}

/** The innermost mount point holding realPath, among the mount table and the disks' own mount points. */
function containingMount(realPath: string, table: readonly MountEntry[], mounted: readonly MountedDisk[]): string | undefined {
  let best: string | undefined;
  for (const point of [...table.map((e) => e.mountPoint), ...mounted.flatMap((m) => m.mountPoints)]) {
    const inside = point === '/' ? realPath.startsWith('/') : realPath === point || realPath.startsWith(`${point}/`);
    if (inside && (best === undefined || point.length > best.length)) best = point;
  }
  return best;
}

/** One disk of a snapshot backup: where it is mounted and what it holds. */
export interface DiskPlan {
  disk: DiskInfo;
  /** The mount point that holds its contents (recorded, so a restore mounts the new disk there). */
  mountPoint: string;
  contents: string[];
}

/** What planSnapshotDisks needs. */
export interface DiskPlanRequest {
  instance: InstanceInfo;
  /** snapshot_disks: ids or names. */
  named: readonly string[];
  devicePaths: (disk: DiskInfo) => string[];
  table: readonly MountEntry[];
  probe: PathProbe;
  locations: readonly ClusterLocation[];
  log: Logger;
}

/**
 * Checks that every named disk is attached to the instance and mounted here, and that every
 * location lies on one of them; returns the disks to snapshot. Throws bad-input naming every problem.
 */
export async function planSnapshotDisks(req: DiskPlanRequest): Promise<DiskPlan[]> {
  const attached = req.instance.disks.map((d) => `${d.name} (${d.id})`).join(', ') || 'none';
  const disks: DiskInfo[] = [];
  const missing: string[] = [];
  for (const name of req.named) {
    const disk = req.instance.disks.find((d) => d.id === name || d.name === name);
    if (disk === undefined) missing.push(name);
    else if (disks.some((d) => d.id === disk.id)) throw badInput(`snapshot_disks names disk ${name} twice`, 'list each disk once');
    else disks.push(disk);
  }
  if (missing.length > 0) {
    throw badInput(`snapshot_disks ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not attached to instance ${req.instance.name} (attached: ${attached})`,
      'snapshot_disks lists disks of snapshot_instance by id or name: fix the name, or the instance');
  }
  const mounted = await mountsOfDisks(disks, req.devicePaths, req.table, req.probe);
  const unmounted = mounted.filter((m) => m.mountPoints.length === 0);
  if (unmounted.length > 0) {
    throw badInput(`disk ${unmounted.map((m) => `${m.disk.name} (looked for ${m.devicePaths.join(' or ')})`).join(', ')} is attached to ${req.instance.name} but not mounted on this host`,
      'run the backup on the instance itself, with every snapshot disk mounted');
  }
  const contents = new Map<string, { point: string; what: string[] }>();
  const problems: string[] = [];
  for (const location of req.locations) {
    const real = await req.probe.realpath(location.path);
    if (real === undefined) {
      problems.push(`${location.what} ${location.path} does not exist on this host`);
      continue;
    }
    const point = containingMount(real, req.table, mounted);
    const owner = mounted.find((m) => point !== undefined && m.mountPoints.includes(point));
    if (owner === undefined) {
      const source = req.table.find((e) => e.mountPoint === point)?.source;
      problems.push(`${location.what} ${location.path} is on ${point ?? '?'}${source === undefined ? '' : ` (${source})`}, which is not on any of snapshot_disks`);
      continue;
    }
    const held = contents.get(owner.disk.id) ?? { point: point ?? '', what: [] };
    held.what.push(location.what);
    contents.set(owner.disk.id, held);
  }
  if (problems.length > 0) {
    throw badInput(`the snapshots would not hold the whole cluster: ${problems.join('; ')}`,
      'add the disks that hold these to snapshot_disks, or move the data onto the snapshot disks');
  }
  return mounted.map((m) => {
    const held = contents.get(m.disk.id);
    if (held === undefined) req.log.warn(`disk ${m.disk.name} holds neither the data directory nor a tablespace; it is snapshotted anyway`);
    return { disk: m.disk, mountPoint: held?.point ?? m.mountPoints[0] ?? '', contents: held?.what ?? [] };
  });
}

/** A snapshot record and the disk made from it on the recovery instance. */
export interface RestoredDisk {
  record: SnapshotRecord;
  disk: DiskInfo;
}

/**
 * Checks that each disk made from a snapshot is mounted where its snapshot's disk was, and that
 * every location is on one of them. Throws bad-input that says what to mount where.
 */
export async function checkRestoredLayout(
  restored: readonly RestoredDisk[], locations: readonly ClusterLocation[],
  devicePaths: (disk: DiskInfo) => string[], table: readonly MountEntry[], probe: PathProbe,
): Promise<void> {
  const mounted = await mountsOfDisks(restored.map((r) => r.disk), devicePaths, table, probe);
  const problems: string[] = [];
  const commands: string[] = [];
  restored.forEach((r, i) => {
    const m = mounted[i];
    if (m === undefined || m.mountPoints.includes(r.record.mount_point)) return;
    problems.push(`disk ${r.disk.name} (from snapshot ${r.record.id}) is ${m.mountPoints.length === 0 ? 'not mounted' : `mounted at ${m.mountPoints.join(', ')}`}, not at ${r.record.mount_point}`);
    commands.push(`mount ${m.devicePaths[0] ?? r.disk.device ?? r.disk.id} ${r.record.mount_point}`);
  });
  if (problems.length > 0) {
    throw badInput(`the restored disks are not where the data lived: ${problems.join('; ')}`,
      `mount them as they were on the source (${commands.join('; ')}), then run the same restore again`);
  }
  for (const location of locations) {
    const real = await probe.realpath(location.path);
    if (real === undefined) {
      problems.push(`${location.what} ${location.path} does not exist`);
      continue;
    }
    const point = containingMount(real, table, mounted);
    if (!mounted.some((m) => point !== undefined && m.mountPoints.includes(point))) problems.push(`${location.what} ${location.path} is on ${point ?? '?'}, not on a disk made from the backup`);
  }
  if (problems.length > 0) {
    throw badInput(`the restored disks do not hold the backup's cluster: ${problems.join('; ')}`,
      'the disks must be made from this backup\'s snapshots and mounted as on the source; "cloudbarman show" lists the snapshots and mount points');
  }
}

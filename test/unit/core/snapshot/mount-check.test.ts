// Mount resolution: mountinfo parsing, cloud disks seen as block devices (by-id links, partitions, major:minor)
// through a described file system, directories as their own mount points, and the refusals of a backup whose
// snapshots would miss part of the cluster, or of a restore whose disks are not where the data lived.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { DiskInfo, InstanceInfo } from '../../../../providers/snapshotter.ts';
import type { SnapshotRecord } from '../../../../src/core/catalog/backup-info.ts';
import { CloudbarmanError } from '../../../../src/core/errors.ts';
import { silentLogger } from '../../../../src/core/log.ts';
import { checkRestoredLayout, mountsOfDisks, planSnapshotDisks, type PathKind, type PathProbe } from '../../../../src/core/snapshot/mount-check.ts';
import { parseMountInfo, type MountEntry } from '../../../../src/core/snapshot/mount-table.ts';

const MOUNTINFO = [
  '22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p1 rw',
  '30 22 259:5 / /var/lib/postgresql rw,noatime shared:5 - xfs /dev/nvme1n1p1 rw,attr2',
  '31 22 259:6 / /mnt/tablespace\\040one rw,noatime shared:6 - ext4 /dev/nvme2n1 rw',
  '32 30 0:45 / /var/lib/postgresql/15/main/pg_stat_tmp rw - tmpfs tmpfs rw',
  '33 22 8:16 /sub /srv/bind rw - ext4 /dev/root rw',
  'garbage line',
].join('\n');

/** A described host: device links, block devices (with major:minor), directories; every other path resolves to itself. */
function probe(blocks: Record<string, string>, links: Record<string, string> = {}, dirs: string[] = []): PathProbe {
  const resolve = (p: string): string => links[p] ?? p;
  return {
    realpath: async (p) => resolve(p),
    kind: async (p): Promise<PathKind | undefined> => {
      const real = resolve(p);
      const device = blocks[real];
      if (device !== undefined) return { type: 'block', device };
      return dirs.includes(real) ? { type: 'directory' } : real.startsWith('/dev/') ? undefined : { type: 'other' };
    },
  };
}

const byId = (vol: string): string => `/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${vol}`;
const disk = (id: string, name: string, sourceSnapshotId?: string): DiskInfo => ({ id, name, device: '/dev/sdf', ...(sourceSnapshotId === undefined ? {} : { sourceSnapshotId }) });
const paths = (d: DiskInfo): string[] => [byId(d.id.replace('-', ''))];
const HOST = probe(
  { '/dev/nvme1n1': '259:4', '/dev/nvme2n1': '259:6', '/dev/nvme3n1': '259:7', '/dev/sdb': '8:16' },
  { [byId('vol1')]: '/dev/nvme1n1', [byId('vol2')]: '/dev/nvme2n1', [byId('vol3')]: '/dev/nvme3n1', [byId('vol4')]: '/dev/sdb' },
);
const TABLE: MountEntry[] = parseMountInfo(MOUNTINFO);
const instance: InstanceInfo = { id: 'i-1', name: 'db1', disks: [disk('vol-1', 'pgdata'), disk('vol-2', 'tblspc'), disk('vol-3', 'spare'), disk('vol-4', 'old')] };

function badInput(pattern: RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof CloudbarmanError, String(err));
    assert.equal(err.kind, 'bad-input');
    assert.match(err.message, pattern);
    assert.ok((err.hint ?? '') !== '');
    return true;
  };
}

test('mountinfo: fields, octal escapes, bind-mount roots; lines of another shape are skipped', () => {
  assert.equal(TABLE.length, 5);
  assert.deepEqual(TABLE[1], { mountPoint: '/var/lib/postgresql', source: '/dev/nvme1n1p1', device: '259:5', fsType: 'xfs', root: '/' });
  assert.equal(TABLE[2]?.mountPoint, '/mnt/tablespace one');
  assert.equal(TABLE[4]?.root, '/sub');
});

test('a cloud disk is found through its by-id link, on one of its partitions or by major:minor', async () => {
  const found = await mountsOfDisks(instance.disks, paths, TABLE, HOST);
  assert.deepEqual(found.map((m) => [m.disk.name, m.mountPoints]), [
    ['pgdata', ['/var/lib/postgresql']], // /dev/nvme1n1p1 is a partition of /dev/nvme1n1
    ['tblspc', ['/mnt/tablespace one']], // the whole device, by path and by 259:6
    ['spare', []], // attached, not mounted
    ['old', ['/srv/bind']], // source /dev/root: only major:minor matches
  ]);
});

test('a backup plan: pgdata and each tablespace on its disk, with the mount point that holds it', async () => {
  const plan = await planSnapshotDisks({
    instance, named: ['pgdata', 'vol-2'], devicePaths: paths, table: TABLE, probe: HOST, log: silentLogger,
    locations: [{ what: 'pgdata', path: '/var/lib/postgresql/15/main' }, { what: 'tablespace one', path: '/mnt/tablespace one/ts' }],
  });
  assert.deepEqual(plan.map((p) => [p.disk.id, p.mountPoint, p.contents]), [
    ['vol-1', '/var/lib/postgresql', ['pgdata']],
    ['vol-2', '/mnt/tablespace one', ['tablespace one']],
  ]);
});

test('refusals: unattached, unmounted, a location on no snapshot disk, or under a mount of another disk', async () => {
  const plan = (named: string[], locations: Array<{ what: string; path: string }>) =>
    planSnapshotDisks({ instance, named, devicePaths: paths, table: TABLE, probe: HOST, log: silentLogger, locations });
  await assert.rejects(plan(['pgdata', 'vol-9'], []), badInput(/snapshot_disks vol-9 is not attached to instance db1 \(attached: pgdata \(vol-1\)/));
  await assert.rejects(plan(['pgdata', 'pgdata'], []), badInput(/names disk pgdata twice/));
  await assert.rejects(plan(['spare'], []), badInput(/disk spare \(looked for \/dev\/disk\/by-id\/\S+vol3\) is attached to db1 but not mounted on this host/));
  await assert.rejects(plan(['pgdata'], [{ what: 'pgdata', path: '/var/lib/postgresql/15/main' }, { what: 'tablespace one', path: '/mnt/tablespace one/ts' }]),
    badInput(/tablespace one \/mnt\/tablespace one\/ts is on \/mnt\/tablespace one \(\/dev\/nvme2n1\), which is not on any of snapshot_disks/));
  await assert.rejects(plan(['pgdata'], [{ what: 'pgdata', path: '/srv/elsewhere' }]), badInput(/pgdata \/srv\/elsewhere is on \/ \(\/dev\/nvme0n1p1\)/));
  // A directory of pgdata mounted from another filesystem is not in the snapshot of pgdata's disk.
  await assert.rejects(plan(['pgdata'], [{ what: 'pg_stat_tmp', path: '/var/lib/postgresql/15/main/pg_stat_tmp' }]), badInput(/pg_stat_tmp .* is on \/var\/lib\/postgresql\/15\/main\/pg_stat_tmp \(tmpfs\)/));
});

test('directories are their own mount points, however deep inside another mount', async () => {
  const local = probe({}, {}, ['/tmp/disks/a', '/tmp/disks/b']);
  const dirs: InstanceInfo = { id: 'x', name: 'x', disks: [{ id: '/tmp/disks/a', name: 'a', device: '/tmp/disks/a' }, { id: '/tmp/disks/b', name: 'b', device: '/tmp/disks/b' }] };
  const plan = await planSnapshotDisks({
    instance: dirs, named: ['/tmp/disks/a', 'b'], devicePaths: (d) => [d.device ?? d.id], table: TABLE, probe: local, log: silentLogger,
    locations: [{ what: 'pgdata', path: '/tmp/disks/a/pgdata' }, { what: 'tablespace t', path: '/tmp/disks/b/t' }],
  });
  assert.deepEqual(plan.map((p) => [p.mountPoint, p.contents]), [['/tmp/disks/a', ['pgdata']], ['/tmp/disks/b', ['tablespace t']]]);
});

test('restore: each restored disk must be mounted where its snapshot\'s disk was, and hold the locations', async () => {
  const record = (id: string, mount: string): SnapshotRecord => ({ id, name: id, provider: 'aws', disk_id: 'vol-old', disk_name: 'pgdata', device: '/dev/sdf', mount_point: mount, zone: null, contents: ['pgdata'] });
  const restored = [{ record: record('snap-1', '/var/lib/postgresql'), disk: disk('vol-1', 'restored', 'snap-1') }];
  await checkRestoredLayout(restored, [{ what: 'pgdata', path: '/var/lib/postgresql/15/main' }], paths, TABLE, HOST);
  await assert.rejects(checkRestoredLayout([{ record: record('snap-1', '/data'), disk: disk('vol-1', 'restored') }], [], paths, TABLE, HOST),
    (err: unknown) => badInput(/disk restored \(from snapshot snap-1\) is mounted at \/var\/lib\/postgresql, not at \/data/)(err) &&
      /mount \/dev\/disk\/by-id\/nvme-Amazon_Elastic_Block_Store_vol1 \/data/.test((err as CloudbarmanError).hint ?? ''));
  await assert.rejects(checkRestoredLayout([{ record: record('snap-3', '/data'), disk: disk('vol-3', 'fresh') }], [], paths, TABLE, HOST),
    badInput(/disk fresh \(from snapshot snap-3\) is not mounted, not at \/data/));
  await assert.rejects(checkRestoredLayout(restored, [{ what: 'tablespace one', path: '/mnt/tablespace one/ts' }], paths, TABLE, HOST),
    badInput(/tablespace one \/mnt\/tablespace one\/ts is on \/mnt\/tablespace one, not on a disk made from the backup/));
});

/**
 * The EC2 snapshotter (providers/aws/snapshotter.ts) against the EC2 test server (test/servers/ec2/),
 * in-process on 127.0.0.1, through the real @aws-sdk/client-ec2 over HTTP with SigV4. Time is the
 * injected sleep: polls and backoff return at once and are recorded, so nothing here waits.
 * Setups for tests that drive a snapshot backup with this snapshotter are in test/servers/ec2/fixture.ts.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { CREATE_TOKEN_TAG, createSnapshotter } from '../../providers/aws/snapshotter.ts';
import { isSnapshotError, SnapshotCreateError } from '../../providers/snapshotter.ts';
import type { SnapshotErrorKind, Snapshotter, SnapshotterOptions, SnapshotRequest } from '../../providers/snapshotter.ts';
import { freePort } from '../helpers/ports.ts';
import { ec2SnapshotterOptions, recordingSleep, seedDatabaseInstance, useServerCredentials } from '../servers/ec2/fixture.ts';
import type { DatabaseInstanceFixture, RecordingSleep } from '../servers/ec2/fixture.ts';
import { startEc2Server } from '../servers/ec2/index.ts';
import type { Ec2ServerHandle } from '../servers/ec2/index.ts';

/** Per-test limit: each finishes in well under a second. */
const TEST_TIMEOUT = { timeout: 30_000 };

/** Asserts that a promise rejects with a SnapshotError of the kind; returns the error. */
async function rejectsWithKind(promise: Promise<unknown>, kind: SnapshotErrorKind): Promise<Error> {
  let caught: unknown;
  await assert.rejects(promise, (err: unknown) => {
    caught = err;
    assert.ok(isSnapshotError(err, kind), `expected SnapshotError '${kind}', got ${isSnapshotError(err) ? `'${err.kind}': ${err.message}` : String(err)}`);
    return true;
  });
  return caught as Error;
}

/** Snapshot requests for the fixture's data disks, tagged as a backup would tag them. */
function requestsFor(db: DatabaseInstanceFixture, backupId = '20250101T000000Z'): SnapshotRequest[] {
  return db.disks.map((d) => ({
    disk: { id: d.id, name: d.name, device: d.device },
    name: `${db.name}-${backupId.toLowerCase()}-${d.name}`,
    tags: { 'cloudbarman:server': db.name, 'cloudbarman:backup-id': backupId, 'cloudbarman:disk': d.name },
  }));
}

describe('aws snapshotter on the EC2 test server', TEST_TIMEOUT, () => {
  let server: Ec2ServerHandle;
  let restoreEnv: () => void;
  let clock: RecordingSleep;
  let snapshotter: Snapshotter;
  let db: DatabaseInstanceFixture;

  /** Opens a snapshotter on `server` with the test's recording sleep; the caller closes it. */
  async function open(extra: Partial<SnapshotterOptions> = {}, on: Ec2ServerHandle = server): Promise<Snapshotter> {
    return await createSnapshotter(ec2SnapshotterOptions(on, { sleep: clock.sleep, ...extra }));
  }

  before(async () => {
    server = await startEc2Server({ region: 'eu-west-1', snapshotPolls: 2 });
    restoreEnv = useServerCredentials(server);
  });
  after(async () => {
    restoreEnv();
    await server.stop();
  });
  beforeEach(async () => {
    server.state.clear();
    clock = recordingSleep();
    db = seedDatabaseInstance(server.state, { zone: 'eu-west-1b' });
    snapshotter = await open();
  });
  afterEach(async () => {
    await snapshotter.close();
  });

  describe('describeInstance', () => {
    it('reports the instance, its zone and every attached disk with device, size, zone and name', async () => {
      const info = await snapshotter.describeInstance(db.instanceId);
      assert.equal(snapshotter.provider, 'aws');
      assert.equal(info.id, db.instanceId);
      assert.equal(info.name, 'pg1');
      assert.equal(info.zone, 'eu-west-1b');
      assert.deepEqual(
        info.disks.map((d) => [d.id, d.name, d.device, d.sizeGiB, d.zone]),
        [
          [db.rootVolumeId, 'pg1-root', '/dev/xvda', 8, 'eu-west-1b'],
          [db.disks[0]?.id, 'pgdata', '/dev/sdf', 100, 'eu-west-1b'],
          [db.disks[1]?.id, 'pgwal', '/dev/sdg', 20, 'eu-west-1b'],
          [db.otherVolumeId, 'pg1-scratch', '/dev/sdh', 50, 'eu-west-1b'],
        ],
      );
      assert.deepEqual(server.state.callsOf('DescribeInstances').length, 1);
      assert.deepEqual(server.state.callsOf('DescribeVolumes').length, 1);
    });

    it('finds an instance by its Name tag, literally (wildcards in the name match only themselves)', async () => {
      const info = await snapshotter.describeInstance('pg1');
      assert.equal(info.id, db.instanceId);
      server.state.addInstance({ name: 'pg*' });
      const starred = await snapshotter.describeInstance('pg*');
      assert.notEqual(starred.id, db.instanceId);
      assert.deepEqual(starred.disks, []);
    });

    it('is not-found for an unknown id, a malformed id, an unknown name and a terminated instance', async () => {
      await rejectsWithKind(snapshotter.describeInstance('i-0123456789abcdef0'), 'not-found');
      await rejectsWithKind(snapshotter.describeInstance('i-nothex'), 'not-found');
      await rejectsWithKind(snapshotter.describeInstance('no-such-name'), 'not-found');
      const { instance } = server.state.addInstance({ name: 'gone', state: 'terminated' });
      await rejectsWithKind(snapshotter.describeInstance('gone'), 'not-found');
      await rejectsWithKind(snapshotter.describeInstance(instance.id), 'not-found');
    });

    it('is invalid when a Name tag names more than one instance', async () => {
      server.state.addInstance({ name: 'pg1' });
      const err = await rejectsWithKind(snapshotter.describeInstance('pg1'), 'invalid');
      assert.match(err.message, /2 instances have this Name tag/);
    });
  });

  describe('createSnapshots', () => {
    it('takes the named disks in one CreateSnapshots call, excluding the root and the other data volume, and tags each snapshot', async () => {
      const requests = requestsFor(db);
      const infos = await snapshotter.createSnapshots(requests);

      const creates = server.state.callsOf('CreateSnapshots');
      assert.equal(creates.length, 1);
      const params = creates[0]?.params ?? {};
      assert.equal(params['InstanceSpecification.InstanceId'], db.instanceId);
      assert.equal(params['InstanceSpecification.ExcludeBootVolume'], 'true');
      assert.equal(params['InstanceSpecification.ExcludeDataVolumeId.1'], db.otherVolumeId);
      assert.equal(params['InstanceSpecification.ExcludeDataVolumeId.2'], undefined);

      assert.deepEqual(
        infos.map((i) => [i.name, i.diskId, i.state, i.pointInTimeFixed]),
        requests.map((r) => [r.name, r.disk.id, 'pending', true]),
      );
      const stored = [...server.state.snapshots.values()];
      assert.deepEqual(stored.map((s) => s.volumeId).sort(), requests.map((r) => r.disk.id).sort());
      assert.equal(new Set(stored.map((s) => s.startTime.getTime())).size, 1, 'one point in time for the set');
      for (const [i, info] of infos.entries()) {
        const snapshot = server.state.snapshots.get(info.id);
        assert.ok(snapshot !== undefined);
        const tags = Object.fromEntries(snapshot.tags);
        assert.equal(tags['Name'], requests[i]?.name);
        assert.equal(tags['cloudbarman:server'], 'pg1');
        assert.equal(tags['cloudbarman:backup-id'], '20250101T000000Z');
        assert.equal(tags['cloudbarman:disk'], requests[i]?.tags['cloudbarman:disk']);
        assert.match(tags[CREATE_TOKEN_TAG] ?? '', /^[0-9a-f-]{36}$/);
      }
      // The shared tags went on the set; only what differs needed a CreateTags per snapshot.
      const setTags = Object.entries(params).filter(([k]) => k.startsWith('TagSpecification.1.Tag.')).map(([, v]) => v);
      assert.ok(setTags.includes('cloudbarman:backup-id') && !setTags.includes('cloudbarman:disk'));
      assert.equal(server.state.callsOf('CreateTags').length, 2);
      assert.equal(clock.delays.length, 0);
    });

    it('includes the root volume when it is asked for, and returns [] for no requests without calling EC2', async () => {
      const infos = await snapshotter.createSnapshots([{ disk: { id: db.rootVolumeId, name: 'root' }, name: 'root-snap', tags: {} }]);
      assert.equal(infos.length, 1);
      const params = server.state.callsOf('CreateSnapshots')[0]?.params ?? {};
      assert.equal(params['InstanceSpecification.ExcludeBootVolume'], 'false');
      assert.deepEqual(
        Object.keys(params).filter((k) => k.startsWith('InstanceSpecification.ExcludeDataVolumeId.')).map((k) => params[k]).sort(),
        [db.disks[0]?.id, db.disks[1]?.id, db.otherVolumeId].sort(),
      );
      const before = server.state.calls.length;
      assert.deepEqual(await snapshotter.createSnapshots([]), []);
      assert.equal(server.state.calls.length, before);
    });

    it('is not-attached, with nothing started, when a disk is not attached', async () => {
      server.state.detachVolume(db.disks[1]?.id ?? '');
      const err = await rejectsWithKind(snapshotter.createSnapshots(requestsFor(db)), 'not-attached');
      assert.ok(err instanceof SnapshotCreateError);
      assert.deepEqual(err.started, []);
      assert.equal(server.state.callsOf('CreateSnapshots').length, 0);
      assert.equal(server.state.snapshots.size, 0);
    });

    it('is invalid when the disks are attached to different instances', async () => {
      const other = seedDatabaseInstance(server.state, { name: 'pg2', zone: 'eu-west-1b' });
      const requests = [...requestsFor(db).slice(0, 1), ...requestsFor(other).slice(0, 1)];
      const err = await rejectsWithKind(snapshotter.createSnapshots(requests), 'invalid');
      assert.match(err.message, /different instances/);
      assert.equal(server.state.snapshots.size, 0);
    });

    it('is not-found for a disk that does not exist', async () => {
      const err = await rejectsWithKind(
        snapshotter.createSnapshots([{ disk: { id: 'vol-0123456789abcdef0', name: 'x' }, name: 'x', tags: {} }]),
        'not-found',
      );
      assert.ok(err instanceof SnapshotCreateError);
    });

    it('is quota-exceeded without a retry when the snapshot limit is reached', async () => {
      server.state.limits = { snapshots: 1 };
      const err = await rejectsWithKind(snapshotter.createSnapshots(requestsFor(db)), 'quota-exceeded');
      assert.ok(err instanceof SnapshotCreateError);
      assert.deepEqual(err.started, []);
      assert.equal(server.state.callsOf('CreateSnapshots').length, 1);
      assert.deepEqual(clock.delays, []);
    });

    it('retries a throttled CreateSnapshots and then succeeds', async () => {
      server.state.failNext('CreateSnapshots', { code: 'RequestLimitExceeded' }, 2);
      const infos = await snapshotter.createSnapshots(requestsFor(db));
      assert.equal(infos.length, 2);
      assert.equal(server.state.callsOf('CreateSnapshots').length, 3);
      assert.equal(clock.delays.length, 2);
      assert.ok((clock.delays[1] ?? 0) >= 500 && (clock.delays[1] ?? 0) <= 1_000, `second backoff ${clock.delays[1]}`);
      // Throttling did nothing, so no lookup for a lost set was needed.
      assert.equal(server.state.callsOf('DescribeSnapshots').length, 0);
      assert.equal(server.state.snapshots.size, 2);
    });

    it('adopts the set a lost CreateSnapshots made instead of taking a second one', async () => {
      server.state.failNext('CreateSnapshots', { code: 'InternalError', afterApply: true });
      const infos = await snapshotter.createSnapshots(requestsFor(db));
      assert.equal(server.state.callsOf('CreateSnapshots').length, 1, 'no second CreateSnapshots');
      assert.equal(server.state.callsOf('DescribeSnapshots').length, 1);
      assert.equal(server.state.snapshots.size, 2);
      assert.deepEqual(infos.map((i) => i.id).sort(), [...server.state.snapshots.keys()].sort());
      assert.equal(server.state.snapshots.get(infos[0]?.id ?? '')?.tags.get('Name'), requestsFor(db)[0]?.name);
    });

    it('deletes the snapshot of a volume attached between its look and CreateSnapshots', async () => {
      server.state.beforeNext('CreateSnapshots', (state) => {
        const late = state.addVolume({ zone: db.zone, name: 'late' });
        const instance = state.instances.get(db.instanceId);
        assert.ok(instance !== undefined);
        state.attach(late, instance, '/dev/sdi');
        const attachment = late.attachment;
        if (attachment !== undefined) attachment.state = 'attached';
      });
      const infos = await snapshotter.createSnapshots(requestsFor(db));
      assert.equal(infos.length, 2);
      assert.equal(server.state.callsOf('DeleteSnapshot').length, 1);
      assert.deepEqual([...server.state.snapshots.keys()].sort(), infos.map((i) => i.id).sort());
    });

    it('reports as started the snapshots taken when a disk was detached between its look and CreateSnapshots', async () => {
      const detached = db.disks[1]?.id ?? '';
      server.state.beforeNext('CreateSnapshots', (state) => state.detachVolume(detached));
      const err = await rejectsWithKind(snapshotter.createSnapshots(requestsFor(db)), 'not-attached');
      assert.ok(err instanceof SnapshotCreateError);
      assert.equal(err.target, detached);
      assert.deepEqual(err.started.map((s) => s.diskId), [db.disks[0]?.id]);
      assert.ok(server.state.snapshots.has(err.started[0]?.id ?? ''));
    });

    it('reports every snapshot as started when tagging fails after the set was taken', async () => {
      server.state.failNext('CreateTags', { code: 'UnauthorizedOperation', message: 'You are not authorized to perform this operation.' });
      const err = await rejectsWithKind(snapshotter.createSnapshots(requestsFor(db)), 'access-denied');
      assert.ok(err instanceof SnapshotCreateError);
      assert.deepEqual(err.started.map((s) => s.id).sort(), [...server.state.snapshots.keys()].sort());
      assert.equal(err.started.length, 2);
      assert.match(err.message, /not authorized/);
    });

    it('stops before creating anything when the signal is already aborted', async () => {
      const controller = new AbortController();
      controller.abort(new Error('backup cancelled'));
      const err = await rejectsWithKind(snapshotter.createSnapshots(requestsFor(db), controller.signal), 'failed');
      assert.ok(err instanceof SnapshotCreateError);
      assert.match(err.message, /aborted/);
      assert.equal(server.state.snapshots.size, 0);
    });
  });

  describe('describeSnapshot and deleteSnapshot', () => {
    it('follows a snapshot from pending to completed, with progress, its name and its disk', async () => {
      const [info] = await snapshotter.createSnapshots(requestsFor(db).slice(0, 1));
      assert.ok(info !== undefined);
      const first = await snapshotter.describeSnapshot(info.id);
      assert.deepEqual(first, { id: info.id, name: info.name, diskId: db.disks[0]?.id, state: 'pending', pointInTimeFixed: true, progress: 50 });
      const second = await snapshotter.describeSnapshot(info.id);
      assert.equal(second?.state, 'completed');
      assert.equal(second?.progress, 100);
      assert.equal(second?.error, undefined);
    });

    it("reports a snapshot that ends in error as 'failed' with EC2's StateMessage", async () => {
      const [info] = await snapshotter.createSnapshots(requestsFor(db).slice(0, 1));
      assert.ok(info !== undefined);
      server.state.failSnapshot(info.id, 'Snapshot failed: the volume was unavailable');
      assert.equal((await snapshotter.describeSnapshot(info.id))?.state, 'pending');
      const failed = await snapshotter.describeSnapshot(info.id);
      assert.equal(failed?.state, 'failed');
      assert.equal(failed?.error, 'Snapshot failed: the volume was unavailable');
    });

    it('answers undefined for a snapshot that does not exist (also for a malformed id)', async () => {
      assert.equal(await snapshotter.describeSnapshot('snap-0123456789abcdef0'), undefined);
      assert.equal(await snapshotter.describeSnapshot('not-a-snapshot'), undefined);
    });

    it('deletes a snapshot, and deleting it again is not an error', async () => {
      const infos = await snapshotter.createSnapshots(requestsFor(db));
      const id = infos[0]?.id ?? '';
      await snapshotter.deleteSnapshot(id);
      assert.equal(server.state.snapshots.has(id), false);
      assert.equal(server.state.snapshots.size, 1);
      await snapshotter.deleteSnapshot(id);
      assert.equal(await snapshotter.describeSnapshot(id), undefined);
    });

    it('retries a throttled describe, and gives up as throttled once the budget is spent', async () => {
      const [info] = await snapshotter.createSnapshots(requestsFor(db).slice(0, 1));
      assert.ok(info !== undefined);
      server.state.failNext('DescribeSnapshots', { code: 'RequestLimitExceeded' }, 1);
      assert.equal((await snapshotter.describeSnapshot(info.id))?.state, 'pending');
      assert.equal(clock.delays.length, 1);

      const tight = await open({ operationTimeoutMs: 5_000 });
      try {
        const before = clock.delays.length;
        server.state.failNext('DescribeSnapshots', { code: 'RequestLimitExceeded' }, 100);
        const err = await rejectsWithKind(tight.describeSnapshot(info.id), 'throttled');
        assert.match(err.message, /gave up after \d+ attempts/);
        const slept = clock.delays.slice(before).reduce((a, b) => a + b, 0);
        assert.ok(slept <= 5_000, `slept ${slept} ms within a 5 s budget`);
        assert.ok(clock.delays.length - before >= 2);
      } finally {
        await tight.close();
      }
    });
  });

  describe('createDisk and attachDisk', () => {
    it('creates a disk from a snapshot in the requested zone, tagged and named, once it is available', async () => {
      const snapshot = server.state.addSnapshot({ volumeSize: 100, state: 'completed' });
      const disk = await snapshotter.createDisk({ snapshotId: snapshot.id, name: 'pg1-restore-pgdata', zone: 'eu-west-1c', tags: { 'cloudbarman:server': 'pg1' } });
      assert.equal(disk.name, 'pg1-restore-pgdata');
      assert.equal(disk.sizeGiB, 100);
      assert.equal(disk.zone, 'eu-west-1c');
      assert.equal(disk.sourceSnapshotId, snapshot.id);
      assert.equal(disk.device, undefined);
      const volume = server.state.volumes.get(disk.id);
      assert.equal(volume?.state, 'available');
      assert.equal(volume?.tags.get('cloudbarman:server'), 'pg1');
      assert.equal(volume?.volumeType, 'gp3');
      assert.match(server.state.callsOf('CreateVolume')[0]?.params['ClientToken'] ?? '', /^[0-9a-f-]{36}$/);
    });

    it('polls a slow volume through the injected sleep, and uses snapshot_zone when the request names no zone', async () => {
      const slow = await startEc2Server({ region: 'eu-west-1', volumePolls: 4 });
      const s = await open({ zone: 'eu-west-1a' }, slow);
      try {
        const snapshot = slow.state.addSnapshot({ volumeSize: 10, state: 'completed' });
        const disk = await s.createDisk({ snapshotId: snapshot.id, name: 'd', tags: {} });
        assert.equal(disk.zone, 'eu-west-1a');
        assert.equal(slow.state.callsOf('DescribeVolumes').length, 4);
        assert.deepEqual(clock.delays, [2_000, 3_000, 4_500]);
      } finally {
        await s.close();
        await slow.stop();
      }
    });

    it('is invalid without a zone, not-found for an unknown snapshot, failed when the volume ends in error', async () => {
      await rejectsWithKind(snapshotter.createDisk({ snapshotId: 'snap-0123456789abcdef0', name: 'd', tags: {} }), 'invalid');
      await rejectsWithKind(snapshotter.createDisk({ snapshotId: 'snap-0123456789abcdef0', name: 'd', zone: 'eu-west-1a', tags: {} }), 'not-found');
      const snapshot = server.state.addSnapshot({ volumeSize: 10, state: 'completed' });
      server.state.failNextVolumeCreations();
      const err = await rejectsWithKind(snapshotter.createDisk({ snapshotId: snapshot.id, name: 'd', zone: 'eu-west-1a', tags: {} }), 'failed');
      assert.match(err.message, /ended in state error/);
    });

    it('is invalid for a snapshot still pending (IncorrectState)', async () => {
      const [info] = await snapshotter.createSnapshots(requestsFor(db).slice(0, 1));
      assert.ok(info !== undefined);
      await rejectsWithKind(snapshotter.createDisk({ snapshotId: info.id, name: 'd', zone: 'eu-west-1b', tags: {} }), 'invalid');
    });

    it('is quota-exceeded when the volume limit is reached', async () => {
      const snapshot = server.state.addSnapshot({ volumeSize: 10, state: 'completed' });
      server.state.limits = { volumes: server.state.volumes.size };
      await rejectsWithKind(snapshotter.createDisk({ snapshotId: snapshot.id, name: 'd', zone: 'eu-west-1a', tags: {} }), 'quota-exceeded');
      assert.equal(server.state.callsOf('CreateVolume').length, 1);
    });

    it('returns the same volume when CreateVolume is retried after a lost answer (ClientToken)', async () => {
      const snapshot = server.state.addSnapshot({ volumeSize: 10, state: 'completed' });
      server.state.failNext('CreateVolume', { resetConnection: true, afterApply: true });
      const before = server.state.volumes.size;
      const disk = await snapshotter.createDisk({ snapshotId: snapshot.id, name: 'd', zone: 'eu-west-1a', tags: {} });
      assert.equal(server.state.callsOf('CreateVolume').length, 2);
      assert.equal(server.state.volumes.size, before + 1);
      assert.ok(server.state.volumes.has(disk.id));
    });

    it('times out when the volume stays creating past operationTimeoutMs, having slept no longer than that', async () => {
      const stuck = await startEc2Server({ region: 'eu-west-1', volumePolls: 1_000_000 });
      const s = await open({ zone: 'eu-west-1a', operationTimeoutMs: 60_000 }, stuck);
      try {
        const snapshot = stuck.state.addSnapshot({ volumeSize: 10, state: 'completed' });
        const err = await rejectsWithKind(s.createDisk({ snapshotId: snapshot.id, name: 'd', tags: {} }), 'timeout');
        assert.match(err.message, /still creating/);
        assert.ok(clock.total() <= 60_000 && clock.total() > 40_000, `slept ${clock.total()} ms`);
      } finally {
        await s.close();
        await stuck.stop();
      }
    });

    it('attaches a disk at the first free /dev/sd[f-p] name and resolves once attached; attaching again returns it as is', async () => {
      const recovery = server.state.addInstance({
        name: 'recovery',
        zone: 'eu-west-1a',
        volumes: [
          { device: '/dev/xvda', name: 'root' },
          { device: '/dev/sdf', name: 'f' },
          { device: '/dev/xvdg', name: 'g' },
        ],
      });
      const snapshot = server.state.addSnapshot({ volumeSize: 10, state: 'completed' });
      const disk = await snapshotter.createDisk({ snapshotId: snapshot.id, name: 'restored', zone: 'eu-west-1a', tags: {} });
      const attached = await snapshotter.attachDisk('recovery', disk.id);
      assert.equal(attached.id, disk.id);
      assert.equal(attached.device, '/dev/sdh');
      assert.equal(attached.name, 'restored');
      const volume = server.state.volumes.get(disk.id);
      assert.equal(volume?.attachment?.instanceId, recovery.instance.id);
      assert.equal(volume?.attachment?.state, 'attached');

      const again = await snapshotter.attachDisk(recovery.instance.id, disk.id);
      assert.equal(again.device, '/dev/sdh');
      assert.equal(server.state.callsOf('AttachVolume').length, 1);
      const info = await snapshotter.describeInstance('recovery');
      assert.deepEqual(info.disks.map((d) => d.device), ['/dev/xvda', '/dev/sdf', '/dev/xvdg', '/dev/sdh']);
    });

    it('treats a retried attach that had gone through (VolumeInUse) as attached', async () => {
      const recovery = server.state.addInstance({ zone: 'eu-west-1a', volumes: [{ device: '/dev/xvda' }] });
      const volume = server.state.addVolume({ zone: 'eu-west-1a' });
      server.state.failNext('AttachVolume', { code: 'InternalError', afterApply: true });
      const attached = await snapshotter.attachDisk(recovery.instance.id, volume.id);
      assert.equal(attached.device, '/dev/sdf');
      assert.equal(server.state.callsOf('AttachVolume').length, 2);
    });

    it('is invalid for a disk attached to another instance, or in another zone; not-found for an unknown disk or instance', async () => {
      const recovery = server.state.addInstance({ zone: 'eu-west-1a', volumes: [{ device: '/dev/xvda' }] });
      await rejectsWithKind(snapshotter.attachDisk(recovery.instance.id, db.disks[0]?.id ?? ''), 'invalid');
      const far = server.state.addVolume({ zone: 'eu-west-1c' });
      const err = await rejectsWithKind(snapshotter.attachDisk(recovery.instance.id, far.id), 'invalid');
      assert.match(err.message, /InvalidVolume\.ZoneMismatch/);
      await rejectsWithKind(snapshotter.attachDisk(recovery.instance.id, 'vol-0123456789abcdef0'), 'not-found');
      await rejectsWithKind(snapshotter.attachDisk('i-0123456789abcdef0', far.id), 'not-found');
    });

    it('names where a disk shows up on Nitro (NVMe by id) and on Xen (sdX and xvdX)', () => {
      assert.deepEqual(snapshotter.localDevicePaths({ id: 'vol-0abc123def4567890', name: 'pgdata', device: '/dev/sdf' }), [
        '/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0abc123def4567890',
        '/dev/sdf',
        '/dev/xvdf',
      ]);
      assert.deepEqual(snapshotter.localDevicePaths({ id: 'vol-0abc123def4567890', name: 'root', device: '/dev/xvda' }), [
        '/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0abc123def4567890',
        '/dev/xvda',
      ]);
      assert.deepEqual(snapshotter.localDevicePaths({ id: 'vol-0abc123def4567890', name: 'x' }), [
        '/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0abc123def4567890',
      ]);
    });
  });

  describe('credentials, region, reachability and close', () => {
    it('is access-denied for credentials EC2 does not know, and for UnauthorizedOperation', async () => {
      const stranger = await createSnapshotter(ec2SnapshotterOptions(server, { sleep: clock.sleep }), {
        credentials: { accessKeyId: 'AKIAUNKNOWNKEY000000', secretAccessKey: 'wrong' },
      });
      try {
        const err = await rejectsWithKind(stranger.describeInstance(db.instanceId), 'access-denied');
        assert.match(err.message, /AuthFailure/);
        assert.ok(!err.message.includes('wrong'), 'no secret in the message');
      } finally {
        await stranger.close();
      }
      server.state.failNext('DescribeInstances', { code: 'UnauthorizedOperation', message: 'You are not authorized to perform this operation.' });
      await rejectsWithKind(snapshotter.describeInstance(db.instanceId), 'access-denied');
      assert.deepEqual(clock.delays, []);
    });

    it('signs for aws_region, else AWS_REGION; a region the endpoint does not serve is access-denied', async () => {
      process.env['AWS_REGION'] = 'eu-west-1';
      const fromEnv = await open({ region: undefined });
      try {
        assert.equal((await fromEnv.describeInstance(db.instanceId)).id, db.instanceId);
      } finally {
        delete process.env['AWS_REGION'];
        await fromEnv.close();
      }
      const wrong = await open({ region: 'us-west-2' });
      try {
        const err = await rejectsWithKind(wrong.describeInstance(db.instanceId), 'access-denied');
        assert.match(err.message, /scoped to a valid region/);
      } finally {
        await wrong.close();
      }
    });

    it('refuses to open without any region', async () => {
      await rejectsWithKind(open({ region: undefined }), 'invalid');
    });

    it('retries a 503 without a body and a reset connection as unreachable, then succeeds', async () => {
      server.state.failNext('DescribeInstances', { emptyStatus: 503 });
      server.state.failNext('DescribeInstances', { resetConnection: true });
      const info = await snapshotter.describeInstance(db.instanceId);
      assert.equal(info.id, db.instanceId);
      assert.equal(server.state.callsOf('DescribeInstances').length, 3);
      assert.equal(clock.delays.length, 2);
    });

    it('is unreachable when nothing listens at the endpoint, after bounded retries', async () => {
      const port = await freePort();
      const s = await createSnapshotter({ ...ec2SnapshotterOptions(server, { sleep: clock.sleep }), endpointUrl: `http://127.0.0.1:${port}`, operationTimeoutMs: 10_000 });
      try {
        const err = await rejectsWithKind(s.describeInstance(db.instanceId), 'unreachable');
        assert.match(err.message, /gave up after/);
        assert.ok(clock.total() <= 10_000);
      } finally {
        await s.close();
      }
    });

    it('closes its client: close resolves, twice', async () => {
      const s = await open();
      await s.describeInstance(db.instanceId);
      await s.close();
      await s.close();
    });
  });
});

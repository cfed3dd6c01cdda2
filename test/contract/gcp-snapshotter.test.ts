/**
 * The Compute Engine snapshotter (providers/gcp/snapshotter.ts) against the Compute Engine test
 * server (test/servers/gce/), through the real @google-cloud/compute client over its REST transport
 * on 127.0.0.1. Time is the injected sleep: operations and snapshots advance per poll, and every
 * pause the snapshotter takes is recorded instead of waited for.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { OAuth2Client } from 'google-auth-library';
import { createGcpSnapshotter, createSnapshotter, toGceLabels } from '../../providers/gcp/snapshotter.ts';
import { SnapshotCreateError, isSnapshotError } from '../../providers/snapshotter.ts';
import type { SnapshotErrorKind, Snapshotter, SnapshotterOptions } from '../../providers/snapshotter.ts';
import { freePort } from '../helpers/ports.ts';
import { startComputeServer } from '../servers/gce/index.ts';
import type { ComputeServerHandle } from '../servers/gce/index.ts';

// Ambient credentials must not decide what these tests see.
delete process.env['GOOGLE_APPLICATION_CREDENTIALS'];

const PROJECT = 'test-project';
const ZONE = 'us-central1-a';
/** The suite's limit: the client spends a few seconds of CPU loading its protos when first opened. */
const TEST_TIMEOUT = { timeout: 120_000 };
const TAGS = { 'cloudbarman-server': 'pg1', 'cloudbarman-backup-id': '20240102T030405Z' };

/** An auth client that presents the server's bearer token, as Application Default Credentials would a real one. */
function tokenAuth(token: string): OAuth2Client {
  const auth = new OAuth2Client();
  auth.setCredentials({ access_token: token });
  return auth;
}

/** A sleep that records each pause and returns at once (or throws when aborted). */
function recordingSleep(): { sleeps: number[]; sleep: SnapshotterOptions['sleep'] } {
  const sleeps: number[] = [];
  return {
    sleeps,
    sleep: async (ms, signal) => {
      sleeps.push(ms);
      signal?.throwIfAborted();
    },
  };
}

/** Asserts that a promise rejects with a SnapshotError of the given kind; returns the error. */
async function assertKind(promise: Promise<unknown>, kind: SnapshotErrorKind): Promise<Error> {
  let caught: unknown;
  await assert.rejects(promise, (err: unknown) => {
    caught = err;
    assert.ok(isSnapshotError(err, kind), `expected SnapshotError '${kind}', got ${isSnapshotError(err) ? `'${err.kind}': ${err.message}` : String(err)}`);
    return true;
  });
  return caught as Error;
}

/** Resets the server to instance pg1 (boot disk, pgdata as device "pgdata", pgwal as device "wal"),
 *  an empty instance restore1 and a spare disk, with the default progress options. */
function seed(server: ComputeServerHandle): void {
  server.state.clear();
  server.state.addDisk({ name: 'pg1-boot', sizeGb: 10 });
  server.state.addDisk({ name: 'pgdata', sizeGb: 200, type: 'pd-ssd' });
  server.state.addDisk({ name: 'pgwal', sizeGb: 50 });
  server.state.addDisk({ name: 'spare', sizeGb: 10 });
  server.state.addInstance({
    name: 'pg1',
    disks: [
      { disk: 'pg1-boot', boot: true, deviceName: 'persistent-disk-0' },
      { disk: 'pgdata', deviceName: 'pgdata' },
      { disk: 'pgwal', deviceName: 'wal' },
    ],
  });
  server.state.addInstance({ name: 'restore1' });
}

/** The link the server gives a disk. */
function diskLink(name: string, zone = ZONE): string {
  return `https://www.googleapis.com/compute/v1/projects/${PROJECT}/zones/${zone}/disks/${name}`;
}

describe('gcp snapshotter against the Compute Engine test server', TEST_TIMEOUT, () => {
  let server: ComputeServerHandle;
  let snapshotter: Snapshotter;
  let clock: ReturnType<typeof recordingSleep>;

  /** Opens a snapshotter on `server` with the recording sleep. */
  async function open(extra: Partial<SnapshotterOptions> = {}, token = server.token): Promise<Snapshotter> {
    return await createGcpSnapshotter(
      { gcpProject: PROJECT, zone: ZONE, endpointUrl: server.endpoint, operationTimeoutMs: 600_000, sleep: clock.sleep, ...extra },
      { authClient: tokenAuth(token) },
    );
  }

  /** Requests the server saw for one method. */
  function calls(method: string): { query: Record<string, string>; status: number }[] {
    return server.state.requests.filter((r) => r.method === method);
  }

  /** Takes a snapshot of pgdata and polls it until READY. */
  async function readySnapshot(name: string): Promise<void> {
    await snapshotter.createSnapshots([{ disk: { id: diskLink('pgdata'), name: 'pgdata' }, name, tags: TAGS }]);
    for (let i = 0; i < 10; i++) if ((await snapshotter.describeSnapshot(name))?.state === 'completed') return;
    assert.fail(`snapshot ${name} never completed`);
  }

  // One server and one snapshotter for the suite (opening one costs the client about a second of
  // CPU); each test starts from freshly seeded state. Tests that need another snapshotter open and close their own.
  before(async () => {
    server = await startComputeServer();
    clock = recordingSleep();
    snapshotter = await open();
  });
  beforeEach(() => {
    seed(server);
    clock.sleeps.length = 0;
  });
  after(async () => {
    await snapshotter.close();
    await server.stop();
  });

  it('describes an instance and its disks: links, device names, sizes, zone', async () => {
    const info = await snapshotter.describeInstance('pg1');
    assert.equal(info.name, 'pg1');
    assert.equal(info.zone, ZONE);
    assert.equal(info.id, `https://www.googleapis.com/compute/v1/projects/${PROJECT}/zones/${ZONE}/instances/pg1`);
    assert.deepEqual(info.disks, [
      { id: diskLink('pg1-boot'), name: 'pg1-boot', device: 'persistent-disk-0', sizeGiB: 10, zone: ZONE },
      { id: diskLink('pgdata'), name: 'pgdata', device: 'pgdata', sizeGiB: 200, zone: ZONE },
      { id: diskLink('pgwal'), name: 'pgwal', device: 'wal', sizeGiB: 50, zone: ZONE },
    ]);
    // A self link names the same instance.
    assert.equal((await snapshotter.describeInstance(info.id)).disks.length, 3);
  });

  it('no longer lists a disk once it is detached', async () => {
    server.state.detach('pg1', 'pgwal');
    const info = await snapshotter.describeInstance('pg1');
    assert.deepEqual(
      info.disks.map((d) => d.name),
      ['pg1-boot', 'pgdata'],
    );
  });

  it('reports an unknown instance as not-found', async () => {
    const err = await assertKind(snapshotter.describeInstance('nope'), 'not-found');
    assert.match(err.message, /projects\/test-project\/zones\/us-central1-a\/instances\/nope/);
  });

  it('starts every snapshot at once, with labels the service accepts and the tags kept in the description', async () => {
    const infos = await snapshotter.createSnapshots([
      { disk: { id: diskLink('pgdata'), name: 'pgdata' }, name: 'b20240102-pgdata', tags: TAGS },
      { disk: { id: diskLink('pgwal'), name: 'pgwal' }, name: 'b20240102-pgwal', tags: TAGS },
    ]);
    assert.deepEqual(infos, [
      { id: 'b20240102-pgdata', name: 'b20240102-pgdata', diskId: diskLink('pgdata'), state: 'pending', pointInTimeFixed: false },
      { id: 'b20240102-pgwal', name: 'b20240102-pgwal', diskId: diskLink('pgwal'), state: 'pending', pointInTimeFixed: false },
    ]);
    const inserts = calls('snapshots.insert');
    assert.equal(inserts.length, 2);
    assert.ok(inserts.every((r) => /^[0-9a-f-]{36}$/.test(r.query['requestId'] ?? '')), 'every create carries a requestId');
    // Nothing was waited for: creation does not poll.
    assert.equal(calls('globalOperations.wait').length + calls('snapshots.get').length, 0);
    assert.deepEqual(clock.sleeps, []);
    const stored = server.state.getSnapshot('b20240102-pgdata');
    assert.equal(stored?.['status'], 'CREATING');
    assert.equal(stored?.['sourceDisk'], diskLink('pgdata'));
    assert.equal(stored?.['diskSizeGb'], '200');
    assert.deepEqual(stored?.['labels'], { 'cloudbarman-server': 'pg1', 'cloudbarman-backup-id': '20240102t030405z' });
    assert.equal(stored?.['description'], `cloudbarman ${JSON.stringify(TAGS)}`);
    assert.deepEqual(server.state.snapshotNames(), ['b20240102-pgdata', 'b20240102-pgwal']);
  });

  it('maps tags onto the label rules', () => {
    assert.deepEqual(toGceLabels({ Server: 'PG1', 'backup.id': 'A b/c', 'x-y_z': '' }), { server: 'pg1', backup_id: 'a_b_c', 'x-y_z': '' });
    assert.equal(toGceLabels({ k: 'v'.repeat(100) })['k']?.length, 63);
    assert.throws(() => toGceLabels({ '1abc': 'v' }), (err: unknown) => isSnapshotError(err, 'invalid'));
    assert.throws(() => toGceLabels({ A: '1', a: '2' }), (err: unknown) => isSnapshotError(err, 'invalid'));
  });

  it('refuses a snapshot name Compute Engine would refuse, before any call', async () => {
    const err = await assertKind(
      snapshotter.createSnapshots([{ disk: { id: diskLink('pgdata'), name: 'pgdata' }, name: '20240102-pgdata', tags: TAGS }]),
      'invalid',
    );
    assert.ok(err instanceof SnapshotCreateError);
    assert.deepEqual(err.started, []);
    assert.equal(calls('snapshots.insert').length, 0);
  });

  it('fixes the point in time at UPLOADING, before the snapshot is complete at READY', async () => {
    server.state.progress.snapshotCreatingPolls = 2;
    server.state.progress.snapshotUploadingPolls = 2;
    await snapshotter.createSnapshots([{ disk: { id: diskLink('pgdata'), name: 'pgdata' }, name: 'pit', tags: TAGS }]);
    const seen: [string | undefined, boolean | undefined][] = [];
    for (let i = 0; i < 4; i++) {
      const info = await snapshotter.describeSnapshot('pit');
      seen.push([info?.state, info?.pointInTimeFixed]);
    }
    assert.deepEqual(seen, [
      ['pending', false], // CREATING
      ['pending', true], // UPLOADING: writes may resume
      ['pending', true],
      ['completed', true], // READY
    ]);
    assert.equal((await snapshotter.describeSnapshot('pit'))?.diskId, diskLink('pgdata'));
  });

  it('reports a snapshot that the service failed as failed, with the operation message', async () => {
    server.inject({ type: 'snapshotFails', message: 'Disk read error while creating the snapshot.' });
    await snapshotter.createSnapshots([{ disk: { id: diskLink('pgdata'), name: 'pgdata' }, name: 'broken', tags: TAGS }]);
    const info = await snapshotter.describeSnapshot('broken');
    assert.equal(info?.state, 'failed');
    assert.equal(info?.pointInTimeFixed, false);
    assert.match(info?.error ?? '', /Disk read error while creating the snapshot/);
  });

  it('reports a snapshot whose operation hit the quota as failed, not absent', async () => {
    server.inject({ type: 'operationError', method: 'snapshots.insert', code: 'QUOTA_EXCEEDED', message: "Quota 'SNAPSHOTS' exceeded.  Limit: 1000.0 globally.", httpStatus: 403 });
    const [info] = await snapshotter.createSnapshots([{ disk: { id: diskLink('pgdata'), name: 'pgdata' }, name: 'overquota', tags: TAGS }]);
    assert.equal(info?.state, 'pending');
    // The operation runs (one poll), then ends with the error; the snapshot never appears.
    assert.equal((await snapshotter.describeSnapshot('overquota'))?.state, 'pending');
    const failed = await snapshotter.describeSnapshot('overquota');
    assert.equal(failed?.state, 'failed');
    assert.match(failed?.error ?? '', /Quota 'SNAPSHOTS' exceeded/);
    assert.match(failed?.error ?? '', /QUOTA_EXCEEDED/);
    assert.deepEqual(server.state.snapshotNames(), []);
  });

  it('describes a snapshot it never heard of as undefined', async () => {
    assert.equal(await snapshotter.describeSnapshot('never-made'), undefined);
  });

  it('returns the snapshots that started when another create fails, and does not retry a quota error', async () => {
    server.inject({ type: 'quotaExceeded', method: 'snapshots.insert' });
    const err = await assertKind(
      snapshotter.createSnapshots([
        { disk: { id: diskLink('pgdata'), name: 'pgdata' }, name: 'first', tags: TAGS },
        { disk: { id: diskLink('pgwal'), name: 'pgwal' }, name: 'second', tags: TAGS },
      ]),
      'quota-exceeded',
    );
    assert.ok(err instanceof SnapshotCreateError);
    assert.equal(err.started.length, 1);
    assert.equal(err.retryable, false);
    assert.match(err.message, /Quota 'SNAPSHOTS' exceeded/);
    assert.deepEqual(server.state.snapshotNames(), err.started.map((s) => s.id));
    assert.equal(calls('snapshots.insert').length, 2, 'one attempt per snapshot');
    assert.deepEqual(clock.sleeps, []);
  });

  it('retries throttling (403 rateLimitExceeded, then 429) with backoff and the same requestId', async () => {
    server.inject({ type: 'rateLimitExceeded', method: 'snapshots.insert', status: 403 });
    server.inject({ type: 'rateLimitExceeded', method: 'snapshots.insert', status: 429 });
    const [info] = await snapshotter.createSnapshots([{ disk: { id: diskLink('pgdata'), name: 'pgdata' }, name: 'throttled', tags: TAGS }]);
    assert.equal(info?.id, 'throttled');
    const inserts = calls('snapshots.insert');
    assert.deepEqual(
      inserts.map((r) => r.status),
      [403, 429, 200],
    );
    assert.equal(new Set(inserts.map((r) => r.query['requestId'])).size, 1, 'a retry repeats the requestId');
    assert.deepEqual(clock.sleeps, [1000, 2000]);
    assert.deepEqual(server.state.snapshotNames(), ['throttled']);
  });

  it('retries 503 backendError, and gives up after a bounded number of attempts', async () => {
    server.inject({ type: 'backendError', method: 'instances.get' });
    assert.equal((await snapshotter.describeInstance('pg1')).name, 'pg1');
    assert.deepEqual(clock.sleeps, [1000]);
    assert.deepEqual(
      calls('instances.get').map((r) => r.status),
      [503, 200],
      'the client itself retried nothing',
    );
    clock.sleeps.length = 0;
    server.inject({ type: 'rateLimitExceeded', method: 'instances.get', status: 429, times: 100 });
    const err = await assertKind(snapshotter.describeInstance('pg1'), 'throttled');
    assert.equal((err as { retryable?: boolean }).retryable, true);
    assert.equal(calls('instances.get').filter((r) => r.status === 429).length, 5);
    assert.deepEqual(clock.sleeps, [1000, 2000, 4000, 8000]);
  });

  it('deletes a snapshot, waiting for its global operation, and is idempotent', async () => {
    await readySnapshot('doomed');
    clock.sleeps.length = 0;
    await snapshotter.deleteSnapshot('doomed');
    assert.deepEqual(server.state.snapshotNames(), []);
    assert.ok(calls('globalOperations.wait').length >= 1, 'the delete operation was waited for');
    assert.equal(server.state.operations().filter((op) => op['operationType'] === 'delete').at(-1)?.['status'], 'DONE');
    await snapshotter.deleteSnapshot('doomed');
    await snapshotter.deleteSnapshot('never-existed');
    assert.equal(await snapshotter.describeSnapshot('doomed'), undefined);
  });

  it('polls operations through wait and the injected sleep', async () => {
    server.state.progress.operationPolls = 3;
    await readySnapshot('polled');
    clock.sleeps.length = 0;
    await snapshotter.deleteSnapshot('polled');
    assert.equal(calls('globalOperations.wait').length, 3);
    assert.deepEqual(clock.sleeps, [1000, 2000]);
  });

  it('creates a disk from a completed snapshot in the zone, then attaches it (once)', async () => {
    await readySnapshot('restore-src');
    const disk = await snapshotter.createDisk({ snapshotId: 'restore-src', name: 'pgdata-restore', zone: 'us-central1-b', tags: TAGS });
    assert.deepEqual(disk, {
      id: diskLink('pgdata-restore', 'us-central1-b'),
      name: 'pgdata-restore',
      sizeGiB: 200,
      zone: 'us-central1-b',
      sourceSnapshotId: 'restore-src',
    });
    const stored = server.state.getDisk('pgdata-restore', 'us-central1-b');
    assert.equal(stored?.['status'], 'READY');
    assert.match(String(stored?.['type']), /\/zones\/us-central1-b\/diskTypes\/pd-ssd$/, 'the source disk type is kept');
    assert.deepEqual(stored?.['labels'], { 'cloudbarman-server': 'pg1', 'cloudbarman-backup-id': '20240102t030405z' });
    assert.ok(calls('zoneOperations.wait').length >= 1);

    server.state.addInstance({ name: 'restore-b', zone: 'us-central1-b' });
    const instance = `projects/${PROJECT}/zones/us-central1-b/instances/restore-b`;
    const attached = await snapshotter.attachDisk(instance, disk.id);
    assert.equal(attached.device, 'pgdata-restore');
    assert.equal(attached.id, disk.id);
    assert.deepEqual(snapshotter.localDevicePaths(attached), [
      '/dev/disk/by-id/google-pgdata-restore',
      '/dev/disk/by-id/scsi-0Google_PersistentDisk_pgdata-restore',
    ]);
    const listed = server.state.getInstance('restore-b', 'us-central1-b')?.['disks'] as { source: string; deviceName: string }[];
    assert.deepEqual(
      listed.map((d) => [d.source, d.deviceName]),
      [[disk.id, 'pgdata-restore']],
    );
    const again = await snapshotter.attachDisk(instance, disk.id);
    assert.deepEqual(again, attached);
    assert.equal(calls('instances.attachDisk').length, 1, 'an attached disk is not attached again');
  });

  it('returns a disk already attached as is, and has no device paths for a disk without a device', async () => {
    const disk = await snapshotter.attachDisk('pg1', 'pgwal');
    assert.equal(disk.device, 'wal');
    assert.equal(calls('instances.attachDisk').length, 0);
    assert.deepEqual(snapshotter.localDevicePaths({ id: 'x', name: 'x' }), []);
  });

  it('refuses to create a disk from a snapshot that is not complete', async () => {
    await snapshotter.createSnapshots([{ disk: { id: diskLink('pgdata'), name: 'pgdata' }, name: 'unfinished', tags: TAGS }]);
    await assertKind(snapshotter.createDisk({ snapshotId: 'unfinished', name: 'early', tags: {} }), 'invalid');
    await assertKind(snapshotter.createDisk({ snapshotId: 'missing', name: 'early', tags: {} }), 'not-found');
    assert.equal(calls('disks.insert').length, 0);
  });

  it('reports an attach that finished without attaching as not-attached', async () => {
    server.inject({ type: 'attachNotApplied' });
    await assertKind(snapshotter.attachDisk('restore1', 'spare'), 'not-attached');
  });

  it('reports a disk attached to another instance as invalid', async () => {
    const err = await assertKind(snapshotter.attachDisk('restore1', 'pgdata'), 'invalid');
    assert.match(err.message, /already being used by/);
  });

  it('reports a failed operation as failed, with its message', async () => {
    server.inject({ type: 'operationError', method: 'disks.insert', code: 'ZONE_RESOURCE_POOL_EXHAUSTED', message: 'The zone does not have enough resources.', httpStatus: 503 });
    await readySnapshot('src');
    const err = await assertKind(snapshotter.createDisk({ snapshotId: 'src', name: 'no-room', tags: {} }), 'failed');
    assert.match(err.message, /The zone does not have enough resources/);
    assert.equal(server.state.getDisk('no-room'), undefined);
  });

  it('reports a quota in an operation as quota-exceeded', async () => {
    server.inject({ type: 'operationError', method: 'disks.insert', code: 'QUOTA_EXCEEDED', message: "Quota 'SSD_TOTAL_GB' exceeded.  Limit: 500.0 in region us-central1.", httpStatus: 403 });
    await readySnapshot('src');
    await assertKind(snapshotter.createDisk({ snapshotId: 'src', name: 'too-big', tags: {} }), 'quota-exceeded');
  });

  it('reports a wrong token and a missing permission as access-denied', async () => {
    const wrong = await open({}, 'not-the-token');
    try {
      const err = await assertKind(wrong.describeInstance('pg1'), 'access-denied');
      assert.doesNotMatch(err.message, /not-the-token/);
    } finally {
      await wrong.close();
    }
    server.inject({ type: 'permissionDenied', method: 'snapshots.delete' });
    const err = await assertKind(snapshotter.deleteSnapshot('whatever'), 'access-denied');
    assert.match(err.message, /compute\.snapshots\.delete/);
  });

  it('reports an endpoint where nothing listens as unreachable', async () => {
    const port = await freePort();
    const dead = await createGcpSnapshotter(
      { gcpProject: PROJECT, zone: ZONE, endpointUrl: `http://127.0.0.1:${port}`, operationTimeoutMs: 1_000, sleep: clock.sleep },
      { authClient: tokenAuth('x') },
    );
    try {
      const err = await assertKind(dead.describeInstance('pg1'), 'unreachable');
      assert.equal((err as { retryable?: boolean }).retryable, true);
    } finally {
      await dead.close();
    }
  });

  it('times out an operation after operationTimeoutMs of sleeps', async () => {
    server.state.progress.operationPolls = 1_000;
    const impatient = await open({ operationTimeoutMs: 5_000 });
    try {
      const err = await assertKind(impatient.attachDisk('restore1', 'spare'), 'timeout');
      assert.match(err.message, /operation operation-\S+ still RUNNING/);
      assert.deepEqual(clock.sleeps, [1000, 2000, 4000]);
    } finally {
      await impatient.close();
    }
  });

  it('stops at an aborted signal', async () => {
    const controller = new AbortController();
    controller.abort(new Error('shutting down'));
    const err = await assertKind(snapshotter.attachDisk('restore1', 'spare', controller.signal), 'failed');
    assert.match(err.message, /aborted/);
    assert.equal(calls('instances.attachDisk').length, 0);
  });

  it('refuses calls after close, and closes twice', async () => {
    const closing = await open();
    assert.equal((await closing.describeInstance('pg1')).name, 'pg1');
    await closing.close();
    await assertKind(closing.describeInstance('pg1'), 'failed');
    await closing.close();
  });
});

describe('gcp snapshotter options', () => {
  const base: SnapshotterOptions = { gcpProject: PROJECT, zone: ZONE, operationTimeoutMs: 1_000, sleep: async () => undefined };

  it('needs snapshot_gcp_project and snapshot_zone, and checks them', async () => {
    const { gcpProject: _p, ...noProject } = base;
    const { zone: _z, ...noZone } = base;
    assert.match((await assertKind(createSnapshotter(noProject), 'invalid')).message, /snapshot_gcp_project is required/);
    assert.match((await assertKind(createSnapshotter(noZone), 'invalid')).message, /snapshot_zone is required/);
    await assertKind(createSnapshotter({ ...base, gcpProject: 'Bad Project' }), 'invalid');
    await assertKind(createSnapshotter({ ...base, zone: 'us-central1' }), 'invalid');
  });

  it('reports missing Application Default Credentials as access-denied when opened, not as a crash later', async () => {
    const saved = { CLOUDSDK_CONFIG: process.env['CLOUDSDK_CONFIG'], METADATA_SERVER_DETECTION: process.env['METADATA_SERVER_DETECTION'] };
    // No gcloud config and no metadata server: Application Default Credentials cannot be found.
    process.env['CLOUDSDK_CONFIG'] = '/nonexistent/cloudbarman-test-gcloud';
    process.env['METADATA_SERVER_DETECTION'] = 'none';
    try {
      const err = await assertKind(createSnapshotter({ ...base, endpointUrl: 'http://127.0.0.1:9' }), 'access-denied');
      assert.match(err.message, /Application Default Credentials/);
    } finally {
      for (const [key, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    }
  });

  it('allows plain http only on loopback, and no path on the endpoint', async () => {
    await assertKind(createSnapshotter({ ...base, endpointUrl: 'http://compute.example.com' }), 'invalid');
    await assertKind(createSnapshotter({ ...base, endpointUrl: 'https://compute.example.com/compute/v1' }), 'invalid');
    await assertKind(createSnapshotter({ ...base, endpointUrl: 'not a url::' }), 'invalid');
    // An https endpoint anywhere is fine (opening makes no request when the auth client is given).
    const ok = await createGcpSnapshotter({ ...base, endpointUrl: 'https://compute.example.com:8443' }, { authClient: tokenAuth('t') });
    await ok.close();
  });
});

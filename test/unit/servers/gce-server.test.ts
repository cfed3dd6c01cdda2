/**
 * The Compute Engine test server (test/servers/gce/) against raw HTTP, for what a client would never
 * send and for exact response shapes, and against the real @google-cloud/compute client over its REST
 * transport. Each server is in-process on 127.0.0.1 and stopped by the hook that started it.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { DisksClient, GlobalOperationsClient, InstancesClient, SnapshotsClient, ZoneOperationsClient } from '@google-cloud/compute';
import { OAuth2Client } from 'google-auth-library';
import { startComputeServer } from '../../servers/gce/index.ts';
import type { ComputeServerHandle } from '../../servers/gce/index.ts';

const PROJECT = 'test-project';
const ZONE = 'us-central1-a';
const API = 'https://www.googleapis.com/compute/v1/';
const TEST_TIMEOUT = { timeout: 60_000 };
/** Per-request limit for raw HTTP. */
const REQUEST_TIMEOUT_MS = 10_000;
const REQUEST_ID = '9b2f3c1e-5d4a-4e6f-8a7b-0c1d2e3f4a5b';

/** A raw response with its body parsed as JSON. */
interface RawResponse {
  status: number;
  headers: Headers;
  json: Record<string, unknown> & { error?: { code: number; message: string; status?: string; errors: { domain: string; reason: string; message: string }[]; details?: { reason: string }[] } };
}

describe('Compute Engine test server (raw HTTP)', TEST_TIMEOUT, () => {
  let server: ComputeServerHandle;

  /** One raw request to the server, with the bearer token unless `auth` says otherwise. */
  async function raw(method: string, path: string, body?: unknown, auth: string | null = `Bearer ${server.token}`): Promise<RawResponse> {
    const headers: Record<string, string> = { 'Content-Type': 'application/json' };
    if (auth !== null) headers['Authorization'] = auth;
    const res = await fetch(`${server.endpoint}${path}`, {
      method,
      headers,
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    return { status: res.status, headers: res.headers, json: (await res.json()) as RawResponse['json'] };
  }

  /** Asserts the API's error shape with a status and a reason. */
  function assertError(res: RawResponse, status: number, reason: string, message?: RegExp): void {
    assert.equal(res.status, status, JSON.stringify(res.json));
    const error = res.json.error;
    assert.ok(error !== undefined, 'an error body');
    assert.equal(error.code, status);
    assert.equal(error.errors[0]?.reason, reason);
    assert.equal(error.errors[0]?.message, error.message);
    if (message !== undefined) assert.match(error.message, message);
  }

  const base = `/compute/v1/projects/${PROJECT}`;
  const zone = `${base}/zones/${ZONE}`;

  /** Inserts a snapshot of a disk with raw HTTP; returns the operation. */
  async function insertSnapshot(name: string, extra: Record<string, unknown> = {}, query = ''): Promise<RawResponse> {
    return await raw('POST', `${base}/global/snapshots${query}`, { name, sourceDisk: `zones/${ZONE}/disks/data`, ...extra });
  }

  before(async () => {
    server = await startComputeServer({ operationPolls: 2, snapshotCreatingPolls: 1, snapshotUploadingPolls: 1 });
  });
  beforeEach(() => {
    server.state.clear();
    server.state.addDisk({ name: 'data', sizeGb: 100, labels: { role: 'pgdata' } });
    server.state.addDisk({ name: 'other', zone: 'us-central1-b' });
    server.state.addInstance({ name: 'vm', disks: [{ disk: 'data', deviceName: 'data' }] });
    server.state.addInstance({ name: 'vm2' });
  });
  after(async () => {
    await server.stop();
    await server.stop(); // twice is fine
  });

  it('answers 401 without a token and with a wrong one, in the front end shape', async () => {
    const none = await raw('GET', `${zone}/instances/vm`, undefined, null);
    assertError(none, 401, 'required', /missing required authentication credential/);
    assert.equal(none.json.error?.status, 'UNAUTHENTICATED');
    assert.equal(none.json.error?.details?.[0]?.reason, 'CREDENTIALS_MISSING');
    assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer realm=/);
    assertError(await raw('GET', `${zone}/instances/vm`, undefined, 'Bearer nope'), 401, 'authError');
    assertError(await raw('GET', `${zone}/instances/vm`, undefined, `Basic ${server.token}`), 401, 'authError');
  });

  it('returns an instance with its attached disks, as the API shapes it', async () => {
    const res = await raw('GET', `${zone}/instances/vm`);
    assert.equal(res.status, 200);
    const inst = res.json;
    assert.equal(inst['kind'], 'compute#instance');
    assert.match(String(inst['id']), /^[1-9]\d{18}$/);
    assert.equal(inst['selfLink'], `${API}projects/${PROJECT}/zones/${ZONE}/instances/vm`);
    assert.equal(inst['zone'], `${API}projects/${PROJECT}/zones/${ZONE}`);
    assert.equal(inst['status'], 'RUNNING');
    assert.deepEqual(inst['disks'], [
      {
        kind: 'compute#attachedDisk',
        type: 'PERSISTENT',
        mode: 'READ_WRITE',
        source: `${API}projects/${PROJECT}/zones/${ZONE}/disks/data`,
        deviceName: 'data',
        index: 0,
        boot: false,
        autoDelete: false,
        interface: 'SCSI',
        diskSizeGb: '100',
      },
    ]);
    // By numeric id too.
    assert.equal((await raw('GET', `${zone}/instances/${String(inst['id'])}`)).json['name'], 'vm');
  });

  it('returns a disk with int64 fields as strings, labels, users and the default empty-label fingerprint elsewhere', async () => {
    const disk = (await raw('GET', `${zone}/disks/data`)).json;
    assert.equal(disk['kind'], 'compute#disk');
    assert.equal(disk['sizeGb'], '100');
    assert.equal(disk['status'], 'READY');
    assert.deepEqual(disk['labels'], { role: 'pgdata' });
    assert.deepEqual(disk['users'], [`${API}projects/${PROJECT}/zones/${ZONE}/instances/vm`]);
    assert.equal(disk['type'], `${API}projects/${PROJECT}/zones/${ZONE}/diskTypes/pd-balanced`);
    const other = (await raw('GET', `${base}/zones/us-central1-b/disks/other`)).json;
    assert.equal(other['labels'], undefined);
    assert.equal(other['labelFingerprint'], '42WmSpB8rSM=');
  });

  it('answers 404 notFound for missing resources, projects and zones, and 400 for malformed names', async () => {
    assertError(await raw('GET', `${zone}/instances/ghost`), 404, 'notFound', /^The resource 'projects\/test-project\/zones\/us-central1-a\/instances\/ghost' was not found$/);
    assertError(await raw('GET', `${zone}/disks/ghost`), 404, 'notFound');
    assertError(await raw('GET', `${base}/global/snapshots/ghost`), 404, 'notFound');
    assertError(await raw('GET', `${zone}/operations/operation-123`), 404, 'notFound');
    assertError(await raw('GET', `/compute/v1/projects/elsewhere/zones/${ZONE}/instances/vm`), 404, 'notFound', /projects\/elsewhere/);
    assertError(await raw('GET', `${base}/zones/mars-north1-a/instances/vm`), 404, 'notFound');
    assertError(await raw('GET', `${zone}/instances/Bad_Name`), 400, 'invalidParameter', /must match the following regular expression/);
  });

  it('validates snapshot inserts: required fields, names, labels, sources, unknown fields', async () => {
    assertError(await raw('POST', `${base}/global/snapshots`, { sourceDisk: `zones/${ZONE}/disks/data` }), 400, 'required', /resource\.name/);
    assertError(await raw('POST', `${base}/global/snapshots`, { name: 'x' }), 400, 'required', /resource\.sourceDisk/);
    assertError(await insertSnapshot('1starts-with-digit'), 400, 'invalid', /Must be a match of regex/);
    assertError(await insertSnapshot('ends-with-dash-'), 400, 'invalid');
    assertError(await insertSnapshot('a'.repeat(64)), 400, 'invalid');
    assertError(await insertSnapshot('s', { labels: { Server: 'pg1' } }), 400, 'invalid', /Label key 'Server' violates format constraints/);
    assertError(await insertSnapshot('s', { labels: { '1key': 'v' } }), 400, 'invalid');
    assertError(await insertSnapshot('s', { labels: { id: '20240102T030405Z' } }), 400, 'invalid', /Label value/);
    assertError(await insertSnapshot('s', { labels: { k: 'v'.repeat(64) } }), 400, 'invalid');
    const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']));
    assertError(await insertSnapshot('s', { labels: many }), 400, 'invalid', /at most 64/);
    assertError(await insertSnapshot('s', { sourceDisk: 'disks/data' }), 400, 'invalid', /malformed/);
    assertError(await insertSnapshot('s', { sourceDisk: `zones/${ZONE}/disks/ghost` }), 404, 'notFound');
    assertError(await insertSnapshot('s', { sourceDisk: `projects/elsewhere/zones/${ZONE}/disks/data` }), 404, 'notFound');
    assertError(await insertSnapshot('s', { colour: 'blue' }), 400, 'invalid', /Unknown name "colour"/);
    assertError(await insertSnapshot('s', { snapshotEncryptionKey: { rawKey: 'x' } }), 501, 'notImplemented');
    assertError(await insertSnapshot('s', { storageLocations: ['us', 'eu'] }), 400, 'invalid', /At most one/);
    assertError(await insertSnapshot('s', { snapshotType: 'FAST' }), 400, 'invalid');
    assertError(await raw('POST', `${base}/global/snapshots`, '{not json'), 400, 'parseError');
    assertError(await insertSnapshot('s', {}, '?fields=name'), 501, 'notImplemented');
    assertError(await insertSnapshot('s', {}, '?colour=blue'), 400, 'invalid', /Cannot bind query parameter/);
    assertError(await insertSnapshot('s', {}, '?requestId=not-a-uuid'), 400, 'invalid', /valid UUID/);
    assertError(await insertSnapshot('s', {}, '?requestId=00000000-0000-0000-0000-000000000000'), 400, 'invalid');
    assert.deepEqual(server.state.snapshotNames(), []);
    // International lower-case letters are allowed in labels; empty values too.
    assert.equal((await insertSnapshot('s', { labels: { 'équipe': 'données', empty: '' } })).status, 200);
    assertError(await insertSnapshot('s'), 409, 'alreadyExists', /projects\/test-project\/global\/snapshots\/s' already exists/);
  });

  it('takes a snapshot through an operation: PENDING, RUNNING, DONE, with the snapshot CREATING, UPLOADING, READY', async () => {
    const op = (await insertSnapshot('snap', { labels: { server: 'pg1' }, description: 'nightly' }, `?requestId=${REQUEST_ID}`)).json;
    assert.equal(op['kind'], 'compute#operation');
    assert.equal(op['status'], 'PENDING');
    assert.equal(op['operationType'], 'insert');
    assert.equal(op['targetLink'], `${API}projects/${PROJECT}/global/snapshots/snap`);
    assert.equal(op['zone'], undefined, 'a global operation has no zone');
    assert.match(String(op['selfLink']), new RegExp(`^${API}projects/${PROJECT}/global/operations/operation-`));
    assert.match(String(op['insertTime']), /^\d{4}-\d\d-\d\dT/);
    const snap = server.state.getSnapshot('snap');
    assert.equal(snap?.['status'], 'CREATING');
    assert.equal(snap?.['storageBytesStatus'], 'UPDATING');
    assert.equal(snap?.['diskSizeGb'], '100');
    assert.equal(snap?.['sourceDisk'], `${API}projects/${PROJECT}/zones/${ZONE}/disks/data`);
    assert.deepEqual(snap?.['storageLocations'], ['us']);

    const wait = `${base}/global/operations/${String(op['name'])}/wait`;
    const first = (await raw('POST', wait)).json;
    assert.equal(first['status'], 'RUNNING');
    assert.ok(first['startTime'] !== undefined);
    assert.equal(server.state.getSnapshot('snap')?.['status'], 'UPLOADING');
    const second = (await raw('GET', `${base}/global/operations/${String(op['name'])}`)).json;
    assert.equal(second['status'], 'DONE');
    assert.equal(second['progress'], 100);
    assert.ok(second['endTime'] !== undefined);
    assert.equal(second['error'], undefined);
    const ready = (await raw('GET', `${base}/global/snapshots/snap`)).json;
    assert.equal(ready['status'], 'READY');
    assert.equal(ready['storageBytesStatus'], 'UP_TO_DATE');
    assert.deepEqual(ready['labels'], { server: 'pg1' });
    assert.equal(ready['description'], 'nightly');

    // The same requestId answers the first operation again and takes no second snapshot.
    const again = (await insertSnapshot('snap', {}, `?requestId=${REQUEST_ID}`)).json;
    assert.equal(again['name'], op['name']);
    assert.equal(again['status'], 'DONE');
  });

  it('advances snapshots on snapshots.get as well', async () => {
    await insertSnapshot('polled');
    const statuses: unknown[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await raw('GET', `${base}/global/snapshots/polled`)).json['status']);
    assert.deepEqual(statuses, ['UPLOADING', 'READY', 'READY']);
  });

  it('takes a snapshot through disks.createSnapshot as a zone operation', async () => {
    const op = (await raw('POST', `${zone}/disks/data/createSnapshot?guestFlush=false`, { name: 'via-disk' })).json;
    assert.equal(op['operationType'], 'createSnapshot');
    assert.equal(op['zone'], `${API}projects/${PROJECT}/zones/${ZONE}`);
    assert.equal(op['targetLink'], `${API}projects/${PROJECT}/zones/${ZONE}/disks/data`);
    assert.equal(server.state.getSnapshot('via-disk')?.['status'], 'CREATING');
    assertError(await raw('POST', `${zone}/disks/ghost/createSnapshot`, { name: 'x' }), 404, 'notFound');
    assertError(await raw('POST', `${zone}/disks/data/createSnapshot`, { name: 'x', sourceDisk: `zones/us-central1-b/disks/other` }), 400, 'invalid');
  });

  it('creates a disk from a READY snapshot only, CREATING until its operation is DONE', async () => {
    const snapOp = (await insertSnapshot('src')).json;
    const early = await raw('POST', `${zone}/disks`, { name: 'restored', sourceSnapshot: 'global/snapshots/src' });
    assertError(early, 400, 'resourceNotReady', /is not ready/);
    await raw('POST', `${base}/global/operations/${String(snapOp['name'])}/wait`);
    await raw('POST', `${base}/global/operations/${String(snapOp['name'])}/wait`);
    assertError(await raw('POST', `${zone}/disks`, { name: 'restored', sourceSnapshot: 'global/snapshots/ghost' }), 404, 'notFound');
    assertError(await raw('POST', `${zone}/disks`, { name: 'restored', sourceSnapshot: 'snapshots/src' }), 400, 'invalid', /malformed/);
    assertError(await raw('POST', `${zone}/disks`, { name: 'restored', sourceSnapshot: 'global/snapshots/src', sizeGb: '10' }), 400, 'invalid', /smaller than the snapshot/);
    assertError(await raw('POST', `${zone}/disks`, { name: 'restored', sourceSnapshot: 'global/snapshots/src', type: `zones/${ZONE}/diskTypes/pd-fancy` }), 400, 'invalid');
    assertError(await raw('POST', `${zone}/disks?sourceImage=debian`, { name: 'restored' }), 501, 'notImplemented');
    assertError(await raw('POST', `${zone}/disks`, { name: 'data', sizeGb: '10' }), 409, 'alreadyExists');

    const op = (await raw('POST', `${zone}/disks`, {
      name: 'restored',
      sourceSnapshot: `${API}projects/${PROJECT}/global/snapshots/src`,
      type: `projects/${PROJECT}/zones/${ZONE}/diskTypes/pd-ssd`,
      labels: { restore: 'yes' },
      asyncSecondaryDisks: {}, // the REST client sends unset maps as {}
    })).json;
    assert.equal(op['operationType'], 'insert');
    assert.equal(server.state.getDisk('restored')?.['status'], 'CREATING');
    await raw('GET', `${zone}/operations/${String(op['name'])}`);
    const done = (await raw('POST', `${zone}/operations/${String(op['name'])}/wait`)).json;
    assert.equal(done['status'], 'DONE');
    const disk = (await raw('GET', `${zone}/disks/restored`)).json;
    assert.equal(disk['status'], 'READY');
    assert.equal(disk['sizeGb'], '100');
    assert.equal(disk['sourceSnapshot'], `${API}projects/${PROJECT}/global/snapshots/src`);
    assert.equal(disk['sourceSnapshotId'], server.state.getSnapshot('src')?.['id']);
    assert.match(String(disk['type']), /diskTypes\/pd-ssd$/);
  });

  it('attaches a disk when the operation is DONE, and refuses one in use, elsewhere or missing', async () => {
    assertError(await raw('POST', `${zone}/instances/vm2/attachDisk`, { source: `zones/${ZONE}/disks/data` }), 400, 'resourceInUseByAnotherResource', /already being used by 'projects\/test-project\/zones\/us-central1-a\/instances\/vm'/);
    assertError(await raw('POST', `${zone}/instances/vm2/attachDisk`, { source: 'zones/us-central1-b/disks/other' }), 400, 'invalid', /same zone/);
    assertError(await raw('POST', `${zone}/instances/vm2/attachDisk`, { source: `zones/${ZONE}/disks/ghost` }), 404, 'notFound');
    assertError(await raw('POST', `${zone}/instances/vm2/attachDisk`, { deviceName: 'x' }), 400, 'required');
    assertError(await raw('POST', `${zone}/instances/ghost/attachDisk`, { source: `zones/${ZONE}/disks/data` }), 404, 'notFound');
    server.state.addDisk({ name: 'extra' });
    assertError(await raw('POST', `${zone}/instances/vm/attachDisk`, { source: `zones/${ZONE}/disks/extra`, deviceName: 'data' }), 400, 'invalid', /already in use/);
    const op = (await raw('POST', `${zone}/instances/vm2/attachDisk?requestId=${REQUEST_ID}`, { source: `zones/${ZONE}/disks/extra`, deviceName: 'extra', mode: 'READ_WRITE' })).json;
    assert.equal(op['operationType'], 'attachDisk');
    assert.equal(op['targetLink'], `${API}projects/${PROJECT}/zones/${ZONE}/instances/vm2`);
    assert.deepEqual(server.state.getInstance('vm2')?.['disks'], [], 'not attached before the operation is DONE');
    // While it runs, the disk counts as in use.
    assertError(await raw('POST', `${zone}/instances/vm/attachDisk`, { source: `zones/${ZONE}/disks/extra` }), 400, 'resourceInUseByAnotherResource');
    await raw('POST', `${zone}/operations/${String(op['name'])}/wait`);
    await raw('POST', `${zone}/operations/${String(op['name'])}/wait`);
    const disks = server.state.getInstance('vm2')?.['disks'] as { deviceName: string; source: string }[];
    assert.deepEqual(disks.map((d) => d.deviceName), ['extra']);
    assert.deepEqual(server.state.getDisk('extra')?.['users'], [`${API}projects/${PROJECT}/zones/${ZONE}/instances/vm2`]);
  });

  it('marks a snapshot DELETING until its delete operation is DONE, then forgets it', async () => {
    const create = (await insertSnapshot('gone')).json;
    await raw('POST', `${base}/global/operations/${String(create['name'])}/wait`);
    await raw('POST', `${base}/global/operations/${String(create['name'])}/wait`);
    const op = (await raw('DELETE', `${base}/global/snapshots/gone`)).json;
    assert.equal(op['operationType'], 'delete');
    assert.equal(server.state.getSnapshot('gone')?.['status'], 'DELETING');
    assertError(await raw('DELETE', `${base}/global/snapshots/gone`), 400, 'resourceNotReady');
    await raw('POST', `${base}/global/operations/${String(op['name'])}/wait`);
    await raw('POST', `${base}/global/operations/${String(op['name'])}/wait`);
    assertError(await raw('GET', `${base}/global/snapshots/gone`), 404, 'notFound');
    assertError(await raw('DELETE', `${base}/global/snapshots/gone`), 404, 'notFound');
  });

  it('injects quota, rate-limit, 503 and permission faults for the given number of requests', async () => {
    server.inject({ type: 'quotaExceeded', method: 'snapshots.insert' });
    const quota = await insertSnapshot('q');
    assertError(quota, 403, 'quotaExceeded', /^Quota 'SNAPSHOTS' exceeded\.  Limit: 1000\.0 globally\.$/);
    assert.equal(quota.json.error?.errors[0]?.domain, 'usageLimits');
    assert.equal((await insertSnapshot('q')).status, 200, 'one request only');

    server.inject({ type: 'rateLimitExceeded', method: 'instances.get', status: 429, times: 2 });
    const limited = await raw('GET', `${zone}/instances/vm`);
    assertError(limited, 429, 'rateLimitExceeded', /^Rate Limit Exceeded$/);
    assert.equal(limited.json.error?.status, 'RESOURCE_EXHAUSTED');
    assert.equal(limited.json.error?.details?.[0]?.reason, 'RATE_LIMIT_EXCEEDED');
    assertError(await raw('GET', `${zone}/instances/vm`), 429, 'rateLimitExceeded');
    assert.equal((await raw('GET', `${zone}/instances/vm`)).status, 200);

    server.inject({ type: 'rateLimitExceeded', method: 'disks.get' });
    const documented = await raw('GET', `${zone}/disks/data`);
    assertError(documented, 403, 'rateLimitExceeded');
    assert.equal(documented.json.error?.details?.[0]?.reason, 'CONCURRENT_OPERATIONS_QUOTA_EXCEEDED');

    server.inject({ type: 'backendError', method: 'disks.get' });
    assertError(await raw('GET', `${zone}/disks/data`), 503, 'backendError');
    server.inject({ type: 'permissionDenied', method: 'snapshots.delete' });
    assertError(await raw('DELETE', `${base}/global/snapshots/q`), 403, 'forbidden', /^Required 'compute\.snapshots\.delete' permission for 'projects\/test-project\/global\/snapshots\/q'$/);
  });

  it('injects an operation that ends DONE with an error, and changes nothing', async () => {
    server.inject({ type: 'operationError', method: 'snapshots.insert', code: 'QUOTA_EXCEEDED', message: "Quota 'SNAPSHOTS' exceeded.  Limit: 1000.0 globally.", httpStatus: 403 });
    const op = (await insertSnapshot('never')).json;
    assert.deepEqual(server.state.snapshotNames(), [], 'the snapshot never appears');
    await raw('POST', `${base}/global/operations/${String(op['name'])}/wait`);
    const done = (await raw('POST', `${base}/global/operations/${String(op['name'])}/wait`)).json;
    assert.equal(done['status'], 'DONE');
    assert.deepEqual(done['error'], { errors: [{ code: 'QUOTA_EXCEEDED', message: "Quota 'SNAPSHOTS' exceeded.  Limit: 1000.0 globally." }] });
    assert.equal(done['httpErrorStatusCode'], 403);
    assert.equal(done['httpErrorMessage'], 'FORBIDDEN');
  });

  it('injects a failing snapshot and an attach that does not take effect', async () => {
    server.inject({ type: 'snapshotFails', code: 'INTERNAL_ERROR', message: 'snapshot failed' });
    const op = (await insertSnapshot('bad')).json;
    assert.equal((await raw('GET', `${base}/global/snapshots/bad`)).json['status'], 'FAILED');
    const done = (await raw('GET', `${base}/global/operations/${String(op['name'])}`)).json;
    assert.equal(done['status'], 'DONE');
    assert.deepEqual(done['error'], { errors: [{ code: 'INTERNAL_ERROR', message: 'snapshot failed' }] });

    server.state.addDisk({ name: 'loose' });
    server.inject({ type: 'attachNotApplied' });
    const attach = (await raw('POST', `${zone}/instances/vm2/attachDisk`, { source: `zones/${ZONE}/disks/loose` })).json;
    await raw('POST', `${zone}/operations/${String(attach['name'])}/wait`);
    assert.equal((await raw('POST', `${zone}/operations/${String(attach['name'])}/wait`)).json['status'], 'DONE');
    assert.deepEqual(server.state.getInstance('vm2')?.['disks'], []);
  });

  it('answers 501 for methods it does not model, and records every request', async () => {
    assertError(await raw('GET', `${zone}/instances`), 501, 'notImplemented');
    assertError(await raw('DELETE', `${zone}/instances/vm`), 501, 'notImplemented');
    assertError(await raw('GET', '/elsewhere'), 404, 'notFound');
    const seen = server.state.requests.map((r) => [r.method, r.httpMethod, r.status]);
    assert.deepEqual(seen, [
      [undefined, 'GET', 501],
      [undefined, 'DELETE', 501],
      [undefined, 'GET', 404],
    ]);
  });
});

describe('Compute Engine test server through @google-cloud/compute (REST)', TEST_TIMEOUT, () => {
  let server: ComputeServerHandle;
  let clients: { instances: InstancesClient; disks: DisksClient; snapshots: SnapshotsClient; zoneOps: ZoneOperationsClient; globalOps: GlobalOperationsClient };

  before(async () => {
    server = await startComputeServer({ operationPolls: 1 });
    server.state.addDisk({ name: 'data', sizeGb: 30 });
    server.state.addInstance({ name: 'vm', disks: [{ disk: 'data', deviceName: 'data' }] });
    const auth = new OAuth2Client();
    auth.setCredentials({ access_token: server.token });
    const url = new URL(server.endpoint);
    const opts = { apiEndpoint: url.hostname, port: Number(url.port), protocol: 'http', fallback: true, authClient: auth };
    clients = {
      instances: new InstancesClient(opts),
      disks: new DisksClient(opts),
      snapshots: new SnapshotsClient(opts),
      zoneOps: new ZoneOperationsClient(opts),
      globalOps: new GlobalOperationsClient(opts),
    };
  });
  after(async () => {
    await Promise.all(Object.values(clients).map(async (c) => await c.close()));
    await server.stop();
  });

  it('reads an instance and a disk', async () => {
    const [inst] = await clients.instances.get({ project: PROJECT, zone: ZONE, instance: 'vm' });
    assert.equal(inst.name, 'vm');
    assert.equal(inst.disks?.[0]?.deviceName, 'data');
    const [disk] = await clients.disks.get({ project: PROJECT, zone: ZONE, disk: 'data' });
    assert.equal(String(disk.sizeGb), '30');
    assert.equal(disk.status, 'READY');
  });

  it('inserts a snapshot, waits for its operation and reads it READY, then makes a disk from it', async () => {
    const [lro] = await clients.snapshots.insert({
      project: PROJECT,
      requestId: REQUEST_ID,
      snapshotResource: { name: 'sdk-snap', sourceDisk: `projects/${PROJECT}/zones/${ZONE}/disks/data`, labels: { via: 'sdk' } },
    });
    const name = (lro.latestResponse as { name?: string }).name ?? '';
    let status: unknown;
    for (let i = 0; i < 5 && status !== 'DONE'; i++) [{ status }] = await clients.globalOps.wait({ project: PROJECT, operation: name });
    assert.equal(status, 'DONE');
    const [snap] = await clients.snapshots.get({ project: PROJECT, snapshot: 'sdk-snap' });
    assert.equal(snap.status, 'READY');
    assert.deepEqual(snap.labels, { via: 'sdk' });

    const [diskLro] = await clients.disks.insert({
      project: PROJECT,
      zone: ZONE,
      diskResource: { name: 'sdk-disk', sourceSnapshot: 'global/snapshots/sdk-snap', labels: {} },
    });
    const [done] = await clients.zoneOps.wait({ project: PROJECT, zone: ZONE, operation: (diskLro.latestResponse as { name?: string }).name ?? '' });
    assert.equal(done.status, 'DONE');
    const [disk] = await clients.disks.get({ project: PROJECT, zone: ZONE, disk: 'sdk-disk' });
    assert.equal(disk.sourceSnapshot, `${API}projects/${PROJECT}/global/snapshots/sdk-snap`);
  });

  it('surfaces errors with their gRPC code and HTTP status', async () => {
    await assert.rejects(clients.snapshots.get({ project: PROJECT, snapshot: 'ghost' }), (err: unknown) => {
      assert.equal((err as { code?: unknown }).code, 5); // NOT_FOUND
      assert.equal((err as { httpStatusCode?: unknown }).httpStatusCode, 404);
      return true;
    });
    await assert.rejects(
      clients.snapshots.insert({ project: PROJECT, snapshotResource: { name: 'Bad', sourceDisk: `zones/${ZONE}/disks/data` } }),
      (err: unknown) => {
        assert.equal((err as { httpStatusCode?: unknown }).httpStatusCode, 400);
        assert.match(String((err as Error).message), /Must be a match of regex/);
        return true;
      },
    );
  });
});

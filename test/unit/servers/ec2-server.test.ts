/**
 * The EC2 test server (test/servers/ec2/) against raw signed requests, for what the SDK never sends
 * (unknown parameters, bad signatures, wrong versions), and against the real @aws-sdk/client-ec2 for
 * the shapes it parses: documents, errors, pagination, life cycles and faults. Each server is
 * in-process on 127.0.0.1 and stopped by the hook or test that started it.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, beforeEach, describe, it } from 'node:test';
import {
  AttachVolumeCommand,
  CreateSnapshotCommand,
  CreateSnapshotsCommand,
  CreateTagsCommand,
  CreateVolumeCommand,
  DeleteSnapshotCommand,
  DescribeInstancesCommand,
  DescribeSnapshotsCommand,
  DescribeVolumesCommand,
  EC2Client,
  paginateDescribeInstances,
  paginateDescribeSnapshots,
  paginateDescribeVolumes,
} from '@aws-sdk/client-ec2';
import { signRequest, startEc2Server } from '../../servers/ec2/index.ts';
import type { Ec2ServerHandle } from '../../servers/ec2/index.ts';

/** Per-test limit: every test here finishes in well under a second. */
const TEST_TIMEOUT = { timeout: 30_000 };
/** Per-request limit for raw HTTP. */
const REQUEST_TIMEOUT_MS = 10_000;

/** A client for `server` with its credentials and one attempt, so that an error reaches the test on the first answer. */
function client(server: Ec2ServerHandle, extra: Partial<ConstructorParameters<typeof EC2Client>[0]> = {}): EC2Client {
  return new EC2Client({
    region: server.region,
    endpoint: server.endpoint,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    maxAttempts: 1,
    ...extra,
  });
}

/** A raw response, body read. */
interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One raw HTTP request to the server. */
async function raw(server: Ec2ServerHandle, method: string, path: string, headers: Record<string, string>, body = ''): Promise<RawResponse> {
  const url = new URL(path, server.endpoint);
  return await new Promise<RawResponse>((resolve, reject) => {
    const req = request(url, { method, headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, timeout: REQUEST_TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('raw request timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

/** A form-encoded POST /, signed with the server's key unless `sign` says otherwise. */
async function post(
  server: Ec2ServerHandle,
  form: string,
  sign: { accessKeyId?: string; secretAccessKey?: string; region?: string; contentType?: string; date?: Date } | false = {},
): Promise<RawResponse> {
  const host = new URL(server.endpoint).host;
  const contentType = (sign === false ? undefined : sign.contentType) ?? 'application/x-www-form-urlencoded; charset=utf-8';
  if (sign === false) return await raw(server, 'POST', '/', { 'content-type': contentType, host }, form);
  const headers = signRequest(
    {
      accessKeyId: sign.accessKeyId ?? server.accessKeyId,
      secretAccessKey: sign.secretAccessKey ?? server.secretAccessKey,
      region: sign.region ?? server.region,
      service: 'ec2',
    },
    { method: 'POST', url: '/', host, contentType, body: form },
    sign.date,
  );
  return await raw(server, 'POST', '/', headers, form);
}

/** Asserts EC2's error document and status; returns the message. */
function assertError(res: RawResponse, status: number, code: string): string {
  assert.equal(res.status, status, res.body);
  const match = /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<Response><Errors><Error><Code>([^<]*)<\/Code><Message>([^<]*)<\/Message><\/Error><\/Errors><RequestID>[0-9a-f-]{36}<\/RequestID><\/Response>$/.exec(
    res.body,
  );
  assert.ok(match !== null, `error document shape: ${res.body}`);
  assert.equal(match[1], code, res.body);
  return match[2] ?? '';
}

/** Asserts that an SDK call fails with the EC2 error code (the SDK's `name`) and HTTP status. */
async function rejectsWithCode(promise: Promise<unknown>, code: string, status?: number): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    const e = err as { name?: unknown; $metadata?: { httpStatusCode?: unknown } };
    assert.equal(e.name, code, String(err));
    if (status !== undefined) assert.equal(e.$metadata?.httpStatusCode, status);
    return true;
  });
}

describe('EC2 test server: protocol and authentication (raw requests)', TEST_TIMEOUT, () => {
  let server: Ec2ServerHandle;
  before(async () => {
    server = await startEc2Server();
  });
  after(async () => {
    await server.stop();
  });

  it('answers a signed request with the response document in the 2016-11-15 namespace', async () => {
    const res = await post(server, 'Action=DescribeInstances&Version=2016-11-15');
    assert.equal(res.status, 200, res.body);
    assert.match(String(res.headers['content-type']), /^text\/xml/);
    assert.match(
      res.body,
      /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<DescribeInstancesResponse xmlns="http:\/\/ec2\.amazonaws\.com\/doc\/2016-11-15\/"><requestId>[0-9a-f-]{36}<\/requestId><reservationSet\/><\/DescribeInstancesResponse>$/,
    );
  });

  it('refuses requests without a signature, with a malformed one, for another key, region or secret, or too old', async () => {
    const callsBefore = server.state.calls.length;
    assertError(await post(server, 'Action=DescribeInstances&Version=2016-11-15', false), 403, 'MissingAuthenticationToken');
    const host = new URL(server.endpoint).host;
    const malformed = await raw(server, 'POST', '/', { 'content-type': 'application/x-www-form-urlencoded', host, authorization: 'AWS4-HMAC-SHA256 Credential=x' }, 'Action=DescribeInstances&Version=2016-11-15');
    assertError(malformed, 400, 'IncompleteSignature');
    assertError(await post(server, 'Action=DescribeInstances&Version=2016-11-15', { accessKeyId: 'AKIAOTHERKEY00000000' }), 401, 'AuthFailure');
    assertError(await post(server, 'Action=DescribeInstances&Version=2016-11-15', { secretAccessKey: 'not-the-secret' }), 401, 'AuthFailure');
    const region = assertError(await post(server, 'Action=DescribeInstances&Version=2016-11-15', { region: 'eu-central-1' }), 401, 'AuthFailure');
    assert.match(region, /region/);
    assertError(await post(server, 'Action=DescribeInstances&Version=2016-11-15', { date: new Date(Date.now() - 20 * 60_000) }), 400, 'RequestExpired');
    assert.equal(server.state.calls.length, callsBefore, 'no refused request reaches the model');
  });

  it('refuses a body that differs from the signed one', async () => {
    const host = new URL(server.endpoint).host;
    const headers = signRequest(
      { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey, region: server.region, service: 'ec2' },
      { method: 'POST', url: '/', host, contentType: 'application/x-www-form-urlencoded', body: 'Action=DescribeInstances&Version=2016-11-15' },
    );
    assertError(await raw(server, 'POST', '/', headers, 'Action=DescribeVolumes&Version=2016-11-15'), 401, 'AuthFailure');
  });

  it('requires Action and Version=2016-11-15 and knows only its actions', async () => {
    assertError(await post(server, 'Version=2016-11-15'), 400, 'MissingAction');
    assertError(await post(server, 'Action=DescribeInstances'), 400, 'MissingParameter');
    assertError(await post(server, 'Action=DescribeInstances&Version=2014-01-01'), 400, 'NoSuchVersion');
    const message = assertError(await post(server, 'Action=RunInstances&Version=2016-11-15'), 400, 'InvalidAction');
    assert.match(message, /RunInstances/);
    assertError(await post(server, 'Action=DescribeInstances&Version=2016-11-15', { contentType: 'application/json' }), 400, 'MissingAction');
  });

  it('answers GET and other paths as not implemented rather than guessing', async () => {
    const host = new URL(server.endpoint).host;
    assertError(await raw(server, 'GET', '/?Action=DescribeInstances&Version=2016-11-15', { host }), 400, 'UnsupportedOperation');
    assertError(await raw(server, 'POST', '/other', { host, 'content-type': 'application/x-www-form-urlencoded' }, ''), 400, 'UnsupportedOperation');
  });

  it('refuses unknown and repeated parameters, missing required ones and malformed values', async () => {
    const unknown = assertError(await post(server, 'Action=DescribeInstances&Version=2016-11-15&InstanceIds.1=i-12345678'), 400, 'UnknownParameter');
    assert.match(unknown, /InstanceIds\.1/);
    assertError(await post(server, 'Action=DescribeInstances&Version=2016-11-15&InstanceId.1=i-12345678&InstanceId.1=i-12345678'), 400, 'InvalidParameterValue');
    assertError(await post(server, 'Action=DeleteSnapshot&Version=2016-11-15'), 400, 'MissingParameter');
    assertError(await post(server, 'Action=AttachVolume&Version=2016-11-15&VolumeId=vol-12345678&InstanceId=i-12345678'), 400, 'MissingParameter');
    assertError(await post(server, 'Action=DescribeInstances&Version=2016-11-15&DryRun=yes'), 400, 'InvalidParameterValue');
    assertError(await post(server, 'Action=DescribeVolumes&Version=2016-11-15&MaxResults=ten'), 400, 'InvalidParameterValue');
    assertError(await post(server, 'Action=DescribeVolumes&Version=2016-11-15&VolumeId.0=vol-12345678'), 400, 'InvalidParameterValue');
    assertError(await post(server, 'Action=DescribeSnapshots&Version=2016-11-15&Filter.1.Value.1=x'), 400, 'MissingParameter');
    assertError(await post(server, 'Action=CreateVolume&Version=2016-11-15&AvailabilityZoneId=use1-az1&Size=1'), 400, 'UnsupportedOperation');
  });

  it('answers DryRun=true with 412 DryRunOperation once the request is valid, and changes nothing', async () => {
    const { volumeIds } = server.state.addInstance({ volumes: [{ device: '/dev/xvda' }] });
    const before = server.state.snapshots.size;
    assertError(await post(server, `Action=CreateSnapshot&Version=2016-11-15&VolumeId=${volumeIds[0] ?? ''}&DryRun=true`), 412, 'DryRunOperation');
    assert.equal(server.state.snapshots.size, before);
    assertError(await post(server, 'Action=CreateSnapshot&Version=2016-11-15&VolumeId=vol-0123456789abcdef0&DryRun=true'), 400, 'InvalidVolume.NotFound');
  });

  it('escapes text in documents', async () => {
    server.state.addInstance({ name: 'a<b>&"c"' });
    const res = await post(server, 'Action=DescribeInstances&Version=2016-11-15&Filter.1.Name=tag-key&Filter.1.Value.1=Name');
    assert.equal(res.status, 200, res.body);
    assert.match(res.body, /<value>a&lt;b&gt;&amp;&quot;c&quot;<\/value>/);
  });
});

describe('EC2 test server through @aws-sdk/client-ec2', TEST_TIMEOUT, () => {
  let server: Ec2ServerHandle;
  let ec2: EC2Client;
  before(async () => {
    server = await startEc2Server({ region: 'ap-southeast-2', snapshotPolls: 3, volumePolls: 2, attachPolls: 2 });
    ec2 = client(server);
  });
  after(async () => {
    ec2.destroy();
    await server.stop();
  });
  beforeEach(() => {
    server.state.clear();
  });

  describe('DescribeInstances and DescribeVolumes', () => {
    it('describes an instance with its placement, root device, block device mappings and tags', async () => {
      const { instance, volumeIds } = server.state.addInstance({
        name: 'db',
        zone: 'ap-southeast-2b',
        volumes: [
          { device: '/dev/xvda', sizeGiB: 8 },
          { device: '/dev/sdf', sizeGiB: 100, name: 'pgdata' },
        ],
      });
      const out = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instance.id] }));
      const described = out.Reservations?.[0]?.Instances?.[0];
      assert.equal(described?.InstanceId, instance.id);
      assert.equal(described?.State?.Name, 'running');
      assert.equal(described?.State?.Code, 16);
      assert.equal(described?.Placement?.AvailabilityZone, 'ap-southeast-2b');
      assert.equal(described?.RootDeviceName, '/dev/xvda');
      assert.deepEqual(
        described?.BlockDeviceMappings?.map((m) => [m.DeviceName, m.Ebs?.VolumeId, m.Ebs?.Status, m.Ebs?.DeleteOnTermination]),
        [
          ['/dev/xvda', volumeIds[0], 'attached', true],
          ['/dev/sdf', volumeIds[1], 'attached', false],
        ],
      );
      assert.deepEqual(described?.Tags, [{ Key: 'Name', Value: 'db' }]);
      assert.equal(out.NextToken, undefined);

      const volumes = await ec2.send(new DescribeVolumesCommand({ VolumeIds: [volumeIds[1] ?? ''] }));
      const volume = volumes.Volumes?.[0];
      assert.equal(volume?.Size, 100);
      assert.equal(volume?.State, 'in-use');
      assert.equal(volume?.AvailabilityZone, 'ap-southeast-2b');
      assert.deepEqual(volume?.Attachments?.map((a) => [a.InstanceId, a.Device, a.State]), [[instance.id, '/dev/sdf', 'attached']]);
      assert.deepEqual(volume?.Tags, [{ Key: 'Name', Value: 'pgdata' }]);
      assert.ok(volume?.CreateTime instanceof Date);
    });

    it('answers the NotFound and Malformed codes for unknown and malformed ids', async () => {
      await rejectsWithCode(ec2.send(new DescribeInstancesCommand({ InstanceIds: ['i-0123456789abcdef0'] })), 'InvalidInstanceID.NotFound', 400);
      await rejectsWithCode(ec2.send(new DescribeInstancesCommand({ InstanceIds: ['i-xyz'] })), 'InvalidInstanceID.Malformed', 400);
      await rejectsWithCode(ec2.send(new DescribeVolumesCommand({ VolumeIds: ['vol-0123456789abcdef0'] })), 'InvalidVolume.NotFound', 400);
      await rejectsWithCode(ec2.send(new DescribeVolumesCommand({ VolumeIds: ['volume-1'] })), 'InvalidVolumeID.Malformed', 400);
      await rejectsWithCode(ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: ['snap-0123456789abcdef0'] })), 'InvalidSnapshot.NotFound', 400);
      await rejectsWithCode(ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: ['snap-1'] })), 'InvalidSnapshotID.Malformed', 400);
    });

    it('filters by tag, tag-key, attachment and state, with * and ? wildcards; an unknown filter is refused', async () => {
      const a = server.state.addInstance({ name: 'pg-a', volumes: [{ device: '/dev/xvda' }] });
      const b = server.state.addInstance({ name: 'pg-b', state: 'stopped' });
      server.state.addInstance({ name: 'web' });
      const names = async (filters: { Name: string; Values: string[] }[]): Promise<string[]> => {
        const out = await ec2.send(new DescribeInstancesCommand({ Filters: filters }));
        return (out.Reservations ?? []).flatMap((r) => r.Instances ?? []).map((i) => i.Tags?.find((t) => t.Key === 'Name')?.Value ?? '');
      };
      assert.deepEqual(await names([{ Name: 'tag:Name', Values: ['pg-*'] }]), ['pg-a', 'pg-b']);
      assert.deepEqual(await names([{ Name: 'tag:Name', Values: ['pg-?'] }, { Name: 'instance-state-name', Values: ['running'] }]), ['pg-a']);
      assert.deepEqual(await names([{ Name: 'tag:Name', Values: ['pg\\*'] }]), []);
      assert.deepEqual(await names([{ Name: 'instance-id', Values: [b.instance.id] }]), ['pg-b']);
      assert.deepEqual(await names([{ Name: 'block-device-mapping.volume-id', Values: [a.volumeIds[0] ?? ''] }]), ['pg-a']);
      const attached = await ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: 'attachment.instance-id', Values: [a.instance.id] }] }));
      assert.deepEqual(attached.Volumes?.map((v) => v.VolumeId), a.volumeIds);
      await rejectsWithCode(ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: 'tag-value-typo', Values: ['x'] }] })), 'InvalidParameterValue', 400);
    });

    it('pages with MaxResults and NextToken through the SDK paginators', async () => {
      for (let i = 0; i < 12; i++) server.state.addInstance({ name: `n${i}`, volumes: [{ device: '/dev/xvda' }] });
      const volumePages: number[] = [];
      const volumeIds: string[] = [];
      for await (const page of paginateDescribeVolumes({ client: ec2, pageSize: 5 }, {})) {
        volumePages.push(page.Volumes?.length ?? 0);
        volumeIds.push(...(page.Volumes ?? []).map((v) => v.VolumeId ?? ''));
      }
      assert.deepEqual(volumePages, [5, 5, 2]);
      assert.deepEqual(volumeIds, [...server.state.volumes.keys()]);
      const instancePages: number[] = [];
      for await (const page of paginateDescribeInstances({ client: ec2, pageSize: 10 }, { Filters: [{ Name: 'tag:Name', Values: ['n*'] }] })) {
        instancePages.push(page.Reservations?.length ?? 0);
      }
      assert.deepEqual(instancePages, [10, 2]);
    });

    it('refuses MaxResults below 5, MaxResults with ids, and a forged or foreign NextToken', async () => {
      for (let i = 0; i < 6; i++) server.state.addVolume({ name: `v${i}` });
      await rejectsWithCode(ec2.send(new DescribeVolumesCommand({ MaxResults: 4 })), 'InvalidParameterValue', 400);
      const [first] = [...server.state.volumes.keys()];
      await rejectsWithCode(ec2.send(new DescribeVolumesCommand({ MaxResults: 5, VolumeIds: [first ?? ''] })), 'InvalidParameterCombination', 400);
      const page = await ec2.send(new DescribeVolumesCommand({ MaxResults: 5 }));
      assert.ok(page.NextToken !== undefined);
      await rejectsWithCode(ec2.send(new DescribeVolumesCommand({ MaxResults: 5, NextToken: `${page.NextToken}x` })), 'InvalidPaginationToken', 400);
      await rejectsWithCode(
        ec2.send(new DescribeVolumesCommand({ MaxResults: 5, NextToken: page.NextToken, Filters: [{ Name: 'status', Values: ['available'] }] })),
        'InvalidPaginationToken',
        400,
      );
      await rejectsWithCode(ec2.send(new DescribeSnapshotsCommand({ MaxResults: 5, NextToken: page.NextToken })), 'InvalidPaginationToken', 400);
      const rest = await ec2.send(new DescribeVolumesCommand({ MaxResults: 5, NextToken: page.NextToken }));
      assert.equal(rest.Volumes?.length, 1);
      assert.equal(rest.NextToken, undefined);
    });
  });

  describe('snapshots', () => {
    it('CreateSnapshots takes every attached volume at one start time, minus the boot volume and the excluded ones', async () => {
      const { instance, volumeIds } = server.state.addInstance({
        volumes: [{ device: '/dev/xvda' }, { device: '/dev/sdf', sizeGiB: 30, tags: { team: 'db' } }, { device: '/dev/sdg' }, { device: '/dev/sdh' }],
      });
      const [root, f, g, h] = volumeIds;
      const out = await ec2.send(
        new CreateSnapshotsCommand({
          InstanceSpecification: { InstanceId: instance.id, ExcludeBootVolume: true, ExcludeDataVolumeIds: [h ?? ''] },
          Description: 'set',
          CopyTagsFromSource: 'volume',
          TagSpecifications: [{ ResourceType: 'snapshot', Tags: [{ Key: 'backup', Value: 'b1' }] }],
        }),
      );
      const set = out.Snapshots ?? [];
      assert.deepEqual(set.map((s) => s.VolumeId), [f, g]);
      assert.deepEqual(set.map((s) => s.State), ['pending', 'pending']);
      assert.equal(set[0]?.VolumeSize, 30);
      assert.equal(set[0]?.Description, 'set');
      assert.equal(set[0]?.StartTime?.getTime(), set[1]?.StartTime?.getTime());
      assert.deepEqual(set[0]?.Tags, [
        { Key: 'team', Value: 'db' },
        { Key: 'backup', Value: 'b1' },
      ]);
      assert.match(set[0]?.SnapshotId ?? '', /^snap-[0-9a-f]{17}$/);
      assert.ok(!set.some((s) => s.VolumeId === root));
      await rejectsWithCode(
        ec2.send(new CreateSnapshotsCommand({ InstanceSpecification: { InstanceId: instance.id, ExcludeDataVolumeIds: [root ?? ''] } })),
        'InvalidParameterValue',
        400,
      );
      await rejectsWithCode(ec2.send(new CreateSnapshotsCommand({ InstanceSpecification: { InstanceId: 'i-0123456789abcdef0' } })), 'InvalidInstanceID.NotFound', 400);
      await rejectsWithCode(
        ec2.send(new CreateSnapshotsCommand({ InstanceSpecification: { InstanceId: instance.id }, TagSpecifications: [{ ResourceType: 'volume', Tags: [{ Key: 'a', Value: 'b' }] }] })),
        'InvalidParameterValue',
        400,
      );
    });

    it('a snapshot is pending until the snapshotPolls-th DescribeSnapshots, which shows it completed', async () => {
      const { volumeIds } = server.state.addInstance({ volumes: [{ device: '/dev/xvda', sizeGiB: 12 }] });
      const created = await ec2.send(
        new CreateSnapshotCommand({ VolumeId: volumeIds[0] ?? '', Description: 'one', TagSpecifications: [{ ResourceType: 'snapshot', Tags: [{ Key: 'Name', Value: 's1' }] }] }),
      );
      assert.equal(created.State, 'pending');
      assert.equal(created.Progress, '0%');
      assert.equal(created.VolumeSize, 12);
      const id = created.SnapshotId ?? '';
      const seen: [string | undefined, string | undefined][] = [];
      for (let i = 0; i < 4; i++) {
        const out = await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [id] }));
        seen.push([out.Snapshots?.[0]?.State, out.Snapshots?.[0]?.Progress]);
      }
      assert.deepEqual(seen, [
        ['pending', '33%'],
        ['pending', '66%'],
        ['completed', '100%'],
        ['completed', '100%'],
      ]);
      const owned = await ec2.send(new DescribeSnapshotsCommand({ OwnerIds: ['self'], Filters: [{ Name: 'tag:Name', Values: ['s1'] }] }));
      assert.deepEqual(owned.Snapshots?.map((s) => s.SnapshotId), [id]);
      const others = await ec2.send(new DescribeSnapshotsCommand({ OwnerIds: ['amazon'] }));
      assert.deepEqual(others.Snapshots, []);
    });

    it('a failed snapshot ends in error with its StateMessage', async () => {
      const { volumeIds } = server.state.addInstance({ volumes: [{ device: '/dev/xvda' }] });
      const created = await ec2.send(new CreateSnapshotCommand({ VolumeId: volumeIds[0] ?? '' }));
      server.state.failSnapshot(created.SnapshotId ?? '', 'internal failure copying blocks');
      let last;
      for (let i = 0; i < 3; i++) last = (await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [created.SnapshotId ?? ''] }))).Snapshots?.[0];
      assert.equal(last?.State, 'error');
      assert.equal(last?.StateMessage, 'internal failure copying blocks');
    });

    it('pages snapshots, deletes them, and answers InvalidSnapshot.NotFound for a deleted one', async () => {
      for (let i = 0; i < 7; i++) server.state.addSnapshot({ state: 'completed', name: `s${i}` });
      const pages: number[] = [];
      for await (const page of paginateDescribeSnapshots({ client: ec2, pageSize: 5 }, { OwnerIds: ['self'] })) pages.push(page.Snapshots?.length ?? 0);
      assert.deepEqual(pages, [5, 2]);
      const [id = ''] = [...server.state.snapshots.keys()];
      const deleted = await ec2.send(new DeleteSnapshotCommand({ SnapshotId: id }));
      assert.equal(deleted.$metadata.httpStatusCode, 200);
      await rejectsWithCode(ec2.send(new DeleteSnapshotCommand({ SnapshotId: id })), 'InvalidSnapshot.NotFound', 400);
      await rejectsWithCode(ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [id] })), 'InvalidSnapshot.NotFound', 400);
    });

    it('answers SnapshotLimitExceeded past the snapshot limit, for the whole set', async () => {
      const { instance } = server.state.addInstance({ volumes: [{ device: '/dev/xvda' }, { device: '/dev/sdf' }] });
      server.state.limits = { snapshots: 1 };
      await rejectsWithCode(ec2.send(new CreateSnapshotsCommand({ InstanceSpecification: { InstanceId: instance.id } })), 'SnapshotLimitExceeded', 400);
      assert.equal(server.state.snapshots.size, 0);
    });
  });

  describe('volumes and attachments', () => {
    it('CreateVolume from a completed snapshot: creating, then available after volumePolls DescribeVolumes', async () => {
      const snapshot = server.state.addSnapshot({ volumeSize: 40, state: 'completed' });
      const created = await ec2.send(
        new CreateVolumeCommand({
          SnapshotId: snapshot.id,
          AvailabilityZone: 'ap-southeast-2c',
          VolumeType: 'gp3',
          TagSpecifications: [{ ResourceType: 'volume', Tags: [{ Key: 'Name', Value: 'restored' }] }],
        }),
      );
      assert.equal(created.State, 'creating');
      assert.equal(created.Size, 40);
      assert.equal(created.SnapshotId, snapshot.id);
      assert.deepEqual(created.Tags, [{ Key: 'Name', Value: 'restored' }]);
      const states: (string | undefined)[] = [];
      for (let i = 0; i < 3; i++) states.push((await ec2.send(new DescribeVolumesCommand({ VolumeIds: [created.VolumeId ?? ''] }))).Volumes?.[0]?.State);
      assert.deepEqual(states, ['creating', 'available', 'available']);
    });

    it('CreateVolume refuses a pending snapshot, a missing or foreign zone, a smaller size; and ends in error when told to', async () => {
      const { volumeIds } = server.state.addInstance({ volumes: [{ device: '/dev/xvda', sizeGiB: 20 }] });
      const pending = await ec2.send(new CreateSnapshotCommand({ VolumeId: volumeIds[0] ?? '' }));
      await rejectsWithCode(ec2.send(new CreateVolumeCommand({ SnapshotId: pending.SnapshotId ?? '', AvailabilityZone: 'ap-southeast-2a' })), 'IncorrectState', 400);
      const done = server.state.addSnapshot({ volumeSize: 20, state: 'completed' });
      await rejectsWithCode(ec2.send(new CreateVolumeCommand({ SnapshotId: done.id })), 'MissingParameter', 400);
      await rejectsWithCode(ec2.send(new CreateVolumeCommand({ SnapshotId: done.id, AvailabilityZone: 'us-east-1a' })), 'InvalidParameterValue', 400);
      await rejectsWithCode(ec2.send(new CreateVolumeCommand({ SnapshotId: done.id, AvailabilityZone: 'ap-southeast-2a', Size: 10 })), 'InvalidParameterValue', 400);
      await rejectsWithCode(ec2.send(new CreateVolumeCommand({ AvailabilityZone: 'ap-southeast-2a' })), 'MissingParameter', 400);
      server.state.failNextVolumeCreations();
      const failing = await ec2.send(new CreateVolumeCommand({ Size: 1, AvailabilityZone: 'ap-southeast-2a' }));
      for (let i = 0; i < 2; i++) await ec2.send(new DescribeVolumesCommand({ VolumeIds: [failing.VolumeId ?? ''] }));
      assert.equal(server.state.volumes.get(failing.VolumeId ?? '')?.state, 'error');
    });

    it('CreateVolume with the same ClientToken returns the same volume, and refuses different parameters', async () => {
      const first = await ec2.send(new CreateVolumeCommand({ Size: 5, AvailabilityZone: 'ap-southeast-2a', ClientToken: 'token-1' }));
      const again = await ec2.send(new CreateVolumeCommand({ Size: 5, AvailabilityZone: 'ap-southeast-2a', ClientToken: 'token-1' }));
      assert.equal(again.VolumeId, first.VolumeId);
      assert.equal(server.state.volumes.size, 1);
      await rejectsWithCode(ec2.send(new CreateVolumeCommand({ Size: 6, AvailabilityZone: 'ap-southeast-2a', ClientToken: 'token-1' })), 'IdempotentParameterMismatch', 400);
      server.state.limits = { volumes: 1 };
      await rejectsWithCode(ec2.send(new CreateVolumeCommand({ Size: 5, AvailabilityZone: 'ap-southeast-2a' })), 'VolumeLimitExceeded', 400);
    });

    it('AttachVolume: attaching, then attached after attachPolls DescribeVolumes; the instance lists it', async () => {
      const { instance } = server.state.addInstance({ zone: 'ap-southeast-2a', volumes: [{ device: '/dev/xvda' }] });
      const volume = server.state.addVolume({ zone: 'ap-southeast-2a' });
      const out = await ec2.send(new AttachVolumeCommand({ VolumeId: volume.id, InstanceId: instance.id, Device: '/dev/sdf' }));
      assert.equal(out.State, 'attaching');
      assert.equal(out.Device, '/dev/sdf');
      const states: (string | undefined)[] = [];
      for (let i = 0; i < 3; i++) states.push((await ec2.send(new DescribeVolumesCommand({ VolumeIds: [volume.id] }))).Volumes?.[0]?.Attachments?.[0]?.State);
      assert.deepEqual(states, ['attaching', 'attached', 'attached']);
      const described = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instance.id] }));
      assert.deepEqual(described.Reservations?.[0]?.Instances?.[0]?.BlockDeviceMappings?.map((m) => m.DeviceName), ['/dev/xvda', '/dev/sdf']);
    });

    it('AttachVolume refuses a volume in use, not available, in another zone, a bad device name and a device in use', async () => {
      const { instance, volumeIds } = server.state.addInstance({ zone: 'ap-southeast-2a', volumes: [{ device: '/dev/xvda' }, { device: '/dev/sdf' }] });
      await rejectsWithCode(ec2.send(new AttachVolumeCommand({ VolumeId: volumeIds[1] ?? '', InstanceId: instance.id, Device: '/dev/sdg' })), 'VolumeInUse', 400);
      const creating = server.state.addVolume({ zone: 'ap-southeast-2a', state: 'creating' });
      await rejectsWithCode(ec2.send(new AttachVolumeCommand({ VolumeId: creating.id, InstanceId: instance.id, Device: '/dev/sdg' })), 'IncorrectState', 400);
      const far = server.state.addVolume({ zone: 'ap-southeast-2b' });
      await rejectsWithCode(ec2.send(new AttachVolumeCommand({ VolumeId: far.id, InstanceId: instance.id, Device: '/dev/sdg' })), 'InvalidVolume.ZoneMismatch', 400);
      const free = server.state.addVolume({ zone: 'ap-southeast-2a' });
      await rejectsWithCode(ec2.send(new AttachVolumeCommand({ VolumeId: free.id, InstanceId: instance.id, Device: '/dev/hda' })), 'InvalidParameterValue', 400);
      await rejectsWithCode(ec2.send(new AttachVolumeCommand({ VolumeId: free.id, InstanceId: instance.id, Device: '/dev/sdf' })), 'InvalidParameterValue', 400);
    });
  });

  describe('CreateTags', () => {
    it('tags instances, volumes and snapshots; refuses aws: keys, unknown ids and more than 50 tags', async () => {
      const { instance, volumeIds } = server.state.addInstance({ volumes: [{ device: '/dev/xvda' }] });
      const snapshot = server.state.addSnapshot({});
      await ec2.send(new CreateTagsCommand({ Resources: [instance.id, volumeIds[0] ?? '', snapshot.id], Tags: [{ Key: 'k', Value: 'v' }] }));
      assert.equal(instance.tags.get('k'), 'v');
      assert.equal(server.state.volumes.get(volumeIds[0] ?? '')?.tags.get('k'), 'v');
      assert.equal(snapshot.tags.get('k'), 'v');
      await rejectsWithCode(ec2.send(new CreateTagsCommand({ Resources: [snapshot.id], Tags: [{ Key: 'aws:x', Value: 'v' }] })), 'InvalidParameterValue', 400);
      await rejectsWithCode(ec2.send(new CreateTagsCommand({ Resources: ['ami-12345678'], Tags: [{ Key: 'a', Value: 'b' }] })), 'InvalidID', 400);
      await rejectsWithCode(ec2.send(new CreateTagsCommand({ Resources: ['snap-0123456789abcdef0'], Tags: [{ Key: 'a', Value: 'b' }] })), 'InvalidSnapshot.NotFound', 400);
      const many = Array.from({ length: 50 }, (_, i) => ({ Key: `t${i}`, Value: '' }));
      await rejectsWithCode(ec2.send(new CreateTagsCommand({ Resources: [snapshot.id], Tags: many })), 'TagLimitExceeded', 400);
      assert.equal(snapshot.tags.size, 1, 'a refused CreateTags changes nothing');
    });
  });

  describe('faults and the request log', () => {
    it('fails the next N calls of an action with a code and its usual status, then answers normally', async () => {
      server.state.failNext('DescribeVolumes', { code: 'RequestLimitExceeded' }, 2);
      await rejectsWithCode(ec2.send(new DescribeVolumesCommand({})), 'RequestLimitExceeded', 503);
      await rejectsWithCode(ec2.send(new DescribeVolumesCommand({})), 'RequestLimitExceeded', 503);
      assert.deepEqual((await ec2.send(new DescribeVolumesCommand({}))).Volumes, []);
      server.state.failNext('DescribeVolumes', { code: 'InternalError' });
      await rejectsWithCode(ec2.send(new DescribeVolumesCommand({})), 'InternalError', 500);
      server.state.failNext('DescribeVolumes', { code: 'UnauthorizedOperation', message: 'You are not authorized to perform this operation.' });
      await rejectsWithCode(ec2.send(new DescribeVolumesCommand({})), 'UnauthorizedOperation', 403);
      assert.equal(server.state.callsOf('DescribeVolumes').length, 5);
    });

    it('answers an empty-bodied status or resets the connection, before or after applying the action', async () => {
      server.state.failNext('DescribeInstances', { emptyStatus: 503 });
      await assert.rejects(ec2.send(new DescribeInstancesCommand({})), (err: unknown) => (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 503);
      server.state.failNext('DescribeInstances', { resetConnection: true });
      await assert.rejects(ec2.send(new DescribeInstancesCommand({})), (err: unknown) => (err as { code?: string }).code === 'ECONNRESET');
      const volume = server.state.addVolume({});
      server.state.failNext('CreateSnapshot', { code: 'InternalError', afterApply: true });
      await rejectsWithCode(ec2.send(new CreateSnapshotCommand({ VolumeId: volume.id })), 'InternalError', 500);
      assert.equal(server.state.snapshots.size, 1, 'the snapshot was taken although the answer was an error');
    });

    it('records every authenticated call with its parameters, and runs a change before the next call of an action', async () => {
      const volume = server.state.addVolume({});
      server.state.beforeNext('DescribeVolumes', (state) => state.addVolume({ name: 'appeared' }));
      const out = await ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: 'tag:Name', Values: ['appeared'] }] }));
      assert.equal(out.Volumes?.length, 1);
      assert.deepEqual(server.state.calls.at(-1), {
        action: 'DescribeVolumes',
        params: { Action: 'DescribeVolumes', Version: '2016-11-15', 'Filter.1.Name': 'tag:Name', 'Filter.1.Value.1': 'appeared' },
      });
      assert.ok(server.state.volumes.has(volume.id));
    });

    it('stops twice without error', async () => {
      const extra = await startEc2Server();
      await extra.stop();
      await extra.stop();
    });
  });
});

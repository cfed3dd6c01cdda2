/**
 * The Azure Compute (ARM) test server (test/servers/azure-compute/) against raw HTTPS requests, for
 * what a client never sends (no token, wrong api-version, bad bodies), and against the real
 * @azure/arm-compute client, for what it does send. Each server is in-process on 127.0.0.1 and
 * stopped by the hook that started it.
 */
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { after, before, describe, it } from 'node:test';
import { ComputeManagementClient } from '@azure/arm-compute';
import type { Snapshot } from '@azure/arm-compute';
import { API_VERSIONS, startAzureComputeServer } from '../../servers/azure-compute/index.ts';
import type { AzureComputeServerHandle } from '../../servers/azure-compute/index.ts';

/** Per-test limit: every test here finishes in well under a second on a quiet machine. */
const TEST_TIMEOUT = { timeout: 30_000 };
/** Per-request limit for raw HTTPS. */
const REQUEST_TIMEOUT_MS = 10_000;
const RG = 'cloudbarman-test';
const DISK_API = `api-version=${API_VERSIONS.disk[0]}`;
const VM_API = `api-version=${API_VERSIONS.compute[0]}`;

/** A raw response, body read. */
interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json(): Record<string, unknown> & { error?: { code: string; message: string; target?: string } };
}

/** One raw HTTPS request to the server (path or absolute URL), with its token unless `token` says otherwise. */
async function raw(
  server: AzureComputeServerHandle,
  method: string,
  pathOrUrl: string,
  init: { body?: unknown; headers?: Record<string, string>; token?: string | null; ca?: string | null } = {},
): Promise<RawResponse> {
  const url = new URL(pathOrUrl, server.endpoint);
  const body = init.body === undefined ? undefined : typeof init.body === 'string' ? init.body : JSON.stringify(init.body);
  const token = init.token === undefined ? server.token : init.token;
  const headers: Record<string, string> = {
    ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
    ...(token === null ? {} : { Authorization: `Bearer ${token}` }),
    ...init.headers,
  };
  return await new Promise<RawResponse>((resolve, reject) => {
    const req = httpsRequest(
      url,
      { method, headers, ...(init.ca === null ? {} : { ca: init.ca ?? server.ca }), agent: false, timeout: REQUEST_TIMEOUT_MS },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) as ReturnType<RawResponse['json']> });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`request to ${url.pathname} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** The path of a Microsoft.Compute resource, with the right api-version for its type. */
function resourcePath(server: AzureComputeServerHandle, type: 'virtualMachines' | 'disks' | 'snapshots', name: string, rg = RG): string {
  return `/subscriptions/${server.subscriptionId}/resourceGroups/${rg}/providers/Microsoft.Compute/${type}/${name}?${type === 'virtualMachines' ? VM_API : DISK_API}`;
}

/** Asserts ARM's error shape with the given status and code. */
function assertArmError(res: RawResponse, status: number, code: string): void {
  assert.equal(res.status, status, res.text);
  const { error } = res.json();
  assert.ok(error !== undefined, `an error body: ${res.text}`);
  assert.equal(error.code, code, res.text);
  assert.equal(typeof error.message, 'string');
}

/** The id of a disk of the server's default resource group. */
function diskId(server: AzureComputeServerHandle, name: string): string {
  return `/subscriptions/${server.subscriptionId}/resourceGroups/${RG}/providers/Microsoft.Compute/disks/${name}`;
}

/** A snapshot body: Copy of a disk. */
function snapshotBody(server: AzureComputeServerHandle, disk: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { location: 'westeurope', properties: { creationData: { createOption: 'Copy', sourceResourceId: diskId(server, disk) }, incremental: true }, ...extra };
}

/** Polls an Azure-AsyncOperation URL until it is no longer InProgress; returns the last body and the poll count. */
async function pollToEnd(server: AzureComputeServerHandle, url: string): Promise<{ body: Record<string, unknown>; polls: number }> {
  for (let polls = 1; polls <= 100; polls += 1) {
    const res = await raw(server, 'GET', url);
    assert.equal(res.status, 200, res.text);
    const body = res.json();
    if (body['status'] !== 'InProgress') return { body, polls };
  }
  throw new Error('the operation never ended');
}

describe('Azure Compute test server: authentication, api-version and routing', TEST_TIMEOUT, () => {
  let server: AzureComputeServerHandle;
  before(async () => {
    server = await startAzureComputeServer();
    server.state.addVm({ name: 'vm1', dataDisks: [{ name: 'data1' }] });
  });
  after(async () => {
    await server.stop();
  });

  it('serves HTTPS with a certificate that only the returned CA vouches for', async () => {
    await assert.rejects(raw(server, 'GET', resourcePath(server, 'virtualMachines', 'vm1'), { ca: null }), (err: NodeJS.ErrnoException) => {
      assert.equal(err.code, 'DEPTH_ZERO_SELF_SIGNED_CERT');
      return true;
    });
    assert.equal((await raw(server, 'GET', resourcePath(server, 'virtualMachines', 'vm1'))).status, 200);
    assert.match(server.endpoint, /^https:\/\/127\.0\.0\.1:\d+$/);
  });

  it('requires a bearer token, and the right one', async () => {
    const path = resourcePath(server, 'virtualMachines', 'vm1');
    const missing = await raw(server, 'GET', path, { token: null });
    assertArmError(missing, 401, 'AuthenticationFailed');
    assert.match(String(missing.headers['www-authenticate']), /^Bearer authorization_uri=/);
    assertArmError(await raw(server, 'GET', path, { token: 'not-the-token' }), 401, 'InvalidAuthenticationToken');
    assertArmError(await raw(server, 'GET', path, { token: null, headers: { Authorization: 'Basic dXNlcjpwYXNz' } }), 401, 'AuthenticationFailedInvalidHeader');
  });

  it('requires an api-version the SDK sends for that resource type', async () => {
    const base = `/subscriptions/${server.subscriptionId}/resourceGroups/${RG}/providers/Microsoft.Compute`;
    assertArmError(await raw(server, 'GET', `${base}/virtualMachines/vm1`), 400, 'MissingApiVersionParameter');
    assertArmError(await raw(server, 'GET', `${base}/virtualMachines/vm1?api-version=latest`), 400, 'InvalidApiVersionParameter');
    assertArmError(await raw(server, 'GET', `${base}/virtualMachines/vm1?api-version=2015-06-15`), 400, 'NoRegisteredProviderFound');
    // The Disk RP's version is not the Compute RP's, and the other way round.
    assertArmError(await raw(server, 'GET', `${base}/virtualMachines/vm1?${DISK_API}`), 400, 'NoRegisteredProviderFound');
    assertArmError(await raw(server, 'GET', `${base}/disks/data1?${VM_API}`), 400, 'NoRegisteredProviderFound');
    assert.equal((await raw(server, 'GET', `${base}/disks/data1?${DISK_API}`)).status, 200);
  });

  it('answers ARM not-found errors for the subscription, the resource group and the resource', async () => {
    assertArmError(await raw(server, 'GET', `/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/${RG}/providers/Microsoft.Compute/disks/data1?${DISK_API}`), 404, 'SubscriptionNotFound');
    assertArmError(await raw(server, 'GET', resourcePath(server, 'disks', 'data1', 'no-such-rg')), 404, 'ResourceGroupNotFound');
    const missing = await raw(server, 'GET', resourcePath(server, 'snapshots', 'nope'));
    assertArmError(missing, 404, 'ResourceNotFound');
    assert.match(missing.json().error?.message ?? '', /The Resource 'Microsoft\.Compute\/snapshots\/nope' under resource group 'cloudbarman-test' was not found/);
  });

  it('matches paths and names case-insensitively, as ARM does', async () => {
    const res = await raw(server, 'GET', `/SUBSCRIPTIONS/${server.subscriptionId.toUpperCase()}/resourcegroups/CLOUDBARMAN-TEST/providers/microsoft.compute/VIRTUALMACHINES/VM1?${VM_API}`);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json()['name'], 'vm1');
  });

  it('refuses what it does not implement with 501, never a silent success', async () => {
    const base = `/subscriptions/${server.subscriptionId}/resourceGroups/${RG}/providers/Microsoft.Compute`;
    assertArmError(await raw(server, 'GET', `${base}/snapshots?${DISK_API}`), 501, 'NotImplemented');
    assertArmError(await raw(server, 'DELETE', resourcePath(server, 'virtualMachines', 'vm1')), 501, 'NotImplemented');
    assertArmError(await raw(server, 'POST', `${base}/snapshots/s1/beginGetAccess?${DISK_API}`), 501, 'NotImplemented');
    assertArmError(await raw(server, 'GET', `${base}/availabilitySets/a1?${VM_API}`), 501, 'NotImplemented');
    assertArmError(await raw(server, 'GET', `${resourcePath(server, 'virtualMachines', 'vm1')}&$expand=instanceView`), 501, 'NotImplemented');
    assertArmError(await raw(server, 'POST', resourcePath(server, 'snapshots', 's1'), { body: {} }), 405, 'MethodNotAllowed');
  });

  it('refuses unknown and repeated query parameters (deliberately stricter than ARM)', async () => {
    assertArmError(await raw(server, 'GET', `${resourcePath(server, 'disks', 'data1')}&foo=bar`), 400, 'UnsupportedQueryParameter');
    assertArmError(await raw(server, 'GET', `${resourcePath(server, 'disks', 'data1')}&${DISK_API}`), 400, 'UnsupportedQueryParameter');
  });

  it('answers injected faults and throttling to matching requests only, as many times as asked', async () => {
    server.state.throttle({ times: 2, retryAfterSeconds: 17, method: 'GET', pathIncludes: '/disks/data1' });
    server.state.injectFault({ method: 'GET', pathIncludes: '/virtualMachines/', status: 403, code: 'AuthorizationFailed', message: 'no role' });
    for (let i = 0; i < 2; i += 1) {
      const throttled = await raw(server, 'GET', resourcePath(server, 'disks', 'data1'));
      assertArmError(throttled, 429, 'TooManyRequests');
      assert.equal(throttled.headers['retry-after'], '17');
    }
    assert.equal((await raw(server, 'GET', resourcePath(server, 'disks', 'data1'))).status, 200);
    assertArmError(await raw(server, 'GET', resourcePath(server, 'virtualMachines', 'vm1')), 403, 'AuthorizationFailed');
    assert.equal((await raw(server, 'GET', resourcePath(server, 'virtualMachines', 'vm1'))).status, 200);
  });
});

describe('Azure Compute test server: snapshots and disks', TEST_TIMEOUT, () => {
  let server: AzureComputeServerHandle;
  before(async () => {
    server = await startAzureComputeServer({ operationPolls: 2, backgroundCopyPolls: 3 });
    server.state.addVm({ name: 'vm1', zone: '1', dataDisks: [{ name: 'data1', sizeGiB: 100 }, { name: 'v2', sizeGiB: 50, sku: 'PremiumV2_LRS' }] });
    server.state.addDisk({ name: 'east', location: 'eastus' });
  });
  after(async () => {
    await server.stop();
  });

  it('validates snapshot bodies as the Disk RP does', async () => {
    const path = (name: string): string => resourcePath(server, 'snapshots', name);
    const cases: [string, unknown, number, string][] = [
      ['no location', { properties: { creationData: { createOption: 'Copy', sourceResourceId: diskId(server, 'data1') } } }, 400, 'LocationRequired'],
      ['unknown region', snapshotBody(server, 'data1', { location: 'moon-1' }), 400, 'LocationNotAvailableForResourceType'],
      ['no properties', { location: 'westeurope' }, 400, 'InvalidParameter'],
      ['no creationData', { location: 'westeurope', properties: {} }, 400, 'InvalidParameter'],
      ['no createOption', { location: 'westeurope', properties: { creationData: {} } }, 400, 'InvalidParameter'],
      ['unknown createOption', { location: 'westeurope', properties: { creationData: { createOption: 'Clone' } } }, 400, 'InvalidParameter'],
      ['Empty is for disks', { location: 'westeurope', properties: { creationData: { createOption: 'Empty' } } }, 400, 'InvalidParameter'],
      ['Import is not implemented', { location: 'westeurope', properties: { creationData: { createOption: 'Import', sourceUri: 'https://a/b.vhd' } } }, 501, 'NotImplemented'],
      ['no sourceResourceId', { location: 'westeurope', properties: { creationData: { createOption: 'Copy' } } }, 400, 'InvalidParameter'],
      ['not a resource id', { location: 'westeurope', properties: { creationData: { createOption: 'Copy', sourceResourceId: 'data1' } } }, 400, 'LinkedInvalidPropertyId'],
      [
        'a VM is not a source',
        { location: 'westeurope', properties: { creationData: { createOption: 'Copy', sourceResourceId: diskId(server, 'x').replace('/disks/x', '/virtualMachines/vm1') } } },
        400,
        'InvalidParameter',
      ],
      ['a missing disk', snapshotBody(server, 'ghost'), 404, 'NotFound'],
      ['another region', snapshotBody(server, 'east'), 400, 'InvalidParameter'],
      ['a full snapshot of Premium SSD v2', snapshotBody(server, 'v2', { properties: { creationData: { createOption: 'Copy', sourceResourceId: diskId(server, 'v2') }, incremental: false } }), 400, 'InvalidParameter'],
      ['an unknown member', snapshotBody(server, 'data1', { colour: 'red' }), 400, 'InvalidRequestContent'],
      ['an unknown property', { location: 'westeurope', properties: { creationData: { createOption: 'Copy', sourceResourceId: diskId(server, 'data1') }, fast: true } }, 400, 'InvalidRequestContent'],
      ['a string for a boolean', { location: 'westeurope', properties: { creationData: { createOption: 'Copy', sourceResourceId: diskId(server, 'data1') }, incremental: 'yes' } }, 400, 'InvalidRequestContent'],
      ['a reserved tag character', snapshotBody(server, 'data1', { tags: { 'a/b': 'x' } }), 400, 'InvalidTagNameCharacters'],
      ['51 tags', snapshotBody(server, 'data1', { tags: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`t${i}`, 'v'])) }), 400, 'InvalidTag'],
      ['an unknown sku', snapshotBody(server, 'data1', { sku: { name: 'Gold' } }), 400, 'InvalidParameter'],
    ];
    for (const [title, body, status, code] of cases) {
      const res = await raw(server, 'PUT', path('s-invalid'), { body });
      assert.equal(res.status, status, `${title}: ${res.text}`);
      assert.equal(res.json().error?.code, code, `${title}: ${res.text}`);
    }
    assertArmError(await raw(server, 'PUT', path('bad name!'), { body: snapshotBody(server, 'data1') }), 400, 'InvalidResourceName');
    assertArmError(await raw(server, 'PUT', path('s1'), { body: '{"location":', headers: {} }), 400, 'InvalidRequestContent');
    assertArmError(await raw(server, 'PUT', path('s1'), { body: 'location=westeurope', headers: { 'Content-Type': 'text/plain' } }), 415, 'UnsupportedMediaType');
    assert.equal(server.state.snapshots().length, 0, 'no refused request created anything');
  });

  it('creates a snapshot as a long-running operation: 202, Azure-AsyncOperation and Location, InProgress then Succeeded', async () => {
    const put = await raw(server, 'PUT', resourcePath(server, 'snapshots', 'snap1'), { body: snapshotBody(server, 'data1', { tags: { server: 'pg1' } }) });
    assert.equal(put.status, 202, put.text);
    const asyncUrl = String(put.headers['azure-asyncoperation']);
    const location = String(put.headers['location']);
    assert.match(asyncUrl, /\/providers\/Microsoft\.Compute\/locations\/westeurope\/DiskOperations\/[0-9a-f-]+\?p=[^&]+&api-version=/);
    assert.match(location, /&monitor=true$/);
    const accepted = put.json() as { properties: { provisioningState: string } };
    assert.equal(accepted.properties.provisioningState, 'Updating');
    const during = (await raw(server, 'GET', resourcePath(server, 'snapshots', 'snap1'))).json() as { properties: { provisioningState: string } };
    assert.equal(during.properties.provisioningState, 'Updating');

    const first = await raw(server, 'GET', asyncUrl);
    assert.equal(first.json()['status'], 'InProgress');
    assert.equal(typeof first.json()['startTime'], 'string');
    const second = (await raw(server, 'GET', asyncUrl)).json() as { status: string; endTime: string; properties: { output: { name: string; properties: Record<string, unknown> } } };
    assert.equal(second.status, 'Succeeded');
    assert.equal(typeof second.endTime, 'string');
    assert.equal(second.properties.output.name, 'snap1');

    const done = (await raw(server, 'GET', resourcePath(server, 'snapshots', 'snap1'))).json() as { tags: Record<string, string>; properties: Record<string, unknown> };
    assert.equal(done.properties['provisioningState'], 'Succeeded');
    assert.equal(done.properties['incremental'], true);
    assert.equal(done.properties['diskSizeGB'], 100);
    assert.equal(done.properties['completionPercent'], undefined, 'a Premium SSD snapshot has no background copy');
    assert.deepEqual(done.tags, { server: 'pg1' });
    // The Location URL now gives the final resource.
    const final = await raw(server, 'GET', location);
    assert.equal(final.status, 200);
    assert.equal(final.json()['name'], 'snap1');
  });

  it('follows the Location protocol: 202 with Location while running, then the resource', async () => {
    const put = await raw(server, 'PUT', resourcePath(server, 'snapshots', 'snap-loc'), { body: snapshotBody(server, 'data1') });
    const location = String(put.headers['location']);
    const running = await raw(server, 'GET', location);
    assert.equal(running.status, 202);
    assert.equal(running.headers['location'], location);
    const done = await raw(server, 'GET', location);
    assert.equal(done.status, 200);
    assert.equal((done.json() as { properties: { provisioningState: string } }).properties.provisioningState, 'Succeeded');
  });

  it('checks the operation URL: its p token and its api-version', async () => {
    const put = await raw(server, 'PUT', resourcePath(server, 'snapshots', 'snap-p'), { body: snapshotBody(server, 'data1') });
    const asyncUrl = String(put.headers['azure-asyncoperation']);
    assertArmError(await raw(server, 'GET', asyncUrl.replace(/p=[^&]+/, 'p=forged')), 404, 'NotFound');
    assertArmError(await raw(server, 'GET', asyncUrl.replace(/api-version=[^&]+/, VM_API)), 400, 'NoRegisteredProviderFound');
    assert.equal((await pollToEnd(server, asyncUrl)).body['status'], 'Succeeded');
  });

  it('ends an operation Failed when told to, and leaves the snapshot Failed', async () => {
    server.state.failNextOperation({ type: 'snapshots', name: 'snap-bad', code: 'InternalOperationError', message: 'disk busy' });
    const put = await raw(server, 'PUT', resourcePath(server, 'snapshots', 'snap-bad'), { body: snapshotBody(server, 'data1') });
    const { body, polls } = await pollToEnd(server, String(put.headers['azure-asyncoperation']));
    assert.equal(polls, 2);
    assert.equal(body['status'], 'Failed');
    assert.deepEqual(body['error'], { code: 'InternalOperationError', message: 'disk busy' });
    assert.equal(server.state.snapshot('snap-bad')?.provisioningState, 'Failed');
    assertArmError(await raw(server, 'GET', String(put.headers['location'])), 500, 'InternalOperationError');
  });

  it('lets a PUT on an existing snapshot change tags only', async () => {
    await pollToEnd(server, String((await raw(server, 'PUT', resourcePath(server, 'snapshots', 'snap-upd'), { body: snapshotBody(server, 'data1') })).headers['azure-asyncoperation']));
    const retag = await raw(server, 'PUT', resourcePath(server, 'snapshots', 'snap-upd'), { body: snapshotBody(server, 'data1', { tags: { a: '1' } }) });
    assert.equal(retag.status, 200, retag.text);
    assert.deepEqual(server.state.snapshot('snap-upd')?.tags, { a: '1' });
    assertArmError(await raw(server, 'PUT', resourcePath(server, 'snapshots', 'snap-upd'), { body: snapshotBody(server, 'v2') }), 409, 'PropertyChangeNotAllowed');
    const full = snapshotBody(server, 'data1', { properties: { creationData: { createOption: 'Copy', sourceResourceId: diskId(server, 'data1') }, incremental: false } });
    assertArmError(await raw(server, 'PUT', resourcePath(server, 'snapshots', 'snap-upd'), { body: full }), 409, 'PropertyChangeNotAllowed');
    assertArmError(await raw(server, 'PUT', resourcePath(server, 'snapshots', 'snap-upd'), { body: snapshotBody(server, 'data1', { location: 'eastus' }) }), 409, 'InvalidResourceLocation');
  });

  it('deletes: 204 for an absent snapshot, else a long-running delete after which it is gone', async () => {
    assert.equal((await raw(server, 'DELETE', resourcePath(server, 'snapshots', 'never-was'))).status, 204);
    await pollToEnd(server, String((await raw(server, 'PUT', resourcePath(server, 'snapshots', 'snap-del'), { body: snapshotBody(server, 'data1') })).headers['azure-asyncoperation']));
    const del = await raw(server, 'DELETE', resourcePath(server, 'snapshots', 'snap-del'));
    assert.equal(del.status, 202);
    assert.equal(del.text, '');
    assert.equal(server.state.snapshot('snap-del')?.provisioningState, 'Deleting');
    assert.equal((await pollToEnd(server, String(del.headers['azure-asyncoperation']))).body['status'], 'Succeeded');
    assertArmError(await raw(server, 'GET', resourcePath(server, 'snapshots', 'snap-del')), 404, 'ResourceNotFound');
  });

  it('copies incremental snapshots of Premium SSD v2 disks in the background: completionPercent over GETs', async () => {
    const put = await raw(server, 'PUT', resourcePath(server, 'snapshots', 'snap-v2'), { body: snapshotBody(server, 'v2') });
    await pollToEnd(server, String(put.headers['azure-asyncoperation']));
    const seen: [unknown, unknown][] = [];
    for (let i = 0; i < 4; i += 1) {
      const props = ((await raw(server, 'GET', resourcePath(server, 'snapshots', 'snap-v2'))).json() as { properties: Record<string, unknown> }).properties;
      seen.push([props['completionPercent'], props['snapshotAccessState']]);
    }
    assert.deepEqual(seen, [
      [33, 'Pending'],
      [67, 'Pending'],
      [100, 'Available'],
      [100, 'Available'],
    ]);
  });

  it('creates a disk from a snapshot only once the snapshot is complete', async () => {
    const put = await raw(server, 'PUT', resourcePath(server, 'snapshots', 'snap-v2b'), { body: snapshotBody(server, 'v2') });
    await pollToEnd(server, String(put.headers['azure-asyncoperation']));
    const snapshotId = `/subscriptions/${server.subscriptionId}/resourceGroups/${RG}/providers/Microsoft.Compute/snapshots/snap-v2b`;
    const diskBody = { location: 'westeurope', zones: ['1'], properties: { creationData: { createOption: 'Copy', sourceResourceId: snapshotId } } };
    assertArmError(await raw(server, 'PUT', resourcePath(server, 'disks', 'from-v2b'), { body: diskBody }), 409, 'OperationNotAllowed');
    for (let i = 0; i < 3; i += 1) await raw(server, 'GET', resourcePath(server, 'snapshots', 'snap-v2b'));
    const created = await raw(server, 'PUT', resourcePath(server, 'disks', 'from-v2b'), { body: diskBody });
    assert.equal(created.status, 202, created.text);
    await pollToEnd(server, String(created.headers['azure-asyncoperation']));
    const disk = (await raw(server, 'GET', resourcePath(server, 'disks', 'from-v2b'))).json() as { zones: string[]; properties: Record<string, unknown> };
    assert.deepEqual(disk.zones, ['1']);
    assert.equal(disk.properties['provisioningState'], 'Succeeded');
    assert.equal(disk.properties['diskState'], 'Unattached');
    assert.equal(disk.properties['diskSizeGB'], 50);
  });

  it('validates disk bodies', async () => {
    const snapshotId = `/subscriptions/${server.subscriptionId}/resourceGroups/${RG}/providers/Microsoft.Compute/snapshots/snap1`;
    const copy = (extra: Record<string, unknown> = {}, props: Record<string, unknown> = {}): Record<string, unknown> => ({
      location: 'westeurope',
      properties: { creationData: { createOption: 'Copy', sourceResourceId: snapshotId }, ...props },
      ...extra,
    });
    const cases: [string, unknown, number, string][] = [
      ['Empty without a size', { location: 'westeurope', properties: { creationData: { createOption: 'Empty' } } }, 400, 'InvalidParameter'],
      ['zone 9', copy({ zones: ['9'] }), 400, 'InvalidParameter'],
      ['two zones', copy({ zones: ['1', '2'] }), 400, 'InvalidParameter'],
      ['smaller than the source', copy({}, { diskSizeGB: 10 }), 400, 'InvalidParameter'],
      ['Attach is for VMs', { location: 'westeurope', properties: { creationData: { createOption: 'Attach' } } }, 400, 'InvalidParameter'],
      ['Restore is not implemented', { location: 'westeurope', properties: { creationData: { createOption: 'Restore' } } }, 501, 'NotImplemented'],
      ['an unknown sku', copy({ sku: { name: 'Gold_LRS' } }), 400, 'InvalidParameter'],
      ['a missing snapshot', copy({}, { creationData: { createOption: 'Copy', sourceResourceId: snapshotId.replace('snap1', 'ghost') } }), 404, 'NotFound'],
    ];
    for (const [title, body, status, code] of cases) {
      const res = await raw(server, 'PUT', resourcePath(server, 'disks', 'd-invalid'), { body });
      assert.equal(res.status, status, `${title}: ${res.text}`);
      assert.equal(res.json().error?.code, code, `${title}: ${res.text}`);
    }
    assert.equal(server.state.disk('d-invalid'), undefined);
  });

  it('refuses creates beyond the regional quota with OperationNotAllowed and quota wording', async () => {
    server.state.quota.snapshots = server.state.snapshots().length;
    try {
      const res = await raw(server, 'PUT', resourcePath(server, 'snapshots', 'over-quota'), { body: snapshotBody(server, 'data1') });
      assertArmError(res, 409, 'OperationNotAllowed');
      assert.match(res.json().error?.message ?? '', /exceeding approved Snapshots quota/);
    } finally {
      server.state.quota.snapshots = Number.POSITIVE_INFINITY;
    }
  });
});

describe('Azure Compute test server: virtual machines', TEST_TIMEOUT, () => {
  let server: AzureComputeServerHandle;
  before(async () => {
    server = await startAzureComputeServer({ operationPolls: 2 });
    server.state.addVm({ name: 'vm1', zone: '1', maxDataDisks: 3, dataDisks: [{ name: 'data1' }] });
    server.state.addVm({ name: 'vm2', zone: '1' });
    for (const name of ['free1', 'free2', 'free3']) server.state.addDisk({ name, zone: '1' });
    server.state.addDisk({ name: 'zone2', zone: '2' });
    server.state.attach('vm2', 'free3');
  });
  after(async () => {
    await server.stop();
  });

  /** The VM's data disks as GET shows them. */
  const dataDisks = async (vm = 'vm1'): Promise<{ lun: number; name: string; createOption: string; managedDisk: { id: string } }[]> => {
    const body = (await raw(server, 'GET', resourcePath(server, 'virtualMachines', vm))).json() as { properties: { storageProfile: { dataDisks: never[] } } };
    return body.properties.storageProfile.dataDisks;
  };
  /** A PATCH of the VM's data disks. */
  const patch = async (disks: unknown[], headers: Record<string, string> = {}): Promise<RawResponse> =>
    await raw(server, 'PATCH', resourcePath(server, 'virtualMachines', 'vm1'), { body: { properties: { storageProfile: { dataDisks: disks } } }, headers });

  it('reports the storage profile with an etag, and disk ids with the resource group upper-cased', async () => {
    const res = await raw(server, 'GET', resourcePath(server, 'virtualMachines', 'vm1'));
    const vm = res.json() as { etag: string; zones: string[]; properties: { storageProfile: { osDisk: { managedDisk: { id: string } } } } };
    assert.match(vm.etag, /^"\d+"$/);
    assert.deepEqual(vm.zones, ['1']);
    assert.match(vm.properties.storageProfile.osDisk.managedDisk.id, /\/resourceGroups\/CLOUDBARMAN-TEST\/providers\/Microsoft\.Compute\/disks\/vm1_OsDisk$/);
    const [data] = await dataDisks();
    assert.equal(data?.lun, 0);
    assert.equal(data?.createOption, 'Attach');
  });

  it('attaches a disk by PATCH: 200 Updating with Azure-AsyncOperation, Succeeded after the operation', async () => {
    const current = await dataDisks();
    const res = await patch([...current, { lun: 1, createOption: 'Attach', managedDisk: { id: diskId(server, 'free1') } }]);
    assert.equal(res.status, 200, res.text);
    assert.equal((res.json() as { properties: { provisioningState: string } }).properties.provisioningState, 'Updating');
    assert.equal(res.headers['location'], undefined, 'the Compute RP answers updates with Azure-AsyncOperation only');
    const { body, polls } = await pollToEnd(server, String(res.headers['azure-asyncoperation']));
    assert.equal(body['status'], 'Succeeded');
    assert.equal(body['properties'], undefined, 'the Compute RP puts no output in its operation status');
    assert.equal(polls, 2);
    assert.deepEqual((await dataDisks()).map((d) => [d.lun, d.name]), [
      [0, 'data1'],
      [1, 'free1'],
    ]);
    assert.match(server.state.disk('free1')?.managedBy ?? '', /virtualMachines\/vm1$/);
    assert.equal(server.state.vm('vm1')?.provisioningState, 'Succeeded');
  });

  it('refuses data-disk lists the Compute RP refuses', async () => {
    const current = await dataDisks();
    const attach = (disk: string, lun: number): Record<string, unknown> => ({ lun, createOption: 'Attach', managedDisk: { id: diskId(server, disk) } });
    const cases: [string, unknown[], number, string][] = [
      ['a LUN used twice', [...current, { ...attach('free2', current[0]?.lun ?? 0) }], 400, 'InvalidParameter'],
      ['LUN 64', [...current, attach('free2', 64)], 400, 'InvalidParameter'],
      ['no createOption', [...current, { lun: 5, managedDisk: { id: diskId(server, 'free2') } }], 400, 'InvalidParameter'],
      ['an unknown createOption', [...current, { ...attach('free2', 5), createOption: 'Borrow' }], 400, 'InvalidParameter'],
      ['Attach without a disk id', [...current, { lun: 5, createOption: 'Attach' }], 400, 'InvalidParameter'],
      ['Empty (inline disk creation)', [...current, { lun: 5, createOption: 'Empty', diskSizeGB: 8 }], 501, 'NotImplemented'],
      ['a disk id that is no id', [...current, { lun: 5, createOption: 'Attach', managedDisk: { id: 'free2' } }], 400, 'LinkedInvalidPropertyId'],
      ['a missing disk', [...current, attach('ghost', 5)], 404, 'NotFound'],
      ['a disk of another VM', [...current, attach('free3', 5)], 409, 'ConflictingUserInput'],
      ['a disk in another zone', [...current, attach('zone2', 5)], 400, 'InvalidParameter'],
      ['the OS disk', [...current, attach('vm1_OsDisk', 5)], 400, 'InvalidParameter'],
      ['moving an attached disk to another LUN', current.map((d) => ({ ...d, lun: d.lun + 10 })), 400, 'InvalidParameter'],
      ['the same disk twice', [...current, attach('free2', 5), attach('free2', 6)], 400, 'InvalidParameter'],
      ['an unknown member', [...current, { ...attach('free2', 5), speed: 'fast' }], 400, 'InvalidRequestContent'],
    ];
    for (const [title, disks, status, code] of cases) {
      const res = await patch(disks);
      assert.equal(res.status, status, `${title}: ${res.text}`);
      assert.equal(res.json().error?.code, code, `${title}: ${res.text}`);
    }
    assert.equal(server.state.disk('free2')?.managedBy, undefined, 'no refused request attached anything');
  });

  it('caps data disks at the VM size limit', async () => {
    server.state.addDisk({ name: 'cap1', zone: '1' });
    server.state.addDisk({ name: 'cap2', zone: '1' });
    const current = await dataDisks();
    const extra = ['free2', 'cap1', 'cap2'].map((name, i) => ({ lun: 20 + i, createOption: 'Attach', managedDisk: { id: diskId(server, name) } }));
    const res = await patch([...current, ...extra]);
    assertArmError(res, 409, 'OperationNotAllowed');
    assert.match(res.json().error?.message ?? '', /maximum number of data disks allowed to be attached to a VM of this size is 3/);
  });

  it('honours If-Match and refuses a second update while one runs', async () => {
    const vm = (await raw(server, 'GET', resourcePath(server, 'virtualMachines', 'vm1'))).json() as { etag: string };
    const current = await dataDisks();
    assertArmError(await patch(current, { 'If-Match': '"999"' }), 412, 'PreconditionFailed');
    const started = await patch([...current, { lun: 2, createOption: 'Attach', managedDisk: { id: diskId(server, 'free2') } }], { 'If-Match': vm.etag });
    assert.equal(started.status, 200, started.text);
    assert.notEqual((started.json() as { etag: string }).etag, vm.etag, 'an accepted update changes the etag');
    assertArmError(await patch(current), 409, 'OperationNotAllowed');
    await pollToEnd(server, String(started.headers['azure-asyncoperation']));
  });

  it('detaches the disks a PATCH leaves out, once its operation succeeds', async () => {
    const current = await dataDisks();
    const res = await patch(current.filter((d) => d.name !== 'free2'));
    assert.equal(res.status, 200, res.text);
    await pollToEnd(server, String(res.headers['azure-asyncoperation']));
    assert.equal(server.state.disk('free2')?.managedBy, undefined);
    assert.ok(!(await dataDisks()).some((d) => d.name === 'free2'));
  });

  it('rolls an attach back when its operation fails', async () => {
    server.state.failNextOperation({ type: 'virtualMachines', name: 'vm1', code: 'AttachDiskWhileBeingDetached', message: 'detach pending' });
    const before = (await dataDisks()).length;
    const res = await patch([...(await dataDisks()), { lun: 9, createOption: 'Attach', managedDisk: { id: diskId(server, 'free2') } }]);
    const { body } = await pollToEnd(server, String(res.headers['azure-asyncoperation']));
    assert.equal(body['status'], 'Failed');
    assert.equal(server.state.vm('vm1')?.provisioningState, 'Failed');
    assert.equal((await dataDisks()).length, before);
    assert.equal(server.state.disk('free2')?.managedBy, undefined);
  });

  it('takes PUT only for an existing VM, with location and the whole data-disk list', async () => {
    const path = resourcePath(server, 'virtualMachines', 'vm1');
    const disks = await dataDisks();
    assertArmError(await raw(server, 'PUT', path, { body: { properties: { storageProfile: { dataDisks: disks } } } }), 400, 'LocationRequired');
    assertArmError(await raw(server, 'PUT', path, { body: { location: 'westeurope', properties: { hardwareProfile: {} } } }), 400, 'InvalidParameter');
    assertArmError(await raw(server, 'PUT', resourcePath(server, 'virtualMachines', 'new-vm'), { body: { location: 'westeurope' } }), 501, 'NotImplemented');
    assertArmError(await raw(server, 'PATCH', path, { body: { properties: { hardwareProfile: { vmSize: 'Standard_D8s_v5' } } } }), 501, 'NotImplemented');
    const put = await raw(server, 'PUT', path, { body: { location: 'West Europe', properties: { hardwareProfile: { vmSize: 'Standard_D4s_v5' }, storageProfile: { dataDisks: disks } } } });
    assert.equal(put.status, 200, put.text);
    await pollToEnd(server, String(put.headers['azure-asyncoperation']));
  });
});

describe('Azure Compute test server through @azure/arm-compute', TEST_TIMEOUT, () => {
  let server: AzureComputeServerHandle;
  let agent: HttpsAgent;
  let client: ComputeManagementClient;
  before(async () => {
    server = await startAzureComputeServer({ operationPolls: 3 });
    server.state.addVm({ name: 'vm1', dataDisks: [{ name: 'data1', sizeGiB: 16 }] });
    agent = new HttpsAgent({ keepAlive: true, ca: server.ca });
    client = clientFor(server.token);
  });
  after(async () => {
    agent.destroy();
    await server.stop();
  });

  /** A client with SDK retries off, trusting the server's certificate, presenting `token`. */
  function clientFor(token: string): ComputeManagementClient {
    const credential = { getToken: async () => ({ token, expiresOnTimestamp: Date.now() + 3_600_000 }) };
    return new ComputeManagementClient(credential, server.subscriptionId, { endpoint: server.endpoint, agent, retryOptions: { maxRetries: 0 } });
  }

  /** Drives a poller to its end with poll() alone: no timers. */
  async function drive<T>(poller: { submitted(): Promise<void>; poll(): Promise<unknown>; readonly isDone: boolean; readonly result?: T | undefined }): Promise<{ result: T | undefined; polls: number }> {
    await poller.submitted();
    let polls = 0;
    while (!poller.isDone) {
      await poller.poll();
      polls += 1;
    }
    return { result: poller.result, polls };
  }

  it('serves VMs and disks to the client', async () => {
    const vm = await client.virtualMachines.get(RG, 'vm1');
    assert.equal(vm.storageProfile?.dataDisks?.[0]?.lun, 0);
    const disk = await client.disks.get(RG, 'data1');
    assert.equal(disk.diskSizeGB, 16);
    assert.equal(disk.provisioningState, 'Succeeded');
  });

  it('runs a snapshot create, a disk create, an attach and a delete through the SDK pollers', async () => {
    const { result: snapshot, polls } = await drive<Snapshot>(
      client.snapshots.createOrUpdate(RG, 'sdk-snap', { location: 'westeurope', incremental: true, creationData: { createOption: 'Copy', sourceResourceId: diskId(server, 'data1') } }),
    );
    assert.equal(polls, 3, 'one poll per operation step; the last also fetches the resource');
    assert.equal(snapshot?.provisioningState, 'Succeeded');
    assert.ok(snapshot?.timeCreated instanceof Date);

    const { result: disk } = await drive(client.disks.createOrUpdate(RG, 'sdk-disk', { location: 'westeurope', creationData: { createOption: 'Copy', sourceResourceId: snapshot.id ?? '' } }));
    assert.equal(disk?.creationData?.sourceResourceId, snapshot.id);

    const vm = await client.virtualMachines.get(RG, 'vm1');
    const dataDisks = [...(vm.storageProfile?.dataDisks ?? []), { lun: 4, createOption: 'Attach', managedDisk: { id: disk?.id ?? '' } }];
    const { result: updated } = await drive(client.virtualMachines.update(RG, 'vm1', { storageProfile: { dataDisks } }, { ifMatch: vm.etag ?? '*' }));
    assert.deepEqual(updated?.storageProfile?.dataDisks?.map((d) => d.lun), [0, 4]);
    assert.equal(updated?.provisioningState, 'Succeeded');

    await drive(client.snapshots.delete(RG, 'sdk-snap'));
    assert.equal(server.state.snapshot('sdk-snap'), undefined);
    const absent = client.snapshots.delete(RG, 'sdk-snap');
    await absent.submitted();
    assert.equal(absent.isDone, true, 'a 204 ends the delete at once');
  });

  it('also completes through the SDK’s own pollUntilDone', async () => {
    const poller = client.snapshots.createOrUpdate(
      RG,
      'sdk-wait',
      { location: 'westeurope', creationData: { createOption: 'Copy', sourceResourceId: diskId(server, 'data1') } },
      { updateIntervalInMs: 0 },
    );
    const snapshot = await poller.pollUntilDone();
    assert.equal(snapshot.provisioningState, 'Succeeded');
    assert.equal(snapshot.incremental, false);
  });

  it('surfaces ARM errors as RestErrors with ARM’s code and status', async () => {
    await assert.rejects(client.snapshots.get(RG, 'missing'), (err: { statusCode?: number; code?: string; name?: string }) => {
      assert.equal(err.name, 'RestError');
      assert.equal(err.statusCode, 404);
      assert.equal(err.code, 'ResourceNotFound');
      return true;
    });
    await assert.rejects(clientFor('wrong').virtualMachines.get(RG, 'vm1'), (err: { statusCode?: number; code?: string }) => {
      assert.equal(err.statusCode, 401);
      assert.equal(err.code, 'InvalidAuthenticationToken');
      return true;
    });
  });

  it('makes a failed operation fail the SDK poller with ARM’s code and message', async () => {
    server.state.failNextOperation({ type: 'snapshots', name: 'sdk-fail', code: 'InternalOperationError', message: 'storage unavailable' });
    const poller = client.snapshots.createOrUpdate(RG, 'sdk-fail', { location: 'westeurope', creationData: { createOption: 'Copy', sourceResourceId: diskId(server, 'data1') } });
    await assert.rejects(drive(poller), /The long-running operation has failed\. InternalOperationError\. storage unavailable/);
    assert.equal(poller.operationState?.status, 'failed');
    assert.equal((await client.snapshots.get(RG, 'sdk-fail')).provisioningState, 'Failed');
  });

  it('sees exactly the api-versions the client sends', () => {
    const sent = new Set(server.state.requests.map((r) => r.apiVersion));
    assert.deepEqual([...sent].sort(), [...API_VERSIONS.disk, ...API_VERSIONS.compute].sort());
  });
});

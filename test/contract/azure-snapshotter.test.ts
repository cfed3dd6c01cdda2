/**
 * The Azure snapshotter (providers/azure/snapshotter.ts) held to providers/snapshotter.ts against
 * the Azure Compute test server (in-process, HTTPS on 127.0.0.1), through the real
 * @azure/arm-compute client: describing a VM, creating snapshots all at once, polling their
 * operations, incremental completion, failures, deletes, restore disks and attaching them, every
 * error kind, throttling, timeouts through the injected sleep, and close.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { createAzureSnapshotter, createSnapshotter } from '../../providers/azure/snapshotter.ts';
import { isSnapshotError, SnapshotCreateError } from '../../providers/snapshotter.ts';
import type { DiskInfo, SnapshotErrorKind, Snapshotter, SnapshotterOptions } from '../../providers/snapshotter.ts';
import { freePort } from '../helpers/ports.ts';
import { startAzureComputeServer } from '../servers/azure-compute/index.ts';
import type { AzureComputeServerHandle } from '../servers/azure-compute/index.ts';

const TEST_TIMEOUT = { timeout: 60_000 };
const RG = 'cloudbarman-test';
/** The snapshotter's pause between polls of an operation. */
const POLL_INTERVAL_MS = 2_000;

/** Sleeps the snapshotter asked for, without waiting: the only clock the tests need. */
interface SleepLog {
  sleeps: number[];
  sleep: SnapshotterOptions['sleep'];
}

/** A sleep that records and returns at once (and honours an aborted signal, as a real sleep does). */
function sleepLog(): SleepLog {
  const sleeps: number[] = [];
  return {
    sleeps,
    sleep: async (ms, signal) => {
      signal?.throwIfAborted();
      sleeps.push(ms);
    },
  };
}

/** A credential that hands out a fixed token, as the test server cannot do Entra ID. */
function tokenCredential(token: string): { getToken(): Promise<{ token: string; expiresOnTimestamp: number }> } {
  return { getToken: async () => ({ token, expiresOnTimestamp: Date.now() + 3_600_000 }) };
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

/** Opens a snapshotter on a server; the test closes it. */
async function open(
  server: AzureComputeServerHandle,
  log: SleepLog,
  extra: Partial<SnapshotterOptions> = {},
  token = server.token,
): Promise<Snapshotter> {
  return await createAzureSnapshotter(
    {
      azureSubscriptionId: server.subscriptionId,
      azureResourceGroup: RG,
      endpointUrl: server.endpoint,
      operationTimeoutMs: 600_000,
      sleep: log.sleep,
      ...extra,
    },
    { credential: tokenCredential(token), trustedCertificates: server.ca },
  );
}

/** Runs fn with a snapshotter and closes it whatever happens. */
async function withSnapshotter<T>(server: AzureComputeServerHandle, log: SleepLog, fn: (s: Snapshotter) => Promise<T>, extra: Partial<SnapshotterOptions> = {}): Promise<T> {
  const snapshotter = await open(server, log, extra);
  try {
    return await fn(snapshotter);
  } finally {
    await snapshotter.close();
  }
}

describe('Azure snapshotter: options', TEST_TIMEOUT, () => {
  const base: SnapshotterOptions = {
    azureSubscriptionId: '6f1a2b3c-4d5e-4f60-8a9b-0c1d2e3f4a5b',
    azureResourceGroup: 'rg',
    operationTimeoutMs: 1_000,
    sleep: async () => {},
  };
  const credential = { credential: tokenCredential('unused') };

  it("refuses missing or malformed settings with 'invalid' before any request", async () => {
    await assertKind(createSnapshotter({ ...base, azureSubscriptionId: undefined }), 'invalid');
    await assertKind(createAzureSnapshotter({ ...base, azureSubscriptionId: '  ' }, credential), 'invalid');
    await assertKind(createAzureSnapshotter({ ...base, azureSubscriptionId: 'my-subscription' }, credential), 'invalid');
    await assertKind(createAzureSnapshotter({ ...base, azureResourceGroup: undefined }, credential), 'invalid');
    await assertKind(createAzureSnapshotter({ ...base, azureResourceGroup: 'ends-with.' }, credential), 'invalid');
    await assertKind(createAzureSnapshotter({ ...base, operationTimeoutMs: 0 }, credential), 'invalid');
    const error = await assertKind(createAzureSnapshotter({ ...base, endpointUrl: 'http://127.0.0.1:1' }, credential), 'invalid');
    assert.match(error.message, /must be https/);
    await assertKind(createAzureSnapshotter({ ...base, endpointUrl: 'not a url' }, credential), 'invalid');
    await assertKind(createAzureSnapshotter({ ...base, endpointUrl: 'https://management.example/?sig=x' }, credential), 'invalid');
  });

  it('opens without a request, and names itself azure', async () => {
    const snapshotter = await createAzureSnapshotter({ ...base, endpointUrl: 'https://management.example/' }, credential);
    assert.equal(snapshotter.provider, 'azure');
    await snapshotter.close();
  });
});

describe('Azure snapshotter against the Azure Compute test server', TEST_TIMEOUT, () => {
  let server: AzureComputeServerHandle;
  let log: SleepLog;
  let pg1: { data: DiskInfo; wal: DiskInfo };

  before(async () => {
    server = await startAzureComputeServer({ operationPolls: 2, backgroundCopyPolls: 3 });
    server.state.addVm({ name: 'pg1', zone: '1', dataDisks: [{ name: 'pg1-data', sizeGiB: 128 }, { name: 'pg1-wal', sizeGiB: 32, lun: 3 }] });
    server.state.addVm({ name: 'pg2', zone: '1', dataDisks: [{ name: 'pg2-data', sizeGiB: 64, sku: 'PremiumV2_LRS' }] });
    server.state.addVm({ name: 'recovery', zone: '1', dataDisks: [{ name: 'recovery-scratch', lun: 0 }] });
    const described = await withSnapshotter(server, sleepLog(), async (s) => await s.describeInstance('pg1'));
    const [, data, wal] = described.disks;
    assert.ok(data !== undefined && wal !== undefined);
    pg1 = { data, wal };
  });
  after(async () => {
    await server.stop();
  });
  beforeEach(() => {
    log = sleepLog();
    server.state.operationPolls = 2;
  });

  describe('describeInstance', () => {
    it('lists the OS disk and the data disks with their LUNs, sizes and zone', async () => {
      const instance = await withSnapshotter(server, log, async (s) => await s.describeInstance('pg1'));
      assert.equal(instance.name, 'pg1');
      assert.equal(instance.zone, '1');
      assert.match(instance.id, /\/resourceGroups\/cloudbarman-test\/providers\/Microsoft\.Compute\/virtualMachines\/pg1$/);
      assert.deepEqual(
        instance.disks.map((d) => [d.name, d.device, d.sizeGiB, d.zone]),
        [
          ['pg1_OsDisk', 'os', 30, '1'],
          ['pg1-data', 'lun 0', 128, '1'],
          ['pg1-wal', 'lun 3', 32, '1'],
        ],
      );
      // The VM reports disk ids with an upper-case resource group; the snapshotter returns the disks' own ids.
      assert.equal(instance.disks[1]?.id, `/subscriptions/${server.subscriptionId}/resourceGroups/${RG}/providers/Microsoft.Compute/disks/pg1-data`);
      assert.deepEqual(log.sleeps, [], 'reads do not sleep');
    });

    it('takes the VM by ARM id too', async () => {
      const id = `/subscriptions/${server.subscriptionId}/resourceGroups/${RG}/providers/Microsoft.Compute/virtualMachines/pg1`;
      const instance = await withSnapshotter(server, log, async (s) => await s.describeInstance(id));
      assert.equal(instance.disks.length, 3);
    });

    it("throws 'not-found' for an unknown VM and 'invalid' for an id of another kind or subscription", async () => {
      await withSnapshotter(server, log, async (s) => {
        await assertKind(s.describeInstance('no-such-vm'), 'not-found');
        await assertKind(s.describeInstance(pg1.data.id), 'invalid');
        await assertKind(s.describeInstance(`/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/${RG}/providers/Microsoft.Compute/virtualMachines/pg1`), 'invalid');
      });
    });

    it('no longer lists a disk that was detached', async () => {
      server.state.addVm({ name: 'pg3', dataDisks: [{ name: 'pg3-data' }] });
      server.state.detach('pg3', 'pg3-data');
      const instance = await withSnapshotter(server, log, async (s) => await s.describeInstance('pg3'));
      assert.deepEqual(instance.disks.map((d) => d.name), ['pg3_OsDisk']);
    });
  });

  describe('createSnapshots', () => {
    it('creates every snapshot before polling any, incremental, tagged, and waits for the create operations', async () => {
      const before = server.state.requests.length;
      const infos = await withSnapshotter(server, log, async (s) =>
        await s.createSnapshots([
          { disk: pg1.data, name: 'b1-data', tags: { server: 'pg1', backup: 'b1' } },
          { disk: pg1.wal, name: 'b1-wal', tags: { server: 'pg1', backup: 'b1' } },
        ]),
      );
      assert.deepEqual(
        infos.map((i) => [i.name, i.diskId, i.state, i.pointInTimeFixed, i.progress]),
        [
          ['b1-data', pg1.data.id, 'completed', true, undefined],
          ['b1-wal', pg1.wal.id, 'completed', true, undefined],
        ],
      );
      for (const name of ['b1-data', 'b1-wal']) {
        const stored = server.state.snapshot(name);
        assert.ok(stored !== undefined);
        assert.deepEqual(stored.tags, { server: 'pg1', backup: 'b1' });
        assert.equal(stored.incremental, true);
        assert.equal(stored.provisioningState, 'Succeeded');
        assert.equal(stored.location, 'westeurope');
      }
      const requests = server.state.requests.slice(before).map((r) => `${r.method} ${r.path}`);
      const puts = requests.flatMap((r, i) => (r.startsWith('PUT ') ? [i] : []));
      const firstPoll = requests.findIndex((r) => r.includes('/DiskOperations/'));
      assert.equal(puts.length, 2);
      assert.ok(firstPoll > 0 && puts.every((i) => i < firstPoll), `all creates were sent before the first poll: ${requests.join(', ')}`);
      assert.deepEqual(log.sleeps, [POLL_INTERVAL_MS, POLL_INTERVAL_MS, POLL_INTERVAL_MS, POLL_INTERVAL_MS], 'two polls per operation, each after a pause');
    });

    it('polls a slow create operation until it ends, sleeping between polls', async () => {
      server.state.operationPolls = 5;
      const before = server.state.requests.length;
      const [info] = await withSnapshotter(server, log, async (s) => await s.createSnapshots([{ disk: pg1.data, name: 'slow-data', tags: {} }]));
      assert.equal(info?.state, 'completed');
      const polls = server.state.requests.slice(before).filter((r) => r.path.includes('/DiskOperations/')).length;
      assert.equal(polls, 5);
      assert.equal(log.sleeps.length, 5);
    });

    it('returns an empty list for no requests, and refuses a name twice', async () => {
      await withSnapshotter(server, log, async (s) => {
        assert.deepEqual(await s.createSnapshots([]), []);
        await assertKind(
          s.createSnapshots([
            { disk: pg1.data, name: 'twice', tags: {} },
            { disk: pg1.wal, name: 'twice', tags: {} },
          ]),
          'invalid',
        );
      });
      assert.equal(server.state.snapshot('twice'), undefined);
    });

    it('reports an incremental snapshot of a Premium SSD v2 disk pending until its background copy reaches 100', async () => {
      await withSnapshotter(server, log, async (s) => {
        const [disk] = (await s.describeInstance('pg2')).disks.slice(1);
        assert.ok(disk !== undefined);
        const [info] = await s.createSnapshots([{ disk, name: 'v2-data', tags: {} }]);
        assert.ok(info !== undefined);
        assert.equal(info.pointInTimeFixed, true, 'fixed once the create operation succeeded');
        assert.equal(info.state, 'pending');
        const progress: (number | undefined)[] = [info.progress];
        let now = info;
        while (now.state === 'pending') {
          const next = await s.describeSnapshot(info.id);
          assert.ok(next !== undefined && progress.length < 10);
          progress.push(next.progress);
          now = next;
        }
        assert.deepEqual(progress, [33, 67, 100]);
        assert.equal(now.state, 'completed');
      });
    });

    it("fails with 'failed' and ARM's error when a create operation fails, returning every snapshot that exists", async () => {
      server.state.failNextOperation({ type: 'snapshots', name: 'f-wal', code: 'InternalOperationError', message: 'snapshot storage unavailable' });
      await withSnapshotter(server, log, async (s) => {
        const error = await assertKind(
          s.createSnapshots([
            { disk: pg1.data, name: 'f-data', tags: {} },
            { disk: pg1.wal, name: 'f-wal', tags: {} },
          ]),
          'failed',
        );
        assert.ok(error instanceof SnapshotCreateError);
        assert.match(error.message, /creating snapshot f-wal failed: InternalOperationError\. snapshot storage unavailable/);
        assert.deepEqual(
          error.started.map((i) => [i.name, i.state]),
          [
            ['f-data', 'completed'],
            ['f-wal', 'failed'],
          ],
        );
        const failed = await s.describeSnapshot(error.started[1]?.id ?? '');
        assert.equal(failed?.state, 'failed');
        assert.equal(failed?.pointInTimeFixed, false);
        assert.match(failed?.error ?? '', /Failed/);
      });
    });

    it("fails with 'not-found' and starts nothing when a disk does not exist", async () => {
      const ghost: DiskInfo = { ...pg1.data, id: pg1.data.id.replace('pg1-data', 'ghost') };
      await withSnapshotter(server, log, async (s) => {
        const error = await assertKind(
          s.createSnapshots([
            { disk: pg1.data, name: 'g-data', tags: {} },
            { disk: ghost, name: 'g-ghost', tags: {} },
          ]),
          'not-found',
        );
        assert.ok(error instanceof SnapshotCreateError);
        assert.deepEqual(error.started, []);
      });
      assert.equal(server.state.snapshot('g-data'), undefined);
    });

    it("fails with 'quota-exceeded', not retried, keeping the snapshots that were created", async () => {
      server.state.quota.snapshots = server.state.snapshots().length + 1;
      const before = server.state.requests.length;
      try {
        await withSnapshotter(server, log, async (s) => {
          const error = await assertKind(
            s.createSnapshots([
              { disk: pg1.data, name: 'q-data', tags: {} },
              { disk: pg1.wal, name: 'q-wal', tags: {} },
            ]),
            'quota-exceeded',
          );
          assert.ok(error instanceof SnapshotCreateError);
          assert.equal(error.retryable, false);
          assert.match(error.message, /quota/);
          assert.equal(error.started.length, 1);
        });
      } finally {
        server.state.quota.snapshots = Number.POSITIVE_INFINITY;
      }
      const puts = server.state.requests.slice(before).filter((r) => r.method === 'PUT');
      assert.equal(puts.length, 2, 'one PUT each: the refused one was not retried');
      assert.equal(log.sleeps.filter((ms) => ms !== POLL_INTERVAL_MS).length, 0, 'no backoff sleeps');
    });

    it("fails with 'timeout' once the operation outlives operationTimeoutMs, counted in injected sleeps", async () => {
      server.state.operationPolls = 1_000;
      await withSnapshotter(
        server,
        log,
        async (s) => {
          const error = await assertKind(s.createSnapshots([{ disk: pg1.data, name: 't-data', tags: {} }]), 'timeout');
          assert.ok(error instanceof SnapshotCreateError);
          assert.deepEqual(error.started.map((i) => [i.name, i.state, i.pointInTimeFixed]), [['t-data', 'pending', false]]);
        },
        { operationTimeoutMs: 9_000 },
      );
      assert.deepEqual(log.sleeps, [2_000, 2_000, 2_000, 2_000, 1_000]);
    });
  });

  describe('describeSnapshot and deleteSnapshot', () => {
    it('describes by id or name, and returns undefined for a snapshot that does not exist', async () => {
      await withSnapshotter(server, log, async (s) => {
        const [created] = await s.createSnapshots([{ disk: pg1.data, name: 'd-data', tags: {} }]);
        assert.ok(created !== undefined);
        assert.deepEqual(await s.describeSnapshot(created.id), created);
        assert.equal((await s.describeSnapshot('d-data'))?.id, created.id);
        assert.equal(await s.describeSnapshot(created.id.replace('d-data', 'never')), undefined);
        await assertKind(s.describeSnapshot(pg1.data.id), 'invalid');
      });
    });

    it('deletes idempotently', async () => {
      await withSnapshotter(server, log, async (s) => {
        const [created] = await s.createSnapshots([{ disk: pg1.wal, name: 'del-wal', tags: {} }]);
        assert.ok(created !== undefined);
        await s.deleteSnapshot(created.id);
        assert.equal(server.state.snapshot('del-wal'), undefined);
        assert.equal(await s.describeSnapshot(created.id), undefined);
        await s.deleteSnapshot(created.id);
        await s.deleteSnapshot('del-wal');
      });
    });
  });

  describe('createDisk and attachDisk', () => {
    it('restores a disk from a snapshot in a zone, attaches it at the lowest free LUN, and knows where it appears', async () => {
      await withSnapshotter(server, log, async (s) => {
        const [snapshot] = await s.createSnapshots([{ disk: pg1.data, name: 'r-data', tags: {} }]);
        assert.ok(snapshot !== undefined);
        const disk = await s.createDisk({ snapshotId: snapshot.id, name: 'restored-data', zone: '1', tags: { restore: 'r1' } });
        assert.equal(disk.name, 'restored-data');
        assert.equal(disk.sizeGiB, 128);
        assert.equal(disk.zone, '1');
        assert.equal(disk.sourceSnapshotId, snapshot.id);
        assert.equal(disk.device, undefined);
        assert.deepEqual(server.state.disk('restored-data')?.tags, { restore: 'r1' });
        assert.throws(() => s.localDevicePaths(disk), (err: unknown) => isSnapshotError(err, 'not-attached'));

        const attached = await s.attachDisk('recovery', disk.id);
        assert.equal(attached.device, 'lun 1', 'LUN 0 is taken by the scratch disk');
        assert.deepEqual(s.localDevicePaths(attached), ['/dev/disk/azure/scsi1/lun1', '/dev/disk/azure/data/by-lun/1']);
        assert.match(server.state.disk('restored-data')?.managedBy ?? '', /virtualMachines\/recovery$/);
        assert.deepEqual(server.state.vm('recovery')?.dataDisks.map((d) => d.lun), [0, 1]);

        const patches = server.state.requests.filter((r) => r.method === 'PATCH').length;
        const again = await s.attachDisk('recovery', disk.id);
        assert.equal(again.device, 'lun 1');
        assert.equal(server.state.requests.filter((r) => r.method === 'PATCH').length, patches, 'an attached disk is returned as is');
        const described = await s.describeInstance('recovery');
        assert.deepEqual(s.localDevicePaths(described.disks[0] ?? disk), ['/dev/disk/azure/root', '/dev/disk/azure/os']);
      });
    });

    it('attaches several disks to one VM concurrently, one update at a time', async () => {
      server.state.addVm({ name: 'recovery2' });
      for (const name of ['c1', 'c2', 'c3']) server.state.addDisk({ name });
      await withSnapshotter(server, log, async (s) => {
        const attached = await Promise.all(['c1', 'c2', 'c3'].map(async (name) => await s.attachDisk('recovery2', name)));
        assert.deepEqual(attached.map((d) => d.device).sort(), ['lun 0', 'lun 1', 'lun 2']);
      });
      assert.equal(server.state.vm('recovery2')?.dataDisks.length, 3);
    });

    it('re-reads the VM when another change wins the etag race', async () => {
      server.state.addVm({ name: 'recovery3' });
      server.state.addDisk({ name: 'race' });
      server.state.injectFault({ method: 'PATCH', pathIncludes: '/virtualMachines/recovery3', status: 412, code: 'PreconditionFailed', message: 'The condition specified using HTTP conditional header(s) is not met.' });
      const attached = await withSnapshotter(server, log, async (s) => await s.attachDisk('recovery3', 'race'));
      assert.equal(attached.device, 'lun 0');
    });

    it("throws 'not-found' for a missing snapshot, disk or VM, and 'failed' when the disk create fails", async () => {
      await withSnapshotter(server, log, async (s) => {
        await assertKind(s.createDisk({ snapshotId: 'no-such-snapshot', name: 'x1', tags: {} }), 'not-found');
        await assertKind(s.attachDisk('recovery', 'no-such-disk'), 'not-found');
        await assertKind(s.attachDisk('no-such-vm', pg1.data.id), 'not-found');
        const [snapshot] = await s.createSnapshots([{ disk: pg1.wal, name: 'cf-wal', tags: {} }]);
        assert.ok(snapshot !== undefined);
        server.state.failNextOperation({ type: 'disks', name: 'cf-disk', code: 'InternalOperationError', message: 'no capacity' });
        const error = await assertKind(s.createDisk({ snapshotId: snapshot.id, name: 'cf-disk', tags: {} }), 'failed');
        assert.match(error.message, /no capacity/);
      });
    });

    it("throws 'invalid' for what Azure refuses: a bad name, a bad zone, a disk owned by another VM", async () => {
      await withSnapshotter(server, log, async (s) => {
        const [snapshot] = await s.createSnapshots([{ disk: pg1.wal, name: 'iv-wal', tags: {} }]);
        assert.ok(snapshot !== undefined);
        await assertKind(s.createDisk({ snapshotId: snapshot.id, name: 'bad name', tags: {} }), 'invalid');
        await assertKind(s.createDisk({ snapshotId: snapshot.id, name: 'iv-disk', zone: '9', tags: {} }), 'invalid');
        await assertKind(s.attachDisk('recovery', pg1.data.id), 'invalid');
      });
    });

    it("fails with 'timeout' when the disk create outlives operationTimeoutMs", async () => {
      server.state.operationPolls = 1_000;
      await withSnapshotter(
        server,
        log,
        async (s) => {
          const snapshot = await s.describeSnapshot('r-data');
          assert.ok(snapshot !== undefined);
          await assertKind(s.createDisk({ snapshotId: snapshot.id, name: 'slow-disk', tags: {} }), 'timeout');
        },
        { operationTimeoutMs: 4_000 },
      );
      assert.deepEqual(log.sleeps, [2_000, 2_000]);
    });
  });

  describe('errors, throttling and close', () => {
    it('retries throttled requests after Retry-After through the injected sleep', async () => {
      server.state.throttle({ times: 2, retryAfterSeconds: 7, method: 'GET', pathIncludes: '/virtualMachines/pg1' });
      const instance = await withSnapshotter(server, log, async (s) => await s.describeInstance('pg1'));
      assert.equal(instance.disks.length, 3);
      assert.deepEqual(log.sleeps, [7_000, 7_000]);
    });

    it('retries a throttled poll of a long-running operation without losing the operation', async () => {
      server.state.throttle({ times: 1, retryAfterSeconds: 3, pathIncludes: '/DiskOperations/' });
      const [info] = await withSnapshotter(server, log, async (s) => await s.createSnapshots([{ disk: pg1.data, name: 'th-data', tags: {} }]));
      assert.equal(info?.state, 'completed');
      assert.deepEqual(log.sleeps, [POLL_INTERVAL_MS, 3_000, POLL_INTERVAL_MS]);
    });

    it("gives up with a retryable 'throttled' after a bounded number of retries", async () => {
      server.state.throttle({ times: 100, retryAfterSeconds: 1, pathIncludes: '/virtualMachines/pg2' });
      const before = server.state.requests.length;
      try {
        const error = await withSnapshotter(server, log, async (s) => await assertKind(s.describeInstance('pg2'), 'throttled'));
        assert.equal((error as { retryable?: boolean }).retryable, true);
      } finally {
        // Use up the rest, so that later tests see pg2 again.
        while (server.state.takeFault('GET', '/virtualMachines/pg2') !== undefined);
      }
      assert.equal(server.state.requests.length - before, 5, 'the first try and four retries');
      assert.deepEqual(log.sleeps, [1_000, 1_000, 1_000, 1_000]);
    });

    it("reports 'access-denied' for a wrong token, a refused role and a credential that has no token", async () => {
      const wrong = await open(server, log, {}, 'not-the-token');
      try {
        await assertKind(wrong.describeInstance('pg1'), 'access-denied');
      } finally {
        await wrong.close();
      }
      server.state.injectFault({
        method: 'PUT',
        pathIncludes: '/snapshots/ad-data',
        status: 403,
        code: 'AuthorizationFailed',
        message: "The client does not have authorization to perform action 'Microsoft.Compute/snapshots/write'.",
      });
      await withSnapshotter(server, log, async (s) => {
        await assertKind(s.createSnapshots([{ disk: pg1.data, name: 'ad-data', tags: {} }]), 'access-denied');
      });
      const noToken = await createAzureSnapshotter(
        { azureSubscriptionId: server.subscriptionId, azureResourceGroup: RG, endpointUrl: server.endpoint, operationTimeoutMs: 1_000, sleep: log.sleep },
        {
          credential: {
            getToken: async () => {
              throw Object.assign(new Error('no managed identity endpoint'), { name: 'CredentialUnavailableError' });
            },
          },
          trustedCertificates: server.ca,
        },
      );
      try {
        await assertKind(noToken.describeInstance('pg1'), 'access-denied');
      } finally {
        await noToken.close();
      }
    });

    it("reports 'unreachable' (retryable) when nothing listens at the endpoint", async () => {
      const port = await freePort();
      const snapshotter = await createAzureSnapshotter(
        { azureSubscriptionId: server.subscriptionId, azureResourceGroup: RG, endpointUrl: `https://127.0.0.1:${port}`, operationTimeoutMs: 1_000, sleep: log.sleep },
        { credential: tokenCredential(server.token), trustedCertificates: server.ca },
      );
      try {
        const error = await assertKind(snapshotter.describeInstance('pg1'), 'unreachable');
        assert.equal((error as { retryable?: boolean }).retryable, true);
      } finally {
        await snapshotter.close();
      }
    });

    it("reports 'unreachable' when the endpoint's certificate is not trusted", async () => {
      const snapshotter = await createAzureSnapshotter(
        { azureSubscriptionId: server.subscriptionId, azureResourceGroup: RG, endpointUrl: server.endpoint, operationTimeoutMs: 1_000, sleep: log.sleep },
        { credential: tokenCredential(server.token) },
      );
      try {
        await assertKind(snapshotter.describeInstance('pg1'), 'unreachable');
      } finally {
        await snapshotter.close();
      }
    });

    it('stops polling when the signal aborts', async () => {
      server.state.operationPolls = 1_000;
      const controller = new AbortController();
      let pauses = 0;
      const snapshotter = await open(server, log, {
        sleep: async (_ms, signal) => {
          pauses += 1;
          if (pauses === 3) controller.abort(new Error('backup cancelled'));
          signal?.throwIfAborted();
        },
      });
      try {
        const error = await assertKind(snapshotter.createSnapshots([{ disk: pg1.data, name: 'ab-data', tags: {} }], controller.signal), 'failed');
        assert.ok(error instanceof SnapshotCreateError);
        assert.equal(pauses, 3);
      } finally {
        await snapshotter.close();
      }
    });

    it("closes: later calls fail with 'invalid', and closing twice is harmless", async () => {
      const snapshotter = await open(server, log);
      await snapshotter.describeInstance('pg1');
      await snapshotter.close();
      await snapshotter.close();
      await assertKind(snapshotter.describeInstance('pg1'), 'invalid');
      await assertKind(snapshotter.createSnapshots([{ disk: pg1.data, name: 'closed', tags: {} }]), 'invalid');
      await assertKind(snapshotter.describeSnapshot('b1-data'), 'invalid');
    });
  });
});

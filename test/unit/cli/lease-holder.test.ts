// A lease whose holder was killed (SIGKILL) on this machine is taken over at once; any doubt about
// the holder (another host, another OS instance, a live pid, an old record without an instance)
// leaves the lease to expire as before.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { hostname } from 'node:os';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { createObjectStore } from '../../../providers/local/index.ts';
import type { ObjectStore } from '../../../providers/object-store.ts';
import { CloudbarmanError } from '../../../src/core/errors.ts';
import { acquireLease } from '../../../src/core/locks/lease.ts';
import { holderGone, leaseOwner, osInstance } from '../../../src/cli/lease-holder.ts';
import { makeTempDir, removeTempDir } from '../../helpers/tmp.ts';

/** The pid of a process that has exited (and was reaped): nothing runs under it now. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  const pid = child.pid;
  assert.ok(pid !== undefined);
  await new Promise((r) => child.once('close', r));
  return pid;
}

describe('lease holder liveness', () => {
  let dir: string;
  let store: ObjectStore;
  before(async () => {
    dir = await makeTempDir('cloudbarman-lease-holder');
    store = await createObjectStore({ destination: pathToFileURL(dir).href, multipart: { partSizeBytes: 5 << 20, concurrency: 2 }, connectTimeoutMs: 1000, requestTimeoutMs: 5000 });
  });
  after(async () => {
    await store.close();
    await removeTempDir(dir);
  });

  it('knows this OS instance on Linux, and records it in the owner', { skip: process.platform !== 'linux' }, () => {
    const here = osInstance();
    assert.match(here ?? '', /^[0-9a-f-]{36}\/pid:\[\d+\]$/);
    assert.deepEqual(leaseOwner('cron'), { host: hostname(), pid: process.pid, command: 'cron', instance: here });
  });

  it('a dead holder of this instance is gone; a live one, another host or instance, or no instance is not', { skip: process.platform !== 'linux' }, async () => {
    const pid = await deadPid();
    const here = leaseOwner('x');
    assert.equal(holderGone({ ...here, pid }), true);
    assert.equal(holderGone({ ...here, pid: process.pid }), false, 'this very process');
    assert.equal(holderGone({ ...here, pid: process.ppid }), false, 'a live process');
    assert.equal(holderGone({ ...here, pid, host: `${hostname()}-other` }), false, 'another host');
    assert.equal(holderGone({ ...here, pid, instance: `${here.instance ?? ''}x` }), false, 'another OS instance');
    const { instance: _omitted, ...old } = { ...here, pid };
    assert.equal(holderGone(old), false, 'a record without an instance');
  });

  it('acquireLease takes over at once from a dead holder, and still refuses a live one', { skip: process.platform !== 'linux' }, async () => {
    const timing = { ttlMs: 300_000, skewMs: 60_000, now: () => new Date(), holderGone };
    await acquireLease(store, 'srv', 'retention', { ...leaseOwner('delete --retention'), pid: await deadPid() }, timing);
    const taken = await acquireLease(store, 'srv', 'retention', leaseOwner('delete --retention'), timing);
    assert.equal(taken.record.seq, 2);
    await assert.rejects(acquireLease(store, 'srv', 'retention', leaseOwner('delete --retention'), timing), (err: unknown) => {
      assert.ok(err instanceof CloudbarmanError && err.kind === 'locked', String(err));
      return true;
    }, 'the holder (this process) is alive');
    const { holderGone: _none, ...withoutCheck } = timing;
    await taken.release();
    await acquireLease(store, 'srv', 'retention', { ...leaseOwner('delete --retention'), pid: await deadPid() }, withoutCheck);
    await assert.rejects(acquireLease(store, 'srv', 'retention', leaseOwner('delete --retention'), withoutCheck), /held by/, 'without the check, a dead holder blocks until expiry');
  });
});

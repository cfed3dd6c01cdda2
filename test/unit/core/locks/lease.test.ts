import assert from 'node:assert/strict';
import { buffer } from 'node:stream/consumers';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { createObjectStore } from '../../../../providers/local/index.ts';
import type { ObjectStore } from '../../../../providers/object-store.ts';
import { listAll } from '../../../../providers/object-store.ts';
import { CloudbarmanError } from '../../../../src/core/errors.ts';
import { acquireLease, leasePrefix, withLease } from '../../../../src/core/locks/lease.ts';
import type { LeaseOwner, LeaseRecord, LeaseTiming } from '../../../../src/core/locks/lease.ts';
import { makeTempDir, removeTempDir } from '../../../helpers/tmp.ts';

const OWNER_A: LeaseOwner = { host: 'host-a', pid: 101, command: 'cron' };
const OWNER_B: LeaseOwner = { host: 'host-b', pid: 202, command: 'backup' };

/** A clock the test moves by hand. */
function manualClock(start = Date.parse('2026-11-22T03:00:00Z')): { now: () => Date; advance(ms: number): void } {
  let t = start;
  return { now: () => new Date(t), advance: (ms) => { t += ms; } };
}

function assertLocked(err: unknown, message: RegExp): true {
  assert.ok(err instanceof CloudbarmanError, String(err));
  assert.equal(err.kind, 'locked');
  assert.match(err.message, message);
  return true;
}

async function keysOf(store: ObjectStore, server: string, name: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const item of listAll(store, leasePrefix(server, name))) keys.push(item.key.slice(leasePrefix(server, name).length));
  return keys.sort();
}

describe('leases', () => {
  let dir: string;
  let store: ObjectStore;
  before(async () => {
    dir = await makeTempDir('cloudbarman-lease');
    store = await createObjectStore({ destination: pathToFileURL(dir).href, multipart: { partSizeBytes: 5 << 20, concurrency: 2 }, connectTimeoutMs: 1000, requestTimeoutMs: 5000 });
  });
  after(async () => {
    await store.close();
    await removeTempDir(dir);
  });

  it('a live lease refuses a second holder and names the first', async () => {
    const clock = manualClock();
    const timing: LeaseTiming = { ttlMs: 60_000, skewMs: 10_000, now: clock.now };
    const a = await acquireLease(store, 'pg1', 'live', OWNER_A, timing);
    await assert.rejects(acquireLease(store, 'pg1', 'live', OWNER_B, timing), (err) => assertLocked(err, /held by cron on host-a \(pid 101\)/));
    // Still refused after expiry, within the skew allowance.
    clock.advance(65_000);
    await assert.rejects(acquireLease(store, 'pg1', 'live', OWNER_B, timing), (err) => assertLocked(err, /held by/));
    assert.equal(a.record.seq, 1);
  });

  it('a released lease is taken at once with the next seq, and the old object is cleaned up', async () => {
    const timing: LeaseTiming = { ttlMs: 60_000, skewMs: 10_000, now: manualClock().now };
    const a = await acquireLease(store, 'pg1', 'release', OWNER_A, timing);
    await a.release();
    await a.release(); // idempotent
    const b = await acquireLease(store, 'pg1', 'release', OWNER_B, timing);
    assert.equal(b.record.seq, 2);
    assert.deepEqual(await keysOf(store, 'pg1', 'release'), ['000000000002']);
    await b.release();
    // Seqs are never reused: the released object stays as the highest.
    assert.deepEqual(await keysOf(store, 'pg1', 'release'), ['000000000002']);
    const { body } = await store.get(`${leasePrefix('pg1', 'release')}000000000002`);
    const record = JSON.parse((await buffer(body)).toString()) as LeaseRecord;
    assert.equal(record.released, true);
    assert.deepEqual(record.owner, OWNER_B);
  });

  it('renewal extends the lease; a holder that let it expire is broken and learns it lost', async () => {
    const clock = manualClock();
    const timing: LeaseTiming = { ttlMs: 60_000, skewMs: 10_000, now: clock.now };
    const a = await acquireLease(store, 'pg1', 'expiry', OWNER_A, timing);
    clock.advance(50_000);
    await a.renew();
    clock.advance(50_000); // 100 s after acquiring, 50 s after renewing: still live
    await assert.rejects(acquireLease(store, 'pg1', 'expiry', OWNER_B, timing), (err) => assertLocked(err, /held by/));
    clock.advance(75_000); // past expiry + skew
    const b = await acquireLease(store, 'pg1', 'expiry', OWNER_B, timing);
    assert.equal(b.record.seq, 2);
    await assert.rejects(a.renew(), (err) => assertLocked(err, /lost the expiry lease/));
    // A paused holder must not overwrite its successor on release either.
    await a.release();
    await assert.rejects(acquireLease(store, 'pg1', 'expiry', OWNER_A, timing), (err) => assertLocked(err, /held by backup on host-b/));
  });

  it('a holder that wakes after its successor released still sees it lost', async () => {
    const clock = manualClock();
    const timing: LeaseTiming = { ttlMs: 60_000, skewMs: 0, now: clock.now };
    const a = await acquireLease(store, 'pg1', 'zombie', OWNER_A, timing);
    clock.advance(30_000);
    // Someone breaks in with a higher seq (as after a clock jump on another host), then releases.
    const raw: LeaseRecord = { ...a.record, seq: 2, token: 'other', owner: OWNER_B, released: true };
    await store.put(`${leasePrefix('pg1', 'zombie')}000000000002`, Buffer.from(JSON.stringify(raw)));
    await assert.rejects(a.renew(), (err) => assertLocked(err, /another run took lease 2/));
  });

  it('withLease aborts the work when the lease is lost, and fails with exit-5 kind', async () => {
    const timing: LeaseTiming = { ttlMs: 300, skewMs: 0, now: () => new Date() };
    let sawAbort = false;
    await assert.rejects(
      withLease(store, 'pg1', 'work', OWNER_A, timing, async (signal) => {
        await store.put(`${leasePrefix('pg1', 'work')}000000000009`, Buffer.from(JSON.stringify({ format_version: 1, name: 'work', seq: 9, token: 't', owner: OWNER_B, acquired_at: new Date().toISOString(), expires_at: new Date(Date.now() + 60_000).toISOString(), released: false })));
        await new Promise<void>((resolve, reject) => {
          const timeout = setTimeout(() => reject(new Error('the lease was not found lost within 5 s')), 5_000);
          signal.addEventListener('abort', () => { clearTimeout(timeout); sawAbort = true; resolve(); }, { once: true });
        });
      }),
      (err) => assertLocked(err, /another run took lease 9/),
    );
    assert.ok(sawAbort);
  });

  it('withLease releases the lease when the work ends, even by an error', async () => {
    const timing: LeaseTiming = { ttlMs: 60_000, skewMs: 0, now: () => new Date() };
    assert.equal(await withLease(store, 'pg1', 'done', OWNER_A, timing, async () => 42), 42);
    await assert.rejects(withLease(store, 'pg1', 'done', OWNER_A, timing, async () => { throw new Error('boom'); }), /boom/);
    const again = await acquireLease(store, 'pg1', 'done', OWNER_B, timing);
    assert.equal(again.record.seq, 3);
  });

  it('an object under locks/ that is not a lease is an integrity error, not a silent break', async () => {
    await store.put(`${leasePrefix('pg1', 'junk')}000000000001`, Buffer.from('not json'));
    await assert.rejects(acquireLease(store, 'pg1', 'junk', OWNER_A, { ttlMs: 1000, skewMs: 0, now: () => new Date() }), (err) => {
      assert.ok(err instanceof CloudbarmanError);
      assert.equal(err.kind, 'integrity');
      return true;
    });
  });
});

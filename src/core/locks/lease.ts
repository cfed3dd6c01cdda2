/**
 * Leases in the store, so that two schedulers on two hosts never back up or apply retention for the
 * same server at once. A lease is a series of objects <server>/locks/<name>/<seq>, each created
 * with create-if-absent: the highest seq is the current lease. Taking a lease means creating the
 * next seq, which only one contender can do. A holder renews by rewriting its own object, and
 * learns it lost the lease when a higher seq appears. Seqs are never reused: a released lease is
 * rewritten as released, not deleted, so a paused holder that wakes up always sees its successor.
 */
import { randomUUID } from 'node:crypto';
import { buffer } from 'node:stream/consumers';
import { CloudbarmanError } from '../errors.ts';
import { storeFailure } from '../store/store-failure.ts';
import { isStoreError, listAll } from '../../../providers/object-store.ts';
import type { ObjectStore } from '../../../providers/object-store.ts';

/** Object format of a lease; readers refuse versions they do not know. */
const LEASE_FORMAT_VERSION = 1;
/** Width of the seq in the key, so that keys sort in seq order. */
const SEQ_DIGITS = 12;

/** Who holds a lease, for the message another contender prints. */
export interface LeaseOwner {
  host: string;
  pid: number;
  /** What the holder is doing, e.g. "backup" or "cron". */
  command: string;
  /** The OS instance the pid belongs to (boot id and pid namespace), when known: only a contender in the
   *  same instance can tell that the holder died (LeaseTiming.holderGone). */
  instance?: string;
}

/** The JSON body of one lease object. */
export interface LeaseRecord {
  format_version: number;
  name: string;
  seq: number;
  /** Random per acquisition: tells this holder's object from any other's. */
  token: string;
  owner: LeaseOwner;
  acquired_at: string;
  /** ISO 8601; after this (plus the skew allowance) the lease may be broken. */
  expires_at: string;
  released: boolean;
}

/** Timing of a lease; the clock is injected so the core never reads the time itself. */
export interface LeaseTiming {
  /** How long a lease lasts without renewal: the longest a crashed holder blocks others. */
  ttlMs: number;
  /** Allowance for clock differences between hosts: a lease is broken only this long after it expired. */
  skewMs: number;
  now: () => Date;
  /** True only when the holder is known to be dead (a process of this OS instance that no longer exists,
   *  e.g. killed with SIGKILL): its lease is taken over at once instead of after its expiry. */
  holderGone?: (holder: LeaseOwner) => boolean;
}

/** Defaults for the CLI: a crashed holder blocks others for at most about six minutes. */
export const DEFAULT_LEASE_TIMING: Omit<LeaseTiming, 'now'> = { ttlMs: 5 * 60_000, skewMs: 60_000 };

/** The folder of one lease's objects. */
export function leasePrefix(server: string, name: string): string {
  return `${server}/locks/${name}/`;
}

function leaseKey(server: string, name: string, seq: number): string {
  return `${leasePrefix(server, name)}${String(seq).padStart(SEQ_DIGITS, '0')}`;
}

/** A lease this process holds. */
export class Lease {
  readonly #store: ObjectStore;
  readonly #server: string;
  readonly #timing: LeaseTiming;
  #record: LeaseRecord;
  #lost = false;

  constructor(store: ObjectStore, server: string, record: LeaseRecord, timing: LeaseTiming) {
    this.#store = store;
    this.#server = server;
    this.#record = record;
    this.#timing = timing;
  }

  /** The lease as last written. */
  get record(): LeaseRecord {
    return this.#record;
  }

  /**
   * Extends the lease by ttl. Throws CloudbarmanError 'locked' when the lease was lost: it expired
   * before this renewal, or a successor exists. The holder must then stop its work.
   */
  async renew(): Promise<void> {
    const name = this.#record.name;
    if (this.#lost) throw lostError(name, 'it was lost earlier');
    const now = this.#timing.now();
    // Renewing an expired lease could race a contender that rightly broke it.
    if (now.getTime() >= Date.parse(this.#record.expires_at)) {
      this.#lost = true;
      throw lostError(name, `it expired at ${this.#record.expires_at} before it was renewed`);
    }
    const latest = await latestSeq(this.#store, this.#server, name);
    if (latest !== undefined && latest > this.#record.seq) {
      this.#lost = true;
      throw lostError(name, `another run took lease ${latest} after it`);
    }
    const next: LeaseRecord = { ...this.#record, expires_at: new Date(now.getTime() + this.#timing.ttlMs).toISOString() };
    await writeRecord(this.#store, this.#server, next, false);
    this.#record = next;
  }

  /** Gives the lease up: rewritten as released (never deleted, so its seq is never reused). Idempotent. */
  async release(): Promise<void> {
    if (this.#lost || this.#record.released) return;
    const latest = await latestSeq(this.#store, this.#server, this.#record.name);
    if (latest !== undefined && latest > this.#record.seq) return; // already someone else's
    const released: LeaseRecord = { ...this.#record, released: true, expires_at: this.#timing.now().toISOString() };
    await writeRecord(this.#store, this.#server, released, false);
    this.#record = released;
  }
}

/**
 * Takes the lease `name` of a server, or throws CloudbarmanError 'locked' (exit 5) naming the
 * holder when a live lease exists or another contender wins the race.
 */
export async function acquireLease(store: ObjectStore, server: string, name: string, owner: LeaseOwner, timing: LeaseTiming): Promise<Lease> {
  const keys = await leaseKeys(store, server, name);
  const latest = keys.at(-1);
  const now = timing.now();
  if (latest !== undefined) {
    const current = await readRecord(store, latest.key);
    if (current !== undefined && !current.released) {
      const breakableAt = Date.parse(current.expires_at) + timing.skewMs;
      if (now.getTime() < breakableAt && timing.holderGone?.(current.owner) !== true) throw heldError(server, name, current);
    }
  }
  const record: LeaseRecord = {
    format_version: LEASE_FORMAT_VERSION,
    name,
    seq: (latest?.seq ?? 0) + 1,
    token: randomUUID(),
    owner,
    acquired_at: now.toISOString(),
    expires_at: new Date(now.getTime() + timing.ttlMs).toISOString(),
    released: false,
  };
  try {
    await writeRecord(store, server, record, true);
  } catch (err) {
    if (isStoreError(err, 'already-exists')) {
      const winner = await readRecord(store, leaseKey(server, name, record.seq));
      throw heldError(server, name, winner);
    }
    throw err;
  }
  // Predecessors are history now; removing them keeps listings short. Best effort: a leftover is harmless.
  const stale = keys.map((k) => k.key);
  if (stale.length > 0) await store.delete(stale).catch(() => undefined);
  return new Lease(store, server, record, timing);
}

/**
 * Runs fn while holding the lease, renewing it every third of its ttl. When a renewal finds the
 * lease lost, the signal passed to fn aborts and the run ends with that error.
 */
export async function withLease<T>(
  store: ObjectStore,
  server: string,
  name: string,
  owner: LeaseOwner,
  timing: LeaseTiming,
  fn: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const lease = await acquireLease(store, server, name, owner, timing);
  const abort = new AbortController();
  let renewing: Promise<void> = Promise.resolve();
  let lostWith: unknown;
  const timer = setInterval(() => {
    renewing = renewing.then(() => lease.renew()).catch((err: unknown) => {
      // A store hiccup is retried at the next tick; only a lost lease stops the work.
      if (err instanceof CloudbarmanError && err.kind === 'locked') {
        lostWith = err;
        abort.abort(err);
        clearInterval(timer);
      }
    });
  }, Math.max(10, Math.floor(timing.ttlMs / 3)));
  timer.unref();
  try {
    const result = await fn(abort.signal);
    if (lostWith !== undefined) throw lostWith;
    return result;
  } finally {
    clearInterval(timer);
    await renewing;
    await lease.release().catch(() => undefined);
  }
}

/** The seqs of a lease, oldest first. */
async function leaseKeys(store: ObjectStore, server: string, name: string): Promise<Array<{ key: string; seq: number }>> {
  const prefix = leasePrefix(server, name);
  const keys: Array<{ key: string; seq: number }> = [];
  try {
    for await (const item of listAll(store, prefix)) {
      const rest = item.key.slice(prefix.length);
      if (/^\d+$/.test(rest)) keys.push({ key: item.key, seq: Number(rest) });
    }
  } catch (err) {
    throw storeFailure(err, `listing lease ${name}`, `${store.url}/${prefix}`);
  }
  return keys.sort((a, b) => a.seq - b.seq);
}

async function latestSeq(store: ObjectStore, server: string, name: string): Promise<number | undefined> {
  return (await leaseKeys(store, server, name)).at(-1)?.seq;
}

/** The record under key; undefined when it vanished. A record that is not a lease is an integrity error. */
async function readRecord(store: ObjectStore, key: string): Promise<LeaseRecord | undefined> {
  let text: string;
  try {
    const { body } = await store.get(key);
    text = (await buffer(body)).toString('utf8');
  } catch (err) {
    if (isStoreError(err, 'not-found')) return undefined;
    throw storeFailure(err, 'reading a lease', `${store.url}/${key}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const record = parsed as Partial<LeaseRecord> | undefined;
  if (record === undefined || record === null || record.format_version !== LEASE_FORMAT_VERSION || typeof record.expires_at !== 'string' || Number.isNaN(Date.parse(record.expires_at))) {
    throw new CloudbarmanError('integrity', `${store.url}/${key} is not a lease cloudbarman ${LEASE_FORMAT_VERSION} understands`, {
      hint: 'if no cloudbarman run is active for this server, delete the object and run again',
    });
  }
  return record as LeaseRecord;
}

async function writeRecord(store: ObjectStore, server: string, record: LeaseRecord, ifAbsent: boolean): Promise<void> {
  const key = leaseKey(server, record.name, record.seq);
  const body = Buffer.from(`${JSON.stringify(record, null, 2)}\n`);
  try {
    await store.put(key, body, { ifAbsent, contentLength: body.byteLength });
  } catch (err) {
    if (ifAbsent && isStoreError(err, 'already-exists')) throw err;
    throw storeFailure(err, `writing lease ${record.name}`, `${store.url}/${key}`);
  }
}

function heldError(server: string, name: string, holder: LeaseRecord | undefined): CloudbarmanError {
  const who = holder === undefined ? 'another run' : `${holder.owner.command} on ${holder.owner.host} (pid ${holder.owner.pid})`;
  const until = holder === undefined ? '' : `, until ${holder.expires_at} unless renewed`;
  return new CloudbarmanError('locked', `the ${name} lease of ${server} is held by ${who}${until}`, {
    hint: 'wait for that run to finish; a lease whose holder died expires on its own',
  });
}

function lostError(name: string, why: string): CloudbarmanError {
  return new CloudbarmanError('locked', `lost the ${name} lease: ${why}`, { hint: 'the work stopped so that two runs never overlap; run it again' });
}

/**
 * Who holds a lease, and whether a holder on this machine is dead. A run killed with SIGKILL never
 * releases its lease; without this, the next run on the same machine would be refused (exit 5) until
 * the lease expired. A holder is known dead only when it ran in this same OS instance (host name,
 * boot id and pid namespace all match) and its pid no longer exists. Anything less certain (another
 * host, another container, a pid now reused by another process, no /proc) counts as alive, and the
 * lease is left to expire as before.
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import type { LeaseOwner } from '../core/locks/lease.ts';

let cachedInstance: string | undefined | null = null;

/** This OS instance: "<boot id>/<pid namespace>", or undefined where /proc does not tell. */
export function osInstance(): string | undefined {
  if (cachedInstance !== null) return cachedInstance;
  try {
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const pidns = readlinkSync('/proc/self/ns/pid');
    cachedInstance = boot !== '' && pidns !== '' ? `${boot}/${pidns}` : undefined;
  } catch {
    cachedInstance = undefined;
  }
  return cachedInstance;
}

/** The owner record of a lease this process takes. */
export function leaseOwner(command: string): LeaseOwner {
  const instance = osInstance();
  return { host: hostname(), pid: process.pid, command, ...(instance === undefined ? {} : { instance }) };
}

/** True only when the holder ran in this OS instance and its process is gone. */
export function holderGone(holder: LeaseOwner): boolean {
  const here = osInstance();
  if (here === undefined || holder.instance !== here || holder.host !== hostname()) return false;
  if (!Number.isSafeInteger(holder.pid) || holder.pid <= 0 || holder.pid === process.pid) return false;
  try {
    process.kill(holder.pid, 0);
    return false; // it exists (or its pid was reused): wait for the expiry
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

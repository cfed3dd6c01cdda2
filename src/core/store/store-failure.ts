/**
 * Turns the contract's StoreError into the operator-facing CloudbarmanError: the exit code
 * follows from the kind, and the message says what failed, where, and what to try.
 */
import { CloudbarmanError, type FailureKind } from '../errors.ts';
import { StoreError, type StoreErrorKind } from '../../../providers/object-store.ts';

const MAPPING: Readonly<Record<StoreErrorKind, { kind: FailureKind; hint: string }>> = {
  'not-found': { kind: 'not-found', hint: 'the object does not exist in the store' },
  'container-not-found': { kind: 'bad-input', hint: 'create the bucket/container/directory, or fix the destination option' },
  'already-exists': { kind: 'integrity', hint: 'an object already exists under that name' },
  'access-denied': { kind: 'bad-input', hint: 'check the credentials and the permissions on the destination' },
  unreachable: { kind: 'unreachable', hint: 'check endpoint_url, the network and that the service is up' },
  // Only reached once the retry policy gave up (retry_timeout): say so, and what helps.
  transient: { kind: 'unreachable', hint: 'the store kept failing for retry_timeout; run again once it recovers, or raise retry_timeout' },
  invalid: { kind: 'bad-input', hint: 'the request was rejected as invalid; check the destination and options' },
  corrupt: { kind: 'integrity', hint: 'the stored object is damaged; it cannot be trusted or read back' },
  failed: { kind: 'failed', hint: 'run with -v for the cause' },
};

/** Wraps err (a StoreError or anything else) as a CloudbarmanError about `what` on `where`. */
export function storeFailure(err: unknown, what: string, where: string): CloudbarmanError {
  if (err instanceof CloudbarmanError) return err;
  if (err instanceof StoreError) {
    const { kind, hint } = MAPPING[err.kind];
    return new CloudbarmanError(kind, `${what} failed on ${where}: ${err.message}`, { hint, cause: err });
  }
  const detail = err instanceof Error ? err.message : String(err);
  return new CloudbarmanError('failed', `${what} failed on ${where}: ${detail}`, { hint: 'run with -v for the cause', cause: err });
}

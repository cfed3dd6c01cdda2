/**
 * Turns the snapshot contract's SnapshotError into the operator-facing CloudbarmanError, as
 * store-failure.ts does for stores: the exit code follows from the kind, the hint says what to check.
 */
import { SnapshotError, type SnapshotErrorKind } from '../../../providers/snapshotter.ts';
import { CloudbarmanError, type FailureKind } from '../errors.ts';

const MAPPING: Readonly<Record<SnapshotErrorKind, { kind: FailureKind; hint: string }>> = {
  'not-found': { kind: 'bad-input', hint: 'check snapshot_instance, snapshot_disks, snapshot_zone and the project, subscription or region' },
  'not-attached': { kind: 'bad-input', hint: 'attach the disk to the instance, or fix snapshot_disks' },
  'quota-exceeded': { kind: 'failed', hint: 'the account may not take more snapshots or create more disks: delete old ones or raise the quota' },
  throttled: { kind: 'unreachable', hint: 'the cloud API kept asking to slow down; run it again later' },
  'access-denied': { kind: 'bad-input', hint: 'check the credentials and the permissions docs/snapshots.md lists for this provider' },
  unreachable: { kind: 'unreachable', hint: 'check snapshot_endpoint_url, the network and that the API is up' },
  invalid: { kind: 'bad-input', hint: 'the request was rejected as invalid; check the snapshot options' },
  timeout: { kind: 'failed', hint: 'the cloud operation did not finish in time; raise snapshot_timeout or look at the cloud console' },
  failed: { kind: 'failed', hint: 'run with -v for the cause' },
};

/** Wraps err (a SnapshotError or anything else) as a CloudbarmanError about `what`. */
export function snapshotFailure(err: unknown, what: string): CloudbarmanError {
  if (err instanceof CloudbarmanError) return err;
  if (err instanceof SnapshotError) {
    const { kind, hint } = MAPPING[err.kind];
    return new CloudbarmanError(kind, `${what} failed${err.target === undefined ? '' : ` on ${err.target}`}: ${err.message}`, { hint, cause: err });
  }
  const detail = err instanceof Error ? err.message : String(err);
  return new CloudbarmanError('failed', `${what} failed: ${detail}`, { hint: 'run with -v for the cause', cause: err });
}

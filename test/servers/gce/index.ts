/**
 * A strict, in-process test server for the part of the Compute Engine REST API v1 that the gcp
 * snapshotter uses. No Compute Engine emulator exists, so the snapshotter is tested against this,
 * through the real @google-cloud/compute client (REST transport) over HTTP on 127.0.0.1. State lives
 * in memory, for one project and a few zones.
 *
 * Implemented, following https://cloud.google.com/compute/docs/reference/rest/v1:
 * - instances.get; instances.attachDisk (source by full or partial URL, deviceName, mode, interface,
 *   autoDelete; the disk must exist, be READY, be in the instance's zone and be attached nowhere).
 * - disks.get; disks.insert (blank, or from a READY sourceSnapshot given as a full or partial URL;
 *   sizeGb at least the snapshot's; type pd-standard, pd-balanced or pd-ssd); disks.createSnapshot.
 * - snapshots.get, snapshots.insert (sourceDisk as a full or partial URL; storageLocations with at
 *   most one entry, snapshotType, chainName, labels, description), snapshots.delete.
 * - zoneOperations.get/wait and globalOperations.get/wait. Each get or wait is one poll: an operation
 *   is PENDING, then RUNNING, then DONE after `operationPolls` polls, and its change is applied then
 *   (a new disk is CREATING until its insert is DONE, an attachment appears only when DONE, a
 *   snapshot being deleted is DELETING until then). wait answers at once instead of blocking for up
 *   to two minutes: there is no wall clock here, and the reference allows wait to return early.
 * - Snapshots go CREATING -> UPLOADING -> READY, one stage per `snapshotCreatingPolls` /
 *   `snapshotUploadingPolls` polls of snapshots.get or of their operation; the operation that
 *   created one is DONE when it is READY (or FAILED).
 * - requestId (a non-zero UUID) on every mutating method: repeating it returns the first operation.
 * - Exact resource JSON: kind, id as a uint64 string, selfLink and other links on
 *   https://www.googleapis.com/compute/v1/ whatever the endpoint, int64 fields as strings, labels and
 *   labelFingerprint, users, sourceSnapshot/sourceSnapshotId, storageBytesStatus, and operations with
 *   operationType, targetLink, targetId, progress, insert/start/end times, error.errors[{code, message}],
 *   httpErrorStatusCode and httpErrorMessage.
 * - Errors in the API shape {error: {code, message, errors: [{message, domain, reason}]}}, with the
 *   status and ErrorInfo details where the front end adds them (401, 429, rate limits).
 * - Strictness: Authorization: Bearer <token> on every request (401 required / authError); names
 *   (RFC 1035) and label rules (keys start with a lower-case letter, 63 characters, [a-z0-9_-] plus
 *   international lower-case letters, at most 64 labels); an unknown body field or query parameter is
 *   400; a missing source is 404; a source still being created is 400 resourceNotReady; a taken name is
 *   409; a disk attached elsewhere is 400 resourceInUseByAnotherResource; unknown project or zone is 404.
 * - Faults injected through the handle (see Fault in state.ts): quota exceeded, rate limit (403 or
 *   429), 503 backendError, 403 permission denied, an operation that ends with an error, a snapshot
 *   that fails, an attach that never takes effect; and state.detach() for a disk that is not attached.
 *
 * Deliberately stricter than the service: real input fields this server does not model (encryption
 * keys, guest OS features, images, regional disks, storage pools, ...) and the system parameters
 * `fields`, `key`, `$alt` answer 501 instead of being ignored; deviceName must be an RFC 1035 name.
 *
 * Not implemented: list and aggregatedList (no pagination), instance lifecycle (insert, delete,
 * start, stop), detachDisk, disks.delete/resize/setLabels, snapshots.setLabels, regional disks and
 * regionOperations, images, instant snapshots, snapshot groups, multi-writer disks, the snapshot
 * frequency limit (one snapshot per disk per 10 minutes), operation deletion, IAM policies, and
 * projects other than the one configured.
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { handleRequest } from './routes.ts';
import type { ServerContext } from './routes.ts';
import { ComputeState } from './state.ts';
import type { Fault, ProgressOptions } from './state.ts';
import { listenOnLoopback } from '../loopback-server.ts';

export { ComputeState } from './state.ts';
export type { ComputeMethod, Fault, MutatingMethod, RequestRecord } from './state.ts';

/** A running Compute Engine test server. */
export interface ComputeServerHandle {
  /** http://127.0.0.1:PORT: the snapshotter's endpointUrl. */
  endpoint: string;
  /** The bearer token every request must carry. */
  token: string;
  /** The project and zones the server knows; seed and inspect disks, instances and snapshots here. */
  state: ComputeState;
  /** Queues a fault for the next matching requests (see Fault). */
  inject(fault: Fault): void;
  /** Stops listening, closes open sockets, forgets everything. Safe to call twice. */
  stop(): Promise<void>;
}

/** What startComputeServer accepts; everything has a default. */
export interface ComputeServerOptions extends Partial<ProgressOptions> {
  /** Default 'test-project'. */
  project?: string;
  /** Zones that exist; the first is the default for seeding. Default us-central1-a and us-central1-b. */
  zones?: string[];
  /** The bearer token to require; a random one by default. */
  token?: string;
}

/** Starts a server on a free port of 127.0.0.1 and resolves once it listens. */
export async function startComputeServer(opts: ComputeServerOptions = {}): Promise<ComputeServerHandle> {
  const state = new ComputeState(opts.project ?? 'test-project', opts.zones ?? ['us-central1-a', 'us-central1-b'], {
    operationPolls: opts.operationPolls ?? 2,
    snapshotCreatingPolls: opts.snapshotCreatingPolls ?? 1,
    snapshotUploadingPolls: opts.snapshotUploadingPolls ?? 1,
  });
  const token = opts.token ?? `ya29.test-${randomBytes(16).toString('base64url')}`;
  const ctx: ServerContext = { state, token };

  const server = createServer((req, res) => {
    void handleRequest(ctx, req, res);
  });
  const listener = await listenOnLoopback(server, 'Compute test server', () => { state.clear(); });

  return {
    endpoint: `http://127.0.0.1:${listener.port}`,
    token,
    state,
    inject: (fault) => state.inject(fault),
    stop: () => listener.stop(),
  };
}

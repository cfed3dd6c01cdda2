/**
 * A strict, in-process test server for the part of Azure Resource Manager that the Azure
 * snapshotter uses through `@azure/arm-compute` 25.1.1: Microsoft.Compute virtual machines, managed
 * disks and snapshots. No Azure Compute emulator installs on these machines, so the snapshotter is
 * tested against this, through the real SDK over HTTPS on 127.0.0.1 (the SDK sends bearer tokens
 * only over TLS, so the server presents a self-signed certificate made at start, returned as `ca`).
 *
 * Implemented, following https://learn.microsoft.com/rest/api/compute and ARM's request and
 * asynchronous-operation rules (https://learn.microsoft.com/azure/azure-resource-manager/management/async-operations):
 * - Authentication: every request needs `Authorization: Bearer <token>`; missing is 401
 *   AuthenticationFailed, malformed AuthenticationFailedInvalidHeader, a wrong token
 *   InvalidAuthenticationToken, each with ARM's WWW-Authenticate challenge.
 * - api-version: required on every request (MissingApiVersionParameter), and checked per resource
 *   type against the versions the SDK sends: malformed is InvalidApiVersionParameter, unknown
 *   NoRegisteredProviderFound (see api-versions.ts).
 * - ARM routing: unknown subscription SubscriptionNotFound, unknown resource group
 *   ResourceGroupNotFound, unknown resource ResourceNotFound; paths and names case-insensitive.
 *   Errors in ARM's shape `{"error":{"code","message"[,"target"]}}`.
 * - virtualMachines: GET; PATCH and PUT of an existing VM to attach/detach data disks (the list
 *   replaces the current one; LUN 0-63, unique, unchanged for attached disks; Attach needs
 *   managedDisk.id of an existing, provisioned disk owned by no other VM, in the VM's location and
 *   zone; the size's data-disk limit). 200 with provisioningState Updating and an
 *   Azure-AsyncOperation URL; etag per change, If-Match / If-None-Match (412); one update at a time.
 *   The VM's storage profile reports disk ids with the resource group upper-cased, as ARM does.
 * - disks: GET; PUT with createOption Empty (diskSizeGB) or Copy (of a disk, or of a snapshot whose
 *   creation and background copy are complete), sku, zones, tags; 202 + Azure-AsyncOperation +
 *   Location, provisioningState Updating -> Succeeded | Failed.
 * - snapshots: GET, PUT (createOption Copy of a disk or snapshot, `incremental`, sku, tags) and
 *   DELETE (204 when absent, else 202 + operation; Deleting until done). Incremental snapshots of
 *   PremiumV2_LRS and UltraSSD_LRS disks copy in the background after creation: completionPercent
 *   rises over `backgroundCopyPolls` GETs of the snapshot, snapshotAccessState is Pending until 100;
 *   other snapshots are complete once Succeeded and report no completionPercent, as the service does.
 * - PUT on an existing disk or snapshot changes tags only (200); other changes are
 *   PropertyChangeNotAllowed, another location InvalidResourceLocation.
 * - Bodies are deserialized strictly: a wrong JSON type or an unknown member is InvalidRequestContent;
 *   a non-JSON media type 415; location required (LocationRequired) and a known region; tags within
 *   ARM's limits; required fields as InvalidParameter "Required parameter 'x' is missing (null).";
 *   creationData.sourceResourceId must be a resource id (LinkedInvalidPropertyId) of an existing
 *   disk or snapshot (404 NotFound) in the same location.
 * - Operations (DiskOperations for disks and snapshots, operations for VMs): the status resource
 *   answers InProgress until its `operationPolls`-th GET, then Succeeded (the Disk RP adds
 *   properties.output) or Failed with the error; the Location URL (`monitor=true`) answers 202, then
 *   the final result. No timers: an operation moves only when polled.
 * - Injectable: throttling (429 + Retry-After), any canned ARM error on matching requests, an
 *   operation that ends Failed, regional quotas for snapshots and disks (409 OperationNotAllowed
 *   with quota wording), disks detached behind the client's back.
 *
 * Deliberately stricter than ARM: an unknown or repeated query parameter is 400. Operation answers
 * carry no Retry-After (clients poll at their own pace; nothing here depends on time).
 *
 * Not implemented (each answers 501 NotImplemented, never a silent 2xx): listing, creating or
 * deleting VMs, VM $expand, updating anything of a VM but tags and data disks, creating data disks
 * inline (Empty/FromImage/Copy in a VM), unmanaged (VHD) disks, disk PATCH and DELETE, snapshot
 * PATCH, createOption Import/Restore/Upload/CopyStart/FromImage/..., actions (beginGetAccess, ...),
 * extended locations, other resource providers. Not modelled: RBAC (any valid token may do
 * anything), encryption, sku changes, disk sizes per sku, per-region zone availability.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:https';
import { handleRequest } from './routes.ts';
import type { ServerContext } from './routes.ts';
import { AzureComputeState } from './state.ts';
import { makeSelfSignedCertificate } from './tls.ts';
import { listenOnLoopback } from '../loopback-server.ts';

export { API_VERSIONS } from './api-versions.ts';
export { AzureComputeState } from './state.ts';
export type { DiskRecord, InjectedFault, OperationFailure, RequestRecord, SnapshotRecord, VmRecord } from './state.ts';

/** How to start a server. */
export interface AzureComputeServerOptions {
  /** The one subscription that exists (a random UUID by default). */
  subscriptionId?: string;
  /** Resource groups that exist (default: one, `cloudbarman-test`). */
  resourceGroups?: string[];
  /** The region of resource groups and of resources tests create without one (default westeurope). */
  location?: string;
  /** The bearer token requests must carry (random by default). */
  token?: string;
  /** GETs of an operation URL until the operation ends (default 2). */
  operationPolls?: number;
  /** GETs of a background-copying snapshot until completionPercent is 100 (default 3). */
  backgroundCopyPolls?: number;
}

/** A running Azure Compute test server. */
export interface AzureComputeServerHandle {
  /** https://127.0.0.1:PORT: the ARM endpoint to give the client. */
  endpoint: string;
  /** The bearer token the server accepts. */
  token: string;
  /** The server's self-signed certificate (PEM): the only CA a client must trust for `endpoint`. */
  ca: string;
  subscriptionId: string;
  /** The model: set up VMs and disks, inject faults, inspect what requests did. */
  state: AzureComputeState;
  /** Stops listening, closes open sockets, frees everything. Safe to call twice. */
  stop(): Promise<void>;
}

/** Starts a server on a free port of 127.0.0.1 and resolves once it listens. */
export async function startAzureComputeServer(options: AzureComputeServerOptions = {}): Promise<AzureComputeServerHandle> {
  const state = new AzureComputeState({
    subscriptionId: options.subscriptionId ?? randomUUID(),
    location: options.location ?? 'westeurope',
    resourceGroups: options.resourceGroups ?? ['cloudbarman-test'],
    operationPolls: options.operationPolls ?? 2,
    backgroundCopyPolls: options.backgroundCopyPolls ?? 3,
  });
  const token = options.token ?? `eyJ0eXAiOiJKV1Qi.test.${randomBytes(24).toString('base64url')}`;
  const { certificate, privateKey } = makeSelfSignedCertificate();
  const ctx: ServerContext = { state, token, endpoint: '' };

  const server = createServer({ cert: certificate, key: privateKey }, (req, res) => {
    void handleRequest(ctx, req, res);
  });
  const listener = await listenOnLoopback(server, 'Azure Compute test server', () => { state.clear(); });
  ctx.endpoint = `https://127.0.0.1:${listener.port}`;

  return {
    endpoint: ctx.endpoint,
    token,
    ca: certificate,
    subscriptionId: state.subscriptionId,
    state,
    stop: () => listener.stop(),
  };
}

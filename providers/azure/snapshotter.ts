/**
 * The Azure snapshotter: managed-disk snapshots through Azure Resource Manager with
 * @azure/arm-compute. Loaded lazily by providers/snapshot-registry.ts; @azure/identity loads only
 * when no credential is injected.
 *
 * How the contract's two moments read on Azure (learn.microsoft.com/azure/virtual-machines/disks-incremental-snapshots
 * and the Snapshot model of the REST API):
 * - Snapshots are incremental (`incremental: true`, createOption Copy of the disk). The create is a
 *   long-running operation; createSnapshots waits for it, so that it returns snapshots whose point in
 *   time is fixed. pointInTimeFixed is `provisioningState == Succeeded`.
 * - completed: Succeeded, and no background copy still running. "Both full snapshots and
 *   incremental snapshots can be used immediately after being taken", except incremental snapshots
 *   of Premium SSD v2 and Ultra disks, which copy in the background: they report `completionPercent`
 *   (and `snapshotAccessState` Pending) until it reaches 100. So completionPercent absent or 100,
 *   and snapshotAccessState not Pending, means completed, for incremental and full snapshots alike.
 * - failed: provisioningState Failed, or a copyCompletionError.
 *
 * Retries: the SDK's own retries are off; throttling (429) is retried here, honouring Retry-After
 * through options.sleep, a bounded number of times. Everything else is the caller's decision, by kind.
 * Long-running operations are polled here too, through options.sleep, so tests never wait.
 */
import { Agent as HttpsAgent } from 'node:https';
import { ComputeManagementClient } from '@azure/arm-compute';
import type { DataDisk, Disk, Snapshot, VirtualMachine } from '@azure/arm-compute';
import type { TokenCredential } from '@azure/identity';
import { SnapshotCreateError, SnapshotError } from '../snapshotter.ts';
import type {
  CreateDiskRequest,
  DiskInfo,
  InstanceInfo,
  SnapshotInfo,
  SnapshotRequest,
  Snapshotter,
  SnapshotterOptions,
} from '../snapshotter.ts';
import { OperationBudget } from '../poll.ts';
import { parseRetryAfter } from '../retry-after.ts';
import { toSnapshotError } from './snapshot-errors.ts';

/** Pause between two polls of a long-running operation (ARM's suggested minimum is seconds, not milliseconds). */
const POLL_INTERVAL_MS = 2_000;

/** Retries of a throttled (429) request before 'throttled' reaches the caller. */
const MAX_THROTTLE_RETRIES = 4;

/** Wait when a 429 carries no Retry-After: doubled per retry from this. */
const THROTTLE_BASE_DELAY_MS = 1_000;

/** Longest wait one Retry-After may impose. */
const MAX_THROTTLE_DELAY_MS = 60_000;

/** Attempts to attach when another change of the VM wins the etag race. */
const MAX_ATTACH_ATTEMPTS = 3;

/** The highest LUN Azure gives a data disk. */
const MAX_LUN = 63;

/** The resource types this snapshotter names by id. */
type ResourceType = 'virtualMachines' | 'disks' | 'snapshots';

/** A resource's place: its resource group and name (the subscription is the configured one). */
interface ResourceRef {
  resourceGroup: string;
  name: string;
}

/**
 * What this file uses of @azure/core-lro's PollerLike (v3, nested under @azure/arm-compute):
 * started with submitted(), moved with poll(), read through isDone, result and operationState.
 */
interface Lro<T> {
  submitted(): Promise<void>;
  poll(options?: { abortSignal?: AbortSignal }): Promise<unknown>;
  readonly isDone: boolean;
  readonly result?: T | undefined;
  readonly operationState?: { status: string; error?: Error | undefined } | undefined;
}

/** What tests (and nothing else) may inject: the test server cannot do Entra ID, and its TLS certificate is self-signed. */
export interface AzureSnapshotterDeps {
  /** The Entra ID credential; DefaultAzureCredential when absent. */
  credential?: TokenCredential;
  /** PEM certificates to trust for endpointUrl instead of the system's CAs (the test server's). */
  trustedCertificates?: string;
}

/** Opens the Azure snapshotter for the configured subscription and resource group. */
export async function createSnapshotter(options: SnapshotterOptions): Promise<Snapshotter> {
  return await createAzureSnapshotter(options);
}

/** createSnapshotter with injectable credential and trust: what the tests call. */
export async function createAzureSnapshotter(options: SnapshotterOptions, deps: AzureSnapshotterDeps = {}): Promise<Snapshotter> {
  const subscriptionId = options.azureSubscriptionId?.trim() ?? '';
  if (subscriptionId === '') {
    throw new SnapshotError('invalid', 'azure_subscription_id is not set: the Azure snapshotter needs the subscription of the VM and its disks');
  }
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(subscriptionId)) {
    throw new SnapshotError('invalid', `azure_subscription_id ${JSON.stringify(subscriptionId)} is not a subscription id (a GUID)`);
  }
  const resourceGroup = options.azureResourceGroup?.trim() ?? '';
  if (resourceGroup === '') {
    throw new SnapshotError('invalid', 'azure_resource_group is not set: the Azure snapshotter needs the resource group for new snapshots and disks');
  }
  checkResourceGroupName(resourceGroup);
  if (!Number.isFinite(options.operationTimeoutMs) || options.operationTimeoutMs <= 0) {
    throw new SnapshotError('invalid', `the operation timeout must be a positive number of milliseconds, not ${String(options.operationTimeoutMs)}`);
  }
  const endpoint = options.endpointUrl === undefined || options.endpointUrl.trim() === '' ? undefined : armEndpoint(options.endpointUrl.trim());
  const credential = deps.credential ?? new (await import('@azure/identity')).DefaultAzureCredential();
  // Only an injected CA needs an agent of our own: the SDK's shared client honours HTTPS_PROXY, ours would not.
  const agent = deps.trustedCertificates === undefined ? undefined : new HttpsAgent({ keepAlive: true, ca: deps.trustedCertificates });
  const client = new ComputeManagementClient(credential, subscriptionId, {
    ...(endpoint === undefined ? {} : { endpoint }),
    // Throttling is retried by the policy below; anything else is the caller's call (retryable kinds).
    retryOptions: { maxRetries: 0 },
    ...(agent === undefined ? {} : { agent }),
    userAgentOptions: { userAgentPrefix: 'cloudbarman' },
  });
  client.pipeline.addPolicy(throttlingRetryPolicy(options.sleep), { phase: 'Retry' });
  return new AzureSnapshotter({ client, subscriptionId, resourceGroup, options, agent });
}

/** Azure's resource group rule: 1-90 letters, digits, '_', '(', ')', '-', '.', not ending in '.'. */
function checkResourceGroupName(name: string): void {
  if (!/^[\p{L}\p{N}_().-]{1,90}$/u.test(name) || name.endsWith('.')) {
    throw new SnapshotError('invalid', `azure_resource_group ${JSON.stringify(name)} is not a resource group name (1-90 letters, digits, _ ( ) - ., not ending in .)`);
  }
}

/** The ARM endpoint from endpoint_url: https only, since the SDK sends bearer tokens over TLS only. */
function armEndpoint(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch (err) {
    throw new SnapshotError('invalid', `endpoint_url ${JSON.stringify(value)} is not a URL`, { cause: err });
  }
  if (url.protocol !== 'https:') {
    throw new SnapshotError('invalid', `endpoint_url ${url.origin} must be https: Azure Resource Manager credentials are only sent over TLS`);
  }
  if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new SnapshotError('invalid', 'endpoint_url must not carry a query string, a fragment or credentials');
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

/** The shape of a pipeline policy, taken from the client so that no transitive package is imported. */
type PipelinePolicy = Parameters<ComputeManagementClient['pipeline']['addPolicy']>[0];

/**
 * Retries 429 answers after Retry-After (seconds or an HTTP date), or a doubling delay without one,
 * sleeping through the injected sleep. Lives in the pipeline so that it covers the polls of
 * long-running operations too: a poller that saw a 429 would otherwise be dead.
 */
function throttlingRetryPolicy(sleep: SnapshotterOptions['sleep']): PipelinePolicy {
  return {
    name: 'cloudbarmanThrottlingRetry',
    async sendRequest(request, next) {
      for (let attempt = 0; ; attempt += 1) {
        const response = await next(request);
        if (response.status !== 429 || attempt >= MAX_THROTTLE_RETRIES) return response;
        const signal = request.abortSignal instanceof AbortSignal ? request.abortSignal : undefined;
        await sleep(retryAfterMs(response.headers.get('retry-after'), attempt), signal);
      }
    },
  };
}

/** The wait a Retry-After value asks for, bounded; a doubling default when it is absent or unreadable. */
function retryAfterMs(value: string | undefined, attempt: number): number {
  return Math.min(parseRetryAfter(value, Date.now()) ?? THROTTLE_BASE_DELAY_MS * 2 ** attempt, MAX_THROTTLE_DELAY_MS);
}

/** Compares ARM ids: ARM treats them case-insensitively, and VMs report disk ids with an upper-case resource group. */
function sameId(a: string | undefined, b: string | undefined): boolean {
  return a !== undefined && b !== undefined && a.toLowerCase() === b.toLowerCase();
}

/** Whether err is an HTTP error with the given status. */
function hasStatus(err: unknown, status: number): boolean {
  return typeof err === 'object' && err !== null && (err as { statusCode?: unknown }).statusCode === status;
}

/** The contract's view of a snapshot; see the file comment for how the fields are read. */
function toSnapshotInfo(snapshot: Snapshot, fallbackId: string): SnapshotInfo {
  const id = snapshot.id ?? fallbackId;
  const base = { id, name: snapshot.name ?? id.slice(id.lastIndexOf('/') + 1), diskId: snapshot.creationData?.sourceResourceId ?? '' };
  const provisioning = snapshot.provisioningState?.toLowerCase();
  const copyError = snapshot.copyCompletionError;
  if (provisioning === 'failed' || copyError !== undefined) {
    const error = copyError === undefined ? 'Azure reports provisioningState Failed' : `${copyError.errorCode}: ${copyError.errorMessage}`;
    return { ...base, state: 'failed', pointInTimeFixed: false, error };
  }
  if (provisioning !== 'succeeded') return { ...base, state: 'pending', pointInTimeFixed: false };
  const percent = snapshot.completionPercent;
  const copying = (percent !== undefined && percent < 100) || snapshot.snapshotAccessState?.toLowerCase() === 'pending';
  return { ...base, state: copying ? 'pending' : 'completed', pointInTimeFixed: true, ...(percent === undefined ? {} : { progress: percent }) };
}

/** The contract's view of a disk; `device` is "lun N" or "os" when the caller knows where it is attached. */
function toDiskInfo(disk: Disk, fallbackId: string, device?: string): DiskInfo {
  const id = disk.id ?? fallbackId;
  const source = disk.creationData?.sourceResourceId;
  return {
    id,
    name: disk.name ?? id.slice(id.lastIndexOf('/') + 1),
    ...(device === undefined ? {} : { device }),
    ...(disk.diskSizeGB === undefined ? {} : { sizeGiB: disk.diskSizeGB }),
    ...(disk.zones?.[0] === undefined ? {} : { zone: disk.zones[0] }),
    ...(source !== undefined && /\/providers\/Microsoft\.Compute\/snapshots\//i.test(source) ? { sourceSnapshotId: source } : {}),
  };
}

/** The lowest LUN no data disk uses, or undefined when all 64 are taken. */
function freeLun(dataDisks: readonly DataDisk[]): number | undefined {
  const used = new Set(dataDisks.map((d) => d.lun));
  for (let lun = 0; lun <= MAX_LUN; lun += 1) if (!used.has(lun)) return lun;
  return undefined;
}

/** Managed-disk names: 1-80 letters, digits, '_', '.', '-', starting with a letter or digit, ending with one or '_'. */
function checkDiskName(name: string): void {
  if (!/^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$/.test(name)) {
    throw new SnapshotError('invalid', `${JSON.stringify(name)} is not a valid Azure disk or snapshot name (1-80 letters, digits, _ . -)`, { target: name });
  }
}

/** What the snapshotter is built from. */
interface AzureSnapshotterParts {
  client: ComputeManagementClient;
  subscriptionId: string;
  resourceGroup: string;
  options: SnapshotterOptions;
  agent: HttpsAgent | undefined;
}

/** Snapshotter on Azure Compute; see the file comment. */
class AzureSnapshotter implements Snapshotter {
  readonly provider = 'azure' as const;
  readonly #client: ComputeManagementClient;
  readonly #subscriptionId: string;
  readonly #resourceGroup: string;
  readonly #options: SnapshotterOptions;
  readonly #agent: HttpsAgent | undefined;
  /** Attaches run one at a time per VM: each rewrites the VM's whole data-disk list. */
  readonly #attachQueues = new Map<string, Promise<void>>();
  #closed = false;

  constructor(parts: AzureSnapshotterParts) {
    this.#client = parts.client;
    this.#subscriptionId = parts.subscriptionId;
    this.#resourceGroup = parts.resourceGroup;
    this.#options = parts.options;
    this.#agent = parts.agent;
  }

  async describeInstance(instance: string): Promise<InstanceInfo> {
    const ref = this.#locate(instance, 'virtualMachines');
    const vm = await this.#call(() => this.#client.virtualMachines.get(ref.resourceGroup, ref.name), instance);
    const attached: { id: string; device: string }[] = [];
    const osDiskId = vm.storageProfile?.osDisk?.managedDisk?.id;
    if (osDiskId !== undefined) attached.push({ id: osDiskId, device: 'os' });
    // Unmanaged (VHD) disks cannot be snapshotted through the snapshots API; they are left out.
    for (const data of [...(vm.storageProfile?.dataDisks ?? [])].sort((a, b) => a.lun - b.lun)) {
      const id = data.managedDisk?.id;
      if (id !== undefined && data.toBeDetached !== true) attached.push({ id, device: `lun ${data.lun}` });
    }
    const disks = await Promise.all(attached.map(async ({ id, device }) => toDiskInfo(await this.#getDisk(id), id, device)));
    return {
      id: vm.id ?? this.#resourceId('virtualMachines', ref),
      name: vm.name ?? ref.name,
      ...(vm.zones?.[0] === undefined ? {} : { zone: vm.zones[0] }),
      disks,
    };
  }

  async createSnapshots(requests: readonly SnapshotRequest[], signal?: AbortSignal): Promise<SnapshotInfo[]> {
    this.#checkOpen();
    if (requests.length === 0) return [];
    const names = new Set<string>();
    for (const request of requests) {
      checkDiskName(request.name);
      if (names.has(request.name.toLowerCase())) throw new SnapshotError('invalid', `snapshot name ${request.name} is requested twice`, { target: request.name });
      names.add(request.name.toLowerCase());
    }
    // A snapshot lives in its disk's region: read each disk first (this also proves it exists).
    const sources = await Promise.allSettled(requests.map((r) => this.#getDisk(r.disk.id)));
    const unreadable = sources.find((s) => s.status === 'rejected');
    if (unreadable !== undefined) throw new SnapshotCreateError(toSnapshotError(unreadable.reason, 'disk'), []);

    // Every create is sent before any is polled, so that the snapshots' points in time are as close as Azure allows.
    const creates = requests.map((request, i) => {
      const source = sources[i];
      const disk = source?.status === 'fulfilled' ? source.value : undefined;
      const poller: Lro<Snapshot> = this.#client.snapshots.createOrUpdate(
        this.#resourceGroup,
        request.name,
        {
          location: disk?.location ?? '',
          tags: { ...request.tags },
          incremental: true,
          creationData: { createOption: 'Copy', sourceResourceId: disk?.id ?? request.disk.id },
        },
        signal === undefined ? {} : { abortSignal: signal },
      );
      return { request, poller, id: this.#resourceId('snapshots', { resourceGroup: this.#resourceGroup, name: request.name }) };
    });
    const submitted = await Promise.allSettled(creates.map((c) => c.poller.submitted()));
    const outcomes = await Promise.allSettled(
      creates.map(async (create, i) => {
        const accepted = submitted[i];
        if (accepted?.status === 'rejected') throw toSnapshotError(accepted.reason, create.request.name);
        const snapshot = await this.#finish(create.poller, `creating snapshot ${create.request.name}`, create.request.name, signal);
        return toSnapshotInfo(snapshot, create.id);
      }),
    );
    if (outcomes.every((o) => o.status === 'fulfilled')) return outcomes.map((o) => (o as PromiseFulfilledResult<SnapshotInfo>).value);

    // Report every snapshot that exists, finished or not, so that the caller can delete it.
    const started: SnapshotInfo[] = [];
    let firstError: SnapshotError | undefined;
    for (const [i, outcome] of outcomes.entries()) {
      const create = creates[i];
      if (create === undefined) continue;
      if (outcome.status === 'fulfilled') {
        started.push(outcome.value);
        continue;
      }
      firstError ??= toSnapshotError(outcome.reason, create.request.name);
      if (submitted[i]?.status !== 'fulfilled') continue;
      const now = await this.describeSnapshot(create.id).catch(() => undefined);
      started.push(now ?? { id: create.id, name: create.request.name, diskId: create.request.disk.id, state: 'pending', pointInTimeFixed: false });
    }
    throw new SnapshotCreateError(firstError ?? new SnapshotError('failed', 'creating snapshots failed'), started);
  }

  async describeSnapshot(id: string): Promise<SnapshotInfo | undefined> {
    const ref = this.#locate(id, 'snapshots');
    try {
      const snapshot = await this.#client.snapshots.get(ref.resourceGroup, ref.name);
      return toSnapshotInfo(snapshot, this.#resourceId('snapshots', ref));
    } catch (err) {
      const error = toSnapshotError(err, id);
      if (error.kind === 'not-found') return undefined;
      throw error;
    }
  }

  async deleteSnapshot(id: string): Promise<void> {
    const ref = this.#locate(id, 'snapshots');
    try {
      const poller: Lro<void> = this.#client.snapshots.delete(ref.resourceGroup, ref.name);
      await poller.submitted();
      await this.#finish(poller, `deleting snapshot ${ref.name}`, id);
    } catch (err) {
      const error = toSnapshotError(err, id);
      if (error.kind !== 'not-found') throw error;
    }
  }

  async createDisk(request: CreateDiskRequest, signal?: AbortSignal): Promise<DiskInfo> {
    checkDiskName(request.name);
    const ref = this.#locate(request.snapshotId, 'snapshots');
    const snapshot = await this.#call(() => this.#client.snapshots.get(ref.resourceGroup, ref.name), request.snapshotId);
    const poller: Lro<Disk> = this.#client.disks.createOrUpdate(
      this.#resourceGroup,
      request.name,
      {
        location: snapshot.location ?? '',
        ...(request.zone === undefined || request.zone === '' ? {} : { zones: [request.zone] }),
        tags: { ...request.tags },
        creationData: { createOption: 'Copy', sourceResourceId: snapshot.id ?? this.#resourceId('snapshots', ref) },
      },
      signal === undefined ? {} : { abortSignal: signal },
    );
    try {
      await poller.submitted();
    } catch (err) {
      throw toSnapshotError(err, request.name);
    }
    const disk = await this.#finish(poller, `creating disk ${request.name}`, request.name, signal);
    return toDiskInfo(disk, this.#resourceId('disks', { resourceGroup: this.#resourceGroup, name: request.name }));
  }

  async attachDisk(instance: string, diskId: string, signal?: AbortSignal): Promise<DiskInfo> {
    const vmRef = this.#locate(instance, 'virtualMachines');
    const queueKey = `${vmRef.resourceGroup}/${vmRef.name}`.toLowerCase();
    const previous = this.#attachQueues.get(queueKey) ?? Promise.resolve();
    const run = previous.then(() => this.#attach(instance, vmRef, diskId, signal));
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.#attachQueues.set(queueKey, settled);
    try {
      return await run;
    } finally {
      if (this.#attachQueues.get(queueKey) === settled) this.#attachQueues.delete(queueKey);
    }
  }

  localDevicePaths(disk: DiskInfo): string[] {
    const lun = /^lun (\d+)$/.exec(disk.device ?? '')?.[1];
    // Azure's udev rules (WALinuxAgent) make scsi1/lun<N>; azure-vm-utils on newer images (NVMe too) makes data/by-lun/<N>.
    if (lun !== undefined) return [`/dev/disk/azure/scsi1/lun${lun}`, `/dev/disk/azure/data/by-lun/${lun}`];
    if (disk.device === 'os') return ['/dev/disk/azure/root', '/dev/disk/azure/os'];
    throw new SnapshotError('not-attached', `disk ${disk.name} is not attached to an instance (no LUN known)`, { target: disk.id });
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#agent?.destroy();
  }

  /** One attach, with the VM's etag guarding its data-disk list against a concurrent change. */
  async #attach(instance: string, vmRef: ResourceRef, diskId: string, signal?: AbortSignal): Promise<DiskInfo> {
    const disk = await this.#getDisk(diskId);
    const canonicalId = disk.id ?? diskId;
    for (let attempt = 1; ; attempt += 1) {
      const vm = await this.#call(() => this.#client.virtualMachines.get(vmRef.resourceGroup, vmRef.name), instance);
      const dataDisks = vm.storageProfile?.dataDisks ?? [];
      const present = dataDisks.find((d) => sameId(d.managedDisk?.id, canonicalId) && d.toBeDetached !== true);
      if (present !== undefined) return toDiskInfo(disk, canonicalId, `lun ${present.lun}`);
      const lun = freeLun(dataDisks);
      if (lun === undefined) throw new SnapshotError('failed', `instance ${vmRef.name} has no free LUN for disk ${disk.name ?? diskId}`, { target: instance });
      const poller: Lro<VirtualMachine> = this.#client.virtualMachines.update(
        vmRef.resourceGroup,
        vmRef.name,
        { storageProfile: { dataDisks: [...dataDisks, { lun, createOption: 'Attach', managedDisk: { id: canonicalId } }] } },
        { ...(vm.etag === undefined ? {} : { ifMatch: vm.etag }), ...(signal === undefined ? {} : { abortSignal: signal }) },
      );
      try {
        await poller.submitted();
      } catch (err) {
        // 412: the VM changed since it was read; read it again rather than overwrite that change.
        if (hasStatus(err, 412) && attempt < MAX_ATTACH_ATTEMPTS) continue;
        throw toSnapshotError(err, instance);
      }
      const updated = await this.#finish(poller, `attaching disk ${disk.name ?? diskId} to ${vmRef.name}`, instance, signal);
      const entry = updated.storageProfile?.dataDisks?.find((d) => sameId(d.managedDisk?.id, canonicalId) && d.toBeDetached !== true);
      if (entry === undefined) {
        throw new SnapshotError('not-attached', `disk ${disk.name ?? diskId} is not attached to ${vmRef.name} after the attach operation succeeded`, { target: diskId });
      }
      return toDiskInfo(disk, canonicalId, `lun ${entry.lun}`);
    }
  }

  /**
   * Drives a started long-running operation to its end: a poll every POLL_INTERVAL_MS through the
   * injected sleep, 'timeout' once operationTimeoutMs is spent, 'failed' with ARM's error when the
   * operation fails.
   */
  async #finish<T>(poller: Lro<T>, what: string, target: string, signal?: AbortSignal): Promise<T> {
    const budget = new OperationBudget(this.#options.operationTimeoutMs, this.#options.sleep);
    try {
      while (!poller.isDone) {
        this.#checkOpen();
        const remaining = budget.remainingMs;
        if (remaining <= 0) throw new SnapshotError('timeout', `${what} did not finish within ${budget.limitMs} ms`, { target });
        await budget.sleep(Math.min(POLL_INTERVAL_MS, remaining), signal);
        await poller.poll(signal === undefined ? {} : { abortSignal: signal });
      }
    } catch (err) {
      throw this.#operationError(err, poller, what, target);
    }
    const status = poller.operationState?.status;
    if (status !== 'succeeded') {
      throw this.#operationError(poller.operationState?.error ?? new Error(`the operation ended ${String(status)}`), poller, what, target);
    }
    return poller.result as T;
  }

  /**
   * An operation that ARM reports Failed becomes 'failed' with ARM's code and message (core-lro
   * flattens it into a plain Error); a request that failed on the way is classified as usual.
   */
  #operationError(err: unknown, poller: Lro<unknown>, what: string, target: string): SnapshotError {
    if (err instanceof SnapshotError) return err;
    const isRequestError = typeof err === 'object' && err !== null && (err as { name?: unknown }).name === 'RestError';
    if (!isRequestError && poller.operationState?.status === 'failed') {
      const detail = (err instanceof Error ? err.message : String(err)).replace(/^The long-running operation has failed\.?\s*\.?\s*/, '');
      return new SnapshotError('failed', `${what} failed${detail === '' ? '' : `: ${detail}`}`, { target, cause: err });
    }
    return toSnapshotError(err, target);
  }

  /** A disk by id (or by name in the configured resource group). */
  async #getDisk(id: string): Promise<Disk> {
    const ref = this.#locate(id, 'disks');
    return await this.#call(() => this.#client.disks.get(ref.resourceGroup, ref.name), id);
  }

  /** Runs one SDK call on an open snapshotter, classifying what it throws. */
  async #call<T>(fn: () => Promise<T>, target: string): Promise<T> {
    this.#checkOpen();
    try {
      return await fn();
    } catch (err) {
      throw toSnapshotError(err, target);
    }
  }

  /** Refuses calls after close(). */
  #checkOpen(): void {
    if (this.#closed) throw new SnapshotError('invalid', 'the Azure snapshotter is closed');
  }

  /**
   * Where a resource named by ARM id or by bare name (then in the configured resource group) is;
   * an id of another type or subscription is 'invalid'.
   */
  #locate(idOrName: string, type: ResourceType): ResourceRef {
    this.#checkOpen();
    const value = idOrName.trim();
    if (!value.includes('/')) {
      if (value === '') throw new SnapshotError('invalid', `an empty ${type} name`, { target: idOrName });
      return { resourceGroup: this.#resourceGroup, name: value };
    }
    const match = /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/Microsoft\.Compute\/([^/]+)\/([^/]+)$/i.exec(value);
    if (match === null || match[3]?.toLowerCase() !== type.toLowerCase()) {
      throw new SnapshotError('invalid', `${JSON.stringify(idOrName)} is not the id of Microsoft.Compute/${type}`, { target: idOrName });
    }
    const [, subscription = '', resourceGroup = '', , name = ''] = match;
    if (subscription.toLowerCase() !== this.#subscriptionId.toLowerCase()) {
      throw new SnapshotError('invalid', `${idOrName} is in subscription ${subscription}, not in azure_subscription_id ${this.#subscriptionId}`, { target: idOrName });
    }
    return { resourceGroup, name };
  }

  /** The id of a resource in the configured subscription. */
  #resourceId(type: ResourceType, ref: ResourceRef): string {
    return `/subscriptions/${this.#subscriptionId}/resourceGroups/${ref.resourceGroup}/providers/Microsoft.Compute/${type}/${ref.name}`;
  }
}

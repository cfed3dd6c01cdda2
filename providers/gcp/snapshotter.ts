/**
 * The snapshotter contract on Compute Engine, through @google-cloud/compute over its REST transport
 * (HTTP/JSON to the Compute Engine API, not gRPC). Snapshots are global resources named by the
 * request; disks and instances are zonal. Compute Engine has no multi-disk snapshot call in v1, so a
 * backup's snapshots are started concurrently. A snapshot's point in time is fixed once its status
 * is UPLOADING ("you can resume writes once the snapshot status is UPLOADING", Google's
 * create-snapshots guide), and it is usable once READY.
 *
 * Long-running operations are waited for with zoneOperations.wait / globalOperations.wait (which
 * return when the operation is DONE or after about two minutes), sleeping through options.sleep
 * between calls, within a budget of options.operationTimeoutMs (providers/poll.ts: the larger of
 * the wall clock, which counts the time spent in calls, and the time slept).
 * The client's own retries are off; throttling and the service's 5xx answers are retried here a
 * bounded number of times, through options.sleep, with the same requestId so that a repeated create
 * is not applied twice. Every client error leaves through toSnapshotError or operationError.
 */
import { DisksClient, GlobalOperationsClient, InstancesClient, SnapshotsClient, ZoneOperationsClient } from '@google-cloud/compute';
import type { protos } from '@google-cloud/compute';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { SnapshotCreateError, SnapshotError, isSnapshotError } from '../snapshotter.ts';
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
import { classifyComputeError, operationError, snapshotError, toSnapshotError } from './snapshot-errors.ts';

type ComputeOperation = protos.google.cloud.compute.v1.IOperation;
type ComputeDisk = protos.google.cloud.compute.v1.IDisk;
type ComputeSnapshot = protos.google.cloud.compute.v1.ISnapshot;
type ComputeInstance = protos.google.cloud.compute.v1.IInstance;

/** Options every Compute Engine client takes: apiEndpoint, port, protocol, authClient, ... */
export type ComputeClientOptions = NonNullable<ConstructorParameters<typeof DisksClient>[0]>;

/** Attempts per API call when the service throttles or answers 5xx. */
const CALL_ATTEMPTS = 5;
/** First pause before a retry; doubled each time, up to RETRY_MAX_MS. */
const RETRY_BASE_MS = 1_000;
const RETRY_MAX_MS = 16_000;
/** Pause between waits on an operation that is not DONE yet; doubled each time, up to POLL_MAX_MS. */
const POLL_INITIAL_MS = 1_000;
const POLL_MAX_MS = 10_000;
/** Limit on one API request; a wait call may take up to two minutes on the service, so it gets more. */
const REQUEST_TIMEOUT_MS = 60_000;
const WAIT_REQUEST_TIMEOUT_MS = 150_000;

/** Compute Engine resource names (RFC 1035): a lower-case letter first, no '-' last, at most 63. */
const GCE_NAME = /^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$/;
/** Project ids (optionally domain-scoped, `example.com:project`) and zones, checked before any call. */
const PROJECT_ID = /^(?:[a-z][-a-z0-9.]*[a-z0-9]:)?[a-z][-a-z0-9]{4,28}[a-z0-9]$/;
const ZONE = /^[a-z]+-[a-z]+[0-9]+-[a-z0-9]+$/;
/** Label rules: keys start with a lower-case letter; keys and values hold lower-case letters, digits, '_' and '-'. */
const LABEL_CHAR = /[^\p{Ll}\p{Lo}\p{N}_-]/gu;
const LABEL_MAX = 63;
const MAX_LABELS = 64;
/** The longest snapshot or disk description the API takes. */
const MAX_DESCRIPTION = 2_048;
/** The disk type a restored disk gets when its source disk's type is unknown. */
const DEFAULT_DISK_TYPE = 'pd-balanced';

/** Call options for every request: the client's own retries off, one timeout, the caller's signal. */
interface RequestOptions {
  timeout: number;
  retry: { retryCodes: number[] };
  signal?: AbortSignal;
}

/** The client's callback: an error, or the response. */
type Callback<T> = (err: Error | null | undefined, value?: T | null) => void;

/** A disk or instance as parsed from a name, partial URL or self link; `zone` is undefined for a regional disk. */
interface ResourceRef {
  project: string;
  zone: string | undefined;
  name: string;
  /** `projects/p/zones/z/disks/d`: the partial URL the API accepts in request bodies. */
  path: string;
}

/** A zonal disk or instance. */
type ZonalRef = ResourceRef & { zone: string };

/** A snapshot as parsed from a name, partial URL or self link. */
interface SnapshotRef {
  project: string;
  name: string;
  path: string;
}

/** The clients one snapshotter uses; they share one auth client. */
interface ComputeClients {
  instances: InstancesClient;
  disks: DisksClient;
  snapshots: SnapshotsClient;
  zoneOperations: ZoneOperationsClient;
  globalOperations: GlobalOperationsClient;
}

/** Loopback hosts, the only ones the client may reach over plain http (the test servers). */
function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

/**
 * Client options for a custom endpoint: `https://host[:port]`, a bare `host[:port]`, or
 * `http://127.0.0.1:PORT` (plain http only on loopback). The REST transport builds
 * `${protocol}://${apiEndpoint}:${port}/compute/v1/...`, so the URL may carry no path.
 */
export function computeTransport(
  endpointUrl: string | undefined,
): Pick<ComputeClientOptions, 'apiEndpoint' | 'port' | 'protocol'> {
  if (endpointUrl === undefined || endpointUrl === '') return {};
  let url: URL;
  try {
    url = new URL(endpointUrl.includes('://') ? endpointUrl : `https://${endpointUrl}`);
  } catch (err) {
    throw new SnapshotError('invalid', `endpoint_url ${JSON.stringify(endpointUrl)} is not a URL`, { target: endpointUrl, cause: err });
  }
  const protocol = url.protocol.slice(0, -1);
  if (protocol !== 'https' && !(protocol === 'http' && isLoopback(url.hostname))) {
    throw new SnapshotError('invalid', `endpoint_url ${JSON.stringify(endpointUrl)} must be https (plain http only on a loopback address)`, {
      target: endpointUrl,
    });
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.username !== '' || url.password !== '') {
    const why = 'must be scheme://host[:port] with no path, query or credentials';
    throw new SnapshotError('invalid', `endpoint_url ${JSON.stringify(endpointUrl)} ${why}`, { target: endpointUrl });
  }
  return { apiEndpoint: url.hostname, port: url.port === '' ? (protocol === 'http' ? 80 : 443) : Number(url.port), protocol };
}

/** Opens the Compute Engine snapshotter with Application Default Credentials. */
export async function createSnapshotter(options: SnapshotterOptions): Promise<Snapshotter> {
  return await createGcpSnapshotter(options);
}

/**
 * Opens the Compute Engine snapshotter; `overrides` reach every client, e.g. an `authClient` in
 * tests, which otherwise use Application Default Credentials. Needs snapshot_gcp_project and snapshot_zone.
 */
export async function createGcpSnapshotter(options: SnapshotterOptions, overrides: ComputeClientOptions = {}): Promise<Snapshotter> {
  const project = options.gcpProject;
  if (project === undefined || project === '') {
    throw new SnapshotError('invalid', 'snapshot_gcp_project is required for snapshot_provider = gcp', { target: 'snapshot_gcp_project' });
  }
  if (!PROJECT_ID.test(project)) {
    throw new SnapshotError('invalid', `snapshot_gcp_project ${JSON.stringify(project)} is not a Google Cloud project id`, { target: project });
  }
  const zone = options.zone;
  if (zone === undefined || zone === '') {
    throw new SnapshotError('invalid', 'snapshot_zone is required for snapshot_provider = gcp (the zone of the instance and its disks)', {
      target: 'snapshot_zone',
    });
  }
  if (!ZONE.test(zone)) {
    throw new SnapshotError('invalid', `snapshot_zone ${JSON.stringify(zone)} is not a Compute Engine zone`, { target: zone });
  }
  const base: ComputeClientOptions = { ...computeTransport(options.endpointUrl), fallback: true, ...overrides };
  const instances = new InstancesClient({ ...base });
  // One auth client for all: Application Default Credentials are resolved once, not five times.
  const shared: ComputeClientOptions = { ...base, auth: instances.auth };
  const clients: ComputeClients = {
    instances,
    disks: new DisksClient({ ...shared }),
    snapshots: new SnapshotsClient({ ...shared }),
    zoneOperations: new ZoneOperationsClient({ ...shared }),
    globalOperations: new GlobalOperationsClient({ ...shared }),
  };
  // Initialize here, awaited: each client method starts initialize() with a `.catch(e => { throw e })`
  // nobody handles, so credentials that fail to load (no ADC) would otherwise crash the process with
  // an unhandled rejection on the first call. Failing here also reports them when the run starts.
  const all = [clients.instances, clients.disks, clients.snapshots, clients.zoneOperations, clients.globalOperations];
  try {
    await Promise.all(all.map(async (c) => await c.initialize()));
  } catch (err) {
    await Promise.allSettled(all.map(async (c) => await c.close()));
    throw toSnapshotError(err, `the Compute Engine API for project ${project}`);
  }
  return new GceSnapshotter(clients, project, zone, options);
}

/** Turns contract tags into Compute Engine labels: lower case, other characters as '_', at most 63 each. */
export function toGceLabels(tags: Record<string, string>): Record<string, string> {
  const labels: Record<string, string> = {};
  const entries = Object.entries(tags);
  if (entries.length > MAX_LABELS) {
    throw new SnapshotError('invalid', `${entries.length} tags are more than the ${MAX_LABELS} labels Compute Engine allows`);
  }
  for (const [key, value] of entries) {
    const k = truncate(key.toLowerCase().replace(LABEL_CHAR, '_'));
    if (!/^[\p{Ll}\p{Lo}]/u.test(k)) {
      throw new SnapshotError('invalid', `tag ${JSON.stringify(key)} cannot be a label: label keys start with a letter`);
    }
    if (k in labels) {
      throw new SnapshotError('invalid', `tags ${JSON.stringify(key)} and another become the same label key ${JSON.stringify(k)}`);
    }
    labels[k] = truncate(value.toLowerCase().replace(LABEL_CHAR, '_'));
  }
  return labels;
}

/** The first LABEL_MAX characters (code points, not UTF-16 units). */
function truncate(text: string): string {
  return Array.from(text).slice(0, LABEL_MAX).join('');
}

/** The last path segment of a link (a zone URL's zone, a snapshot URL's name). */
function lastSegment(link: string | null | undefined): string | undefined {
  if (link === null || link === undefined || link === '') return undefined;
  return link.slice(link.lastIndexOf('/') + 1);
}

/** A number from the client's int64 fields, which arrive as strings. */
function toNumber(value: unknown): number | undefined {
  if (value === null || value === undefined || value === '') return undefined;
  const n = Number(String(value));
  return Number.isFinite(n) ? n : undefined;
}

/** Strips the scheme, host and API version from a self link, leaving `projects/...`. */
function partialUrl(value: string): string {
  return value.replace(/^https?:\/\/[^/]+\/compute\/(?:v1|beta|alpha)\//, '');
}

/** A snapshot the contract knows by name; a self link or partial URL is accepted too. */
function snapshotRef(id: string, project: string): SnapshotRef {
  const partial = partialUrl(id);
  const match = /^(?:projects\/([^/]+)\/)?global\/snapshots\/([^/]+)$/.exec(partial);
  const p = match?.[1] ?? project;
  const name = match === null ? partial : (match[2] ?? '');
  if (!GCE_NAME.test(name)) {
    throw new SnapshotError('invalid', `${JSON.stringify(id)} is not a Compute Engine snapshot name or link`, { target: id });
  }
  return { project: p, name, path: `projects/${p}/global/snapshots/${name}` };
}

/** Compute Engine's snapshotter. */
class GceSnapshotter implements Snapshotter {
  readonly provider = 'gcp' as const;
  readonly #clients: ComputeClients;
  readonly #project: string;
  readonly #zone: string;
  readonly #timeoutMs: number;
  readonly #sleep: SnapshotterOptions['sleep'];
  /** Snapshot name -> the global operation creating it: a snapshot whose operation failed before it
   *  appeared (a quota, say) is then reported failed instead of absent. */
  readonly #creating = new Map<string, string>();
  #closed = false;

  constructor(clients: ComputeClients, project: string, zone: string, options: SnapshotterOptions) {
    this.#clients = clients;
    this.#project = project;
    this.#zone = zone;
    this.#timeoutMs = options.operationTimeoutMs;
    this.#sleep = options.sleep;
  }

  async describeInstance(instance: string): Promise<InstanceInfo> {
    const ref = this.#zonalRef(instance, 'instances');
    const inst = await this.#getInstance(ref);
    // Local SSDs (SCRATCH) have no source and cannot be snapshotted.
    const attached = (inst.disks ?? []).filter((d) => typeof d.source === 'string' && d.source !== '' && d.type !== 'SCRATCH');
    const disks = await Promise.all(
      attached.map(async (d): Promise<DiskInfo> => {
        const source = d.source ?? '';
        const device = d.deviceName ?? undefined;
        const diskRef = this.#diskRef(source, ref.zone);
        if (diskRef.zone === undefined) {
          // A regional disk: its details need regionDisks.get, which this provider does not call.
          return { id: source, name: diskRef.name, ...(device === undefined ? {} : { device }) };
        }
        return this.#diskInfo(await this.#getDisk({ ...diskRef, zone: diskRef.zone }), device);
      }),
    );
    return { id: inst.selfLink ?? ref.path, name: inst.name ?? ref.name, zone: lastSegment(inst.zone) ?? ref.zone, disks };
  }

  async createSnapshots(requests: readonly SnapshotRequest[], signal?: AbortSignal): Promise<SnapshotInfo[]> {
    let prepared: { request: SnapshotRequest; disk: ResourceRef; labels: Record<string, string> }[];
    try {
      this.#assertOpen();
      const names = new Set<string>();
      prepared = requests.map((request) => {
        if (!GCE_NAME.test(request.name)) {
          const rule = "a lower-case letter first, then lower-case letters, digits and '-', not ending in '-', at most 63";
          throw new SnapshotError('invalid', `snapshot name ${JSON.stringify(request.name)} is not valid on Compute Engine: ${rule}`, {
            target: request.name,
          });
        }
        if (names.has(request.name)) {
          throw new SnapshotError('invalid', `snapshot name ${request.name} is requested twice`, { target: request.name });
        }
        names.add(request.name);
        return { request, disk: this.#diskRef(request.disk.id, this.#zone), labels: toGceLabels(request.tags) };
      });
    } catch (err) {
      throw new SnapshotCreateError(toSnapshotError(err, 'snapshots'), []);
    }
    const results = await Promise.allSettled(prepared.map(async (p) => await this.#startSnapshot(p.request, p.disk, p.labels, signal)));
    const started = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw new SnapshotCreateError(toSnapshotError(failed.reason, 'snapshots'), started);
    return started;
  }

  async describeSnapshot(id: string): Promise<SnapshotInfo | undefined> {
    const ref = snapshotRef(id, this.#project);
    let snapshot: ComputeSnapshot;
    try {
      snapshot = await this.#getSnapshot(ref);
    } catch (err) {
      if (isSnapshotError(err, 'not-found')) return await this.#notYetVisible(ref);
      throw err;
    }
    const status = snapshot.status ?? '';
    const base = { id: ref.name, name: snapshot.name ?? ref.name, diskId: snapshot.sourceDisk ?? '' };
    switch (status) {
      case 'READY':
        this.#creating.delete(ref.name);
        return { ...base, state: 'completed', pointInTimeFixed: true, progress: 100 };
      case 'UPLOADING':
        return { ...base, state: 'pending', pointInTimeFixed: true };
      case 'CREATING':
        return { ...base, state: 'pending', pointInTimeFixed: false };
      case 'FAILED': {
        const why = (await this.#creationFailure(ref))?.message ?? 'Compute Engine reports the snapshot FAILED';
        return { ...base, state: 'failed', pointInTimeFixed: false, error: why };
      }
      case 'DELETING':
        return { ...base, state: 'failed', pointInTimeFixed: false, error: 'the snapshot is being deleted' };
      default:
        return { ...base, state: 'failed', pointInTimeFixed: false, error: `unknown snapshot status ${JSON.stringify(status)}` };
    }
  }

  async deleteSnapshot(id: string): Promise<void> {
    const ref = snapshotRef(id, this.#project);
    const target = `snapshot ${ref.path}`;
    const requestId = randomUUID();
    try {
      const op = await this.#call<ComputeOperation>(target, (o, done) =>
        this.#clients.snapshots.delete({ project: ref.project, snapshot: ref.name, requestId }, o, done),
      );
      await this.#wait(op, undefined, target);
    } catch (err) {
      if (!isSnapshotError(err, 'not-found')) throw err;
    }
    this.#creating.delete(ref.name);
  }

  async createDisk(request: CreateDiskRequest, signal?: AbortSignal): Promise<DiskInfo> {
    this.#assertOpen();
    const zone = request.zone ?? this.#zone;
    const ref: ZonalRef = { project: this.#project, zone, name: request.name, path: `projects/${this.#project}/zones/${zone}/disks/${request.name}` };
    const target = `disk ${ref.path}`;
    if (!GCE_NAME.test(request.name)) {
      throw snapshotError('invalid', target, 'disk names are lower-case letters, digits and -, starting with a letter');
    }
    if (!ZONE.test(zone)) throw snapshotError('invalid', target, `${JSON.stringify(zone)} is not a zone`);
    const labels = toGceLabels(request.tags);
    const source = snapshotRef(request.snapshotId, this.#project);
    const snapshot = await this.#getSnapshot(source, signal);
    if (snapshot.status !== 'READY') {
      throw snapshotError('invalid', `snapshot ${source.path}`, `status ${String(snapshot.status)}, not READY: a disk needs a completed snapshot`);
    }
    const diskResource = {
      name: request.name,
      sourceSnapshot: source.path,
      type: `projects/${this.#project}/zones/${zone}/diskTypes/${await this.#sourceDiskType(snapshot, signal)}`,
      labels,
      description: describeTags(request.tags),
    };
    const requestId = randomUUID();
    const op = await this.#call<ComputeOperation>(
      target,
      (o, done) => this.#clients.disks.insert({ project: this.#project, zone, requestId, diskResource }, o, done),
      signal,
    );
    await this.#wait(op, zone, target, signal);
    return this.#diskInfo(await this.#readyDisk(ref, signal), undefined);
  }

  async attachDisk(instance: string, diskId: string, signal?: AbortSignal): Promise<DiskInfo> {
    const inst = this.#zonalRef(instance, 'instances');
    const ref = this.#diskRef(diskId, inst.zone);
    if (ref.zone === undefined) throw snapshotError('invalid', `disk ${ref.path}`, 'regional disks are not supported by this provider');
    const disk: ZonalRef = { ...ref, zone: ref.zone };
    const target = `disk ${disk.path} on instance ${inst.path}`;
    let device = await this.#attachedDevice(inst, disk, signal);
    if (device === undefined) {
      const requestId = randomUUID();
      // The device name shows up as /dev/disk/by-id/google-<name> inside the instance.
      const attachedDiskResource = { source: disk.path, deviceName: disk.name, mode: 'READ_WRITE', autoDelete: false };
      const attach = { project: inst.project, zone: inst.zone, instance: inst.name, requestId, attachedDiskResource };
      const op = await this.#call<ComputeOperation>(target, (o, done) => this.#clients.instances.attachDisk(attach, o, done), signal);
      await this.#wait(op, inst.zone, target, signal);
      device = await this.#attachedDevice(inst, disk, signal);
      if (device === undefined) throw snapshotError('not-attached', target, 'the attach operation finished but the instance does not list the disk');
    }
    return this.#diskInfo(await this.#getDisk(disk, signal), device);
  }

  localDevicePaths(disk: DiskInfo): string[] {
    if (disk.device === undefined || disk.device === '') return [];
    // google-<device> comes from Google's guest udev rules (SCSI and NVMe); scsi-0Google_PersistentDisk_<device>
    // from udev's own persistent-storage rules for SCSI disks.
    return [`/dev/disk/by-id/google-${disk.device}`, `/dev/disk/by-id/scsi-0Google_PersistentDisk_${disk.device}`];
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const c = this.#clients;
    await Promise.all([c.instances.close(), c.disks.close(), c.snapshots.close(), c.zoneOperations.close(), c.globalOperations.close()]);
  }

  // --- internals --------------------------------------------------------------------------------

  /** Starts one snapshot; a create whose operation already failed is thrown, not returned. */
  async #startSnapshot(request: SnapshotRequest, disk: ResourceRef, labels: Record<string, string>, signal?: AbortSignal): Promise<SnapshotInfo> {
    const target = `snapshot projects/${this.#project}/global/snapshots/${request.name} of disk ${disk.path}`;
    const requestId = randomUUID();
    const snapshotResource = { name: request.name, sourceDisk: disk.path, labels, description: describeTags(request.tags) };
    const op = await this.#call<ComputeOperation>(
      target,
      (o, done) => this.#clients.snapshots.insert({ project: this.#project, requestId, snapshotResource }, o, done),
      signal,
    );
    const failure = op.status === 'DONE' ? operationError(op, target) : undefined;
    if (failure !== undefined) throw failure;
    if (typeof op.name === 'string' && op.name !== '') this.#creating.set(request.name, op.name);
    return { id: request.name, name: request.name, diskId: request.disk.id, state: 'pending', pointInTimeFixed: false };
  }

  /** A snapshot that snapshots.get does not find: still being created, failed before it appeared, or absent. */
  async #notYetVisible(ref: SnapshotRef): Promise<SnapshotInfo | undefined> {
    const op = await this.#creationOperation(ref);
    if (op === undefined) return undefined;
    const failure = op.status === 'DONE' ? operationError(op, `snapshot ${ref.path}`) : undefined;
    if (failure !== undefined) return { id: ref.name, name: ref.name, diskId: '', state: 'failed', pointInTimeFixed: false, error: failure.message };
    if (op.status === 'DONE') {
      this.#creating.delete(ref.name); // created, and deleted since
      return undefined;
    }
    return { id: ref.name, name: ref.name, diskId: '', state: 'pending', pointInTimeFixed: false };
  }

  /** Why a snapshot this snapshotter started failed, from the operation that created it. */
  async #creationFailure(ref: SnapshotRef): Promise<SnapshotError | undefined> {
    const op = await this.#creationOperation(ref);
    return op?.status === 'DONE' ? operationError(op, `snapshot ${ref.path}`) : undefined;
  }

  /** The operation that is creating a snapshot this snapshotter started, while the service keeps it. */
  async #creationOperation(ref: SnapshotRef): Promise<ComputeOperation | undefined> {
    const operation = this.#creating.get(ref.name);
    if (operation === undefined) return undefined;
    try {
      return await this.#call<ComputeOperation>(`snapshot ${ref.path}`, (o, done) =>
        this.#clients.globalOperations.get({ project: this.#project, operation }, o, done),
      );
    } catch (err) {
      if (!isSnapshotError(err, 'not-found')) throw err;
      this.#creating.delete(ref.name);
      return undefined;
    }
  }

  /** The type of the disk a snapshot was taken of, so that a restored disk performs alike; the default when unknown. */
  async #sourceDiskType(snapshot: ComputeSnapshot, signal?: AbortSignal): Promise<string> {
    const source = snapshot.sourceDisk;
    if (typeof source !== 'string' || source === '') return DEFAULT_DISK_TYPE;
    const ref = this.#diskRef(source, this.#zone);
    if (ref.zone === undefined) return DEFAULT_DISK_TYPE;
    try {
      return lastSegment((await this.#getDisk({ ...ref, zone: ref.zone }, signal)).type) ?? DEFAULT_DISK_TYPE;
    } catch (err) {
      // The source disk may be gone (the usual case in a disaster) or in a project we cannot read.
      if (isSnapshotError(err, 'not-found') || isSnapshotError(err, 'access-denied')) return DEFAULT_DISK_TYPE;
      throw err;
    }
  }

  /** The disk once READY: a disk whose insert is DONE normally is; otherwise poll within the operation budget. */
  async #readyDisk(ref: ZonalRef, signal?: AbortSignal): Promise<ComputeDisk> {
    const budget = this.#budget();
    let delay = POLL_INITIAL_MS;
    for (;;) {
      const disk = await this.#getDisk(ref, signal);
      if (disk.status === 'READY') return disk;
      if (disk.status === 'FAILED') throw snapshotError('failed', `disk ${ref.path}`, 'Compute Engine reports the new disk FAILED');
      if (budget.remainingMs <= 0) throw snapshotError('timeout', `disk ${ref.path}`, `still ${String(disk.status)} after ${budget.limitMs} ms`);
      await budget.sleep(delay, signal);
      delay = Math.min(delay * 2, POLL_MAX_MS);
    }
  }

  /** The device name under which a disk is attached to an instance, or undefined when it is not. */
  async #attachedDevice(inst: ZonalRef, disk: ZonalRef, signal?: AbortSignal): Promise<string | undefined> {
    const info = await this.#getInstance(inst, signal);
    const match = (info.disks ?? []).find((d) => typeof d.source === 'string' && partialUrl(d.source) === disk.path);
    return match === undefined ? undefined : (match.deviceName ?? '');
  }

  /** Waits for an operation to be DONE within the budget; throws its error when it failed. */
  async #wait(op: ComputeOperation, zone: string | undefined, target: string, signal?: AbortSignal): Promise<ComputeOperation> {
    const operation = op.name ?? '';
    const project = this.#project;
    let current = op;
    // The budget counts the wait calls (each may take up to two minutes on the service) and the sleeps.
    const budget = this.#budget();
    let delay = POLL_INITIAL_MS;
    while (current.status !== 'DONE') {
      if (budget.remainingMs <= 0) {
        throw snapshotError('timeout', target, `operation ${operation} still ${String(current.status)} after ${budget.limitMs} ms`);
      }
      current = await this.#call<ComputeOperation>(
        target,
        (o, done) =>
          zone === undefined
            ? this.#clients.globalOperations.wait({ project, operation }, o, done)
            : this.#clients.zoneOperations.wait({ project, zone, operation }, o, done),
        signal,
        WAIT_REQUEST_TIMEOUT_MS,
      );
      if (current.status === 'DONE') break;
      await budget.sleep(delay, signal);
      delay = Math.min(delay * 2, POLL_MAX_MS);
    }
    const failure = operationError(current, target);
    if (failure !== undefined) throw failure;
    return current;
  }

  /** instances.get. */
  async #getInstance(ref: ZonalRef, signal?: AbortSignal): Promise<ComputeInstance> {
    const request = { project: ref.project, zone: ref.zone, instance: ref.name };
    return await this.#call<ComputeInstance>(`instance ${ref.path}`, (o, done) => this.#clients.instances.get(request, o, done), signal);
  }

  /** disks.get. */
  async #getDisk(ref: ZonalRef, signal?: AbortSignal): Promise<ComputeDisk> {
    const request = { project: ref.project, zone: ref.zone, disk: ref.name };
    return await this.#call<ComputeDisk>(`disk ${ref.path}`, (o, done) => this.#clients.disks.get(request, o, done), signal);
  }

  /** snapshots.get. */
  async #getSnapshot(ref: SnapshotRef, signal?: AbortSignal): Promise<ComputeSnapshot> {
    const request = { project: ref.project, snapshot: ref.name };
    return await this.#call<ComputeSnapshot>(`snapshot ${ref.path}`, (o, done) => this.#clients.snapshots.get(request, o, done), signal);
  }

  /**
   * One API call through the client's callback form: client retries off, throttling and 5xx retried
   * here, errors classified. Not the promise form: on every error whose body has `details` (each
   * rate-limit answer has an ErrorInfo), it rebuilds a protobuf Root from the whole Compute Engine
   * proto JSON to decode them again, about two seconds of CPU per error.
   */
  async #call<T>(
    target: string,
    invoke: (options: RequestOptions, done: Callback<T>) => void,
    signal?: AbortSignal,
    timeout = REQUEST_TIMEOUT_MS,
  ): Promise<T> {
    this.#assertOpen();
    const options: RequestOptions = { timeout, retry: { retryCodes: [] }, ...(signal === undefined ? {} : { signal }) };
    for (let attempt = 1; ; attempt++) {
      if (aborted(signal)) throw new SnapshotError('failed', `aborted: ${target}`, { target, cause: signal?.reason });
      try {
        return await new Promise<T>((resolve, reject) => {
          invoke(options, (err, value) => {
            if (err !== null && err !== undefined) reject(err);
            else if (value === null || value === undefined) reject(new SnapshotError('failed', `empty response: ${target}`, { target }));
            else resolve(value);
          });
        });
      } catch (err) {
        // The client reports an abort as CANCELLED; say plainly that it was ours.
        if (aborted(signal)) throw new SnapshotError('failed', `aborted: ${target}`, { target, cause: err });
        if (attempt >= CALL_ATTEMPTS || !classifyComputeError(err).retry) throw toSnapshotError(err, target);
        await this.#sleep(Math.min(RETRY_BASE_MS * 2 ** (attempt - 1), RETRY_MAX_MS), signal);
      }
    }
  }

  /** A fresh time budget for one operation: operationTimeoutMs. */
  #budget(): OperationBudget {
    return new OperationBudget(this.#timeoutMs, this.#sleep);
  }

  #assertOpen(): void {
    if (this.#closed) throw new SnapshotError('failed', 'the Compute Engine snapshotter is closed');
  }

  /** An instance or disk by name, partial URL or self link; a bare name is in the configured project and zone. */
  #zonalRef(value: string, collection: 'instances' | 'disks'): ZonalRef {
    const partial = partialUrl(value);
    const match = new RegExp(`^(?:projects/([^/]+)/)?zones/([^/]+)/${collection}/([^/]+)$`).exec(partial);
    const project = match?.[1] ?? this.#project;
    const zone = match?.[2] ?? this.#zone;
    const name = match === null ? partial : (match[3] ?? '');
    if (!GCE_NAME.test(name) && !/^[1-9][0-9]{0,19}$/.test(name)) {
      const what = collection === 'instances' ? 'instance' : 'disk';
      throw new SnapshotError('invalid', `${JSON.stringify(value)} is not a Compute Engine ${what} name or link`, { target: value });
    }
    return { project, zone, name, path: `projects/${project}/zones/${zone}/${collection}/${name}` };
  }

  /** A disk by name (in `zone`), partial URL or self link, zonal or regional. */
  #diskRef(value: string, zone: string): ResourceRef {
    const regional = /^(?:projects\/([^/]+)\/)?regions\/([^/]+)\/disks\/([^/]+)$/.exec(partialUrl(value));
    if (regional === null) return this.#zonalRef(value.includes('/') ? value : `zones/${zone}/disks/${value}`, 'disks');
    const project = regional[1] ?? this.#project;
    const name = regional[3] ?? '';
    return { project, zone: undefined, name, path: `projects/${project}/regions/${regional[2] ?? ''}/disks/${name}` };
  }

  /** A disk as the contract describes it. */
  #diskInfo(disk: ComputeDisk, device: string | undefined): DiskInfo {
    const sizeGiB = toNumber(disk.sizeGb);
    const zone = lastSegment(disk.zone);
    const sourceSnapshotId = lastSegment(disk.sourceSnapshot);
    return {
      id: disk.selfLink ?? '',
      name: disk.name ?? '',
      ...(device === undefined || device === '' ? {} : { device }),
      ...(sizeGiB === undefined ? {} : { sizeGiB }),
      ...(zone === undefined ? {} : { zone }),
      ...(sourceSnapshotId === undefined ? {} : { sourceSnapshotId }),
    };
  }
}

/** Whether the caller aborted; a function, so that the compiler does not narrow it across awaits. */
function aborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

/** A description that keeps the tags as given (labels lose case and characters), when it fits. */
function describeTags(tags: Record<string, string>): string {
  const text = `cloudbarman ${JSON.stringify(tags)}`;
  return text.length <= MAX_DESCRIPTION ? text : 'cloudbarman';
}

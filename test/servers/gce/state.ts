// What the Compute Engine test server holds: disks, instances, snapshots and operations of one
// project, the faults a test injected, and the requests it saw. Time never passes on its own:
// an operation or a snapshot moves one step each time someone polls it, so tests are exact.
// References: https://cloud.google.com/compute/docs/reference/rest/v1/zoneOperations (Operation),
// https://cloud.google.com/compute/docs/disks/create-snapshots ("you can resume writes once the
// snapshot status is UPLOADING"), https://cloud.google.com/compute/docs/api/how-tos/api-requests-responses
// (requestId: a repeated request returns the original operation).
import { randomBytes } from 'node:crypto';
import type { ComputeError } from './errors.ts';
import {
  backendError,
  notFound,
  permissionDenied,
  quotaExceeded,
  rateLimitExceeded,
} from './errors.ts';
import { labelFingerprint, link, paths } from './resources.ts';

/** The API methods the server implements, by their reference names. */
export type ComputeMethod =
  | 'instances.get'
  | 'instances.attachDisk'
  | 'disks.get'
  | 'disks.insert'
  | 'disks.createSnapshot'
  | 'snapshots.get'
  | 'snapshots.insert'
  | 'snapshots.delete'
  | 'zoneOperations.get'
  | 'zoneOperations.wait'
  | 'globalOperations.get'
  | 'globalOperations.wait';

/** The methods that start an operation. */
export type MutatingMethod = 'instances.attachDisk' | 'disks.insert' | 'disks.createSnapshot' | 'snapshots.insert' | 'snapshots.delete';

/**
 * A fault a test injects; each applies to the next `times` (default 1) matching requests.
 * - quotaExceeded: 403 reason quotaExceeded (domain usageLimits), "Quota 'SNAPSHOTS' exceeded. ...".
 * - rateLimitExceeded: 403 (as the Compute Engine quota pages document) or 429, reason rateLimitExceeded.
 * - backendError: 503 reason backendError.
 * - permissionDenied: 403 reason forbidden, "Required 'compute.x.y' permission for '...'".
 * - operationError: the request succeeds, its operation ends DONE with `error.errors[{code, message}]`
 *   and nothing is changed (a QUOTA_EXCEEDED snapshot never appears, as on the service).
 * - snapshotFails: the next snapshot goes CREATING -> FAILED, and its operation ends with an error.
 * - attachNotApplied: the next attachDisk operation ends DONE but the disk is not attached.
 */
export type Fault =
  | { type: 'quotaExceeded'; method: ComputeMethod; metric?: string; times?: number }
  | { type: 'rateLimitExceeded'; method: ComputeMethod; status?: 403 | 429; times?: number }
  | { type: 'backendError'; method: ComputeMethod; times?: number }
  | { type: 'permissionDenied'; method: ComputeMethod; times?: number }
  | { type: 'operationError'; method: MutatingMethod; code: string; message: string; httpStatus?: number; times?: number }
  | { type: 'snapshotFails'; code?: string; message?: string; times?: number }
  | { type: 'attachNotApplied'; times?: number };

/** One request as the server saw it, for tests that count calls or check parameters. */
export interface RequestRecord {
  method: ComputeMethod | undefined;
  httpMethod: string;
  path: string;
  query: Record<string, string>;
  status: number;
}

/** How operations and snapshots progress: the number of polls each stage takes. */
export interface ProgressOptions {
  /** Polls (get or wait) before an operation that is not a snapshot's is DONE; 0 = DONE at once. Default 2. */
  operationPolls: number;
  /** Polls a snapshot stays CREATING (writes must still wait). Default 1. */
  snapshotCreatingPolls: number;
  /** Polls a snapshot then stays UPLOADING (point in time fixed, not yet usable). Default 1. */
  snapshotUploadingPolls: number;
}

type DiskStatus = 'CREATING' | 'READY' | 'FAILED' | 'DELETING' | 'RESTORING';
type SnapshotStatus = 'CREATING' | 'UPLOADING' | 'READY' | 'FAILED' | 'DELETING';
type OperationStatus = 'PENDING' | 'RUNNING' | 'DONE';

/** A disk as stored. */
export interface DiskRecord {
  id: string;
  name: string;
  zone: string;
  sizeGb: number;
  type: string;
  status: DiskStatus;
  labels: Record<string, string>;
  description: string | undefined;
  creationTimestamp: string;
  sourceSnapshot: { link: string; id: string } | undefined;
  /** Links of the instances it is attached to. */
  users: string[];
  lastAttachTimestamp: string | undefined;
}

/** A disk attached to an instance, as stored. */
export interface AttachedDiskRecord {
  source: string;
  deviceName: string;
  index: number;
  boot: boolean;
  autoDelete: boolean;
  mode: 'READ_WRITE' | 'READ_ONLY';
  interface: 'SCSI' | 'NVME';
}

/** An instance as stored. */
export interface InstanceRecord {
  id: string;
  name: string;
  zone: string;
  creationTimestamp: string;
  disks: AttachedDiskRecord[];
  /** Disks whose attachDisk operation is still running, by link. */
  attaching: Set<string>;
}

/** A snapshot as stored. */
export interface SnapshotRecord {
  id: string;
  name: string;
  status: SnapshotStatus;
  sourceDisk: string;
  sourceDiskId: string;
  diskSizeGb: number;
  labels: Record<string, string>;
  description: string | undefined;
  creationTimestamp: string;
  storageLocations: string[];
  snapshotType: 'STANDARD' | 'ARCHIVE';
  chainName: string | undefined;
  /** Polls seen so far; the status follows from it. */
  ticks: number;
  failure: { code: string; message: string } | undefined;
}

/** One `error.errors[]` entry of an operation. */
export interface OperationErrorItem {
  code: string;
  message: string;
}

/** An operation as stored. */
export interface OperationRecord {
  id: string;
  name: string;
  method: MutatingMethod;
  /** Undefined for global operations. */
  zone: string | undefined;
  operationType: string;
  targetLink: string;
  targetId: string;
  status: OperationStatus;
  progress: number;
  insertTime: string;
  startTime: string | undefined;
  endTime: string | undefined;
  polls: number;
  /** When set, the operation follows this snapshot's progress instead of counting polls. */
  snapshot: string | undefined;
  /** An injected error the operation ends with. */
  fault: { code: string; message: string; httpStatus: number } | undefined;
  error: { errors: OperationErrorItem[]; httpStatus: number } | undefined;
  /** Applies the change once the operation is DONE without error. */
  apply: () => void;
  /** Undoes what the request reserved when the operation ends with an error. */
  rollback: () => void;
}

/** The reason phrase the service puts in `httpErrorMessage`. */
const HTTP_ERROR_MESSAGE: Readonly<Record<number, string>> = {
  400: 'BAD REQUEST',
  403: 'FORBIDDEN',
  404: 'NOT FOUND',
  409: 'CONFLICT',
  429: 'TOO MANY REQUESTS',
  500: 'INTERNAL SERVER ERROR',
  503: 'SERVICE UNAVAILABLE',
};

/** The IAM permission each method needs, for the permissionDenied fault's message. */
const PERMISSION: Readonly<Record<ComputeMethod, string>> = {
  'instances.get': 'compute.instances.get',
  'instances.attachDisk': 'compute.instances.attachDisk',
  'disks.get': 'compute.disks.get',
  'disks.insert': 'compute.disks.create',
  'disks.createSnapshot': 'compute.disks.createSnapshot',
  'snapshots.get': 'compute.snapshots.get',
  'snapshots.insert': 'compute.snapshots.create',
  'snapshots.delete': 'compute.snapshots.delete',
  'zoneOperations.get': 'compute.zoneOperations.get',
  'zoneOperations.wait': 'compute.zoneOperations.get',
  'globalOperations.get': 'compute.globalOperations.get',
  'globalOperations.wait': 'compute.globalOperations.get',
};

/** A uint64 id as the API prints it: 19 decimal digits, never starting with 0. */
function newId(): string {
  const n = randomBytes(8).readBigUInt64BE(0) % 8_000_000_000_000_000_000n;
  return (n + 1_000_000_000_000_000_000n).toString();
}

/** RFC 3339 timestamps, as creationTimestamp and insertTime carry them. */
function now(): string {
  return new Date().toISOString();
}

/** Everything the server knows, for one project. Tests read and seed it through the handle. */
export class ComputeState {
  readonly project: string;
  readonly zones: readonly string[];
  /** How operations and snapshots progress; tests may change it between requests. */
  readonly progress: ProgressOptions;
  /** Every request, in order. */
  readonly requests: RequestRecord[] = [];
  readonly #disks = new Map<string, DiskRecord>(); // by link
  readonly #instances = new Map<string, InstanceRecord>(); // by link
  readonly #snapshots = new Map<string, SnapshotRecord>(); // by name
  readonly #operations = new Map<string, OperationRecord>(); // by link
  readonly #requestIds = new Map<string, OperationRecord>();
  readonly #faults: (Fault & { remaining: number })[] = [];
  #operationSeq = 0;

  readonly #initialProgress: ProgressOptions;

  constructor(project: string, zones: readonly string[], progress: ProgressOptions) {
    this.project = project;
    this.zones = zones;
    this.progress = { ...progress };
    this.#initialProgress = { ...progress };
  }

  /** The zone seeding helpers use when none is given. */
  get defaultZone(): string {
    return this.zones[0] ?? 'us-central1-a';
  }

  // --- seeding and inspection (tests) -------------------------------------------------------

  /** Creates a READY disk directly; returns its self link. */
  addDisk(spec: { name: string; zone?: string; sizeGb?: number; type?: string; labels?: Record<string, string> }): string {
    const zone = spec.zone ?? this.defaultZone;
    const diskLink = link(paths.disk(this.project, zone, spec.name));
    if (this.#disks.has(diskLink)) throw new Error(`Compute test server: disk ${spec.name} already exists in ${zone}`);
    this.#disks.set(diskLink, {
      id: newId(),
      name: spec.name,
      zone,
      sizeGb: spec.sizeGb ?? 10,
      type: spec.type ?? 'pd-balanced',
      status: 'READY',
      labels: { ...spec.labels },
      description: undefined,
      creationTimestamp: now(),
      sourceSnapshot: undefined,
      users: [],
      lastAttachTimestamp: undefined,
    });
    return diskLink;
  }

  /** Creates a RUNNING instance with the given disks (which must exist) attached; returns its self link. */
  addInstance(spec: { name: string; zone?: string; disks?: { disk: string; deviceName?: string; boot?: boolean }[] }): string {
    const zone = spec.zone ?? this.defaultZone;
    const instanceLink = link(paths.instance(this.project, zone, spec.name));
    if (this.#instances.has(instanceLink)) throw new Error(`Compute test server: instance ${spec.name} already exists in ${zone}`);
    this.#instances.set(instanceLink, { id: newId(), name: spec.name, zone, creationTimestamp: now(), disks: [], attaching: new Set() });
    for (const d of spec.disks ?? []) {
      this.attach(spec.name, d.disk, { zone, ...(d.deviceName === undefined ? {} : { deviceName: d.deviceName }), boot: d.boot ?? false });
    }
    return instanceLink;
  }

  /** Attaches a disk directly (no operation). */
  attach(instance: string, disk: string, options: { zone?: string; deviceName?: string; boot?: boolean } = {}): void {
    const zone = options.zone ?? this.defaultZone;
    const inst = this.instanceRecord(zone, instance);
    const rec = this.diskRecord(zone, disk);
    if (inst === undefined || rec === undefined) throw new Error(`Compute test server: no instance ${instance} or disk ${disk} in ${zone}`);
    const diskLink = this.diskLink(rec);
    if (inst.disks.some((d) => d.source === diskLink)) throw new Error(`Compute test server: ${disk} is already attached to ${instance}`);
    this.attachRecord(inst, rec, {
      deviceName: options.deviceName ?? `persistent-disk-${this.nextIndex(inst)}`,
      boot: options.boot ?? false,
      autoDelete: options.boot ?? false,
      mode: 'READ_WRITE',
      interface: 'SCSI',
    });
  }

  /** Detaches a disk directly: the "disk not attached" situation a test can create at any time. */
  detach(instance: string, disk: string, zone = this.defaultZone): void {
    const inst = this.instanceRecord(zone, instance);
    const rec = this.diskRecord(zone, disk);
    if (inst === undefined || rec === undefined) throw new Error(`Compute test server: no instance ${instance} or disk ${disk} in ${zone}`);
    const diskLink = this.diskLink(rec);
    const before = inst.disks.length;
    inst.disks = inst.disks.filter((d) => d.source !== diskLink);
    if (inst.disks.length === before) throw new Error(`Compute test server: ${disk} is not attached to ${instance}`);
    rec.users = rec.users.filter((u) => u !== this.instanceLink(inst));
  }

  /** The disk as disks.get would return it, without counting as a poll. */
  getDisk(name: string, zone = this.defaultZone): Record<string, unknown> | undefined {
    const rec = this.diskRecord(zone, name);
    return rec === undefined ? undefined : this.diskView(rec);
  }

  /** The instance as instances.get would return it. */
  getInstance(name: string, zone = this.defaultZone): Record<string, unknown> | undefined {
    const rec = this.instanceRecord(zone, name);
    return rec === undefined ? undefined : this.instanceView(rec);
  }

  /** The snapshot as snapshots.get would return it, without advancing it. */
  getSnapshot(name: string): Record<string, unknown> | undefined {
    const rec = this.#snapshots.get(name);
    return rec === undefined ? undefined : this.snapshotView(rec);
  }

  /** Names of every snapshot, sorted. */
  snapshotNames(): string[] {
    return [...this.#snapshots.keys()].sort();
  }

  /** Every operation, as the API would show it, in creation order. */
  operations(): Record<string, unknown>[] {
    return [...this.#operations.values()].map((op) => this.operationView(op));
  }

  /** Queues a fault; see Fault. */
  inject(fault: Fault): void {
    this.#faults.push({ ...fault, remaining: fault.times ?? 1 });
  }

  /** Forgets everything, and puts the progress options back as the server started with them. */
  clear(): void {
    Object.assign(this.progress, this.#initialProgress);
    this.#disks.clear();
    this.#instances.clear();
    this.#snapshots.clear();
    this.#operations.clear();
    this.#requestIds.clear();
    this.#faults.length = 0;
    this.requests.length = 0;
  }

  // --- used by the routes ---------------------------------------------------------------------

  /** Throws the HTTP fault queued for this method, if any. */
  checkHttpFault(method: ComputeMethod, resourcePath: string): void {
    const fault = this.#takeFault((f) => 'method' in f && f.method === method && f.type !== 'operationError');
    if (fault === undefined) return;
    throw httpFaultError(fault, method, resourcePath);
  }

  /** The operation a repeated requestId refers to, if any. */
  operationForRequestId(requestId: string | undefined): OperationRecord | undefined {
    return requestId === undefined ? undefined : this.#requestIds.get(requestId);
  }

  diskLink(disk: DiskRecord): string {
    return link(paths.disk(this.project, disk.zone, disk.name));
  }

  instanceLink(instance: InstanceRecord): string {
    return link(paths.instance(this.project, instance.zone, instance.name));
  }

  snapshotLink(snapshot: SnapshotRecord): string {
    return link(paths.snapshot(this.project, snapshot.name));
  }

  /** A disk by name or numeric id. */
  diskRecord(zone: string, nameOrId: string): DiskRecord | undefined {
    const byName = this.#disks.get(link(paths.disk(this.project, zone, nameOrId)));
    if (byName !== undefined) return byName;
    return [...this.#disks.values()].find((d) => d.zone === zone && d.id === nameOrId);
  }

  /** An instance by name or numeric id. */
  instanceRecord(zone: string, nameOrId: string): InstanceRecord | undefined {
    const byName = this.#instances.get(link(paths.instance(this.project, zone, nameOrId)));
    if (byName !== undefined) return byName;
    return [...this.#instances.values()].find((i) => i.zone === zone && i.id === nameOrId);
  }

  /** A snapshot by name or numeric id. */
  snapshotRecord(nameOrId: string): SnapshotRecord | undefined {
    return this.#snapshots.get(nameOrId) ?? [...this.#snapshots.values()].find((s) => s.id === nameOrId);
  }

  /** An operation by zone (undefined = global) and name. */
  operationRecord(zone: string | undefined, name: string): OperationRecord | undefined {
    return this.#operations.get(link(zone === undefined ? paths.globalOperation(this.project, name) : paths.zoneOperation(this.project, zone, name)));
  }

  /** The instance a disk is attached to (or being attached to), other than `except`. */
  userOf(disk: DiskRecord): string | undefined {
    const diskLink = this.diskLink(disk);
    for (const inst of this.#instances.values()) {
      if (inst.disks.some((d) => d.source === diskLink) || inst.attaching.has(diskLink)) return this.instanceLink(inst);
    }
    return undefined;
  }

  /** Lowest free device index on an instance. */
  nextIndex(instance: InstanceRecord): number {
    const used = new Set(instance.disks.map((d) => d.index));
    let index = 0;
    while (used.has(index)) index++;
    return index;
  }

  /** Records an attachment and its reverse link on the disk. */
  attachRecord(instance: InstanceRecord, disk: DiskRecord, spec: Omit<AttachedDiskRecord, 'source' | 'index'>): void {
    const diskLink = this.diskLink(disk);
    instance.disks.push({ source: diskLink, index: this.nextIndex(instance), ...spec });
    disk.users.push(this.instanceLink(instance));
    disk.lastAttachTimestamp = now();
  }

  /** Stores a new disk (status CREATING until its operation is DONE). */
  putDisk(disk: Omit<DiskRecord, 'id' | 'creationTimestamp' | 'users' | 'lastAttachTimestamp'>): DiskRecord {
    const rec: DiskRecord = { ...disk, id: newId(), creationTimestamp: now(), users: [], lastAttachTimestamp: undefined };
    this.#disks.set(this.diskLink(rec), rec);
    return rec;
  }

  /** Removes a disk (its insert failed). */
  removeDisk(disk: DiskRecord): void {
    this.#disks.delete(this.diskLink(disk));
  }

  /** Stores a new snapshot, CREATING; a queued snapshotFails fault makes it fail. */
  putSnapshot(
    snapshot: Omit<SnapshotRecord, 'id' | 'creationTimestamp' | 'status' | 'ticks' | 'failure'>,
  ): SnapshotRecord {
    const fault = this.#takeFault((f) => f.type === 'snapshotFails');
    const failure =
      fault?.type === 'snapshotFails'
        ? { code: fault.code ?? 'INTERNAL_ERROR', message: fault.message ?? 'Internal error. Please try again or contact Google Support.' }
        : undefined;
    const rec: SnapshotRecord = { ...snapshot, id: newId(), creationTimestamp: now(), status: 'CREATING', ticks: 0, failure };
    rec.status = this.#snapshotStatusAt(rec);
    this.#snapshots.set(rec.name, rec);
    return rec;
  }

  /** Removes a snapshot. */
  removeSnapshot(name: string): void {
    this.#snapshots.delete(name);
  }

  /** One poll of a snapshot: CREATING -> UPLOADING -> READY (or FAILED), one step per stage's polls. */
  pollSnapshot(snapshot: SnapshotRecord): void {
    if (snapshot.status !== 'CREATING' && snapshot.status !== 'UPLOADING') return;
    snapshot.ticks++;
    snapshot.status = this.#snapshotStatusAt(snapshot);
  }

  /** Starts an operation for a request; the fault queue may decide how it ends. */
  startOperation(spec: {
    method: MutatingMethod;
    zone: string | undefined;
    operationType: string;
    targetLink: string;
    targetId: string;
    requestId: string | undefined;
    snapshot?: string;
    apply?: () => void;
    rollback?: () => void;
  }): OperationRecord {
    const fault = this.#takeFault((f) => f.type === 'operationError' && f.method === spec.method);
    const seq = ++this.#operationSeq;
    const op: OperationRecord = {
      id: newId(),
      // The service's form: operation-<ms>-<hex>-<hex>-<hex>.
      name: `operation-${Date.now()}-${randomBytes(6).toString('hex')}-${seq.toString(16).padStart(8, '0')}-${randomBytes(4).toString('hex')}`,
      method: spec.method,
      zone: spec.zone,
      operationType: spec.operationType,
      targetLink: spec.targetLink,
      targetId: spec.targetId,
      status: 'PENDING',
      progress: 0,
      insertTime: now(),
      startTime: undefined,
      endTime: undefined,
      polls: 0,
      snapshot: fault === undefined ? spec.snapshot : undefined,
      fault:
        fault?.type === 'operationError' ? { code: fault.code, message: fault.message, httpStatus: fault.httpStatus ?? 400 } : undefined,
      error: undefined,
      apply: spec.apply ?? (() => undefined),
      rollback: spec.rollback ?? (() => undefined),
    };
    this.#operations.set(this.operationLink(op), op);
    if (spec.requestId !== undefined) this.#requestIds.set(spec.requestId, op);
    this.#settle(op);
    return op;
  }

  /** Whether the next attachDisk operation should end without attaching (fault attachNotApplied). */
  takeAttachNotApplied(): boolean {
    return this.#takeFault((f) => f.type === 'attachNotApplied') !== undefined;
  }

  /** One poll (get or wait) of an operation. */
  pollOperation(op: OperationRecord): void {
    if (op.status === 'DONE') return;
    op.polls++;
    if (op.snapshot !== undefined) {
      const snap = this.#snapshots.get(op.snapshot);
      if (snap !== undefined) this.pollSnapshot(snap);
    }
    this.#settle(op);
  }

  operationLink(op: OperationRecord): string {
    return link(op.zone === undefined ? paths.globalOperation(this.project, op.name) : paths.zoneOperation(this.project, op.zone, op.name));
  }

  // --- resource JSON, as the API returns it -----------------------------------------------------

  diskView(disk: DiskRecord): Record<string, unknown> {
    return {
      kind: 'compute#disk',
      id: disk.id,
      creationTimestamp: disk.creationTimestamp,
      name: disk.name,
      ...(disk.description === undefined ? {} : { description: disk.description }),
      sizeGb: String(disk.sizeGb),
      zone: link(paths.zone(this.project, disk.zone)),
      status: disk.status,
      selfLink: this.diskLink(disk),
      type: link(paths.diskType(this.project, disk.zone, disk.type)),
      ...(disk.sourceSnapshot === undefined ? {} : { sourceSnapshot: disk.sourceSnapshot.link, sourceSnapshotId: disk.sourceSnapshot.id }),
      ...(Object.keys(disk.labels).length === 0 ? {} : { labels: { ...disk.labels } }),
      labelFingerprint: labelFingerprint(disk.labels),
      ...(disk.users.length === 0 ? {} : { users: [...disk.users] }),
      ...(disk.lastAttachTimestamp === undefined ? {} : { lastAttachTimestamp: disk.lastAttachTimestamp }),
      physicalBlockSizeBytes: '4096',
      satisfiesPzi: true,
    };
  }

  instanceView(instance: InstanceRecord): Record<string, unknown> {
    return {
      kind: 'compute#instance',
      id: instance.id,
      creationTimestamp: instance.creationTimestamp,
      name: instance.name,
      machineType: link(`${paths.zone(this.project, instance.zone)}/machineTypes/e2-medium`),
      status: 'RUNNING',
      zone: link(paths.zone(this.project, instance.zone)),
      disks: [...instance.disks]
        .sort((a, b) => a.index - b.index)
        .map((d) => ({
          kind: 'compute#attachedDisk',
          type: 'PERSISTENT',
          mode: d.mode,
          source: d.source,
          deviceName: d.deviceName,
          index: d.index,
          boot: d.boot,
          autoDelete: d.autoDelete,
          interface: d.interface,
          diskSizeGb: String([...this.#disks.values()].find((x) => this.diskLink(x) === d.source)?.sizeGb ?? 0),
        })),
      selfLink: this.instanceLink(instance),
      labelFingerprint: labelFingerprint({}),
      fingerprint: 'Jgq9Njwjqe8=',
      startRestricted: false,
      deletionProtection: false,
      cpuPlatform: 'Intel Broadwell',
      lastStartTimestamp: instance.creationTimestamp,
    };
  }

  snapshotView(snapshot: SnapshotRecord): Record<string, unknown> {
    const ready = snapshot.status === 'READY';
    return {
      kind: 'compute#snapshot',
      id: snapshot.id,
      creationTimestamp: snapshot.creationTimestamp,
      name: snapshot.name,
      ...(snapshot.description === undefined ? {} : { description: snapshot.description }),
      status: snapshot.status,
      sourceDisk: snapshot.sourceDisk,
      sourceDiskId: snapshot.sourceDiskId,
      diskSizeGb: String(snapshot.diskSizeGb),
      storageBytes: ready ? String(snapshot.diskSizeGb * 1024 ** 3 / 4) : '0',
      storageBytesStatus: ready ? 'UP_TO_DATE' : 'UPDATING',
      selfLink: this.snapshotLink(snapshot),
      ...(Object.keys(snapshot.labels).length === 0 ? {} : { labels: { ...snapshot.labels } }),
      labelFingerprint: labelFingerprint(snapshot.labels),
      storageLocations: [...snapshot.storageLocations],
      ...(snapshot.chainName === undefined ? {} : { chainName: snapshot.chainName }),
      snapshotType: snapshot.snapshotType,
      autoCreated: false,
      satisfiesPzi: true,
    };
  }

  operationView(op: OperationRecord): Record<string, unknown> {
    return {
      kind: 'compute#operation',
      id: op.id,
      name: op.name,
      ...(op.zone === undefined ? {} : { zone: link(paths.zone(this.project, op.zone)) }),
      operationType: op.operationType,
      targetLink: op.targetLink,
      targetId: op.targetId,
      status: op.status,
      user: 'cloudbarman-test@example.iam.gserviceaccount.com',
      progress: op.progress,
      insertTime: op.insertTime,
      ...(op.startTime === undefined ? {} : { startTime: op.startTime }),
      ...(op.endTime === undefined ? {} : { endTime: op.endTime }),
      selfLink: this.operationLink(op),
      ...(op.error === undefined
        ? {}
        : {
            error: { errors: op.error.errors.map((e) => ({ ...e })) },
            httpErrorStatusCode: op.error.httpStatus,
            httpErrorMessage: HTTP_ERROR_MESSAGE[op.error.httpStatus] ?? 'ERROR',
          }),
    };
  }

  // --- internals --------------------------------------------------------------------------------

  /** The status a snapshot's ticks give: CREATING for the first polls, then FAILED or UPLOADING, then READY. */
  #snapshotStatusAt(snapshot: SnapshotRecord): SnapshotStatus {
    const { snapshotCreatingPolls: creating, snapshotUploadingPolls: uploading } = this.progress;
    if (snapshot.ticks < creating) return 'CREATING';
    if (snapshot.failure !== undefined) return 'FAILED';
    return snapshot.ticks < creating + uploading ? 'UPLOADING' : 'READY';
  }

  /** Brings an operation's status in line with its polls (or its snapshot), finishing it once. */
  #settle(op: OperationRecord): void {
    if (op.status === 'DONE') return;
    let done: boolean;
    let failure: { errors: OperationErrorItem[]; httpStatus: number } | undefined;
    if (op.snapshot !== undefined) {
      const snap = this.#snapshots.get(op.snapshot);
      const status = snap?.status;
      done = status === undefined || status === 'READY' || status === 'FAILED';
      if (snap?.status === 'FAILED' && snap.failure !== undefined) failure = { errors: [{ ...snap.failure }], httpStatus: 500 };
      op.progress = status === 'UPLOADING' ? 50 : done ? 100 : 0;
    } else {
      const total = this.progress.operationPolls;
      done = op.polls >= total;
      op.progress = done ? 100 : Math.floor((100 * op.polls) / Math.max(1, total));
      if (done && op.fault !== undefined) failure = { errors: [{ code: op.fault.code, message: op.fault.message }], httpStatus: op.fault.httpStatus };
    }
    if (op.polls > 0 || done) {
      op.status = 'RUNNING';
      op.startTime ??= now();
    }
    if (!done) return;
    op.status = 'DONE';
    op.endTime = now();
    if (failure === undefined) op.apply();
    else {
      op.error = failure;
      op.rollback();
    }
  }

  /** Takes one use of the first queued fault that matches. */
  #takeFault(match: (fault: Fault) => boolean): Fault | undefined {
    const index = this.#faults.findIndex(match);
    const fault = this.#faults[index];
    if (fault === undefined) return undefined;
    if (--fault.remaining <= 0) this.#faults.splice(index, 1);
    return fault;
  }
}

/** The error an HTTP fault answers with. */
function httpFaultError(fault: Fault, method: ComputeMethod, resourcePath: string): ComputeError {
  switch (fault.type) {
    case 'quotaExceeded':
      return quotaExceeded(fault.metric ?? 'SNAPSHOTS', 1000, 'globally');
    case 'rateLimitExceeded':
      return rateLimitExceeded(fault.status ?? 403);
    case 'backendError':
      return backendError();
    case 'permissionDenied':
      return permissionDenied(PERMISSION[method], resourcePath);
    default:
      return notFound(resourcePath); // unreachable: only HTTP faults are taken here
  }
}

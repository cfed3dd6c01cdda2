// The EC2 test server's model: instances, EBS volumes with their attachments, and snapshots, with
// the life cycles the service reports (https://docs.aws.amazon.com/ebs/latest/userguide/ebs-volume-lifecycle.html,
// ebs-creating-snapshot.html). Time does not pass by the clock: a resource moves on by one step each
// time a Describe* response shows it, so tests decide how many polls an operation takes and never sleep.
// Tests seed it and inject faults through the methods below (the handle's `state`).
import { randomBytes } from 'node:crypto';

/** Instance states and their numeric codes, as DescribeInstances reports them. */
export const INSTANCE_STATE_CODES = {
  pending: 0,
  running: 16,
  'shutting-down': 32,
  terminated: 48,
  stopping: 64,
  stopped: 80,
} as const;

/** An instance's state name. */
export type InstanceStateName = keyof typeof INSTANCE_STATE_CODES;

/** A volume's state (Volume.State). */
export type VolumeStateName = 'creating' | 'available' | 'in-use' | 'deleting' | 'deleted' | 'error';

/** An attachment's state (VolumeAttachment.State). */
export type AttachmentStateName = 'attaching' | 'attached' | 'detaching' | 'detached';

/** A snapshot's state (Snapshot.State); recoverable and recovering (Recycle Bin) are not modelled. */
export type SnapshotStateName = 'pending' | 'completed' | 'error';

/** An instance. Its block device mappings are the volumes attached to it. */
export interface InstanceRecord {
  readonly id: string;
  zone: string;
  state: InstanceStateName;
  rootDeviceName: string;
  instanceType: string;
  launchTime: Date;
  readonly tags: Map<string, string>;
}

/** A volume's attachment to an instance. */
export interface AttachmentRecord {
  instanceId: string;
  device: string;
  state: AttachmentStateName;
  attachTime: Date;
  deleteOnTermination: boolean;
  /** Describe* responses still to show 'attaching' before 'attached'. */
  pollsLeft: number;
  /** Orders an instance's block device mappings by when they were attached. */
  sequence: number;
}

/** An EBS volume. */
export interface VolumeRecord {
  readonly id: string;
  sizeGiB: number;
  zone: string;
  state: VolumeStateName;
  snapshotId: string | undefined;
  volumeType: string;
  iops: number | undefined;
  encrypted: boolean;
  createTime: Date;
  readonly tags: Map<string, string>;
  attachment: AttachmentRecord | undefined;
  /** Describe* responses still to show 'creating'. */
  pollsLeft: number;
  /** When set, creation ends in 'error' instead of 'available'. */
  failCreation: boolean;
  /** CreateVolume's ClientToken and a fingerprint of its parameters, for idempotent retries. */
  clientToken: string | undefined;
  fingerprint: string | undefined;
}

/** An EBS snapshot. */
export interface SnapshotRecord {
  readonly id: string;
  volumeId: string;
  volumeSize: number;
  state: SnapshotStateName;
  statusMessage: string | undefined;
  /** Describe* responses it has appeared in while pending, and how many it takes to complete. */
  polls: number;
  pollsToComplete: number;
  /** When set, the snapshot ends in 'error' with this StateMessage instead of 'completed'. */
  failWith: string | undefined;
  startTime: Date;
  description: string;
  encrypted: boolean;
  ownerId: string;
  readonly tags: Map<string, string>;
}

/** A volume a test attaches to a seeded instance. */
export interface SeedVolume {
  id?: string;
  /** The device name the instance sees it under, e.g. /dev/xvda or /dev/sdf. */
  device: string;
  sizeGiB?: number;
  name?: string;
  tags?: Record<string, string>;
  snapshotId?: string;
  deleteOnTermination?: boolean;
}

/** An instance a test seeds, with the volumes attached to it (attached, not attaching). */
export interface SeedInstance {
  id?: string;
  name?: string;
  zone?: string;
  state?: InstanceStateName;
  /** Defaults to /dev/xvda; a volume at this device is the root (boot) volume. */
  rootDeviceName?: string;
  instanceType?: string;
  tags?: Record<string, string>;
  volumes?: SeedVolume[];
}

/** A volume a test seeds on its own, not attached. */
export interface SeedDetachedVolume {
  id?: string;
  sizeGiB?: number;
  zone?: string;
  name?: string;
  tags?: Record<string, string>;
  snapshotId?: string;
  state?: VolumeStateName;
}

/** A snapshot a test seeds directly (e.g. a completed one to restore from). */
export interface SeedSnapshot {
  id?: string;
  volumeId?: string;
  volumeSize?: number;
  state?: SnapshotStateName;
  name?: string;
  tags?: Record<string, string>;
}

/** What an injected fault does to the call it hits. */
export type Ec2Fault =
  | {
      /** The error code, e.g. RequestLimitExceeded, SnapshotLimitExceeded, InternalError. */
      code: string;
      message?: string;
      /** HTTP status; defaults to the code's usual status (503 for RequestLimitExceeded and Unavailable, 500 for InternalError, else 400). */
      status?: number;
      /** Apply the action first, then answer the error: a failure the client cannot tell from one that did nothing. */
      afterApply?: boolean;
    }
  | {
      /** Answer this status with an empty body (a load balancer's 503, say). */
      emptyStatus: number;
      afterApply?: boolean;
    }
  | {
      /** Close the connection without answering. */
      resetConnection: true;
      afterApply?: boolean;
    };

/** The actions the server implements. */
export const ACTIONS = [
  'DescribeInstances',
  'DescribeVolumes',
  'CreateSnapshot',
  'CreateSnapshots',
  'DescribeSnapshots',
  'DeleteSnapshot',
  'CreateVolume',
  'AttachVolume',
  'CreateTags',
] as const;

/** An implemented action's name. */
export type Ec2Action = (typeof ACTIONS)[number];

/** One request as the server received it (after authentication), for assertions. */
export interface RecordedCall {
  action: string;
  params: Record<string, string>;
}

/** How many polls each long-running step takes; see startEc2Server's options. */
export interface Timings {
  snapshotPolls: number;
  volumePolls: number;
  attachPolls: number;
}

/** Account-wide limits; creating beyond them answers SnapshotLimitExceeded / VolumeLimitExceeded. */
export interface Limits {
  snapshots?: number;
  volumes?: number;
}

/** A new id: the prefix and 17 hex digits, as EC2 issues them. */
export function newId(prefix: string): string {
  return `${prefix}-${randomBytes(9).toString('hex').slice(0, 17)}`;
}

/** The whole model; the action handlers read and change it, tests seed and inspect it. */
export class Ec2State {
  readonly region: string;
  readonly ownerId: string;
  readonly zones: readonly string[];
  readonly timings: Timings;
  limits: Limits = {};
  readonly instances = new Map<string, InstanceRecord>();
  readonly volumes = new Map<string, VolumeRecord>();
  readonly snapshots = new Map<string, SnapshotRecord>();
  /** Every authenticated request, in order. */
  readonly calls: RecordedCall[] = [];
  readonly #faults = new Map<string, { fault: Ec2Fault; remaining: number }[]>();
  readonly #hooks = new Map<string, ((state: Ec2State) => void)[]>();
  #failVolumeCreations = 0;
  #attachSequence = 0;

  constructor(options: { region: string; ownerId: string; zones: readonly string[]; timings: Timings }) {
    this.region = options.region;
    this.ownerId = options.ownerId;
    this.zones = options.zones;
    this.timings = options.timings;
  }

  /** The zone resources land in when the test names none. */
  get defaultZone(): string {
    return this.zones[0] ?? `${this.region}a`;
  }

  /** Adds an instance with its volumes attached; returns it and its volume ids in the order given. */
  addInstance(seed: SeedInstance = {}): { instance: InstanceRecord; volumeIds: string[] } {
    const id = seed.id ?? newId('i');
    if (this.instances.has(id)) throw new Error(`EC2 test server: instance ${id} already exists`);
    const tags = new Map(Object.entries(seed.tags ?? {}));
    if (seed.name !== undefined) tags.set('Name', seed.name);
    const instance: InstanceRecord = {
      id,
      zone: seed.zone ?? this.defaultZone,
      state: seed.state ?? 'running',
      rootDeviceName: seed.rootDeviceName ?? '/dev/xvda',
      instanceType: seed.instanceType ?? 'm5.large',
      launchTime: new Date(),
      tags,
    };
    this.instances.set(id, instance);
    const volumeIds = (seed.volumes ?? []).map((v) => {
      const volume = this.addVolume({
        ...(v.id === undefined ? {} : { id: v.id }),
        sizeGiB: v.sizeGiB ?? 8,
        zone: instance.zone,
        ...(v.name === undefined ? {} : { name: v.name }),
        ...(v.tags === undefined ? {} : { tags: v.tags }),
        ...(v.snapshotId === undefined ? {} : { snapshotId: v.snapshotId }),
        state: 'in-use',
      });
      volume.attachment = {
        instanceId: id,
        device: v.device,
        state: 'attached',
        attachTime: new Date(),
        deleteOnTermination: v.deleteOnTermination ?? v.device === instance.rootDeviceName,
        pollsLeft: 0,
        sequence: ++this.#attachSequence,
      };
      return volume.id;
    });
    return { instance, volumeIds };
  }

  /** Adds a volume (available, unattached, unless the seed says otherwise). */
  addVolume(seed: SeedDetachedVolume = {}): VolumeRecord {
    const id = seed.id ?? newId('vol');
    if (this.volumes.has(id)) throw new Error(`EC2 test server: volume ${id} already exists`);
    const tags = new Map(Object.entries(seed.tags ?? {}));
    if (seed.name !== undefined) tags.set('Name', seed.name);
    const volume: VolumeRecord = {
      id,
      sizeGiB: seed.sizeGiB ?? 8,
      zone: seed.zone ?? this.defaultZone,
      state: seed.state ?? 'available',
      snapshotId: seed.snapshotId,
      volumeType: 'gp3',
      iops: 3000,
      encrypted: false,
      createTime: new Date(),
      tags,
      attachment: undefined,
      pollsLeft: 0,
      failCreation: false,
      clientToken: undefined,
      fingerprint: undefined,
    };
    this.volumes.set(id, volume);
    return volume;
  }

  /** Adds a snapshot directly (completed unless the seed says otherwise). */
  addSnapshot(seed: SeedSnapshot = {}): SnapshotRecord {
    const tags = new Map(Object.entries(seed.tags ?? {}));
    if (seed.name !== undefined) tags.set('Name', seed.name);
    const snapshot = this.#newSnapshot(seed.volumeId ?? newId('vol'), seed.volumeSize ?? 8, '', tags, seed.id);
    if (seed.state !== undefined && seed.state !== 'pending') {
      snapshot.state = seed.state;
      snapshot.polls = snapshot.pollsToComplete;
    }
    return snapshot;
  }

  /** Models a volume that is no longer attached (detached behind the caller's back). */
  detachVolume(volumeId: string): void {
    const volume = this.#require(this.volumes, volumeId, 'volume');
    volume.attachment = undefined;
    volume.state = 'available';
  }

  /** Makes a pending snapshot end in 'error' with this StateMessage when it would complete. */
  failSnapshot(snapshotId: string, message: string): void {
    this.#require(this.snapshots, snapshotId, 'snapshot').failWith = message;
  }

  /** Makes the next `count` volumes CreateVolume creates end in 'error' instead of 'available'. */
  failNextVolumeCreations(count = 1): void {
    this.#failVolumeCreations += count;
  }

  /** The next `count` calls of `action` fail as `fault` says (queued after faults already waiting). */
  failNext(action: Ec2Action, fault: Ec2Fault, count = 1): void {
    const queue = this.#faults.get(action) ?? [];
    queue.push({ fault, remaining: count });
    this.#faults.set(action, queue);
  }

  /** Runs `change` just before the next call of `action` is handled: the world changing between a
   *  client's look and its act (a volume attached or detached meanwhile, say). */
  beforeNext(action: Ec2Action, change: (state: Ec2State) => void): void {
    const queue = this.#hooks.get(action) ?? [];
    queue.push(change);
    this.#hooks.set(action, queue);
  }

  /** Runs the change waiting for `action`, if any (the dispatcher calls this once per request). */
  runHook(action: string): void {
    this.#hooks.get(action)?.shift()?.(this);
  }

  /** The calls recorded for one action. */
  callsOf(action: Ec2Action): RecordedCall[] {
    return this.calls.filter((c) => c.action === action);
  }

  /** Takes the next fault waiting for `action`, if any (the dispatcher calls this once per request). */
  takeFault(action: string): Ec2Fault | undefined {
    const queue = this.#faults.get(action);
    const head = queue?.[0];
    if (queue === undefined || head === undefined) return undefined;
    if (--head.remaining <= 0) queue.shift();
    return head.fault;
  }

  /** Creates a snapshot of a volume: pending, or completed at once when snapshotPolls is 0. */
  createSnapshot(volume: VolumeRecord, description: string, tags: Map<string, string>): SnapshotRecord {
    return this.#newSnapshot(volume.id, volume.sizeGiB, description, tags);
  }

  /** Creates a volume; it is 'creating' for volumePolls Describe* responses. */
  createVolume(fields: {
    sizeGiB: number;
    zone: string;
    snapshotId: string | undefined;
    volumeType: string;
    iops: number | undefined;
    encrypted: boolean;
    tags: Map<string, string>;
    clientToken: string | undefined;
    fingerprint: string;
  }): VolumeRecord {
    const volume = this.addVolume({ sizeGiB: fields.sizeGiB, zone: fields.zone, state: 'creating', tags: Object.fromEntries(fields.tags) });
    volume.snapshotId = fields.snapshotId;
    volume.volumeType = fields.volumeType;
    volume.iops = fields.iops;
    volume.encrypted = fields.encrypted;
    volume.clientToken = fields.clientToken;
    volume.fingerprint = fields.fingerprint;
    volume.pollsLeft = this.timings.volumePolls;
    if (this.#failVolumeCreations > 0) {
      this.#failVolumeCreations--;
      volume.failCreation = true;
    }
    if (volume.pollsLeft <= 0) this.#finishCreation(volume);
    return volume;
  }

  /** Starts attaching a volume; the attachment is 'attaching' for attachPolls Describe* responses. */
  attach(volume: VolumeRecord, instance: InstanceRecord, device: string): AttachmentRecord {
    const attachment: AttachmentRecord = {
      instanceId: instance.id,
      device,
      state: 'attaching',
      attachTime: new Date(),
      deleteOnTermination: false,
      pollsLeft: this.timings.attachPolls,
      sequence: ++this.#attachSequence,
    };
    volume.attachment = attachment;
    volume.state = 'in-use';
    if (attachment.pollsLeft <= 0) attachment.state = 'attached';
    return attachment;
  }

  /** The volumes attached (or attaching) to an instance, in attachment order. */
  attachedTo(instanceId: string): VolumeRecord[] {
    return [...this.volumes.values()]
      .filter((v) => v.attachment?.instanceId === instanceId)
      .sort((a, b) => (a.attachment?.sequence ?? 0) - (b.attachment?.sequence ?? 0));
  }

  /** Counts one Describe* appearance of a volume: creating and attaching move one step on. */
  pollVolume(volume: VolumeRecord): void {
    if (volume.state === 'creating' && --volume.pollsLeft <= 0) this.#finishCreation(volume);
    const attachment = volume.attachment;
    if (attachment?.state === 'attaching' && --attachment.pollsLeft <= 0) attachment.state = 'attached';
  }

  /** Counts one Describe* appearance of a snapshot: pending moves one step towards completed (or error). */
  pollSnapshot(snapshot: SnapshotRecord): void {
    if (snapshot.state !== 'pending') return;
    snapshot.polls++;
    if (snapshot.polls >= snapshot.pollsToComplete) this.#finishSnapshot(snapshot);
  }

  /** The progress EC2 reports: "NN%". */
  progressOf(snapshot: SnapshotRecord): string {
    if (snapshot.state === 'completed') return '100%';
    if (snapshot.pollsToComplete <= 0) return '0%';
    return `${Math.min(99, Math.floor((100 * snapshot.polls) / snapshot.pollsToComplete))}%`;
  }

  /** Forgets every resource, call, fault, hook and limit (between tests, and at the handle's stop). */
  clear(): void {
    this.limits = {};
    this.#failVolumeCreations = 0;
    this.instances.clear();
    this.volumes.clear();
    this.snapshots.clear();
    this.calls.length = 0;
    this.#faults.clear();
    this.#hooks.clear();
  }

  #newSnapshot(volumeId: string, volumeSize: number, description: string, tags: Map<string, string>, id = newId('snap')): SnapshotRecord {
    if (this.snapshots.has(id)) throw new Error(`EC2 test server: snapshot ${id} already exists`);
    const snapshot: SnapshotRecord = {
      id,
      volumeId,
      volumeSize,
      state: 'pending',
      statusMessage: undefined,
      polls: 0,
      pollsToComplete: this.timings.snapshotPolls,
      failWith: undefined,
      startTime: new Date(),
      description,
      encrypted: false,
      ownerId: this.ownerId,
      tags,
    };
    this.snapshots.set(id, snapshot);
    if (snapshot.pollsToComplete <= 0) this.#finishSnapshot(snapshot);
    return snapshot;
  }

  #finishSnapshot(snapshot: SnapshotRecord): void {
    if (snapshot.failWith !== undefined) {
      snapshot.state = 'error';
      snapshot.statusMessage = snapshot.failWith;
    } else {
      snapshot.state = 'completed';
    }
  }

  #finishCreation(volume: VolumeRecord): void {
    volume.state = volume.failCreation ? 'error' : 'available';
  }

  #require<T>(map: Map<string, T>, id: string, what: string): T {
    const found = map.get(id);
    if (found === undefined) throw new Error(`EC2 test server: no ${what} ${id}`);
    return found;
  }
}

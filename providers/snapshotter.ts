/**
 * The snapshotter contract: what `backup --method snapshot` and `restore --snapshot-recovery-instance`
 * need from a cloud's volume snapshots. One implementation per provider, in
 * providers/<name>/snapshotter.ts (aws on EC2, azure on Azure Compute, gcp on Compute Engine, local
 * on directories). The core never reads a provider's name; it reads the data below.
 *
 * The one subtle point is time. A snapshot has two moments: when its point in time is fixed
 * (writes after it are not in the snapshot) and when it is complete (readable, restorable). The
 * backup leaves PostgreSQL's backup mode at the first, and marks the backup DONE only after the second.
 */
import type { ProviderName } from './store-options.ts';

/** A disk (volume) as the cloud describes it. */
export interface DiskInfo {
  /** The cloud's id: vol-..., an ARM resource id, a Compute Engine self link or name; for local, the directory. */
  id: string;
  /** A human name (the Name tag, the disk name). */
  name: string;
  /**
   * Where the disk is attached on the instance, as the cloud reports it: /dev/sdf on EC2, "lun 2" on
   * Azure, the device name on Compute Engine; for local, the directory. Undefined when not attached.
   */
  device?: string;
  sizeGiB?: number;
  /** Zone or availability zone, where disks are zonal. */
  zone?: string;
  /** The snapshot this disk was created from, when it was (restore checks it). */
  sourceSnapshotId?: string;
}

/** An instance (VM) and the disks attached to it. */
export interface InstanceInfo {
  id: string;
  name: string;
  zone?: string;
  disks: DiskInfo[];
}

/** One snapshot to take. */
export interface SnapshotRequest {
  disk: DiskInfo;
  /** A name unique per backup and disk, valid on every cloud: lower-case letters, digits and '-', at most 63. */
  name: string;
  /** Labels/tags set on the snapshot: at least the server and the backup id, so orphans can be found. */
  tags: Record<string, string>;
}

/** Where a snapshot is in its life. */
export type SnapshotState = 'pending' | 'completed' | 'failed';

/** A snapshot as the cloud describes it. */
export interface SnapshotInfo {
  id: string;
  name: string;
  /** The disk it was taken of. */
  diskId: string;
  state: SnapshotState;
  /**
   * Writes made to the disk from now on are not in the snapshot. True once the cloud says so
   * (EC2: as soon as CreateSnapshot returns; Compute Engine: status UPLOADING or READY; Azure:
   * once the create operation returns, for incremental snapshots; local: once the copy is made).
   */
  pointInTimeFixed: boolean;
  /** 0-100 when the cloud reports it. */
  progress?: number;
  /** Why a failed snapshot failed. */
  error?: string;
}

/** What a restore needs to create a disk from a snapshot. */
export interface CreateDiskRequest {
  snapshotId: string;
  /** A name for the new disk. */
  name: string;
  /** Where to create it: the zone of the recovery instance, for zonal disks. */
  zone?: string;
  tags: Record<string, string>;
}

/** Why a snapshot operation failed; the core sees only these kinds. */
export type SnapshotErrorKind =
  | 'not-found' // the instance, disk or snapshot does not exist
  | 'not-attached' // the disk is not attached to the instance
  | 'quota-exceeded' // the account may not take more snapshots or create more disks
  | 'throttled' // the API asked to slow down: retryable
  | 'access-denied' // missing or insufficient credentials
  | 'unreachable' // the API could not be reached: retryable
  | 'invalid' // the request itself is wrong: retrying will not help
  | 'timeout' // a long-running operation did not finish in time
  | 'failed'; // anything else

/** The typed error every snapshotter throws; `cause` keeps the SDK's error. */
export class SnapshotError extends Error {
  override readonly name = 'SnapshotError';
  readonly kind: SnapshotErrorKind;
  /** The instance, disk or snapshot the call was about, for messages. */
  readonly target: string | undefined;
  readonly retryable: boolean;

  constructor(kind: SnapshotErrorKind, message: string, options: { target?: string; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.kind = kind;
    this.target = options.target;
    this.retryable = kind === 'throttled' || kind === 'unreachable';
  }
}

/** True when err is a SnapshotError of the given kind. */
export function isSnapshotError(err: unknown, kind?: SnapshotErrorKind): err is SnapshotError {
  return err instanceof SnapshotError && (kind === undefined || err.kind === kind);
}

/**
 * A cloud's volume snapshots. Every method documents its edge cases; the snapshotter tests hold
 * each implementation to them against its test server.
 */
export interface Snapshotter {
  readonly provider: ProviderName;
  /** The instance and its attached disks. MUST throw SnapshotError 'not-found' for an unknown instance. */
  describeInstance(instance: string): Promise<InstanceInfo>;
  /**
   * Starts one snapshot per request, all at once (one API call where the cloud has a multi-volume
   * call, otherwise concurrently), and resolves when every create call returned. Does not wait for
   * completion. When any create fails, the ones that started are still returned in `started` of the
   * thrown SnapshotCreateError, so the caller can delete them.
   */
  createSnapshots(requests: readonly SnapshotRequest[], signal?: AbortSignal): Promise<SnapshotInfo[]>;
  /** The snapshot now; undefined when it does not exist. */
  describeSnapshot(id: string): Promise<SnapshotInfo | undefined>;
  /** Deletes a snapshot. Idempotent: an absent snapshot is not an error. */
  deleteSnapshot(id: string): Promise<void>;
  /** Creates a disk from a completed snapshot and resolves once the disk is ready to attach. */
  createDisk(request: CreateDiskRequest, signal?: AbortSignal): Promise<DiskInfo>;
  /**
   * Attaches a disk to an instance and resolves once it is attached, with `device` set. A disk
   * already attached to that instance is returned as is.
   */
  attachDisk(instance: string, diskId: string, signal?: AbortSignal): Promise<DiskInfo>;
  /**
   * Where an attached disk shows up on the instance itself, most specific first (EC2 Nitro:
   * /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol<id>; Compute Engine: /dev/disk/by-id/google-<device>;
   * Azure: /dev/disk/azure/scsi1/lun<n>; local: the directory itself). The core resolves these
   * against the mount table to check that pgdata and the tablespaces live on the named disks.
   */
  localDevicePaths(disk: DiskInfo): string[];
  /** Releases clients and sockets. */
  close(): Promise<void>;
}

/** createSnapshots failed part way: `started` are the snapshots that exist and must be cleaned up. */
export class SnapshotCreateError extends SnapshotError {
  readonly started: SnapshotInfo[];

  constructor(cause: SnapshotError, started: SnapshotInfo[]) {
    super(cause.kind, cause.message, { ...(cause.target === undefined ? {} : { target: cause.target }), cause });
    this.started = started;
  }
}

/** What a provider needs to open its snapshotter: the snapshot_* options and credentials settings. */
export interface SnapshotterOptions {
  /** snapshot_zone: zone of the instance and disks (GCP, and EC2 availability zone for new volumes). */
  zone?: string;
  /** aws_region. */
  region?: string;
  /** snapshot_gcp_project. */
  gcpProject?: string;
  /** azure_subscription_id and azure_resource_group. */
  azureSubscriptionId?: string;
  azureResourceGroup?: string;
  /** Custom API endpoint (the test servers). */
  endpointUrl?: string;
  /** local: the directory that holds the snapshots (the destination's directory by default). */
  localSnapshotDir?: string;
  /** How long a long-running operation may take before 'timeout'. */
  operationTimeoutMs: number;
  /** Injected so the tests need not wait: polls of long-running operations sleep through this. */
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
}

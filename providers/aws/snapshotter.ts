/**
 * The EC2 snapshotter: EBS snapshots of an instance's volumes through `@aws-sdk/client-ec2`, held to
 * the contract in providers/snapshotter.ts. The CLI loads this file lazily (providers/snapshot-registry.ts),
 * so the EC2 SDK is only loaded for snapshot backups and restores on AWS.
 *
 * Snapshots are taken with one CreateSnapshots call, never with one CreateSnapshot per volume.
 * CreateSnapshots takes an instance, not a list of volumes: it snapshots every volume attached to it
 * at one instant, minus the root volume (ExcludeBootVolume) and the data volumes it is told to
 * exclude (ExcludeDataVolumeId.N). Excluding every attached volume that was not asked for gives
 * exactly the named disks, and the set is crash-consistent across them. That matters whenever
 * PostgreSQL's files span volumes: pgdata and WAL or tablespaces on separate volumes are made
 * consistent by WAL replay from the backup's start, but an LVM or md stripe over several volumes is
 * only readable when every member was taken at the same moment, and separate CreateSnapshot calls
 * are not. The price: every disk must be attached to one instance (a backup's disks always are),
 * one TagSpecification serves the whole set, so per-snapshot tags (the Name) follow in CreateTags,
 * and CreateSnapshots has no idempotency token, so a retry after an answer that never arrived first
 * looks for the snapshots the lost attempt may have made (they carry a per-call token tag).
 *
 * Retries: the SDK makes one attempt per call; this file retries 'throttled' and 'unreachable'
 * errors with jittered exponential backoff through options.sleep, and polls long-running work
 * (volume creation, attachment) the same way, all bounded by options.operationTimeoutMs per method call.
 */
import { randomUUID } from 'node:crypto';
import {
  AttachVolumeCommand,
  CreateSnapshotsCommand,
  CreateTagsCommand,
  CreateVolumeCommand,
  DeleteSnapshotCommand,
  DescribeInstancesCommand,
  DescribeSnapshotsCommand,
  DescribeVolumesCommand,
  EC2Client,
} from '@aws-sdk/client-ec2';
import type { EC2ClientConfig, Instance, Snapshot, Tag, Volume } from '@aws-sdk/client-ec2';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { SnapshotCreateError, SnapshotError } from '../snapshotter.ts';
import type {
  CreateDiskRequest,
  DiskInfo,
  InstanceInfo,
  SnapshotInfo,
  SnapshotRequest,
  SnapshotState,
  Snapshotter,
  SnapshotterOptions,
} from '../snapshotter.ts';
import { OperationBudget } from '../poll.ts';
import { toSnapshotError } from './snapshot-errors.ts';

/** Connection and whole-request limits: EC2 answers are small, so a slow one is a stuck one. */
const CONNECT_TIMEOUT_MS = 5_000;
const REQUEST_TIMEOUT_MS = 30_000;

/** Retries of throttled or unreachable calls: attempts in all, and the backoff's first and largest delay. */
const MAX_ATTEMPTS = 8;
const RETRY_BASE_DELAY_MS = 500;
const RETRY_MAX_DELAY_MS = 20_000;

/** Polls of long-running work: the first delay, its growth, and the largest (AWS's own waiters poll every 15 s). */
const POLL_FIRST_DELAY_MS = 2_000;
const POLL_GROWTH = 1.5;
const POLL_MAX_DELAY_MS = 15_000;

/** The tag EC2's console and every tool show as a resource's name. */
const NAME_TAG = 'Name';

/** Marks the snapshots of one createSnapshots call, so that a retry can find what a lost attempt made. */
export const CREATE_TOKEN_TAG = 'cloudbarman:create-token';

/** Device names for attaching restored volumes, as AWS recommends for EBS on Linux: /dev/sdf to /dev/sdp. */
const DEVICE_LETTERS = 'fghijklmnop';

/** An instance id, as opposed to an instance's Name tag (snapshot_instance accepts either, as in Barman). */
const INSTANCE_ID = /^i-[0-9a-f]{8,17}$/;

/** The CreateSnapshots limit on excluded data volumes. */
const MAX_EXCLUDED_VOLUMES = 40;

/** Discards the SDK's own console output; failures reach callers as SnapshotErrors. */
const SILENT_LOGGER: NonNullable<EC2ClientConfig['logger']> = {
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

/** The region to call: aws_region, then the standard environment variables; undefined leaves it to the SDK's profile lookup. */
export function resolveEc2Region(options: SnapshotterOptions, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return options.region || env['AWS_REGION'] || env['AWS_DEFAULT_REGION'] || undefined;
}

/**
 * Builds the EC2 client: one attempt per call (this file owns retries), explicit timeouts, the
 * default credential chain. overrides replace any setting, e.g. explicit credentials in tests.
 */
export function createEc2Client(options: SnapshotterOptions, overrides: EC2ClientConfig = {}): EC2Client {
  const region = resolveEc2Region(options);
  const agentOptions = { keepAlive: true, maxSockets: 16 };
  return new EC2Client({
    ...(region === undefined ? {} : { region }),
    ...(options.endpointUrl === undefined ? {} : { endpoint: options.endpointUrl }),
    maxAttempts: 1,
    logger: SILENT_LOGGER,
    requestHandler: new NodeHttpHandler({
      connectionTimeout: CONNECT_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS,
      throwOnRequestTimeout: true,
      httpAgent: agentOptions,
      httpsAgent: agentOptions,
    }),
    ...overrides,
  });
}

/**
 * Opens the EC2 snapshotter. Fails with 'invalid' when no region is configured anywhere (aws_region,
 * AWS_REGION, AWS_DEFAULT_REGION or the profile). clientOverrides is for tests (credentials).
 */
export async function createSnapshotter(options: SnapshotterOptions, clientOverrides: EC2ClientConfig = {}): Promise<Snapshotter> {
  const client = createEc2Client(options, clientOverrides);
  try {
    await client.config.region();
  } catch (err) {
    client.destroy();
    throw new SnapshotError('invalid', 'no AWS region for EC2 snapshots: set aws_region, AWS_REGION or a profile region', { cause: err });
  }
  return new Ec2Snapshotter(client, options);
}

/** Sleeps within the budget; an abort becomes a SnapshotError 'failed'. */
async function sleepWithin(budget: OperationBudget, ms: number, signal: AbortSignal | undefined, what: string): Promise<void> {
  try {
    await budget.sleep(ms, signal);
  } catch (err) {
    if (signal?.aborted === true) throw aborted(what, signal);
    throw err;
  }
}

/** The error for a call given up because the caller aborted. */
function aborted(what: string, signal: AbortSignal): SnapshotError {
  return new SnapshotError('failed', `${what}: aborted`, { cause: signal.reason });
}

/** Throws `aborted` when the signal has fired. */
function checkAborted(what: string, signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw aborted(what, signal);
}

/** The SDK's per-call options: only the abort signal, when there is one. */
function sendOptions(signal: AbortSignal | undefined): { abortSignal?: AbortSignal } {
  return signal === undefined ? {} : { abortSignal: signal };
}

/** The value of a tag, if set. */
function tagValue(tags: readonly Tag[] | undefined, key: string): string | undefined {
  return tags?.find((t) => t.Key === key)?.Value;
}

/** A record of tags as EC2's Tag list. */
function toTags(tags: Readonly<Record<string, string>>): Tag[] {
  return Object.entries(tags).map(([Key, Value]) => ({ Key, Value }));
}

/** EC2's snapshot states in the contract's terms; a failure carries why. */
function snapshotState(state: string | undefined, message: string | undefined): { state: SnapshotState; error?: string } {
  switch (state) {
    case 'pending':
    case 'recovering': // being restored from the Recycle Bin: it will be usable again
      return { state: 'pending' };
    case 'completed':
      return { state: 'completed' };
    case 'error':
      return { state: 'failed', error: message || 'EC2 reports the snapshot in state error' };
    case 'recoverable': // deleted into the Recycle Bin: not usable unless someone recovers it
      return { state: 'failed', error: 'the snapshot was deleted and is in the Recycle Bin (state recoverable)' };
    default:
      return { state: 'failed', error: `EC2 reports the unknown snapshot state ${JSON.stringify(state)}` };
  }
}

/** "NN%" as a number, when EC2 reports it. */
function parseProgress(progress: string | undefined): number | undefined {
  const match = /^(\d{1,3})(?:\.\d+)?%$/.exec(progress ?? '');
  return match === null ? undefined : Math.min(100, Number(match[1]));
}

/** A volume as the contract describes a disk. */
function diskInfo(volume: Volume, device: string | undefined): DiskInfo {
  const id = volume.VolumeId ?? '';
  return {
    id,
    name: tagValue(volume.Tags, NAME_TAG) ?? id,
    ...(device === undefined ? {} : { device }),
    ...(volume.Size === undefined ? {} : { sizeGiB: volume.Size }),
    ...(volume.AvailabilityZone === undefined ? {} : { zone: volume.AvailabilityZone }),
    ...(volume.SnapshotId === undefined || volume.SnapshotId === '' ? {} : { sourceSnapshotId: volume.SnapshotId }),
  };
}

/** The letter of an EBS device name (/dev/sdf and /dev/xvdf are the same slot: Xen renames one to the other). */
function deviceLetter(device: string | undefined): string | undefined {
  return /^\/dev\/(?:sd|xvd)([a-z])/.exec(device ?? '')?.[1];
}

/** Jittered exponential backoff before retry `attempt` (1-based). */
function backoffMs(attempt: number): number {
  const ceiling = Math.min(RETRY_MAX_DELAY_MS, RETRY_BASE_DELAY_MS * 2 ** (attempt - 1));
  return Math.round(ceiling * (0.5 + Math.random() / 2));
}

/** The EC2 snapshotter; see the file comment for how it takes snapshots. */
export class Ec2Snapshotter implements Snapshotter {
  readonly provider = 'aws' as const;
  readonly #client: EC2Client;
  readonly #options: SnapshotterOptions;

  constructor(client: EC2Client, options: SnapshotterOptions) {
    this.#client = client;
    this.#options = options;
  }

  async describeInstance(instance: string): Promise<InstanceInfo> {
    const budget = this.#budget();
    const found = await this.#findInstance(budget, instance, undefined);
    const mappings = (found.BlockDeviceMappings ?? []).filter((m) => m.Ebs?.VolumeId !== undefined);
    const volumes = await this.#describeVolumes(
      budget,
      mappings.map((m) => m.Ebs?.VolumeId ?? ''),
      undefined,
    );
    const byId = new Map(volumes.map((v) => [v.VolumeId, v]));
    const id = found.InstanceId ?? instance;
    return {
      id,
      name: tagValue(found.Tags, NAME_TAG) ?? id,
      ...(found.Placement?.AvailabilityZone === undefined ? {} : { zone: found.Placement.AvailabilityZone }),
      disks: mappings.map((m) => {
        const volumeId = m.Ebs?.VolumeId ?? '';
        return diskInfo(byId.get(volumeId) ?? { VolumeId: volumeId }, m.DeviceName);
      }),
    };
  }

  async createSnapshots(requests: readonly SnapshotRequest[], signal?: AbortSignal): Promise<SnapshotInfo[]> {
    if (requests.length === 0) return [];
    const budget = this.#budget();
    const started: SnapshotInfo[] = [];
    try {
      return await this.#createSnapshots(budget, requests, started, signal);
    } catch (err) {
      const error = err instanceof SnapshotError ? err : toSnapshotError(err, 'CreateSnapshots', requests.map((r) => r.disk.id).join(','));
      throw new SnapshotCreateError(error, started);
    }
  }

  async describeSnapshot(id: string): Promise<SnapshotInfo | undefined> {
    const budget = this.#budget();
    let snapshot: Snapshot | undefined;
    try {
      const out = await this.#call(budget, 'DescribeSnapshots', id, undefined, (s) =>
        this.#client.send(new DescribeSnapshotsCommand({ SnapshotIds: [id] }), sendOptions(s)),
      );
      snapshot = out.Snapshots?.find((s) => s.SnapshotId === id);
    } catch (err) {
      if (err instanceof SnapshotError && err.kind === 'not-found') return undefined;
      throw err;
    }
    if (snapshot === undefined) return undefined;
    const { state, error } = snapshotState(snapshot.State, snapshot.StateMessage);
    const progress = parseProgress(snapshot.Progress);
    return {
      id,
      name: tagValue(snapshot.Tags, NAME_TAG) ?? id,
      diskId: snapshot.VolumeId ?? '',
      state,
      // "The point-in-time snapshot is taken when the CreateSnapshot request completes" (EC2 API
      // reference): any snapshot DescribeSnapshots can show has its point in time fixed.
      pointInTimeFixed: true,
      ...(progress === undefined ? {} : { progress }),
      ...(error === undefined ? {} : { error }),
    };
  }

  async deleteSnapshot(id: string): Promise<void> {
    const budget = this.#budget();
    try {
      await this.#call(budget, 'DeleteSnapshot', id, undefined, (s) => this.#client.send(new DeleteSnapshotCommand({ SnapshotId: id }), sendOptions(s)));
    } catch (err) {
      if (err instanceof SnapshotError && err.kind === 'not-found') return;
      throw err;
    }
  }

  async createDisk(request: CreateDiskRequest, signal?: AbortSignal): Promise<DiskInfo> {
    const budget = this.#budget();
    const zone = request.zone ?? this.#options.zone;
    if (zone === undefined || zone === '') {
      throw new SnapshotError('invalid', `CreateVolume from ${request.snapshotId}: no availability zone; set snapshot_zone to the recovery instance's zone`, {
        target: request.snapshotId,
      });
    }
    // One token for every attempt: a retry after a lost answer returns the volume the first attempt made.
    const clientToken = randomUUID();
    const created = await this.#call(budget, 'CreateVolume', request.snapshotId, signal, (s) =>
      this.#client.send(
        new CreateVolumeCommand({
          SnapshotId: request.snapshotId,
          AvailabilityZone: zone,
          VolumeType: 'gp3',
          ClientToken: clientToken,
          TagSpecifications: [{ ResourceType: 'volume', Tags: toTags({ ...request.tags, [NAME_TAG]: request.name }) }],
        }),
        sendOptions(s),
      ),
    );
    const volumeId = created.VolumeId ?? '';
    const volume = await this.#pollVolume(budget, volumeId, 'CreateVolume', signal, (v) => {
      if (v.State === 'available') return 'done';
      if (v.State === 'creating') return 'wait';
      return new SnapshotError('failed', `CreateVolume ${volumeId} from ${request.snapshotId}: the volume ended in state ${v.State ?? 'unknown'}`, { target: volumeId });
    });
    return diskInfo(volume, undefined);
  }

  async attachDisk(instance: string, diskId: string, signal?: AbortSignal): Promise<DiskInfo> {
    const budget = this.#budget();
    const found = await this.#findInstance(budget, instance, signal);
    const instanceId = found.InstanceId ?? instance;
    const attachmentHere = (v: Volume) => v.Attachments?.find((a) => a.InstanceId === instanceId);
    const elsewhere = (v: Volume) => v.Attachments?.find((a) => a.InstanceId !== instanceId && a.State !== 'detached');

    let [volume] = await this.#describeVolumes(budget, [diskId], signal);
    if (volume !== undefined && volume.State === 'creating') {
      volume = await this.#pollVolume(budget, diskId, 'AttachVolume', signal, (v) => (v.State === 'creating' ? 'wait' : 'done'));
    }
    const other = volume === undefined ? undefined : elsewhere(volume);
    if (other !== undefined) {
      throw new SnapshotError('invalid', `AttachVolume ${diskId}: the volume is attached to ${other.InstanceId ?? 'another instance'}, not ${instanceId}`, { target: diskId });
    }
    if (volume === undefined || attachmentHere(volume) === undefined) {
      const device = this.#freeDevice(found, diskId);
      try {
        await this.#call(budget, 'AttachVolume', diskId, signal, (s) =>
          this.#client.send(new AttachVolumeCommand({ InstanceId: instanceId, VolumeId: diskId, Device: device }), sendOptions(s)),
        );
      } catch (err) {
        // A retried attach whose first attempt went through answers VolumeInUse: fine if it is in use here.
        const [now] = err instanceof SnapshotError && err.kind === 'invalid' ? await this.#describeVolumes(budget, [diskId], signal) : [];
        if (now === undefined || attachmentHere(now) === undefined) throw err;
      }
    }
    const attached = await this.#pollVolume(budget, diskId, 'AttachVolume', signal, (v) => {
      const attachment = attachmentHere(v);
      if (attachment?.State === 'attached') return 'done';
      if (attachment?.State === 'attaching') return 'wait';
      return new SnapshotError('not-attached', `AttachVolume ${diskId} to ${instanceId}: the attachment ended in state ${attachment?.State ?? 'detached'}`, {
        target: diskId,
      });
    });
    return diskInfo(attached, attachmentHere(attached)?.Device);
  }

  localDevicePaths(disk: DiskInfo): string[] {
    // Nitro instances expose EBS volumes as NVMe devices whose serial is the volume id without its dash.
    const paths = [`/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${disk.id.replace(/^vol-/, 'vol')}`];
    if (disk.device !== undefined) {
      paths.push(disk.device);
      // Xen instances rename /dev/sdX to /dev/xvdX.
      const sd = /^\/dev\/sd([a-z]+\d*)$/.exec(disk.device);
      if (sd !== null) paths.push(`/dev/xvd${sd[1] ?? ''}`);
    }
    return paths;
  }

  async close(): Promise<void> {
    this.#client.destroy();
  }

  #budget(): OperationBudget {
    return new OperationBudget(this.#options.operationTimeoutMs, this.#options.sleep);
  }

  /**
   * Runs one API call, retrying throttled and unreachable errors with backoff within the budget.
   * `send` gets the attempt number and the previous attempt's error (CreateSnapshots reads them).
   */
  async #call<T>(
    budget: OperationBudget,
    operation: string,
    target: string,
    signal: AbortSignal | undefined,
    send: (signal: AbortSignal | undefined, attempt: number, previous: SnapshotError | undefined) => Promise<T>,
  ): Promise<T> {
    const what = `${operation} ${target}`;
    let previous: SnapshotError | undefined;
    for (let attempt = 1; ; attempt++) {
      checkAborted(what, signal);
      try {
        return await send(signal, attempt, previous);
      } catch (err) {
        if (signal?.aborted === true) throw aborted(what, signal);
        const error = toSnapshotError(err, operation, target);
        if (!error.retryable) throw error;
        const delay = backoffMs(attempt);
        if (attempt >= MAX_ATTEMPTS || budget.wouldExceed(delay)) {
          const tries = `${attempt} attempt${attempt === 1 ? '' : 's'}`;
          throw new SnapshotError(error.kind, `${error.message} (gave up after ${tries} in ${(budget.elapsedMs / 1000).toFixed(1)} s)`, { target, cause: error });
        }
        previous = error;
        await sleepWithin(budget, delay, signal, what);
      }
    }
  }

  /** Polls a volume until `check` says done, fails, or the budget runs out ('timeout'). A volume not
   *  yet visible (EC2 is eventually consistent right after a create) counts as not done. */
  async #pollVolume(
    budget: OperationBudget,
    volumeId: string,
    operation: string,
    signal: AbortSignal | undefined,
    check: (volume: Volume) => 'done' | 'wait' | SnapshotError,
  ): Promise<Volume> {
    let delay = POLL_FIRST_DELAY_MS;
    for (;;) {
      let volume: Volume | undefined;
      try {
        [volume] = await this.#describeVolumes(budget, [volumeId], signal);
      } catch (err) {
        if (!(err instanceof SnapshotError && err.kind === 'not-found')) throw err;
      }
      const verdict = volume === undefined ? 'wait' : check(volume);
      if (verdict instanceof SnapshotError) throw verdict;
      if (verdict === 'done' && volume !== undefined) return volume;
      if (budget.wouldExceed(delay)) {
        throw new SnapshotError(
          'timeout',
          `${operation} ${volumeId}: still ${volume?.State ?? 'not visible'} after ${(budget.elapsedMs / 1000).toFixed(0)} s (limit ${(budget.limitMs / 1000).toFixed(0)} s)`,
          { target: volumeId },
        );
      }
      await sleepWithin(budget, delay, signal, `${operation} ${volumeId}`);
      delay = Math.min(POLL_MAX_DELAY_MS, Math.round(delay * POLL_GROWTH));
    }
  }

  /** The volumes with these ids; an unknown id is 'not-found'. */
  async #describeVolumes(budget: OperationBudget, ids: readonly string[], signal: AbortSignal | undefined): Promise<Volume[]> {
    if (ids.length === 0) return [];
    const out = await this.#call(budget, 'DescribeVolumes', ids.join(','), signal, (s) =>
      this.#client.send(new DescribeVolumesCommand({ VolumeIds: [...ids] }), sendOptions(s)),
    );
    return out.Volumes ?? [];
  }

  /**
   * The instance named by id or by its Name tag (terminated ones do not count). 'not-found' when
   * there is none, 'invalid' when a name matches more than one.
   */
  async #findInstance(budget: OperationBudget, instance: string, signal: AbortSignal | undefined): Promise<Instance> {
    const byId = INSTANCE_ID.test(instance);
    const found: Instance[] = [];
    let nextToken: string | undefined;
    do {
      const token = nextToken;
      const out = await this.#call(budget, 'DescribeInstances', instance, signal, (s) =>
        this.#client.send(
          new DescribeInstancesCommand(
            byId
              ? { InstanceIds: [instance] }
              : {
                  // Filter values treat * and ? as wildcards; a name is matched literally.
                  Filters: [{ Name: `tag:${NAME_TAG}`, Values: [instance.replace(/[\\*?]/g, '\\$&')] }],
                  MaxResults: 1000,
                  ...(token === undefined ? {} : { NextToken: token }),
                },
          ),
          sendOptions(s),
        ),
      );
      for (const reservation of out.Reservations ?? []) {
        for (const i of reservation.Instances ?? []) if (i.State?.Name !== 'terminated') found.push(i);
      }
      nextToken = byId ? undefined : out.NextToken || undefined;
    } while (nextToken !== undefined);
    const [first, second] = found;
    if (first === undefined) throw new SnapshotError('not-found', `DescribeInstances ${instance}: no such instance (by id or Name tag) in this region`, { target: instance });
    if (second !== undefined) {
      throw new SnapshotError('invalid', `DescribeInstances ${instance}: ${found.length} instances have this Name tag (${found.map((i) => i.InstanceId).join(', ')}); name one by id`, {
        target: instance,
      });
    }
    return first;
  }

  /** The first of /dev/sdf../dev/sdp not used by the instance (in either its sd or xvd spelling). */
  #freeDevice(instance: Instance, diskId: string): string {
    const used = new Set((instance.BlockDeviceMappings ?? []).map((m) => deviceLetter(m.DeviceName)));
    const letter = [...DEVICE_LETTERS].find((l) => !used.has(l));
    if (letter === undefined) {
      throw new SnapshotError('invalid', `AttachVolume ${diskId}: ${instance.InstanceId ?? 'the instance'} has no free device name in /dev/sdf-/dev/sdp`, { target: diskId });
    }
    return `/dev/sd${letter}`;
  }

  async #createSnapshots(budget: OperationBudget, requests: readonly SnapshotRequest[], started: SnapshotInfo[], signal: AbortSignal | undefined): Promise<SnapshotInfo[]> {
    const ids = requests.map((r) => r.disk.id);
    const target = ids.join(',');
    if (new Set(ids).size !== ids.length) throw new SnapshotError('invalid', `CreateSnapshots ${target}: a disk is named twice`, { target });

    // Which instance the disks are attached to, and which of its volumes must be excluded.
    const volumes = await this.#describeVolumes(budget, ids, signal);
    const instanceIds = new Set<string>();
    for (const id of ids) {
      const attachment = volumes.find((v) => v.VolumeId === id)?.Attachments?.find((a) => a.State === 'attached');
      if (attachment?.InstanceId === undefined) {
        throw new SnapshotError('not-attached', `CreateSnapshots ${id}: the volume is not attached to an instance; CreateSnapshots only takes attached volumes`, { target: id });
      }
      instanceIds.add(attachment.InstanceId);
    }
    const [instanceId, otherInstance] = [...instanceIds];
    if (instanceId === undefined) throw new SnapshotError('invalid', `CreateSnapshots ${target}: no instance`, { target });
    if (otherInstance !== undefined) {
      throw new SnapshotError('invalid', `CreateSnapshots ${target}: the disks are attached to different instances (${[...instanceIds].join(', ')}); take the disks of one instance`, { target });
    }
    const instance = await this.#findInstance(budget, instanceId, signal);
    const mapped = (instance.BlockDeviceMappings ?? []).flatMap((m) => (m.Ebs?.VolumeId === undefined ? [] : [{ device: m.DeviceName, volumeId: m.Ebs.VolumeId }]));
    for (const id of ids) {
      if (!mapped.some((m) => m.volumeId === id)) {
        throw new SnapshotError('not-attached', `CreateSnapshots ${id}: the volume is not in the block device mappings of ${instanceId}`, { target: id });
      }
    }
    const bootVolume = mapped.find((m) => m.device === instance.RootDeviceName)?.volumeId;
    const excludeData = mapped.filter((m) => m.volumeId !== bootVolume && !ids.includes(m.volumeId)).map((m) => m.volumeId);
    if (excludeData.length > MAX_EXCLUDED_VOLUMES) {
      throw new SnapshotError('invalid', `CreateSnapshots ${target}: ${instanceId} has ${excludeData.length} other data volumes; CreateSnapshots excludes at most ${MAX_EXCLUDED_VOLUMES}`, { target });
    }

    // Tags every request shares go on the whole set; the rest, and the Name, follow per snapshot.
    const [firstRequest, ...otherRequests] = requests;
    const common: Record<string, string> = {};
    for (const [key, value] of Object.entries(firstRequest?.tags ?? {})) {
      if (key !== NAME_TAG && otherRequests.every((r) => r.tags[key] === value)) common[key] = value;
    }
    const createToken = randomUUID();
    const setTags = toTags({ ...common, [CREATE_TOKEN_TAG]: createToken });

    const created = await this.#call(budget, 'CreateSnapshots', instanceId, signal, async (s, _attempt, previous) => {
      // After an answer that never arrived (not after throttling, which did nothing), the lost
      // attempt may have made the set: adopt it rather than make a second one.
      if (previous?.kind === 'unreachable') {
        const out = await this.#client.send(
          new DescribeSnapshotsCommand({ OwnerIds: ['self'], Filters: [{ Name: `tag:${CREATE_TOKEN_TAG}`, Values: [createToken] }] }),
          sendOptions(s),
        );
        const earlier = out.Snapshots ?? [];
        if (earlier.length > 0) return earlier.map((e) => ({ SnapshotId: e.SnapshotId, VolumeId: e.VolumeId, State: e.State, Progress: e.Progress }));
      }
      const out = await this.#client.send(
        new CreateSnapshotsCommand({
          InstanceSpecification: {
            InstanceId: instanceId,
            ExcludeBootVolume: bootVolume !== undefined && !ids.includes(bootVolume),
            ...(excludeData.length === 0 ? {} : { ExcludeDataVolumeIds: excludeData }),
          },
          TagSpecifications: [{ ResourceType: 'snapshot', Tags: setTags }],
        }),
        sendOptions(s),
      );
      return (out.Snapshots ?? []).map((e) => ({ SnapshotId: e.SnapshotId, VolumeId: e.VolumeId, State: e.State, Progress: e.Progress }));
    });

    // Match the set to the requests. A volume attached meanwhile was snapshotted too: delete it.
    const extras: { id: string; volumeId: string }[] = [];
    for (const snapshot of created) {
      const id = snapshot.SnapshotId ?? '';
      const request = requests.find((r) => r.disk.id === snapshot.VolumeId);
      if (request === undefined) {
        extras.push({ id, volumeId: snapshot.VolumeId ?? '' });
        continue;
      }
      const { state, error } = snapshotState(snapshot.State, undefined);
      const progress = parseProgress(snapshot.Progress);
      started.push({
        id,
        name: request.name,
        diskId: request.disk.id,
        state,
        pointInTimeFixed: true,
        ...(progress === undefined ? {} : { progress }),
        ...(error === undefined ? {} : { error }),
      });
    }
    for (const extra of extras) {
      try {
        await this.deleteSnapshot(extra.id);
      } catch (err) {
        started.push({ id: extra.id, name: extra.id, diskId: extra.volumeId, state: 'pending', pointInTimeFixed: true });
        throw err;
      }
    }
    const missing = requests.filter((r) => !started.some((s) => s.diskId === r.disk.id));
    if (missing.length > 0) {
      const names = missing.map((r) => r.disk.id).join(', ');
      throw new SnapshotError('not-attached', `CreateSnapshots ${names}: EC2 took no snapshot of it (detached while the backup started?)`, {
        target: missing[0]?.disk.id ?? target,
      });
    }

    // Name each snapshot and add the tags that differ per request; all at once.
    const tagged = await Promise.allSettled(
      started.map((info) => {
        const request = requests.find((r) => r.disk.id === info.diskId);
        const own = Object.fromEntries(Object.entries(request?.tags ?? {}).filter(([key]) => !(key in common)));
        const tags = toTags({ ...own, [NAME_TAG]: info.name });
        return this.#call(budget, 'CreateTags', info.id, signal, (s) => this.#client.send(new CreateTagsCommand({ Resources: [info.id], Tags: tags }), sendOptions(s)));
      }),
    );
    const failure = tagged.find((t): t is PromiseRejectedResult => t.status === 'rejected');
    if (failure !== undefined) throw failure.reason;
    const byDisk = new Map(started.map((info) => [info.diskId, info]));
    return requests.flatMap((r) => byDisk.get(r.disk.id) ?? []);
  }
}

// The EC2 actions the test server implements, each written from its API reference page
// (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_<Action>.html): parameters, the
// errors the service answers, and the response elements of the page's example.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { Ec2Error, ID_PREFIX, incorrectState, invalidCombination, invalidValue, malformed, missingParameter, notFound, notImplemented } from './errors.ts';
import type { ResourceKind } from './errors.ts';
import type { FilterParam, Params, TagParam, TagSpecificationParam } from './params.ts';
import { INSTANCE_STATE_CODES } from './state.ts';
import type { Ec2Action, Ec2State, InstanceRecord, SnapshotRecord, VolumeRecord } from './state.ts';
import { tagSet } from './xml.ts';
import type { XmlValue } from './xml.ts';

/** What a handler works with. */
export interface ActionContext {
  state: Ec2State;
  /** Signs pagination tokens so that a forged or foreign token is refused. */
  tokenKey: Buffer;
}

/** A handler: reads its parameters, changes the state, returns the response's fields after requestId. */
type Handler = (params: Params, ctx: ActionContext) => Record<string, XmlValue>;

/** The shape of each kind's ids: the prefix and 8 or 17 hex digits. */
function isWellFormed(kind: ResourceKind, id: string): boolean {
  return new RegExp(`^${ID_PREFIX[kind]}-(?:[0-9a-f]{8}|[0-9a-f]{17})$`).test(id);
}

/** The records for ids, in the order given; a malformed id or any unknown one is the service's error. */
function lookup<T>(kind: ResourceKind, map: ReadonlyMap<string, T>, ids: readonly string[]): T[] {
  for (const id of ids) if (!isWellFormed(kind, id)) throw malformed(kind, id);
  const missing = ids.filter((id) => !map.has(id));
  if (missing.length > 0) throw notFound(kind, missing);
  return ids.map((id) => map.get(id) as T);
}

/** One record by id (see lookup). */
function lookupOne<T>(kind: ResourceKind, map: ReadonlyMap<string, T>, id: string): T {
  const [found] = lookup(kind, map, [id]);
  return found as T;
}

/** Limits on tags: https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_Tags.html#tag-restrictions */
const MAX_TAGS = 50;

/** Checks tags as the service does: key 1-128 characters, value up to 256, no aws: prefix, no repeated key. */
function checkTags(tags: readonly TagParam[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const { key, value } of tags) {
    if (key.length === 0 || key.length > 128) throw invalidValue(`Tag key '${key}' must be between 1 and 128 characters.`);
    if (value.length > 256) throw invalidValue(`Tag value for key '${key}' must be at most 256 characters.`);
    if (key.toLowerCase().startsWith('aws:')) throw invalidValue("Tag keys starting with 'aws:' are reserved for internal use");
    if (out.has(key)) throw invalidValue(`Duplicate tag key '${key}' specified.`);
    out.set(key, value);
  }
  if (out.size > MAX_TAGS) throw new Ec2Error(400, 'TagLimitExceeded', 'The maximum number of Tags for a resource has been reached.');
  return out;
}

/** The tags of the TagSpecifications of a create call, which may name only `resourceType`. */
function tagsFor(specs: readonly TagSpecificationParam[], resourceType: string): Map<string, string> {
  const tags: TagParam[] = [];
  for (const spec of specs) {
    if (spec.resourceType !== resourceType) throw invalidValue(`'${spec.resourceType}' is not a valid taggable resource type for this operation.`);
    tags.push(...spec.tags);
  }
  return checkTags(tags);
}

/** Refuses parameters the service has but this server does not model, rather than ignoring them. */
function refuseUnmodelled(params: Params, names: readonly string[]): void {
  for (const name of names) if (params.string(name) !== undefined) throw notImplemented(`The parameter ${name}`);
}

// ---- Filters ------------------------------------------------------------------------------------

/** A filter's values on one resource, or undefined when the resource has none for it. */
type FilterField<T> = (item: T) => readonly string[] | undefined;

/** Filter names one action accepts; `tag:<key>` is accepted wherever tags are. */
interface FilterTable<T> {
  fields: Readonly<Record<string, FilterField<T>>>;
  tags: (item: T) => ReadonlyMap<string, string>;
}

/** Compiles a filter value with EC2's wildcards: `*` any run, `?` one character, `\` escapes. */
function globToRegExp(glob: string): RegExp {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] ?? '';
    if (c === '\\' && i + 1 < glob.length) out += (glob[++i] ?? '').replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    else if (c === '*') out += '[\\s\\S]*';
    else if (c === '?') out += '[\\s\\S]';
    else out += c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${out}$`);
}

/** The items every filter matches (filters AND, values OR). An unknown filter name is refused, as on the service. */
function applyFilters<T>(items: readonly T[], filters: readonly FilterParam[], table: FilterTable<T>): T[] {
  const compiled = filters.map((filter) => {
    let field: FilterField<T>;
    if (filter.name.startsWith('tag:') && filter.name.length > 4) {
      const key = filter.name.slice(4);
      field = (item) => {
        const value = table.tags(item).get(key);
        return value === undefined ? undefined : [value];
      };
    } else if (filter.name === 'tag-key') {
      field = (item) => [...table.tags(item).keys()];
    } else {
      const known = table.fields[filter.name];
      if (known === undefined) throw invalidValue(`The filter '${filter.name}' is invalid`);
      field = known;
    }
    if (filter.values.length === 0) throw invalidValue(`The filter '${filter.name}' has no values`);
    return { field, patterns: filter.values.map(globToRegExp) };
  });
  return items.filter((item) =>
    compiled.every(({ field, patterns }) => (field(item) ?? []).some((value) => patterns.some((p) => p.test(value)))),
  );
}

// ---- Pagination ---------------------------------------------------------------------------------

/** What Describe* paging reads: MaxResults bounds, and whether ids exclude it. */
interface PageRule {
  /** The name the service uses, in its error, for the id list it refuses next to MaxResults. */
  idsName: string;
  /** Results above this are capped to it. */
  cap: number;
}

/** A page of items and the token for the next, when there are more. */
interface Page<T> {
  items: T[];
  nextToken: string | undefined;
}

/**
 * Pages items by MaxResults and NextToken. Without MaxResults the service returns everything. A
 * token is bound to the action and to every other parameter, so one from another listing, or a
 * forged one, is InvalidPaginationToken.
 */
function paginate<T>(params: Params, ctx: ActionContext, action: Ec2Action, ids: readonly string[], items: readonly T[], rule: PageRule): Page<T> {
  const maxResults = params.int('MaxResults');
  const token = params.string('NextToken');
  if (maxResults !== undefined && ids.length > 0) {
    throw invalidCombination(`The parameter ${rule.idsName} cannot be used with the parameter maxResults`);
  }
  if (maxResults !== undefined && maxResults < 5) {
    throw invalidValue(`Value ( ${maxResults} ) for parameter maxResults is invalid. Expecting a value greater than 5.`);
  }
  const binding = bindingOf(params, action);
  let offset = 0;
  if (token !== undefined && token !== '') offset = readToken(ctx.tokenKey, token, binding);
  if (maxResults === undefined) return { items: items.slice(offset), nextToken: undefined };
  const size = Math.min(maxResults, rule.cap);
  const end = offset + size;
  return { items: items.slice(offset, end), nextToken: end < items.length ? makeToken(ctx.tokenKey, end, binding) : undefined };
}

/** What a token is bound to: the action and every parameter but the paging ones. */
function bindingOf(params: Params, action: string): string {
  const rest = Object.entries(params.all())
    .filter(([k]) => k !== 'NextToken' && k !== 'MaxResults')
    .sort(([a], [b]) => (a < b ? -1 : 1));
  return JSON.stringify([action, rest]);
}

function makeToken(key: Buffer, offset: number, binding: string): string {
  const body = Buffer.from(JSON.stringify({ o: offset })).toString('base64url');
  const mac = createHmac('sha256', key).update(`${body}.${binding}`).digest('base64url');
  return `${body}.${mac}`;
}

function readToken(key: Buffer, token: string, binding: string): number {
  const refuse = (): Ec2Error => new Ec2Error(400, 'InvalidPaginationToken', `Invalid pagination token: ${token}`);
  const [body = '', mac = ''] = token.split('.');
  const expected = createHmac('sha256', key).update(`${body}.${binding}`).digest();
  const given = Buffer.from(mac, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw refuse();
  const parsed = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as { o?: unknown };
  if (typeof parsed.o !== 'number') throw refuse();
  return parsed.o;
}

// ---- Rendering ----------------------------------------------------------------------------------

/** Omits an empty tagSet, as the service does. */
function tagsXml(tags: ReadonlyMap<string, string>): XmlValue {
  return tags.size === 0 ? undefined : tagSet(tags);
}

function instanceXml(state: Ec2State, instance: InstanceRecord): XmlValue {
  const gone = instance.state === 'terminated';
  return {
    instanceId: instance.id,
    imageId: 'ami-0abcdef1234567890',
    instanceState: { code: INSTANCE_STATE_CODES[instance.state], name: instance.state },
    privateDnsName: `ip-10-0-0-1.${state.region}.compute.internal`,
    dnsName: '',
    reason: '',
    amiLaunchIndex: 0,
    productCodes: [],
    instanceType: instance.instanceType,
    launchTime: instance.launchTime,
    placement: { availabilityZone: instance.zone, groupName: '', tenancy: 'default' },
    monitoring: { state: 'disabled' },
    groupSet: [],
    architecture: 'x86_64',
    rootDeviceType: 'ebs',
    rootDeviceName: instance.rootDeviceName,
    blockDeviceMapping: gone
      ? []
      : state.attachedTo(instance.id).map((v) => ({
          deviceName: v.attachment?.device,
          ebs: {
            volumeId: v.id,
            status: v.attachment?.state,
            attachTime: v.attachment?.attachTime,
            deleteOnTermination: v.attachment?.deleteOnTermination,
          },
        })),
    virtualizationType: 'hvm',
    tagSet: tagsXml(instance.tags),
    hypervisor: 'xen',
    ebsOptimized: false,
    enaSupport: true,
  };
}

function volumeXml(volume: VolumeRecord): XmlValue {
  const a = volume.attachment;
  return {
    volumeId: volume.id,
    size: volume.sizeGiB,
    snapshotId: volume.snapshotId ?? '',
    availabilityZone: volume.zone,
    status: volume.state,
    createTime: volume.createTime,
    attachmentSet:
      a === undefined
        ? []
        : [{ volumeId: volume.id, instanceId: a.instanceId, device: a.device, status: a.state, attachTime: a.attachTime, deleteOnTermination: a.deleteOnTermination }],
    volumeType: volume.volumeType,
    iops: volume.iops,
    encrypted: volume.encrypted,
    tagSet: tagsXml(volume.tags),
    multiAttachEnabled: false,
    throughput: volume.volumeType === 'gp3' ? 125 : undefined,
  };
}

/** A snapshot as DescribeSnapshots and CreateSnapshot write it (the Snapshot type: state is `status`). */
function snapshotXml(state: Ec2State, snapshot: SnapshotRecord): Record<string, XmlValue> {
  return {
    snapshotId: snapshot.id,
    volumeId: snapshot.volumeId,
    status: snapshot.state,
    statusMessage: snapshot.statusMessage,
    startTime: snapshot.startTime,
    progress: state.progressOf(snapshot),
    ownerId: snapshot.ownerId,
    volumeSize: snapshot.volumeSize,
    description: snapshot.description,
    encrypted: snapshot.encrypted,
    storageTier: 'standard',
    tagSet: tagsXml(snapshot.tags),
  };
}

/** A snapshot as CreateSnapshots writes it (the SnapshotInfo type: state is `state`). */
function snapshotInfoXml(state: Ec2State, snapshot: SnapshotRecord): XmlValue {
  return {
    description: snapshot.description,
    tagSet: tagsXml(snapshot.tags),
    encrypted: snapshot.encrypted,
    volumeId: snapshot.volumeId,
    state: snapshot.state,
    volumeSize: snapshot.volumeSize,
    startTime: snapshot.startTime,
    progress: state.progressOf(snapshot),
    ownerId: snapshot.ownerId,
    snapshotId: snapshot.id,
  };
}

/** Refuses a create beyond the account's snapshot limit. */
function checkSnapshotLimit(state: Ec2State, adding: number): void {
  const limit = state.limits.snapshots;
  if (limit !== undefined && state.snapshots.size + adding > limit) {
    throw new Ec2Error(400, 'SnapshotLimitExceeded', 'The maximum number of snapshots has been reached.');
  }
}

/** Description: at most 255 characters. */
function checkDescription(description: string): string {
  if (description.length > 255) throw invalidValue('Value for parameter Description is too long. It must be at most 255 characters.');
  return description;
}

// ---- Actions ------------------------------------------------------------------------------------

const describeInstances: Handler = (params, ctx) => {
  const { state } = ctx;
  const ids = params.list('InstanceId');
  const filters = params.filters();
  params.bool('IncludeManagedResources');
  const all = ids.length > 0 ? lookup('instance', state.instances, ids) : [...state.instances.values()];
  const matched = applyFilters(all, filters, {
    tags: (i) => i.tags,
    fields: {
      'instance-id': (i) => [i.id],
      'instance-state-name': (i) => [i.state],
      'instance-state-code': (i) => [String(INSTANCE_STATE_CODES[i.state])],
      'availability-zone': (i) => [i.zone],
      'instance-type': (i) => [i.instanceType],
      'root-device-name': (i) => [i.rootDeviceName],
      'block-device-mapping.volume-id': (i) => state.attachedTo(i.id).map((v) => v.id),
      'block-device-mapping.device-name': (i) => state.attachedTo(i.id).map((v) => v.attachment?.device ?? ''),
    },
  });
  const page = paginate(params, ctx, 'DescribeInstances', ids, matched, { idsName: 'instancesSet', cap: 1000 });
  params.finish();
  return {
    reservationSet: page.items.map((instance) => ({
      reservationId: `r-${instance.id.slice(2)}`,
      ownerId: state.ownerId,
      groupSet: [],
      instancesSet: [instanceXml(state, instance)],
    })),
    nextToken: page.nextToken,
  };
};

const describeVolumes: Handler = (params, ctx) => {
  const { state } = ctx;
  const ids = params.list('VolumeId');
  const filters = params.filters();
  params.bool('IncludeManagedResources');
  const all = ids.length > 0 ? lookup('volume', state.volumes, ids) : [...state.volumes.values()];
  const matched = applyFilters(
    all.filter((v) => v.state !== 'deleted'),
    filters,
    {
      tags: (v) => v.tags,
      fields: {
        'volume-id': (v) => [v.id],
        status: (v) => [v.state],
        'availability-zone': (v) => [v.zone],
        size: (v) => [String(v.sizeGiB)],
        'snapshot-id': (v) => (v.snapshotId === undefined ? undefined : [v.snapshotId]),
        'volume-type': (v) => [v.volumeType],
        encrypted: (v) => [String(v.encrypted)],
        'attachment.instance-id': (v) => (v.attachment === undefined ? undefined : [v.attachment.instanceId]),
        'attachment.device': (v) => (v.attachment === undefined ? undefined : [v.attachment.device]),
        'attachment.status': (v) => (v.attachment === undefined ? undefined : [v.attachment.state]),
        'attachment.delete-on-termination': (v) => (v.attachment === undefined ? undefined : [String(v.attachment.deleteOnTermination)]),
      },
    },
  );
  const page = paginate(params, ctx, 'DescribeVolumes', ids, matched, { idsName: 'volumeSet', cap: 500 });
  params.finish();
  for (const volume of page.items) state.pollVolume(volume);
  return { volumeSet: page.items.map(volumeXml), nextToken: page.nextToken };
};

const describeSnapshots: Handler = (params, ctx) => {
  const { state } = ctx;
  const ids = params.list('SnapshotId');
  const owners = params.list('Owner');
  refuseUnmodelled(params, ['RestorableBy.1']);
  const filters = params.filters();
  const all = ids.length > 0 ? lookup('snapshot', state.snapshots, ids) : [...state.snapshots.values()];
  const owned = owners.length === 0 ? all : all.filter((s) => owners.some((o) => o === 'self' || o === s.ownerId));
  const matched = applyFilters(owned, filters, {
    tags: (s) => s.tags,
    fields: {
      'snapshot-id': (s) => [s.id],
      'volume-id': (s) => [s.volumeId],
      status: (s) => [s.state],
      'owner-id': (s) => [s.ownerId],
      description: (s) => [s.description],
      'volume-size': (s) => [String(s.volumeSize)],
      progress: (s) => [state.progressOf(s)],
      encrypted: (s) => [String(s.encrypted)],
      'storage-tier': () => ['standard'],
    },
  });
  const page = paginate(params, ctx, 'DescribeSnapshots', ids, matched, { idsName: 'snapshotSet', cap: 1000 });
  params.finish();
  for (const snapshot of page.items) state.pollSnapshot(snapshot);
  return { snapshotSet: page.items.map((s) => snapshotXml(state, s)), nextToken: page.nextToken };
};

/** Location: only the Region is modelled (not Local Zones or Outposts). */
function checkLocation(params: Params): void {
  const location = params.oneOf('Location', ['regional', 'local']);
  if (location === 'local') throw notImplemented('Location=local');
}

const createSnapshot: Handler = (params, { state }) => {
  const volumeId = params.required('VolumeId');
  const description = checkDescription(params.string('Description') ?? '');
  const tags = tagsFor(params.tagSpecifications(), 'snapshot');
  refuseUnmodelled(params, ['OutpostArn']);
  checkLocation(params);
  const volume = lookupOne('volume', state.volumes, volumeId);
  params.finish();
  if (volume.state !== 'in-use' && volume.state !== 'available') {
    throw incorrectState(`The volume '${volume.id}' is not in a valid state for this operation: ${volume.state}`);
  }
  checkSnapshotLimit(state, 1);
  const snapshot = state.createSnapshot(volume, description, tags);
  return snapshotXml(state, snapshot);
};

const createSnapshots: Handler = (params, { state }) => {
  const instanceId = params.required('InstanceSpecification.InstanceId', 'InstanceSpecification');
  const excludeBoot = params.bool('InstanceSpecification.ExcludeBootVolume') ?? false;
  const excluded = params.list('InstanceSpecification.ExcludeDataVolumeId');
  const description = checkDescription(params.string('Description') ?? '');
  const specTags = tagsFor(params.tagSpecifications(), 'snapshot');
  const copyTags = params.oneOf('CopyTagsFromSource', ['volume']);
  refuseUnmodelled(params, ['OutpostArn']);
  checkLocation(params);
  if (excluded.length > 40) throw invalidValue('You can specify up to 40 volume IDs in ExcludeDataVolumeIds.');
  const instance = lookupOne('instance', state.instances, instanceId);
  lookup('volume', state.volumes, excluded);
  params.finish();
  const attached = state.attachedTo(instance.id).filter((v) => v.attachment?.state === 'attached');
  const root = attached.find((v) => v.attachment?.device === instance.rootDeviceName);
  if (root !== undefined && excluded.includes(root.id)) {
    throw invalidValue(`The root volume '${root.id}' cannot be excluded with ExcludeDataVolumeIds; use ExcludeBootVolume.`);
  }
  const chosen = attached.filter((v) => !(excludeBoot && v === root) && !excluded.includes(v.id));
  checkSnapshotLimit(state, chosen.length);
  const snapshots = chosen.map((volume) => {
    const tags = new Map(copyTags === 'volume' ? [...volume.tags].filter(([k]) => !k.startsWith('aws:')) : []);
    for (const [k, v] of specTags) tags.set(k, v);
    return state.createSnapshot(volume, description, tags);
  });
  // One request, one moment: every snapshot of the set has the same start time.
  const startTime = snapshots[0]?.startTime;
  for (const s of snapshots) if (startTime !== undefined) s.startTime = startTime;
  return { snapshotSet: snapshots.map((s) => snapshotInfoXml(state, s)) };
};

const deleteSnapshot: Handler = (params, { state }) => {
  const id = params.required('SnapshotId');
  const snapshot = lookupOne('snapshot', state.snapshots, id);
  params.finish();
  state.snapshots.delete(snapshot.id);
  return { return: true };
};

/** Volume types and the ones whose IOPS can be set. */
const VOLUME_TYPES = ['standard', 'io1', 'io2', 'gp2', 'gp3', 'sc1', 'st1'] as const;
const IOPS_TYPES: readonly string[] = ['io1', 'io2', 'gp3'];

const createVolume: Handler = (params, { state }) => {
  const zone = params.string('AvailabilityZone');
  refuseUnmodelled(params, ['AvailabilityZoneId', 'KmsKeyId', 'OutpostArn', 'VolumeInitializationRate', 'EbsCardIndex']);
  const size = params.int('Size');
  const snapshotId = params.string('SnapshotId');
  const volumeType = params.oneOf('VolumeType', VOLUME_TYPES) ?? 'gp2';
  const iops = params.int('Iops');
  const throughput = params.int('Throughput');
  const encrypted = params.bool('Encrypted') ?? false;
  if (params.bool('MultiAttachEnabled') === true) throw notImplemented('MultiAttachEnabled=true');
  const clientToken = params.string('ClientToken');
  const tags = tagsFor(params.tagSpecifications(), 'volume');
  if (zone === undefined || zone === '') throw missingParameter('AvailabilityZone');
  if (size === undefined && snapshotId === undefined) throw missingParameter('size/snapshotId');
  if (!state.zones.includes(zone)) throw invalidValue(`Invalid availability zone: [${zone}]`);
  if (iops !== undefined && !IOPS_TYPES.includes(volumeType)) throw invalidCombination(`The parameter iops is not supported for ${volumeType} volumes.`);
  if (throughput !== undefined && volumeType !== 'gp3') throw invalidCombination(`The parameter throughput is not supported for ${volumeType} volumes.`);
  if (clientToken !== undefined && clientToken.length > 64) throw invalidValue('The client token must be at most 64 characters.');
  const snapshot = snapshotId === undefined ? undefined : lookupOne('snapshot', state.snapshots, snapshotId);
  params.finish();
  const fingerprint = JSON.stringify(Object.entries(params.all()).filter(([k]) => k !== 'ClientToken' && k !== 'DryRun').sort(([a], [b]) => (a < b ? -1 : 1)));
  if (clientToken !== undefined) {
    const earlier = [...state.volumes.values()].find((v) => v.clientToken === clientToken);
    if (earlier !== undefined) {
      if (earlier.fingerprint !== fingerprint) {
        throw new Ec2Error(400, 'IdempotentParameterMismatch', 'The client token you have provided is associated with a resource that is already deleted or has different parameters.');
      }
      return createdVolumeXml(earlier);
    }
  }
  if (snapshot !== undefined && snapshot.state !== 'completed') {
    throw incorrectState(`Snapshot '${snapshot.id}' is not in the 'completed' state (it is '${snapshot.state}').`);
  }
  const sizeGiB = size ?? snapshot?.volumeSize ?? 0;
  if (sizeGiB < 1 || sizeGiB > 65536) throw invalidValue(`Volume size ${sizeGiB} is out of range.`);
  if (snapshot !== undefined && sizeGiB < snapshot.volumeSize) {
    throw invalidValue(`Volume of size ${sizeGiB}GB is smaller than snapshot '${snapshot.id}', expect size >= ${snapshot.volumeSize}GB`);
  }
  const limit = state.limits.volumes;
  if (limit !== undefined && [...state.volumes.values()].filter((v) => v.state !== 'deleted').length >= limit) {
    throw new Ec2Error(400, 'VolumeLimitExceeded', 'You have reached the maximum number of volumes for this account in this Region.');
  }
  const volume = state.createVolume({
    sizeGiB,
    zone,
    snapshotId: snapshot?.id,
    volumeType,
    iops: iops ?? (volumeType === 'gp3' ? 3000 : undefined),
    encrypted,
    tags,
    clientToken,
    fingerprint,
  });
  return createdVolumeXml(volume);
};

/** CreateVolume's response fields. */
function createdVolumeXml(volume: VolumeRecord): Record<string, XmlValue> {
  return {
    volumeId: volume.id,
    size: volume.sizeGiB,
    snapshotId: volume.snapshotId ?? '',
    availabilityZone: volume.zone,
    status: volume.state,
    createTime: volume.createTime,
    volumeType: volume.volumeType,
    iops: volume.iops,
    encrypted: volume.encrypted,
    multiAttachEnabled: false,
    tagSet: tagsXml(volume.tags),
  };
}

/** Device names EBS accepts on Linux instances: /dev/sd[a-z] (with partitions 1-15) and /dev/xvd[a-z]{1,2}. */
const DEVICE_NAME = /^\/dev\/(?:sd[a-z](?:[1-9]|1[0-5])?|xvd[a-z]{1,2})$/;

const attachVolume: Handler = (params, { state }) => {
  const device = params.required('Device');
  const instanceId = params.required('InstanceId');
  const volumeId = params.required('VolumeId');
  refuseUnmodelled(params, ['EbsCardIndex']);
  const instance = lookupOne('instance', state.instances, instanceId);
  const volume = lookupOne('volume', state.volumes, volumeId);
  params.finish();
  if (volume.attachment !== undefined) throw new Ec2Error(400, 'VolumeInUse', `${volume.id} is already attached to an instance`);
  if (volume.state !== 'available') throw incorrectState(`${volume.id} is not 'available'.`);
  if (instance.state !== 'running' && instance.state !== 'stopped') {
    throw new Ec2Error(400, 'IncorrectInstanceState', `The instance '${instance.id}' is not in a valid state for this operation.`);
  }
  if (volume.zone !== instance.zone) {
    throw new Ec2Error(400, 'InvalidVolume.ZoneMismatch', `The volume '${volume.id}' is not in the same availability zone as instance '${instance.id}'`);
  }
  if (!DEVICE_NAME.test(device)) throw invalidValue(`Value (${device}) for parameter device is invalid. ${device} is not a valid EBS device name.`);
  if (state.attachedTo(instance.id).some((v) => v.attachment?.device === device)) {
    throw invalidValue(`Invalid value '${device}' for unixDevice. Attachment point ${device} is already in use`);
  }
  const attachment = state.attach(volume, instance, device);
  return { attachTime: attachment.attachTime, device, instanceId: instance.id, status: attachment.state, volumeId: volume.id, deleteOnTermination: false };
};

const createTags: Handler = (params, { state }) => {
  const ids = params.list('ResourceId');
  const tags = checkTags(params.tags('Tag'));
  if (ids.length === 0) throw missingParameter('resourceIdSet');
  if (tags.size === 0) throw missingParameter('tagSet');
  const targets = ids.map((id): { tags: Map<string, string> } => {
    const kind = (Object.keys(ID_PREFIX) as ResourceKind[]).find((k) => id.startsWith(`${ID_PREFIX[k]}-`));
    if (kind === undefined) throw new Ec2Error(400, 'InvalidID', `The ID '${id}' is not valid`);
    const map: ReadonlyMap<string, { tags: Map<string, string> }> = kind === 'instance' ? state.instances : kind === 'volume' ? state.volumes : state.snapshots;
    return lookupOne(kind, map, id);
  });
  params.finish();
  for (const target of targets) {
    const merged = new Map([...target.tags, ...tags]);
    if (merged.size > MAX_TAGS) throw new Ec2Error(400, 'TagLimitExceeded', 'The maximum number of Tags for a resource has been reached.');
  }
  for (const target of targets) for (const [k, v] of tags) target.tags.set(k, v);
  return { return: true };
};

/** Every implemented action's handler. */
export const HANDLERS: Readonly<Record<Ec2Action, Handler>> = {
  DescribeInstances: describeInstances,
  DescribeVolumes: describeVolumes,
  CreateSnapshot: createSnapshot,
  CreateSnapshots: createSnapshots,
  DescribeSnapshots: describeSnapshots,
  DeleteSnapshot: deleteSnapshot,
  CreateVolume: createVolume,
  AttachVolume: attachVolume,
  CreateTags: createTags,
};

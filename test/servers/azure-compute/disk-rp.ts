// The Disk RP's part: Microsoft.Compute/disks (GET, PUT) and snapshots (GET, PUT, DELETE), from
// https://learn.microsoft.com/rest/api/compute/disks and .../snapshots. Creates and deletes are
// long-running: 202 with Azure-AsyncOperation and Location, provisioningState Updating until the
// operation ends. A PUT on an existing resource may only change tags (answered at once, 200).
import { randomUUID } from 'node:crypto';
import { ArmError, invalidParameter, linkedInvalidPropertyId, linkedNotFound, notImplemented, operationNotAllowed, requiredParameter, resourceNotFound } from './errors.ts';
import type { Operation } from './operations.ts';
import { completionPercent, renderDisk, renderSnapshot } from './render.ts';
import type { Reply, ResourceRequest } from './routes.ts';
import { BACKGROUND_COPY_SKUS, DISK_SKUS, SNAPSHOT_SKUS, parseResourceId } from './state.ts';
import type { AzureComputeState, DiskRecord, SnapshotRecord } from './state.ts';
import {
  checkResourceName,
  jsonBody,
  onlyMembers,
  optionalArray,
  optionalBoolean,
  optionalInteger,
  optionalObject,
  optionalString,
  optionalTags,
  requiredLocation,
} from './validate.ts';
import type { JsonObject } from './validate.ts';

/** Every value of DiskCreateOption the Disk RP knows. */
const KNOWN_CREATE_OPTIONS = [
  'Empty', 'Attach', 'FromImage', 'Import', 'Copy', 'Restore', 'Upload', 'CopyStart', 'ImportSecure', 'UploadPreparedSecure', 'CopyFromSanSnapshot',
] as const;

/** Members of a disk or snapshot resource body (read-only ones are accepted and ignored, as the RP does). */
const RESOURCE_MEMBERS = ['location', 'tags', 'sku', 'properties', 'extendedLocation', 'id', 'name', 'type', 'managedBy', 'managedByExtended', 'systemData'];

/** Members of CreationData. */
const CREATION_DATA_MEMBERS = [
  'createOption', 'storageAccountId', 'imageReference', 'galleryImageReference', 'sourceUri', 'sourceResourceId', 'sourceUniqueId',
  'uploadSizeBytes', 'logicalSectorSize', 'securityDataUri', 'securityMetadataUri', 'performancePlus', 'elasticSanResourceId',
  'provisionedBandwidthCopySpeed', 'instantAccessDurationMinutes',
];

/** Members of SnapshotProperties. */
const SNAPSHOT_PROPERTIES = [
  'osType', 'hyperVGeneration', 'purchasePlan', 'supportedCapabilities', 'creationData', 'diskSizeGB', 'encryptionSettingsCollection',
  'incremental', 'encryption', 'networkAccessPolicy', 'diskAccessId', 'securityProfile', 'supportsHibernation', 'publicNetworkAccess',
  'completionPercent', 'copyCompletionError', 'dataAccessAuthMode',
  'timeCreated', 'diskSizeBytes', 'diskState', 'uniqueId', 'provisioningState', 'incrementalSnapshotFamilyId', 'snapshotAccessState',
];

/** Members of DiskProperties. */
const DISK_PROPERTIES = [
  'osType', 'hyperVGeneration', 'purchasePlan', 'supportedCapabilities', 'creationData', 'diskSizeGB', 'encryptionSettingsCollection',
  'diskIOPSReadWrite', 'diskMBpsReadWrite', 'diskIOPSReadOnly', 'diskMBpsReadOnly', 'encryption', 'maxShares', 'networkAccessPolicy',
  'diskAccessId', 'tier', 'burstingEnabled', 'supportsHibernation', 'securityProfile', 'completionPercent', 'publicNetworkAccess',
  'dataAccessAuthMode', 'optimizedForFrequentAttach', 'availabilityPolicy',
  'timeCreated', 'diskSizeBytes', 'uniqueId', 'provisioningState', 'diskState', 'shareInfo', 'propertyUpdatesInProgress',
  'burstingEnabledTime', 'lastOwnershipUpdateTime', 'LastOwnershipUpdateTime',
];

/** The checked pieces of a disk or snapshot PUT body. */
interface ParsedBody {
  body: JsonObject;
  location: string;
  tags: Record<string, string> | undefined;
  skuName: string | undefined;
  properties: JsonObject;
  createOption: string;
  creationData: JsonObject;
}

/** The common part of disk and snapshot PUT bodies. */
function parseBody(request: ResourceRequest, type: 'disks' | 'snapshots', propertyMembers: readonly string[], model: string): ParsedBody {
  const body = jsonBody(request.contentType, request.body);
  onlyMembers(body, type === 'disks' ? [...RESOURCE_MEMBERS, 'zones'] : RESOURCE_MEMBERS, type === 'disks' ? 'Disk' : 'Snapshot', '');
  if (body['extendedLocation'] !== undefined && body['extendedLocation'] !== null) throw notImplemented('extendedLocation (edge zones)');
  const location = requiredLocation(body['location'], type);
  const tags = optionalTags(body['tags']);
  const sku = optionalObject(body['sku'], 'sku');
  const skuName = optionalString(sku?.['name'], 'sku.name');
  const properties = optionalObject(body['properties'], 'properties');
  if (properties === undefined) throw requiredParameter('properties');
  onlyMembers(properties, propertyMembers, model, 'properties');
  const creationData = optionalObject(properties['creationData'], 'properties.creationData');
  if (creationData === undefined) throw requiredParameter('creationData');
  onlyMembers(creationData, CREATION_DATA_MEMBERS, 'CreationData', 'properties.creationData');
  const createOption = optionalString(creationData['createOption'], 'properties.creationData.createOption');
  if (createOption === undefined) throw requiredParameter('creationData.createOption');
  if (!(KNOWN_CREATE_OPTIONS as readonly string[]).includes(createOption)) {
    throw invalidParameter(`The value '${createOption}' of parameter 'creationData.createOption' is not valid.`, 'creationData.createOption');
  }
  return { body, location, tags, skuName, properties, createOption, creationData };
}

/** The disk or snapshot a Copy names, after the checks the RP makes on it. */
function copySource(state: AzureComputeState, creationData: JsonObject, location: string): { id: string; uniqueId: string; sizeGiB: number; disk?: DiskRecord; snapshot?: SnapshotRecord } {
  const id = optionalString(creationData['sourceResourceId'], 'properties.creationData.sourceResourceId');
  if (id === undefined || id === '') throw requiredParameter('creationData.sourceResourceId');
  const parsed = parseResourceId(id);
  if (parsed === undefined) {
    if (/^\/?subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/[^/]+\/[^/]+\/[^/]+$/i.test(id)) {
      throw invalidParameter(`Resource '${id}' is not a disk or snapshot.`, 'creationData.sourceResourceId');
    }
    throw linkedInvalidPropertyId(id, 'properties.creationData.sourceResourceId');
  }
  if (parsed.type === 'virtualMachines') throw invalidParameter(`Resource '${id}' is not a disk or snapshot.`, 'creationData.sourceResourceId');
  const found = state.byId(id);
  if (found === undefined) throw linkedNotFound(id);
  if (found.type === 'disks') {
    const disk = found.disk;
    if (disk.provisioningState !== 'Succeeded') throw operationNotAllowed(`Disk '${disk.name}' cannot be copied while its provisioning state is '${disk.provisioningState}'.`);
    if (disk.location !== location) {
      throw invalidParameter(`Source resource '${id}' is in location '${disk.location}', not '${location}'; copy across regions with CopyStart.`, 'location');
    }
    return { id, uniqueId: disk.uniqueId, sizeGiB: disk.sizeGiB, disk };
  }
  const snapshot = found.snapshot;
  const percent = completionPercent(snapshot);
  if (snapshot.provisioningState !== 'Succeeded') {
    throw operationNotAllowed(`Snapshot '${snapshot.name}' cannot be used while its provisioning state is '${snapshot.provisioningState}'.`);
  }
  if (percent !== undefined && percent < 100) {
    throw operationNotAllowed(`Snapshot '${snapshot.name}' cannot be used until its background copy completes (completionPercent ${percent}).`);
  }
  if (snapshot.location !== location) {
    throw invalidParameter(`Source resource '${id}' is in location '${snapshot.location}', not '${location}'; copy across regions with CopyStart.`, 'location');
  }
  return { id, uniqueId: snapshot.uniqueId, sizeGiB: snapshot.sizeGiB, snapshot };
}

/** A PUT on an existing resource: only tags may change; anything else is refused as the RP does. */
function checkUnchanged(
  existing: { location: string; createOption: string; sourceResourceId: string | undefined; provisioningState: string; name: string },
  parsed: ParsedBody,
  resourceGroup: string,
  extra: [string, boolean][],
): void {
  if (existing.location !== parsed.location) {
    throw new ArmError(
      409,
      'InvalidResourceLocation',
      `The resource '${existing.name}' already exists in location '${existing.location}' in resource group '${resourceGroup}'. A resource with the same name cannot be created in location '${parsed.location}'. Please select a new resource name.`,
    );
  }
  if (existing.provisioningState === 'Updating' || existing.provisioningState === 'Deleting') {
    throw operationNotAllowed(`Resource '${existing.name}' cannot be updated while an operation on it is in progress.`);
  }
  const source = optionalString(parsed.creationData['sourceResourceId'], 'properties.creationData.sourceResourceId');
  const changes: [string, boolean][] = [
    ['createOption', parsed.createOption !== existing.createOption],
    ['sourceResourceId', (source ?? '').toLowerCase() !== (existing.sourceResourceId ?? '').toLowerCase()],
    ...extra,
  ];
  const changed = changes.find(([, differs]) => differs);
  if (changed !== undefined) throw new ArmError(409, 'PropertyChangeNotAllowed', `Changing property '${changed[0]}' is not allowed.`, { target: changed[0] });
}

/** Refuses a create that would pass a regional quota, with the quota wording the RPs use. */
function checkQuota(limit: number, inUse: number, what: string): void {
  if (inUse + 1 > limit) {
    throw operationNotAllowed(
      `Operation could not be completed as it results in exceeding approved ${what} quota. Current Limit: ${limit}, Current Usage: ${inUse}, Additional Required: 1.`,
    );
  }
}

/** The 202 that accepts a long-running create or delete: both polling headers, and the body when there is one. */
function accepted(request: ResourceRequest, operation: Operation, body: unknown): Reply {
  const urls = request.ctx.state.operations.urls(operation, request.ctx.endpoint, request.ctx.state.subscriptionId);
  return { status: 202, body, headers: { 'Azure-AsyncOperation': urls.asyncOperation, Location: urls.location } };
}

/** GET /snapshots/{name}. A snapshot with a background copy advances one step on each GET after its creation succeeded. */
export function getSnapshot(request: ResourceRequest): Reply {
  const { state } = request.ctx;
  const snapshot = state.snapshot(request.name, request.resourceGroup);
  if (snapshot === undefined) throw resourceNotFound('snapshots', request.name, request.resourceGroup);
  if (snapshot.provisioningState === 'Succeeded' && snapshot.copyStep < snapshot.copySteps) snapshot.copyStep += 1;
  return { status: 200, body: renderSnapshot(state, snapshot) };
}

/** PUT /snapshots/{name}: creationData.createOption Copy of a disk or snapshot (full or incremental). */
export function putSnapshot(request: ResourceRequest): Reply {
  const { state } = request.ctx;
  checkResourceName(request.name);
  const parsed = parseBody(request, 'snapshots', SNAPSHOT_PROPERTIES, 'SnapshotProperties');
  const incremental = optionalBoolean(parsed.properties['incremental'], 'properties.incremental') ?? false;
  optionalInteger(parsed.properties['diskSizeGB'], 'properties.diskSizeGB');
  if (parsed.skuName !== undefined && !(SNAPSHOT_SKUS as readonly string[]).includes(parsed.skuName)) {
    throw invalidParameter(`The value '${parsed.skuName}' of parameter 'sku.name' is not valid. Allowed values are ${SNAPSHOT_SKUS.join(', ')}.`, 'sku.name');
  }
  const existing = state.snapshot(request.name, request.resourceGroup);
  if (existing !== undefined) {
    checkUnchanged(existing, parsed, request.resourceGroup, [['incremental', existing.incremental !== incremental]]);
    if (parsed.tags !== undefined) existing.tags = parsed.tags;
    return { status: 200, body: renderSnapshot(state, existing) };
  }
  if (parsed.createOption === 'Import' || parsed.createOption === 'CopyStart' || parsed.createOption === 'CopyFromSanSnapshot') {
    throw notImplemented(`Snapshots with createOption '${parsed.createOption}'`);
  }
  if (parsed.createOption !== 'Copy') {
    throw invalidParameter(`The value '${parsed.createOption}' of parameter 'creationData.createOption' is not supported for snapshots.`, 'creationData.createOption');
  }
  const source = copySource(state, parsed.creationData, parsed.location);
  if (!incremental && source.disk !== undefined && BACKGROUND_COPY_SKUS.includes(source.disk.sku)) {
    throw invalidParameter(`Only incremental snapshots are supported for disks of sku '${source.disk.sku}'.`, 'incremental');
  }
  checkQuota(state.quota.snapshots, state.snapshots().length, 'Snapshots');
  const backgroundCopy = incremental && source.disk !== undefined && BACKGROUND_COPY_SKUS.includes(source.disk.sku);
  const snapshot = state.putSnapshot({
    name: request.name,
    resourceGroup: state.resourceGroup(request.resourceGroup)?.name ?? request.resourceGroup,
    location: parsed.location,
    tags: parsed.tags ?? {},
    incremental,
    sku: parsed.skuName ?? (incremental ? 'Standard_ZRS' : 'Standard_LRS'),
    createOption: 'Copy',
    sourceResourceId: source.id,
    sourceUniqueId: source.uniqueId,
    sizeGiB: source.sizeGiB,
    provisioningState: 'Updating',
    copyStep: 0,
    copySteps: backgroundCopy ? Math.max(1, state.backgroundCopyPolls) : 0,
    uniqueId: randomUUID(),
    familyId: incremental ? (source.disk?.uniqueId ?? source.snapshot?.familyId) : undefined,
    timeCreated: new Date().toISOString(),
  });
  const failure = state.takeOperationFailure('snapshots', request.name);
  const operation = state.operations.start({
    part: 'disk',
    location: parsed.location,
    apiVersion: request.apiVersion,
    succeed: () => {
      snapshot.provisioningState = 'Succeeded';
      return renderSnapshot(state, snapshot);
    },
    fail: () => {
      snapshot.provisioningState = 'Failed';
    },
    ...(failure === undefined ? {} : { failure }),
  });
  return accepted(request, operation, renderSnapshot(state, snapshot));
}

/** DELETE /snapshots/{name}: 204 when there is nothing to delete, else a long-running delete. */
export function deleteSnapshot(request: ResourceRequest): Reply {
  const { state } = request.ctx;
  const snapshot = state.snapshot(request.name, request.resourceGroup);
  if (snapshot === undefined) return { status: 204 };
  const before = snapshot.provisioningState;
  if (before === 'Deleting') throw operationNotAllowed(`Snapshot '${snapshot.name}' is already being deleted.`);
  snapshot.provisioningState = 'Deleting';
  const failure = state.takeOperationFailure('snapshots', request.name);
  const operation = state.operations.start({
    part: 'disk',
    location: snapshot.location,
    apiVersion: request.apiVersion,
    succeed: () => {
      state.removeSnapshot(snapshot);
      return undefined;
    },
    fail: () => {
      snapshot.provisioningState = before;
    },
    ...(failure === undefined ? {} : { failure }),
  });
  return accepted(request, operation, undefined);
}

/** GET /disks/{name}. */
export function getDisk(request: ResourceRequest): Reply {
  const { state } = request.ctx;
  const disk = state.disk(request.name, request.resourceGroup);
  if (disk === undefined) throw resourceNotFound('disks', request.name, request.resourceGroup);
  return { status: 200, body: renderDisk(state, disk) };
}

/** PUT /disks/{name}: createOption Empty (diskSizeGB) or Copy of a disk or a complete snapshot. */
export function putDisk(request: ResourceRequest): Reply {
  const { state } = request.ctx;
  checkResourceName(request.name);
  const parsed = parseBody(request, 'disks', DISK_PROPERTIES, 'DiskProperties');
  const zones = optionalArray(parsed.body['zones'], 'zones');
  if (zones !== undefined && (zones.length !== 1 || typeof zones[0] !== 'string' || !['1', '2', '3'].includes(zones[0]))) {
    throw invalidParameter(`The value '${JSON.stringify(zones)}' of parameter 'zones' is not valid: give one of '1', '2', '3'.`, 'zones');
  }
  const zone = zones?.[0] as string | undefined;
  if (parsed.skuName !== undefined && !(DISK_SKUS as readonly string[]).includes(parsed.skuName)) {
    throw invalidParameter(`The value '${parsed.skuName}' of parameter 'sku.name' is not valid. Allowed values are ${DISK_SKUS.join(', ')}.`, 'sku.name');
  }
  const sizeGiB = optionalInteger(parsed.properties['diskSizeGB'], 'properties.diskSizeGB');
  const existing = state.disk(request.name, request.resourceGroup);
  if (existing !== undefined) {
    checkUnchanged(existing, parsed, request.resourceGroup, [
      ['zones', (zone ?? '') !== (existing.zone ?? '')],
      ['diskSizeGB', sizeGiB !== undefined && sizeGiB !== existing.sizeGiB],
    ]);
    if (parsed.tags !== undefined) existing.tags = parsed.tags;
    return { status: 200, body: renderDisk(state, existing) };
  }
  let source: ReturnType<typeof copySource> | undefined;
  if (parsed.createOption === 'Empty') {
    if (sizeGiB === undefined) throw requiredParameter('diskSizeGB');
  } else if (parsed.createOption === 'Copy') {
    source = copySource(state, parsed.creationData, parsed.location);
  } else if (parsed.createOption === 'Attach') {
    throw invalidParameter(`createOption 'Attach' is valid only for a virtual machine's disks.`, 'creationData.createOption');
  } else {
    throw notImplemented(`Disks with createOption '${parsed.createOption}'`);
  }
  const size = sizeGiB ?? source?.sizeGiB ?? 0;
  if (size < 1 || size > 65536) throw invalidParameter(`The value ${size} of parameter 'diskSizeGB' is out of range (1-65536).`, 'diskSizeGB');
  if (source !== undefined && size < source.sizeGiB) {
    throw invalidParameter(`The disk size ${size} GB is smaller than the source's ${source.sizeGiB} GB; disks can only grow.`, 'diskSizeGB');
  }
  checkQuota(state.quota.disks, state.disks().length, 'Disks');
  const disk = state.putDisk({
    name: request.name,
    resourceGroup: state.resourceGroup(request.resourceGroup)?.name ?? request.resourceGroup,
    location: parsed.location,
    zone,
    sizeGiB: size,
    sku: parsed.skuName ?? 'Standard_LRS',
    tags: parsed.tags ?? {},
    createOption: parsed.createOption,
    sourceResourceId: source?.id,
    sourceUniqueId: source?.uniqueId,
    provisioningState: 'Updating',
    managedBy: undefined,
    uniqueId: randomUUID(),
    timeCreated: new Date().toISOString(),
  });
  const failure = state.takeOperationFailure('disks', request.name);
  const operation = state.operations.start({
    part: 'disk',
    location: parsed.location,
    apiVersion: request.apiVersion,
    succeed: () => {
      disk.provisioningState = 'Succeeded';
      return renderDisk(state, disk);
    },
    fail: () => {
      disk.provisioningState = 'Failed';
    },
    ...(failure === undefined ? {} : { failure }),
  });
  return accepted(request, operation, renderDisk(state, disk));
}

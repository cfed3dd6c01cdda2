// Request routing and the handlers for each Compute Engine REST v1 method the test server implements.
// Reference: https://cloud.google.com/compute/docs/reference/rest/v1 (instances.get, instances.attachDisk,
// disks.get, disks.insert, disks.createSnapshot, snapshots.get/insert/delete, zoneOperations.get/wait,
// globalOperations.get/wait) and https://cloud.google.com/apis/docs/system-parameters.
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  ComputeError,
  alreadyExists,
  badRequest,
  inUse,
  internalError,
  invalidCredentials,
  invalidField,
  invalidParameter,
  loginRequired,
  notFound,
  notImplemented,
  notReady,
  requiredField,
} from './errors.ts';
import {
  NAME_OR_ID_PATTERN,
  boolField,
  checkFields,
  enumField,
  int64Field,
  isNameOrId,
  parseBody,
  parseDiskType,
  parseDiskUrl,
  parseJson,
  parseSnapshotUrl,
  paths,
  stringField,
  validateLabels,
  validateName,
} from './resources.ts';
import type { FieldRules } from './resources.ts';
import type { ComputeMethod, ComputeState, DiskRecord, MutatingMethod, OperationRecord, RequestRecord } from './state.ts';

/** What a handler needs: the state and the token callers must present. */
export interface ServerContext {
  state: ComputeState;
  token: string;
}

/** System parameters the server accepts on every method; https://cloud.google.com/apis/docs/system-parameters. */
const SYSTEM_PARAMS = ['alt', 'prettyPrint', '$prettyPrint', 'quotaUser', 'userIp'];
/** Real system parameters whose effect this server does not model: 501 rather than ignored. */
const UNMODELLED_PARAMS = ['fields', '$fields', '$alt', 'key', 'access_token', 'oauth_token', 'callback', '$.xgafv'];

/** The largest persistent disk, in GB. */
const MAX_DISK_GB = 65_536;
/** A blank pd-standard disk without sizeGb gets this size. */
const DEFAULT_BLANK_DISK_GB = 500;
/** requestId must be a UUID, and not the zero UUID. */
const REQUEST_ID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

const SNAPSHOT_FIELDS: FieldRules = {
  resource: 'snapshot',
  modelled: ['name', 'description', 'labels', 'sourceDisk', 'storageLocations', 'snapshotType', 'chainName', 'guestFlush', 'kind'],
  outputOnly: [
    'id', 'creationTimestamp', 'selfLink', 'status', 'diskSizeGb', 'storageBytes', 'storageBytesStatus', 'sourceDiskId',
    'labelFingerprint', 'autoCreated', 'creationSizeBytes', 'downloadBytes', 'satisfiesPzi', 'satisfiesPzs', 'architecture',
    'enableConfidentialCompute', 'region', 'licenseCodes', 'sourceInstantSnapshotId', 'sourceSnapshotSchedulePolicy',
    'sourceSnapshotSchedulePolicyId', 'snapshotGroupId', 'snapshotGroupName',
  ],
  unmodelled: [
    'guestOsFeatures', 'licenses', 'locationHint', 'params', 'snapshotEncryptionKey', 'sourceDiskEncryptionKey',
    'sourceDiskForRecoveryCheckpoint', 'sourceInstantSnapshot', 'sourceInstantSnapshotEncryptionKey',
  ],
};

const DISK_FIELDS: FieldRules = {
  resource: 'disk',
  modelled: ['name', 'description', 'labels', 'sizeGb', 'sourceSnapshot', 'type', 'kind'],
  outputOnly: [
    'id', 'creationTimestamp', 'selfLink', 'status', 'zone', 'region', 'users', 'labelFingerprint', 'lastAttachTimestamp',
    'lastDetachTimestamp', 'satisfiesPzi', 'satisfiesPzs', 'sourceDiskId', 'sourceImageId', 'sourceSnapshotId',
    'sourceInstantSnapshotId', 'sourceConsistencyGroupPolicy', 'sourceConsistencyGroupPolicyId', 'resourceStatus',
    'physicalBlockSizeBytes',
  ],
  unmodelled: [
    'accessMode', 'architecture', 'asyncPrimaryDisk', 'asyncSecondaryDisks', 'diskEncryptionKey', 'enableConfidentialCompute',
    'guestOsFeatures', 'licenseCodes', 'licenses', 'locationHint', 'options', 'params', 'provisionedIops', 'provisionedThroughput',
    'replicaZones', 'resourcePolicies', 'sourceDisk', 'sourceImage', 'sourceImageEncryptionKey', 'sourceInstantSnapshot',
    'sourceSnapshotEncryptionKey', 'sourceStorageObject', 'storagePool',
  ],
};

const ATTACHED_DISK_FIELDS: FieldRules = {
  resource: 'attachedDisk',
  modelled: ['source', 'deviceName', 'mode', 'autoDelete', 'boot', 'interface', 'type', 'kind'],
  outputOnly: ['index', 'architecture', 'licenses', 'savedState', 'shieldedInstanceInitialState'],
  unmodelled: ['diskEncryptionKey', 'diskSizeGb', 'forceAttach', 'guestOsFeatures', 'initializeParams'],
};

/** Handles one request end to end; never throws. */
export async function handleRequest(ctx: ServerContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let body: Buffer;
  try {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    body = Buffer.concat(chunks);
  } catch {
    res.destroy(); // the client went away mid-body: nothing to answer
    return;
  }
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  const record: RequestRecord = {
    method: undefined,
    httpMethod: req.method ?? '',
    path: url.pathname,
    query: Object.fromEntries(url.searchParams),
    status: 0,
  };
  ctx.state.requests.push(record);
  try {
    const json = dispatch(ctx, req, url, body, record);
    record.status = 200;
    sendJson(res, 200, json);
  } catch (err) {
    const error = err instanceof ComputeError ? err : internalError(err);
    record.status = error.status;
    sendJson(res, error.status, error.toJSON(), error.extra.headers);
  }
}

/** Writes a JSON response. */
function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=UTF-8',
    'Content-Length': Buffer.byteLength(text),
    Vary: 'Origin, X-Origin, Referer',
    ...headers,
  });
  res.end(text);
}

/** One matched route: the method's name and its handler. */
interface Route {
  method: ComputeMethod;
  http: 'GET' | 'POST' | 'DELETE';
  pattern: RegExp;
  params: readonly string[];
  /** Query parameters the method accepts beyond the system ones. */
  query: readonly string[];
  handle: (ctx: ServerContext, call: Call) => unknown;
}

/** A request after routing: decoded path parameters, query and body. */
interface Call {
  project: string;
  zone: string;
  /** The name in the path (instance, disk, snapshot or operation). */
  name: string;
  query: URLSearchParams;
  body: Buffer;
  method: ComputeMethod;
}

/** A route from a path template under /compute/v1/projects/{project}; {zone} and {name} are parameters. */
function route(method: ComputeMethod, http: Route['http'], template: string, query: readonly string[], handle: Route['handle']): Route {
  const params: string[] = [];
  const source = template.replace(/\{(\w+)\}/g, (_match, param: string) => {
    params.push(param);
    return '([^/]+)';
  });
  return { method, http, pattern: new RegExp(`^/compute/v1/projects/([^/]+)${source}$`), params, query, handle };
}

const ROUTES: readonly Route[] = [
  route('instances.get', 'GET', '/zones/{zone}/instances/{name}', [], getInstance),
  route('instances.attachDisk', 'POST', '/zones/{zone}/instances/{name}/attachDisk', ['requestId', 'forceAttach'], attachDisk),
  route('disks.get', 'GET', '/zones/{zone}/disks/{name}', [], getDisk),
  route('disks.insert', 'POST', '/zones/{zone}/disks', ['requestId', 'sourceImage'], insertDisk),
  route('disks.createSnapshot', 'POST', '/zones/{zone}/disks/{name}/createSnapshot', ['requestId', 'guestFlush'], createSnapshotOfDisk),
  route('snapshots.get', 'GET', '/global/snapshots/{name}', [], getSnapshot),
  route('snapshots.insert', 'POST', '/global/snapshots', ['requestId'], insertSnapshot),
  route('snapshots.delete', 'DELETE', '/global/snapshots/{name}', ['requestId'], deleteSnapshot),
  route('zoneOperations.get', 'GET', '/zones/{zone}/operations/{name}', [], pollOperation),
  route('zoneOperations.wait', 'POST', '/zones/{zone}/operations/{name}/wait', [], pollOperation),
  route('globalOperations.get', 'GET', '/global/operations/{name}', [], pollOperation),
  route('globalOperations.wait', 'POST', '/global/operations/{name}/wait', [], pollOperation),
];

/** Authenticates, matches, validates the path and query, applies injected HTTP faults, then handles. */
function dispatch(ctx: ServerContext, req: IncomingMessage, url: URL, body: Buffer, record: RequestRecord): unknown {
  checkAuth(ctx.token, req.headers.authorization);
  const candidates = ROUTES.filter((r) => r.pattern.test(url.pathname));
  const found = candidates.find((r) => r.http === req.method);
  if (found === undefined) {
    throw candidates.length > 0 || url.pathname.startsWith('/compute/v1/')
      ? notImplemented(`${req.method ?? ''} ${url.pathname}`)
      : new ComputeError(404, 'notFound', `The requested URL ${url.pathname} was not found on this server.`);
  }
  record.method = found.method;
  const match = found.pattern.exec(url.pathname) ?? [];
  const segments = match.slice(1).map((s) => decodeSegment(s ?? ''));
  const [project = '', ...rest] = segments;
  const values: Record<string, string> = {};
  found.params.forEach((p, i) => (values[p] = rest[i] ?? ''));
  const call: Call = { project, zone: values['zone'] ?? '', name: values['name'] ?? '', query: url.searchParams, body, method: found.method };

  const state = ctx.state;
  if (project !== state.project) throw notFound(`projects/${project}`);
  if (values['zone'] !== undefined && !state.zones.includes(call.zone)) throw notFound(paths.zone(project, call.zone));
  if (values['name'] !== undefined && !isNameOrId(call.name)) throw invalidParameter(call.name, NAME_OR_ID_PATTERN);
  checkQuery(url.searchParams, found.query);
  state.checkHttpFault(found.method, resourcePathOf(call));
  return found.handle(ctx, call);
}

/** The resource a call is about, as messages quote it. */
function resourcePathOf(call: Call): string {
  const { project, zone, name, method } = call;
  if (method.startsWith('instances.')) return paths.instance(project, zone, name);
  if (method === 'disks.insert') return paths.zone(project, zone);
  if (method.startsWith('disks.')) return paths.disk(project, zone, name);
  if (method === 'snapshots.insert') return `projects/${project}/global/snapshots`;
  if (method.startsWith('snapshots.')) return paths.snapshot(project, name);
  if (method.startsWith('zoneOperations.')) return paths.zoneOperation(project, zone, name);
  return paths.globalOperation(project, name);
}

/** Bearer token check: none is 401 "required", a wrong one 401 "authError". */
function checkAuth(token: string, authorization: string | undefined): void {
  if (authorization === undefined || authorization.trim() === '') throw loginRequired();
  const match = /^Bearer\s+(\S+)$/i.exec(authorization.trim());
  if (match?.[1] !== token) throw invalidCredentials();
}

/** Decodes one percent-encoded path segment; a malformed escape is a 400. */
function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw badRequest(`Malformed percent-encoding in path segment '${segment}'.`);
  }
}

/** Refuses an unknown or repeated query parameter, and the system parameters this server does not model. */
function checkQuery(query: URLSearchParams, allowed: readonly string[]): void {
  const seen = new Set<string>();
  for (const [key, value] of query) {
    if (seen.has(key)) throw badRequest(`Query parameter '${key}' given more than once.`);
    seen.add(key);
    if (UNMODELLED_PARAMS.includes(key)) throw notImplemented(`Query parameter '${key}'`);
    if (!SYSTEM_PARAMS.includes(key) && !allowed.includes(key)) {
      const why = `Cannot bind query parameter. Field '${key}' could not be found in request message.`;
      throw badRequest(`Invalid JSON payload received. Unknown name "${key}": ${why}`);
    }
    if (key === 'alt' && value !== 'json') throw notImplemented(`alt=${value}`);
    if ((key === 'prettyPrint' || key === '$prettyPrint') && !['true', 'false', '0', '1'].includes(value)) {
      throw badRequest(`Invalid value for ${key}: '${value}'.`);
    }
  }
}

/** A body's optional `kind` must name the resource's own kind. */
function checkKind(kind: unknown, expected: string): void {
  if (kind !== undefined && kind !== expected) throw invalidField('resource.kind', kind, `Must be '${expected}'.`);
}

/** The requestId parameter, checked: a UUID other than the zero UUID. */
function requestIdOf(query: URLSearchParams): string | undefined {
  const id = query.get('requestId') ?? undefined;
  if (id === undefined) return undefined;
  if (!REQUEST_ID.test(id) || /^[0-]+$/.test(id)) {
    throw invalidField('requestId', id, 'The request id must be a valid UUID with the exception that zero UUID is not supported.');
  }
  return id.toLowerCase();
}

/** A boolean query parameter. */
function boolParam(query: URLSearchParams, name: string): boolean | undefined {
  const value = query.get(name);
  if (value === null) return undefined;
  if (value !== 'true' && value !== 'false') throw badRequest(`Invalid value for ${name}: '${value}' is not a boolean.`);
  return value === 'true';
}

/** The operation an earlier request with the same requestId started: the service answers it again. */
function repeatedRequest(state: ComputeState, requestId: string | undefined, method: MutatingMethod): Record<string, unknown> | undefined {
  const op = state.operationForRequestId(requestId);
  if (op === undefined) return undefined;
  if (op.method !== method) throw invalidField('requestId', requestId, 'The request id was already used by a different request.');
  return state.operationView(op);
}

/** A disk that must exist and be READY, named by URL in a request body. */
function readyDisk(state: ComputeState, ref: { project: string; zone: string; name: string }): DiskRecord {
  const path = paths.disk(ref.project, ref.zone, ref.name);
  const disk = ref.project === state.project ? state.diskRecord(ref.zone, ref.name) : undefined;
  if (disk === undefined) throw notFound(path);
  if (disk.status !== 'READY') throw notReady(path);
  return disk;
}

function getInstance(ctx: ServerContext, call: Call): unknown {
  const inst = ctx.state.instanceRecord(call.zone, call.name);
  if (inst === undefined) throw notFound(paths.instance(call.project, call.zone, call.name));
  return ctx.state.instanceView(inst);
}

function attachDisk(ctx: ServerContext, call: Call): unknown {
  const { state } = ctx;
  const requestId = requestIdOf(call.query);
  if (boolParam(call.query, 'forceAttach') === true) throw notImplemented('forceAttach=true (regional disks)');
  const repeated = repeatedRequest(state, requestId, 'instances.attachDisk');
  if (repeated !== undefined) return repeated;
  const inst = state.instanceRecord(call.zone, call.name);
  if (inst === undefined) throw notFound(paths.instance(call.project, call.zone, call.name));
  const body = parseBody(call.body, ATTACHED_DISK_FIELDS);
  checkKind(body['kind'], 'compute#attachedDisk');
  if (body['source'] === undefined) throw requiredField('resource.source');
  const ref = parseDiskUrl(body['source'], 'resource.source', call.project);
  const disk = readyDisk(state, ref);
  if (disk.zone !== inst.zone) throw invalidField('resource.source', body['source'], 'Disk must be in the same zone as the instance.');
  const type = enumField(body['type'], 'attachedDisk.type', ['PERSISTENT', 'SCRATCH'] as const);
  if (type === 'SCRATCH') throw notImplemented('Attaching SCRATCH disks');
  if (boolField(body['boot'], 'attachedDisk.boot') === true) throw notImplemented('Attaching a boot disk');
  const mode = enumField(body['mode'], 'attachedDisk.mode', ['READ_WRITE', 'READ_ONLY'] as const) ?? 'READ_WRITE';
  const iface = enumField(body['interface'], 'attachedDisk.interface', ['SCSI', 'NVME'] as const) ?? 'SCSI';
  const autoDelete = boolField(body['autoDelete'], 'attachedDisk.autoDelete') ?? false;
  const diskPath = paths.disk(call.project, disk.zone, disk.name);
  const user = state.userOf(disk);
  if (user !== undefined) throw inUse(diskPath, user.replace(/^https:\/\/[^/]+\/compute\/v1\//, ''));
  const given = stringField(body['deviceName'], 'attachedDisk.deviceName');
  if (given !== undefined) validateName(given, 'resource.deviceName');
  const deviceName = given ?? `persistent-disk-${state.nextIndex(inst)}`;
  if (inst.disks.some((d) => d.deviceName === deviceName)) {
    throw invalidField('resource.deviceName', deviceName, `Device name '${deviceName}' is already in use on the instance.`);
  }
  const diskLink = state.diskLink(disk);
  const notApplied = state.takeAttachNotApplied();
  inst.attaching.add(diskLink);
  const op = state.startOperation({
    method: 'instances.attachDisk',
    zone: inst.zone,
    operationType: 'attachDisk',
    targetLink: state.instanceLink(inst),
    targetId: inst.id,
    requestId,
    apply: () => {
      inst.attaching.delete(diskLink);
      if (!notApplied) state.attachRecord(inst, disk, { deviceName, boot: false, autoDelete, mode, interface: iface });
    },
    rollback: () => inst.attaching.delete(diskLink),
  });
  return state.operationView(op);
}

function getDisk(ctx: ServerContext, call: Call): unknown {
  const disk = ctx.state.diskRecord(call.zone, call.name);
  if (disk === undefined) throw notFound(paths.disk(call.project, call.zone, call.name));
  return ctx.state.diskView(disk);
}

function insertDisk(ctx: ServerContext, call: Call): unknown {
  const { state } = ctx;
  const requestId = requestIdOf(call.query);
  if (call.query.has('sourceImage')) throw notImplemented('Creating disks from images (sourceImage)');
  const repeated = repeatedRequest(state, requestId, 'disks.insert');
  if (repeated !== undefined) return repeated;
  const body = parseBody(call.body, DISK_FIELDS);
  checkKind(body['kind'], 'compute#disk');
  const name = validateName(body['name'], 'resource.name');
  if (state.diskRecord(call.zone, name) !== undefined) throw alreadyExists(paths.disk(call.project, call.zone, name));
  const labels = validateLabels(body['labels'], 'resource.labels');
  const description = stringField(body['description'], 'disk.description');
  const type = body['type'] === undefined ? 'pd-standard' : parseDiskType(body['type'], 'resource.type', call.project, call.zone);
  let source: { link: string; id: string; sizeGb: number } | undefined;
  if (body['sourceSnapshot'] !== undefined) {
    const ref = parseSnapshotUrl(body['sourceSnapshot'], 'resource.sourceSnapshot', call.project);
    const snap = ref.project === state.project ? state.snapshotRecord(ref.name) : undefined;
    if (snap === undefined) throw notFound(paths.snapshot(ref.project, ref.name));
    if (snap.status !== 'READY') throw notReady(paths.snapshot(ref.project, snap.name));
    source = { link: state.snapshotLink(snap), id: snap.id, sizeGb: snap.diskSizeGb };
  }
  const sizeGb = int64Field(body['sizeGb'], 'disk.size_gb') ?? source?.sizeGb ?? DEFAULT_BLANK_DISK_GB;
  if (sizeGb < 1 || sizeGb > MAX_DISK_GB) throw invalidField('resource.sizeGb', sizeGb, `Disk size must be between 1 and ${MAX_DISK_GB} GB.`);
  if (source !== undefined && sizeGb < source.sizeGb) {
    throw invalidField('resource.sizeGb', sizeGb, `Requested disk size cannot be smaller than the snapshot size (${source.sizeGb} GB).`);
  }
  const disk = state.putDisk({
    name,
    zone: call.zone,
    sizeGb,
    type,
    status: 'CREATING',
    labels,
    description,
    sourceSnapshot: source === undefined ? undefined : { link: source.link, id: source.id },
  });
  const op = state.startOperation({
    method: 'disks.insert',
    zone: call.zone,
    operationType: 'insert',
    targetLink: state.diskLink(disk),
    targetId: disk.id,
    requestId,
    apply: () => (disk.status = 'READY'),
    rollback: () => state.removeDisk(disk),
  });
  return state.operationView(op);
}

function createSnapshotOfDisk(ctx: ServerContext, call: Call): unknown {
  const { state } = ctx;
  const requestId = requestIdOf(call.query);
  boolParam(call.query, 'guestFlush'); // accepted; an application-consistent snapshot is not modelled
  const repeated = repeatedRequest(state, requestId, 'disks.createSnapshot');
  if (repeated !== undefined) return repeated;
  const disk = state.diskRecord(call.zone, call.name);
  const diskPath = paths.disk(call.project, call.zone, call.name);
  if (disk === undefined) throw notFound(diskPath);
  const body = parseBody(call.body, SNAPSHOT_FIELDS);
  if (body['sourceDisk'] !== undefined) {
    const ref = parseDiskUrl(body['sourceDisk'], 'resource.sourceDisk', call.project);
    if (state.diskRecord(ref.zone, ref.name) !== disk || ref.project !== call.project) {
      throw invalidField('resource.sourceDisk', body['sourceDisk'], 'Must be the disk named in the request URL.');
    }
  }
  return startSnapshot(ctx, call, body, readyDisk(state, { project: call.project, zone: call.zone, name: disk.name }), requestId, 'disks.createSnapshot');
}

function insertSnapshot(ctx: ServerContext, call: Call): unknown {
  const requestId = requestIdOf(call.query);
  const repeated = repeatedRequest(ctx.state, requestId, 'snapshots.insert');
  if (repeated !== undefined) return repeated;
  const body = parseBody(call.body, SNAPSHOT_FIELDS);
  // Only disks are modelled as a source: sourceInstantSnapshot and the rest answer 501 in parseBody.
  if (body['sourceDisk'] === undefined) throw requiredField('resource.sourceDisk');
  validateName(body['name'], 'resource.name');
  const ref = parseDiskUrl(body['sourceDisk'], 'resource.sourceDisk', call.project);
  return startSnapshot(ctx, call, body, readyDisk(ctx.state, ref), requestId, 'snapshots.insert');
}

/** The storage location a snapshot gets by default: the multi-region of the disk's zone. */
function defaultStorageLocation(zone: string): string {
  if (zone.startsWith('europe-')) return 'eu';
  if (zone.startsWith('asia-') || zone.startsWith('australia-')) return 'asia';
  return 'us';
}

/** Validates the rest of a snapshot body, stores the snapshot (CREATING) and starts its operation. */
function startSnapshot(
  ctx: ServerContext,
  call: Call,
  body: Record<string, unknown>,
  disk: DiskRecord,
  requestId: string | undefined,
  method: 'snapshots.insert' | 'disks.createSnapshot',
): unknown {
  const { state } = ctx;
  checkKind(body['kind'], 'compute#snapshot');
  const name = validateName(body['name'], 'resource.name');
  if (state.snapshotRecord(name) !== undefined) throw alreadyExists(paths.snapshot(call.project, name));
  const labels = validateLabels(body['labels'], 'resource.labels');
  const description = stringField(body['description'], 'snapshot.description');
  const chainName = stringField(body['chainName'], 'snapshot.chain_name');
  if (chainName !== undefined) validateName(chainName, 'resource.chainName');
  boolField(body['guestFlush'], 'snapshot.guest_flush');
  const snapshotType = enumField(body['snapshotType'], 'snapshot.snapshot_type', ['STANDARD', 'ARCHIVE'] as const) ?? 'STANDARD';
  const locations = body['storageLocations'];
  let storageLocations = [defaultStorageLocation(disk.zone)];
  if (locations !== undefined) {
    if (!Array.isArray(locations) || locations.some((l) => typeof l !== 'string' || !/^[a-z]+(?:-[a-z]+\d+)?$/.test(l))) {
      throw invalidField('resource.storageLocations', JSON.stringify(locations), 'Each location must be a multi-region (us, eu, asia) or a region name.');
    }
    if (locations.length > 1) throw invalidField('resource.storageLocations', JSON.stringify(locations), 'At most one storage location may be specified.');
    if (locations.length === 1) storageLocations = locations as string[];
  }
  const snapshot = state.putSnapshot({
    name,
    sourceDisk: state.diskLink(disk),
    sourceDiskId: disk.id,
    diskSizeGb: disk.sizeGb,
    labels,
    description,
    storageLocations,
    snapshotType,
    chainName,
  });
  const global = method === 'snapshots.insert';
  const op: OperationRecord = state.startOperation({
    method,
    zone: global ? undefined : disk.zone,
    operationType: global ? 'insert' : 'createSnapshot',
    targetLink: global ? state.snapshotLink(snapshot) : state.diskLink(disk),
    targetId: global ? snapshot.id : disk.id,
    requestId,
    snapshot: name,
  });
  // An operation that is to fail (quota, say) never makes the snapshot, as on the service.
  if (op.fault !== undefined) state.removeSnapshot(name);
  return state.operationView(op);
}

function getSnapshot(ctx: ServerContext, call: Call): unknown {
  const snap = ctx.state.snapshotRecord(call.name);
  if (snap === undefined) throw notFound(paths.snapshot(call.project, call.name));
  ctx.state.pollSnapshot(snap);
  return ctx.state.snapshotView(snap);
}

function deleteSnapshot(ctx: ServerContext, call: Call): unknown {
  const { state } = ctx;
  const requestId = requestIdOf(call.query);
  const repeated = repeatedRequest(state, requestId, 'snapshots.delete');
  if (repeated !== undefined) return repeated;
  const snap = state.snapshotRecord(call.name);
  if (snap === undefined) throw notFound(paths.snapshot(call.project, call.name));
  if (snap.status === 'DELETING') throw notReady(paths.snapshot(call.project, snap.name));
  const before = snap.status;
  snap.status = 'DELETING';
  const op = state.startOperation({
    method: 'snapshots.delete',
    zone: undefined,
    operationType: 'delete',
    targetLink: state.snapshotLink(snap),
    targetId: snap.id,
    requestId,
    apply: () => state.removeSnapshot(snap.name),
    rollback: () => (snap.status = before),
  });
  return state.operationView(op);
}

/** get and wait alike: one poll, then the operation as it stands. wait returns at once rather than
 *  blocking up to two minutes: the server has no clock, and the API allows wait to return early. */
function pollOperation(ctx: ServerContext, call: Call): unknown {
  const global = call.method.startsWith('global');
  if (call.method.endsWith('.wait') && call.body.length > 0) {
    // The REST client sends `""` (an empty JSON string) as the body of a POST that has none.
    const parsed = parseJson(call.body);
    if (parsed !== '') checkFields(parsed, { resource: 'wait', modelled: [], outputOnly: [], unmodelled: [] });
  }
  const op = ctx.state.operationRecord(global ? undefined : call.zone, call.name);
  if (op === undefined) {
    throw notFound(global ? paths.globalOperation(call.project, call.name) : paths.zoneOperation(call.project, call.zone, call.name));
  }
  ctx.state.pollOperation(op);
  return ctx.state.operationView(op);
}

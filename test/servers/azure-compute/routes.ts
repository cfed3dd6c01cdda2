// Request routing for the ARM test server: authentication, injected faults, api-version, then the
// handler for the resource type and method. Paths and names are matched case-insensitively, as ARM does.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { checkApiVersion, missingApiVersion } from './api-versions.ts';
import type { ResourceProviderPart } from './api-versions.ts';
import { getVm, updateVm } from './compute-rp.ts';
import { deleteSnapshot, getDisk, getSnapshot, putDisk, putSnapshot } from './disk-rp.ts';
import { ArmError, notImplemented } from './errors.ts';
import { header, readBody, sendError, sendJson } from './http.ts';
import type { AzureComputeState } from './state.ts';

/** What every handler can reach. */
export interface ServerContext {
  state: AzureComputeState;
  /** The bearer token requests must carry. */
  token: string;
  /** https://127.0.0.1:PORT, for operation URLs. */
  endpoint: string;
}

/** A handler's answer. */
export interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

/** A request for one resource, after routing and the generic checks. */
export interface ResourceRequest {
  ctx: ServerContext;
  method: string;
  /** The resource group as the path spells it (it exists). */
  resourceGroup: string;
  name: string;
  apiVersion: string;
  contentType: string | undefined;
  ifMatch: string | undefined;
  ifNoneMatch: string | undefined;
  body: Buffer;
}

/** The resource types routed, by lower-case name: their canonical name and which RP serves them. */
const TYPES: Readonly<Record<string, { type: 'virtualMachines' | 'disks' | 'snapshots'; part: ResourceProviderPart; methods: readonly string[] }>> = {
  virtualmachines: { type: 'virtualMachines', part: 'compute', methods: ['GET', 'PUT', 'PATCH'] },
  disks: { type: 'disks', part: 'disk', methods: ['GET', 'PUT'] },
  snapshots: { type: 'snapshots', part: 'disk', methods: ['GET', 'PUT', 'DELETE'] },
};

/** Methods ARM serves on these types that this server does not implement (501, never a silent 2xx). */
const UNIMPLEMENTED_METHODS: Readonly<Record<string, readonly string[]>> = {
  virtualMachines: ['DELETE'],
  disks: ['PATCH', 'DELETE'],
  snapshots: ['PATCH'],
};

/** Handles one request end to end; never throws. */
export async function handleRequest(ctx: ServerContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let body: Buffer;
  try {
    body = await readBody(req);
  } catch {
    res.destroy();
    return;
  }
  try {
    const reply = route(ctx, req, body);
    sendJson(res, reply.status, reply.body, reply.headers);
  } catch (err) {
    const error = err instanceof ArmError ? err : new ArmError(500, 'InternalServerError', `The Azure Compute test server failed: ${err instanceof Error ? err.message : String(err)}`);
    if (res.headersSent) res.destroy();
    else sendError(res, error);
  }
}

/** Checks Authorization as ARM does: a Bearer token, the one this server issued. */
function authenticate(ctx: ServerContext, authorization: string | undefined): void {
  const challenge = (description: string): Record<string, string> => ({
    'WWW-Authenticate': `Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token", error_description="${description}"`,
  });
  if (authorization === undefined) {
    throw new ArmError(401, 'AuthenticationFailed', "Authentication failed. The 'Authorization' header is missing.", {
      headers: challenge("The authentication failed because of missing 'Authorization' header."),
    });
  }
  const match = /^Bearer\s+(\S+)$/i.exec(authorization.trim());
  if (match === null) {
    throw new ArmError(401, 'AuthenticationFailedInvalidHeader', "Authentication failed. The 'Authorization' header is provided in an invalid format.", {
      headers: challenge("The authentication failed because of an invalid 'Authorization' header."),
    });
  }
  if (match[1] !== ctx.token) {
    throw new ArmError(401, 'InvalidAuthenticationToken', 'The access token is invalid.', { headers: challenge('The access token is invalid.') });
  }
}

/** Refuses query parameters a route does not take: deliberately stricter than ARM, so a typo fails a test. */
function onlyQuery(search: URLSearchParams, allowed: readonly string[]): void {
  for (const name of new Set(search.keys())) {
    if (!allowed.includes(name)) throw new ArmError(400, 'UnsupportedQueryParameter', `The query parameter '${name}' is not supported by this operation (Azure Compute test server).`);
    if (search.getAll(name).length > 1) throw new ArmError(400, 'UnsupportedQueryParameter', `The query parameter '${name}' is given more than once.`);
  }
}

/** Routes one request; throws ArmError for every refusal. */
function route(ctx: ServerContext, req: IncomingMessage, body: Buffer): Reply {
  const { state } = ctx;
  const url = new URL(req.url ?? '/', 'https://127.0.0.1');
  const method = (req.method ?? 'GET').toUpperCase();
  const apiVersion = url.searchParams.get('api-version');
  state.requests.push({ method, path: url.pathname, apiVersion });
  authenticate(ctx, header(req, 'authorization'));
  const fault = state.takeFault(method, url.pathname);
  if (fault !== undefined) throw new ArmError(fault.status, fault.code, fault.message, { headers: fault.headers ?? {} });

  let segments: string[];
  try {
    segments = url.pathname.split('/').slice(1).map((s) => decodeURIComponent(s));
  } catch {
    throw new ArmError(400, 'InvalidRequestUri', `The request URI '${url.pathname}' is not valid.`);
  }
  const lower = segments.map((s) => s.toLowerCase());
  if (lower[0] !== 'subscriptions' || segments[1] === undefined || segments[1] === '') {
    throw new ArmError(404, 'NotFound', `The path '${url.pathname}' is not served by the Azure Compute test server.`);
  }
  if (apiVersion === null || apiVersion === '') throw missingApiVersion();
  if (segments[1].toLowerCase() !== state.subscriptionId.toLowerCase()) {
    throw new ArmError(404, 'SubscriptionNotFound', `The subscription '${segments[1]}' could not be found.`);
  }

  // /subscriptions/{s}/providers/Microsoft.Compute/locations/{l}/(DiskOperations|operations)/{id}
  if (lower[2] === 'providers') return operationStatus(ctx, lower, segments, url.searchParams);

  // /subscriptions/{s}/resourceGroups/{rg}/providers/{namespace}/{type}[/{name}[/...]]
  if (lower[2] !== 'resourcegroups' || segments[3] === undefined || lower[4] !== 'providers' || segments[5] === undefined || segments[6] === undefined) {
    throw notImplemented(`The path '${url.pathname}'`);
  }
  const group = state.resourceGroup(segments[3]);
  if (group === undefined) throw new ArmError(404, 'ResourceGroupNotFound', `Resource group '${segments[3]}' could not be found.`);
  if (lower[5] !== 'microsoft.compute') throw notImplemented(`Resource provider '${segments[5]}'`);
  const entry = TYPES[lower[6] ?? ''];
  if (entry === undefined) throw notImplemented(`Resource type 'Microsoft.Compute/${segments[6]}'`);
  checkApiVersion(apiVersion, entry.part, entry.type, group.location);
  const name = segments[7];
  if (name === undefined || name === '') throw notImplemented(`Listing Microsoft.Compute/${entry.type}`);
  if (segments.length > 8) throw notImplemented(`The action '${segments.slice(8).join('/')}' on Microsoft.Compute/${entry.type}`);
  if ((UNIMPLEMENTED_METHODS[entry.type] ?? []).includes(method)) throw notImplemented(`${method} on Microsoft.Compute/${entry.type}`);
  if (!entry.methods.includes(method)) {
    throw new ArmError(405, 'MethodNotAllowed', `The requested resource does not support http method '${method}'.`);
  }
  onlyQuery(url.searchParams, entry.type === 'virtualMachines' && method === 'GET' ? ['api-version', '$expand'] : ['api-version']);
  if (url.searchParams.has('$expand')) throw notImplemented(`$expand=${url.searchParams.get('$expand') ?? ''}`);

  const request: ResourceRequest = {
    ctx,
    method,
    resourceGroup: group.name,
    name,
    apiVersion: apiVersion ?? '',
    contentType: header(req, 'content-type'),
    ifMatch: header(req, 'if-match'),
    ifNoneMatch: header(req, 'if-none-match'),
    body,
  };
  switch (`${entry.type} ${method}`) {
    case 'virtualMachines GET':
      return getVm(request);
    case 'virtualMachines PUT':
    case 'virtualMachines PATCH':
      return updateVm(request);
    case 'disks GET':
      return getDisk(request);
    case 'disks PUT':
      return putDisk(request);
    case 'snapshots GET':
      return getSnapshot(request);
    case 'snapshots PUT':
      return putSnapshot(request);
    case 'snapshots DELETE':
      return deleteSnapshot(request);
    default:
      throw notImplemented(`${method} on Microsoft.Compute/${entry.type}`);
  }
}

/**
 * GET of an operation URL. Without `monitor=true` it is the Azure-AsyncOperation status resource
 * (200 with status InProgress, Succeeded or Failed); with it, the Location protocol: 202 while in
 * progress, then the final answer (200 with the resource, 200 empty for a delete, or the error).
 */
function operationStatus(ctx: ServerContext, lower: string[], segments: string[], search: URLSearchParams): Reply {
  const { state } = ctx;
  const [, , , namespace, locations, location, collection, id, ...rest] = lower;
  if (namespace !== 'microsoft.compute' || locations !== 'locations' || location === undefined || id === undefined || rest.length > 0) {
    throw notImplemented(`The path '/${segments.join('/')}'`);
  }
  const part: ResourceProviderPart | undefined = collection === 'diskoperations' ? 'disk' : collection === 'operations' ? 'compute' : undefined;
  if (part === undefined) throw notImplemented(`Microsoft.Compute/locations/${segments[6] ?? ''}`);
  checkApiVersion(search.get('api-version'), part, part === 'disk' ? 'locations/DiskOperations' : 'locations/operations', location);
  onlyQuery(search, ['api-version', 'p', 'monitor']);
  const operation = state.operations.get(id, search.get('p'));
  if (operation === undefined || operation.spec.part !== part || operation.spec.location !== location) {
    throw new ArmError(404, 'NotFound', `The operation '${segments[7] ?? ''}' was not found.`);
  }
  state.operations.advance(operation);
  if (search.get('monitor') !== 'true') return { status: 200, body: state.operations.statusBody(operation) };
  if (operation.status === 'InProgress') {
    const urls = state.operations.urls(operation, ctx.endpoint, state.subscriptionId);
    return { status: 202, headers: { Location: urls.location } };
  }
  if (operation.status === 'Failed') {
    const error = operation.error ?? { code: 'InternalOperationError', message: 'The operation failed.' };
    throw new ArmError(operation.spec.failureStatus ?? 500, error.code, error.message);
  }
  return { status: 200, body: operation.output };
}

/**
 * Classifies what the Azure snapshotter's stack throws (ARM answers through @azure/arm-compute,
 * @azure/identity credential failures, Node socket and TLS errors) into the snapshotter contract's
 * kinds. The tables are data, so that a new ARM code is one line, not a new branch.
 */
import { SnapshotError } from '../snapshotter.ts';
import type { SnapshotErrorKind } from '../snapshotter.ts';
import { errorDetail, kindOfStatus, SNAPSHOT_NETWORK_KINDS } from '../network-errors.ts';

/**
 * ARM and Compute resource provider error codes, @azure/identity error names and Node error codes, by kind.
 * See https://learn.microsoft.com/azure/azure-resource-manager/troubleshooting/common-deployment-errors.
 */
const KIND_BY_CODE: Readonly<Record<string, SnapshotErrorKind>> = {
  // The instance, disk, snapshot, resource group or subscription does not exist.
  ResourceNotFound: 'not-found',
  NotFound: 'not-found',
  ResourceGroupNotFound: 'not-found',
  SubscriptionNotFound: 'not-found',
  ParentResourceNotFound: 'not-found',
  // Quotas that say so in their code (OperationNotAllowed ones are told apart by their wording below).
  QuotaExceeded: 'quota-exceeded',
  ResourceQuotaExceeded: 'quota-exceeded',
  // ARM's and the providers' throttling codes (the status, 429, decides first anyway).
  TooManyRequests: 'throttled',
  SubscriptionRequestsThrottled: 'throttled',
  TenantRequestsThrottled: 'throttled',
  ResourceRequestsThrottled: 'throttled',
  ResourceCollectionRequestsThrottled: 'throttled',
  // Missing, wrong or expired token; a token without the role for the action.
  AuthenticationFailed: 'access-denied',
  AuthenticationFailedInvalidHeader: 'access-denied',
  AuthenticationFailedMissingToken: 'access-denied',
  InvalidAuthenticationToken: 'access-denied',
  InvalidAuthenticationTokenTenant: 'access-denied',
  InvalidAuthenticationTokenAudience: 'access-denied',
  ExpiredAuthenticationToken: 'access-denied',
  AuthorizationFailed: 'access-denied',
  LinkedAuthorizationFailed: 'access-denied',
  // @azure/identity: no token could be had (no login, no managed identity, refused).
  CredentialUnavailableError: 'access-denied',
  AuthenticationError: 'access-denied',
  AggregateAuthenticationError: 'access-denied',
  AuthenticationRequiredError: 'access-denied',
  // ARM could not be reached, or not trusted (a TLS failure will not pass by itself, but the
  // operator's fix is the same as for a network failure: the endpoint and what sits in front of it).
  ...SNAPSHOT_NETWORK_KINDS,
  ECONNABORTED: 'unreachable',
  REQUEST_SEND_ERROR: 'unreachable', // the SDK's name for a request that broke off without a Node code
  DEPTH_ZERO_SELF_SIGNED_CERT: 'unreachable',
  SELF_SIGNED_CERT_IN_CHAIN: 'unreachable',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'unreachable',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'unreachable',
  CERT_HAS_EXPIRED: 'unreachable',
  ERR_TLS_CERT_ALTNAME_INVALID: 'unreachable',
  ServiceUnavailable: 'unreachable',
  GatewayTimeout: 'unreachable',
  // The request itself is wrong: retrying will not help.
  InvalidParameter: 'invalid',
  BadRequest: 'invalid',
  InvalidRequestContent: 'invalid',
  InvalidRequestFormat: 'invalid',
  InvalidRequestUri: 'invalid',
  MissingApiVersionParameter: 'invalid',
  InvalidApiVersionParameter: 'invalid',
  NoRegisteredProviderFound: 'invalid',
  MissingSubscriptionRegistration: 'invalid',
  InvalidSubscriptionId: 'invalid',
  InvalidResourceName: 'invalid',
  InvalidResourceType: 'invalid',
  InvalidResourceLocation: 'invalid',
  LinkedInvalidPropertyId: 'invalid',
  LocationRequired: 'invalid',
  LocationNotAvailableForResourceType: 'invalid',
  PropertyChangeNotAllowed: 'invalid',
  InvalidTag: 'invalid',
  InvalidTagNameCharacters: 'invalid',
  UnsupportedMediaType: 'invalid',
  ConflictingUserInput: 'invalid', // e.g. a disk owned by another VM
  // The operation ran and failed.
  InternalOperationError: 'failed',
  InternalExecutionError: 'failed',
};

/**
 * Codes whose kind depends on the message: the Compute and Disk RPs report an exhausted quota as
 * OperationNotAllowed ("... exceeding approved ... quota ..."), the same code as a wrong state.
 */
const KIND_BY_MESSAGE: readonly { codes: readonly string[]; pattern: RegExp; kind: SnapshotErrorKind }[] = [
  { codes: ['OperationNotAllowed', 'BadRequest', 'Conflict'], pattern: /\bquota\b/i, kind: 'quota-exceeded' },
];

/** HTTP statuses whose meaning does not depend on the code (used when the code is unknown). */
const KIND_BY_STATUS: Readonly<Record<number, SnapshotErrorKind>> = {
  400: 'invalid',
  401: 'access-denied',
  403: 'access-denied',
  404: 'not-found',
  405: 'invalid',
  408: 'unreachable',
  409: 'failed',
  412: 'failed',
  415: 'invalid',
  429: 'throttled',
  502: 'unreachable',
  503: 'unreachable',
  504: 'unreachable',
};

/** A hint per kind, so that a one-line message says what to do next. */
const HINT: Readonly<Record<SnapshotErrorKind, string>> = {
  'not-found': 'not found; check the name, azure_resource_group and azure_subscription_id',
  'not-attached': 'the disk is not attached to the instance',
  'quota-exceeded': 'an Azure quota is exhausted; delete old snapshots or disks, or raise the quota',
  throttled: 'Azure Resource Manager throttled the request; retry later',
  'access-denied':
    'access denied; check the Entra ID credential (DefaultAzureCredential: environment, workload or managed identity, Azure CLI) and its role on the resource group',
  unreachable: 'Azure Resource Manager could not be reached; check the endpoint, the network and its TLS certificate',
  invalid: 'Azure Resource Manager rejected the request as invalid',
  timeout: 'the operation did not finish in time',
  failed: 'the Azure request failed',
};

/** The fields of an SDK, identity or Node error that classification reads; everything is optional. */
interface ErrorShape {
  name?: unknown;
  code?: unknown;
  statusCode?: unknown;
  message?: unknown;
  cause?: unknown;
}

/** The codes an error carries, most specific first: its code, its cause's code, then its class name. */
function codesOf(err: ErrorShape): string[] {
  const cause = typeof err.cause === 'object' && err.cause !== null ? (err.cause as ErrorShape).code : undefined;
  return [err.code, cause, err.name].filter((c): c is string => typeof c === 'string' && c.length > 0);
}

/** The kind of an error: 429 first (the Compute RP throttles with OperationNotAllowed), then wording, code, status. */
export function classifyAzureComputeError(err: unknown): { kind: SnapshotErrorKind; code: string | undefined; status: number | undefined } {
  const shape: ErrorShape = typeof err === 'object' && err !== null ? (err as ErrorShape) : {};
  const codes = codesOf(shape);
  const status = typeof shape.statusCode === 'number' ? shape.statusCode : undefined;
  // 'RestError' and 'Error' name a class, not a condition: leave them out of the message.
  const code = codes.find((c) => c !== 'RestError' && c !== 'Error');
  if (status === 429) return { kind: 'throttled', code, status };
  const message = typeof shape.message === 'string' ? shape.message : '';
  for (const rule of KIND_BY_MESSAGE) {
    if (code !== undefined && rule.codes.includes(code) && rule.pattern.test(message)) return { kind: rule.kind, code, status };
  }
  for (const candidate of codes) {
    const kind = KIND_BY_CODE[candidate];
    if (kind !== undefined) return { kind, code: candidate, status };
  }
  return { kind: kindOfStatus(status, KIND_BY_STATUS, 'failed', 'invalid') ?? 'failed', code, status };
}

/** An error message on one line and of bounded length (ARM messages can be long; some quote requests). */
function oneLine(text: string, max = 300): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/**
 * Turns anything the SDK threw into a SnapshotError about target, keeping the original as `cause`.
 * The message carries ARM's own text (it says which quota, which parameter) after the hint.
 */
export function toSnapshotError(err: unknown, target: string): SnapshotError {
  if (err instanceof SnapshotError) return err;
  const { kind, code, status } = classifyAzureComputeError(err);
  const text = err instanceof Error && err.message !== '' ? `: ${oneLine(err.message)}` : '';
  return new SnapshotError(kind, `${HINT[kind]}: ${target}${errorDetail(code, status)}${text}`, { target, cause: err });
}

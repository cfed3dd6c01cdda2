// The Compute Engine REST API's error shape and the errors the test server answers with.
// References: https://cloud.google.com/compute/docs/api/handle-errors,
// https://cloud.google.com/compute/operations-quota (the rate-limit body, with its ErrorInfo),
// https://cloud.google.com/compute/api-quota ("a 403 error with the reason rateLimitExceeded").

/** One entry of `error.errors[]`. */
export interface ComputeErrorItem {
  message: string;
  domain: string;
  reason: string;
  location?: string;
  locationType?: string;
}

/** A `google.rpc.ErrorInfo` entry of `error.details[]`. */
export interface ErrorInfoDetail {
  '@type': 'type.googleapis.com/google.rpc.ErrorInfo';
  reason: string;
  domain: string;
  metadata?: Record<string, string>;
}

/** The whole response body of a refused request. */
export interface ComputeErrorBody {
  error: { code: number; message: string; errors: ComputeErrorItem[]; status?: string; details?: ErrorInfoDetail[] };
}

/** A refused request; the router writes it as the API's JSON error. Handlers throw it so that every
 *  refusal has one shape and one place that writes it. */
export class ComputeError extends Error {
  readonly status: number;
  readonly reason: string;
  readonly domain: string;
  readonly extra: {
    location?: { type: string; name: string };
    /** The canonical status name some front ends add (UNAUTHENTICATED, RESOURCE_EXHAUSTED). */
    rpcStatus?: string;
    errorInfo?: { reason: string; domain: string; metadata?: Record<string, string> };
    headers?: Record<string, string>;
  };

  constructor(status: number, reason: string, message: string, domain = 'global', extra: ComputeError['extra'] = {}) {
    super(message);
    this.name = 'ComputeError';
    this.status = status;
    this.reason = reason;
    this.domain = domain;
    this.extra = extra;
  }

  /** The response body: `{"error":{"code","message","errors":[{message,domain,reason}],...}}`. */
  toJSON(): ComputeErrorBody {
    const item: ComputeErrorItem = { message: this.message, domain: this.domain, reason: this.reason };
    if (this.extra.location !== undefined) {
      item.location = this.extra.location.name;
      item.locationType = this.extra.location.type;
    }
    const body: ComputeErrorBody = { error: { code: this.status, message: this.message, errors: [item] } };
    if (this.extra.rpcStatus !== undefined) body.error.status = this.extra.rpcStatus;
    const info = this.extra.errorInfo;
    if (info !== undefined) {
      const detail: ErrorInfoDetail = { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: info.reason, domain: info.domain };
      if (info.metadata !== undefined) detail.metadata = info.metadata;
      body.error.details = [detail];
    }
    return body;
  }
}

/** 404 for a resource that does not exist, in the service's wording (`projects/p/zones/z/disks/d`). */
export function notFound(resourcePath: string): ComputeError {
  return new ComputeError(404, 'notFound', `The resource '${resourcePath}' was not found`);
}

/** 409 for a name already taken. */
export function alreadyExists(resourcePath: string): ComputeError {
  return new ComputeError(409, 'alreadyExists', `The resource '${resourcePath}' already exists`);
}

/** 400 `invalid`: a field value the service refuses. */
export function invalidField(field: string, value: unknown, why: string): ComputeError {
  return new ComputeError(400, 'invalid', `Invalid value for field '${field}': '${String(value)}'. ${why}`);
}

/** 400 `required`: a required field is missing. */
export function requiredField(field: string): ComputeError {
  return new ComputeError(400, 'required', `Required field '${field}' not specified`);
}

/** 400 `invalid` for anything else malformed in a request (JSON, unknown fields, bad parameters). */
export function badRequest(message: string): ComputeError {
  return new ComputeError(400, 'invalid', message);
}

/** 400 `invalidParameter` for a path or query parameter that fails its pattern. */
export function invalidParameter(value: string, pattern: string): ComputeError {
  return new ComputeError(400, 'invalidParameter', `Invalid value '${value}'. Values must match the following regular expression: '${pattern}'`);
}

/** 400 `resourceNotReady`: the resource exists but is still being created or deleted. */
export function notReady(resourcePath: string): ComputeError {
  return new ComputeError(400, 'resourceNotReady', `The resource '${resourcePath}' is not ready`);
}

/** 400 `resourceInUseByAnotherResource`: a disk attached elsewhere, in the service's wording. */
export function inUse(resourcePath: string, user: string): ComputeError {
  return new ComputeError(400, 'resourceInUseByAnotherResource', `The disk resource '${resourcePath}' is already being used by '${user}'`);
}

/** 401 without credentials, as Google's front end answers it. */
export function loginRequired(): ComputeError {
  return new ComputeError(
    401,
    'required',
    'Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.',
    'global',
    {
      location: { type: 'header', name: 'Authorization' },
      rpcStatus: 'UNAUTHENTICATED',
      errorInfo: { reason: 'CREDENTIALS_MISSING', domain: 'googleapis.com' },
      headers: { 'WWW-Authenticate': 'Bearer realm="https://accounts.google.com/"' },
    },
  );
}

/** 401 with a token the server does not accept. */
export function invalidCredentials(): ComputeError {
  return new ComputeError(
    401,
    'authError',
    'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.',
    'global',
    {
      location: { type: 'header', name: 'Authorization' },
      rpcStatus: 'UNAUTHENTICATED',
      errorInfo: { reason: 'ACCESS_TOKEN_TYPE_UNSUPPORTED', domain: 'googleapis.com' },
      headers: { 'WWW-Authenticate': 'Bearer realm="https://accounts.google.com/", error="invalid_token"' },
    },
  );
}

/** 403 `forbidden`: the caller lacks an IAM permission on the resource. */
export function permissionDenied(permission: string, resourcePath: string): ComputeError {
  return new ComputeError(403, 'forbidden', `Required '${permission}' permission for '${resourcePath}'`);
}

/** 403 `quotaExceeded` (domain usageLimits): a resource quota such as SNAPSHOTS is used up. */
export function quotaExceeded(metric: string, limit: number, scope: string): ComputeError {
  return new ComputeError(403, 'quotaExceeded', `Quota '${metric}' exceeded.  Limit: ${limit.toFixed(1)} ${scope}.`, 'usageLimits');
}

/** A rate limit: 403 as the Compute Engine quota pages document it, or 429 as the API front end answers. */
export function rateLimitExceeded(status: 403 | 429): ComputeError {
  return new ComputeError(status, 'rateLimitExceeded', 'Rate Limit Exceeded', 'usageLimits', {
    ...(status === 429 ? { rpcStatus: 'RESOURCE_EXHAUSTED' } : {}),
    errorInfo: { reason: status === 429 ? 'RATE_LIMIT_EXCEEDED' : 'CONCURRENT_OPERATIONS_QUOTA_EXCEEDED', domain: 'compute.googleapis.com' },
  });
}

/** 503 `backendError`: the service could not answer just now. */
export function backendError(): ComputeError {
  return new ComputeError(503, 'backendError', "Internal error. Please try again or contact Google Support. (Code: '-5013282839475230457')");
}

/** 501 for a method or option of the real API that this server does not model: never a silent 200. */
export function notImplemented(what: string): ComputeError {
  return new ComputeError(501, 'notImplemented', `${what} is not implemented by the Compute Engine test server`);
}

/** Wraps an unexpected exception as a 500, so a server bug shows up in the test that hit it. */
export function internalError(err: unknown): ComputeError {
  const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return new ComputeError(500, 'backendError', `Compute Engine test server internal error: ${message}`);
}

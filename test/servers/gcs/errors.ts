// The JSON API's error shape and the handful of errors the test server answers with.
// Reference: https://cloud.google.com/storage/docs/json_api/v1/status-codes

/** One entry of `error.errors[]`, as the JSON API reports it. */
export interface GcsErrorDetail {
  domain: string;
  reason: string;
  message: string;
  locationType?: string;
  location?: string;
}

/** A request the server refuses; the router turns it into the service's JSON error response.
 *  Handlers throw it so that every refusal has one shape and one place that writes it. */
export class GcsError extends Error {
  readonly status: number;
  readonly reason: string;
  readonly location: { type: string; name: string } | undefined;
  readonly headers: Record<string, string>;
  /** The upload front end answers some errors as bare text rather than the JSON shape. */
  readonly plainText: boolean;

  constructor(
    status: number,
    reason: string,
    message: string,
    extra: { location?: { type: string; name: string }; headers?: Record<string, string>; plainText?: boolean } = {},
  ) {
    super(message);
    this.name = 'GcsError';
    this.status = status;
    this.reason = reason;
    this.location = extra.location;
    this.headers = extra.headers ?? {};
    this.plainText = extra.plainText ?? false;
  }

  /** The response body: `{"error":{"code","message","errors":[{domain,reason,message,...}]}}`. */
  toJSON(): { error: { code: number; message: string; errors: GcsErrorDetail[] } } {
    const detail: GcsErrorDetail = { domain: 'global', reason: this.reason, message: this.message };
    if (this.location !== undefined) {
      detail.locationType = this.location.type;
      detail.location = this.location.name;
    }
    return { error: { code: this.status, message: this.message, errors: [detail] } };
  }
}

/** 400 with reason `invalid`: a parameter or body the service would not accept. */
export function invalid(message: string): GcsError {
  return new GcsError(400, 'invalid', message);
}

/** 400 with reason `required`: a parameter the service requires is missing. */
export function required(message: string): GcsError {
  return new GcsError(400, 'required', message);
}

/** 404 for a bucket that does not exist; the service's wording. */
export function noSuchBucket(): GcsError {
  return new GcsError(404, 'notFound', 'The specified bucket does not exist.');
}

/** 404 for an object that does not exist; the service's wording. */
export function noSuchObject(bucket: string, name: string): GcsError {
  return new GcsError(404, 'notFound', `No such object: ${bucket}/${name}`);
}

/** 412: a generation or metageneration precondition did not hold. */
export function conditionNotMet(): GcsError {
  return new GcsError(412, 'conditionNotMet', 'At least one of the pre-conditions you specified did not hold.', {
    location: { type: 'header', name: 'If-Match' },
  });
}

/** 304 on reads whose ifGenerationNotMatch / ifMetagenerationNotMatch failed; the body is empty. */
export function notModified(): GcsError {
  return new GcsError(304, 'notModified', 'Not Modified');
}

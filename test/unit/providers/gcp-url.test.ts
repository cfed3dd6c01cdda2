/**
 * The GCS provider's pure parts: destination URLs, the client settings the options select and error
 * classification. No server: gcp-gcs-server.test.ts runs the same code against the GCS test server.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiError } from '@google-cloud/storage';
import { classifyGcsError, toStoreError } from '../../../providers/gcp/errors.ts';
import { createStorageClient, parseGsUrl, resumableUploadsNeedAuth } from '../../../providers/gcp/index.ts';
import { isStoreError, StoreError } from '../../../providers/object-store.ts';
import type { StoreErrorKind } from '../../../providers/object-store.ts';
import type { StoreOptions } from '../../../providers/store-options.ts';

/** A made-up access token: what matters is that it never appears in a message. */
const TOKEN = 'ya29.a0-made-up-access-token-that-must-never-show-up';

/** Options as the CLI would build them; only the connection settings vary between cases. */
function options(extra: Partial<StoreOptions> = {}): StoreOptions {
  return {
    destination: 'gs://backups/pg',
    multipart: { partSizeBytes: 8 << 20, concurrency: 4 },
    connectTimeoutMs: 5_000,
    requestTimeoutMs: 60_000,
    ...extra,
  };
}

/** A JSON API error with the fields the SDK copies from a response body (status, reasons, message). */
function apiError(code: number, reason: string, message: string): ApiError {
  return Object.assign(new ApiError(message), { code, errors: [{ reason, message }] });
}

describe('parseGsUrl', () => {
  it('splits the bucket from the prefix', () => {
    assert.deepEqual(parseGsUrl('gs://bucket'), { bucket: 'bucket', keyPrefix: '' });
    assert.deepEqual(parseGsUrl('gs://bucket/'), { bucket: 'bucket', keyPrefix: '' });
    assert.deepEqual(parseGsUrl('gs://my-bucket_1/a//b/'), { bucket: 'my-bucket_1', keyPrefix: 'a/b/' });
    assert.deepEqual(parseGsUrl('gs://backups.example.com/pg'), { bucket: 'backups.example.com', keyPrefix: 'pg/' });
    assert.deepEqual(parseGsUrl(`gs://${'a'.repeat(63)}/x`), { bucket: 'a'.repeat(63), keyPrefix: 'x/' });
  });

  it('rejects what is not gs://bucket[/prefix] with a valid bucket name', () => {
    const invalid = [
      's3://bucket/x',
      'gs://',
      'gs:///prefix',
      'bucket/prefix',
      'gs://bucket/a/../b',
      'gs://bucket/./b',
      'gs://Upper/x',
      'gs://ab',
      `gs://${'a'.repeat(64)}`,
      `gs://${'a'.repeat(64)}.example.com`,
      'gs://a..b',
      'gs://-bucket',
      'gs://bucket-',
      'gs://user@bucket',
      'gs://bucket:443/x',
      'gs://bucket/x?y',
      'gs://bucket/x#y',
      'gs://bucket/back\\slash',
    ];
    for (const destination of invalid) {
      assert.throws(() => parseGsUrl(destination), (err: unknown) => isStoreError(err, 'invalid'), destination);
    }
  });
});

describe('createStorageClient', () => {
  it('uses Google unless an endpoint is given, and sends no credentials to an emulator', () => {
    const google = createStorageClient(options());
    assert.equal(google.apiEndpoint, 'https://storage.googleapis.com');
    assert.equal(google.customEndpoint, false);
    const emulator = createStorageClient(options({ endpointUrl: 'http://127.0.0.1:4443' }));
    assert.equal(emulator.apiEndpoint, 'http://127.0.0.1:4443');
    assert.equal(emulator.customEndpoint, true);
    assert.equal(emulator.useAuthWithCustomEndpoint, false);
    // Google's own hosts (Private Service Connect, regional endpoints) keep authentication.
    const psc = createStorageClient(options({ endpointUrl: 'https://storage-backups.p.googleapis.com' }));
    assert.equal(psc.useAuthWithCustomEndpoint, true);
  });

  it('turns the SDK retries off: the retry decorator owns them', () => {
    const client = createStorageClient(options());
    assert.equal(client.retryOptions.autoRetry, false);
    assert.equal(client.retryOptions.retryableErrorFn?.(apiError(503, 'backendError', 'x')), false);
  });

  it('adds credentials to resumable uploads only where the SDK would send none', () => {
    const keyFile = '/etc/cloudbarman/gcs.json';
    assert.equal(resumableUploadsNeedAuth(options({ gcp: { keyFile }, endpointUrl: 'http://127.0.0.1:4443' })), true);
    assert.equal(resumableUploadsNeedAuth(options({ gcp: { keyFile } })), false);
    assert.equal(resumableUploadsNeedAuth(options({ gcp: { keyFile }, endpointUrl: 'https://storage.europe-west1.rep.googleapis.com' })), false);
    assert.equal(resumableUploadsNeedAuth(options({ endpointUrl: 'http://127.0.0.1:4443' })), false);
  });
});

describe('classifyGcsError', () => {
  it('reads the status, GCS reasons, OAuth errors, Node codes and the SDK’s own codes', () => {
    const rows: Array<[string, unknown, StoreErrorKind]> = [
      ['object missing', apiError(404, 'notFound', 'No such object: b/k'), 'not-found'],
      ['bucket missing', apiError(404, 'notFound', 'The specified bucket does not exist.'), 'container-not-found'],
      ['bucket missing, download body as message', Object.assign(new Error('{"error":{"code":404,"message":"The specified bucket does not exist."}}'), { code: 404 }), 'container-not-found'],
      ['create lost', apiError(412, 'conditionNotMet', 'At least one of the pre-conditions you specified did not hold.'), 'already-exists'],
      ['create lost at the end of a resumable upload', Object.assign(new Error('Upload failed'), { name: 'Upload failed', code: 412 }), 'already-exists'],
      ['create lost when a resumable upload starts', { message: 'x', status: 412, response: { status: 412, data: {} } }, 'already-exists'],
      ['no credentials', apiError(401, 'required', 'Anonymous caller does not have storage access.'), 'access-denied'],
      ['not allowed', apiError(403, 'forbidden', 'does not have storage.objects.create access'), 'access-denied'],
      ['no ADC', new Error('Could not load the default credentials. Browse to https://cloud.google.com/docs/authentication'), 'access-denied'],
      ['token refused', { message: 'invalid_grant: Invalid JWT Signature.', status: 400, response: { status: 400, data: { error: 'invalid_grant' } } }, 'access-denied'],
      ['key file missing', Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT' }), 'invalid'],
      ['refused', Object.assign(new Error('request failed'), { code: 'ECONNREFUSED', type: 'system' }), 'unreachable'],
      ['no such host', Object.assign(new Error('request failed'), { code: 'ENOTFOUND' }), 'unreachable'],
      ['connect timeout', Object.assign(new Error('request failed'), { code: 'ETIMEDOUT' }), 'unreachable'],
      ['refused, wrapped by gaxios', { message: 'request failed', cause: { code: 'ECONNREFUSED' } }, 'unreachable'],
      ['idle timeout', Object.assign(new Error('request failed'), { code: 'ESOCKETTIMEDOUT' }), 'transient'],
      ['reset mid-body', Object.assign(new Error('aborted'), { code: 'ECONNRESET' }), 'transient'],
      ['damaged download', Object.assign(new Error('mismatch'), { code: 'CONTENT_DOWNLOAD_MISMATCH' }), 'transient'],
      ['damaged upload, deleted', Object.assign(new Error('mismatch'), { code: 'FILE_NO_UPLOAD' }), 'transient'],
      ['damaged upload, not deleted', Object.assign(new Error('mismatch'), { code: 'FILE_NO_UPLOAD_DELETE' }), 'failed'],
      ['rate limited', apiError(429, 'rateLimitExceeded', 'slow down'), 'transient'],
      ['request timeout', apiError(408, 'requestTimeout', 'too slow'), 'transient'],
      ['backend', apiError(503, 'backendError', 'try again'), 'transient'],
      ['5xx, unknown reason', apiError(502, 'somethingNew', 'x'), 'transient'],
      ['concurrent change', apiError(409, 'conflict', 'x'), 'transient'],
      ['bad request', apiError(400, 'invalid', 'Invalid argument.'), 'invalid'],
      ['4xx, unknown reason', apiError(418, 'somethingNew', 'x'), 'invalid'],
      ['our cancelled session', apiError(499, 'clientClosedRequest', 'x'), 'failed'],
      ['caller aborted', new DOMException('This operation was aborted', 'AbortError'), 'failed'],
      ['store closed', Object.assign(new Error('closed'), { code: 'ERR_STORE_CLOSED' }), 'failed'],
      ['not an error at all', 'boom', 'failed'],
    ];
    for (const [label, err, kind] of rows) assert.equal(classifyGcsError(err).kind, kind, label);
  });

  it('puts the code and status in the message, never the SDK message, and keeps the cause', () => {
    const cause = Object.assign(new Error(`invalid_grant: token ${TOKEN} refused`), {
      status: 400,
      response: { status: 400, data: { error: 'invalid_grant', error_description: `bad token ${TOKEN}` } },
    });
    const err = toStoreError(cause, 'gs://backups/pg/k');
    assert.equal(err.kind, 'access-denied');
    assert.equal(err.target, 'gs://backups/pg/k');
    assert.equal(err.cause, cause);
    assert.equal(err.retryable, false);
    assert.match(err.message, /gs:\/\/backups\/pg\/k \(invalid_grant, HTTP 400\)$/);
    assert.ok(!err.message.includes(TOKEN), err.message);
    const missing = toStoreError(apiError(404, 'notFound', 'No such object: backups/pg/k'), 'gs://backups/pg/k');
    assert.match(missing.message, /^no such object: gs:\/\/backups\/pg\/k \(notFound, HTTP 404\)$/);
  });

  it('passes a StoreError through unchanged', () => {
    const original = new StoreError('invalid', 'the body is not the declared 10 bytes');
    assert.equal(toStoreError(original, 'gs://b/k'), original);
  });
});

// How the S3 provider classifies what the SDK throws, row by row: every fault the fault proxy
// injects (and the shape the SDK gives it, as seen through test/servers/fault-proxy.ts) must come
// out retryable, and what a retry cannot fix must not.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { classifyS3Error, toStoreError } from '../../../providers/aws/errors.ts';
import type { StoreErrorKind } from '../../../providers/object-store.ts';

/** An error shaped like the SDK's service exceptions: a name (the S3 code) and the HTTP status. */
function service(name: string, status: number): Error {
  return Object.assign(new Error(`${name} from S3`), { name, $fault: status >= 500 ? 'server' : 'client', $metadata: { httpStatusCode: status } });
}

/** An error shaped like Node's network errors. */
function network(code: string, message = code): Error {
  return Object.assign(new Error(message), { code });
}

describe('classifyS3Error', () => {
  it('every injected fault is retryable', () => {
    const rows: Array<[string, unknown, StoreErrorKind]> = [
      ['500 InternalError', service('InternalError', 500), 'transient'],
      ['503 ServiceUnavailable', service('ServiceUnavailable', 503), 'transient'],
      ['503 SlowDown', service('SlowDown', 503), 'transient'],
      // A HEAD answer has no body, so the SDK knows only the status.
      ['500 on HEAD', service('Unknown', 500), 'transient'],
      ['503 on HEAD', service('Unknown', 503), 'transient'],
      ['reset while sending', network('EPIPE'), 'transient'],
      ['reset before the answer', network('ECONNRESET', 'socket hang up'), 'transient'],
      ['reset or cut mid-body', network('ECONNRESET', 'aborted'), 'transient'],
      ['body closed early', network('ERR_STREAM_PREMATURE_CLOSE', 'Premature close'), 'transient'],
      // The socket idle timeout: a stalled answer.
      ['stalled answer', Object.assign(new Error('the request socket timed out'), { name: 'TimeoutError' }), 'unreachable'],
      ['no connection', network('ECONNREFUSED'), 'unreachable'],
      ['unknown 5xx', service('WeirdError', 502), 'transient'],
      ['429', service('TooManyRequestsException', 429), 'transient'],
    ];
    for (const [label, err, kind] of rows) {
      assert.equal(classifyS3Error(err).kind, kind, label);
      assert.equal(toStoreError(err, 's3://b/k').retryable, true, label);
    }
  });

  it('what a retry cannot fix is final', () => {
    const rows: Array<[string, unknown, StoreErrorKind]> = [
      ['missing object', service('NoSuchKey', 404), 'not-found'],
      ['missing object on HEAD', service('NotFound', 404), 'not-found'],
      ['missing bucket', service('NoSuchBucket', 404), 'container-not-found'],
      ['create-if-absent lost', service('PreconditionFailed', 412), 'already-exists'],
      ['412 without a code', service('Unknown', 412), 'already-exists'],
      ['bad credentials', service('InvalidAccessKeyId', 403), 'access-denied'],
      ['bad request', service('InvalidArgument', 400), 'invalid'],
      // Our own abort (the caller gave up) must not be retried.
      ['aborted by the caller', Object.assign(new Error('Request aborted'), { name: 'AbortError' }), 'failed'],
    ];
    for (const [label, err, kind] of rows) {
      assert.equal(classifyS3Error(err).kind, kind, label);
      assert.equal(toStoreError(err, 's3://b/k').retryable, false, label);
    }
  });

  it('the message names the target, the code and the status, never the SDK text', () => {
    const err = toStoreError(service('SlowDown', 503), 's3://bucket/pg1/wals/x');
    assert.equal(err.message, 'S3 answered with a temporary error; safe to retry: s3://bucket/pg1/wals/x (SlowDown, HTTP 503)');
    assert.equal(err.target, 's3://bucket/pg1/wals/x');
  });
});

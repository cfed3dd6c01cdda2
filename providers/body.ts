/**
 * Body plumbing every cloud provider shares: a put body checked against its declared length, whose
 * own failure is told apart from the store's, and a get body whose errors arrive as StoreErrors.
 * Kept apart from the SDKs so that no provider loads another's.
 */
import { PassThrough, pipeline, Transform } from 'node:stream';
import type { Readable } from 'node:stream';
import { StoreError } from './object-store.ts';

/**
 * The caller's body as sent: checked against the declared length when there is one. `failure`
 * is the first error the body raised; it is the caller's (a file that vanished, say), so put
 * rethrows it as is rather than as a store error.
 */
export function sendableBody(source: Readable, length: number | undefined, target: string): { stream: Readable; failure: () => unknown } {
  const stream = length === undefined ? source : pipeline(source, exactLength(length, target), () => undefined);
  let failure: unknown;
  stream.once('error', (err: unknown) => {
    failure ??= err;
  });
  return { stream, failure: () => failure };
}

/** Passes a body through, failing when it is longer or shorter than the length sent to the store. */
export function exactLength(expected: number, target: string): Transform {
  let seen = 0;
  const mismatch = (): StoreError =>
    new StoreError('invalid', `the body for ${target} is not the declared ${expected} bytes`, { target });
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.length;
      callback(seen > expected ? mismatch() : null, seen > expected ? undefined : chunk);
    },
    flush(callback) {
      callback(seen === expected ? null : mismatch());
    },
  });
}

/**
 * Re-emits a response body whose errors are StoreErrors (toError classifies them), so that a reset
 * mid-body reads as retryable. A caller that stops reading early destroys the result, which
 * releases the socket with it.
 */
export function mapBodyErrors(source: Readable, toError: (err: unknown) => StoreError): Readable {
  const out = new PassThrough();
  source.once('error', (err: unknown) => out.destroy(toError(err)));
  out.once('close', () => source.destroy());
  source.pipe(out);
  return out;
}

/**
 * Body plumbing every cloud provider shares: a put body checked against its declared length, whose
 * own failure is told apart from the store's, and a get body whose errors arrive as StoreErrors.
 * Kept apart from the SDKs so that no provider loads another's.
 */
import { PassThrough, pipeline, Transform } from 'node:stream';
import type { Readable } from 'node:stream';
import { StoreError } from './object-store.ts';
import type { GetOptions } from './object-store.ts';

/** Rejects a put's contentLength that is not a byte count. */
export function assertContentLength(length: number | undefined, target: string): void {
  if (length !== undefined && (!Number.isSafeInteger(length) || length < 0)) {
    throw new StoreError('invalid', `contentLength ${length} for ${target} is not a byte count`, { target });
  }
}

/** Rejects a get's range that is not a start and an optional end at or after it, in whole bytes. */
export function assertValidRange(range: GetOptions['range'], target: string): void {
  if (range === undefined) return;
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || start < 0 || (end !== undefined && (!Number.isSafeInteger(end) || end < start))) {
    throw new StoreError('invalid', `invalid range ${JSON.stringify(range)} for ${target}`, { target });
  }
}

/**
 * Sends a factory body through `send`: the stream is checked against the declared length; an
 * error the body raised itself is rethrown as is (it is the caller's, say a file that vanished),
 * any other goes through toError; the stream is destroyed afterwards, whatever happened.
 */
export async function sendStream(
  source: Readable,
  length: number | undefined,
  target: string,
  toError: (err: unknown, target: string) => StoreError,
  send: (stream: Readable) => Promise<void>,
): Promise<void> {
  const { stream, failure } = sendableBody(source, length, target);
  try {
    await send(stream);
  } catch (err) {
    throw failure() ?? toError(err, target);
  } finally {
    stream.destroy();
  }
}

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

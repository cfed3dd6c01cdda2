/** How an interrupted backup reports itself: the abort reason when it is ours, a generic failure otherwise. */
import { CloudbarmanError } from '../errors.ts';

/** The failure to report for an error: a CloudbarmanError as it is, anything else wrapped. */
export function asFailure(err: unknown): CloudbarmanError {
  if (err instanceof CloudbarmanError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new CloudbarmanError('failed', `backup failed: ${message}`, { hint: 'run with -v for the cause', cause: err });
}

/** Throws the signal's reason (the CLI aborts with a CloudbarmanError naming the signal) once it is aborted. */
export function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw asFailure(signal.reason);
}

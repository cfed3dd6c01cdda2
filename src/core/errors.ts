/**
 * The error every command reports to a person: what failed, on which object, and a hint.
 * The `kind` decides the exit code (src/cli/exit-codes.ts); only the CLI entry point exits.
 */

/** Why a command failed, from the operator's point of view. */
export type FailureKind =
  | 'failed' // the operation failed (exit 1)
  | 'not-found' // what was asked for is really absent, e.g. a WAL segment (exit 1)
  | 'unreachable' // storage or database could not be reached (exit 2)
  | 'bad-input' // bad arguments or config (exit 3)
  | 'integrity' // checksum mismatch, conflicting archived content (exit 4)
  | 'locked' // another run holds the lock (exit 5)
  | 'abort-recovery'; // wal-restore in targeted recovery could not read the store: stop recovery (exit > 125)

export class CloudbarmanError extends Error {
  override readonly name = 'CloudbarmanError';
  readonly kind: FailureKind;
  /** What the operator can do about it; one sentence. */
  readonly hint: string | undefined;
  /**
   * The command already printed its result document, which says what failed (check, cron): the
   * CLI then prints no second JSON document, only the line on stderr, and exits with the code.
   */
  readonly resultPrinted: boolean;

  constructor(kind: FailureKind, message: string, options: { hint?: string; cause?: unknown; resultPrinted?: boolean } = {}) {
    super(message, { cause: options.cause });
    this.kind = kind;
    this.hint = options.hint;
    this.resultPrinted = options.resultPrinted ?? false;
  }
}

/** Shorthand for a bad-input error (exit 3). */
export function badInput(message: string, hint?: string): CloudbarmanError {
  return new CloudbarmanError('bad-input', message, hint === undefined ? {} : { hint });
}

/**
 * The exit-code table: the one place that maps a failure to a process exit code.
 * Every code stays within 1..125 so that PostgreSQL treats a failed archive_command or
 * restore_command as "try again later" — except ABORT_RECOVERY, which must stop recovery.
 */
import type { FailureKind } from '../core/errors.ts';

export const EXIT_CODES = {
  ok: 0,
  failed: 1,
  'not-found': 1,
  unreachable: 2,
  'bad-input': 3,
  integrity: 4,
  locked: 5,
  // Above 125: PostgreSQL aborts recovery instead of ending it early at the wrong point.
  'abort-recovery': 128,
} as const satisfies Record<FailureKind | 'ok', number>;

/** One row per code, for `--help` and the README. */
export const EXIT_CODE_DOC: ReadonlyArray<readonly [number, string]> = [
  [0, 'success'],
  [1, 'the operation failed (wal-restore: the segment does not exist)'],
  [2, 'storage or database unreachable'],
  [3, 'bad input or configuration'],
  [4, 'integrity error: checksum mismatch, or different content already archived under that name'],
  [5, 'lock held by another run'],
  [128, 'wal-restore only, in targeted recovery (recovery.signal): the store could not be read, so PostgreSQL must abort recovery rather than stop early'],
];

/** The exit code for a failure kind. */
export function exitCodeFor(kind: FailureKind): number {
  return EXIT_CODES[kind];
}

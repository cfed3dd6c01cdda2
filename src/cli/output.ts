/**
 * What a person sees: log lines on stderr, one JSON document on stdout with --format json,
 * and errors as one line (what failed, where) plus a hint, with causes only under -v.
 */
import { CloudbarmanError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { exitCodeFor } from './exit-codes.ts';

export type OutputFormat = 'text' | 'json';
export type Verbosity = 'quiet' | 'normal' | 'verbose';

/** Output settings from the global flags. */
export interface Output {
  format: OutputFormat;
  verbosity: Verbosity;
  command: string;
  log: Logger;
  /** Prints the command's result: the JSON document, or text lines. */
  result(json: unknown, text: string | string[]): void;
}

/** Builds the output for a command; stderr and stdout are injectable for tests. */
export function createOutput(command: string, format: OutputFormat, verbosity: Verbosity,
  err: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
  out: (text: string) => void = (t) => process.stdout.write(t)): Output {
  const prefix = `cloudbarman ${command}`;
  const line = (level: string) => (message: string) => err(`${prefix}: ${level}: ${message}`);
  const log: Logger = {
    debug: verbosity === 'verbose' ? line('debug') : () => {},
    info: verbosity === 'quiet' ? () => {} : line('info'),
    notice: verbosity === 'quiet' ? () => {} : line('notice'),
    warn: line('warning'),
  };
  return {
    format, verbosity, command, log,
    result(json, text) {
      if (format === 'json') out(`${JSON.stringify(json, null, 2)}\n`);
      else {
        const lines = Array.isArray(text) ? text : [text];
        if (lines.length > 0 && !(lines.length === 1 && lines[0] === '')) out(`${lines.join('\n')}\n`);
      }
    },
  };
}

/** Reports a failure and returns the exit code. Only user-facing text: no stack unless -v. */
export function reportFailure(output: Pick<Output, 'format' | 'verbosity' | 'command'>, error: unknown,
  err: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
  out: (text: string) => void = (t) => process.stdout.write(t)): number {
  const failure = error instanceof CloudbarmanError ? error
    : new CloudbarmanError('failed', error instanceof Error ? error.message : String(error), { hint: 'this is unexpected; run with -v and report it', cause: error });
  const code = exitCodeFor(failure.kind);
  err(`cloudbarman ${output.command}: error: ${failure.message}`);
  if (failure.hint) err(`  hint: ${failure.hint}`);
  if (output.verbosity === 'verbose') {
    for (let cause = failure.cause, depth = 0; cause !== undefined && depth < 8; depth++) {
      const c = cause as { message?: string; name?: string; code?: string; cause?: unknown; stack?: string };
      err(`  cause: ${c.name ?? 'Error'}${c.code ? ` [${c.code}]` : ''}: ${c.message ?? String(cause)}`);
      cause = c.cause;
    }
    if (!(error instanceof CloudbarmanError) && error instanceof Error && error.stack) err(error.stack);
  }
  if (output.format === 'json' && !failure.resultPrinted) {
    out(`${JSON.stringify({ error: { kind: failure.kind, message: failure.message, hint: failure.hint ?? null, exit_code: code } }, null, 2)}\n`);
  }
  return code;
}

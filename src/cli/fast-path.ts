/**
 * The WAL fast path: `wal-upload` and `wal-restore` without commander.
 *
 * PostgreSQL starts one process per WAL file, and most of those calls (a file an earlier batch
 * archived, a segment the prefetcher already downloaded) do almost nothing, so loading and
 * building the commander program was most of their cost. This module reads the two commands'
 * arguments itself and calls the same command code the program calls.
 *
 * It only takes the command lines whose meaning is beyond doubt: the global options, the command's
 * config flags (`--name value` or `--name=value`), and exactly the positional arguments the command
 * takes. Anything else (help, version, an unknown or combined flag, a value that starts with a
 * dash, a missing or extra argument, `--`) returns undefined and goes to commander, so that help
 * text, error messages and exit codes stay exactly commander's.
 */
import { configFlags, flagAttributeName } from './config-flags.ts';

/** The fast path's commands and how many positional arguments each takes. */
const COMMANDS: Readonly<Record<string, number>> = { 'wal-upload': 2, 'wal-restore': 3 };

/** What the fast path understood from argv. */
export interface FastCall {
  command: 'wal-upload' | 'wal-restore';
  /** The positional arguments, in order. */
  args: string[];
  /** Global and command options, keyed as commander's optsWithGlobals() keys them (format defaults to text). */
  opts: Record<string, string | boolean>;
}

/**
 * Parses argv (without node and script) when it is a plain wal-upload or wal-restore call;
 * undefined for anything commander must handle. Pure, for tests.
 */
export function parseFastCall(argv: readonly string[]): FastCall | undefined {
  let command: FastCall['command'] | undefined;
  const positional: string[] = [];
  const opts: Record<string, string | boolean> = { format: 'text' };
  let flags: Map<string, string> | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '-v' || arg === '--verbose') { opts['verbose'] = true; continue; }
    if (arg === '-q' || arg === '--quiet') { opts['quiet'] = true; continue; }
    if (arg.startsWith('-')) {
      const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
      const name = eq > 0 ? arg.slice(0, eq) : arg;
      let key: string | undefined;
      if (name === '-c' || name === '--config') key = 'config';
      else if (name === '--format') key = 'format';
      else if (command !== undefined) key = (flags ??= commandFlags()).get(name);
      // Help, version, -cFILE, -vq, --, a flag of no option: commander's to explain.
      if (key === undefined || (eq > 0 && name === '-c')) return undefined;
      const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
      // A missing value, or one commander might read as an option: let commander decide.
      if (value === undefined || (eq < 0 && value.startsWith('-'))) return undefined;
      if (key === 'format' && value !== 'text' && value !== 'json') return undefined;
      opts[key] = value;
      continue;
    }
    if (command === undefined) {
      if (!Object.hasOwn(COMMANDS, arg)) return undefined;
      command = arg as FastCall['command'];
      continue;
    }
    positional.push(arg);
  }
  if (command === undefined || positional.length !== COMMANDS[command]) return undefined;
  return { command, args: positional, opts };
}

/** Runs a fast-path call and returns its exit code; undefined when argv is not one (then commander runs). */
export async function runFastPath(argv: readonly string[]): Promise<number | undefined> {
  const call = parseFastCall(argv);
  if (call === undefined) return undefined;
  // As program.ts's run wrapper does: output from the global flags, config warnings to the command's log.
  const [{ createOutput, reportFailure }, { setContextLogger }] = await Promise.all([import('./output.ts'), import('./context.ts')]);
  const format = call.opts['format'] === 'json' ? 'json' : 'text';
  const output = createOutput(call.command, format, call.opts['verbose'] === true ? 'verbose' : call.opts['quiet'] === true ? 'quiet' : 'normal');
  setContextLogger(output.log);
  try {
    if (call.command === 'wal-upload') {
      const { walUpload } = await import('./commands/wal-upload.ts');
      await walUpload(output, call.args[0] ?? '', call.args[1] ?? '', call.opts);
    } else {
      const { walRestore } = await import('./commands/wal-restore.ts');
      await walRestore(output, call.args[0] ?? '', call.args[1] ?? '', call.args[2] ?? '', call.opts);
    }
    return 0;
  } catch (err) {
    return reportFailure(output, err);
  }
}

/** The config flags both commands take (addConfigFlags without renames), by flag, with their opts() key. */
function commandFlags(): Map<string, string> {
  return new Map(configFlags({}).map(({ flag }) => [flag, flagAttributeName(flag)]));
}

/**
 * The commander program: global options, one registration per command, and the mapping of
 * every outcome to an exit code. Commands import their core code lazily, so a WAL call loads
 * only what it needs.
 */
import { Command, CommanderError, Option } from 'commander';
import { CloudbarmanError } from '../core/errors.ts';
import { EXIT_CODE_DOC } from './exit-codes.ts';
import { setContextLogger } from './context.ts';
import { createOutput, reportFailure, type Output, type OutputFormat, type Verbosity } from './output.ts';
import { registerWalUpload } from './commands/wal-upload.ts';
import { registerWalRestore } from './commands/wal-restore.ts';
import { registerReceiveWal } from './commands/receive-wal.ts';
import { registerBackup } from './commands/backup.ts';
import { registerList } from './commands/list.ts';
import { registerShow } from './commands/show.ts';
import { registerDelete } from './commands/delete.ts';
import { registerKeep } from './commands/keep.ts';
import { registerCheck } from './commands/check.ts';
import { registerCron } from './commands/cron.ts';
import { registerDaemon } from './commands/daemon.ts';
import { registerRestore } from './commands/restore.ts';
import { registerVerify } from './commands/verify.ts';

declare const CLOUDBARMAN_VERSION: string | undefined;

/** A command's work: gets the output and returns nothing or throws a CloudbarmanError. */
export type CommandAction = (output: Output, ...args: unknown[]) => Promise<void>;

/** Global options every command sees. */
export interface GlobalOptions {
  config?: string;
  format: OutputFormat;
  verbose?: boolean;
  quiet?: boolean;
}

/** Runs the CLI on argv (without node and script) and returns the exit code. */
export async function runCli(argv: string[]): Promise<number> {
  let exitCode = 0;
  const program = new Command('cloudbarman')
    .description('Disaster recovery for PostgreSQL on object storage: base backups, WAL archiving, point-in-time restore and retention, to S3, Azure Blob Storage, Google Cloud Storage or a local directory.')
    .version(typeof CLOUDBARMAN_VERSION === 'string' ? CLOUDBARMAN_VERSION : '0.1.0', '-V, --version')
    .option('-c, --config <file>', 'config file (env CLOUDBARMAN_CONFIG; default /etc/cloudbarman.conf when it exists)')
    .addOption(new Option('--format <format>', 'output format').choices(['text', 'json']).default('text'))
    .option('-v, --verbose', 'more detail, including the causes of errors')
    .option('-q, --quiet', 'only warnings and errors')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s), writeOut: (s) => process.stdout.write(s) })
    .addHelpText('after', `\nExit codes:\n${EXIT_CODE_DOC.map(([c, d]) => `  ${String(c).padStart(3)}  ${d}`).join('\n')}\n`);

  /** Wraps a command's action: output setup, error reporting, exit code. */
  const run = (name: string, action: CommandAction) => async (...args: unknown[]) => {
    const command = args[args.length - 1] as Command;
    const globals = command.optsWithGlobals<GlobalOptions & Record<string, unknown>>();
    const verbosity: Verbosity = globals.verbose ? 'verbose' : globals.quiet ? 'quiet' : 'normal';
    const output = createOutput(name, globals.format, verbosity);
    setContextLogger(output.log);
    try {
      await action(output, ...args.slice(0, -1));
    } catch (err) {
      exitCode = reportFailure(output, err);
    }
  };

  // Only the command being run is built: archive_command pays for one command's flags, not all.
  const chosen = commandNameIn(argv);
  for (const [name, register] of COMMANDS) {
    if (chosen === undefined || chosen === name) register(program, run);
  }

  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      if (err.code === 'commander.executeSubCommandAsync') return 1;
      return 3; // bad usage: commander already printed what was wrong
    }
    return reportFailure({ format: 'text', verbosity: 'normal', command: 'cli' }, err instanceof CloudbarmanError ? err : err);
  }
  return exitCode;
}

/** Every command, in the order --help lists them. */
const COMMANDS: ReadonlyArray<readonly [string, Register]> = [
  ['backup', registerBackup],
  ['list', registerList],
  ['show', registerShow],
  ['delete', registerDelete],
  ['keep', registerKeep],
  ['restore', registerRestore],
  ['wal-upload', registerWalUpload],
  ['wal-restore', registerWalRestore],
  ['receive-wal', registerReceiveWal],
  ['check', registerCheck],
  ['verify', registerVerify],
  ['cron', registerCron],
  ['daemon', registerDaemon],
];

/** The command named in argv, skipping global options and their values; undefined when none is. */
export function commandNameIn(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '-c' || arg === '--config' || arg === '--format') { i++; continue; }
    if (arg.startsWith('-')) continue;
    return COMMANDS.some(([name]) => name === arg) ? arg : undefined;
  }
  return undefined;
}

/** How a command file registers itself: `run(name, action)` wraps its action. */
export type Register = (program: Command, run: (name: string, action: CommandAction) => (...args: unknown[]) => Promise<void>) => void;

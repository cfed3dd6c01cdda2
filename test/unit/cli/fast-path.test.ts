import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Command, Option } from 'commander';
import { parseFastCall } from '../../../src/cli/fast-path.ts';
import { registerWalUpload } from '../../../src/cli/commands/wal-upload.ts';
import { registerWalRestore } from '../../../src/cli/commands/wal-restore.ts';
import type { CommandAction } from '../../../src/cli/program.ts';

/**
 * What commander makes of argv with the real wal-upload/wal-restore registrations and the
 * program's global options: the positional arguments and optsWithGlobals(), or 'error'.
 */
async function viaCommander(argv: string[]): Promise<{ command: string; args: string[]; opts: Record<string, unknown> } | 'error'> {
  let seen: { command: string; args: string[]; opts: Record<string, unknown> } | undefined;
  const program = new Command('cloudbarman')
    .option('-c, --config <file>', 'config file')
    .addOption(new Option('--format <format>', 'output format').choices(['text', 'json']).default('text'))
    .option('-v, --verbose', 'more detail')
    .option('-q, --quiet', 'only warnings and errors')
    .exitOverride()
    .configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  const run = (name: string, _action: CommandAction) => async (...args: unknown[]) => {
    const command = args[args.length - 1] as Command;
    seen = { command: name, args: args.slice(0, -2) as string[], opts: { ...command.optsWithGlobals() } };
  };
  registerWalUpload(program, run);
  registerWalRestore(program, run);
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch {
    return 'error';
  }
  return seen ?? 'error';
}

test('takes plain WAL calls, and reads them exactly as commander does', async () => {
  const calls = [
    ['wal-upload', 'pg1', 'pg_wal/000000010000000000000001'],
    ['-c', '/etc/cb.conf', 'wal-upload', 'pg1', 'pg_wal/000000010000000000000001'],
    ['--config=/etc/cb.conf', '--format', 'json', '-v', 'wal-upload', 'pg1', 'x'],
    ['wal-upload', '-q', 'pg1', 'x', '--destination', 's3://b/p', '--endpoint-url=http://127.0.0.1:9000'],
    ['wal-upload', 'pg1', '--destination', 'file:///a', 'x', '--destination', 'file:///b', '-c', 'c.conf'],
    ['--verbose', '--quiet', 'wal-restore', 'pg1', '000000010000000000000001', 'pg_wal/RECOVERYXLOG', '--jobs', '3'],
    ['wal-restore', 'pg1', '00000002.history', '', '--restore-prefetch=0', '--format=text'],
    ['-c', 'wal-upload', 'wal-upload', 'pg1', 'x'],
    ['wal-upload', 'pg1', 'x', '--compression=-weird'],
  ];
  for (const argv of calls) {
    const fast = parseFastCall(argv);
    const reference = await viaCommander(argv);
    assert.notEqual(fast, undefined, `fast path declined ${argv.join(' ')}`);
    assert.notEqual(reference, 'error', `commander refused ${argv.join(' ')}`);
    if (fast === undefined || reference === 'error') continue;
    assert.deepEqual({ command: fast.command, args: fast.args, opts: fast.opts }, reference, argv.join(' '));
  }
});

test('leaves to commander whatever it must explain or might read differently', () => {
  const declined = [
    [],
    ['--help'],
    ['-V'],
    ['wal-upload', '--help'],
    ['wal-upload', '-h', 'pg1', 'x'],
    ['help', 'wal-upload'],
    ['list', 'pg1'],
    ['backup', 'pg1'],
    ['wal-upload', 'pg1'],
    ['wal-upload', 'pg1', 'x', 'extra'],
    ['wal-restore', 'pg1', 'x'],
    ['-vq', 'wal-upload', 'pg1', 'x'],
    ['-cfile.conf', 'wal-upload', 'pg1', 'x'],
    ['--format', 'yaml', 'wal-upload', 'pg1', 'x'],
    ['wal-upload', 'pg1', 'x', '--no-such-flag', 'v'],
    ['wal-upload', 'pg1', 'x', '--destination'],
    ['wal-upload', 'pg1', 'x', '--destination', '-v'],
    ['--destination', 'file:///a', 'wal-upload', 'pg1', 'x'],
    ['wal-upload', '--', 'pg1', 'x'],
    ['wal-upload', 'pg1', '-'],
    ['wal-restore', 'pg1', 'x', 'y', '--prefetch-worker'],
  ];
  for (const argv of declined) assert.equal(parseFastCall(argv), undefined, argv.join(' '));
});

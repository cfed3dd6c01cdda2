import { test } from 'node:test';
import assert from 'node:assert/strict';
import { commandNameIn } from '../../../src/cli/program.ts';

test('finds the command after global options and their values', () => {
  assert.equal(commandNameIn(['wal-upload', 'pg1', 'pg_wal/x']), 'wal-upload');
  assert.equal(commandNameIn(['-c', '/etc/x.conf', '--format', 'json', '-v', 'list', 'pg1']), 'list');
  assert.equal(commandNameIn(['--config=/etc/x.conf', 'show', 'pg1', 'latest']), 'show');
  // A config file named like a command is a value, not the command.
  assert.equal(commandNameIn(['-c', 'backup', 'restore', 'pg1']), 'restore');
});

test('no command, or an unknown one, builds every command (for help and usage errors)', () => {
  assert.equal(commandNameIn([]), undefined);
  assert.equal(commandNameIn(['--help']), undefined);
  assert.equal(commandNameIn(['no-such-command']), undefined);
});

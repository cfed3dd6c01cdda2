// Tests src/cli/config-flags.ts. It lives here rather than in test/unit/cli/ because it is the
// command-line half of the config layer and is tested together with loadServerConfig.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Command } from 'commander';
import { BACKUP_FLAG_RENAMES, CONFIG_FLAGS_HELP_GROUP, addConfigFlags, configFlagsFrom } from '../../../src/cli/config-flags.ts';
import type { FlagRenames } from '../../../src/cli/config-flags.ts';
import { loadServerConfig } from '../../../src/config/load.ts';
import { OPTIONS, flagName } from '../../../src/config/options.ts';

/** A throwaway command with the config flags, parsed from `args`; returns the flags record. */
function parse(args: string[], renames?: FlagRenames): Record<string, string | boolean | undefined> {
  const cmd = addConfigFlags(new Command('backup').argument('<server>').exitOverride(), renames);
  cmd.parse(['pg1', ...args], { from: 'user' });
  return configFlagsFrom(cmd.opts(), renames);
}

describe('addConfigFlags', () => {
  it('registers one flag per option that has one, and none for config-only options', () => {
    const cmd = addConfigFlags(new Command('x'));
    const longs = cmd.options.map((o) => o.long);
    const expected = OPTIONS.filter((o) => o.flag !== false).map((o) => flagName(o.name));
    assert.deepEqual(longs, expected);
    assert.ok(!longs.includes('--description'));
    assert.ok(!longs.includes('--backup-schedule'));
    assert.ok(longs.includes('--endpoint-url'));
    assert.ok(longs.includes('--jobs'));
  });

  it('takes a value for every flag, <on|off> for booleans', () => {
    const cmd = addConfigFlags(new Command('x'));
    for (const option of cmd.options) assert.ok(option.required, `${option.long} takes a value`);
    const style = cmd.options.find((o) => o.long === '--s3-force-path-style');
    assert.match(style?.flags ?? '', /<on\|off>$/);
  });

  it('sets no commander defaults, which would beat the environment and the file', () => {
    const cmd = addConfigFlags(new Command('x'));
    for (const option of cmd.options) assert.equal(option.defaultValue, undefined, option.long);
    assert.deepEqual(parse([]), {});
  });

  it('lists the flags under "Config overrides" with their env variable and config key', () => {
    const cmd = addConfigFlags(new Command('backup').option('--name <name>', 'backup name'));
    const help = cmd.helpInformation();
    const groupAt = help.indexOf(CONFIG_FLAGS_HELP_GROUP);
    assert.ok(groupAt > 0, help);
    assert.ok(help.indexOf('--name') < groupAt, '--name stays in the command\'s own options');
    assert.match(help, /--endpoint-url <value>\s+custom endpoint .*\(env\s+CLOUDBARMAN_ENDPOINT_URL, config endpoint_url\)/s);
    assert.match(help, /--compression <none\|gzip\|zstd>/);
    assert.match(help, /default zstd/);
  });
});

describe('configFlagsFrom', () => {
  it('maps parsed flags back to option names', () => {
    assert.deepEqual(parse(['--endpoint-url', 'http://h:9000', '--s3-force-path-style', 'on', '--jobs', '4', '--method', 'postgres', '--snapshot-gcp-project', 'p']), {
      endpoint_url: 'http://h:9000',
      s3_force_path_style: 'on',
      parallel_jobs: '4',
      backup_method: 'postgres',
      snapshot_gcp_project: 'p',
    });
  });

  it('ignores keys that are not config flags', () => {
    assert.deepEqual(configFlagsFrom({ name: 'nightly', format: 'json', endpointUrl: 'http://x' }), { endpoint_url: 'http://x' });
  });

  it("gives backup's --compression to backup_compression, and WAL compression no flag there", () => {
    const flags = parse(['--compression', 'lz4'], BACKUP_FLAG_RENAMES);
    assert.deepEqual(flags, { backup_compression: 'lz4' });
    const cmd = addConfigFlags(new Command('backup'), BACKUP_FLAG_RENAMES);
    assert.equal(cmd.options.filter((o) => o.long === '--compression').length, 1);
    assert.ok(!cmd.options.some((o) => o.long === '--backup-compression'));
  });

  it('lets messages name the renamed flag the user typed', async () => {
    const flags = parse(['--destination', 's3://b/p', '--compression', 'lz5'], BACKUP_FLAG_RENAMES);
    await assert.rejects(
      loadServerConfig('pg1', { defaultConfigPath: '/nonexistent/cloudbarman.conf', env: {}, flags, flagRenames: BACKUP_FLAG_RENAMES }),
      { kind: 'bad-input', message: 'option "backup_compression" (--compression): "lz5" is not one of none, gzip, lz4, zstd' },
    );
  });

  it('feeds loadServerConfig, which validates the values', async () => {
    const flags = parse(['--destination', 's3://b/p', '--jobs', '5', '--compression', 'gzip']);
    const cfg = await loadServerConfig('pg1', { defaultConfigPath: '/nonexistent/cloudbarman.conf', env: {}, flags });
    assert.equal(cfg.parallelJobs, 5);
    assert.equal(cfg.compression, 'gzip');
    assert.equal(cfg.origins.parallel_jobs, 'flag');
    await assert.rejects(
      loadServerConfig('pg1', { defaultConfigPath: '/nonexistent/cloudbarman.conf', env: {}, flags: parse(['--destination', 's3://b/p', '--jobs', 'lots']) }),
      { kind: 'bad-input', message: 'option "parallel_jobs" (--jobs): "lots" is not a whole number' },
    );
  });
});

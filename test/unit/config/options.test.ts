import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CONFIG_FIELDS, parseValue } from '../../../src/config/load.ts';
import { ENV_PREFIX, NON_OPTION_ENV_VARS, OPTIONS, envName, findOption, flagName } from '../../../src/config/options.ts';

describe('the option table', () => {
  it('names every option once, in snake_case', () => {
    const names = OPTIONS.map((o) => o.name);
    assert.equal(new Set(names).size, names.length);
    for (const name of names) assert.match(name, /^[a-z][a-z0-9]*(_[a-z0-9]+)*$/, name);
  });

  it('has every option the design names, Barman spellings included', () => {
    const required = [
      'description', 'conninfo', 'streaming_conninfo', 'pgdata', 'provider', 'destination', 'backup_method',
      'compression', 'backup_compression', 'retention_policy', 'wal_retention_policy', 'retention_policy_mode',
      'minimum_redundancy', 'slot_name', 'streaming_archiver', 'streaming_archiver_name', 'streaming_backup_name',
      'backup_schedule', 'snapshot_provider', 'snapshot_instance', 'snapshot_disks', 'snapshot_zone',
      'snapshot_gcp_project', 'aws_region', 'aws_profile', 'azure_subscription_id', 'azure_resource_group',
      'endpoint_url', 's3_force_path_style', 'parallel_jobs', 'part_size', 'upload_concurrency', 'retry_timeout',
      'connect_timeout', 'request_timeout', 'wal_archive_timeout',
    ];
    const missing = required.filter((name) => findOption(name) === undefined);
    assert.deepEqual(missing, []);
  });

  it('has the documented defaults and value sets', () => {
    const expected: Record<string, string | undefined> = {
      backup_method: 'local',
      compression: 'zstd',
      backup_compression: undefined, // derived from compression
      s3_force_path_style: undefined, // derived from endpoint_url
      wal_retention_policy: 'main',
      retention_policy_mode: 'auto',
      minimum_redundancy: '0',
      streaming_archiver: 'off',
      parallel_jobs: '2',
      part_size: '32MiB',
      upload_concurrency: '4',
      retry_timeout: '30',
      connect_timeout: '10',
      request_timeout: '120',
      wal_archive_timeout: '300',
    };
    for (const [name, value] of Object.entries(expected)) assert.equal(findOption(name)?.default, value, name);
    assert.deepEqual(findOption('provider')?.values, ['aws', 'azure', 'gcp', 'local']);
    assert.deepEqual(findOption('snapshot_provider')?.values, ['aws', 'azure', 'gcp', 'local']);
    assert.deepEqual(findOption('compression')?.values, ['none', 'gzip', 'zstd']);
    assert.deepEqual(findOption('backup_compression')?.values, ['none', 'gzip', 'lz4', 'zstd']);
    assert.deepEqual(findOption('backup_method')?.values, ['local', 'postgres', 'snapshot']);
    assert.match(findOption('compression')?.description ?? '', /WAL compression.*Barman/);
  });

  it('parses every default with the option\'s own parser', () => {
    for (const spec of OPTIONS) {
      if (spec.default === undefined) continue;
      const parsed = parseValue(spec, spec.default);
      assert.ok(parsed.ok, `${spec.name} default ${spec.default}: ${parsed.ok ? '' : parsed.problem}`);
    }
  });

  it('gives enums their values and urls their schemes', () => {
    for (const spec of OPTIONS) {
      if (spec.type === 'enum') assert.ok((spec.values?.length ?? 0) > 0, spec.name);
      if (spec.type === 'url') assert.ok((spec.schemes?.length ?? 0) > 0, spec.name);
      assert.ok(spec.description.length > 0, spec.name);
    }
  });

  it('marks connection strings secret', () => {
    assert.equal(findOption('conninfo')?.secret, true);
    assert.equal(findOption('streaming_conninfo')?.secret, true);
    assert.equal(findOption('destination')?.secret, undefined);
  });

  it('maps every option to a ServerConfig field, one field each', () => {
    assert.deepEqual(Object.keys(CONFIG_FIELDS).sort(), OPTIONS.map((o) => o.name).sort());
    const fields = Object.values(CONFIG_FIELDS);
    assert.equal(new Set(fields).size, fields.length);
  });
});

describe('flagName and envName', () => {
  it('derive the flag and the variable from the name', () => {
    assert.equal(flagName('endpoint_url'), '--endpoint-url');
    assert.equal(flagName('s3_force_path_style'), '--s3-force-path-style');
    assert.equal(envName('endpoint_url'), 'CLOUDBARMAN_ENDPOINT_URL');
    assert.equal(envName('snapshot_gcp_project'), 'CLOUDBARMAN_SNAPSHOT_GCP_PROJECT');
  });

  it('use the contract spellings --jobs and --method', () => {
    assert.equal(flagName('parallel_jobs'), '--jobs');
    assert.equal(flagName('backup_method'), '--method');
    assert.equal(envName('parallel_jobs'), 'CLOUDBARMAN_PARALLEL_JOBS');
  });

  it('are unique across the table, and no option shadows CLOUDBARMAN_CONFIG', () => {
    const flags = OPTIONS.filter((o) => o.flag !== false).map((o) => flagName(o.name));
    assert.equal(new Set(flags).size, flags.length);
    const envs = OPTIONS.map((o) => envName(o.name));
    assert.equal(new Set(envs).size, envs.length);
    for (const reserved of NON_OPTION_ENV_VARS) {
      assert.ok(reserved.startsWith(ENV_PREFIX));
      assert.ok(!envs.includes(reserved), reserved);
    }
  });
});

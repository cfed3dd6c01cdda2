import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CloudbarmanError } from '../../../src/core/errors.ts';
import { CONFIG_FIELDS, listConfiguredServers, loadServerConfig, toStoreOptions } from '../../../src/config/load.ts';
import type { ConfigSources, ServerConfig } from '../../../src/config/load.ts';
import { OPTIONS } from '../../../src/config/options.ts';
import { makeTempDir, removeTempDir } from '../../helpers/tmp.ts';

/** The seed example of DESIGN.md, verbatim. */
const SEED = `[pg1]
description = "Main cluster"
conninfo = host=10.0.0.5 user=barman dbname=postgres
streaming_conninfo = host=10.0.0.5 user=replica
pgdata = /var/lib/postgresql/17/main
provider = aws
destination = s3://acme-backups/cloudbarman
backup_method = local
compression = zstd
retention_policy = RECOVERY WINDOW OF 7 DAYS
wal_retention_policy = main
retention_policy_mode = auto
minimum_redundancy = 2
slot_name = cloudbarman
streaming_archiver = on
backup_schedule = 0 3 * * *
`;

let dir = '';
let counter = 0;
/** A path where no file exists; used as the default config path so the machine's /etc never leaks in. */
let absent = '';

before(async () => {
  dir = await makeTempDir('cloudbarman-config');
  absent = join(dir, 'absent.conf');
});
after(async () => {
  await removeTempDir(dir);
});

/** Writes a config file and returns its path. */
async function configFile(text: string): Promise<string> {
  const path = join(dir, `c${++counter}.conf`);
  await writeFile(path, text);
  return path;
}

function sources(overrides: Partial<ConfigSources> = {}): ConfigSources {
  return { defaultConfigPath: absent, env: {}, flags: {}, ...overrides };
}

/** Loads from a file with the given text, plus any other sources. */
async function loadText(text: string, server = 'pg1', overrides: Partial<ConfigSources> = {}): Promise<ServerConfig> {
  return loadServerConfig(server, sources({ configPath: await configFile(text), ...overrides }));
}

/** Asserts a bad-input rejection whose message matches, and returns the error for further checks. */
async function rejects(promise: Promise<unknown>, message: RegExp | string): Promise<CloudbarmanError> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof CloudbarmanError, `expected a CloudbarmanError, got ${caught === undefined ? 'success' : String(caught)}`);
  assert.equal(caught.kind, 'bad-input');
  if (typeof message === 'string') assert.equal(caught.message, message);
  else assert.match(caught.message, message);
  assert.ok(caught.hint !== undefined && caught.hint !== '', `"${caught.message}" has a hint`);
  return caught;
}

describe('loadServerConfig: the seed example', () => {
  it('loads as is, every value typed', async () => {
    const path = await configFile(SEED);
    const cfg = await loadServerConfig('pg1', sources({ configPath: path }));
    const { origins, locations, ...values } = cfg;
    assert.deepEqual(values, {
      server: 'pg1',
      description: 'Main cluster',
      conninfo: 'host=10.0.0.5 user=barman dbname=postgres',
      streamingConninfo: 'host=10.0.0.5 user=replica',
      pgdata: '/var/lib/postgresql/17/main',
      provider: 'aws',
      destination: 's3://acme-backups/cloudbarman',
      s3ForcePathStyle: false,
      azureCredential: 'default',
      clientEncryption: 'none',
      encryptionKeyEnv: 'CLOUDBARMAN_ENCRYPTION_KEY',
      encryptionAllowPlaintext: false,
      backupMethod: 'local',
      compression: 'zstd',
      backupCompression: 'zstd',
      parallelJobs: 2,
      partSizeBytes: 32 * 1024 * 1024,
      uploadConcurrency: 4,
      retentionPolicy: { kind: 'recovery-window', count: 7, unit: 'days' },
      walRetentionPolicy: 'main',
      retentionPolicyMode: 'auto',
      minimumRedundancy: 2,
      keepDaily: 0,
      keepWeekly: 0,
      keepMonthly: 0,
      keepYearly: 0,
      slotName: 'cloudbarman',
      streamingArchiver: true,
      streamingArchiverName: 'cloudbarman_receive_wal',
      streamingBackupName: 'cloudbarman_streaming_backup',
      receiveWalPartialIntervalMs: 60_000,
      receiveWalSynchronous: 'auto',
      backupSchedule: '0 3 * * *',
      retryTimeoutMs: 30_000,
      connectTimeoutMs: 10_000,
      requestTimeoutMs: 120_000,
      walArchiveTimeoutMs: 300_000,
      snapshotTimeoutMs: 86_400_000,
      archiveBatchSize: 32,
      archiveParallel: 4,
      restorePrefetch: 16,
      configFile: path,
    });
    assert.equal(origins.minimum_redundancy, 'file');
    assert.equal(origins.part_size, 'default');
    assert.equal(origins.backup_compression, 'default');
    assert.equal(origins.snapshot_disks, undefined);
    assert.equal(locations.minimum_redundancy, `${path}:13 [pg1]`);
    assert.equal(locations.destination, `${path}:7 [pg1]`);
  });

  it('fills every ServerConfig field when every option is set', async () => {
    const cfg = await loadText(`[pg1]
${SEED.split('\n').slice(1).join('\n')}
s3_force_path_style = off
endpoint_url = https://s3.example.com
aws_region = eu-west-1
aws_profile = backup
azure_subscription_id = sub
azure_resource_group = rg
azure_storage_account = acct01
azure_credential = managed-identity
azure_encryption_scope = scope1
azure_access_tier = Cool
gcp_key_file = /etc/cloudbarman/gcs.json
gcp_kms_key_name = projects/p/locations/l/keyRings/r/cryptoKeys/k
gcp_storage_class = NEARLINE
tags = team=dba, env=prod
keep_daily = 7
keep_weekly = 4
keep_monthly = 12
keep_yearly = 3
last_backup_maximum_age = 1 DAYS
backup_compression = lz4
parallel_jobs = 8
part_size = 16MB
upload_concurrency = 2
streaming_archiver_name = a
streaming_backup_name = b
snapshot_provider = gcp
snapshot_instance = vm1
snapshot_disks = d1,d2
snapshot_zone = europe-west1-b
snapshot_gcp_project = proj
snapshot_endpoint_url = http://127.0.0.1:9999
snapshot_timeout = 2h
snapshot_local_directory = /srv/snapshots
retry_timeout = 5min
connect_timeout = 3s
request_timeout = 1h
wal_archive_timeout = 10min
archive_batch_size = 8
archive_parallel = 2
restore_prefetch = 0
spool_directory = /var/spool/cloudbarman
receive_wal_directory = /var/lib/cloudbarman/receive-wal
receive_wal_partial_interval = 30s
receive_wal_synchronous = on
client_encryption = aes-256-gcm
encryption_key_file = /etc/cloudbarman/backup.key
encryption_key_env = PG1_BACKUP_KEY
encryption_kms_key_id = alias/cloudbarman
encryption_kms_endpoint_url = https://kms.eu-west-1.amazonaws.com
encryption_allow_plaintext = on
`);
    // One service wraps the master key: the other two options are checked on their own below.
    const otherWrapping = new Set(['encryption_azure_key_id', 'encryption_gcp_kms_key_name']);
    for (const spec of OPTIONS) {
      if (otherWrapping.has(spec.name)) continue;
      const field = CONFIG_FIELDS[spec.name as keyof typeof CONFIG_FIELDS];
      assert.notEqual(cfg[field], undefined, `${spec.name} -> ${field}`);
      assert.equal(cfg.origins[spec.name], 'file', spec.name);
    }
    assert.equal(cfg.partSizeBytes, 16 * 1024 * 1024);
    assert.equal(cfg.retryTimeoutMs, 300_000);
    const azure = await loadText('[pg1]\ndestination = s3://b/p\nencryption_azure_key_id = https://vault1.vault.azure.net/keys/cb/0123abcd\n');
    assert.equal(azure.encryptionAzureKeyId, 'https://vault1.vault.azure.net/keys/cb/0123abcd');
    const gcp = await loadText('[pg1]\ndestination = s3://b/p\nencryption_gcp_kms_key_name = projects/p1/locations/europe-west1/keyRings/r/cryptoKeys/k\n');
    assert.equal(gcp.encryptionGcpKmsKeyName, 'projects/p1/locations/europe-west1/keyRings/r/cryptoKeys/k');
    await assert.rejects(
      loadText('[pg1]\ndestination = s3://b/p\nencryption_kms_key_id = alias/cb\nencryption_gcp_kms_key_name = projects/p1/locations/l/keyRings/r/cryptoKeys/k\n'),
      (err: unknown) => err instanceof CloudbarmanError && err.kind === 'bad-input' && /encryption_kms_key_id .*encryption_gcp_kms_key_name .*cannot be combined/.test(err.message),
    );
    await assert.rejects(loadText('[pg1]\ndestination = s3://b/p\nencryption_gcp_kms_key_name = projects/p1/keyRings/r\n'), /not a Cloud KMS key name/);
    await assert.rejects(loadText('[pg1]\ndestination = s3://b/p\nencryption_azure_key_id = http://vault1.vault.azure.net/keys/cb\n'), /encryption_azure_key_id/);
    assert.equal(cfg.requestTimeoutMs, 3_600_000);
    assert.equal(cfg.walArchiveTimeoutMs, 600_000);
    assert.deepEqual(cfg.snapshotDisks, ['d1', 'd2']);
    assert.equal(cfg.snapshotTimeoutMs, 7_200_000);
    assert.equal(cfg.s3ForcePathStyle, false);
    assert.equal(cfg.backupCompression, 'lz4');
    assert.equal(cfg.azureAccessTier, 'Cool');
    assert.equal(cfg.lastBackupMaximumAgeMs, 86_400_000);
    assert.equal(cfg.receiveWalPartialIntervalMs, 30_000);
    assert.equal(cfg.receiveWalSynchronous, 'on');
  });

  it('passes each provider only its own settings, with tags parsed', async () => {
    const azure = await loadText(`[pg1]
destination = azure://backups/pg
azure_storage_account = acct01
azure_encryption_scope = scope1
tags = team=dba, env=prod
gcp_storage_class = NEARLINE
`);
    const options = toStoreOptions(azure);
    assert.deepEqual(options.azure, { credential: 'default', account: 'acct01', encryptionScope: 'scope1' });
    assert.deepEqual(options.tags, { team: 'dba', env: 'prod' });
    assert.equal(options.gcp, undefined);
    const gcp = toStoreOptions(await loadText(`[pg1]
destination = gs://bucket/pg
gcp_storage_class = NEARLINE
gcp_kms_key_name = projects/p/locations/l/keyRings/r/cryptoKeys/k
`));
    assert.deepEqual(gcp.gcp, { storageClass: 'NEARLINE', kmsKeyName: 'projects/p/locations/l/keyRings/r/cryptoKeys/k' });
    assert.equal(gcp.azure, undefined);
  });

  it('refuses malformed tags and storage account names, naming the option', async () => {
    await rejects(loadText('[pg1]\ndestination = azure://c/p\ntags = team\n'), /tags/);
    await rejects(loadText('[pg1]\ndestination = azure://c/p\ntags = a=1,a=2\n'), /twice/);
    await rejects(loadText('[pg1]\ndestination = azure://c/p\nazure_storage_account = Bad_Name\n'), /azure_storage_account/);
  });
});

describe('loadServerConfig: precedence', () => {
  const file = `[cloudbarman]
compression = none
destination = s3://global/p

[pg1]
compression = gzip
destination = s3://section/p
`;

  it('takes a flag over everything', async () => {
    const cfg = await loadText(file, 'pg1', { env: { CLOUDBARMAN_COMPRESSION: 'zstd' }, flags: { compression: 'none' } });
    assert.equal(cfg.compression, 'none');
    assert.equal(cfg.origins.compression, 'flag');
    assert.equal(cfg.locations.compression, '--compression');
  });

  it('takes the environment over the file', async () => {
    const cfg = await loadText(file, 'pg1', { env: { CLOUDBARMAN_COMPRESSION: 'zstd' } });
    assert.equal(cfg.compression, 'zstd');
    assert.equal(cfg.origins.compression, 'env');
    assert.equal(cfg.locations.compression, 'CLOUDBARMAN_COMPRESSION');
  });

  it("takes the server's section over [cloudbarman]", async () => {
    const cfg = await loadText(file);
    assert.equal(cfg.compression, 'gzip');
    assert.equal(cfg.destination, 's3://section/p');
    assert.match(cfg.locations.compression ?? '', /:6 \[pg1\]$/);
  });

  it('takes [cloudbarman] over the default', async () => {
    const cfg = await loadText(`[cloudbarman]\ncompression = none\nminimum_redundancy = 3\n[pg1]\ndestination = s3://b/p\n`);
    assert.equal(cfg.compression, 'none');
    assert.equal(cfg.minimumRedundancy, 3);
    assert.equal(cfg.origins.compression, 'file');
    assert.match(cfg.locations.compression ?? '', /:2 \[cloudbarman\]$/);
  });

  it('falls back to the table default', async () => {
    const cfg = await loadText(`[pg1]\ndestination = s3://b/p\n`);
    assert.equal(cfg.compression, 'zstd');
    assert.equal(cfg.origins.compression, 'default');
    assert.equal(cfg.parallelJobs, 2);
  });

  it('applies flags given as booleans, and ignores undefined flags and empty variables', async () => {
    const cfg = await loadText(`[pg1]\ndestination = s3://b/p\nstreaming_archiver = on\ncompression = gzip\n`, 'pg1', {
      flags: { streaming_archiver: false, compression: undefined },
      env: { CLOUDBARMAN_COMPRESSION: '' },
    });
    assert.equal(cfg.streamingArchiver, false);
    assert.equal(cfg.origins.streaming_archiver, 'flag');
    assert.equal(cfg.compression, 'gzip');
  });
});

describe('loadServerConfig: derived defaults', () => {
  it('backup_compression follows compression from whichever layer set it', async () => {
    const cfg = await loadServerConfig('pg1', sources({ flags: { destination: 's3://b/p' }, env: { CLOUDBARMAN_COMPRESSION: 'gzip' } }));
    assert.equal(cfg.backupCompression, 'gzip');
    assert.equal(cfg.origins.backup_compression, 'default');
    const explicit = await loadServerConfig('pg1', sources({ flags: { destination: 's3://b/p', backup_compression: 'lz4' } }));
    assert.equal(explicit.backupCompression, 'lz4');
    assert.equal(explicit.compression, 'zstd');
  });

  it('s3_force_path_style is on with an endpoint_url unless set off', async () => {
    const withEndpoint = await loadServerConfig('pg1', sources({ flags: { destination: 's3://b/p', endpoint_url: 'http://127.0.0.1:9000' } }));
    assert.equal(withEndpoint.s3ForcePathStyle, true);
    const off = await loadServerConfig('pg1', sources({ flags: { destination: 's3://b/p', endpoint_url: 'http://127.0.0.1:9000', s3_force_path_style: 'off' } }));
    assert.equal(off.s3ForcePathStyle, false);
    const plain = await loadServerConfig('pg1', sources({ flags: { destination: 's3://b/p' } }));
    assert.equal(plain.s3ForcePathStyle, false);
  });

  it('streaming_conninfo defaults to conninfo, as in Barman', async () => {
    const cfg = await loadText(`[pg1]\ndestination = s3://b/p\nconninfo = host=db user=barman\n`);
    assert.equal(cfg.streamingConninfo, 'host=db user=barman');
    assert.equal(cfg.origins.streaming_conninfo, 'default');
  });
});

describe('loadServerConfig: no config file', () => {
  it('works from flags alone when the default file does not exist', async () => {
    const cfg = await loadServerConfig('pg1', sources({ flags: { destination: '/var/backups/cb', pgdata: '/srv/pg' } }));
    assert.equal(cfg.provider, 'local');
    assert.equal(cfg.destination, 'file:///var/backups/cb');
    assert.equal(cfg.configFile, undefined);
    assert.equal(cfg.origins.provider, 'default');
    assert.match(cfg.locations.provider ?? '', /inferred from destination/);
  });

  it('works from the environment alone', async () => {
    const cfg = await loadServerConfig('pg1', sources({ env: { CLOUDBARMAN_DESTINATION: 'gs://bucket/p', CLOUDBARMAN_PARALLEL_JOBS: '6', PATH: '/bin' } }));
    assert.equal(cfg.provider, 'gcp');
    assert.equal(cfg.parallelJobs, 6);
    assert.equal(cfg.origins.parallel_jobs, 'env');
  });

  it('asks for a destination, naming the option, its flag and its variable', async () => {
    const err = await rejects(loadServerConfig('pg1', sources()), 'no destination for server "pg1"');
    assert.match(err.hint ?? '', /"destination"/);
    assert.match(err.hint ?? '', /--destination/);
    assert.match(err.hint ?? '', /CLOUDBARMAN_DESTINATION/);
  });

  it('says where to put the destination when the file lacks it', async () => {
    const path = await configFile('[pg1]\ncompression = gzip\n');
    const err = await rejects(loadServerConfig('pg1', sources({ configPath: path })), 'no destination for server "pg1"');
    assert.match(err.hint ?? '', new RegExp(`\\[pg1\\] of ${path}`));
  });
});

describe('loadServerConfig: which file', () => {
  it('reads the default file when it exists', async () => {
    const path = await configFile('[pg1]\ndestination = s3://b/p\n');
    const cfg = await loadServerConfig('pg1', sources({ defaultConfigPath: path }));
    assert.equal(cfg.configFile, path);
  });

  it('prefers -c over CLOUDBARMAN_CONFIG over the default', async () => {
    const viaFlag = await configFile('[pg1]\ndestination = s3://flag/p\n');
    const viaEnv = await configFile('[pg1]\ndestination = s3://env/p\n');
    const byDefault = await configFile('[pg1]\ndestination = s3://default/p\n');
    const both = await loadServerConfig('pg1', sources({ configPath: viaFlag, env: { CLOUDBARMAN_CONFIG: viaEnv }, defaultConfigPath: byDefault }));
    assert.equal(both.destination, 's3://flag/p');
    const env = await loadServerConfig('pg1', sources({ env: { CLOUDBARMAN_CONFIG: viaEnv }, defaultConfigPath: byDefault }));
    assert.equal(env.destination, 's3://env/p');
    assert.equal(env.configFile, viaEnv);
  });

  it('fails when the file named with -c does not exist', async () => {
    const missing = join(dir, 'nope.conf');
    const err = await rejects(loadServerConfig('pg1', sources({ configPath: missing, flags: { destination: 's3://b/p' } })), `config file ${missing} does not exist`);
    assert.match(err.hint ?? '', /-c/);
  });

  it('fails when the file named by CLOUDBARMAN_CONFIG does not exist', async () => {
    const missing = join(dir, 'nope-env.conf');
    const err = await rejects(loadServerConfig('pg1', sources({ env: { CLOUDBARMAN_CONFIG: missing } })), `config file ${missing} does not exist`);
    assert.match(err.hint ?? '', /CLOUDBARMAN_CONFIG/);
  });

  it('reports an unreadable file instead of ignoring it', async () => {
    const denied = Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
    const err = await rejects(
      loadServerConfig('pg1', sources({ defaultConfigPath: '/etc/cloudbarman.conf', readFile: () => Promise.reject(denied), flags: { destination: 's3://b/p' } })),
      'cannot read config file /etc/cloudbarman.conf: permission denied',
    );
    assert.equal(err.cause, denied);
  });

  it('uses an injected reader', async () => {
    const read: string[] = [];
    const cfg = await loadServerConfig('pg1', sources({
      configPath: '/virtual.conf',
      readFile: (p) => {
        read.push(p);
        return Promise.resolve('[pg1]\ndestination = azure://container/p\n');
      },
    }));
    assert.deepEqual(read, ['/virtual.conf']);
    assert.equal(cfg.provider, 'azure');
  });
});

describe('loadServerConfig: errors in the file name the file, the line and the option', () => {
  const cases: { text: string; line: number; option: string; problem: RegExp }[] = [
    { text: 'minimum_redundancy = two', line: 3, option: 'minimum_redundancy', problem: /: "two" is not a whole number$/ },
    { text: 'minimum_redundancy = -1', line: 3, option: 'minimum_redundancy', problem: /: "-1" is less than the minimum, 0$/ },
    { text: 'parallel_jobs = 0', line: 3, option: 'parallel_jobs', problem: /: "0" is less than the minimum, 1$/ },
    { text: 'streaming_archiver = maybe', line: 3, option: 'streaming_archiver', problem: /: "maybe" is not on or off$/ },
    { text: 'compression = lz4', line: 3, option: 'compression', problem: /: "lz4" is not one of none, gzip, zstd$/ },
    { text: 'backup_method = rsync', line: 3, option: 'backup_method', problem: /: "rsync" is not one of local, postgres, snapshot$/ },
    { text: 'part_size = 4MiB', line: 3, option: 'part_size', problem: /: "4MiB" is less than the minimum, 5MiB$/ },
    { text: 'part_size = lots', line: 3, option: 'part_size', problem: /: "lots" is not a size$/ },
    { text: 'retry_timeout = soon', line: 3, option: 'retry_timeout', problem: /: "soon" is not a duration$/ },
    { text: 'connect_timeout = 0', line: 3, option: 'connect_timeout', problem: /: "0" is less than the minimum, 1s$/ },
    { text: 'endpoint_url = ftp://x', line: 3, option: 'endpoint_url', problem: /: "ftp:\/\/x" has the scheme ftp: \(expected http: https:\)$/ },
    { text: 'pgdata = data', line: 3, option: 'pgdata', problem: /: "data" is not an absolute path$/ },
    { text: 'backup_schedule = 0 3 * *', line: 3, option: 'backup_schedule', problem: /: "0 3 \* \*" has 4 fields, not 5$/ },
    { text: 'backup_schedule = 0 25 * * *', line: 3, option: 'backup_schedule', problem: /is not a valid cron expression \(Invalid value for hour: 25\)$/ },
    { text: 'retention_policy = KEEP 7', line: 3, option: 'retention_policy', problem: /: "KEEP 7" is not a retention policy$/ },
    { text: 'snapshot_disks = a,,b', line: 3, option: 'snapshot_disks', problem: /: "a,,b" has an empty item$/ },
    { text: 'slot_name = Bad-Slot', line: 3, option: 'slot_name', problem: /: "Bad-Slot" is not a replication slot name/ },
    { text: 'wal_retention_policy = simple', line: 3, option: 'wal_retention_policy', problem: /: "simple" is not one of main$/ },
    { text: 'snapshot_provider = ibm', line: 3, option: 'snapshot_provider', problem: /: "ibm" is not one of aws, azure, gcp, local$/ },
    { text: 'aws_region =', line: 3, option: 'aws_region', problem: /: "" is empty$/ },
  ];
  for (const c of cases) {
    it(`${c.text}`, async () => {
      const path = await configFile(`[pg1]\ndestination = s3://b/p\n${c.text}\n`);
      const err = await rejects(loadServerConfig('pg1', sources({ configPath: path })), c.problem);
      assert.ok(err.message.startsWith(`${path}:${c.line}: option "${c.option}": `), err.message);
    });
  }

  it('validates [cloudbarman] values too, with their own line', async () => {
    const path = await configFile('[cloudbarman]\n\nupload_concurrency = many\n[pg1]\ndestination = s3://b/p\n');
    await rejects(loadServerConfig('pg1', sources({ configPath: path })), `${path}:3: option "upload_concurrency": "many" is not a whole number`);
  });

  it('validates a file value even when a flag overrides it', async () => {
    const path = await configFile('[pg1]\ndestination = s3://b/p\ncompression = fast\n');
    await rejects(loadServerConfig('pg1', sources({ configPath: path, flags: { compression: 'gzip' } })), `${path}:3: option "compression": "fast" is not one of none, gzip, zstd`);
  });

  it('rejects an unknown option with a suggestion', async () => {
    const path = await configFile('[pg1]\ndestination = s3://b/p\n\n# WAL\ncompresion = zstd\n');
    const err = await rejects(loadServerConfig('pg1', sources({ configPath: path })), `${path}:5: option "compresion" is unknown`);
    assert.equal(err.hint, 'did you mean "compression"?');
  });

  it('rejects an unknown option with no near match, pointing at --help', async () => {
    const path = await configFile('[pg1]\ndestination = s3://b/p\nssh_command = ssh postgres@pg\n');
    const err = await rejects(loadServerConfig('pg1', sources({ configPath: path })), `${path}:3: option "ssh_command" is unknown`);
    assert.match(err.hint ?? '', /--help/);
  });

  it('rejects per-server options in [cloudbarman]', async () => {
    const path = await configFile('[cloudbarman]\nconninfo = host=db\n[pg1]\ndestination = s3://b/p\n');
    const err = await rejects(loadServerConfig('pg1', sources({ configPath: path })), `${path}:2: option "conninfo" cannot be set in [cloudbarman]`);
    assert.match(err.hint ?? '', /server's section/);
  });

  it('reports INI syntax errors as bad input with file and line', async () => {
    const path = await configFile('[pg1]\ndestination s3://b/p\n');
    await rejects(loadServerConfig('pg1', sources({ configPath: path })), new RegExp(`^${path}:2: expected "key = value"`));
  });

  it("ignores Barman's [barman] section, whatever it holds", async () => {
    const cfg = await loadText('[barman]\nbarman_home = /var/lib/barman\nlog_file = /var/log/barman.log\n[pg1]\ndestination = s3://b/p\n');
    assert.equal(cfg.destination, 's3://b/p');
  });

  it("does not read other servers' sections", async () => {
    const cfg = await loadText('[pg1]\ndestination = s3://b/p\n[pg2]\nnot_an_option = 1\n');
    assert.equal(cfg.server, 'pg1');
  });
});

describe('loadServerConfig: the environment', () => {
  it('rejects a CLOUDBARMAN_ variable that is no option, with a suggestion', async () => {
    const err = await rejects(
      loadServerConfig('pg1', sources({ flags: { destination: 's3://b/p' }, env: { CLOUDBARMAN_DESTINATON: 's3://x/y' } })),
      'environment variable CLOUDBARMAN_DESTINATON is not a cloudbarman setting',
    );
    assert.equal(err.hint, 'did you mean CLOUDBARMAN_DESTINATION?');
  });

  it('rejects a wrongly cased variable and one with no near match', async () => {
    await rejects(loadServerConfig('pg1', sources({ flags: { destination: 's3://b/p' }, env: { CLOUDBARMAN_Provider: 'aws' } })), /CLOUDBARMAN_Provider is not a cloudbarman setting/);
    const err = await rejects(loadServerConfig('pg1', sources({ flags: { destination: 's3://b/p' }, env: { CLOUDBARMAN_WHATEVER_ELSE: '1' } })), /CLOUDBARMAN_WHATEVER_ELSE/);
    assert.match(err.hint ?? '', /CLOUDBARMAN_<OPTION_NAME>/);
  });

  it('leaves CLOUDBARMAN_CONFIG and unrelated variables alone', async () => {
    const path = await configFile('[pg1]\ndestination = s3://b/p\n');
    const cfg = await loadServerConfig('pg1', sources({ env: { CLOUDBARMAN_CONFIG: path, HOME: '/root', PGHOST: 'x', cloudbarman_lower: 'x' } }));
    assert.equal(cfg.destination, 's3://b/p');
  });

  it('names the variable and the option when a value is malformed', async () => {
    await rejects(
      loadServerConfig('pg1', sources({ flags: { destination: 's3://b/p' }, env: { CLOUDBARMAN_MINIMUM_REDUNDANCY: 'two' } })),
      'option "minimum_redundancy" (environment CLOUDBARMAN_MINIMUM_REDUNDANCY): "two" is not a whole number',
    );
  });

  it('names the flag and the option when a flag value is malformed', async () => {
    await rejects(
      loadServerConfig('pg1', sources({ flags: { destination: 's3://b/p', parallel_jobs: 'x' } })),
      'option "parallel_jobs" (--jobs): "x" is not a whole number',
    );
  });
});

describe('loadServerConfig: secrets', () => {
  const password = 'hunter2-s3cret';

  it('hides a malformed conninfo from the file', async () => {
    const path = await configFile(`[pg1]\ndestination = s3://b/p\nconninfo = host=db password='${password}\n`);
    const err = await rejects(loadServerConfig('pg1', sources({ configPath: path })), new RegExp(`^${path}:3: option "conninfo": <hidden> is not a valid connection string`));
    assert.ok(!err.message.includes(password) && !(err.hint ?? '').includes(password));
  });

  it('hides a malformed streaming_conninfo from the environment and from flags', async () => {
    const env = await rejects(
      loadServerConfig('pg1', sources({ flags: { destination: 's3://b/p' }, env: { CLOUDBARMAN_STREAMING_CONNINFO: `host=db ${password}` } })),
      /CLOUDBARMAN_STREAMING_CONNINFO\): <hidden> is not a valid connection string/,
    );
    assert.ok(!env.message.includes(password) && !(env.hint ?? '').includes(password));
    const flag = await rejects(loadServerConfig('pg1', sources({ flags: { destination: 's3://b/p', conninfo: `password='${password}` } })), /<hidden>/);
    assert.ok(!flag.message.includes(password) && !(flag.hint ?? '').includes(password));
  });

  it('shows a non-secret value, to contrast', async () => {
    await rejects(loadServerConfig('pg1', sources({ flags: { destination: 's3://b/p', slot_name: 'Visible' } })), /"Visible"/);
  });
});

describe('loadServerConfig: provider and destination', () => {
  it('infers the provider from each scheme', async () => {
    const expected = { 's3://b/p': 'aws', 'azure://c/p': 'azure', 'gs://b/p': 'gcp', 'file:///srv/b': 'local' } as const;
    for (const [destination, provider] of Object.entries(expected)) {
      const cfg = await loadServerConfig('pg1', sources({ flags: { destination } }));
      assert.equal(cfg.provider, provider, destination);
    }
  });

  it('rejects a provider that does not match the scheme, naming both sources', async () => {
    const path = await configFile('[pg1]\nprovider = gcp\ndestination = s3://b/p\n');
    const err = await rejects(loadServerConfig('pg1', sources({ configPath: path })), `destination s3://b/p (${path}:3 [pg1]) does not match provider "gcp" (${path}:2 [pg1])`);
    assert.match(err.hint ?? '', /gs:\/\//);
    await rejects(loadServerConfig('pg1', sources({ configPath: path, flags: { provider: 'azure' } })), /does not match provider "azure" \(--provider\)/);
  });

  it('lets a flag fix the mismatch', async () => {
    const cfg = await loadText('[pg1]\nprovider = gcp\ndestination = s3://b/p\n', 'pg1', { flags: { provider: 'aws' } });
    assert.equal(cfg.provider, 'aws');
  });

  it('accepts a bare absolute path for local and normalises it', async () => {
    const cfg = await loadText('[pg1]\nprovider = local\ndestination = /var/backups/cloudbarman\n');
    assert.equal(cfg.provider, 'local');
    assert.equal(cfg.destination, 'file:///var/backups/cloudbarman');
  });

  it('rejects a bare path for a cloud provider, and a relative path for any', async () => {
    await rejects(loadServerConfig('pg1', sources({ flags: { provider: 'aws', destination: '/var/backups' } })), /^destination file:\/\/\/var\/backups \(--destination\) does not match provider "aws"/);
    await rejects(loadServerConfig('pg1', sources({ flags: { destination: 'backups/here' } })), 'option "destination" (--destination): "backups/here" is not a URL');
  });

  it('rejects an unknown scheme with examples', async () => {
    const err = await rejects(loadServerConfig('pg1', sources({ flags: { destination: 'swift://c/p' } })), /"swift:\/\/c\/p" has the scheme swift:/);
    assert.match(err.hint ?? '', /s3:\/\/bucket\/prefix/);
  });
});

describe('loadServerConfig: the SERVER argument', () => {
  it('rejects names that are not a plain object-key segment', async () => {
    for (const bad of ['', 'a/b', '../x', '.hidden', '-x', 'a b', 'pg1\n']) {
      await rejects(loadServerConfig(bad, sources({ flags: { destination: 's3://b/p' } })), /server name .* is not valid/);
    }
  });

  it('accepts letters, digits, "_", "." and "-"', async () => {
    const cfg = await loadServerConfig('Pg-1.main_2', sources({ flags: { destination: 's3://b/p' } }));
    assert.equal(cfg.server, 'Pg-1.main_2');
  });

  it('refuses the reserved section names', async () => {
    await rejects(loadServerConfig('cloudbarman', sources({ flags: { destination: 's3://b/p' } })), '"cloudbarman" is not a server name');
    await rejects(loadServerConfig('barman', sources({ flags: { destination: 's3://b/p' } })), '"barman" is not a server name');
  });

  it('rejects a server missing from the file unless flags or env give the destination', async () => {
    const path = await configFile('[cloudbarman]\ndestination = s3://shared/p\ncompression = gzip\n[pg1]\n[pg2]\n');
    const err = await rejects(loadServerConfig('pg9', sources({ configPath: path })), new RegExp(`^server "pg9" is not in ${path}, and its destination is not given`));
    assert.match(err.hint ?? '', /\[pg9\]/);
    assert.match(err.hint ?? '', /--destination/);
    const fromFlag = await loadServerConfig('pg9', sources({ configPath: path, flags: { destination: 's3://b/p' } }));
    assert.equal(fromFlag.compression, 'gzip', '[cloudbarman] still applies');
    const fromEnv = await loadServerConfig('pg9', sources({ configPath: path, env: { CLOUDBARMAN_DESTINATION: 'gs://b/p' } }));
    assert.equal(fromEnv.provider, 'gcp');
  });

  it('suggests a configured server close to a mistyped one', async () => {
    const path = await configFile('[main-cluster]\ndestination = s3://b/p\n');
    const err = await rejects(loadServerConfig('main-clustr', sources({ configPath: path })), /not in/);
    assert.match(err.hint ?? '', /did you mean "main-cluster"\?/);
  });
});

describe('listConfiguredServers', () => {
  it('lists server sections in file order, without [cloudbarman] and [barman]', async () => {
    const path = await configFile('[cloudbarman]\ncompression = gzip\n[pg2]\n[barman]\nx = 1\n[pg1]\n');
    assert.deepEqual(await listConfiguredServers(sources({ configPath: path })), ['pg2', 'pg1']);
  });

  it('returns nothing without a file', async () => {
    assert.deepEqual(await listConfiguredServers(sources()), []);
  });

  it('rejects a section whose name cannot be a server, naming its line', async () => {
    const path = await configFile('[pg1]\n\n[my server]\n');
    await rejects(listConfiguredServers(sources({ configPath: path })), new RegExp(`^${path}:3: server name "my server" is not valid`));
  });
});

describe('toStoreOptions', () => {
  it('passes the AWS settings, endpoint, part size and timeouts', async () => {
    const cfg = await loadServerConfig('pg1', sources({
      flags: { destination: 's3://b/p', endpoint_url: 'http://127.0.0.1:9000', aws_region: 'eu-west-1', part_size: '8MiB', upload_concurrency: '3', connect_timeout: '2s' },
    }));
    assert.deepEqual(toStoreOptions(cfg), {
      destination: 's3://b/p',
      endpointUrl: 'http://127.0.0.1:9000',
      aws: { forcePathStyle: true, region: 'eu-west-1' },
      multipart: { partSizeBytes: 8 * 1024 * 1024, concurrency: 3 },
      connectTimeoutMs: 2000,
      requestTimeoutMs: 120_000,
    });
  });

  it('leaves the AWS part out for other providers', async () => {
    const cfg = await loadServerConfig('pg1', sources({ flags: { destination: '/srv/backups', aws_region: 'eu-west-1' } }));
    const options = toStoreOptions(cfg);
    assert.equal(options.aws, undefined);
    assert.equal(options.destination, 'file:///srv/backups');
  });
});

// The bad-input corpus: every case runs the real CLI on a wrong config, wrong arguments or a damaged
// store, and must get one error line with a hint, the documented exit code, no stack trace, no secret
// echoed, and nothing written. Starts: one s3rver (missing bucket, wrong credentials), nothing else.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { runCli } from '../helpers/cli.ts';
import { makeTempDir, removeTempDir } from '../helpers/tmp.ts';
import { freePort } from '../helpers/ports.ts';
import { startS3rver, s3rverCredentials, type S3rverHandle } from '../servers/s3rver.ts';
import { createObjectStore } from '../../providers/local/index.ts';
import { BACKUP_FORMAT_VERSION, type BackupInfo } from '../../src/core/catalog/backup-info.ts';
import { writeBackupInfo } from '../../src/core/catalog/catalog.ts';

let dir: string;
let store: string;
let s3: S3rverHandle | undefined;
let closedPort: number;

/** A DONE backup entry as a backup would write it; its data is what each case damages. */
function entry(id: string, extra: Partial<BackupInfo> = {}): BackupInfo {
  return {
    format_version: BACKUP_FORMAT_VERSION, id, server: 'pg1', status: 'DONE', method: 'local', label: `cloudbarman ${id}`,
    begin_time: '2026-11-20T03:00:00.000Z', end_time: '2026-11-20T03:05:00.000Z', begin_lsn: '0/2000028', end_lsn: '0/2000100',
    begin_wal: '000000010000000000000002', end_wal: '000000010000000000000002', timeline: 1, size_bytes: 1, stored_bytes: 1,
    file_count: 1, part_count: 1, compression: 'zstd', pg_version: 170004, system_identifier: '1', data_checksums: false,
    wal_segment_size: 16 * 1024 * 1024, tablespaces: [], error: null, cloudbarman_version: '0.1.0', hostname: 'test', ...extra,
  };
}

before(async () => {
  dir = await makeTempDir('cb-bad-input');
  store = join(dir, 'store');
  await mkdir(store);
  await writeFile(join(dir, 'ok.conf'), `[pg1]\ndestination = ${pathToFileURL(store).href}\nretry_timeout = 1s\n\n[pg9]\ndestination = ${pathToFileURL(store).href}\n`);
  const local = await createObjectStore({ destination: pathToFileURL(store).href, multipart: { partSizeBytes: 5 << 20, concurrency: 2 }, connectTimeoutMs: 1000, requestTimeoutMs: 5000 });
  try {
    await writeBackupInfo(local, entry('20261120T030000Z'));
    await local.put('pg1/base/20261120T030000Z/manifest.json.zst', Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00]), { metadata: { cb_compression: 'zstd', cb_format: '1' } });
    // A newer cloudbarman's entry, under its own server so that it does not block pg1's cases.
    await local.put('pg9/base/20261121T030000Z/backup.json', Buffer.from(JSON.stringify({ ...entry('20261121T030000Z'), server: 'pg9', format_version: 99 })));
    await local.put('pg1/wals/0000000100000000/000000010000000000000005.zst', Buffer.from('not zstd'), { metadata: { cb_format: '7', cb_compression: 'zstd', cb_size: '16777216', cb_sha256: '0'.repeat(64) } });
  } finally {
    await local.close();
  }
  s3 = await startS3rver({ buckets: ['exists'] });
  closedPort = await freePort();
});
after(async () => {
  await s3?.stop();
  if (dir) await removeTempDir(dir);
});

interface Case {
  name: string;
  /** Config file text, or undefined to use ok.conf. */
  config?: string;
  args: string[];
  env?: Record<string, string>;
  code: number;
  message: RegExp;
  /** Text that must not appear anywhere in the output (secrets). */
  secret?: string;
}

const WAL = '000000010000000000000001';
const DEST = (): string => join(dir, 'restore-target');

const CASES: Case[] = [
  // --- the config file
  { name: 'a line without =', config: '[pg1]\ndestination /tmp\n', args: ['list', 'pg1'], code: 3, message: /:2: / },
  { name: 'a section header without ]', config: '[pg1\ndestination = /tmp\n', args: ['list', 'pg1'], code: 3, message: /:1: section header has no closing "\]"/ },
  { name: 'a misspelt option', config: '[pg1]\ndestination = /tmp\ncompresion = zstd\n', args: ['list', 'pg1'], code: 3, message: /compresion.*compression/s },
  { name: 'an option set twice', config: '[pg1]\ndestination = /tmp\ndestination = /srv\n', args: ['list', 'pg1'], code: 3, message: /set again in \[pg1\] \(first at line 2\)/ },
  { name: 'a per-server option in [cloudbarman]', config: '[cloudbarman]\nconninfo = host=x\n[pg1]\ndestination = /tmp\n', args: ['list', 'pg1'], code: 3, message: /cannot be set in \[cloudbarman\]/ },
  { name: 'a word where a number goes', config: '[pg1]\ndestination = /tmp\nparallel_jobs = many\n', args: ['list', 'pg1'], code: 3, message: /parallel_jobs/ },
  { name: 'a number below its minimum', config: '[pg1]\ndestination = /tmp\nparallel_jobs = 0\n', args: ['list', 'pg1'], code: 3, message: /parallel_jobs/ },
  { name: 'a bool that is neither on nor off', config: '[pg1]\ndestination = /tmp\nstreaming_archiver = maybe\n', args: ['list', 'pg1'], code: 3, message: /streaming_archiver/ },
  { name: 'an unknown compression', config: '[pg1]\ndestination = /tmp\ncompression = brotli\n', args: ['list', 'pg1'], code: 3, message: /is not one of none, gzip, zstd/ },
  { name: 'a part size below 5 MiB', config: '[pg1]\ndestination = /tmp\npart_size = 1MiB\n', args: ['list', 'pg1'], code: 3, message: /part_size/ },
  { name: 'a duration without a unit it knows', config: '[pg1]\ndestination = /tmp\nretry_timeout = soon\n', args: ['list', 'pg1'], code: 3, message: /is not a duration/ },
  { name: 'a retention policy that is not one', config: '[pg1]\ndestination = /tmp\nretention_policy = KEEP 3\n', args: ['list', 'pg1'], code: 3, message: /is not a retention policy/ },
  { name: 'a retention policy that keeps nothing', config: '[pg1]\ndestination = /tmp\nretention_policy = REDUNDANCY 0\n', args: ['list', 'pg1'], code: 3, message: /keeps nothing/ },
  { name: 'a cron field out of range', config: '[pg1]\ndestination = /tmp\nbackup_schedule = 61 * * * *\n', args: ['list', 'pg1'], code: 3, message: /is not a valid cron expression/ },
  { name: 'a cron expression with 3 fields', config: '[pg1]\ndestination = /tmp\nbackup_schedule = * * *\n', args: ['list', 'pg1'], code: 3, message: /has 3 fields, not 5/ },
  { name: 'credentials in the destination URL', config: '[pg1]\ndestination = s3://AKIAEXAMPLE:hunter2secret@bucket/x\n', args: ['list', 'pg1'], code: 3, message: /contains credentials/, secret: 'hunter2secret' },
  { name: 'a query string in the destination', config: '[pg1]\ndestination = s3://bucket/x?region=eu\n', args: ['list', 'pg1'], code: 3, message: /destination/ },
  { name: 'an unknown URL scheme', config: '[pg1]\ndestination = ftp://host/x\n', args: ['list', 'pg1'], code: 3, message: /has the scheme ftp:/ },
  { name: 'a provider that does not match the URL', config: '[pg1]\nprovider = azure\ndestination = s3://bucket/x\n', args: ['list', 'pg1'], code: 3, message: /provider/ },
  { name: 'an unknown provider', config: '[pg1]\nprovider = dropbox\ndestination = s3://bucket/x\n', args: ['list', 'pg1'], code: 3, message: /is not one of aws, azure, gcp, local/ },
  { name: 'malformed tags', config: '[pg1]\ndestination = /tmp\ntags = team\n', args: ['list', 'pg1'], code: 3, message: /malformed tag/ },
  { name: 'a storage account name Azure refuses', config: '[pg1]\ndestination = azure://c/p\nazure_storage_account = Bad_Name\n', args: ['list', 'pg1'], code: 3, message: /is not a storage account name/ },
  { name: 'a slot name PostgreSQL refuses', config: '[pg1]\ndestination = /tmp\nslot_name = Bad-Slot\n', args: ['list', 'pg1'], code: 3, message: /is not a replication slot name/ },
  { name: 'a conninfo that does not parse', config: "[pg1]\ndestination = /tmp\nconninfo = host='unterminated\n", args: ['list', 'pg1'], code: 3, message: /conninfo/ },
  { name: 'a password in a bad conninfo is not echoed', config: "[pg1]\ndestination = /tmp\nconninfo = password=s3cr3tpw host='x\n", args: ['list', 'pg1'], code: 3, message: /conninfo/, secret: 's3cr3tpw' },
  { name: 'a relative pgdata', config: '[pg1]\ndestination = /tmp\npgdata = data/main\n', args: ['list', 'pg1'], code: 3, message: /is not an absolute path/ },
  { name: 'no destination anywhere', config: '[pg1]\ndescription = "x"\n', args: ['list', 'pg1'], code: 3, message: /no destination for server "pg1"/ },
  { name: 'a server the file does not have', args: ['list', 'pg2'], code: 3, message: /server "pg2" is not in/ },
  { name: 'a server name that cannot be a key', args: ['list', 'bad name!'], code: 3, message: /server name "bad name!" is not valid/ },
  { name: 'a -c file that does not exist', args: ['-c', '/nonexistent/cloudbarman.conf', 'list', 'pg1'], code: 3, message: /nonexistent/ },
  { name: 'an unknown CLOUDBARMAN_ variable', args: ['list', 'pg1'], env: { CLOUDBARMAN_COMPRESSON: 'zstd' }, code: 3, message: /CLOUDBARMAN_COMPRESSON is not a cloudbarman setting.*CLOUDBARMAN_COMPRESSION/s },
  { name: 'a bad value in the environment', args: ['list', 'pg1'], env: { CLOUDBARMAN_COMPRESSION: 'brotli' }, code: 3, message: /CLOUDBARMAN_COMPRESSION/ },

  // --- the command line
  { name: 'an unknown command', args: ['bakcup', 'pg1'], code: 3, message: /unknown command/ },
  { name: 'a missing argument', args: ['wal-upload', 'pg1'], code: 3, message: /missing required argument/ },
  { name: 'an unknown flag', args: ['list', 'pg1', '--colour'], code: 3, message: /unknown option/ },
  { name: 'an output format that does not exist', args: ['--format', 'xml', 'list', 'pg1'], code: 3, message: /xml/ },
  { name: 'delete with an id and --retention', args: ['delete', 'pg1', '20261120T030000Z', '--retention'], code: 3, message: /either a backup id or --retention/ },
  { name: 'delete with neither', args: ['delete', 'pg1'], code: 3, message: /needs a backup id, or --retention/ },
  { name: 'delete --retention without a policy', args: ['delete', 'pg1', '--retention'], code: 3, message: /has no retention_policy/ },
  { name: 'keep with two modes', args: ['keep', 'pg1', 'latest', '--release', '--status'], code: 3, message: /exactly one of --target, --release and --status/ },
  { name: 'keep with an unknown target', args: ['keep', 'pg1', 'latest', '--target', 'forever'], code: 3, message: /is not a keep target/ },
  { name: 'daemon with a zero interval', args: ['daemon', '--interval', '0'], code: 3, message: /--interval 0/ },
  { name: 'cron over a server that is not configured', args: ['cron', 'pg7'], code: 3, message: /pg7 is not configured/ },

  // --- backup ids, WAL names and restores
  { name: 'show a backup id that is not there', args: ['show', 'pg1', '20200101T000000Z'], code: 3, message: /backup 20200101T000000Z of pg1 is not in/ },
  { name: 'delete a backup id that is not there', args: ['delete', 'pg1', 'nonsense'], code: 3, message: /backup nonsense of pg1 is not in/ },
  { name: 'a WAL name that is not one (restore)', args: ['wal-restore', 'pg1', 'notawal', '/tmp/x'], code: 3, message: /"notawal" is not a WAL file name/ },
  { name: 'a WAL path that is not one (upload)', args: ['wal-upload', 'pg1', '/etc/hostname'], code: 3, message: /"hostname" is not a WAL file name/ },
  { name: 'a restore target time that is not a time', args: ['restore', 'pg1', 'latest', join('/tmp', 'cb-never'), '--target-time', 'yesterday'], code: 3, message: /is not a timestamp/ },
  { name: 'a restore target LSN that is not an LSN', args: ['restore', 'pg1', 'latest', join('/tmp', 'cb-never'), '--target-lsn', 'zz'], code: 3, message: /is not an LSN/ },
  { name: 'two recovery targets', args: ['restore', 'pg1', 'latest', join('/tmp', 'cb-never'), '--target-lsn', '0/1', '--target-time', '2026-01-01 00:00:00+00'], code: 3, message: /only one recovery target/ },
  { name: 'a target action without a target', args: ['restore', 'pg1', 'latest', join('/tmp', 'cb-never'), '--target-action', 'promote'], code: 3, message: /--target-action needs a recovery target/ },
  { name: 'a target time before the backup ended', args: ['restore', 'pg1', '20261120T030000Z', join('/tmp', 'cb-never'), '--target-time', '2026-11-20 03:01:00+00'], code: 3, message: /before|earlier|end/ },

  // --- the store
  { name: 'a local destination that does not exist', config: `[pg1]\ndestination = file:///nonexistent/cloudbarman\n`, args: ['list', 'pg1'], code: 3, message: /nonexistent/ },
  { name: 'an S3 endpoint nobody listens on', config: '[pg1]\ndestination = s3://exists/x\nendpoint_url = http://127.0.0.1:CLOSED\nretry_timeout = 1s\nconnect_timeout = 1s\n', args: ['list', 'pg1'], env: { AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'y' }, code: 2, message: /unreachable|ECONNREFUSED|connect/i },
  { name: 'a bucket that does not exist', config: '[pg1]\ndestination = s3://missing-bucket/x\nendpoint_url = S3\nretry_timeout = 1s\n', args: ['list', 'pg1'], env: { ...s3rverCredentials as unknown as Record<string, string> }, code: 3, message: /missing-bucket|bucket/ },
  { name: 'credentials the store refuses', config: '[pg1]\ndestination = s3://exists/x\nendpoint_url = S3\nretry_timeout = 1s\n', args: ['list', 'pg1'], env: { AWS_ACCESS_KEY_ID: 'WRONGKEY', AWS_SECRET_ACCESS_KEY: 'wrongsecretvalue123' }, code: 3, message: /credentials|denied|access/i, secret: 'wrongsecretvalue123' },
  { name: 'a truncated manifest', args: ['restore', 'pg1', '20261120T030000Z', 'DEST'], code: 4, message: /manifest.*(corrupt|damaged)|corrupt/ },
  { name: 'a catalog entry of an unknown format_version', args: ['show', 'pg9', '20261121T030000Z'], code: 4, message: /format_version 99/ },
  { name: 'a WAL object of an unknown format', args: ['wal-restore', 'pg1', '000000010000000000000005', join('/tmp', 'cb-never-wal')], code: 4, message: /format|version/ },
];

describe('bad-input corpus', () => {
  test('has at least 50 cases', () => {
    assert.ok(CASES.length >= 50, `${CASES.length} cases`);
  });

  for (const [i, c] of CASES.entries()) {
    test(c.name, async () => {
      let configPath = join(dir, 'ok.conf');
      if (c.config !== undefined) {
        configPath = join(dir, `case-${i}.conf`);
        const text = c.config.replace('CLOSED', String(closedPort)).replace('endpoint_url = S3', `endpoint_url = ${s3?.endpoint ?? ''}`);
        await writeFile(configPath, text);
      }
      const dest = join(dir, `dest-${i}`);
      const args = c.args.map((a) => (a === 'DEST' ? dest : a));
      const before = await readdir(store, { recursive: true });
      const env: Record<string, string> = { CLOUDBARMAN_CONFIG: configPath, AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '', ...(c.env ?? {}) };
      const r = await runCli(args, { env, timeoutMs: 30_000 });
      assert.equal(r.code, c.code, `exit code\n${r.stderr}`);
      assert.match(r.stderr, /^cloudbarman [a-z-]+: error: |^error: /m, r.stderr);
      assert.match(r.stderr, c.message);
      if (!r.stderr.startsWith('error:')) assert.match(r.stderr, /\n {2}hint: \S/, 'a hint follows the error');
      assert.doesNotMatch(r.stderr, /\n\s+at .+:\d+:\d+/, 'no stack trace');
      if (c.secret !== undefined) assert.ok(!r.stderr.includes(c.secret) && !r.stdout.includes(c.secret), 'the secret is not echoed');
      assert.deepEqual(await readdir(store, { recursive: true }), before, 'nothing written to the store');
      await assert.rejects(readdir(dest), { code: 'ENOENT' }, 'nothing written to the destination');
    });
  }
});

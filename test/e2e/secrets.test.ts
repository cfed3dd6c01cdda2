// Secrets never reach output, logs or the process list: every command runs with cloud credentials and
// a conninfo password set (against s3rver, and against a PostgreSQL port nobody listens on), with -v,
// in text and JSON, and everything it printed is scanned; a long-running daemon's process list entry is
// scanned while it runs; and a world-readable config file holding a password gets a warning.
// Starts: one s3rver and a daemon process.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CLI_BIN, runCli } from '../helpers/cli.ts';
import { freePort } from '../helpers/ports.ts';
import { makeTempDir, removeTempDir } from '../helpers/tmp.ts';
import { pollUntil } from '../helpers/postgres.ts';
import { startS3rver, s3rverCredentials, type S3rverHandle } from '../servers/s3rver.ts';

const PG_PASSWORD = 'pgPassw0rd-7f3a9c';
const AZURE_KEY = 'YXp1cmVrZXktc2VjcmV0LTkxMg==';
const GCS_KEY_MARKER = 'gcs-private-key-5b21';

let dir: string;
let s3: S3rverHandle | undefined;
let config: string;

before(async () => {
  dir = await makeTempDir('cb-secrets');
  s3 = await startS3rver({ buckets: ['secrets'] });
  const port = await freePort();
  config = join(dir, 'cloudbarman.conf');
  await writeFile(config, `[pg1]\ndestination = s3://secrets/x\nendpoint_url = ${s3.endpoint}\n` +
    `conninfo = host=127.0.0.1 port=${port} user=postgres password=${PG_PASSWORD} dbname=postgres connect_timeout=2\n` +
    `pgdata = ${dir}\nretry_timeout = 1s\nretention_policy = REDUNDANCY 1\nbackup_schedule = 0 0 1 1 *\n`);
  await chmod(config, 0o600);
});
after(async () => {
  await s3?.stop();
  if (dir) await removeTempDir(dir);
});

/**
 * Every secret the runs hold that can be told apart from ordinary text. s3rver's secret key is the
 * public constant "S3RVER", which is also its key id, so it cannot be scanned for; the S3 credential
 * path is covered by the wrong-credentials case of the bad-input corpus.
 */
function secrets(): string[] {
  return [PG_PASSWORD, AZURE_KEY, GCS_KEY_MARKER];
}

function env(): Record<string, string> {
  return {
    CLOUDBARMAN_CONFIG: config,
    AWS_ACCESS_KEY_ID: s3rverCredentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3rverCredentials.secretAccessKey,
    AZURE_STORAGE_KEY: AZURE_KEY,
    GOOGLE_APPLICATION_CREDENTIALS_JSON: GCS_KEY_MARKER,
    PGPASSWORD: PG_PASSWORD,
  };
}

const COMMANDS: string[][] = [
  ['list', 'pg1'], ['show', 'pg1', 'latest'], ['backup', 'pg1'], ['delete', 'pg1', '--retention', '--dry-run'], ['delete', 'pg1', '20200101T000000Z'],
  ['keep', 'pg1', 'latest', '--status'], ['restore', 'pg1', 'latest', '/nonexistent/restore'], ['wal-upload', 'pg1', '/nonexistent/000000010000000000000001'],
  ['wal-restore', 'pg1', '000000010000000000000001', '/tmp/cb-never'], ['check', 'pg1'], ['check', 'pg1', '--nagios'], ['cron'],
  ['list', 'pg1', '--conninfo', 'host=127.0.0.1 port=1'], ['--help'],
];

describe('secrets', () => {
  for (const args of COMMANDS) {
    for (const format of ['text', 'json']) {
      test(`${args.join(' ')} (${format}, -v) prints no secret`, async () => {
        const r = await runCli(['-v', '--format', format, ...args], { env: env(), timeoutMs: 60_000 });
        for (const secret of secrets()) {
          assert.ok(!r.stdout.includes(secret), `stdout holds a secret:\n${r.stdout}`);
          assert.ok(!r.stderr.includes(secret), `stderr holds a secret:\n${r.stderr}`);
        }
      });
    }
  }

  test('the process list of a running daemon holds no secret', async () => {
    const daemon = spawn(CLI_BIN, ['daemon', '--interval', '1'], { env: { ...process.env, ...env() }, stdio: ['ignore', 'pipe', 'pipe'] });
    const killer = setTimeout(() => daemon.kill('SIGKILL'), 60_000);
    let stderr = '';
    daemon.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    daemon.stdout.resume();
    const exited = new Promise<number | null>((r) => daemon.once('close', (code) => { clearTimeout(killer); r(code); }));
    try {
      await pollUntil(async () => (/pg1: check: /.test(stderr) ? true : undefined), { timeoutMs: 30_000, what: 'a daemon pass' });
      const { stdout } = await promisify(execFile)('ps', ['-eo', 'pid,args', '--no-headers'], { maxBuffer: 8 << 20 });
      assert.ok(stdout.includes('daemon --interval 1'), 'the daemon is in the process list');
      for (const secret of secrets()) assert.ok(!stdout.includes(secret), `the process list holds a secret:\n${stdout}`);
    } finally {
      daemon.kill('SIGTERM');
      assert.equal(await exited, 0, stderr);
    }
    for (const secret of secrets()) assert.ok(!stderr.includes(secret));
  });

  test('a config file with a password that every user may read gets a warning; 600 and 640 do not', async () => {
    await chmod(config, 0o644);
    const loud = await runCli(['list', 'pg1'], { env: env() });
    assert.match(loud.stderr, /config file .* holds a password \(conninfo\) and every user on this host may read it: chmod 640/);
    assert.ok(!loud.stderr.includes(PG_PASSWORD));
    await chmod(config, 0o640);
    const quiet = await runCli(['list', 'pg1'], { env: env() });
    assert.doesNotMatch(quiet.stderr, /holds a password/);
    await chmod(config, 0o600);
  });
});

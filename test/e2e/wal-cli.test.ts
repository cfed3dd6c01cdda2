// The CLI as a process, as archive_command/restore_command and operators run it: exit codes,
// messages and what is (not) written, against a local directory and s3rver.
// Starts: one s3rver for the file.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { runCli } from '../helpers/cli.ts';
import { freePort } from '../helpers/ports.ts';
import { startS3rver, s3rverCredentials, type S3rverHandle } from '../servers/s3rver.ts';

let s3: S3rverHandle;
let dir: string;
const SECRET = `SeCrEt-${randomBytes(8).toString('hex')}`;

before(async () => {
  s3 = await startS3rver({ buckets: ['e2e'] });
  dir = await mkdtemp(join(tmpdir(), 'cb-e2e-'));
  await mkdir(join(dir, 'pg_wal'));
});
after(async () => {
  await s3?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function segment(name: string, bytes = 256 * 1024): Promise<string> {
  const p = join(dir, 'pg_wal', name);
  await writeFile(p, randomBytes(bytes));
  return p;
}

const stores = {
  local: async () => {
    const root = await mkdtemp(join(dir, 'store-'));
    return { args: ['--destination', pathToFileURL(root).href], env: {} as Record<string, string> };
  },
  s3: async () => ({
    args: ['--destination', `s3://e2e/${randomBytes(4).toString('hex')}`, '--endpoint-url', s3.endpoint],
    env: { AWS_ACCESS_KEY_ID: s3rverCredentials.accessKeyId, AWS_SECRET_ACCESS_KEY: s3rverCredentials.secretAccessKey },
  }),
};

for (const [kind, makeStore] of Object.entries(stores)) {
  describe(`${kind} store`, () => {
    test('a different segment under an archived name exits 4 and leaves the archived one', async () => {
      const { args, env } = await makeStore();
      const name = '000000010000000000000042';
      const first = await segment(name);
      const original = await readFile(first);
      assert.equal((await runCli(['wal-upload', 'pg1', first, ...args], { env })).code, 0);
      const same = await runCli(['wal-upload', 'pg1', first, ...args], { env });
      assert.equal(same.code, 0);
      assert.match(same.stderr, /already archived with identical content/);
      await writeFile(first, randomBytes(256 * 1024));
      const clash = await runCli(['wal-upload', 'pg1', first, ...args], { env });
      assert.equal(clash.code, 4, clash.stderr);
      assert.match(clash.stderr, /000000010000000000000042 is already archived .* with different content/);
      assert.doesNotMatch(clash.stderr, /\n\s+at /, 'no stack trace');
      const back = join(dir, 'back-42');
      assert.equal((await runCli(['wal-restore', 'pg1', name, back, ...args], { env })).code, 0);
      assert.ok((await readFile(back)).equals(original), 'the archived content is unchanged');
    });

    test('a segment that is not archived exits 1 and writes nothing', async () => {
      const { args, env } = await makeStore();
      const dest = join(dir, 'pg_wal', 'RECOVERYXLOG');
      const r = await runCli(['wal-restore', 'pg1', '000000010000000000000099', dest, ...args], { env });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /000000010000000000000099 is not in the archive/);
      assert.ok(!(await readdir(join(dir, 'pg_wal'))).some((f) => f.includes('RECOVERYXLOG')));
    });

    test('--format json prints one document with the result', async () => {
      const { args, env } = await makeStore();
      const r = await runCli(['--format', 'json', 'wal-upload', 'pg1', await segment('000000010000000000000050'), ...args], { env });
      assert.equal(r.code, 0, r.stderr);
      const doc = JSON.parse(r.stdout) as { status: string; name: string; key: string };
      assert.equal(doc.status, 'uploaded');
      assert.equal(doc.key, 'pg1/wals/0000000100000000/000000010000000000000050.zst');
    });
  });
}

describe('unreachable and missing stores', () => {
  let closed: string;
  before(async () => { closed = `http://127.0.0.1:${await freePort()}`; });
  const unreachable = () => ['--destination', 's3://e2e/x', '--endpoint-url', closed, '--retry-timeout', '1s', '--connect-timeout', '1s'];
  const env = { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: SECRET };

  test('wal-upload to an unreachable endpoint exits 2 with a hint, and never shows the secret', async () => {
    const r = await runCli(['-v', 'wal-upload', 'pg1', await segment('000000010000000000000060'), ...unreachable()], { env });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /archiving 000000010000000000000060 failed on s3:\/\/e2e\/x/);
    assert.match(r.stderr, /hint: check endpoint_url/);
    assert.ok(!r.stderr.includes(SECRET) && !r.stdout.includes(SECRET), 'secret leaked');
  });

  test('wal-restore exit depends on the recovery mode: 2 plain, 128 targeted, 2 standby', async () => {
    const pgdata = await mkdtemp(join(dir, 'pgdata-'));
    await mkdir(join(pgdata, 'pg_wal'));
    const run = () => runCli(['wal-restore', 'pg1', '000000010000000000000061', 'pg_wal/RECOVERYXLOG', ...unreachable()], { env, cwd: pgdata });
    assert.equal((await run()).code, 2);
    await writeFile(join(pgdata, 'recovery.signal'), '');
    const targeted = await run();
    assert.equal(targeted.code, 128, targeted.stderr);
    assert.match(targeted.stderr, /aborting recovery rather than ending it early/);
    await writeFile(join(pgdata, 'standby.signal'), '');
    assert.equal((await run()).code, 2);
  });

  test('a missing bucket exits 3 and says to create it', async () => {
    const r = await runCli(['wal-upload', 'pg1', await segment('000000010000000000000062'), '--destination', 's3://no-such-bucket/p', '--endpoint-url', s3.endpoint],
      { env: { AWS_ACCESS_KEY_ID: s3rverCredentials.accessKeyId, AWS_SECRET_ACCESS_KEY: s3rverCredentials.secretAccessKey } });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /create the bucket/);
  });

  test('a missing local directory exits 3 and nothing is created', async () => {
    const missing = join(dir, 'no-such-dir');
    const r = await runCli(['wal-upload', 'pg1', await segment('000000010000000000000063'), '--destination', pathToFileURL(missing).href]);
    assert.equal(r.code, 3, r.stderr);
    await assert.rejects(readdir(missing), { code: 'ENOENT' });
  });
});

describe('bad config and usage', () => {
  test('a malformed config file exits 3 naming the file, the line and the option', async () => {
    const conf = join(dir, 'bad.conf');
    await writeFile(conf, '[pg1]\ndestination = file:///tmp\nminimum_redundancy = two\n');
    const r = await runCli(['-c', conf, 'wal-upload', 'pg1', await segment('000000010000000000000070')]);
    assert.equal(r.code, 3, r.stderr);
    assert.ok(r.stderr.includes(`${conf}:3`), r.stderr);
    assert.match(r.stderr, /minimum_redundancy/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });

  test('an unknown option gets a suggestion', async () => {
    const conf = join(dir, 'typo.conf');
    await writeFile(conf, '[pg1]\ndestination = file:///tmp\ncompresion = zstd\n');
    const r = await runCli(['-c', conf, 'wal-upload', 'pg1', await segment('000000010000000000000071')]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /compresion/);
    assert.match(r.stderr, /compression/);
  });

  test('a missing -c file and a missing argument exit 3', async () => {
    assert.equal((await runCli(['-c', join(dir, 'nope.conf'), 'wal-upload', 'pg1', 'x'])).code, 3);
    assert.equal((await runCli(['wal-upload', 'pg1'])).code, 3);
    assert.equal((await runCli(['no-such-command'])).code, 3);
  });

  test('--help documents the exit codes', async () => {
    const r = await runCli(['--help']);
    assert.equal(r.code, 0);
    for (const code of ['0', '1', '2', '3', '4', '5', '128']) assert.match(r.stdout, new RegExp(`^\\s+${code}  `, 'm'));
    const sub = await runCli(['wal-restore', '--help']);
    assert.match(sub.stdout, /restore_command/);
    assert.match(sub.stdout, /--destination/);
  });
});

// The scheduler on real PostgreSQL 15 with a local store: two `cloudbarman cron` processes started
// together take exactly one scheduled backup between them (leases), a later pass applies retention,
// and `cloudbarman daemon` stops cleanly on SIGTERM. Starts: one cluster, a daemon process.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chown, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  assertReadableByPgUser, makePgTempDir, mkdirForPgUser, pgOsUser, pollUntil, startCluster, type Cluster,
} from '../helpers/postgres.ts';
import { CLI_BIN, runCli } from '../helpers/cli.ts';

const SERVER = 'sched15';

let work: string;
before(async () => {
  await assertReadableByPgUser(CLI_BIN);
  work = await makePgTempDir('cb-scheduler');
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe('scheduler on PostgreSQL 15', () => {
  let primary: Cluster | undefined;
  after(async () => {
    await primary?.destroy();
  });

  test('two cron passes at once take one backup; retention runs in the pass; daemon stops on SIGTERM', async () => {
    const storeDir = await mkdirForPgUser(join(work, 'store'));
    const config = join(work, 'cloudbarman.conf');
    const env = { CLOUDBARMAN_CONFIG: config };
    // The schedule fired last on 1 January: due until a backup begins, then not until next year,
    // so the test does not depend on where a minute boundary falls.
    const write = async (conninfo: string, pgdata: string): Promise<void> => {
      await writeFile(config, `[cloudbarman]\ncompression = zstd\nretry_timeout = 5s\nwal_archive_timeout = 60s\n\n` +
        `[${SERVER}]\ndestination = ${pathToFileURL(storeDir).href}\nconninfo = ${conninfo}\npgdata = ${pgdata}\n` +
        `backup_schedule = 0 0 1 1 *\nretention_policy = REDUNDANCY 1\n`);
      await chown(config, pgOsUser().uid, pgOsUser().gid);
    };
    await write('host=127.0.0.1 user=postgres dbname=postgres', '/nonexistent');
    primary = await startCluster({
      version: 15, env, fsync: false,
      conf: { wal_level: 'replica', archive_mode: 'on', archive_command: `'${CLI_BIN} wal-upload ${SERVER} %p'` },
    });
    await write(`host=127.0.0.1 port=${primary.port} user=postgres dbname=postgres`, primary.dataDir);
    await primary.query('CREATE TABLE t (id int)');

    const [first, second] = await Promise.all([
      runCli(['cron'], { env, timeoutMs: 180_000 }),
      runCli(['cron'], { env, timeoutMs: 180_000 }),
    ]);
    const list = async (): Promise<Array<{ id: string; status: string }>> => {
      const r = await runCli(['--format', 'json', 'list', SERVER], { env });
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as Array<{ id: string; status: string }>;
    };
    const backups = await list();
    assert.equal(backups.length, 1, `exactly one backup between two schedulers:\n${first.stdout}${first.stderr}\n---\n${second.stdout}${second.stderr}`);
    assert.equal(backups[0]?.status, 'DONE');
    const outputs = [first, second];
    assert.equal(outputs.filter((r) => /sched15: backup: ok \(backup \d{8}T\d{6}Z DONE/.test(r.stdout)).length, 1, 'one pass took the backup');
    for (const r of outputs) {
      // The other pass either found the lease held (exit 5) or, having waited its turn, found the backup taken.
      assert.ok(r.code === 0 || (r.code === 5 && /held by cron on/.test(r.stdout + r.stderr)), `exit ${r.code}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /sched15: check: ok \(store reachable\)/);
    }

    // A manual backup after the firing: the next pass takes none, and REDUNDANCY 1 removes the older one.
    const manual = await runCli(['--format', 'json', 'backup', SERVER], { env, timeoutMs: 180_000 });
    assert.equal(manual.code, 0, manual.stderr);
    const manualId = (JSON.parse(manual.stdout) as { id: string }).id;
    const pass = await runCli(['--format', 'json', 'cron', SERVER], { env, timeoutMs: 180_000 });
    assert.equal(pass.code, 0, pass.stderr);
    const reports = JSON.parse(pass.stdout) as Array<{ step: string; outcome: string; detail: string }>;
    assert.equal(reports.find((r) => r.step === 'backup')?.outcome, 'skipped');
    assert.match(reports.find((r) => r.step === 'retention')?.detail ?? '', /deleted 1 backups/);
    assert.deepEqual((await list()).map((b) => b.id), [manualId]);

    // Unknown servers are bad input; the daemon runs passes until SIGTERM and then exits 0.
    const unknown = await runCli(['cron', 'nope'], { env });
    assert.equal(unknown.code, 3);
    assert.match(unknown.stderr, /nope is not configured.*sched15/s);
    const daemon = spawn(CLI_BIN, ['daemon', '--interval', '1'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const killer = setTimeout(() => daemon.kill('SIGKILL'), 120_000);
    let stderr = '';
    let stdout = '';
    daemon.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    daemon.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    const exited = new Promise<number | null>((r) => daemon.once('close', (code) => { clearTimeout(killer); r(code); }));
    await pollUntil(async () => ((stderr.match(/retention: ok/g) ?? []).length >= 2 ? true : undefined), { timeoutMs: 60_000, what: 'two daemon passes' });
    daemon.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
    assert.match(stderr, /SIGTERM received: stopping/);
    assert.match(stdout, /stopped after \d+ passes/);
  });
});

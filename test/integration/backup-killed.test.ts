// A backup killed with SIGKILL in the middle of its upload leaves a STARTED entry, never a DONE one,
// and the next backup succeeds. Real PostgreSQL 15, local store.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chown, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { assertReadableByPgUser, makePgTempDir, mkdirForPgUser, pgOsUser, pollUntil, startCluster, type Cluster } from '../helpers/postgres.ts';
import { CLI_BIN, runCli } from '../helpers/cli.ts';

let work: string;
let cluster: Cluster | undefined;
before(async () => {
  await assertReadableByPgUser(CLI_BIN);
  work = await makePgTempDir('cb-killed');
});
after(async () => {
  await cluster?.destroy();
  if (work) await rm(work, { recursive: true, force: true });
});

test('SIGKILL mid-upload leaves STARTED, and the next backup is DONE', async () => {
  const store = await mkdirForPgUser(join(work, 'store'));
  const conf = join(work, 'cloudbarman.conf');
  await writeFile(conf, `[killed]\ndestination = ${pathToFileURL(store).href}\nbackup_compression = gzip\npart_size = 5MiB\n`);
  await chown(conf, pgOsUser().uid, pgOsUser().gid);
  const env = { CLOUDBARMAN_CONFIG: conf };
  cluster = await startCluster({
    version: 15, env, fsync: false,
    conf: { wal_level: 'replica', archive_mode: 'on', archive_command: `'${CLI_BIN} wal-upload killed %p'` },
  });
  // Incompressible-ish data so that gzip keeps the backup busy for a while.
  await cluster.query("CREATE TABLE filler AS SELECT g, md5(random()::text) || md5(random()::text) AS t FROM generate_series(1, 1500000) g");

  const pgArgs = ['--pgdata', cluster.dataDir, '--conninfo', `host=127.0.0.1 port=${cluster.port} user=postgres dbname=postgres`];
  const child = spawn(CLI_BIN, ['backup', 'killed', '--jobs', '1', ...pgArgs], { env: { ...process.env, ...env }, stdio: 'ignore' });
  const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
  const dataDir = await pollUntil(async () => {
    const base = join(store, 'killed', 'base');
    const ids = await readdir(base).catch(() => [] as string[]);
    for (const id of ids) {
      const parts = await readdir(join(base, id, 'data')).catch(() => [] as string[]);
      if (parts.filter((p) => !p.startsWith('.')).length >= 2) return join(base, id);
    }
    return undefined;
  }, { timeoutMs: 120_000, intervalMs: 20, what: 'the backup to upload two parts' });
  child.kill('SIGKILL');
  await exited;
  assert.ok(dataDir.length > 0);

  const list = await runCli(['--format', 'json', 'list', 'killed'], { env });
  assert.equal(list.code, 0, list.stderr);
  const killed = JSON.parse(list.stdout) as Array<{ id: string; status: string }>;
  assert.equal(killed.length, 1);
  assert.equal(killed[0]?.status, 'STARTED', 'a killed backup is never DONE');

  const again = await runCli(['--format', 'json', 'backup', 'killed', ...pgArgs], { env, timeoutMs: 300_000 });
  assert.equal(again.code, 0, again.stderr);
  const after2 = JSON.parse((await runCli(['--format', 'json', 'list', 'killed'], { env })).stdout) as Array<{ id: string; status: string }>;
  assert.deepEqual(after2.map((b) => b.status), ['STARTED', 'DONE']);
  assert.notEqual(after2[0]?.id, after2[1]?.id);
});

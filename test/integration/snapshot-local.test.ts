// Snapshot backup and point-in-time restore end to end with the local snapshotter, on real PostgreSQL 15 and 18:
// pgdata on one "disk" (a directory) and a tablespace on a second, WAL archived through cloudbarman into a local
// store, `backup --method snapshot` under pgbench load, marks committed at recorded times after it, then the
// source instance destroyed (its disks removed) and `restore --snapshot-recovery-instance fresh --create-disks
// --target-time` onto a fresh instance; PostgreSQL started on the result must hold exactly the marks before the
// target. Starts: two clusters per version (the source and the restored one); no store server.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chown, mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { createSnapshotter } from '../../providers/local/snapshotter.ts';
import {
  assertReadableByPgUser, createCluster, makePgTempDir, mkdirForPgUser, pgOsUser, switchWal, waitForArchived, type Cluster, type PgVersion,
} from '../helpers/postgres.ts';
import { CLI_BIN, runCli } from '../helpers/cli.ts';

const PGBENCH = '/usr/lib/postgresql/15/bin/pgbench';
const VERSIONS: readonly PgVersion[] = [15, 18];

let work: string;

before(async () => {
  await assertReadableByPgUser(CLI_BIN);
  work = await makePgTempDir('cb-snapshot');
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

/** Runs pgbench (Debian's 15 client speaks to every server version) for `seconds`. */
function pgbench(cluster: Cluster, args: string[], seconds: number): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(PGBENCH, [...args, '-h', '127.0.0.1', '-p', String(cluster.port), '-U', 'postgres', 'postgres'], { stdio: 'ignore' });
    const timer = setTimeout(() => child.kill('SIGKILL'), (seconds + 60) * 1000);
    child.once('error', (err) => { clearTimeout(timer); reject(err); });
    child.once('close', (code) => { clearTimeout(timer); resolvePromise(code ?? -1); });
  });
}

interface Mark { id: number; time: string }

async function commitMark(cluster: Cluster, id: number): Promise<Mark> {
  await cluster.query('INSERT INTO marks VALUES ($1, now())', [id]);
  const row = (await cluster.query<{ t: string }>("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS t"))[0];
  if (row === undefined) throw new Error('no row');
  return { id, time: row.t };
}

for (const version of VERSIONS) {
  describe(`PostgreSQL ${version}: snapshot backup with the local snapshotter, restored onto a fresh instance`, () => {
    const clusters: Cluster[] = [];
    after(async () => {
      for (const c of clusters) await c.destroy();
    });

    test('backup under pgbench load, source destroyed, restore to a time on new disks: exactly the marks before it', async () => {
      const server = `snap${version}`;
      const storeDir = await mkdirForPgUser(join(work, `store-${version}`));
      const snapshotDir = join(storeDir, '.snapshots');
      const diskData = await mkdirForPgUser(join(work, `disk-data-${version}`));
      const diskSpc = await mkdirForPgUser(join(work, `disk-spc-${version}`));
      const pgdata = join(diskData, 'pgdata');
      const config = join(work, `cloudbarman-${version}.conf`);
      await writeFile(config, [
        `[${server}]`, `destination = ${pathToFileURL(storeDir).href}`, 'compression = zstd', 'retry_timeout = 5s', 'wal_archive_timeout = 60s',
        'snapshot_provider = local', 'snapshot_instance = source', `snapshot_disks = ${diskData},${diskSpc}`, 'snapshot_timeout = 5min', '',
      ].join('\n'));
      await chown(config, pgOsUser().uid, pgOsUser().gid);
      const env = { CLOUDBARMAN_CONFIG: config };

      // The source instance: pgdata on one disk, initdb'd elsewhere and moved there; a tablespace on the other.
      const initial = await createCluster({ version, fsync: false });
      await rename(initial.dataDir, pgdata);
      await initial.destroy();
      const primary = await createCluster({
        version, env, fsync: false, dataDir: pgdata,
        conf: { wal_level: 'replica', archive_mode: 'on', archive_command: `'${CLI_BIN} wal-upload ${server} %p'` },
      });
      clusters.push(primary);
      await primary.start();
      const spc = await mkdirForPgUser(join(diskSpc, 'ts'));
      await primary.query(`CREATE TABLESPACE extra LOCATION '${spc}'`);
      await primary.query('CREATE TABLE marks (id int PRIMARY KEY, at timestamptz) TABLESPACE extra');
      assert.equal(await pgbench(primary, ['-i', '-q', '-s', '1'], 60), 0, 'pgbench -i');
      await primary.query('ALTER TABLE pgbench_history SET TABLESPACE extra');
      // Attach the two disks to the source instance, as a cloud console attaches volumes to a VM.
      const local = await createSnapshotter({ localSnapshotDir: snapshotDir, operationTimeoutMs: 60_000, sleep: (ms) => sleep(ms) });
      await local.attachDisk('source', diskData);
      await local.attachDisk('source', diskSpc);
      await local.close();

      const load = pgbench(primary, ['-n', '-c', '2', '-T', '5'], 5);
      const backup = await runCli(['--format', 'json', 'backup', server, '--method', 'snapshot', '--pgdata', pgdata,
        '--conninfo', `host=127.0.0.1 port=${primary.port} user=postgres dbname=postgres`], { env, timeoutMs: 120_000 });
      assert.equal(backup.code, 0, backup.stderr);
      assert.equal(await load, 0, 'pgbench');
      const info = JSON.parse(backup.stdout) as { id: string; status: string; method: string; snapshots: Array<{ id: string; mount_point: string; contents: string[] }> };
      assert.equal(info.status, 'DONE');
      assert.equal(info.method, 'snapshot');
      assert.deepEqual(info.snapshots.map((s) => [s.mount_point, s.contents]), [[diskData, ['pgdata']], [diskSpc, ['tablespace extra']]]);

      const marks: Mark[] = [];
      for (let i = 1; i <= 4; i++) marks.push(await commitMark(primary, i));
      await waitForArchived(primary, await switchWal(primary), 60_000);

      const show = await runCli(['--format', 'json', 'show', server, info.id], { env });
      assert.equal(show.code, 0, show.stderr);
      const shown = JSON.parse(show.stdout) as { pgdata: string; snapshots: Array<{ id: string }> };
      assert.equal(shown.pgdata, pgdata);
      assert.deepEqual(shown.snapshots.map((s) => s.id), info.snapshots.map((s) => s.id));

      // The source instance is gone: PostgreSQL stopped, both disks destroyed. A fresh instance exists, with no disks.
      await primary.destroy();
      await rm(diskData, { recursive: true, force: true });
      await rm(diskSpc, { recursive: true, force: true });
      await mkdir(join(snapshotDir, 'instances', 'fresh'), { recursive: true });

      const refused = await runCli(['restore', server, info.id, pgdata], { env });
      assert.equal(refused.code, 3, 'a snapshot backup needs --snapshot-recovery-instance');
      assert.match(refused.stderr, /is a snapshot backup.*--snapshot-recovery-instance/s);

      const restore = await runCli(['restore', server, 'latest', pgdata, '--snapshot-recovery-instance', 'fresh', '--create-disks',
        '--target-time', marks[1]?.time ?? '', '--target-action', 'promote'], { env, timeoutMs: 120_000 });
      assert.equal(restore.code, 0, restore.stderr);
      assert.match(restore.stdout, /from snapshot .*, created now, at /);

      const restored = await createCluster({ version, env, fsync: false, dataDir: pgdata });
      clusters.push(restored);
      await restored.start({ waitForRecovery: true });
      const rows = await restored.query<{ id: number }>('SELECT id FROM marks ORDER BY id');
      assert.deepEqual(rows.map((r) => r.id), [1, 2], `marks after restore\n${await restored.logText()}`);
      const accounts = await restored.query<{ n: string }>('SELECT count(*) AS n FROM pgbench_accounts');
      assert.equal(accounts[0]?.n, '100000', 'pgbench data restored');
      const history = await restored.query<{ spc: string }>("SELECT spcname AS spc FROM pg_tablespace t JOIN pg_class c ON c.reltablespace = t.oid WHERE c.relname = 'pgbench_history'");
      assert.equal(history[0]?.spc, 'extra');
      await restored.query('SELECT count(*) FROM pgbench_history');
      // Recovery read the restore's tablespace_map and backup_label, and set them aside as it does.
      await stat(join(pgdata, 'tablespace_map.old'));
      await stat(join(pgdata, 'backup_label.old'));
      await restored.stop('fast');

      // Deleting the backup through the CLI deletes its snapshots too, then its entry.
      const snapshotIds = info.snapshots.map((s) => s.id);
      const before = await readdir(join(snapshotDir, 'snapshots')).catch(() => [] as string[]);
      assert.ok(snapshotIds.every((id) => before.includes(id)), `snapshots on disk: ${before.join(', ')}`);
      const deleted = await runCli(['delete', server, info.id], { env });
      assert.equal(deleted.code, 0, deleted.stderr);
      const after = await readdir(join(snapshotDir, 'snapshots')).catch(() => [] as string[]);
      assert.ok(!snapshotIds.some((id) => after.includes(id)), `snapshots left: ${after.join(', ')}`);
      const listed = await runCli(['--format', 'json', 'list', server], { env });
      assert.deepEqual((JSON.parse(listed.stdout) as unknown[]).length, 0);
    });
  });
}

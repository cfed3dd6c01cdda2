// Point-in-time restore on real PostgreSQL 15 and 18 with a local store: archive_command is
// `cloudbarman wal-upload`, `cloudbarman backup` takes the base backup, marked rows are committed at
// recorded times, and `cloudbarman restore --target-time` between two marks (with a relocated
// tablespace) must give a cluster that holds exactly the marks committed before the target.
// Starts: a primary and a restored cluster per version; no store servers.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chown, mkdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  assertReadableByPgUser, createCluster, makePgTempDir, mkdirForPgUser, pgOsUser, runAsPgUser, startCluster, switchWal, waitForArchived,
  type Cluster, type PgVersion,
} from '../helpers/postgres.ts';
import { CLI_BIN, runCli } from '../helpers/cli.ts';

let work: string;

before(async () => {
  await assertReadableByPgUser(CLI_BIN);
  work = await makePgTempDir('cb-restore-it');
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

interface Mark { id: number; time: string }

/** Commits mark `id` and returns the server's clock just after the commit: a target there includes it. */
async function commitMark(cluster: Cluster, id: number): Promise<Mark> {
  await cluster.query('INSERT INTO marks VALUES ($1, clock_timestamp())', [id]);
  const row = (await cluster.query<{ t: string }>("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS t"))[0];
  if (row === undefined) throw new Error('no clock_timestamp row');
  return { id, time: row.t };
}

for (const version of [15, 18] as const satisfies readonly PgVersion[]) {
  describe(`PostgreSQL ${version}, local store`, () => {
    let primary: Cluster | undefined;
    let restored: Cluster | undefined;
    after(async () => {
      await restored?.destroy();
      await primary?.destroy();
    });

    test('restore --target-time between two marks gives exactly the marks before it, tablespace relocated', async () => {
      const server = `restore${version}`;
      const store = await mkdirForPgUser(join(work, `store-${version}`));
      const config = join(work, `cloudbarman-${version}.conf`);
      await writeFile(config, `[${server}]\ndestination = ${pathToFileURL(store).href}\ncompression = zstd\nretry_timeout = 5s\nwal_archive_timeout = 60s\n`);
      await chown(config, pgOsUser().uid, pgOsUser().gid);
      const env = { CLOUDBARMAN_CONFIG: config };

      primary = await startCluster({
        version, env, fsync: false,
        conf: { wal_level: 'replica', archive_mode: 'on', archive_command: `'${CLI_BIN} wal-upload ${server} %p'` },
      });
      const spc = await mkdirForPgUser(join(work, `spc-${version}`));
      await primary.query(`CREATE TABLESPACE extra LOCATION '${spc}'`);
      await primary.query('CREATE TABLE marks (id int PRIMARY KEY, at timestamptz) TABLESPACE extra');
      await primary.query("CREATE TABLE filler AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 50000) g");

      // As PostgreSQL's OS user, like archive_command: both write into the same store.
      const backup = await runAsPgUser(CLI_BIN, ['--format', 'json', 'backup', server, '--jobs', '2',
        '--conninfo', `host=127.0.0.1 port=${primary.port} user=postgres dbname=postgres`, '--pgdata', primary.dataDir], { env, timeoutMs: 300_000 });
      assert.equal(backup.code, 0, `${backup.stderr}\n${await primary.logText()}`);
      const backupId = (JSON.parse(backup.stdout) as { id: string }).id;

      const marks: Mark[] = [];
      for (let id = 1; id <= 4; id++) marks.push(await commitMark(primary, id));
      await waitForArchived(primary, await switchWal(primary), 60_000);

      // Refused: a destination that is not empty (exit 3), before anything is written.
      const busy = join(work, `busy-${version}`);
      await mkdir(busy);
      await writeFile(join(busy, 'keep'), '');
      const refused = await runCli(['restore', server, 'latest', busy], { env });
      assert.equal(refused.code, 3, refused.stderr);
      assert.match(refused.stderr, /is not empty \(keep\)/);

      // Refused: a target before the backup ended (exit 3).
      const early = await runCli(['restore', server, 'latest', join(work, `early-${version}`), '--target-time', '2000-01-01 00:00:00+00'], { env });
      assert.equal(early.code, 3, early.stderr);
      assert.match(early.stderr, /before the end of the oldest backup/);

      const dest = join(work, `restored-${version}`);
      const moved = join(work, `spc-moved-${version}`);
      const r = await runCli(['--format', 'json', 'restore', server, 'latest', dest,
        '--target-time', marks[1]?.time ?? '', '--target-action', 'promote', '--tablespace', `extra:${moved}`, '--jobs', '2'], { env, timeoutMs: 300_000 });
      assert.equal(r.code, 0, r.stderr);
      const result = JSON.parse(r.stdout) as { backup_id: string; files: number; signal_file: string; next_step: string; recovery_settings: Record<string, string> };
      assert.equal(result.backup_id, backupId);
      assert.equal(result.signal_file, 'recovery.signal');
      assert.equal(result.next_step, `pg_ctl -D ${dest} start`);
      assert.match(result.recovery_settings['restore_command'] ?? '', new RegExp(`^'${CLI_BIN} -c ${config} wal-restore ${server} %f %p'$`));
      assert.equal(result.recovery_settings['archive_command'], "'false'", 'the restored cluster must not archive into its source\'s archive');
      await assert.rejects(stat(join(dest, 'cloudbarman_restore_incomplete')), { code: 'ENOENT' });
      assert.equal(await readlink(join(dest, 'pg_tblspc', (await primary.query<{ oid: number }>("SELECT oid FROM pg_tablespace WHERE spcname = 'extra'"))[0]?.oid.toString() ?? '')), moved);
      assert.match(await readFile(join(dest, 'backup_label'), 'utf8'), /^START WAL LOCATION: /);

      restored = await createCluster({ version, env, fsync: false, dataDir: dest });
      await restored.start({ waitForRecovery: true });
      const rows = await restored.query<{ id: number }>('SELECT id FROM marks ORDER BY id');
      assert.deepEqual(rows.map((x) => x.id), [1, 2], `marks after restore\n${await restored.logText()}`);
      const filler = await restored.query<{ n: string }>('SELECT count(*) AS n FROM filler');
      assert.equal(filler[0]?.n, '50000');
      const location = await restored.query<{ l: string }>("SELECT pg_tablespace_location(oid) AS l FROM pg_tablespace WHERE spcname = 'extra'");
      assert.equal(location[0]?.l, moved);
      assert.match(await restored.logText(), /recovery stopping before commit of transaction \d+, time /);
      // After promotion nothing of the new timeline reached the source's archive.
      const history = await runCli(['wal-restore', server, '00000002.history', join(work, `history-${version}`)], { env });
      assert.equal(history.code, 1, `00000002.history must not be archived: ${history.stderr}`);
    });
  });
}

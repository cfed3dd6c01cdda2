// Real PostgreSQL 15, 16, 17 and 18 archive through `cloudbarman wal-upload` (archive_command) into a
// local directory and into s3rver (and, on 15 and 18, into azurite and the GCS test server), and a
// second cluster replays through `cloudbarman wal-restore`.
// Starts: one PostgreSQL cluster pair per version and store, and the store servers for the file.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chown, readdir, readFile, rm, writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  PG_VERSIONS, assertReadableByPgUser, copyBaseBackup, createCluster, makePgTempDir, pgOsUser, startCluster,
  switchWal, waitForArchived, type Cluster, type PgVersion,
} from '../helpers/postgres.ts';
import { CLI_BIN, runCli } from '../helpers/cli.ts';
import { StoreServers, type StoreFixture, type StoreKind } from '../helpers/stores.ts';

let stores: StoreServers | undefined;
let work: string;

before(async () => {
  await assertReadableByPgUser(CLI_BIN);
  work = await makePgTempDir('cb-walit');
  stores = await StoreServers.start(['local', 's3', 'azure', 'gcs'], work);
});
after(async () => {
  await stores?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** Writes a config file the pg user can read, as an operator would, and returns the env to use it. */
async function configure(version: PgVersion, kind: StoreKind): Promise<{ env: Record<string, string>; server: string; store: StoreFixture }> {
  const server = `pg${version}`;
  assert.ok(stores, 'the stores did not start');
  const store = await stores.fixture(kind, `wal-${version}-${kind}`);
  const env: Record<string, string> = { ...store.env };
  const file = join(work, `cloudbarman-${version}-${kind}.conf`);
  await writeFile(file, `# written by the integration test\n[cloudbarman]\ncompression = zstd\nretry_timeout = 5s\n\n[${server}]\ndescription = "PostgreSQL ${version}"\n${store.section}`);
  await chown(file, pgOsUser().uid, pgOsUser().gid);
  env['CLOUDBARMAN_CONFIG'] = file;
  return { env, server, store };
}

async function count(cluster: Cluster): Promise<number> {
  const rows = await cluster.query<{ n: string }>('SELECT count(*) AS n FROM marks');
  return Number(rows[0]?.n);
}

for (const version of PG_VERSIONS) {
  // Azure and GCS on the oldest and newest supported versions, as the provider issue asks.
  const kinds: StoreKind[] = version === 15 || version === 18 ? ['local', 's3', 'azure', 'gcs'] : ['local', 's3'];
  for (const kind of kinds) {
    describe(`PostgreSQL ${version}, ${kind} store`, () => {
      let primary: Cluster | undefined;
      let replica: Cluster | undefined;
      let backupDir: string | undefined;
      after(async () => {
        await replica?.destroy();
        await primary?.destroy();
        if (backupDir) await rm(backupDir, { recursive: true, force: true });
      });

      test('every archived segment is stored, restores byte-identical, and a second cluster replays to the same data', async () => {
        const { env, server, store } = await configure(version, kind);
        primary = await startCluster({
          version, env, fsync: false,
          conf: { wal_level: 'replica', archive_mode: 'on', archive_command: `'${CLI_BIN} wal-upload ${server} %p'`, archive_timeout: '0' },
        });
        await primary.query('CREATE TABLE marks (id int PRIMARY KEY, payload text)');
        await primary.query("INSERT INTO marks SELECT g, md5(g::text) FROM generate_series(1, 1000) g");
        backupDir = join(work, `base-${version}-${kind}`);
        await copyBaseBackup(primary, backupDir);
        // Real writes across several segments, with switches in between.
        for (let round = 0; round < 3; round++) {
          await primary.query(`INSERT INTO marks SELECT g, repeat(md5(g::text), 20) FROM generate_series(${2000 + round * 5000}, ${2000 + round * 5000 + 4999}) g`);
          await switchWal(primary);
        }
        // Write again before the last switch: pg_switch_wal() with nothing new is a no-op.
        await primary.query("INSERT INTO marks VALUES (-1, 'last')");
        const expected = await count(primary);
        const last = await switchWal(primary);
        await waitForArchived(primary, last, 60_000);

        const archiver = (await primary.query<{ archived_count: string; failed_count: string }>('SELECT archived_count, failed_count FROM pg_stat_archiver'))[0];
        assert.equal(archiver?.failed_count, '0', `archive_command failed:\n${await primary.logText()}`);

        // Every file still in pg_wal that PostgreSQL marked archived (.done) restores byte-identical.
        const statusDir = join(primary.dataDir, 'pg_wal', 'archive_status');
        const done = (await readdir(statusDir)).filter((f) => f.endsWith('.done')).map((f) => f.slice(0, -'.done'.length));
        assert.ok(done.length >= 2, `expected archived segments in pg_wal, found ${done.join(', ')}`);
        const scratch = await mkdtemp(join(tmpdir(), 'cb-restored-'));
        try {
          for (const name of done) {
            const original = await readFile(join(primary.dataDir, 'pg_wal', name)).catch(() => undefined);
            if (original === undefined) continue; // recycled since
            const dest = join(scratch, name);
            const r = await runCli(['wal-restore', server, name, dest], { env });
            assert.equal(r.code, 0, r.stderr);
            assert.ok((await readFile(dest)).equals(original), `${name} restored differently`);
          }
        } finally {
          await rm(scratch, { recursive: true, force: true });
        }

        // The store holds exactly as many WAL objects as PostgreSQL archived.
        const listed = await store.count(server, 'wals/');
        assert.equal(listed, Number(archiver?.archived_count), 'objects in the store vs pg_stat_archiver.archived_count');

        // A second cluster recovers from the base copy through wal-restore and sees every row.
        replica = await createCluster({
          version, env, fsync: false, dataDir: backupDir, signal: 'recovery',
          conf: { restore_command: `'${CLI_BIN} wal-restore ${server} %f %p'`, archive_mode: 'off' },
        });
        await replica.start({ waitForRecovery: true });
        const replayed = await count(replica);
        assert.equal(replayed, expected, `rows after replay\n${await replica.logText()}`);
        assert.match(await replica.logText(), /restored log file "[0-9A-F]{24}" from archive/);
      });
    });
  }
}

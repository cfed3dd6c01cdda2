// Damaged objects of a DONE backup and of archived WAL, on real PostgreSQL 15 and 18 with a local
// store: `cloudbarman backup` stores a backup while archive_command archives WAL; then, one at a
// time, a data part, the last part (pg_control's), the manifest, backup_label and a WAL segment the
// backup needs are flipped, truncated or deleted on disk (in the payload, behind the local store's
// metadata header; test/helpers/damage.ts). `restore` and `wal-restore` must exit 4 naming the
// object, and leave nothing PostgreSQL could start from. A restore reads WAL only through
// restore_command during recovery: a damaged segment there must make PostgreSQL abort recovery.
// Starts: one primary per version, and one restored cluster per version for the WAL case.
import { describe, test, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chown, copyFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  assertReadableByPgUser, createCluster, makePgTempDir, mkdirForPgUser, pgOsUser, startCluster, type Cluster, type PgVersion,
} from '../helpers/postgres.ts';
import { CLI_BIN, runCli, type CliResult } from '../helpers/cli.ts';
import { objectFile, withDamaged, type Damage } from '../helpers/damage.ts';

let work: string;
let spares = 0;

before(async () => {
  await assertReadableByPgUser(CLI_BIN);
  work = await makePgTempDir('cb-corrupt-it');
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

const spare = (): string => join(work, `spare-${++spares}`);
const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Nothing PostgreSQL could start from: no directory, or one marked incomplete with pg_control held back and no signal file. */
function assertNotStartable(dest: string, r: CliResult): void {
  if (!existsSync(dest)) return;
  assert.ok(existsSync(join(dest, 'cloudbarman_restore_incomplete')), `${dest} is left without the incomplete marker\n${r.stderr}`);
  assert.ok(!existsSync(join(dest, 'global', 'pg_control')), `${dest} has global/pg_control after a failed restore\n${r.stderr}`);
  assert.ok(!existsSync(join(dest, 'recovery.signal')), `${dest} has recovery.signal after a failed restore\n${r.stderr}`);
}

/** The one-line error of a failed command. */
function errorLine(r: CliResult): string {
  return r.stderr.split('\n').find((line) => line.includes(': error: ')) ?? '';
}

for (const version of [15, 18] as const satisfies readonly PgVersion[]) {
  describe(`PostgreSQL ${version}, local store: damaged backup and WAL objects`, { timeout: 600_000 }, () => {
    let primary: Cluster | undefined;
    let restored: Cluster | undefined;
    const server = `corrupt${version}`;
    let store = '';
    let env: Record<string, string> = {};
    let backupId = '';
    let beginWal = '';
    let partCount = 0;
    let n = 0;

    before(async () => {
      store = await mkdirForPgUser(join(work, `store-${version}`));
      const config = join(work, `cloudbarman-${version}.conf`);
      await writeFile(config, `[${server}]\ndestination = ${pathToFileURL(store).href}\ncompression = zstd\npart_size = 5MiB\nretry_timeout = 2s\nwal_archive_timeout = 60s\n`);
      await chown(config, pgOsUser().uid, pgOsUser().gid);
      env = { CLOUDBARMAN_CONFIG: config };
      primary = await startCluster({
        version, env, fsync: false,
        conf: { wal_level: 'replica', archive_mode: 'on', archive_command: `'${CLI_BIN} wal-upload ${server} %p'` },
      });
      await primary.query('CREATE TABLE filler AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 100000) g');
      const backup = await runCli(['--format', 'json', 'backup', server, '--jobs', '2',
        '--conninfo', `host=127.0.0.1 port=${primary.port} user=postgres dbname=postgres`, '--pgdata', primary.dataDir], { env, timeoutMs: 300_000 });
      assert.equal(backup.code, 0, backup.stderr);
      const info = JSON.parse(backup.stdout) as { id: string; begin_wal: string; part_count: number };
      backupId = info.id;
      beginWal = info.begin_wal;
      partCount = info.part_count;
      assert.ok(partCount >= 3, `want several parts, got ${partCount}`);
      await primary.stop();
    });
    after(async () => {
      await restored?.destroy();
      await primary?.destroy();
    });

    const backupKey = (name: string): string => `${server}/base/${backupId}/${name}`;
    const walKey = (): string => `${server}/wals/${beginWal.slice(0, 16)}/${beginWal}.zst`;

    /** Runs restore on the damaged backup: exit 4, the error names `named`, nothing startable is left. */
    async function restoreFails(t: TestContext, named: string): Promise<void> {
      const dest = join(work, `dest-${version}-${++n}`);
      const r = await runCli(['restore', server, backupId, dest, '--jobs', '2'], { env, timeoutMs: 120_000 });
      assert.equal(r.code, 4, `restore: want exit 4\n${r.stderr}`);
      t.diagnostic(errorLine(r));
      assert.match(errorLine(r), new RegExp(escape(named)), `the error must name ${named}`);
      assertNotStartable(dest, r);
      await rm(dest, { recursive: true, force: true });
    }

    for (const how of ['flip', 'truncate', 'delete'] as const satisfies readonly Damage[]) {
      test(`${how} a data part: restore exits 4 naming it`, async (t) => {
        const key = backupKey('data/000001.zst');
        await withDamaged(objectFile(store, key), how, spare(), () => restoreFails(t, key));
      });
      test(`${how} the manifest: restore exits 4 naming it`, async (t) => {
        const key = backupKey('manifest.json.zst');
        // Once deleted, its codec is unknown too: the error names the key without the extension.
        await withDamaged(objectFile(store, key), how, spare(), () => restoreFails(t, how === 'delete' ? backupKey('manifest.json') : key));
      });
      test(`${how} backup_label: restore exits 4 naming it`, async (t) => {
        const key = backupKey('backup_label');
        await withDamaged(objectFile(store, key), how, spare(), () => restoreFails(t, key));
      });
    }

    test('flip a byte in the last part (pg_control\'s): restore exits 4 naming it', async (t) => {
      const key = backupKey(`data/${String(partCount - 1).padStart(6, '0')}.zst`);
      await withDamaged(objectFile(store, key), 'flip', spare(), () => restoreFails(t, key));
    });

    test('a data part replaced by another part of the backup: restore exits 4 naming it', async (t) => {
      const key = backupKey('data/000000.zst');
      const file = objectFile(store, key);
      const original = spare();
      await copyFile(file, original);
      try {
        await copyFile(objectFile(store, backupKey('data/000001.zst')), file);
        await restoreFails(t, key);
      } finally {
        await copyFile(original, file);
      }
    });

    for (const how of ['flip', 'truncate', 'delete'] as const satisfies readonly Damage[]) {
      test(`${how} a WAL segment the backup needs: wal-restore exits ${how === 'delete' ? '1 (absent)' : '4 naming it'}, writing nothing`, async (t) => {
        await withDamaged(objectFile(store, walKey()), how, spare(), async () => {
          const target = join(work, `wal-${version}-${++n}`);
          const r = await runCli(['wal-restore', server, beginWal, target], { env });
          t.diagnostic(errorLine(r));
          if (how === 'delete') {
            assert.equal(r.code, 1, r.stderr);
            assert.match(errorLine(r), new RegExp(`${beginWal} is not in the archive`));
          } else {
            assert.equal(r.code, 4, r.stderr);
            assert.match(errorLine(r), new RegExp(escape(walKey())));
          }
          assert.ok(!existsSync(target), 'nothing may be written at %p');
        });
      });
    }

    test('delete a WAL segment the backup needs: restore exits 4 naming it, before writing anything', async (t) => {
      await withDamaged(objectFile(store, walKey()), 'delete', spare(), async () => {
        const dest = join(work, `dest-${version}-${++n}`);
        const r = await runCli(['restore', server, backupId, dest], { env, timeoutMs: 120_000 });
        t.diagnostic(errorLine(r));
        assert.equal(r.code, 4, r.stderr);
        assert.match(errorLine(r), new RegExp(escape(`${server}/wals/${beginWal.slice(0, 16)}/${beginWal}`)));
        assert.ok(!existsSync(dest), 'nothing may be written');
      });
    });

    test('flip a byte in a WAL segment the backup needs: the restore succeeds, PostgreSQL aborts recovery on it', async (t) => {
      await withDamaged(objectFile(store, walKey()), 'flip', spare(), async () => {
        const dest = join(work, `dest-${version}-${++n}`);
        const r = await runCli(['restore', server, backupId, dest, '--target-immediate'], { env, timeoutMs: 120_000 });
        assert.equal(r.code, 0, r.stderr);
        restored = await createCluster({ version, env, fsync: false, dataDir: dest });
        await assert.rejects(restored.start({ waitForRecovery: true }));
        const log = await restored.logText();
        const line = log.split('\n').find((l) => l.includes('cloudbarman wal-restore: error: ') && l.includes(walKey())) ?? '';
        t.diagnostic(line);
        assert.match(line, new RegExp(`${escape(walKey())} is corrupt`), log);
        assert.doesNotMatch(log, /database system is ready to accept/, log);
        assert.ok(!(await restored.isRunning()), 'PostgreSQL must not be running on the damaged WAL');
      });
    });
  });
}

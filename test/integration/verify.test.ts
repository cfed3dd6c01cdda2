// `cloudbarman verify` on real PostgreSQL 15 with a local store: `cloudbarman backup` stores a backup
// while archive_command archives WAL, and more WAL follows it. verify passes on the sound backup (full,
// quick, and --restore, which restores into a temporary directory, starts PostgreSQL 15 as its OS
// user, runs amcheck and reports the RTO); then, one at a time, objects are damaged on disk
// (test/helpers/damage.ts) and verify must exit 4 naming each. --quick, which reads no data, passes
// over a flipped byte by design, and the full verify must not. Starts: one primary, and the drill's
// own PostgreSQL for the --restore cases.
import { describe, test, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chown, open, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  assertReadableByPgUser, makePgTempDir, mkdirForPgUser, pgBinDir, pgOsUser, startCluster, switchWal, waitForArchived, type Cluster,
} from '../helpers/postgres.ts';
import { CLI_BIN, runCli, type CliResult } from '../helpers/cli.ts';
import { objectFile, withDamaged, type Damage } from '../helpers/damage.ts';

let work: string;
let spares = 0;

before(async () => {
  await assertReadableByPgUser(CLI_BIN);
  work = await makePgTempDir('cb-verify-it');
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

const spare = (): string => join(work, `spare-${++spares}`);
const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

interface Check { name: string; ok: boolean; detail: string; problems: Array<{ key: string; problem: string }> }
interface Report {
  ok: boolean; mode: string; backup_id: string; checks: Check[]; bytes_read: number;
  restore_drill?: { rto_seconds: number; rto_to_consistent_seconds: number; restore_seconds: number; consistent_lsn: string | null;
    amcheck: { available: boolean; btree_indexes: number; tables: number; failures: unknown[] } };
}

function parse(r: CliResult): Report {
  try {
    return JSON.parse(r.stdout) as Report;
  } catch {
    assert.fail(`verify printed no JSON report (exit ${r.code})\n${r.stdout}\n${r.stderr}`);
  }
}

describe('PostgreSQL 15, local store: verify', { timeout: 600_000 }, () => {
  let primary: Cluster | undefined;
  const server = 'verify15';
  let store = '';
  let env: Record<string, string> = {};
  let backupId = '';
  let beginWal = '';
  let afterWal = '';
  let indexFile = '';

  before(async () => {
    store = await mkdirForPgUser(join(work, 'store'));
    const config = join(work, 'cloudbarman.conf');
    await writeFile(config, `[${server}]\ndestination = ${pathToFileURL(store).href}\ncompression = zstd\npart_size = 5MiB\nretry_timeout = 2s\nwal_archive_timeout = 60s\n`);
    await chown(config, pgOsUser().uid, pgOsUser().gid);
    env = { CLOUDBARMAN_CONFIG: config };
    primary = await startCluster({
      version: 15, env, fsync: false,
      conf: { wal_level: 'replica', archive_mode: 'on', archive_command: `'${CLI_BIN} wal-upload ${server} %p'` },
    });
    await primary.query('CREATE TABLE filler (id int PRIMARY KEY, v text)');
    await primary.query('INSERT INTO filler SELECT g, md5(g::text) FROM generate_series(1, 100000) g');
    await primary.query('CREATE INDEX filler_v ON filler (v)');
    const backup = await runCli(['--format', 'json', 'backup', server, '--jobs', '2',
      '--conninfo', `host=127.0.0.1 port=${primary.port} user=postgres dbname=postgres`, '--pgdata', primary.dataDir], { env, timeoutMs: 300_000 });
    assert.equal(backup.code, 0, backup.stderr);
    const info = JSON.parse(backup.stdout) as { id: string; begin_wal: string };
    backupId = info.id;
    beginWal = info.begin_wal;
    // WAL after the backup's end, for the continuity check.
    await primary.query('INSERT INTO filler SELECT g, md5(g::text) FROM generate_series(100001, 120000) g');
    afterWal = await switchWal(primary);
    await primary.query('INSERT INTO filler VALUES (0, \'last\')');
    await waitForArchived(primary, await switchWal(primary), 120_000);
    indexFile = join(primary.dataDir, (await primary.query<{ p: string }>("SELECT pg_relation_filepath('filler_v') AS p"))[0]?.p ?? '');
    await primary.stop();
  });
  after(async () => {
    await primary?.destroy();
  });

  const backupKey = (name: string): string => `${server}/base/${backupId}/${name}`;
  const walKey = (name: string): string => `${server}/wals/${name.slice(0, 16)}/${name}.zst`;

  async function verify(args: string[], timeoutMs = 120_000): Promise<CliResult> {
    return runCli(['--format', 'json', 'verify', server, backupId, ...args], { env, timeoutMs });
  }

  /** verify exits 4 and its report names `named` in a FAILED check. */
  async function verifyFails(t: TestContext, named: string, args: string[] = []): Promise<Report> {
    const r = await verify(args);
    const report = parse(r);
    assert.equal(r.code, 4, `verify: want exit 4\n${r.stdout}\n${r.stderr}`);
    assert.equal(report.ok, false);
    const failed = report.checks.filter((c) => !c.ok);
    const text = failed.map((c) => `${c.name}: ${c.detail}${c.problems.map((p) => ` [${p.key}: ${p.problem}]`).join('')}`).join('\n');
    t.diagnostic(text);
    assert.match(text, new RegExp(escape(named)), `a FAILED check must name ${named}`);
    return report;
  }

  test('a sound backup: full verify exits 0, every check OK, in text too', async () => {
    const r = await verify([]);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const report = parse(r);
    assert.equal(report.ok, true);
    assert.equal(report.mode, 'full');
    assert.deepEqual(report.checks.map((c) => c.name), ['catalog', 'manifest', 'parts', 'backup_label', 'wal needed', 'timeline history', 'wal to latest']);
    assert.ok(report.bytes_read > 0, 'a full verify reads the objects');
    assert.match(report.checks.find((c) => c.name === 'wal to latest')?.detail ?? '', /segments? after .* up to/);
    const text = await runCli(['verify', server, 'latest'], { env, timeoutMs: 120_000 });
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^\tparts: OK \(\d+ parts, \d+ bytes read/m);
    assert.match(text.stdout, /^\twal needed: OK /m);
  });

  test('--quick reads no data and passes; --no-wal-to-latest leaves the later WAL out', async () => {
    const r = await verify(['--quick', '--no-wal-to-latest']);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const report = parse(r);
    assert.equal(report.mode, 'quick');
    assert.equal(report.bytes_read, 0);
    assert.ok(!report.checks.some((c) => c.name === 'wal to latest'));
  });

  test('--restore restores, recovers, runs amcheck on PostgreSQL 15 and reports the RTO; the directory is gone after', async () => {
    const drills = await mkdirForPgUser(join(work, 'drills'));
    const r = await verify(['--quick', '--restore', '--pg-bin', pgBinDir(15), '--work-dir', drills, ...(process.getuid?.() === 0 ? ['--run-as', pgOsUser().name] : [])], 300_000);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const report = parse(r);
    const drill = report.restore_drill;
    assert.ok(drill !== undefined, r.stdout);
    assert.ok(drill.rto_seconds > 0 && drill.rto_seconds >= drill.rto_to_consistent_seconds, JSON.stringify(drill));
    assert.match(drill.consistent_lsn ?? '', /^[0-9A-F]+\/[0-9A-F]+$/);
    assert.equal(drill.amcheck.available, true, JSON.stringify(drill.amcheck));
    assert.ok(drill.amcheck.btree_indexes > 2, 'the primary key, filler_v and the catalog indexes are checked');
    assert.ok(drill.amcheck.tables > 0, 'verify_heapam runs on PostgreSQL 15');
    assert.deepEqual(drill.amcheck.failures, []);
    assert.deepEqual(report.checks.slice(-4).map((c) => [c.name, c.ok]), [['restore', true], ['recovery', true], ['amcheck', true], ['rto', true]]);
    assert.deepEqual(await readdir(drills), [], 'the drill removes its directory');
  });

  test('--restore on a backup whose WAL is damaged: the drill\'s recovery aborts and names the segment (exit 4)', async (t) => {
    const drills = await mkdirForPgUser(join(work, 'drills-bad'));
    await withDamaged(objectFile(store, walKey(beginWal)), 'flip', spare(), async () => {
      // --quick reads no WAL: the damage is found by the restored cluster's restore_command.
      const report = await verifyFails(t, walKey(beginWal), ['--quick', '--no-wal-to-latest', '--restore', '--pg-bin', pgBinDir(15), '--work-dir', drills,
        ...(process.getuid?.() === 0 ? ['--run-as', pgOsUser().name] : [])]);
      assert.deepEqual(report.checks.filter((c) => !c.ok).map((c) => c.name), ['recovery']);
      assert.equal(report.restore_drill, undefined);
    });
    assert.deepEqual(await readdir(drills), [], 'the drill removes its directory after a failure too');
  });

  for (const how of ['flip', 'truncate', 'delete'] as const satisfies readonly Damage[]) {
    test(`${how} a data part: verify exits 4 naming it`, async (t) => {
      const key = backupKey('data/000001.zst');
      await withDamaged(objectFile(store, key), how, spare(), () => verifyFails(t, key));
    });
    test(`${how} the manifest: verify exits 4 naming it`, async (t) => {
      await withDamaged(objectFile(store, backupKey('manifest.json.zst')), how, spare(), () => verifyFails(t, backupKey('manifest.json')));
    });
    test(`${how} backup_label: verify exits 4 naming it`, async (t) => {
      const key = backupKey('backup_label');
      await withDamaged(objectFile(store, key), how, spare(), () => verifyFails(t, key));
    });
    test(`${how} a WAL segment the backup needs: verify exits 4 naming it`, async (t) => {
      await withDamaged(objectFile(store, walKey(beginWal)), how, spare(), () => verifyFails(t, `${server}/wals/${beginWal.slice(0, 16)}/${beginWal}`));
    });
    test(`${how} a WAL segment after the backup: verify exits 4 naming it (a gap for a deleted one)`, async (t) => {
      await withDamaged(objectFile(store, walKey(afterWal)), how, spare(), async () => {
        const report = await verifyFails(t, `${server}/wals/${afterWal.slice(0, 16)}/${afterWal}`);
        assert.deepEqual(report.checks.filter((c) => !c.ok).map((c) => c.name), ['wal to latest']);
        // Without the later WAL, the backup itself is sound.
        const r = await verify(['--no-wal-to-latest']);
        assert.equal(r.code, 0, r.stdout);
      });
    });
  }

  test('--quick finds a truncated or deleted part but, reading nothing, not a flipped byte; a full verify does', async (t) => {
    const key = backupKey('data/000001.zst');
    await withDamaged(objectFile(store, key), 'truncate', spare(), () => verifyFails(t, key, ['--quick']));
    await withDamaged(objectFile(store, key), 'flip', spare(), async () => {
      const quick = await verify(['--quick']);
      assert.equal(quick.code, 0, `quick mode is documented not to read the bytes\n${quick.stdout}`);
      await verifyFails(t, key);
    });
  });

  test('--restore with a role the cluster does not have fails at once (exit 3), leaving nothing behind', async () => {
    const drills = await mkdirForPgUser(join(work, 'drills-role'));
    const r = await verify(['--quick', '--no-wal-to-latest', '--restore', '--pg-bin', pgBinDir(15), '--work-dir', drills, '--pg-superuser', 'nosuchrole',
      ...(process.getuid?.() === 0 ? ['--run-as', pgOsUser().name] : [])]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /refused role nosuchrole/);
    assert.match(r.stderr, /--pg-superuser/);
    assert.deepEqual(await readdir(drills), []);
  });

  test('a backup of a cluster whose index is already damaged passes every checksum; the drill\'s amcheck finds it (exit 4)', async (t) => {
    // A zeroed btree page, as a torn write on the source would leave it: the backup copies it faithfully.
    assert.ok(primary);
    const handle = await open(indexFile, 'r+');
    await handle.write(Buffer.alloc(8192), 0, 8192, 8192);
    await handle.close();
    await primary.start();
    const backup = await runCli(['--format', 'json', 'backup', server, '--conninfo', `host=127.0.0.1 port=${primary.port} user=postgres dbname=postgres`,
      '--pgdata', primary.dataDir], { env, timeoutMs: 300_000 });
    assert.equal(backup.code, 0, backup.stderr);
    await primary.stop();
    const id = (JSON.parse(backup.stdout) as { id: string }).id;
    const drills = await mkdirForPgUser(join(work, 'drills-amcheck'));
    const r = await runCli(['--format', 'json', 'verify', server, id, '--no-wal-to-latest', '--restore', '--pg-bin', pgBinDir(15), '--work-dir', drills,
      ...(process.getuid?.() === 0 ? ['--run-as', pgOsUser().name] : [])], { env, timeoutMs: 300_000 });
    const report = parse(r);
    assert.equal(r.code, 4, `${r.stdout}\n${r.stderr}`);
    const failedChecks = report.checks.filter((c) => !c.ok);
    t.diagnostic(failedChecks.map((c) => `${c.name}: ${c.detail}`).join('\n'));
    assert.deepEqual(failedChecks.map((c) => c.name), ['amcheck']);
    assert.match(failedChecks[0]?.detail ?? '', /filler_v/);
    assert.ok((report.restore_drill?.amcheck.failures.length ?? 0) > 0);
    assert.deepEqual(await readdir(drills), []);
  });

  test('a missing backup id is bad input (exit 3); an unreachable store is exit 2', async () => {
    const missing = await runCli(['verify', server, '20000101T000000Z'], { env });
    assert.equal(missing.code, 3, missing.stderr);
    // Nothing listens on port 9 (discard): every request fails to connect until retry_timeout (2 s) is spent.
    const gone = await runCli(['verify', server, backupId, '--provider', 'aws', '--destination', 's3://nowhere/verify', '--endpoint-url', 'http://127.0.0.1:9'], {
      env: { ...env, AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test', AWS_REGION: 'us-east-1' }, timeoutMs: 120_000,
    });
    assert.equal(gone.code, 2, gone.stderr);
  });
});

// `cloudbarman check` on real PostgreSQL 15 with a local store: each condition it claims to detect is
// broken for real (archive_command, archiving failures, privileges, slots, receive-wal, the store, the
// catalog, wal_level) and the matching check must fail, then pass again once repaired.
// Starts: one cluster (restarted once for wal_level).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, chown, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  assertReadableByPgUser, makePgTempDir, mkdirForPgUser, pgOsUser, pollUntil, runAsPgUser, startCluster, switchWal, waitForArchived,
  type Cluster,
} from '../helpers/postgres.ts';
import { CLI_BIN, runCli } from '../helpers/cli.ts';
import { createObjectStore } from '../../providers/local/index.ts';
import { listBackups, writeBackupInfo } from '../../src/core/catalog/catalog.ts';

const SERVER = 'chk15';

let work: string;
before(async () => {
  await assertReadableByPgUser(CLI_BIN);
  work = await makePgTempDir('cb-check');
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

interface Check { name: string; ok: boolean; detail: string }

describe('check on PostgreSQL 15', () => {
  let primary: Cluster | undefined;
  after(async () => {
    await primary?.destroy();
  });

  test('every check fails when its condition is broken, and passes when repaired', async () => {
    const storeDir = await mkdirForPgUser(join(work, 'store'));
    const config = join(work, 'cloudbarman.conf');
    const env = { CLOUDBARMAN_CONFIG: config };
    const write = async (port: number): Promise<void> => {
      await writeFile(config, `[${SERVER}]\ndestination = ${pathToFileURL(storeDir).href}\nconninfo = host=127.0.0.1 port=${port} user=postgres dbname=postgres\n` +
        `minimum_redundancy = 1\nlast_backup_maximum_age = 1 DAYS\nretry_timeout = 2s\nwal_archive_timeout = 60s\n`);
      await chown(config, pgOsUser().uid, pgOsUser().gid);
    };
    await write(1);
    primary = await startCluster({
      version: 15, env, fsync: false,
      conf: { wal_level: 'replica', archive_mode: 'on', archive_command: `'${CLI_BIN} wal-upload ${SERVER} %p'` },
    });
    const p = primary;
    await write(p.port);
    const check = async (...extra: string[]): Promise<{ code: number; checks: Map<string, Check>; stderr: string }> => {
      const r = await runCli(['--format', 'json', 'check', SERVER, ...extra], { env, timeoutMs: 60_000 });
      const parsed = JSON.parse(r.stdout) as { checks: Check[] };
      return { code: r.code, checks: new Map(parsed.checks.map((c) => [c.name, c])), stderr: r.stderr };
    };
    const failed = (checks: Map<string, Check>): string[] => [...checks.values()].filter((c) => !c.ok).map((c) => c.name).sort();

    // No backup yet: only the catalog checks fail.
    let r = await check();
    assert.equal(r.code, 1);
    assert.deepEqual(failed(r.checks), ['backup maximum age', 'minimum redundancy requirements']);
    const backup = await runCli(['backup', SERVER, '--pgdata', p.dataDir], { env, timeoutMs: 120_000 });
    assert.equal(backup.code, 0, backup.stderr);
    r = await check();
    assert.equal(r.code, 0, JSON.stringify([...r.checks.values()]));
    assert.deepEqual(failed(r.checks), []);
    const text = await runCli(['check', SERVER], { env });
    assert.match(text.stdout, new RegExp(`^Server ${SERVER}:\\n\\tPostgreSQL: OK \\(version 15\\)\\n`));
    assert.match(text.stdout, /\tobject store writable: OK \(a probe object was written and deleted\)/);
    const nagios = await runCli(['check', SERVER, '--nagios'], { env });
    assert.equal(nagios.code, 0);
    assert.match(nagios.stdout, /^CLOUDBARMAN OK - Ready to serve the backups of 1 server\n/);

    // archive_command of something else, then archiving that fails.
    await p.query("ALTER SYSTEM SET archive_command = '/bin/false'");
    await p.query('SELECT pg_reload_conf()');
    await pollUntil(async () => ((await p.query<{ c: string }>("SELECT current_setting('archive_command') AS c"))[0]?.c === '/bin/false' ? true : undefined), { timeoutMs: 10_000, what: 'the reload' });
    await p.query('CREATE TABLE t AS SELECT 1 AS x');
    await switchWal(p);
    await pollUntil(async () => (Number((await p.query<{ n: string }>('SELECT failed_count AS n FROM pg_stat_archiver'))[0]?.n) > 0 ? true : undefined), { timeoutMs: 30_000, what: 'a failed archive attempt' });
    r = await check();
    assert.deepEqual(failed(r.checks), ['archive_command', 'continuous archiving']);
    assert.match(r.checks.get('continuous archiving')?.detail ?? '', /the last attempt failed: [0-9A-F]{24}/);
    const critical = await runCli(['check', SERVER, '--nagios'], { env });
    assert.equal(critical.code, 2);
    assert.match(critical.stdout, /^CLOUDBARMAN CRITICAL - 1 server with issues: chk15 \(archive_command, continuous archiving\)/);
    await p.query(`ALTER SYSTEM SET archive_command = '${CLI_BIN} wal-upload ${SERVER} %p'`);
    await p.query('SELECT pg_reload_conf()');
    await p.query('INSERT INTO t VALUES (2)');
    await waitForArchived(p, await switchWal(p), 60_000);
    r = await check();
    assert.deepEqual(failed(r.checks), []);

    // The server: unreachable, and a role without backup privileges.
    r = await check('--conninfo', 'host=127.0.0.1 port=1 user=postgres dbname=postgres connect_timeout=2');
    assert.deepEqual(failed(r.checks), ['PostgreSQL']);
    assert.match(r.checks.get('PostgreSQL')?.detail ?? '', /cannot connect to PostgreSQL/);
    await p.query('CREATE ROLE nopriv LOGIN');
    r = await check('--conninfo', `host=127.0.0.1 port=${p.port} user=nopriv dbname=postgres`);
    assert.ok(failed(r.checks).includes('superuser or backup privileges'), JSON.stringify(failed(r.checks)));
    assert.match(r.checks.get('superuser or backup privileges')?.detail ?? '', /nopriv may not run pg_backup_start/);

    // Streaming: no slot and no receive-wal; then the slot exists, and receive-wal still does not run.
    r = await check('--streaming-archiver', 'on', '--slot-name', 'cbslot');
    assert.deepEqual(failed(r.checks), ['receive-wal running', 'replication slot']);
    await p.query("SELECT pg_create_physical_replication_slot('cbslot')");
    r = await check('--streaming-archiver', 'on', '--slot-name', 'cbslot');
    assert.deepEqual(failed(r.checks), ['receive-wal running']);
    assert.match(r.checks.get('replication slot')?.detail ?? '', /cbslot is inactive/);
    await p.query("SELECT pg_drop_replication_slot('cbslot')");

    // The store: missing, then readable but not writable (as the postgres user, since root writes anywhere).
    r = await check('--destination', pathToFileURL(join(work, 'missing')).href);
    assert.ok(failed(r.checks).includes('object store'));
    const readOnly = join(work, 'read-only');
    await mkdir(readOnly);
    await chmod(readOnly, 0o755);
    const ro = await runAsPgUser(CLI_BIN, ['--format', 'json', 'check', SERVER, '--destination', pathToFileURL(readOnly).href], { env });
    const roChecks = new Map((JSON.parse(ro.stdout) as { checks: Check[] }).checks.map((c) => [c.name, c]));
    // The local provider's access check already asks for write permission; other stores fail at the probe write.
    assert.equal(roChecks.get('object store')?.ok, false, JSON.stringify([...roChecks.values()]));
    assert.match(roChecks.get('object store')?.detail ?? '', /permission denied/);
    assert.equal(roChecks.get('object store writable')?.ok, false);

    // The catalog: minimum redundancy above what exists, and a FAILED backup.
    r = await check('--minimum-redundancy', '2');
    assert.deepEqual(failed(r.checks), ['minimum redundancy requirements']);
    const store = await createObjectStore({ destination: pathToFileURL(storeDir).href, multipart: { partSizeBytes: 5 << 20, concurrency: 2 }, connectTimeoutMs: 1000, requestTimeoutMs: 10_000 });
    try {
      const done = (await listBackups(store, SERVER)).backups[0];
      assert.ok(done);
      await writeBackupInfo(store, { ...done, id: '20200101T000000Z', status: 'FAILED', error: 'made up by the test' });
    } finally {
      await store.close();
    }
    r = await check();
    assert.deepEqual(failed(r.checks), ['failed backups']);
    assert.match(r.checks.get('failed backups')?.detail ?? '', /there is 1 failed backup \(20200101T000000Z\)/);
    assert.equal((await runCli(['delete', SERVER, '20200101T000000Z'], { env })).code, 0);

    // wal_level minimal (which also needs archive_mode off) after a restart.
    await p.query('ALTER SYSTEM SET wal_level = minimal');
    await p.query('ALTER SYSTEM SET archive_mode = off');
    await p.query('ALTER SYSTEM SET max_wal_senders = 0');
    await p.stop('fast');
    await p.start();
    r = await check();
    // With archive_mode off PostgreSQL reports archive_command as "(disabled)": nothing archives, so it fails too.
    assert.deepEqual(failed(r.checks), ['archive_command', 'archive_mode', 'wal_level'], JSON.stringify([...r.checks.values()]));
    assert.match(r.checks.get('wal_level')?.detail ?? '', /minimal: set wal_level = replica/);
  });
});

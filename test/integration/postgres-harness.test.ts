// Real PostgreSQL 15-18 postmasters started by test/helpers/postgres.ts: version, loopback-only
// listening, ownership, checksum defaults, and a base backup copy restored from a `cp` WAL archive.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  assertReadableByPgUser,
  copyBaseBackup,
  createCluster,
  makePgTempDir,
  mkdirForPgUser,
  PG_VERSIONS,
  pgOsUser,
  startCluster,
  switchWal,
  waitForArchived,
} from '../helpers/postgres.ts';
import type { Cluster, PgVersion } from '../helpers/postgres.ts';
import { makeTempDir, removeTempDir } from '../helpers/tmp.ts';

async function one<T>(cluster: Cluster, sql: string, params?: unknown[]): Promise<T> {
  const rows = await cluster.query<T>(sql, params);
  assert.equal(rows.length, 1, `expected one row from: ${sql}`);
  return rows[0] as T;
}

async function withLog<T>(cluster: Cluster, check: () => Promise<T>): Promise<T> {
  try {
    return await check();
  } catch (err) {
    throw new Error(`${(err as Error).message}\n--- PostgreSQL ${cluster.version} log ---\n${(await cluster.logText()).slice(-4000)}`, { cause: err });
  }
}

for (const version of PG_VERSIONS) {
  describe(`PostgreSQL ${version}: harness cluster, base backup copy, restore from cp archive`, () => {
    const clusters: Cluster[] = [];
    let work = '';
    let archiveDir = '';
    let primary: Cluster | undefined;

    before(async () => {
      work = await makePgTempDir(`cloudbarman-harness-${version}`);
      archiveDir = await mkdirForPgUser(join(work, 'archive'));
    });

    after(async () => {
      for (const cluster of clusters.reverse()) await cluster.destroy();
      await removeTempDir(work);
    });

    it('starts the right version on 127.0.0.1 as the pg user, logging to baseDir', async () => {
      primary = await startCluster({
        version,
        conf: { archive_mode: 'on', archive_command: `'test ! -f ${archiveDir}/%f && cp %p ${archiveDir}/%f'` },
      });
      clusters.push(primary);
      const c = primary;
      const row = await one<{ num: number; addr: string; port: number; checksums: string; sockets: string; collector: string }>(
        c,
        `SELECT current_setting('server_version_num')::int AS num, host(inet_server_addr()) AS addr, inet_server_port() AS port,
                current_setting('data_checksums') AS checksums, current_setting('unix_socket_directories') AS sockets,
                current_setting('logging_collector') AS collector`,
      );
      assert.equal(Math.floor(row.num / 10000), version);
      assert.equal(row.addr, '127.0.0.1');
      assert.equal(row.port, c.port);
      assert.equal(c.connectionString, `postgresql://postgres@127.0.0.1:${c.port}/postgres`);
      // Only the 18 build turns checksums on by default; later tests must not assume either way.
      assert.equal(row.checksums, version === 18 ? 'on' : 'off');
      assert.ok(row.sockets.startsWith(c.baseDir), `socket dir ${row.sockets} should be inside ${c.baseDir}`);
      assert.equal(row.collector, 'off');
      const user = pgOsUser();
      assert.equal(c.user.uid, user.uid);
      assert.equal((await stat(join(c.dataDir, 'postmaster.pid'))).uid, user.uid);
      assert.equal((await stat(c.dataDir)).mode & 0o777, 0o700);
      assert.match(await c.logText(), /database system is ready to accept connections/);
      assert.equal(await c.isRunning(), true);
    });

    it('restores a copyBaseBackup copy plus archived WAL, tablespace included', async (t) => {
      if (primary === undefined) return t.skip('the cluster did not start (see the previous test)');
      const c = primary;
      const tsDir = await mkdirForPgUser(join(work, 'ts-primary'));
      await c.query(`CREATE TABLESPACE harness_ts LOCATION '${tsDir}'`);
      await c.query('CREATE TABLE events (id int PRIMARY KEY, phase text NOT NULL)');
      await c.query('CREATE TABLE spaced (id int) TABLESPACE harness_ts');
      await c.query(`INSERT INTO events SELECT g, 'before' FROM generate_series(1, 100) g`);
      await c.query('INSERT INTO spaced SELECT generate_series(1, 10)');

      const copyDir = join(work, 'copy');
      const backup = await withLog(c, () => copyBaseBackup(c, copyDir));
      assert.equal(backup.dataDir, copyDir);
      assert.match(backup.stopLsn, /^[0-9A-F]+\/[0-9A-F]+$/);
      assert.match(await readFile(join(copyDir, 'backup_label'), 'utf8'), /^START WAL LOCATION: /m);
      const map = await readFile(join(copyDir, 'tablespace_map'), 'utf8');
      assert.match(map, new RegExp(`^\\d+ ${copyDir}\\.tablespaces/\\d+$`, 'm'));
      assert.equal(existsSync(join(copyDir, 'postmaster.pid')), false);
      assert.equal(existsSync(join(copyDir, 'postmaster.opts')), false);
      const walEntries = (await readdir(join(copyDir, 'pg_wal'))).sort();
      assert.deepEqual(walEntries, version >= 17 ? ['archive_status', 'summaries'] : ['archive_status']);

      await c.query(`INSERT INTO events SELECT g, 'after' FROM generate_series(101, 250) g`);
      const lastSegment = await switchWal(c);
      await waitForArchived(c, lastSegment);
      assert.ok(existsSync(join(archiveDir, lastSegment)), `${lastSegment} should be in the archive`);
      await c.stop();
      assert.equal(await c.isRunning(), false);

      const restored = await createCluster({
        version,
        dataDir: copyDir,
        conf: { restore_command: `'cp ${archiveDir}/%f %p'`, archive_mode: 'off' },
        signal: 'recovery',
      });
      clusters.push(restored);
      await withLog(restored, () => restored.start({ waitForRecovery: true }));
      await withLog(restored, async () => {
        const counts = await restored.query<{ phase: string; n: number }>('SELECT phase, count(*)::int AS n FROM events GROUP BY phase ORDER BY phase');
        assert.deepEqual(counts, [
          { phase: 'after', n: 150 },
          { phase: 'before', n: 100 },
        ]);
        assert.deepEqual(await one(restored, 'SELECT count(*)::int AS n FROM spaced'), { n: 10 });
        const ts = await one<{ loc: string }>(restored, `SELECT pg_tablespace_location(oid) AS loc FROM pg_tablespace WHERE spcname = 'harness_ts'`);
        assert.ok(ts.loc.startsWith(`${copyDir}.tablespaces/`), `restored tablespace at ${ts.loc} must not be the source's`);
        const wal = await one<{ walfile: string; recovering: boolean }>(restored, 'SELECT pg_walfile_name(pg_current_wal_lsn()) AS walfile, pg_is_in_recovery() AS recovering');
        assert.equal(wal.recovering, false);
        assert.ok(wal.walfile.startsWith('00000002'), `promotion should start timeline 2, WAL is at ${wal.walfile}`);
        // pg_wal was left out of the copy, so the later rows can only have come through restore_command.
        assert.match(await restored.logText(), new RegExp(`restored log file "${lastSegment}" from archive`));
      });
    });

    it(`honours dataChecksums: ${version === 18 ? 'false' : 'true'} against the build default`, async () => {
      const want = version !== 18;
      const c = await startCluster({ version, dataChecksums: want, fsync: false });
      clusters.push(c);
      const row = await one<{ checksums: string; fsync: string }>(c, `SELECT current_setting('data_checksums') AS checksums, current_setting('fsync') AS fsync`);
      assert.deepEqual(row, { checksums: want ? 'on' : 'off', fsync: 'off' });
    });
  });
}

describe('harness safety nets', () => {
  it('a process that dies with a running cluster leaves no postmaster and no baseDir behind', async () => {
    const version: PgVersion = 16;
    const helper = resolve(import.meta.dirname, '..', 'helpers', 'postgres.ts');
    const script = [
      `import { readFileSync } from 'node:fs';`,
      `import { startCluster } from ${JSON.stringify(helper)};`,
      `const c = await startCluster({ version: ${version} });`,
      `const pid = Number(readFileSync(c.dataDir + '/postmaster.pid', 'utf8').split('\\n')[0]);`,
      `console.log(JSON.stringify({ pid, baseDir: c.baseDir }));`,
      `throw new Error('simulated test failure before destroy()');`,
    ].join('\n');
    const env = { ...process.env };
    for (const key of Object.keys(env)) if (key.startsWith('NODE_TEST')) delete env[key];
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: 90_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const code = await new Promise<number | null>((done) => child.once('close', done));
    assert.notEqual(code, 0, 'the child was meant to fail');
    assert.match(stderr, /simulated test failure/);
    const line = stdout.trim().split('\n').at(-1) ?? '';
    const { pid, baseDir } = JSON.parse(line) as { pid: number; baseDir: string };
    assert.ok(pid > 0, `child reported ${line}; stderr: ${stderr}`);
    assert.equal(await processAlive(pid), false, `postmaster ${pid} survived its test process`);
    assert.equal(existsSync(baseDir), false, `${baseDir} was left behind`);
  });

  it('assertReadableByPgUser names the directory that blocks the pg user', { skip: process.getuid?.() !== 0 ? 'needs root: as any other user the pg user is the current user' : false }, async () => {
    await assertReadableByPgUser(resolve(import.meta.dirname, '..', '..', 'bin', 'cloudbarman'));
    const locked = await makeTempDir('cloudbarman-locked');
    try {
      await chmod(locked, 0o700);
      await assert.rejects(assertReadableByPgUser(locked), (err: Error) => {
        assert.match(err.message, new RegExp(`lacks read permission on ${locked}`));
        return true;
      });
      await mkdir(join(locked, 'inner'));
      await writeFile(join(locked, 'inner', 'tool'), '#!/bin/sh\n', { mode: 0o755 });
      await assert.rejects(assertReadableByPgUser(join(locked, 'inner', 'tool')), (err: Error) => {
        assert.match(err.message, new RegExp(`lacks search permission \\(x\\) on directory ${locked} \\(mode 0700, owner 0:0\\)`));
        return true;
      });
    } finally {
      await removeTempDir(locked);
    }
  });
});

// A zombie (reaped late by a container's init) counts as dead: it holds no port, files or memory.
async function processAlive(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

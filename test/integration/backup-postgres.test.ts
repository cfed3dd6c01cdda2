// backup_method postgres on real PostgreSQL 15 and 18 with a local store: archive_command is
// `cloudbarman wal-upload`, `cloudbarman backup --method postgres` takes the base backup with
// BASE_BACKUP over a replication connection (no --pgdata), and `cloudbarman restore` of it (with a
// relocated tablespace) must give a cluster that holds the marks committed before and after it.
// Starts: a primary and a restored cluster per version; no store servers.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { chmod, chown, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { pathToFileURL } from 'node:url';
import {
  assertReadableByPgUser, createCluster, makePgTempDir, mkdirForPgUser, pgOsUser, runAsPgUser, startCluster, switchWal, waitForArchived,
  type Cluster, type PgVersion,
} from '../helpers/postgres.ts';
import { CLI_BIN, runCli } from '../helpers/cli.ts';
import { LocalObjectStore } from '../../providers/local/object-store.ts';
import { readManifest } from '../../src/core/catalog/catalog.ts';
import type { Manifest } from '../../src/core/catalog/manifest.ts';

let work: string;

before(async () => {
  await assertReadableByPgUser(CLI_BIN);
  work = await makePgTempDir('cb-backup-pg-it');
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

for (const version of [15, 18] as const satisfies readonly PgVersion[]) {
  describe(`PostgreSQL ${version}, backup --method postgres`, () => {
    let primary: Cluster | undefined;
    let restored: Cluster | undefined;
    after(async () => {
      await restored?.destroy();
      await primary?.destroy();
    });

    test('BASE_BACKUP into parts, backup_manifest stored, restore gives the marks, tablespace relocated', async () => {
      const server = `bbpg${version}`;
      const store = await mkdirForPgUser(join(work, `store-${version}`));
      const config = join(work, `cloudbarman-${version}.conf`);
      await writeFile(config, `[${server}]\ndestination = ${pathToFileURL(store).href}\ncompression = zstd\nretry_timeout = 5s\nwal_archive_timeout = 60s\n`);
      await chown(config, pgOsUser().uid, pgOsUser().gid);
      const env = { CLOUDBARMAN_CONFIG: config };

      primary = await startCluster({
        version, env, fsync: false,
        conf: { wal_level: 'replica', archive_mode: 'on', archive_command: `'${CLI_BIN} wal-upload ${server} %p'`, max_wal_senders: '4' },
      });
      const spc = await mkdirForPgUser(join(work, `spc-${version}`));
      await primary.query(`CREATE TABLESPACE extra LOCATION '${spc}'`);
      await primary.query('CREATE TABLE marks (id int PRIMARY KEY, at timestamptz) TABLESPACE extra');
      await primary.query("CREATE TABLE filler AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 50000) g");
      await primary.query('INSERT INTO marks VALUES (1, now())');

      const conninfo = `host=127.0.0.1 port=${primary.port} user=postgres`;
      const args = ['--format', 'json', 'backup', server, '--method', 'postgres', '--jobs', '2', '--part-size', '5MiB',
        '--conninfo', `${conninfo} dbname=postgres`, '--streaming-conninfo', conninfo];
      let backup: { code: number; stdout: string; stderr: string };
      if (version === 18 && process.getuid?.() === 0) {
        // As an OS user who cannot read the data directory (nobody): the store is opened to it.
        await waitForArchived(primary, await switchWal(primary), 60_000);
        const ls = await runAs(NOBODY, 'ls', [primary.dataDir], {});
        assert.notEqual(ls.code, 0, `nobody must not be able to read ${primary.dataDir}`);
        const open = await mkdtemp(join(tmpdir(), 'cb-bbpg-'));
        await chmod(open, 0o755);
        const openConfig = join(open, 'cloudbarman.conf');
        await writeFile(openConfig, await readFile(config, 'utf8'), { mode: 0o644 });
        await execFileP('chmod', ['-R', 'a+rwX', store]);
        for (let dir = store; dir !== '/'; dir = dirname(dir)) await chmod(dir, (await stat(dir)).mode | 0o711);
        // wal-upload (as the pg user) stores its objects 0600: keep opening them to nobody meanwhile.
        const opener = setInterval(() => execFile('chmod', ['-R', 'a+rwX', store], () => undefined), 200);
        try {
          backup = await runAs(NOBODY, CLI_BIN, args, { CLOUDBARMAN_CONFIG: openConfig, HOME: open });
        } finally {
          clearInterval(opener);
        }
        await rm(open, { recursive: true, force: true });
      } else {
        backup = await runAsPgUser(CLI_BIN, args, { env, timeoutMs: 300_000 });
      }
      assert.equal(backup.code, 0, `${backup.stderr}\n${await primary.logText()}`);
      const info = JSON.parse(backup.stdout) as { id: string; status: string; method: string; begin_lsn: string; end_lsn: string; timeline: number; end_wal: string };
      assert.equal(info.status, 'DONE');
      assert.equal(info.method, 'postgres');
      assert.match(info.begin_lsn, /^[0-9A-F]+\/[0-9A-F]+$/);
      assert.match(info.end_lsn, /^[0-9A-F]+\/[0-9A-F]+$/);
      assert.equal(info.timeline, 1);

      // The server's backup_manifest and the label are objects of the backup.
      const backupDir = await findDir(store, info.id);
      const names = await readdir(backupDir);
      assert.ok(names.includes('backup_manifest'), names.join(' '));
      assert.ok(names.includes('backup_label'), names.join(' '));
      assert.ok(names.includes('tablespace_map'), names.join(' '));
      assert.match(await readFile(join(backupDir, 'backup_manifest'), 'utf8'), /"PostgreSQL-Backup-Manifest-Version"/);

      // The same cluster backed up with --method local: the same files, directories and modes.
      const local = await runAsPgUser(CLI_BIN, ['--format', 'json', 'backup', server, '--method', 'local', '--jobs', '2', '--part-size', '5MiB',
        '--conninfo', `${conninfo} dbname=postgres`, '--pgdata', primary.dataDir], { env, timeoutMs: 300_000 });
      assert.equal(local.code, 0, local.stderr);
      const localId = (JSON.parse(local.stdout) as { id: string }).id;
      const objects = new LocalObjectStore(pathToFileURL(store).href);
      const streamed = await readManifest(objects, server, info.id);
      const walked = await readManifest(objects, server, localId);
      assert.deepEqual(layout(streamed).directories, layout(walked).directories);
      assert.deepEqual(layout(streamed).files, layout(walked).files);
      // Parts as the local method cuts them: none above the part size, pg_control alone in the last.
      assert.ok(streamed.parts.every((p) => p.rawSize <= 5 * 1024 * 1024), JSON.stringify(streamed.parts.map((p) => p.rawSize)));
      const control = streamed.files.find((f) => f.path === 'global/pg_control');
      assert.deepEqual(control?.chunks.map((c) => c.part), [streamed.parts.length - 1]);
      assert.ok(streamed.files.some((f) => f.chunks.length > 1), 'a file larger than the room left is split across parts');

      await primary.query('INSERT INTO marks VALUES (2, now())');
      await waitForArchived(primary, await switchWal(primary), 60_000);

      const dest = join(work, `restored-${version}`);
      const moved = join(work, `spc-moved-${version}`);
      const r = await runCli(['--format', 'json', 'restore', server, info.id, dest, '--tablespace', `extra:${moved}`, '--jobs', '2'], { env, timeoutMs: 300_000 });
      assert.equal(r.code, 0, r.stderr);
      assert.equal((JSON.parse(r.stdout) as { backup_id: string }).backup_id, info.id);
      assert.match(await readFile(join(dest, 'backup_label'), 'utf8'), /^START WAL LOCATION: /);

      restored = await createCluster({ version, env, fsync: false, dataDir: dest });
      await restored.start({ waitForRecovery: true });
      const rows = await restored.query<{ id: number }>('SELECT id FROM marks ORDER BY id');
      assert.deepEqual(rows.map((x) => x.id), [1, 2], `marks after restore\n${await restored.logText()}`);
      const filler = await restored.query<{ n: string }>('SELECT count(*) AS n FROM filler');
      assert.equal(filler[0]?.n, '50000');
      const location = await restored.query<{ l: string }>("SELECT pg_tablespace_location(oid) AS l FROM pg_tablespace WHERE spcname = 'extra'");
      assert.equal(location[0]?.l, moved);
    });
  });
}

const execFileP = promisify(execFile);

/**
 * What two backups of one cluster taken moments apart must agree on: every directory with its
 * mode, every file with its mode, and the size of files the server does not rewrite meanwhile.
 */
function layout(m: Manifest): { directories: string[]; files: string[] } {
  // Relation files, free space maps and the like may change between the two backups; their sizes are not compared.
  const stable = (path: string): boolean => /(^|\/)(PG_VERSION|pg_filenode\.map|postgresql\.conf|pg_hba\.conf|pg_ident\.conf)$/.test(path);
  return {
    // The local walk keeps every pg_wal subdirectory, cloudbarman's own WAL spool too; the server sends archive_status and summaries only.
    directories: m.directories.filter((d) => d.path !== 'pg_wal/cloudbarman_spool').map((d) => `${d.path} ${d.mode.toString(8)}`),
    files: m.files.map((f) => `${f.path} ${f.mode.toString(8)}${stable(f.path) ? ` ${f.size} ${f.sha256 ?? ''}` : ''}`),
  };
}
const NOBODY = 65534;

/** Runs cmd as uid/gid `id` with umask 0 (so the pg user can still use what it stores). */
async function runAs(id: number, cmd: string, args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return await new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', 'umask 0; exec "$@"', 'sh', cmd, ...args], {
      cwd: '/', uid: id, gid: id, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr });
    });
  });
}

/** The directory under root named `name` (the backup's prefix in a file:// store). */
async function findDir(root: string, name: string): Promise<string> {
  for (const e of await readdir(root, { withFileTypes: true, recursive: true })) {
    if (e.isDirectory() && e.name === name) return join(e.parentPath, e.name);
  }
  throw new Error(`no directory ${name} under ${root}`);
}

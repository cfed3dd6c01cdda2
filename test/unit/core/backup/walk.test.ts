// The data-directory walk on a real temporary tree shaped like a cluster, with a tablespace.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { walkDataDirectory } from '../../../../src/core/backup/walk.ts';
import { silentLogger } from '../../../../src/core/log.ts';

let root: string;
let pgdata: string;
let tablespace: string;

async function file(path: string, content = 'x'): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, content);
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'cb-walk-'));
  pgdata = join(root, 'data');
  tablespace = join(root, 'ts1');
  const kept = ['PG_VERSION', 'postgresql.auto.conf', 'global/pg_control', 'global/1260', 'base/5/PG_VERSION', 'base/5/16390',
    'base/5/16384_init', 'pg_stat/pgstat.stat', 'pg_xact/0000', 'pg_logical/replorigin_checkpoint'];
  const skipped = ['postmaster.pid', 'postmaster.opts', 'backup_label', 'tablespace_map', 'backup_manifest', 'postgresql.auto.conf.tmp',
    'current_logfiles.tmp', 'global/pg_internal.init', 'base/5/pg_internal.init', 'base/5/16384', 'base/5/16384_fsm', 'base/5/16384.1',
    'base/5/t3_16400', 'base/pgsql_tmp/pgsql_tmp123.0', 'pg_wal/000000010000000000000001', 'pg_wal/archive_status/000000010000000000000001.done',
    'pg_replslot/slot1/state', 'pg_stat_tmp/global.stat', 'pg_notify/0000', 'pg_subtrans/0000', 'pg_dynshmem/mmap.1', 'pg_serial/0000',
    'pg_snapshots/00000003-1'];
  for (const p of [...kept, ...skipped]) await file(join(pgdata, p), `content of ${p}`);
  await chmod(join(pgdata, 'postgresql.auto.conf'), 0o640);
  await mkdir(join(pgdata, 'pg_wal', 'summaries'));
  await mkdir(join(pgdata, 'pg_tblspc'));
  await file(join(tablespace, 'PG_15_202209061', '5', '16500'), 'tablespace data');
  await file(join(tablespace, 'PG_14_202107181', '5', '16500'), 'another version');
  await symlink(tablespace, join(pgdata, 'pg_tblspc', '16385'));
  await symlink(join(root, 'gone'), join(pgdata, 'pg_tblspc', '16386'));
});
after(() => rm(root, { recursive: true, force: true }));

test('keeps what basebackup.c keeps, follows the tablespace, records directories and modes', async () => {
  const debug: string[] = [];
  const result = await walkDataDirectory(pgdata, { tablespaceVersionDir: 'PG_15_202209061', log: { ...silentLogger, debug: (m) => debug.push(m) } });
  assert.deepEqual(result.files.map((f) => f.path).sort(), [
    'PG_VERSION', 'base/5/16384_init', 'base/5/16390', 'base/5/PG_VERSION', 'global/1260', 'global/pg_control',
    'pg_logical/replorigin_checkpoint', 'pg_stat/pgstat.stat', 'pg_tblspc/16385/PG_15_202209061/5/16500', 'pg_xact/0000', 'postgresql.auto.conf',
  ]);
  const dirs = result.directories.map((d) => d.path).sort();
  for (const d of ['base', 'base/5', 'global', 'pg_wal', 'pg_wal/archive_status', 'pg_wal/summaries', 'pg_replslot', 'pg_stat_tmp', 'pg_notify',
    'pg_subtrans', 'pg_dynshmem', 'pg_serial', 'pg_snapshots', 'pg_tblspc', 'pg_tblspc/16385', 'pg_tblspc/16385/PG_15_202209061',
    'pg_tblspc/16385/PG_15_202209061/5']) {
    assert.ok(dirs.includes(d), `directory ${d} is recorded`);
  }
  for (const d of ['pg_replslot/slot1', 'base/pgsql_tmp', 'pg_tblspc/16385/PG_14_202107181', 'pg_tblspc/16386']) assert.ok(!dirs.includes(d), `${d} is left out`);
  assert.deepEqual(result.tablespaces, [{ oid: 16385, location: await realpath(tablespace) }]);
  const conf = result.files.find((f) => f.path === 'postgresql.auto.conf');
  assert.equal(conf?.mode, 0o640);
  assert.equal(conf?.size, 'content of postgresql.auto.conf'.length);
  assert.equal(conf?.absolutePath, join(pgdata, 'postgresql.auto.conf'));
  const ts = result.files.find((f) => f.path.startsWith('pg_tblspc/'));
  assert.equal(ts?.absolutePath, join(pgdata, 'pg_tblspc', '16385', 'PG_15_202209061', '5', '16500'));
  assert.ok(debug.some((m) => m.includes('pg_tblspc/16386 is a dangling symlink')), debug.join('\n'));
});

test('without a version directory, takes everything in the tablespace', async () => {
  const result = await walkDataDirectory(pgdata, { log: silentLogger });
  const paths = result.files.map((f) => f.path);
  assert.ok(paths.includes('pg_tblspc/16385/PG_14_202107181/5/16500'));
  assert.ok(paths.includes('pg_tblspc/16385/PG_15_202209061/5/16500'));
});

test('an unreadable directory is an error, not a silent gap', { skip: process.getuid?.() === 0 ? 'root reads everything' : false }, async () => {
  const locked = join(pgdata, 'locked');
  await mkdir(locked, { mode: 0o000 });
  try {
    await assert.rejects(walkDataDirectory(pgdata, { log: silentLogger }), /cannot read .*locked: EACCES/);
  } finally {
    await rm(locked, { recursive: true, force: true });
  }
});

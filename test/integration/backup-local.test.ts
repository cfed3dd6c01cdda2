// `cloudbarman backup` (backup_method local) against real PostgreSQL 15 and 18, archiving through
// `cloudbarman wal-upload` into a local store, with a tablespace, an unlogged table and ~50 MB of data.
// The store is then checked without the code under test's reader: every part is decompressed and every
// chunk compared with its hash; the manifest is compared with an independent walk of the data directory;
// and the backup is materialised by hand and started as a cluster, which must recover and hold every row.
// Starts: one PostgreSQL 15 and one PostgreSQL 18 cluster, and one more of each from its backup; then one
// PostgreSQL 15 cluster archiving and backing up into s3rver.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chown, lstat, mkdir, open, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { pathToFileURL } from 'node:url';
import {
  assertReadableByPgUser, createCluster, makePgTempDir, mkdirForPgUser, pgOsUser, pollUntil, startCluster, switchWal, waitForArchived,
  type Cluster, type PgVersion,
} from '../helpers/postgres.ts';
import { CLI_BIN, runCli } from '../helpers/cli.ts';
import { LocalObjectStore } from '../../providers/local/object-store.ts';
import type { ObjectStore } from '../../providers/object-store.ts';
import { openObjectStore } from '../../providers/registry.ts';
import { s3rverCredentials, startS3rver } from '../servers/s3rver.ts';
import { readBackupInfo, readManifest } from '../../src/core/catalog/catalog.ts';
import type { BackupInfo } from '../../src/core/catalog/backup-info.ts';
import type { Manifest } from '../../src/core/catalog/manifest.ts';
import { decompressPart, type BackupCodec } from '../../src/io/compression.ts';

const MiB = 1024 * 1024;
const PART_SIZE = 5 * MiB;
const ROWS = 180_000;
const TS_ROWS = 20_000;

let work: string;
before(async () => {
  await assertReadableByPgUser(CLI_BIN);
  work = await makePgTempDir('cb-backupit');
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** A config file readable by the pg user (archive_command reads it too) and the env that names it. */
async function configure(version: PgVersion): Promise<{ env: Record<string, string>; server: string; storeDir: string }> {
  const server = `pg${version}`;
  const storeDir = await mkdirForPgUser(join(work, `store-${version}`));
  const file = join(work, `cloudbarman-${version}.conf`);
  await writeFile(file, `[cloudbarman]\nretry_timeout = 5s\n\n[${server}]\ndestination = ${pathToFileURL(storeDir).href}\npart_size = 5MiB\nwal_archive_timeout = 120s\n`);
  await chown(file, pgOsUser().uid, pgOsUser().gid);
  return { env: { CLOUDBARMAN_CONFIG: file }, server, storeDir };
}

// What basebackup.c leaves out, written out again here so that the check does not trust src/.
const SKIP_CONTENTS = new Set(['pg_wal', 'pg_dynshmem', 'pg_notify', 'pg_replslot', 'pg_serial', 'pg_snapshots', 'pg_stat_tmp', 'pg_subtrans']);
const SKIP_FILES = new Set(['postmaster.pid', 'postmaster.opts', 'backup_label', 'tablespace_map', 'backup_manifest', 'postgresql.auto.conf.tmp', 'current_logfiles.tmp']);

/** Files of pgdata (tablespaces followed) that a backup must hold, with their sizes. */
async function independentWalk(pgdata: string, versionDir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const walk = async (abs: string, rel: string): Promise<void> => {
    for (const name of await readdir(abs)) {
      if (SKIP_FILES.has(name) || name.startsWith('pg_internal.init') || name.startsWith('pgsql_tmp')) continue;
      const path = rel === '' ? name : `${rel}/${name}`;
      const st = await lstat(join(abs, name));
      if (rel === 'pg_tblspc') {
        await walk(join(abs, name, versionDir), `${path}/${versionDir}`);
      } else if (st.isDirectory()) {
        if (!(rel === '' && SKIP_CONTENTS.has(name))) await walk(join(abs, name), path);
      } else if (st.isFile()) {
        out.set(path, st.size);
      }
    }
  };
  await walk(pgdata, '');
  return out;
}

/** Every stored part, decompressed, with its stored hash and every chunk hash checked. */
async function readParts(store: ObjectStore, prefix: string, manifest: Manifest): Promise<Buffer[]> {
  const raws: Buffer[] = [];
  for (const part of manifest.parts) {
    const { body, info } = await store.get(`${prefix}${part.name}`);
    const stored = await buffer(body);
    assert.equal(stored.length, part.storedSize, part.name);
    assert.equal(sha(stored), part.sha256, `${part.name}: stored bytes match the manifest's hash`);
    assert.equal(info.metadata?.['cb_sha256'], part.sha256);
    const raw = await decompressPart(stored, manifest.compression as BackupCodec);
    assert.equal(raw.length, part.rawSize, part.name);
    assert.ok(part.rawSize <= PART_SIZE, `${part.name} holds ${part.rawSize} bytes, over part_size`);
    raws.push(raw);
  }
  for (const file of manifest.files) {
    let expected = 0;
    for (const c of file.chunks) {
      assert.equal(c.fileOffset, expected, `${file.path}: chunks are contiguous`);
      expected += c.length;
      const bytes = raws[c.part]?.subarray(c.partOffset, c.partOffset + c.length);
      assert.equal(bytes?.length, c.length, `${file.path}: chunk inside its part`);
      assert.equal(sha(bytes ?? Buffer.alloc(0)), c.sha256, `${file.path}@${c.fileOffset}: chunk hash`);
    }
    assert.equal(expected, file.size, `${file.path}: chunks cover the file`);
    if (file.chunks.length === 1) assert.equal(file.sha256, file.chunks[0]?.sha256);
  }
  return raws;
}

/** Writes a backup out as a data directory by hand: directories, files from their chunks, label, relocated tablespaces. */
async function materialise(store: LocalObjectStore, prefix: string, manifest: Manifest, raws: Buffer[], dest: string): Promise<void> {
  await mkdir(dest, { mode: 0o700 });
  // createCluster chowns the data directory and each tablespace, but not the folder holding them.
  const spaces = await mkdirForPgUser(`${dest}.tablespaces`);
  const mapText = await store.get(`${prefix}tablespace_map`).then(async (r) => (await buffer(r.body)).toString(), () => '');
  const relocated: string[] = [];
  for (const line of mapText.split('\n').filter((l) => l !== '')) {
    const oid = line.slice(0, line.indexOf(' '));
    await mkdir(join(spaces, oid), { mode: 0o700 });
    await symlink(join(spaces, oid), join(dest, 'pg_tblspc', oid)).catch(async () => {
      await mkdir(join(dest, 'pg_tblspc'), { recursive: true, mode: 0o700 });
      await symlink(join(spaces, oid), join(dest, 'pg_tblspc', oid));
    });
    relocated.push(`${oid} ${join(spaces, oid)}\n`);
  }
  for (const d of manifest.directories) {
    const st = await lstat(join(dest, d.path)).catch(() => undefined);
    if (st === undefined) await mkdir(join(dest, d.path), { mode: d.mode });
  }
  for (const f of manifest.files) {
    const handle = await open(join(dest, f.path), 'w', f.mode);
    try {
      for (const c of f.chunks) await handle.write(raws[c.part] ?? Buffer.alloc(0), c.partOffset, c.length, c.fileOffset);
    } finally {
      await handle.close();
    }
  }
  await writeFile(join(dest, 'backup_label'), await buffer((await store.get(`${prefix}backup_label`)).body), { mode: 0o600 });
  if (relocated.length > 0) await writeFile(join(dest, 'tablespace_map'), relocated.join(''), { mode: 0o600 });
}

async function storeKeys(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (abs: string, rel: string): Promise<void> => {
    for (const e of await readdir(abs, { withFileTypes: true })) {
      if (e.name.startsWith('.')) continue;
      if (e.isDirectory()) await walk(join(abs, e.name), `${rel}${e.name}/`);
      else out.push(`${rel}${e.name}`);
    }
  };
  await walk(dir, '');
  return out;
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  await new Promise<void>((r) => server.close(() => r()));
  return typeof address === 'object' && address !== null ? address.port : 1;
}

for (const version of [15, 18] as const) {
  describe(`PostgreSQL ${version}: backup --method local`, () => {
    let cluster: Cluster | undefined;
    let restored: Cluster | undefined;
    let env: Record<string, string>;
    let server: string;
    let storeDir: string;
    let store: LocalObjectStore;
    let done: BackupInfo | undefined;
    before(async () => {
      ({ env, server, storeDir } = await configure(version));
      store = new LocalObjectStore(pathToFileURL(storeDir).href);
      cluster = await startCluster({
        version, env, fsync: false,
        conf: { wal_level: 'replica', archive_mode: 'on', archive_command: `'${CLI_BIN} wal-upload ${server} %p'`, autovacuum: 'off' },
      });
      const tsDir = await mkdirForPgUser(join(work, `ts-${version}`));
      await cluster.query(`CREATE TABLESPACE ts1 LOCATION '${tsDir}'`);
      await cluster.query(`CREATE TABLE big AS SELECT g AS id, md5(g::text) || repeat(chr(65 + g % 26), 200) AS t FROM generate_series(1, ${ROWS}) g`);
      await cluster.query(`CREATE TABLE spaced TABLESPACE ts1 AS SELECT g AS id, md5(g::text) AS t FROM generate_series(1, ${TS_ROWS}) g`);
      await cluster.query('CREATE UNLOGGED TABLE scratch AS SELECT g FROM generate_series(1, 10000) g');
      // Hint bits and the visibility map settle now, so that the files do not change after the backup.
      await cluster.query('VACUUM FREEZE');
      await cluster.query('CHECKPOINT');
      // The first segments reach the store as the pg user, which then owns the server's folder.
      await waitForArchived(cluster, await switchWal(cluster), 60_000);
    });
    after(async () => {
      await restored?.destroy();
      await cluster?.destroy();
    });

    test('a zstd backup is DONE with sane LSNs, and its store holds exactly the data directory', async () => {
      const c = cluster;
      assert.ok(c !== undefined);
      const r = await runCli(['--format', 'json', 'backup', server, '--conninfo', c.connectionString, '--pgdata', c.dataDir, '--name', 'it'], { env, timeoutMs: 300_000 });
      assert.equal(r.code, 0, r.stderr);
      const info = JSON.parse(r.stdout) as BackupInfo;
      done = info;
      const [pgInfo] = await c.query<{ num: string; sysid: string; tli: number }>(
        "SELECT current_setting('server_version_num') AS num, (SELECT system_identifier::text FROM pg_control_system()) AS sysid, (SELECT timeline_id FROM pg_control_checkpoint()) AS tli");
      assert.equal(info.status, 'DONE');
      assert.equal(info.method, 'local');
      assert.equal(info.label, 'it');
      assert.equal(info.compression, 'zstd');
      assert.equal(info.pg_version, Number(pgInfo?.num));
      assert.equal(info.system_identifier, pgInfo?.sysid);
      assert.equal(info.timeline, pgInfo?.tli);
      assert.equal(info.data_checksums, version >= 18);
      assert.equal(info.wal_segment_size, 16 * MiB);
      assert.deepEqual(info.tablespaces.map((t) => [t.name, t.location]), [['ts1', join(work, `ts-${version}`)]]);
      assert.equal(info.error, null);
      const lsn = (s: string | null): bigint => {
        const [hi, lo] = (s ?? '0/0').split('/');
        return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
      };
      assert.ok(lsn(info.end_lsn) > lsn(info.begin_lsn), `${info.begin_lsn} .. ${info.end_lsn}`);
      assert.ok((info.begin_wal ?? '') <= (info.end_wal ?? ''));
      const [walNames] = await c.query<{ b: string; e: string }>('SELECT pg_walfile_name($1::pg_lsn) AS b, pg_walfile_name($2::pg_lsn) AS e', [info.begin_lsn, info.end_lsn]);
      assert.equal(info.begin_wal, walNames?.b);
      assert.equal(info.end_wal, walNames?.e);
      assert.ok(Date.parse(info.end_time ?? '') >= Date.parse(info.begin_time));
      assert.ok(info.size_bytes > 45 * MiB, `size_bytes ${info.size_bytes}`);
      assert.ok(info.stored_bytes < info.size_bytes / 2, `zstd stored ${info.stored_bytes} of ${info.size_bytes}`);

      const prefix = `${server}/base/${info.id}/`;
      const manifest = await readManifest(store, server, info.id);
      assert.equal(manifest.files.length, info.file_count);
      assert.equal(manifest.parts.length, info.part_count);
      assert.equal(manifest.files.reduce((s, f) => s + f.size, 0), info.size_bytes);
      assert.equal(manifest.parts.reduce((s, p) => s + p.storedSize, 0), info.stored_bytes);
      const keys = (await storeKeys(join(storeDir, server, 'base', info.id))).sort();
      assert.deepEqual(keys, ['backup.json', 'backup_label', 'manifest.json.zst', 'tablespace_map', ...manifest.parts.map((p) => p.name)].sort());
      assert.ok(await store.head(`${server}/wals/${(info.end_wal ?? '').slice(0, 16)}/${info.end_wal ?? ''}.zst`), 'the end segment is archived');

      // pg_control alone, in the last part.
      const last = manifest.parts.length - 1;
      const control = manifest.files.find((f) => f.path === 'global/pg_control');
      assert.deepEqual(control?.chunks.map((ch) => ch.part), [last]);
      assert.ok(manifest.files.every((f) => f.path === 'global/pg_control' || f.chunks.every((ch) => ch.part < last)));

      // Every file PostgreSQL had before the backup is in the manifest at its size; nothing excluded is.
      const catalogVersion = (await c.query<{ v: number }>('SELECT catalog_version_no AS v FROM pg_control_system()'))[0]?.v;
      const onDisk = await independentWalk(c.dataDir, `PG_${version}_${catalogVersion}`);
      const inManifest = new Map(manifest.files.map((f) => [f.path, f.size]));
      const [rels] = await c.query<{ big: string; spaced: string; scratch: string }>(
        "SELECT pg_relation_filepath('big') AS big, pg_relation_filepath('spaced') AS spaced, pg_relation_filepath('scratch') AS scratch");
      for (const [path, size] of onDisk) {
        if (path.startsWith(rels?.scratch ?? '-') && !path.endsWith('_init')) continue; // unlogged: only its init fork
        if (path === 'global/pg_control' || path.startsWith('pg_stat/') || path.startsWith('pg_xact/') || path.startsWith('pg_logical/')) {
          assert.ok(inManifest.has(path), `${path} is backed up`); // these change at checkpoints: only their presence is stable
          continue;
        }
        assert.equal(inManifest.get(path), size, `${path}: in the manifest at its size`);
      }
      for (const path of inManifest.keys()) {
        assert.ok(!/^(pg_wal|pg_replslot|pg_stat_tmp|pg_subtrans|pg_notify|pg_dynshmem|pg_serial|pg_snapshots)\//.test(path), `${path} is excluded content`);
        assert.ok(!/(^|\/)(postmaster\.(pid|opts)|pg_internal\.init.*|backup_label|tablespace_map)$/.test(path), `${path} is an excluded file`);
      }
      assert.ok(!inManifest.has(rels?.scratch ?? '-'), 'the unlogged table\'s main fork is left out');
      assert.ok(inManifest.has(`${rels?.scratch ?? '-'}_init`), 'its init fork is kept');
      const spacedPath = `${rels?.spaced ?? '-'}`;
      assert.ok(spacedPath.startsWith('pg_tblspc/') && inManifest.has(spacedPath), `the tablespace table ${spacedPath} is backed up`);
      assert.ok(manifest.directories.some((d) => d.path === 'pg_wal/archive_status'));
      assert.ok(manifest.directories.some((d) => d.path === 'pg_replslot'));
      assert.ok(manifest.files.every((f) => /^\d{4}-\d\d-\d\dT/.test(f.mtime) && f.mode > 0));

      // Every part and chunk verifies; the big table's bytes are the file's bytes.
      const raws = await readParts(store, prefix, manifest);
      const bigFile = manifest.files.find((f) => f.path === rels?.big);
      assert.ok(bigFile !== undefined && bigFile.chunks.length > 1, 'the big table spans several parts');
      const onDiskBig = await readFile(join(c.dataDir, bigFile.path));
      for (const ch of bigFile.chunks) {
        assert.ok(raws[ch.part]?.subarray(ch.partOffset, ch.partOffset + ch.length).equals(onDiskBig.subarray(ch.fileOffset, ch.fileOffset + ch.length)), `big@${ch.fileOffset}`);
      }
      const label = (await buffer((await store.get(`${prefix}backup_label`)).body)).toString();
      assert.match(label, new RegExp(`START WAL LOCATION: ${info.begin_lsn} \\(file ${info.begin_wal}\\)`));
      assert.match(label, /LABEL: it/);
    });

    test('the backup, written out by hand, recovers through wal-restore and holds every row', async () => {
      const info = done;
      assert.ok(info !== undefined, 'needs the previous test');
      const prefix = `${server}/base/${info.id}/`;
      const manifest = await readManifest(store, server, info.id);
      const raws = await readParts(store, prefix, manifest);
      const dest = join(work, `restored-${version}`);
      await materialise(store, prefix, manifest, raws, dest);
      assert.equal(await readlink(join(dest, 'pg_tblspc', String(info.tablespaces[0]?.oid))), join(`${dest}.tablespaces`, String(info.tablespaces[0]?.oid)));
      restored = await createCluster({
        version, env, fsync: false, dataDir: dest, signal: 'recovery',
        conf: { restore_command: `'${CLI_BIN} wal-restore ${server} %f %p'`, archive_mode: 'off', recovery_target_action: 'promote', recovery_target: "'immediate'" },
      });
      await restored.start({ waitForRecovery: true });
      const [counts] = await restored.query<{ big: string; spaced: string; sum: string }>(
        'SELECT (SELECT count(*) FROM big) AS big, (SELECT count(*) FROM spaced) AS spaced, (SELECT sum(id) FROM big) AS sum');
      assert.equal(Number(counts?.big), ROWS);
      assert.equal(Number(counts?.spaced), TS_ROWS);
      assert.equal(BigInt(counts?.sum ?? '0'), (BigInt(ROWS) * BigInt(ROWS + 1)) / 2n);
      assert.match(await restored.logText(), /consistent recovery state reached/);
      await restored.destroy();
      restored = undefined;
    });

    for (const codec of ['none', 'gzip', 'lz4'] as const) {
      test(`--compression ${codec} stores valid parts`, async () => {
        const c = cluster;
        assert.ok(c !== undefined);
        const r = await runCli(['--format', 'json', 'backup', server, '--compression', codec, '--jobs', '3', '--conninfo', c.connectionString, '--pgdata', c.dataDir], { env, timeoutMs: 300_000 });
        assert.equal(r.code, 0, r.stderr);
        const info = JSON.parse(r.stdout) as BackupInfo;
        assert.equal(info.status, 'DONE');
        assert.equal(info.compression, codec);
        const manifest = await readManifest(store, server, info.id);
        assert.equal(manifest.compression, codec);
        const ext = { none: '', gzip: '.gz', lz4: '.lz4' }[codec];
        assert.ok(manifest.parts.every((p) => p.name.endsWith(`${ext}`) && /^data\/\d{6}/.test(p.name)));
        if (codec === 'none') assert.equal(info.stored_bytes, info.size_bytes);
        else assert.ok(info.stored_bytes < info.size_bytes * 0.6, `${codec} stored ${info.stored_bytes} of ${info.size_bytes}`);
        const raws = await readParts(store, `${server}/base/${info.id}/`, manifest);
        const version_ = manifest.files.find((f) => f.path === 'PG_VERSION');
        const ch = version_?.chunks[0];
        assert.equal(ch === undefined ? '' : raws[ch.part]?.subarray(ch.partOffset, ch.partOffset + ch.length).toString(), `${version}\n`);
      });
    }

    test('an unreachable database exits 2 and a missing pgdata exits 3, each saying what to fix', async () => {
      const c = cluster;
      assert.ok(c !== undefined);
      const entries = async (): Promise<number> => (await storeKeys(join(storeDir, server, 'base'))).filter((k) => k.endsWith('/backup.json')).length;
      const before = await entries();
      const port = await closedPort();
      const down = await runCli(['backup', server, '--conninfo', `host=127.0.0.1 port=${port} user=postgres password=s3cret dbname=postgres`, '--pgdata', c.dataDir], { env });
      assert.equal(down.code, 2, down.stderr);
      assert.match(down.stderr, new RegExp(`cannot connect to PostgreSQL at postgres@127\\.0\\.0\\.1:${port}/postgres`));
      assert.match(down.stderr, /hint: /);
      assert.doesNotMatch(down.stderr, /s3cret/);
      const missing = await runCli(['backup', server, '--conninfo', c.connectionString, '--pgdata', join(work, 'no-such-dir')], { env });
      assert.equal(missing.code, 3, missing.stderr);
      assert.match(missing.stderr, /pgdata .*no-such-dir does not exist/);
      assert.match(missing.stderr, /hint: set pgdata/);
      assert.equal(await entries(), before, 'neither attempt created a catalog entry');
    });

    test('a role without the GRANTs is told which ones before anything is stored; with them it backs up', async () => {
      const c = cluster;
      assert.ok(c !== undefined);
      await c.query('CREATE ROLE cb_backup LOGIN');
      const conninfo = `host=127.0.0.1 port=${c.port} user=cb_backup dbname=postgres`;
      const entries = async (): Promise<number> => (await storeKeys(join(storeDir, server, 'base'))).filter((k) => k.endsWith('/backup.json')).length;
      const before = await entries();
      const denied = await runCli(['backup', server, '--conninfo', conninfo, '--pgdata', c.dataDir], { env });
      assert.equal(denied.code, 3, denied.stderr);
      assert.match(denied.stderr, /role cb_backup may not run pg_backup_start/);
      assert.match(denied.stderr, /GRANT EXECUTE ON FUNCTION pg_backup_start\(text, boolean\) TO cb_backup; GRANT EXECUTE ON FUNCTION pg_backup_stop\(boolean\) TO cb_backup/);
      assert.equal(await entries(), before);
      await c.query('GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean) TO cb_backup');
      await c.query('GRANT EXECUTE ON FUNCTION pg_backup_stop(boolean) TO cb_backup');
      const allowed = await runCli(['--format', 'json', 'backup', server, '--conninfo', conninfo, '--pgdata', c.dataDir], { env, timeoutMs: 300_000 });
      assert.equal(allowed.code, 0, allowed.stderr);
      assert.equal((JSON.parse(allowed.stdout) as BackupInfo).status, 'DONE');
    });

    test('SIGTERM mid-upload ends PostgreSQL\'s backup, marks the entry FAILED and exits 1', async () => {
      const c = cluster;
      assert.ok(c !== undefined);
      const base = join(storeDir, server, 'base');
      const known = new Set(await readdir(base));
      const child = spawn(CLI_BIN, ['backup', server, '--jobs', '1', '--compression', 'gzip', '--conninfo', c.connectionString, '--pgdata', c.dataDir],
        { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
      const id = await pollUntil(async () => {
        for (const candidate of await readdir(base)) {
          if (known.has(candidate)) continue;
          const parts = await readdir(join(base, candidate, 'data')).catch(() => [] as string[]);
          if (parts.some((p) => !p.startsWith('.'))) return candidate;
        }
        return undefined;
      }, { timeoutMs: 120_000, intervalMs: 10, what: 'the backup to store its first part' });
      child.kill('SIGTERM');
      assert.equal(await exited, 1, stderr);
      assert.match(stderr, /SIGTERM received/);
      assert.match(stderr, /error: the backup was interrupted by SIGTERM/);
      const entry = await readBackupInfo(store, server, id);
      assert.equal(entry?.status, 'FAILED');
      assert.equal(entry?.error, 'the backup was interrupted by SIGTERM');
      assert.ok(!(await readdir(join(base, id))).some((k) => k.startsWith('manifest')), 'no manifest for an interrupted backup');
      // The session is gone, so PostgreSQL has no backup in progress any more.
      await pollUntil(async () => {
        const rows = await c.query<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'cloudbarman_backup'");
        return rows[0]?.n === '0' ? true : undefined;
      }, { timeoutMs: 10_000, what: 'the backup session to end' });
    });
  });
}

describe('PostgreSQL 15: backup --method local into S3 (s3rver)', () => {
  let cluster: Cluster | undefined;
  let stopS3: (() => Promise<void>) | undefined;
  let store: ObjectStore | undefined;
  after(async () => {
    await store?.close();
    await cluster?.destroy();
    await stopS3?.();
  });

  test('parts, label, manifest and entry land in the bucket, and every chunk verifies', async () => {
    const s3 = await startS3rver({ buckets: ['backups'] });
    stopS3 = s3.stop;
    const file = join(work, 'cloudbarman-s3.conf');
    await writeFile(file, `[s3pg]\nprovider = aws\ndestination = s3://backups/cb\nendpoint_url = ${s3.endpoint}\naws_region = us-east-1\npart_size = 5MiB\nretry_timeout = 5s\n`);
    await chown(file, pgOsUser().uid, pgOsUser().gid);
    const env = { CLOUDBARMAN_CONFIG: file, AWS_ACCESS_KEY_ID: s3rverCredentials.accessKeyId, AWS_SECRET_ACCESS_KEY: s3rverCredentials.secretAccessKey };
    cluster = await startCluster({
      version: 15, env, fsync: false,
      conf: { wal_level: 'replica', archive_mode: 'on', archive_command: `'${CLI_BIN} wal-upload s3pg %p'` },
    });
    await cluster.query('CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 300000) g');
    const r = await runCli(['--format', 'json', 'backup', 's3pg', '--conninfo', cluster.connectionString, '--pgdata', cluster.dataDir], { env, timeoutMs: 300_000 });
    assert.equal(r.code, 0, r.stderr);
    const info = JSON.parse(r.stdout) as BackupInfo;
    assert.equal(info.status, 'DONE');
    process.env['AWS_ACCESS_KEY_ID'] = s3rverCredentials.accessKeyId;
    process.env['AWS_SECRET_ACCESS_KEY'] = s3rverCredentials.secretAccessKey;
    store = await openObjectStore('aws', {
      destination: 's3://backups/cb', endpointUrl: s3.endpoint, aws: { region: 'us-east-1', forcePathStyle: true },
      multipart: { partSizeBytes: 8 * MiB, concurrency: 2 }, connectTimeoutMs: 5000, requestTimeoutMs: 30_000,
    });
    const manifest = await readManifest(store, 's3pg', info.id);
    assert.ok(manifest.parts.length >= 3, `${manifest.parts.length} parts`);
    await readParts(store, `s3pg/base/${info.id}/`, manifest);
    assert.ok(await store.head(`s3pg/base/${info.id}/backup_label`));
    assert.ok(await store.head(`s3pg/wals/${(info.end_wal ?? '').slice(0, 16)}/${info.end_wal ?? ''}.zst`), 'the end segment is archived');
  });
});

// `cloudbarman receive-wal` (a child process) streaming from real PostgreSQL 15 and 18 with
// archive_mode off into a local store: slot creation and removal, byte-identical segments and
// .partial uploads, de-duplication against wal-upload, a server restart without a gap, a commit
// that waits for the store in synchronous mode, and a timeline switch when a standby is promoted.
// Starts: per version, one primary for the streaming tests, and a primary plus a standby (promoted)
// for the timeline switch; receive-wal processes beside them.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import {
  PG_VERSIONS, copyBaseBackup, createCluster, makePgTempDir, pollUntil, startCluster, switchWal, type Cluster,
} from '../helpers/postgres.ts';
import { CLI_BIN, runCli } from '../helpers/cli.ts';
import { makeTempDir, removeTempDir } from '../helpers/tmp.ts';
import { nextSegmentName } from '../../src/pg/wal-names.ts';

const VERSIONS = PG_VERSIONS.filter((v) => v === 15 || v === 18);
const APP_NAME = 'cloudbarman_receive_wal';

let work: string;
const running = new Set<Receiver>();

before(async () => {
  work = await makeTempDir('cb-recvwal');
});
after(async () => {
  for (const receiver of running) receiver.child.kill('SIGKILL');
  if (work) await removeTempDir(work);
});

interface Receiver {
  child: ChildProcess;
  stderr(): string;
  /** SIGTERM, then the exit (bounded); fails the test when it does not exit. */
  stop(): Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/** Starts `cloudbarman --format json -v receive-wal SERVER` as a process, as a supervisor would. */
function startReceiver(env: Record<string, string>, server: string): Receiver {
  const childEnv: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CLOUDBARMAN_') && !k.startsWith('NODE_TEST')) childEnv[k] = v;
  const child = spawn(CLI_BIN, ['--format', 'json', '-v', 'receive-wal', server], { env: { ...childEnv, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => { stdout += c; });
  child.stderr?.setEncoding('utf8').on('data', (c: string) => { stderr += c; });
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const receiver: Receiver = {
    child,
    stderr: () => stderr,
    async stop() {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      const code = await exited;
      clearTimeout(timer);
      running.delete(receiver);
      return { code, stdout, stderr };
    },
  };
  running.add(receiver);
  return receiver;
}

/** A config file for a server streaming from `cluster` as role `user`, and the environment that names it. */
async function configure(server: string, cluster: Cluster, user: string, extra = ''): Promise<{ env: Record<string, string>; storeDir: string }> {
  const storeDir = join(work, `store-${server}`);
  await mkdir(storeDir, { recursive: true });
  const file = join(work, `${server}.conf`);
  await writeFile(file, [
    '[cloudbarman]', 'compression = zstd', 'retry_timeout = 10s', '',
    `[${server}]`, `destination = file://${storeDir}`,
    `streaming_conninfo = host=${cluster.host} port=${cluster.port} user=${user} dbname=postgres`,
    `receive_wal_directory = ${join(work, 'receive')}`, 'receive_wal_partial_interval = 1s', extra, '',
  ].join('\n'));
  return { env: { CLOUDBARMAN_CONFIG: file }, storeDir };
}

/** WAL object names under <server>/wals/ in the local store (a directory walk, not cloudbarman), codec extension removed. */
async function storedNames(storeDir: string, server: string): Promise<string[]> {
  const root = join(storeDir, server, 'wals');
  if (!existsSync(root)) return [];
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => e.name.replace(/\.(zst|gz)$/, '')).sort();
}

function segmentsOf(names: string[], timeline?: number): string[] {
  return names.filter((n) => /^[0-9A-F]{24}$/.test(n) && (timeline === undefined || Number.parseInt(n.slice(0, 8), 16) === timeline));
}

async function waitForStored(storeDir: string, server: string, wanted: string[], what: string, receiver: Receiver): Promise<void> {
  await pollUntil(async () => {
    const names = new Set(await storedNames(storeDir, server));
    return wanted.every((w) => names.has(w)) ? true : undefined;
  }, { timeoutMs: 90_000, intervalMs: 200, what, details: async () => `stored: ${(await storedNames(storeDir, server)).join(' ')}\n${receiver.stderr().slice(-4000)}` });
}

/** Fills WAL with real rows, then switches: returns the segment each switch completed. */
async function writeAndSwitch(cluster: Cluster, rounds: number, table: string): Promise<string[]> {
  const done: string[] = [];
  for (let i = 0; i < rounds; i++) {
    await cluster.query(`INSERT INTO ${table} SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 20000) g`);
    done.push(await switchWal(cluster));
  }
  return done;
}

/** Restores a stored WAL file through `cloudbarman wal-restore` and returns its bytes. */
async function restored(env: Record<string, string>, server: string, name: string): Promise<Buffer> {
  const dest = join(work, `restored-${server}-${name}`);
  const r = await runCli(['wal-restore', server, name, dest], { env });
  assert.equal(r.code, 0, `wal-restore ${name}: ${r.stderr}`);
  const bytes = await readFile(dest);
  await rm(dest);
  return bytes;
}

function assertConsecutive(segments: string[], what: string): void {
  for (let i = 1; i < segments.length; i++) {
    assert.equal(segments[i], nextSegmentName(segments[i - 1] ?? ''), `${what}: ${segments[i - 1]} is followed by ${segments[i]} (a gap)`);
  }
}

async function replicationRow(cluster: Cluster): Promise<{ sync_state: string; flush_lsn: string | null } | undefined> {
  const rows = await cluster.query<{ sync_state: string; flush_lsn: string | null }>(
    'SELECT sync_state, flush_lsn::text AS flush_lsn FROM pg_stat_replication WHERE application_name = $1', [APP_NAME]);
  return rows[0];
}

for (const version of VERSIONS) {
  describe(`PostgreSQL ${version}: receive-wal`, { timeout: 240_000 }, () => {
    const server = `rw${version}`;
    let primary: Cluster | undefined;
    let env: Record<string, string> = {};
    let storeDir = '';
    before(async () => {
      primary = await startCluster({
        version, fsync: false,
        conf: { wal_level: 'replica', max_wal_senders: '10', archive_mode: 'off', wal_keep_size: "'512MB'" },
      });
      await primary.query('CREATE ROLE streamer WITH LOGIN REPLICATION');
      await primary.query('CREATE TABLE marks (id int, payload text)');
      ({ env, storeDir } = await configure(server, primary, 'streamer', 'slot_name = cb_slot'));
    });
    after(async () => {
      await primary?.destroy();
    });

    test('streams segments byte-identical, de-duplicated against wal-upload, and survives a server restart with no gap', async () => {
      assert.ok(primary);
      const created = await runCli(['receive-wal', server, '--create-slot'], { env });
      assert.equal(created.code, 0, created.stderr);
      assert.match(created.stdout, /cb_slot: created/);
      const again = await runCli(['receive-wal', server, '--create-slot'], { env });
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /already exists/);
      const slot = await primary.query<{ restart_lsn: string | null }>("SELECT restart_lsn::text AS restart_lsn FROM pg_replication_slots WHERE slot_name = 'cb_slot'");
      assert.ok(slot[0]?.restart_lsn, 'the slot reserves WAL from its creation');

      // archive_command's copy of a segment, stored before receive-wal streams it: the same bytes are a success.
      const [archivedFirst] = await writeAndSwitch(primary, 1, 'marks');
      assert.ok(archivedFirst);
      const upload = await runCli(['wal-upload', server, join(primary.dataDir, 'pg_wal', archivedFirst)], { env });
      assert.equal(upload.code, 0, upload.stderr);

      const receiver = startReceiver(env, server);
      const before = await writeAndSwitch(primary, 3, 'marks');
      await waitForStored(storeDir, server, [archivedFirst, ...before], 'the segments written before the restart', receiver);

      // The segment being written shows up as <segment>.partial within the partial interval.
      await primary.query("INSERT INTO marks VALUES (-1, 'partial')");
      const current = (await primary.query<{ f: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS f'))[0]?.f ?? '';
      await waitForStored(storeDir, server, [`${current}.partial`], `${current}.partial`, receiver);

      await primary.stop('fast');
      await primary.start();
      const after = await writeAndSwitch(primary, 3, 'marks');
      await waitForStored(storeDir, server, after, 'the segments written after the restart', receiver);
      await pollUntil(async () => ((await replicationRow(primary!)) !== undefined ? true : undefined), { timeoutMs: 30_000, what: 'receive-wal streaming again' });

      const stopped = await receiver.stop();
      assert.equal(stopped.code, 0, stopped.stderr.slice(-4000));
      assert.match(stopped.stderr, /reconnecting in/, 'the restart was noticed and survived');
      const summary = JSON.parse(stopped.stdout) as { stopped_by: string; segments_already_archived: number; gaps: unknown[]; reconnects: number; all_stored: boolean };
      assert.equal(summary.stopped_by, 'signal');
      assert.ok(summary.segments_already_archived >= 1, `the segment wal-upload stored was de-duplicated: ${stopped.stdout}`);
      assert.deepEqual(summary.gaps, []);
      assert.ok(summary.reconnects >= 1);
      assert.equal(summary.all_stored, true);

      const names = await storedNames(storeDir, server);
      const segments = segmentsOf(names);
      assert.ok(segments.length >= 7, `segments stored: ${segments.join(' ')}`);
      assertConsecutive(segments, 'stored segments');
      assert.ok(segments.includes(archivedFirst) && after.every((s) => segments.includes(s)));
      // Each complete segment's .partial was removed once it was stored.
      for (const name of names.filter((n) => n.endsWith('.partial'))) assert.ok(!segments.includes(name.slice(0, 24)), `${name} outlived its segment`);

      // Byte-identical to the server's own files, read back through wal-restore (the restore_command path).
      let compared = 0;
      for (const name of segments) {
        const original = await readFile(join(primary.dataDir, 'pg_wal', name)).catch(() => undefined);
        if (original === undefined) continue; // recycled since
        assert.ok((await restored(env, server, name)).equals(original), `${name} differs from the server's pg_wal/${name}`);
        compared++;
      }
      assert.ok(compared >= 5, `compared ${compared} segments with pg_wal`);

      // archive_command arriving after receive-wal: identical content is a success too.
      const late = after[0] ?? '';
      const lateUpload = await runCli(['wal-upload', server, join(primary.dataDir, 'pg_wal', late)], { env });
      assert.equal(lateUpload.code, 0, lateUpload.stderr);
      assert.match(lateUpload.stderr, /already archived with identical content/);
    });

    test('in synchronous mode a commit waits until receive-wal has stored its WAL', async () => {
      assert.ok(primary);
      await primary.writeConf({ synchronous_standby_names: `'${APP_NAME}'` });
      await primary.reload();
      let receiver = startReceiver(env, server);
      await pollUntil(async () => ((await replicationRow(primary!))?.sync_state === 'sync' ? true : undefined), {
        timeoutMs: 60_000, what: 'receive-wal as the synchronous standby', details: async () => receiver.stderr().slice(-3000),
      });
      await withTimeout(primary.query("INSERT INTO marks VALUES (-2, 'sync')"), 30_000, 'a synchronous commit while receive-wal runs');
      const lsn = (await primary.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l'))[0]?.l ?? '';
      await pollUntil(async () => {
        const row = await replicationRow(primary!);
        const ok = await primary!.query<{ ok: boolean }>('SELECT $1::pg_lsn >= $2::pg_lsn AS ok', [row?.flush_lsn ?? '0/0', lsn]);
        return ok[0]?.ok === true ? true : undefined;
      }, { timeoutMs: 30_000, what: `flush_lsn to reach ${lsn}` });
      const stopped = await receiver.stop();
      assert.equal(stopped.code, 0, stopped.stderr.slice(-3000));
      assert.equal((JSON.parse(stopped.stdout) as { synchronous: boolean }).synchronous, true);

      // Without receive-wal the next commit waits for it...
      const client = new pg.Client({ host: primary.host, port: primary.port, user: primary.superuser, database: 'postgres' });
      client.on('error', () => undefined);
      await client.connect();
      try {
        const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
        const commit = client.query("INSERT INTO marks VALUES (-3, 'waits')");
        commit.catch(() => undefined);
        await pollUntil(async () => {
          const rows = await primary!.query<{ w: string | null }>('SELECT wait_event AS w FROM pg_stat_activity WHERE pid = $1', [pid]);
          return rows[0]?.w === 'SyncRep' ? true : undefined;
        }, { timeoutMs: 30_000, what: 'the commit to wait for the synchronous standby' });
        // ...and completes once receive-wal is back and has stored it.
        receiver = startReceiver(env, server);
        await withTimeout(commit, 60_000, 'the waiting commit after receive-wal restarted');
        const again = await receiver.stop();
        assert.equal(again.code, 0, again.stderr.slice(-3000));
      } finally {
        await client.end().catch(() => undefined);
        await primary.writeConf({ synchronous_standby_names: "''" });
        await primary.reload();
      }
    });

    test('--drop-slot removes the slot', async () => {
      assert.ok(primary);
      const dropped = await runCli(['receive-wal', server, '--drop-slot'], { env });
      assert.equal(dropped.code, 0, dropped.stderr);
      assert.match(dropped.stdout, /cb_slot: dropped/);
      const rows = await primary.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'cb_slot'");
      assert.equal(rows.length, 0);
      const again = await runCli(['receive-wal', server, '--drop-slot'], { env });
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /did not exist/);
    });
  });

  describe(`PostgreSQL ${version}: receive-wal follows a promotion`, { timeout: 240_000 }, () => {
    const server = `rwtl${version}`;
    let primary: Cluster | undefined;
    let standby: Cluster | undefined;
    let backupRoot: string | undefined;
    let backupDir: string;
    after(async () => {
      await standby?.destroy();
      await primary?.destroy();
      if (backupRoot) await removeTempDir(backupRoot);
    });

    test('stores the new timeline\'s history, keeps the old timeline\'s last segment as .partial, and continues on the new timeline', async () => {
      primary = await startCluster({ version, fsync: false, conf: { wal_level: 'replica', max_wal_senders: '10', archive_mode: 'off', wal_keep_size: "'512MB'" } });
      await primary.query('CREATE TABLE marks (id int, payload text)');
      backupRoot = await makePgTempDir(`cb-rwtl${version}`);
      backupDir = join(backupRoot, 'standby');
      await copyBaseBackup(primary, backupDir, { waitForArchive: false });
      standby = await createCluster({
        version, fsync: false, dataDir: backupDir, signal: 'standby',
        conf: { primary_conninfo: `'host=${primary.host} port=${primary.port} user=${primary.superuser}'`, archive_mode: 'off', hot_standby: 'on' },
      });
      await standby.start();
      const { env, storeDir } = await configure(server, standby, 'postgres');
      const receiver = startReceiver(env, server);
      await pollUntil(async () => ((await replicationRow(standby!)) !== undefined ? true : undefined), {
        timeoutMs: 60_000, what: 'receive-wal streaming from the standby', details: async () => receiver.stderr().slice(-3000),
      });
      const onOld = await writeAndSwitch(primary, 2, 'marks');
      await waitForStored(storeDir, server, onOld, 'timeline 1 segments (streamed through the standby)', receiver);
      // Some WAL in the segment that the promotion will cut short.
      await primary.query("INSERT INTO marks SELECT g, 'tail' FROM generate_series(1, 1000) g");
      const tip = (await primary.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l'))[0]?.l ?? '';
      await pollUntil(async () => {
        const r = await standby!.query<{ ok: boolean }>('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [tip]);
        return r[0]?.ok === true ? true : undefined;
      }, { timeoutMs: 30_000, what: 'the standby to replay the tail' });
      await primary.stop('fast');
      await standby.query('SELECT pg_promote(true, 60)');

      const onNew = await writeAndSwitch(standby, 2, 'marks');
      await waitForStored(storeDir, server, ['00000002.history', ...onNew], 'the history file and timeline 2 segments', receiver);
      const stopped = await receiver.stop();
      assert.equal(stopped.code, 0, stopped.stderr.slice(-4000));

      const names = await storedNames(storeDir, server);
      const old = segmentsOf(names, 1);
      const fresh = segmentsOf(names, 2);
      assertConsecutive(old, 'timeline 1');
      assertConsecutive(fresh, 'timeline 2');
      const switchSegment = `00000001${(fresh[0] ?? '').slice(8)}`;
      assert.equal(nextSegmentName(old.at(-1) ?? ''), switchSegment, `timeline 2 begins in the segment after timeline 1's last complete one (${old.join(' ')} / ${fresh.join(' ')})`);
      assert.ok(names.includes(`${switchSegment}.partial`), `${switchSegment}.partial is kept: ${names.join(' ')}`);

      assert.ok((await restored(env, server, '00000002.history')).equals(await readFile(join(standby.dataDir, 'pg_wal', '00000002.history'))), 'history file');
      for (const name of fresh) {
        const original = await readFile(join(standby.dataDir, 'pg_wal', name)).catch(() => undefined);
        if (original !== undefined) assert.ok((await restored(env, server, name)).equals(original), `${name} differs from the new primary's`);
      }
      // The kept .partial holds timeline 1 up to the switch point: the bytes the promoted server copied
      // into the first segment of timeline 2 (compared up to the page holding the switch point).
      const switchLsn = (await readFile(join(standby.dataDir, 'pg_wal', '00000002.history'), 'utf8')).split('\t')[1] ?? '';
      const offset = Number(BigInt(`0x${switchLsn.split('/')[1] ?? '0'}`) % (16n * 1024n * 1024n));
      const whole = offset - (offset % 8192);
      const theirs = await restored(env, server, fresh[0] ?? '');
      const ours = await restored(env, server, `${switchSegment}.partial`);
      assert.equal(ours.length, 16 * 1024 * 1024);
      assert.ok(whole > 0 && ours.subarray(0, whole).equals(theirs.subarray(0, whole)), `${switchSegment}.partial up to ${switchLsn}`);
    });
  });
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms); });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

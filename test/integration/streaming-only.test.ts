// Streaming-only operation on real PostgreSQL 15 and 18, with the Stolon runbook's Barman config
// verbatim (host names and ports changed, one destination line added), parsed from a file:
// archive_mode = off, WAL arrives only through `cloudbarman receive-wal` (slot add_slot, application_name
// barman_receive_wal), base backups come over BASE_BACKUP (application_name barman_streaming_backup),
// and every cloudbarman command runs as an OS user who cannot read the data directory (nobody, when
// the suite runs as root); the roles are `barman` (no superuser: pg_monitor and the backup functions)
// and `replica` (REPLICATION). Then `check` passes with its streaming checks, fails on "receive-wal
// running" once receive-wal is stopped, a backup without receive-wal times out with a hint about
// receive-wal, and a point-in-time restore (tablespace relocated) holds exactly the marks committed
// before the target.
// Starts: per version, one primary, one receive-wal process (stopped by SIGTERM in the test) and one
// restored cluster.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { pathToFileURL } from 'node:url';
import {
  assertReadableByPgUser, createCluster, makePgTempDir, mkdirForPgUser, pollUntil, startCluster, switchWal,
  type Cluster, type PgVersion,
} from '../helpers/postgres.ts';
import { CLI_BIN, runCli } from '../helpers/cli.ts';

const execFileP = promisify(execFile);
const NOBODY = 65534;
const AS_ROOT = process.getuid?.() === 0;
const SLOT = 'add_slot';
const RECEIVER_NAME = 'barman_receive_wal';
const BACKUP_NAME = 'barman_streaming_backup';
const STREAMING_CHECKS = ['streaming connection', 'replication privilege', 'replication slot', 'receive-wal running'];

// The runbooks' config (docs/runbooks/stolon.md), with primaryhost and 5432 replaced and destination added.
function stolonConfig(host: string, port: number, destination: string): string {
  return `[stolon]
description =  "Stolon Backup (Streaming-Only)"
conninfo = host=${host} user=barman dbname=postgres port=${port}
streaming_conninfo = host=${host} user=replica port=${port}
backup_method = postgres
retention_policy = RECOVERY WINDOW OF 7 DAYS
wal_retention_policy = main
retention_policy_mode = auto
minimum_redundancy=2
streaming_backup_name = barman_streaming_backup
streaming_archiver = on
slot_name = add_slot
streaming_archiver_name = barman_receive_wal
destination = ${destination}
`;
}

interface Run { code: number; stdout: string; stderr: string }

let work: string;
const receivers = new Set<ChildProcess>();

before(async () => {
  await assertReadableByPgUser(CLI_BIN);
  work = await makePgTempDir('cb-streaming-only-it');
});
after(async () => {
  for (const child of receivers) child.kill('SIGKILL');
  if (work) await rm(work, { recursive: true, force: true });
});

/** cloudbarman ARGS as the unprivileged OS user (nobody when root; else the current user), umask 0. */
function spawnCli(args: string[], env: Record<string, string>): ChildProcess {
  const ids = AS_ROOT ? { uid: NOBODY, gid: NOBODY } : {};
  return spawn('/bin/sh', ['-c', 'umask 0; exec "$@"', 'sh', CLI_BIN, ...args], {
    cwd: '/', env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...ids,
  });
}

async function cli(args: string[], env: Record<string, string>, timeoutMs = 180_000): Promise<Run> {
  const child = spawnCli(args, env);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (c) => resolve(c ?? 137));
  });
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** receive-wal in the background, as a supervisor runs it; stop() sends SIGTERM and waits (bounded). */
function startReceiver(server: string, env: Record<string, string>): { stderr: () => string; stop: () => Promise<Run> } {
  const child = spawnCli(['--format', 'json', '-v', 'receive-wal', server], env);
  receivers.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  return {
    stderr: () => stderr,
    async stop() {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      const code = await exited;
      clearTimeout(timer);
      receivers.delete(child);
      return { code: code ?? 137, stdout, stderr };
    },
  };
}

/** Stored WAL segment names (codec extension removed) under <server>/wals/ of a file:// store. */
async function storedWal(store: string, server: string): Promise<Set<string>> {
  const root = join(store, server, 'wals');
  if (!existsSync(root)) return new Set();
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return new Set(entries.filter((e) => e.isFile()).map((e) => e.name.replace(/\.(zst|gz|lz4)$/, '')));
}

interface CheckJson { server: string; checks: Array<{ name: string; ok: boolean; detail: string }> }

for (const version of [15, 18] as const satisfies readonly PgVersion[]) {
  describe(`PostgreSQL ${version}: streaming-only (archive_mode off, receive-wal, backup_method postgres)`, { timeout: 300_000 }, () => {
    let primary: Cluster | undefined;
    let restored: Cluster | undefined;
    after(async () => {
      await restored?.destroy();
      await primary?.destroy();
    });

    test('the Stolon config as is: receive-wal, backup, check, PITR restore with a relocated tablespace', async (t) => {
      const started = Date.now();
      let lap = started;
      const step = (what: string): void => { const now = Date.now(); t.diagnostic(`${what}: ${((now - lap) / 1000).toFixed(1)} s`); lap = now; };
      const server = 'stolon';
      primary = await startCluster({
        version, fsync: false,
        conf: {
          wal_level: 'replica', archive_mode: 'off', max_wal_senders: '10', max_replication_slots: '10',
          // The log names the application of every replication command (BASE_BACKUP's connection).
          log_replication_commands: 'on', log_line_prefix: "'%m [%p] app=%a '",
        },
      });
      // Roles of the runbook, the least privileged way; initdb -A trust lets loopback connections in,
      // replication ones included.
      await primary.query('CREATE ROLE barman LOGIN');
      await primary.query('GRANT pg_monitor TO barman');
      await primary.query('GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean), pg_backup_stop(boolean) TO barman');
      await primary.query('CREATE ROLE replica LOGIN REPLICATION');
      const spc = await mkdirForPgUser(join(work, `spc-${version}`));
      await primary.query(`CREATE TABLESPACE extra LOCATION '${spc}'`);
      await primary.query('CREATE TABLE marks (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp()) TABLESPACE extra');
      await primary.query('CREATE TABLE filler TABLESPACE extra AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g');
      const mark = async (id: number): Promise<void> => { await primary!.query('INSERT INTO marks (id) VALUES ($1)', [id]); };

      step('cluster, roles, tablespace');
      // A folder the unprivileged user can use: its HOME (receive-wal's default directory is under it),
      // the config file, and the store it owns. Only the data directory stays closed to it.
      const open = await mkdtemp(join(tmpdir(), `cb-stolon-${version}-`));
      t.after(() => rm(open, { recursive: true, force: true }));
      await chmod(open, 0o755);
      const home = join(open, 'home');
      const store = join(open, 'store');
      await mkdir(home, { mode: 0o700 });
      await mkdir(store, { mode: 0o700 });
      if (AS_ROOT) {
        await chown(home, NOBODY, NOBODY);
        await chown(store, NOBODY, NOBODY);
        for (let dir = open; dir !== '/'; dir = dirname(dir)) await chmod(dir, (await stat(dir)).mode | 0o711);
      }
      const config = join(open, 'cloudbarman.conf');
      await writeFile(config, stolonConfig('127.0.0.1', primary.port, pathToFileURL(store).href), { mode: 0o644 });
      const env = { CLOUDBARMAN_CONFIG: config, HOME: home };

      if (AS_ROOT) {
        const ls = await cli(['--version'], env);
        assert.equal(ls.code, 0, `the CLI runs as nobody: ${ls.stderr}`);
        const child = spawn('/bin/ls', [primary.dataDir], { uid: NOBODY, gid: NOBODY, stdio: 'ignore' });
        const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
        assert.notEqual(code, 0, `nobody must not be able to read ${primary.dataDir}`);
      } else {
        t.diagnostic('not root: cloudbarman runs as the current user, who can read the data directory');
      }

      // receive-wal --create-slot creates slot_name; then receive-wal runs in the background.
      const created = await cli(['receive-wal', server, '--create-slot'], env);
      assert.equal(created.code, 0, created.stderr);
      assert.match(created.stdout, /add_slot: created/);
      const slot = await primary.query<{ slot_type: string; restart_lsn: string | null }>(
        'SELECT slot_type, restart_lsn::text AS restart_lsn FROM pg_replication_slots WHERE slot_name = $1', [SLOT]);
      assert.equal(slot[0]?.slot_type, 'physical');
      assert.ok(slot[0]?.restart_lsn, 'the slot reserves WAL from its creation');

      const receiver = startReceiver(server, env);
      const walsender = await pollUntil(async () => {
        const rows = await primary!.query<{ usename: string; state: string }>(
          'SELECT usename, state FROM pg_stat_replication WHERE application_name = $1', [RECEIVER_NAME]);
        return rows[0]?.state === 'streaming' ? rows[0] : undefined;
      }, { timeoutMs: 60_000, intervalMs: 100, what: `a walsender for ${RECEIVER_NAME}`, details: async () => receiver.stderr().slice(-4000) });
      assert.equal(walsender.usename, 'replica', 'receive-wal connects with streaming_conninfo');
      const active = await primary.query<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [SLOT]);
      assert.equal(active[0]?.active, true, 'receive-wal streams through add_slot');

      step('create slot, start receive-wal');
      // Two backups (minimum_redundancy = 2), with no WAL switch of ours: BASE_BACKUP's own switch
      // completes each end segment, and the backups are DONE only once receive-wal stored it.
      const backups: Array<{ id: string; end_wal: string }> = [];
      for (const id of [1, 2]) {
        await mark(id);
        const b = await cli(['--format', 'json', 'backup', server], env);
        assert.equal(b.code, 0, `backup: ${b.stderr}\n${receiver.stderr().slice(-3000)}`);
        const info = JSON.parse(b.stdout) as { id: string; status: string; method: string; end_wal: string; timeline: number };
        assert.equal(info.status, 'DONE');
        assert.equal(info.method, 'postgres');
        assert.equal(info.timeline, 1);
        assert.ok((await storedWal(store, server)).has(info.end_wal), `${info.end_wal} is stored`);
        assert.doesNotMatch(b.stderr, /archive_command/);
        backups.push(info);
        t.diagnostic(b.stderr.trim().split('\n').filter((l) => /waiting|DONE|BASE_BACKUP received/.test(l)).join(' | '));
      }
      step('two backups');
      const log = await primary.logText();
      assert.match(log, new RegExp(`app=${BACKUP_NAME} .*BASE_BACKUP`), 'BASE_BACKUP runs as streaming_backup_name');
      assert.match(log, new RegExp(`app=${RECEIVER_NAME} .*START_REPLICATION SLOT "?${SLOT}`), 'receive-wal streams through the slot as streaming_archiver_name');

      // Marks 3 and 4 on either side of the target; the switch completes the segment holding them.
      await mark(3);
      const target = (await primary.query<{ t: string }>(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS t"))[0]?.t ?? '';
      await mark(4);
      const at = await primary.query<{ id: number; before: boolean }>(`SELECT id, at < '${target}'::timestamptz AS before FROM marks ORDER BY id`);
      assert.deepEqual(at.map((r) => r.before), [true, true, true, false], `the target ${target} lies between marks 3 and 4`);
      const last = await switchWal(primary);
      await pollUntil(async () => ((await storedWal(store, server)).has(last) ? true : undefined), {
        timeoutMs: 60_000, intervalMs: 200, what: `receive-wal to store ${last}`, details: async () => receiver.stderr().slice(-4000),
      });

      step('marks, switch, segment stored');
      // check: every line OK, the streaming ones included, no archive_command line (archive_mode off).
      const ok = await cli(['--format', 'json', 'check', server], env);
      assert.equal(ok.code, 0, `check: ${ok.stdout}\n${ok.stderr}`);
      const report = JSON.parse(ok.stdout) as CheckJson;
      const names = report.checks.map((c) => c.name);
      for (const name of STREAMING_CHECKS) assert.ok(report.checks.some((c) => c.name === name && c.ok), `${name} OK in ${ok.stdout}`);
      for (const name of ['archive_mode', 'archive_command', 'continuous archiving']) assert.ok(!names.includes(name), `${name} is not asked of a streaming-only server: ${names.join(', ')}`);
      assert.ok(report.checks.every((c) => c.ok), ok.stdout);
      assert.match(report.checks.find((c) => c.name === 'minimum redundancy requirements')?.detail ?? '', /have 2 DONE backups/);
      assert.match(report.checks.find((c) => c.name === 'streaming connection')?.detail ?? '', /^replica@/);

      const stopped = await receiver.stop();
      assert.equal(stopped.code, 0, stopped.stderr.slice(-4000));
      const summary = JSON.parse(stopped.stdout) as { gaps: unknown[]; all_stored: boolean };
      assert.deepEqual(summary.gaps, []);
      assert.equal(summary.all_stored, true);
      assert.ok(existsSync(join(home, '.local', 'state', 'cloudbarman', 'receive-wal', server, 'receive-wal.json')),
        'with no receive_wal_directory, receive-wal keeps its directory under the HOME of its user');

      const failing = await cli(['--format', 'json', 'check', server], env);
      assert.equal(failing.code, 1, `check without receive-wal: ${failing.stdout}\n${failing.stderr}`);
      const failed = (JSON.parse(failing.stdout) as CheckJson).checks.filter((c) => !c.ok);
      assert.deepEqual(failed.map((c) => c.name), ['receive-wal running'], failing.stdout);
      assert.match(failed[0]?.detail ?? '', /no walsender for application_name barman_receive_wal/);

      // Without receive-wal, a backup cannot complete, and its error speaks of receive-wal, not archive_command.
      const stuck = await cli(['backup', server, '--wal-archive-timeout', '3'], env);
      assert.equal(stuck.code, 1, stuck.stderr);
      assert.match(stuck.stderr, /did not reach .* within 3 s/);
      assert.match(stuck.stderr, /receive-wal stolon/);
      assert.doesNotMatch(stuck.stderr, /archive_command/);

      step('check, stop receive-wal, check');
      // restore_command runs as the PostgreSQL user: open what nobody stored to it.
      if (AS_ROOT) await execFileP('chmod', ['-R', 'a+rwX', store]);
      const dest = join(work, `restored-${version}`);
      const moved = join(work, `spc-moved-${version}`);
      const r = await runCli(['--format', 'json', 'restore', server, 'latest', dest, '--target-time', target, '--target-action', 'promote',
        '--tablespace', `extra:${moved}`, '--jobs', '2'], { env: { CLOUDBARMAN_CONFIG: config }, timeoutMs: 180_000 });
      assert.equal(r.code, 0, r.stderr);
      assert.equal((JSON.parse(r.stdout) as { backup_id: string }).backup_id, backups[1]?.id, 'latest before the target is the second backup');
      assert.match(await readFile(join(dest, 'postgresql.auto.conf'), 'utf8'), /recovery_target_time/);

      step('restore');
      restored = await createCluster({ version, env: { CLOUDBARMAN_CONFIG: config }, fsync: false, dataDir: dest });
      await restored.start({ waitForRecovery: true });
      const rows = await restored.query<{ id: number }>('SELECT id FROM marks ORDER BY id');
      assert.deepEqual(rows.map((x) => x.id), [1, 2, 3], `marks before the target\n${(await restored.logText()).slice(-3000)}`);
      const filler = await restored.query<{ n: string }>('SELECT count(*) AS n FROM filler');
      assert.equal(filler[0]?.n, '20000');
      const location = await restored.query<{ l: string }>("SELECT pg_tablespace_location(oid) AS l FROM pg_tablespace WHERE spcname = 'extra'");
      assert.equal(location[0]?.l, moved);
      assert.match(await restored.logText(), /recovery stopping before commit of transaction/);
      step('recovery, assertions');
      t.diagnostic(`PostgreSQL ${version}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    });
  });
}

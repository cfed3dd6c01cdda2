// Crash safety under SIGKILL (issue 8, part 2). `backup`, `restore`, `delete --retention` and
// `wal-upload` are each killed at seeded random points, at least 20 trials each, on real
// PostgreSQL 15 with a local store. After every kill: no DONE backup is unrestorable (verify), no WAL
// segment is reported archived that is not stored byte-identical, `list` matches the store, a
// killed restore directory cannot be started and a re-run into it is refused clearly, and a re-run
// completes (for retention: leaving exactly what an uninterrupted run leaves).
//
// Kill points: a delay drawn from a seeded PRNG (test/helpers/crash.ts) within the measured length of
// an uninterrupted run. CLOUDBARMAN_CRASH_SEED replays a run; CLOUDBARMAN_CRASH_TRIALS raises the
// trial count (at least 20). Every failure message names the loop, the seed and the trial.
// Starts: one cluster for the whole file, one restored cluster at the end of the backup and restore
// loops, and a short-lived adopted cluster per killed restore (it must fail to start).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { chown, link, lstat, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { buffer } from 'node:stream/consumers';
import {
  assertReadableByPgUser, createCluster, makePgTempDir, mkdirForPgUser, pgOsUser, startCluster, switchWal, waitForArchived,
  type Cluster,
} from '../helpers/postgres.ts';
import { CLI_BIN, runCli, type CliResult } from '../helpers/cli.ts';
import { crashSeed, describeTrial, loopRng, pickDelay, runAndKill, type KilledRun } from '../helpers/crash.ts';
import { LocalObjectStore } from '../../providers/local/object-store.ts';
import { decompressBuffer, isCompression } from '../../src/io/compression.ts';

const exec = promisify(execFile);
const VERSION = 15;
const SERVER = 'crash';
const WAL_SERVER = 'walcrash';
const SEED = crashSeed();
const TRIALS = Math.max(20, Number(process.env['CLOUDBARMAN_CRASH_TRIALS'] ?? 20) || 20);
// Read once, then hidden from every child: cloudbarman rejects CLOUDBARMAN_* variables it does not know,
// and PostgreSQL's archive_command inherits the test's environment.
delete process.env['CLOUDBARMAN_CRASH_SEED'];
delete process.env['CLOUDBARMAN_CRASH_TRIALS'];
const INCOMPLETE_MARKER = 'cloudbarman_restore_incomplete';
const PG_CONTROL_PENDING = 'global/pg_control.cloudbarman_incomplete';

interface Entry { id: string; status: string; begin_wal: string | null; end_wal: string | null }

let work: string;
let storeDir: string;
let config: string;
let env: Record<string, string>;
let primary: Cluster | undefined;
const restored: Cluster[] = [];
/** Wall time of a command that does nearly nothing (`list`), for the lower end of kill delays. */
let startupMs = 300;

before(async () => {
  await assertReadableByPgUser(CLI_BIN);
  work = await makePgTempDir('cb-crash');
  storeDir = await mkdirForPgUser(join(work, 'store'));
  config = join(work, 'cloudbarman.conf');
  await writeFile(config,
    `[${SERVER}]\ndestination = ${pathToFileURL(storeDir).href}\ncompression = zstd\nbackup_compression = zstd\npart_size = 5MiB\n` +
    `retry_timeout = 5s\nwal_archive_timeout = 60s\nretention_policy = REDUNDANCY 2\nminimum_redundancy = 1\n` +
    `[${WAL_SERVER}]\ndestination = ${pathToFileURL(storeDir).href}\ncompression = zstd\narchive_batch_size = 3\narchive_parallel = 2\nrestore_prefetch = 0\nretry_timeout = 5s\n`);
  await chown(config, pgOsUser().uid, pgOsUser().gid);
  env = { CLOUDBARMAN_CONFIG: config };
});
after(async () => {
  for (const c of restored) await c.destroy().catch(() => undefined);
  await primary?.destroy();
  if (work) await rm(work, { recursive: true, force: true });
});

async function cli(args: string[], timeoutMs = 120_000, extraEnv: Record<string, string> = {}): Promise<CliResult> {
  return runCli(args, { env: { ...env, ...extraEnv }, timeoutMs });
}

async function listEntries(server: string, why: string, destination?: string): Promise<Entry[]> {
  const r = await cli(['--format', 'json', 'list', server, ...(destination === undefined ? [] : ['--destination', destination])]);
  assert.equal(r.code, 0, `${why}: list failed\n${r.stderr}`);
  return JSON.parse(r.stdout) as Entry[];
}

/** The backup ids that have a catalog entry in a store directory, and the ids that have files but no entry. */
async function catalogOnDisk(root: string, server: string): Promise<{ withEntry: string[]; orphans: string[] }> {
  const base = join(root, server, 'base');
  const withEntry: string[] = [];
  const orphans: string[] = [];
  for (const id of (await readdir(base).catch(() => [] as string[])).sort()) {
    if (id.startsWith('.cbtmp-')) continue;
    const files = (await walk(join(base, id))).filter((f) => !f.split('/').some((s) => s.startsWith('.cbtmp-')));
    if (files.includes('backup.json')) withEntry.push(id);
    else if (files.length > 0) orphans.push(id);
  }
  return { withEntry, orphans };
}

/** Regular files under dir, as paths relative to it, sorted. */
async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  const visit = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name);
      if (e.isDirectory()) await visit(p);
      else out.push(relative(dir, p));
    }
  };
  await visit(dir);
  return out.sort();
}

/** list is truthful: exactly the entries in the store, no files of a backup without its entry. */
async function assertListTruthful(server: string, root: string, listed: Entry[], why: string): Promise<void> {
  const disk = await catalogOnDisk(root, server);
  assert.deepEqual(listed.map((e) => e.id).sort(), disk.withEntry, `${why}: list shows exactly the catalog entries in the store`);
  assert.deepEqual(disk.orphans, [], `${why}: no backup files without a catalog entry (invisible orphans)`);
  for (const e of listed) assert.match(e.status, /^(STARTED|DONE|FAILED|DELETING)$/, `${why}: status of ${e.id}`);
}

async function verify(server: string, id: string, why: string, args: string[] = [], destination?: string): Promise<void> {
  const r = await cli(['--format', 'json', 'verify', server, id, ...args, ...(destination === undefined ? [] : ['--destination', destination])], 180_000);
  assert.equal(r.code, 0, `${why}: verify ${args.join(' ')} of DONE backup ${id} must pass\n${r.stdout}\n${r.stderr}`);
}

function pgArgs(c: Cluster): string[] {
  return ['--pgdata', c.dataDir, '--conninfo', `host=127.0.0.1 port=${c.port} user=postgres dbname=postgres`];
}

async function exists(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => undefined)) !== undefined;
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

function noStackTrace(stderr: string, why: string): void {
  assert.doesNotMatch(stderr, /\n\s+at .+:\d+:\d+/, `${why}: an operator error, not a stack trace\n${stderr}`);
}

describe(`crash safety under SIGKILL, PostgreSQL ${VERSION}, local store (seed ${SEED}, ${TRIALS} trials per loop)`, { timeout: 900_000 }, () => {
  before(async () => {
    primary = await startCluster({
      version: VERSION, env, fsync: false,
      conf: {
        wal_level: 'replica', archive_mode: 'on', archive_command: `'${CLI_BIN} wal-upload ${SERVER} %p'`,
        wal_keep_size: "'512MB'", checkpoint_timeout: "'30min'",
      },
    });
    // A few MiB of poorly compressible rows, so that a backup has several 5 MiB parts.
    await primary.query("CREATE TABLE filler AS SELECT g, md5(g::text) || md5((g * 7)::text) AS t FROM generate_series(1, 120000) g");
    await primary.query('CREATE TABLE marks (trial int PRIMARY KEY)');
    const t0 = Date.now();
    await cli(['--format', 'json', 'list', SERVER]);
    startupMs = Date.now() - t0;
  });

  test(`backup: ${TRIALS} SIGKILLs; no DONE backup is unrestorable, list is truthful, a re-run completes`, async (t) => {
    const p = primary;
    assert.ok(p !== undefined);
    const rng = loopRng(SEED, 'backup');
    const loopStart = Date.now();
    const t0 = Date.now();
    const clean = await cli(['--format', 'json', 'backup', SERVER, '--jobs', '1', ...pgArgs(p)], 180_000);
    assert.equal(clean.code, 0, clean.stderr);
    const cleanMs = Date.now() - t0;
    const verified = new Set<string>();
    const checkStore = async (why: string): Promise<Entry[]> => {
      const listed = await listEntries(SERVER, why);
      await assertListTruthful(SERVER, storeDir, listed, why);
      for (const e of listed) {
        if (e.status !== 'DONE' || verified.has(e.id)) continue;
        await verify(SERVER, e.id, why, ['--no-wal-to-latest']);
        verified.add(e.id);
      }
      return listed;
    };
    await checkStore('after the clean backup');
    const outcomes = { killed: 0, finished: 0 };
    let before = await listEntries(SERVER, 'before the loop');
    for (let trial = 0; trial < TRIALS; trial++) {
      await p.query('INSERT INTO marks VALUES ($1)', [trial]);
      const delayMs = pickDelay(rng, startupMs / 2, cleanMs);
      const why = describeTrial('backup', SEED, trial, `kill after ${delayMs} ms`);
      const run = await runAndKill(['--format', 'json', 'backup', SERVER, '--jobs', '1', ...pgArgs(p)], { env, delayMs, timeoutMs: 180_000 });
      assert.equal(run.hung, false, `${why}: backup hung\n${run.stderr}`);
      if (run.killed) outcomes.killed++;
      else {
        outcomes.finished++;
        assert.equal(run.code, 0, `${why}: a backup that was not killed must succeed\n${run.stderr}`);
      }
      const listed = await checkStore(why);
      const newOnes = listed.filter((e) => !before.some((b) => b.id === e.id));
      assert.ok(newOnes.length <= 1, `${why}: one run makes at most one entry: ${JSON.stringify(newOnes)}`);
      if (!run.killed) assert.equal(newOnes[0]?.status, 'DONE', `${why}: the finished run's entry is DONE`);
      else if (newOnes[0] !== undefined) assert.match(newOnes[0].status, /^(STARTED|DONE)$/, `${why}: a killed backup is STARTED (or DONE if it got that far)`);
      // The re-run: every third trial and the last one (a finished trial already was one).
      if (run.killed && (trial % 3 === 2 || trial === TRIALS - 1)) {
        const again = await cli(['--format', 'json', 'backup', SERVER, '--jobs', '1', ...pgArgs(p)], 180_000);
        assert.equal(again.code, 0, `${why}: the re-run after the kill must succeed\n${again.stderr}`);
        const id = (JSON.parse(again.stdout) as { id: string }).id;
        const after = await checkStore(`${why}, after the re-run`);
        assert.equal(after.find((e) => e.id === id)?.status, 'DONE', `${why}: the re-run's backup is DONE`);
        before = after;
      } else {
        before = listed;
      }
    }
    // The newest DONE backup restores, PostgreSQL starts on it and has every mark.
    const listed = await listEntries(SERVER, 'at the end');
    const newest = listed.filter((e) => e.status === 'DONE').at(-1);
    assert.ok(newest !== undefined);
    await waitForArchived(p, await switchWal(p), 60_000);
    const dest = join(work, 'backup-loop-restore');
    const r = await cli(['restore', SERVER, newest.id, dest], 180_000);
    assert.equal(r.code, 0, r.stderr);
    const c = await createCluster({ version: VERSION, env, fsync: false, dataDir: dest });
    restored.push(c);
    await c.start({ waitForRecovery: true });
    const marks = await c.query<{ trial: number }>('SELECT trial FROM marks ORDER BY trial');
    assert.deepEqual(marks.map((m) => m.trial), Array.from({ length: TRIALS }, (_, i) => i), `every mark is restored\n${await c.logText()}`);
    const sums = await c.query<{ n: string; s: string }>("SELECT count(*) AS n, sum(g) AS s FROM filler");
    assert.deepEqual([Number(sums[0]?.n), Number(sums[0]?.s)], [120000, 120000 * 120001 / 2]);
    await c.stop('fast');
    await rm(dest, { recursive: true, force: true });
    t.diagnostic(`backup loop: ${TRIALS} trials (${outcomes.killed} killed mid-run, ${outcomes.finished} finished first), ` +
      `clean backup ${cleanMs} ms, CLI start-up ${startupMs} ms, ${verified.size} DONE backups verified, ${((Date.now() - loopStart) / 1000).toFixed(1)} s`);
  });

  test(`restore: ${TRIALS} SIGKILLs; a killed directory never starts, a re-run into it is refused clearly`, async (t) => {
    const loopStart = Date.now();
    const rng = loopRng(SEED, 'restore');
    const listed = await listEntries(SERVER, 'restore loop');
    const backup = listed.filter((e) => e.status === 'DONE').at(-1);
    assert.ok(backup !== undefined, 'the backup loop left a DONE backup');
    const t0 = Date.now();
    const cleanDest = join(work, 'restore-clean');
    const clean = await cli(['restore', SERVER, backup.id, cleanDest, '--jobs', '1'], 180_000);
    assert.equal(clean.code, 0, clean.stderr);
    const cleanMs = Date.now() - t0;
    await rm(cleanDest, { recursive: true, force: true });
    const outcomes = { 'nothing written': 0, incomplete: 0, complete: 0, startRefused: 0 };
    let lastIncomplete: string | undefined;
    let previousIncomplete: string | undefined;
    for (let trial = 0; trial < TRIALS; trial++) {
      const dest = join(work, `restore-${trial}`);
      const delayMs = pickDelay(rng, startupMs / 2, cleanMs);
      const why = describeTrial('restore', SEED, trial, `kill after ${delayMs} ms`);
      const run = await runAndKill(['restore', SERVER, backup.id, dest, '--jobs', '1'], { env, delayMs, timeoutMs: 180_000 });
      assert.equal(run.hung, false, `${why}: restore hung\n${run.stderr}`);
      if (!run.killed) assert.equal(run.code, 0, `${why}: a restore that was not killed must succeed\n${run.stderr}`);
      const entries = await readdir(dest).catch(() => [] as string[]);
      const marker = entries.includes(INCOMPLETE_MARKER);
      const control = await exists(join(dest, 'global', 'pg_control'));
      if (entries.length === 0) {
        outcomes['nothing written']++;
        assert.ok(run.killed, `${why}: a finished restore wrote something`);
      } else if (marker && !control) {
        outcomes.incomplete++;
        lastIncomplete = dest;
        // PostgreSQL itself must refuse this directory: tried on the first four and then every third one
        // (each try adopts the directory and runs pg_ctl); the marker and the missing pg_control are checked on all.
        if (outcomes.incomplete <= 4 || outcomes.incomplete % 3 === 0) {
          await assertPostgresRefuses(dest, why);
          outcomes.startRefused++;
        }
      } else {
        outcomes.complete++;
        // pg_control is renamed into place only after every file, backup_label and the recovery settings are durable.
        assert.ok(control, `${why}: without the marker, the restore must be complete (global/pg_control present): ${entries.join(', ')}`);
        assert.equal(await exists(join(dest, PG_CONTROL_PENDING)), false, `${why}: no pending pg_control beside the final one`);
        assert.ok(await exists(join(dest, 'backup_label')) && await exists(join(dest, 'recovery.signal')), `${why}: a directory with pg_control has backup_label and recovery.signal`);
      }
      // The re-run into the same directory.
      const again = await cli(['restore', SERVER, backup.id, dest, '--jobs', '1'], 180_000);
      if (entries.length === 0) {
        assert.equal(again.code, 0, `${why}: a re-run into an untouched destination restores\n${again.stderr}`);
        assert.equal(await exists(join(dest, INCOMPLETE_MARKER)), false, why);
      } else {
        assert.equal(again.code, 3, `${why}: a re-run into a used destination is refused with exit 3 (bad input)\n${again.stderr}`);
        noStackTrace(again.stderr, why);
        if (marker) assert.match(again.stderr, /holds an interrupted restore.*delete that directory/s, `${why}: the refusal says the directory is an interrupted restore and what to do\n${again.stderr}`);
        else assert.match(again.stderr, /not empty/, `${why}\n${again.stderr}`);
        // Refusing changed nothing: still not startable if it was not.
        if (marker && !control) assert.equal(await exists(join(dest, 'global', 'pg_control')), false, why);
      }
      if (dest !== lastIncomplete) await rm(dest, { recursive: true, force: true });
      else if (previousIncomplete !== undefined) await rm(previousIncomplete, { recursive: true, force: true });
      previousIncomplete = lastIncomplete;
    }
    // What the marker says to do: delete the directory and restore again. Then it starts, with the data.
    assert.ok(lastIncomplete !== undefined, `${describeTrial('restore', SEED, -1)}: no trial was killed mid-write (${JSON.stringify(outcomes)})`);
    await rm(lastIncomplete, { recursive: true, force: true });
    const r = await cli(['restore', SERVER, backup.id, lastIncomplete], 180_000);
    assert.equal(r.code, 0, r.stderr);
    const c = await createCluster({ version: VERSION, env, fsync: false, dataDir: lastIncomplete });
    restored.push(c);
    await c.start({ waitForRecovery: true });
    const marks = await c.query<{ n: string }>('SELECT count(*) AS n FROM marks');
    assert.equal(Number(marks[0]?.n), TRIALS, await c.logText());
    await c.stop('fast');
    await rm(lastIncomplete, { recursive: true, force: true });
    t.diagnostic(`restore loop: ${TRIALS} trials ${JSON.stringify(outcomes)}, clean restore ${cleanMs} ms, ${((Date.now() - loopStart) / 1000).toFixed(1)} s`);
  });

  test(`delete --retention: ${TRIALS} SIGKILLs; DONE backups stay verifiable, list is truthful, a re-run ends as an uninterrupted run`, async (t) => {
    const p = primary;
    assert.ok(p !== undefined);
    const loopStart = Date.now();
    const rng = loopRng(SEED, 'retention');
    // The history: the DONE backups and the WAL the backup loop left, snapshotted once. The local
    // provider never changes a file in place (a put is a new file renamed or linked into place, a
    // delete an unlink), so copies made of hard links (cp -al) are independent stores, made at once.
    await waitForArchived(p, await switchWal(p), 60_000);
    const snapshot = join(work, 'retention-snapshot');
    await exec('cp', ['-al', storeDir, snapshot]);
    // Without the STARTED entries of killed backups (which retention keeps for a day, holding their WAL
    // back), every obsolete DONE backup but the oldest needs WAL that retention deletes.
    for (const e of await listEntries(SERVER, 'retention history', pathToFileURL(snapshot).href)) {
      if (e.status !== 'DONE') await rm(join(snapshot, SERVER, 'base', e.id), { recursive: true });
    }
    await rm(join(snapshot, SERVER, 'locks'), { recursive: true, force: true });
    const copyStore = async (to: string): Promise<string> => {
      await rm(to, { recursive: true, force: true });
      await exec('cp', ['-al', snapshot, to]);
      return pathToFileURL(to).href;
    };
    const history = await listEntries(SERVER, 'retention history', pathToFileURL(snapshot).href);
    assert.ok(history.length >= 5 && history.every((e) => e.status === 'DONE'), `the history has several DONE backups: ${JSON.stringify(history)}`);

    // The reference: an uninterrupted run on a copy.
    const refDir = join(work, 'retention-ref');
    const refUrl = await copyStore(refDir);
    const t0 = Date.now();
    const ref = await cli(['--format', 'json', 'delete', SERVER, '--retention', '--destination', refUrl], 120_000);
    const cleanMs = Date.now() - t0;
    assert.equal(ref.code, 0, ref.stderr);
    const refOutcome = JSON.parse(ref.stdout) as { deleted_backups: string[]; deleted_wal: number };
    assert.ok(refOutcome.deleted_backups.length >= 2 && refOutcome.deleted_wal > 0, `retention has work to do: ${ref.stdout}`);
    const contents = async (root: string): Promise<string[]> =>
      (await walk(join(root, SERVER))).filter((f) => !f.startsWith('locks/') && !f.split('/').some((s) => s.startsWith('.cbtmp-')));
    const refContents = await contents(refDir);
    const refListed = await listEntries(SERVER, 'reference', refUrl);
    const oldestKept = refListed.find((e) => e.status === 'DONE');
    assert.ok(oldestKept !== undefined);
    await verify(SERVER, oldestKept.id, 'reference', ['--quick'], refUrl);
    const historyDone = history.filter((e) => e.status === 'DONE');
    // The parts each DONE backup of the history has, to check a listed DONE backup still has all of them.
    const partsOf = new Map<string, string[]>();
    const isTemp = (f: string): boolean => f.split('/').some((seg) => seg.startsWith('.cbtmp-'));
    for (const e of historyDone) partsOf.set(e.id, (await walk(join(snapshot, SERVER, 'base', e.id))).filter((f) => !isTemp(f)));

    const outcomes = { killed: 0, finished: 0 };
    const trialDir = join(work, 'retention-trial');
    for (let trial = 0; trial < TRIALS; trial++) {
      const url = await copyStore(trialDir);
      const delayMs = pickDelay(rng, startupMs / 2, cleanMs);
      const why = describeTrial('retention', SEED, trial, `kill after ${delayMs} ms`);
      const run = await runAndKill(['--format', 'json', 'delete', SERVER, '--retention', '--destination', url], { env, delayMs, timeoutMs: 120_000 });
      assert.equal(run.hung, false, `${why}: delete --retention hung\n${run.stderr}`);
      if (run.killed) outcomes.killed++;
      else {
        outcomes.finished++;
        assert.equal(run.code, 0, `${why}: a run that was not killed must succeed\n${run.stderr}`);
      }
      const listed = await listEntries(SERVER, why, url);
      await assertListTruthful(SERVER, trialDir, listed, why);
      const done = listed.filter((e) => e.status === 'DONE');
      for (const e of done) {
        const expected = partsOf.get(e.id);
        assert.ok(expected !== undefined, `${why}: ${e.id} was DONE in the history`);
        const now = (await walk(join(trialDir, SERVER, 'base', e.id))).filter((f) => !isTemp(f));
        assert.deepEqual(now, expected, `${why}: DONE backup ${e.id} has every object it had`);
      }
      // WAL from the oldest DONE backup on is continuous (it covers every newer one too); every few trials, each one.
      const toVerify = trial % 5 === 0 ? done : done.slice(0, 1);
      for (const e of toVerify) await verify(SERVER, e.id, why, ['--quick'], url);

      const again = await cli(['--format', 'json', 'delete', SERVER, '--retention', '--destination', url], 120_000);
      assert.equal(again.code, 0, `${why}: the re-run after the kill must succeed\n${again.stderr}`);
      assert.deepEqual(await contents(trialDir), refContents, `${why}: the re-run leaves exactly what an uninterrupted run leaves`);
    }
    await rm(trialDir, { recursive: true, force: true });
    await rm(refDir, { recursive: true, force: true });
    await rm(snapshot, { recursive: true, force: true });
    t.diagnostic(`retention loop: ${TRIALS} trials (${outcomes.killed} killed mid-run, ${outcomes.finished} finished first), ` +
      `uninterrupted run ${cleanMs} ms deleting ${refOutcome.deleted_backups.length} backups and ${refOutcome.deleted_wal} WAL objects, ${((Date.now() - loopStart) / 1000).toFixed(1)} s`);
  });

  test(`wal-upload: ${TRIALS} SIGKILLs; what is reported archived is stored byte-identical, a re-run archives all`, async (t) => {
    const p = primary;
    assert.ok(p !== undefined);
    const loopStart = Date.now();
    const rng = loopRng(SEED, 'wal-upload');
    // Real segments: written with some rows each, completed by pg_switch_wal, copied from pg_wal.
    const source = join(work, 'wal-source');
    await mkdir(source);
    const segments: string[] = [];
    for (let i = 0; i < 3; i++) {
      await p.query(`INSERT INTO filler SELECT g, md5(g::text) FROM generate_series(1, 5000) g`);
      segments.push(await switchWal(p));
    }
    const original = new Map<string, Buffer>();
    for (const s of segments) {
      const bytes: Buffer = await readFile(join(p.dataDir, 'pg_wal', s));
      assert.equal(bytes.length, 16 * 1024 * 1024);
      original.set(s, bytes);
      await writeFile(join(source, s), bytes);
    }

    /** Sets up a pg_wal with every segment marked .ready, and an empty store. */
    const prepare = async (dir: string): Promise<{ walDir: string; store: string }> => {
      await rm(dir, { recursive: true, force: true });
      const walDir = join(dir, 'pg_wal');
      const store = join(dir, 'store');
      await mkdir(join(walDir, 'archive_status'), { recursive: true });
      await mkdir(store);
      for (const s of segments) {
        await link(join(source, s), join(walDir, s));
        await writeFile(join(walDir, 'archive_status', `${s}.ready`), '');
      }
      return { walDir, store };
    };
    const upload = (walDir: string, store: string, s: string): string[] =>
      ['wal-upload', WAL_SERVER, join(walDir, s), '--destination', pathToFileURL(store).href];
    /** Every object under the server's wals/ in the store, read back through the local provider and decompressed. */
    const storedSegments = async (store: string, why: string): Promise<{ names: string[]; temps: number }> => {
      const objects = new LocalObjectStore(pathToFileURL(store).href);
      const files = await walk(join(store, WAL_SERVER, 'wals'));
      const names: string[] = [];
      let temps = 0;
      for (const f of files) {
        if (f.split('/').some((s) => s.startsWith('.cbtmp-'))) { temps++; continue; }
        const m = /^[0-9A-F]{16}\/([0-9A-F]{24})(\.zst)?$/.exec(f);
        assert.ok(m?.[1] !== undefined, `${why}: unexpected object ${f}`);
        const { body, info } = await objects.get(`${WAL_SERVER}/wals/${f}`);
        const raw = await buffer(body);
        const codec = info.metadata?.['cb_compression'] ?? 'none';
        assert.ok(isCompression(codec), `${why}: ${f} has codec ${codec}`);
        const bytes = decompressBuffer(raw, codec);
        const want = original.get(m[1]);
        assert.ok(want !== undefined, `${why}: ${f} is not one of the segments`);
        assert.ok(bytes.equals(want), `${why}: ${f} is stored whole and byte-identical (${bytes.length} bytes, sha256 ${sha256(bytes)})`);
        assert.equal(info.metadata?.['cb_sha256'], sha256(want), `${why}: ${f} records the right SHA-256`);
        names.push(m[1]);
      }
      await objects.close();
      return { names: names.sort(), temps };
    };
    const records = async (walDir: string): Promise<string[]> =>
      (await walk(join(walDir, 'cloudbarman_spool'))).filter((f) => f.endsWith('.ok')).map((f) => f.slice(f.lastIndexOf('/') + 1, -'.ok'.length)).sort();

    // The uninterrupted first call (it archives a batch) sets the range of kill delays.
    const cleanDir = join(work, 'wal-clean');
    const cleanSetup = await prepare(cleanDir);
    const first = segments[0] ?? '';
    const t0 = Date.now();
    const clean = await cli(upload(cleanSetup.walDir, cleanSetup.store, first), 60_000);
    const cleanMs = Date.now() - t0;
    assert.equal(clean.code, 0, clean.stderr);
    assert.equal((await storedSegments(cleanSetup.store, 'clean')).names.length, 3, 'the clean call archived a batch of three');
    await rm(cleanDir, { recursive: true, force: true });

    const outcomes = { killed: 0, finished: 0, recordsSeen: 0, tempsLeft: 0 };
    const trialDir = join(work, 'wal-trial');
    for (let trial = 0; trial < TRIALS; trial++) {
      const { walDir, store } = await prepare(trialDir);
      const delayMs = pickDelay(rng, startupMs / 2, cleanMs);
      const why = describeTrial('wal-upload', SEED, trial, `kill after ${delayMs} ms`);
      const run: KilledRun = await runAndKill(upload(walDir, store, first), { env, delayMs, timeoutMs: 60_000 });
      assert.equal(run.hung, false, `${why}: wal-upload hung\n${run.stderr}`);
      if (run.killed) outcomes.killed++;
      else {
        outcomes.finished++;
        assert.equal(run.code, 0, `${why}: a wal-upload that was not killed must succeed\n${run.stderr}`);
      }
      const stored = await storedSegments(store, why); // every visible object is whole
      outcomes.tempsLeft += stored.temps;
      if (run.code === 0) assert.ok(stored.names.includes(first), `${why}: exit 0 means ${first} is stored`);
      const recorded = await records(walDir);
      outcomes.recordsSeen += recorded.length;
      for (const r of recorded) assert.ok(stored.names.includes(r), `${why}: the spool records ${r} as archived, so it must be stored`);

      // PostgreSQL's retries: each segment in order until it exits 0, then .ready becomes .done.
      for (const s of segments) {
        const r = await cli(upload(walDir, store, s), 60_000);
        assert.equal(r.code, 0, `${why}: re-running wal-upload for ${s} must succeed\n${r.stderr}`);
        await rename(join(walDir, 'archive_status', `${s}.ready`), join(walDir, 'archive_status', `${s}.done`));
      }
      assert.deepEqual((await storedSegments(store, `${why}, after the re-run`)).names, [...segments].sort(), `${why}: every segment is archived`);
      // And wal-restore, as recovery would call it, returns one of them bit for bit (every fifth trial; all of them in the last).
      const pick = trial === TRIALS - 1 ? segments : trial % 5 === 0 ? [segments[Math.floor(rng() * segments.length)] ?? first] : [];
      for (const s of pick) {
        const out = join(trialDir, `restored-${s}`);
        const r = await cli(['wal-restore', WAL_SERVER, s, out, '--destination', pathToFileURL(store).href], 60_000);
        assert.equal(r.code, 0, `${why}: wal-restore ${s}\n${r.stderr}`);
        assert.ok((await readFile(out)).equals(original.get(s) ?? Buffer.alloc(0)), `${why}: wal-restore returns ${s} bit for bit`);
        assert.equal((await stat(out)).size, 16 * 1024 * 1024);
      }
    }
    await rm(trialDir, { recursive: true, force: true });
    await rm(source, { recursive: true, force: true });
    t.diagnostic(`wal-upload loop: ${TRIALS} trials (${outcomes.killed} killed mid-run, ${outcomes.finished} finished first; ` +
      `${outcomes.recordsSeen} spool records checked, ${outcomes.tempsLeft} temporary files left by kills), clean batch call ${cleanMs} ms, ` +
      `${((Date.now() - loopStart) / 1000).toFixed(1)} s`);
  });
});

/** PostgreSQL must refuse to start on a killed restore directory. */
async function assertPostgresRefuses(dest: string, why: string): Promise<void> {
  if (!(await exists(join(dest, 'PG_VERSION')))) return; // not even a data directory: nothing can start there
  const c = await createCluster({ version: VERSION, env: {}, dataDir: dest });
  try {
    const hasConf = await exists(join(dest, 'postgresql.conf'));
    await assert.rejects(c.start(), (err: Error) => {
      // Early kills leave no postgresql.conf yet, and PostgreSQL stops at that; otherwise at the missing pg_control.
      if (hasConf) assert.match(err.message, /pg_control/, `${why}: PostgreSQL refuses for want of pg_control\n${err.message}`);
      else assert.match(err.message, /postgresql\.conf/, `${why}: PostgreSQL refuses for want of its configuration file\n${err.message}`);
      return true;
    }, `${why}: PostgreSQL must not start on a half-restored directory`);
  } finally {
    await c.destroy();
  }
}

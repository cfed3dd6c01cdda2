/**
 * WAL burst and recovery: cloudbarman's batch archiving and prefetching restore against
 * pgbackrest (async archive-push / archive-get, posix repo) and barman-cloud
 * (barman-cloud-wal-archive / -wal-restore on s3rver), side by side in one run.
 *
 *   Burst:    N segments (256) are .ready at once; the time until PostgreSQL has archived them all.
 *   Recovery: a base backup replays the same N segments through restore_command until recovery ends.
 *
 *   bash scripts/with-node.sh node bench/wal/burst.ts [--segments N] [--variants a,b,...] [--rounds R]
 *        [--phases burst,recovery] [--cloudbarman PATH] [--no-install] [--keep]
 *
 * Markdown on stdout, progress on stderr, JSON in bench/results/burst-<timestamp>.json.
 * See bench/wal/burst.md for what is measured and the caveats.
 */
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensurePeers } from '../lib/apt.ts';
import { osUser, type OsUser } from '../lib/postgres.ts';
import { describeFailure, onCleanup, run, runOk, sleep } from '../lib/proc.ts';
import { startS3rver, type S3rverHandle } from '../lib/s3rver.ts';
import { benchLog, notesSection, runBench, writeResults } from '../lib/report.ts';
import { fmtRatio, markdownTable, median } from '../lib/stats.ts';
import { psqlEnv, startPostgres, writeAutoConf, type PgProcess } from './burst-cluster.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const PG_BIN = '/usr/lib/postgresql/15/bin';
const BUCKET = 'bench';
const SERVER = 'bench';
const PORT = 55432;
const S3_CREDS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1', AWS_DEFAULT_REGION: 'us-east-1' };
/** Per burst or recovery: far above any sane time, low enough to bound a hung tool. */
const PHASE_TIMEOUT_MS = 45 * 60_000;
const SEGMENT_BYTES = 16 * 1024 * 1024;
/** What recovery must reproduce: rows of the noise table, the pgbench balance total and history rows. */
const DATA_CHECK = "SELECT (SELECT count(*) FROM bench_noise) || '/' || (SELECT sum(abalance) FROM pgbench_accounts) || '/' || (SELECT count(*) FROM pgbench_history)";

type Tool = 'cloudbarman' | 'pgbackrest' | 'barman-cloud';
type VariantId = 'cloudbarman-local' | 'cloudbarman-s3' | 'cloudbarman-s3-single' | 'pgbackrest-posix' | 'barman-cloud-s3' | 'cloudbarman-local-baseline';
const VARIANTS: readonly VariantId[] = ['cloudbarman-local', 'cloudbarman-s3', 'cloudbarman-s3-single', 'pgbackrest-posix', 'barman-cloud-s3'];
/** Only with --baseline: cloudbarman-local run by another build, to measure a change in the same run. */
const ALL_VARIANTS: readonly VariantId[] = [...VARIANTS, 'cloudbarman-local-baseline'];
type Phase = 'burst' | 'recovery';

interface Options {
  segments: number;
  variants: VariantId[];
  rounds: number;
  phases: Phase[];
  install: boolean;
  keep: boolean;
  cloudbarman: string | null;
  /** Another cloudbarman launcher for the cloudbarman-local-baseline variant. */
  baseline: string | null;
}

interface Variant {
  id: VariantId;
  tool: Tool;
  target: 'local' | 's3';
  /** What the tool does, in its own words. */
  mode: string;
  compression: string;
  /** archive_command for round r. */
  archiveCommand: (round: number) => string;
  /** restore_command for round r, recovering into pgdata. */
  restoreCommand: (round: number, pgdata: string) => string;
  burst: Sample[];
  recovery: Sample[];
  skipped?: string;
}

interface Sample {
  round: number;
  ms: number | null;
  ok: boolean;
  note: string;
}

function parseArgs(argv: readonly string[]): Options {
  const o: Options = { segments: 256, variants: [...VARIANTS], rounds: 1, phases: ['burst', 'recovery'], install: true, keep: false, cloudbarman: null, baseline: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    const list = <T extends string>(allowed: readonly T[]): T[] => {
      const items = val().split(',').map((s) => s.trim()).filter(Boolean);
      for (const it of items) if (!allowed.includes(it as T)) throw new Error(`${a}: unknown '${it}' (one of ${allowed.join(', ')})`);
      return items as T[];
    };
    if (a === '--segments') o.segments = Number(val());
    else if (a === '--variants') o.variants = list(ALL_VARIANTS);
    else if (a === '--rounds') o.rounds = Number(val());
    else if (a === '--phases') o.phases = list(['burst', 'recovery'] as const);
    else if (a === '--no-install') o.install = false;
    else if (a === '--keep') o.keep = true;
    else if (a === '--cloudbarman') o.cloudbarman = resolve(val());
    else if (a === '--baseline') o.baseline = resolve(val());
    else if (a === '--help' || a === '-h') {
      process.stdout.write(
        'usage: node bench/wal/burst.ts [--segments N (256)] [--variants ' + VARIANTS.join(',') + ']\n' +
          '                               [--rounds R (1)] [--phases burst,recovery] [--cloudbarman PATH] [--baseline PATH] [--no-install] [--keep]\n' +
          '  --baseline PATH  also run cloudbarman-local with the launcher PATH (variant cloudbarman-local-baseline), e.g. a build before a change\n',
      );
      process.exit(0);
    } else throw new Error(`unknown argument ${a} (try --help)`);
  }
  if (!Number.isInteger(o.segments) || o.segments < 8 || o.segments > 2048) throw new Error('--segments must be an integer in 8..2048');
  if (!Number.isInteger(o.rounds) || o.rounds < 1 || o.rounds > 10) throw new Error('--rounds must be an integer in 1..10');
  if (o.baseline !== null && !o.variants.includes('cloudbarman-local-baseline')) o.variants.push('cloudbarman-local-baseline');
  if (o.baseline === null && o.variants.includes('cloudbarman-local-baseline')) throw new Error('cloudbarman-local-baseline needs --baseline PATH');
  if (o.phases.includes('recovery') && !o.phases.includes('burst')) throw new Error('--phases recovery needs burst too: each tool recovers from the archive its burst wrote');
  return o;
}

const log = benchLog('burst');

/** A directory owned by the postgres user. */
function pgDir(path: string, user: OsUser): string {
  mkdirSync(path, { recursive: true });
  chownSync(path, user.uid, user.gid);
  return path;
}

function chownTree(path: string, user: OsUser): void {
  chownSync(path, user.uid, user.gid);
  if (!statSync(path).isDirectory()) return;
  for (const e of readdirSync(path)) chownTree(join(path, e), user);
}

function listStatus(pgdata: string): { ready: string[]; done: string[] } {
  const files = readdirSync(join(pgdata, 'pg_wal', 'archive_status'));
  return {
    ready: files.filter((f) => f.endsWith('.ready')).map((f) => f.slice(0, -6)),
    done: files.filter((f) => f.endsWith('.done')).map((f) => f.slice(0, -5)),
  };
}

/** Shell-quotes one word for archive_command / restore_command (both run through /bin/sh). */
function sq(word: string): string {
  return /^[\w/.:=@,+-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/** A postgresql.conf string literal. */
function confString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const notes: string[] = [];
  const startedAt = new Date();

  // ---- prerequisites -----------------------------------------------------------------------
  if (!existsSync(join(PG_BIN, 'postgres'))) {
    log('PostgreSQL 15 is missing; running scripts/ensure-postgres.sh');
    await runOk('bash', [join(ROOT, 'scripts/ensure-postgres.sh')], { timeoutMs: 600_000 });
  }
  const pgUser = osUser('postgres');
  if (!pgUser) throw new Error("no 'postgres' OS user: install Debian's postgresql-15 (scripts/ensure-postgres.sh)");
  if (process.getuid?.() !== 0) throw new Error('run as root: clusters and the archive/restore commands run as the postgres OS user');
  const tools = new Set(opts.variants.map((v) => v.split('-')[0] === 'barman' ? 'barman-cloud' : (v.split('-')[0] as Tool)));
  const peers = await ensurePeers(
    [
      ...(tools.has('pgbackrest') ? [{ bin: 'pgbackrest', pkg: 'pgbackrest' }] : []),
      ...(tools.has('barman-cloud') ? [{ bin: 'barman-cloud-wal-archive', pkg: 'barman-cli-cloud' }, { bin: 'barman-cloud-wal-restore', pkg: 'barman-cli-cloud' }] : []),
    ],
    { install: opts.install, log },
  );
  const peerPath = (bin: string): string | null => peers.find((p) => p.peer.bin === bin)?.path ?? null;
  for (const p of peers) if (p.path === null) notes.push(`SKIPPED ${p.peer.bin}: ${p.reason}`);
  const cbBin = opts.cloudbarman ?? join(ROOT, 'bin/cloudbarman');
  let cbSkip: string | undefined;
  if (!opts.cloudbarman && !existsSync(join(ROOT, 'dist/cloudbarman.mjs'))) cbSkip = 'not built: dist/cloudbarman.mjs is missing (run `npm run build`)';

  // ---- workspace and stores ----------------------------------------------------------------
  const base = mkdtempSync('/tmp/cloudbarman-bench-burst-');
  chmodSync(base, 0o755);
  onCleanup('workspace', () => {
    if (opts.keep) log(`kept ${base}`);
    else rmSync(base, { recursive: true, force: true });
  });
  const socketDir = pgDir(join(base, 'socket'), pgUser);
  const pgdata = pgDir(join(base, 'pgdata'), pgUser);
  chmodSync(pgdata, 0o700);
  const backupDir = pgDir(join(base, 'basebackup'), pgUser);
  chmodSync(backupDir, 0o700);
  const logFile = join(base, 'postgres.log');
  const pgEnv = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({ PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', HOME: base, ...S3_CREDS, ...extra });
  let s3: S3rverHandle | undefined;
  if (opts.variants.some((v) => v.endsWith('-s3') || v.endsWith('-s3-single'))) {
    s3 = await startS3rver({ root: ROOT, dir: join(base, 's3rver'), buckets: [BUCKET] });
    log(`s3rver (HTTP) on ${s3.endpoint}`);
  }

  // ---- variants ----------------------------------------------------------------------------
  const variants: Variant[] = [];
  let pgbackrestConf: string | undefined;
  const confDir = pgDir(join(base, 'conf'), pgUser);
  const cbConf = (id: string, round: number, destination: string, extra: string[]): string => {
    const file = join(confDir, `${id}-r${round}.conf`);
    writeFileSync(file, [`[${SERVER}]`, `destination = ${destination}`, 'compression = zstd', ...extra, ''].join('\n'));
    chownSync(file, pgUser.uid, pgUser.gid);
    return file;
  };
  for (const id of opts.variants) {
    if (id.startsWith('cloudbarman')) {
      const single = id === 'cloudbarman-s3-single';
      const baseline = id === 'cloudbarman-local-baseline';
      const bin = baseline ? opts.baseline! : cbBin;
      const target = id === 'cloudbarman-local' || baseline ? 'local' : 's3';
      const extra = single ? ['archive_batch_size = 1', 'restore_prefetch = 0'] : [];
      const dest = (round: number): string[] => target === 'local'
        ? [`file://${pgDir(join(base, 'repo', `${id}-r${round}`), pgUser)}`]
        : [`s3://${BUCKET}/${id}-r${round}`, `endpoint_url = ${s3!.endpoint}`];
      const conf = (round: number): string => {
        const [destination, ...more] = dest(round);
        return cbConf(id, round, destination!, [...more, ...extra]);
      };
      const confs = new Map<number, string>();
      const confFor = (round: number): string => {
        if (!confs.has(round)) confs.set(round, conf(round));
        return confs.get(round)!;
      };
      const v: Variant = {
        id, tool: 'cloudbarman', target, compression: 'zstd',
        mode: (single ? 'one segment per call (archive_batch_size 1, restore_prefetch 0)' : 'batch (archive_batch_size 32, archive_parallel 4) / prefetch (restore_prefetch 16)') +
          (baseline ? `, baseline build ${bin}` : ''),
        archiveCommand: (r) => `${sq(bin)} -c ${sq(confFor(r))} wal-upload ${SERVER} %p`,
        restoreCommand: (r) => `${sq(bin)} -c ${sq(confFor(r))} wal-restore ${SERVER} %f %p`,
        burst: [], recovery: [],
      };
      if (cbSkip) v.skipped = cbSkip;
      variants.push(v);
    } else if (id === 'pgbackrest-posix') {
      const bin = peerPath('pgbackrest');
      const dir = pgDir(join(base, 'pgbackrest'), pgUser);
      const conf = join(dir, 'pgbackrest.conf');
      writeFileSync(conf, [
        '[global]',
        'repo1-type=posix',
        `repo1-path=${pgDir(join(dir, 'repo'), pgUser)}`,
        `log-path=${pgDir(join(dir, 'log'), pgUser)}`,
        `lock-path=${pgDir(join(dir, 'lock'), pgUser)}`,
        `spool-path=${pgDir(join(dir, 'spool'), pgUser)}`,
        'log-level-console=warn',
        'log-level-stderr=warn',
        'log-level-file=off',
        'archive-async=y',
        'process-max=2',
        'compress-type=zst',
        // The same look-ahead as cloudbarman's restore_prefetch default (16 segments).
        'archive-get-queue-max=256MiB',
        '',
        ...Array.from({ length: opts.rounds }, (_, i) => [`[${SERVER}_r${i + 1}]`, `pg1-path=${pgdata}`, `pg1-socket-path=${socketDir}`, `pg1-port=${PORT}`, 'pg1-user=postgres', '']).flat(),
      ].join('\n'));
      chownSync(conf, pgUser.uid, pgUser.gid);
      pgbackrestConf = conf;
      const v: Variant = {
        id, tool: 'pgbackrest', target: 'local', compression: 'zst',
        mode: 'async archive-push / archive-get (process-max 2, archive-get-queue-max 256MiB)',
        archiveCommand: (r) => `${bin ?? 'pgbackrest'} --config=${sq(conf)} --stanza=${SERVER}_r${r} archive-push %p`,
        restoreCommand: (r, rec) => `${bin ?? 'pgbackrest'} --config=${sq(conf)} --stanza=${SERVER}_r${r} --pg1-path=${sq(rec)} archive-get %f "%p"`,
        burst: [], recovery: [],
      };
      if (!bin) v.skipped = 'pgbackrest not installed';
      variants.push(v);
    } else {
      const archive = peerPath('barman-cloud-wal-archive');
      const restore = peerPath('barman-cloud-wal-restore');
      const url = (r: number): string => `s3://${BUCKET}/${id}-r${r}`;
      const v: Variant = {
        id, tool: 'barman-cloud', target: 's3', compression: 'none',
        mode: 'one process per segment (its fastest setting: no compression)',
        archiveCommand: (r) => `${archive ?? 'barman-cloud-wal-archive'} --cloud-provider aws-s3 --endpoint-url ${s3!.endpoint} ${url(r)} ${SERVER} %p`,
        restoreCommand: (r) => `${restore ?? 'barman-cloud-wal-restore'} --cloud-provider aws-s3 --endpoint-url ${s3!.endpoint} ${url(r)} ${SERVER} %f %p`,
        burst: [], recovery: [],
      };
      if (!archive || !restore) v.skipped = 'barman-cli-cloud not installed';
      variants.push(v);
    }
  }

  // ---- the cluster and its pile of WAL -----------------------------------------------------
  log('initdb (PostgreSQL 15, as the postgres OS user)');
  await runOk(join(PG_BIN, 'initdb'), ['-D', pgdata, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync'], { uid: pgUser.uid, gid: pgUser.gid, cwd: base, env: pgEnv(), timeoutMs: 120_000 });
  writeFileSync(join(pgdata, 'postgresql.conf'), [
    '', '# cloudbarman burst bench',
    'wal_level = replica', 'archive_mode = on', 'fsync = off', 'max_wal_size = 4GB', 'checkpoint_timeout = 30min',
    // Keep every segment in pg_wal after it was archived, so that each tool archives the same pile.
    'wal_keep_size = 64GB', 'archive_timeout = 0', 'log_min_messages = warning',
    '',
  ].join('\n'), { flag: 'a' });
  writeAutoConf(pgdata, { archive_command: "''" }, pgUser);
  const startPg = (waitReady: boolean, dir = pgdata, env = pgEnv()): Promise<PgProcess> =>
    startPostgres({ binDir: PG_BIN, pgdata: dir, socketDir, port: PORT, user: pgUser, logFile, env, waitReady });

  let pg = await startPg(true);
  const pgbench = join(PG_BIN, 'pgbench');
  const clientEnv = psqlEnv(socketDir, PORT);
  await runOk(pgbench, ['-i', '-s', '4', '-q'], { env: clientEnv, timeoutMs: 300_000 });
  await pg.sql('CREATE TABLE bench_noise (id bigserial PRIMARY KEY, t text)');
  log('base backup (pg_basebackup -X fetch)');
  await runOk(join(PG_BIN, 'pg_basebackup'), ['-D', backupDir, '-X', 'fetch', '-c', 'fast', '-h', socketDir, '-p', String(PORT), '-U', 'postgres'], {
    uid: pgUser.uid, gid: pgUser.gid, cwd: base, env: pgEnv(), timeoutMs: 300_000,
  });
  log(`generating WAL until ${opts.segments} segments are .ready (pgbench TPC-B, bulk updates, random text)`);
  const genDeadline = Date.now() + 30 * 60_000;
  for (let round = 1; listStatus(pgdata).ready.length < opts.segments; round++) {
    if (Date.now() > genDeadline) throw new Error(`only ${listStatus(pgdata).ready.length} segments after 30 minutes`);
    await runOk(pgbench, ['-n', '-c', '2', '-j', '2', '-t', '300'], { env: clientEnv, timeoutMs: 300_000 });
    await pg.sql(`UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 4 = ${round % 4}`);
    await pg.sql('INSERT INTO bench_noise (t) SELECT md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) FROM generate_series(1, 100000)');
    // Bound the table (and so each recovery's disk), not the WAL.
    if (round % 8 === 0) await pg.sql('TRUNCATE bench_noise');
    if (round % 10 === 0) log(`  round ${round}: ${listStatus(pgdata).ready.length} segments .ready`);
  }
  const last = await pg.sql('SELECT pg_walfile_name(pg_switch_wal())');
  for (const deadline = Date.now() + 60_000; !listStatus(pgdata).ready.includes(last); await sleep(100)) {
    if (Date.now() > deadline) throw new Error(`${last} never became .ready`);
  }
  const expected = await pg.sql(DATA_CHECK);
  const readyCount = listStatus(pgdata).ready.length;
  log(`${readyCount} WAL files .ready, last ${last}; data check ${expected}`);

  for (const v of variants) {
    if (v.tool !== 'pgbackrest' || v.skipped) continue;
    for (let r = 1; r <= opts.rounds; r++) {
      const res = await run(peerPath('pgbackrest')!, [`--config=${pgbackrestConf}`, `--stanza=${SERVER}_r${r}`, 'stanza-create'], { uid: pgUser.uid, gid: pgUser.gid, cwd: base, env: pgEnv(), timeoutMs: 120_000 });
      if (res.code !== 0) v.skipped = `stanza-create failed: ${describeFailure('pgbackrest', res)}`;
    }
  }
  await pg.stop();

  // ---- measurement -------------------------------------------------------------------------
  const resetStatus = (): void => {
    const statusDir = join(pgdata, 'pg_wal', 'archive_status');
    for (const name of listStatus(pgdata).done) renameSync(join(statusDir, `${name}.done`), join(statusDir, `${name}.ready`));
    rmSync(join(pgdata, 'pg_wal', 'cloudbarman_spool'), { recursive: true, force: true });
  };

  const burst = async (v: Variant, round: number): Promise<Sample> => {
    resetStatus();
    writeAutoConf(pgdata, { archive_command: "''" }, pgUser);
    pg = await startPg(true);
    try {
      await pg.sql("SELECT pg_stat_reset_shared('archiver')");
      await pg.sql(`ALTER SYSTEM SET archive_command = ${confString(v.archiveCommand(round))}`);
      await pg.sql('SELECT pg_reload_conf()');
      const t0 = performance.now();
      const deadline = t0 + PHASE_TIMEOUT_MS;
      // PostgreSQL renames .ready to .done after each successful archive_command.
      for (;;) {
        const { ready } = listStatus(pgdata);
        if (ready.length === 0) break;
        if (performance.now() > deadline) return { round, ms: null, ok: false, note: `timed out with ${ready.length} segments left` };
        if (!pg.running()) return { round, ms: null, ok: false, note: `postgres exited: ${pg.logTail(5)}` };
        await sleep(50);
      }
      const ms = performance.now() - t0;
      const failed = await pg.sql('SELECT failed_count FROM pg_stat_archiver');
      return { round, ms, ok: true, note: failed === '0' ? '' : `${failed} failed archive_command calls (retried)` };
    } finally {
      await pg.sql("ALTER SYSTEM SET archive_command = ''").catch(() => undefined);
      await pg.stop();
    }
  };

  const recovery = async (v: Variant, round: number): Promise<Sample> => {
    const rec = join(base, `recovery-${v.id}-r${round}`);
    cpSync(backupDir, rec, { recursive: true });
    chownTree(rec, pgUser);
    chmodSync(rec, 0o700);
    writeAutoConf(rec, { archive_mode: 'off', restore_command: confString(v.restoreCommand(round, rec)), recovery_target_timeline: "'latest'" }, pgUser);
    writeFileSync(join(rec, 'recovery.signal'), '');
    chownSync(join(rec, 'recovery.signal'), pgUser.uid, pgUser.gid);
    const t0 = performance.now();
    const cluster = await startPg(false, rec);
    try {
      // PostgreSQL removes recovery.signal when recovery ends.
      for (const deadline = t0 + PHASE_TIMEOUT_MS; existsSync(join(rec, 'recovery.signal')); await sleep(50)) {
        if (performance.now() > deadline) return { round, ms: null, ok: false, note: 'timed out' };
        if (!cluster.running()) return { round, ms: null, ok: false, note: `postgres exited: ${cluster.logTail(5)}` };
      }
      const ms = performance.now() - t0;
      let got = '';
      for (const deadline = Date.now() + 120_000; Date.now() < deadline; await sleep(200)) {
        const r = await run(join(PG_BIN, 'psql'), ['-X', '-Atq', '-c', DATA_CHECK], { env: clientEnv, timeoutMs: 60_000 });
        if (r.code === 0) {
          got = r.stdout.trim();
          break;
        }
      }
      return got === expected ? { round, ms, ok: true, note: '' } : { round, ms, ok: false, note: `recovered data differs (${got} vs ${expected}): recovery ended early` };
    } finally {
      await cluster.stop();
      if (!opts.keep) rmSync(rec, { recursive: true, force: true });
    }
  };

  const active = variants.filter((v) => !v.skipped);
  for (let round = 1; round <= opts.rounds; round++) {
    for (const v of active) {
      log(`burst ${round}/${opts.rounds}: ${v.id} archives ${readyCount} .ready files`);
      const s = await burst(v, round);
      v.burst.push(s);
      log(`  ${s.ok ? `${((s.ms ?? 0) / 1000).toFixed(1)} s` : 'FAILED'} ${s.note}`);
    }
    if (!opts.phases.includes('recovery')) continue;
    for (const v of active) {
      if (!v.burst.find((s) => s.round === round)?.ok) continue;
      log(`recovery ${round}/${opts.rounds}: ${v.id} replays the archive through restore_command`);
      const s = await recovery(v, round);
      v.recovery.push(s);
      log(`  ${s.ok ? `${((s.ms ?? 0) / 1000).toFixed(1)} s` : 'FAILED'} ${s.note}`);
    }
  }

  // ---- report ------------------------------------------------------------------------------
  const med = (samples: Sample[]): number | null => {
    const ok = samples.filter((s) => s.ok && s.ms !== null).map((s) => s.ms!);
    return ok.length ? median(ok) : null;
  };
  const table = (phase: Phase): string => {
    const rowsOf = variants.map((v) => ({ v, ms: med(v[phase]) }));
    const ref = (tool: Tool) => rowsOf.find((r) => r.v.tool === tool && r.ms !== null)?.ms ?? null;
    const barman = ref('barman-cloud');
    const pgbr = ref('pgbackrest');
    return markdownTable(
      ['variant', 'tool', 'target', 'compression', 'mode', 'median s', 'segments/s', 'ok/runs', '÷ barman-cloud', '÷ pgbackrest async'],
      rowsOf.map(({ v, ms }) => {
        const samples = v[phase];
        return [
          v.id, v.tool, v.target, v.compression, v.mode,
          v.skipped ? 'skipped' : ms === null ? 'failed' : (ms / 1000).toFixed(1),
          ms === null ? '—' : (readyCount / (ms / 1000)).toFixed(1),
          v.skipped ? '' : `${samples.filter((s) => s.ok).length}/${samples.length}`,
          v.tool === 'barman-cloud' && ms !== null ? '(ref)' : ms !== null && barman !== null ? fmtRatio(ms / barman) : '—',
          v.tool === 'pgbackrest' && ms !== null ? '(ref)' : ms !== null && pgbr !== null ? fmtRatio(ms / pgbr) : '—',
        ];
      }),
      ['l', 'l', 'l', 'l', 'l', 'r', 'r', 'r', 'r', 'r'],
    );
  };
  const version = async (cmd: string | null, args: string[]): Promise<string | null> => {
    if (!cmd) return null;
    const r = await run(cmd, args, { timeoutMs: 30_000 });
    return r.code === 0 ? (r.stdout || r.stderr).trim().split('\n')[0]! : null;
  };
  const versions = {
    node: process.version,
    pgbackrest: await version(peerPath('pgbackrest'), ['version']),
    barmanCloud: await version(peerPath('barman-cloud-wal-archive'), ['--version']),
    cloudbarman: cbSkip ? null : await version(cbBin, ['--version']),
  };
  for (const v of variants) {
    if (v.skipped) notes.push(`skipped ${v.id}: ${v.skipped}`);
    for (const s of [...v.burst, ...v.recovery]) if (s.note) notes.push(`${v.id} round ${s.round}: ${s.note}`);
  }

  const out: string[] = [];
  out.push(`## WAL burst and recovery, ${readyCount} segments of 16 MiB (${startedAt.toISOString()})`);
  out.push('');
  out.push(
    `${cpus().length} CPUs, Linux ${release()}, Node ${process.version}, PostgreSQL 15, pgbackrest ${versions.pgbackrest ?? '—'}, ${versions.barmanCloud ?? 'barman-cloud —'}; ` +
      `${opts.rounds} round(s), median shown; ratio = row median ÷ the peer's median (< 1 is faster).`,
  );
  if (opts.phases.includes('burst')) {
    out.push('');
    out.push(`Burst: ${readyCount} WAL files .ready at once; from archive_command being set (reload) until PostgreSQL has archived them all:`);
    out.push('');
    out.push(table('burst'));
  }
  if (opts.phases.includes('recovery')) {
    out.push('');
    out.push('Recovery: a base backup taken before the burst replays the whole archive through restore_command; from postmaster start until recovery.signal is gone (recovery ended), data checked afterwards:');
    out.push('');
    out.push(table('recovery'));
  }
  out.push(...notesSection(notes));
  out.push('');
  out.push('All archive and restore commands run as the postgres OS user, started by PostgreSQL itself. local = a directory (pgbackrest: posix repo); s3 = s3rver over HTTP, a single-process Node server on this machine.');
  process.stdout.write(out.join('\n') + '\n');

  const jsonPath = writeResults(ROOT, 'burst', startedAt, {
    bench: 'wal-burst',
    startedAt: startedAt.toISOString(),
    durationS: Math.round((Date.now() - startedAt.getTime()) / 100) / 10,
    host: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? null, kernel: release() },
    options: opts,
    versions,
    segments: readyCount,
    segmentBytes: SEGMENT_BYTES,
    lastSegment: last,
    variants: variants.map((v) => ({
      id: v.id, tool: v.tool, target: v.target, compression: v.compression, mode: v.mode, skipped: v.skipped ?? null,
      archiveCommand: v.archiveCommand(1), restoreCommand: v.restoreCommand(1, '<pgdata>'),
      burst: v.burst, recovery: v.recovery, burstMedianMs: med(v.burst), recoveryMedianMs: med(v.recovery),
    })),
    notes: [...new Set(notes)],
  });
  log(`JSON written to ${jsonPath}`);
}

await runBench(main, log);

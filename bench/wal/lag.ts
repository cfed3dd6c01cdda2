/**
 * Archive lag under load: pgbench runs at full speed for a while (60 s by default) and, once a
 * second, pg_stat_archiver's last archived WAL file is compared with the current WAL insert
 * position. Each tool is the cluster's archive_command in turn, on the same cluster.
 *
 *   bash scripts/with-node.sh node bench/wal/lag.ts [--duration-s S] [--variants a,b,...] [--clients C]
 *        [--scale N] [--cloudbarman PATH] [--no-install] [--keep]
 *
 * Markdown on stdout, progress on stderr, JSON in bench/results/lag-<timestamp>.json.
 * See bench/wal/lag.md for what is measured and the caveats.
 */
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensurePeers } from '../lib/apt.ts';
import { osUser, type OsUser } from '../lib/postgres.ts';
import { describeFailure, onCleanup, run, runOk, sleep } from '../lib/proc.ts';
import { startS3rver, type S3rverHandle } from '../lib/s3rver.ts';
import { benchLog, notesSection, runBench, writeResults } from '../lib/report.ts';
import { markdownTable, median } from '../lib/stats.ts';
import { psqlEnv, startPostgres, writeAutoConf, type PgProcess } from './burst-cluster.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const PG_BIN = '/usr/lib/postgresql/15/bin';
const BUCKET = 'bench';
const SERVER = 'bench';
const PORT = 55433;
const S3_CREDS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1', AWS_DEFAULT_REGION: 'us-east-1' };
/** After pgbench stops: the longest wait for the archiver to catch up before the row is marked failed. */
const CATCH_UP_TIMEOUT_MS = 10 * 60_000;
/** One query per sample: the segment being written, the last archived one, the archiver's counters. */
const SAMPLE_SQL = "SELECT pg_walfile_name(pg_current_wal_insert_lsn()) || ' ' || coalesce(last_archived_wal, '-') || ' ' || archived_count || ' ' || failed_count || ' ' || pg_current_wal_insert_lsn() FROM pg_stat_archiver";

type VariantId = 'cloudbarman-local' | 'cloudbarman-s3' | 'pgbackrest-posix' | 'barman-cloud-s3';
const VARIANTS: readonly VariantId[] = ['cloudbarman-local', 'cloudbarman-s3', 'pgbackrest-posix', 'barman-cloud-s3'];

interface Options {
  durationS: number;
  variants: VariantId[];
  clients: number;
  scale: number;
  install: boolean;
  keep: boolean;
  cloudbarman: string | null;
}

interface Sample {
  /** Seconds since pgbench started. */
  t: number;
  /** Finished WAL segments not archived yet, by position: insert segment - last archived segment - 1. */
  behind: number;
  /** .ready files in archive_status. */
  ready: number;
}

interface Result {
  variant: VariantId;
  mode: string;
  skipped?: string;
  samples: Sample[];
  /** Segments PostgreSQL wrote during the pgbench run. */
  segments: number;
  tps: number | null;
  /** Seconds from pgbench's end until no .ready file was left. */
  catchUpS: number | null;
  failedCalls: number;
  note: string;
}

function parseArgs(argv: readonly string[]): Options {
  const o: Options = { durationS: 60, variants: ['cloudbarman-local', 'cloudbarman-s3', 'pgbackrest-posix', 'barman-cloud-s3'], clients: 2, scale: 10, install: true, keep: false, cloudbarman: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--duration-s') o.durationS = Number(val());
    else if (a === '--clients') o.clients = Number(val());
    else if (a === '--scale') o.scale = Number(val());
    else if (a === '--variants') {
      const items = val().split(',').map((s) => s.trim()).filter(Boolean);
      for (const it of items) if (!VARIANTS.includes(it as VariantId)) throw new Error(`--variants: unknown '${it}' (one of ${VARIANTS.join(', ')})`);
      o.variants = items as VariantId[];
    } else if (a === '--no-install') o.install = false;
    else if (a === '--keep') o.keep = true;
    else if (a === '--cloudbarman') o.cloudbarman = resolve(val());
    else if (a === '--help' || a === '-h') {
      process.stdout.write(`usage: node bench/wal/lag.ts [--duration-s S (60)] [--variants ${VARIANTS.join(',')}] [--clients C (2)] [--scale N (10)]\n` +
        '                             [--cloudbarman PATH] [--no-install] [--keep]\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${a} (try --help)`);
  }
  if (!Number.isInteger(o.durationS) || o.durationS < 5 || o.durationS > 3600) throw new Error('--duration-s must be an integer in 5..3600');
  if (!Number.isInteger(o.clients) || o.clients < 1 || o.clients > 64) throw new Error('--clients must be an integer in 1..64');
  if (!Number.isInteger(o.scale) || o.scale < 1 || o.scale > 1000) throw new Error('--scale must be an integer in 1..1000');
  return o;
}

const log = benchLog('lag');

/** The segment number of a WAL file name, for 16 MiB segments (256 per log id). */
export function segmentNumber(walName: string): number {
  const log = Number.parseInt(walName.slice(8, 16), 16);
  const seg = Number.parseInt(walName.slice(16, 24), 16);
  return log * 0x100 + seg;
}

function pgDir(path: string, user: OsUser): string {
  mkdirSync(path, { recursive: true });
  chownSync(path, user.uid, user.gid);
  return path;
}

function readyCount(pgdata: string): number {
  return readdirSync(join(pgdata, 'pg_wal', 'archive_status')).filter((f) => f.endsWith('.ready')).length;
}

function sq(word: string): string {
  return /^[\w/.:=@,+-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const startedAt = new Date();
  const notes: string[] = [];
  if (!existsSync(join(PG_BIN, 'postgres'))) await runOk('bash', [join(ROOT, 'scripts/ensure-postgres.sh')], { timeoutMs: 600_000 });
  const pgUser = osUser('postgres');
  if (!pgUser) throw new Error("no 'postgres' OS user: install Debian's postgresql-15 (scripts/ensure-postgres.sh)");
  if (process.getuid?.() !== 0) throw new Error('run as root: the cluster and the archive commands run as the postgres OS user');
  const peers = await ensurePeers([
    ...(opts.variants.includes('pgbackrest-posix') ? [{ bin: 'pgbackrest', pkg: 'pgbackrest' }] : []),
    ...(opts.variants.includes('barman-cloud-s3') ? [{ bin: 'barman-cloud-wal-archive', pkg: 'barman-cli-cloud' }] : []),
  ], { install: opts.install, log });
  const peerPath = (bin: string): string | null => peers.find((p) => p.peer.bin === bin)?.path ?? null;
  const cbBin = opts.cloudbarman ?? join(ROOT, 'bin/cloudbarman');

  const base = mkdtempSync('/tmp/cloudbarman-bench-lag-');
  chmodSync(base, 0o755);
  onCleanup('workspace', () => {
    if (opts.keep) log(`kept ${base}`);
    else rmSync(base, { recursive: true, force: true });
  });
  const socketDir = pgDir(join(base, 'socket'), pgUser);
  const pgdata = pgDir(join(base, 'pgdata'), pgUser);
  chmodSync(pgdata, 0o700);
  const confDir = pgDir(join(base, 'conf'), pgUser);
  const pgEnv = (): NodeJS.ProcessEnv => ({ PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', HOME: base, ...S3_CREDS });
  let s3: S3rverHandle | undefined;
  if (opts.variants.some((v) => v.endsWith('-s3'))) {
    s3 = await startS3rver({ root: ROOT, dir: join(base, 's3rver'), buckets: [BUCKET] });
    log(`s3rver (HTTP) on ${s3.endpoint}`);
  }

  // ---- what each variant runs as archive_command ---------------------------------------------
  const pgbackrestConf = join(confDir, 'pgbackrest.conf');
  const commands = new Map<VariantId, { command: string; mode: string; skipped?: string }>();
  for (const id of opts.variants) {
    if (id.startsWith('cloudbarman')) {
      const destination = id === 'cloudbarman-local'
        ? [`destination = file://${pgDir(join(base, 'repo', id), pgUser)}`]
        : [`destination = s3://${BUCKET}/${id}`, `endpoint_url = ${s3!.endpoint}`];
      const conf = join(confDir, `${id}.conf`);
      writeFileSync(conf, [`[${SERVER}]`, ...destination, 'compression = zstd', ''].join('\n'));
      chownSync(conf, pgUser.uid, pgUser.gid);
      const built = opts.cloudbarman !== null || existsSync(join(ROOT, 'dist/cloudbarman.mjs'));
      commands.set(id, {
        command: `${sq(cbBin)} -c ${sq(conf)} wal-upload ${SERVER} %p`,
        mode: 'batch (archive_batch_size 32, archive_parallel 4), zstd',
        ...(built ? {} : { skipped: 'not built: run npm run build' }),
      });
    } else if (id === 'pgbackrest-posix') {
      const bin = peerPath('pgbackrest');
      writeFileSync(pgbackrestConf, [
        '[global]', 'repo1-type=posix', `repo1-path=${pgDir(join(base, 'pgbackrest', 'repo'), pgUser)}`,
        `log-path=${pgDir(join(base, 'pgbackrest', 'log'), pgUser)}`, `lock-path=${pgDir(join(base, 'pgbackrest', 'lock'), pgUser)}`,
        `spool-path=${pgDir(join(base, 'pgbackrest', 'spool'), pgUser)}`,
        'log-level-console=warn', 'log-level-stderr=warn', 'log-level-file=off', 'archive-async=y', 'process-max=2', 'compress-type=zst', '',
        `[${SERVER}]`, `pg1-path=${pgdata}`, `pg1-socket-path=${socketDir}`, `pg1-port=${PORT}`, 'pg1-user=postgres', '',
      ].join('\n'));
      chownSync(pgbackrestConf, pgUser.uid, pgUser.gid);
      commands.set(id, {
        command: `${bin ?? 'pgbackrest'} --config=${sq(pgbackrestConf)} --stanza=${SERVER} archive-push %p`,
        mode: 'async archive-push (process-max 2), zst',
        ...(bin ? {} : { skipped: 'pgbackrest not installed' }),
      });
    } else {
      const bin = peerPath('barman-cloud-wal-archive');
      commands.set(id, {
        command: `${bin ?? 'barman-cloud-wal-archive'} --cloud-provider aws-s3 --endpoint-url ${s3!.endpoint} s3://${BUCKET}/${id} ${SERVER} %p`,
        mode: 'one process per segment, no compression (its fastest)',
        ...(bin ? {} : { skipped: 'barman-cli-cloud not installed' }),
      });
    }
  }

  // ---- the cluster ---------------------------------------------------------------------------
  log(`initdb, pgbench -i -s ${opts.scale}`);
  await runOk(join(PG_BIN, 'initdb'), ['-D', pgdata, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync'], { uid: pgUser.uid, gid: pgUser.gid, cwd: base, env: pgEnv(), timeoutMs: 120_000 });
  writeFileSync(join(pgdata, 'postgresql.conf'), [
    '', '# cloudbarman lag bench: WAL as fast as this machine makes it. Commits do not wait for the disk,',
    '# and a checkpoint every 30 s keeps full-page images in the WAL, as a busy server has them.',
    'wal_level = replica', 'archive_mode = on', 'synchronous_commit = off', 'max_wal_size = 1GB', 'checkpoint_timeout = 30s',
    'archive_timeout = 0', 'log_min_messages = warning', '',
  ].join('\n'), { flag: 'a' });
  writeAutoConf(pgdata, { archive_command: "''" }, pgUser);
  const logFile = join(base, 'postgres.log');
  const pg: PgProcess = await startPostgres({ binDir: PG_BIN, pgdata, socketDir, port: PORT, user: pgUser, logFile, env: pgEnv(), waitReady: true });
  const clientEnv = psqlEnv(socketDir, PORT);
  await runOk(join(PG_BIN, 'pgbench'), ['-i', '-s', String(opts.scale), '-q'], { env: clientEnv, timeoutMs: 600_000 });
  if (commands.get('pgbackrest-posix')?.skipped === undefined && commands.has('pgbackrest-posix')) {
    const r = await run(peerPath('pgbackrest')!, [`--config=${pgbackrestConf}`, `--stanza=${SERVER}`, 'stanza-create'], { uid: pgUser.uid, gid: pgUser.gid, cwd: base, env: pgEnv(), timeoutMs: 120_000 });
    if (r.code !== 0) commands.get('pgbackrest-posix')!.skipped = `stanza-create failed: ${describeFailure('pgbackrest', r)}`;
  }

  // ---- one pgbench run per variant -----------------------------------------------------------
  const setArchiveCommand = async (command: string): Promise<void> => {
    await pg.sql(`ALTER SYSTEM SET archive_command = '${command.replaceAll("'", "''")}'`);
    await pg.sql('SELECT pg_reload_conf()');
  };
  const results: Result[] = [];
  for (const id of opts.variants) {
    const v = commands.get(id)!;
    const result: Result = { variant: id, mode: v.mode, samples: [], segments: 0, tps: null, catchUpS: null, failedCalls: 0, note: '' };
    results.push(result);
    if (v.skipped) {
      result.skipped = v.skipped;
      continue;
    }
    // Start from a quiet, fully archived cluster: a checkpoint, then the previous tool's backlog gone.
    await pg.sql('CHECKPOINT');
    await setArchiveCommand(v.command);
    await pg.sql('SELECT pg_switch_wal()');
    for (const deadline = Date.now() + CATCH_UP_TIMEOUT_MS; readyCount(pgdata) > 0; await sleep(200)) {
      if (Date.now() > deadline) throw new Error(`${id}: the backlog before the run was not archived in time`);
    }
    const before = (await pg.sql(SAMPLE_SQL)).split(' ');
    const failedBefore = Number(before[3]);
    const startLsn = before[4]!;
    log(`${id}: pgbench -c ${opts.clients} -j ${opts.clients} -T ${opts.durationS} with archive_command = ${v.command}`);
    const t0 = performance.now();
    const bench = run(join(PG_BIN, 'pgbench'), ['-n', '-c', String(opts.clients), '-j', String(opts.clients), '-T', String(opts.durationS)], { env: clientEnv, timeoutMs: (opts.durationS + 120) * 1000 });
    let done = false;
    void bench.finally(() => { done = true; });
    for (let next = 1; !done; next++) {
      const wait = t0 + next * 1000 - performance.now();
      if (wait > 0) await sleep(wait);
      if (done) break;
      const [insertWal, lastArchived] = (await pg.sql(SAMPLE_SQL, 10_000)).split(' ');
      // Nothing archived yet on this cluster: then what waits is what is .ready.
      const ready = readyCount(pgdata);
      const behind = lastArchived === undefined || !/^[0-9A-F]{24}$/.test(lastArchived) ? ready : segmentNumber(insertWal!) - segmentNumber(lastArchived) - 1;
      result.samples.push({ t: Math.round((performance.now() - t0) / 100) / 10, behind: Math.max(0, behind), ready });
    }
    const benchResult = await bench;
    if (benchResult.code !== 0) result.note = `pgbench failed: ${describeFailure('pgbench', benchResult)}`;
    result.tps = Number(/tps = ([\d.]+)/.exec(benchResult.stdout)?.[1] ?? Number.NaN);
    const end = (await pg.sql(SAMPLE_SQL)).split(' ');
    result.segments = segmentNumber(end[0]!) - segmentNumber(before[0]!);
    const tEnd = performance.now();
    for (;;) {
      if (readyCount(pgdata) === 0) {
        result.catchUpS = Math.round((performance.now() - tEnd) / 100) / 10;
        break;
      }
      if (performance.now() - tEnd > CATCH_UP_TIMEOUT_MS) {
        result.note = `${readyCount(pgdata)} segments still .ready ${CATCH_UP_TIMEOUT_MS / 1000} s after pgbench ended`;
        break;
      }
      await sleep(200);
    }
    result.failedCalls = Number((await pg.sql('SELECT failed_count FROM pg_stat_archiver'))) - failedBefore;
    const walMb = Number(await pg.sql(`SELECT round(pg_wal_lsn_diff('${end[4]}', '${startLsn}') / 1048576)`));
    const lags = result.samples.map((s) => s.behind);
    log(`  ${result.samples.length} samples, ${result.segments} segments (${walMb} MiB of WAL), tps ${result.tps}, behind max ${Math.max(0, ...lags)} median ${lags.length ? median(lags) : '—'}, caught up ${result.catchUpS ?? '—'} s after the end`);
  }
  await pg.stop();

  // ---- report --------------------------------------------------------------------------------
  const rows = results.map((r) => {
    const behind = r.samples.map((s) => s.behind);
    const ready = r.samples.map((s) => s.ready);
    const ok = !r.skipped && r.samples.length > 0;
    return [
      r.variant, r.mode,
      r.skipped ? `skipped: ${r.skipped}` : ok ? String(median(behind)) : '—',
      ok ? String(Math.max(...behind)) : '—',
      ok ? String(median(ready)) : '—',
      ok ? String(Math.max(...ready)) : '—',
      ok ? String(r.segments) : '—',
      ok ? (r.segments / opts.durationS).toFixed(2) : '—',
      r.tps === null || Number.isNaN(r.tps) ? '—' : r.tps.toFixed(0),
      r.catchUpS === null ? '—' : r.catchUpS.toFixed(1),
      ok ? String(r.failedCalls) : '—',
    ];
  });
  const out: string[] = [];
  out.push(`## Archive lag during ${opts.durationS} s of pgbench at full speed (${startedAt.toISOString()})`);
  out.push('');
  out.push(`${cpus().length} CPUs, Linux ${release()}, load average at the start ${loadavg().map((l) => l.toFixed(1)).join(' ')}, Node ${process.version}, PostgreSQL 15, ` +
    `pgbench -c ${opts.clients} -j ${opts.clients} (scale ${opts.scale}); one sample per second. "behind" = the segment being written minus the last archived one, minus 1 ` +
    '(0: every finished segment is archived). ".ready" = files waiting in archive_status.');
  out.push('');
  out.push(markdownTable(
    ['variant', 'mode', 'behind median', 'behind max', '.ready median', '.ready max', 'segments written', 'segments/s', 'tps', 'caught up after end s', 'failed calls'],
    rows,
    ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
  ));
  for (const r of results) if (r.note) notes.push(`${r.variant}: ${r.note}`);
  out.push(...notesSection(notes));
  out.push('');
  out.push('Each tool archives while pgbench runs on the same 2 cores: a tool that costs more CPU per segment also slows pgbench (see tps and segments/s).');
  process.stdout.write(out.join('\n') + '\n');
  const jsonPath = writeResults(ROOT, 'lag', startedAt, { bench: 'wal-lag', startedAt: startedAt.toISOString(), options: opts, host: { cpus: cpus().length, kernel: release(), loadavg: loadavg() }, results, notes });
  log(`JSON written to ${jsonPath}`);
}

await runBench(main, log);

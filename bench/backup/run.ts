/**
 * Base backup and restore: cloudbarman `backup`/`restore` against pgbackrest, barman-cloud and a raw
 * tar of the data directory (the read/write limit), side by side on one PostgreSQL 15 cluster.
 *
 *   bash scripts/with-node.sh node bench/backup/run.ts [--scale N] [--text-mb M] [--runs K]
 *        [--tools cloudbarman,pgbackrest,barman-cloud,raw-tar] [--double] [--drop-caches]
 *        [--sample-ms MS] [--timeout-s S] [--cloudbarman PATH] [--no-install] [--keep]
 *
 * Markdown on stdout, progress on stderr, JSON in bench/results/backup-<timestamp>.json.
 * See bench/backup/README.md for what is measured and the caveats.
 */
import { chmodSync, chownSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, statfsSync, symlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pgOsUser, startCluster } from '../../test/helpers/postgres.ts';
import type { Cluster } from '../../test/helpers/postgres.ts';
import { ensurePeers } from '../lib/apt.ts';
import { describeFailure, onCleanup, run, runCleanups } from '../lib/proc.ts';
import { startS3rver } from '../lib/s3rver.ts';
import type { S3rverHandle } from '../lib/s3rver.ts';
import { fmtRatio, markdownTable, median, shuffled } from '../lib/stats.ts';
import { copyAccounts, du, loadPgbench, loadRandom, measureSizes, RANDOM_TABLE, settle } from './dataset.ts';
import type { DatasetSizes } from './dataset.ts';
import { describeMeasurement, killInFlight, measure } from './measure.ts';
import type { Measurement } from './measure.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SERVER = 'bench';
const BUCKET = 'bench';
const STANZA = 'bench';
const TOOL_NAMES = ['cloudbarman', 'pgbackrest', 'barman-cloud', 'raw-tar'] as const;
/** cloudbarman's backup methods the bench can measure: each is its own row. */
const METHODS = ['local', 'postgres'] as const;
type Method = (typeof METHODS)[number];
/** A measured row's tool: cloudbarman-postgres is cloudbarman with --method postgres. */
type ToolName = (typeof TOOL_NAMES)[number] | 'cloudbarman-postgres';
type Op = 'backup' | 'restore';
type Phase = '1x' | '2x';
const MiB = 1024 * 1024;

interface Options {
  scale: number;
  textMb: number;
  runs: number;
  tools: (typeof TOOL_NAMES)[number][];
  /** cloudbarman's --method for its backup rows: local reads PGDATA, postgres takes BASE_BACKUP over replication. */
  methods: Method[];
  double: boolean;
  dropCaches: boolean;
  sampleMs: number;
  /** Per timed command; 0 = derived from the data size. */
  timeoutS: number;
  cloudbarman: string;
  /** Measure a private copy of the cloudbarman build rather than the live dist/. */
  snapshot: boolean;
  install: boolean;
  keep: boolean;
}

interface Cmd {
  cmd: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  /** Exit codes that count as success (GNU tar exits 1 when a live file changed while read). */
  okCodes?: number[];
}

interface Tool {
  name: ToolName;
  label: string;
  /** Why the tool is not measured (not installed, not built, command missing...). */
  skip?: string;
  /** Untimed, before the backup (directories, bookkeeping). */
  prepare?(round: string): void;
  backupCmd(round: string): Cmd;
  /** Untimed, after a successful backup: what it stored, and anything restore needs. */
  afterBackup(round: string): Promise<{ storedBytes: number | null }>;
  restoreCmd(round: string, dest: string): Promise<Cmd>;
}

interface Sample {
  phase: Phase;
  round: number;
  tool: ToolName;
  op: Op;
  ok: boolean;
  error?: string;
  ms: number;
  cpuS: number | null;
  maxRssKiB: number | null;
  treeRssPeak: number;
  treePssPeak: number;
  treeProcsPeak: number;
  samples: number;
  /** Backup: bytes the tool stored. Restore: bytes in the restored directory. */
  bytes: number | null;
  /** ms of the untimed `sync` right after the command: the dirty data it left for the kernel to write. */
  syncMs: number;
  /** cloudbarman only: a fingerprint of the build it ran (dist/ names, sizes, mtimes). */
  build?: string;
}

function parseArgs(argv: readonly string[]): Options {
  const o: Options = {
    scale: 50,
    textMb: 250,
    runs: 3,
    tools: [...TOOL_NAMES],
    methods: ['local'],
    double: false,
    dropCaches: false,
    sampleMs: 50,
    timeoutS: 0,
    cloudbarman: join(ROOT, 'bin/cloudbarman'),
    snapshot: true,
    install: true,
    keep: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    const int = (min: number, max: number): number => {
      const n = Number(val());
      if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${a} must be an integer in ${min}..${max}`);
      return n;
    };
    if (a === '--scale') o.scale = int(1, 10_000);
    else if (a === '--text-mb') o.textMb = int(0, 1_000_000);
    else if (a === '--runs') o.runs = int(1, 100);
    else if (a === '--tools') {
      const items = val().split(',').map((s) => s.trim()).filter(Boolean);
      for (const t of items) if (!TOOL_NAMES.includes(t as (typeof TOOL_NAMES)[number])) throw new Error(`--tools: unknown '${t}' (one of ${TOOL_NAMES.join(', ')})`);
      o.tools = items as (typeof TOOL_NAMES)[number][];
    } else if (a === '--method') {
      const items = val().split(',').map((s) => s.trim()).filter(Boolean);
      for (const m of items) if (!METHODS.includes(m as Method)) throw new Error(`--method: unknown '${m}' (one of ${METHODS.join(', ')}, or both: local,postgres)`);
      if (items.length === 0) throw new Error('--method needs local, postgres or local,postgres');
      o.methods = [...new Set(items as Method[])];
    } else if (a === '--double') o.double = true;
    else if (a === '--drop-caches') o.dropCaches = true;
    else if (a === '--sample-ms') o.sampleMs = int(0, 10_000);
    else if (a === '--timeout-s') o.timeoutS = int(1, 86_400);
    else if (a === '--cloudbarman') o.cloudbarman = resolve(val());
    else if (a === '--no-install') o.install = false;
    else if (a === '--no-snapshot') o.snapshot = false;
    else if (a === '--keep') o.keep = true;
    else if (a === '--help' || a === '-h') {
      process.stdout.write(
        'usage: node bench/backup/run.ts [--scale N (50)] [--text-mb M (250)] [--runs K (3)]\n' +
          '         [--tools cloudbarman,pgbackrest,barman-cloud,raw-tar] [--method local|postgres|local,postgres]\n' +
          '         [--double] [--drop-caches]\n' +
          '         [--sample-ms MS (50)] [--timeout-s S (per command; default from the data size)]\n' +
          '         [--cloudbarman PATH (./bin/cloudbarman)] [--no-snapshot] [--no-install] [--keep]\n' +
          '  --method       cloudbarman backup --method: local reads PGDATA (default), postgres takes BASE_BACKUP\n' +
          '                 over a replication connection; local,postgres measures both, each its own row\n' +
          '  --double       after the normal rounds, roughly double the data and run the rounds again,\n' +
          '                 to see whether peak memory grows with the data size\n' +
          '  --drop-caches  sync and drop the page cache before every timed command (root, global!)\n' +
          '  --no-snapshot  run the live ./bin/cloudbarman instead of a private copy of its dist/ taken at start\n',
      );
      process.exit(0);
    } else throw new Error(`unknown argument ${a} (try --help)`);
  }
  return o;
}

const T0 = performance.now();
const log = (m: string): void => {
  process.stderr.write(`[bench ${((performance.now() - T0) / 1000).toFixed(1).padStart(6)}s] ${m}\n`);
};


const mb = (b: number | null | undefined): string => (b === null || b === undefined || !Number.isFinite(b) ? '—' : (b / MiB).toFixed(0));
const secs = (ms: number | null | undefined): string => (ms === null || ms === undefined || !Number.isFinite(ms) ? '—' : (ms / 1000).toFixed(2));

/**
 * The harness's signal handler (test/helpers/postgres.ts) stops its clusters, then re-raises the
 * signal when no other listener is left, which kills the process before bench/lib's asynchronous
 * cleanup (s3rver, workspace) has run: bench/lib listens with once(), so it is gone by then. A
 * lasting listener keeps the process alive for that cleanup; a second signal ends it at once.
 */
function keepAliveForCleanup(): void {
  let seen = 0;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (++seen > 1) process.exit(130);
    });
  }
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  keepAliveForCleanup();
  const isRoot = process.getuid?.() === 0;
  const notes: string[] = [];
  const load0 = loadavg();
  log(`options: ${JSON.stringify(opts)}`);
  if (load0[0]! > 0.5) log(`warning: load average is ${load0.map((l) => l.toFixed(2)).join(' ')} before starting; other jobs will add noise`);

  // ---- peers ----------------------------------------------------------------------------------
  const peers = await ensurePeers(
    [
      { bin: '/usr/bin/time', pkg: 'time' },
      ...(opts.tools.includes('pgbackrest') ? [{ bin: 'pgbackrest', pkg: 'pgbackrest' }] : []),
      ...(opts.tools.includes('barman-cloud')
        ? [
            { bin: 'barman-cloud-backup', pkg: 'barman-cli-cloud' },
            { bin: 'barman-cloud-restore', pkg: 'barman-cli-cloud' },
            { bin: 'barman-cloud-backup-list', pkg: 'barman-cli-cloud' },
          ]
        : []),
    ],
    { install: opts.install, log },
  );
  const peer = (bin: string) => peers.find((p) => p.peer.bin === bin);
  if (!peer('/usr/bin/time')?.path) throw new Error(`GNU time is required: ${peer('/usr/bin/time')?.reason ?? 'apt-get install time'}`);
  const versionOf = async (cmd: string, args: string[]): Promise<string | null> => {
    const r = await run(cmd, args, { timeoutMs: 30_000 });
    return r.code === 0 ? (r.stdout || r.stderr).trim().split('\n')[0]! : null;
  };

  // ---- workspace, owned by PostgreSQL's OS user (every tool runs as that user, like in production)
  const pgUser = pgOsUser();
  const asPg = isRoot ? { uid: pgUser.uid, gid: pgUser.gid } : {};
  const work = mkdtempSync('/tmp/cloudbarman-bench-backup-');
  onCleanup(`workspace ${work}`, () => {
    if (opts.keep) log(`--keep: workspace left at ${work}`);
    else rmSync(work, { recursive: true, force: true });
  });
  const mkdir = (p: string, mode = 0o755): string => {
    mkdirSync(p, { recursive: true, mode });
    if (isRoot) chownSync(p, pgUser.uid, pgUser.gid);
    chmodSync(p, mode);
    return p;
  };
  mkdir(work);
  const walArchive = mkdir(join(work, 'wal-archive'));
  mkdir(join(work, 'cloudbarman'));
  const timeFile = join(mkdir(join(work, 'time')), 'time.out');
  const restoreRoot = mkdir(join(work, 'restore'));
  // ---- cloudbarman: a private copy of the build (others may rebuild dist/ meanwhile) -----------
  let cbBin = opts.cloudbarman;
  let cbSkip: string | undefined;
  let cbVersion: string | null = null;
  if (opts.tools.includes('cloudbarman')) {
    if (opts.snapshot) {
      try {
        cbBin = snapshotBuild(opts.cloudbarman, join(work, 'cloudbarman-build'));
        log(`cloudbarman: measuring a copy of ${dirname(dirname(realpathSync(opts.cloudbarman)))}/dist (build ${buildFingerprint(opts.cloudbarman)})`);
      } catch (err) {
        cbSkip = `not available: cannot copy its build: ${(err as Error).message} (build with: bash scripts/with-node.sh node scripts/build.mjs)`;
      }
    }
    if (!cbSkip) {
      const help = await run(cbBin, ['--help'], { timeoutMs: 30_000 });
      if (help.code !== 0) cbSkip = `not available: ${describeFailure(`${opts.cloudbarman} --help`, help)} (build with: bash scripts/with-node.sh node scripts/build.mjs)`;
      else {
        const missing = ['backup', 'restore'].filter((c) => !new RegExp(`^\\s+${c}\\b`, 'm').test(help.stdout));
        if (missing.length) cbSkip = `not available: \`${missing.join('` and `')}\` not registered in \`${opts.cloudbarman} --help\` yet`;
        cbVersion = await versionOf(cbBin, ['--version']);
      }
    }
    if (cbSkip) log(`cloudbarman: ${cbSkip}`);
  }

  const pgHome = existsSync('/var/lib/postgresql') && pgUser.name === 'postgres' ? '/var/lib/postgresql' : work;
  const toolEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: isRoot ? pgHome : (process.env.HOME ?? work),
    USER: isRoot ? pgUser.name : (process.env.USER ?? ''),
    LOGNAME: isRoot ? pgUser.name : (process.env.LOGNAME ?? ''),
    LANG: 'C.UTF-8',
    TZ: 'UTC',
    ...extra,
  });

  const disk = statfsSync(work);
  const freeGiB = (disk.bavail * disk.bsize) / 1024 ** 3;
  const estGiB = ((opts.scale * 16 + opts.textMb * 1.1) / 1024) * (opts.double ? 2 : 1) * (5 + 2 * opts.runs);
  log(`disk: ${freeGiB.toFixed(1)} GiB free under /tmp; this run needs roughly ${estGiB.toFixed(1)} GiB`);
  if (freeGiB < estGiB) throw new Error(`not enough disk space under /tmp: ${freeGiB.toFixed(1)} GiB free, ~${estGiB.toFixed(1)} GiB needed`);

  // ---- pgbackrest config: WAL goes to its repo too, so `backup` can do its default archive check
  const pgbackrest = opts.tools.includes('pgbackrest') ? peer('pgbackrest')?.path ?? null : null;
  const pgbrDir = mkdir(join(work, 'pgbackrest'));
  const pgbrRepo = join(pgbrDir, 'repo');
  const pgbrConf = join(pgbrDir, 'pgbackrest.conf');
  const pgbrArgs = [`--config=${pgbrConf}`, `--stanza=${STANZA}`];
  // cloudbarman's backup, like pgbackrest's, is DONE only once its WAL reached its own store, so
  // both push every segment, in parallel so that neither waits for the other's push.
  const cbRepo = join(work, 'cloudbarman');
  const pushes: string[] = [];
  if (pgbackrest) pushes.push(`${pgbackrest} ${pgbrArgs.join(' ')} archive-push %p`);
  if (opts.tools.includes('cloudbarman') && !cbSkip) pushes.push(`${cbBin} wal-upload ${SERVER} %p --destination file://${cbRepo}`);
  const archiveCommand =
    `cp %p ${walArchive}/%f` +
    (pushes.length === 1
      ? ` && ${pushes[0]}`
      : pushes.length === 2
        ? ` && { ${pushes[0]} & a=$!; ${pushes[1]} & b=$!; wait $a; ra=$?; wait $b; rb=$?; [ $ra -eq 0 ] && [ $rb -eq 0 ]; }`
        : '');

  // ---- s3rver for barman-cloud ----------------------------------------------------------------
  let s3: S3rverHandle | null = null;
  const barmanOk = opts.tools.includes('barman-cloud') && ['barman-cloud-backup', 'barman-cloud-restore', 'barman-cloud-backup-list'].every((b) => peer(b)?.path);
  if (barmanOk) {
    s3 = await startS3rver({ root: ROOT, dir: join(work, 's3rver'), buckets: [BUCKET] });
    log(`s3rver on ${s3.endpoint}`);
  }

  // ---- the cluster ------------------------------------------------------------------------------
  log('starting PostgreSQL 15 (test harness, as the postgres OS user)');
  const cluster: Cluster = await startCluster({
    version: 15,
    fsync: false,
    conf: {
      archive_mode: 'on',
      archive_command: `'${archiveCommand}'`,
      autovacuum: 'off',
      max_wal_size: "'4GB'",
      checkpoint_timeout: "'30min'",
      shared_buffers: "'256MB'",
    },
  });
  // On SIGINT the harness's own handler stops and removes it synchronously, maybe under our feet.
  onCleanup(
    `postgres ${cluster.dataDir}`,
    () =>
      cluster.destroy().catch((err: unknown) => {
        if (existsSync(cluster.dataDir)) throw err;
      }),
    () => {
      /* the harness's own exit hook stops it synchronously */
    },
  );
  // Registered last, so it runs first: no measured tool outlives the bench.
  onCleanup('measured commands', killInFlight, killInFlight);
  const [sock] = await cluster.query<{ d: string }>("SELECT current_setting('unix_socket_directories') AS d");
  log(`PostgreSQL 15 on 127.0.0.1:${cluster.port}, PGDATA ${cluster.dataDir}`);

  let pgbrSkip: string | undefined = !opts.tools.includes('pgbackrest') ? undefined : pgbackrest ? undefined : peer('pgbackrest')?.reason;
  if (pgbackrest) {
    writeFileSync(
      pgbrConf,
      [
        '[global]',
        'repo1-type=posix',
        `repo1-path=${pgbrRepo}`,
        'repo1-retention-full=9999',
        'compress-type=zst',
        'compress-level=1',
        'process-max=2',
        'start-fast=y',
        `lock-path=${mkdir(join(pgbrDir, 'lock'), 0o700)}`,
        `log-path=${mkdir(join(pgbrDir, 'log'), 0o700)}`,
        'log-level-console=warn',
        'log-level-stderr=warn',
        'log-level-file=off',
        '',
        `[${STANZA}]`,
        `pg1-path=${cluster.dataDir}`,
        `pg1-port=${cluster.port}`,
        `pg1-socket-path=${sock?.d ?? ''}`,
        'pg1-user=postgres',
        '',
      ].join('\n'),
    );
    if (isRoot) chownSync(pgbrConf, pgUser.uid, pgUser.gid);
    mkdir(pgbrRepo, 0o750);
    const r = await run(pgbackrest, [...pgbrArgs, 'stanza-create'], { ...asPg, env: toolEnv(), cwd: '/', timeoutMs: 120_000 });
    if (r.code !== 0) pgbrSkip = `stanza-create failed: ${describeFailure('pgbackrest', r)}`;
    else log('pgbackrest: stanza created');
  }

  // ---- dataset ----------------------------------------------------------------------------------
  await loadPgbench(cluster, opts.scale, log);
  await loadRandom(cluster, opts.textMb, log);
  const settleMs = 300_000 + (opts.scale * 16 + opts.textMb) * 1000;
  await settle(cluster, settleMs);
  const sizes: Partial<Record<Phase, DatasetSizes>> = { '1x': await measureSizes(cluster) };
  log(`dataset: ${datasetLine(sizes['1x']!)}`);
  const timeoutMs = () => (opts.timeoutS > 0 ? opts.timeoutS * 1000 : 180_000 + Math.ceil(sizes[sizes['2x'] ? '2x' : '1x']!.pgdataBytes / 1024 ** 3) * 180_000);

  // ---- tools ------------------------------------------------------------------------------------
  const rawTar = join(work, 'pgdata.tar');
  const makeRawTar = async (): Promise<void> => {
    const r = await run('tar', ['cf', rawTar, '--exclude=./pg_wal', '-C', cluster.dataDir, '.'], { ...asPg, env: toolEnv(), cwd: '/', timeoutMs: timeoutMs() });
    if (r.code !== 0 && r.code !== 1) throw new Error(describeFailure('tar (restore source)', r));
  };
  const pgbrVersion = pgbackrest ? await versionOf(pgbackrest, ['version']) : null;
  const barmanVersion = barmanOk ? await versionOf('barman-cloud-backup', ['--version']) : null;
  const tarVersion = await versionOf('tar', ['--version']);
  const conninfo = `host=127.0.0.1 port=${cluster.port} user=postgres dbname=postgres`;
  const s3Env = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_DEFAULT_REGION: 'us-east-1', AWS_REGION: 'us-east-1' };
  const barmanIds = new Map<string, string>();
  const pgbrLabels = (): string[] => {
    try {
      return readdirSync(join(pgbrRepo, 'backup', STANZA)).filter((n) => /^\d{8}-\d{6}F$/.test(n));
    } catch {
      return [];
    }
  };

  const tools: Tool[] = [];
  if (opts.tools.includes('cloudbarman')) {
    // One destination for every round, like pgbackrest's repository: the WAL is there too. With both
    // methods, both back up into it: each row restores the id its own backup made, not `latest`.
    const url = `file://${cbRepo}`;
    const baseDir = join(cbRepo, SERVER, 'base');
    const ids = (): string[] => {
      try {
        return readdirSync(baseDir);
      } catch {
        return [];
      }
    };
    for (const method of opts.methods) {
      let before: string[] = [];
      const made = new Map<string, string>();
      // --method local reads PGDATA on this host; --method postgres needs only the replication connection.
      const methodArgs = method === 'local'
        ? ['--pgdata', cluster.dataDir]
        : ['--method', 'postgres', '--streaming-conninfo', `host=127.0.0.1 port=${cluster.port} user=postgres`];
      const t: Tool = {
        name: method === 'local' ? 'cloudbarman' : 'cloudbarman-postgres',
        label: `cloudbarman${cbVersion ? ` ${cbVersion}` : ''} (--method ${method}, file://, zstd, --jobs 2)`,
        prepare: () => {
          before = ids();
        },
        backupCmd: () => ({
          cmd: cbBin,
          args: ['backup', SERVER, '--destination', url, ...methodArgs, '--conninfo', conninfo, '--compression', 'zstd', '--jobs', '2'],
          env: toolEnv(),
        }),
        afterBackup: async (round) => {
          const added = ids().filter((i) => !before.includes(i));
          if (added.length === 1) made.set(round, added[0]!);
          return { storedBytes: added.length === 1 ? du(join(baseDir, added[0]!)).bytes : null };
        },
        restoreCmd: async (round, target) => {
          const id = made.get(round);
          if (!id) throw new Error(`cloudbarman --method ${method}: no backup id recorded for ${round}`);
          return { cmd: cbBin, args: ['restore', SERVER, id, target, '--destination', url, '--jobs', '2'], env: toolEnv() };
        },
      };
      if (cbSkip) t.skip = cbSkip;
      tools.push(t);
    }
  }
  if (opts.tools.includes('pgbackrest')) {
    let before: string[] = [];
    const t: Tool = {
      name: 'pgbackrest',
      label: `pgbackrest${pgbrVersion ? ` ${pgbrVersion.replace(/^pgBackRest /, '')}` : ''} (posix repo, zst-1, process-max 2)`,
      prepare: () => {
        before = pgbrLabels();
      },
      backupCmd: () => ({ cmd: pgbackrest ?? 'pgbackrest', args: [...pgbrArgs, '--type=full', 'backup'], env: toolEnv() }),
      afterBackup: async () => {
        const added = pgbrLabels().filter((l) => !before.includes(l));
        return { storedBytes: added.length === 1 ? du(join(pgbrRepo, 'backup', STANZA, added[0]!)).bytes : null };
      },
      // The latest backup (this round's) into an empty directory: --pg1-path overrides the stanza's.
      restoreCmd: async (_round, target) => ({ cmd: pgbackrest ?? 'pgbackrest', args: [...pgbrArgs, `--pg1-path=${target}`, 'restore'], env: toolEnv() }),
    };
    if (pgbrSkip) t.skip = pgbrSkip;
    tools.push(t);
  }
  if (opts.tools.includes('barman-cloud')) {
    const url = (round: string) => `s3://${BUCKET}/barman-${round}`;
    const common = () => ['--cloud-provider', 'aws-s3', '--endpoint-url', s3?.endpoint ?? ''];
    const t: Tool = {
      name: 'barman-cloud',
      label: `barman-cloud${barmanVersion ? ` ${barmanVersion.replace(/^barman-cloud-backup /, '')}` : ''} (s3rver, uncompressed)`,
      backupCmd: (round) => ({
        cmd: 'barman-cloud-backup',
        args: [...common(), '-h', '127.0.0.1', '-p', String(cluster.port), '-U', 'postgres', '--immediate-checkpoint', url(round), SERVER],
        env: toolEnv(s3Env),
      }),
      afterBackup: async (round) => {
        const r = await run('barman-cloud-backup-list', [...common(), '--format', 'json', url(round), SERVER], { ...asPg, env: toolEnv(s3Env), cwd: '/', timeoutMs: 60_000 });
        if (r.code !== 0) throw new Error(describeFailure('barman-cloud-backup-list', r));
        const list = (JSON.parse(r.stdout) as { backups_list: { backup_id: string; status: string }[] }).backups_list.filter((b) => b.status === 'DONE');
        if (list.length !== 1) throw new Error(`barman-cloud-backup-list: expected one DONE backup under ${url(round)}, found ${list.length}`);
        barmanIds.set(round, list[0]!.backup_id);
        return { storedBytes: s3 ? du(join(s3.dataDir, BUCKET, `barman-${round}`)).bytes : null };
      },
      restoreCmd: async (round, target) => {
        const id = barmanIds.get(round);
        if (!id) throw new Error(`barman-cloud: no backup id recorded for ${round}`);
        return { cmd: 'barman-cloud-restore', args: [...common(), url(round), SERVER, id, target], env: toolEnv(s3Env) };
      },
    };
    if (!barmanOk) t.skip = peers.find((p) => p.peer.pkg === 'barman-cli-cloud' && !p.path)?.reason ?? 'barman-cloud not installed';
    tools.push(t);
  }
  if (opts.tools.includes('raw-tar')) {
    tools.push({
      name: 'raw-tar',
      label: `raw tar${tarVersion ? ` (${tarVersion.replace(/^tar \(GNU tar\) /, 'GNU tar ')})` : ''}`,
      // Through `cat`: GNU tar notices when its archive *is* /dev/null and then skips reading file data.
      backupCmd: () => ({
        cmd: '/bin/bash',
        args: ['-c', 'set -o pipefail; tar cf - --exclude=./pg_wal -C "$1" . | cat > /dev/null', 'raw-tar', cluster.dataDir],
        env: toolEnv(),
        okCodes: [0, 1],
      }),
      afterBackup: async () => ({ storedBytes: null }),
      restoreCmd: async (_round, target) => ({ cmd: 'tar', args: ['xf', rawTar, '-C', target], env: toolEnv() }),
    });
  }
  for (const t of tools) if (t.skip) notes.push(`${t.name}: ${t.skip}`);
  const active = tools.filter((t) => !t.skip);

  // ---- measuring ------------------------------------------------------------------------------
  const samples: Sample[] = [];
  const timed = async (phase: Phase, round: number, tool: Tool, op: Op, c: Cmd): Promise<Sample> => {
    if (opts.dropCaches && isRoot) {
      await run('sync', [], { timeoutMs: 600_000 });
      try {
        writeFileSync('/proc/sys/vm/drop_caches', '3');
      } catch (err) {
        log(`warning: cannot drop caches: ${(err as Error).message}`);
      }
    }
    const build = tool.name.startsWith('cloudbarman') ? buildFingerprint(cbBin) : undefined;
    const m: Measurement = await measure(c.cmd, c.args, { ...asPg, env: c.env, timeoutMs: timeoutMs(), timeFile, sampleMs: opts.sampleMs });
    // Settle: write back what this command left dirty, so it does not slow the next one down.
    const s = await run('sync', [], { timeoutMs: 600_000 });
    const ok = m.ok || (m.code !== null && (c.okCodes ?? [0]).includes(m.code) && !m.timedOut);
    const sample: Sample = {
      phase,
      round,
      tool: tool.name,
      op,
      ok,
      ms: m.ms,
      cpuS: m.cpuS,
      maxRssKiB: m.maxRssKiB,
      treeRssPeak: m.treeRssPeak,
      treePssPeak: m.treePssPeak,
      treeProcsPeak: m.treeProcsPeak,
      samples: m.samples,
      bytes: null,
      syncMs: s.ms,
    };
    if (build !== undefined) sample.build = build;
    if (!ok) sample.error = describeMeasurement(`${tool.name} ${op}`, m);
    samples.push(sample);
    log(`${phase} round ${round + 1}: ${tool.name.padEnd(12)} ${op.padEnd(7)} ${ok ? `${secs(m.ms)} s, maxrss ${mb((m.maxRssKiB ?? NaN) * 1024)} MB, tree RSS ${mb(m.treeRssPeak)} MB, CPU ${m.cpuS?.toFixed(1)} s, sync ${secs(s.ms)} s` : `FAILED ${sample.error}`}`);
    return sample;
  };

  const runPhase = async (phase: Phase): Promise<void> => {
    const ref = sizes[phase]!;
    for (let r = 0; r < opts.runs; r++) {
      const round = `${phase}-r${r + 1}`;
      const backedUp = new Set<ToolName>();
      for (const tool of shuffled(active, 7 * r + (phase === '2x' ? 1000 : 1))) {
        tool.prepare?.(round);
        const s = await timed(phase, r, tool, 'backup', tool.backupCmd(round));
        if (!s.ok) continue;
        try {
          s.bytes = (await tool.afterBackup(round)).storedBytes;
          // Random bytes do not compress: a backup that stored less than them lost data.
          const incompressible = ref.tables[RANDOM_TABLE] ?? 0;
          if (s.bytes !== null && s.bytes < 0.9 * incompressible) {
            s.ok = false;
            s.error = `exit 0, but it stored ${mb(s.bytes)} MB: less than the incompressible ${RANDOM_TABLE} alone (${mb(incompressible)} MB)`;
            log(`${tool.name}: ${s.error}`);
            continue;
          }
          backedUp.add(tool.name);
        } catch (err) {
          s.ok = false;
          s.error = `after backup: ${(err as Error).message}`;
          log(`${tool.name}: ${s.error}`);
        }
      }
      for (const tool of shuffled(active, 7 * r + (phase === '2x' ? 2000 : 2))) {
        if (!backedUp.has(tool.name)) {
          log(`${phase} round ${r + 1}: ${tool.name} restore skipped (its backup failed)`);
          continue;
        }
        const dest = mkdir(join(restoreRoot, `${tool.name}-${round}`), 0o700);
        const s = await timed(phase, r, tool, 'restore', await tool.restoreCmd(round, dest));
        if (s.ok) {
          // A restore that wrote much less than the data directory holds did not really restore it.
          const got = du(dest).bytes;
          s.bytes = got;
          const hasControl = existsSync(join(dest, 'global', 'pg_control')) && existsSync(join(dest, 'PG_VERSION'));
          if (!hasControl || got < 0.9 * ref.pgdataNoWalBytes) {
            s.ok = false;
            s.error = `restored directory looks incomplete: ${mb(got)} MB of ${mb(ref.pgdataNoWalBytes)} MB, pg_control ${hasControl ? 'present' : 'missing'}`;
            log(`${tool.name}: ${s.error}`);
          }
        }
        rmSync(dest, { recursive: true, force: true });
      }
    }
  };

  const prepare = async (phase: Phase): Promise<void> => {
    if (active.some((t) => t.name === 'raw-tar')) {
      await makeRawTar();
      log(`raw tar restore source: ${mb(statSync(rawTar).size)} MB`);
    }
    // Warm the page cache the same way for everyone: read the data directory once.
    const w = await run('/bin/bash', ['-c', 'tar cf - -C "$1" . | cat > /dev/null', 'warm', cluster.dataDir], { timeoutMs: timeoutMs() });
    if (w.code !== 0 && w.code !== 1) log(`warning: cache warm-up read failed: ${describeFailure('tar', w)}`);
    await run('sync', [], { timeoutMs: 600_000 });
    log(`${phase}: measuring ${active.map((t) => t.name).join(', ')} × ${opts.runs} runs`);
  };

  if (active.length === 0) throw new Error(`nothing to measure: ${notes.join('; ')}`);
  await prepare('1x');
  await runPhase('1x');

  if (opts.double) {
    log('--double: growing the dataset to about twice its size');
    await copyAccounts(cluster, log);
    await loadRandom(cluster, opts.textMb, log);
    await settle(cluster, settleMs * 2);
    sizes['2x'] = await measureSizes(cluster);
    log(`dataset 2x: ${datasetLine(sizes['2x'])} (${(sizes['2x'].pgdataNoWalBytes / sizes['1x']!.pgdataNoWalBytes).toFixed(2)}× the 1x data)`);
    await prepare('2x');
    await runPhase('2x');
  }

  // ---- report -----------------------------------------------------------------------------------
  const phases: Phase[] = opts.double ? ['1x', '2x'] : ['1x'];
  const summary = phases.flatMap((phase) =>
    tools.flatMap((t) =>
      (['backup', 'restore'] as const).map((op) => {
        const mine = samples.filter((s) => s.phase === phase && s.tool === t.name && s.op === op);
        const ok = mine.filter((s) => s.ok);
        const nums = (f: (s: Sample) => number | null) => ok.map(f).filter((v): v is number => v !== null && Number.isFinite(v));
        return {
          phase,
          tool: t.name,
          label: t.label,
          op,
          skipped: t.skip ?? null,
          runs: mine.length,
          ok: ok.length,
          medianMs: ok.length ? median(ok.map((s) => s.ms)) : null,
          maxMs: ok.length ? Math.max(...ok.map((s) => s.ms)) : null,
          medianCpuS: nums((s) => s.cpuS).length ? median(nums((s) => s.cpuS)) : null,
          peakMaxRssBytes: nums((s) => s.maxRssKiB).length ? Math.max(...nums((s) => s.maxRssKiB)) * 1024 : null,
          peakTreeRssBytes: ok.length ? Math.max(...ok.map((s) => s.treeRssPeak)) : null,
          peakTreePssBytes: ok.length ? Math.max(...ok.map((s) => s.treePssPeak)) : null,
          medianBytes: nums((s) => s.bytes).length ? median(nums((s) => s.bytes)) : null,
          medianSyncMs: ok.length ? median(ok.map((s) => s.syncMs)) : null,
          errors: mine.filter((s) => !s.ok).map((s) => s.error ?? 'failed'),
        };
      }),
    ),
  );
  type Row = (typeof summary)[number];
  const find = (phase: Phase, tool: ToolName, op: Op): Row | undefined => summary.find((r) => r.phase === phase && r.tool === tool && r.op === op);
  const ratio = (r: Row, peerName: ToolName): number | null => {
    const p = find(r.phase, peerName, r.op);
    return r.medianMs !== null && p?.medianMs ? r.medianMs / p.medianMs : null;
  };

  const out: string[] = [];
  out.push(`## cloudbarman bench: base backup and restore`);
  out.push('');
  out.push(`${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), ${(totalmem() / 1024 ** 3).toFixed(0)} GiB RAM, Linux ${release()}, Node ${process.version}; load average before/after: ${load0[0]!.toFixed(2)} / ${loadavg()[0]!.toFixed(2)}.`);
  out.push(`Dataset (PostgreSQL 15, pgbench -i -s ${opts.scale} + ${opts.textMb} MiB random bytea): ${datasetLine(sizes['1x']!)}.`);
  if (sizes['2x']) out.push(`Dataset 2x (--double): ${datasetLine(sizes['2x'])}.`);
  out.push(`Every tool runs as the \`${pgUser.name}\` OS user; page cache ${opts.dropCaches ? 'dropped before every command (--drop-caches)' : 'warm (the same for all tools)'}; median of ${opts.runs} runs per row, tools in a shuffled order each round.`);
  for (const phase of phases) {
    out.push('');
    out.push(`### ${phase === '1x' ? 'Results' : 'Results with twice the data (--double)'}`);
    out.push('');
    const rows: string[][] = [];
    for (const op of ['backup', 'restore'] as const) {
      for (const t of tools) {
        const r = find(phase, t.name, op)!;
        if (r.skipped) {
          rows.push([t.label, op, `not available`, '—', '—', '—', '—', '—', '—', '—', '—', '—', '—', '0/0']);
          continue;
        }
        rows.push([
          t.label,
          op,
          secs(r.medianMs),
          secs(r.maxMs),
          t.name === 'pgbackrest' ? '1' : fmtRatio(ratio(r, 'pgbackrest')),
          t.name === 'barman-cloud' ? '1' : fmtRatio(ratio(r, 'barman-cloud')),
          t.name === 'raw-tar' ? '1' : fmtRatio(ratio(r, 'raw-tar')),
          r.medianCpuS === null ? '—' : r.medianCpuS.toFixed(1),
          mb(r.peakMaxRssBytes),
          mb(r.peakTreeRssBytes),
          mb(r.peakTreePssBytes),
          mb(r.medianBytes),
          secs(r.medianSyncMs),
          `${r.ok}/${r.runs}`,
        ]);
      }
    }
    out.push(
      markdownTable(
        ['tool', 'operation', 'median s', 'p-max s', '× pgbackrest', '× barman-cloud', '× raw tar', 'CPU s', 'peak RSS MB (largest proc)', 'peak tree RSS MB', 'peak tree PSS MB', 'stored / restored MB', 'then sync s', 'ok/runs'],
        rows,
        ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
      ),
    );
  }
  if (opts.double) {
    out.push('');
    out.push('### Peak memory against data size (--double)');
    out.push('');
    // Growth of a few MB is noise in a process that small; say so rather than print a big percentage.
    const g = (a: number | null, b: number | null): string => (a && b ? (Math.max(a, b) < 10 * MiB ? 'n/a (< 10 MB)' : `${((b / a - 1) * 100).toFixed(0)} %`) : '—');
    const rows: string[][] = [];
    for (const op of ['backup', 'restore'] as const) {
      for (const t of tools) {
        const a = find('1x', t.name, op)!;
        const b = find('2x', t.name, op)!;
        if (a.skipped) continue;
        rows.push([t.name, op, mb(a.peakMaxRssBytes), mb(b.peakMaxRssBytes), g(a.peakMaxRssBytes, b.peakMaxRssBytes), mb(a.peakTreePssBytes), mb(b.peakTreePssBytes), g(a.peakTreePssBytes, b.peakTreePssBytes)]);
      }
    }
    const factor = sizes['2x']!.pgdataNoWalBytes / sizes['1x']!.pgdataNoWalBytes;
    out.push(`Data grew ${factor.toFixed(2)}× (PGDATA without pg_wal). Bounded memory means growth near 0 %.`);
    out.push('');
    out.push(markdownTable(['tool', 'operation', 'RSS MB 1x', 'RSS MB 2x', 'growth', 'tree PSS MB 1x', 'tree PSS MB 2x', 'growth'], rows, ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r']));
  }
  const builds = [...new Set(samples.map((s) => s.build).filter((b): b is string => b !== undefined))];
  if (builds.length > 1) {
    notes.push(`cloudbarman's build (dist/) changed ${builds.length - 1} time(s) during this run: its rows mix builds; the JSON has the fingerprint of every sample. Rerun on a quiet checkout.`);
  }
  const failures = summary.flatMap((r) => r.errors.map((e) => `${r.phase} ${r.tool} ${r.op}: ${e}`));
  out.push('');
  out.push('Notes:');
  out.push('- Ratios are row median ÷ the peer\'s median for the same operation in this run; below 1 is faster. "raw tar" backup is `tar cf - PGDATA(without pg_wal) | cat > /dev/null` (the read limit); its restore is `tar xf` of that tar into an empty directory (the write limit).');
  out.push('- "peak RSS (largest proc)" is GNU time\'s %M: the largest single process of the tree. "tree RSS/PSS" sum every live process of the tree, sampled every ' + `${opts.sampleMs} ms; PSS splits shared pages between processes. s3rver's memory is not part of barman-cloud's tree.`);
  out.push('- "then sync s" is an untimed `sync` right after each command: how long the kernel needed to write back what the command left dirty (tools that fsync leave little). Restore times exclude it.');
  for (const n of notes) out.push(`- ${n}`);
  for (const f of failures) out.push(`- FAILED: ${f}`);
  process.stdout.write(out.join('\n') + '\n');

  const resultsDir = join(ROOT, 'bench/results');
  mkdirSync(resultsDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const jsonPath = join(resultsDir, `backup-${stamp}.json`);
  writeFileSync(
    jsonPath,
    JSON.stringify(
      {
        bench: 'backup',
        startedAt: new Date(Date.now() - (performance.now() - T0)).toISOString(),
        durationS: (performance.now() - T0) / 1000,
        options: opts,
        environment: {
          cpus: cpus().length,
          cpuModel: cpus()[0]?.model,
          memGiB: totalmem() / 1024 ** 3,
          kernel: release(),
          node: process.version,
          loadavgBefore: load0,
          loadavgAfter: loadavg(),
          runAs: pgUser.name,
          versions: { cloudbarman: cbVersion, pgbackrest: pgbrVersion, barmanCloud: barmanVersion, tar: tarVersion },
        },
        dataset: sizes,
        tools: tools.map((t) => ({
          name: t.name,
          label: t.label,
          skipped: t.skip ?? null,
          backup: t.skip ? null : cmdLine(t.backupCmd('<round>')),
        })),
        archiveCommand,
        summary,
        samples,
        notes,
      },
      null,
      2,
    ) + '\n',
  );
  log(`JSON: ${jsonPath}`);
  log(`total ${((performance.now() - T0) / 1000).toFixed(0)} s`);
}

/** Copies a cloudbarman launcher and its dist/ into dir (node_modules and .tools linked), so that a
 *  rebuild of the checkout during the run does not change what is measured. Returns the new launcher. */
function snapshotBuild(launcher: string, dir: string): string {
  const real = realpathSync(launcher);
  const root = dirname(dirname(real));
  if (!existsSync(join(root, 'dist', 'cloudbarman.mjs'))) throw new Error(`${join(root, 'dist', 'cloudbarman.mjs')} does not exist`);
  mkdirSync(join(dir, 'bin'), { recursive: true, mode: 0o755 });
  cpSync(join(root, 'dist'), join(dir, 'dist'), { recursive: true, preserveTimestamps: true });
  copyFileSync(real, join(dir, 'bin', 'cloudbarman'));
  chmodSync(join(dir, 'bin', 'cloudbarman'), 0o755);
  for (const link of ['node_modules', '.tools']) if (existsSync(join(root, link))) symlinkSync(join(root, link), join(dir, link));
  // The copy must be complete: a rebuild in progress leaves dist/ without chunks that others import.
  const files = [join(dir, 'dist', 'cloudbarman.mjs'), ...readdirSync(join(dir, 'dist', 'chunks')).filter((f) => f.endsWith('.mjs')).map((f) => join(dir, 'dist', 'chunks', f))];
  for (const f of files) {
    for (const m of readFileSync(f, 'utf8').matchAll(/(?:from\s*|import\()"(\.\.?\/[^"]+\.mjs)"/g)) {
      const target = resolve(dirname(f), m[1]!);
      if (!existsSync(target)) throw new Error(`dist/ is incomplete (a build in progress?): ${target} is missing`);
    }
  }
  return join(dir, 'bin', 'cloudbarman');
}

/** Names, sizes and mtimes of the bundle next to a cloudbarman launcher (<root>/bin -> <root>/dist). */
function buildFingerprint(launcher: string): string {
  const dist = join(dirname(dirname(realpathSync(launcher))), 'dist');
  const prefix = dist.length + 1;
  const h = createHash('sha256');
  const walk = (d: string): void => {
    let entries: string[];
    try {
      entries = readdirSync(d).sort();
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e);
      const st = statSync(p, { throwIfNoEntry: false });
      if (!st) continue;
      if (st.isDirectory()) walk(p);
      else h.update(`${p.slice(prefix)}\0${st.size}\0${Math.floor(st.mtimeMs)}\n`);
    }
  };
  walk(dist);
  return h.digest('hex').slice(0, 12);
}

function cmdLine(c: Cmd): string {
  return [c.cmd, ...c.args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(' ');
}

function datasetLine(s: DatasetSizes): string {
  const tables = Object.entries(s.tables)
    .filter(([, b]) => b > 10 * MiB)
    .map(([n, b]) => `${n} ${mb(b)} MB`)
    .join(', ');
  return `pg_database_size ${mb(s.databaseBytes)} MB; PGDATA ${mb(s.pgdataBytes)} MB (du, apparent), of which pg_wal ${mb(s.pgWalBytes)} MB; without pg_wal ${mb(s.pgdataNoWalBytes)} MB in ${s.pgdataFiles} files (${tables})`;
}

main()
  .catch((err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(async () => {
    await runCleanups();
  });

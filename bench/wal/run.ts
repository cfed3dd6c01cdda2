/**
 * WAL archive latency: cloudbarman `wal-upload` against barman-cloud-wal-archive and
 * pgbackrest archive-push (synchronous), per 16 MiB segment, side by side in one run.
 *
 *   bash scripts/with-node.sh node bench/wal/run.ts [--segments N] [--targets local,s3,s3-tls]
 *        [--tools cloudbarman,barman-cloud,pgbackrest] [--budget-s S] [--no-install] [--keep]
 *
 * Markdown on stdout, progress on stderr, JSON in bench/results/wal-<timestamp>.json.
 * See bench/README.md for what is measured and the caveats.
 */
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensurePeers } from '../lib/apt.ts';
import type { PeerStatus } from '../lib/apt.ts';
import { osUser, startCluster } from '../lib/postgres.ts';
import type { Cluster } from '../lib/postgres.ts';
import { describeFailure, onCleanup, run, runOk, sleep } from '../lib/proc.ts';
import { selfSignedCert, startS3rver } from '../lib/s3rver.ts';
import type { S3rverHandle } from '../lib/s3rver.ts';
import { runBench } from '../lib/report.ts';
import { fmtMs, fmtRatio, markdownTable, median, percentile, shuffled } from '../lib/stats.ts';
import { generateSegments, SEGMENT_BYTES, WAL_NAME } from './segments.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const PG_BIN = '/usr/lib/postgresql/15/bin';
const BUCKET = 'bench';
const SERVER = 'bench';
const S3_CREDS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1', AWS_DEFAULT_REGION: 'us-east-1' };
/** Per archive command: far above any sane latency, low enough to bound a hung tool. */
const RUN_TIMEOUT_MS = 60_000;

type Tool = 'cloudbarman' | 'barman-cloud' | 'pgbackrest' | 'node';
type Target = 'local' | 's3' | 's3-tls';
const TOOLS: readonly Tool[] = ['cloudbarman', 'barman-cloud', 'pgbackrest'];
const TARGETS: readonly Target[] = ['local', 's3', 's3-tls'];
const CLASS_ORDER = ['none', 'gzip', 'zstd', 'lz4'];

interface Options {
  segments: number;
  targets: Target[];
  tools: Tool[];
  budgetS: number;
  install: boolean;
  keep: boolean;
  /** Another cloudbarman executable to measure instead of ./bin/cloudbarman. */
  cloudbarman: string | null;
}

interface Variant {
  tool: Tool;
  /** 'start' for the process-start context rows. */
  target: Target | 'start';
  /** The tool's own name for the setting (gz, zst, gzip, ...). */
  compression: string;
  /** The algorithm, for comparing like with like across tools. */
  cls: string;
  label: string;
  cmd: string;
  args: (segment: string) => string[];
  env: NodeJS.ProcessEnv;
  /** Where the archived segments land (a directory), to check and size them afterwards. */
  storeDir?: string;
  samples: number[];
  failures: string[];
  skipped?: string;
}

function parseArgs(argv: readonly string[]): Options {
  const o: Options = { segments: 15, targets: [...TARGETS], tools: [...TOOLS], budgetS: 290, install: true, keep: false, cloudbarman: null };
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
    else if (a === '--targets') o.targets = list(TARGETS);
    else if (a === '--tools') o.tools = list(TOOLS);
    else if (a === '--budget-s') o.budgetS = Number(val());
    else if (a === '--no-install') o.install = false;
    else if (a === '--keep') o.keep = true;
    else if (a === '--cloudbarman') o.cloudbarman = resolve(val());
    else if (a === '--help' || a === '-h') {
      process.stdout.write(
        'usage: node bench/wal/run.ts [--segments N (15)] [--targets local,s3,s3-tls] [--tools cloudbarman,barman-cloud,pgbackrest]\n' +
          '                             [--budget-s S (290): total run-time budget; rounds that would not fit are dropped] [--no-install] [--keep]\n' +
          '                             [--cloudbarman PATH: measure this executable instead of ./bin/cloudbarman]\n',
      );
      process.exit(0);
    } else throw new Error(`unknown argument ${a} (try --help)`);
  }
  if (!Number.isInteger(o.segments) || o.segments < 3 || o.segments > 200) throw new Error('--segments must be an integer in 3..200');
  if (!(o.budgetS > 0)) throw new Error('--budget-s must be > 0');
  return o;
}

const log = (m: string): void => {
  process.stderr.write(`[bench ${((performance.now() - T0) / 1000).toFixed(1).padStart(5)}s] ${m}\n`);
};
const T0 = performance.now();


/** Per segment name, the largest stored file whose name contains it (s3rver: object files only). */
function storedSizes(dir: string, names: ReadonlySet<string>): Map<string, number> {
  const out = new Map<string, number>();
  const walk = (d: string): void => {
    let entries: string[];
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e);
      const st = statSync(p);
      if (st.isDirectory()) {
        walk(p);
        continue;
      }
      if (e.includes('._S3rver_') && !e.endsWith('._S3rver_object')) continue;
      const m = /[0-9A-F]{24}/.exec(e);
      if (!m || !names.has(m[0])) continue;
      out.set(m[0], Math.max(out.get(m[0]) ?? 0, st.size));
    }
  };
  walk(dir);
  return out;
}

async function version(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args, { timeoutMs: 30_000 });
  return r.code === 0 ? (r.stdout || r.stderr).trim().split('\n')[0]! : `unknown (${describeFailure(cmd, r)})`;
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const notes: string[] = [];
  const startedAt = new Date();
  const want = (tool: Tool, target: Target): boolean => opts.tools.includes(tool) && opts.targets.includes(target);

  // ---- prerequisites -------------------------------------------------------------------------
  if (!existsSync(join(PG_BIN, 'postgres'))) {
    log('PostgreSQL 15 is missing; running scripts/ensure-postgres.sh');
    await runOk('bash', [join(ROOT, 'scripts/ensure-postgres.sh')], { timeoutMs: 600_000 });
  }
  const pgUser = osUser('postgres');
  if (!pgUser) throw new Error("no 'postgres' OS user: install Debian's postgresql-15 (scripts/ensure-postgres.sh)");
  if (process.getuid?.() !== 0 && process.getuid?.() !== pgUser.uid) {
    throw new Error('run as root (clusters run as the postgres OS user) or as the postgres user itself');
  }
  const peerWanted = [
    ...(opts.tools.includes('barman-cloud') ? [{ bin: 'barman-cloud-wal-archive', pkg: 'barman-cli-cloud' }] : []),
    ...(opts.tools.includes('pgbackrest') ? [{ bin: 'pgbackrest', pkg: 'pgbackrest' }] : []),
  ];
  const installStart = performance.now();
  const peers: PeerStatus[] = await ensurePeers(peerWanted, { install: opts.install, log });
  const installMs = performance.now() - installStart; // one-time apt work does not count against the budget
  const peerPath = (bin: string): string | null => peers.find((p) => p.peer.bin === bin)?.path ?? null;
  for (const p of peers) {
    if (p.path === null) notes.push(`SKIPPED ${p.peer.bin}: ${p.reason}`);
    else if (p.installed) notes.push(`installed ${p.peer.pkg} with apt-get for this run`);
  }

  // cloudbarman: the launcher exits 3 when dist/ is missing; wal-upload may not exist yet either.
  const cbBin = opts.cloudbarman ?? join(ROOT, 'bin/cloudbarman');
  let cbSkip: string | undefined;
  if (opts.tools.includes('cloudbarman')) {
    if (!opts.cloudbarman && !existsSync(join(ROOT, 'dist/cloudbarman.mjs'))) cbSkip = 'not built: dist/cloudbarman.mjs is missing (run `npm run build`)';
    else if (!existsSync(cbBin)) cbSkip = `not found: ${cbBin}`;
    else {
      const r = await run(cbBin, ['wal-upload', '--help'], { timeoutMs: 30_000 });
      if (r.code !== 0) cbSkip = `not built: \`cloudbarman wal-upload --help\` fails (${describeFailure('cloudbarman', r)})`;
    }
    if (cbSkip) notes.push(`SKIPPED cloudbarman: ${cbSkip}`);
  }

  // ---- workspace -----------------------------------------------------------------------------
  const base = mkdtempSync('/tmp/cloudbarman-bench-wal-');
  chmodSync(base, 0o755);
  onCleanup('workspace', () => {
    if (opts.keep) log(`kept ${base}`);
    else rmSync(base, { recursive: true, force: true });
  });
  const mkdir = (p: string, owner?: { uid: number; gid: number }): string => {
    mkdirSync(p, { recursive: true });
    if (owner) chownSync(p, owner.uid, owner.gid);
    return p;
  };

  // ---- WAL segments from a real cluster ------------------------------------------------------
  const walDir = mkdir(join(base, 'wal'), pgUser);
  const pgBase = mkdir(join(base, 'pg'), pgUser);
  log('starting PostgreSQL 15 (as the postgres OS user)');
  const cluster: Cluster = await startCluster({
    binDir: PG_BIN,
    baseDir: pgBase,
    user: pgUser,
    conf: {
      wal_level: 'replica',
      archive_mode: 'on',
      archive_command: `'cp %p ${walDir}/%f'`,
      max_wal_size: "'4GB'",
      checkpoint_timeout: "'30min'",
    },
  });
  const pgVersion = await cluster.sql('SHOW server_version');
  log(`generating ${opts.segments + 1} WAL segments (pgbench + random text), archived by cp`);
  const segments = await generateSegments({ cluster, archiveDir: walDir, count: opts.segments + 1, timeoutMs: 180_000, log });
  const warmupSegment = segments[0]!;
  const measured = segments.slice(1);
  const segNames = new Set(segments.map((s) => basename(s)));
  log(`segments ${basename(segments[0]!)} .. ${basename(segments.at(-1)!)}`);

  // ---- object stores -------------------------------------------------------------------------
  let s3: S3rverHandle | undefined;
  let s3tls: S3rverHandle | undefined;
  let cert: string | undefined;
  if (opts.targets.includes('s3')) {
    s3 = await startS3rver({ root: ROOT, dir: join(base, 's3rver-http'), buckets: [BUCKET] });
    log(`s3rver (HTTP) on ${s3.endpoint}`);
  }
  if (opts.targets.includes('s3-tls')) {
    const tls = await selfSignedCert(join(base, 'tls'));
    cert = tls.cert;
    s3tls = await startS3rver({ root: ROOT, dir: join(base, 's3rver-https'), buckets: [BUCKET], tls });
    log(`s3rver (HTTPS, self-signed) on ${s3tls.endpoint}`);
  }

  // ---- variants ------------------------------------------------------------------------------
  const variants: Variant[] = [];
  const add = (v: Omit<Variant, 'samples' | 'failures' | 'label'> & { label?: string }): Variant => {
    const full: Variant = { ...v, label: v.label ?? `${v.tool} ${v.target} ${v.compression}`, samples: [], failures: [] };
    variants.push(full);
    return full;
  };
  const s3Env = { ...process.env, ...S3_CREDS };
  // Flags alone configure cloudbarman here: no CLOUDBARMAN_* from the caller's environment.
  const cbEnv = (extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv => {
    const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
    for (const k of Object.keys(env)) if (k.startsWith('CLOUDBARMAN_')) delete env[k];
    return env;
  };

  // cloudbarman wal-upload
  if (opts.tools.includes('cloudbarman')) {
    for (const target of opts.targets) {
      for (const c of ['none', 'zstd', 'gzip']) {
        const ep = target === 's3' ? s3 : target === 's3-tls' ? s3tls : undefined;
        const local = target === 'local' ? mkdir(join(base, 'dest', `cb-local-${c}`)) : undefined;
        const prefix = `cb-${target}-${c}`;
        const v = add({
          tool: 'cloudbarman',
          target,
          compression: c,
          cls: c,
          cmd: cbBin,
          args: (seg) => [
            'wal-upload', SERVER, seg,
            ...(local ? ['--destination', `file://${local}`] : ['--destination', `s3://${BUCKET}/${prefix}`, '--endpoint-url', ep!.endpoint]),
            '--compression', c,
          ],
          env: target === 's3-tls' ? cbEnv({ ...S3_CREDS, NODE_EXTRA_CA_CERTS: cert! }) : target === 's3' ? cbEnv(S3_CREDS) : cbEnv({}),
          storeDir: local ?? join(ep!.dataDir, BUCKET, prefix),
        });
        if (cbSkip) v.skipped = cbSkip;
      }
    }
  }

  // barman-cloud-wal-archive: S3 only (no local-directory target); gzip only over plain HTTP (slow).
  const barman = peerPath('barman-cloud-wal-archive');
  if (opts.tools.includes('barman-cloud')) {
    if (opts.targets.includes('local')) notes.push('barman-cloud-wal-archive has no local-directory target (cloud object stores only): no local rows.');
    const combos: [Target, string][] = [['s3', 'none'], ['s3', 'gzip'], ['s3-tls', 'none']];
    for (const [target, c] of combos) {
      if (!want('barman-cloud', target)) continue;
      const ep = (target === 's3' ? s3 : s3tls)!;
      const prefix = `barman-${target}-${c}`;
      const v = add({
        tool: 'barman-cloud',
        target,
        compression: c,
        cls: c,
        cmd: barman ?? 'barman-cloud-wal-archive',
        args: (seg) => ['--cloud-provider', 'aws-s3', '--endpoint-url', ep.endpoint, ...(c === 'gzip' ? ['--gzip'] : []), `s3://${BUCKET}/${prefix}`, SERVER, seg],
        env: target === 's3-tls' ? { ...s3Env, AWS_CA_BUNDLE: cert! } : s3Env,
        storeDir: join(ep.dataDir, BUCKET, prefix),
      });
      if (!barman) v.skipped = 'barman-cloud-wal-archive not installed';
    }
    if (opts.targets.includes('s3-tls')) notes.push('barman-cloud gzip runs on plain-HTTP s3 only (it is the slowest variant; TLS adds nothing to compare there).');
  }

  // pgbackrest archive-push, synchronous (archive-async=n, process-max=1: its defaults).
  const pgbackrest = peerPath('pgbackrest');
  const pgbrStanzas: { v: Variant; conf: string; stanza: string }[] = [];
  if (opts.tools.includes('pgbackrest')) {
    if (opts.targets.includes('s3')) {
      notes.push('pgbackrest speaks S3 only over TLS: it runs on s3-tls (s3rver with a self-signed certificate, repo1-storage-verify-tls=n), not on plain-HTTP s3.');
    }
    const pgbrDir = mkdir(join(base, 'pgbackrest'));
    const common = [
      `log-path=${mkdir(join(pgbrDir, 'log'))}`,
      `lock-path=${mkdir(join(pgbrDir, 'lock'))}`,
      `spool-path=${mkdir(join(pgbrDir, 'spool'))}`,
      'log-level-console=warn',
      'log-level-stderr=warn',
      'log-level-file=off',
      'archive-async=n',
      'process-max=1',
    ];
    const confs: Partial<Record<Target, { conf: string; storeRoot: string }>> = {};
    if (want('pgbackrest', 'local')) {
      const repo = mkdir(join(base, 'dest', 'pgbackrest-local'));
      const conf = join(pgbrDir, 'local.conf');
      writeFileSync(conf, ['[global]', 'repo1-type=posix', `repo1-path=${repo}`, ...common, ''].join('\n'));
      confs.local = { conf, storeRoot: join(repo, 'archive') };
    }
    if (want('pgbackrest', 's3-tls')) {
      const conf = join(pgbrDir, 's3-tls.conf');
      writeFileSync(
        conf,
        [
          '[global]',
          'repo1-type=s3',
          'repo1-path=/pgbackrest',
          `repo1-s3-bucket=${BUCKET}`,
          `repo1-s3-endpoint=${s3tls!.host}`,
          `repo1-storage-port=${s3tls!.port}`,
          'repo1-s3-region=us-east-1',
          'repo1-s3-key=S3RVER',
          'repo1-s3-key-secret=S3RVER',
          'repo1-s3-uri-style=path',
          'repo1-storage-verify-tls=n',
          ...common,
          '',
        ].join('\n'),
      );
      confs['s3-tls'] = { conf, storeRoot: join(s3tls!.dataDir, BUCKET, 'pgbackrest', 'archive') };
    }
    for (const target of ['local', 's3-tls'] as const) {
      const c = confs[target];
      if (!c) continue;
      for (const [ct, cls] of [['none', 'none'], ['gz', 'gzip'], ['zst', 'zstd'], ['lz4', 'lz4']] as const) {
        const stanza = `bench_${target.replace('-', '_')}_${ct}`;
        const v = add({
          tool: 'pgbackrest',
          target,
          compression: ct,
          cls,
          cmd: pgbackrest ?? 'pgbackrest',
          args: (seg) => [`--config=${c.conf}`, `--stanza=${stanza}`, `--pg1-path=${cluster.pgdata}`, `--compress-type=${ct}`, 'archive-push', seg],
          env: { ...process.env },
          storeDir: join(c.storeRoot, stanza),
        });
        if (!pgbackrest) v.skipped = 'pgbackrest not installed';
        else pgbrStanzas.push({ v, conf: c.conf, stanza });
      }
    }
    // One stanza per variant, so that every measured push is a first push of that segment.
    for (const { v, conf, stanza } of pgbrStanzas) {
      const r = await run(
        pgbackrest!,
        [`--config=${conf}`, `--stanza=${stanza}`, `--pg1-path=${cluster.pgdata}`, `--pg1-socket-path=${cluster.socketDir}`, `--pg1-port=${cluster.port}`, '--pg1-user=postgres', 'stanza-create'],
        { timeoutMs: 60_000 },
      );
      if (r.code !== 0) v.skipped = `stanza-create failed: ${describeFailure('pgbackrest', r)}`;
    }
    if (pgbrStanzas.length) log(`pgbackrest: ${pgbrStanzas.length} stanzas created`);
  }

  // The cluster is only needed for the segments and stanza-create: stop it so it adds no noise.
  // (archive-push reads pg_control from pg1-path; the data directory stays.)
  await cluster.stop();
  log('PostgreSQL stopped; measuring');

  // Process start cost, for context (no segment).
  const ctx: Variant[] = [];
  const addCtx = (tool: Tool, label: string, cmd: string, args: string[], skipped?: string): void => {
    const v: Variant = { tool, target: 'start', compression: '-', cls: '-', label, cmd, args: () => args, env: { ...process.env }, samples: [], failures: [] };
    if (skipped) v.skipped = skipped;
    ctx.push(v);
  };
  addCtx('node', '`node -e 0` (project Node)', process.execPath, ['-e', '0']);
  if (opts.tools.includes('cloudbarman')) addCtx('cloudbarman', '`cloudbarman --version`', cbBin, ['--version'], cbSkip);
  if (barman) addCtx('barman-cloud', '`barman-cloud-wal-archive --version`', barman, ['--version']);
  if (pgbackrest) addCtx('pgbackrest', '`pgbackrest version`', pgbackrest, ['version']);

  // ---- warm-up: one unmeasured push per variant (page cache, bytecode caches, first object) ---
  const warmStart = performance.now();
  for (const v of [...variants, ...ctx]) {
    if (v.skipped) continue;
    let r = await run(v.cmd, v.args(warmupSegment), { env: v.env, timeoutMs: RUN_TIMEOUT_MS });
    if (r.code !== 0 && !r.timedOut) {
      // One retry, for transient trouble (e.g. dist/ being rebuilt at that moment).
      await sleep(2000);
      r = await run(v.cmd, v.args(warmupSegment), { env: v.env, timeoutMs: RUN_TIMEOUT_MS });
    }
    if (r.code !== 0) {
      v.skipped = `warm-up failed: ${describeFailure(v.label, r)}`;
      log(`${v.label}: ${v.skipped}`);
    }
  }

  // ---- measured rounds: one segment per round, every variant once, in a shuffled order --------
  const active = [...variants, ...ctx].filter((v) => !v.skipped);
  // A round is not started when it would likely end past the budget (total run time, with a few
  // seconds kept for teardown; time spent installing peers excluded), except that at least 3 rounds always run.
  const measureStart = performance.now();
  const warmMs = measureStart - warmStart;
  let rounds = 0;
  for (let i = 0; i < measured.length; i++) {
    const roundMs = rounds > 0 ? (performance.now() - measureStart) / rounds : warmMs;
    if (rounds >= 3 && performance.now() - T0 - installMs + roundMs + 5000 > opts.budgetS * 1000) {
      notes.push(`time budget (--budget-s ${opts.budgetS}, total run time) reached: ${rounds} of ${measured.length} rounds measured.`);
      break;
    }
    const seg = measured[i]!;
    for (const v of shuffled(active, 1000 + i)) {
      const r = await run(v.cmd, v.args(seg), { env: v.env, timeoutMs: RUN_TIMEOUT_MS });
      if (r.code === 0) v.samples.push(r.ms);
      else v.failures.push(`${basename(seg)}: ${describeFailure(v.label, r)}`);
    }
    rounds++;
    log(`round ${rounds}/${measured.length} (${basename(seg)}) done`);
  }

  // ---- results ---------------------------------------------------------------------------------
  const rowOf = (v: Variant) => {
    const stored = v.storeDir ? storedSizes(v.storeDir, segNames) : null;
    const storedBytes = stored ? [...stored.values()] : [];
    return {
      tool: v.tool,
      target: v.target,
      compression: v.compression,
      class: v.cls,
      command: [v.cmd, ...v.args('<segment>')].join(' '),
      runs: v.samples.length + v.failures.length,
      ok: v.samples.length,
      medianMs: v.samples.length ? median(v.samples) : null,
      p90Ms: v.samples.length ? percentile(v.samples, 90) : null,
      samplesMs: v.samples.map((x) => Math.round(x * 100) / 100),
      failures: v.failures,
      skipped: v.skipped ?? null,
      segmentsStored: stored ? stored.size : null,
      storedPctOfRaw: storedBytes.length ? (100 * storedBytes.reduce((a, b) => a + b, 0)) / storedBytes.length / SEGMENT_BYTES : null,
      vsBarmanCloud: null as number | null,
      vsPgbackrest: null as number | null,
    };
  };
  const rows = variants.map(rowOf);
  const ref = (tool: Tool, target: string, cls: string) => rows.find((r) => r.tool === tool && r.target === target && r.class === cls && r.medianMs !== null);
  for (const r of rows) {
    if (r.medianMs === null) continue;
    const b = ref('barman-cloud', r.target, r.class);
    const p = ref('pgbackrest', r.target, r.class);
    if (b) r.vsBarmanCloud = r.medianMs / b.medianMs!;
    if (p) r.vsPgbackrest = r.medianMs / p.medianMs!;
    if (r.ok > 0 && r.segmentsStored !== null && r.segmentsStored < r.ok + 1) {
      notes.push(`WARNING ${r.tool} ${r.target} ${r.compression}: ${r.ok + 1} pushes succeeded but only ${r.segmentsStored} segments were found under its destination.`);
    }
  }
  const toolOrder = (t: string) => ['cloudbarman', 'barman-cloud', 'pgbackrest', 'node'].indexOf(t);
  const classOrder = (c: string) => (CLASS_ORDER.indexOf(c) + 1 || 99);
  rows.sort(
    (a, b) => TARGETS.indexOf(a.target as Target) - TARGETS.indexOf(b.target as Target) || classOrder(a.class) - classOrder(b.class) || toolOrder(a.tool) - toolOrder(b.tool),
  );
  const ctxRows = ctx.map(rowOf);

  const out: string[] = [];
  out.push(`## WAL archive latency per 16 MiB segment (${startedAt.toISOString()})`);
  out.push('');
  out.push(
    `${cpus().length} CPUs, Linux ${release()}, Node ${process.version}, PostgreSQL ${pgVersion}; ${rounds} measured segment(s) per row after 1 warm-up; ` +
      'wall-clock from spawn to exit of one archive command; ratio = row median ÷ peer median for the same target and algorithm (< 1 is faster).',
  );
  out.push('');
  const cell = (x: number | null) => (x === null ? '—' : fmtMs(x));
  out.push(
    markdownTable(
      ['tool', 'target', 'compression', 'median ms', 'p90 ms', 'ok/runs', 'stored % of 16 MiB', '÷ barman-cloud', '÷ pgbackrest sync'],
      rows.map((r) => [
        r.tool,
        r.target,
        r.compression,
        r.skipped ? `skipped` : cell(r.medianMs),
        r.skipped ? '' : cell(r.p90Ms),
        r.skipped ? '' : `${r.ok}/${r.runs}`,
        r.storedPctOfRaw === null ? '—' : `${r.storedPctOfRaw.toFixed(1)}%`,
        r.tool === 'barman-cloud' && r.vsBarmanCloud !== null ? '(ref)' : fmtRatio(r.vsBarmanCloud),
        r.tool === 'pgbackrest' && r.vsPgbackrest !== null ? '(ref)' : fmtRatio(r.vsPgbackrest),
      ]),
      ['l', 'l', 'l', 'r', 'r', 'r', 'r', 'r', 'r'],
    ),
  );

  // Fastest variant of each tool per target, whatever the compression.
  out.push('');
  out.push('Fastest variant per tool and target (any compression):');
  out.push('');
  const best = (tool: Tool, target: Target) =>
    rows.filter((r) => r.tool === tool && r.target === target && r.medianMs !== null).sort((a, b) => a.medianMs! - b.medianMs!)[0];
  const bestRows: string[][] = [];
  for (const target of opts.targets) {
    const cb = best('cloudbarman', target);
    const bc = best('barman-cloud', target);
    const pb = best('pgbackrest', target);
    const show = (r: typeof cb) => (r ? `${fmtMs(r.medianMs!)} (${r.compression})` : '—');
    bestRows.push([
      target,
      show(cb),
      show(bc),
      show(pb),
      cb && bc ? fmtRatio(cb.medianMs! / bc.medianMs!) : '—',
      cb && pb ? fmtRatio(cb.medianMs! / pb.medianMs!) : '—',
    ]);
  }
  out.push(markdownTable(['target', 'cloudbarman ms', 'barman-cloud ms', 'pgbackrest ms', 'cloudbarman ÷ barman-cloud', 'cloudbarman ÷ pgbackrest'], bestRows, ['l', 'r', 'r', 'r', 'r', 'r']));

  out.push('');
  out.push('Process start cost (context; no segment):');
  out.push('');
  out.push(
    markdownTable(
      ['command', 'median ms', 'p90 ms', 'ok/runs'],
      ctxRows.map((r, i) => [ctx[i]!.label, r.skipped ? 'skipped' : cell(r.medianMs), r.skipped ? '' : cell(r.p90Ms), r.skipped ? '' : `${r.ok}/${r.runs}`]),
      ['l', 'r', 'r', 'r'],
    ),
  );

  const skippedBy = new Map<string, string[]>();
  for (const r of [...rows, ...ctxRows]) {
    if (r.skipped) skippedBy.set(r.skipped, [...(skippedBy.get(r.skipped) ?? []), r.target === 'start' ? `${r.tool} start` : `${r.tool} ${r.target} ${r.compression}`]);
  }
  for (const [reason, which] of skippedBy) {
    if (reason === cbSkip) continue; // already said once
    notes.push(`skipped ${which.join(', ')}: ${reason}`);
  }
  for (const r of [...rows, ...ctxRows]) {
    if (r.failures.length) notes.push(`${r.tool} ${r.target} ${r.compression}: ${r.failures.length} failed run(s), first: ${r.failures[0]}`);
  }
  const uniqueNotes = [...new Set(notes)];
  if (uniqueNotes.length) {
    out.push('');
    out.push('Notes:');
    for (const n of uniqueNotes) out.push(`- ${n}`);
  }
  out.push('');
  out.push('All tools run as root on the same segments (page cache warm for all); s3 = s3rver over HTTP, s3-tls = s3rver over HTTPS with a self-signed certificate; both are single-process Node servers on this machine.');
  process.stdout.write(out.join('\n') + '\n');

  const versions = {
    node: process.version,
    postgres: pgVersion,
    pgbackrest: pgbackrest ? await version(pgbackrest, ['version']) : null,
    barmanCloud: barman ? await version(barman, ['--version']) : null,
    cloudbarman: cbSkip ? null : await version(cbBin, ['--version']),
  };
  const resultsDir = mkdir(join(ROOT, 'bench/results'));
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  const jsonPath = join(resultsDir, `wal-${stamp}.json`);
  writeFileSync(
    jsonPath,
    JSON.stringify(
      {
        bench: 'wal',
        startedAt: startedAt.toISOString(),
        durationS: Math.round((performance.now() - T0) / 100) / 10,
        host: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? null, kernel: release() },
        options: opts,
        versions,
        segments: segments.map((s) => basename(s)).filter((n) => WAL_NAME.test(n)),
        warmupSegment: basename(warmupSegment),
        rounds,
        rows,
        startCost: ctxRows.map((r, i) => ({ ...r, label: ctx[i]!.label })),
        notes: uniqueNotes,
      },
      null,
      2,
    ) + '\n',
  );
  log(`JSON written to ${jsonPath}`);
}

await runBench(main, log);

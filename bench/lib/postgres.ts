/**
 * A minimal bench-local PostgreSQL cluster: Debian's binaries, run as the unprivileged `postgres`
 * OS user (PostgreSQL refuses root), listening only on a Unix socket inside the cluster's temp dir.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, openSync, closeSync, readFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { onCleanup, run, runOk, sleep, waitExit } from './proc.ts';

export interface OsUser {
  name: string;
  uid: number;
  gid: number;
}

/** Looks up an OS user with `id`. */
export function osUser(name: string): OsUser | null {
  const u = spawnSync('id', ['-u', name], { encoding: 'utf8', timeout: 5000 });
  const g = spawnSync('id', ['-g', name], { encoding: 'utf8', timeout: 5000 });
  if (u.status !== 0 || g.status !== 0) return null;
  return { name, uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
}

export interface ClusterOptions {
  /** e.g. /usr/lib/postgresql/15/bin */
  binDir: string;
  /** A directory the cluster may own; pgdata, socket and log go inside. Must be traversable by `user`. */
  baseDir: string;
  user: OsUser;
  /** Extra postgresql.conf lines. */
  conf: Record<string, string | number>;
  port?: number;
}

export interface Cluster {
  pgdata: string;
  socketDir: string;
  port: number;
  binDir: string;
  logFile: string;
  /** psql -Atc as the `postgres` role; returns stdout. */
  sql(query: string, timeoutMs?: number): Promise<string>;
  /** Environment for libpq clients (PGHOST/PGPORT/PGUSER/PGDATABASE). */
  clientEnv(): NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  const { binDir, baseDir, user } = opts;
  const port = opts.port ?? 5432;
  const pgdata = join(baseDir, 'pgdata');
  const socketDir = join(baseDir, 'socket');
  const logFile = join(baseDir, 'postgres.log');
  for (const d of [socketDir]) {
    mkdirSync(d, { recursive: true });
    chownSync(d, user.uid, user.gid);
  }
  closeSync(openSync(logFile, 'a'));
  chownSync(logFile, user.uid, user.gid);
  const asUser = { uid: user.uid, gid: user.gid, cwd: baseDir, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', HOME: baseDir } };

  if (!existsSync(join(pgdata, 'PG_VERSION'))) {
    await runOk(join(binDir, 'initdb'), ['-D', pgdata, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync'], { ...asUser, timeoutMs: 60_000 });
  }
  const conf: Record<string, string | number> = {
    listen_addresses: "''",
    port,
    unix_socket_directories: `'${socketDir}'`,
    fsync: 'off',
    ...opts.conf,
  };
  appendFileSync(join(pgdata, 'postgresql.conf'), '\n# cloudbarman bench\n' + Object.entries(conf).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n');

  const logFd = openSync(logFile, 'a');
  const child = spawn(join(binDir, 'postgres'), ['-D', pgdata], { ...asUser, stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGINT'); // fast shutdown
      await waitExit(child, 30_000);
    }
  };
  onCleanup(`postgres ${pgdata}`, stop, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGQUIT'); // immediate shutdown
  });

  const clientEnv = (): NodeJS.ProcessEnv => ({ ...process.env, PGHOST: socketDir, PGPORT: String(port), PGUSER: 'postgres', PGDATABASE: 'postgres' });
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`postgres exited with ${child.exitCode}; log:\n${readFileSync(logFile, 'utf8').slice(-2000)}`);
    }
    const r = await run(join(binDir, 'pg_isready'), ['-h', socketDir, '-p', String(port), '-q'], { timeoutMs: 5000 });
    if (r.code === 0) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`postgres did not become ready in 30 s; log:\n${readFileSync(logFile, 'utf8').slice(-2000)}`);
    }
    await sleep(100);
  }

  return {
    pgdata,
    socketDir,
    port,
    binDir,
    logFile,
    async sql(query: string, timeoutMs = 120_000): Promise<string> {
      const r = await runOk(join(binDir, 'psql'), ['-X', '-v', 'ON_ERROR_STOP=1', '-Atq', '-c', query], { env: clientEnv(), timeoutMs });
      return r.stdout.trim();
    },
    clientEnv,
    stop,
  };
}

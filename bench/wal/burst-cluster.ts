/**
 * PostgreSQL for the burst and recovery bench: Debian's binaries run as the `postgres` OS user on
 * a Unix socket, on a data directory that outlives one start (the burst re-uses its pile of
 * .ready segments for every tool; each recovery starts on a fresh copy of the base backup).
 * Unlike bench/lib/postgres.ts, it passes an environment to the postmaster: archive_command and
 * restore_command inherit it (the S3 credentials of s3rver).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync, chownSync } from 'node:fs';
import { join } from 'node:path';
import type { OsUser } from '../lib/postgres.ts';
import { onCleanup, run, runOk, sleep, waitExit } from '../lib/proc.ts';

export interface PgProcess {
  pgdata: string;
  /** Runs one statement with psql as the postgres role; returns its output. */
  sql(query: string, timeoutMs?: number): Promise<string>;
  /** True while the postmaster runs. */
  running(): boolean;
  /** Fast shutdown, waited for. */
  stop(): Promise<void>;
  /** The tail of the server log. */
  logTail(lines?: number): string;
}

export interface PgStartOptions {
  binDir: string;
  pgdata: string;
  socketDir: string;
  port: number;
  user: OsUser;
  logFile: string;
  /** Environment for the postmaster (and so for archive_command and restore_command). */
  env: NodeJS.ProcessEnv;
  /** Wait until connections are accepted (false for a recovery, timed by its signal file). */
  waitReady: boolean;
}

/** Replaces postgresql.auto.conf (while the server is stopped). */
export function writeAutoConf(pgdata: string, settings: Record<string, string>, user: OsUser): void {
  const path = join(pgdata, 'postgresql.auto.conf');
  writeFileSync(path, `# cloudbarman burst bench\n${Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join('\n')}\n`);
  chownSync(path, user.uid, user.gid);
}

/** psql as the postgres role on the cluster's socket. */
export function psqlEnv(socketDir: string, port: number): NodeJS.ProcessEnv {
  return { ...process.env, PGHOST: socketDir, PGPORT: String(port), PGUSER: 'postgres', PGDATABASE: 'postgres' };
}

/** Starts the postmaster on an existing data directory. */
export async function startPostgres(o: PgStartOptions): Promise<PgProcess> {
  if (!existsSync(o.logFile)) {
    closeSync(openSync(o.logFile, 'a'));
    chownSync(o.logFile, o.user.uid, o.user.gid);
  }
  const logFd = openSync(o.logFile, 'a');
  const child: ChildProcess = spawn(join(o.binDir, 'postgres'), ['-D', o.pgdata, '-c', `port=${o.port}`, '-c', `unix_socket_directories=${o.socketDir}`, '-c', 'listen_addresses='], {
    uid: o.user.uid,
    gid: o.user.gid,
    cwd: o.pgdata,
    env: o.env,
    stdio: ['ignore', logFd, logFd],
  });
  closeSync(logFd);
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGINT'); // fast shutdown
      await waitExit(child, 60_000);
    }
  };
  onCleanup(`postgres ${o.pgdata}`, stop, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGQUIT');
  });
  const env = psqlEnv(o.socketDir, o.port);
  const pg: PgProcess = {
    pgdata: o.pgdata,
    async sql(query: string, timeoutMs = 600_000): Promise<string> {
      const r = await runOk(join(o.binDir, 'psql'), ['-X', '-v', 'ON_ERROR_STOP=1', '-Atq', '-c', query], { env, timeoutMs });
      return r.stdout.trim();
    },
    running: () => child.exitCode === null && child.signalCode === null,
    stop,
    logTail: (lines = 30) => readFileSync(o.logFile, 'utf8').split('\n').slice(-lines).join('\n'),
  };
  if (!o.waitReady) return pg;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (!pg.running()) throw new Error(`postgres exited with ${child.exitCode}; log:\n${pg.logTail()}`);
    const r = await run(join(o.binDir, 'pg_isready'), ['-h', o.socketDir, '-p', String(o.port), '-q'], { timeoutMs: 5000 });
    if (r.code === 0) return pg;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`postgres did not become ready in 60 s; log:\n${pg.logTail()}`);
    }
    await sleep(100);
  }
}

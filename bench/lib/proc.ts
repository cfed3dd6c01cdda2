/**
 * Process helpers for the benches: every spawn has a timeout, every long-lived child is
 * registered for cleanup, and timed runs measure wall-clock from spawn() to exit.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess, SpawnOptions } from 'node:child_process';

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  uid?: number;
  gid?: number;
  /** Kill the process (SIGKILL) after this many milliseconds. */
  timeoutMs: number;
  /** Bytes fed to stdin, if any. */
  input?: string;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** Wall-clock milliseconds from just before spawn() to the 'exit' event. */
  ms: number;
  stdout: string;
  stderr: string;
  /** Set when the process could not be started at all (ENOENT, EACCES...). */
  spawnError?: string;
}

const MAX_CAPTURE = 64 * 1024;

/** Runs a command to completion. Never throws: inspect `code`, `timedOut`, `spawnError`. */
export function run(cmd: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let settled = false;
    const spawnOpts: SpawnOptions = {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    };
    if (opts.uid !== undefined) spawnOpts.uid = opts.uid;
    if (opts.gid !== undefined) spawnOpts.gid = opts.gid;
    const t0 = process.hrtime.bigint();
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, spawnOpts);
    } catch (err) {
      resolve({ code: null, signal: null, timedOut: false, ms: 0, stdout: '', stderr: '', spawnError: String(err) });
      return;
    }
    let exitMs = 0;
    let exitCode: number | null = null;
    let exitSignal: NodeJS.Signals | null = null;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs);
    child.stdout?.on('data', (d: Buffer) => {
      if (stdout.length < MAX_CAPTURE) stdout += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < MAX_CAPTURE) stderr += d.toString();
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    child.on('error', (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ code: null, signal: null, timedOut, ms: 0, stdout, stderr, spawnError: err.message });
    });
    child.on('exit', (code, signal) => {
      // Time the process itself; stdio may close a little later.
      exitMs = Number(process.hrtime.bigint() - t0) / 1e6;
      exitCode = code;
      exitSignal = signal;
    });
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ code: exitCode, signal: exitSignal, timedOut, ms: exitMs, stdout, stderr });
    };
    // 'close' waits for stdio; a grandchild holding stdio open must not hang the bench.
    child.once('exit', () => setTimeout(finish, 2000).unref());
    child.on('close', finish);
  });
}

/** A one-line description of a failed run, for error messages. */
export function describeFailure(cmd: string, r: RunResult): string {
  const what = r.spawnError
    ? `could not start: ${r.spawnError}`
    : r.timedOut
      ? 'timed out'
      : `exit ${r.code ?? r.signal}`;
  const tail = (r.stderr || r.stdout).trim().split('\n').slice(-4).join(' | ');
  return `${cmd}: ${what}${tail ? ` — ${tail}` : ''}`;
}

/** Runs a command and throws with its stderr when it does not exit 0. */
export async function runOk(cmd: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(describeFailure(`${cmd} ${args.join(' ')}`, r));
  return r;
}

/** Whether an executable is on PATH (or is an existing absolute path). */
export function which(cmd: string): string | null {
  const r = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', cmd], { encoding: 'utf8', timeout: 5000 });
  const out = (r.stdout ?? '').trim();
  return r.status === 0 && out ? out : null;
}

// ---------------------------------------------------------------------------------------------
// Cleanup registry: long-lived children (servers, clusters) and temp dirs are stopped and removed
// at the end, on error, and on SIGINT/SIGTERM.

type Cleanup = { name: string; fn: () => Promise<void> | void; syncKill?: () => void };
const cleanups: Cleanup[] = [];
let installed = false;

/** Registers a cleanup step. `syncKill` is used when the process exits without async cleanup. */
export function onCleanup(name: string, fn: () => Promise<void> | void, syncKill?: () => void): void {
  const c: Cleanup = { name, fn };
  if (syncKill) c.syncKill = syncKill;
  cleanups.push(c);
  if (!installed) {
    installed = true;
    const onSignal = (sig: NodeJS.Signals) => {
      process.stderr.write(`\nbench: ${sig}, cleaning up...\n`);
      void runCleanups().finally(() => process.exit(130));
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    process.on('exit', () => {
      for (const c of cleanups) {
        try {
          c.syncKill?.();
        } catch {
          /* best effort */
        }
      }
    });
  }
}

/** Runs the registered cleanups, newest first. Each one is bounded to 20 s. */
export async function runCleanups(): Promise<void> {
  while (cleanups.length > 0) {
    const c = cleanups.pop()!;
    try {
      await Promise.race([
        Promise.resolve(c.fn()),
        new Promise((_, rej) => setTimeout(() => rej(new Error('cleanup timed out')), 20_000).unref()),
      ]);
    } catch (err) {
      process.stderr.write(`bench: cleanup of ${c.name} failed: ${(err as Error).message}\n`);
      try {
        c.syncKill?.();
      } catch {
        /* best effort */
      }
    }
  }
}

/** Waits for a child to exit, killing it with SIGKILL after `ms`. */
export function waitExit(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
    }, ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

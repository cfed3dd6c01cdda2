/**
 * Crash testing: a seeded PRNG and a runner that SIGKILLs the CLI at a chosen moment.
 *
 * The seed comes from CLOUDBARMAN_CRASH_SEED (a fixed default otherwise) and every failure message
 * should carry `describeTrial(...)`, so that a failing trial can be replayed with the same seed.
 */
import { spawn } from 'node:child_process';
import { CLI_BIN } from './cli.ts';
import { seededRandom } from '../servers/fault-proxy.ts';

/** The default seed, so that CI runs are reproducible unless someone asks for another. */
export const DEFAULT_CRASH_SEED = 20261122;

/** The seed of this run: CLOUDBARMAN_CRASH_SEED (an integer) or the default. */
export function crashSeed(): number {
  const raw = process.env['CLOUDBARMAN_CRASH_SEED'];
  if (raw === undefined || raw.trim() === '') return DEFAULT_CRASH_SEED;
  const n = Number(raw);
  if (!Number.isSafeInteger(n)) throw new Error(`CLOUDBARMAN_CRASH_SEED=${JSON.stringify(raw)} is not an integer`);
  return n;
}

/** mulberry32 (floats in [0, 1)): the fault proxy's PRNG, so that both schedules replay the same way. */
export const mulberry32 = seededRandom;

/** A PRNG for one loop: the run's seed mixed with the loop's name, so that loops do not share a sequence. */
export function loopRng(seed: number, loop: string): () => number {
  let h = seed >>> 0;
  for (const ch of loop) h = Math.imul(h ^ ch.charCodeAt(0), 0x9e3779b1) >>> 0;
  return mulberry32(h);
}

/** How to name a trial in a failure message, so that it can be replayed. */
export function describeTrial(loop: string, seed: number, trial: number, extra = ''): string {
  return `[crash loop ${loop}, CLOUDBARMAN_CRASH_SEED=${seed}, trial ${trial}${extra === '' ? '' : `, ${extra}`}]`;
}

/** What happened to a run that was to be killed. */
export interface KilledRun {
  /** True when the SIGKILL was sent while the process was still running. */
  killed: boolean;
  /** Exit code when it ended on its own, else null. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit. */
  ms: number;
  /** True when it was still running at timeoutMs and was killed for that (a hang, not a planned kill). */
  hung: boolean;
}

/**
 * Runs `cloudbarman ARGS` and SIGKILLs it `delayMs` after spawn, unless it ended before. The launcher
 * (bin/cloudbarman) execs node, and the child is the leader of its own process group, so the kill goes to
 * the whole group: node and anything it started. timeoutMs bounds a run that is never killed (delay
 * longer than the run) and hangs.
 */
export async function runAndKill(
  args: string[],
  opts: { env: Record<string, string | undefined>; delayMs: number; timeoutMs?: number; cwd?: string },
): Promise<KilledRun> {
  const env: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('CLOUDBARMAN_') && !k.startsWith('AWS_') && !k.startsWith('NODE_TEST')) env[k] = v;
  }
  Object.assign(env, opts.env);
  const started = Date.now();
  return await new Promise((resolvePromise, reject) => {
    const child = spawn(CLI_BIN, args, { env, cwd: opts.cwd ?? process.cwd(), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    let exited = false;
    let killed = false;
    let hung = false;
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const killGroup = (): void => {
      if (exited || child.pid === undefined) return;
      try {
        process.kill(-child.pid, 'SIGKILL');
        killed = true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    };
    const killTimer = setTimeout(killGroup, Math.max(0, opts.delayMs));
    const hangTimer = setTimeout(() => {
      if (!exited && !killed) hung = true;
      killGroup();
    }, opts.timeoutMs ?? 120_000);
    child.once('exit', () => { exited = true; });
    child.once('error', (err) => {
      clearTimeout(killTimer);
      clearTimeout(hangTimer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      exited = true;
      clearTimeout(killTimer);
      clearTimeout(hangTimer);
      resolvePromise({ killed: killed && signal === 'SIGKILL', code, signal, stdout, stderr, ms: Date.now() - started, hung });
    });
  });
}

/** A kill delay for one trial: uniform between `fromMs` and `toMs`. */
export function pickDelay(rng: () => number, fromMs: number, toMs: number): number {
  return Math.round(fromMs + rng() * Math.max(0, toMs - fromMs));
}

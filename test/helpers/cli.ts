/**
 * Runs the built CLI (bin/cloudbarman) as a process, the way PostgreSQL and operators do.
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';

/** The launcher every test runs; `npm test` builds dist/ before any suite starts. */
export const CLI_BIN = resolve(import.meta.dirname, '..', '..', 'bin', 'cloudbarman');

export interface CliResult { code: number; stdout: string; stderr: string }

/** Runs `cloudbarman ARGS` with a timeout; env replaces CLOUDBARMAN_* and AWS_* from the test process. */
export async function runCli(args: string[], opts: { env?: Record<string, string | undefined>; cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  const env: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('CLOUDBARMAN_') && !k.startsWith('AWS_')) env[k] = v;
  }
  Object.assign(env, opts.env ?? {});
  return new Promise((resolvePromise, reject) => {
    const child = spawn(CLI_BIN, args, { env, cwd: opts.cwd ?? process.cwd(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.once('error', (err) => { clearTimeout(timer); reject(err); });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code: code ?? 128 + (signal === 'SIGKILL' ? 9 : 15), stdout, stderr });
    });
  });
}

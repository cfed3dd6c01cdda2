/** What every bench script shares: its progress log, its main runner, and its report's tail. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCleanups } from './proc.ts';

/** A progress logger on stderr: "[tag   12.3s] message". */
export function benchLog(tag: string): (message: string) => void {
  const t0 = performance.now();
  return (m) => {
    process.stderr.write(`[${tag} ${((performance.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${m}\n`);
  };
}

/** Runs main; any failure is one line on stderr and exit 1; cleanups always run. */
export async function runBench(main: () => Promise<void>, log: (message: string) => void): Promise<void> {
  try {
    await main();
  } catch (err) {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  } finally {
    await runCleanups();
    log('done');
  }
}

/** The "Notes:" list of a report (nothing when there are none), duplicates dropped. */
export function notesSection(notes: readonly string[]): string[] {
  const unique = [...new Set(notes)];
  return unique.length === 0 ? [] : ['', 'Notes:', ...unique.map((n) => `- ${n}`)];
}

/** Writes bench/results/<name>-<timestamp>.json and returns its path. */
export function writeResults(root: string, name: string, startedAt: Date, payload: unknown): string {
  const dir = join(root, 'bench/results');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${name}-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(path, JSON.stringify(payload, null, 2) + '\n');
  return path;
}

/**
 * Real 16 MiB WAL segments from a real cluster: pgbench initialisation, then rounds of pgbench
 * TPC-B transactions plus inserts of random hex text (poorly compressible), until enough segments
 * have been filled and archived by `archive_command = 'cp %p DIR/%f'`. Only segments that filled
 * up naturally are kept: the one closed by the final pg_switch_wal() is mostly zeros and dropped.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Cluster } from '../lib/postgres.ts';
import { runOk, sleep } from '../lib/proc.ts';

export const WAL_NAME = /^[0-9A-F]{24}$/;
export const SEGMENT_BYTES = 16 * 1024 * 1024;
/** Rows of 128 random hex characters per round: the poorly compressible part of the WAL. */
const NOISE_ROWS = 15_000;

export function listSegments(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => WAL_NAME.test(f) && statSync(join(dir, f)).size === SEGMENT_BYTES)
    .sort();
}

export interface GenerateOptions {
  cluster: Cluster;
  archiveDir: string;
  /** How many full segments are wanted. */
  count: number;
  timeoutMs: number;
  log: (msg: string) => void;
}

/** Fills and archives WAL until `count` full segments are in `archiveDir`; returns their paths. */
export async function generateSegments(o: GenerateOptions): Promise<string[]> {
  const { cluster, archiveDir, count } = o;
  const deadline = Date.now() + o.timeoutMs;
  const pgbench = join(cluster.binDir, 'pgbench');
  const env = cluster.clientEnv();
  await runOk(pgbench, ['-i', '-s', '4', '-q'], { env, timeoutMs: 120_000 });
  await cluster.sql('CREATE TABLE IF NOT EXISTS bench_noise (id bigserial PRIMARY KEY, t text)');
  // +1: the last archived segment may be the one closed early by pg_switch_wal().
  let round = 0;
  while (listSegments(archiveDir).length < count + 1) {
    if (Date.now() > deadline) throw new Error(`only ${listSegments(archiveDir).length} of ${count} WAL segments after ${o.timeoutMs / 1000} s`);
    round++;
    await runOk(pgbench, ['-n', '-c', '2', '-j', '2', '-t', '300'], { env, timeoutMs: 60_000 });
    await cluster.sql(`UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 4 = ${round % 4}`);
    await cluster.sql(
      `INSERT INTO bench_noise (t) SELECT md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) FROM generate_series(1, ${NOISE_ROWS})`,
    );
    o.log(`  WAL round ${round}: ${listSegments(archiveDir).length} segments archived`);
  }
  // Close the current segment and wait for the archiver to have copied it.
  const last = await cluster.sql('SELECT pg_walfile_name(pg_switch_wal())');
  while (!listSegments(archiveDir).includes(last)) {
    if (Date.now() > deadline) break;
    await sleep(100);
  }
  const all = listSegments(archiveDir).filter((f) => f < last);
  if (all.length < count) throw new Error(`only ${all.length} full WAL segments, wanted ${count}`);
  return all.slice(0, count).map((f) => join(archiveDir, f));
}

/**
 * The dataset: pgbench at scale N plus a table of incompressible bytes, in one PostgreSQL 15
 * cluster started by the test harness (Debian's binaries, run as the `postgres` OS user, TCP on
 * 127.0.0.1).
 *
 * The incompressible part is `bytea` filled by pgcrypto's gen_random_bytes(), 1900 bytes per row,
 * with STORAGE EXTERNAL: rows stay below the TOAST threshold (so they are stored inline, four to a
 * page) and even a later bigger value would never be pglz-compressed. Random bytes do not compress
 * at all (base64 text of them would still shrink to ~75 % under zstd/gzip, md5 hex to ~55 %).
 */
import { readdirSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import type { Cluster } from '../../test/helpers/postgres.ts';
import { runOk } from '../lib/proc.ts';

export const PG_BIN = '/usr/lib/postgresql/15/bin';
export const RANDOM_TABLE = 'bench_random';
/** Payload bytes per row: with the tuple header this fits four rows to an 8 KiB page, inline. */
const ROW_BYTES = 1900;
/** Rows per INSERT statement (~38 MB), so each statement stays well inside the query timeout. */
const BATCH_ROWS = 20_000;

export interface DatasetSizes {
  /** pg_database_size('postgres'): the database the data lives in. */
  databaseBytes: number;
  /** Every regular file under PGDATA (apparent size), pg_wal included. */
  pgdataBytes: number;
  /** pg_wal's share of pgdataBytes: the backup tools skip it (it is WAL, archived separately). */
  pgWalBytes: number;
  /** pgdataBytes minus pg_wal: roughly what a base backup has to read. */
  pgdataNoWalBytes: number;
  pgdataFiles: number;
  /** Per relation family: pgbench's tables with their indexes, and the random table. */
  tables: Record<string, number>;
}

export type Log = (m: string) => void;

/** Runs pgbench -i at `scale` against the cluster (as a TCP client; pgbench runs as root fine). */
export async function loadPgbench(cluster: Cluster, scale: number, log: Log): Promise<void> {
  const t0 = performance.now();
  await runOk(join(PG_BIN, 'pgbench'), ['-i', '-q', '-s', String(scale), '-h', cluster.host, '-p', String(cluster.port), '-U', 'postgres', 'postgres'], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8' },
    timeoutMs: 120_000 + scale * 20_000,
  });
  log(`pgbench -i -s ${scale}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

/** Adds `mb` MiB of random bytes to the random table (creating it on first use). */
export async function loadRandom(cluster: Cluster, mb: number, log: Log): Promise<void> {
  if (mb <= 0) return;
  const t0 = performance.now();
  await cluster.query('CREATE EXTENSION IF NOT EXISTS pgcrypto');
  await cluster.query(`CREATE TABLE IF NOT EXISTS ${RANDOM_TABLE} (id bigint NOT NULL, payload bytea NOT NULL)`);
  await cluster.query(`ALTER TABLE ${RANDOM_TABLE} ALTER COLUMN payload SET STORAGE EXTERNAL`);
  const [row] = await cluster.query<{ n: string }>(`SELECT coalesce(max(id), 0)::text AS n FROM ${RANDOM_TABLE}`);
  let next = Number(row?.n ?? 0) + 1;
  const rows = Math.ceil((mb * 1024 * 1024) / ROW_BYTES);
  const last = next + rows - 1;
  while (next <= last) {
    const to = Math.min(last, next + BATCH_ROWS - 1);
    // gen_random_bytes() returns at most 1024 bytes per call.
    await cluster.query(
      `INSERT INTO ${RANDOM_TABLE} SELECT g, gen_random_bytes(1024) || gen_random_bytes(${ROW_BYTES - 1024}) FROM generate_series(${next}::bigint, ${to}::bigint) g`,
    );
    next = to + 1;
  }
  await cluster.query(`VACUUM (ANALYZE) ${RANDOM_TABLE}`);
  log(`${RANDOM_TABLE}: +${mb} MiB of random bytes (${rows} rows) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

/** Roughly doubles pgbench's share: a copy of pgbench_accounts with its primary key. */
export async function copyAccounts(cluster: Cluster, log: Log): Promise<void> {
  const t0 = performance.now();
  await cluster.query('CREATE TABLE pgbench_accounts_copy (LIKE pgbench_accounts INCLUDING ALL)');
  await cluster.query('INSERT INTO pgbench_accounts_copy SELECT * FROM pgbench_accounts');
  await cluster.query('VACUUM (ANALYZE) pgbench_accounts_copy');
  log(`pgbench_accounts_copy: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

/** Waits until PostgreSQL has archived every finished segment (no .ready left), then checkpoints. */
export async function settle(cluster: Cluster, timeoutMs: number): Promise<void> {
  await cluster.query('CHECKPOINT');
  await cluster.query('SELECT pg_switch_wal()');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [r] = await cluster.query<{ ready: string; failed: string; last_failed: string | null }>(
      "SELECT (SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready')::text AS ready, " +
        'failed_count::text AS failed, last_failed_wal AS last_failed FROM pg_stat_archiver',
    );
    if (r && Number(r.ready) === 0) break;
    if (Date.now() > deadline) {
      throw new Error(`WAL archiving did not catch up in ${timeoutMs / 1000} s: ${r?.ready} segments .ready, ${r?.failed} failures (last ${r?.last_failed}); see the server log`);
    }
    await new Promise((res) => setTimeout(res, 500));
  }
  await cluster.query('CHECKPOINT');
}

export async function measureSizes(cluster: Cluster): Promise<DatasetSizes> {
  const [db] = await cluster.query<{ b: string }>("SELECT pg_database_size('postgres')::text AS b");
  const rels = await cluster.query<{ name: string; b: string }>(
    "SELECT c.relname AS name, pg_total_relation_size(c.oid)::text AS b FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace " +
      "WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY 2 DESC",
  );
  const tables: Record<string, number> = {};
  for (const r of rels) tables[r.name] = Number(r.b);
  const all = du(cluster.dataDir);
  const wal = du(join(cluster.dataDir, 'pg_wal'));
  return {
    databaseBytes: Number(db?.b ?? 0),
    pgdataBytes: all.bytes,
    pgWalBytes: wal.bytes,
    pgdataNoWalBytes: all.bytes - wal.bytes,
    pgdataFiles: all.files - wal.files,
    tables,
  };
}

/** Apparent size (sum of st_size) and count of the regular files under dir; symlinks are not followed. */
export function du(dir: string): { bytes: number; files: number } {
  let bytes = 0;
  let files = 0;
  const walk = (d: string): void => {
    let entries: string[];
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e);
      let st;
      try {
        st = lstatSync(p);
      } catch {
        continue; // vanished (a running cluster)
      }
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) {
        bytes += st.size;
        files++;
      }
    }
  };
  walk(dir);
  return { bytes, files };
}

/**
 * PostgreSQL's own corruption checks on a restored cluster: amcheck's bt_index_check on every
 * btree index and, where amcheck has it (1.3, PostgreSQL 14+), verify_heapam on every table, in
 * every database that allows connections. The extension is created in each database (the cluster
 * is a throwaway copy); where it cannot be (a build without contrib), the report says so instead
 * of failing: a drill without amcheck still proves the backup restores and recovers.
 */
import type { Logger } from '../log.ts';
import type { AmcheckReport } from './verify-report.ts';

/** The SQL session amcheck needs; a pg.Client fits. */
export interface SqlSession {
  query<T extends Record<string, unknown>>(sql: string, params?: unknown[]): Promise<{ rows: T[] }>;
  end(): Promise<void>;
}

/** Opens a session on one database of the restored cluster. */
export type OpenSession = (database: string) => Promise<SqlSession>;

/** Findings kept per database, at most. */
const MAX_FAILURES = 50;

/** Runs amcheck on every database; throws only when the cluster cannot be queried at all. */
export async function runAmcheck(open: OpenSession, log: Logger): Promise<AmcheckReport> {
  const report: AmcheckReport = { available: true, reason: null, databases: 0, btree_indexes: 0, tables: 0, failures: [] };
  const first = await open('postgres').catch(() => open('template1'));
  let databases: string[];
  try {
    databases = (await first.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname')).rows.map((r) => r.datname);
  } finally {
    await first.end();
  }
  for (const database of databases) {
    const session = await open(database);
    try {
      try {
        await session.query('CREATE EXTENSION IF NOT EXISTS amcheck');
      } catch (err) {
        if (report.databases === 0) return { ...report, available: false, reason: messageOf(err) };
        report.failures.push({ database, relation: '-', problem: `amcheck could not be created: ${messageOf(err)}` });
        continue;
      }
      report.databases++;
      await checkDatabase(session, database, report);
      log.debug(`amcheck: ${database} checked`);
    } finally {
      await session.end();
    }
  }
  return report;
}

async function checkDatabase(session: SqlSession, database: string, report: AmcheckReport): Promise<void> {
  let failures = 0;
  const fail = (relation: string, problem: string): void => {
    if (failures++ < MAX_FAILURES) report.failures.push({ database, relation, problem });
  };
  const indexes = (await session.query<{ oid: string; name: string }>(
    `SELECT c.oid::int8 AS oid, c.oid::regclass::text AS name
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
      WHERE am.amname = 'btree' AND c.relpersistence <> 't' AND i.indisready AND i.indisvalid
      ORDER BY c.oid`)).rows;
  for (const index of indexes) {
    try {
      await session.query('SELECT bt_index_check($1::oid::regclass)', [index.oid]);
    } catch (err) {
      fail(index.name, messageOf(err));
    }
    report.btree_indexes++;
  }
  const heap = (await session.query<{ n: string }>("SELECT count(*) AS n FROM pg_proc WHERE proname = 'verify_heapam'")).rows[0]?.n ?? '0';
  if (heap === '0') return;
  const tables = (await session.query<{ oid: string; name: string }>(
    `SELECT c.oid::int8 AS oid, c.oid::regclass::text AS name FROM pg_class c
      WHERE c.relkind IN ('r', 'm', 't') AND c.relpersistence <> 't' ORDER BY c.oid`)).rows;
  for (const table of tables) {
    try {
      const rows = (await session.query<{ msg: string; blkno: string | null }>(
        'SELECT msg, blkno::text AS blkno FROM verify_heapam($1::oid::regclass, on_error_stop := false) LIMIT 3', [table.oid])).rows;
      for (const row of rows) fail(table.name, row.blkno === null ? row.msg : `block ${row.blkno}: ${row.msg}`);
    } catch (err) {
      fail(table.name, messageOf(err));
    }
    report.tables++;
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

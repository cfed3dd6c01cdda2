/**
 * Gathers what `check` evaluates: one SQL session on the server, a listing and a probe write on
 * the store, and the catalog. Each part that fails becomes an Unavailable with the reason, so one
 * broken part never hides the verdicts of the others.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { ObjectStore } from '../../../providers/object-store.ts';
import { connect, type ConnectOptions } from '../../pg/connection.ts';
import { listBackups } from '../catalog/catalog.ts';
import type { CatalogFacts, CheckFacts, PgFacts, StreamingFacts, Unavailable } from './evaluate-checks.ts';

/** How to reach the server and the store. */
export interface GatherRequest {
  server: string;
  /** undefined: the PostgreSQL checks fail with a hint to set conninfo. */
  conninfo: string | undefined;
  connect: ConnectOptions;
  slotName: string | undefined;
  store: ObjectStore;
  /** A replication connection to try (IDENTIFY_SYSTEM); undefined: not checked. */
  streaming?: { conninfo: string; applicationName: string; connectTimeoutMs: number };
}

/** Everything evaluateChecks needs. */
export async function gatherFacts(req: GatherRequest): Promise<CheckFacts> {
  const [pgFacts, storeReachable, catalog, streaming] = await Promise.all([
    req.conninfo === undefined ? Promise.resolve<Unavailable>({ error: 'conninfo is not set: give conninfo in the server section' }) : pgFactsOf(req.conninfo, req.connect, req.slotName),
    attempt(async () => { await req.store.checkAccess(); return true as const; }),
    attempt(() => catalogFacts(req.store, req.server)),
    req.streaming === undefined ? Promise.resolve(undefined) : attempt(() => streamingFacts(req.streaming!)),
  ]);
  const storeWritable = storeReachable === true ? await attempt(() => probeWrite(req.store, req.server)) : { error: 'not tried: the store is not reachable' };
  return { pg: pgFacts, storeReachable, storeWritable, catalog, ...(streaming === undefined ? {} : { streaming }) };
}

/** Opens a replication connection as receive-wal and BASE_BACKUP do, and runs IDENTIFY_SYSTEM. */
async function streamingFacts(req: { conninfo: string; applicationName: string; connectTimeoutMs: number }): Promise<StreamingFacts> {
  const { ReplicationClient } = await import('../../pg/replication-client.ts');
  const client = await ReplicationClient.open(req.conninfo, { applicationName: req.applicationName, connectTimeoutMs: req.connectTimeoutMs, commandTimeoutMs: Math.max(10_000, req.connectTimeoutMs) });
  try {
    const id = await client.identifySystem();
    return { target: client.target, systemId: id.systemId, timeline: id.timeline };
  } finally {
    await client.close();
  }
}

async function attempt<T>(fn: () => Promise<T>): Promise<T | Unavailable> {
  try {
    return await fn();
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

async function pgFactsOf(conninfo: string, opts: ConnectOptions, slotName: string | undefined): Promise<PgFacts | Unavailable> {
  let client: pg.Client;
  try {
    client = await connect(conninfo, opts);
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
  try {
    const base = (await client.query<{ version_num: number; role: string; superuser: boolean; replication: boolean; may_backup: boolean; wal_level: string; archive_mode: string }>(
      `SELECT current_setting('server_version_num')::int AS version_num, current_user AS role,
              r.rolsuper AS superuser, r.rolreplication AS replication,
              has_function_privilege('pg_backup_start(text, boolean)', 'EXECUTE') AND has_function_privilege('pg_backup_stop(boolean)', 'EXECUTE') AS may_backup,
              current_setting('wal_level') AS wal_level, current_setting('archive_mode') AS archive_mode
         FROM pg_roles r WHERE r.rolname = current_user`)).rows[0];
    if (base === undefined) return { error: 'the role of this session is not in pg_roles' };
    let archiveCommand: string;
    try {
      archiveCommand = (await client.query<{ c: string }>("SELECT current_setting('archive_command') AS c")).rows[0]?.c ?? '';
    } catch {
      archiveCommand = '(not readable by this role: grant it pg_read_all_settings)';
    }
    const a = (await client.query<{ archived_count: string; failed_count: string; last_archived_time: Date | null; last_failed_wal: string | null; last_failed_time: Date | null }>(
      'SELECT archived_count, failed_count, last_archived_time, last_failed_wal, last_failed_time FROM pg_stat_archiver')).rows[0];
    const slot = slotName === undefined ? undefined : (await client.query<{ slot_type: string; active: boolean; restart_lsn: string | null }>(
      'SELECT slot_type, active, restart_lsn::text FROM pg_replication_slots WHERE slot_name = $1', [slotName])).rows[0];
    const clients = (await client.query<{ application_name: string; sync_state: string }>('SELECT application_name, sync_state FROM pg_stat_replication')).rows;
    const iso = (d: Date | null | undefined): string | null => (d === null || d === undefined ? null : d.toISOString());
    return {
      versionNum: base.version_num,
      role: base.role,
      superuser: base.superuser,
      mayBackup: base.may_backup,
      replication: base.replication,
      walLevel: base.wal_level,
      archiveMode: base.archive_mode,
      archiveCommand,
      archiver: {
        archivedCount: Number(a?.archived_count ?? 0),
        failedCount: Number(a?.failed_count ?? 0),
        lastArchivedTime: iso(a?.last_archived_time),
        lastFailedWal: a?.last_failed_wal ?? null,
        lastFailedTime: iso(a?.last_failed_time),
      },
      ...(slot === undefined ? {} : { slot: { type: slot.slot_type, active: slot.active, restartLsn: slot.restart_lsn } }),
      replicationClients: clients.map((c) => ({ applicationName: c.application_name, syncState: c.sync_state })),
    };
  } catch (err) {
    return { error: `querying the server failed: ${err instanceof Error ? err.message : String(err)}` };
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function catalogFacts(store: ObjectStore, server: string): Promise<CatalogFacts> {
  const { backups, unreadable } = await listBackups(store, server);
  if (unreadable.length > 0) throw new Error(`unreadable catalog entries: ${unreadable.map((u) => `${u.id} (${u.error})`).join(', ')}`);
  return {
    done: backups.filter((b) => b.status === 'DONE').map((b) => ({ id: b.id, endTime: b.end_time })),
    failed: backups.filter((b) => b.status === 'FAILED').map((b) => b.id),
  };
}

/** Writes and deletes a small object beside the server's folders, proving the credentials may write. */
async function probeWrite(store: ObjectStore, server: string): Promise<true> {
  const key = `${server}/.cloudbarman-check-${randomUUID()}`;
  await store.put(key, Buffer.from('cloudbarman check\n'));
  await store.delete([key]);
  return true;
}

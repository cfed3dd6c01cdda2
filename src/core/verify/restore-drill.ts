/**
 * `verify --restore`: the restore drill. Restores the backup into a fresh temporary directory with
 * recovery_target = 'immediate' and promotion, starts PostgreSQL on it, waits until recovery is
 * consistent and promoted, runs amcheck, stops it and removes the directory. The time from the
 * start of the restore to a consistent, checked cluster is the measured recovery time (RTO).
 *
 * The throwaway server must not touch anything real: it listens on a Unix socket in its own 0700
 * directory only (listen_addresses = ''), with a pg_hba.conf of its own that trusts that socket,
 * archive_mode off (the restore also sets archive_command = 'false'), ssl off and a small
 * shared_buffers, given on the command line over whatever the backed-up configuration says.
 * PostgreSQL refuses to run as root: as root, the files are handed to the OS user given (--run-as)
 * and every PostgreSQL program runs as that user through the injected runner.
 */
import { constants } from 'node:fs';
import { access, chmod, lchown, lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ObjectStore } from '../../../providers/object-store.ts';
import type { BackupInfo } from '../catalog/backup-info.ts';
import { CloudbarmanError, badInput } from '../errors.ts';
import type { Logger } from '../log.ts';
import { restoreBackup } from '../restore/restore-backup.ts';
import { connect } from '../../pg/connection.ts';
import { runAmcheck, type SqlSession } from './amcheck.ts';
import { plainCheck, type AmcheckReport, type RestoreDrillReport, type VerifyCheck } from './verify-report.ts';

/** What a program run printed and how it ended (128 + signal number when killed). */
export interface ProcessResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a PostgreSQL program as PostgreSQL's OS user, with a time limit; the CLI supplies it. */
export type ProcessRunner = (command: string, args: readonly string[], options: { timeoutMs: number }) => Promise<ProcessResult>;

/** Everything the drill needs; the CLI builds it. */
export interface DrillRequest {
  store: ObjectStore;
  server: string;
  backup: BackupInfo;
  /** An existing directory the temporary one is made in. */
  workDir: string;
  /** Holds pg_ctl and postgres of the backup's major version. */
  pgBin: string;
  /** As root: who the restored files are given to (the --run-as user). */
  owner: { uid: number; gid: number } | undefined;
  /** The role amcheck connects as (trusted on the private socket). */
  superuser: string;
  /** restore_command for the restored cluster (restore-command.ts). */
  restoreCommand: string;
  jobs: number;
  /** Longest wait for PostgreSQL to start, recover and be promoted. */
  timeoutMs: number;
  run: ProcessRunner;
  now: () => Date;
  sleep: (ms: number) => Promise<void>;
  log: Logger;
}

/** The drill's report lines, and its measurements when it got that far. */
export interface DrillOutcome {
  checks: VerifyCheck[];
  drill: RestoreDrillReport | undefined;
}

/** The port the socket file is named after; nothing listens on TCP. */
const SOCKET_PORT = 5432;
const POLL_MS = 200;
const SAFE_PATH = /^[\w/.-]+$/;

/** Runs the drill; integrity findings come back as FAILED checks, an unusable environment throws. */
export async function runRestoreDrill(req: DrillRequest): Promise<DrillOutcome> {
  if (req.backup.method === 'snapshot') throw badInput(`backup ${req.backup.id} is a snapshot backup: verify --restore restores file backups only`, 'restore it with restore --snapshot-recovery-instance on an instance of its cloud');
  await checkBinaries(req);
  const dir = await mkdtemp(join(req.workDir, `cloudbarman-verify-${req.backup.id}-`));
  if (!SAFE_PATH.test(dir)) {
    await rm(dir, { recursive: true, force: true });
    throw badInput(`the drill directory ${dir} has characters pg_ctl cannot pass on`, 'give --work-dir a plain path');
  }
  const data = join(dir, 'data');
  const socket = join(dir, 'socket');
  const logFile = join(dir, 'server.log');
  const hba = join(dir, 'pg_hba.conf');
  let started = false;
  try {
    await chmod(dir, 0o700);
    const relocations = new Map(req.backup.tablespaces.filter((t) => t.location.startsWith('/')).map((t) => [t.name, join(dir, 'tablespaces', String(t.oid))]));

    // 1. Restore, as restore does, with recovery to consistency and promotion.
    const t0 = req.now();
    let restored;
    try {
      restored = await restoreBackup({
        store: req.store, server: req.server, backupId: req.backup.id, dest: data, standby: false, relocations, jobs: req.jobs,
        target: { kind: 'immediate' }, action: 'promote', restoreCommand: req.restoreCommand, log: req.log, now: req.now,
      });
    } catch (err) {
      if (err instanceof CloudbarmanError && err.kind === 'integrity') return { checks: [plainCheck('restore', false, err.message)], drill: undefined };
      throw err;
    }
    const t1 = req.now();
    const restoreCheck = plainCheck('restore', true, `${restored.size_bytes} bytes in ${restored.files} files from ${restored.parts} parts in ${seconds(t0, t1)} s, every chunk verified`);

    // 2. Start PostgreSQL on it, on a private socket.
    await mkdir(socket, { mode: 0o700 });
    await writeFile(hba, 'local all all trust\n', { mode: 0o600 });
    // A cluster configured from /etc (Debian) has no postgresql.conf in its data directory.
    await writeFile(join(data, 'postgresql.conf'), '', { flag: 'a', mode: 0o600 });
    if (req.owner !== undefined) await chownTree(dir, req.owner);
    const options = [
      `-c port=${SOCKET_PORT}`, "-c listen_addresses=''", `-c unix_socket_directories='${socket}'`, `-c hba_file='${hba}'`,
      '-c archive_mode=off', '-c ssl=off', '-c logging_collector=off', '-c shared_buffers=128MB', '-c huge_pages=off',
    ].join(' ');
    const waitS = Math.max(1, Math.ceil(req.timeoutMs / 1000));
    started = true;
    const start = await req.run(join(req.pgBin, 'pg_ctl'), ['start', '-w', '-t', String(waitS), '-D', data, '-l', logFile, '-o', options], { timeoutMs: req.timeoutMs + 30_000 });
    const open = (database: string): Promise<SqlSession> => connect(`host=${socket} port=${SOCKET_PORT} user=${req.superuser} dbname=${database} sslmode=disable`, {
      applicationName: 'cloudbarman verify', connectTimeoutMs: 10_000,
    }) as Promise<SqlSession>;
    const recovered = start.code === 0 ? await waitForPromotion(req, open, data, t1) : `pg_ctl start failed (exit ${start.code}): ${start.stderr.trim() || start.stdout.trim()}`;
    const log = await readFile(logFile, 'utf8').catch(() => '');
    if (recovered !== undefined) return { checks: [restoreCheck, recoveryFailure(recovered, log)], drill: undefined };
    const t2 = req.now();
    const lsn = /consistent recovery state reached at ([0-9A-F]+\/[0-9A-F]+)/.exec(log)?.[1] ?? null;

    // 3. amcheck.
    const amcheck = await runAmcheck(open, req.log).catch((err: unknown) => {
      throw err instanceof CloudbarmanError && err.kind === 'bad-input' ? superuserRefused(req, err) : err;
    });
    const t3 = req.now();
    const drill: RestoreDrillReport = {
      rto_seconds: seconds(t0, t3), rto_to_consistent_seconds: seconds(t0, t2),
      restore_seconds: seconds(t0, t1), recovery_seconds: seconds(t1, t2), check_seconds: seconds(t2, t3),
      bytes_restored: restored.size_bytes, consistent_lsn: lsn, amcheck,
    };
    return {
      checks: [
        restoreCheck,
        plainCheck('recovery', true, `consistent${lsn === null ? '' : ` at ${lsn}`} and promoted ${seconds(t1, t2)} s after the restore`),
        amcheckCheck(amcheck),
        plainCheck('rto', true, `${drill.rto_seconds} s from the start of the restore to consistent and checked (${drill.rto_to_consistent_seconds} s to consistent)`),
      ],
      drill,
    };
  } finally {
    if (started) await stopServer(req, data);
    await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  }
}

/** pg_ctl and postgres exist, run, and are of the backup's major version. */
async function checkBinaries(req: DrillRequest): Promise<void> {
  for (const tool of ['pg_ctl', 'postgres']) {
    await access(join(req.pgBin, tool), constants.X_OK).catch(() => {
      throw badInput(`${join(req.pgBin, tool)} is missing or not executable`, 'give --pg-bin DIR, the bin directory of PostgreSQL of the backup\'s major version');
    });
  }
  const version = await req.run(join(req.pgBin, 'postgres'), ['-V'], { timeoutMs: 30_000 });
  const major = /\(PostgreSQL\) (\d+)/.exec(version.stdout)?.[1];
  const want = req.backup.pg_version === null ? undefined : Math.floor(req.backup.pg_version / 10000);
  if (version.code !== 0 || major === undefined) throw badInput(`${join(req.pgBin, 'postgres')} -V failed (exit ${version.code}): ${version.stderr.trim()}`, 'check --pg-bin and --run-as');
  if (want !== undefined && Number(major) !== want) {
    throw badInput(`backup ${req.backup.id} is of PostgreSQL ${want}, ${req.pgBin} holds PostgreSQL ${major}`, `give --pg-bin the bin directory of PostgreSQL ${want}`);
  }
}

/** Polls until recovery is over (promoted); undefined then, or why it did not get there. */
async function waitForPromotion(req: DrillRequest, open: (database: string) => Promise<SqlSession>, data: string, since: Date): Promise<string | undefined> {
  const deadline = since.getTime() + req.timeoutMs;
  let last = 'still in recovery';
  for (;;) {
    try {
      const session = await open('postgres').catch(() => open('template1'));
      try {
        const row = (await session.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0];
        if (row?.r === false) return undefined;
        last = 'still in recovery';
      } finally {
        await session.end();
      }
    } catch (err) {
      // Refused (no such role): no amount of waiting helps.
      if (err instanceof CloudbarmanError && err.kind === 'bad-input') throw superuserRefused(req, err);
      last = err instanceof Error ? err.message : String(err);
      const status = await req.run(join(req.pgBin, 'pg_ctl'), ['status', '-D', data], { timeoutMs: 15_000 });
      if (status.code !== 0) return 'PostgreSQL stopped during recovery';
    }
    if (req.now().getTime() >= deadline) return `recovery did not finish within ${Math.round(req.timeoutMs / 1000)} s (${last})`;
    await req.sleep(POLL_MS);
  }
}

/** The drill's server refused the role amcheck connects as. */
function superuserRefused(req: DrillRequest, err: CloudbarmanError): CloudbarmanError {
  return new CloudbarmanError('bad-input', `the restored cluster refused role ${req.superuser}: ${err.message}`, {
    hint: 'give --pg-superuser, a superuser role of the backed-up cluster', cause: err,
  });
}

/** Log lines that mean the backup or its WAL is damaged, as PostgreSQL or restore_command says it. */
const DAMAGE = /is corrupt|is damaged|does not match|invalid (checkpoint|primary checkpoint|record|magic number|resource manager|page|data in file "backup_label")|could not locate (required|a valid) checkpoint record|incorrect (resource manager data )?checksum|WAL ends before end of online backup|recovery ended before configured recovery target was reached/;

/** A failed start or recovery as a report line: integrity when the log names damage. */
function recoveryFailure(why: string, log: string): VerifyCheck {
  const lines = log.split('\n');
  // restore_command's own errors; "not in the archive" for a history file is normal and says nothing.
  const walRestore = lines.filter((l) => l.includes('cloudbarman wal-restore: error: ')).map((l) => l.slice(l.indexOf('error: ') + 7).trim());
  const fatal = lines.filter((l) => /\b(FATAL|PANIC):/.test(l)).map((l) => l.trim());
  const damage = walRestore.find((l) => DAMAGE.test(l)) ?? fatal.find((l) => DAMAGE.test(l));
  const cause = damage ?? fatal.at(-1);
  const reason = why.replace(/\s+/g, ' ').trim();
  const check = plainCheck('recovery', false, cause === undefined ? reason : `${reason}: ${cause}`);
  return damage !== undefined ? check : { ...check, cause: 'environment' };
}

function amcheckCheck(report: AmcheckReport): VerifyCheck {
  if (!report.available) return plainCheck('amcheck', true, `not available on this PostgreSQL build (${report.reason ?? 'unknown'}): indexes and tables not checked`);
  const what = `${report.btree_indexes} btree indexes${report.tables > 0 ? `, ${report.tables} tables` : ''} in ${report.databases} database${report.databases === 1 ? '' : 's'}`;
  if (report.failures.length === 0) return plainCheck('amcheck', true, `${what}: no corruption found`);
  const first = report.failures[0];
  return plainCheck('amcheck', false, `${what}: ${report.failures.length} finding${report.failures.length === 1 ? '' : 's'}, first ${first?.database ?? ''}.${first?.relation ?? ''}: ${first?.problem ?? ''}`);
}

/** pg_ctl stop, fast then immediate; a server already gone is fine. */
async function stopServer(req: DrillRequest, data: string): Promise<void> {
  const pgCtl = join(req.pgBin, 'pg_ctl');
  const status = await req.run(pgCtl, ['status', '-D', data], { timeoutMs: 15_000 }).catch(() => undefined);
  if (status?.code !== 0) return;
  const fast = await req.run(pgCtl, ['stop', '-w', '-t', '60', '-m', 'fast', '-D', data], { timeoutMs: 90_000 }).catch(() => undefined);
  if (fast?.code === 0) return;
  await req.run(pgCtl, ['stop', '-w', '-t', '60', '-m', 'immediate', '-D', data], { timeoutMs: 90_000 }).catch((err: unknown) => {
    req.log.warn(`could not stop the drill's PostgreSQL on ${data}: ${err instanceof Error ? err.message : String(err)}`);
  });
}

/** chown -R without following links (tablespace links point inside the tree anyway). */
async function chownTree(path: string, owner: { uid: number; gid: number }): Promise<void> {
  await lchown(path, owner.uid, owner.gid);
  const st = await lstat(path);
  if (!st.isDirectory()) return;
  for (const entry of await readdir(path)) await chownTree(join(path, entry), owner);
}

function seconds(from: Date, to: Date): number {
  return Math.round((to.getTime() - from.getTime()) / 100) / 10;
}
